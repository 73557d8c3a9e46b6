//! https everywhere promflow sends HTTP: scrapes (`scheme: https` + `tls_config`),
//! Alertmanagers (`alerting.alertmanagers[].tls_config`), the built-in notifier's
//! receivers (`http_config.tls_config`) and `remote_write[].tls_config` (into a real
//! Prometheus serving its remote write receiver over mutual TLS).
//!
//! Real peers: node_exporter and Alertmanager 0.25 serving https only through the
//! exporter toolkit's `--web.config.file` (`tls_server_config`, optionally requiring a
//! client certificate), with certificates made by the `openssl` CLI
//! (`common::tls::TestPki`); Prometheus 2.42 scraping the same targets is the oracle
//! for target health and `lastError`.

mod common;

use common::alertmanager::Alertmanager;
use common::tls::{curl_https, https_get, TestPki};
use common::{wait_for, wait_until, NodeExporter, Peer, Prometheus, Promflow};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

/// `job → (health, lastError)` of every active target, once none is `unknown`.
fn target_states(server: &Peer) -> BTreeMap<String, (String, String)> {
    wait_for(SETTLE, || {
        let body = server.get_ok("/api/v1/targets");
        let json: Value = serde_json::from_str(&body).ok()?;
        let states: BTreeMap<String, (String, String)> = json["data"]["activeTargets"]
            .as_array()?
            .iter()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                    (
                        t["health"].as_str().unwrap_or_default().to_string(),
                        t["lastError"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect();
        (!states.is_empty() && states.values().all(|(health, _)| health != "unknown"))
            .then_some(states)
    })
    .unwrap_or_else(|| panic!("targets still unknown after {SETTLE:?}"))
}

/// A scrape config of `job` for `target` over https with `tls_config` (YAML lines
/// at the job's indentation + 2).
fn https_job(job: &str, target: &str, tls_config: &str) -> String {
    format!(
        "- job_name: {job}\n  scheme: https\n  tls_config:\n{tls_config}  static_configs:\n  - targets: ['{target}']\n"
    )
}

#[test]
fn https_scrapes_report_like_prometheus() {
    let pki = TestPki::generate();
    let exporter = NodeExporter::start_tls(&pki.web_config(false));
    let target = exporter.addr().to_string();
    let ca = pki.file("ca.crt");
    let mut config =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n".to_string();
    config += &https_job("ca_file", &target, &format!("    ca_file: {ca}\n"));
    config += &https_job(
        "wrong_ca",
        &target,
        &format!("    ca_file: {}\n", pki.file("other-ca.crt")),
    );
    // No ca_file: the system's roots, which do not know the test CA.
    config += &https_job("system_roots", &target, "    min_version: TLS12\n");
    config += &https_job("insecure", &target, "    insecure_skip_verify: true\n");
    config += &https_job(
        "server_name",
        &target,
        &format!("    ca_file: {ca}\n    server_name: localhost\n"),
    );
    config += &https_job(
        "wrong_name",
        &target,
        &format!("    ca_file: {ca}\n    server_name: wrong.example\n"),
    );
    config += &format!("- job_name: plain_http\n  static_configs:\n  - targets: ['{target}']\n");

    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let ours = target_states(&promflow);
    let oracle = target_states(&prometheus);
    assert_eq!(ours, oracle, "promflow vs Prometheus 2.42");

    let url = format!("https://{target}/metrics");
    let expected: BTreeMap<String, (String, String)> = [
        ("ca_file", "up", String::new()),
        ("insecure", "up", String::new()),
        ("server_name", "up", String::new()),
        (
            "wrong_ca",
            "down",
            format!("Get {url:?}: x509: certificate signed by unknown authority"),
        ),
        (
            "system_roots",
            "down",
            format!("Get {url:?}: x509: certificate signed by unknown authority"),
        ),
        (
            "wrong_name",
            "down",
            format!("Get {url:?}: x509: certificate is valid for localhost, not wrong.example"),
        ),
        (
            "plain_http",
            "down",
            "server returned HTTP status 400 Bad Request".to_string(),
        ),
    ]
    .into_iter()
    .map(|(job, health, error)| (job.to_string(), (health.to_string(), error)))
    .collect();
    assert_eq!(ours, expected);

    // The scraped samples are node_exporter's own.
    let body = promflow.get_ok(&common::http::with_query(
        "/api/v1/query",
        &[("query", "count(node_exporter_build_info{job=\"ca_file\"})")],
    ));
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["data"]["result"][0]["value"][1], "1", "{body}");
}

#[test]
fn mutual_tls_scrapes_present_the_client_certificate() {
    let pki = TestPki::generate();
    let exporter = NodeExporter::start_tls(&pki.web_config(true));
    let target = exporter.addr().to_string();
    let ca = pki.file("ca.crt");
    let mut config =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n".to_string();
    config += &https_job(
        "client_cert",
        &target,
        &format!(
            "    ca_file: {ca}\n    cert_file: {}\n    key_file: {}\n",
            pki.file("client.crt"),
            pki.file("client.key")
        ),
    );
    config += &https_job("no_client_cert", &target, &format!("    ca_file: {ca}\n"));

    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let ours = target_states(&promflow);
    assert_eq!(ours["client_cert"], ("up".to_string(), String::new()));
    let url = format!("https://{target}/metrics");
    assert_eq!(
        ours["no_client_cert"],
        (
            "down".to_string(),
            format!("Get {url:?}: remote error: tls: bad certificate")
        )
    );
    // Prometheus's TLS 1.3 client sometimes hits the closed connection before it reads
    // the server's alert ("write: broken pipe"); it reports the alert on most scrapes.
    let mut oracle = BTreeMap::new();
    assert!(
        wait_until(SETTLE, || {
            oracle = target_states(&prometheus);
            oracle == ours
        }),
        "promflow {ours:?} vs Prometheus 2.42 {oracle:?}"
    );
}

#[test]
fn a_reload_picks_up_a_rotated_ca_file() {
    let pki = TestPki::generate();
    let exporter = NodeExporter::start_tls(&pki.web_config(false));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::copy(pki.path("other-ca.crt"), &ca).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}",
        https_job(
            "rotated",
            &exporter.addr().to_string(),
            &format!("    ca_file: {}\n", ca.display())
        )
    );
    let promflow = Promflow::start_with_args(&config, &["--web.enable-lifecycle"]);
    assert_eq!(target_states(&promflow)["rotated"].0, "down");
    // Same config text, new file contents: the reload rebuilds the job's client.
    std::fs::copy(pki.path("ca.crt"), &ca).unwrap();
    assert_eq!(promflow.reload().status, 200);
    assert!(
        wait_until(SETTLE, || target_states(&promflow)["rotated"]
            == ("up".to_string(), String::new())),
        "still {:?}",
        target_states(&promflow)
    );
}

