//! Issue 19's comparison: promflow, a real Prometheus 2.42 and VictoriaMetrics 1.79 on
//! the same synthetic fleet, each figure of the issue's table with its ratio to
//! Prometheus, at several sizes.
//!
//! The fleet (in this process, on loopback): `size / per_target` targets in up to 10
//! jobs `node0`…, each serving [`node_series`] (node_exporter-like CPU, filesystem,
//! memory, load, network and disk series, which the rules read) and
//! [`bench_families_body`] series up to `per_target` (`CMP_PER_TARGET`; by default
//! 1,000 up to 10k series, as the issue's idle-ish row, and 2,000 above), every value
//! changing on each scrape; scraped every 5s, rules evaluated every 5s.
//!
//! The servers run **one after another** (three at once do not fit the 2-core
//! machine); each, from its start:
//! 1. waits until it holds every target's series, then `CMP_WARMUP` seconds;
//! 2. *ingest*: CPU (user + system, `/proc/<pid>/stat`) and samples (its own counter)
//!    over `CMP_SECONDS`, no rules: CPU-s per 1M samples, and the cores it takes
//!    (the issue's "idle-ish" row at 10 targets × 1,000 series); then RSS per active
//!    series;
//! 3. *queries*, `CMP_READS` times each, alternating, p50 of wall-clock to the last
//!    byte: `/api/v1/query` of the CPU alert expression ([`rule_expr`]`(0)`),
//!    `sum by (job) (rate(…[1m]))` over half the bulk series (the even families, added),
//!    and `/federate?match[]={__name__=~".+"}` (every series);
//! 4. *rules*: 100 alert rules ([`rule_file`]) and 5 recording rules at
//!    `evaluation_interval: 5s` (Prometheus and promflow: config reloaded with
//!    `rule_files`, promflow in `--rules.evaluation=interval`; VictoriaMetrics: its
//!    `vmalert` started on it, remote-writing recording results back, its CPU
//!    added), `CMP_SETTLE` seconds, then CPU over `CMP_SECONDS`: the rules' cores are
//!    that minus the ingest phase's;
//! 5. promflow only: the same rules again, on arrival (groups reloaded under names
//!    `--rules.on-arrival-groups` selects).
//!
//! Run: `cargo bench --bench compare`. Env: `CMP_SIZES` (series, comma-separated;
//! default `10000,100000`; add `1000000` where the machine has the memory),
//! `CMP_PER_TARGET`, `CMP_SECONDS` (60), `CMP_WARMUP` (15), `CMP_SETTLE` (10),
//! `CMP_READS` (20), `CMP_SERVERS` (`promflow,prometheus,victoriametrics`). A short
//! run: `CMP_SIZES=10000 CMP_SECONDS=20 CMP_READS=10 cargo bench --bench compare`
//! (about 3 minutes). Needs `/usr/bin/prometheus` and, for VictoriaMetrics,
//! `/usr/bin/victoria-metrics` and `/usr/bin/vmalert` (Debian `victoria-metrics`).
//! All traffic stays on 127.0.0.1.

mod side_by_side;

use side_by_side::{
    bench_families_body, cpu_seconds, encode, env_or, free_port, http, http_get, node_body,
    node_series, rss_bytes, rule_expr, rule_file, serve_exporter, Server, PROMETHEUS,
    PROMETHEUS_COUNTER, PROMFLOW, PROMFLOW_COUNTER,
};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

const VICTORIA: &str = "/usr/bin/victoria-metrics";
const VMALERT: &str = "/usr/bin/vmalert";
/// VictoriaMetrics's count of rows written to its storage.
const VICTORIA_COUNTER: &str = "vm_rows_added_to_storage_total";

