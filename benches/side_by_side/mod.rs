//! What the side-by-side benchmarks share: starting promflow and a real Prometheus
//! (`/usr/bin/prometheus`, Debian package) as child processes on loopback, a minimal
//! HTTP client, and reading a process's CPU time and RSS from `/proc`.
//!
//! And the synthetic fleets they scrape: node_exporter-like series for alert rules
//! ([`node_series`], with the rules over them, [`rule_file`]) and the bulk
//! `node_bench_family*` series ([`bench_families_body`], served by [`node_fleet_config`]).
//!
//! Used as `mod side_by_side;` by `ingest.rs`, `storage.rs`, `query.rs`, `rules.rs`,
//! `idle.rs`, `federate.rs`, `load.rs` and `compare.rs`; not every bench uses every item.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The real Prometheus.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Its promtool.
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// The promflow binary of this build.
pub const PROMFLOW: &str = env!("CARGO_BIN_EXE_promflow");

/// The environment variable `name` as a number, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `s` percent-encoded for a query string (everything but RFC 3986's unreserved).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request (connection closed after it); returns status and body.
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path`, the body if the answer is 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    match http(addr, "GET", path, b"")? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// Sums every sample of `metric` (any labels) in a text-format body.
pub fn metric_value(body: &str, metric: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Resident set size of a process, bytes.
pub fn rss_bytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb * 1024.0)
}

/// Bytes of every file under `path`.
pub fn du(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

/// A promflow or Prometheus child process, killed (by its own handle) when dropped.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `bin` (promflow or Prometheus: the same flags) on `config` with its data
    /// in `data`, plus `extra` flags, and waits until `/-/ready` answers.
    pub fn start(
        name: &'static str,
        bin: &str,
        config: &Path,
        data: &Path,
        extra: &[&str],
    ) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(bin);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--log.level=warn")
            .args(extra);
        Server::spawn(name, command, addr, "/-/ready")
    }

    /// Starts `command` (any server, its flags set, listening on `addr`) and waits
    /// until `ready` answers 200.
    pub fn spawn(name: &'static str, mut command: Command, addr: String, ready: &str) -> Server {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let server = Server { name, child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&server.addr, ready).is_none() {
            assert!(Instant::now() < deadline, "{name} did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A metric's value (summed over labels) from the server's `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&http_get(&self.addr, "/metrics").unwrap_or_default(), name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `listener` forever as a synthetic exporter: every request (keep-alive
/// honoured) is answered 200 with `body(tick)` in the text format, `tick` counting the
/// requests of every listener sharing `ticks`.
pub fn serve_exporter(
    listener: TcpListener,
    ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    body: impl Fn(u64) -> String + Send + Sync + Clone + 'static,
) {
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let ticks = ticks.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                loop {
                    let mut request = Vec::new();
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let tick = ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let payload = body(tick);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                        payload.len()
                    );
                    if stream
                        .write_all(head.as_bytes())
                        .and_then(|_| stream.write_all(payload.as_bytes()))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

/// An exporter body by tick (see [`serve_exporter`]).
pub type Body = std::sync::Arc<dyn Fn(u64) -> String + Send + Sync>;

/// Serves `targets` exporters with `body` and writes a config scraping them every
/// second (plus `extra`, appended to `global:`'s siblings, e.g. `rule_files`) to
/// `dir/name`. Returns the config path.
pub fn exporters_and_config(
    targets: usize,
    body: Body,
    dir: &Path,
    name: &str,
    extra: &str,
) -> std::path::PathBuf {
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut addresses = Vec::new();
    for _ in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        addresses.push(format!("\"{}\"", listener.local_addr().unwrap()));
        let body = body.clone();
        serve_exporter(listener, ticks.clone(), move |tick| body(tick));
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{extra}scrape_configs:\n  - job_name: synthetic\n    static_configs:\n      - targets: [{}]\n",
        addresses.join(", ")
    );
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    path
}

/// promflow's ingested-samples counter.
pub const PROMFLOW_COUNTER: &str = "promflow_samples_ingested_total";
/// Prometheus's ingested-samples counter.
pub const PROMETHEUS_COUNTER: &str = "prometheus_tsdb_head_samples_appended_total";

/// Returns (samples ingested by `counter`, CPU seconds) of `server` over `seconds`
/// after `warmup` seconds.
pub fn measure_after(server: &Server, counter: &str, warmup: u64, seconds: u64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(warmup));
    let (s0, c0) = (server.metric(counter), cpu_seconds(server.pid()));
    std::thread::sleep(Duration::from_secs(seconds));
    let (s1, c1) = (server.metric(counter), cpu_seconds(server.pid()));
    (s1 - s0, c1 - c0)
}

/// Metric families of [`bench_families_body`].
pub const FAMILIES: usize = 20;

/// One target's `node_bench_family<f>_total` series: `series` of them in [`FAMILIES`]
/// families (half integer counters, half fractional gauges, values changing every
/// scrape), the bulk of the `/federate` and comparison fleets.
pub fn bench_families_body(target: usize, series: usize, tick: u64) -> String {
    let per_family = series.div_ceil(FAMILIES);
    let mut out = String::with_capacity(series * 70);
    for f in 0..FAMILIES {
        let name = format!("node_bench_family{f}_total");
        out.push_str(&format!("# TYPE {name} counter\n"));
        for i in 0..per_family.min(series - (f * per_family).min(series)) {
            let value = if f % 2 == 0 {
                (tick + i as u64 + target as u64) as f64
            } else {
                tick as f64 * 0.37 + i as f64 * 1.01 + 0.5
            };
            out.push_str(&format!(
                "{name}{{cpu=\"{}\",device=\"dev{}\",mode=\"m{}\"}} {value}\n",
                i % 16,
                i / 16,
                i % 7
            ));
        }
    }
    out
}

