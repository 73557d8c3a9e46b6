//! Target addresses are checked as Prometheus 2.42 checks them: at load only for jobs
//! without `relabel_configs`, and after relabeling when targets are created, where a
//! target that cannot be created is left out (neither active nor dropped) and logged
//! as "Creating target failed" with Prometheus's words.
//!
//! The blackbox exporter's multi-target pattern (its README: URL targets moved to
//! `__param_target`, `instance` from the target, `__address__` replaced by the
//! exporter's) runs end to end against a real `prometheus-blackbox-exporter` probing a
//! URL on loopback, beside a real Prometheus on the same config. Peers: Prometheus
//! 2.42 + promtool (`prometheus`), blackbox_exporter 0.23
//! (`prometheus-blackbox-exporter`), both installed by `.ci/test`.

mod common;

use common::exporter::{Exporter, Reply};
use common::{
    combined_output, promtool, run_promflow, wait_until, BlackboxExporter, Peer, Prometheus,
    Promflow,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn blackbox_config(url: &str, blackbox: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: blackbox\n  metrics_path: /probe\n  params:\n    module: [http_2xx]\n  \
         static_configs:\n  - targets:\n    - {url}\n  relabel_configs:\n  \
         - source_labels: [__address__]\n    target_label: __param_target\n  \
         - source_labels: [__param_target]\n    target_label: instance\n  \
         - target_label: __address__\n    replacement: {blackbox}\n"
    )
}

/// (job, labels, scrapeUrl) of each active target, and the dropped targets.
fn targets(peer: &Peer) -> (BTreeSet<(String, String, String)>, Value) {
    let v: Value = serde_json::from_str(&peer.get_ok("/api/v1/targets")).unwrap();
    let active = v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["scrapePool"].as_str().unwrap().to_string(),
                t["labels"].to_string(),
                t["scrapeUrl"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (active, v["data"]["droppedTargets"].clone())
}

fn probe_success(peer: &Peer, url: &str) -> Option<String> {
    let q = format!(r#"probe_success{{job="blackbox",instance="{url}"}}"#);
    let body = peer.get_ok(&common::http::with_query("/api/v1/query", &[("query", &q)]));
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_string)
}

#[test]
fn blackbox_multi_target_pattern_end_to_end() {
    let site = Exporter::start(Reply::text("ok\n"));
    let blackbox =
        BlackboxExporter::start("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n");
    let url = format!("http://{}/-/healthy", site.addr());
    let config = blackbox_config(&url, &blackbox.addr().to_string());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, &config).unwrap();
    let (ok, out) = promtool(&["check", "config", file.to_str().unwrap()], dir.path());
    assert!(ok, "promtool refuses the blackbox pattern: {out}");
    let out = run_promflow(&["check", "config", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", combined_output(&out));

    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    for peer in [&*promflow, &*prometheus] {
        assert!(
            wait_until(WAIT, || probe_success(peer, &url).as_deref() == Some("1")),
            "probe_success{{instance={url:?}}} is not 1: {}",
            peer.get_ok("/api/v1/targets")
        );
    }
    assert_eq!(targets(&promflow), targets(&prometheus));
    // The probe reached the site through the exporter.
    assert!(site.served().iter().any(|s| s.path == "/-/healthy"));
}

/// The `err` values of "Creating target failed" lines in a logfmt log.
fn creating_target_failures(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains("msg=\"Creating target failed\""))
        .filter_map(|l| {
            let rest = &l[l.find(" err=\"")? + 6..];
            // Up to the closing quote that is not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            Some(rest[..end?].to_string())
        })
        .collect()
}

#[test]
fn addresses_are_checked_after_relabeling_like_prometheus() {
    let site = Exporter::start(Reply::text("up_ok 1\n"));
    let site_addr = site.addr().to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: urls-kept\n  static_configs:\n  - targets: ['http://127.0.0.1:1/x', '{site_addr}']\n  \
         relabel_configs:\n  - source_labels: [__address__]\n    target_label: copied\n\
         - job_name: no-address\n  static_configs:\n  - targets: ['{site_addr}']\n  \
         relabel_configs:\n  - target_label: __address__\n    replacement: ''\n\
         - job_name: bad-interval\n  static_configs:\n  - targets: ['{site_addr}']\n  \
         relabel_configs:\n  - target_label: __scrape_interval__\n    replacement: xx\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, &config).unwrap();
    // promtool creates the static targets too and names the first that fails.
    let (ok, theirs) = promtool(&["check", "config", file.to_str().unwrap()], dir.path());
    assert!(!ok, "{theirs}");
    let failed = theirs
        .lines()
        .find_map(|l| l.trim().strip_prefix("FAILED: "))
        .unwrap_or_else(|| panic!("no FAILED line: {theirs}"));
    let out = run_promflow(&["check", "config", file.to_str().unwrap()]);
    let ours = combined_output(&out);
    assert!(!out.status.success(), "{ours}");
    assert!(
        ours.contains(failed),
        "promtool: {failed}\npromflow: {ours}"
    );

    // The servers start, scrape what can be scraped and log the rest.
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    for peer in [&*promflow, &*prometheus] {
        assert!(
            wait_until(WAIT, || creating_target_failures(&peer.log()).len() == 3),
            "three failures logged:\n{}",
            peer.log()
        );
    }
    assert_eq!(
        creating_target_failures(&promflow.log()),
        creating_target_failures(&prometheus.log())
    );
    let (active, dropped) = targets(&promflow);
    assert_eq!((active.clone(), dropped.clone()), targets(&prometheus));
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(dropped, Value::Array(vec![]));
}
