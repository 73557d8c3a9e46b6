//! Rules through the maintained dataflow, the exact `for` clock, and alert state
//! across a SIGKILL restart.
//!
//! - Interval mode: recording rules evaluated by the dataflow write, at each group
//!   tick `t`, exactly what an ad-hoc query (the reference evaluator, itself checked
//!   against Prometheus in `query_api.rs`) answers at `t`; a rule reading a recording
//!   rule of its group sees that rule's output of the same tick, as in Prometheus.
//! - On-arrival mode: an alert with `for: 2s` over a target scraped every 5s fires
//!   exactly 2s after it became pending (the `ALERTS{alertstate="firing"}` sample is at
//!   `activeAt + 2s`), not at the next scrape; one with `keep_firing_for: 3s` resolves
//!   exactly 3s after the scrape that cleared it. The mode is per group
//!   (`--rules.on-arrival-groups`): a group not named keeps Prometheus's interval ticks.
//!   An alert on a recording rule of an on-arrival group becomes active at the same
//!   scrape as one on the raw series.
//! - Restart: Prometheus's `for` restore from `ALERTS_FOR_STATE` (a firing alert keeps
//!   its `activeAt`; a pending one does not count the downtime), and a firing alert
//!   with `keep_firing_for` whose condition cleared during the downtime stays firing
//!   with its `activeAt` (Prometheus would lose it).
//!
//! - Regression: in on-arrival mode a failing alerting rule past its `for` deadline is
//!   evaluated per scrape and group tick, not re-stepped at every wake-up of the runner
//!   (counted by `prometheus_rule_evaluation_failures_total`).
//!
//! Real peers: promflow itself (killed with SIGKILL through its child handle and
//! restarted on the same storage), the controllable exporter of `common`.

mod common;

