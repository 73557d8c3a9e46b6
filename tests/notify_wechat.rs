//! The built-in notifier's WeChat receiver against the real Alertmanager 0.25 (the
//! oracle): both get the same `wechat_configs` (global API URL, secret and corp id;
//! an entry with its own, templated) pointed at their own capture server, which
//! answers WeChat's token and send APIs, and the same alerts. They must make the
//! same requests: `GET …/gettoken?corpid=…&corpsecret=…` once per integration (the
//! token is kept), then `POST …/message/send?access_token=…` with the same JSON
//! message (`text` or `markdown`, `touser`/`toparty`/`totag`/`agentid`, `safe`,
//! `msgtype`), firing and resolved (`send_resolved`). Only the external URL in the
//! default message is normalised. Load-time checks are compared with
//! `amtool check-config`.
//!
//! Real peers: Alertmanager 0.25 and amtool (`prometheus-alertmanager`), promflow.

mod common;

use common::alertmanager::EXTERNAL_URL;
use common::notify_pair::{alert, assert_same_verdict, now, NotifyPair, ROUTE};
use common::receiver::{CaptureServer, Captured};
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN_ANSWER: &str =
    r#"{"errcode":0,"errmsg":"ok","access_token":"tok-123","expires_in":7200}"#;
const SEND_ANSWER: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

fn wechat_server() -> CaptureServer {
    let s = CaptureServer::start();
    for prefix in ["/cgi-bin/", "/other/"] {
        s.answer(&format!("{prefix}gettoken"), TOKEN_ANSWER);
        s.answer(&format!("{prefix}message/send"), SEND_ANSWER);
    }
    s
}

fn config(server: &CaptureServer, hook: &CaptureServer) -> String {
    format!(
        r#"
global:
  wechat_api_url: {url}/cgi-bin
  wechat_api_secret: 's3cret&='
  wechat_api_corp_id: corp1
{ROUTE}receivers:
  - name: team
    wechat_configs:
      - to_user: '@all'
        agent_id: '1000002'
        send_resolved: true
      - api_url: {url}/other/
        corp_id: '{{{{ .CommonLabels.severity }}}}-corp'
        api_secret: other-secret
        message_type: markdown
        message: '**{{{{ .Status }}}}** {{{{ range .Alerts }}}}{{{{ .Annotations.summary }}}} {{{{ end }}}}'
        to_party: '2'
        to_tag: ops
    webhook_configs:
      - url: {hook}
"#,
        url = server.url(""),
        hook = hook.url("/hook"),
    )
}

fn comparable(r: &Captured, external_url: &str) -> Value {
    let body = String::from_utf8_lossy(&r.body).replace(external_url, "EXTERNAL_URL");
    json!({
        "method": r.method,
        "path": r.path,
        "content_type": r.header("content-type"),
        "body": if body.is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap() },
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

fn alerts(ends: Option<&str>) -> Value {
    let annotations = |i: &str| json!({"summary": format!("Instance {i} is down & <unreachable>")});
    json!([
        alert("InstanceDown", "a:9100", annotations("a"), ends),
        alert("InstanceDown", "b:9100", annotations("b"), ends),
    ])
}

#[test]
fn wechat_matches_alertmanager() {
    let (am_server, pf_server) = (wechat_server(), wechat_server());
    let (am_hook, pf_hook) = (CaptureServer::start(), CaptureServer::start());
    let pair = NotifyPair::start(&config(&am_server, &am_hook), &config(&pf_server, &pf_hook));

    pair.post(&alerts(None));
    let expected = am_server.wait_for(4, Duration::from_secs(30));
    let got = pf_server.wait_for(4, Duration::from_secs(30));
    pf_hook.wait_for(1, Duration::from_secs(30));
    let pf_url = pf_hook.requests()[0].json()["externalURL"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = sorted(&expected, EXTERNAL_URL);
    assert_eq!(expected.len(), 4, "{}", pair.am.log());
    assert!(
        expected
            .iter()
            .any(|r| r["path"] == "/cgi-bin/gettoken?corpid=corp1&corpsecret=s3cret%26%3D"),
        "{expected:?}"
    );
    assert_eq!(sorted(&got, &pf_url), expected);

    // Resolved: only the first entry sends, with the token it already has.
    pair.post(&alerts(Some(&now())));
    am_server.wait_for(5, Duration::from_secs(30));
    pf_server.wait_for(5, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let (expected, got) = (am_server.requests(), pf_server.requests());
    assert_eq!(expected.len(), 5);
    assert_eq!(
        sorted(&got[4..], &pf_url),
        sorted(&expected[4..], EXTERNAL_URL)
    );
}

#[test]
fn wechat_config_checks_match_amtool() {
    let file = |global: &str, fields: &str| {
        format!("global:\n  {global}\nroute:\n  receiver: w\nreceivers:\n  - name: w\n    wechat_configs:\n      - {fields}\n")
    };
    for (config, message) in [
        (file("wechat_api_secret: s", "corp_id: c"), ""),
        (
            file(
                "resolve_timeout: 5m",
                "corp_id: c\n        api_secret: s\n        message_type: markdown",
            ),
            "",
        ),
        (
            file("resolve_timeout: 5m", "corp_id: c"),
            "no global Wechat ApiSecret set",
        ),
        (
            file("wechat_api_secret: s", "to_user: u"),
            "no global Wechat CorpID set",
        ),
        (
            file(
                "wechat_api_secret: s",
                "corp_id: c\n        message_type: html",
            ),
            "weChat message type \"html\" does not match valid options ^(text|markdown)$",
        ),
        (
            file(
                "wechat_api_secret: s",
                "corp_id: c\n        api_url: ftp://h/",
            ),
            "unsupported scheme \"ftp\" for URL",
        ),
        (
            file(
                "wechat_api_url: ftp://h/",
                "corp_id: c\n        api_secret: s",
            ),
            "unsupported scheme \"ftp\" for URL",
        ),
    ] {
        assert_same_verdict(&config, message);
    }
}
