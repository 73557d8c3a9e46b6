//! End-to-end ingest: samples ingested per CPU-second, promflow vs Prometheus, side by side.
//!
//! Isolates the scrape → parse → store → dataflow path. A synthetic exporter in this
//! process serves `TARGETS` endpoints on loopback, each exposing `SERIES` series whose
//! values change on every scrape. promflow and then a real Prometheus (Debian package,
//! `/usr/bin/prometheus`) scrape them every second with the same config for `SECONDS`;
//! we read each server's CPU time from `/proc/<pid>/stat` and its ingested-sample
//! counter from its own `/metrics`, and print samples per CPU-second and the ratio.
//!
//! Run: `cargo bench --bench ingest` (env `INGEST_TARGETS`, `INGEST_SERIES`,
//! `INGEST_SECONDS` override the workload). All traffic stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A node_exporter-like body: counters and gauges with a few labels.
fn body(series: usize, tick: u64) -> String {
    let mut out = String::with_capacity(series * 80);
    out.push_str("# HELP synthetic_cpu_seconds_total Synthetic counter.\n# TYPE synthetic_cpu_seconds_total counter\n");
    for i in 0..series {
        out.push_str(&format!(
            "synthetic_cpu_seconds_total{{cpu=\"{}\",mode=\"m{}\"}} {}\n",
            i % 64,
            i,
            tick as f64 * 1.5 + i as f64
        ));
    }
    out
}

/// Serves one listener forever with a minimal HTTP/1.1 responder (one request per
/// connection is enough for scrapers; keep-alive is honoured by closing).
fn serve(listener: TcpListener, series: usize, ticks: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let ticks = ticks.clone();
            std::thread::spawn(move || respond(stream, series, &ticks));
        }
    });
}

fn respond(mut stream: TcpStream, series: usize, ticks: &AtomicU64) {
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
        let payload = body(series, ticks.fetch_add(1, Ordering::Relaxed));
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> Option<String> {
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
fn metric_value(body: &str, metric: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

struct Server {
    name: &'static str,
    child: Child,
    addr: String,
    counter: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(server: &Server) {
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

/// Returns (samples ingested, CPU seconds) over `seconds` after a warm-up.
fn measure(server: &Server, seconds: u64) -> (f64, f64) {
    wait_ready(server);
    std::thread::sleep(Duration::from_secs(3));
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

fn main() {
    let targets = env_or("INGEST_TARGETS", 50);
    let series = env_or("INGEST_SERIES", 1000);
    let seconds = env_or("INGEST_SECONDS", 20) as u64;
    let ticks = Arc::new(AtomicU64::new(0));
    let mut addresses = Vec::new();
    for _ in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        addresses.push(format!("\"{}\"", listener.local_addr().unwrap()));
        serve(listener, series, ticks.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: synthetic\n    static_configs:\n      - targets: [{}]\n",
        addresses.join(", ")
    );
    let config_path = dir.path().join("bench.yml");
    std::fs::write(&config_path, config).unwrap();
    println!(
        "workload: {targets} targets x {series} series, scraped every 1s, measured over {seconds}s"
    );

    let mut results = Vec::new();
    let port = free_port();
    let promflow = Server {
        name: "promflow",
        child: Command::new(env!("CARGO_BIN_EXE_promflow"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("promflow").display()
            ))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start promflow"),
        addr: format!("127.0.0.1:{port}"),
        counter: "promflow_samples_ingested_total",
    };
    results.push(("promflow", measure(&promflow, seconds)));
    drop(promflow);

    if std::path::Path::new("/usr/bin/prometheus").exists() {
        let port = free_port();
        let prometheus = Server {
            name: "prometheus",
            child: Command::new("/usr/bin/prometheus")
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("prometheus").display()
                ))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus"),
            addr: format!("127.0.0.1:{port}"),
            counter: "prometheus_tsdb_head_samples_appended_total",
        };
        results.push(("prometheus", measure(&prometheus, seconds)));
    } else {
        println!("/usr/bin/prometheus not found: no side-by-side comparison (apt-get install prometheus)");
    }

    for (name, (samples, cpu)) in &results {
        println!(
            "{name:>10}: {samples:>10.0} samples in {cpu:>6.2} CPU-s = {:>10.0} samples/CPU-s",
            samples / cpu.max(1e-9)
        );
    }
    if let [(_, (ps, pc)), (_, (qs, qc))] = results.as_slice() {
        println!(
            "ratio promflow/prometheus (samples per CPU-second): {:.2}",
            (ps / pc.max(1e-9)) / (qs / qc.max(1e-9))
        );
    }
}
