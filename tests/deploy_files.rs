//! The files of `deploy/` (the reference setup of deploy/README.md) are what their
//! tools accept: the Prometheus configs by `promflow check config` and the real
//! `promtool check config` (which also checks the rule files they name, through
//! `deploy/queries` -> `queries/`), the Alertmanager config by `amtool check-config`
//! and by promflow's built-in notifier, the Swarm stack file against a key schema of
//! the Compose specification (`tests/data/compose-keys.schema.json`, checked by
//! Python's `jsonschema`), and the flags in the Dockerfile, the stack and the systemd
//! unit by promflow's own command line.
//!
//! Real peers: promtool 2.42 (`prometheus`), amtool 0.25 (`prometheus-alertmanager`),
//! jsonschema and PyYAML in the repository's `.venv` (`.ci/test` installs them).

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
const CONFIGS: [&str; 3] = [
    "deploy/main.yml",
    "deploy/services.yml",
    "deploy/promflow.yml",
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
        "deploy/swarm-stack.yml",
    ])
    .current_dir(repo_root());
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "deploy/swarm-stack.yml against the Compose key schema:\n{}",
        combined_output(&out)
    );

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

/// Every `--flag` the Dockerfile, the stack and the systemd unit give promflow is one
/// of its flags, and every file the Dockerfile copies exists.
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
    // The stack's commands of the services that run the promflow image.
    let stack = read_yaml("deploy/swarm-stack.yml");
    let stack_commands: Vec<String> = stack["services"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|s| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("promflow"))
        })
        .flat_map(|s| s["command"].as_sequence().unwrap().iter())
        .map(|w| w.as_str().unwrap().to_string())
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
    assert!(used >= 9, "found only {used} promflow flags");
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
