//! The reference setup of deploy/README.md, end to end on loopback, with the shipped
//! files: `deploy/services.yml`, `deploy/main.yml`, the rule files of `queries/` they
//! name and `deploy/alertmanager.yml` with its templates. Three times: promflow on
//! both sides; Prometheus 2.42 as the services instance; Prometheus 2.42 as the main
//! instance (`Side`).
//!
//! What the test changes in the copies it runs: addresses (targets, the DNS port,
//! exporter ports in `__address__` replacements, the EC2 endpoint with moto's region
//! and test keys, the Alertmanager target, the Slack URL, a proxy and CA for Pushover,
//! whose endpoint is fixed in Alertmanager 0.25, the templates' absolute path), and
//! timers: scrape and evaluation intervals 1s, discovery refreshes 1s/5s,
//! Alertmanager's group_wait 1s and group_interval 2s, and in the rule files every
//! `for:` and range `[…]` divided by 60 (20m -> 20s). The services instance's own
//! target is added by a reload once its port is known.
//!
//! Real peers: dnsmasq serving `tasks.myservice` (on port 53 of a 127.53.x.y address,
//! resolved through a private /etc/resolv.conf, when Prometheus is the services
//! instance: it reads no other resolver; needs root), moto_server with three EC2
//! instances tagged `swarm-1`, `swarm-2` and `db-1` whose private IPs are 127.0.0.21-23,
//! a real node_exporter on swarm-1 and db-1, Alertmanager 0.25, Prometheus 2.42.
//! Synthetic (tests/common/fleet.rs): the three tasks of `myservice` (Go-style
//! request counters and latency histograms by function, an `online_devices` gauge),
//! cAdvisor on every host (only the `swarm-` ones may be scraped), and the node
//! exporter of swarm-2, the host whose CPU the test drives over 90% (its counters are
//! the test's, so the load is exact). Slack and Pushover are capture servers checking
//! the documented payloads (tests/common/receiver.rs): one pair for Alertmanager, one
//! for promflow's built-in notifier when main is promflow (same file, run with
//! `--alertmanager.config.file`).

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::alertmanager::Alertmanager;
use common::dnsmasq::Dnsmasq;
use common::exporter::Exporter;
use common::fleet::{self, CpuHost, ServiceTask};
use common::moto::{self, Moto};
use common::receiver::{check_pushover_request, check_slack_request, CaptureServer, Captured};
use common::tls::TestPki;
use common::{
    free_port_on, repo_root, wait_for, wait_until, NodeExporter, Peer, Prometheus, Promflow,
};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

const WAIT: Duration = Duration::from_secs(60);
const CPU_RUNBOOK: &str = "https://runbooks.example.com/promflow/hosthighcpuusage";
const HOSTS: [(&str, Ipv4Addr); 3] = [
    ("swarm-1", Ipv4Addr::new(127, 0, 0, 21)),
    ("swarm-2", Ipv4Addr::new(127, 0, 0, 22)),
    ("db-1", Ipv4Addr::new(127, 0, 0, 23)),
];
const TASKS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 31),
    Ipv4Addr::new(127, 0, 0, 32),
    Ipv4Addr::new(127, 0, 0, 33),
];

/// One stack at a time: they share the loopback addresses above.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Promflow,
    Prometheus,
}

/// promflow as main: its rules over federated series (OnlineDevicesLow, ServiceDown of
/// a task) fire through the watermark's hold-back for exposed timestamps
/// (`src/holdback.rs`). The same holds for the next test.
#[test]
fn promflow_as_services_and_main() {
    run(Side::Promflow, Side::Promflow);
}

#[test]
fn prometheus_as_services_promflow_as_main() {
    run(Side::Prometheus, Side::Promflow);
}

#[test]
fn promflow_as_services_prometheus_as_main() {
    run(Side::Promflow, Side::Prometheus);
}

