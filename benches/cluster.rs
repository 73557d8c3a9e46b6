//! Issue 14's cluster figures: one fleet scraped by 1, 2 and 3 promflow processes of
//! one cluster (`--cluster.processes`), each process with `CL_WORKERS` (1) dataflow
//! workers, all on this machine.
//!
//! The fleet (in this process, on loopback): `CL_SERIES` (100,000) bulk series
//! (`side_by_side::bench_families_body`) over `CL_TARGETS` (50) targets in 10 jobs, scraped every
//! `CL_INTERVAL` (5) seconds, and a recording rule per bench family evaluated at that
//! interval, `sum by (job) (rate(node_bench_family<f>_total[1m]))`, together over every
//! series, registered on the rule host (the first process) and spread over every
//! worker of the cluster (`dataflows::render::spread`). With `CL_RULES=owned`, the rules
//! are `sum by (job) (rate({__name__=~"node_bench_family<f>_total"}[1m]) * 2)` instead:
//! the same result (doubled) of a shape that is not spread (a selector without a
//! `__name__="…"` matcher), so each rule runs whole (incrementally) on one owner
//! worker, placed over every process's workers (`dataflows::render`, "Processes").
//! (Before the spread of aggregations over per-series plans, `rate(…) * 2` with the
//! plain name was that shape, which the README's "Rules owned" rows ran.)
//! Rules whose records carry a label set per series (what the labels dictionary of
//! `dataflows::render::dictionary` codes): with `CL_RULES=union`, the per-series
//! `rate(node_bench_family<f>_total[1m]) > 0` (spread: each worker sends the owner
//! its series' elements); with `CL_RULES=join`, the one-to-one
//! `rate(node_bench_family<f>_total[1m]) / rate(node_bench_family<f ^ 1>_total[1m])`
//! (spread: both sides to the worker of their match group, the joined elements to the
//! owner). Each of these records a series per member of its family.
//!
//! For each cluster size, from the start of its processes: wait until the cluster
//! answers `count(up)` with every target and every rule's 10 groups (or members), then
//! `CL_WARMUP` (20) seconds; then over `CL_SECONDS` (60):
//! - CPU (user + system, `/proc/<pid>/stat`) of all processes together, per million
//!   samples ingested (the sum of their `promflow_samples_ingested_total`), and each
//!   process's share;
//! - bytes exchanged between the processes (timely's connections: `ss -tin` counts
//!   `bytes_sent` of every socket to or from a hostfile port, each direction once, on
//!   its sender) per sample ingested;
//! - RSS of each process at the end, per series it holds.
//!
//! On a 2-core machine three processes share two cores: CPU is the figure; wall time
//! is not reported. Run: `cargo bench --bench cluster` (env `CL_PROCESSES`, e.g.
//! `1,2,3`, and the above). All traffic stays on 127.0.0.1.

mod side_by_side;

