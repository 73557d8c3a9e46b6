//! Discovered Alertmanagers (`alerting.alertmanagers[]` with `file_sd_configs`,
//! `dns_sd_configs` and `relabel_configs`): alerts reach the Alertmanagers discovery
//! currently names, relabeling drops Alertmanagers, `GET /api/v1/alertmanagers`
//! answers what Prometheus 2.42 answers for the same config, and bad sd configs under
//! `alerting` are reported with their path and line, in promtool's words.
//!
//! Real peers: Alertmanager 0.25 (`prometheus-alertmanager`) twice, each receiving
//! promflow's alerts (read back through Alertmanager's own `GET /api/v2/alerts`);
//! Prometheus 2.42 and promtool (`prometheus`) as the oracle for the API and the
//! config errors; dnsmasq for `dns_sd_configs`; moto (`.venv`) as the EC2 API for
//! `ec2_sd_configs`; the controllable exporter of `common`
//! makes rules fire when the test says so.

mod common;

use common::alertmanager::{Alertmanager, Webhook};
use common::dnsmasq::Dnsmasq;
use common::exporter::{Exporter, Reply};
use common::moto::{self, Moto};
use common::{combined_output, promtool, run_promflow, wait_until, Prometheus, Promflow};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// Two alerting rules that fire as soon as their metric is scraped above 0.
const RULES: &str = "groups:\n  - name: g\n    rules:\n      - alert: FirstAlert\n        expr: first_condition > 0\n      - alert: SecondAlert\n        expr: second_condition > 0\n";

/// A promflow config scraping `exporter` every second, evaluating [`RULES`] (written
/// into `dir`) every second, with `alerting` as given (indented as a top-level key).
fn config_with_alerting(dir: &Path, exporter: &Exporter, alerting: &str) -> String {
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n{alerting}scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    )
}

