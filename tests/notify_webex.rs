//! The built-in notifier's Webex receiver against the real Alertmanager 0.25 (the
//! oracle): both get the same `webex_configs` pointed at their own capture server
//! (tests/common/receiver.rs) and the same alerts, and must send the same requests —
//! method, path, `Authorization` header (`http_config.authorization`, inline and from
//! a file, default type `Bearer`), `Content-Type` and JSON body (`markdown` from the
//! default `webex.default.message` or a templated one, `roomId`, the message cut to
//! 7439 bytes), firing and resolved (`send_resolved`). Load-time checks are compared
//! with `amtool check-config`.
//!
//! Real peers: Alertmanager 0.25 and amtool (`prometheus-alertmanager`), promflow.

mod common;

use common::notify_pair::{alert, assert_same_verdict, now, NotifyPair, ROUTE};
use common::receiver::{CaptureServer, Captured};
use serde_json::{json, Value};
use std::time::Duration;

fn config(server: &CaptureServer, token_file: &str) -> String {
    format!(
        r#"
{ROUTE}receivers:
  - name: team
    webex_configs:
      - api_url: {url}/v1/messages
        room_id: 'Y2lzY29zcGFyazovL3VzL1JPT00vYWJj'
        http_config:
          authorization:
            credentials: 'bot-token-1'
      - api_url: {url}/templated
        room_id: room-2
        send_resolved: false
        message: '**{{{{ .Status }}}}** {{{{ range .Alerts }}}}{{{{ .Labels.instance }}}} <{{{{ .Annotations.summary }}}}> {{{{ end }}}}'
        http_config:
          authorization:
            type: Token
            credentials_file: {token_file}
      - api_url: {url}/long
        room_id: room-3
        message: '{{{{ .CommonAnnotations.long }}}}'
        http_config:
          authorization:
            credentials: 'bot-token-3'
"#,
        url = server.url(""),
    )
}

/// A request as comparable values (the body parsed: Go's encoder escapes `<` and
/// ends with a newline).
fn comparable(r: &Captured) -> Value {
    json!({
        "method": r.method,
        "path": r.path,
        "authorization": r.header("authorization"),
        "content_type": r.header("content-type"),
        "body": r.json(),
    })
}

fn sorted(requests: &[Captured]) -> Vec<Value> {
    let mut v: Vec<Value> = requests.iter().map(comparable).collect();
    v.sort_by_key(|r| r.to_string());
    v
}

fn alerts(ends: Option<&str>) -> Value {
    // 7435 + 2·100 bytes: 7439 − 3 falls inside an `é`, so the cut is one byte
    // shorter. (Alertmanager 0.25 panics on a text over 7439 bytes with fewer than
    // 7436 characters, so the oracle is given enough of them.)
    let long = format!("{}{}", "x".repeat(7435), "é".repeat(100));
    let annotations =
        |i: &str| json!({"summary": format!("Instance {i} is down & <unreachable>"), "long": long});
    json!([
        alert("InstanceDown", "a:9100", annotations("a"), ends),
        alert("InstanceDown", "b:9100", annotations("b"), ends),
    ])
}

#[test]
fn webex_matches_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n").unwrap();
    let token_file = token_file.display().to_string();
    let (am_server, pf_server) = (CaptureServer::start(), CaptureServer::start());
    let pair = NotifyPair::start(
        &config(&am_server, &token_file),
        &config(&pf_server, &token_file),
    );

    pair.post(&alerts(None));
    let expected = sorted(&am_server.wait_for(3, Duration::from_secs(30)));
    let got = sorted(&pf_server.wait_for(3, Duration::from_secs(30)));
    assert_eq!(expected.len(), 3, "{}", pair.am.log());
    let long = expected
        .iter()
        .find(|r| r["path"] == "/long")
        .expect("the long message");
    let markdown = long["body"]["markdown"].as_str().unwrap();
    assert_eq!(
        markdown.len(),
        7438,
        "the oracle cuts at a character boundary"
    );
    assert!(markdown.ends_with("x…"));
    assert_eq!(got, expected);

    // Resolved: the entries with send_resolved (the default) send again.
    pair.post(&alerts(Some(&now())));
    am_server.wait_for(5, Duration::from_secs(30));
    pf_server.wait_for(5, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let (expected, got) = (am_server.requests(), pf_server.requests());
    assert_eq!(expected.len(), 5);
    assert_eq!(sorted(&got[3..]), sorted(&expected[3..]));
}

#[test]
fn webex_config_checks_match_amtool() {
    let entry = |fields: &str| {
        format!("route:\n  receiver: w\nreceivers:\n  - name: w\n    webex_configs:\n      - {fields}\n")
    };
    let auth = "http_config: {authorization: {credentials: t}}";
    for (config, message) in [
        (entry(&format!("room_id: r\n        {auth}")), ""),
        (
            entry(&format!("api_url: http://127.0.0.1:1/m\n        {auth}")),
            "missing room_id on webex_config",
        ),
        (
            entry("room_id: r"),
            "missing webex_configs.http_config.authorization",
        ),
        (
            entry("room_id: r\n        http_config: {tls_config: {insecure_skip_verify: true}}"),
            "missing webex_configs.http_config.authorization",
        ),
        (
            entry(&format!("room_id: r\n        api_url: ftp://h/m\n        {auth}")),
            "unsupported scheme \"ftp\" for URL",
        ),
        (
            entry("room_id: r\n        http_config: {authorization: {type: Basic, credentials: t}}"),
            "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
        ),
        (
            entry("room_id: r\n        http_config: {authorization: {credentials: t, credentials_file: /f}}"),
            "at most one of authorization credentials & credentials_file must be configured",
        ),
        (
            format!(
                "global:\n  webex_api_url: ftp://h/\n{}",
                entry(&format!("room_id: r\n        {auth}"))
            ),
            "unsupported scheme \"ftp\" for URL",
        ),
    ] {
        assert_same_verdict(&config, message);
    }
}
