//! Loading whole config files: defaults, every field, and every kind of problem.
//!
//! Where Prometheus's behaviour was not obvious, the expectation comes from
//! running `promtool check config` (Prometheus 2.42) on the same YAML; those
//! tests say so.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(text: &str) -> Config {
    Config::load_str(text, "prometheus.yml", Path::new("/etc/promflow"))
        .unwrap_or_else(|error| panic!("expected a valid config, got:\n{error}"))
}

/// Every problem of an invalid config, displayed one per entry.
fn problems(text: &str) -> Vec<String> {
    match Config::load_str(text, "prometheus.yml", Path::new("/etc/promflow")) {
        Ok(config) => panic!(
            "expected problems, got a valid config:\n{}",
            config.to_yaml()
        ),
        Err(error) => error.problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// Asserts that loading `text` reports exactly `expected`, in order.
macro_rules! assert_problems {
    ($text:expr, [$($expected:expr),* $(,)?]) => {{
        let found = problems(AsRef::<str>::as_ref(&$text));
        let expected: Vec<String> = vec![$($expected.to_string()),*];
        assert!(
            found == expected,
            "problems differ\n--- expected\n{}\n--- found\n{}",
            expected.join("\n"),
            found.join("\n")
        );
    }};
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn job(yaml_fields: &str) -> String {
    format!("scrape_configs:\n- job_name: x\n{yaml_fields}")
}

fn relabel(yaml_fields: &str) -> String {
    let fields: Vec<&str> = yaml_fields.lines().map(str::trim_start).collect();
    job(&format!(
        "  relabel_configs:\n  - {}\n",
        fields.join("\n    ")
    ))
}

// ---- defaults ----------------------------------------------------------------

#[test]
fn empty_file_gets_prometheus_defaults() {
    // promtool 2.42 accepts an empty file and a comment-only file.
    for text in ["", "# nothing here\n", "---\n"] {
        let config = load(text);
        assert_eq!(config.global.scrape_interval, secs(60));
        assert_eq!(config.global.scrape_timeout, secs(10));
        assert_eq!(config.global.evaluation_interval, secs(60));
        assert!(config.global.external_labels.is_empty());
        assert!(config.scrape_configs.is_empty());
        assert!(config.rule_files.is_empty());
        assert!(config.alerting.alertmanagers.is_empty());
    }
}

#[test]
fn scrape_config_defaults() {
    let config = load("scrape_configs:\n- job_name: node\n");
    let scrape = &config.scrape_configs[0];
    assert_eq!(scrape.job_name, "node");
    assert_eq!(scrape.scrape_interval, secs(60));
    assert_eq!(scrape.scrape_timeout, secs(10));
    assert_eq!(scrape.metrics_path, "/metrics");
    assert_eq!(scrape.scheme, Scheme::Http);
    assert!(scrape.params.is_empty());
    assert!(!scrape.honor_labels);
    assert!(scrape.honor_timestamps);
    assert!(scrape.sd_configs.static_configs.is_empty());
    assert_eq!(scrape.body_size_limit, 0);
    assert_eq!(scrape.sample_limit, 0);
    assert_eq!(scrape.label_limit, 0);
    assert_eq!(scrape.label_name_length_limit, 0);
    assert_eq!(scrape.label_value_length_limit, 0);
    assert!(scrape.relabel_configs.is_empty());
    assert!(scrape.metric_relabel_configs.is_empty());
}

#[test]
fn jobs_inherit_global_interval_and_timeout() {
    let config = load(
        "global:\n  scrape_interval: 30s\n  scrape_timeout: 20s\nscrape_configs:\n- job_name: a\n",
    );
    assert_eq!(config.scrape_configs[0].scrape_interval, secs(30));
    assert_eq!(config.scrape_configs[0].scrape_timeout, secs(20));
}

#[test]
fn short_interval_caps_the_inherited_timeout() {
    // promtool 2.42 accepts both: the timeout becomes the interval.
    let config = load("global:\n  scrape_interval: 30s\n  scrape_timeout: 20s\nscrape_configs:\n- job_name: a\n  scrape_interval: 15s\n");
    assert_eq!(config.scrape_configs[0].scrape_timeout, secs(15));
    let config = load("global:\n  scrape_interval: 5s\n");
    assert_eq!(config.global.scrape_timeout, secs(5));
}

#[test]
fn zero_durations_mean_unset() {
    // promtool 2.42 accepts `scrape_interval: 0s` and `evaluation_interval: 0s`.
    let config = load("global:\n  scrape_interval: 0s\n  evaluation_interval: 0s\nscrape_configs:\n- job_name: a\n  scrape_interval: 0s\n");
    assert_eq!(config.global.scrape_interval, secs(60));
    assert_eq!(config.global.evaluation_interval, secs(60));
    assert_eq!(config.scrape_configs[0].scrape_interval, secs(60));
}

// ---- every field -------------------------------------------------------------

const FULL: &str = r#"
global:
  scrape_interval: 30s
  scrape_timeout: 5s
  evaluation_interval: 1m
  external_labels:
    cluster: main
    replica: 1
scrape_configs:
- job_name: federate
  scrape_interval: 1m
  scrape_timeout: 30s
  metrics_path: /federate
  scheme: HTTPS
  params:
    'match[]': ['{job="node"}', 'up']
  honor_labels: true
  honor_timestamps: false
  body_size_limit: 10MB
  sample_limit: 1000
  label_limit: 30
  label_name_length_limit: 200
  label_value_length_limit: 400
  static_configs:
  - targets: ['services:9090', 'other:9090']
    labels:
      env: prod
      port: 9100
  relabel_configs:
  - source_labels: [__meta_ec2_tag_Name]
    target_label: instance
  - source_labels: [a, b]
    separator: ','
    regex: 'web-(.+)'
    replacement: '${1}'
    target_label: host
    action: Replace
  - action: hashmod
    source_labels: [__address__]
    modulus: 4
    target_label: __tmp_hash
  metric_relabel_configs:
  - action: labeldrop
    regex: 'id|name'
alerting:
  alert_relabel_configs:
  - action: labeldrop
    regex: replica
  alertmanagers:
  - scheme: https
    path_prefix: /am
    timeout: 5s
    api_version: v2
    basic_auth:
      username: promflow
      password: hunter2
    static_configs:
    - targets: ['am:9093']
    relabel_configs:
    - action: keep
      source_labels: [__address__]
      regex: 'am:.*'
  - authorization:
      credentials_file: secrets/token
"#;

#[test]
fn every_supported_field_is_read() {
    let config = load(FULL);
    let global = &config.global;
    assert_eq!(
        (
            global.scrape_interval,
            global.scrape_timeout,
            global.evaluation_interval
        ),
        (secs(30), secs(5), secs(60))
    );
    assert_eq!(global.external_labels["cluster"], "main");
    // promtool 2.42 accepts non-string label values; they are read as text.
    assert_eq!(global.external_labels["replica"], "1");

    let scrape = &config.scrape_configs[0];
    assert_eq!(scrape.job_name, "federate");
    assert_eq!(
        (scrape.scrape_interval, scrape.scrape_timeout),
        (secs(60), secs(30))
    );
    assert_eq!(scrape.metrics_path, "/federate");
    assert_eq!(scrape.scheme, Scheme::Https);
    assert_eq!(
        scrape.params["match[]"],
        vec![r#"{job="node"}"#.to_string(), "up".to_string()]
    );
    assert!(scrape.honor_labels);
    assert!(!scrape.honor_timestamps);
    assert_eq!(scrape.body_size_limit, 10 * 1024 * 1024);
    assert_eq!(scrape.sample_limit, 1000);
    assert_eq!(scrape.label_limit, 30);
    assert_eq!(scrape.label_name_length_limit, 200);
    assert_eq!(scrape.label_value_length_limit, 400);
    assert_eq!(
        scrape.sd_configs.static_configs[0].targets,
        vec!["services:9090", "other:9090"]
    );
    assert_eq!(scrape.sd_configs.static_configs[0].labels["port"], "9100");

    let [first, second, third] = &scrape.relabel_configs[..] else {
        panic!("expected three relabel configs");
    };
    assert_eq!(first.action, RelabelAction::Replace);
    assert_eq!(first.source_labels, vec!["__meta_ec2_tag_Name"]);
    assert_eq!(
        (
            first.separator.as_str(),
            first.regex_source.as_str(),
            first.replacement.as_str()
        ),
        (";", "(.*)", "$1")
    );
    assert_eq!(first.target_label, "instance");
    assert_eq!(second.action, RelabelAction::Replace);
    assert_eq!(
        (second.separator.as_str(), second.replacement.as_str()),
        (",", "${1}")
    );
    assert_eq!(second.regex.as_str(), "^(?:web-(.+))$");
    assert!(second.regex.is_match("web-1") && !second.regex.is_match("xweb-1"));
    assert_eq!((third.action, third.modulus), (RelabelAction::HashMod, 4));
    assert_eq!(
        scrape.metric_relabel_configs[0].action,
        RelabelAction::LabelDrop
    );

    let alerting = &config.alerting;
    assert_eq!(alerting.alert_relabel_configs.len(), 1);
    let am = &alerting.alertmanagers[0];
    assert_eq!(
        (am.scheme, am.path_prefix.as_str(), am.timeout),
        (Scheme::Https, "/am", secs(5))
    );
    assert_eq!(am.api_version, AlertmanagerApiVersion::V2);
    let auth = am.http.basic_auth.as_ref().unwrap();
    assert_eq!(auth.username, "promflow");
    assert_eq!(auth.password.as_ref().unwrap().expose(), "hunter2");
    assert_eq!(am.sd_configs.static_configs[0].targets, vec!["am:9093"]);
    assert_eq!(am.relabel_configs[0].action, RelabelAction::Keep);

    let second_am = &alerting.alertmanagers[1];
    assert_eq!(
        (
            second_am.scheme,
            second_am.path_prefix.as_str(),
            second_am.timeout
        ),
        (Scheme::Http, "", secs(10))
    );
    let authorization = second_am.http.authorization.as_ref().unwrap();
    assert_eq!(authorization.kind, "Bearer");
    assert_eq!(
        authorization.credentials_file.as_deref(),
        Some(Path::new("/etc/promflow/secrets/token"))
    );
}

#[test]
fn every_relabel_action_is_accepted() {
    // Minimal valid forms, each accepted by promtool 2.42; action names are case-insensitive.
    let cases = [
        ("action: replace\n  target_label: a", RelabelAction::Replace),
        ("action: KEEP", RelabelAction::Keep),
        ("action: drop", RelabelAction::Drop),
        (
            "action: keepequal\n  source_labels: [a]\n  target_label: b",
            RelabelAction::KeepEqual,
        ),
        (
            "action: dropequal\n  source_labels: [a]\n  target_label: b",
            RelabelAction::DropEqual,
        ),
        (
            "action: hashmod\n  target_label: a\n  modulus: 2",
            RelabelAction::HashMod,
        ),
        (
            "action: labelmap\n  regex: '__meta_(.+)'",
            RelabelAction::LabelMap,
        ),
        ("action: labeldrop\n  regex: a", RelabelAction::LabelDrop),
        ("action: labelkeep\n  regex: a", RelabelAction::LabelKeep),
        (
            "action: lowercase\n  target_label: a",
            RelabelAction::Lowercase,
        ),
        (
            "action: uppercase\n  target_label: a",
            RelabelAction::Uppercase,
        ),
        ("target_label: 'x_${1}'", RelabelAction::Replace),
        (
            "action: keepequal\n  target_label: b\n  separator: ';'",
            RelabelAction::KeepEqual,
        ),
        (
            "action: labelkeep\n  replacement: $1",
            RelabelAction::LabelKeep,
        ),
        ("action: drop\n  modulus: 3", RelabelAction::Drop),
    ];
    for (fields, action) in cases {
        let config = load(&relabel(fields));
        assert_eq!(
            config.scrape_configs[0].relabel_configs[0].action, action,
            "{fields}"
        );
    }
}

// ---- problems ----------------------------------------------------------------

#[test]
fn timeout_greater_than_interval_is_located() {
    let text = "\
global:
  scrape_interval: 15s
scrape_configs:
- job_name: ok
- job_name: slow
  scrape_interval: 10s
  scrape_timeout: 20s
";
    assert_problems!(text, ["prometheus.yml:7: scrape_configs[1].scrape_timeout: scrape timeout 20s greater than scrape interval 10s"]);
    assert_problems!(
        "global:\n  scrape_interval: 5s\n  scrape_timeout: 20s\n",
        ["prometheus.yml:3: global.scrape_timeout: global scrape timeout 20s greater than scrape interval 5s"]
    );
}

#[test]
fn job_names_are_required_and_unique() {
    // Messages as promtool 2.42 prints them; a missing and an empty name read the same.
    let text = "scrape_configs:\n- job_name: a\n- job_name: b\n- job_name: a\n- scrape_interval: 1s\n- job_name: ''\n-\n";
    assert_problems!(
        text,
        [
            r#"prometheus.yml:4: scrape_configs[2].job_name: found multiple scrape configs with job name "a""#,
            "prometheus.yml:5: scrape_configs[3].job_name: job_name is empty",
            "prometheus.yml:6: scrape_configs[4].job_name: job_name is empty",
            "prometheus.yml:7: scrape_configs[5]: empty or null scrape config section",
        ]
    );
}

#[test]
fn all_unknown_fields_are_reported_at_once_with_lines() {
    let text = "\
global:
  scrape_intervall: 15s
scrape_configs:
- job_name: a
  static_configs:
  - targets: [a:1]
    label: {x: y}
  relabel_configs:
  - action: keep
    regexp: a
alerting:
  alertmanagers:
  - timeout: 5s
    basic_auth: {user: x}
scrape_config_files: [a.yml]
";
    assert_problems!(
        text,
        [
            "prometheus.yml:2: global.scrape_intervall: unknown field scrape_intervall",
            "prometheus.yml:7: scrape_configs[0].static_configs[0].label: unknown field label",
            "prometheus.yml:10: scrape_configs[0].relabel_configs[0].regexp: unknown field regexp",
            // Inside a flow mapping: located at its key's line.
            "prometheus.yml:14: alerting.alertmanagers[0].basic_auth.user: unknown field user",
            // Added in Prometheus 2.43, so unknown to 2.42 (promtool 2.42 agrees).
            "prometheus.yml:15: scrape_config_files: unknown field scrape_config_files",
        ]
    );
}

#[test]
fn prometheus_fields_promflow_lacks_are_errors_not_ignored() {
    let text = "\
global:
  query_log_file: /tmp/q.log
tracing:
  endpoint: x
storage:
  tsdb: {}
scrape_configs:
- job_name: ec2
  consul_sd_configs:
  - server: x
  proxy_url: http://127.0.0.1:3128
  enable_http2: true
";
    assert_problems!(
        text,
        [
            "prometheus.yml:2: global.query_log_file: field query_log_file is not supported by promflow yet",
            "prometheus.yml:3: tracing: field tracing is not supported by promflow yet",
            "prometheus.yml:6: storage.tsdb: field tsdb is not supported by promflow yet",
            "prometheus.yml:9: scrape_configs[0].consul_sd_configs: field consul_sd_configs is not supported by promflow yet",
        ]
    );
}

#[test]
fn remote_read_entries_take_prometheus_defaults_and_checks() {
    let config = load(
        "remote_read:\n- url: http://127.0.0.1:9/api/v1/read\n- url: https://r.example/read\n  name: archive\n  read_recent: true\n  remote_timeout: 5s\n  required_matchers: {job: old}\n  filter_external_labels: false\n  headers: {X-Scope: a}\n  basic_auth: {username: u, password: p}\n",
    );
    let [plain, archive] = &config.remote_read[..] else {
        panic!("{:?}", config.remote_read)
    };
    assert_eq!(plain.remote_timeout, std::time::Duration::from_secs(60));
    assert!(!plain.read_recent && plain.filter_external_labels);
    assert!(plain.required_matchers.is_empty() && plain.name.is_empty());
    assert_eq!(archive.name, "archive");
    assert!(archive.read_recent && !archive.filter_external_labels);
    assert_eq!(archive.remote_timeout, std::time::Duration::from_secs(5));
    assert_eq!(archive.required_matchers["job"], "old");
    assert_eq!(archive.headers["X-Scope"], "a");
    assert_problems!(
        "remote_read:\n- url: ''\n- url: http://a/r\n  name: n\n  headers: {Content-Type: x}\n- url: http://b/r\n  name: n\n",
        [
            "prometheus.yml:2: remote_read[0].url: url for remote_read is empty",
            "prometheus.yml:5: remote_read[1].headers.Content-Type: Content-Type is a reserved header. It must not be changed",
            "prometheus.yml:7: remote_read[2].name: found multiple remote read configs with job name \"n\"",
        ]
    );
}

#[test]
fn semantic_and_unknown_field_problems_are_collected_together() {
    let text = "\
global:
  scrape_interval: 1x
  external_labels:
    'bad-name': x
scrape_configs:
- job_name: a
  scrape_timeout: 2m
  foo: bar
  relabel_configs:
  - regex: '(unclosed'
    target_label: t
";
    let found = problems(text);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert_eq!(
        found[0],
        r#"prometheus.yml:2: global.scrape_interval: not a valid duration string: "1x""#
    );
    assert_eq!(
        found[1],
        r#"prometheus.yml:4: global.external_labels.bad-name: "bad-name" is not a valid label name"#
    );
    assert_eq!(found[2], "prometheus.yml:7: scrape_configs[0].scrape_timeout: scrape timeout 2m greater than scrape interval 1m");
    assert_eq!(
        found[3],
        "prometheus.yml:8: scrape_configs[0].foo: unknown field foo"
    );
    assert!(found[4].starts_with(r#"prometheus.yml:10: scrape_configs[0].relabel_configs[0].regex: invalid regex "(unclosed""#), "{}", found[4]);
}

#[test]
fn relabel_rules_match_prometheus() {
    // Each expectation (accept/reject and wording) comes from promtool 2.42.
    let cases = [
        ("action: ''", "action", r#"unknown relabel action """#),
        ("action: foo", "action", r#"unknown relabel action "foo""#),
        ("source_labels: [a]", "target_label", "relabel configuration for replace action requires 'target_label' value"),
        ("target_label: 1a", "target_label", r#""1a" is invalid 'target_label' for replace action"#),
        ("target_label: '$1-x'", "target_label", r#""$1-x" is invalid 'target_label' for replace action"#),
        ("action: hashmod\n  target_label: a", "modulus", "relabel configuration for hashmod requires non-zero modulus"),
        ("action: hashmod\n  target_label: 'a$1'\n  modulus: 2", "target_label", r#""a$1" is invalid 'target_label' for hashmod action"#),
        ("action: lowercase", "target_label", "relabel configuration for lowercase action requires 'target_label' value"),
        ("action: uppercase\n  target_label: a\n  replacement: x", "replacement", "'replacement' can not be set for uppercase action"),
        ("action: keepequal\n  target_label: a\n  regex: x", "", "keepequal action requires only 'source_labels' and `target_label`, and no other fields"),
        // Even the default regex written out is rejected by promtool 2.42.
        ("action: dropequal\n  target_label: a\n  regex: '(.*)'", "", "dropequal action requires only 'source_labels' and `target_label`, and no other fields"),
        ("action: labelmap\n  replacement: 'a-b'", "replacement", r#""a-b" is invalid 'replacement' for labelmap action"#),
        ("action: labeldrop\n  source_labels: [a]", "", "labeldrop action requires only 'regex', and no other fields"),
        ("action: labelkeep\n  source_labels: []", "", "labelkeep action requires only 'regex', and no other fields"),
        ("action: labeldrop\n  separator: ','", "", "labeldrop action requires only 'regex', and no other fields"),
        ("action: keep\n  source_labels: ['a-b']", "source_labels[0]", r#""a-b" is not a valid label name"#),
    ];
    for (fields, field, message) in cases {
        let found = problems(&relabel(fields));
        let field_path = if field.is_empty() {
            "scrape_configs[0].relabel_configs[0]".to_string()
        } else {
            format!("scrape_configs[0].relabel_configs[0].{field}")
        };
        assert_eq!(found.len(), 1, "{fields}: {found:#?}");
        assert!(
            found[0].ends_with(&format!("{field_path}: {message}")),
            "{fields}: {}",
            found[0]
        );
    }
}

#[test]
fn bad_regex_is_reported_with_its_line() {
    let text = job("  metric_relabel_configs:\n  - action: drop\n    regex: 'a(b'\n  - action: keep\n    regex: '[z-a]'\n");
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with(r#"prometheus.yml:5: scrape_configs[0].metric_relabel_configs[0].regex: invalid regex "a(b""#));
    assert!(found[1].starts_with(r#"prometheus.yml:7: scrape_configs[0].metric_relabel_configs[1].regex: invalid regex "[z-a]""#));
}

#[test]
fn label_names_are_validated() {
    // promtool 2.42: `"a-b" is not a valid label name`; `__x` is accepted.
    let text = "global:\n  external_labels:\n    a-b: x\n    1st: y\n    __x: z\n    ok: ''\nscrape_configs:\n- job_name: a\n  static_configs:\n  - targets: [a:1]\n    labels: {'a.b': c}\n";
    assert_problems!(
        text,
        [
            r#"prometheus.yml:3: global.external_labels.a-b: "a-b" is not a valid label name"#,
            r#"prometheus.yml:4: global.external_labels.1st: "1st" is not a valid label name"#,
            r#"prometheus.yml:11: scrape_configs[0].static_configs[0].labels.a.b: "a.b" is not a valid label name"#,
        ]
    );
}

#[test]
fn target_addresses_are_validated_like_promtool() {
    // promtool 2.42 rejects an empty address and one containing '/', and
    // accepts a missing or non-numeric port (checked at scrape time).
    let text = job(
        "  static_configs:\n  - targets:\n    - 'http://a:1'\n    - ''\n    - a\n    - 'a:b'\n",
    );
    assert_problems!(
        text,
        [
            r#"prometheus.yml:5: scrape_configs[0].static_configs[0].targets[0]: "http://a:1" is not a valid hostname"#,
            "prometheus.yml:6: scrape_configs[0].static_configs[0].targets[1]: target has no address",
        ]
    );
    assert_problems!(
        job("  static_configs:\n  -\n"),
        ["prometheus.yml:4: scrape_configs[0].static_configs[0]: empty or null section in static_configs"]
    );
}

#[test]
fn scheme_and_body_size_limit_are_checked() {
    // promtool 2.42 accepts `scheme: ftp` (failing only at scrape time);
    // promflow refuses it at load.
    assert_problems!(
        job("  scheme: ftp\n  body_size_limit: 10mb\n"),
        [
            r#"prometheus.yml:3: scrape_configs[0].scheme: unknown scrape config scheme "ftp" (promflow supports http and https)"#,
            r#"prometheus.yml:4: scrape_configs[0].body_size_limit: unknown unit "mb" in "10mb""#,
        ]
    );
    // promtool 2.42 accepts negative sizes; Prometheus treats them as "no limit".
    assert_eq!(
        load(&job("  body_size_limit: -1MB\n")).scrape_configs[0].body_size_limit,
        0
    );
    assert_eq!(
        load(&job("  body_size_limit: 1KiB\n")).scrape_configs[0].body_size_limit,
        1024
    );
}

#[test]
fn alertmanager_rules_match_prometheus() {
    let am = |fields: &str| {
        format!(
            "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: [am:9093]\n{fields}"
        )
    };
    // promtool 2.42 accepts v1 (deprecated); promflow speaks only API v2.
    assert_problems!(
        &am("    api_version: v1\n"),
        ["prometheus.yml:5: alerting.alertmanagers[0].api_version: Alertmanager api_version v1 is not supported by promflow yet (use v2)"]
    );
    assert_problems!(
        &am("    api_version: V2\n"),
        ["prometheus.yml:5: alerting.alertmanagers[0].api_version: expected Alertmanager api version to be one of [v1 v2] but got V2"]
    );
    assert_problems!(
        &am("    authorization:\n      type: Basic\n      credentials: a\n      credentials_file: b\n"),
        [
            "prometheus.yml:5: alerting.alertmanagers[0].authorization: at most one of authorization credentials & credentials_file must be configured",
            r#"prometheus.yml:6: alerting.alertmanagers[0].authorization.type: authorization type cannot be set to "basic", use "basic_auth" instead"#,
        ]
    );
    assert_problems!(
        &am("    basic_auth:\n      username: a\n      password: p\n      password_file: f\n    authorization:\n      credentials: c\n"),
        [
            "prometheus.yml:3: alerting.alertmanagers[0]: at most one of basic_auth, oauth2 & authorization must be configured",
            "prometheus.yml:5: alerting.alertmanagers[0].basic_auth: at most one of basic_auth password & password_file must be configured",
        ]
    );
    // promtool 2.42 crashes (nil pointer) on a null alertmanager entry.
    assert_problems!(
        "alerting:\n  alertmanagers:\n  -\n",
        ["prometheus.yml:3: alerting.alertmanagers[0]: empty or null alertmanager config section"]
    );
    let config = load(&am(
        "    basic_auth:\n      username: a\n      password_file: pw\n",
    ));
    let auth = config.alerting.alertmanagers[0]
        .http
        .basic_auth
        .as_ref()
        .unwrap();
    assert_eq!(
        auth.password_file.as_deref(),
        Some(Path::new("/etc/promflow/pw"))
    );
}

#[test]
fn yaml_type_and_syntax_errors_carry_their_line() {
    assert_problems!(
        &job("  sample_limit: many\n"),
        [
            r#"prometheus.yml:3: scrape_configs[0].sample_limit: invalid type: string "many", expected u64"#
        ]
    );
    assert_problems!(
        "global: 3\n",
        ["prometheus.yml:1: global: invalid type: integer `3`, expected struct GlobalConfig"]
    );
    let found = problems("global:\n  scrape_interval: 1m\n bad: [\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("prometheus.yml:3: "), "{}", found[0]);
    // promtool 2.42: `not a valid duration string: "30"` for an unquoted number.
    assert_problems!(
        "global:\n  scrape_interval: 30\n",
        [r#"prometheus.yml:2: global.scrape_interval: not a valid duration string: "30""#]
    );
}

#[test]
fn error_display_lists_every_problem_on_its_own_line() {
    let error = Config::load_str("foo: 1\nbar: 2\n", "p.yml", Path::new(".")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "p.yml:1: foo: unknown field foo\np.yml:2: bar: unknown field bar"
    );
}

// ---- rule files ----------------------------------------------------------------

#[test]
fn rule_files_expand_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for name in ["b.yml", "a.yml", "notes.txt"] {
        std::fs::write(dir.path().join("rules").join(name), "groups: []\n").unwrap();
    }
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(
        &config_path,
        "rule_files:\n- rules/*.yml\n- missing/*.yml\n- /nonexistent/x.yml\n",
    )
    .unwrap();
    let config = Config::load_file(&config_path).unwrap();
    assert_eq!(
        config.rule_files,
        vec![
            dir.path().join("rules/a.yml"),
            dir.path().join("rules/b.yml")
        ]
    );
    assert_eq!(config.rule_file_patterns[0], dir.path().join("rules/*.yml"));
    assert_eq!(
        config.rule_file_patterns[2],
        Path::new("/nonexistent/x.yml")
    );
}

#[test]
fn bad_rule_file_glob_is_an_error() {
    // promtool 2.42: "syntax error in pattern".
    let found = problems("rule_files:\n- ok/*.yml\n- '[a'\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(r#"prometheus.yml:3: rule_files[1]: invalid rule file path "[a""#),
        "{}",
        found[0]
    );
}

#[test]
fn unreadable_file_is_a_problem_without_line() {
    let error = Config::load_file(Path::new("/nonexistent/prometheus.yml")).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert_eq!(error.problems[0].line, None);
    assert!(error.problems[0]
        .message
        .starts_with("cannot read config file"));
}

// ---- output ------------------------------------------------------------------

#[test]
fn secrets_are_redacted_in_yaml_and_debug() {
    let config = load(FULL);
    let yaml = config.to_yaml();
    assert!(!yaml.contains("hunter2"), "{yaml}");
    assert!(yaml.contains("password: <secret>"), "{yaml}");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"));
    assert!(debug.contains("<secret>"));

    let config =
        load("alerting:\n  alertmanagers:\n  - authorization:\n      credentials: tok3n\n");
    let yaml = config.to_yaml();
    assert!(
        !yaml.contains("tok3n") && yaml.contains("credentials: <secret>"),
        "{yaml}"
    );
    assert!(yaml.contains("type: Bearer"), "{yaml}");
}

#[test]
fn to_yaml_prints_like_prometheus_status_config() {
    // Prometheus 2.42's /api/v1/status/config for the same file.
    let config = load("global:\n  scrape_interval: 1h30m\n  evaluation_interval: 7d\nscrape_configs:\n- job_name: a\n  scrape_interval: 90s\n  body_size_limit: 1536KB\n");
    assert_eq!(
        config.to_yaml(),
        "global:\n  scrape_interval: 1h30m\n  scrape_timeout: 10s\n  evaluation_interval: 1w\nscrape_configs:\n- job_name: a\n  honor_timestamps: true\n  scrape_interval: 1m30s\n  scrape_timeout: 10s\n  metrics_path: /metrics\n  scheme: http\n  body_size_limit: 1MiB512KiB\n  follow_redirects: true\n  enable_http2: true\n"
    );
}

#[test]
fn http_client_settings_print_like_prometheus_status_config() {
    // Prometheus 2.42's /api/v1/status/config for the same file (its remote_write
    // also prints `metadata_config: send: true`; promflow sends no metadata).
    let config = load("scrape_configs:\n- job_name: b\n  basic_auth: {username: u, password: p}\n  tls_config: {insecure_skip_verify: true}\n  follow_redirects: false\n  static_configs: [{targets: [\"127.0.0.1:9\"]}]\nalerting:\n  alertmanagers:\n  - path_prefix: /am\n    tls_config: {insecure_skip_verify: true}\n    basic_auth: {username: u, password: p}\n    static_configs: [{targets: [\"127.0.0.1:1\"]}]\n  - static_configs: [{targets: [\"127.0.0.1:2\"]}]\n");
    assert_eq!(
        config.to_yaml(),
        "global:\n  scrape_interval: 1m\n  scrape_timeout: 10s\n  evaluation_interval: 1m\nalerting:\n  alertmanagers:\n  - basic_auth:\n      username: u\n      password: <secret>\n    tls_config:\n      insecure_skip_verify: true\n    follow_redirects: true\n    enable_http2: true\n    scheme: http\n    path_prefix: /am\n    timeout: 10s\n    api_version: v2\n    static_configs:\n    - targets:\n      - 127.0.0.1:1\n  - follow_redirects: true\n    enable_http2: true\n    scheme: http\n    timeout: 10s\n    api_version: v2\n    static_configs:\n    - targets:\n      - 127.0.0.1:2\nscrape_configs:\n- job_name: b\n  honor_timestamps: true\n  scrape_interval: 1m\n  scrape_timeout: 10s\n  metrics_path: /metrics\n  scheme: http\n  basic_auth:\n    username: u\n    password: <secret>\n  tls_config:\n    insecure_skip_verify: true\n  follow_redirects: false\n  enable_http2: true\n  static_configs:\n  - targets:\n    - 127.0.0.1:9\n"
    );
}

#[test]
fn proxy_settings_print_before_tls_config_like_prometheus() {
    // Prometheus 2.42's /api/v1/status/config prints every section's HTTP client
    // settings in prometheus/common's field order: the proxy before `tls_config`.
    let config = load("scrape_configs:\n- job_name: a\n  proxy_url: http://127.0.0.1:3128\n  proxy_connect_header: {X-A: [one]}\n  tls_config: {insecure_skip_verify: true}\n  basic_auth: {username: u, password: p}\n  static_configs: [{targets: ['127.0.0.1:1']}]\n  ec2_sd_configs:\n  - region: eu-west-1\n    proxy_url: http://127.0.0.1:3128\n    tls_config: {insecure_skip_verify: true}\n    follow_redirects: false\nremote_write:\n- url: http://127.0.0.1:2/w\n  proxy_url: http://127.0.0.1:3128\n  tls_config: {insecure_skip_verify: true}\nalerting:\n  alertmanagers:\n  - proxy_url: http://127.0.0.1:3128\n    tls_config: {insecure_skip_verify: true}\n    static_configs: [{targets: ['127.0.0.1:3']}]\n");
    let yaml = config.to_yaml();
    for printed in [
        "  - proxy_url: http://127.0.0.1:3128\n    tls_config:\n      insecure_skip_verify: true\n    follow_redirects: true\n    enable_http2: true\n    scheme: http\n",
        "  basic_auth:\n    username: u\n    password: <secret>\n  proxy_url: http://127.0.0.1:3128\n  proxy_connect_header:\n    X-A:\n    - <secret>\n  tls_config:\n    insecure_skip_verify: true\n  follow_redirects: true\n  enable_http2: true\n",
        "    proxy_url: http://127.0.0.1:3128\n    tls_config:\n      insecure_skip_verify: true\n    follow_redirects: false\n    enable_http2: true\n",
        "  remote_timeout: 30s\n  proxy_url: http://127.0.0.1:3128\n  tls_config:\n    insecure_skip_verify: true\n  follow_redirects: true\n  enable_http2: true\n",
    ] {
        assert!(yaml.contains(printed), "{printed}\nnot in\n{yaml}");
    }
}

#[test]
fn oauth2_is_checked_like_prometheus() {
    // promtool check config 2.42's messages for the same oauth2 sections.
    let job = |oauth2: &str| format!("scrape_configs:\n- job_name: a\n  oauth2:\n{oauth2}");
    assert_problems!(
        job("    client_id: a\n"),
        ["prometheus.yml:3: scrape_configs[0].oauth2: either oauth2 client_secret or client_secret_file must be configured"]
    );
    assert_problems!(
        job("    client_id: a\n    client_secret: b\n"),
        ["prometheus.yml:3: scrape_configs[0].oauth2: oauth2 token_url must be configured"]
    );
    assert_problems!(
        job("    client_secret: b\n    token_url: http://x\n"),
        ["prometheus.yml:3: scrape_configs[0].oauth2: oauth2 client_id must be configured"]
    );
    assert_problems!(
        job("    client_id: a\n    client_secret: b\n    client_secret_file: c\n    token_url: http://x\n"),
        ["prometheus.yml:3: scrape_configs[0].oauth2: at most one of oauth2 client_secret & client_secret_file must be configured"]
    );
    let config = load(&job("    client_id: a\n    client_secret: b\n    token_url: http://x\n    scopes: [s]\n    proxy_url: http://y\n"));
    let oauth2 = config.scrape_configs[0].http.oauth2.as_ref().unwrap();
    assert_eq!(
        (oauth2.scopes.as_slice(), oauth2.proxy_url.as_deref()),
        (&["s".to_string()][..], Some("http://y"))
    );
    assert!(config.to_yaml().contains("client_secret: <secret>"));
}

#[test]
fn proxy_urls_must_be_http_or_https() {
    assert_problems!(
        "scrape_configs:\n- job_name: a\n  proxy_url: socks5://127.0.0.1:1080\n  follow_redirects: false\n",
        [r#"prometheus.yml:3: scrape_configs[0].proxy_url: proxy_url scheme "socks5" is not supported by promflow (http and https proxies only)"#]
    );
    let config = load("scrape_configs:\n- job_name: a\n  proxy_url: http://127.0.0.1:3128\n  follow_redirects: false\n");
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("  proxy_url: http://127.0.0.1:3128\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  follow_redirects: false\n"), "{yaml}");
}

#[test]
fn scrape_credentials_print_like_prometheus_status_config() {
    // Prometheus 2.42's /api/v1/status/config for the same file.
    let config = load("scrape_configs:\n- job_name: a\n  sample_limit: 5\n  basic_auth:\n    username: u\n    password: p\n  tls_config:\n    insecure_skip_verify: true\n  static_configs:\n  - targets: ['127.0.0.1:9']\n");
    assert_eq!(
        config.to_yaml(),
        "global:\n  scrape_interval: 1m\n  scrape_timeout: 10s\n  evaluation_interval: 1m\nscrape_configs:\n- job_name: a\n  honor_timestamps: true\n  scrape_interval: 1m\n  scrape_timeout: 10s\n  metrics_path: /metrics\n  scheme: http\n  sample_limit: 5\n  basic_auth:\n    username: u\n    password: <secret>\n  tls_config:\n    insecure_skip_verify: true\n  follow_redirects: true\n  enable_http2: true\n  static_configs:\n  - targets:\n    - 127.0.0.1:9\n"
    );
}

#[test]
fn to_yaml_loads_back_to_the_same_config() {
    let config = load(FULL);
    let reloaded = load(&config.to_yaml());
    assert_eq!(reloaded.to_yaml(), config.to_yaml());
}

#[test]
fn default_config_is_valid() {
    let config =
        Config::load_str(DEFAULT_CONFIG_YAML, "<default>", Path::new("/nonexistent")).unwrap();
    assert_eq!(config.global.scrape_interval, secs(15));
    assert_eq!(config.global.evaluation_interval, secs(15));
    let jobs: Vec<(&str, &[String])> = config
        .scrape_configs
        .iter()
        .map(|job| {
            (
                job.job_name.as_str(),
                &job.sd_configs.static_configs[0].targets[..],
            )
        })
        .collect();
    assert_eq!(
        jobs,
        vec![
            ("promflow", &["localhost:9090".to_string()][..]),
            ("node", &["localhost:9100".to_string()][..])
        ]
    );
    assert_eq!(
        config.rule_file_patterns,
        vec![Path::new("/nonexistent/queries/*.yml")]
    );
}

// ---- service discovery configs ---------------------------------------------------

#[test]
fn discovery_configs_get_prometheus_defaults() {
    let config = load(&job("  file_sd_configs:\n  - files: [targets/*.json]\n  dns_sd_configs:\n  - names: [_prom._tcp.example.org]\n  - names: [tasks.app]\n    type: a\n    port: 9100\n  ec2_sd_configs:\n  - region: eu-west-1\n    secret_key: hunter2\n    access_key: AKIA\n    filters:\n    - name: instance-state-name\n      values: [running]\n"));
    let scrape = &config.scrape_configs[0];
    assert_eq!(
        scrape.sd_configs.file_sd_configs,
        vec![FileSdConfig {
            files: vec!["/etc/promflow/targets/*.json".into()],
            refresh_interval: secs(300),
        }]
    );
    assert_eq!(
        scrape.sd_configs.dns_sd_configs[0].record_type,
        DnsRecordType::Srv
    );
    assert_eq!(
        scrape.sd_configs.dns_sd_configs[0].refresh_interval,
        secs(30)
    );
    assert_eq!(
        scrape.sd_configs.dns_sd_configs[1].record_type,
        DnsRecordType::A
    );
    assert_eq!(scrape.sd_configs.dns_sd_configs[1].port, 9100);
    let ec2 = &scrape.sd_configs.ec2_sd_configs[0];
    assert_eq!(ec2.port, 80);
    assert_eq!(ec2.refresh_interval, secs(60));
    assert_eq!(ec2.secret_key.as_ref().map(|s| s.expose()), Some("hunter2"));
    assert_eq!(
        ec2.filters,
        vec![Ec2Filter {
            name: "instance-state-name".into(),
            values: vec!["running".into()],
        }]
    );
    let yaml = config.to_yaml();
    assert!(yaml.contains("secret_key: <secret>"), "{yaml}");
    assert!(!yaml.contains("hunter2"), "{yaml}");
    assert!(yaml.contains("type: A"), "{yaml}");
}

/// Messages as `promtool check config` 2.42 words them.
#[test]
fn discovery_config_problems_are_located() {
    let text = job("  file_sd_configs:\n  - files: []\n  - files: ['a/*.txt', ok.yml]\n  dns_sd_configs:\n  - names: []\n  - names: [a]\n    type: A\n  - names: [a]\n    type: txt\n    port: 1\n  ec2_sd_configs:\n  - region: us-east-1\n    refresh_interval: soon\n    filters:\n    - name: a\n");
    assert_problems!(
        text,
        [
            "prometheus.yml:4: scrape_configs[0].file_sd_configs[0].files: file service discovery config must contain at least one path name",
            r#"prometheus.yml:5: scrape_configs[0].file_sd_configs[1].files[0]: path name "a/*.txt" is not valid for file discovery"#,
            "prometheus.yml:7: scrape_configs[0].dns_sd_configs[0].names: DNS-SD config must contain at least one SRV record name",
            "prometheus.yml:8: scrape_configs[0].dns_sd_configs[1]: a port is required in DNS-SD configs for all record types except SRV",
            "prometheus.yml:11: scrape_configs[0].dns_sd_configs[2].type: invalid DNS-SD records type txt",
            r#"prometheus.yml:15: scrape_configs[0].ec2_sd_configs[0].refresh_interval: not a valid duration string: "soon""#,
            "prometheus.yml:17: scrape_configs[0].ec2_sd_configs[0].filters[0].values: EC2 SD configuration filter values cannot be empty",
        ]
    );
}

// ---- tls_config ------------------------------------------------------------------

#[test]
fn tls_config_is_resolved_and_printed_like_prometheus() {
    let config = load(&job("  scheme: https\n  tls_config:\n    server_name: node.internal\n    insecure_skip_verify: true\n    min_version: TLS12\n"));
    let tls = &config.scrape_configs[0].http.tls_config;
    assert_eq!(tls.server_name.as_deref(), Some("node.internal"));
    assert!(tls.insecure_skip_verify);
    assert_eq!(tls.min_version, Some(TlsVersion::Tls12));
    // Field order and names of Prometheus 2.42's /api/v1/status/config, which prints
    // `min_version: 771` (a bug: it cannot load that back); the name is printed here.
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("  scheme: https\n  tls_config:\n    server_name: node.internal\n    insecure_skip_verify: true\n    min_version: TLS12\n"),
        "{yaml}"
    );
    assert_eq!(load(&yaml).scrape_configs[0].http.tls_config, *tls);
    // Nothing set: nothing printed.
    assert!(!load(&job("")).to_yaml().contains("tls_config"));
}

/// Wording of `promtool check config` 2.42 for its own checks; the file checks are
/// promflow's (Prometheus reports them when it creates the scrape pool).
#[test]
fn tls_config_problems_are_located() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not PEM\n").unwrap();
    let text = "scrape_configs:\n- job_name: x\n  scheme: https\n  tls_config:\n    ca_file: missing-ca.pem\n    min_version: TLS14\n- job_name: y\n  tls_config:\n    cert_file: client.pem\nalerting:\n  alertmanagers:\n  - scheme: https\n    tls_config:\n      ca_file: junk.pem\n      max_version: TLS13\n      min_version: TLS13\n      insecure_skip_verify: maybe\n";
    let problems: Vec<String> = Config::load_str(text, "prometheus.yml", dir.path())
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    let base = dir.path().display();
    // A type error stops serde before validation: it is the only problem then.
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("insecure_skip_verify") && problems[0].contains(":17"),
        "{problems:#?}"
    );
    let text = text.replace("      insecure_skip_verify: maybe\n", "");
    let problems: Vec<String> = Config::load_str(&text, "prometheus.yml", dir.path())
        .unwrap_err()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        problems,
        vec![
            format!("prometheus.yml:5: scrape_configs[0].tls_config.ca_file: unable to load specified CA cert {base}/missing-ca.pem: open {base}/missing-ca.pem: no such file or directory"),
            "prometheus.yml:6: scrape_configs[0].tls_config.min_version: unknown TLS version: TLS14".to_string(),
            format!("prometheus.yml:9: scrape_configs[1].tls_config.cert_file: client cert file \"{base}/client.pem\" specified without client key file"),
            format!("prometheus.yml:14: alerting.alertmanagers[0].tls_config.ca_file: unable to use specified CA cert {base}/junk.pem: no PEM CERTIFICATE block in it"),
        ]
    );
}

/// Problems and wording checked with `promtool check config` 2.42.
#[test]
fn remote_write_defaults_and_problems() {
    let config = load(
        "remote_write:\n- url: http://127.0.0.1:9/api/v1/write\n  headers: {X-Scope-OrgID: a}\n  queue_config: {max_backoff: 1s}\n  write_relabel_configs:\n  - source_labels: [__name__]\n    regex: secret_.*\n    action: drop\n",
    );
    let rw = &config.remote_write[0];
    assert_eq!(rw.remote_timeout, Duration::from_secs(30));
    assert_eq!(rw.headers["X-Scope-OrgID"], "a");
    assert_eq!(
        rw.queue_config,
        QueueConfig {
            max_backoff: Duration::from_secs(1),
            ..QueueConfig::default()
        }
    );
    assert_eq!(rw.write_relabel_configs.len(), 1);
    assert!(!rw.metadata_config.send);
    assert!(config.to_yaml().contains("max_samples_per_send: 500"));
    assert_problems!(
        "remote_write:\n- name: a\n- url: http://x/w\n  headers:\n    Content-Type: x\n- url: http://y/w\n  name: a\n  metadata_config: {send: true}\n  sigv4: {}\n",
        [
            "prometheus.yml:2: remote_write[0].url: url for remote_write is empty",
            "prometheus.yml:5: remote_write[1].headers.Content-Type: Content-Type is a reserved header. It must not be changed",
            "prometheus.yml:7: remote_write[2].name: found multiple remote write configs with job name \"a\"",
            "prometheus.yml:8: remote_write[2].metadata_config.send: sending metadata over remote write is not supported by promflow yet (set send: false)",
            "prometheus.yml:9: remote_write[2].sigv4: field sigv4 is not supported by promflow yet",
        ]
    );
}

#[test]
fn alertmanagers_take_the_scrape_jobs_service_discoveries() {
    let config = load(
        "alerting:\n  alertmanagers:\n  - file_sd_configs:\n    - files: [ams/*.json]\n    dns_sd_configs:\n    - names: [tasks.alertmanager]\n      type: A\n      port: 9093\n    ec2_sd_configs:\n    - region: eu-west-1\n      port: 9093\n    relabel_configs:\n    - source_labels: [__meta_ec2_tag_Name]\n      regex: am-.*\n      action: keep\n",
    );
    let am = &config.alerting.alertmanagers[0];
    assert_eq!(
        am.sd_configs.file_sd_configs[0].files,
        [Path::new("/etc/promflow/ams/*.json")]
    );
    assert_eq!(
        am.sd_configs.file_sd_configs[0].refresh_interval,
        crate::config::DEFAULT_FILE_SD_REFRESH_INTERVAL
    );
    assert_eq!(
        am.sd_configs.dns_sd_configs[0].names,
        ["tasks.alertmanager"]
    );
    assert_eq!(am.sd_configs.dns_sd_configs[0].port, 9093);
    assert_eq!(am.sd_configs.ec2_sd_configs[0].region, "eu-west-1");
    assert_eq!(am.relabel_configs.len(), 1);
    // The EC2 client's HTTP settings are taken here as under a scrape job.
    assert_problems!(
        "alerting:\n  alertmanagers:\n  - ec2_sd_configs:\n    - region: eu-west-1\n      tls_config: {}\n    consul_sd_configs: []\n",
        [
            "prometheus.yml:6: alerting.alertmanagers[0].consul_sd_configs: field consul_sd_configs is not supported by promflow yet",
        ]
    );
}

#[test]
fn bearer_tokens_become_authorization_and_conflicts_are_named_like_prometheus() {
    // promtool check config 2.42 on the same sections (one conflict at a time, its
    // first); a real Prometheus 2.42 shows bearer_token[_file] as `authorization`
    // of type Bearer in /api/v1/status/config.
    let job = |client: &str| {
        format!(
            "scrape_configs:\n- job_name: a\n{client}  static_configs: [{{targets: [\"a:1\"]}}]\n"
        )
    };
    assert_problems!(
        &job("  bearer_token: x\n  bearer_token_file: f\n"),
        ["prometheus.yml:2: scrape_configs[0]: at most one of bearer_token & bearer_token_file must be configured"]
    );
    assert_problems!(
        &job("  bearer_token: x\n  basic_auth: {username: u}\n"),
        ["prometheus.yml:2: scrape_configs[0]: at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"]
    );
    assert_problems!(
        &job("  bearer_token_file: f\n  oauth2: {client_id: a, client_secret: b, token_url: 'http://x'}\n"),
        ["prometheus.yml:2: scrape_configs[0]: at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"]
    );
    assert_problems!(
        &job("  bearer_token: x\n  authorization: {credentials: y}\n"),
        ["prometheus.yml:2: scrape_configs[0]: authorization is not compatible with bearer_token & bearer_token_file"]
    );
    let config = load(
        "scrape_configs:\n- job_name: a\n  bearer_token: x\n- job_name: b\n  bearer_token_file: tok\nremote_write:\n- url: http://127.0.0.1:1/w\n  bearer_token: x\nalerting:\n  alertmanagers:\n  - bearer_token_file: tok\n    proxy_url: http://127.0.0.1:3128\n    follow_redirects: false\n    static_configs: [{targets: [\"a:1\"]}]\n  - oauth2: {client_id: a, client_secret: b, token_url: 'http://x', scopes: [s]}\n    static_configs: [{targets: [\"a:1\"]}]\n",
    );
    let a = config.scrape_configs[0]
        .http
        .authorization
        .as_ref()
        .unwrap();
    assert_eq!(
        (a.kind.as_str(), a.header_value().unwrap().as_deref()),
        ("Bearer", Some("Bearer x"))
    );
    let b = config.scrape_configs[1]
        .http
        .authorization
        .as_ref()
        .unwrap();
    assert_eq!(b.kind, "Bearer");
    assert!(b.credentials.is_none() && b.credentials_file.as_ref().unwrap().ends_with("tok"));
    let w = config.remote_write[0].http.authorization.as_ref().unwrap();
    assert_eq!(w.header_value().unwrap().as_deref(), Some("Bearer x"));
    let ams = &config.alerting.alertmanagers;
    assert!(ams[0]
        .http
        .authorization
        .as_ref()
        .unwrap()
        .credentials_file
        .is_some());
    assert_eq!(
        ams[0].http.proxy_url.as_deref(),
        Some("http://127.0.0.1:3128")
    );
    assert!(!ams[0].http.follow_redirects);
    assert_eq!(ams[1].http.oauth2.as_ref().unwrap().scopes, ["s"]);
    // Shown as Prometheus shows them: `authorization`, never the token itself.
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("  authorization:\n    type: Bearer\n    credentials: <secret>\n"),
        "{yaml}"
    );
    assert!(!yaml.contains("bearer_token"), "{yaml}");
}

#[test]
fn scrape_protocols_are_checked_and_defaulted_as_prometheus_does() {
    // Messages of Prometheus 2.49's validateAcceptScrapeProtocols.
    assert_problems!(
        job("  scrape_protocols: [PrometheusProto, OpenMetricsText2.0.0]\n"),
        [
            "prometheus.yml:3: scrape_configs[0].scrape_protocols: unknown scrape protocol OpenMetricsText2.0.0, supported: [OpenMetricsText0.0.1 OpenMetricsText1.0.0 PrometheusProto PrometheusText0.0.4]"
        ]
    );
    assert_problems!(
        job("  scrape_protocols: [PrometheusProto, prometheusproto]\n"),
        [
            "prometheus.yml:3: scrape_configs[0].scrape_protocols: duplicated protocol in scrape_protocols, got [PrometheusProto prometheusproto]"
        ]
    );
    assert_problems!(
        "global:\n  scrape_protocols: []\n",
        ["prometheus.yml:2: global.scrape_protocols: scrape_protocols cannot be empty"]
    );
    use ScrapeProtocol::*;
    let protocols = |text: &str| -> Vec<Vec<ScrapeProtocol>> {
        load(text)
            .scrape_configs
            .iter()
            .map(|j| j.scrape_protocols.clone())
            .collect()
    };
    assert_eq!(
        protocols(&job("")),
        [vec![
            OpenMetricsText1_0_0,
            OpenMetricsText0_0_1,
            PrometheusText0_0_4
        ]]
    );
    // Native histograms wanted and no list given: protobuf first (Prometheus 3.8).
    assert_eq!(
        protocols(&job("  scrape_native_histograms: true\n")),
        [vec![
            PrometheusProto,
            OpenMetricsText1_0_0,
            OpenMetricsText0_0_1,
            PrometheusText0_0_4
        ]]
    );
    // A list given (here globally) wins over that default.
    assert_eq!(
        protocols(&format!(
            "global:\n  scrape_protocols: [PrometheusText0.0.4]\n  scrape_native_histograms: true\n{}",
            job("")
        )),
        [vec![PrometheusText0_0_4]]
    );
    let native = load(&job(
        "  always_scrape_classic_histograms: true\n  native_histogram_bucket_limit: 160\n  native_histogram_min_bucket_factor: 1.1\n",
    ));
    let native = &native.scrape_configs[0];
    assert!(native.always_scrape_classic_histograms);
    assert_eq!(native.native_histogram_bucket_limit, 160);
    assert_eq!(native.native_histogram_min_bucket_factor, 1.1);
    assert!(!native.convert_classic_histograms_to_nhcb);
    // convert_classic_histograms_to_nhcb: the job's, else the global one.
    let nhcb = |yaml: &str| {
        load(yaml)
            .scrape_configs
            .iter()
            .map(|j| j.convert_classic_histograms_to_nhcb)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nhcb("global:\n  convert_classic_histograms_to_nhcb: true\nscrape_configs:\n- job_name: a\n- job_name: b\n  convert_classic_histograms_to_nhcb: false\n"),
        [true, false]
    );
    assert_eq!(
        nhcb("scrape_configs:\n- job_name: a\n  convert_classic_histograms_to_nhcb: true\n"),
        [true]
    );
}

#[test]
fn ec2_sd_configs_take_the_whole_http_client_unvalidated() {
    // promtool check config 2.42 accepts all of this (Prometheus never validates the
    // EC2 client's settings), and prints `proxy_connect_header` values as secrets.
    let config = load("scrape_configs:\n- job_name: a\n  ec2_sd_configs:\n  - region: us-east-1\n    basic_auth: {username: u, password: p}\n    authorization: {credentials: c}\n    tls_config: {server_name: ec2.test}\n    proxy_connect_header: {X-A: [one, two]}\n    follow_redirects: false\n    enable_http2: false\n");
    let ec2 = &config.scrape_configs[0].sd_configs.ec2_sd_configs[0];
    assert_eq!(ec2.http.basic_auth.as_ref().unwrap().username, "u");
    assert!(ec2.http.authorization.is_some());
    assert_eq!(ec2.http.tls_config.server_name.as_deref(), Some("ec2.test"));
    assert_eq!(ec2.http.proxy_url, None);
    assert_eq!(
        ec2.http.proxy_connect_header["X-A"]
            .iter()
            .map(|v| v.expose())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert!(!ec2.http.follow_redirects && !ec2.http.enable_http2);
    let yaml = config.to_yaml();
    assert!(
        yaml.contains(
            "    proxy_connect_header:\n      X-A:\n      - <secret>\n      - <secret>\n"
        ),
        "{yaml}"
    );
}

#[test]
fn proxy_connect_header_needs_proxy_url() {
    // prometheus/common 0.39's words, as promtool check config 2.42 prints them.
    assert_problems!(
        "scrape_configs:\n- job_name: a\n  proxy_connect_header: {X: [y]}\n",
        ["prometheus.yml:2: scrape_configs[0]: if proxy_connect_header is configured proxy_url must also be configured"]
    );
    let config = load("scrape_configs:\n- job_name: a\n  proxy_url: http://127.0.0.1:3128\n  proxy_connect_header: {X: [y]}\n");
    assert_eq!(config.scrape_configs[0].http.proxy_connect_header.len(), 1);
}