use common::exporter::{Exporter, Reply};
use common::{wait_for, Promflow};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn query(promflow: &Promflow, expr: &str, time: Option<f64>) -> Value {
    let mut path = format!("/api/v1/query?query={}", urlencode(expr));
    if let Some(t) = time {
        path.push_str(&format!("&time={t:.3}"));
    }
    let v: Value = serde_json::from_str(&promflow.get_ok(&path)).unwrap();
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].clone()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Raw samples `(ms, value)` of the one series `selector` matches, over the last `range`.
fn raw(promflow: &Promflow, selector: &str, range: &str) -> Vec<(i64, f64)> {
    let result = query(promflow, &format!("{selector}[{range}]"), None);
    let series = result.as_array().unwrap();
    assert!(series.len() <= 1, "{selector}: {result}");
    series
        .first()
        .map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn scalar_at(promflow: &Promflow, expr: &str, t_ms: i64) -> Option<f64> {
    let result = query(promflow, expr, Some(t_ms as f64 / 1000.0));
    result
        .as_array()
        .unwrap()
        .first()
        .map(|e| e["value"][1].as_str().unwrap().parse().unwrap())
}

/// `(state, activeAt ms)` of the alert named `name` in `/api/v1/alerts`.
fn alert(promflow: &Promflow, name: &str) -> Option<(String, i64)> {
    let v: Value = serde_json::from_str(&promflow.get_ok("/api/v1/alerts")).unwrap();
    v["data"]["alerts"].as_array()?.iter().find_map(|a| {
        (a["labels"]["alertname"] == name).then(|| {
            let at = chrono::DateTime::parse_from_rfc3339(a["activeAt"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (a["state"].as_str().unwrap().to_string(), at)
        })
    })
}

fn write_rules(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("rules.yml");
    std::fs::write(&path, text).unwrap();
    path
}

fn config(rules: &std::path::Path, scrape_interval: &str, target: &str) -> String {
    format!(
        "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    )
}

#[test]
fn interval_rules_through_the_dataflow_equal_adhoc_queries_at_each_tick() {
    let exporter = Exporter::start(Reply::text("c_total 0\ng 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "groups:\n  - name: rec\n    rules:\n      - record: r:rate\n        expr: sum(rate(c_total[3s]))\n      - record: r:g\n        expr: g * 2\n      - record: r:g_plus_one\n        expr: r:g + 1\n",
    );
    let promflow = Promflow::start(&config(&rules, "1s", &exporter.addr().to_string()));
    for i in 1..=24u32 {
        std::thread::sleep(Duration::from_millis(333));
        exporter.set(Reply::text(&format!("c_total {}\ng {}\n", i * i, i % 7)));
    }
    let log = promflow.log();
    assert!(
        log.contains("r:g_plus_one") && log.contains("rule evaluated over storage"),
        "the rule reading a recording rule is evaluated over storage: {log}"
    );
    assert_eq!(
        log.matches("rule evaluated over storage").count(),
        1,
        "the other rules run in the dataflow: {log}"
    );
    assert!(
        !log.contains("no dataflow result for the tick"),
        "every tick answered by the dataflow: {log}"
    );
    let rate = raw(&promflow, "r:rate", "1m");
    let doubled = raw(&promflow, "r:g", "1m");
    let plus_one = raw(&promflow, "r:g_plus_one", "1m");
    assert!(rate.len() >= 5, "ticks so far: {rate:?}");
    for (t, v) in &rate {
        assert_eq!(
            scalar_at(&promflow, "sum(rate(c_total[3s]))", *t),
            Some(*v),
            "r:rate at {t}"
        );
    }
    for (t, v) in &doubled {
        assert_eq!(scalar_at(&promflow, "g * 2", *t), Some(*v), "r:g at {t}");
        // Same tick, same value + 1: the later rule saw this tick's output.
        let later = plus_one.iter().find(|(tp, _)| tp == t);
        assert_eq!(later.map(|(_, v)| *v), Some(v + 1.0), "r:g_plus_one at {t}");
    }
}

/// On arrival, a recording rule writes an output series when its value changes, at
/// the scrape that changed it, and every output series again at each group tick (a
/// series that keeps its value is not rewritten at every scrape, and does not go
/// stale either); a series that leaves the result gets a stale marker at the scrape
/// it left with. Every written sample equals the ad-hoc query at its time.
#[test]
fn on_arrival_recording_rules_write_changes_at_the_scrape_and_every_series_each_tick() {
    let body = |moving: u32, leaving: bool| {
        let mut text = format!("g{{k=\"steady\"}} 3\ng{{k=\"moving\"}} {moving}\n");
        if leaving {
            text.push_str("g{k=\"leaving\"} 1\n");
        }
        text
    };
    let exporter = Exporter::start(Reply::text(&body(0, true)));
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "groups:\n  - name: a\n    interval: 2s\n    rules:\n      - record: r:g\n        expr: g * 2\n",
    );
    let promflow = Promflow::start_with_args(
        &config(&rules, "1s", &exporter.addr().to_string()),
        &["--rules.evaluation=on-arrival"],
    );
    let first = wait_for(Duration::from_secs(20), || {
        let r = raw(&promflow, "r:g{k=\"moving\"}", "1m");
        (!r.is_empty()).then_some(r)
    });
    assert!(first.is_some(), "no output: {}", promflow.log());
    for i in 1..=16u32 {
        std::thread::sleep(Duration::from_millis(500));
        exporter.set(Reply::text(&body(i / 2, true)));
    }
    exporter.set(Reply::text(&body(8, false)));
    std::thread::sleep(Duration::from_secs(3));

    let steady = raw(&promflow, "r:g{k=\"steady\"}", "1m");
    let steady_in = raw(&promflow, "g{k=\"steady\"}", "1m");
    assert!(steady.len() >= 4, "r:g steady: {steady:?}");
    for pair in steady.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 <= 3_000,
            "an unchanged series is rewritten at every 2s tick: {steady:?}"
        );
    }
    assert!(
        steady.len() < steady_in.len(),
        "an unchanged series is not rewritten at every scrape: {} outputs, {} scrapes",
        steady.len(),
        steady_in.len()
    );
    let moving_in = raw(&promflow, "g{k=\"moving\"}", "1m");
    let moving = raw(&promflow, "r:g{k=\"moving\"}", "1m");
    for pair in moving_in.windows(2) {
        let (t, v) = pair[1];
        if v != pair[0].1 {
            assert!(
                moving.contains(&(t, v * 2.0)),
                "the change to {v} at {t} is written at its scrape: {moving:?}"
            );
        }
    }
    for (selector, samples) in [("steady", &steady), ("moving", &moving)] {
        for (t, v) in samples.iter() {
            let expr = format!("g{{k=\"{selector}\"}} * 2");
            assert_eq!(
                scalar_at(&promflow, &expr, *t),
                Some(*v),
                "r:g {selector} at {t}"
            );
        }
    }
    // Gone from the scrape: a stale marker, so the output is gone too, not held for
    // the lookback delta.
    assert!(query(&promflow, "g{k=\"leaving\"}", None)
        .as_array()
        .unwrap()
        .is_empty());
    let leaving = query(&promflow, "r:g{k=\"leaving\"}", None);
    assert!(
        leaving.as_array().unwrap().is_empty(),
        "r:g of a series that left: {leaving}; raw {:?}",
        raw(&promflow, "r:g{k=\"leaving\"}", "1m")
    );
}

#[test]
fn on_arrival_for_and_keep_firing_for_run_on_exact_timers() {
    let exporter = Exporter::start(Reply::text("g 0\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "groups:\n  - name: a\n    rules:\n      - alert: Hot\n        expr: g > 1\n        for: 2s\n      - alert: Held\n        expr: g > 1\n        keep_firing_for: 3s\n      - record: r:g\n        expr: g * 2\n      - alert: HotOnRecorded\n        expr: r:g > 2\n  - name: grid\n    interval: 10s\n    rules:\n      - alert: HotOnGrid\n        expr: g > 1\n        for: 2s\n",
    );
    // Group `a` on arrival, group `grid` at its interval like Prometheus.
    let promflow = Promflow::start_with_args(
        &config(&rules, "5s", &exporter.addr().to_string()),
        &[
            "--rules.evaluation=interval",
            "--rules.on-arrival-groups=a|b",
        ],
    );
    exporter.set(Reply::text("g 5\n"));
    let firing = wait_for(Duration::from_secs(30), || {
        alert(&promflow, "Hot").filter(|(s, _)| s == "firing")
    });
    let (_, active_at) = firing.unwrap_or_else(|| panic!("not firing: {}", promflow.log()));
    let pending = raw(
        &promflow,
        "ALERTS{alertname=\"Hot\",alertstate=\"pending\"}",
        "1m",
    );
    let fired = raw(
        &promflow,
        "ALERTS{alertname=\"Hot\",alertstate=\"firing\"}",
        "1m",
    );
    assert_eq!(
        pending.first().map(|p| p.0),
        Some(active_at),
        "pending from activeAt"
    );
    assert_eq!(
        fired.first().map(|p| p.0),
        Some(active_at + 2_000),
        "fired by the timer at activeAt + for, not at the next scrape (+5s)"
    );
    // An alert on a recording rule of its group (evaluated over storage) is stepped
    // right after the recording rule's dataflow output, at the scrape's time, not at
    // the next 1s tick.
    let on_recorded = wait_for(Duration::from_secs(10), || {
        alert(&promflow, "HotOnRecorded")
    });
    assert_eq!(
        on_recorded.map(|(_, at)| at),
        Some(active_at),
        "HotOnRecorded active from the same scrape as Hot; r:g {:?}; ALERTS {:?}",
        raw(&promflow, "r:g", "1m"),
        raw(&promflow, "ALERTS{alertname=\"HotOnRecorded\"}", "1m"),
    );
    // The interval group fires at its first tick >= activeAt + 2s: activeAt + 10s.
    let grid_firing = wait_for(Duration::from_secs(40), || {
        alert(&promflow, "HotOnGrid").filter(|(s, _)| s == "firing")
    });
    let (_, grid_active_at) = grid_firing.unwrap_or_else(|| panic!("{}", promflow.log()));
    let grid_fired = raw(
        &promflow,
        "ALERTS{alertname=\"HotOnGrid\",alertstate=\"firing\"}",
        "1m",
    );
    assert_eq!(
        grid_fired.first().map(|p| p.0),
        Some(grid_active_at + 10_000),
        "the group not named by --rules.on-arrival-groups fires at its interval's tick; firing {grid_fired:?}, pending {:?}",
        raw(
            &promflow,
            "ALERTS{alertname=\"HotOnGrid\",alertstate=\"pending\"}",
            "1m",
        ),
    );

    // keep_firing_for: the scrape that clears the condition starts the clock; the alert
    // resolves by the timer 3s later (its ALERTS_FOR_STATE series ends exactly then),
    // not at the next scrape 5s later.
    exporter.set(Reply::text("g 0\n"));
    let since = wait_for(Duration::from_secs(20), || {
        let v: Value = serde_json::from_str(&promflow.get_ok("/api/v1/alerts")).unwrap();
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find_map(|a| {
                (a["labels"]["alertname"] == "Held").then(|| a["keepFiringSince"].as_str())?
            })
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .unwrap()
                    .timestamp_millis()
            })
    })
    .unwrap_or_else(|| panic!("Held never kept firing: {}", promflow.log()));
    let resolved = since + 3_000;
    assert!(
        common::wait_until(Duration::from_secs(10), || alert(&promflow, "Held")
            .is_none()),
        "Held did not resolve"
    );
    let held = "ALERTS_FOR_STATE{alertname=\"Held\"}";
    assert_eq!(
        query(&promflow, held, Some((resolved - 1) as f64 / 1000.0))
            .as_array()
            .map(Vec::len),
        Some(1),
        "still firing 1ms before keepFiringSince + 3s"
    );
    assert_eq!(
        query(&promflow, held, Some(resolved as f64 / 1000.0))
            .as_array()
            .map(Vec::len),
        Some(0),
        "resolved at keepFiringSince + 3s exactly"
    );
}

#[test]
fn alert_state_survives_a_sigkill_restart() {
    let exporter = Exporter::start(Reply::text("g 5\nflag 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "groups:\n  - name: a\n    rules:\n      - alert: Pend\n        expr: g > 1\n        for: 1h\n      - alert: Fire\n        expr: g > 1\n        for: 2s\n      - alert: Kept\n        expr: flag > 0\n        keep_firing_for: 10m\n",
    );
    let mut promflow = Promflow::start_with_args(
        &config(&rules, "1s", &exporter.addr().to_string()),
        &["--rules.alert.for-grace-period=1s"],
    );
    let up = wait_for(Duration::from_secs(30), || {
        let fire = alert(&promflow, "Fire").filter(|(s, _)| s == "firing")?;
        let kept = alert(&promflow, "Kept").filter(|(s, _)| s == "firing")?;
        let pend = alert(&promflow, "Pend")?;
        Some((fire, kept, pend))
    });
    let (fire, kept, pend) = up.unwrap_or_else(|| panic!("alerts not up: {}", promflow.log()));
    std::thread::sleep(Duration::from_secs(3));
    exporter.set(Reply::text("g 5\nflag 0\n"));
    promflow.kill_and_restart();

    let back = wait_for(Duration::from_secs(30), || {
        let fire = alert(&promflow, "Fire").filter(|(s, _)| s == "firing")?;
        let pend = alert(&promflow, "Pend")?;
        let kept = alert(&promflow, "Kept")?;
        Some((fire, kept, pend))
    });
    let (fire2, kept2, pend2) =
        back.unwrap_or_else(|| panic!("alerts not back after restart: {}", promflow.log()));
    // Firing when it went down: `activeAt` kept (ALERTS_FOR_STATE holds whole seconds).
    assert_eq!(fire2.1, fire.1 / 1000 * 1000, "Fire keeps its activeAt");
    // Kept firing from the state file though `flag` is 0 now.
    assert_eq!(kept2, ("firing".to_string(), kept.1), "Kept stays firing");
    assert!(
        promflow.dir().join("data/rules-keep-firing.json").exists(),
        "state file in the storage directory"
    );
    // Pending mid-`for`: it keeps its activeAt (the default `--rules.alert.for-restore
    // keep`; ALERTS_FOR_STATE holds whole seconds), and ALERTS_FOR_STATE written after
    // the restart carries it.
    assert_eq!(pend2, ("pending".to_string(), pend.1 / 1000 * 1000));
    let restarted_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let restored = wait_for(Duration::from_secs(10), || {
        let s = raw(&promflow, "ALERTS_FOR_STATE{alertname=\"Pend\"}", "2m");
        let last = *s.last()?;
        (last.0 > restarted_ms).then_some(last.1)
    });
    assert_eq!(restored, Some((pend.1 / 1000) as f64));
}

/// Regression (on-arrival runner busy loop): an alerting rule with `for: 3s` over
/// `{__name__=~"a|b"} > 0` becomes pending on `a 1`; then the exporter serves `a 1` and
/// `b 1` (duplicate alert labels: every evaluation fails). Once the `for` deadline has
/// passed, the group's `prometheus_rule_evaluation_failures_total` grows only per
/// scrape and group tick (a few a second), not at every wake-up of the runner (it
/// re-stepped the failing timer every ~5 ms before the fix).
#[test]
fn on_arrival_failing_alert_is_not_restepped_at_its_deadline() {
    let exporter = Exporter::start(Reply::text("a 1\n"));
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "groups:\n  - name: dup\n    rules:\n      - alert: Dup\n        expr: '{__name__=~\"a|b\"} > 0'\n        for: 3s\n",
    );
    let promflow = Promflow::start_with_args(
        &config(&rules, "1s", &exporter.addr().to_string()),
        &["--rules.evaluation=on-arrival"],
    );
    let pending = wait_for(Duration::from_secs(30), || {
        alert(&promflow, "Dup").filter(|(s, _)| s == "pending")
    });
    pending.unwrap_or_else(|| panic!("never pending: {}", promflow.log()));
    exporter.set(Reply::text("a 1\nb 1\n"));
    let key = format!("{};dup", rules.display());
    let failures = || {
        promflow
            .metrics()
            .find(
                "prometheus_rule_evaluation_failures_total",
                &[("rule_group", &key)],
            )
            .map_or(0.0, |s| s.value)
    };
    // The deadline (3s after pending) passes while every evaluation fails.
    assert!(
        common::wait_until(Duration::from_secs(20), || failures() >= 1.0),
        "no failure counted: {}",
        promflow.get_ok("/metrics")
    );
    std::thread::sleep(Duration::from_secs(4));
    let before = failures();
    std::thread::sleep(Duration::from_secs(3));
    let grown = failures() - before;
    assert!(
        grown <= 10.0,
        "{grown} failed evaluations in 3s with a 1s scrape and group interval"
    );
    assert!(grown >= 1.0, "the failing rule stopped being evaluated");
}
