//! The web UI (`src/api/ui.rs`, built from `web/ui/`): served at Prometheus's paths
//! under the route prefix, and working in a real browser.
//!
//! Real peers: Prometheus 2.42 (Debian `prometheus`) is the oracle for where `/` and
//! the route prefix redirect, with the same `--web.external-url`;
//! Debian's `chromium`, driven headless by `playwright-core` (`web/ui/tests/browser.mjs`,
//! installed by `npm ci` in `web/ui`), loads every page against a promflow scraping a
//! synthetic target with a firing alert, runs queries, opens the alert's `generatorURL`
//! as Alertmanager 0.25 (`prometheus-alertmanager`) received it, and writes a screenshot of each
//! page to `<target>/tmp/web_ui/`; with the targets, alerts and rules pages open
//! (`web/ui/tests/live.mjs`) it takes the target down and sees each page follow the
//! stream. The alert composer's `POST /api/v1/rules/simulate` is checked against
//! `promtool test rules` 2.42 on the same samples, and its page in chromium
//! (`web/ui/tests/composer.mjs`). `.ci/test` installs chromium and node.

mod common;

use common::alertmanager::{Alertmanager, Webhook};
use common::exporter::{Exporter, Reply};
use common::http;
use common::{
    combined_output, repo_root, require_peer, run_command, wait_for, wait_until, Prometheus,
    Promflow,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PREFIX_ARGS: &[&str] = &["--web.external-url=http://127.0.0.1:9090/prom/"];

const RULES: &str = r#"groups:
  - name: demo
    interval: 1s
    rules:
      - record: job:demo_requests:sum
        expr: sum by (job) (demo_requests_total)
      - alert: DemoAlert
        expr: demo_requests_total > 0
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.path }} has requests"
          runbook_url: http://runbooks.invalid/demo
"#;

const EXPOSITION: &str = "# TYPE demo_requests_total counter\n\
demo_requests_total{path=\"/a\"} 5\ndemo_requests_total{path=\"/b\"} 7\n\
# TYPE demo_temperature_celsius gauge\ndemo_temperature_celsius 21.5\n";

fn start(exporter: &Exporter, rules: &Path, alertmanager: &Alertmanager) -> Promflow {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\n\
         scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{}', 'dropped.invalid:9']\n\
         \x20   relabel_configs:\n      - source_labels: [__address__]\n        regex: '127\\.0\\.0\\.1:.*'\n        action: keep\n",
        rules.display(),
        alertmanager.port,
        exporter.addr()
    );
    Promflow::start_with_args(&config, PREFIX_ARGS)
}

/// Where `/`, `/prom/` and each page path lead, and as what, on promflow and on
/// Prometheus with the same external URL.
#[test]
fn pages_and_redirects_like_prometheus() {
    let promflow = Promflow::start_with_args("scrape_configs: []\n", PREFIX_ARGS);
    let prometheus = Prometheus::start_with_args("scrape_configs: []\n", PREFIX_ARGS);
    // Debian builds Prometheus without its React UI: the home page is the classic
    // UI's `classic/graph` there (upstream 2.42: `graph`), and the React pages' paths
    // answer 404. So Prometheus is the oracle for the redirects, with `classic/` taken
    // out, and the page paths answer the app on promflow.
    for path in ["/", "/prom", "/prom/"] {
        let ours = http::get(&promflow.url(path)).unwrap();
        let theirs = http::get(&prometheus.url(path)).unwrap();
        assert_eq!(ours.status, theirs.status, "{path}");
        let theirs_location = theirs
            .header("location")
            .map(|l| l.replace("/classic/", "/"));
        assert_eq!(
            ours.header("location"),
            theirs_location.as_deref(),
            "{path}"
        );
    }
    for page in promflow::api::ui::PAGES {
        let ours = http::get(&promflow.url(&format!("/prom{page}"))).unwrap();
        assert_eq!(ours.status, 200, "{page}");
        assert_eq!(
            ours.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{page}"
        );
        assert!(ours.body.contains("<script type=\"module\""), "{page}");
    }
    let graph = http::get(&promflow.url("/prom/query?g0.expr=up&g0.tab=graph")).unwrap();
    assert_eq!(graph.status, 200);
    assert_eq!(graph.header("cache-control"), Some("no-cache"));
    let html = graph.body.clone();

    // The assets index.html names, relative to the page, with their types; cached for
    // good (their names carry a hash), and 304 for a known ETag.
    let mut assets = 0;
    for name in html.split('"').filter(|s| s.starts_with("./assets/")) {
        let url = promflow.url(&format!("/prom/{}", &name[2..]));
        let asset = http::get(&url).unwrap();
        assert_eq!(asset.status, 200, "{name}");
        let expected = if name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(asset.header("content-type"), Some(expected), "{name}");
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        let etag = asset.header("etag").expect("an ETag").to_string();
        let again = http::send("GET", &url, &[("If-None-Match", &etag)], None, b"").unwrap();
        assert_eq!(again.status, 304, "{name}");
        // Compressed for a client that accepts gzip (the harness decodes it).
        let gzip = http::send("GET", &url, &[("Accept-Encoding", "gzip")], None, b"").unwrap();
        assert_eq!(gzip.header("content-encoding"), Some("gzip"), "{name}");
        assert_eq!(gzip.header("vary"), Some("Accept-Encoding"), "{name}");
        assert_eq!(gzip.body, asset.body, "{name}");
        assert_ne!(gzip.header("etag"), Some(etag.as_str()), "{name}");
        assets += 1;
    }
    assert!(assets >= 2, "index.html names its script and style: {html}");
    let missing = http::get(&promflow.url("/prom/assets/nope.js")).unwrap();
    assert_eq!(missing.status, 404);
}

