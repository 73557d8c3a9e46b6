//! promflow's own `/metrics` passes `promtool check metrics` (Prometheus 2.42, from
//! the `prometheus` package) with no output at all — every metric has `# HELP` and
//! `# TYPE` and follows the naming rules — with every part that exports metrics
//! active: scraping, rules (recording and alerting), the notifier to Alertmanagers,
//! the built-in notifier (`--alertmanager.config.file`) and remote write.

mod common;

use common::exporter::{Exporter, Reply};
use common::{promtool_check_metrics, wait_until, Promflow};
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
