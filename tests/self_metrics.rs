//! promflow's own `/metrics` passes `promtool check metrics` (Prometheus 2.42, from
//! the `prometheus` package) with no output at all — every metric has `# HELP` and
//! `# TYPE` and follows the naming rules — with every part that exports metrics
//! active: scraping, rules (recording and alerting), the notifier to Alertmanagers,
//! the built-in notifier (`--alertmanager.config.file`) and remote write. The
//! families promflow reports under Prometheus's names have Prometheus 2.42's types and
//! label names, and its rule counters move as Prometheus's do (the oracle runs beside
//! it on the same config).

mod common;

use common::exporter::{Exporter, Reply};
use common::{promtool_check_metrics, wait_until, Prometheus, Promflow};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[test]
fn promtool_check_metrics_prints_nothing_with_every_part_active() {
    let exporter = Exporter::start(Reply::text("load 5\n"));
    // Answers 200 to anything: the Alertmanager and the remote-write receiver.
    let sink = Exporter::start(Reply::text(""));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - record: load:x2\n        expr: load * 2\n      - alert: Loaded\n        expr: load > 1\n",
    )
    .unwrap();
    let am_config = dir.path().join("am.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: hook\n  group_wait: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{}/hook\n",
            sink.addr()
        ),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         scrape_configs:\n  - job_name: load\n    static_configs:\n      - targets: ['{}']\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         remote_write:\n  - url: http://{}/api/v1/write\n",
        rules.display(),
        exporter.addr(),
        sink.addr(),
        sink.addr()
    );
    let promflow = Promflow::start_with_args(
        &config,
        &[&format!(
            "--alertmanager.config.file={}",
            am_config.display()
        )],
    );
    // Everything has had something to do: the alert went out to both notifiers.
    let paths = || -> Vec<String> { sink.served().iter().map(|s| s.path.clone()).collect() };
    assert!(
        wait_until(Duration::from_secs(30), || {
            let seen = paths();
            ["/api/v2/alerts", "/hook", "/api/v1/write"]
                .iter()
                .all(|p| seen.iter().any(|s| s.starts_with(p)))
        }),
        "the sink saw {:?}",
        paths()
    );
    let body = promflow.get_ok("/metrics");
    let (ok, out) = promtool_check_metrics(&body);
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n---\n{body}"
    );
}

/// The families promflow reports under Prometheus's names: each must be in the
/// oracle's `/metrics` too, with the same `# TYPE` and label names.
const PROMETHEUS_FAMILIES: &[&str] = &[
    "prometheus_rule_evaluation_duration_seconds",
    "prometheus_rule_evaluation_failures_total",
    "prometheus_rule_evaluations_total",
    "prometheus_rule_group_duration_seconds",
    "prometheus_rule_group_interval_seconds",
    "prometheus_rule_group_iterations_missed_total",
    "prometheus_rule_group_iterations_total",
    "prometheus_rule_group_last_duration_seconds",
    "prometheus_rule_group_last_evaluation_samples",
    "prometheus_rule_group_last_evaluation_timestamp_seconds",
    "prometheus_rule_group_rules",
    "prometheus_config_last_reload_successful",
    "prometheus_config_last_reload_success_timestamp_seconds",
    "prometheus_notifications_alertmanagers_discovered",
    "prometheus_notifications_dropped_total",
    "prometheus_notifications_errors_total",
    "prometheus_notifications_queue_capacity",
    "prometheus_notifications_queue_length",
    "prometheus_notifications_sent_total",
    "prometheus_tsdb_head_series",
    "prometheus_tsdb_head_samples_appended_total",
    "prometheus_tsdb_wal_corruptions_total",
];

/// The label names of family `name` (its `_sum`/`_count` samples too).
fn label_names(m: &common::exposition::Exposition, name: &str) -> BTreeSet<String> {
    let (sum, count) = (format!("{name}_sum"), format!("{name}_count"));
    m.samples
        .iter()
        .filter(|s| s.name == name || s.name == sum || s.name == count)
        .flat_map(|s| s.labels.keys().cloned())
        .collect()
}

/// A family's value per `rule_group`.
fn per_group(m: &common::exposition::Exposition, name: &str) -> BTreeMap<String, f64> {
    m.named(name)
        .map(|s| (s.label("rule_group").unwrap_or("").to_string(), s.value))
        .collect()
}