/// promflow or Prometheus.
enum Server {
    Promflow(Promflow),
    Prometheus(Prometheus),
}

impl std::ops::Deref for Server {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        match self {
            Server::Promflow(p) => p,
            Server::Prometheus(p) => p,
        }
    }
}

impl Server {
    /// Starts `side` on `config(None)`, then reloads it with `config(Some(own address))`
    /// and waits until its own target is scraped.
    fn start(
        side: Side,
        config: impl Fn(Option<&str>) -> String,
        promflow_args: &[&str],
        nameserver: Option<Ipv4Addr>,
    ) -> Server {
        let server = match side {
            Side::Promflow => {
                Server::Promflow(Promflow::start_with_args(&config(None), promflow_args))
            }
            Side::Prometheus => {
                Server::Prometheus(Prometheus::start_resolving(&config(None), &[], nameserver))
            }
        };
        let own = server.addr().to_string();
        server.write_config(&config(Some(&own)));
        server.sighup();
        assert!(
            wait_until(WAIT, || targets(&server)
                .iter()
                .any(|t| t.1 == own && t.2 == "up")),
            "{side:?} does not scrape itself after the reload: {:?}",
            targets(&server)
        );
        server
    }
}

/// (job, instance, health) of the active targets.
fn targets(server: &Peer) -> Vec<(String, String, String)> {
    let v: Json = serde_json::from_str(&server.get_ok("/api/v1/targets")).unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |v: &Json| v.as_str().unwrap_or_default().to_string();
            (
                s(&t["labels"]["job"]),
                s(&t["labels"]["instance"]),
                s(&t["health"]),
            )
        })
        .collect()
}

fn instances_of(server: &Peer, job: &str) -> BTreeSet<String> {
    targets(server)
        .into_iter()
        .filter(|t| t.0 == job && t.2 == "up")
        .map(|t| t.1)
        .collect()
}

/// The label sets of an instant query's result.
fn series(server: &Peer, expr: &str) -> Vec<serde_json::Map<String, Json>> {
    server.query(expr)["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_object().unwrap().clone())
        .collect()
}

fn label_values(server: &Peer, expr: &str, label: &str) -> BTreeSet<String> {
    series(server, expr)
        .iter()
        .filter_map(|m| m.get(label)?.as_str().map(str::to_string))
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

// ---------------------------------------------------------------------------
// The shipped files, with addresses and timers changed

fn shipped(path: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

fn to_yaml(v: &Yaml) -> String {
    serde_yaml_ng::to_string(v).unwrap()
}

fn s(text: &str) -> Yaml {
    Yaml::String(text.to_string())
}

/// Every duration of `for:` and of a range selector, divided by 60 (minutes become
/// seconds, hours minutes).
fn scaled_rules(text: &str) -> String {
    let re = regex::Regex::new(r"(for: |\[)(\d+)([mh])\b").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        format!("{}{}{}", &c[1], &c[2], if &c[3] == "m" { "s" } else { "m" })
    })
    .into_owned()
}

fn one_second_timers(config: &mut Yaml) {
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        config["global"][key] = s("1s");
    }
}

/// The scrape configs of `config` without `job`'s when `addr` is `None`, else with
/// its target set to `addr`.
fn set_own_target(config: &mut Yaml, job: &str, addr: Option<&str>) {
    let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
    match addr {
        None => jobs.retain(|j| j["job_name"] != s(job)),
        Some(a) => {
            let j = jobs.iter_mut().find(|j| j["job_name"] == s(job)).unwrap();
            j["static_configs"][0]["targets"] = Yaml::Sequence(vec![s(a)]);
        }
    }
}

fn job_mut<'a>(config: &'a mut Yaml, job: &str) -> &'a mut Yaml {
    config["scrape_configs"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|j| j["job_name"] == s(job))
        .unwrap_or_else(|| panic!("no job {job}"))
}

