//! `--web.config.file` basic authentication, against the oracle: a real Prometheus
//! started on the same web config file answers every request the way promflow must
//! (status, `WWW-Authenticate`, body); a real Prometheus federates promflow with
//! `basic_auth`; `promtool check web-config` rejects the files promflow refuses. Also:
//! write endpoints are refused unless their flag enables them.
//!
//! Peers: Prometheus 2.42 and promtool, the controllable exporter.

mod common;

use common::exporter::{Exporter, Reply};
use common::http::{self, HttpResponse};
use common::{
    basic_auth as basic, promtool, run_promflow, wait_until, write_web_config, Prometheus, Promflow,
};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

fn request(url: &str, method: &str, authorization: Option<&str>, body: &str) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http::send(
        method,
        url,
        &headers,
        Some("application/yaml"),
        body.as_bytes(),
    )
    .unwrap()
}

fn scrape_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

#[test]
fn every_endpoint_requires_basic_auth_as_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &[("alice", "s3cret")]);
    let flag = format!("--web.config.file={web}");
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let promflow = Promflow::start_with_args(
        &scrape_config(&exporter.addr().to_string()),
        &[&flag, "--web.enable-rules-api"],
    );
    let prometheus =
        Prometheus::start_with_args(&scrape_config(&exporter.addr().to_string()), &[&flag]);

    let right = basic("alice", "s3cret");
    let wrong_password = basic("alice", "guess");
    let unknown_user = basic("mallory", "s3cret");
    let credentials = [
        None,
        Some(right.as_str()),
        Some(wrong_password.as_str()),
        Some(unknown_user.as_str()),
        Some("Bearer s3cret"),
        Some("Basic not-base64!"),
    ];
    let paths = [
        "/-/healthy",
        "/-/ready",
        "/metrics",
        "/api/v1/query?query=1",
        "/federate?match[]=m",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/targets",
        "/api/v1/labels",
        "/api/v1/status/buildinfo",
        "/no/such/page",
    ];
    for path in paths {
        for auth in credentials {
            let ours = request(&promflow.url(path), "GET", auth, "");
            let theirs = request(&prometheus.url(path), "GET", auth, "");
            let what = format!("GET {path} with {auth:?}");
            assert_eq!(ours.status, theirs.status, "{what}: {}", ours.body);
            assert_eq!(
                ours.header("www-authenticate"),
                theirs.header("www-authenticate"),
                "{what}"
            );
            if theirs.status == 401 {
                assert_eq!(ours.body, theirs.body, "{what}");
                assert_eq!(ours.header("content-type"), theirs.header("content-type"));
            }
        }
    }

    // Write endpoints need the credentials too, before their flag is even considered.
    let group = "name: g\nrules:\n  - record: m2\n    expr: m * 2\n";
    let url = promflow.url("/api/v1/rules/ns/g");
    assert_eq!(request(&url, "PUT", None, group).status, 401);
    assert_eq!(request(&url, "PUT", Some(&right), group).status, 202);

    // A rotated password takes effect without a restart, as in exporter-toolkit.
    write_web_config(dir.path(), &[("alice", "n3w")]);
    let rotated = basic("alice", "n3w");
    assert!(wait_until(WAIT, || request(
        &promflow.url("/-/healthy"),
        "GET",
        Some(&rotated),
        ""
    )
    .status
        == 200));
    assert_eq!(
        request(&promflow.url("/-/healthy"), "GET", Some(&right), "").status,
        401
    );
}

#[test]
fn prometheus_federates_promflow_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let web = write_web_config(dir.path(), &[("fed", "pw")]);
    let exporter = Exporter::start(Reply::text("from_exporter 7\n"));
    let promflow = Promflow::start_with_args(
        &scrape_config(&exporter.addr().to_string()),
        &[&format!("--web.config.file={web}")],
    );
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: fed\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['from_exporter']\n    basic_auth:\n      username: fed\n      password: pw\n    static_configs:\n      - targets: ['{0}']\n  - job_name: fed-without-credentials\n    metrics_path: /federate\n    params:\n      'match[]': ['from_exporter']\n    static_configs:\n      - targets: ['{0}']\n",
        promflow.addr()
    ));
    let value = |expr: &str| -> Option<String> {
        let data = prometheus.query(expr);
        Some(
            data["result"].as_array()?.first()?["value"][1]
                .as_str()?
                .to_string(),
        )
    };
    assert!(
        wait_until(WAIT, || value("from_exporter{job=\"app\"}").as_deref()
            == Some("7")),
        "Prometheus did not federate through basic auth: {}",
        prometheus.get_ok("/api/v1/targets")
    );
    assert_eq!(value("up{job=\"fed\"}").as_deref(), Some("1"));
    assert!(wait_until(WAIT, || value(
        "up{job=\"fed-without-credentials\"}"
    )
    .as_deref()
        == Some("0")));
    let targets: Value = serde_json::from_str(&prometheus.get_ok("/api/v1/targets")).unwrap();
    let refused = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == "fed-without-credentials")
        .unwrap();
    assert!(
        refused["lastError"].as_str().unwrap().contains("401"),
        "{refused}"
    );
}