/// Writes a file_sd JSON file atomically (rename), so discovery never reads half of it.
fn write_sd_file(path: &Path, targets: &[String]) {
    let tmp = path.with_extension("tmp");
    let body = serde_json::json!([{ "targets": targets }]);
    std::fs::write(&tmp, body.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The alert names an Alertmanager holds.
fn alertnames(am: &Alertmanager) -> Vec<String> {
    let mut names: Vec<String> = am
        .alerts()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn has_alert(am: &Alertmanager, name: &str) -> bool {
    alertnames(am).iter().any(|n| n == name)
}

/// `(activeAlertmanagers, droppedAlertmanagers)` URLs of a `/api/v1/alertmanagers`
/// answer.
fn am_urls(body: &str) -> (Vec<String>, Vec<String>) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    let urls = |key: &str| -> Vec<String> {
        v["data"][key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {body}"))
            .iter()
            .map(|a| a["url"].as_str().unwrap().to_string())
            .collect()
    };
    (urls("activeAlertmanagers"), urls("droppedAlertmanagers"))
}

/// Both lists sorted: Prometheus lists its Alertmanager sets in Go map order.
fn sorted((mut active, mut dropped): (Vec<String>, Vec<String>)) -> (Vec<String>, Vec<String>) {
    active.sort();
    dropped.sort();
    (active, dropped)
}

fn alerts_url(am: &Alertmanager) -> String {
    format!("http://127.0.0.1:{}/api/v2/alerts", am.port)
}

/// An Alertmanager found through a file_sd file receives the alerts; when the file
/// names another Alertmanager instead, the next alert reaches that one and not the
/// first (both stay up).
#[test]
fn alerts_follow_the_file_sd_file_to_another_alertmanager() {
    let webhook = Webhook::start();
    let first = Alertmanager::start(webhook.port);
    let second = Alertmanager::start(webhook.port);
    let exporter = Exporter::start(Reply::text("first_condition 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let sd_file = dir.path().join("alertmanagers.json");
    write_sd_file(&sd_file, &[first.addr().to_string()]);
    let alerting = format!(
        "  alertmanagers:\n    - file_sd_configs:\n        - files: ['{}']\n",
        sd_file.display()
    );
    let promflow = Promflow::start(&config_with_alerting(dir.path(), &exporter, &alerting));

    assert!(
        wait_until(WAIT, || has_alert(&first, "FirstAlert")),
        "the discovered Alertmanager got no alert; promflow log:\n{}\nalertmanagers: {}",
        promflow.log(),
        promflow.get_ok("/api/v1/alertmanagers")
    );
    assert_eq!(
        am_urls(&promflow.get_ok("/api/v1/alertmanagers")),
        (vec![alerts_url(&first)], vec![])
    );

    write_sd_file(&sd_file, &[second.addr().to_string()]);
    assert!(
        wait_until(WAIT, || am_urls(&promflow.get_ok("/api/v1/alertmanagers"))
            .0
            == [alerts_url(&second)]),
        "the rewritten sd file was not followed: {}",
        promflow.get_ok("/api/v1/alertmanagers")
    );
    exporter.set(Reply::text("first_condition 1\nsecond_condition 1\n"));
    assert!(
        wait_until(WAIT, || has_alert(&second, "SecondAlert")),
        "the newly discovered Alertmanager got no alert; promflow log:\n{}",
        promflow.log()
    );
    // Each batch goes to every active Alertmanager at once: had the first still been
    // one, it would hold SecondAlert by now.
    assert_eq!(alertnames(&first), ["FirstAlert"]);

    // A file that no longer parses keeps the last good Alertmanagers.
    let failures = || {
        promflow
            .metrics()
            .sum("promflow_sd_refresh_failures_total")
            .unwrap_or(0.0)
    };
    let failures_before = failures();
    std::fs::write(&sd_file, "[{\"targets\": ").unwrap();
    assert!(
        wait_until(WAIT, || failures() > failures_before),
        "the broken sd file was not noticed; promflow log:\n{}",
        promflow.log()
    );
    assert_eq!(
        am_urls(&promflow.get_ok("/api/v1/alertmanagers")),
        (vec![alerts_url(&second)], vec![])
    );
    let metrics = promflow.metrics();
    assert_eq!(
        metrics.sum("prometheus_notifications_alertmanagers_discovered"),
        Some(1.0)
    );
    assert_eq!(
        metrics.sum("prometheus_notifications_dropped_total"),
        Some(0.0)
    );
}

/// `relabel_configs` of an Alertmanager entry apply to static targets too: the one
/// they drop receives nothing and is listed in `droppedAlertmanagers`.
#[test]
fn relabeling_drops_an_alertmanager() {
    let webhook = Webhook::start();
    let kept = Alertmanager::start(webhook.port);
    let dropped = Alertmanager::start(webhook.port);
    let exporter = Exporter::start(Reply::text("first_condition 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let alerting = format!(
        "  alertmanagers:\n    - static_configs:\n        - targets: ['{}', '{}']\n      relabel_configs:\n        - source_labels: [__address__]\n          regex: '{}'\n          action: drop\n",
        kept.addr(),
        dropped.addr(),
        regex::escape(&dropped.addr().to_string())
    );
    let promflow = Promflow::start_with_args(
        &config_with_alerting(dir.path(), &exporter, &alerting),
        &["--web.enable-lifecycle"],
    );
    assert_eq!(
        am_urls(&promflow.get_ok("/api/v1/alertmanagers")),
        (vec![alerts_url(&kept)], vec![alerts_url(&dropped)])
    );
    assert!(
        wait_until(WAIT, || has_alert(&kept, "FirstAlert")),
        "the kept Alertmanager got no alert; promflow log:\n{}",
        promflow.log()
    );
    assert!(alertnames(&dropped).is_empty(), "{:?}", dropped.alerts());

    // Without the relabeling (reloaded), both are Alertmanagers.
    promflow.write_config(&config_with_alerting(
        dir.path(),
        &exporter,
        &format!(
            "  alertmanagers:\n    - static_configs:\n        - targets: ['{}', '{}']\n",
            kept.addr(),
            dropped.addr()
        ),
    ));
    assert_eq!(promflow.reload().status, 200);
    assert_eq!(
        am_urls(&promflow.get_ok("/api/v1/alertmanagers")),
        (vec![alerts_url(&kept), alerts_url(&dropped)], vec![])
    );
}

/// Alertmanagers found through `ec2_sd_configs` (a real EC2 API, moto) and kept by
/// their `Name` tag: the same `/api/v1/alertmanagers` as Prometheus 2.42's.
#[test]
fn ec2_alertmanagers_api_matches_prometheus() {
    let moto = Moto::start();
    moto.run_instance("127.0.0.2", &[("Name", "am-1")]);
    moto.run_instance("127.0.0.3", &[("Name", "web-1")]);
    moto.run_instance("127.0.0.4", &[("Name", "am-2")]);
    let config = format!(
        "alerting:\n  alertmanagers:\n    - path_prefix: /alertmanager\n      ec2_sd_configs:\n        - region: {region}\n          endpoint: {endpoint}\n          access_key: test\n          secret_key: test\n          port: 9093\n          refresh_interval: 2s\n      relabel_configs:\n        - source_labels: [__meta_ec2_tag_Name]\n          regex: 'am-.+'\n          action: keep\n",
        region = moto::REGION,
        endpoint = moto.endpoint()
    );
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let ours = || sorted(am_urls(&promflow.get_ok("/api/v1/alertmanagers")));
    let theirs = || sorted(am_urls(&prometheus.get_ok("/api/v1/alertmanagers")));
    assert!(
        wait_until(WAIT, || !theirs().0.is_empty()),
        "Prometheus never listed the EC2 Alertmanagers: {:?}\n{}",
        theirs(),
        prometheus.log()
    );
    assert!(
        wait_until(WAIT, || !ours().0.is_empty()),
        "promflow never listed the EC2 Alertmanagers: {:?}\n{}",
        ours(),
        promflow.log()
    );
    assert_eq!(ours(), theirs());
}

/// Alertmanagers found through `dns_sd_configs` (A records on a real DNS server).
#[test]
fn alertmanagers_from_dns_a_records() {
    let webhook = Webhook::start();
    let am = Alertmanager::start(webhook.port);
    let dns = Dnsmasq::start("127.0.0.1 tasks.alertmanager\n", &[]);
    let exporter = Exporter::start(Reply::text("first_condition 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let alerting = format!(
        "  alertmanagers:\n    - dns_sd_configs:\n        - names: [tasks.alertmanager]\n          type: A\n          port: {}\n",
        am.port
    );
    let promflow = Promflow::start_with_args(
        &config_with_alerting(dir.path(), &exporter, &alerting),
        &[&format!("--discovery.dns.nameserver={}", dns.addr())],
    );
    assert!(
        wait_until(WAIT, || has_alert(&am, "FirstAlert")),
        "the DNS-discovered Alertmanager got no alert; promflow log:\n{}\ndnsmasq log:\n{}",
        promflow.log(),
        dns.log()
    );
    assert_eq!(
        am_urls(&promflow.get_ok("/api/v1/alertmanagers")),
        (vec![alerts_url(&am)], vec![])
    );
}

/// The same config (static with a duplicate, file_sd with a path prefix and https,
/// a target dropped by relabeling) gives the same `/api/v1/alertmanagers` in promflow
/// and Prometheus 2.42. Prometheus lists its Alertmanager sets in Go map order, so
/// both lists are compared sorted; nothing else is normalised.
#[test]
fn alertmanagers_api_matches_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let sd_file = dir.path().join("ams.json");
    std::fs::write(
        &sd_file,
        serde_json::json!([
            {"targets": [format!("127.0.0.1:{}", ports[1]), format!("127.0.0.1:{}", ports[2])], "labels": {"role": "main"}},
            {"targets": [format!("127.0.0.1:{}", ports[3])], "labels": {"role": "spare"}},
        ])
        .to_string(),
    )
    .unwrap();
    let config = format!(
        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{p0}', '127.0.0.1:{p0}']\n    - scheme: https\n      path_prefix: /am/\n      file_sd_configs:\n        - files: ['{file}']\n      relabel_configs:\n        - source_labels: [role]\n          regex: spare\n          action: drop\n",
        p0 = ports[0],
        file = sd_file.display()
    );
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let ours = || sorted(am_urls(&promflow.get_ok("/api/v1/alertmanagers")));
    let theirs = || sorted(am_urls(&prometheus.get_ok("/api/v1/alertmanagers")));
    // Prometheus applies discovery updates every 5s; promflow's file provider reads
    // at once. Wait for Prometheus to show both sets, then compare.
    assert!(
        wait_until(WAIT, || {
            let (active, dropped) = theirs();
            !dropped.is_empty() && active.len() > 1
        }),
        "Prometheus never listed the discovered Alertmanagers: {:?}",
        theirs()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !ours().1.is_empty()),
        "promflow never listed the discovered Alertmanagers: {:?}",
        ours()
    );
    assert_eq!(ours(), theirs());
}

/// Bad sd configs under `alerting.alertmanagers[]`: promtool 2.42 refuses each file
/// (it stops at the first problem); promflow reports every one with its line and
/// field path, in promtool's words.
#[test]
fn bad_alerting_sd_configs_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    // (entry under `alertmanagers:`, line, field path)
    let cases = [
        (
            "  - file_sd_configs:\n    - files: ['dir*/x.json']\n",
            4,
            "alerting.alertmanagers[0].file_sd_configs[0].files[0]",
        ),
        (
            "  - dns_sd_configs:\n    - names: []\n",
            4,
            "alerting.alertmanagers[0].dns_sd_configs[0].names",
        ),
        (
            "  - dns_sd_configs:\n    - names: [tasks.am]\n      type: A\n",
            4,
            "alerting.alertmanagers[0].dns_sd_configs[0]",
        ),
        (
            "  - static_configs: []\n  - ec2_sd_configs:\n    - region: eu-west-1\n      filters:\n      - name: tag:x\n",
            7,
            "alerting.alertmanagers[1].ec2_sd_configs[0].filters[0].values",
        ),
    ];
    let mut all = String::from("alerting:\n  alertmanagers:\n");
    let mut expected = Vec::new();
    for (index, (entry, line, path)) in cases.iter().enumerate() {
        let text = format!("alerting:\n  alertmanagers:\n{entry}");
        let file = dir.path().join(format!("case{index}.yml"));
        std::fs::write(&file, &text).unwrap();
        let (ok, out) = promtool(&["check", "config", file.to_str().unwrap()], dir.path());
        assert!(!ok, "promtool accepted case {index}:\n{text}");
        let message = out
            .lines()
            .find_map(|l| l.split_once(": parsing YAML file ")?.1.split_once(": "))
            .map(|(_, message)| message.trim().to_string())
            .unwrap_or_else(|| panic!("no promtool message for case {index}: {out}"));
        let file = file.display().to_string();
        let promflow = run_promflow(&["check", "config", &file]);
        let report = combined_output(&promflow);
        assert!(!promflow.status.success(), "{report}");
        let wanted = format!("{file}:{line}: {path}: {message}");
        assert!(
            report.contains(&wanted),
            "case {index}: wanted {wanted:?} in:\n{report}"
        );
        expected.push(message);
        all.push_str(entry);
    }
    // All at once: every problem is reported, none hides another.
    let file = dir.path().join("all.yml");
    std::fs::write(&file, &all).unwrap();
    let report = combined_output(&run_promflow(&["check", "config", file.to_str().unwrap()]));
    for message in &expected {
        assert!(
            report.contains(message.as_str()),
            "{message:?} in:\n{report}"
        );
    }
    assert_eq!(
        report.matches(": alerting.alertmanagers[").count(),
        cases.len(),
        "{report}"
    );
}
