//! Exemplars scraped and served by `/api/v1/query_exemplars`, side by side with the
//! oracle: a controllable exporter serves OpenMetrics bodies whose counters and
//! histogram buckets carry exemplars (with and without their own timestamp, an empty
//! label value, one out of order, one with labels over 128 characters), one step at a
//! time with explicit sample timestamps; promflow and a real Prometheus 2.42, both
//! with `--enable-feature=exemplar-storage` and `storage.exemplars.max_exemplars: 5`
//! (so the ring overwrites), scrape it. After each step both must answer the same
//! exemplars for several queries and time ranges, and the same errors. Without the
//! feature both answer alike too. Both are then stopped (SIGTERM) and started again on
//! their data: Prometheus replays exemplars from its WAL, and promflow must answer the
//! same exemplars as before the restart and as Prometheus after it.

mod common;

use std::time::Duration;

use common::exporter::{Exporter, Reply};
use common::{http, now_ms, wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeMap;

const WAIT: Duration = Duration::from_secs(30);
const STEP_MS: i64 = 15_000;

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The OpenMetrics body of step `k`, every sample at `ts`.
fn body(k: i64, ts: i64) -> String {
    let t = seconds(ts);
    // Step 3's exemplar of /a is older than step 2's: out of order, dropped.
    let a_ts = if k == 3 { ts - 2 * STEP_MS } else { ts - 500 };
    let long = "x".repeat(130);
    let l_labels = if k == 4 {
        format!(r#"trace_id="{long}""#)
    } else {
        format!(r#"trace_id="l{k}""#)
    };
    format!(
        "# TYPE http_requests counter\n\
         http_requests_total{{path=\"/a\"}} {a} {t} # {{trace_id=\"a{k}\"}} {av} {a_ts}\n\
         http_requests_total{{path=\"/b\"}} {b} {t} # {{trace_id=\"b{bk}\",span_id=\"\"}} 1\n\
         # TYPE latency histogram\n\
         latency_bucket{{le=\"0.1\"}} {k} {t} # {{{l_labels}}} 0.05 {l_ts}\n\
         latency_bucket{{le=\"+Inf\"}} {inf} {t}\n\
         latency_count {inf} {t}\n\
         latency_sum {sum} {t}\n\
         # TYPE steps counter\n\
         steps_total {k} {t}\n\
         # EOF\n",
        a = 10 + k,
        av = 0.5 + k as f64,
        a_ts = seconds(a_ts),
        b = 20 + k,
        // /b's exemplar changes every other step: the same one again is kept once.
        bk = k / 2,
        l_ts = seconds(ts - 100),
        inf = k + 1,
        sum = 0.25 * k as f64,
    )
}

fn reply(k: i64, ts: i64) -> Reply {
    Reply {
        status: 200,
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        gzip: false,
        body: body(k, ts).into_bytes(),
    }
}

fn config(exporter: &Exporter, max_exemplars: Option<i64>) -> String {
    let storage = max_exemplars
        .map(|n| format!("storage:\n  exemplars:\n    max_exemplars: {n}\n"))
        .unwrap_or_default();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n{storage}scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

/// `/api/v1/query_exemplars` answer (status, and data or error type).
fn exemplars(server: &Peer, query: &str, range: Option<(i64, i64)>) -> Value {
    let (start, end) = range.map_or((String::new(), String::new()), |(s, e)| {
        (seconds(s), seconds(e))
    });
    let mut params = vec![("query", query)];
    if range.is_some() {
        params.push(("start", &start));
        params.push(("end", &end));
    }
    let resp = server.get(&http::with_query("/api/v1/query_exemplars", &params));
    if resp.body.is_empty() {
        // Prometheus answers 204 with no body to a query without a selector.
        return serde_json::json!({"status": resp.status});
    }
    let v: Value = serde_json::from_str(&resp.body)
        .unwrap_or_else(|e| panic!("{query}: bad JSON ({e}): {}", resp.body));
    match v["status"].as_str() {
        Some("success") => serde_json::json!({"status": resp.status, "data": v["data"]}),
        _ => serde_json::json!({"status": resp.status, "errorType": v["errorType"]}),
    }
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    r#"http_requests_total{path="/b"}"#,
    "latency_bucket",
    r#"sum(rate(http_requests_total{path="/a"}[1m])) + on() group_left latency_count"#,
    r#"{__name__=~"http_.*|latency_.*"}"#,
    "1 + 1",
    "nothing_here",
    "sum(",
    "",
];

fn compare(promflow: &Peer, oracle: &Peer, ranges: &[Option<(i64, i64)>]) {
    for query in QUERIES {
        for range in ranges {
            let (ours, theirs) = (
                exemplars(promflow, query, *range),
                exemplars(oracle, query, *range),
            );
            assert_eq!(ours, theirs, "{query} over {range:?}");
        }
    }
}

#[test]
fn exemplars_are_kept_and_queried_as_prometheus_does() {
    let steps = 7;
    let base = (now_ms() - 10 * 60_000) / STEP_MS * STEP_MS;
    let exporter = Exporter::start(reply(0, base));
    let flags = ["--enable-feature=exemplar-storage"];
    let promflow = Promflow::start_with_args(&config(&exporter, Some(5)), &flags);
    let oracle = Prometheus::start_with_args(&config(&exporter, Some(5)), &flags);
    for k in 0..steps {
        let ts = base + k * STEP_MS;
        exporter.set(reply(k, ts));
        let stored = |server: &Peer| server.stored_at("steps_total", ts);
        assert!(wait_until(WAIT, || stored(&promflow)), "promflow step {k}");
        assert!(wait_until(WAIT, || stored(&oracle)), "oracle step {k}");
        // A scrape more each: the step's body read again (duplicates) by both.
        std::thread::sleep(Duration::from_millis(1_500));
        let ranges = [
            None,
            Some((base, ts)),
            Some((ts - STEP_MS, ts - 200)),
            Some((ts, ts - 1)),
        ];
        compare(&promflow, &oracle, &ranges);
    }
    // The ring of 5 holds exemplars of several series, oldest overwritten.
    let all = exemplars(&promflow, r#"{__name__=~".+"}"#, None);
    let held: usize = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["exemplars"].as_array().unwrap().len())
        .sum();
    assert_eq!(held, 5, "{all:#}");
    // The counters Prometheus keeps: 5 held, out-of-order attempts counted per scrape.
    let metric = |server: &Peer, name: &str| -> String {
        let body = server.get("/metrics").body;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for name in [
        "prometheus_tsdb_exemplar_exemplars_in_storage",
        "prometheus_tsdb_exemplar_max_exemplars",
        "prometheus_tsdb_exemplar_exemplars_appended_total",
        "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
        "prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds",
    ] {
        assert_eq!(metric(&promflow, name), metric(&oracle, name), "{name}");
    }
    // Step 3's out-of-order exemplar, refused at each scrape of that step.
    let refused = |server: &Peer| {
        metric(
            server,
            "prometheus_target_scrapes_exemplar_out_of_order_total",
        )
        .parse::<f64>()
        .unwrap()
    };
    assert!(refused(&promflow) >= 1.0 && refused(&oracle) >= 1.0);
}

/// The values of the exemplar storage's gauges and counters in `/metrics`.
fn exemplar_metrics(server: &Peer) -> BTreeMap<&'static str, String> {
    let body = server.get("/metrics").body;
    [
        "prometheus_tsdb_exemplar_exemplars_in_storage",
        "prometheus_tsdb_exemplar_max_exemplars",
        "prometheus_tsdb_exemplar_exemplars_appended_total",
        "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
        "prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds",
    ]
    .into_iter()
    .map(|name| {
        let value = body
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
            .unwrap_or_else(|| panic!("no {name}"));
        (name, value)
    })
    .collect()
}

/// Scrapes of step `k` stored by both servers, and one scrape more each (the step's
/// body read again: duplicates).
fn step(exporter: &Exporter, servers: [&Peer; 2], k: i64, ts: i64) {
    exporter.set(reply(k, ts));
    for server in servers {
        assert!(
            wait_until(WAIT, || server.stored_at("steps_total", ts)),
            "step {k}"
        );
    }
    std::thread::sleep(Duration::from_millis(1_500));
}

/// Exemplars survive a clean restart as in Prometheus, which logs them to its WAL and
/// replays them: promflow and Prometheus 2.42 (a ring of 5, overwritten by then) scrape
/// steps 0–3, are stopped with SIGTERM and started again on their data, and answer
/// the same exemplars as before (the exporter still serves step 3's body: scraped
/// again, duplicates of what was replayed) and as each other, with the same
/// exemplar-storage metrics; then the steps go on, both still alike.
#[test]
fn exemplars_survive_a_restart_as_in_prometheus() {
    let base = (now_ms() - 10 * 60_000) / STEP_MS * STEP_MS;
    let exporter = Exporter::start(reply(0, base));
    let flags = ["--enable-feature=exemplar-storage"];
    let mut promflow = Promflow::start_with_args(&config(&exporter, Some(5)), &flags);
    let mut oracle = Prometheus::start_with_args(&config(&exporter, Some(5)), &flags);
    let ranges = |ts: i64| [None, Some((base, ts)), Some((ts - STEP_MS, ts - 200))];
    let all = r#"{__name__=~".+"}"#;
    let mut ts = base;
    for k in 0..4 {
        ts = base + k * STEP_MS;
        step(&exporter, [&promflow, &oracle], k, ts);
    }
    compare(&promflow, &oracle, &ranges(ts));
    let before = exemplars(&promflow, all, None);
    assert_eq!(before, exemplars(&oracle, all, None));
    let held: usize = before["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["exemplars"].as_array().unwrap().len())
        .sum();
    assert_eq!(held, 5, "the ring is full: {before:#}");
    let metrics_before = exemplar_metrics(&oracle);
    assert_eq!(exemplar_metrics(&promflow), metrics_before);

    promflow.terminate_and_restart();
    oracle.terminate_and_restart();
    assert_eq!(
        exemplars(&oracle, all, None),
        before,
        "Prometheus replayed them"
    );
    assert_eq!(
        exemplars(&promflow, all, None),
        before,
        "promflow replayed them"
    );
    compare(&promflow, &oracle, &ranges(ts));
    // Both replayed the same log into the ring (appends counted anew).
    assert_eq!(exemplar_metrics(&promflow), exemplar_metrics(&oracle));
    // Scraped again after the restart: the same exemplars, still alike.
    let restarted = now_ms();
    let scraped = |server: &Peer| {
        server.query("timestamp(up)")["result"][0]["value"][1]
            .as_str()
            .is_some_and(|v| v.parse::<f64>().unwrap() * 1000.0 >= restarted as f64)
    };
    assert!(wait_until(WAIT, || scraped(&promflow) && scraped(&oracle)));
    std::thread::sleep(Duration::from_millis(1_500));
    compare(&promflow, &oracle, &ranges(ts));
    assert_eq!(exemplars(&promflow, all, None), before);

    for k in 4..7 {
        ts = base + k * STEP_MS;
        step(&exporter, [&promflow, &oracle], k, ts);
        compare(&promflow, &oracle, &ranges(ts));
    }
    assert_eq!(exemplar_metrics(&promflow), exemplar_metrics(&oracle));
}

#[test]
fn without_the_feature_no_exemplar_is_kept_as_in_prometheus() {
    let ts = (now_ms() - 60_000) / 1000 * 1000;
    let exporter = Exporter::start(reply(1, ts));
    let promflow = Promflow::start(&config(&exporter, None));
    let oracle = Prometheus::start(&config(&exporter, None));
    let servers: [&Peer; 2] = [&promflow, &oracle];
    for server in servers {
        assert!(wait_until(WAIT, || {
            !server.query_at("steps_total", ts + 1_000)["result"]
                .as_array()
                .unwrap()
                .is_empty()
        }));
    }
    compare(
        &promflow,
        &oracle,
        &[None, Some((ts - 60_000, ts + 60_000))],
    );
}

/// `convert_classic_histograms_to_nhcb` (Prometheus 3.x; 2.42 lacks it): the
/// exemplars of a converted histogram's classic series go to its native series (the
/// one named without suffix), those with a timestamp only, ordered by timestamp
/// (3.x's `NHCBParser` collects them with the series; its scrape loop drops a native
/// histogram's exemplars without a timestamp and sorts the rest). The exemplars
/// themselves are the oracle's: Prometheus 2.42 scraping the same body keeps each on
/// its classic bucket series.
#[test]
fn classic_bucket_exemplars_move_to_the_nhcb_as_prometheus_3_does() {
    let ts = (now_ms() - 30_000) / 1000 * 1000;
    let t = seconds(ts);
    // Bucket 0.1's exemplar is newer than bucket 1's; +Inf's has no timestamp.
    let body = format!(
        "# TYPE req histogram\n\
         req_bucket{{le=\"0.1\"}} 2 {t} # {{trace_id=\"newer\"}} 0.05 {newer}\n\
         req_bucket{{le=\"1\"}} 5 {t} # {{trace_id=\"older\"}} 0.5 {older}\n\
         req_bucket{{le=\"+Inf\"}} 6 {t} # {{trace_id=\"untimed\"}} 3\n\
         req_count 6 {t}\n\
         req_sum 4.5 {t}\n\
         # TYPE steps counter\n\
         steps_total 1 {t}\n\
         # EOF\n",
        newer = seconds(ts - 300),
        older = seconds(ts - 700),
    );
    let exporter = Exporter::start(Reply {
        status: 200,
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        gzip: false,
        body: body.into_bytes(),
    });
    let plain = config(&exporter, None);
    let converting = plain.replace(
        "  - job_name: app\n",
        "  - job_name: app\n    convert_classic_histograms_to_nhcb: true\n",
    );
    let flags = ["--enable-feature=exemplar-storage"];
    let promflow = Promflow::start_with_args(&converting, &flags);
    let oracle = Prometheus::start_with_args(&plain, &flags);
    for server in [&*promflow, &*oracle] {
        assert!(wait_until(WAIT, || server.stored_at("steps_total", ts)));
    }
    let range = Some((ts - 60_000, ts + 60_000));
    let theirs = exemplars(&oracle, "req_bucket", range);
    let mut timed: Vec<Value> = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|series| series["exemplars"].as_array().unwrap().clone())
        .filter(|e| e["labels"]["trace_id"] != "untimed")
        .collect();
    assert_eq!(timed.len(), 2, "{theirs:#}");
    timed.sort_by(|a, b| {
        let at = |e: &Value| e["timestamp"].as_f64().unwrap();
        at(a).total_cmp(&at(b))
    });
    let ours = exemplars(&promflow, "req", range);
    let series = ours["data"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{ours:#}");
    assert_eq!(series[0]["seriesLabels"]["__name__"], "req", "{ours:#}");
    assert_eq!(series[0]["exemplars"], Value::Array(timed), "{ours:#}");
    // The classic series are not kept (no always_scrape_classic_histograms).
    let classic = exemplars(&promflow, "req_bucket", range);
    assert_eq!(classic["data"], serde_json::json!([]), "{classic:#}");
}
