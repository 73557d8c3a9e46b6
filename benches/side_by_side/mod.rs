//! Pieces shared by the side-by-side benchmarks (`ingest`, `rules`): a synthetic
//! exporter served on loopback, starting promflow or Prometheus with one config, and
//! reading a server's CPU time and ingested-sample counter.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An exposition body for scrape number `tick`.
pub type Body = Arc<dyn Fn(u64) -> String + Send + Sync>;

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves one listener forever with a minimal HTTP/1.1 responder (one request per
/// connection is enough for scrapers; keep-alive is honoured by closing).
pub fn serve(listener: TcpListener, body: Body, ticks: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (ticks, body) = (ticks.clone(), body.clone());
            std::thread::spawn(move || respond(stream, &body, &ticks));
        }
    });
}

fn respond(mut stream: TcpStream, body: &Body, ticks: &AtomicU64) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    loop {
        let mut request = Vec::new();
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let payload = body(ticks.fetch_add(1, Ordering::Relaxed));
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
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Sums every sample of `metric` (no labels or any labels) in a text-format body.
/// Bodies may be chunked; chunk-size lines never start with the metric name.
pub fn metric_value(body: &str, metric: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

pub struct Server {
    /// Shown in messages.
    pub name: &'static str,
    /// The process.
    pub child: Child,
    /// `host:port` of its HTTP API.
    pub addr: String,
    /// Its counter of ingested samples on `/metrics`.
    pub counter: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&server.addr, "/-/ready").is_none() {
        assert!(
            Instant::now() < deadline,
            "{} did not become ready",
            server.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Returns (samples ingested, CPU seconds) over `seconds` after a 3 s warm-up.
pub fn measure(server: &Server, seconds: u64) -> (f64, f64) {
    measure_after(server, 3, seconds)
}

/// Returns (samples ingested, CPU seconds) over `seconds` after `warmup` seconds.
pub fn measure_after(server: &Server, warmup: u64, seconds: u64) -> (f64, f64) {
    wait_ready(server);
    std::thread::sleep(Duration::from_secs(warmup));
    let read = || {
        metric_value(
            &http_get(&server.addr, "/metrics").unwrap_or_default(),
            server.counter,
        )
    };
    let (s0, c0) = (read(), cpu_seconds(server.child.id()));
    std::thread::sleep(Duration::from_secs(seconds));
    let (s1, c1) = (read(), cpu_seconds(server.child.id()));
    (s1 - s0, c1 - c0)
}

/// Starts `binary` (promflow or Prometheus: the same flags) with `config`, storing
/// under `data`; `counter` is its ingested-samples counter.
pub fn start(
    name: &'static str,
    binary: &str,
    config: &Path,
    data: &Path,
    counter: &'static str,
) -> Server {
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    Server {
        name,
        child,
        addr: format!("127.0.0.1:{port}"),
        counter,
    }
}

/// promflow's ingested-samples counter.
pub const PROMFLOW_COUNTER: &str = "promflow_samples_ingested_total";
/// Prometheus's ingested-samples counter.
pub const PROMETHEUS_COUNTER: &str = "prometheus_tsdb_head_samples_appended_total";
/// The real Prometheus (Debian package).
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

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
    let ticks = Arc::new(AtomicU64::new(0));
    let mut addresses = Vec::new();
    for _ in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        addresses.push(format!("\"{}\"", listener.local_addr().unwrap()));
        serve(listener, body.clone(), ticks.clone());
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{extra}scrape_configs:\n  - job_name: synthetic\n    static_configs:\n      - targets: [{}]\n",
        addresses.join(", ")
    );
    let path = dir.join(name);
    std::fs::write(&path, config).unwrap();
    path
}