#[test]
fn unreadable_tls_files_are_located_config_errors() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "scrape_configs:\n- job_name: a\n  scheme: https\n  tls_config:\n    ca_file: {}\n    cert_file: {}\n    key_file: missing.key\n  static_configs:\n  - targets: ['127.0.0.1:1']\n",
        pki.file("ca.crt"),
        pki.file("client.crt"),
    );
    let path = dir.path().join("promflow.yml");
    std::fs::write(&path, &config).unwrap();
    let out = common::run_promflow(&["check", "config", &path.display().to_string()]);
    let text = common::combined_output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "promflow.yml:7: scrape_configs[0].tls_config.key_file: unable to load specified client key {0}/missing.key: open {0}/missing.key: no such file or directory",
            dir.path().display()
        )),
        "{text}"
    );
}

const ALERTMANAGER_CONFIG: &str = "route:\n  receiver: blackhole\nreceivers:\n- name: blackhole\n";

#[test]
fn alerts_reach_an_https_alertmanager() {
    let pki = TestPki::generate();
    let alertmanager = Alertmanager::start_tls(ALERTMANAGER_CONFIG, &pki.web_config(false));
    let ca = pki.path("ca.crt");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: tls\n  rules:\n  - alert: OverHttps\n    expr: vector(1)\n",
    )
    .unwrap();
    // The same Alertmanager twice: with the CA that signed it, and with another one.
    let config = format!(
        "global:\n  evaluation_interval: 1s\nrule_files: ['{rules}']\nalerting:\n  alertmanagers:\n  - scheme: https\n    tls_config:\n      ca_file: {ca}\n    static_configs:\n    - targets: ['{am}']\n  - scheme: https\n    tls_config:\n      ca_file: {other}\n    static_configs:\n    - targets: ['{am}']\n",
        rules = rules.display(),
        ca = ca.display(),
        other = pki.file("other-ca.crt"),
        am = alertmanager.addr()
    );
    let promflow = Promflow::start(&config);
    let received = wait_for(SETTLE, || {
        let response = https_get(alertmanager.addr(), "/api/v2/alerts", &ca, None)?;
        let alerts: Value = serde_json::from_str(&response.body).ok()?;
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "OverHttps")
            .cloned()
    });
    let alert = received.unwrap_or_else(|| {
        panic!(
            "the alert did not reach the https Alertmanager; promflow log:\n{}",
            promflow.log()
        )
    });
    assert_eq!(alert["status"]["state"], "active", "{alert}");

    // The one with the wrong CA refused the handshake, counted as an error.
    assert!(
        wait_until(SETTLE, || {
            common::exposition::parse(&promflow.get_ok("/metrics"))
                .sum("prometheus_notifications_errors_total")
                .is_some_and(|errors| errors >= 1.0)
        }),
        "no notification error with the wrong CA; log:\n{}",
        promflow.log()
    );
}

