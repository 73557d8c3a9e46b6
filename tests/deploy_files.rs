//! The files of `deploy/` (the reference setup of deploy/README.md) are what their
//! tools accept: the Prometheus configs by `promflow check config` and the real
//! `promtool check config` (which also checks the rule files they name, through
//! `deploy/queries` -> `queries/`), the Alertmanager config by `amtool check-config`
//! and by promflow's built-in notifier, the Swarm stack file against a key schema of
//! the Compose specification (`tests/data/compose-keys.schema.json`, checked by
//! Python's `jsonschema`), and the flags in the Dockerfile, the stacks and the systemd
//! units by promflow's own command line. The cluster's files (`cluster.yml`,
//! `promflow@.service`, `cluster-hosts`, `cluster-stack.yml`, `cluster-hosts.swarm`):
//! the unit by `systemd-analyze verify`, the stack by the same key schema and, where
//! the docker CLI is installed, by `docker stack config` (Docker's own loader); each
//! process's command line, with its hostfile, by `promflow check config` (the server's
//! own hostfile parser).
//!
//! Real peers: promtool 2.42 (`prometheus`), amtool 0.25 (`prometheus-alertmanager`),
//! `systemd-analyze` (`systemd`), jsonschema and PyYAML in the repository's `.venv`
//! (`.ci/test` installs them).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::alertmanager::AMTOOL_BIN;
use common::{
    combined_output, promtool, repo_root, require_peer, run_command, run_promflow, venv_python,
    COMMAND_TIMEOUT,
};
use serde_yaml_ng::Value;

/// The Prometheus-format configs of deploy/.
const CONFIGS: [&str; 4] = [
    "deploy/main.yml",
    "deploy/services.yml",
    "deploy/promflow.yml",
    "deploy/cluster.yml",
];

fn read_yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rule files a config names, relative to the repository root.
fn rule_files(config: &str) -> Vec<String> {
    let dir = Path::new(config).parent().unwrap();
    read_yaml(config)["rule_files"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|f| dir.join(f.as_str().unwrap()).display().to_string())
        .collect()
}

#[test]
fn promflow_and_promtool_accept_the_configs_and_their_rule_files() {
    let root = repo_root();
    let mut args = vec![
        "check",
        "config",
        "--alertmanager.config.file=deploy/alertmanager.yml",
    ];
    args.extend(CONFIGS);
    let mut cmd = Command::new(common::promflow_bin());
    cmd.args(&args).current_dir(&root);
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "promflow {args:?}:\n{}",
        combined_output(&out)
    );

    // Not --syntax-only: promtool loads every rule file the configs name.
    let mut args = vec!["check", "config"];
    args.extend(CONFIGS);
    let (ok, out) = promtool(&args, &root);
    assert!(ok, "promtool check config:\n{out}");
    for config in CONFIGS {
        assert!(
            out.contains(&format!("SUCCESS: {config} is valid prometheus config")),
            "{out}"
        );
    }
    let main_rules = rule_files("deploy/main.yml");
    for file in main_rules.iter().chain(&rule_files("deploy/services.yml")) {
        assert!(
            out.contains(&format!("Checking {file}")),
            "promtool did not check {file}:\n{out}"
        );
    }
    // The alerts of the reference setup are all on main.
    let rules: Vec<&str> = main_rules.iter().map(String::as_str).collect();
    let mut args = vec!["check", "rules"];
    args.extend(&rules);
    let out = run_promflow_in(&root, &args);
    assert!(
        out.status.success(),
        "promflow check rules:\n{}",
        combined_output(&out)
    );
    let names: String = rules
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .collect();
    for alert in [
        "HostHighCpuUsage",
        "HostLowDiskSpace",
        "ServiceDown",
        "OnlineDevicesLow",
    ] {
        assert!(
            names.contains(&format!("alert: {alert}\n")),
            "main evaluates no {alert}"
        );
    }
}

/// The shipped wall-display dashboards load without a problem (every panel's PromQL
/// parses), as the main instance of the stack serves them.
#[test]
fn the_shipped_dashboards_load() {
    let dir = repo_root().join("deploy/dashboards");
    let flag = format!("--web.dashboards-dir={}", dir.display());
    let promflow = common::Promflow::start_with_args("scrape_configs: []\n", &[&flag]);
    let list: serde_json::Value =
        serde_json::from_str(&promflow.get_ok("/api/v1/dashboards")).unwrap();
    let list = list["data"].as_array().unwrap();
    assert!(!list.is_empty(), "no dashboard in {}", dir.display());
    for dashboard in list {
        assert!(dashboard.get("error").is_none(), "{dashboard}");
    }
}

