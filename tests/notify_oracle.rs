//! The built-in notifier against the real Alertmanager 0.25 (the oracle): both get
//! the same Alertmanager config file and the same alerts on `POST /api/v2/alerts`,
//! and must send the same notifications — webhook bodies and Slack bodies
//! (default Slack templates, Pushover's default message rendered through a Slack
//! field, a `templates:` file using Alertmanager's functions, the data's methods and
//! time values: `.StartsAt.Format`, `.Unix`, `.EndsAt.Sub`, …), the same grouping (two alerts in one notification),
//! inhibition, `max_alerts` truncation, and the same `GET /api/v2/alerts` listing.
//! Only what depends on the instance is normalised: each side's external URL, and
//! in the listing `updatedAt` and the `resolve_timeout` guess of `endsAt`.
//!
//! Real peers: Alertmanager 0.25 (`prometheus-alertmanager`), promflow; each sends
//! to its own capture server (tests/common/receiver.rs) standing in for Slack and
//! the webhooks.

mod common;

use common::alertmanager::Alertmanager;
use common::receiver::{check_slack_request, CaptureServer, Captured};
use common::{http, Promflow};
use serde_json::{json, Value};
use std::time::Duration;

const CUSTOM_TEMPLATE: &str = r#"{{ define "custom.text" }}{{ range .Alerts }}*{{ .Labels.instance }}*: {{ .Annotations.summary }} <{{ .Annotations.runbook_url }}|runbook>
{{ end }}{{ end }}
{{ define "custom.funcs" }}{{ .Status | toUpper }} {{ .Receiver | title }} {{ .GroupLabels.SortedPairs.Values | join "," }}
{{- with .CommonLabels.Remove .GroupLabels.Names }} {{ .Names | join "+" }}={{ .Values | join "+" }}{{ end }}
{{- " " }}{{ len .Alerts.Firing }}/{{ len .Alerts.Resolved }} {{ if match "^High" .CommonLabels.alertname }}high{{ end }}
{{- " " }}{{ reReplaceAll "([AEIOU])" "<$1>" (.CommonLabels.alertname | toUpper) }} {{ stringSlice "x" "y" | join "-" }} {{ safeHtml "<b>" }} {{ .ExternalURL }}
{{ range .Alerts }}{{ .StartsAt.Format "2006-01-02T15:04:05.000Z07:00 Mon Jan _2 3:04PM MST" }} {{ .StartsAt.Unix }} {{ .EndsAt.IsZero }} {{ .EndsAt }}
{{- if eq .Status "resolved" }} took {{ .EndsAt.Sub .StartsAt }} until {{ .EndsAt.UTC.Format "15:04:05.999" }}{{ end }};
{{ end }}{{ end }}"#;

fn notifier_config(capture: &CaptureServer, template_dir: &std::path::Path) -> String {
    format!(
        r#"
templates: ['{dir}/*.tmpl']
route:
  receiver: team
  group_by: [alertname]
  group_wait: 2s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - matchers: ['severity="info"']
      receiver: notes
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [instance]
receivers:
  - name: team
    webhook_configs:
      - url: {team}
    slack_configs:
      - api_url: {slack}
        channel: '#ops'
        send_resolved: true
        text: '{{{{ template "custom.text" . }}}}'
        fields:
          - title: Pushover message
            value: '{{{{ template "pushover.default.message" . }}}}'
          - title: Pushover title
            value: '{{{{ template "pushover.default.title" . }}}}'
            short: true
          - title: Functions and times
            value: '{{{{ template "custom.funcs" . }}}}'

  - name: notes
    webhook_configs:
      - url: {notes}
        max_alerts: 1
"#,
        dir = template_dir.display(),
        team = capture.url("/team"),
        slack = capture.url("/slack"),
        notes = capture.url("/notes"),
    )
}

fn alert(name: &str, instance: &str, severity: &str, starts: &str, ends: Option<&str>) -> Value {
    let mut a = json!({
        "labels": {"alertname": name, "instance": instance, "severity": severity, "job": "node"},
        "annotations": {
            "summary": format!("{name} on {instance}"),
            "runbook_url": format!("https://runbooks.example.com/{name}"),
        },
        "generatorURL": format!("http://prometheus.test/graph?g0.expr={name}"),
        "startsAt": starts,
    });
    if let Some(e) = ends {
        a["endsAt"] = json!(e);
    }
    a
}

fn post(url: &str, alerts: &Value) {
    let r = http::post(url, Some("application/json"), alerts.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 200, "POST {url}: {}", r.body);
}