/// Runs `npm ci` in web/ui when playwright-core is not installed there yet.
fn browser_driver() -> PathBuf {
    let ui = repo_root().join("web/ui");
    require_peer("/usr/bin/node", "nodejs");
    require_peer("/usr/bin/chromium", "chromium");
    if !ui.join("node_modules/playwright-core").exists() {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(&ui);
        let out = run_command(npm, None, Duration::from_secs(300));
        assert!(out.status.success(), "npm ci: {}", combined_output(&out));
    }
    ui.join("tests/browser.mjs")
}

#[test]
fn every_page_works_in_chromium() {
    let script = browser_driver();
    let exporter = Exporter::start(Reply::text(EXPOSITION));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let webhook = Webhook::start();
    let alertmanager = Alertmanager::start(webhook.port);
    let promflow = start(&exporter, &rules, &alertmanager);
    // Scraped, recorded and firing before the browser looks.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let alerts = promflow.get_ok("/prom/api/v1/alerts");
            let recorded = promflow.get_ok("/prom/api/v1/query?query=job:demo_requests:sum");
            alerts.contains("\"firing\"") && recorded.contains("\"demo\"")
        }),
        "no firing alert: {}",
        promflow.log()
    );
    let artifacts = artifact_dir("web_ui");
    let base = promflow.url("/prom");
    // The generatorURL promflow sent with the alert (2.x's link: tab 1 is the table),
    // as Alertmanager holds it; its host is the external URL's, so the path and query
    // are opened on this promflow.
    let generator = wait_for(Duration::from_secs(30), || {
        let alerts = alertmanager.alerts();
        let url = alerts.as_array()?.first()?["generatorURL"]
            .as_str()?
            .to_string();
        Some(url)
    })
    .unwrap_or_else(|| panic!("no alert at Alertmanager: {}", alertmanager.log()));
    let path = generator
        .strip_prefix("http://127.0.0.1:9090")
        .unwrap_or_else(|| panic!("generatorURL under the external URL: {generator}"));
    assert!(path.starts_with("/prom/graph?g0.expr="), "{generator}");
    let generator = promflow.url(path);
    let mut node = Command::new("node");
    node.arg(&script)
        .args([&base, artifacts.to_str().unwrap(), &generator]);
    let out = run_command(node, None, Duration::from_secs(240));
    let output = combined_output(&out);
    assert!(out.status.success(), "browser test failed:\n{output}");
    assert!(output.contains(" passed, 0 failed"), "{output}");
    for page in promflow::api::ui::PAGES
        .iter()
        .filter(|p| **p != "/graph" && **p != "/query")
    {
        let png = artifacts.join(format!("{}.png", &page[1..]));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{}: {size} bytes", png.display());
    }
}

