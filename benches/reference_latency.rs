//! Alert latency in the reference setup (deploy/README.md, issue 16 item 4): from the
//! scrape that makes `HostHighCpuUsage` true to (a) the alert's state in the engine,
//! (b) Alertmanager holding it, (c) the Slack request, for promflow as the main
//! instance with `--rules.evaluation=on-arrival`, promflow at its interval and
//! Prometheus 2.42, side by side in one stack.
//!
//! The stack is the one of tests/reference_stack.rs (tests/common/reference.rs): the
//! shipped files with addresses changed, scrape intervals 1s, discovery refreshes
//! 1s/5s and rule ranges and `for:` divided by 60 — but the evaluation intervals are
//! not scaled: each main runs at 30s (`deploy/main.yml`'s) or 1m (Prometheus's
//! default), and `HostHighCpuUsage` has `for: 0s` (the variant of item 4), so the alert
//! is active as soon as an evaluation sees the expression true. One promflow services
//! instance with its three tasks in dnsmasq, moto with the EC2 hosts (real
//! node_exporters on swarm-1 and db-1), and five main instances federating it and
//! discovering the hosts: promflow on arrival, promflow at 30s and 1m, Prometheus 2.42
//! at 30s and 1m. Each main sends to two Alertmanager 0.25 of its own, each with its
//! own Slack and Pushover stand-ins: one with the shipped `alertmanager.yml`
//! (group_wait 30s), one with `group_wait: 0s` — Alertmanager's group_wait is the
//! largest part of (c) otherwise.
//!
//! Each trial adds an EC2 host `cpu-N` (a [`CpuHost`] on 127.0.0.(100+N)) to moto; once
//! every main scrapes it and its 5s window is full of idle samples, its CPU goes 98%
//! busy. A new host per trial gives a new alert group in every Alertmanager (so the
//! shipped group_interval of 5m never applies) and a new scrape phase; trials start
//! at a random moment of successive 20s slots, so the load begins at a random phase of
//! every evaluation cycle, and overlap.
//!
//! The start of a measure, per main: the first scrape of `cpu-N` after which the
//! expression is true, as that main evaluates it (`expr` at the sample's timestamp +
//! 500 ms, after the arrival and the expiry around it), and when the exporter made that
//! body (it writes it right after), matched by its `user` counter value. (a) and (b)
//! are the first poll (every 50 ms, one thread per main) that shows the alert in the
//! main's `/api/v1/alerts` (pending or firing) and in each of its Alertmanagers'
//! `/api/v2/alerts`; for (b) the Alertmanager's `updatedAt` (when it received the
//! alert) when that is earlier. (c) is when each Slack stand-in read the firing
//! request.
//!
//! promflow as main trails by the watermark's hold-back for the federated samples
//! (README, "Late samples and exposed timestamps"): their largest lag, under the
//! shorter of the services' scrape interval and main's federation interval (1s here),
//! plus 500 ms. `REFERENCE_LATENCY_SERVICES_SCRAPE` sets the services' scrape interval
//! (default 1s, as in the test; 15s is deploy/services.yml's).
//!
//! Run: `cargo bench --bench reference_latency` (env `REFERENCE_LATENCY_TRIALS`,
//! default 10, at most 30). Needs dnsmasq, moto (`MOTO_SERVER_BIN`), Alertmanager 0.25,
//! Prometheus 2.42, node_exporter. Everything on loopback; about 6 minutes for 10 trials.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::alertmanager::Alertmanager;
use common::fleet::CpuHost;
use common::reference::{
    main_config, pushover_pki, shipped, to_yaml, write_scaled_rules, Ec2Hosts, MainAddrs,
    Receivers, Server, ServicesSide, Side,
};
use common::tls::TestPki;
use common::Peer;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// One main instance under test.
struct System {
    name: &'static str,
    side: Side,
    evaluation_interval: &'static str,
    on_arrival: bool,
}

const SYSTEMS: [System; 5] = [
    System {
        name: "promflow on-arrival",
        side: Side::Promflow,
        evaluation_interval: "30s",
        on_arrival: true,
    },
    System {
        name: "promflow 30s",
        side: Side::Promflow,
        evaluation_interval: "30s",
        on_arrival: false,
    },
    System {
        name: "promflow 1m",
        side: Side::Promflow,
        evaluation_interval: "1m",
        on_arrival: false,
    },
    System {
        name: "Prometheus 30s",
        side: Side::Prometheus,
        evaluation_interval: "30s",
        on_arrival: false,
    },
    System {
        name: "Prometheus 1m",
        side: Side::Prometheus,
        evaluation_interval: "1m",
        on_arrival: false,
    },
];

