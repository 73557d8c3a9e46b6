//! promflow → real Alertmanager 0.25 → webhook: an alerting rule over a scraped
//! exporter fires, Alertmanager receives promflow's v2 payload and delivers a webhook
//! whose shape matches Alertmanager's own (oracle sample
//! `../shared/oracle-samples/alertmanager-0.25_webhook_payloads.jsonl`); when the
//! condition clears, promflow sends the alert with `endsAt` and a `resolved` webhook
//! arrives.
//!
//! A second test starts Alertmanager only after promflow failed to reach it: the
//! notifier's retries deliver the alert (and `--web.external-url` shapes its
//! `generatorURL`).
//!
//! Real peers: Alertmanager 0.25 (`prometheus-alertmanager`, installed by `.ci/run`),
//! started here on 127.0.0.1 with clustering off; a webhook receiver (a small
//! std::net HTTP server in `common::alertmanager`); the controllable exporter of `common`.

mod common;

use common::alertmanager::{Alertmanager, Webhook};
use common::exporter::{Exporter, Reply};
use common::{wait_for, Promflow};
use serde_json::Value;
use std::time::Duration;

/// Alertmanager's own webhook payloads (shared data; `None`: absent, skipped).
fn oracle_payloads() -> Option<Vec<Value>> {
    let path = dataflows::shared_data::locate(
        "oracle-samples/alertmanager-0.25_webhook_payloads.jsonl",
        "webhook keys compared with Alertmanager's",
    )?;
    let payloads = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Some(payloads)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn alert_fires_then_resolves_through_a_real_alertmanager() {
    let webhook = Webhook::start();
    let am = Alertmanager::start(webhook.port);
    let exporter = Exporter::start(Reply::text("cpu_busy_percent 95\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: cpu\n    rules:\n      - alert: HighCPU\n        expr: cpu_busy_percent > 90\n        for: 2s\n        labels:\n          severity: page\n        annotations:\n          summary: \"CPU {{ $value }} on {{ $labels.instance }}\"\n          runbook_url: https://runbooks.example.com/highcpu\n",
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    dc: test\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        am.port,
        exporter.addr()
    );
    let promflow = Promflow::start(&config);

    let firing = wait_for(Duration::from_secs(40), || webhook.with_status("firing"));
    let firing = firing.unwrap_or_else(|| {
        panic!(
            "no firing webhook; alertmanager log:\n{}\npromflow log:\n{}\nrules: {}",
            am.log(),
            promflow.log(),
            promflow.get_ok("/api/v1/rules")
        )
    });
    let oracle = oracle_payloads();
    assert_eq!(firing["version"], "4");
    let alert = &firing["alerts"][0];
    if let Some(oracle) = &oracle {
        assert_eq!(keys(&firing), keys(&oracle[0]), "webhook top-level keys");
        assert_eq!(keys(alert), keys(&oracle[0]["alerts"][0]), "alert keys");
    }
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "HighCPU");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["dc"], "test", "external labels are added");
    assert_eq!(alert["labels"]["job"], "app");
    assert!(alert["labels"].get("__name__").is_none());
    let instance = exporter.addr().to_string();
    assert_eq!(
        alert["annotations"]["summary"],
        format!("CPU 95 on {instance}")
    );
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example.com/highcpu"
    );
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let generator = alert["generatorURL"].as_str().unwrap();
    assert!(
        generator.ends_with("/graph?g0.expr=cpu_busy_percent+%3E+90&g0.tab=1"),
        "{generator}"
    );
    // Alertmanager's own API shows what promflow sent.
    let listed = am.alerts();
    assert_eq!(listed[0]["labels"]["alertname"], "HighCPU");
    assert_eq!(
        listed[0]["annotations"]["summary"],
        format!("CPU 95 on {instance}")
    );
    // promflow's API.
    let alerts: Value = serde_json::from_str(&promflow.get_ok("/api/v1/alerts")).unwrap();
    assert_eq!(alerts["data"]["alerts"][0]["state"], "firing");
    assert_eq!(alerts["data"]["alerts"][0]["value"], "9.5e+01");

    exporter.set(Reply::text("cpu_busy_percent 10\n"));
    let resolved = wait_for(Duration::from_secs(40), || webhook.with_status("resolved"));
    let resolved = resolved.unwrap_or_else(|| panic!("no resolved webhook; log:\n{}", am.log()));
    if let Some(oracle) = &oracle {
        assert_eq!(keys(&resolved), keys(&oracle[1]));
    }
    let alert = &resolved["alerts"][0];
    assert_eq!(alert["status"], "resolved");
    assert_eq!(alert["labels"]["alertname"], "HighCPU");
    assert_ne!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["startsAt"], firing["alerts"][0]["startsAt"]);
}

/// Alertmanager is down when the alert fires and comes up a few seconds later: the
/// batch is retried with backoff within the Alertmanager's `timeout` and arrives long
/// before the 1m resend; every failed attempt is counted, nothing is dropped.
#[test]
fn alerts_reach_an_alertmanager_that_starts_late() {
    let webhook = Webhook::start();
    let am_port = common::free_port();
    let exporter = Exporter::start(Reply::text("cpu_busy_percent 95\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: cpu\n    rules:\n      - alert: HighCPU\n        expr: cpu_busy_percent > 90\n",
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - timeout: 30s\n      static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    );
    let promflow = Promflow::start_with_args(
        &config,
        // A reverse proxy's path: routes stay at the root, as with Prometheus.
        &[
            "--web.external-url=http://promflow.example:9090/pf/",
            "--web.route-prefix=/",
        ],
    );
    let errors = || {
        promflow
            .metrics()
            .sum("prometheus_notifications_errors_total")
    };
    assert!(
        common::wait_until(Duration::from_secs(30), || errors().unwrap_or(0.0) >= 2.0),
        "no failed attempts counted; metrics:\n{}",
        promflow.get_ok("/metrics")
    );
    let am = Alertmanager::start_on(am_port, webhook.port, "0s", &["alertname"]);
    // Without retries the alert would only come with the resend, a minute after the
    // first attempt.
    let firing = wait_for(Duration::from_secs(25), || webhook.with_status("firing"))
        .unwrap_or_else(|| panic!("no firing webhook; alertmanager log:\n{}", am.log()));
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "HighCPU");
    assert_eq!(
        alert["generatorURL"],
        "http://promflow.example:9090/pf/graph?g0.expr=cpu_busy_percent+%3E+90&g0.tab=1",
        "--web.external-url is the generatorURL's base"
    );
    let metrics = promflow.metrics();
    assert_eq!(
        metrics.sum("prometheus_notifications_dropped_total"),
        Some(0.0)
    );
    assert!(
        metrics
            .sum("prometheus_notifications_sent_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        metrics.sum("prometheus_notifications_queue_capacity"),
        Some(10_000.0)
    );
    assert!(metrics
        .sum("prometheus_notifications_queue_length")
        .is_some());
}
