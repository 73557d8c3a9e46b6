//! Scrape behaviour against a controllable exporter (`tests/common/exporter.rs`), with a
//! real Prometheus (Debian `prometheus`) scraping the same exporter as the oracle where
//! Prometheus defines the behaviour: staleness when a series or a target goes away,
//! label conflicts, failed scrapes, request headers, gzip, limits.

mod common;

use common::exporter::{Exporter, Reply};
use common::{wait_until, Prometheus, Promflow};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn config(exporter: &Exporter, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n{extra}    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

/// Series names (with labels) promflow federates for job="app".
fn federated(promflow: &Promflow) -> Vec<String> {
    promflow
        .federate(&[r#"{job="app"}"#])
        .samples
        .iter()
        .map(|s| s.series())
        .collect()
}

fn has(promflow: &Promflow, series_prefix: &str) -> bool {
    federated(promflow)
        .iter()
        .any(|s| s.starts_with(series_prefix))
}

/// Whether the oracle's instant query for `expr` returns any series now.
fn oracle_has(oracle: &Prometheus, expr: &str) -> bool {
    !oracle.query(expr)["result"].as_array().unwrap().is_empty()
}

#[test]
fn a_vanished_series_is_stale_at_once_like_prometheus() {
    let exporter = Exporter::start(Reply::text("a 1\nb 2\n"));
    let promflow = Promflow::start(&config(&exporter, ""));
    let oracle = Prometheus::start(&config(&exporter, ""));
    assert!(wait_until(WAIT, || has(&promflow, "a{") && has(&promflow, "b{")));
    assert!(wait_until(WAIT, || oracle_has(&oracle, "b")));

    exporter.set(Reply::text("a 1\n"));
    // Far sooner than the 5m lookback: stale markers, not expiry.
    assert!(
        wait_until(WAIT, || !has(&promflow, "b{")),
        "b still federated"
    );
    assert!(has(&promflow, "a{"));
    assert!(
        wait_until(WAIT, || !oracle_has(&oracle, "b")),
        "oracle still has b"
    );
}

#[test]
fn a_failed_scrape_marks_up_zero_and_its_series_stale() {
    let exporter = Exporter::start(Reply::text("a 1\n"));
    let promflow = Promflow::start(&config(&exporter, ""));
    assert!(wait_until(WAIT, || has(&promflow, "a{")));

    exporter.set(Reply::text("a 1\nthis is { not a metric\n"));
    assert!(
        wait_until(WAIT, || !has(&promflow, "a{")),
        "a still federated after a failed scrape"
    );
    let up = promflow.federate(&[r#"up{job="app"}"#]);
    assert_eq!(up.samples.len(), 1);
    assert_eq!(up.samples[0].value, 0.0);
    let parse_errors = promflow
        .metrics()
        .sum("promflow_scrape_parse_errors_total")
        .unwrap_or(0.0);
    assert!(parse_errors >= 1.0, "parse error not counted");

    exporter.set(Reply::text("a 1\n"));
    assert!(
        wait_until(WAIT, || has(&promflow, "a{")),
        "a did not come back"
    );
}

#[test]
fn a_removed_job_goes_stale_on_reload() {
    let exporter = Exporter::start(Reply::text("a 1\n"));
    let promflow = Promflow::start_with_args(&config(&exporter, ""), &["--web.enable-lifecycle"]);
    assert!(wait_until(WAIT, || has(&promflow, "a{")));
    promflow.write_config("scrape_configs: []\n");
    assert_eq!(promflow.reload().status, 200);
    assert!(
        wait_until(WAIT, || federated(&promflow).is_empty()),
        "series of the removed job remain"
    );
}

#[test]
fn scrape_requests_carry_prometheus_headers() {
    let exporter = Exporter::start(Reply::text("a 1\n"));
    let promflow = Promflow::start(&config(&exporter, ""));
    assert!(wait_until(WAIT, || !exporter.requests().is_empty()));
    let request = &exporter.requests()[0];
    let header = |name: &str| {
        request
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        header("user-agent"),
        format!("promflow/{}", env!("CARGO_PKG_VERSION"))
    );
    let accept = header("accept");
    assert!(
        accept.contains("application/openmetrics-text")
            && accept.contains("text/plain;version=0.0.4"),
        "{accept}"
    );
    assert!(header("accept-encoding").contains("gzip"));
    assert_eq!(header("x-prometheus-scrape-timeout-seconds"), "1");
    drop(promflow);
}

#[test]
fn gzip_and_openmetrics_bodies_are_ingested() {
    let mut reply = Reply::text("# TYPE c counter\nc_total 3\nc_created 1700000000\n# EOF\n");
    reply.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8".into();
    reply.gzip = true;
    let exporter = Exporter::start(reply);
    let promflow = Promflow::start(&config(&exporter, ""));
    let oracle = Prometheus::start(&config(&exporter, ""));
    assert!(
        wait_until(WAIT, || has(&promflow, "c_total{")),
        "{:?}",
        federated(&promflow)
    );
    assert!(wait_until(WAIT, || oracle_has(&oracle, "c_total")));
    // Prometheus 2.42 keeps `_created` as a series of its own; so must we.
    assert_eq!(
        has(&promflow, "c_created{"),
        oracle_has(&oracle, "c_created")
    );
}

#[test]
fn conflicting_labels_become_exported_unless_honored() {
    let exporter = Exporter::start(Reply::text("m{job=\"inner\",instance=\"x\"} 1\n"));
    let promflow = Promflow::start(&config(&exporter, ""));
    assert!(wait_until(WAIT, || has(&promflow, "m{")));
    let m = promflow.federate(&["m"]);
    let s = &m.samples[0];
    assert_eq!(s.label("job"), Some("app"));
    assert_eq!(s.label("exported_job"), Some("inner"));
    assert_eq!(s.label("exported_instance"), Some("x"));

    let honoring = Promflow::start(&config(&exporter, "    honor_labels: true\n"));
    assert!(wait_until(WAIT, || !honoring
        .federate(&["m"])
        .samples
        .is_empty()));
    let m = honoring.federate(&["m"]);
    assert_eq!(m.samples[0].label("job"), Some("inner"));
    assert_eq!(m.samples[0].label("instance"), Some("x"));
}

#[test]
fn limits_fail_the_scrape() {
    let exporter = Exporter::start(Reply::text("a 1\nb 2\nc 3\n"));
    let promflow = Promflow::start(&config(&exporter, "    sample_limit: 2\n"));
    assert!(wait_until(WAIT, || !promflow
        .federate(&[r#"up{job="app"}"#])
        .samples
        .is_empty()));
    assert_eq!(
        promflow.federate(&[r#"up{job="app"}"#]).samples[0].value,
        0.0
    );
    assert!(!has(&promflow, "a{"));

    let small = Promflow::start(&config(&exporter, "    body_size_limit: 4B\n"));
    assert!(wait_until(WAIT, || !small
        .federate(&[r#"up{job="app"}"#])
        .samples
        .is_empty()));
    assert_eq!(small.federate(&[r#"up{job="app"}"#]).samples[0].value, 0.0);
}