fn run_promflow_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(common::promflow_bin());
    cmd.args(args).current_dir(dir);
    run_command(cmd, None, COMMAND_TIMEOUT)
}

#[test]
fn amtool_accepts_the_alertmanager_config_and_its_templates() {
    require_peer(AMTOOL_BIN, "prometheus-alertmanager");
    let mut cmd = Command::new(AMTOOL_BIN);
    cmd.args(["check-config", "deploy/alertmanager.yml"])
        .current_dir(repo_root());
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    let text = combined_output(&out);
    assert!(out.status.success(), "amtool check-config:\n{text}");
    assert!(
        text.contains(" - 1 templates"),
        "templates not found:\n{text}"
    );
    assert!(text.contains(" - 2 receivers"), "{text}");
    let config = read_yaml("deploy/alertmanager.yml");
    let receivers = config["receivers"].as_sequence().unwrap();
    assert!(receivers.iter().any(|r| r["slack_configs"].is_sequence()));
    assert!(receivers
        .iter()
        .any(|r| r["pushover_configs"].is_sequence()));
}

/// The Swarm stack's keys against the schema, then what the schema cannot say: every
/// config, volume and network a service names is declared, every config file exists,
/// and the services instance is on the services' network with a placement constraint.
#[test]
fn swarm_stack_keys_match_the_compose_schema() {
    assert_compose_keys("deploy/swarm-stack.yml");

    let stack = read_yaml("deploy/swarm-stack.yml");
    let declared = |section: &str| -> BTreeSet<String> {
        stack[section]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect()
    };
    let (configs, volumes, networks) = (
        declared("configs"),
        declared("volumes"),
        declared("networks"),
    );
    for (name, service) in stack["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        for c in service["configs"].as_sequence().into_iter().flatten() {
            let source = c["source"].as_str().or(c.as_str()).unwrap();
            assert!(
                configs.contains(source),
                "{name}: undeclared config {source}"
            );
        }
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let volume = v.as_str().unwrap().split(':').next().unwrap();
            assert!(
                volume.starts_with('/') || volumes.contains(volume),
                "{name}: undeclared volume {volume}"
            );
        }
        for n in service["networks"].as_sequence().into_iter().flatten() {
            assert!(
                networks.contains(n.as_str().unwrap()),
                "{name}: undeclared network {n:?}"
            );
        }
    }
    for (name, config) in stack["configs"].as_mapping().unwrap() {
        let file = config["file"].as_str().unwrap();
        assert!(
            repo_root().join("deploy").join(file).is_file(),
            "config {name:?}: deploy/{file} missing"
        );
    }
    let services = &stack["services"]["promflow-services"];
    let on: Vec<&str> = services["networks"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        on.contains(&"services") && on.contains(&"monitoring"),
        "{on:?}"
    );
    assert!(
        !services["deploy"]["placement"]["constraints"]
            .as_sequence()
            .unwrap()
            .is_empty(),
        "promflow-services is not pinned"
    );
    for service in ["promflow-main", "alertmanager"] {
        assert!(stack["services"][service].is_mapping(), "{service} missing");
    }
}

/// The keys of the stack file `path` against the Compose key schema.
fn assert_compose_keys(path: &str) {
    let python = venv_python("jsonschema, yaml");
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import json, sys, yaml, jsonschema\n\
         schema = json.load(open(sys.argv[1]))\n\
         errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(open(sys.argv[2]))), key=str)\n\
         for e in errors: print('/'.join(map(str, e.absolute_path)) + ': ' + e.message)\n\
         sys.exit(1 if errors else 0)\n",
        "tests/data/compose-keys.schema.json",
        path,
    ])
    .current_dir(repo_root());
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{path} against the Compose key schema:\n{}",
        combined_output(&out)
    );
}