/// promflow and Prometheus 2.42 on the same config and rule file (a recording and an
/// alerting rule in one group; in another an alerting rule whose result has duplicate
/// alert labels, so its evaluations fail; an Alertmanager on a closed port): the
/// families above are in both with the same type and label names, the groups are keyed
/// `<file>;<group>` alike, an evaluation is counted per rule step (two per iteration
/// of the two-rule group), failures only in the failing group, and the unreachable
/// Alertmanager's errors under its URL.
#[test]
fn prometheus_self_metrics_match_the_oracle() {
    let exporter = Exporter::start(Reply::text("a{i=\"1\"} 1\nb{i=\"1\"} 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - record: a:x2\n        expr: a * 2\n      - alert: AOn\n        expr: a > 0\n\
         \x20 - name: bad\n    interval: 1s\n    rules:\n      - alert: Dup\n        expr: '{__name__=~\"a|b\"} > 0'\n",
    )
    .unwrap();
    let closed = common::free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         scrape_configs:\n  - job_name: ab\n    static_configs:\n      - targets: ['{}']\n\
         alerting:\n  alertmanagers:\n    - timeout: 1s\n      static_configs:\n        - targets: ['127.0.0.1:{closed}']\n",
        rules.display(),
        exporter.addr(),
    );
    let promflow = Promflow::start(&config);
    let oracle = Prometheus::start(&config);
    let file = rules.display().to_string();
    let (g, bad) = (format!("{file};g"), format!("{file};bad"));
    let failing = |m: &common::exposition::Exposition| {
        per_group(m, "prometheus_rule_evaluation_failures_total")
            .get(&bad)
            .copied()
            .unwrap_or(0.0)
            >= 2.0
            && m.sum("prometheus_notifications_errors_total")
                .unwrap_or(0.0)
                >= 1.0
    };
    assert!(
        wait_until(Duration::from_secs(30), || failing(&oracle.metrics())
            && failing(&promflow.metrics())),
        "no failures counted in both;\npromflow:\n{}\nprometheus:\n{}",
        promflow.get_ok("/metrics"),
        oracle.get_ok("/metrics")
    );
    let ours = promflow.metrics();
    let theirs = oracle.metrics();
    for name in PROMETHEUS_FAMILIES {
        assert_eq!(
            ours.types.get(*name),
            theirs.types.get(*name),
            "# TYPE of {name}"
        );
        assert!(theirs.types.contains_key(*name), "{name} not in the oracle");
        assert_eq!(
            label_names(&ours, name),
            label_names(&theirs, name),
            "label names of {name}"
        );
    }
    for m in [&ours, &theirs] {
        let groups: Vec<String> = per_group(m, "prometheus_rule_group_rules")
            .into_keys()
            .collect();
        let mut want = vec![bad.clone(), g.clone()];
        want.sort();
        assert_eq!(groups, want);
        let rules = per_group(m, "prometheus_rule_group_rules");
        assert_eq!((rules[&g], rules[&bad]), (2.0, 1.0));
        let interval = per_group(m, "prometheus_rule_group_interval_seconds");
        assert_eq!(interval[&g], 1.0);
        // One evaluation per rule step: two per iteration of `g`, give or take the
        // iteration under way.
        let evaluations = per_group(m, "prometheus_rule_evaluations_total");
        let iterations = per_group(m, "prometheus_rule_group_iterations_total");
        assert!(iterations[&g] >= 2.0, "iterations {iterations:?}");
        assert!(
            (evaluations[&g] - 2.0 * iterations[&g]).abs() <= 2.0,
            "evaluations {evaluations:?}, iterations {iterations:?}"
        );
        assert!(
            (evaluations[&bad] - iterations[&bad]).abs() <= 1.0,
            "evaluations {evaluations:?}, iterations {iterations:?}"
        );
        let failures = per_group(m, "prometheus_rule_evaluation_failures_total");
        assert_eq!(failures[&g], 0.0);
        assert!(failures[&bad] >= 2.0 && failures[&bad] <= evaluations[&bad]);
        let last = per_group(m, "prometheus_rule_group_last_evaluation_timestamp_seconds");
        assert!(last[&g] > 1.7e9, "{last:?}");
        // The unreachable Alertmanager, under the URL alerts are POSTed to.
        let url = format!("http://127.0.0.1:{closed}/api/v2/alerts");
        let errors = m
            .find(
                "prometheus_notifications_errors_total",
                &[("alertmanager", &url)],
            )
            .map(|s| s.value);
        assert!(errors >= Some(1.0), "errors of {url}: {errors:?}");
        assert_eq!(m.sum("prometheus_config_last_reload_successful"), Some(1.0));
        assert!(m.sum("prometheus_tsdb_head_series").unwrap_or(0.0) > 0.0);
        let floats = m
            .find(
                "prometheus_tsdb_head_samples_appended_total",
                &[("type", "float")],
            )
            .map(|s| s.value);
        assert!(floats > Some(0.0), "{floats:?}");
    }
}