/// The wall-display dashboard of the live test: a stat with thresholds and a graph,
/// re-queried on the stream's changes (the hour-long `refresh` never comes in the test).
const WALL: &str = r#"title: Demo wall
refresh: 1h
columns: 2
panels:
  - title: Requests
    expr: sum(demo_requests_total)
    unit: req
    thresholds: [{value: 0, color: '#3fb950'}, {value: 10, color: '#d29922'}]
  - title: Requests by path
    type: graph
    expr: demo_requests_total
    range: 5m
"#;

/// The targets, alerts and rules pages and a wall-display dashboard follow the stream:
/// the target goes down and its alert fires while the pages are open, and they show it
/// without a reload. The dashboards API lists the directory's files.
#[test]
fn pages_update_live_in_chromium() {
    let ui = browser_driver();
    let script = ui.with_file_name("live.mjs");
    let exporter = Exporter::start(Reply::text(EXPOSITION));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: live\n    interval: 1s\n    rules:\n      - alert: TargetDown\n\
         \x20       expr: up == 0\n        for: 2s\n",
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    );
    let dashboards = dir.path().join("dashboards");
    std::fs::create_dir(&dashboards).unwrap();
    std::fs::write(dashboards.join("wall.yml"), WALL).unwrap();
    std::fs::write(
        dashboards.join("broken.yaml"),
        "panels:\n  - title: x\n    expr: sum(\n",
    )
    .unwrap();
    let dashboards_flag = format!("--web.dashboards-dir={}", dashboards.display());
    // The group is evaluated on arrival: the rules page says so.
    let promflow = Promflow::start_with_args(
        &config,
        &[
            PREFIX_ARGS[0],
            &dashboards_flag,
            "--rules.on-arrival-groups=live",
        ],
    );
    let list = promflow.get_ok("/prom/api/v1/dashboards");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["data"][1]["name"], "wall", "{list}");
    assert_eq!(list["data"][1]["title"], "Demo wall", "{list}");
    assert_eq!(list["data"][0]["name"], "broken", "{list}");
    assert!(
        list["data"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("panel 1")),
        "{list}"
    );
    assert_eq!(promflow.get("/prom/api/v1/dashboards/broken").status, 400);
    assert_eq!(promflow.get("/prom/api/v1/dashboards/nope").status, 404);
    assert!(
        wait_until(Duration::from_secs(30), || promflow
            .get_ok("/prom/api/v1/query?query=up")
            .contains("\"1\"")),
        "never scraped: {}",
        promflow.log()
    );
    let artifacts = artifact_dir("web_ui_live");
    let ready = dir.path().join("ready");
    let browser = {
        let (base, artifacts, ready) = (promflow.url("/prom"), artifacts.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut node = Command::new("node");
            node.arg(&script)
                .args([&base, artifacts.to_str().unwrap(), ready.to_str().unwrap()]);
            run_command(node, None, Duration::from_secs(240))
        })
    };
    // The pages are open and show the target up: take it down.
    let opened = wait_until(Duration::from_secs(120), || {
        ready.exists() || browser.is_finished()
    });
    if opened && ready.exists() {
        exporter.set(Reply {
            status: 503,
            ..Reply::text("down for the test\n")
        });
    }
    let out = browser.join().unwrap();
    let output = combined_output(&out);
    assert!(
        out.status.success(),
        "browser test failed:\n{output}\n{}",
        promflow.log()
    );
    assert!(output.contains("7 passed, 0 failed"), "{output}");
}

/// The alert composer's rule: errors above 5 for 3m, kept firing 2m after they stop.
const COMPOSED_RULE: &str = r#"{"alert": "HighErrors", "expr": "demo_errors > 5", "for": "3m",
  "keep_firing_for": "2m", "labels": {"severity": "page"},
  "annotations": {"summary": "{{ $labels.instance }} has {{ $value }} errors"}}"#;

/// `demo_errors{instance}` each minute from minute 0.
const COMPOSED_DATA: &[(&str, &[f64])] = &[
    (
        "a",
        &[
            0., 0., 10., 10., 10., 10., 10., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.,
            0., 0.,
        ],
    ),
    (
        "b",
        &[
            0., 0., 0., 10., 10., 0., 0., 0., 0., 0., 10., 10., 10., 10., 10., 10., 10., 0., 0.,
            0., 0., 0.,
        ],
    ),
];

