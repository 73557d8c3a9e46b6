//! `promflow check config FILE`: exit 0 on a good file; on a file with several
//! problems, a non-zero exit and every problem reported with the file and its line.
//!
//! Real peers: none for promflow. `promtool_agrees_on_the_same_files` runs promtool
//! (`prometheus`) on the same files, so the good file is known good to Prometheus and
//! the bad one known bad.

mod common;

use std::fs;
use std::path::Path;

use common::{combined_output, promtool, run_promflow};

const GOOD: &str = r#"# A valid config: two jobs, relabeling, external labels.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
  external_labels:
    cluster: test
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:9100']
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+):\d+'
        target_label: host
  - job_name: self
    static_configs:
      - targets: ['127.0.0.1:9090']
"#;

/// Three independent problems, each on a known line (1-based):
/// line 6: unknown field; line 10: invalid regex; line 12: duplicate job name.
const BAD: &str = r#"global:
  scrape_interval: 15s
scrape_configs:
  - job_name: node
    static_configs:
      - targetz: ['127.0.0.1:9100']
  - job_name: other
    relabel_configs:
      - source_labels: [__address__]
        regex: '(unclosed'
        target_label: host
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:9101']
"#;

const BAD_LINES: [usize; 3] = [6, 10, 12];

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, body).expect("write config");
    path.to_str().unwrap().to_string()
}

/// Whether `out` names `line` in one of the usual forms: `FILE:LINE`, `line LINE`.
fn mentions_line(out: &str, file: &str, line: usize) -> bool {
    out.contains(&format!("{file}:{line}:"))
        || out.contains(&format!("{file}:{line} "))
        || out.contains(&format!("{file}:{line}\n"))
        || out.contains(&format!("line {line}:"))
        || out.contains(&format!("line {line} "))
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yml", GOOD);
    let out = run_promflow(&["check", "config", &good]);
    assert!(
        out.status.success(),
        "promflow check config on a good file failed:\n{}",
        combined_output(&out)
    );
}

#[test]
fn check_config_reports_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yml", BAD);
    let out = run_promflow(&["check", "config", &bad]);
    let text = combined_output(&out);
    assert!(!out.status.success(), "bad file passed:\n{text}");
    assert!(
        text.contains(&bad),
        "output does not name the file {bad}:\n{text}"
    );
    for line in BAD_LINES {
        assert!(
            mentions_line(&text, &bad, line),
            "problem on line {line} not reported with its line:\n{text}"
        );
    }
}

#[test]
fn promtool_agrees_on_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yml", GOOD);
    let bad = write(dir.path(), "bad.yml", BAD);
    let (ok, out) = promtool(&["check", "config", &good], dir.path());
    assert!(ok, "promtool rejects the good file:\n{out}");
    let (ok, out) = promtool(&["check", "config", &bad], dir.path());
    assert!(!ok, "promtool accepts the bad file:\n{out}");
}

/// HTTP client fields, each accepted or refused as promtool 2.42 does: the whole of
/// prometheus/common's client on `ec2_sd_configs` (never validated there, so two ways
/// to authenticate pass), `proxy_connect_header` (needing `proxy_url` where Prometheus
/// validates the client), and no `proxy_from_environment` / `no_proxy` (later fields).
#[test]
fn http_client_fields_are_accepted_and_refused_as_promtool_does() {
    let ec2 = |fields: &str| {
        format!(
            "scrape_configs:\n- job_name: a\n  ec2_sd_configs:\n  - region: us-east-1\n    {}\n",
            fields.replace('\n', "\n    ")
        )
    };
    let job = |fields: &str| {
        format!(
            "scrape_configs:\n- job_name: a\n  {}\n",
            fields.replace('\n', "\n  ")
        )
    };
    let cases: Vec<(String, bool)> = vec![
        (ec2("tls_config: {insecure_skip_verify: true, server_name: x}\nproxy_url: http://127.0.0.1:3128\nproxy_connect_header: {X-A: [one, two]}\nfollow_redirects: false\nenable_http2: false"), true),
        (ec2("basic_auth: {username: a, password: b}\nauthorization: {credentials: c}"), true),
        (ec2("bearer_token: x\noauth2: {client_id: a, client_secret: b, token_url: 'http://127.0.0.1:1/token'}"), true),
        (ec2("proxy_connect_header: {X: [y]}"), true),
        (ec2("proxy_from_environment: true"), false),
        (ec2("no_proxy: localhost"), false),
        (job("proxy_url: http://127.0.0.1:3128\nproxy_connect_header: {X: [y]}"), true),
        (job("proxy_connect_header: {X: [y]}"), false),
        (job("proxy_url: http://127.0.0.1:3128\nproxy_connect_header: {X: y}"), false),
        (job("proxy_from_environment: true"), false),
        (job("oauth2: {client_id: a, client_secret: b, token_url: 'http://x', proxy_connect_header: {X: [y]}}"), false),
        ("remote_write:\n- url: http://127.0.0.1:1/w\n  proxy_url: http://127.0.0.1:3128\n  proxy_connect_header: {X: [y]}\n".into(), true),
        ("remote_write:\n- url: http://127.0.0.1:1/w\n  proxy_connect_header: {X: [y]}\n".into(), false),
        ("alerting:\n  alertmanagers:\n  - proxy_url: http://127.0.0.1:3128\n    proxy_connect_header: {X: [y]}\n    static_configs: [{targets: ['a:1']}]\n".into(), true),
        ("alerting:\n  alertmanagers:\n  - proxy_connect_header: {X: [y]}\n    static_configs: [{targets: ['a:1']}]\n".into(), false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (index, (body, accepted)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("case{index}.yml"), body);
        let (ok, out) = promtool(&["check", "config", &file], dir.path());
        assert_eq!(ok, *accepted, "promtool on\n{body}\n{out}");
        let out = run_promflow(&["check", "config", &file]);
        assert_eq!(
            out.status.success(),
            *accepted,
            "promflow on\n{body}\n{}",
            combined_output(&out)
        );
        if body.contains("proxy_connect_header: {X: [y]}\n")
            && !body.contains("proxy_url")
            && !accepted
        {
            assert!(
                combined_output(&out).contains(
                    "if proxy_connect_header is configured proxy_url must also be configured"
                ),
                "{}",
                combined_output(&out)
            );
        }
    }
}
