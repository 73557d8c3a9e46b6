//! `/api/v1/rules` and `/api/v1/alerts` answer like Prometheus 2.42's.
//!
//! promflow and a real Prometheus scrape the same controllable exporter with the same
//! rule file (recording rules with labels, alerts pending / firing / inactive, one
//! with `keep_firing_for`, one whose evaluation fails at runtime, a query written
//! unformatted); once both have evaluated every rule with the same data, the two
//! answers must be equal after removing only what differs by nature: evaluation
//! times and durations, `activeAt` (each server's own clock), and promflow's
//! `origin` extension; and what Prometheus lists in Go map order (groups, the series
//! an error names) is sorted. So the keys, the number kinds (`"duration": 60`, not `60.0`),
//! the formatted `query` (Prometheus prints the parsed expression), health, errors,
//! states, labels, annotations and values are the oracle's. Also the `type` filter
//! and its error.

mod common;

use common::exporter::{Exporter, Reply};
use common::{wait_until, Prometheus, Promflow};
use serde_json::Value;
use std::time::Duration;

const RULES: &str = r#"groups:
  - name: recorded
    interval: 1s
    rules:
      - record: job:m:sum
        expr: sum   by(job)(m)
        labels:
          team: infra
      - record: m:doubled
        expr: m*2
  - name: alerts
    interval: 1s
    rules:
      - alert: Firing
        expr: m > 1
        labels:
          severity: page
        annotations:
          summary: "m on {{ $labels.instance }} is {{ $value }}"
      - alert: Pending
        expr: m > 1
        for: 1h
      - alert: Held
        expr: m > 1
        keep_firing_for: 5m
      - alert: Quiet
        expr: m > 100
      - alert: Failing
        expr: m + on() m
      - alert: Rewritten
        expr: up / on() group_left foo
"#;

fn config(rules: &std::path::Path, target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    )
}

/// Removes what differs by nature between two servers (see the module doc).
fn normalise(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in ["lastEvaluation", "evaluationTime", "activeAt", "origin"] {
                map.remove(key);
            }
            // The series an error lists come in Go map order from Prometheus.
            if let Some(Value::String(error)) = map.get_mut("lastError") {
                if let (Some(open), Some(close)) = (error.find(": ["), error.find("];")) {
                    error.replace_range(open + 2..close + 1, "[…]");
                }
            }
            // Prometheus lists groups in Go map order.
            if let Some(Value::Array(groups)) = map.get_mut("groups") {
                groups.sort_by_key(|g| (g["file"].to_string(), g["name"].to_string()));
            }
            map.values_mut().for_each(normalise);
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

fn api(peer: &common::Peer, path: &str) -> Value {
    let mut v: Value = serde_json::from_str(&peer.get_ok(path)).unwrap();
    normalise(&mut v);
    v
}

/// Every rule evaluated with the exporter's data (two `m` series, value 5).
fn settled(peer: &common::Peer) -> bool {
    let v: Value = serde_json::from_str(&peer.get_ok("/api/v1/rules")).unwrap();
    let rules: Vec<&Value> = v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let alerts = |name: &str| {
        rules
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["alerts"].as_array().map(Vec::len))
    };
    rules.len() == 8
        && rules.iter().all(|r| r["health"] != "unknown")
        && alerts("Firing") == Some(2)
        && alerts("Pending") == Some(2)
        && alerts("Held") == Some(2)
}