/// Every `--flag` the Dockerfile, the stacks and the systemd units give promflow is
/// one of its flags, and every file the Dockerfile copies exists.
#[test]
fn deploy_command_lines_use_real_flags_and_files() {
    let help = combined_output(&run_promflow(&["--help"]));
    let flags: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == '=' || c == ',')
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(
        flags.contains("--config.file"),
        "no flags in --help:\n{help}"
    );
    // The stacks' commands of the services that run the promflow image.
    let stack_commands: Vec<String> = ["deploy/swarm-stack.yml", "deploy/cluster-stack.yml"]
        .iter()
        .flat_map(|file| promflow_commands(&read_yaml(file)))
        .flatten()
        .collect();
    // Without comment lines (they show other tools' command lines).
    let read = |f: &str| -> String {
        std::fs::read_to_string(repo_root().join(f))
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let texts = [
        ("deploy/Dockerfile", read("deploy/Dockerfile")),
        ("deploy/swarm-stack.yml", stack_commands.join("\n")),
        ("deploy/promflow.service", read("deploy/promflow.service")),
        ("deploy/promflow@.service", read("deploy/promflow@.service")),
    ];
    let mut used = 0;
    for (file, text) in &texts {
        for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[') {
            let Some(flag) = word
                .strip_prefix("--")
                .map(|w| w.split('=').next().unwrap())
            else {
                continue;
            };
            // Docker's, apt's and cargo's own flags.
            if [
                "mount",
                "from",
                "release",
                "locked",
                "bin",
                "no-install-recommends",
            ]
            .contains(&flag)
                || !flag.starts_with(|c: char| c.is_ascii_lowercase())
            {
                continue;
            }
            used += 1;
            assert!(
                flags.contains(format!("--{flag}").as_str()),
                "{file}: promflow has no --{flag}"
            );
        }
    }
    assert!(used >= 30, "found only {used} promflow flags");
    let dockerfile = &texts[0].1;
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                repo_root().join(source).exists(),
                "Dockerfile copies missing {source}"
            );
        }
    }
}

