//! Receivers' `http_config` (prometheus/common's HTTP client settings) and
//! `global.http_config` against the real Alertmanager 0.25 (the oracle): both get
//! the same webhooks — one with `basic_auth`, one with `bearer_token_file`, one
//! through a forward proxy (`proxy_url`, tests/common/proxy.rs), one with none,
//! which takes `global.http_config`'s `basic_auth` — pointing at their own capture
//! server, and must send the same `Authorization` headers and proxy request lines,
//! and show the file the same (`GET /api/v2/status`); conflicting settings fail to
//! load with `amtool check-config`'s message; redirects are followed, or not with
//! `follow_redirects: false`, as by Alertmanager. An `oauth2` entry and a custom
//! `authorization` type are compared as shown only.
//!
//! Real peers: Alertmanager 0.25 and amtool (Debian `prometheus-alertmanager`),
//! promflow.

mod common;

use common::alertmanager::{Alertmanager, AMTOOL_BIN};
use common::proxy::{Proxy, Redirector};
use common::receiver::CaptureServer;
use common::{combined_output, http, require_peer, run_command, run_promflow, Promflow};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn config(capture: &CaptureServer, proxy: &Proxy, dir: &std::path::Path) -> String {
    format!(
        r#"
global:
  http_config:
    basic_auth: {{username: global-user, password: global-pass}}
route:
  receiver: hooks
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hooks
    webhook_configs:
      - url: {basic}
        http_config:
          basic_auth: {{username: hook-user, password: hook-pass}}
      - url: {bearer}
        http_config:
          bearer_token_file: {dir}/token
          follow_redirects: false
      - url: {proxied}
        http_config:
          proxy_url: {proxy}
      - url: {global}
  # Only shown, never sent to.
  - name: shown-only
    webhook_configs:
      - url: http://127.0.0.1:9/oauth2
        http_config:
          oauth2:
            client_id: id
            client_secret: secret
            token_url: http://127.0.0.1:9/token
            scopes: [read, write]
            endpoint_params: {{audience: hooks}}
          enable_http2: false
          tls_config: {{insecure_skip_verify: true}}
      - url: http://127.0.0.1:9/authorization
        http_config:
          authorization: {{type: Token, credentials_file: {dir}/token}}
          bearer_token: ""
"#,
        basic = capture.url("/basic"),
        bearer = capture.url("/bearer"),
        proxied = capture.url("/proxied"),
        global = capture.url("/global"),
        proxy = proxy.url(),
        dir = dir.display(),
    )
}

fn post_alert(url: &str) {
    let alerts = json!([{"labels": {"alertname": "Down", "instance": "a"}}]);
    let r = http::post(url, Some("application/json"), alerts.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 200, "POST {url}: {}", r.body);
}

/// Each request's path and `Authorization`, sorted by path.
fn authorizations(capture: &CaptureServer) -> Vec<(String, Option<String>)> {
    let mut seen: Vec<(String, Option<String>)> = capture
        .wait_for(4, Duration::from_secs(30))
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.header("authorization").map(str::to_string),
            )
        })
        .collect();
    seen.sort();
    seen
}

#[test]
fn http_config_matches_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "token-from-file\n").unwrap();
    let (am_capture, pf_capture) = (CaptureServer::start(), CaptureServer::start());
    let (am_proxy, pf_proxy) = (Proxy::start(), Proxy::start());
    let am = Alertmanager::start_with_config(&config(&am_capture, &am_proxy, dir.path()));
    let pf_path = dir.path().join("promflow-am.yml");
    std::fs::write(&pf_path, config(&pf_capture, &pf_proxy, dir.path())).unwrap();
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!("--alertmanager.config.file={}", pf_path.display())],
    );

    let shown = |body: String, capture: &CaptureServer, proxy: &Proxy| {
        let status: Value = serde_json::from_str(&body).unwrap();
        status["config"]["original"]
            .as_str()
            .unwrap()
            .replace(&capture.url(""), "CAPTURE")
            .replace(&proxy.url(), "PROXY")
    };
    assert_eq!(
        shown(promflow.get_ok("/api/v2/status"), &pf_capture, &pf_proxy),
        shown(am.get_ok("/api/v2/status"), &am_capture, &am_proxy)
    );

    post_alert(&am.url("/api/v2/alerts"));
    post_alert(&promflow.url("/api/v2/alerts"));
    let expected = authorizations(&am_capture);
    assert_eq!(
        expected,
        [
            (
                "/basic".to_string(),
                Some("Basic aG9vay11c2VyOmhvb2stcGFzcw==".to_string())
            ),
            (
                "/bearer".to_string(),
                Some("Bearer token-from-file".to_string())
            ),
            (
                "/global".to_string(),
                Some("Basic Z2xvYmFsLXVzZXI6Z2xvYmFsLXBhc3M=".to_string())
            ),
            // An entry with its own `http_config` takes nothing from the global one.
            ("/proxied".to_string(), None),
        ],
        "the oracle"
    );
    assert_eq!(authorizations(&pf_capture), expected);

    let lines = |proxy: &Proxy, capture: &CaptureServer| -> Vec<String> {
        proxy
            .requests()
            .into_iter()
            .map(|(line, _)| line.replace(&capture.url(""), "CAPTURE"))
            .collect()
    };
    assert_eq!(
        lines(&am_proxy, &am_capture),
        ["POST CAPTURE/proxied HTTP/1.1"]
    );
    assert_eq!(lines(&pf_proxy, &pf_capture), lines(&am_proxy, &am_capture));
}