#[test]
fn rules_and_alerts_apis_equal_prometheus() {
    let exporter = Exporter::start(Reply::text(
        "m{instance_kind=\"a\"} 5\nm{instance_kind=\"b\"} 5\n",
    ));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let yaml = config(&rules, &exporter.addr().to_string());
    let prometheus = Prometheus::start(&yaml);
    let promflow = Promflow::start(&yaml);
    for (name, peer) in [("prometheus", &*prometheus), ("promflow", &*promflow)] {
        assert!(
            wait_until(Duration::from_secs(30), || settled(peer)),
            "{name} did not evaluate every rule: {}\n{}",
            peer.get_ok("/api/v1/rules"),
            peer.log()
        );
    }
    // Both have the same data and a few ticks; compare from a tick that follows.
    std::thread::sleep(Duration::from_millis(1500));
    for path in [
        "/api/v1/rules",
        "/api/v1/rules?type=alert",
        "/api/v1/rules?type=record",
        "/api/v1/alerts",
    ] {
        let mut want = api(&prometheus, path);
        let mut got = api(&promflow, path);
        // Alerts of one rule are listed in no particular order by Prometheus.
        sort_alerts(&mut want);
        sort_alerts(&mut got);
        assert_eq!(
            got,
            want,
            "{path}\npromflow:   {}\nprometheus: {}",
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
    }
    let bad = promflow.get("/api/v1/rules?type=foo");
    let oracle = prometheus.get("/api/v1/rules?type=foo");
    assert_eq!(bad.status, oracle.status);
    assert_eq!(
        serde_json::from_str::<Value>(&bad.body).unwrap(),
        serde_json::from_str::<Value>(&oracle.body).unwrap()
    );
}

fn sort_alerts(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(alerts)) = map.get_mut("alerts") {
                alerts.sort_by_key(|a| a["labels"].to_string());
            }
            map.values_mut().for_each(sort_alerts);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_alerts),
        _ => {}
    }
}

const LIMITED: &str = r#"groups:
  - name: limited
    interval: 1s
    limit: 1
    rules:
      - record: r
        expr: m
      - alert: Up
        expr: m > 0
"#;

/// The instant vector `expr` answers now, as sorted label sets.
fn present(peer: &common::Peer, expr: &str) -> Vec<String> {
    let path = format!("/api/v1/query?query={expr}");
    let v: Value = serde_json::from_str(&peer.get_ok(&path)).unwrap();
    let mut sets: Vec<String> = v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["metric"].to_string())
        .collect();
    sets.sort();
    sets
}

/// Every rule of the group in error (its limit exceeded).
fn failing(peer: &common::Peer) -> bool {
    let v: Value = serde_json::from_str(&peer.get_ok("/api/v1/rules")).unwrap();
    let health: Vec<&Value> = v["data"]["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| &r["health"])
        .collect();
    health.len() == 2 && health.iter().all(|h| *h == "err")
}

/// A failed evaluation (here the group's `limit` exceeded) writes nothing, as in
/// Prometheus 2.42: the series the rules wrote at the evaluation before stay (no stale
/// markers; queries find them until the lookback passes), where writing stale markers
/// would end them at once. The rules' errors, and the alerts the limit cleared, are the
/// oracle's.
#[test]
fn a_failed_evaluation_writes_nothing_like_prometheus() {
    let exporter = Exporter::start(Reply::text("m{k=\"a\"} 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, LIMITED).unwrap();
    let yaml = config(&rules, &exporter.addr().to_string());
    let prometheus = Prometheus::start(&yaml);
    let promflow = Promflow::start(&yaml);
    for (name, peer) in [("prometheus", &*prometheus), ("promflow", &*promflow)] {
        assert!(
            wait_until(Duration::from_secs(30), || {
                present(peer, "r").len() == 1 && present(peer, "ALERTS").len() == 1
            }),
            "{name} did not record r and fire Up: {}",
            peer.log()
        );
    }
    exporter.set(Reply::text("m{k=\"a\"} 1\nm{k=\"b\"} 1\n"));
    for (name, peer) in [("prometheus", &*prometheus), ("promflow", &*promflow)] {
        assert!(
            wait_until(Duration::from_secs(30), || failing(peer)),
            "{name} did not fail both rules: {}",
            peer.get_ok("/api/v1/rules")
        );
    }
    // A few failing evaluations more.
    std::thread::sleep(Duration::from_millis(2500));
    for expr in ["r", "ALERTS"] {
        let want = present(&prometheus, expr);
        assert_eq!(want.len(), 1, "the oracle keeps {expr}: {want:?}");
        assert_eq!(present(&promflow, expr), want, "{expr}");
    }
    for path in ["/api/v1/rules", "/api/v1/alerts"] {
        assert_eq!(api(&promflow, path), api(&prometheus, path), "{path}");
    }
}