/// Between trial starts (each starts at a random moment of its slot).
const SLOT: Duration = Duration::from_secs(20);
/// How long a trial waits for every system's Slack messages after the load begins.
const TRIAL_WAIT: Duration = Duration::from_secs(150);
const POLL: Duration = Duration::from_millis(50);
const ALERT: &str = "HostHighCpuUsage";

/// A running main with its two Alertmanagers (shipped, group_wait 0s) and their
/// receivers.
struct Main {
    server: Server,
    ams: [Alertmanager; 2],
    receivers: [Receivers; 2],
}

/// Polls one main's `/api/v1/alerts` and its Alertmanagers' `/api/v2/alerts` every
/// [`POLL`] while `active`, keeping when each `HostHighCpuUsage` instance was first
/// seen in each: [engine, shipped Alertmanager, group_wait 0s Alertmanager]. For the
/// Alertmanagers, their `updatedAt` (when they received it) if earlier than the poll.
struct Watcher {
    first: Arc<Mutex<BTreeMap<String, [Option<Instant>; 3]>>>,
}

impl Watcher {
    fn start(
        engine: String,
        ams: [String; 2],
        active: Arc<AtomicBool>,
        anchor: (Instant, SystemTime),
    ) -> Watcher {
        let first: Arc<Mutex<BTreeMap<String, [Option<Instant>; 3]>>> = Arc::default();
        let record = first.clone();
        // Ends when the watcher is dropped.
        std::thread::spawn(move || {
            while Arc::strong_count(&record) > 1 {
                std::thread::sleep(POLL);
                if !active.load(Ordering::SeqCst) {
                    continue;
                }
                let polled = Instant::now();
                let mut seen: Vec<(usize, String, Instant)> = Vec::new();
                let engine = get_json(&engine);
                for name in alert_instances(&engine["data"]["alerts"]) {
                    seen.push((0, name, polled));
                }
                for (k, url) in ams.iter().enumerate() {
                    let polled = Instant::now();
                    let alerts = get_json(url);
                    for a in alerts.as_array().map(|a| a.as_slice()).unwrap_or_default() {
                        if let Some(name) = alert_instances(&Json::Array(vec![a.clone()])).pop() {
                            let updated =
                                a["updatedAt"].as_str().and_then(|u| instant_of(u, anchor));
                            seen.push((k + 1, name, updated.map_or(polled, |u| u.min(polled))));
                        }
                    }
                }
                let mut first = record.lock().unwrap();
                for (k, name, at) in seen {
                    first.entry(name).or_default()[k].get_or_insert(at);
                }
            }
        });
        Watcher { first }
    }

    fn first(&self, instance: &str) -> [Option<Instant>; 3] {
        self.first
            .lock()
            .unwrap()
            .get(instance)
            .copied()
            .unwrap_or_default()
    }
}

struct Trial {
    n: usize,
    name: String,
    host: CpuHost,
    instance_id: String,
    warm_until: Option<Instant>,
    busy_at: Option<Instant>,
    /// When each main's Slack stand-ins got the firing message.
    slack: Vec<[Option<Instant>; 2]>,
    done: bool,
}

/// Latencies of one system in one trial (ms): engine, shipped Alertmanager,
/// group_wait 0s Alertmanager, Slack through each.
type Row = [Option<f64>; 5];
const COLUMNS: [&str; 5] = [
    "(a) alert in the engine",
    "(b) in Alertmanager (shipped)",
    "(b) in Alertmanager (group_wait 0s)",
    "(c) Slack, shipped group_wait 30s",
    "(c) Slack, group_wait 0s",
];

/// Alertmanager config: deploy/alertmanager.yml sending to `r`, with the route's
/// timers as shipped (`fast` false) or group_wait 0s (and the test's group_interval).
fn am_config(r: &Receivers, pki: &TestPki, fast: bool) -> String {
    let mut c: Yaml = serde_yaml_ng::from_str(&r.config(pki)).unwrap();
    let route = &shipped("deploy/alertmanager.yml")["route"];
    for key in ["group_wait", "group_interval", "repeat_interval"] {
        c["route"][key] = route[key].clone();
    }
    if fast {
        c["route"]["group_wait"] = Yaml::String("0s".into());
    }
    to_yaml(&c)
}

