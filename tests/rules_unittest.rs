//! The alert state machine, templates and recording rules against `promtool test
//! rules` (Prometheus 2.42): on probe test files (empty expectations, so promtool
//! prints what it computed) promflow's runner computes the same firing alerts (labels
//! and expanded annotations, including the template functions at their edges), the
//! same `ALERTS`/`ALERTS_FOR_STATE` series and the same recording-rule output at
//! every checked time; on the shipped `queries/tests/` file both pass.
//!
//! Real peers: promtool 2.42 (`prometheus`), python3 for the shared output parser
//! `../shared/oracle-samples/promtool/promtool_got.py`.

mod common;

use common::{promtool, repo_root, run_command, COMMAND_TIMEOUT};
use dataflows::promql::testscript::parse_duration_ms;
use promflow::rules::unittest::{run_file, Outcome};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

type LabelMap = BTreeMap<String, String>;

fn map(v: &Value) -> LabelMap {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// What promtool computed, keyed like promflow's outcomes; `None` when the shared
/// parser of promtool's output is absent (skipped).
fn promtool_got(file: &str) -> Option<Vec<Value>> {
    let parser = dataflows::shared_data::locate(
        "oracle-samples/promtool/promtool_got.py",
        &format!("{file} compared with promtool"),
    )?;
    let (_, out) = promtool(
        &["test", "rules", file],
        &repo_root().join("tests/rules_unit"),
    );
    let mut cmd = Command::new("python3");
    cmd.arg(parser);
    let parsed = run_command(cmd, Some(out.as_bytes()), COMMAND_TIMEOUT);
    let text = String::from_utf8_lossy(&parsed.stdout).into_owned();
    Some(
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect(),
    )
}

fn compare(file: &str) {
    let Some(want) = promtool_got(file) else {
        return;
    };
    assert!(!want.is_empty(), "promtool printed nothing for {file}");
    let outcomes = run_file(&repo_root().join("tests/rules_unit").join(file)).expect("run");
    let mut checked = 0;
    for w in &want {
        let t = parse_duration_ms(w["time"].as_str().unwrap()).unwrap();
        if let Some(expr) = w["expr"].as_str() {
            let mut want_samples: Vec<(LabelMap, f64)> = w["got"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (map(&s["labels"]), s["value"].as_f64().unwrap()))
                .collect();
            want_samples.sort_by(|a, b| a.0.cmp(&b.0));
            let got = outcomes.iter().find_map(|o| match o {
                Outcome::Expr {
                    expr: e,
                    time_ms,
                    got,
                    ..
                } if e == expr && *time_ms == t => Some(got.clone()),
                _ => None,
            });
            let got = got.unwrap_or_else(|| panic!("no outcome for {expr} at {t}"));
            assert_eq!(got, Ok(want_samples), "{file}: {expr} at {t}ms");
        } else {
            let alertname = w["alertname"].as_str().unwrap();
            let mut want_alerts: Vec<(LabelMap, LabelMap)> = w["got_alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (map(&a["labels"]), map(&a["annotations"])))
                .collect();
            want_alerts.sort();
            let got = outcomes.iter().find_map(|o| match o {
                Outcome::Alerts {
                    alertname: n,
                    time_ms,
                    got,
                    ..
                } if n == alertname && *time_ms == t => Some(got.clone()),
                _ => None,
            });
            let got = got.unwrap_or_else(|| panic!("no outcome for {alertname} at {t}"));
            assert_eq!(got, want_alerts, "{file}: {alertname} at {t}ms");
        }
        checked += 1;
    }
    assert!(checked >= want.len());
}

#[test]
fn cpu_for_20m_alerts_series_match_promtool() {
    compare("cpu_probe_test.yml");
}

#[test]
fn recording_rule_and_alert_at_30m_match_promtool() {
    compare("cpu_probe2_test.yml");
}

#[test]
fn flapping_keep_firing_for_and_templates_match_promtool() {
    compare("flap_probe_test.yml");
}

#[test]
fn template_functions_and_number_edges_match_promtool() {
    // humanize*/toTime of NaN, ±Inf, negatives and values below 1s and 1ms;
    // stripPort/stripDomain of names, IPv4/IPv6 with and without ports;
    // parseDuration.
    compare("template_probe_test.yml");
}

#[test]
fn shipped_host_tests_pass_like_under_promtool() {
    let (ok, out) = promtool(
        &["test", "rules", "queries/tests/host_test.yml"],
        &repo_root(),
    );
    assert!(ok, "{out}");
    let outcomes = run_file(&repo_root().join("queries/tests/host_test.yml")).expect("run");
    assert!(outcomes.len() >= 5);
    for o in &outcomes {
        assert!(o.passed(), "failed: {o:?}");
    }
}

#[test]
fn failing_expectations_fail_in_both() {
    let (ok, _) = promtool(
        &["test", "rules", "flap_probe_test.yml"],
        &repo_root().join("tests/rules_unit"),
    );
    assert!(!ok);
    let outcomes = run_file(&repo_root().join("tests/rules_unit/flap_probe_test.yml")).unwrap();
    assert!(outcomes.iter().any(|o| !o.passed()));
}
