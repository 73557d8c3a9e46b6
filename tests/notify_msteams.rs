//! The built-in notifier's Microsoft Teams receiver (`msteams_configs`, Alertmanager
//! 0.26+, so not in the 0.25 oracle) against a capture server checking the request
//! of Teams' incoming webhooks
//! (<https://learn.microsoft.com/en-us/outlook/actionable-messages/message-card-reference>):
//! a JSON POST of a legacy MessageCard with exactly Alertmanager 0.27's fields, in its
//! order (`@context`, `type`, `title`, `summary`, `text`, `themeColor` — `8C1A1A`
//! firing, `2DC72D` resolved). The texts come from the oracle: the real Alertmanager
//! 0.25 renders 0.27's `msteams.default.*` (tests/data/msteams-0.27.tmpl, loaded as
//! its `templates:`) and a custom title for the same alerts through Webex messages
//! (the `markdown` field), and promflow's card must hold the same strings. Also
//! `webhook_url_file`, `send_resolved`, retries as upstream's `TestMSTeamsRetry`
//! (5xx retried, 4xx not) and 0.27's load-time errors.
//!
//! Real peers: Alertmanager 0.25 (`prometheus-alertmanager`), promflow.

mod common;

use common::notify_pair::{alert, now, promflow_check, NotifyPair, ROUTE};
use common::receiver::{CaptureServer, Captured};
use serde_json::{json, Value};
use std::time::Duration;

const CUSTOM_TITLE: &str =
    "{{ .Status | title }}: {{ range .Alerts }}{{ .Labels.instance }} {{ end }}";