#[test]
fn builtin_notifier_receivers_use_their_tls_config() {
    let pki = TestPki::generate();
    // node_exporter answers any POST to /metrics with 200, and counts it.
    let exporter = NodeExporter::start_tls(&pki.web_config(false));
    let ca = pki.path("ca.crt");
    let handled = || -> f64 {
        let response = https_get(exporter.addr(), "/metrics", &ca, None).expect("https probe");
        common::exposition::parse(&response.body)
            .find("promhttp_metric_handler_requests_total", &[("code", "200")])
            .expect("handler counter")
            .value
    };
    let dir = tempfile::tempdir().unwrap();
    let notifier = dir.path().join("am.yml");
    std::fs::write(
        &notifier,
        format!(
            "route:\n  receiver: good\n  group_wait: 0s\n  routes:\n  - matchers: ['to=\"bad\"']\n    receiver: bad\nreceivers:\n- name: good\n  slack_configs:\n  - api_url: https://{addr}/metrics\n    http_config:\n      tls_config:\n        ca_file: {ca}\n- name: bad\n  webhook_configs:\n  - url: https://{addr}/metrics\n    http_config:\n      tls_config:\n        ca_file: {other}\n",
            addr = exporter.addr(),
            ca = ca.display(),
            other = pki.file("other-ca.crt"),
        ),
    )
    .unwrap();
    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[&format!(
            "--alertmanager.config.file={}",
            notifier.display()
        )],
    );
    let before = handled();
    let post = |to: &str| {
        let alerts = json!([{"labels": {"alertname": "Tls", "to": to}}]);
        let r = common::http::post(
            &promflow.url("/api/v2/alerts"),
            Some("application/json"),
            alerts.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    };
    post("good");
    post("bad");
    // Every probe is one more request; anything beyond is the Slack POST.
    let mut probes = 1.0;
    let delivered = wait_until(SETTLE, || {
        probes += 1.0;
        handled() - before - (probes - 1.0) >= 1.0
    });
    let metric = |series: &str| {
        let body = promflow.get_ok("/metrics");
        body.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        delivered,
        "the https Slack POST never reached node_exporter"
    );
    assert!(
        wait_until(SETTLE, || metric(
            "alertmanager_notification_requests_failed_total{integration=\"webhook\"}"
        ) >= 1.0),
        "the webhook with the wrong CA did not fail"
    );
    assert!(
        promflow
            .log()
            .contains("x509: certificate signed by unknown authority"),
        "the failure does not say why:\n{}",
        promflow.log()
    );
    assert_eq!(
        metric("alertmanager_notification_requests_failed_total{integration=\"slack\"}"),
        0.0
    );
}

#[test]
fn remote_write_presents_its_client_certificate() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, pki.web_config(true)).unwrap();
    let prometheus = Prometheus::start_with_args(
        "",
        &[
            "--web.enable-remote-write-receiver",
            &format!("--web.config.file={}", web.display()),
        ],
    );
    let exporter =
        common::exporter::Exporter::start(common::exporter::Reply::text("over_mtls 5\n"));
    let remote = |name: &str, client_cert: bool| {
        let mut tls = format!("    tls_config:\n      ca_file: {}\n", pki.file("ca.crt"));
        if client_cert {
            tls += &format!(
                "      cert_file: {}\n      key_file: {}\n",
                pki.file("client.crt"),
                pki.file("client.key")
            );
        }
        format!(
            "  - url: https://localhost:{}/api/v1/write\n    name: {name}\n{tls}    queue_config:\n      batch_send_deadline: 200ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n",
            prometheus.addr().port()
        )
    };
    let promflow = Promflow::start(&format!(
        "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\nremote_write:\n{}{}",
        exporter.addr(),
        remote("with_cert", true),
        remote("without_cert", false),
    ));
    let client = (pki.path("client.crt"), pki.path("client.key"));
    let query = common::http::with_query("/api/v1/query", &[("query", "over_mtls")]);
    assert!(
        wait_until(SETTLE, || curl_https(
            prometheus.addr(),
            &query,
            &pki.path("ca.crt"),
            Some((&client.0, &client.1))
        )
        .is_ok_and(|(_, body)| body.contains("\"5\""))),
        "the samples did not reach Prometheus over mTLS"
    );
    // The queue without a client certificate is refused at the handshake and retries.
    assert!(wait_until(SETTLE, || {
        promflow.get_ok("/metrics").lines().any(|l| {
            l.starts_with("prometheus_remote_storage_samples_retried_total")
                && l.contains("without_cert")
                && !l.ends_with(" 0")
        })
    }));
}