/// `config` (main's) with `system`'s evaluation interval.
fn with_interval(config: String, system: &System) -> String {
    let mut c: Yaml = serde_yaml_ng::from_str(&config).unwrap();
    c["global"]["evaluation_interval"] = Yaml::String(system.evaluation_interval.into());
    to_yaml(&c)
}

/// Rewrites the scaled host.yml in `dir` with `for: 0s` on the CPU alert; returns its
/// expression.
fn cpu_alert_for_zero(dir: &std::path::Path) -> String {
    let path = dir.join("host.yml");
    let mut rules: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let rule = rules["groups"][0]["rules"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["alert"] == Yaml::String(ALERT.into()))
        .unwrap();
    rule["for"] = Yaml::String("0s".into());
    let expr = rule["expr"].as_str().unwrap().to_string();
    std::fs::write(&path, to_yaml(&rules)).unwrap();
    expr
}

/// Instances with an active `HostHighCpuUsage` in `alerts` (`[{labels, state}]`).
fn alert_instances(alerts: &Json) -> Vec<String> {
    alerts
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|a| a["labels"]["alertname"] == ALERT)
        .filter(|a| a["state"] != "inactive" && a["status"]["state"] != "suppressed")
        .filter_map(|a| a["labels"]["instance"].as_str().map(str::to_string))
        .collect()
}

fn get_json(url: &str) -> Json {
    match common::http::get(url) {
        Ok(r) if r.status == 200 => serde_json::from_str(&r.body).unwrap_or(Json::Null),
        _ => Json::Null,
    }
}

/// The `data` of an instant query (at `time_ms` if given), `None` if the server did
/// not answer in time (a debug build on a loaded machine may not).
fn query(peer: &Peer, expr: &str, time_ms: Option<i64>) -> Option<Json> {
    let time = time_ms.map(|t| format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000)));
    let mut params = vec![("query", expr)];
    if let Some(t) = &time {
        params.push(("time", t));
    }
    let v = get_json(&peer.url(&common::http::with_query("/api/v1/query", &params)));
    (v["status"] == "success").then(|| v["data"].clone())
}

/// An RFC 3339 time of this machine's clock as an [`Instant`], through `anchor`.
fn instant_of(rfc3339: &str, anchor: (Instant, SystemTime)) -> Option<Instant> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let t = SystemTime::UNIX_EPOCH
        + Duration::from_nanos(u64::try_from(t.timestamp_nanos_opt()?).ok()?);
    match t.duration_since(anchor.1) {
        Ok(after) => Some(anchor.0 + after),
        Err(e) => anchor.0.checked_sub(e.duration()),
    }
}

/// The moment the exporter made the body of the first scrape by `main` after which
/// `expr` holds for `trial`'s host, and that sample's timestamp.
fn crossing(main: &Peer, expr: &str, trial: &Trial) -> Option<Instant> {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - trial.busy_at?.elapsed().as_millis() as i64
        - 2000;
    let samples = query(
        main,
        &format!(
            r#"node_cpu_seconds_total{{instance="{}",mode="user",cpu="0"}}[4m]"#,
            trial.name
        ),
        None,
    )?;
    let values = samples["result"][0]["values"].as_array()?.clone();
    let made = trial.host.made();
    for v in values {
        let ts = (v[0].as_f64()? * 1000.0).round() as i64;
        if ts < since {
            continue;
        }
        let at = query(main, expr, Some(ts + 500))?;
        let holds = at["result"]
            .as_array()?
            .iter()
            .any(|r| r["metric"]["instance"] == trial.name.as_str());
        if holds {
            let value: f64 = v[1].as_str()?.parse().ok()?;
            return made
                .iter()
                .find(|(_, user)| user.parse::<f64>().ok() == Some(value))
                .map(|(at, _)| *at);
        }
    }
    None
}

fn ms(from: Instant, to: Option<Instant>) -> Option<f64> {
    to.map(|t| {
        if t >= from {
            t.duration_since(from).as_secs_f64() * 1000.0
        } else {
            -(from.duration_since(t).as_secs_f64() * 1000.0)
        }
    })
}