/// The command of each service of `stack` that runs the promflow image, by service.
fn promflow_commands(stack: &Value) -> Vec<Vec<String>> {
    stack["services"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|s| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("promflow"))
        })
        .map(|s| {
            s["command"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// `promflow check config` of a cluster process: its flags, its hostfile, the config;
/// returns the hostfile's report line (`SUCCESS: 3 processes, this is process 1
/// (exchange host:port)`).
fn check_cluster_process(processes: usize, id: usize, hostfile: &str, config: &str) -> String {
    let args = [
        "check".to_string(),
        "config".to_string(),
        format!("--cluster.processes={processes}"),
        format!("--cluster.process-id={id}"),
        format!("--cluster.hostfile={hostfile}"),
        config.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_promflow_in(&repo_root(), &args);
    let text = combined_output(&out);
    assert!(out.status.success(), "promflow {args:?}:\n{text}");
    let line = text
        .lines()
        .skip_while(|l| *l != format!("Checking {hostfile}"))
        .nth(1)
        .unwrap_or_else(|| panic!("{hostfile} not checked:\n{text}"));
    assert!(
        line.contains(&format!(
            "SUCCESS: {processes} processes, this is process {id} "
        )),
        "{text}"
    );
    line.to_string()
}

/// The `[Service]` settings of a unit file (`key=value`, continuation lines joined):
/// every value of each key, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .skip_while(|l| l.trim() != "[Service]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The cluster's systemd template unit: `systemd-analyze verify` finds nothing to say
/// (an unknown key or value is only a warning there, so any output fails), the
/// supervisor restarts a process whatever its exit (the others exit 1 when one is
/// lost), and the command line of each instance `promflow@i`, with the unit's
/// defaults and `%i` = i, checks with the example hostfile and config.
#[test]
fn cluster_unit_verifies_and_each_instance_checks() {
    require_peer("/usr/bin/systemd-analyze", "systemd");
    let text = std::fs::read_to_string(repo_root().join("deploy/promflow@.service")).unwrap();
    // The installed binary's path, as the unit names it, is this build's.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("promflow@.service");
    let bin = common::promflow_bin();
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/promflow", &bin.display().to_string()),
    )
    .unwrap();
    let mut cmd = Command::new("/usr/bin/systemd-analyze");
    cmd.args(["verify", &unit.display().to_string()])
        .current_dir(dir.path());
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    let said = combined_output(&out);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify deploy/promflow@.service:\n{said}"
    );

    let settings = unit_settings(&text);
    let value = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(value("Restart"), ["always"]);
    let env: std::collections::BTreeMap<&str, &str> = value("Environment")
        .iter()
        .filter_map(|e| e.split_once('='))
        .collect();
    let exec = value("ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    // The unit's files under /etc/promflow are deploy/'s examples.
    let words = |id: usize| -> Vec<String> {
        exec[0]
            .split_whitespace()
            .skip(1)
            .map(|w| {
                let mut w = w.replace("%i", &id.to_string());
                for (k, v) in &env {
                    w = w.replace(&format!("${{{k}}}"), v);
                }
                w.replace("/etc/promflow/", "deploy/")
            })
            .collect()
    };
    let flag = |words: &[String], name: &str| -> String {
        words
            .iter()
            .find_map(|w| w.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("ExecStart has no --{name}: {words:?}"))
            .to_string()
    };
    assert!(
        exec[0].contains("--cluster.process-id=%i"),
        "the process id is not the instance name: {}",
        exec[0]
    );
    let processes: usize = flag(&words(0), "cluster.processes").parse().unwrap();
    assert!(processes > 1, "{processes}");
    let mut exchanges = BTreeSet::new();
    for id in 0..processes {
        let words = words(id);
        let line = check_cluster_process(
            processes,
            id,
            &flag(&words, "cluster.hostfile"),
            &flag(&words, "config.file"),
        );
        exchanges.insert(line);
        // Each instance has a storage directory of its own.
        assert!(
            flag(&words, "storage.tsdb.path").ends_with(&format!("-{id}")),
            "{words:?}"
        );
    }
    assert_eq!(exchanges.len(), processes, "{exchanges:?}");
}

/// The cluster's Swarm stack: Docker's own loader accepts it (when the docker CLI is
/// here) and its keys match the schema; one service per process, each given its own
/// process id, all the same count and the same hostfile (a config of the stack); a
/// service restarts whatever its exit; each is reachable under the name its hostfile
/// line gives and that name resolves to its own task (hostname, `dnsrr`), where the
/// exchange binds; each process's command line checks with the hostfile.
#[test]
fn cluster_stack_gives_each_process_its_id_and_the_hostfile() {
    let path = "deploy/cluster-stack.yml";
    assert_compose_keys(path);
    let docker = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("docker"))
        .find(|p| p.is_file());
    match docker {
        Some(docker) => {
            let mut cmd = Command::new(docker);
            cmd.args(["stack", "config", "-c", path])
                .current_dir(repo_root());
            let out = run_command(cmd, None, COMMAND_TIMEOUT);
            assert!(
                out.status.success(),
                "docker stack config -c {path}:\n{}",
                combined_output(&out)
            );
        }
        None => eprintln!("docker CLI not installed: {path} checked by the key schema only"),
    }

    let stack = read_yaml(path);
    let services = stack["services"].as_mapping().unwrap();
    let flag = |command: &[String], name: &str| -> String {
        command
            .iter()
            .find_map(|w| w.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("no --{name}: {command:?}"))
            .to_string()
    };
    let mut by_id = std::collections::BTreeMap::new();
    let mut hostfile_sources = BTreeSet::new();
    let mut configs = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let command: Vec<String> = service["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        let id: usize = flag(&command, "cluster.process-id").parse().unwrap();
        let processes: usize = flag(&command, "cluster.processes").parse().unwrap();
        assert_eq!(processes, services.len(), "{name}");
        assert!(
            by_id.insert(id, name.to_string()).is_none(),
            "{name}: id {id} twice"
        );
        let hostfile = flag(&command, "cluster.hostfile");
        let mounted: Vec<&str> = service["configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|c| c["target"].as_str() == Some(hostfile.as_str()))
            .map(|c| c["source"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounted.len(),
            1,
            "{name}: {hostfile} is not a config of the stack"
        );
        hostfile_sources.insert(mounted[0].to_string());
        let config = flag(&command, "config.file");
        configs.extend(
            service["configs"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter(|c| c["target"].as_str() == Some(config.as_str()))
                .map(|c| c["source"].as_str().unwrap().to_string()),
        );
        let deploy = &service["deploy"];
        assert_eq!(deploy["replicas"].as_u64(), Some(1), "{name}");
        assert_eq!(
            deploy["restart_policy"]["condition"].as_str(),
            Some("any"),
            "{name}"
        );
        assert_eq!(deploy["endpoint_mode"].as_str(), Some("dnsrr"), "{name}");
        assert_eq!(service["hostname"].as_str(), Some(name), "{name}");
        assert!(
            !deploy["placement"]["constraints"]
                .as_sequence()
                .unwrap()
                .is_empty(),
            "{name}: not pinned to the node of its storage"
        );
    }
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        (0..services.len()).collect::<Vec<_>>()
    );
    assert_eq!(hostfile_sources.len(), 1, "{hostfile_sources:?}");
    assert_eq!(configs.len(), 1, "{configs:?}");
    let file_of = |source: &str| -> String {
        let file = stack["configs"][source]["file"].as_str().unwrap();
        format!("deploy/{}", file.trim_start_matches("./"))
    };
    let hostfile = file_of(hostfile_sources.iter().next().unwrap());
    let config = file_of(configs.iter().next().unwrap());
    for (id, name) in &by_id {
        let line = check_cluster_process(services.len(), *id, &hostfile, &config);
        assert!(
            line.contains(&format!("(exchange {name}:")),
            "process {id} is {name}, its hostfile line: {line}"
        );
    }
}
