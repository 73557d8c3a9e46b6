//! `/api/v1/targets` and `/api/v1/status/config`, and `file_sd_configs` end to end.
//!
//! Real peer: Prometheus 2.42 (Debian `prometheus`) runs the same config, reading the
//! same target file, and scrapes the same exporter (`tests/common/exporter.rs`);
//! promflow's targets API must answer what Prometheus answers, field by field (the
//! scrape times and durations only in format). `.ci/run` installs Prometheus.

mod common;

use common::exporter::{Exporter, Reply};
use common::{wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn config(targets_file: &Path, static_target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: files\n  file_sd_configs:\n  - files: ['{}']\n    refresh_interval: 1m\n  \
         relabel_configs:\n  - source_labels: [team]\n    regex: drop-me\n    action: drop\n  \
         - source_labels: [__meta_filepath]\n    regex: '.*/(.*)'\n    target_label: file\n\
         - job_name: fixed\n  static_configs:\n  - targets: ['{static_target}']\n    labels:\n      env: test\n",
        targets_file.display()
    )
}

fn targets_json(server: &Peer, query: &str) -> Value {
    let body = server.get_ok(&format!("/api/v1/targets{query}"));
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["status"], "success", "{body}");
    json["data"].clone()
}

/// Active targets keyed by scrape pool and URL.
fn active_by_key(data: &Value) -> BTreeMap<String, Value> {
    data["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = format!(
                "{} {}",
                t["scrapePool"].as_str().unwrap(),
                t["scrapeUrl"].as_str().unwrap()
            );
            (key, t.clone())
        })
        .collect()
}

