//! Samples at a timestamp their series already has, side by side with the oracle (a
//! real Prometheus 2.42): an exact duplicate (same timestamp, same value; a target
//! repeating its exposed timestamps, federation with `honor_timestamps`, a retried
//! remote write) is dropped silently, uncounted; another value at that timestamp is
//! refused as `ErrDuplicateSampleForTimestamp`; an older one as out of order.
//!
//! Scrape: each server scrapes its own controllable exporter
//! (`tests/common/exporter.rs`), which plays the same sequence of protobuf bodies
//! (floats and integer native histograms, every sample with an explicit timestamp):
//! the first body twice, then one body repeating those timestamps with the same and
//! with other values and an older timestamp, once, then a body of exact duplicates for
//! ever. Both must then hold the same samples and count the same refusals in
//! `prometheus_target_scrapes_sample_duplicate_timestamp_total` and
//! `prometheus_target_scrapes_sample_out_of_order_total` (once each: the refusing body
//! is served once to each). Remote write 1.0: the same requests to both get the same
//! status and message, and leave the same samples (a refused request stores nothing).

mod common;

use std::time::Duration;

use common::exporter::{Exporter, Reply};
use common::protobuf::{self, label};
use common::{now_ms, remote_write, wait_until, Peer, Prometheus, Promflow};
use promflow::scrape::exposition::metrics_proto::{
    BucketSpan, Histogram, Metric, MetricFamily, MetricType,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const FLAGS: [&str; 1] = ["--enable-feature=native-histograms"];

/// An integer native histogram (schema 0, a zero bucket, two positive buckets) whose
/// counts grow with `n`.
fn histogram(n: u64) -> Histogram {
    let (zero, first, second) = (1 + n, 2 + n, 3 + 2 * n);
    Histogram {
        sample_count: Some(zero + first + second),
        sample_sum: Some(4.5 + n as f64),
        schema: Some(0),
        zero_threshold: Some(0.001),
        zero_count: Some(zero),
        positive_span: vec![BucketSpan {
            offset: Some(0),
            length: Some(2),
        }],
        positive_delta: vec![first as i64, second as i64 - first as i64],
        ..Default::default()
    }
}

/// One body: per series `k`, a float (`dup_value{k}`) and a histogram (`dup_hist{k}`)
/// at `(timestamp, n)` (the float's value is `n`; the histogram is `histogram(n)`).
fn body(series: &[(&str, i64, u64)]) -> Reply {
    let floats = series
        .iter()
        .map(|&(k, ts, n)| Metric {
            label: vec![label("k", k)],
            ..protobuf::counter(n as f64, Some(ts))
        })
        .collect();
    let histograms = series
        .iter()
        .map(|&(k, ts, n)| Metric {
            label: vec![label("k", k)],
            histogram: Some(histogram(n)),
            timestamp_ms: Some(ts),
            ..Default::default()
        })
        .collect();
    let families: Vec<MetricFamily> = vec![
        protobuf::family("dup_value_total", MetricType::Counter, None, floats),
        protobuf::family("dup_hist", MetricType::Histogram, None, histograms),
    ];
    protobuf::reply(&families)
}

fn config(exporter: &Exporter) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

/// A counter of `/metrics` (0 when absent).
fn counter(server: &Peer, name: &str) -> f64 {
    server.metrics().sum(name).unwrap_or(0.0)
}

/// Every sample `expr` (a range selector) holds at `at_ms`, series sorted, without
/// their `instance` (each server scrapes its own exporter).
fn stored(server: &Peer, expr: &str, at_ms: i64) -> Value {
    let mut data = server.query_at(expr, at_ms);
    if let Some(results) = data["result"].as_array_mut() {
        for r in results.iter_mut() {
            if let Some(metric) = r["metric"].as_object_mut() {
                metric.remove("instance");
            }
        }
        results.sort_by_key(|r| r["metric"].to_string());
    }
    data
}

#[test]
fn scraped_duplicates_are_dropped_or_refused_as_prometheus_does() {
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    let (t1, t2, t3) = (t0, t0 + 10_000, t0 + 20_000);
    // "same" repeats its sample; "diff" repeats its timestamp with another value;
    // "older" goes back to an older timestamp; "fresh" moves on.
    let first = body(&[
        ("same", t1, 1),
        ("diff", t1, 1),
        ("older", t2, 1),
        ("fresh", t1, 1),
    ]);
    let refusing = body(&[
        ("same", t1, 1),
        ("diff", t1, 2),
        ("older", t1, 3),
        ("fresh", t3, 4),
    ]);
    let repeating = body(&[
        ("same", t1, 1),
        ("diff", t1, 1),
        ("older", t2, 1),
        ("fresh", t3, 4),
    ]);
    let sequence = vec![first.clone(), first, refusing, repeating];
    let ours = Exporter::start_sequence(sequence.clone());
    let theirs = Exporter::start_sequence(sequence);
    let promflow = Promflow::start_with_args(&config(&ours), &FLAGS);
    let oracle = Prometheus::start_with_args(&config(&theirs), &FLAGS);
    for exporter in [&ours, &theirs] {
        // The whole sequence, then two scrapes of exact duplicates more.
        assert!(wait_until(WAIT, || exporter.sequence_done()
            && exporter.served().len() >= 6));
    }
    // The last scrape's samples are committed.
    std::thread::sleep(Duration::from_millis(500));
    let at = now_ms();
    for expr in ["dup_value_total[10m]", "dup_hist[10m]"] {
        let (ours, theirs) = (stored(&promflow, expr, at), stored(&oracle, expr, at));
        assert_eq!(ours["result"].as_array().map(Vec::len), Some(4), "{ours:#}");
        assert_eq!(
            ours, theirs,
            "{expr}:\npromflow: {ours:#}\noracle: {theirs:#}"
        );
    }
    for name in [
        "prometheus_target_scrapes_sample_duplicate_timestamp_total",
        "prometheus_target_scrapes_sample_out_of_order_total",
        "prometheus_target_scrapes_sample_out_of_bounds_total",
    ] {
        let (ours, theirs) = (counter(&promflow, name), counter(&oracle, name));
        assert_eq!(ours, theirs, "{name}");
    }
    // One refused float and one refused histogram of each kind.
    assert_eq!(
        counter(
            &oracle,
            "prometheus_target_scrapes_sample_duplicate_timestamp_total"
        ),
        2.0
    );
    // promflow's own count of refusals: the same four, not the exact duplicates.
    assert_eq!(
        counter(&promflow, "promflow_samples_out_of_order_total"),
        4.0
    );
}

#[test]
fn remote_written_duplicates_are_dropped_or_refused_as_prometheus_does() {
    let flags = ["--web.enable-remote-write-receiver"];
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &flags);
    let oracle = Prometheus::start_with_args("scrape_configs: []\n", &flags);
    let t1 = (now_ms() - 60_000) / 1000 * 1000;
    let t2 = t1 + 10_000;
    let series = |k: &str, samples: &[(i64, f64)]| -> remote_write::Series {
        (
            vec![
                ("__name__".to_string(), "rw_value".to_string()),
                ("k".to_string(), k.to_string()),
            ],
            samples.to_vec(),
        )
    };
    let requests = [
        // Stored.
        vec![
            series("same", &[(t1, 1.0)]),
            series("diff", &[(t1, 1.0)]),
            series("older", &[(t2, 1.0)]),
        ],
        // A retry: exact duplicates.
        vec![series("same", &[(t1, 1.0)]), series("older", &[(t2, 1.0)])],
        // Another value at the newest timestamp, beside a new series.
        vec![series("new", &[(t1, 5.0)]), series("diff", &[(t1, 2.0)])],
        // Older than the newest, beside a new series.
        vec![series("new2", &[(t1, 5.0)]), series("older", &[(t1, 3.0)])],
        // Out of order within one request, against nothing stored.
        vec![series("within", &[(t2, 1.0), (t1, 2.0), (t2, 3.0)])],
    ];
    let mut statuses = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let body = remote_write::body(request);
        let (ours, theirs) = (
            remote_write::send(&promflow.url(""), &body),
            remote_write::send(&oracle.url(""), &body),
        );
        assert_eq!(
            (ours.status, ours.body.trim()),
            (theirs.status, theirs.body.trim()),
            "request {i}"
        );
        statuses.push(theirs.status);
    }
    // What the oracle answered: the refusals are 400s (not retried), the rest 204.
    assert_eq!(statuses, [204, 204, 400, 400, 204]);
    let at = now_ms();
    let (ours, theirs) = (
        stored(&promflow, "rw_value[10m]", at),
        stored(&oracle, "rw_value[10m]", at),
    );
    assert_eq!(ours, theirs, "promflow: {ours:#}\noracle: {theirs:#}");
}
