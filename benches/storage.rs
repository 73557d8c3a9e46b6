//! Storage footprint, promflow vs Prometheus on the same samples, side by side.
//!
//! Isolates what storage costs, not ingest speed (see `benches/ingest.rs` for that):
//!
//! 1. **Bytes per sample in a persisted block.** `SERIES` series (half counters with
//!    varying increments, half gauges with two decimals), one sample every 15s for 2h,
//!    explicit timestamps. promflow: appended to a `Storage` in this process, which
//!    cuts one block (Arrow IPC: chunks + postings index) and whose WAL is measured
//!    too. Prometheus: the same samples as an OpenMetrics file turned into a block by
//!    `promtool tsdb create-blocks-from openmetrics` (Debian `prometheus`). Both block
//!    directories are measured whole (chunks, index, metadata).
//! 2. **RSS per active series, and WAL bytes per sample, live.** A synthetic exporter
//!    in this process serves `TARGETS` × `LIVE_SERIES` series on 127.0.0.1; promflow and
//!    then a real Prometheus (`/usr/bin/prometheus`) scrape it every second for
//!    `SECONDS`. RSS (`VmRSS` of `/proc/<pid>/status`) is read right after startup
//!    and at the end; per series = (end − start) / series. WAL bytes per sample = size
//!    of the WAL directory / samples ingested (each server's own counter).
//!
//! Run: `cargo bench --bench storage` (env `STORAGE_SERIES` [2000], `STORAGE_TARGETS`
//! [10], `STORAGE_LIVE_SERIES` [1000], `STORAGE_SECONDS` [60] override the workload;
//! `STORAGE_SECONDS=0` runs part 1 only).

#[path = "side_by_side/mod.rs"]
mod side_by_side;

use promflow::storage::{Storage, StorageOptions, WalFsync};
use side_by_side::{du, env_or, rss_bytes, serve_exporter, Server, PROMETHEUS, PROMFLOW, PROMTOOL};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

const STEP_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;

/// The value of series `i` at step `k`: counters with varying increments, or gauges
/// with two decimals, deterministic.
fn value(i: usize, k: i64) -> f64 {
    let h = (i as i64 * 7919 + k * 104_729) % 1000;
    if i.is_multiple_of(2) {
        (k * (10 + i as i64 % 50) + h % 7) as f64
    } else {
        (5000 + h * 3 + (i as i64 % 100)) as f64 / 100.0
    }
}

fn labels(i: usize) -> Vec<(String, String)> {
    let (name, kind) = if i.is_multiple_of(2) {
        ("bench_requests_total", "counter")
    } else {
        ("bench_temperature", "gauge")
    };
    vec![
        ("__name__".into(), name.into()),
        ("instance".into(), format!("host-{}:9100", i / 100)),
        ("job".into(), "node".into()),
        ("series".into(), i.to_string()),
        ("kind".into(), kind.into()),
    ]
}

/// Part 1: returns (promflow block bytes/sample, promflow WAL bytes/sample,
/// Prometheus block bytes/sample if promtool is there).
fn block_footprint(dir: &Path, series: usize) -> (f64, f64, Option<f64>) {
    let t0 = 1_700_000_000_000 / (2 * HOUR_MS) * (2 * HOUR_MS);
    let steps = 2 * HOUR_MS / STEP_MS;
    let samples = series as f64 * steps as f64;

    // promflow
    let options = StorageOptions {
        wal_fsync: WalFsync::Every(Duration::from_secs(1)),
        ..StorageOptions::new(dir.join("promflow-block"))
    };
    let storage = Storage::open(&options).expect("open storage");
    let all: Vec<Arc<dataflows::Labels>> = (0..series)
        .map(|i| Arc::new(dataflows::Labels::from_pairs(labels(i))))
        .collect();
    for k in 0..steps {
        let batch: Vec<dataflows::Sample> = all
            .iter()
            .enumerate()
            .map(|(i, l)| dataflows::Sample {
                series_id: l.hash(),
                labels: l.clone(),
                timestamp_ms: t0 + k * STEP_MS,
                value: value(i, k),
                start_ms: 0,
            })
            .collect();
        storage.append(&batch).expect("appending to storage");
    }
    let (_, wal_bytes) = storage.disk_bytes();
    // One sample 1h past the block's end makes the first 2h cuttable.
    let (i, l) = (0, all[0].clone());
    storage
        .append(&[dataflows::Sample {
            series_id: l.hash(),
            labels: l,
            timestamp_ms: t0 + 3 * HOUR_MS,
            value: value(i, steps),
            start_ms: 0,
        }])
        .expect("appending to storage");
    storage.housekeeping(t0 + 3 * HOUR_MS);
    let blocks = storage.blocks();
    assert_eq!(blocks.len(), 1, "one block cut");
    assert_eq!(blocks[0].samples as f64, samples);
    let (block_bytes, _) = storage.disk_bytes();
    let promflow_block = block_bytes as f64 / samples;
    let promflow_wal = wal_bytes as f64 / samples;

    // Prometheus, through promtool's backfill of the same samples.
    let prometheus_block = Path::new(PROMTOOL).exists().then(|| {
        let om = dir.join("samples.om");
        let mut text = String::new();
        for (i, pairs) in (0..series).map(|i| (i, labels(i))) {
            let name = &pairs[0].1;
            let rest: Vec<String> = pairs[1..]
                .iter()
                .map(|(n, v)| format!("{n}=\"{v}\""))
                .collect();
            if i < 2 {
                let kind = if i.is_multiple_of(2) {
                    "counter"
                } else {
                    "gauge"
                };
                text.push_str(&format!("# TYPE {name} {kind}\n"));
            }
            for k in 0..steps {
                let ts = (t0 + k * STEP_MS) as f64 / 1000.0;
                text.push_str(&format!(
                    "{name}{{{}}} {} {ts}\n",
                    rest.join(","),
                    value(i, k)
                ));
            }
        }
        text.push_str("# EOF\n");
        std::fs::write(&om, text).expect("write OpenMetrics");
        let out_dir = dir.join("prometheus-block");
        let out = Command::new(PROMTOOL)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&out_dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        du(&out_dir) as f64 / samples
    });
    (promflow_block, promflow_wal, prometheus_block)
}