fn dropped_labels(data: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = data["droppedTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["discoveredLabels"].clone())
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

fn all_up(data: &Value, count: usize) -> bool {
    let active = data["activeTargets"].as_array().unwrap();
    active.len() == count && active.iter().all(|t| t["health"] == "up")
}

#[test]
fn targets_api_matches_prometheus_and_follows_target_files() {
    let exporter = Exporter::start(Reply::text("demo_metric 1\n"));
    let addr = exporter.addr().to_string();
    let other = Exporter::start(Reply::text("demo_metric 2\n"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.yml");
    // Three groups: one kept, one dropped by relabeling, one with an empty label value.
    std::fs::write(
        &file,
        format!(
            "- targets: ['{addr}']\n  labels:\n    team: a\n\
             - targets: ['127.0.0.1:1']\n  labels:\n    team: drop-me\n\
             - targets: ['localhost:{}']\n  labels:\n    team: ''\n",
            exporter.addr().port()
        ),
    )
    .unwrap();
    let yaml = config(&file, &other.addr().to_string());
    let prometheus = Prometheus::start(&yaml);
    let promflow = Promflow::start(&yaml);

    assert!(
        wait_until(WAIT, || all_up(&targets_json(&prometheus, ""), 3)),
        "Prometheus: {}",
        targets_json(&prometheus, "")
    );
    assert!(
        wait_until(WAIT, || all_up(&targets_json(&promflow, ""), 3)),
        "promflow: {}",
        targets_json(&promflow, "")
    );
    let theirs = targets_json(&prometheus, "");
    let ours = targets_json(&promflow, "");
    let (theirs_active, ours_active) = (active_by_key(&theirs), active_by_key(&ours));
    assert_eq!(
        ours_active.keys().collect::<Vec<_>>(),
        theirs_active.keys().collect::<Vec<_>>()
    );
    for (key, want) in &theirs_active {
        let got = &ours_active[key];
        for field in [
            "discoveredLabels",
            "labels",
            "scrapePool",
            "scrapeUrl",
            "globalUrl",
            "lastError",
            "health",
            "scrapeInterval",
            "scrapeTimeout",
        ] {
            assert_eq!(got[field], want[field], "{key}: field {field}");
        }
        let mut fields: Vec<&String> = got.as_object().unwrap().keys().collect();
        let mut want_fields: Vec<&String> = want.as_object().unwrap().keys().collect();
        fields.sort();
        want_fields.sort();
        assert_eq!(fields, want_fields, "{key}: the same fields");
        let last = got["lastScrape"].as_str().unwrap();
        assert!(
            last.len() >= 20 && last.as_bytes()[10] == b'T' && last.ends_with('Z'),
            "lastScrape {last:?}"
        );
        assert!(got["lastScrapeDuration"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(dropped_labels(&ours), dropped_labels(&theirs));

    // ?state= empties the other list, as in Prometheus.
    for state in ["active", "dropped"] {
        let q = format!("?state={state}");
        let (t, o) = (targets_json(&prometheus, &q), targets_json(&promflow, &q));
        assert_eq!(
            o["activeTargets"].as_array().unwrap().len(),
            t["activeTargets"].as_array().unwrap().len(),
            "{state}"
        );
        assert_eq!(dropped_labels(&o), dropped_labels(&t), "{state}");
    }

    // The target file changes: promflow follows without waiting for refresh_interval.
    std::fs::write(
        &file,
        format!("- targets: ['{addr}']\n  labels:\n    team: b\n"),
    )
    .unwrap();
    assert!(
        wait_until(WAIT, || {
            let data = targets_json(&promflow, "?state=active");
            let files: Vec<&Value> = data["activeTargets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["scrapePool"] == "files")
                .collect();
            files.len() == 1 && files[0]["labels"]["team"] == "b"
        }),
        "promflow did not follow the file: {}",
        targets_json(&promflow, "")
    );
    assert!(targets_json(&promflow, "")["droppedTargets"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn status_config_hides_secrets() {
    let yaml = "scrape_configs:\n- job_name: ec2\n  ec2_sd_configs:\n  - region: us-east-1\n    \
                endpoint: http://127.0.0.1:9\n    access_key: AKIDEXAMPLE\n    secret_key: very-secret-value\n    \
                refresh_interval: 1h\n";
    let promflow = Promflow::start(yaml);
    let body = promflow.get_ok("/api/v1/status/config");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "success");
    let config = json["data"]["yaml"].as_str().unwrap();
    assert!(config.contains("job_name: ec2"), "{config}");
    assert!(config.contains("secret_key: <secret>"), "{config}");
    assert!(!body.contains("very-secret-value"), "{body}");
    assert!(!promflow.log().contains("very-secret-value"));
}

/// The whole `/api/v1/status/config` text equals Prometheus's for a config of the
/// common shapes (scrape jobs with and without HTTP client settings, Alertmanagers,
/// external labels, relabeling).
#[test]
fn status_config_prints_what_prometheus_prints() {
    let yaml = "global:\n  scrape_interval: 15s\n  external_labels: {site: a}\n\
                scrape_configs:\n\
                - job_name: plain\n  static_configs: [{targets: ['127.0.0.1:9']}]\n\
                - job_name: secured\n  scheme: https\n  basic_auth: {username: u, password: p}\n  \
                tls_config: {insecure_skip_verify: true}\n  follow_redirects: false\n  \
                relabel_configs: [{source_labels: [__address__], target_label: host}]\n  \
                static_configs: [{targets: ['127.0.0.1:9'], labels: {team: x}}]\n\
                alerting:\n  alertmanagers:\n  - path_prefix: /am\n    \
                static_configs: [{targets: ['127.0.0.1:1']}]\n  \
                - authorization: {credentials: c}\n    static_configs: [{targets: ['127.0.0.1:2']}]\n";
    let status = |server: &Peer| {
        let json: Value = serde_json::from_str(&server.get_ok("/api/v1/status/config")).unwrap();
        json["data"]["yaml"].as_str().unwrap().to_string()
    };
    let promflow = Promflow::start(yaml);
    let prometheus = Prometheus::start(yaml);
    assert_eq!(status(&promflow), status(&prometheus));
}

/// The whole `/api/v1/status/config` text for a config using every section people
/// use, compared with Prometheus 2.42's for the same file: field order, defaults,
/// secrets, `ec2_sd_configs` (whose client's file names Prometheus keeps as
/// written), `oauth2` without a `client_secret_file`, and relative file names
/// joined to the config file's directory and cleaned as Go's `filepath.Join` does;
/// strings YAML 1.1 reads as other types (`"1"`, `"y"`, `"1:20"`) double-quoted;
/// empty relabel fields left out.
/// Both config files sit in their own temp dir; the files they name are in a third,
/// reached as `../<dir>/...`, so both print the same absolute, cleaned paths.
/// (`metadata_config: {send: false}` is written out: promflow sends no metadata,
/// and prints `send: false` where Prometheus's default is `true`.)
#[test]
fn status_config_prints_every_section_as_prometheus_does() {
    let pki = common::tls::TestPki::generate();
    for (name, text) in [
        ("pw", "secret\n"),
        ("tok", "token\n"),
        ("cs", "client secret\n"),
        ("targets.json", "[]\n"),
        ("rules.yml", "groups: []\n"),
    ] {
        std::fs::write(pki.path(name), text).unwrap();
    }
    let dir = pki.path("ca.crt");
    let dir = dir.parent().unwrap().file_name().unwrap().to_str().unwrap();
    let yaml = format!(
        "global:
  scrape_interval: 15s
  evaluation_interval: 30s
  external_labels: {{site: a, env: prod, blank: '', n: '1'}}
rule_files: ['../{dir}/rules.yml', './../{dir}/rule*.yml']
alerting:
  alert_relabel_configs:
  - {{source_labels: [severity], regex: none, action: drop}}
  alertmanagers:
  - path_prefix: /am
    timeout: 5s
    basic_auth: {{username: am, password_file: ./../{dir}/pw}}
    static_configs: [{{targets: ['127.0.0.1:1']}}]
  - authorization: {{credentials: c}}
    api_version: v2
    static_configs: [{{targets: ['127.0.0.1:2']}}]
    relabel_configs: [{{source_labels: [__address__], target_label: x}}]
scrape_configs:
- job_name: plain
  static_configs: [{{targets: ['127.0.0.1:9'], labels: {{port: '9100', flag: 'yes', t: '1:20', d: '2001-12-14'}}}}]
  relabel_configs:
  - {{source_labels: [__address__], target_label: 'y', replacement: '', separator: ''}}
  - {{source_labels: [__address__], target_label: 'on', regex: ''}}
  - {{source_labels: [a, b], separator: '-', modulus: 4, target_label: h, action: hashmod}}
- job_name: secured
  scheme: https
  basic_auth: {{username: u, password_file: ../{dir}//pw}}
  tls_config: {{ca_file: ../{dir}/ca.crt, cert_file: ../{dir}/./client.crt, key_file: ../{dir}/x/../client.key, server_name: foo}}
  proxy_url: http://127.0.0.1:3128
  follow_redirects: false
  relabel_configs: [{{source_labels: [__address__], target_label: host}}]
  metric_relabel_configs: [{{regex: 'go_.*', action: drop, source_labels: [__name__]}}]
  static_configs: [{{targets: ['127.0.0.1:9'], labels: {{team: x}}}}]
- job_name: authz
  authorization: {{type: Bearer, credentials_file: ../{dir}/tok}}
  file_sd_configs: [{{files: ['../{dir}/targets.json', '/nonexistent/*.json'], refresh_interval: 1m}}]
- job_name: bearer
  bearer_token: b
  static_configs: [{{targets: ['127.0.0.1:9']}}]
- job_name: oauth
  oauth2: {{client_id: id, client_secret: s, token_url: 'http://127.0.0.1:1/t', scopes: [a, b], endpoint_params: {{k: v}}}}
  dns_sd_configs: [{{names: [tasks.web.invalid], type: A, port: 9100}}]
- job_name: oauth_file
  oauth2:
    client_id: id
    client_secret_file: ../{dir}/cs
    token_url: 'http://127.0.0.1:1/t'
    tls_config: {{insecure_skip_verify: true, ca_file: ../{dir}/ca.crt}}
    proxy_url: http://127.0.0.1:3128
  dns_sd_configs: [{{names: [_x._tcp.example.invalid], refresh_interval: 10s}}]
- job_name: ec2
  honor_labels: true
  scrape_timeout: 5s
  metrics_path: /federate
  params: {{'match[]': ['{{job=\"x\"}}']}}
  ec2_sd_configs:
  - region: eu-west-1
    endpoint: http://127.0.0.1:1
    access_key: AK
    secret_key: SK
    port: 9100
    refresh_interval: 2m
    filters: [{{name: 'tag:Env', values: [prod]}}]
  - region: us-east-1
    endpoint: http://127.0.0.1:1
    profile: p
    role_arn: arn:aws:iam::1:role/r
    authorization: {{credentials_file: ./tok}}
    oauth2: {{client_id: i, client_secret: s, token_url: 'http://127.0.0.1:1/t'}}
    proxy_url: http://127.0.0.1:3128
    follow_redirects: false
remote_write:
- url: http://127.0.0.1:1/write
  queue_config: {{capacity: 100, max_shards: 2}}
  metadata_config: {{send: false}}
  write_relabel_configs: [{{source_labels: [__name__], regex: 'x.*', action: keep}}]
- url: http://127.0.0.1:1/write2
  name: named
  remote_timeout: 10s
  headers: {{X-A: b}}
  basic_auth: {{username: u, password: p}}
  metadata_config: {{send: false}}
- url: http://127.0.0.1:1/write3
  authorization: {{credentials_file: ../{dir}/tok}}
  tls_config: {{cert_file: ../{dir}/client.crt, key_file: ../{dir}/client.key}}
  metadata_config: {{send: false}}
"
    );
    let status = |server: &Peer| {
        let json: Value = serde_json::from_str(&server.get_ok("/api/v1/status/config")).unwrap();
        json["data"]["yaml"].as_str().unwrap().to_string()
    };
    let promflow = Promflow::start(&yaml);
    let prometheus = Prometheus::start(&yaml);
    let (ours, theirs) = (status(&promflow), status(&prometheus));
    // The cleaned paths are what the comparison is about: check they are there.
    let pw = pki.path("pw").display().to_string();
    assert!(
        theirs.contains(&format!("password_file: {pw}\n")),
        "{theirs}"
    );
    assert_eq!(ours, theirs);
}

/// `/api/v1/targets/relabel_steps` (Prometheus 3.x's endpoint for its UI; 2.42, the
/// oracle here, has none): what each of a pool's relabel steps leaves of a discovered
/// label set, the step that drops it and every step after it saying `keep: false`.
#[test]
fn relabel_steps_say_which_step_dropped_a_target() {
    let yaml = "scrape_configs:\n- job_name: demo\n  static_configs: [{targets: ['127.0.0.1:9', 'dropped.invalid:9']}]\n  \
                relabel_configs:\n  - {source_labels: [__address__], target_label: host}\n  \
                - {source_labels: [__address__], regex: '127\\..*', action: keep}\n  \
                - {regex: host, action: labeldrop}\n";
    let promflow = Promflow::start(yaml);
    let labels = r#"{"__address__":"dropped.invalid:9","job":"demo"}"#;
    let path = format!(
        "/api/v1/targets/relabel_steps?scrapePool=demo&labels={}",
        common::http::encode(labels)
    );
    let json: Value = serde_json::from_str(&promflow.get_ok(&path)).unwrap();
    let steps = json["data"]["steps"].as_array().expect("steps");
    let summary: Vec<(String, bool, Value)> = steps
        .iter()
        .map(|s| {
            (
                s["rule"]["action"].as_str().unwrap().to_string(),
                s["keep"].as_bool().unwrap(),
                s["output"]["host"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("replace".into(), true, "dropped.invalid:9".into()),
            ("keep".into(), false, "dropped.invalid:9".into()),
            ("labeldrop".into(), false, "dropped.invalid:9".into()),
        ]
    );
    assert_eq!(steps[1]["rule"]["sourceLabels"][0], "__address__");
    // The kept target goes through every step.
    let kept = format!(
        "/api/v1/targets/relabel_steps?scrapePool=demo&labels={}",
        common::http::encode(r#"{"__address__":"127.0.0.1:9","job":"demo"}"#)
    );
    let json: Value = serde_json::from_str(&promflow.get_ok(&kept)).unwrap();
    let last = &json["data"]["steps"][2];
    assert_eq!(last["keep"], true, "{json}");
    assert_eq!(
        last["output"],
        serde_json::json!({"__address__": "127.0.0.1:9", "job": "demo"})
    );
    assert_eq!(
        promflow
            .get("/api/v1/targets/relabel_steps?scrapePool=nope&labels={}")
            .status,
        400
    );
}
