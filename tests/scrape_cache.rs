//! The scrape cache (`src/scrape/scrape_cache.rs`) seen from outside: what promflow
//! stores and forwards while series are taken from the cache by their exposed text.
//!
//! promflow forwards what it stores to a capturing remote-write receiver, so the
//! tests see every stored sample, stale markers included. Where Prometheus defines
//! the behaviour (duplicates within one scrape, the scrape report series), a real
//! Prometheus 2.42 (Debian `prometheus`) scrapes the same exporter as the oracle.

mod common;

use common::exporter::{Exporter, Reply};
use common::receiver::CaptureServer;
use common::{wait_until, Prometheus, Promflow};
use promflow::remote::proto::WriteRequest;
use prost::Message;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const STALE_BITS: u64 = 0x7ff0_0000_0000_0002;

fn config(exporter: &Exporter, receiver: Option<&CaptureServer>, job_extra: &str) -> String {
    let remote = receiver.map_or(String::new(), |r| {
        format!(
            "remote_write:\n  - url: {}\n    queue_config: {{batch_send_deadline: 100ms}}\n",
            r.url("/api/v1/write")
        )
    });
    format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n{remote}scrape_configs:\n  - job_name: app\n{job_extra}    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

/// Every sample remote-written so far for series named `name`: (labels, ts, value bits).
fn written(receiver: &CaptureServer, name: &str) -> Vec<(String, i64, u64)> {
    let mut out = Vec::new();
    for request in receiver.requests() {
        let body = snap::raw::Decoder::new()
            .decompress_vec(&request.body)
            .expect("snappy body");
        let write = WriteRequest::decode(body.as_slice()).expect("protobuf body");
        for series in write.timeseries {
            if !series
                .labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == name)
            {
                continue;
            }
            let labels: Vec<String> = series
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            for s in series.samples {
                out.push((labels.join(","), s.timestamp, s.value.to_bits()));
            }
        }
    }
    out.sort_by_key(|s| s.1);
    out
}

fn federated_value(promflow: &Promflow, selector: &str) -> Option<f64> {
    let fed = promflow.federate(&[selector]);
    fed.samples.first().map(|s| s.value)
}

#[test]
fn changing_values_are_stored_and_a_vanished_series_is_stale_once() {
    let exporter = Exporter::start(Reply::text("a{x=\"1\"} 1\nb 1\n"));
    let receiver = CaptureServer::start();
    let promflow = Promflow::start(&config(&exporter, Some(&receiver), ""));
    assert!(wait_until(WAIT, || written(&receiver, "b").len() >= 2));
    // A known series whose value changes: every value is stored.
    for v in 2..=4 {
        exporter.set(Reply::text(&format!("a{{x=\"1\"}} {v}\nb 1\n")));
        assert!(
            wait_until(WAIT, || federated_value(&promflow, "a") == Some(v as f64)),
            "a did not become {v}"
        );
    }
    // Remote write sends in batches: the last value may arrive a little later.
    let stored = |v: f64| written(&receiver, "a").iter().any(|s| s.2 == v.to_bits());
    for v in 1..=4 {
        assert!(
            wait_until(WAIT, || stored(v as f64)),
            "value {v} of a not stored"
        );
    }

    exporter.set(Reply::text("a{x=\"1\"} 5\n"));
    assert!(wait_until(WAIT, || written(&receiver, "b")
        .iter()
        .any(|s| s.2 == STALE_BITS)));
    // More scrapes without b, and b back afterwards.
    let a_count = written(&receiver, "a").len();
    assert!(wait_until(WAIT, || written(&receiver, "a").len() >= a_count + 5));
    let b = written(&receiver, "b");
    assert_eq!(
        b.iter().filter(|s| s.2 == STALE_BITS).count(),
        1,
        "b's stale markers: {b:?}"
    );
    assert_eq!(
        b.last().unwrap().2,
        STALE_BITS,
        "a sample of b after its marker"
    );
    exporter.set(Reply::text("a{x=\"1\"} 5\nb 7\n"));
    assert!(wait_until(WAIT, || federated_value(&promflow, "b") == Some(7.0)));
    // Known series went into the dataflow by id alone (their labels announced once,
    // b's again when it came back): none was unknown to its series catalog.
    assert_eq!(
        promflow
            .metrics()
            .sum("promflow_engine_samples_unknown_series_total"),
        Some(0.0)
    );
}

#[test]
fn a_relabel_change_on_reload_takes_effect_and_dropped_series_stay_dropped() {
    let exporter = Exporter::start(Reply::text("a 1\nb 1\n"));
    let receiver = CaptureServer::start();
    let dropping = "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: b\n        action: drop\n";
    let promflow = Promflow::start_with_args(
        &config(&exporter, Some(&receiver), dropping),
        &["--web.enable-lifecycle"],
    );
    // Many scrapes: b is never stored, though its text is cached as dropped.
    assert!(wait_until(WAIT, || written(&receiver, "a").len() >= 8));
    exporter.set(Reply::text("a 2\nb 2\n"));
    assert!(wait_until(WAIT, || federated_value(&promflow, "a") == Some(2.0)));
    assert!(written(&receiver, "b").is_empty());
    assert_eq!(
        federated_value(&promflow, "scrape_samples_post_metric_relabeling"),
        Some(1.0)
    );

    // Now rename instead of dropping: the cached outcome must not survive the reload.
    let renaming = "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: b\n        target_label: renamed\n        replacement: renamed_value\n";
    promflow.write_config(&config(&exporter, Some(&receiver), renaming));
    assert_eq!(promflow.reload().status, 200);
    assert!(
        wait_until(WAIT, || federated_value(
            &promflow,
            "b{renamed=\"renamed_value\"}"
        ) == Some(2.0)),
        "b not stored after the reload"
    );
    assert_eq!(
        federated_value(&promflow, "scrape_samples_post_metric_relabeling"),
        Some(2.0)
    );
}

#[test]
fn duplicates_within_a_scrape_are_handled_like_prometheus() {
    // The same series three times: twice by the same text, once by another text.
    let exporter = Exporter::start(Reply::text(
        "d{x=\"1\"} 1\nd{x=\"1\"} 2\nd {x=\"1\"} 3\ne 5\n",
    ));
    let config = config(&exporter, None, "");
    let promflow = Promflow::start(&config);
    let oracle = Prometheus::start(&config);
    let oracle_value = |expr: &str| -> Option<f64> {
        let result = oracle.query(expr);
        let first = result["result"].as_array()?.first()?.clone();
        first["value"][1].as_str()?.parse().ok()
    };
    assert!(wait_until(WAIT, || oracle_value("d").is_some()
        && federated_value(&promflow, "d").is_some()));
    // Let both take several scrapes of the same body.
    std::thread::sleep(Duration::from_secs(2));
    for expr in [
        "d",
        "e",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
    ] {
        let want = oracle_value(expr);
        assert!(want.is_some(), "oracle has no {expr}");
        assert_eq!(federated_value(&promflow, expr), want, "{expr}");
    }
}
