//! The built-in notifier in a running promflow: the same alert from a real
//! Prometheus 2.42 and from promflow's own rules is one alert and one notification;
//! a receiver's 500 is retried and counted; a 400 is counted, not retried at once,
//! and delivered at the next group interval; silences mute and unmute; a bad
//! Alertmanager config is refused with located problems; a scraped target's alert
//! reaches Slack with its templated title, text and runbook link, then resolves.
//!
//! Prometheus learns its Alertmanagers (here: promflow) through discovery, which
//! reports at most every 5s, and drops alerts until then; the rule has `for: 10s` so
//! its first send finds promflow.
//!
//! Real peers: promflow, Prometheus 2.42 (`prometheus`, sending to promflow's
//! `/api/v2/alerts` as to an Alertmanager); webhooks are capture servers
//! (tests/common/receiver.rs).

mod common;

use common::exporter::{Exporter, Reply};
use common::receiver::{check_slack_request, CaptureServer};
use common::{combined_output, http, run_promflow, Prometheus, Promflow};
use serde_json::{json, Value};
use std::time::Duration;

fn notifier_config(capture: &CaptureServer) -> String {
    format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        capture.url("/hook")
    )
}

fn start(prometheus_config: &str, capture: &CaptureServer, dir: &std::path::Path) -> Promflow {
    let path = dir.join("am.yml");
    std::fs::write(&path, notifier_config(capture)).unwrap();
    Promflow::start_with_args(
        prometheus_config,
        &[
            &format!("--alertmanager.config.file={}", path.display()),
            "--web.enable-lifecycle",
        ],
    )
}

/// The value of the first sample line starting with `series` in a /metrics body.
fn metric(body: &str, series: &str) -> f64 {
    metric_if_present(body, series).unwrap_or_else(|| panic!("{series} not in /metrics"))
}