fn redirect_config(follow: &Redirector, stay: &Redirector) -> String {
    format!(
        r#"
route:
  receiver: hooks
  group_wait: 1s
receivers:
  - name: hooks
    webhook_configs:
      - url: http://{follow}/hook
      - url: http://{stay}/hook
        http_config:
          follow_redirects: false
"#,
        follow = follow.addr(),
        stay = stay.addr(),
    )
}

#[test]
fn redirects_match_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for side in ["alertmanager", "promflow"] {
        let capture = CaptureServer::start();
        let follow = Redirector::start(&capture.url("/followed"));
        let stay = Redirector::start(&capture.url("/not-followed"));
        let text = redirect_config(&follow, &stay);
        let (_am, _promflow, url) = if side == "alertmanager" {
            let am = Alertmanager::start_with_config(&text);
            let url = am.url("/api/v2/alerts");
            (Some(am), None, url)
        } else {
            let path = dir.path().join("redirects.yml");
            std::fs::write(&path, &text).unwrap();
            let promflow = Promflow::start_with_args(
                "global:\n  scrape_interval: 15s\n",
                &[&format!("--alertmanager.config.file={}", path.display())],
            );
            let url = promflow.url("/api/v2/alerts");
            (None, Some(promflow), url)
        };
        post_alert(&url);
        capture.wait_for(1, Duration::from_secs(30));
        // Time for a request that should not come.
        std::thread::sleep(Duration::from_secs(3));
        let requests: Vec<(String, String)> = capture
            .requests()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect();
        seen.push(requests);
    }
    assert_eq!(seen[1], seen[0]);
    assert!(
        seen[0].iter().all(|(_, path)| path == "/followed") && !seen[0].is_empty(),
        "the oracle: {:?}",
        seen[0]
    );
}

/// Conflicting or bad HTTP client settings, and a fragment of Alertmanager's message.
const BAD_CONFIGS: &[(&str, &str)] = &[
    (
        "webhook_configs: [{url: 'http://h/', http_config: {basic_auth: {username: u}, bearer_token: t}}]",
        "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
    ),
    (
        "webhook_configs: [{url: 'http://h/', http_config: {bearer_token: t, bearer_token_file: f}}]",
        "at most one of bearer_token & bearer_token_file must be configured",
    ),
    (
        "webhook_configs: [{url: 'http://h/', http_config: {authorization: {credentials: c}, basic_auth: {username: u}}}]",
        "at most one of basic_auth, oauth2 & authorization must be configured",
    ),
];

#[test]
fn http_config_load_errors_match_amtool() {
    require_peer(AMTOOL_BIN, "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let prometheus = dir.path().join("prometheus.yml");
    std::fs::write(&prometheus, "global:\n  scrape_interval: 15s\n").unwrap();
    let configs = BAD_CONFIGS.iter().map(|(entry, fragment)| {
        (
            format!("route:\n  receiver: r\nreceivers:\n  - name: r\n    {entry}\n"),
            *fragment,
        )
    });
    // `global.http_config` is checked too.
    let global = (
        "global:\n  http_config: {bearer_token: t, bearer_token_file: f}\nroute:\n  receiver: r\nreceivers:\n  - name: r\n".to_string(),
        "at most one of bearer_token & bearer_token_file must be configured",
    );
    for (i, (text, fragment)) in configs.chain([global]).enumerate() {
        let path = dir.path().join(format!("bad{i}.yml"));
        std::fs::write(&path, &text).unwrap();
        let path = path.display().to_string();
        let mut cmd = Command::new(AMTOOL_BIN);
        cmd.args(["check-config", &path]);
        let am = combined_output(&run_command(cmd, None, common::COMMAND_TIMEOUT));
        let message = am
            .lines()
            .find_map(|l| l.split_once("FAILED: ").map(|(_, m)| m.trim().to_string()))
            .unwrap_or_else(|| panic!("amtool accepts {text}:\n{am}"));
        assert!(message.contains(fragment), "amtool on {text}: {am}");
        let out = run_promflow(&[
            "check",
            "config",
            &prometheus.display().to_string(),
            &format!("--alertmanager.config.file={path}"),
        ]);
        let printed = combined_output(&out);
        assert!(!out.status.success(), "promflow accepts {text}:\n{printed}");
        assert!(
            printed.contains(&message),
            "promflow on {text} does not say {message:?}:\n{printed}"
        );
    }
}