/// Serves `targets` node_exporter-like exporters ([`bench_families_body`], `series` series
/// each) split over `jobs` jobs `node0`, `node1`, …, and returns a config scraping them
/// every `interval_s` seconds (timeout the same), with `extra` (e.g. `rule_files`)
/// between `global:` and `scrape_configs:`.
pub fn node_fleet_config(
    targets: usize,
    series: usize,
    jobs: usize,
    interval_s: u64,
    extra: &str,
) -> String {
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut by_job: Vec<Vec<String>> = vec![Vec::new(); jobs];
    for t in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        by_job[t % jobs].push(format!("\"{}\"", listener.local_addr().unwrap()));
        serve_exporter(listener, ticks.clone(), move |tick| {
            bench_families_body(t, series, tick)
        });
    }
    let mut config = format!(
        "global:\n  scrape_interval: {interval_s}s\n  scrape_timeout: {interval_s}s\n  \
         evaluation_interval: {interval_s}s\n{extra}scrape_configs:\n"
    );
    for (j, addresses) in by_job.iter().enumerate() {
        config.push_str(&format!(
            "  - job_name: node{j}\n    static_configs:\n      - targets: [{}]\n",
            addresses.join(", ")
        ));
    }
    config
}

/// The ten alert expressions; `{k}` is the rule's variant (thresholds differ, none
/// fires on this workload).
pub const RULES: [&str; 10] = [
    r#"100 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m])) * 100 > 90 + {k}"#,
    "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.1 - {k} / 1000",
    "up == -{k}",
    "node_load1 > 4 + {k}",
    "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.05 - {k} / 1000",
    "rate(node_network_receive_bytes_total[1m]) > 1e9 + {k}",
    "avg_over_time(node_load5[1m]) > 8 + {k}",
    "sum by (instance) (rate(node_disk_io_time_seconds_total[1m])) > 1.5 + {k}",
    "max by (instance) (node_filesystem_files_free) < 1000 - {k}",
    "deriv(node_memory_MemAvailable_bytes[1m]) < -1e12 - {k}",
];

/// Alert rule `i`'s expression: [`RULES`] in turn, thresholds shifted by `i / 10`.
pub fn rule_expr(i: usize) -> String {
    RULES[i % RULES.len()].replace("{k}", &(i / RULES.len()).to_string())
}

/// A rule file of `n` alert rules (`for: 1m`) in one group `bench`.
pub fn rule_file(n: usize) -> String {
    let mut out = String::from("groups:\n  - name: bench\n    rules:\n");
    for i in 0..n {
        out.push_str(&format!(
            "      - alert: Bench{i}\n        expr: '{}'\n        for: 1m\n",
            rule_expr(i)
        ));
    }
    out
}

/// One series of a target: (name, labels without `instance`/`job`, value).
pub type NodeSeries = (&'static str, Vec<(&'static str, String)>, f64);

/// One target's series at scrape `tick`.
pub fn node_series(tick: u64) -> Vec<NodeSeries> {
    let t = tick as f64;
    let mut out = Vec::new();
    const MODES: [&str; 8] = [
        "idle", "user", "system", "iowait", "irq", "nice", "softirq", "steal",
    ];
    for cpu in 0..4 {
        for (m, mode) in MODES.iter().enumerate() {
            let rate = if m == 0 { 0.9 } else { 0.1 / 7.0 };
            out.push((
                "node_cpu_seconds_total",
                vec![("cpu", cpu.to_string()), ("mode", mode.to_string())],
                1000.0 + t * rate,
            ));
        }
    }
    for (d, mount) in ["/", "/var", "/home"].iter().enumerate() {
        let l = vec![
            ("device", format!("/dev/sda{d}")),
            ("fstype", "ext4".to_string()),
            ("mountpoint", mount.to_string()),
        ];
        let wobble = (tick % 7) as f64 * 4096.0;
        out.push(("node_filesystem_avail_bytes", l.clone(), 5e10 - wobble));
        out.push(("node_filesystem_size_bytes", l.clone(), 1e11));
        out.push(("node_filesystem_files_free", l, 6e6 - wobble));
    }
    out.push((
        "node_memory_MemAvailable_bytes",
        vec![],
        4e9 + (tick % 11) as f64 * 1e6,
    ));
    out.push(("node_memory_MemTotal_bytes", vec![], 8e9));
    out.push(("node_load1", vec![], 0.5 + (tick % 5) as f64 * 0.1));
    out.push(("node_load5", vec![], 0.6 + (tick % 3) as f64 * 0.1));
    for dev in ["eth0", "lo"] {
        let l = vec![("device", dev.to_string())];
        out.push(("node_network_receive_bytes_total", l.clone(), t * 12_345.0));
        out.push(("node_network_transmit_bytes_total", l, t * 23_456.0));
    }
    for dev in ["sda", "sdb"] {
        out.push((
            "node_disk_io_time_seconds_total",
            vec![("device", dev.to_string())],
            t * 0.05,
        ));
    }
    out
}

/// One target's [`node_series`] in the text format.
pub fn node_body(tick: u64) -> String {
    let mut out = String::with_capacity(4096);
    for (name, labels, value) in node_series(tick) {
        let l: Vec<String> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
        out.push_str(&format!("{name}{{{}}} {value}\n", l.join(",")));
    }
    out
}