/// Requests as comparable text: path + body with the external URL replaced.
fn normalised(requests: &[Captured], external_url: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = requests
        .iter()
        .map(|r| {
            if r.path == "/slack" {
                check_slack_request(r);
            }
            let body = String::from_utf8_lossy(&r.body).replace(external_url, "EXTERNAL_URL");
            (r.path.clone(), serde_json::from_str(&body).unwrap())
        })
        .collect();
    out.sort_by_key(|(p, b)| (p.clone(), b.to_string()));
    out
}

fn external_url_of(requests: &[Captured]) -> String {
    requests
        .iter()
        .find(|r| r.path == "/team")
        .map(|r| r.json()["externalURL"].as_str().unwrap().to_string())
        .expect("a webhook request")
}

/// Waits until both sides sent `n` requests and nothing more arrives for 3s.
fn settle(a: &CaptureServer, b: &CaptureServer, n: usize) {
    a.wait_for(n, Duration::from_secs(30));
    b.wait_for(n, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
}

fn listing(body: &str) -> Value {
    let mut v: Value = serde_json::from_str(body).unwrap();
    for a in v.as_array_mut().unwrap() {
        a["updatedAt"] = json!("normalised");
        a["endsAt"] = json!("normalised");
    }
    v
}

#[test]
fn notifications_match_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("custom.tmpl"), CUSTOM_TEMPLATE).unwrap();
    let (am_capture, pf_capture) = (CaptureServer::start(), CaptureServer::start());
    let am = Alertmanager::start_with_config(&notifier_config(&am_capture, dir.path()));
    let am_config = dir.path().join("promflow-am.yml");
    std::fs::write(&am_config, notifier_config(&pf_capture, dir.path())).unwrap();
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!(
            "--alertmanager.config.file={}",
            am_config.display()
        )],
    );

    let now = chrono::Utc::now();
    let starts =
        (now - chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let firing = json!([
        alert("HighCPU", "a", "critical", &starts, None),
        alert("HighCPU", "b", "critical", &starts, None),
        alert("DiskFull", "a", "warning", &starts, None),
        alert("Note", "x", "info", &starts, None),
        alert("Note", "y", "info", &starts, None),
    ]);
    post(&am.url("/api/v2/alerts"), &firing);
    post(&promflow.url("/api/v2/alerts"), &firing);
    // HighCPU (2 alerts, webhook + Slack) and Note (truncated to 1); DiskFull inhibited.
    settle(&am_capture, &pf_capture, 3);
    let (am_requests, pf_requests) = (am_capture.requests(), pf_capture.requests());
    let (am_url, pf_url) = (external_url_of(&am_requests), external_url_of(&pf_requests));
    let expected = normalised(&am_requests, &am_url);
    assert_eq!(expected.len(), 3, "oracle sent {expected:#?}");
    assert_eq!(normalised(&pf_requests, &pf_url), expected);
    let team = &expected.iter().find(|(p, _)| p == "/team").unwrap().1;
    assert_eq!(
        team["alerts"].as_array().unwrap().len(),
        2,
        "two alerts grouped into one notification"
    );
    let slack = &expected.iter().find(|(p, _)| p == "/slack").unwrap().1;
    let funcs = slack["attachments"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["title"] == "Functions and times")
        .expect("the functions field");
    let funcs = funcs["value"].as_str().unwrap();
    assert!(
        funcs.starts_with("FIRING Team HighCPU") && funcs.contains(" UTC "),
        "oracle rendered {funcs:?}"
    );
    let notes = &expected.iter().find(|(p, _)| p == "/notes").unwrap().1;
    assert_eq!(notes["truncatedAlerts"], 1);

    assert_eq!(
        listing(&promflow.get_ok("/api/v2/alerts")),
        listing(&am.get_ok("/api/v2/alerts")),
        "GET /api/v2/alerts"
    );

    // Resolve HighCPU: resolved webhook and Slack messages, and DiskFull, no longer
    // inhibited, is notified on both.
    let ends = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let resolved = json!([
        alert("HighCPU", "a", "critical", &starts, Some(&ends)),
        alert("HighCPU", "b", "critical", &starts, Some(&ends)),
    ]);
    post(&am.url("/api/v2/alerts"), &resolved);
    post(&promflow.url("/api/v2/alerts"), &resolved);
    settle(&am_capture, &pf_capture, 7);
    let expected = normalised(&am_capture.requests(), &am_url);
    assert_eq!(expected.len(), 7, "oracle sent {expected:#?}");
    assert_eq!(normalised(&pf_capture.requests(), &pf_url), expected);
}
