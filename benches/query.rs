//! Dashboard query latency, promflow vs Prometheus on the same data, side by side.
//!
//! Isolates the read path (`/api/v1/query_range`: selection from head and blocks,
//! PromQL evaluation, JSON): the kind of queries a Grafana dashboard sends over a day
//! of history. Both servers (promflow, and a real Prometheus 2.42 from
//! `/usr/bin/prometheus`) start empty with their remote write receiver on, and receive
//! the same `QUERY_HOURS` (24) of samples by remote write, oldest first, in requests of
//! 40 steps of every series:
//! - `bench_cpu_seconds_total{instance, cpu}`: `QUERY_INSTANCES` (20) × 10 counters;
//! - `bench_latency_seconds_bucket{instance, le}`: `QUERY_HIST_INSTANCES` (10) × 10
//!   buckets of a cumulative histogram;
//!
//! one sample every 15s, 7.5s off the query step grid (so no range window ends on a
//! sample, where Prometheus 2.42's closed windows and promflow's left-open ones would
//! differ), for 24h and 10 minutes (so no query window reaches back to where the series
//! start). Once both have cut blocks from what they received, each query runs
//! `QUERY_REPEATS` (20) times on each server, alternating; the bench prints p50 and p99
//! wall-clock latency per server and the ratio promflow/Prometheus of each, and checks
//! once that both give the same answer (same series, values within 1e-6 relative).
//!
//! Run: `cargo bench --bench query` (env `QUERY_HOURS`, `QUERY_INSTANCES`,
//! `QUERY_HIST_INSTANCES`, `QUERY_REPEATS` override the workload). All traffic stays
//! on 127.0.0.1.

#[path = "side_by_side/mod.rs"]
mod side_by_side;

use promflow::remote::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use side_by_side::{encode, env_or, http, http_get, Server, PROMETHEUS, PROMFLOW};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STEP_MS: i64 = 15_000;
const STEPS_PER_REQUEST: i64 = 40;
const BUCKETS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

/// One series: labels and a value per step `k` (cumulative, so counters).
struct Synthetic {
    labels: Vec<(String, String)>,
    increment: Box<dyn Fn(i64) -> f64>,
}

fn series(instances: usize, hist_instances: usize) -> Vec<Synthetic> {
    let mut out = Vec::new();
    for i in 0..instances {
        for cpu in 0..10 {
            out.push(Synthetic {
                labels: vec![
                    ("__name__".into(), "bench_cpu_seconds_total".into()),
                    ("job".into(), "bench".into()),
                    ("instance".into(), format!("host-{i}:9100")),
                    ("cpu".into(), cpu.to_string()),
                ],
                increment: Box::new(move |k| {
                    ((i * 7 + cpu * 3) as i64 + k * 13).rem_euclid(10) as f64 * 0.1
                }),
            });
        }
    }
    for i in 0..hist_instances {
        for (j, le) in BUCKETS.iter().enumerate() {
            out.push(Synthetic {
                labels: vec![
                    ("__name__".into(), "bench_latency_seconds_bucket".into()),
                    ("job".into(), "bench".into()),
                    ("instance".into(), format!("api-{i}:8080")),
                    ("le".into(), le.to_string()),
                ],
                // Cumulative across buckets: bucket j counts observations of 0..=j.
                increment: Box::new(move |k| {
                    ((j + 1) * (1 + ((k + i as i64) % 3) as usize)) as f64
                }),
            });
        }
    }
    out
}

/// Sends `[first, first + steps)` of every series to both servers.
fn load(
    servers: &[&Server],
    all: &[Synthetic],
    totals: &mut [f64],
    t0: i64,
    first: i64,
    steps: i64,
) {
    let timeseries: Vec<TimeSeries> = all
        .iter()
        .zip(totals.iter_mut())
        .map(|(s, total)| TimeSeries {
            labels: s
                .labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: (first..first + steps)
                .map(|k| {
                    *total += (s.increment)(k);
                    Sample {
                        value: *total,
                        timestamp: t0 + k * STEP_MS,
                    }
                })
                .collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        })
        .collect();
    let body = proto::encode(&WriteRequest { timeseries });
    for server in servers {
        let answer = http(&server.addr, "POST", "/api/v1/write", &body);
        assert!(
            matches!(answer, Some((204, _)) | Some((200, _))),
            "{} refused remote write: {answer:?}",
            server.name
        );
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// The query's matrix as `labels → values`, for comparing the two answers.
fn matrix(body: &str) -> Vec<(String, Vec<f64>)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut out: Vec<(String, Vec<f64>)> = v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let values = r["values"]
                        .as_array()
                        .map(|vs| {
                            vs.iter()
                                .map(|p| p[1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN))
                                .collect()
                        })
                        .unwrap_or_default();
                    (r["metric"].to_string(), values)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `None` if both answers are the same (values within 1e-6 relative), else the first
/// difference.
fn difference(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} series vs {}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        if x.0 != y.0 || x.1.len() != y.1.len() {
            return Some(format!(
                "{} ({} points) vs {} ({} points)",
                x.0,
                x.1.len(),
                y.0,
                y.1.len()
            ));
        }
        for (i, (p, q)) in x.1.iter().zip(&y.1).enumerate() {
            let close = (p.is_nan() && q.is_nan())
                || (p - q).abs() <= 1e-6 * p.abs().max(q.abs()).max(1e-9);
            if !close {
                return Some(format!("{} point {i}: {p} vs {q}", x.0));
            }
        }
    }
    None
}