/// Alertmanager 0.25 rendering the Teams texts as Webex messages to `server`.
fn oracle_config(server: &CaptureServer, templates: &str) -> String {
    let webex = |path: &str, message: &str| {
        format!(
            "      - api_url: {}\n        room_id: r\n        message: '{message}'\n        http_config: {{authorization: {{credentials: t}}}}\n",
            server.url(path)
        )
    };
    format!(
        "templates: ['{templates}']\n{ROUTE}receivers:\n  - name: team\n    webex_configs:\n{}{}{}{}",
        webex("/title", r#"{{ template "msteams.default.title" . }}"#),
        webex("/summary", r#"{{ template "msteams.default.summary" . }}"#),
        webex("/text", r#"{{ template "msteams.default.text" . }}"#),
        webex("/custom", CUSTOM_TITLE),
    )
}

fn promflow_config(server: &CaptureServer, url_file: &str) -> String {
    format!(
        "{ROUTE}receivers:\n  - name: team\n    msteams_configs:\n      - webhook_url: {}\n      - webhook_url_file: {url_file}\n        send_resolved: false\n        title: '{CUSTOM_TITLE}'\n",
        server.url("/webhookb2/default"),
    )
}

fn alerts(ends: Option<&str>) -> Value {
    let annotations = |i: &str| json!({"summary": format!("Instance {i} is down & <unreachable>"), "runbook": "https://runbooks.test/down"});
    json!([
        alert("InstanceDown", "a:9100", annotations("a"), ends),
        alert("InstanceDown", "b:9100", annotations("b"), ends),
    ])
}

/// The oracle's rendered texts by path.
fn rendered(requests: &[Captured], path: &str) -> String {
    let r = requests
        .iter()
        .rev()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no {path}"));
    r.json()["markdown"].as_str().unwrap().to_string()
}

/// Panics unless `r` is a Teams MessageCard POST with Alertmanager's fields; the card.
fn check_card(r: &Captured) -> Value {
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let card = r.json();
    let keys: Vec<&String> = card.as_object().unwrap().keys().collect();
    let text = String::from_utf8_lossy(&r.body);
    let order: Vec<usize> = [
        "\"@context\"",
        "\"type\"",
        "\"title\"",
        "\"summary\"",
        "\"text\"",
        "\"themeColor\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("no {k} in {text}")))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "field order of {text}"
    );
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert_eq!(card["@context"], "http://schema.org/extensions");
    assert_eq!(card["type"], "MessageCard");
    card
}

#[test]
fn msteams_sends_alertmanager_0_27s_message_card() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("msteams.tmpl");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/msteams-0.27.tmpl"),
        &templates,
    )
    .unwrap();
    let (am_server, pf_server) = (CaptureServer::start(), CaptureServer::start());
    let url_file = dir.path().join("teams-url");
    std::fs::write(
        &url_file,
        format!("{}\n", pf_server.url("/webhookb2/from-file")),
    )
    .unwrap();
    let pair = NotifyPair::start(
        &oracle_config(&am_server, &templates.display().to_string()),
        &promflow_config(&pf_server, &url_file.display().to_string()),
    );

    pair.post(&alerts(None));
    let oracle = am_server.wait_for(4, Duration::from_secs(30));
    let got = pf_server.wait_for(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2);
    let default = got
        .iter()
        .find(|r| r.path == "/webhookb2/default")
        .expect("default card");
    let card = check_card(default);
    assert_eq!(card["title"], rendered(&oracle, "/title"));
    assert_eq!(card["title"], "[FIRING:2] InstanceDown (page)");
    assert_eq!(card["summary"], rendered(&oracle, "/summary"));
    assert_eq!(card["text"], rendered(&oracle, "/text"));
    assert!(card["text"].as_str().unwrap().contains("# Alerts Firing:"));
    assert_eq!(card["themeColor"], "8C1A1A");
    let custom = got
        .iter()
        .find(|r| r.path == "/webhookb2/from-file")
        .expect("card to the file's URL");
    let custom = check_card(custom);
    assert_eq!(custom["title"], rendered(&oracle, "/custom"));
    assert_eq!(custom["text"], card["text"]);

    // Resolved: only the default entry sends, green.
    pair.post(&alerts(Some(&now())));
    let oracle = am_server.wait_for(8, Duration::from_secs(30));
    pf_server.wait_for(3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let got = pf_server.requests();
    assert_eq!(got.len(), 3);
    let card = check_card(&got[2]);
    assert_eq!(got[2].path, "/webhookb2/default");
    assert_eq!(card["themeColor"], "2DC72D");
    assert_eq!(card["title"], "[RESOLVED] InstanceDown (page)");
    assert_eq!(card["title"], rendered(&oracle, "/title"));
    assert_eq!(card["text"], rendered(&oracle, "/text"));
}

#[test]
fn msteams_retries_server_errors_only() {
    let server = CaptureServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("am.yml");
    std::fs::write(
        &file,
        format!(
            "route:\n  receiver: t\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1h\nreceivers:\n  - name: t\n    msteams_configs:\n      - webhook_url: {}\n",
            server.url("/hook")
        ),
    )
    .unwrap();
    let promflow = common::Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!("--alertmanager.config.file={}", file.display())],
    );
    let post = |name: &str| {
        let alerts = json!([alert(name, "a:9100", json!({}), None)]);
        let r = common::http::post(
            &promflow.url("/api/v2/alerts"),
            Some("application/json"),
            alerts.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200);
    };
    // group_interval 1h: every request after the first is a retry of the same attempt.
    server.respond_with(&[500, 503]);
    post("Retried");
    let got = server.wait_for(3, Duration::from_secs(30));
    assert_eq!(got.len(), 3, "500 and 503 are retried until 200");
    server.respond_with(&[400]);
    post("Refused");
    server.wait_for(4, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(server.count(), 4, "a 400 is not retried");
}

#[test]
fn msteams_config_checks_as_alertmanager_0_27() {
    let entry = |fields: &str| {
        format!("route:\n  receiver: t\nreceivers:\n  - name: t\n    msteams_configs:\n      - {fields}\n")
    };
    assert_eq!(
        promflow_check(&entry(
            "webhook_url: https://example.webhook.office.com/webhookb2/x"
        )),
        Ok(())
    );
    assert_eq!(
        promflow_check(&entry("webhook_url_file: /etc/teams-url")),
        Ok(())
    );
    for (config, message) in [
        (
            entry("title: t"),
            "one of webhook_url or webhook_url_file must be configured",
        ),
        (
            entry("webhook_url: https://h/x\n        webhook_url_file: /f"),
            "at most one of webhook_url & webhook_url_file must be configured",
        ),
        (
            entry("webhook_url: ftp://h/x"),
            "unsupported scheme \"ftp\" for URL",
        ),
    ] {
        let e = promflow_check(&config).expect_err(&config);
        assert!(e.contains(message), "{e}");
    }
}
