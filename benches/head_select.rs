//! Head selection: what reading a few series out of a large in-memory head costs, and
//! whether a large read holds appends back.
//!
//! Isolates storage's `select` (no PromQL, no HTTP): a head of `HEAD_TARGETS` ×
//! `HEAD_SERIES_PER_TARGET` node_exporter-like series (default 50 × 2,000 = 100k: 32
//! `node_cpu_seconds_total` series per target, `up`, and `node_bench_<k>` metrics to
//! fill), `HEAD_SAMPLES` samples each 5 s apart (default 60, the 5 m an alert's `rate`
//! reads), appended target by target as scrapes are.
//!
//! 1. **Select.** The median time of `Storage::select` over the last 5 m for a few
//!    selectors, from one series to all of them (`HEAD_ROUNDS` rounds each).
//! 2. **Appends beside a large read.** One thread appends one target's scrape (2,000
//!    samples) in a loop for 2 s and records each append's latency; it runs alone, then
//!    while another thread selects every series in a loop. A head that selects under
//!    its lock for the whole read shows the read's length in the append tail.
//!
//! Run: `cargo bench --bench head_select` (the env variables above override the
//! workload). In-process only, no peers.

use dataflows::{LabelMatcher, Labels, Sample, Selector};
use promflow::storage::Storage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEP_MS: i64 = 5_000;
const MODES: [&str; 8] = [
    "idle", "user", "system", "iowait", "irq", "nice", "softirq", "steal",
];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One target's series.
fn target_series(target: usize, per_target: usize) -> Vec<Arc<Labels>> {
    let instance = format!("host-{target}:9100");
    let with = |name: &str, extra: &[(&str, String)]| {
        let mut pairs = vec![
            ("__name__".to_string(), name.to_string()),
            ("instance".to_string(), instance.clone()),
            ("job".to_string(), "node".to_string()),
        ];
        pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.clone())));
        Arc::new(Labels::from_pairs(pairs))
    };
    let mut out = vec![with("up", &[])];
    for cpu in 0..4 {
        for mode in MODES {
            out.push(with(
                "node_cpu_seconds_total",
                &[("cpu", cpu.to_string()), ("mode", mode.to_string())],
            ));
        }
    }
    let mut i = 0;
    while out.len() < per_target {
        out.push(with(
            &format!("node_bench_{}", i % 100),
            &[("series", (i / 100).to_string())],
        ));
        i += 1;
    }
    out
}

fn scrape(series: &[Arc<Labels>], ts: i64) -> Vec<Sample> {
    series
        .iter()
        .enumerate()
        .map(|(i, labels)| Sample {
            series_id: labels.hash(),
            labels: labels.clone(),
            timestamp_ms: ts,
            value: (ts / 1000 + i as i64) as f64,
            start_ms: 0,
        })
        .collect()
}

fn selector(matchers: &[(&str, &str, &str)]) -> Selector {
    Selector {
        matchers: matchers
            .iter()
            .map(|(n, o, v)| LabelMatcher::new(n, o, v).unwrap())
            .collect(),
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// Appends one target's scrape after another for `run`, returning each latency.
fn append_latencies(
    storage: &Storage,
    targets: &[Vec<Arc<Labels>>],
    t0: i64,
    run: Duration,
) -> Vec<Duration> {
    let mut out = Vec::new();
    let started = Instant::now();
    let mut k = 0;
    while started.elapsed() < run {
        let target = &targets[k % targets.len()];
        let ts = t0 + (k / targets.len()) as i64 * STEP_MS;
        let batch = scrape(target, ts);
        let at = Instant::now();
        storage.append(&batch).expect("append");
        out.push(at.elapsed());
        k += 1;
    }
    out.sort();
    out
}

fn main() {
    let targets_n = env_or("HEAD_TARGETS", 50);
    let per_target = env_or("HEAD_SERIES_PER_TARGET", 2000);
    let samples = env_or("HEAD_SAMPLES", 60) as i64;
    let rounds = env_or("HEAD_ROUNDS", 30);
    let storage = Storage::new();
    let targets: Vec<Vec<Arc<Labels>>> = (0..targets_n)
        .map(|t| target_series(t, per_target))
        .collect();
    let t0 = 1_700_000_000_000;
    let built = Instant::now();
    for k in 0..samples {
        for target in &targets {
            storage
                .append(&scrape(target, t0 + k * STEP_MS))
                .expect("append");
        }
    }
    let end = t0 + (samples - 1) * STEP_MS;
    println!(
        "head: {} series x {samples} samples, built in {:.1} s",
        storage.series_count(),
        built.elapsed().as_secs_f64()
    );

    println!("part 1: Storage::select over the last 5m, median of {rounds}");
    let cases = [
        (
            "up{instance=\"host-7:9100\"}",
            selector(&[("__name__", "=", "up"), ("instance", "=", "host-7:9100")]),
        ),
        (
            "node_cpu_seconds_total{mode=\"idle\"}",
            selector(&[
                ("__name__", "=", "node_cpu_seconds_total"),
                ("mode", "=", "idle"),
            ]),
        ),
        (
            "node_cpu_seconds_total{mode!~\"idle|iowait\"}",
            selector(&[
                ("__name__", "=", "node_cpu_seconds_total"),
                ("mode", "!~", "idle|iowait"),
            ]),
        ),
        (
            "{__name__=~\"node_bench_1|node_bench_2\",instance=~\"host-1:.*\"}",
            selector(&[
                ("__name__", "=~", "node_bench_1|node_bench_2"),
                ("instance", "=~", "host-1:.*"),
            ]),
        ),
        (
            "{job=\"node\"} (every series)",
            selector(&[("job", "=", "node")]),
        ),
    ];
    for (name, sel) in &cases {
        let mut found = 0;
        let times: Vec<Duration> = (0..rounds)
            .map(|_| {
                let at = Instant::now();
                found = storage.select(sel, end - 300_000, end).len();
                at.elapsed()
            })
            .collect();
        println!(
            "  {name:<62} {found:>7} series  {:>10.1} us",
            median(times).as_secs_f64() * 1e6
        );
    }

    println!("part 2: append latency of one target's scrape ({per_target} samples), 2 s each");
    let t1 = end + STEP_MS;
    let alone = append_latencies(&storage, &targets, t1, Duration::from_secs(2));
    let reading = AtomicBool::new(true);
    let everything = selector(&[("job", "=", "node")]);
    let (beside, reads) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while reading.load(Ordering::Relaxed) {
                std::hint::black_box(storage.select(&everything, end - 300_000, i64::MAX));
                reads += 1;
            }
            reads
        });
        let t2 = t1 + 10_000 * STEP_MS;
        let beside = append_latencies(&storage, &targets, t2, Duration::from_secs(2));
        reading.store(false, Ordering::Relaxed);
        (beside, reader.join().unwrap())
    });
    for (name, lat) in [
        ("alone", &alone),
        ("beside a reader of every series", &beside),
    ] {
        let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "  {name:<32} {:>6} appends  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            lat.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    println!("  (the reader selected every series {reads} times meanwhile)");
}
