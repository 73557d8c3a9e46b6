//! Config reload: a bad config over `POST /-/reload` is refused with 500 and the old
//! config keeps running; a good one over SIGHUP takes effect; the reload gauges say so.
//!
//! Real peers: node_exporter (`prometheus-node-exporter`) as the scrape target, and
//! Prometheus 2.42 (`prometheus`) for `reference_prometheus_reloads_the_same_way`, which
//! runs the same steps against Prometheus (its gauges are `prometheus_config_*`).
//! `.ci/run` installs them.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{wait_for, wait_until, NodeExporter, Peer, Prometheus, Promflow};

fn config(node: &str, jobs: &[&str]) -> String {
    let mut out = String::from(
        "# Scrapes the same node_exporter under each job name.\n\
         global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n",
    );
    for job in jobs {
        out.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{node}']\n"
        ));
    }
    out
}

/// Wrong in a way Prometheus's loader rejects: a duration that does not parse.
const BROKEN_CONFIG: &str = "# Not a valid duration.\nglobal:\n  scrape_interval: five seconds\n\
scrape_configs:\n  - job_name: old\n    static_configs:\n      - targets: ['127.0.0.1:9']\n";

/// Timestamp of the latest federated `up` of `job`, if there is one.
fn up_timestamp(server: &Peer, job: &str) -> Option<i64> {
    let fed = server.federate(&[&format!(r#"up{{job="{job}"}}"#)]);
    let up = fed.find("up", &[("job", job)])?;
    assert_eq!(up.value, 1.0, "up for {job}: {up:?}");
    up.timestamp_ms
}

fn gauge(server: &Peer, name: &str) -> f64 {
    server
        .metrics()
        .sum(name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The reload scenario; `who` is `promflow` or `prometheus` (both report the reload
/// under Prometheus's gauge names).
fn check_reload(server: &Peer, node: &str, who: &str) {
    let ok_gauge = "prometheus_config_last_reload_successful";
    let ts_gauge = "prometheus_config_last_reload_success_timestamp_seconds";
    let wait = Duration::from_secs(30);

    assert!(
        wait_until(wait, || up_timestamp(server, "old").is_some()),
        "{who}: job old never scraped"
    );
    assert_eq!(gauge(server, ok_gauge), 1.0, "{ok_gauge} after start");
    let loaded_at = gauge(server, ts_gauge);
    assert!(loaded_at > 0.0, "{ts_gauge} after start: {loaded_at}");

    // A broken config: refused with 500 and the reason; the old config keeps running.
    server.write_config(BROKEN_CONFIG);
    let resp = server.reload();
    assert_eq!(resp.status, 500, "reload of a broken config: {}", resp.body);
    assert!(
        resp.body.contains("scrape_interval") || resp.body.contains("five seconds"),
        "500 body should name the problem: {}",
        resp.body
    );
    assert_eq!(
        gauge(server, ok_gauge),
        0.0,
        "{ok_gauge} after a failed reload"
    );
    assert_eq!(
        gauge(server, ts_gauge),
        loaded_at,
        "{ts_gauge} moved on a failed reload"
    );
    let before = up_timestamp(server, "old").unwrap();
    assert!(
        wait_until(wait, || up_timestamp(server, "old")
            .is_some_and(|t| t > before)),
        "job old stopped scraping after a failed reload"
    );

    // A good config with a second job, over SIGHUP.
    server.write_config(&config(node, &["old", "new"]));
    let sent_at = now_secs();
    server.sighup();
    assert!(
        wait_until(wait, || up_timestamp(server, "new").is_some()),
        "job new never appeared after SIGHUP"
    );
    let reloaded_at = wait_for(wait, || {
        let ok = gauge(server, ok_gauge);
        (ok == 1.0).then(|| gauge(server, ts_gauge))
    })
    .unwrap_or_else(|| panic!("{ok_gauge} did not return to 1 after SIGHUP"));
    // The gauge has second resolution in Prometheus: allow the truncation.
    assert!(
        reloaded_at >= sent_at.floor() - 1.0,
        "{ts_gauge} = {reloaded_at}, SIGHUP sent at {sent_at}"
    );
    let before = up_timestamp(server, "old").unwrap();
    assert!(
        wait_until(wait, || up_timestamp(server, "old")
            .is_some_and(|t| t > before)),
        "job old stopped scraping after the good reload"
    );
}

#[test]
fn promflow_refuses_a_bad_reload_and_applies_a_good_one() {
    let node = NodeExporter::start();
    let addr = node.addr().to_string();
    let promflow = Promflow::start_with_args(&config(&addr, &["old"]), &["--web.enable-lifecycle"]);
    check_reload(&promflow, &addr, "promflow");
}

#[test]
fn reference_prometheus_reloads_the_same_way() {
    let node = NodeExporter::start();
    let addr = node.addr().to_string();
    let prometheus = Prometheus::start(&config(&addr, &["old"]));
    check_reload(&prometheus, &addr, "prometheus");
}

/// A config naming a rule file with bad PromQL: Prometheus refuses the reload (500)
/// and keeps its rules; promflow must too. The same steps run against both.
fn check_bad_rule_file_reload(server: &Peer, rules_path: &std::path::Path, prefix: &str) {
    std::fs::write(
        rules_path,
        "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum(up) by (job)\n",
    )
    .unwrap();
    assert_eq!(
        server.reload().status,
        200,
        "{prefix}: a good rule file reloads"
    );
    std::fs::write(
        rules_path,
        "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum(up by (job)\n",
    )
    .unwrap();
    let refused = server.reload();
    assert_eq!(refused.status, 500, "{prefix}: {}", refused.body);
    assert_eq!(
        gauge(server, "prometheus_config_last_reload_successful"),
        0.0
    );
    // The previous rule still runs: its output keeps appearing.
    assert!(
        wait_until(Duration::from_secs(20), || !server
            .federate(&["job:up:sum"])
            .samples
            .is_empty()),
        "{prefix}: the old rule stopped"
    );
}

fn rule_config(node: &str, rules_path: &std::path::Path) -> String {
    let base = config(node, &["node"]).replace(
        "global:\n  scrape_interval: 1s",
        "global:\n  evaluation_interval: 1s\n  scrape_interval: 1s",
    );
    format!("{base}rule_files: ['{}']\n", rules_path.display())
}

#[test]
fn promflow_refuses_a_reload_with_a_broken_rule_file() {
    let node = NodeExporter::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, "groups: []\n").unwrap();
    let promflow = Promflow::start_with_args(
        &rule_config(&node.addr().to_string(), &rules),
        &["--web.enable-lifecycle"],
    );
    check_bad_rule_file_reload(&promflow, &rules, "promflow");
}

#[test]
fn reference_prometheus_refuses_a_reload_with_a_broken_rule_file() {
    let node = NodeExporter::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, "groups: []\n").unwrap();
    let prometheus = Prometheus::start(&rule_config(&node.addr().to_string(), &rules));
    check_bad_rule_file_reload(&prometheus, &rules, "prometheus");
}