/// A node_exporter-like body with `series` series whose values change every scrape.
fn body(target: usize, series: usize, tick: u64) -> String {
    let mut out = String::with_capacity(series * 80);
    out.push_str("# TYPE bench_requests_total counter\n");
    for i in 0..series {
        out.push_str(&format!(
            "bench_requests_total{{target=\"{target}\",series=\"{i}\"}} {}\n",
            value(i, tick as i64)
        ));
    }
    out
}

struct Live {
    rss_per_series: f64,
    rss_end: f64,
    wal_bytes_per_sample: f64,
    samples: f64,
}

/// Part 2 for one server: starts it, measures, stops it.
fn live(
    bin: &str,
    data: &Path,
    wal_dir: &str,
    counter: &str,
    config: &Path,
    series: usize,
    seconds: u64,
) -> Live {
    let server = Server::start("server", bin, config, data, &[]);
    let rss_start = rss_bytes(server.pid());
    std::thread::sleep(Duration::from_secs(seconds));
    let rss_end = rss_bytes(server.pid());
    let samples = server.metric(counter);
    let wal = du(&data.join(wal_dir));
    Live {
        rss_per_series: (rss_end - rss_start) / series as f64,
        rss_end,
        wal_bytes_per_sample: wal as f64 / samples.max(1.0),
        samples,
    }
}

fn main() {
    let series = env_or("STORAGE_SERIES", 2000);
    let targets = env_or("STORAGE_TARGETS", 10);
    let live_series = env_or("STORAGE_LIVE_SERIES", 1000);
    let seconds = env_or("STORAGE_SECONDS", 60) as u64;
    let dir = tempfile::tempdir().unwrap();

    println!(
        "part 1: {series} series x 2h at 15s = {} samples, one block",
        series * 480
    );
    let (pf_block, pf_wal, prom_block) = block_footprint(dir.path(), series);
    println!("  promflow   block: {pf_block:.3} bytes/sample (WAL before the cut: {pf_wal:.3})");
    match prom_block {
        Some(b) => println!(
            "  prometheus block: {b:.3} bytes/sample  -> ratio promflow/prometheus {:.2}",
            pf_block / b
        ),
        None => {
            println!("  {PROMTOOL} not found: no side-by-side block (apt-get install prometheus)")
        }
    }

    if seconds == 0 {
        return;
    }
    let ticks = Arc::new(AtomicU64::new(0));
    let mut addresses = Vec::new();
    for target in 0..targets {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        addresses.push(format!("\"{}\"", listener.local_addr().unwrap()));
        serve_exporter(listener, ticks.clone(), move |tick| {
            body(target, live_series, tick)
        });
    }
    let config = dir.path().join("bench.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: synthetic\n    static_configs:\n      - targets: [{}]\n",
            addresses.join(", ")
        ),
    )
    .unwrap();
    let total = targets * live_series;
    println!("part 2: {targets} targets x {live_series} series = {total} active series, scraped every 1s for {seconds}s");
    let mut results = vec![(
        "promflow",
        live(
            PROMFLOW,
            &dir.path().join("promflow-live"),
            "wal",
            "promflow_samples_ingested_total",
            &config,
            total,
            seconds,
        ),
    )];
    if Path::new(PROMETHEUS).exists() {
        results.push((
            "prometheus",
            live(
                PROMETHEUS,
                &dir.path().join("prometheus-live"),
                "wal",
                "prometheus_tsdb_head_samples_appended_total",
                &config,
                total,
                seconds,
            ),
        ));
    }
    for (name, r) in &results {
        println!(
            "  {name:>10}: RSS {:.1} MiB at the end, {:.0} bytes/active series; WAL {:.3} bytes/sample over {:.0} samples",
            r.rss_end / (1 << 20) as f64,
            r.rss_per_series,
            r.wal_bytes_per_sample,
            r.samples
        );
    }
    if let [(_, p), (_, q)] = results.as_slice() {
        println!(
            "  ratio promflow/prometheus: RSS per series {:.2}, WAL bytes per sample {:.2}",
            p.rss_per_series / q.rss_per_series,
            p.wal_bytes_per_sample / q.wal_bytes_per_sample
        );
    }
}
