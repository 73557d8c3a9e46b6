//! `/federate` read latency, promflow vs Prometheus scraping the same targets, side by side.
//!
//! A synthetic node_exporter-like fleet in this process: `FED_TARGETS` (50) endpoints on
//! loopback, each exposing `FED_SERIES` (2,000) series in 20 metric families (half
//! integer counters, half fractional gauges, values changing every scrape), in
//! `FED_JOBS` (10) jobs `node0`… of equal size. promflow and a real Prometheus 2.42
//! (`/usr/bin/prometheus`) run at the same time with the same config (scrape every
//! 5s). Once both serve every series, each request is read `FED_READS` (20) times per
//! server, alternating:
//! - `/federate?match[]={__name__=~".+"}` (every series), plain and with
//!   `Accept-Encoding: gzip`;
//! - `/federate?match[]={job="node0"}` (one job's share).
//!
//! Printed: p50 and p99 wall-clock latency (request to last byte) per server and the
//! ratio promflow/Prometheus of each, the machine's load average, and a content check
//! of one pair of plain reads taken back to back: series count, series (label sets) in
//! one and not the other, and whether the order of series and `# TYPE` lines is the
//! same.
//!
//! Run: `cargo bench --bench federate` (env `FED_TARGETS`, `FED_SERIES`, `FED_JOBS`,
//! `FED_READS` override the workload). All traffic stays on 127.0.0.1.

#[path = "side_by_side/mod.rs"]
mod side_by_side;

use side_by_side::{bench_families_body, env_or, serve_exporter, Server, PROMETHEUS, PROMFLOW};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `GET path` with `gzip` asked for or not; the raw body (still compressed) and the
/// time to its last byte.
fn get(addr: &str, path: &str, gzip: bool) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    let encoding = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{encoding}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let elapsed = start.elapsed();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no HTTP head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{addr}{path}: {head}");
    let mut body = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    if gzip {
        assert!(head.contains("content-encoding: gzip"), "{addr}: no gzip");
    }
    (body, elapsed)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol]).unwrap_or("0").trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        let rest = &body[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = &rest[n..];
        body = body.strip_prefix(b"\r\n").unwrap_or(body);
    }
    out
}

/// The series (a line without value and timestamp) and `# TYPE` lines, in order.
fn series_and_types(body: &str) -> (Vec<String>, Vec<String>) {
    let mut series = Vec::new();
    let mut types = Vec::new();
    for line in body.lines() {
        if line.starts_with("# TYPE ") {
            types.push(line.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let mut parts = line.rsplitn(3, ' ');
            let key = parts.nth(2).unwrap_or(line);
            series.push(key.to_string());
        }
    }
    (series, types)
}

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i].as_secs_f64() * 1000.0
}

fn main() {
    let targets = env_or("FED_TARGETS", 50);
    let series = env_or("FED_SERIES", 2000);
    let jobs = env_or("FED_JOBS", 10).clamp(1, targets);
    let reads = env_or("FED_READS", 20).max(1);
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found (apt-get install prometheus)"
    );
    let ticks = Arc::new(AtomicU64::new(0));
    let mut by_job: Vec<Vec<String>> = vec![Vec::new(); jobs];
    for t in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        by_job[t % jobs].push(format!("\"{}\"", listener.local_addr().unwrap()));
        serve_exporter(listener, ticks.clone(), move |tick| {
            bench_families_body(t, series, tick)
        });
    }
    let mut config =
        String::from("global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\nscrape_configs:\n");
    for (j, addresses) in by_job.iter().enumerate() {
        config.push_str(&format!(
            "  - job_name: node{j}\n    static_configs:\n      - targets: [{}]\n",
            addresses.join(", ")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bench.yml");
    std::fs::write(&config_path, config).unwrap();
    println!(
        "workload: {targets} targets x {series} series in {jobs} jobs, scraped every 5s, {reads} reads per request and server"
    );
    let promflow = Server::start(
        "promflow",
        PROMFLOW,
        &config_path,
        &dir.path().join("promflow"),
        &[],
    );
    let prometheus = Server::start(
        "prometheus",
        PROMETHEUS,
        &config_path,
        &dir.path().join("prometheus"),
        &[],
    );
    let servers = [&promflow, &prometheus];
    let everything = "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D";
    let one_job = "/federate?match[]=%7Bjob%3D%22node0%22%7D";

    // Every target's series plus its 5 scrape series, on both servers.
    let expected = targets * (series + 5);
    let deadline = Instant::now() + Duration::from_secs(180);
    for server in servers {
        loop {
            let (body, _) = get(&server.addr, everything, false);
            let n = series_and_types(&String::from_utf8_lossy(&body)).0.len();
            if n >= expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} serves {n} of {expected} series after 180s",
                server.name
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    // Content: one plain read of each, back to back.
    let (a, _) = get(&promflow.addr, everything, false);
    let (b, _) = get(&prometheus.addr, everything, false);
    let (a, b) = (String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    let ((a_series, a_types), (b_series, b_types)) = (series_and_types(&a), series_and_types(&b));
    let a_set: BTreeSet<&String> = a_series.iter().collect();
    let b_set: BTreeSet<&String> = b_series.iter().collect();
    println!(
        "content: promflow {} series ({} bytes), prometheus {} series ({} bytes); only in promflow {}, only in prometheus {}; same # TYPE lines in the same order: {}; same series order: {}",
        a_series.len(),
        a.len(),
        b_series.len(),
        b.len(),
        a_set.difference(&b_set).count(),
        b_set.difference(&a_set).count(),
        a_types == b_types,
        a_series == b_series,
    );
    if let Some(i) = (0..a_series.len().min(b_series.len())).find(|&i| a_series[i] != b_series[i]) {
        println!(
            "  first order difference at series {i}: promflow {:?}, prometheus {:?}",
            a_series[i], b_series[i]
        );
    }

    let requests = [
        ("{__name__=~\".+\"} plain", everything, false),
        ("{__name__=~\".+\"} gzip", everything, true),
        ("{job=\"node0\"} plain", one_job, false),
    ];
    let mut times = vec![[Vec::new(), Vec::new()]; requests.len()];
    let mut sizes = vec![[0usize; 2]; requests.len()];
    for _ in 0..reads {
        for (r, (_, path, gzip)) in requests.iter().enumerate() {
            for (s, server) in servers.iter().enumerate() {
                let (body, elapsed) = get(&server.addr, path, *gzip);
                times[r][s].push(elapsed);
                sizes[r][s] = body.len();
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average (1m 5m 15m): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<26} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "request", "promflow p50", "p99", "prom p50", "p99", "p50 ratio", "p99 ratio"
    );
    for (r, (label, _, _)) in requests.iter().enumerate() {
        let [ours, theirs] = &mut times[r];
        let (o50, o99) = (percentile(ours, 0.5), percentile(ours, 0.99));
        let (t50, t99) = (percentile(theirs, 0.5), percentile(theirs, 0.99));
        println!(
            "{label:<26} {o50:>10.1}ms {o99:>10.1}ms {t50:>10.1}ms {t99:>10.1}ms {:>8.2}x {:>8.2}x   ({} vs {} bytes)",
            o50 / t50,
            o99 / t99,
            sizes[r][0],
            sizes[r][1],
        );
    }
}
