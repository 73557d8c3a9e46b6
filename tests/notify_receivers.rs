//! The built-in notifier's PagerDuty (v2), OpsGenie, VictorOps, Telegram and Discord
//! receivers against the real Alertmanager 0.25 (the oracle): both get the same
//! config, pointing every integration's URL at their own capture server
//! (tests/common/receiver.rs), and the same alerts, and must send the same requests —
//! method, path and query, `Content-Type`, OpsGenie's `Authorization: GenieKey …`,
//! and JSON bodies — firing and resolved, with default and custom templated fields
//! (details, images, links, responders with `teams`, tags, priority,
//! `update_alerts`, custom fields, HTML and Markdown `parse_mode`,
//! `disable_notifications`) and Alertmanager's limits (PagerDuty summary 1024,
//! OpsGenie message 130, Telegram text 4096, VictorOps state message 20480
//! characters, PagerDuty's 512000-byte event; Discord texts are not cut in 0.25).
//! Keys come inline, from the entry's `*_file` and from `global`. Only the external
//! URL is normalised; the file as both show it (`GET /api/v2/status`) must match too.
//! Also: PagerDuty v1 (`service_key`), whose endpoint Alertmanager does not let a
//! config move, so the oracle reaches an intercepting https proxy; which answers each
//! integration retries (PagerDuty v2 and OpsGenie 429, v1 403, Telegram any answer
//! but `"ok": true`; not VictorOps or Discord), the same on both sides;
//! Alertmanager's load errors, compared with `amtool check-config`; and Debian's
//! sample `alertmanager.yml`, which must load unchanged.
//!
//! Real peers: Alertmanager 0.25 and amtool (Debian `prometheus-alertmanager`),
//! promflow.

mod common;

use common::alertmanager::{Alertmanager, AMTOOL_BIN, EXTERNAL_URL};
use common::receiver::{CaptureServer, Captured};
use common::{
    combined_output, http, require_peer, run_command, run_promflow, Promflow, COMMAND_TIMEOUT,
};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// What a Telegram-speaking client needs to hear to count a message as sent.
const TELEGRAM_OK: &str =
    r#"{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1001,"type":"group"}}}"#;

/// `receivers_config` reads its key files from `dir`.
fn write_key_files(dir: &std::path::Path) {
    std::fs::write(dir.join("routing.key"), "rk-from-file\n").unwrap();
    // OpsGenie's file is used as it is (no trailing newline, or the header breaks).
    std::fs::write(dir.join("genie.key"), "genie-from-file").unwrap();
    std::fs::write(dir.join("vo-global.key"), "  vo-global-file-key\n").unwrap();
}