fn metric_if_present(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(series))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn post_alerts(promflow: &Promflow, alerts: &Value) {
    let r = http::post(
        &promflow.url("/api/v2/alerts"),
        Some("application/json"),
        alerts.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn same_alert_from_prometheus_and_promflow_is_one_notification() {
    let capture = CaptureServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: always\n    rules:\n      - alert: Watchdog\n        expr: vector(1)\n        for: 10s\n        labels:\n          severity: none\n        annotations:\n          summary: the pipeline works\n",
    )
    .unwrap();
    let promflow = start(
        &format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\n",
            rules.display()
        ),
        &capture,
        dir.path(),
    );
    let prometheus = Prometheus::start(&format!(
        "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n",
        rules.display(),
        promflow.addr()
    ));
    // Both senders have delivered.
    let both = common::wait_until(Duration::from_secs(30), || {
        metric_if_present(
            &prometheus.get_ok("/metrics"),
            "prometheus_notifications_sent_total{",
        )
        .is_some_and(|sent| sent > 0.0)
    });
    assert!(
        both,
        "Prometheus sent no alerts to promflow:\n{}\n{}",
        prometheus.log(),
        prometheus
            .get_ok("/metrics")
            .lines()
            .filter(|l| l.starts_with("prometheus_notifications"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let requests = capture.wait_for(1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(5));
    let requests = capture.requests().len().max(requests.len());
    assert_eq!(
        requests, 1,
        "one notification for the alert from both senders"
    );
    let body = capture.requests()[0].json();
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["alerts"][0]["labels"],
        json!({"alertname": "Watchdog", "severity": "none"})
    );
    let listed: Value = serde_json::from_str(&promflow.get_ok("/api/v2/alerts")).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let received = metric(
        &promflow.get_ok("/metrics"),
        "alertmanager_alerts_received_total{status=\"firing\"}",
    );
    assert!(
        received >= 2.0,
        "alerts received from both senders: {received}"
    );
}

#[test]
fn receiver_errors_are_retried_counted_and_nothing_is_lost() {
    let capture = CaptureServer::start();
    let dir = tempfile::tempdir().unwrap();
    let promflow = start("global:\n  scrape_interval: 15s\n", &capture, dir.path());

    capture.respond_with(&[500]);
    post_alerts(
        &promflow,
        &json!([{"labels": {"alertname": "A", "instance": "x"}}]),
    );
    let requests = capture.wait_for(2, Duration::from_secs(20));
    assert_eq!(requests.len(), 2, "retried after the 500");
    assert_eq!(
        requests[0].body, requests[1].body,
        "the retry sends the same notification"
    );
    let metrics = promflow.get_ok("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "alertmanager_notification_requests_total{integration=\"webhook\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "alertmanager_notification_requests_failed_total{integration=\"webhook\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "alertmanager_notifications_total{integration=\"webhook\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "alertmanager_notifications_failed_total{integration=\"webhook\"}"
        ),
        0.0
    );

    // A 400 is not retried within the flush; the next group interval delivers it.
    capture.respond_with(&[400]);
    post_alerts(
        &promflow,
        &json!([{"labels": {"alertname": "B", "instance": "x"}}]),
    );
    let requests = capture.wait_for(4, Duration::from_secs(20));
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[2].body, requests[3].body,
        "redelivered at the next group interval"
    );
    assert_eq!(requests[3].json()["groupLabels"], json!({"alertname": "B"}));
    let metrics = promflow.get_ok("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "alertmanager_notifications_failed_total{integration=\"webhook\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "alertmanager_notifications_total{integration=\"webhook\"}"
        ),
        3.0
    );
}

#[test]
fn silences_mute_until_expired() {
    let capture = CaptureServer::start();
    let dir = tempfile::tempdir().unwrap();
    let promflow = start("global:\n  scrape_interval: 15s\n", &capture, dir.path());
    let now = chrono::Utc::now();
    let silence = json!({
        "matchers": [{"name": "alertname", "value": "Maintenance", "isRegex": false, "isEqual": true}],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "test",
        "comment": "planned work",
    });
    let r = http::post(
        &promflow.url("/api/v2/silences"),
        Some("application/json"),
        silence.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let id = serde_json::from_str::<Value>(&r.body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();

    post_alerts(
        &promflow,
        &json!([{"labels": {"alertname": "Maintenance", "instance": "db"}}]),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(capture.count(), 0, "a silenced alert is not notified");
    let listed: Value = serde_json::from_str(&promflow.get_ok("/api/v2/alerts")).unwrap();
    assert_eq!(
        listed[0]["status"],
        json!({"inhibitedBy": [], "silencedBy": [id], "state": "suppressed"})
    );
    let unsilenced: Value =
        serde_json::from_str(&promflow.get_ok("/api/v2/alerts?silenced=false")).unwrap();
    assert_eq!(unsilenced, json!([]));
    let silences: Value = serde_json::from_str(&promflow.get_ok("/api/v2/silences")).unwrap();
    assert_eq!(silences[0]["status"]["state"], "active");
    assert_eq!(silences[0]["comment"], "planned work");

    let url = promflow.url(&format!("/api/v2/silence/{id}"));
    let deleted = http::delete(&url).unwrap();
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let requests = capture.wait_for(1, Duration::from_secs(20));
    assert_eq!(requests.len(), 1, "notified once the silence expired");
    assert_eq!(
        requests[0].json()["alerts"][0]["labels"]["alertname"],
        "Maintenance"
    );
    let silence: Value =
        serde_json::from_str(&promflow.get_ok(&format!("/api/v2/silence/{id}"))).unwrap();
    assert_eq!(silence["status"]["state"], "expired");
}

#[test]
fn bad_alertmanager_config_is_refused_with_located_problems() {
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("prometheus.yml");
    std::fs::write(&prom, "global:\n  scrape_interval: 15s\n").unwrap();
    let am = dir.path().join("am.yml");
    std::fs::write(
        &am,
        "route:\n  receiver: team\n  group_wait: soon\nreceivers:\n  - name: team\n    slack_configs:\n      - channel: '#ops'\n        colour: red\n",
    )
    .unwrap();
    let out = run_promflow(&[
        "check",
        "config",
        prom.to_str().unwrap(),
        &format!("--alertmanager.config.file={}", am.display()),
    ]);
    let text = combined_output(&out);
    assert!(!out.status.success(), "{text}");
    let file = am.display().to_string();
    assert!(
        text.contains(&format!(
            "{file}:3: route.group_wait: not a valid duration string: \"soon\""
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{file}:8: receivers[0].slack_configs[0].colour: unknown field colour"
        )),
        "{text}"
    );
    assert!(text.contains("no global Slack API URL set"), "{text}");
}

#[test]
fn reload_keeps_alerts_and_what_was_notified() {
    let capture = CaptureServer::start();
    let dir = tempfile::tempdir().unwrap();
    let promflow = start("global:\n  scrape_interval: 15s\n", &capture, dir.path());
    post_alerts(
        &promflow,
        &json!([{"labels": {"alertname": "A", "instance": "x"}}]),
    );
    assert_eq!(capture.wait_for(1, Duration::from_secs(20)).len(), 1);
    let r = promflow.reload();
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        capture.count(),
        1,
        "no repeat after a reload: the notification log is kept"
    );
    let listed: Value = serde_json::from_str(&promflow.get_ok("/api/v2/alerts")).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "alerts are kept: {listed}"
    );
}

#[test]
fn scraped_alert_reaches_slack_templated_then_resolves() {
    let slack = CaptureServer::start();
    let exporter = Exporter::start(Reply::text("cpu_busy_percent 97\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: cpu\n    rules:\n      - alert: HighCPU\n        expr: cpu_busy_percent > 90\n        for: 2s\n        labels:\n          severity: page\n        annotations:\n          summary: \"CPU of {{ $labels.instance }} is {{ $value }}%\"\n          runbook_url: https://runbooks.example.com/high-cpu\n",
    )
    .unwrap();
    let am = dir.path().join("am.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: slack\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: slack\n    slack_configs:\n      - api_url: {}\n        channel: '#oncall'\n        send_resolved: true\n        title: '{{{{ .CommonLabels.alertname }}}} ({{{{ .Status }}}})'\n        title_link: '{{{{ .CommonAnnotations.runbook_url }}}}'\n        text: '{{{{ range .Alerts }}}}{{{{ .Annotations.summary }}}} <{{{{ .Annotations.runbook_url }}}}|runbook>{{{{ end }}}}'\n",
            slack.url("/services/T/B/X")
        ),
    )
    .unwrap();
    let promflow = Promflow::start_with_args(
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
            rules.display(),
            exporter.addr()
        ),
        &[&format!("--alertmanager.config.file={}", am.display())],
    );
    let firing = slack.wait_for(1, Duration::from_secs(40));
    assert!(
        !firing.is_empty(),
        "no Slack message; promflow log:\n{}",
        promflow.log()
    );
    let body = check_slack_request(&firing[0]);
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["title"], "HighCPU (firing)");
    assert_eq!(
        attachment["title_link"],
        "https://runbooks.example.com/high-cpu"
    );
    assert_eq!(
        attachment["text"],
        format!(
            "CPU of {} is 97% <https://runbooks.example.com/high-cpu|runbook>",
            exporter.addr()
        )
    );
    assert_eq!(firing[0].path, "/services/T/B/X");

    exporter.set(Reply::text("cpu_busy_percent 10\n"));
    let all = slack.wait_for(2, Duration::from_secs(40));
    assert_eq!(all.len(), 2, "one firing and one resolved message: {all:?}");
    let body = check_slack_request(&all[1]);
    assert_eq!(body["attachments"][0]["title"], "HighCPU (resolved)");
    assert_eq!(body["attachments"][0]["color"], "good");
}
