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

#[path = "side_by_side/mod.rs"]
mod side_by_side;

use side_by_side::{cpu_seconds, env_or, serve_exporter, Server, PROMETHEUS, PROMFLOW};
use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

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

/// Returns (samples ingested, CPU seconds) over `seconds` after a warm-up; `counter`
/// is the server's own ingested-samples counter.
fn measure(server: &Server, counter: &str, seconds: u64) -> (f64, f64) {
    std::thread::sleep(Duration::from_secs(3));
    let (s0, c0) = (server.metric(counter), cpu_seconds(server.pid()));
    std::thread::sleep(Duration::from_secs(seconds));
    let (s1, c1) = (server.metric(counter), cpu_seconds(server.pid()));
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
        serve_exporter(listener, ticks.clone(), move |tick| body(series, tick));
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
    let promflow = Server::start(
        "promflow",
        PROMFLOW,
        &config_path,
        &dir.path().join("promflow"),
        &[],
    );
    results.push((
        "promflow",
        measure(&promflow, "promflow_samples_ingested_total", seconds),
    ));
    drop(promflow);

    if std::path::Path::new(PROMETHEUS).exists() {
        let prometheus = Server::start(
            "prometheus",
            PROMETHEUS,
            &config_path,
            &dir.path().join("prometheus"),
            &[],
        );
        results.push((
            "prometheus",
            measure(
                &prometheus,
                "prometheus_tsdb_head_samples_appended_total",
                seconds,
            ),
        ));
    } else {
        println!("{PROMETHEUS} not found: no side-by-side comparison (apt-get install prometheus)");
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