fn show(ms: f64) -> String {
    if ms.abs() >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms.abs() >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn main() {
    let trials: usize = std::env::var("REFERENCE_LATENCY_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .clamp(1, 30);
    let command = format!(
        "REFERENCE_LATENCY_TRIALS={trials} REFERENCE_LATENCY_SERVICES_SCRAPE={} cargo bench --bench reference_latency ({})",
        std::env::var("REFERENCE_LATENCY_SERVICES_SCRAPE").unwrap_or_else(|_| "1s".into()),
        std::env::args().next().unwrap_or_default()
    );
    let started = Instant::now();
    let trial_ip = |n: usize| Ipv4Addr::new(127, 0, 0, 100 + n as u8);
    let trial_ips: Vec<Ipv4Addr> = (1..=trials).map(trial_ip).collect();

    let hosts = Ec2Hosts::start(&trial_ips);
    let services_scrape =
        std::env::var("REFERENCE_LATENCY_SERVICES_SCRAPE").unwrap_or_else(|_| "1s".into());
    let services = ServicesSide::start(Side::Promflow, &services_scrape);
    let pki = pushover_pki();
    let files = tempfile::tempdir().unwrap();
    let rules_dir = files.path().join("queries");
    std::fs::create_dir(&rules_dir).unwrap();
    write_scaled_rules(&rules_dir);
    let expr = cpu_alert_for_zero(&rules_dir);

    let mains: Vec<Main> = SYSTEMS
        .iter()
        .map(|system| {
            let receivers = [Receivers::start(&pki), Receivers::start(&pki)];
            let ams = [
                Alertmanager::start_with_config(&am_config(&receivers[0], &pki, false)),
                Alertmanager::start_with_config(&am_config(&receivers[1], &pki, true)),
            ];
            let addrs = MainAddrs {
                rules_dir: &rules_dir,
                services: services.server.addr().to_string(),
                alertmanagers: ams.iter().map(|am| am.addr().to_string()).collect(),
                moto: &hosts.moto,
                node_port: hosts.node_port,
                cadvisor_port: hosts.cadvisor_port,
            };
            let args: &[&str] = if system.on_arrival {
                &["--rules.evaluation=on-arrival", "--log.level=warn"]
            } else {
                &["--log.level=warn"]
            };
            let server = Server::start(
                system.side,
                |own| with_interval(main_config(own, &addrs), system),
                args,
                None,
            );
            Main {
                server,
                ams,
                receivers,
            }
        })
        .collect();
    eprintln!("stack up after {:?}", started.elapsed());
    let anchor = (Instant::now(), SystemTime::now());
    let active = Arc::new(AtomicBool::new(false));
    let watchers: Vec<Watcher> = mains
        .iter()
        .map(|m| {
            Watcher::start(
                m.server.url("/api/v1/alerts"),
                [0, 1].map(|k| m.ams[k].url("/api/v2/alerts")),
                active.clone(),
                anchor,
            )
        })
        .collect();
    let first_slot = Instant::now();
    let launch_at: Vec<Instant> = (0..trials)
        .map(|i| first_slot + SLOT * i as u32 + SLOT.mul_f64(fastrand::f64()))
        .collect();

    let mut running: Vec<Trial> = Vec::new();
    let mut tick = 0u64;
    let mut rows: Vec<(usize, Vec<Row>)> = Vec::new();
    let deadline = launch_at.last().copied().unwrap_or(first_slot) + TRIAL_WAIT + SLOT * 3;
    while rows.len() < trials && Instant::now() < deadline {
        let now = Instant::now();
        // Launch.
        let launched = rows.len() + running.len();
        if launched < trials && now >= launch_at[launched] {
            let n = launched + 1;
            let name = format!("cpu-{n}");
            let host = CpuHost::start(SocketAddr::from((trial_ip(n), hosts.node_port)))
                .expect("trial host");
            let instance_id = hosts
                .moto
                .run_instance(&trial_ip(n).to_string(), &[("Name", &name)]);
            running.push(Trial {
                n,
                name,
                host,
                instance_id,
                warm_until: None,
                busy_at: None,
                slack: vec![[None; 2]; SYSTEMS.len()],
                done: false,
            });
        }
        // Warm up: every main scrapes the host (checked every 10th tick), then its
        // window fills.
        tick += 1;
        for t in running.iter_mut() {
            match t.warm_until {
                None if tick.is_multiple_of(10) => {
                    let up = format!(r#"up{{job="node",instance="{}"}} == 1"#, t.name);
                    // A main that does not answer is not waited for; its columns
                    // stay empty.
                    if mains.iter().all(|m| {
                        query(&m.server, &up, None)
                            .is_none_or(|d| d["result"].as_array().is_some_and(|r| !r.is_empty()))
                    }) {
                        t.warm_until = Some(now + Duration::from_secs(7));
                    }
                }
                Some(warm) if t.busy_at.is_none() && now >= warm => {
                    t.host.set_busy(true);
                    t.busy_at = Some(Instant::now());
                }
                _ => {}
            }
        }
        // Observe.
        active.store(
            running.iter().any(|t| t.busy_at.is_some()),
            Ordering::SeqCst,
        );
        for t in running.iter_mut().filter(|t| t.busy_at.is_some()) {
            let title = format!("{ALERT} on {} (node) is firing", t.name);
            for (i, m) in mains.iter().enumerate() {
                for (k, r) in m.receivers.iter().enumerate() {
                    if t.slack[i][k].is_none() {
                        t.slack[i][k] = r
                            .slack
                            .requests()
                            .iter()
                            .find(|c| String::from_utf8_lossy(&c.body).contains(&title))
                            .map(|c| c.received_at);
                    }
                }
            }
        }
        // Finish.
        for t in running.iter_mut() {
            let Some(busy_at) = t.busy_at else { continue };
            let complete = (0..SYSTEMS.len()).all(|i| {
                t.slack[i].iter().all(Option::is_some)
                    && watchers[i].first(&t.name).iter().all(Option::is_some)
            });
            if !(complete || busy_at.elapsed() > TRIAL_WAIT) {
                continue;
            }
            let mut row = Vec::new();
            let mut line = format!("trial {:>2} ({}):", t.n, t.name);
            for (i, m) in mains.iter().enumerate() {
                let [engine, am, am_fast] = watchers[i].first(&t.name);
                let [slack, slack_fast] = t.slack[i];
                let r: Row = match crossing(&m.server, &expr, t) {
                    Some(from) => [engine, am, am_fast, slack, slack_fast].map(|at| ms(from, at)),
                    None => [None; 5],
                };
                let cells: Vec<String> = r.iter().map(|v| v.map_or("-".into(), show)).collect();
                line.push_str(&format!("  {}: {}", SYSTEMS[i].name, cells.join("/")));
                row.push(r);
            }
            println!("{line}");
            t.host.set_busy(false);
            hosts.moto.terminate_instance(&t.instance_id);
            t.done = true;
            rows.push((t.n, row));
        }
        running.retain(|t| !t.done);
        std::thread::sleep(POLL);
    }

    for (m, system) in mains.iter().zip(&SYSTEMS) {
        if !matches!(common::http::get(&m.server.url("/-/ready")), Ok(r) if r.status == 200) {
            println!(
                "{} (pid {}) does not answer /-/ready at the end",
                system.name,
                m.server.pid()
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("command: {command}");
    println!(
        "{} build, {} CPUs, load average at the end {}, {} trials in {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        rows.len(),
        started.elapsed()
    );
    println!(
        "services instance scraping every {services_scrape} (main federates it every 1s); from the scrape that makes {ALERT} (for: 0s) true, p50 / max over trials (n):"
    );
    println!("| main | {} |", COLUMNS.join(" | "));
    println!("|{}", " --- |".repeat(COLUMNS.len() + 1));
    for (i, system) in SYSTEMS.iter().enumerate() {
        let mut cells = Vec::new();
        for k in 0..COLUMNS.len() {
            let mut v: Vec<f64> = rows.iter().filter_map(|(_, r)| r[i][k]).collect();
            v.sort_by(f64::total_cmp);
            cells.push(if v.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{} / {} ({})",
                    show(common::percentile(&v, 50.0)),
                    show(*v.last().unwrap()),
                    v.len()
                )
            });
        }
        println!("| {} | {} |", system.name, cells.join(" | "));
    }
    drop(mains);
    drop(services);
}