/// The promflow extension `bearer_tokens` (bcrypt hashes): a valid token passes,
/// with or without basic-auth users beside it; anything else is 401 with the challenge
/// of what is configured.
#[test]
fn bearer_tokens_authenticate_machine_clients() {
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "bearer_tokens:\n  - {}\n",
            bcrypt::hash("s3cret", 4).unwrap()
        ),
    )
    .unwrap();
    let promflow = Promflow::start_with_args(
        &scrape_config(&exporter.addr().to_string()),
        &[&format!("--web.config.file={}", web.display())],
    );
    let url = promflow.url("/api/v1/query?query=m");
    let ok = request(&url, "GET", Some("Bearer s3cret"), "");
    assert_eq!(ok.status, 200, "{}", ok.body);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(basic("s3cret", "s3cret").as_str()),
    ] {
        let refused = request(&url, "GET", auth, "");
        assert_eq!(refused.status, 401, "{auth:?}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer"),
            "{auth:?}"
        );
    }
    // Beside basic-auth users (the file is re-read): both kinds pass, the challenge
    // is Basic as in Prometheus.
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  alice: {}\nbearer_tokens:\n  - {}\n",
            bcrypt::hash("pw", 4).unwrap(),
            bcrypt::hash("s3cret", 4).unwrap()
        ),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        request(&url, "GET", Some(&basic("alice", "pw")), "").status,
        200
    );
    assert_eq!(request(&url, "GET", Some("Bearer s3cret"), "").status, 200);
    let refused = request(&url, "GET", None, "");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Basic"));
}

#[test]
fn write_endpoints_are_refused_unless_enabled() {
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let promflow = Promflow::start(&scrape_config(&exporter.addr().to_string()));
    let group = "name: g\nrules:\n  - record: m2\n    expr: m * 2\n";
    for (method, path, body, flag) in [
        ("PUT", "/api/v1/rules/ns/g", group, "--web.enable-rules-api"),
        ("DELETE", "/api/v1/rules/ns/g", "", "--web.enable-rules-api"),
        ("DELETE", "/api/v1/rules/ns", "", "--web.enable-rules-api"),
        (
            "PUT",
            "/api/v1/federation/v",
            "match[]=m",
            "--web.enable-federation-views-api",
        ),
        (
            "DELETE",
            "/api/v1/federation/v",
            "",
            "--web.enable-federation-views-api",
        ),
    ] {
        let resp = request(&promflow.url(path), method, None, body);
        assert_eq!(resp.status, 403, "{method} {path}: {}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "unavailable");
        assert!(
            v["error"].as_str().unwrap().contains(flag),
            "{}",
            v["error"]
        );
    }
    // Reads stay available; nothing was registered.
    assert_eq!(promflow.get("/api/v1/rules/ns/g").status, 404);
    assert_eq!(promflow.get("/api/v1/federation/v").status, 404);
    let rules: Value = serde_json::from_str(&promflow.get_ok("/api/v1/rules")).unwrap();
    assert_eq!(rules["data"]["groups"], serde_json::json!([]));
}

#[test]
fn bad_web_config_files_are_refused_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, expected)) in [
        (
            "basic_auth_users:\n  alice: notahash\n",
            "not a bcrypt hash",
        ),
        (
            "basic_auth_user:\n  alice: x\n",
            "unknown field `basic_auth_user`",
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
            "failed to load X509KeyPair",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("web{i}.yml"));
        std::fs::write(&path, text).unwrap();
        let (promtool_ok, promtool_out) = promtool(
            &["check", "web-config", &path.display().to_string()],
            dir.path(),
        );
        assert!(!promtool_ok, "promtool accepts {text:?}: {promtool_out}");
        let out = run_promflow(&[
            &format!("--web.config.file={}", path.display()),
            "--web.listen-address=127.0.0.1:0",
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        ]);
        let output = common::combined_output(&out);
        assert!(!out.status.success(), "promflow started with {text:?}");
        assert!(output.contains(&path.display().to_string()), "{output}");
        assert!(output.contains(expected), "{text:?}: {output}");
    }
}