/// Recording rules (the 5 beside the 100 alerts): per-instance and per-job rollups
/// of the node series and one over a bulk family.
const RECORDING: [(&str, &str); 5] = [
    (
        "instance:node_cpu_busy:rate1m",
        r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))"#,
    ),
    (
        "instance:node_network_receive_bytes:rate1m",
        "sum by (instance) (rate(node_network_receive_bytes_total[1m]))",
    ),
    (
        "instance:node_memory_available:ratio",
        "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    ),
    ("job:node_load1:avg", "avg by (job) (node_load1)"),
    (
        "job:node_bench_family0:rate1m",
        "sum by (job) (rate(node_bench_family0_total[1m]))",
    ),
];

/// `sum by (job) (rate(…[1m]))` over half the bulk series: the even families, one
/// `sum by (job)` each, added. One selector over several families
/// (`{__name__=~"node_bench_family…"}`) is refused by Prometheus 2.42, whose `rate`
/// drops the name before it checks that its output labelsets are unique (the families
/// share their labels); 3.x delays that, promflow follows 3.x.
fn sum_rate_of_half_the_bulk() -> String {
    (0..side_by_side::FAMILIES)
        .step_by(2)
        .map(|f| format!("sum by (job) (rate(node_bench_family{f}_total[1m]))"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The rule file: the 100 alerts in group `<prefix>`, the recording rules in
/// `<prefix>_recording`, both every 5s.
fn rules_yaml(prefix: &str) -> String {
    let alerts = rule_file(100).replace(
        "  - name: bench\n",
        &format!("  - name: {prefix}\n    interval: 5s\n"),
    );
    let mut out = alerts;
    out.push_str(&format!(
        "  - name: {prefix}_recording\n    interval: 5s\n    rules:\n"
    ));
    for (record, expr) in RECORDING {
        out.push_str(&format!(
            "      - record: {record}\n        expr: '{expr}'\n"
        ));
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Promflow,
    Prometheus,
    Victoria,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Promflow => "promflow",
            System::Prometheus => "prometheus",
            System::Victoria => "victoriametrics",
        }
    }
}

/// One server's figures at one size.
#[derive(Default, Clone)]
struct Figures {
    ingest_cpu_per_million: f64,
    ingest_cores: f64,
    rss_per_series: f64,
    rule_cores: f64,
    rule_cores_on_arrival: Option<f64>,
    alert_query_ms: f64,
    sum_rate_ms: f64,
    federate_ms: f64,
    /// Series in the shortest and the longest `/federate` read, and targets whose `up`
    /// was 0 in the shortest (a failed scrape marks its series stale, as in Prometheus).
    federate_series: (usize, usize),
    federate_down_in_shortest: usize,
    samples_counted: f64,
}

/// The workload at one size.
struct Fleet {
    targets: usize,
    per_target: usize,
    scrape_configs: String,
}

impl Fleet {
    /// Serves the targets (until the process ends) and returns their scrape configs.
    fn serve(size: usize, per_target: usize) -> Fleet {
        let targets = (size / per_target).max(1);
        let jobs = targets.min(10);
        let node_count = node_series(0).len();
        let bulk = per_target.saturating_sub(node_count);
        let ticks = Arc::new(AtomicU64::new(0));
        let mut by_job: Vec<Vec<String>> = vec![Vec::new(); jobs];
        for t in 0..targets {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            by_job[t % jobs].push(format!("\"{}\"", listener.local_addr().unwrap()));
            serve_exporter(listener, ticks.clone(), move |tick| {
                let mut body = node_body(tick);
                body.push_str(&bench_families_body(t, bulk, tick));
                body
            });
        }
        let mut scrape_configs = String::from("scrape_configs:\n");
        for (j, addresses) in by_job.iter().enumerate() {
            scrape_configs.push_str(&format!(
                "  - job_name: node{j}\n    static_configs:\n      - targets: [{}]\n",
                addresses.join(", ")
            ));
        }
        Fleet {
            targets,
            per_target: node_count + bulk,
            scrape_configs,
        }
    }

    /// Series per target as scraped, and the 5 series of each scrape.
    fn active_series(&self) -> usize {
        self.targets * (self.per_target + 5)
    }

    /// The configuration, with `rule_files` if given (not for VictoriaMetrics, whose
    /// scrape config has no rules).
    fn config(&self, rules: Option<&Path>) -> String {
        let mut out = String::from(
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n  evaluation_interval: 5s\n",
        );
        if let Some(rules) = rules {
            out.push_str(&format!("rule_files: [\"{}\"]\n", rules.display()));
        }
        out.push_str(&self.scrape_configs);
        out
    }
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

/// (samples by `counter`, CPU seconds of `pids`) over `seconds`.
fn measure(server: &Server, counter: &str, pids: &[u32], seconds: u64) -> (f64, f64) {
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let (s0, c0) = (server.metric(counter), cpu());
    std::thread::sleep(Duration::from_secs(seconds));
    let (s1, c1) = (server.metric(counter), cpu());
    (s1 - s0, c1 - c0)
}

/// Waits until an instant query of `sum(scrape_samples_scraped)` says every target's
/// series were scraped.
fn wait_for_fleet(server: &Server, fleet: &Fleet) {
    let want = fleet.targets * fleet.per_target;
    let path = format!(
        "/api/v1/query?query={}",
        encode("sum(scrape_samples_scraped)")
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = http_get(&server.addr, &path)
            .and_then(|body| {
                let at = body.find("\"value\":[")?;
                let rest = &body[at..];
                let value = rest.split('"').nth(3)?;
                value.parse::<f64>().ok()
            })
            .unwrap_or(0.0) as usize;
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} scraped {got} of {want} series after 300s",
            server.name
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Wall-clock milliseconds of `GET path` (200 required) and its body.
fn timed(addr: &str, path: &str) -> (f64, String) {
    let start = Instant::now();
    let (status, body) = http(addr, "GET", path, b"").expect("request answered");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "{addr}{path}: {body:.300}");
    (ms, body)
}

fn run(system: System, fleet: &Fleet, dir: &Path) -> Figures {
    let (seconds, warmup, settle, reads) = (
        env_or("CMP_SECONDS", 60) as u64,
        env_or("CMP_WARMUP", 15) as u64,
        env_or("CMP_SETTLE", 10) as u64,
        env_or("CMP_READS", 20),
    );
    let name = system.name();
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(&config, fleet.config(None)).unwrap();
    let data = dir.join(format!("{name}-data"));
    let (server, counter) = match system {
        System::Promflow => (
            Server::start(
                name,
                PROMFLOW,
                &config,
                &data,
                &[
                    "--web.enable-lifecycle",
                    "--rules.on-arrival-groups=arrival.*",
                ],
            ),
            PROMFLOW_COUNTER,
        ),
        System::Prometheus => (
            Server::start(
                name,
                PROMETHEUS,
                &config,
                &data,
                &["--web.enable-lifecycle"],
            ),
            PROMETHEUS_COUNTER,
        ),
        System::Victoria => {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut command = Command::new(VICTORIA);
            command
                .arg(format!("-httpListenAddr={addr}"))
                .arg(format!("-storageDataPath={}", data.display()))
                .arg(format!("-promscrape.config={}", config.display()))
                .arg("-promscrape.config.strictParse=false")
                .arg("-search.disableCache")
                .arg("-search.maxUniqueTimeseries=100000000")
                .arg("-search.maxFederateSeries=100000000")
                .arg("-loggerLevel=ERROR");
            (
                Server::spawn(name, command, addr, "/health"),
                VICTORIA_COUNTER,
            )
        }
    };
    wait_for_fleet(&server, fleet);
    std::thread::sleep(Duration::from_secs(warmup));
    let mut figures = Figures::default();

    // Ingest.
    let (samples, cpu) = measure(&server, counter, &[server.pid()], seconds);
    let expected = (fleet.active_series() as u64 * seconds / 5) as f64;
    figures.samples_counted = samples;
    // A counter that did not move (or is unknown) falls back to what was scraped.
    let samples = if samples > 0.0 { samples } else { expected };
    figures.ingest_cpu_per_million = cpu / samples * 1e6;
    figures.ingest_cores = cpu / seconds as f64;
    figures.rss_per_series = rss_bytes(server.pid()) / fleet.active_series() as f64;
    println!(
        "  {name}: ingest {samples:.0} samples ({expected:.0} scraped) in {cpu:.2} CPU-s; RSS {:.0} MB",
        rss_bytes(server.pid()) / 1e6
    );

    // Queries.
    let alert = format!("/api/v1/query?query={}", encode(&rule_expr(0)));
    let sum_rate = format!(
        "/api/v1/query?query={}",
        encode(&sum_rate_of_half_the_bulk())
    );
    let federate = format!("/federate?match[]={}", encode(r#"{__name__=~".+"}"#));
    let (mut a, mut s, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reads {
        a.push(timed(&server.addr, &alert).0);
        s.push(timed(&server.addr, &sum_rate).0);
        let (ms, body) = timed(&server.addr, &federate);
        f.push(ms);
        let series = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        let (shortest, longest) = &mut figures.federate_series;
        if *shortest == 0 || series < *shortest {
            *shortest = series;
            figures.federate_down_in_shortest = body
                .lines()
                .filter(|l| l.starts_with("up{") && l.split(' ').nth(1) == Some("0"))
                .count();
        }
        *longest = (*longest).max(series);
    }
    figures.alert_query_ms = median(a);
    figures.sum_rate_ms = median(s);
    figures.federate_ms = median(f);

    // Rules, at the interval.
    let rules = dir.join(format!("{name}-rules.yml"));
    std::fs::write(&rules, rules_yaml("bench")).unwrap();
    let rule_cores = |server: &Server, extra: &[u32]| {
        std::thread::sleep(Duration::from_secs(settle));
        let mut pids = vec![server.pid()];
        pids.extend_from_slice(extra);
        let (_, cpu) = measure(server, counter, &pids, seconds);
        (cpu / seconds as f64 - figures.ingest_cores).max(0.0)
    };
    let reload = |rules: &Path| {
        std::fs::write(&config, fleet.config(Some(rules))).unwrap();
        let (status, body) = http(&server.addr, "POST", "/-/reload", b"").expect("reload");
        assert_eq!(status, 200, "{name} reload: {body}");
    };
    if system == System::Victoria {
        // A notifier that takes anything (no alert fires on this workload).
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink_addr = sink.local_addr().unwrap();
        serve_exporter(sink, Arc::new(AtomicU64::new(0)), |_| String::new());
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(VMALERT);
        command
            .arg(format!("-rule={}", rules.display()))
            .arg(format!("-datasource.url=http://{}", server.addr))
            .arg(format!("-remoteWrite.url=http://{}", server.addr))
            .arg(format!("-notifier.url=http://{sink_addr}"))
            .arg("-evaluationInterval=5s")
            .arg(format!("-httpListenAddr={addr}"))
            .arg("-loggerLevel=ERROR");
        let vmalert = Server::spawn("vmalert", command, addr, "/health");
        figures.rule_cores = rule_cores(&server, &[vmalert.pid()]);
    } else {
        reload(&rules);
        figures.rule_cores = rule_cores(&server, &[]);
    }
    if system == System::Promflow {
        let arrival = dir.join(format!("{name}-arrival.yml"));
        std::fs::write(&arrival, rules_yaml("arrival")).unwrap();
        reload(&arrival);
        figures.rule_cores_on_arrival = Some(rule_cores(&server, &[]));
    }
    figures
}

fn ratio(ours: f64, theirs: Option<f64>) -> String {
    match theirs {
        Some(t) if t > 0.0 => format!("{:.2}×", ours / t),
        _ => "–".into(),
    }
}

fn print_table(size: usize, fleet: &Fleet, results: &[(System, Figures)]) {
    let get = |s: System| results.iter().find(|(x, _)| *x == s).map(|(_, f)| f);
    let (pf, pq, vm) = (
        get(System::Promflow),
        get(System::Prometheus),
        get(System::Victoria),
    );
    let bulk_half = fleet.targets * (fleet.per_target - node_series(0).len()).div_ceil(20) * 10;
    println!(
        "\n{size} series: {} targets × {} series (+5 per scrape) = {} active, scraped every 5s; servers run one after another",
        fleet.targets,
        fleet.per_target,
        fleet.active_series()
    );
    println!("| figure | Prometheus | VictoriaMetrics | promflow | promflow / Prometheus |");
    println!("|---|---|---|---|---|");
    type Pick = fn(&Figures) -> Option<f64>;
    let rows: [(String, Pick, &str); 8] = [
        (
            "ingest CPU-s per 1M samples (no rules)".into(),
            |f| Some(f.ingest_cpu_per_million),
            "2",
        ),
        (
            "RSS per active series (B)".into(),
            |f| Some(f.rss_per_series),
            "0",
        ),
        (
            "rule CPU, 100 alert + 5 recording rules every 5s, cores (interval)".into(),
            |f| Some(f.rule_cores),
            "3",
        ),
        (
            "same rules, promflow on arrival, cores".into(),
            |f| f.rule_cores_on_arrival,
            "3",
        ),
        (
            "`/api/v1/query` of the CPU alert expression, p50 ms".into(),
            |f| Some(f.alert_query_ms),
            "1",
        ),
        (
            format!("`sum by (job) (rate(…[1m]))` over {bulk_half} series, p50 ms"),
            |f| Some(f.sum_rate_ms),
            "1",
        ),
        (
            "`/federate` of every series, p50 ms".into(),
            |f| Some(f.federate_ms),
            "1",
        ),
        (
            "cores while scraping, no rules (idle-ish)".into(),
            |f| Some(f.ingest_cores),
            "3",
        ),
    ];
    for (label, pick, decimals) in rows {
        let decimals: usize = decimals.parse().unwrap();
        let cell = |f: Option<&Figures>| match f.and_then(pick) {
            Some(v) => format!("{v:.decimals$}"),
            None => "–".into(),
        };
        // On arrival is compared with Prometheus's interval figure.
        let ours = pf.and_then(pick);
        let theirs = pq.and_then(|f| pick(f).or(Some(f.rule_cores)));
        println!(
            "| {label} | {} | {} | {} | {} |",
            cell(pq),
            cell(vm),
            cell(pf),
            ours.map_or("–".into(), |o| ratio(o, theirs))
        );
    }
    let series: Vec<String> = results
        .iter()
        .map(|(s, f)| {
            let (shortest, longest) = f.federate_series;
            let down = f.federate_down_in_shortest;
            format!(
                "{} {shortest}–{longest} ({down} targets down in the shortest)",
                s.name()
            )
        })
        .collect();
    println!("series in `/federate` reads: {}", series.join(", "));
}

fn main() {
    let sizes: Vec<usize> = std::env::var("CMP_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let servers: Vec<System> = std::env::var("CMP_SERVERS")
        .unwrap_or_else(|_| "promflow,prometheus,victoriametrics".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "promflow" => Some(System::Promflow),
            "prometheus" => Some(System::Prometheus),
            "victoriametrics" => Some(System::Victoria),
            _ => None,
        })
        .filter(|s| match s {
            System::Prometheus => Path::new(PROMETHEUS).exists(),
            System::Victoria => Path::new(VICTORIA).exists() && Path::new(VMALERT).exists(),
            System::Promflow => true,
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cores} cores; servers: {} (one after another)",
        servers
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for size in sizes {
        let per_target = env_or("CMP_PER_TARGET", if size <= 10_000 { 1000 } else { 2000 });
        let fleet = Fleet::serve(size, per_target);
        let dir = tempfile::tempdir().unwrap();
        let mut results = Vec::new();
        for &system in &servers {
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "{size} series, {} (load {}):",
                system.name(),
                load.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            results.push((system, run(system, &fleet, dir.path())));
        }
        print_table(size, &fleet, &results);
    }
}