/// The rule's alerts evaluated each minute from 0 to 20m: (instance, state, first and
/// last minute of the run, activeAt minute). Worked out by hand from Prometheus's
/// `AlertingRule.Eval` and confirmed by promtool 2.42 below: `a` is pending at 2m,
/// fires at 5m (3m later), leaves the result at 7m and is kept firing until 9m; `b` is
/// pending at 3m and dropped at 5m (never fired), pending again at 10m, firing 13m to
/// 18m (in the result until 16m, kept two more minutes).
const COMPOSED_RUNS: &[(&str, &str, i64, i64, i64)] = &[
    ("a", "pending", 2, 4, 2),
    ("a", "firing", 5, 8, 2),
    ("b", "pending", 3, 4, 3),
    ("b", "pending", 10, 12, 10),
    ("b", "firing", 13, 18, 10),
];

/// `promtool test rules` input: the same data and rule, and at every minute the
/// `ALERTS` and `ALERTS_FOR_STATE` series [`COMPOSED_RUNS`] says Prometheus writes,
/// plus the firing alerts' annotations.
fn composed_promtool_test(rule_file: &Path) -> String {
    let rule: serde_json::Value = serde_json::from_str(COMPOSED_RULE).unwrap();
    let rules = serde_json::json!({"groups": [{"name": "composer", "rules": [rule]}]});
    std::fs::write(rule_file, serde_json::to_string(&rules).unwrap()).unwrap();
    let mut series = String::new();
    for (instance, values) in COMPOSED_DATA {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        series.push_str(&format!(
            "      - series: 'demo_errors{{instance=\"{instance}\"}}'\n        values: '{}'\n",
            values.join(" ")
        ));
    }
    let mut exprs = String::new();
    for minute in 0..=20 {
        let active: Vec<_> = COMPOSED_RUNS
            .iter()
            .filter(|(_, _, from, to, _)| (*from..=*to).contains(&minute))
            .collect();
        for name in ["ALERTS", "ALERTS_FOR_STATE"] {
            exprs.push_str(&format!(
                "      - expr: {name}\n        eval_time: {minute}m\n        exp_samples:{}\n",
                if active.is_empty() { " []" } else { "" }
            ));
            for (instance, state, _, _, active_at) in &active {
                let (labels, value) = if name == "ALERTS" {
                    (format!("alertname=\"HighErrors\",alertstate=\"{state}\",instance=\"{instance}\",severity=\"page\""), 1)
                } else {
                    (
                        format!(
                            "alertname=\"HighErrors\",instance=\"{instance}\",severity=\"page\""
                        ),
                        active_at * 60,
                    )
                };
                exprs.push_str(&format!(
                    "          - labels: '{name}{{{labels}}}'\n            value: {value}\n"
                ));
            }
        }
    }
    let firing = |minute: i64, instance: &str| {
        format!(
            "      - eval_time: {minute}m\n        alertname: HighErrors\n        exp_alerts:\n\
             \x20         - exp_labels: {{severity: page, instance: {instance}}}\n\
             \x20           exp_annotations: {{summary: \"{instance} has 10 errors\"}}\n"
        )
    };
    format!(
        "rule_files: ['{}']\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}\
         \x20   alert_rule_test:\n{}{}      - eval_time: 20m\n        alertname: HighErrors\n        exp_alerts: []\n\
         \x20   promql_expr_test:\n{exprs}",
        rule_file.display(),
        firing(6, "a"),
        firing(14, "b"),
    )
}

