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

mod side_by_side;

use side_by_side::{
    env_or, exporters_and_config, measure, start, Body, PROMETHEUS, PROMETHEUS_COUNTER,
    PROMFLOW_COUNTER,
};
use std::sync::Arc;

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

fn main() {
    let targets = env_or("INGEST_TARGETS", 50);
    let series = env_or("INGEST_SERIES", 1000);
    let seconds = env_or("INGEST_SECONDS", 20) as u64;
    let dir = tempfile::tempdir().unwrap();
    let body: Body = Arc::new(move |tick| body(series, tick));
    let config = exporters_and_config(targets, body, dir.path(), "bench.yml", "");
    println!(
        "workload: {targets} targets x {series} series, scraped every 1s, measured over {seconds}s"
    );

    let mut results = Vec::new();
    let promflow = start(
        "promflow",
        env!("CARGO_BIN_EXE_promflow"),
        &config,
        &dir.path().join("promflow"),
        PROMFLOW_COUNTER,
    );
    results.push(("promflow", measure(&promflow, seconds)));
    drop(promflow);

    if std::path::Path::new(PROMETHEUS).exists() {
        let prometheus = start(
            "prometheus",
            PROMETHEUS,
            &config,
            &dir.path().join("prometheus"),
            PROMETHEUS_COUNTER,
        );
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
