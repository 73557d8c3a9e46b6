//! promflow's `remote_write` sender against real Prometheus 2.42 receivers
//! (`--web.enable-remote-write-receiver`).
//!
//! promflow scrapes a controllable exporter and forwards what it stores to three
//! receivers: Prometheus A (with `write_relabel_configs` dropping `secret_metric`),
//! Prometheus B, which is frozen with SIGSTOP for a while (requests time out: the sender
//! retries with backoff) and then resumed, and a promflow without the receiver flag,
//! which answers 404 (a 4xx: the batch is dropped, not retried). Scraping then stops
//! (config reload without scrape jobs; the queues carry on), and the same queries give
//! the same answers on promflow and on both Prometheus servers, whose series carry the
//! `external_labels` promflow adds. The sender's `prometheus_remote_storage_*` metrics
//! show the retries, the relabel drops and the refused batches.
//!
//! External services: Prometheus (Debian `prometheus`), twice.

mod common;

use common::now_ms;

use common::exporter::{Exporter, Reply};
use common::http::with_query;
use common::{wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;
use std::time::Duration;

fn body(round: u64) -> Reply {
    let mut text = String::from("# TYPE kept_metric gauge\n");
    for i in 0..5 {
        text.push_str(&format!("kept_metric{{i=\"{i}\"}} {}\n", round * 10 + i));
    }
    text.push_str(&format!("secret_metric {round}\n"));
    Reply::text(&text)
}

fn config(exporter: Option<&Exporter>, a: &Peer, b: &Peer, refusing: &Peer) -> String {
    let scrape = match exporter {
        Some(e) => format!(
            "scrape_configs:\n  - job_name: data\n    static_configs:\n      - targets: ['{}']\n",
            e.addr()
        ),
        None => "scrape_configs: []\n".to_string(),
    };
    let queue =
        "    queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 400ms}\n";
    [
        "global:\n  scrape_interval: 200ms\n  external_labels:\n    origin: pf\n".to_string(),
        scrape,
        "remote_write:\n".to_string(),
        format!("  - url: {}\n    name: main\n{queue}", a.url("/api/v1/write")),
        "    write_relabel_configs:\n      - source_labels: [__name__]\n        regex: secret_metric\n        action: drop\n".to_string(),
        format!("  - url: {}\n    name: flaky\n    remote_timeout: 500ms\n{queue}", b.url("/api/v1/write")),
        format!("  - url: {}\n    name: refusing\n{queue}", refusing.url("/api/v1/write")),
    ]
    .concat()
}

/// The query's result as sorted `labels → value` text, without the `origin` label
/// (checked to be "pf" where present).
fn answer(peer: &Peer, query: &str, at_ms: i64) -> Vec<String> {
    let at = format!("{}.{:03}", at_ms / 1000, at_ms % 1000);
    let body = peer.get_ok(&with_query(
        "/api/v1/query",
        &[("query", query), ("time", &at)],
    ));
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut metric = r["metric"].clone();
            if let Some(origin) = metric.as_object_mut().unwrap().remove("origin") {
                assert_eq!(origin, "pf", "{r}");
            }
            format!("{metric} {}", r["value"][1])
        })
        .collect();
    out.sort();
    out
}

fn metric(promflow: &Promflow, name: &str, remote: &str) -> f64 {
    promflow
        .metrics()
        .find(name, &[("remote_name", remote)])
        .map(|s| s.value)
        .unwrap_or_else(|| panic!("{name}{{remote_name={remote}}} missing"))
}

const QUERIES: [&str; 3] = [
    "count_over_time(kept_metric[1h])",
    "sum_over_time(kept_metric[1h])",
    "count_over_time(up[1h])",
];

#[test]
fn remote_write_reaches_prometheus_with_retries_relabeling_and_refusals() {
    let args = ["--web.enable-remote-write-receiver"];
    let a = Prometheus::start_with_args("scrape_configs: []\n", &args);
    let b = Prometheus::start_with_args("scrape_configs: []\n", &args);
    let refusing = Promflow::start("scrape_configs: []\n");
    let exporter = Exporter::start(body(0));
    let promflow = Promflow::start_with_args(
        &config(Some(&exporter), &a, &b, &refusing),
        &["--web.enable-lifecycle"],
    );

    // Data flows to A; B is frozen for a while meanwhile.
    assert!(wait_until(Duration::from_secs(30), || !answer(
        &a,
        "kept_metric",
        now_ms()
    )
    .is_empty()));
    b.signal("STOP");
    for round in 1..=15 {
        exporter.set(body(round));
        std::thread::sleep(Duration::from_millis(200));
    }
    let retried = metric(
        &promflow,
        "prometheus_remote_storage_samples_retried_total",
        "flaky",
    );
    b.signal("CONT");
    assert!(
        retried > 0.0,
        "requests to the frozen receiver were retried"
    );
    for round in 16..=20 {
        exporter.set(body(round));
        std::thread::sleep(Duration::from_millis(200));
    }

    // Stop scraping; the queues (same settings) keep what they hold.
    promflow.write_config(&config(None, &a, &b, &refusing));
    assert_eq!(promflow.reload().status, 200);
    std::thread::sleep(Duration::from_millis(500));
    let at = now_ms();
    for query in QUERIES {
        let ours = answer(&promflow, query, at);
        assert!(!ours.is_empty(), "{query}");
        for (name, receiver) in [("A", &a), ("B (was frozen)", &b)] {
            assert!(
                wait_until(Duration::from_secs(30), || answer(receiver, query, at)
                    == ours),
                "{query} on {name}: {:?}\npromflow: {ours:?}\npromflow log:\n{}",
                answer(receiver, query, at),
                promflow.log()
            );
        }
    }
    // write_relabel_configs dropped secret_metric for A only.
    assert!(!answer(&promflow, "count_over_time(secret_metric[1h])", at).is_empty());
    assert!(answer(&a, "count_over_time(secret_metric[1h])", at).is_empty());
    assert!(!answer(&b, "count_over_time(secret_metric[1h])", at).is_empty());
    assert!(
        metric(
            &promflow,
            "prometheus_remote_storage_samples_dropped_total",
            "main"
        ) > 0.0
    );
    assert_eq!(
        metric(
            &promflow,
            "prometheus_remote_storage_samples_dropped_total",
            "flaky"
        ),
        0.0
    );
    // The 404s of a receiver that is not enabled are dropped, not retried.
    assert!(
        metric(
            &promflow,
            "prometheus_remote_storage_samples_failed_total",
            "refusing"
        ) > 0.0
    );
    assert_eq!(
        metric(
            &promflow,
            "prometheus_remote_storage_samples_retried_total",
            "refusing"
        ),
        0.0
    );
    // No `samples_failed_total == 0` for the frozen receiver: the copies of a batch it
    // took into its socket while frozen (the timed-out request and its retries, the same
    // body) are all applied when it thaws; once one is, a later copy holding two samples
    // of a series is refused with 400 (the older one is out of order for Prometheus
    // 2.42's head), and when that copy is the request the sender waits on, the sender
    // drops the batch as failed, as Prometheus's own does (seen once in a full run: 22
    // samples, 2 per series).
    // Nothing is lost: B's answers equal promflow's above.
}