fn receivers_config(capture: &CaptureServer, dir: &std::path::Path) -> String {
    format!(
        r#"
global:
  opsgenie_api_key: global-genie-key
  opsgenie_api_url: {og}
  telegram_api_url: {tg}
  victorops_api_key_file: {dir}/vo-global.key
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
      - routing_key_file: {dir}/routing.key
        url: {pd}
    opsgenie_configs:
      - {{}}
      - api_key_file: {dir}/genie.key
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
      - api_url: {vo}
        routing_key: global-key
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
        dir = dir.display(),
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
    let dir = tempfile::tempdir().unwrap();
    write_key_files(dir.path());
    let am = Alertmanager::start_with_config(&receivers_config(&am_capture, dir.path()));
    let promflow = start_promflow(&receivers_config(&pf_capture, dir.path()), dir.path());

    // The file as both show it (`GET /api/v2/status`, `amtool config show`), before
    // any notification: Alertmanager 0.25 writes `severity: error` into a PagerDuty
    // v2 entry's config when it first sends, and shows that from then on.
    let shown = |body: String, capture: &CaptureServer| {
        let status: Value = serde_json::from_str(&body).unwrap();
        status["config"]["original"]
            .as_str()
            .unwrap()
            .replace(&capture.url(""), "CAPTURE")
    };
    assert_eq!(
        shown(promflow.get_ok("/api/v2/status"), &pf_capture),
        shown(am.get_ok("/api/v2/status"), &am_capture)
    );

    let firing = json!([alert("a", None), alert("b", None)]);
    post(&am.url("/api/v2/alerts"), &firing);
    post(&promflow.url("/api/v2/alerts"), &firing);
    // 1 webhook, 3 PagerDuty, 2 + 3 OpsGenie, 3 VictorOps, 2 Telegram, 2 Discord.
    let n = 16;
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
    // The same counts, per integration (Discord's only once used, as Alertmanager
    // does not initialise it).
    let counters = |body: String| -> Vec<String> {
        let mut lines: Vec<String> = body
            .lines()
            .filter(|l| {
                l.starts_with("alertmanager_notification")
                    && [
                        "email",
                        "pagerduty",
                        "opsgenie",
                        "victorops",
                        "telegram",
                        "discord",
                    ]
                    .iter()
                    .any(|i| l.contains(&format!("integration=\"{i}\"")))
                    && !l.contains("latency")
            })
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let am_counters = counters(am.get_ok("/metrics"));
    assert!(
        am_counters.iter().any(|l| l.contains("discord")),
        "{am_counters:#?}"
    );
    assert_eq!(counters(promflow.get_ok("/metrics")), am_counters);

    let text = serde_json::to_string(&expected).unwrap();
    for from_file in [
        "\"routing_key\":\"rk-from-file\"",
        "GenieKey genie-from-file",
        "/vo-global-file-key/global-key",
    ] {
        assert!(text.contains(from_file), "the oracle sent no {from_file}");
    }

    let ends = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let resolved = json!([alert("a", Some(&ends)), alert("b", Some(&ends))]);
    post(&am.url("/api/v2/alerts"), &resolved);
    post(&promflow.url("/api/v2/alerts"), &resolved);
    // 1 webhook, 3 PagerDuty, 3 OpsGenie closes, 3 VictorOps, 2 Telegram, 2 Discord.
    let n = n + 14;
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

/// PagerDuty's Events API v1 endpoint, which Alertmanager 0.25 always posts to.
const PAGERDUTY_V1_PATH: &str = "/generic/2010-04-15/create_event.json";

/// A `service_key` (v1) entry: the oracle reaches PagerDuty's fixed endpoint through
/// `proxy`, an intercepting proxy it trusts through `ca_file`; promflow is pointed at
/// `capture` with its `url` extension.
/// `group_wait` is long enough that the oracle's group holds both alerts of one POST
/// (Alertmanager dispatches them one by one: with 1s, a loaded machine once made it
/// flush `a` alone, then `a` and `b`, one event more than the test expects).
fn v1_config(pagerduty: &str, hook: &str) -> String {
    format!(
        r#"
route:
  receiver: pager
  group_by: [alertname]
  group_wait: 5s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: pager
    webhook_configs:
      - url: {hook}
    pagerduty_configs:
      - service_key: 'sk-{{{{ .CommonLabels.team }}}}'
{pagerduty}
      - service_key: second
        description: '{{{{ .CommonAnnotations.long }}}}'
        client: custom client
        client_url: 'https://client.example/{{{{ .GroupLabels.alertname }}}}'
        details:
          extra: '{{{{ .CommonLabels.team }}}}'
          num_firing: overridden
{pagerduty}
"#
    )
}

/// A test CA and, signed by it, `pagerduty.crt`/`.key` for `events.pagerduty.com`.
fn pagerduty_pki() -> common::tls::TestPki {
    let pki = common::tls::TestPki::generate();
    pki.leaf(
        "pagerduty",
        "ca",
        "events.pagerduty.com",
        "subjectAltName=DNS:events.pagerduty.com\nextendedKeyUsage=serverAuth\n",
        2,
    );
    pki
}

#[test]
fn pagerduty_v1_matches_alertmanager() {
    let pki = pagerduty_pki();
    let proxy =
        CaptureServer::start_tls_proxy(&pki.file("pagerduty.crt"), &pki.file("pagerduty.key"));
    let (am_hook, pf_capture) = (CaptureServer::start(), CaptureServer::start());
    let am_entry = format!(
        "        http_config:\n          proxy_url: {}\n          tls_config:\n            ca_file: {}",
        proxy.url(""),
        pki.file("ca.crt")
    );
    let am = Alertmanager::start_with_config(&v1_config(&am_entry, &am_hook.url("/hook")));
    let pf_entry = format!("        url: {}", pf_capture.url(PAGERDUTY_V1_PATH));
    let dir = tempfile::tempdir().unwrap();
    let promflow = start_promflow(&v1_config(&pf_entry, &pf_capture.url("/hook")), dir.path());

    let firing = json!([alert("a", None), alert("b", None)]);
    post(&am.url("/api/v2/alerts"), &firing);
    post(&promflow.url("/api/v2/alerts"), &firing);
    let ends = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let resolved = json!([alert("a", Some(&ends)), alert("b", Some(&ends))]);
    // Two events each, then two resolve events each.
    for (n, alerts) in [(2, &firing), (4, &resolved)] {
        if n == 4 {
            post(&am.url("/api/v2/alerts"), alerts);
            post(&promflow.url("/api/v2/alerts"), alerts);
        }
        proxy.wait_for(n, Duration::from_secs(30));
        wait_for_path(&pf_capture, PAGERDUTY_V1_PATH, n);
        std::thread::sleep(Duration::from_secs(2));
        let expected = sorted(&proxy.requests(), EXTERNAL_URL);
        assert_eq!(expected.len(), n, "oracle sent {expected:#?}");
        for r in proxy.requests() {
            assert_eq!(r.header("host"), Some("events.pagerduty.com"));
        }
        let pf_url = external_url_of(&pf_capture.requests());
        let got: Vec<Captured> = pf_capture
            .requests()
            .into_iter()
            .filter(|r| r.path == PAGERDUTY_V1_PATH)
            .collect();
        assert_eq!(sorted(&got, &pf_url), expected);
    }
    let first = &sorted(&proxy.requests(), EXTERNAL_URL)[0]["body"];
    assert!(
        first["incident_key"].as_str().unwrap().len() == 64,
        "{first}"
    );
}

/// Waits (bounded) until `capture` got `n` requests on `path`.
fn wait_for_path(capture: &CaptureServer, path: &str, n: usize) {
    common::wait_until(Duration::from_secs(30), || {
        capture.requests().iter().filter(|r| r.path == path).count() >= n
    });
}

fn servers<'a>(s: &'a [(&'static str, CaptureServer)]) -> Vec<(&'static str, &'a CaptureServer)> {
    s.iter().map(|(k, c)| (*k, c)).collect()
}

/// One receiver per integration, each on its own capture server, routed by `kind`.
fn retry_config(servers: &[(&str, &CaptureServer)], v1_entry: &str) -> String {
    let url = |kind: &str| {
        servers
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s.url(""))
            .unwrap()
    };
    format!(
        r#"
route:
  receiver: pd
  group_by: [kind]
  group_wait: 1s
  group_interval: 1m
  repeat_interval: 1h
  routes:
    - {{matchers: [kind=pd], receiver: pd}}
    - {{matchers: [kind=pd1], receiver: pd1}}
    - {{matchers: [kind=og], receiver: og}}
    - {{matchers: [kind=vo], receiver: vo}}
    - {{matchers: [kind=tg], receiver: tg}}
    - {{matchers: [kind=dc], receiver: dc}}
receivers:
  - name: pd
    pagerduty_configs: [{{routing_key: k, url: {pd}/enqueue}}]
  - name: pd1
    pagerduty_configs:
      - service_key: k
{v1_entry}
  - name: og
    opsgenie_configs: [{{api_key: k, api_url: {og}/}}]
  - name: vo
    victorops_configs: [{{api_key: k, routing_key: r, api_url: {vo}/}}]
  - name: tg
    telegram_configs: [{{bot_token: 'k', chat_id: 1, api_url: {tg}}}]
  - name: dc
    discord_configs: [{{webhook_url: {dc}/hook}}]
"#,
        pd = url("pd"),
        og = url("og"),
        vo = url("vo"),
        tg = url("tg"),
        dc = url("dc"),
    )
}

#[test]
fn retries_match_alertmanager() {
    // The first answer each integration gets, and whether Alertmanager 0.25's
    // retrier for it tries again.
    let cases: [(&str, u16, bool); 6] = [
        ("pd", 429, true),
        ("pd1", 403, true),
        ("og", 429, true),
        ("vo", 429, false),
        ("tg", 400, true),
        ("dc", 429, false),
    ];
    let pki = pagerduty_pki();
    let side = |oracle: bool| -> Vec<(&str, CaptureServer)> {
        cases
            .iter()
            .map(|(kind, status, _)| {
                let server = if oracle && *kind == "pd1" {
                    CaptureServer::start_tls_proxy(
                        &pki.file("pagerduty.crt"),
                        &pki.file("pagerduty.key"),
                    )
                } else {
                    CaptureServer::start()
                };
                if *kind == "tg" {
                    // The Bot API's refusal; then its success.
                    server.reply_with_body(TELEGRAM_OK);
                    server.respond_with_bodies(&[(
                        *status,
                        r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
                    )]);
                } else {
                    server.respond_with(&[*status]);
                }
                (*kind, server)
            })
            .collect()
    };
    let (am_side, pf_side) = (side(true), side(false));
    let am_pd1 = &am_side.iter().find(|(k, _)| *k == "pd1").unwrap().1;
    let pf_pd1 = &pf_side.iter().find(|(k, _)| *k == "pd1").unwrap().1;
    let am_v1 = format!(
        "        http_config:\n          proxy_url: {}\n          tls_config:\n            ca_file: {}",
        am_pd1.url(""),
        pki.file("ca.crt")
    );
    let pf_v1 = format!("        url: {}", pf_pd1.url(PAGERDUTY_V1_PATH));
    let am = Alertmanager::start_with_config(&retry_config(&servers(&am_side), &am_v1));
    let dir = tempfile::tempdir().unwrap();
    let promflow = start_promflow(&retry_config(&servers(&pf_side), &pf_v1), dir.path());
    let alerts: Vec<Value> = cases
        .iter()
        .map(|(kind, ..)| json!({"labels": {"alertname": "A", "kind": kind}}))
        .collect();
    post(&am.url("/api/v2/alerts"), &json!(alerts));
    post(&promflow.url("/api/v2/alerts"), &json!(alerts));
    common::wait_until(Duration::from_secs(20), || {
        cases
            .iter()
            .zip(am_side.iter().zip(&pf_side))
            .all(|((_, _, retried), (a, p))| {
                let n = if *retried { 2 } else { 1 };
                a.1.count() >= n && p.1.count() >= n
            })
    });
    // Retries come within a second or two; give stray ones time to show.
    std::thread::sleep(Duration::from_secs(5));
    for ((kind, status, retried), (a, p)) in cases.iter().zip(am_side.iter().zip(&pf_side)) {
        let expected = if *retried { 2 } else { 1 };
        assert_eq!(
            a.1.count(),
            expected,
            "the oracle's {kind} after {status} (retried: {retried})"
        );
        assert_eq!(p.1.count(), a.1.count(), "promflow's {kind} after {status}");
    }
}

/// Configs Alertmanager 0.25 refuses, with a fragment of its message.
const BAD_CONFIGS: &[(&str, &str)] = &[
    (
        "pagerduty_configs: [{}]",
        "missing service or routing key in PagerDuty config",
    ),
    (
        "pagerduty_configs: [{routing_key: a, routing_key_file: /x}]",
        "at most one of routing_key & routing_key_file must be configured",
    ),
    (
        "pagerduty_configs: [{service_key: a, service_key_file: /x}]",
        "at most one of service_key & service_key_file must be configured",
    ),
    (
        "pagerduty_configs: [{routing_key: a, url: 'ftp://x/'}]",
        "unsupported scheme",
    ),
    (
        "opsgenie_configs: [{}]",
        "no global OpsGenie API Key set either inline or in a file",
    ),
    (
        "opsgenie_configs: [{api_key: a, api_key_file: /x}]",
        "at most one of api_key & api_key_file must be configured",
    ),
    (
        "opsgenie_configs: [{api_key: a, responders: [{name: ops, type: Squad}]}]",
        "type does not match valid options",
    ),
    (
        "opsgenie_configs: [{api_key: a, responders: [{type: team}]}]",
        "has to have at least one of id, username or name specified",
    ),
    (
        "victorops_configs: [{api_key: a}]",
        "missing Routing key in VictorOps config",
    ),
    (
        "victorops_configs: [{routing_key: r}]",
        "no global VictorOps API Key set",
    ),
    (
        "victorops_configs: [{api_key: a, routing_key: r, custom_fields: {entity_id: x}}]",
        "victorOps config contains custom field entity_id",
    ),
    (
        "telegram_configs: [{chat_id: 1}]",
        "missing bot_token on telegram_config",
    ),
    (
        "telegram_configs: [{bot_token: t}]",
        "missing chat_id on telegram_config",
    ),
    (
        "telegram_configs: [{bot_token: t, chat_id: 1, parse_mode: Plain}]",
        "unknown parse_mode on telegram_config",
    ),
    ("discord_configs: [{}]", "no discord webhook URL provided"),
    (
        "discord_configs: [{webhook_url: 'ftp://x/'}]",
        "unsupported scheme",
    ),
];

#[test]
fn load_errors_match_amtool() {
    require_peer(AMTOOL_BIN, "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let prometheus = dir.path().join("prometheus.yml");
    std::fs::write(&prometheus, "global:\n  scrape_interval: 15s\n").unwrap();
    for (i, (entry, fragment)) in BAD_CONFIGS.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yml"));
        std::fs::write(
            &path,
            format!("route:\n  receiver: r\nreceivers:\n  - name: r\n    {entry}\n"),
        )
        .unwrap();
        let path = path.display().to_string();
        let mut cmd = Command::new(AMTOOL_BIN);
        cmd.args(["check-config", &path]);
        let am = combined_output(&run_command(cmd, None, COMMAND_TIMEOUT));
        // amtool: `Checking '<file>'  FAILED: <Alertmanager's message>`.
        let message = am
            .lines()
            .find_map(|l| l.split_once("FAILED: ").map(|(_, m)| m.trim().to_string()))
            .unwrap_or_else(|| panic!("amtool accepts {entry}:\n{am}"));
        assert!(message.contains(fragment), "amtool on {entry}: {am}");
        let out = run_promflow(&[
            "check",
            "config",
            &prometheus.display().to_string(),
            &format!("--alertmanager.config.file={path}"),
        ]);
        let text = combined_output(&out);
        assert!(!out.status.success(), "promflow accepts {entry}:\n{text}");
        assert!(
            text.contains(&message),
            "promflow on {entry} does not say {message:?}:\n{text}"
        );
    }
}

/// Debian's `prometheus-alertmanager` ships this sample (email and PagerDuty v1
/// receivers, a `templates:` glob matching nothing); promflow must take it as it is.
const DEBIAN_SAMPLE: &str = "/etc/prometheus/alertmanager.yml";

#[test]
fn debian_sample_config_loads_unchanged() {
    require_peer(AMTOOL_BIN, "prometheus-alertmanager");
    let mut cmd = Command::new(AMTOOL_BIN);
    cmd.args(["check-config", DEBIAN_SAMPLE]);
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    let amtool_says = combined_output(&out);
    assert!(out.status.success(), "amtool: {amtool_says}");
    // ` - 5 receivers`
    let receiver_count: usize = amtool_says
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("- ")?
                .strip_suffix(" receivers")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("amtool names no receivers: {amtool_says}"));
    let sample = std::fs::read_to_string(DEBIAN_SAMPLE).expect("Debian's sample");
    assert!(
        sample.contains("pagerduty_configs") && sample.contains("email_configs"),
        "not Debian's sample: {sample}"
    );
    let dir = tempfile::tempdir().unwrap();
    let prometheus = dir.path().join("prometheus.yml");
    std::fs::write(&prometheus, "global:\n  scrape_interval: 15s\n").unwrap();
    let out = run_promflow(&[
        "check",
        "config",
        &prometheus.display().to_string(),
        &format!("--alertmanager.config.file={DEBIAN_SAMPLE}"),
    ]);
    assert!(out.status.success(), "{}", combined_output(&out));
    // And it runs with it: the receivers are listed as Alertmanager lists them.
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!("--alertmanager.config.file={DEBIAN_SAMPLE}")],
    );
    let receivers: Value = serde_json::from_str(&promflow.get_ok("/api/v2/receivers")).unwrap();
    assert_eq!(
        receivers.as_array().map(Vec::len),
        Some(receiver_count),
        "{receivers}"
    );
}