fn main() {
    let hours = env_or("QUERY_HOURS", 24) as i64;
    let instances = env_or("QUERY_INSTANCES", 20);
    let hist_instances = env_or("QUERY_HIST_INSTANCES", 10);
    let repeats = env_or("QUERY_REPEATS", 20);
    if !std::path::Path::new(PROMETHEUS).exists() {
        println!("{PROMETHEUS} not found: this bench needs it (apt-get install prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.yml");
    std::fs::write(&config, "scrape_configs: []\n").unwrap();
    let flags = ["--web.enable-remote-write-receiver"];
    let promflow = Server::start(
        "promflow",
        PROMFLOW,
        &config,
        &dir.path().join("pf"),
        &flags,
    );
    let prometheus = Server::start(
        "prometheus",
        PROMETHEUS,
        &config,
        &dir.path().join("prom"),
        &flags,
    );

    let all = series(instances, hist_instances);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 10 minutes more than the longest query range, so that no window of it reaches
    // back to where the series start (rate's extrapolation differs there between
    // Prometheus 2.42 and 3.x semantics).
    let steps = (hours * 3600 + 600) * 1000 / STEP_MS;
    // Samples 7.5s off the 15s grid the query steps are on.
    let end_grid = now / 60_000 * 60_000 - 60_000;
    let t0 = end_grid - steps * STEP_MS + STEP_MS / 2;
    println!(
        "workload: {} series ({} counters, {} histogram buckets) x {hours}h at 15s = {} samples, loaded by remote write into both",
        all.len(),
        instances * 10,
        hist_instances * 10,
        all.len() as i64 * steps
    );
    let loading = Instant::now();
    let mut totals = vec![0.0; all.len()];
    let mut first = 0;
    while first < steps {
        let n = STEPS_PER_REQUEST.min(steps - first);
        load(&[&promflow, &prometheus], &all, &mut totals, t0, first, n);
        first += n;
    }
    println!("loaded in {:.1}s", loading.elapsed().as_secs_f64());
    // Both cut blocks from what they received (promflow's housekeeping runs every
    // minute; Prometheus compacts its head once it spans 3h).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let pf = promflow.metric("promflow_tsdb_blocks_loaded");
        let prom = prometheus.metric("prometheus_tsdb_blocks_loaded");
        if (pf >= 1.0 && prom >= 1.0) || Instant::now() > deadline {
            println!("blocks: promflow {pf}, prometheus {prom}");
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // Let compaction that follows a cut settle.
    std::thread::sleep(Duration::from_secs(5));

    let end_s = end_grid / 1000;
    let cases: Vec<(&str, &str, i64, i64)> = vec![
        ("bench_cpu_seconds_total", "1h", 3600, 15),
        ("rate(bench_cpu_seconds_total[5m])", "1h", 3600, 15),
        (
            "sum by (instance) (rate(bench_cpu_seconds_total[5m]))",
            "1h",
            3600,
            15,
        ),
        (
            "sum by (instance) (rate(bench_cpu_seconds_total[5m]))",
            "24h",
            86400,
            60,
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
            "1h",
            3600,
            15,
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
            "24h",
            86400,
            60,
        ),
        (
            "max by (instance) (bench_cpu_seconds_total)",
            "24h",
            86400,
            60,
        ),
    ];
    println!(
        "\n| query | range, step | promflow p50 / p99 | Prometheus p50 / p99 | ratio p50 / p99 | same answer |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (query, range_name, range_s, step_s) in cases {
        let range_s = range_s.min(hours * 3600);
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={end_s}&step={step_s}",
            encode(query),
            end_s - range_s
        );
        let ours = http_get(&promflow.addr, &path).unwrap_or_default();
        let theirs = http_get(&prometheus.addr, &path).unwrap_or_default();
        let differs = difference(&matrix(&ours), &matrix(&theirs));
        if let Some(d) = &differs {
            println!("(promflow and Prometheus differ on {query} over {range_name}: {d})");
        }
        let agree = differs.is_none() && !matrix(&ours).is_empty();
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..repeats {
            for (i, server) in [&promflow, &prometheus].into_iter().enumerate() {
                let started = Instant::now();
                let answer = http_get(&server.addr, &path);
                times[i].push(started.elapsed().as_secs_f64() * 1000.0);
                assert!(answer.is_some(), "{} failed {query}", server.name);
            }
        }
        for t in &mut times {
            t.sort_by(|a, b| a.total_cmp(b));
        }
        let (p50, p99) = (percentile(&times[0], 0.5), percentile(&times[0], 0.99));
        let (q50, q99) = (percentile(&times[1], 0.5), percentile(&times[1], 0.99));
        println!(
            "| `{query}` | {range_name}, {step_s}s | {p50:.1} / {p99:.1} ms | {q50:.1} / {q99:.1} ms | {:.2} / {:.2} | {} |",
            p50 / q50,
            p99 / q99,
            if agree { "yes" } else { "NO" }
        );
    }
}