/// `POST /api/v1/rules/simulate` replays the rule over stored samples and answers
/// the runs Prometheus's rule manager goes through on the same data (promtool 2.42's
/// rule unit test is the oracle), with the annotations its templates produce.
#[test]
fn simulated_alert_matches_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let test_file = dir.path().join("test.yml");
    std::fs::write(
        &test_file,
        composed_promtool_test(&dir.path().join("rules.json")),
    )
    .unwrap();
    let (ok, output) = common::promtool(&["test", "rules", "test.yml"], dir.path());
    assert!(
        ok,
        "promtool disagrees with the expected runs:\n{output}\n{}",
        std::fs::read_to_string(&test_file).unwrap()
    );

    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            "--web.enable-remote-write-receiver",
            "--web.enable-rules-api",
        ],
    );
    // The same samples, minute 0 being 25 minutes ago (on a whole minute).
    let base = (common::now_ms() - 25 * 60_000) / 60_000 * 60_000;
    let series: Vec<common::remote_write::Series> = COMPOSED_DATA
        .iter()
        .map(|(instance, values)| {
            (
                vec![
                    ("__name__".to_string(), "demo_errors".to_string()),
                    ("instance".to_string(), instance.to_string()),
                ],
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (base + i as i64 * 60_000, *v))
                    .collect(),
            )
        })
        .collect();
    let written =
        common::remote_write::send(&promflow.url(""), &common::remote_write::body(&series));
    assert_eq!(written.status, 204, "{}", written.body);

    let request = format!(
        r#"{{"rule": {COMPOSED_RULE}, "start": {}, "end": {}, "interval": "1m"}}"#,
        base / 1000,
        (base + 20 * 60_000) / 1000
    );
    let answer = simulate(&promflow, &request);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let data = &data["data"];
    assert_eq!(data["evaluations"], 21, "{data}");
    let minute = |v: &serde_json::Value| (v.as_f64().unwrap() as i64 * 1000 - base) / 60_000;
    let mut runs = Vec::new();
    for alert in data["alerts"].as_array().unwrap() {
        let instance = alert["labels"]["instance"].as_str().unwrap().to_string();
        assert_eq!(alert["labels"]["alertname"], "HighErrors");
        assert_eq!(alert["labels"]["severity"], "page");
        assert_eq!(
            alert["annotations"]["summary"],
            format!("{instance} has 10 errors")
        );
        for run in alert["intervals"].as_array().unwrap() {
            runs.push((
                instance.clone(),
                run["state"].as_str().unwrap().to_string(),
                minute(&run["start"]),
                minute(&run["end"]),
                minute(&run["activeAt"]),
            ));
        }
    }
    let expected: Vec<_> = COMPOSED_RUNS
        .iter()
        .map(|(i, s, from, to, at)| (i.to_string(), s.to_string(), *from, *to, *at))
        .collect();
    assert_eq!(runs, expected, "{data}");
    // Nothing was written: the simulation's ALERTS are not stored.
    let stored = promflow.get_ok("/api/v1/query?query=count(ALERTS)%20or%20vector(0)");
    assert!(stored.contains("\"0\""), "{stored}");

    // A recording rule or a bad expression is refused with the rules API's words.
    for (rule, problem) in [
        (r#"{"record": "x", "expr": "up"}"#, "alerting rule"),
        (r#"{"alert": "X", "expr": "sum("}"#, "parse error"),
    ] {
        let body = format!(r#"{{"rule": {rule}, "start": 0, "end": 60}}"#);
        let refused = simulate(&promflow, &body);
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.body.contains(problem), "{}", refused.body);
    }

    // The composer page over the same data in chromium: the busy periods' runs, the
    // graph, the YAML, and the rule registered through the rules API.
    let end = chrono::DateTime::from_timestamp_millis(base + 20 * 60_000).unwrap();
    let rule: serde_json::Value = serde_json::from_str(COMPOSED_RULE).unwrap();
    let summary = format!(
        "summary: {}",
        rule["annotations"]["summary"].as_str().unwrap()
    );
    let end = end.format("%Y-%m-%d %H:%M:%S").to_string();
    let search = serde_urlencoded::to_string([
        ("alert", "HighErrors"),
        ("expr", rule["expr"].as_str().unwrap()),
        ("for", "3m"),
        ("keep_firing_for", "2m"),
        ("labels", "severity: page"),
        ("annotations", &summary),
        ("range", "20m"),
        ("end", &end),
        ("interval", "1m"),
    ])
    .unwrap();
    let script = browser_driver().with_file_name("composer.mjs");
    let artifacts = artifact_dir("web_ui_composer");
    let mut node = Command::new("node");
    node.arg(&script)
        .args([&promflow.url(""), artifacts.to_str().unwrap(), &search]);
    let out = run_command(node, None, Duration::from_secs(240));
    let output = combined_output(&out);
    assert!(out.status.success(), "browser test failed:\n{output}");
    assert!(output.contains("4 passed, 0 failed"), "{output}");
}

/// `POST /api/v1/rules/simulate` with `body`.
fn simulate(promflow: &Promflow, body: &str) -> common::http::HttpResponse {
    http::post(
        &promflow.url("/api/v1/rules/simulate"),
        Some("application/json"),
        body.as_bytes(),
    )
    .unwrap()
}

/// An empty `<target>/tmp/<name>/` for a browser run's screenshots.
fn artifact_dir(name: &str) -> PathBuf {
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    artifacts
}