/// An alert whose `big` annotation passes PagerDuty's 512000-byte event limit and
/// VictorOps' 20480-character state message.
fn big_alert() -> Value {
    json!({
        "labels": {"alertname": "Big", "team": "X"},
        "annotations": {"big": "é<".repeat(180_000)},
        "startsAt": (chrono::Utc::now() - chrono::Duration::seconds(5))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

fn limits_config(capture: &CaptureServer) -> String {
    format!(
        r#"
route:
  receiver: team
  group_wait: 1s
  group_interval: 1h
receivers:
  - name: team
    pagerduty_configs:
      - routing_key: k
        url: {pd}
        details:
          big: '{{{{ .CommonAnnotations.big }}}}'
    victorops_configs:
      - api_key: k
        api_url: {vo}
        routing_key: r
        state_message: '{{{{ .CommonAnnotations.big }}}}'
"#,
        pd = capture.url("/pd"),
        vo = capture.url("/vo/"),
    )
}

#[test]
fn limits_match_alertmanager() {
    let (am_capture, pf_capture) = (CaptureServer::start(), CaptureServer::start());
    let am = Alertmanager::start_with_config(&limits_config(&am_capture));
    let dir = tempfile::tempdir().unwrap();
    let promflow = start_promflow(&limits_config(&pf_capture), dir.path());
    let alerts = json!([big_alert()]);
    post(&am.url("/api/v2/alerts"), &alerts);
    post(&promflow.url("/api/v2/alerts"), &alerts);
    am_capture.wait_for(2, Duration::from_secs(30));
    pf_capture.wait_for(2, Duration::from_secs(30));
    let expected = sorted(&am_capture.requests(), EXTERNAL_URL);
    let pagerduty = &expected.iter().find(|r| r["path"] == "/pd").unwrap()["body"];
    assert!(
        pagerduty["payload"]["custom_details"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("512")),
        "the oracle drops the details: {}",
        pagerduty["payload"]["custom_details"]
    );
    let victorops = &expected.iter().find(|r| r["path"] != "/pd").unwrap()["body"];
    assert_eq!(
        victorops["state_message"].as_str().unwrap().chars().count(),
        20480
    );
    // Only the PagerDuty event carries the external URL (client_url).
    let pf_requests = pf_capture.requests();
    let pf_url = pf_requests
        .iter()
        .find(|r| r.path == "/pd")
        .map(|r| {
            let client_url = r.json()["client_url"].as_str().unwrap().to_string();
            client_url.split("/#/").next().unwrap().to_string()
        })
        .unwrap();
    assert_eq!(sorted(&pf_requests, &pf_url), expected);
}