/// Rule file paths made absolute: into `rules_dir` (scaled copies) or the repository.
fn rule_files(config: &mut Yaml, dir: &Path) {
    for f in config["rule_files"].as_sequence_mut().unwrap() {
        let name = Path::new(f.as_str().unwrap()).file_name().unwrap();
        *f = s(&dir.join(name).display().to_string());
    }
}

fn services_config(own: Option<&str>, task_port: u16) -> String {
    let mut c = shipped("deploy/services.yml");
    one_second_timers(&mut c);
    rule_files(&mut c, &repo_root().join("queries"));
    set_own_target(&mut c, "promflow-services", own);
    let sd = &mut job_mut(&mut c, "myservice")["dns_sd_configs"][0];
    sd["port"] = Yaml::Number(task_port.into());
    sd["refresh_interval"] = s("1s");
    to_yaml(&c)
}

struct MainAddrs<'a> {
    rules_dir: &'a Path,
    services: String,
    alertmanager: String,
    moto: &'a Moto,
    node_port: u16,
    cadvisor_port: u16,
}

fn main_config(own: Option<&str>, a: &MainAddrs) -> String {
    let mut c = shipped("deploy/main.yml");
    one_second_timers(&mut c);
    rule_files(&mut c, a.rules_dir);
    set_own_target(&mut c, "promflow-main", own);
    c["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] =
        Yaml::Sequence(vec![s(&a.alertmanager)]);
    job_mut(&mut c, "federate-services")["static_configs"][0]["targets"] =
        Yaml::Sequence(vec![s(&a.services)]);
    for (job, shipped_port, port) in [
        ("node", 9100, a.node_port),
        ("cadvisor", 8080, a.cadvisor_port),
    ] {
        let j = job_mut(&mut c, job);
        let sd = &mut j["ec2_sd_configs"][0];
        sd["region"] = s(moto::REGION);
        sd["endpoint"] = s(&a.moto.endpoint());
        sd["access_key"] = s("test");
        sd["secret_key"] = s("test");
        sd["refresh_interval"] = s("5s");
        sd["port"] = Yaml::Number(port.into());
        for r in j["relabel_configs"].as_sequence_mut().unwrap() {
            if r["replacement"] == s(&format!("${{1}}:{shipped_port}")) {
                r["replacement"] = s(&format!("${{1}}:{port}"));
            }
        }
    }
    to_yaml(&c)
}

/// deploy/alertmanager.yml sending to `slack` and, through `pushover` (an
/// intercepting proxy with a certificate for api.pushover.net signed by `ca`), to
/// Pushover.
fn alertmanager_config(slack: &CaptureServer, pushover: &CaptureServer, ca: &str) -> String {
    let mut c = shipped("deploy/alertmanager.yml");
    c["global"]["slack_api_url"] = s(&slack.url("/services/T000/B000/XXXX"));
    c["templates"] = Yaml::Sequence(vec![s(&repo_root()
        .join("deploy/templates/*.tmpl")
        .display()
        .to_string())]);
    c["route"]["group_wait"] = s("1s");
    c["route"]["group_interval"] = s("2s");
    let receivers = c["receivers"].as_sequence_mut().unwrap();
    let pushover_receiver = receivers
        .iter_mut()
        .find(|r| r["pushover_configs"].is_sequence())
        .unwrap();
    let http: Yaml = serde_yaml_ng::from_str(&format!(
        "proxy_url: {}\ntls_config:\n  ca_file: {ca}\n",
        pushover.url("")
    ))
    .unwrap();
    pushover_receiver["pushover_configs"][0]["http_config"] = http;
    to_yaml(&c)
}

/// A Slack and a Pushover stand-in.
struct Receivers {
    slack: CaptureServer,
    pushover: CaptureServer,
}

impl Receivers {
    fn start(pki: &TestPki) -> Receivers {
        Receivers {
            slack: CaptureServer::start(),
            pushover: CaptureServer::start_tls_proxy(
                &pki.file("pushover.crt"),
                &pki.file("pushover.key"),
            ),
        }
    }

    fn config(&self, pki: &TestPki) -> String {
        alertmanager_config(&self.slack, &self.pushover, &pki.file("ca.crt"))
    }

    /// The Slack messages whose title starts with `prefix`, checked against Slack's format.
    fn slack_titled(&self, prefix: &str) -> Vec<Json> {
        self.slack
            .requests()
            .iter()
            .map(check_slack_request)
            .filter(|m| {
                m["attachments"][0]["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix))
            })
            .collect()
    }

    /// The Pushover messages whose title starts with `prefix`, checked against Pushover's API.
    fn pushover_titled(&self, prefix: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        self.pushover
            .requests()
            .iter()
            .inspect(|r| assert_eq!(r.header("host"), Some("api.pushover.net")))
            .map(|r| check_pushover_request(&as_form(r)))
            .filter(|f| f.get("title").is_some_and(|t| t.starts_with(prefix)))
            .collect()
    }
}

/// Alertmanager 0.25 sends Pushover's parameters in the URL's query (an empty
/// `text/plain` POST, which Pushover's API accepts as well); the same request with
/// them as a form body, for [`check_pushover_request`].
fn as_form(request: &Captured) -> Captured {
    let mut r = request.clone();
    if let Some((path, query)) = request.path.split_once('?') {
        assert!(
            request.body.is_empty(),
            "parameters in the query and a body"
        );
        r.path = path.to_string();
        r.body = query.as_bytes().to_vec();
        r.headers.retain(|(k, _)| k != "content-type");
        r.headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    r
}

// ---------------------------------------------------------------------------

fn run(services_side: Side, main_side: Side) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let host_ips: Vec<Ipv4Addr> = HOSTS.iter().map(|h| h.1).collect();

    // The EC2 hosts: node_exporter (swarm-2's is the synthetic one) and cAdvisor.
    let node_port = free_port_on(&host_ips);
    let at = |ip: Ipv4Addr, port: u16| SocketAddr::from((ip, port));
    let _node1 = NodeExporter::start_on(at(HOSTS[0].1, node_port));
    let cpu = CpuHost::start(at(HOSTS[1].1, node_port)).expect("swarm-2 node exporter");
    let _node3 = NodeExporter::start_on(at(HOSTS[2].1, node_port));
    let cadvisor_port = free_port_on(&host_ips);
    let _cadvisors: Vec<Exporter> = host_ips
        .iter()
        .map(|ip| fleet::start_cadvisor(at(*ip, cadvisor_port)).expect("cadvisor"))
        .collect();
    let moto = Moto::start();
    for (name, ip) in HOSTS {
        moto.run_instance(&ip.to_string(), &[("Name", name)]);
    }

    // The tasks of myservice, in Swarm DNS.
    let task_port = free_port_on(&TASKS);
    let tasks: Vec<ServiceTask> = TASKS
        .iter()
        .map(|ip| ServiceTask::start(at(*ip, task_port), 60).expect("task"))
        .collect();
    let task_addrs: Vec<String> = TASKS.iter().map(|ip| format!("{ip}:{task_port}")).collect();
    let hosts_file = |ips: &[Ipv4Addr]| -> String {
        ips.iter()
            .map(|ip| format!("{ip} tasks.myservice\n"))
            .collect()
    };
    let dns = match services_side {
        Side::Promflow => Dnsmasq::start(&hosts_file(&TASKS), &[]),
        Side::Prometheus => Dnsmasq::start_port_53(&hosts_file(&TASKS)),
    };

    // Alertmanager, and the built-in notifier's copy of the same file.
    let pki = TestPki::generate();
    pki.leaf(
        "pushover",
        "ca",
        "api.pushover.net",
        "subjectAltName=DNS:api.pushover.net\nextendedKeyUsage=serverAuth\n",
        2,
    );
    let via_am = Receivers::start(&pki);
    let am = Alertmanager::start_with_config(&via_am.config(&pki));
    let builtin = Receivers::start(&pki);
    let files = tempfile::tempdir().unwrap();
    let builtin_config = files.path().join("alertmanager.yml");
    std::fs::write(&builtin_config, builtin.config(&pki)).unwrap();
    let rules_dir = files.path().join("queries");
    std::fs::create_dir(&rules_dir).unwrap();
    for f in shipped("deploy/main.yml")["rule_files"]
        .as_sequence()
        .unwrap()
    {
        let path = repo_root().join("deploy").join(f.as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            rules_dir.join(path.file_name().unwrap()),
            scaled_rules(&text),
        )
        .unwrap();
    }

    let nameserver_flag = format!("--discovery.dns.nameserver={}", dns.addr());
    let services = Server::start(
        services_side,
        |own| services_config(own, task_port),
        &[&nameserver_flag],
        Some(dns.ip()),
    );
    let addrs = MainAddrs {
        rules_dir: &rules_dir,
        services: services.addr().to_string(),
        alertmanager: am.addr().to_string(),
        moto: &moto,
        node_port,
        cadvisor_port,
    };
    let builtin_flag = format!("--alertmanager.config.file={}", builtin_config.display());
    let main = Server::start(
        main_side,
        |own| main_config(own, &addrs),
        &[&builtin_flag],
        None,
    );
    eprintln!("stack up after {:?}", started.elapsed());

    // 1. The tasks are found through DNS and federated to main with their own job
    //    and instance (honor_labels), plus the services' external label.
    let all_tasks = set(&task_addrs);
    assert!(
        wait_until(WAIT, || label_values(
            &main,
            r#"up{job="myservice"} == 1"#,
            "instance"
        ) == all_tasks),
        "main has no up == 1 of the three tasks: {:?}\nservices targets: {:?}",
        series(&main, r#"up{job="myservice"}"#),
        targets(&services)
    );
    let requests = wait_for(WAIT, || {
        let got = series(&main, r#"http_requests_total{job="myservice"}"#);
        (got.len() == 12).then_some(got)
    })
    .unwrap_or_else(|| {
        panic!(
            "federated requests: {:?}",
            series(&main, "http_requests_total")
        )
    });
    for m in &requests {
        assert!(all_tasks.contains(m["instance"].as_str().unwrap()), "{m:?}");
        assert_eq!(m["promflow"], "services", "{m:?}");
        assert!(
            !m.contains_key("exported_job") && !m.contains_key("exported_instance"),
            "{m:?}"
        );
    }
    let buckets = series(
        &main,
        r#"http_request_duration_seconds_bucket{job="myservice",function="login"}"#,
    );
    assert_eq!(buckets.len(), 3 * 6, "{buckets:?}");

    // 2. EC2: node_exporter on every host, cAdvisor on the swarm- hosts, named after
    //    their Name tag; cgroups without a container name dropped.
    let names = |n: &[&str]| -> BTreeSet<String> { n.iter().map(|s| s.to_string()).collect() };
    assert!(
        wait_until(WAIT, || instances_of(&main, "node")
            == names(&["swarm-1", "swarm-2", "db-1"])
            && instances_of(&main, "cadvisor")
                == names(&["swarm-1", "swarm-2"])),
        "main's EC2 targets: {:?}",
        targets(&main)
    );
    assert!(wait_until(WAIT, || !series(
        &main,
        r#"container_last_seen{job="cadvisor"}"#
    )
    .is_empty()));
    assert_eq!(
        series(&main, r#"container_last_seen{name=""}"#),
        Vec::<serde_json::Map<String, Json>>::new()
    );

    // 3. swarm-2's CPU goes over 90%; the alert is pending for `for` (20s here).
    cpu.set_busy(true);
    let busy_at = Instant::now();

    // 4. While it is pending: a task removed from DNS loses its target on the
    //    services instance; on main its federated series stop being updated (they
    //    carry timestamps, so no staleness marks them: they leave queries after the
    //    lookback delta, 5m, as in Prometheus). It is not a down service.
    dns.set_hosts(&hosts_file(&TASKS[..2]));
    let two_tasks = set(&task_addrs[..2]);
    let age = |cmp: &str| {
        label_values(
            &main,
            &format!(r#"time() - timestamp(up{{job="myservice"}}) {cmp} 4"#),
            "instance",
        )
    };
    assert!(
        wait_until(WAIT, || instances_of(&services, "myservice") == two_tasks
            && age(">") == set(&task_addrs[2..])
            && age("<") == two_tasks),
        "task 3 still there: services {:?}, main {:?}",
        targets(&services),
        main.query(r#"time() - timestamp(up{job="myservice"})"#)
    );
    assert_eq!(
        series(&main, r#"ALERTS{alertname="ServiceDown",job="myservice"}"#),
        Vec::<serde_json::Map<String, Json>>::new(),
        "a task removed from DNS is not down"
    );

    // 5. The CPU alert fires on main, not before `for`, and reaches Alertmanager and
    //    the built-in notifier, then Slack and Pushover.
    // (The real node_exporters report this machine's CPU, which may be busy too: only
    // swarm-2's alert is looked at.)
    let cpu_firing =
        r#"ALERTS{alertname="HostHighCpuUsage",alertstate="firing",instance="swarm-2"}"#;
    assert!(
        wait_until(WAIT, || !series(&main, cpu_firing).is_empty()),
        "HostHighCpuUsage did not fire: {:?}",
        main.query(r#"1 - avg by (job, instance) (rate(node_cpu_seconds_total{mode="idle"}[5s]))"#)
    );
    let fired_after = busy_at.elapsed();
    assert!(
        fired_after >= Duration::from_secs(20),
        "fired {fired_after:?} after the load began"
    );
    assert_eq!(
        label_values(&main, cpu_firing, "instance"),
        names(&["swarm-2"])
    );
    let in_alertmanager = |alerts: Json| {
        alerts.as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == "HostHighCpuUsage" && a["labels"]["instance"] == "swarm-2"
        })
    };
    assert!(
        wait_until(WAIT, || in_alertmanager(am.alerts())),
        "not in Alertmanager: {}",
        am.alerts()
    );
    let receivers: Vec<&Receivers> = match main_side {
        Side::Promflow => {
            let alerts = || serde_json::from_str(&main.get_ok("/api/v2/alerts")).unwrap();
            assert!(
                wait_until(WAIT, || in_alertmanager(alerts())),
                "not in the built-in notifier"
            );
            vec![&via_am, &builtin]
        }
        Side::Prometheus => vec![&via_am],
    };
    let title = "HostHighCpuUsage on swarm-2 (node) is";
    for r in &receivers {
        assert!(
            wait_until(WAIT, || !r.slack_titled(title).is_empty()
                && !r.pushover_titled(title).is_empty()),
            "no Slack and Pushover message for the CPU alert: {:?}",
            r.slack
                .requests()
                .iter()
                .map(check_slack_request)
                .collect::<Vec<_>>()
        );
    }

    // 6. The load ends: the alert resolves, and each receiver got one firing and one
    //    resolved message.
    cpu.set_busy(false);
    assert!(
        wait_until(WAIT, || series(
            &main,
            r#"ALERTS{alertname="HostHighCpuUsage",instance="swarm-2"}"#
        )
        .is_empty()),
        "HostHighCpuUsage did not resolve"
    );
    for r in &receivers {
        assert!(
            wait_until(WAIT, || r.slack_titled(title).len() >= 2
                && r.pushover_titled(title).len() >= 2),
            "no resolved message: {:?}",
            r.slack_titled(title)
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    for r in &receivers {
        let slack = r.slack_titled(title);
        assert_eq!(
            slack.len(),
            2,
            "Slack: once firing, once resolved: {slack:#?}"
        );
        for (message, state, color, mark) in [
            (&slack[0], "firing", "danger", ":fire:"),
            (&slack[1], "resolved", "good", ":white_check_mark:"),
        ] {
            let a = &message["attachments"][0];
            assert_eq!(message["channel"], "#alerts");
            assert_eq!(a["title"], format!("{title} {state}"));
            assert_eq!(a["fallback"], format!("{title} {state}"));
            assert_eq!(a["title_link"], CPU_RUNBOOK);
            assert_eq!(a["color"], color);
            assert_eq!(
                a["text"],
                format!("{mark} CPU over 90% on swarm-2 (<{CPU_RUNBOOK}|runbook>)\n")
            );
        }
        let pushover = r.pushover_titled(title);
        assert_eq!(
            pushover.len(),
            2,
            "Pushover: once firing, once resolved: {pushover:#?}"
        );
        for (form, state, priority) in [
            (&pushover[0], "firing", "1"),
            (&pushover[1], "resolved", "0"),
        ] {
            assert_eq!(form["title"], format!("{title} {state}"));
            assert_eq!(form["url"], CPU_RUNBOOK);
            assert_eq!(form["url_title"], "Runbook");
            assert_eq!(form["priority"], priority);
            assert!(
                form["message"]
                    .starts_with("CPU over 90% on swarm-2\nCPU of swarm-2 (job node) has been "),
                "{form:?}"
            );
            assert_eq!(form["user"], "uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
        }
    }
    if receivers.len() == 2 {
        // The built-in notifier says what Alertmanager says.
        assert_eq!(builtin.slack_titled(title), via_am.slack_titled(title));
        assert_eq!(
            builtin.pushover_titled(title),
            via_am.pushover_titled(title)
        );
    }

    // 7. Online devices: 3 x 60 (the removed task's last value still counts on
    //    main), then 10 + 10 + 60 < 100.
    tasks[0].set_devices(10);
    tasks[1].set_devices(10);
    assert!(
        wait_until(WAIT, || !series(
            &main,
            r#"ALERTS{alertname="OnlineDevicesLow",alertstate="firing",job="myservice"}"#
        )
        .is_empty()),
        "OnlineDevicesLow did not fire: {:?}\nALERTS: {:?}\nlate samples: {:?}",
        main.query(r#"sum by (job) (online_devices)"#),
        series(&main, "ALERTS"),
        main.get_ok("/metrics")
            .lines()
            .filter(|l| l.starts_with("promflow_samples_late_total"))
            .collect::<Vec<_>>()
    );
    assert!(
        wait_until(WAIT, || !via_am
            .slack_titled("OnlineDevicesLow (myservice) is firing")
            .is_empty()),
        "no Slack message for OnlineDevicesLow: {:?}",
        via_am
            .slack
            .requests()
            .iter()
            .map(check_slack_request)
            .collect::<Vec<_>>()
    );
    tasks[0].set_devices(60);
    tasks[1].set_devices(60);

    // 8. A task that is in DNS but does not answer is down.
    tasks[1].set_down(true);
    let down = format!(
        r#"ALERTS{{alertname="ServiceDown",alertstate="firing",job="myservice",instance="{}"}}"#,
        task_addrs[1]
    );
    assert!(
        wait_until(WAIT, || !series(&main, &down).is_empty()),
        "ServiceDown did not fire for the hung task: {:?}",
        series(&main, r#"up{job="myservice"}"#)
    );
    assert!(wait_until(WAIT, || !via_am
        .slack_titled(&format!(
            "ServiceDown on {} (myservice) is firing",
            task_addrs[1]
        ))
        .is_empty()));
    eprintln!(
        "{services_side:?} services, {main_side:?} main: done in {:?}",
        started.elapsed()
    );
}