use side_by_side::{
    cpu_seconds, encode, env_or, free_port, http_get, node_fleet_config, rss_bytes, Server,
    FAMILIES, PROMFLOW, PROMFLOW_COUNTER,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The rules' shape (`CL_RULES`, see the module doc).
#[derive(Clone, Copy)]
enum Shape {
    /// A spread aggregation (the default).
    Spread,
    /// An aggregation of a shape that is not spread (`owned`).
    Owned,
    /// A spread per-series plan (`union`).
    Union,
    /// A spread one-to-one join of two per-series plans (`join`).
    Join,
}

impl Shape {
    fn from_env() -> Shape {
        match std::env::var("CL_RULES").as_deref() {
            Ok("owned") => Shape::Owned,
            Ok("union") => Shape::Union,
            Ok("join") => Shape::Join,
            Ok(other) if !other.is_empty() => panic!("CL_RULES: owned, union or join"),
            _ => Shape::Spread,
        }
    }
}

/// The rule of bench family `f`.
fn rule_expr(f: usize, shape: Shape) -> String {
    let rate = |f: usize| format!("rate(node_bench_family{f}_total[1m])");
    match shape {
        Shape::Spread => format!("sum by (job) ({})", rate(f)),
        Shape::Owned => {
            format!("sum by (job) (rate({{__name__=~\"node_bench_family{f}_total\"}}[1m]) * 2)")
        }
        Shape::Union => format!("{} > 0", rate(f)),
        Shape::Join => format!("{} / {}", rate(f), rate(f ^ 1)),
    }
}

/// The recording rules: one per bench family, together over every series.
fn rules(shape: Shape) -> String {
    let mut out = String::from("groups:\n  - name: bulk\n    rules:\n");
    for f in 0..FAMILIES {
        out.push_str(&format!(
            "      - record: bulk:rate{f}:sum\n        expr: '{}'\n",
            rule_expr(f, shape)
        ));
    }
    out
}

/// A query's result count through `server` (0 when it does not answer).
fn count(server: &Server, query: &str) -> usize {
    http_get(
        &server.addr,
        &format!("/api/v1/query?query={}", encode(query)),
    )
    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
    .and_then(|v| v["data"]["result"].as_array().map(Vec::len))
    .unwrap_or(0)
}

/// A query's single value through `server` (0 when none).
fn scalar(server: &Server, query: &str) -> f64 {
    http_get(
        &server.addr,
        &format!("/api/v1/query?query={}", encode(query)),
    )
    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
    .and_then(|v| v["data"]["result"][0]["value"][1].as_str()?.parse().ok())
    .unwrap_or(0.0)
}

/// Bytes sent so far on every TCP connection from or to one of `ports` (timely's
/// exchange), each direction counted on its sending socket.
fn exchanged_bytes(ports: &[u16]) -> u64 {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .output()
        .expect("ss runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let port_of = |addr: &str| addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    let mut total = 0;
    let mut ours = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // `Recv-Q Send-Q Local:Port Peer:Port`: a connection line.
            let fields: Vec<&str> = line.split_whitespace().collect();
            ours = fields.len() >= 4
                && [fields[2], fields[3]]
                    .iter()
                    .any(|a| port_of(a).is_some_and(|p| ports.contains(&p)));
        } else if ours {
            if let Some(sent) = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("bytes_sent:"))
            {
                total += sent.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// The figures of one cluster size.
struct Figures {
    processes: usize,
    samples: f64,
    cpu: Vec<f64>,
    bytes: u64,
    rss: Vec<f64>,
    series: usize,
}

fn run(processes: usize, config: &Path, dir: &Path, series: usize, targets: usize) -> Figures {
    let workers = env_or("CL_WORKERS", 1);
    let warmup = env_or("CL_WARMUP", 20) as u64;
    let seconds = env_or("CL_SECONDS", 60) as u64;
    let ports: Vec<u16> = (0..processes).map(|_| free_port()).collect();
    let webs: Vec<u16> = (0..processes).map(|_| free_port()).collect();
    let hostfile = dir.join(format!("hostfile-{processes}"));
    let lines: Vec<String> = ports
        .iter()
        .zip(&webs)
        .map(|(p, w)| format!("127.0.0.1:{p} http://127.0.0.1:{w}"))
        .collect();
    std::fs::write(&hostfile, lines.join("\n") + "\n").unwrap();
    // Timely connects the processes at start: start them all, then wait for each.
    let children: Vec<(std::process::Child, String)> = (0..processes)
        .map(|i| {
            let data = dir.join(format!("data-{processes}-{i}"));
            let addr = format!("127.0.0.1:{}", webs[i]);
            let mut command = Command::new(PROMFLOW);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--workers={workers}"))
                .arg("--log.level=warn");
            if processes > 1 {
                command
                    .arg(format!("--cluster.processes={processes}"))
                    .arg(format!("--cluster.process-id={i}"))
                    .arg(format!("--cluster.hostfile={}", hostfile.display()));
            }
            let child = command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("promflow starts");
            (child, addr)
        })
        .collect();
    let servers: Vec<Server> = children
        .into_iter()
        .map(|(child, addr)| {
            let server = Server {
                name: "promflow",
                child,
                addr,
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            while http_get(&server.addr, "/-/ready").is_none() {
                assert!(Instant::now() < deadline, "promflow did not become ready");
                std::thread::sleep(Duration::from_millis(100));
            }
            server
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while scalar(&servers[0], "count(up == 1)") < targets as f64
        || count(&servers[0], r#"{__name__=~"bulk:.*"}"#) < 10 * FAMILIES
    {
        assert!(
            Instant::now() < deadline,
            "the cluster of {processes} did not scrape every target and record the rule"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(warmup));
    let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    let samples =
        |servers: &[Server]| -> f64 { servers.iter().map(|s| s.metric(PROMFLOW_COUNTER)).sum() };
    let (s0, b0) = (samples(&servers), exchanged_bytes(&ports));
    let c0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    std::thread::sleep(Duration::from_secs(seconds));
    let (s1, b1) = (samples(&servers), exchanged_bytes(&ports));
    let c1: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let rss = pids.iter().map(|p| rss_bytes(*p)).collect();
    Figures {
        processes,
        samples: s1 - s0,
        cpu: c1.iter().zip(&c0).map(|(a, b)| a - b).collect(),
        bytes: b1.saturating_sub(b0),
        rss,
        series,
    }
}

fn main() {
    let series = env_or("CL_SERIES", 100_000);
    let targets = env_or("CL_TARGETS", 50);
    let interval = env_or("CL_INTERVAL", 5) as u64;
    let sizes: Vec<usize> = std::env::var("CL_PROCESSES")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    let shape = Shape::from_env();
    std::fs::write(&rules, self::rules(shape)).unwrap();
    let config = node_fleet_config(
        targets,
        series / targets,
        10,
        interval,
        &format!("rule_files: [\"{}\"]\n", rules.display()),
    );
    let config_path = dir.path().join("promflow.yml");
    std::fs::write(&config_path, config).unwrap();
    println!(
        "cluster: {series} series over {targets} targets, scraped every {interval}s, \
         {FAMILIES} rules `{}` every {interval}s; {} worker(s) per process",
        rule_expr(0, shape)
            .replace("family0", "family<f>")
            .replace("family1", "family<f ^ 1>"),
        env_or("CL_WORKERS", 1)
    );
    println!(
        "| processes | CPU-s per 1M samples (all) | CPU share per process | bytes exchanged per sample | RSS per process (MiB) | RSS per series (bytes) |"
    );
    println!("|---|---|---|---|---|---|");
    for processes in sizes {
        let f = run(processes, &config_path, dir.path(), series, targets);
        let cpu: f64 = f.cpu.iter().sum();
        let shares: Vec<String> = f
            .cpu
            .iter()
            .map(|c| format!("{:.0}%", 100.0 * c / cpu.max(f64::MIN_POSITIVE)))
            .collect();
        let rss: Vec<String> = f
            .rss
            .iter()
            .map(|r| format!("{:.0}", r / 1048576.0))
            .collect();
        let rss_total: f64 = f.rss.iter().sum();
        println!(
            "| {} | {:.2} | {} | {:.2} | {} | {:.0} |",
            f.processes,
            cpu / (f.samples / 1e6).max(f64::MIN_POSITIVE),
            shares.join(" / "),
            f.bytes as f64 / f.samples.max(1.0),
            rss.join(" / "),
            rss_total / f.series as f64,
        );
    }
}
