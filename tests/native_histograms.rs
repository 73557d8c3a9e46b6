//! Native histograms scraped, stored and queried ad hoc, side by side with the
//! oracle: a controllable exporter (`tests/common/exporter.rs`) serves protobuf bodies
//! (length-delimited `io.prometheus.client.MetricFamily`, encoded here with the
//! repo's prost types) holding integer native histograms with explicit timestamps,
//! one step at a time; promflow and a real Prometheus 2.42, both started with
//! `--enable-feature=native-histograms`, scrape it. Explicit timestamps make both
//! store exactly the same samples, whenever each scrapes. Then the `/api/v1/query`
//! and `/api/v1/query_range` answers of the raw histograms (the JSON `histogram` /
//! `histograms` form), `histogram_count`, `histogram_sum`, `histogram_quantile`,
//! `rate` and `sum` over them must be the same; and promflow, killed and restarted,
//! answers the same from its WAL, and again from blocks (restarted with short
//! blocks, it cuts the head into blocks at startup). They go both ways by remote
//! write with a real Prometheus and come back by remote read; `/federate` serves them
//! in the protobuf format to a Prometheus that federates promflow, and leaves them out
//! of the text format, as Prometheus does. Alerting and recording rules over them
//! (evaluated by the dataflow) fire and record as Prometheus's, recording rules whose
//! result is histograms (from the dataflow and from storage) recording the histograms.
//! And a service instrumented with the real Go client (client_golang, native buckets,
//! no explicit timestamps) is scraped, queried and federated as Prometheus does.
//!
//! Float histograms (`*_count_float`) are not exposed here: Prometheus 2.42 reads
//! them as zero (float histograms came later); the unit tests cover their parsing.

mod common;

use std::time::Duration;

use common::exporter::{Exporter, Reply};
use common::protobuf::{self, label};
use common::{http, now_ms, wait_until, Peer, Prometheus, Promflow};
use promflow::scrape::exposition::metrics_proto::{
    Bucket, BucketSpan, Histogram, Metric, MetricFamily, MetricType,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const STEP_MS: i64 = 15_000;

fn span(offset: i32, length: u32) -> BucketSpan {
    BucketSpan {
        offset: Some(offset),
        length: Some(length),
    }
}

/// The integer native histogram of step `k` (its counts grow with `k`; step 4 starts
/// again from step 0's counts: a counter reset): schema 1, a zero bucket, two
/// positive spans and a negative one. `classic` adds classic buckets beside.
fn histogram(k: i64, classic: bool) -> Histogram {
    let k = if k >= 4 { k - 4 } else { k };
    let positive = [2 + k, 3 + 2 * k, 1 + k];
    let negative = [1 + k];
    let zero = 1 + k;
    let count = positive.iter().sum::<i64>() + negative.iter().sum::<i64>() + zero;
    let deltas = |counts: &[i64]| -> Vec<i64> {
        let mut previous = 0;
        counts
            .iter()
            .map(|c| {
                let d = c - previous;
                previous = *c;
                d
            })
            .collect()
    };
    Histogram {
        sample_count: Some(count as u64),
        sample_sum: Some(10.5 + 3.25 * k as f64),
        schema: Some(1),
        zero_threshold: Some(0.001),
        zero_count: Some(zero as u64),
        positive_span: vec![span(-1, 2), span(3, 1)],
        positive_delta: deltas(&positive),
        negative_span: vec![span(0, 1)],
        negative_delta: deltas(&negative),
        bucket: if classic {
            vec![
                Bucket {
                    cumulative_count: Some((zero + negative[0]) as u64),
                    upper_bound: Some(0.5),
                    ..Default::default()
                },
                Bucket {
                    cumulative_count: Some(count as u64),
                    upper_bound: Some(f64::INFINITY),
                    ..Default::default()
                },
            ]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

/// The body of step `k`, every sample at `ts`.
fn families(k: i64, ts: i64) -> Vec<MetricFamily> {
    let metric = |kind: &str, h: Histogram| Metric {
        label: vec![label("kind", kind)],
        histogram: Some(h),
        timestamp_ms: Some(ts),
        ..Default::default()
    };
    let families = vec![
        protobuf::family(
            "rpc_latency_seconds",
            MetricType::Histogram,
            Some("RPC latency."),
            vec![
                metric("native", histogram(k, false)),
                metric("both", histogram(k, true)),
            ],
        ),
        protobuf::family(
            "steps_total",
            MetricType::Counter,
            Some("A float beside the histograms."),
            vec![protobuf::counter(k as f64, Some(ts))],
        ),
    ];
    families
}

fn reply(k: i64, ts: i64) -> Reply {
    protobuf::reply(&families(k, ts))
}

fn config(exporter: &Exporter) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

/// A Prometheus (started with `flags`) federating `promflow`'s `job="app"` series
/// every second, `honor_labels`.
fn federating(promflow: &Peer, flags: &[&str]) -> Prometheus {
    Prometheus::start_with_args(
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['{{job=\"app\"}}']\n    static_configs:\n      - targets: ['{}']\n",
            promflow.addr()
        ),
        flags,
    )
}

/// `/api/v1/query_range` `data` (panics unless success).
fn query_range(server: &Peer, expr: &str, start_ms: i64, end_ms: i64, step: &str) -> Value {
    let seconds = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let (start, end) = (seconds(start_ms), seconds(end_ms));
    let resp = server.get(&http::with_query(
        "/api/v1/query_range",
        &[
            ("query", expr),
            ("start", &start),
            ("end", &end),
            ("step", step),
        ],
    ));
    let v: Value = serde_json::from_str(&resp.body)
        .unwrap_or_else(|e| panic!("{expr}: bad JSON ({e}): {}", resp.body));
    assert_eq!(v["status"], "success", "{expr}: {}", resp.body);
    v["data"].clone()
}

/// `data` with its results in a stable order (by their `metric`).
fn sorted(mut data: Value) -> Value {
    if let Some(results) = data["result"].as_array_mut() {
        results.sort_by_key(|r| r["metric"].to_string());
    }
    data
}

/// Whether two answers are the same: equal JSON, except that sample values (strings
/// that parse as floats) may differ in the last bits (relative 1e-12; the sums and
/// extrapolations are computed in different orders).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if x != y => {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) => (p - q).abs() <= 1e-12 * p.abs().max(q.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The queries compared: each with, for `histogram_quantile`, the expression of the
/// histograms it reads (see [`exponential_from_linear`]).
const QUERIES: &[(&str, Option<&str>)] = &[
    ("rpc_latency_seconds", None),
    ("histogram_count(rpc_latency_seconds)", None),
    ("histogram_sum(rpc_latency_seconds)", None),
    (
        "histogram_quantile(0.9, rpc_latency_seconds)",
        Some("rpc_latency_seconds"),
    ),
    (
        "histogram_quantile(0.5, rpc_latency_seconds)",
        Some("rpc_latency_seconds"),
    ),
    (
        "histogram_quantile(0.9, rate(rpc_latency_seconds[1m]))",
        Some("rate(rpc_latency_seconds[1m])"),
    ),
    ("rate(rpc_latency_seconds[1m])", None),
    ("histogram_count(rate(rpc_latency_seconds[1m]))", None),
    ("histogram_sum(rate(rpc_latency_seconds[1m]))", None),
    ("sum(rpc_latency_seconds)", None),
    ("sum by (kind) (rate(rpc_latency_seconds[1m]))", None),
    ("rpc_latency_seconds[1m]", None),
    ("steps_total", None),
];

/// Prometheus 3.x (whose PromQL promflow follows; prometheus/prometheus#14677)
/// interpolates a native histogram's quantile within an exponential bucket
/// exponentially, 2.42 linearly: `lower + (upper - lower) * f` against
/// `2^(log2 lower + (log2 upper - log2 lower) * f)` for the same fraction `f` of the
/// bucket's observations below the rank (in a negative bucket, mirrored:
/// `-2^(log2 |upper| + (log2 |lower| - log2 |upper|) * (1 - f))`). So the 3.x answer
/// is derived from the oracle's: its bucket (from the oracle's histogram `buckets`)
/// and `f` from its linear answer.
fn exponential_from_linear(linear: f64, buckets: &Value) -> f64 {
    for b in buckets.as_array().into_iter().flatten() {
        let bound = |i: usize| b[i].as_str().unwrap().parse::<f64>().unwrap();
        let (lower, upper) = (bound(1), bound(2));
        if lower > 0.0 && lower < linear && linear <= upper {
            let f = (linear - lower) / (upper - lower);
            return (lower.log2() + (upper.log2() - lower.log2()) * f).exp2();
        }
        // A negative bucket: the same on the mirrored scale.
        if upper < 0.0 && lower <= linear && linear < upper {
            let f = (linear - lower) / (upper - lower);
            let (log_lower, log_upper) = (lower.abs().log2(), upper.abs().log2());
            return -(log_upper + (log_lower - log_upper) * (1.0 - f)).exp2();
        }
    }
    linear
}

/// The oracle's answer to `expr` at `at_ms`, its quantiles moved to 3.x's
/// interpolation (see [`exponential_from_linear`]) when `histograms` names what
/// they read.
fn oracle_answer(oracle: &Peer, expr: &str, histograms: Option<&str>, at_ms: i64) -> Value {
    let mut answer = sorted(oracle.query_at(expr, at_ms));
    let Some(histograms) = histograms else {
        return answer;
    };
    let read = oracle.query_at(histograms, at_ms);
    for element in answer["result"].as_array_mut().unwrap() {
        let source = read["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| {
                let mut metric = h["metric"].clone();
                metric.as_object_mut().unwrap().remove("__name__");
                metric == element["metric"]
            })
            .unwrap_or_else(|| panic!("{histograms}: no histogram for {element}"));
        let linear: f64 = element["value"][1].as_str().unwrap().parse().unwrap();
        let value = exponential_from_linear(linear, &source["histogram"][1]["buckets"]);
        element["value"][1] = Value::String(value.to_string());
    }
    answer
}

fn compare_instant(promflow: &Peer, oracle: &Peer, at_ms: i64) {
    for (expr, histograms) in QUERIES {
        let ours = sorted(promflow.query_at(expr, at_ms));
        let theirs = oracle_answer(oracle, expr, *histograms, at_ms);
        assert!(
            same(&ours, &theirs),
            "{expr} at {at_ms}:\npromflow: {ours:#}\noracle:   {theirs:#}"
        );
        assert!(
            !theirs["result"].as_array().unwrap().is_empty(),
            "{expr}: empty"
        );
    }
}

#[test]
fn native_histograms_are_stored_and_queried_as_prometheus_does() {
    // Steps 15s apart, in the past, so that each has its own explicit timestamp.
    let steps = 7;
    let base = (now_ms() - 10 * 60_000) / STEP_MS * STEP_MS;
    let exporter = Exporter::start(reply(0, base));
    let flags = ["--enable-feature=native-histograms"];
    let mut promflow = Promflow::start_with_args(&config(&exporter), &flags);
    let oracle = Prometheus::start_with_args(&config(&exporter), &flags);
    for k in 0..steps {
        let ts = base + k * STEP_MS;
        exporter.set(reply(k, ts));
        // Both have stored step k once its float beside says so.
        let stored = |server: &Peer| server.stored_at("steps_total", ts);
        assert!(wait_until(WAIT, || stored(&promflow)), "promflow step {k}");
        assert!(wait_until(WAIT, || stored(&oracle)), "oracle step {k}");
    }
    // The histogram samples of a step land with its float (one scrape); one more
    // scrape each so nothing is in flight.
    std::thread::sleep(Duration::from_secs(2));
    let last = base + (steps - 1) * STEP_MS;
    for at in [
        last + 1_000,
        last - 2 * STEP_MS + 500,
        base + 4 * STEP_MS + 10_000,
    ] {
        compare_instant(&promflow, &oracle, at);
    }
    // The raw histograms as a matrix and a range query.
    for expr in [
        "rpc_latency_seconds",
        "histogram_count(rate(rpc_latency_seconds[1m]))",
        "histogram_sum(rate(rpc_latency_seconds[1m]))",
    ] {
        // Steps off the samples' timestamps: a window starting exactly at a sample
        // holds it in 2.42, not in 3.x (left-open windows, which promflow follows).
        let start = base + 500;
        let ours = sorted(query_range(&promflow, expr, start, last + 1_000, "10s"));
        let theirs = sorted(query_range(&oracle, expr, start, last + 1_000, "10s"));
        assert!(
            same(&ours, &theirs),
            "range {expr}:\npromflow: {ours:#}\noracle:   {theirs:#}"
        );
    }
    // The raw form spelled out once, from the body: step 6 is step 2's counts.
    let raw = sorted(promflow.query_at(r#"rpc_latency_seconds{kind="native"}"#, last + 1_000));
    let h = &raw["result"][0]["histogram"][1];
    assert_eq!(h["count"], "20", "{raw:#}");
    assert_eq!(h["sum"], "17", "{raw:#}");
    assert_eq!(h["buckets"].as_array().unwrap().len(), 5, "{raw:#}");
    // Without always_scrape_classic_histograms the classic series are not kept.
    let classic = promflow.query_at("rpc_latency_seconds_count", last + 1_000);
    assert_eq!(classic["result"], serde_json::json!([]));

    // /federate in the text format leaves them out, as Prometheus does (see
    // `native_histograms_are_federated_in_protobuf_as_prometheus_does`).
    let federated = promflow.federate_body(&[r#"{job="app"}"#]);
    assert!(!federated.contains("rpc_latency_seconds"), "{federated}");

    // The WAL brings them back.
    let before: Vec<Value> = QUERIES
        .iter()
        .map(|(expr, _)| sorted(promflow.query_at(expr, last + 1_000)))
        .collect();
    drop(exporter);
    promflow.kill_and_restart();
    for ((expr, _), before) in QUERIES.iter().zip(&before) {
        let after = sorted(promflow.query_at(expr, last + 1_000));
        assert_eq!(&after, before, "{expr} after a restart");
    }

    // Blocks keep them: restarted with 30s blocks, promflow cuts the head (whose
    // newest samples, `up` and the scrape series, are minutes after the steps) into
    // blocks at startup, and answers as the oracle does from them.
    promflow.kill_and_restart_adding(&["--storage.tsdb.min-block-duration=30s"]);
    let blocks = promflow.dir().join("data/blocks");
    let with_histograms = std::fs::read_dir(&blocks)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("histograms.arrow").exists())
        .count();
    assert!(
        with_histograms > 0,
        "no block of {} holds histograms",
        blocks.display()
    );
    for at in [
        last + 1_000,
        last - 2 * STEP_MS + 500,
        base + 4 * STEP_MS + 10_000,
    ] {
        compare_instant(&promflow, &oracle, at);
    }
    for expr in [
        "rpc_latency_seconds",
        "histogram_count(rate(rpc_latency_seconds[1m]))",
    ] {
        let start = base + 500;
        let ours = sorted(query_range(&promflow, expr, start, last + 1_000, "10s"));
        let theirs = sorted(query_range(&oracle, expr, start, last + 1_000, "10s"));
        assert!(
            same(&ours, &theirs),
            "range {expr} from blocks:\npromflow: {ours:#}\noracle:   {theirs:#}"
        );
    }
    for ((expr, _), before) in QUERIES.iter().zip(&before) {
        let after = sorted(promflow.query_at(expr, last + 1_000));
        assert_eq!(&after, before, "{expr} from blocks");
    }
}

#[test]
fn always_scrape_classic_histograms_keeps_the_classic_series_too() {
    let ts = (now_ms() - 60_000) / 1000 * 1000;
    let exporter = Exporter::start(reply(1, ts));
    let promflow = Promflow::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    scrape_native_histograms: true\n    always_scrape_classic_histograms: true\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    ));
    let at = ts + 1_000;
    assert!(wait_until(WAIT, || {
        !promflow.query_at("rpc_latency_seconds", at)["result"]
            .as_array()
            .unwrap()
            .is_empty()
    }));
    // The native sample of both series, and the classic series of the one that has
    // classic buckets (count, sum, two buckets) and of the native-only one (count,
    // sum, +Inf), as Prometheus 3.x produces them with this setting.
    let classic = promflow.query_at(
        r#"{__name__=~"rpc_latency_seconds_(count|sum|bucket)"}"#,
        at,
    );
    assert_eq!(
        classic["result"].as_array().unwrap().len(),
        4 + 3,
        "{classic:#}"
    );
    let count = promflow.query_at(r#"rpc_latency_seconds_count{kind="both"}"#, at);
    let native = promflow.query_at(r#"histogram_count(rpc_latency_seconds{kind="both"})"#, at);
    assert_eq!(
        count["result"][0]["value"][1],
        native["result"][0]["value"][1]
    );
}

#[test]
fn a_vanished_histogram_series_goes_stale_as_in_prometheus() {
    // No explicit timestamps here: staleness applies.
    let untimed = |k: i64, with_histogram: bool| {
        let mut families = vec![protobuf::family(
            "steps_total",
            MetricType::Counter,
            None,
            vec![protobuf::counter(k as f64, None)],
        )];
        if with_histogram {
            families.push(protobuf::family(
                "rpc_latency_seconds",
                MetricType::Histogram,
                None,
                vec![Metric {
                    histogram: Some(histogram(k, false)),
                    ..Default::default()
                }],
            ));
        }
        protobuf::reply(&families)
    };
    let exporter = Exporter::start(untimed(1, true));
    let flags = ["--enable-feature=native-histograms"];
    let promflow = Promflow::start_with_args(&config(&exporter), &flags);
    let oracle = Prometheus::start_with_args(&config(&exporter), &flags);
    let present = |server: &Peer| {
        !server.query("histogram_count(rpc_latency_seconds)")["result"]
            .as_array()
            .unwrap()
            .is_empty()
    };
    assert!(
        wait_until(WAIT, || present(&promflow)),
        "promflow scraped it"
    );
    assert!(wait_until(WAIT, || present(&oracle)), "oracle scraped it");
    // `/federate` in the protobuf format holds it while it is live, as the oracle's:
    // the sum of its histogram there, and whether it is a float histogram.
    let federated_sum = |server: &Peer| -> Option<(f64, bool)> {
        let resp = common::http::send(
            "GET",
            &server.url(&http::with_query(
                "/federate",
                &[("match[]", "rpc_latency_seconds")],
            )),
            &[("Accept", protobuf::PROTOBUF)],
            None,
            &[],
        )
        .expect("GET /federate");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert!(
            resp.header("content-type")
                .is_some_and(|t| t.starts_with("application/vnd.google.protobuf")),
            "{resp:?}"
        );
        let mut body = &resp.body_bytes[..];
        let mut sum = None;
        while !body.is_empty() {
            let family = <MetricFamily as prost::Message>::decode_length_delimited(&mut body)
                .expect("a delimited MetricFamily");
            if family.name.as_deref() == Some("rpc_latency_seconds") {
                let h = family.metric[0].histogram.as_ref()?;
                sum = Some((h.sample_sum?, h.sample_count_float.is_some()));
            }
        }
        sum
    };
    // Prometheus sends a float histogram, promflow an integer one (the counts are
    // whole; a Prometheus 2.42 scraper reads float histograms as zero).
    let live = federated_sum(&oracle).expect("the oracle federates it");
    assert!(live.0.is_finite() && live.1, "oracle: {live:?}");
    assert_eq!(federated_sum(&promflow), Some((live.0, false)));
    exporter.set(untimed(2, false));
    assert!(wait_until(WAIT, || !present(&oracle)), "oracle: stale");
    assert!(wait_until(WAIT, || !present(&promflow)), "promflow: stale");
    // Once stale, promflow federates nothing of it, as for a float series. Prometheus
    // 2.42 still sends the series' stale marker, a histogram whose sum is the stale
    // NaN (its federation skips only float stale markers).
    assert_eq!(federated_sum(&promflow), None);
    let stale = federated_sum(&oracle);
    assert!(
        stale.is_some_and(|(sum, _)| sum.is_nan()),
        "oracle: {stale:?}"
    );
    // Both still hold the float beside it.
    for server in [&*promflow, &*oracle] {
        assert_eq!(
            server.query("steps_total")["result"][0]["value"][1],
            "2",
            "the float series stays"
        );
    }
}

/// A remote write `remote_write` entry sending native histograms to `url`.
fn remote_write_to(url: &str) -> String {
    format!(
        "remote_write:\n  - url: {url}\n    send_native_histograms: true\n    queue_config:\n      batch_send_deadline: 1s\n"
    )
}

/// The native histograms of `rpc_latency_seconds` in remote write or remote read
/// series, by their labels (sorted) and timestamp, reset hints left out (Prometheus
/// 2.42 sends the ones it scraped as "unknown"; promflow sends what it stored).
type SentHistograms =
    std::collections::BTreeMap<(Vec<(String, String)>, i64), promflow::remote::proto::Histogram>;

fn histograms_of(series: &[promflow::remote::proto::TimeSeries]) -> SentHistograms {
    let mut out = SentHistograms::new();
    for s in series {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        labels.sort();
        if !labels.contains(&("__name__".into(), "rpc_latency_seconds".into())) {
            continue;
        }
        for h in &s.histograms {
            let mut h = h.clone();
            h.reset_hint = 0;
            out.insert((labels.clone(), h.timestamp), h);
        }
    }
    out
}

/// Remote write both ways with the oracle, and remote read: a Prometheus 2.42 (the
/// oracle) scrapes the exporter and remote-writes to promflow (its receiver) and to a
/// capturing server; promflow scrapes the same exporter and remote-writes to a second
/// Prometheus 2.42 (`--web.enable-remote-write-receiver`). Then the receiving promflow
/// answers the queries as the oracle does, the receiving Prometheus answers exactly as
/// the oracle does (both 2.42), and promflow's remote read returns the histograms the
/// oracle sent it, as the oracle encoded them (integer histograms, deltas and spans).
#[test]
fn native_histograms_are_remote_written_and_read_as_prometheus_does() {
    use common::receiver::CaptureServer;
    use promflow::remote::proto::{self, LabelMatcher, Query, ReadRequest, ReadResponse};
    // Prometheus remote-writes only samples newer than its start: the steps are 2s
    // apart from after every server started, each exposed once its time has come.
    const STEP: i64 = 2_000;
    let steps = 7;
    let exporter = Exporter::start(protobuf::reply(&[]));
    let flags = ["--enable-feature=native-histograms"];
    let capture = CaptureServer::start();
    let receiver = Promflow::start_with_args(
        "scrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    );
    let oracle = Prometheus::start_with_args(
        &format!(
            "{}{}{}",
            config(&exporter),
            remote_write_to(&receiver.url("/api/v1/write")),
            remote_write_to(&capture.url("/api/v1/write")).replace("remote_write:\n", "")
        ),
        &flags,
    );
    let received_by_prometheus = Prometheus::start_with_args(
        "scrape_configs: []\n",
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    let sender = Promflow::start_with_args(
        &format!(
            "{}{}",
            config(&exporter),
            remote_write_to(&received_by_prometheus.url("/api/v1/write"))
        ),
        &flags,
    );
    let base = (now_ms() / 1000 + 1) * 1000;
    for k in 0..steps {
        let ts = base + k * STEP;
        while now_ms() <= ts {
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter.set(reply(k, ts));
        let stored = |server: &Peer| {
            server.query_at("timestamp(steps_total)", ts + 1_000)["result"][0]["value"][1]
                .as_str()
                .map(|v| v.parse::<f64>().unwrap() * 1000.0)
                == Some(ts as f64)
        };
        assert!(wait_until(WAIT, || stored(&sender)), "promflow step {k}");
        assert!(wait_until(WAIT, || stored(&oracle)), "oracle step {k}");
    }
    let last = base + (steps - 1) * STEP;
    // Both receivers have the last step's histograms once their count is the oracle's.
    let count = "histogram_count(rpc_latency_seconds)";
    let want = sorted(oracle.query_at(count, last + 1_000));
    assert_eq!(want["result"].as_array().unwrap().len(), 2, "{want:#}");
    for (name, server) in [
        ("promflow", &*receiver),
        ("prometheus", &*received_by_prometheus),
    ] {
        assert!(
            wait_until(WAIT, || same(
                &sorted(server.query_at(count, last + 1_000)),
                &want
            )),
            "{name} received the histograms: {:#}",
            server.query_at(count, last + 1_000)
        );
    }
    let times = [last + 1_000, last - 2 * STEP + 500, base + 4 * STEP + 1_000];
    // What promflow received answers as the oracle.
    for at in times {
        compare_instant(&receiver, &oracle, at);
    }
    // What promflow sent answers in a Prometheus 2.42 as in the oracle (both 2.42).
    for at in times {
        for (expr, _) in QUERIES {
            let ours = sorted(received_by_prometheus.query_at(expr, at));
            let theirs = sorted(oracle.query_at(expr, at));
            assert!(
                same(&ours, &theirs),
                "{expr} at {at} sent by promflow:\nreceiver: {ours:#}\noracle:   {theirs:#}"
            );
        }
    }
    for expr in [
        "rpc_latency_seconds",
        "histogram_sum(rate(rpc_latency_seconds[1m]))",
    ] {
        let start = base + 500;
        let theirs = sorted(query_range(&oracle, expr, start, last + 1_000, "1s"));
        for (name, server) in [
            ("promflow", &*receiver),
            ("prometheus", &*received_by_prometheus),
        ] {
            let ours = sorted(query_range(server, expr, start, last + 1_000, "1s"));
            assert!(
                same(&ours, &theirs),
                "range {expr} in {name}:\nreceiver: {ours:#}\noracle:   {theirs:#}"
            );
        }
    }

    // Remote read: the histograms the oracle sent, as it encoded them.
    let sent: Vec<proto::TimeSeries> = capture
        .requests()
        .iter()
        .flat_map(|r| {
            proto::decode::<proto::WriteRequest>(&r.body)
                .expect("a remote write request")
                .timeseries
        })
        .collect();
    let sent = histograms_of(&sent);
    assert_eq!(sent.len(), 2 * steps as usize, "{sent:#?}");
    let request = proto::encode(&ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: base,
            end_timestamp_ms: last,
            matchers: vec![LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "rpc_latency_seconds".into(),
            }],
            ..Query::default()
        }],
        accepted_response_types: vec![],
    });
    let resp = common::http::post(
        &receiver.url("/api/v1/read"),
        Some("application/x-protobuf"),
        &request,
    )
    .expect("POST /api/v1/read");
    assert_eq!(resp.status, 200, "{resp:?}");
    let read: ReadResponse = proto::decode(&resp.body_bytes).expect("a read response");
    let read = histograms_of(&read.results[0].timeseries);
    assert_eq!(read, sent);
}

/// `/federate` of native histograms: a Prometheus 2.42 with native histograms
/// enabled federates promflow (`honor_labels`; it asks for the protobuf format, the
/// only one that carries them) while promflow and the oracle scrape the exporter; the
/// federating Prometheus then answers every query exactly as the oracle does (both
/// 2.42). The text form, asked without protobuf in `Accept`, still leaves them out.
#[test]
fn native_histograms_are_federated_in_protobuf_as_prometheus_does() {
    let steps = 7;
    // Within the lookback delta of now, so that every step is federated.
    let base = (now_ms() - 150_000) / STEP_MS * STEP_MS;
    let exporter = Exporter::start(reply(0, base));
    let flags = ["--enable-feature=native-histograms"];
    let promflow = Promflow::start_with_args(&config(&exporter), &flags);
    let oracle = Prometheus::start_with_args(&config(&exporter), &flags);
    let federator = federating(&promflow, &flags);
    for k in 0..steps {
        let ts = base + k * STEP_MS;
        exporter.set(reply(k, ts));
        let stored = |server: &Peer| {
            server.query_at("timestamp(steps_total)", ts + 1_000)["result"][0]["value"][1]
                .as_str()
                .map(|v| v.parse::<f64>().unwrap() * 1000.0)
                == Some(ts as f64)
        };
        assert!(wait_until(WAIT, || stored(&promflow)), "promflow step {k}");
        assert!(wait_until(WAIT, || stored(&oracle)), "oracle step {k}");
        // The federator has step k once its histogram counts are the oracle's.
        let counts = |server: &Peer| {
            sorted(server.query_at("histogram_count(rpc_latency_seconds)", ts + 1_000))
        };
        assert!(
            wait_until(WAIT, || same(&counts(&federator), &counts(&oracle))),
            "federator step {k}: {:#}",
            counts(&federator)
        );
    }
    let last = base + (steps - 1) * STEP_MS;
    for at in [
        last + 1_000,
        last - 2 * STEP_MS + 500,
        base + 4 * STEP_MS + 10_000,
    ] {
        // (`steps_total`, exposed with timestamps minutes old, reaches the dataflow's
        // latest-sample table late or not at all: federation of such floats is
        // another matter.)
        for (expr, _) in QUERIES.iter().filter(|(e, _)| *e != "steps_total") {
            let ours = sorted(federator.query_at(expr, at));
            let theirs = sorted(oracle.query_at(expr, at));
            assert!(
                !theirs["result"].as_array().unwrap().is_empty(),
                "{expr}: empty"
            );
            assert!(
                same(&ours, &theirs),
                "{expr} at {at} federated:\nfederator: {ours:#}\noracle:    {theirs:#}"
            );
        }
    }
    let federated = promflow.federate_body(&[r#"{job="app"}"#]);
    assert!(federated.contains("# TYPE up untyped"), "{federated}");
    assert!(!federated.contains("rpc_latency_seconds"), "{federated}");
}

/// Rules over native histograms, evaluated by the dataflow (ingest feeds it the
/// histograms): an alert and recording rules whose results are floats read from
/// histograms, and an alert whose result is the histograms themselves (its value is
/// 0, as Prometheus 2.42 takes a histogram sample's float value). The histograms do
/// not change, so every evaluation of both servers gives the same numbers.
#[test]
fn rules_over_native_histograms_alert_and_record_as_prometheus_does() {
    let steady = protobuf::family(
        "rpc_latency_seconds",
        MetricType::Histogram,
        None,
        vec![Metric {
            label: vec![label("kind", "native")],
            histogram: Some(histogram(2, false)),
            ..Default::default()
        }],
    );
    let exporter = Exporter::start(protobuf::reply(&[steady]));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: latency\n    rules:\n\
         \x20     - record: rpc:count\n        expr: histogram_count(rpc_latency_seconds)\n\
         \x20     - record: rpc:p90\n        expr: histogram_quantile(0.9, sum by (kind) (rpc_latency_seconds))\n\
         \x20     - alert: ManyRequests\n        expr: histogram_sum(rpc_latency_seconds) > 10\n        annotations:\n          value: '{{ $value }}'\n\
         \x20     - alert: AnyHistogram\n        expr: rpc_latency_seconds\n        annotations:\n          value: '{{ $value }}'\n",
    )
    .unwrap();
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    );
    let flags = ["--enable-feature=native-histograms"];
    let promflow = Promflow::start_with_args(&yaml, &flags);
    let oracle = Prometheus::start_with_args(&yaml, &flags);
    let firing = |server: &Peer| -> Vec<Value> {
        let body: Value = serde_json::from_str(&server.get("/api/v1/alerts").body).unwrap();
        let mut alerts: Vec<Value> = body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                serde_json::json!({
                    "labels": a["labels"],
                    "annotations": a["annotations"],
                    "state": a["state"],
                    "value": a["value"],
                })
            })
            .collect();
        alerts.sort_by_key(|a| a["labels"].to_string());
        alerts
    };
    let recorded = |server: &Peer, name: &str| server.query(name)["result"].clone();
    for (who, server) in [("promflow", &*promflow), ("oracle", &*oracle)] {
        assert!(
            wait_until(WAIT, || firing(server).len() == 2
                && recorded(server, "rpc:p90")
                    .as_array()
                    .is_some_and(|r| !r.is_empty())),
            "{who}: {:?}\n{}",
            firing(server),
            server.log()
        );
    }
    assert_eq!(firing(&promflow), firing(&oracle));
    for name in ["rpc:count", "rpc:p90"] {
        let values = |server: &Peer| -> Vec<(Value, Value)> {
            let mut v: Vec<(Value, Value)> = recorded(server, name)
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["metric"].clone(), r["value"][1].clone()))
                .collect();
            v.sort_by_key(|(m, _)| m.to_string());
            v
        };
        let (ours, theirs) = (values(&promflow), values(&oracle));
        if name == "rpc:p90" {
            // 3.x interpolates within an exponential bucket exponentially (see
            // `exponential_from_linear`): only the series are compared.
            let series = |v: &[(Value, Value)]| v.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
            assert_eq!(series(&ours), series(&theirs), "{name}");
        } else {
            assert_eq!(ours, theirs, "{name}");
        }
    }
}

/// Recording rules whose result is native histograms record them, as Prometheus
/// does: a plain copy of the scraped histograms, their `sum by`, and
/// `sum(rate(…[1m]))` (the histograms are steady, so every evaluation of both servers
/// gives the same histograms, the rate's all zero counts). The recorded series answer
/// `/api/v1/query` (the histograms themselves, and `histogram_quantile`,
/// `histogram_count` over them) as the oracle's do, `/federate` serves them and
/// remote write sends them (to a Prometheus 2.42) as the oracle's, other rules read
/// them, and once the scraped histograms vanish both write stale markers for the
/// recorded series (they leave the answers within the lookback delta). The rules over
/// scraped series
/// are evaluated by the dataflow, those reading rule outputs over storage
/// (`rpc:copy:again` records histograms from there); with `--rules.evaluation`
/// `interval` and `on-arrival` (where the dataflow delivers changes).
#[test]
fn recording_rules_whose_result_is_histograms_record_them_as_prometheus_does() {
    record_histograms_as_prometheus_does("interval");
}

/// [`recording_rules_whose_result_is_histograms_record_them_as_prometheus_does`] with
/// `--rules.evaluation=on-arrival`.
#[test]
fn recording_rules_on_arrival_record_histograms_as_prometheus_does() {
    record_histograms_as_prometheus_does("on-arrival");
}

fn record_histograms_as_prometheus_does(mode: &str) {
    let body = |with_histograms: bool| {
        let metric = |kind: &str, k: i64| Metric {
            label: vec![label("kind", kind)],
            histogram: Some(histogram(k, false)),
            ..Default::default()
        };
        let mut families = vec![protobuf::family(
            "steps_total",
            MetricType::Counter,
            None,
            vec![protobuf::counter(1.0, None)],
        )];
        if with_histograms {
            families.push(protobuf::family(
                "rpc_latency_seconds",
                MetricType::Histogram,
                None,
                vec![metric("a", 1), metric("b", 3)],
            ));
        }
        protobuf::reply(&families)
    };
    let exporter = Exporter::start(body(true));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: latency\n    rules:\n\
         \x20     - record: rpc:copy\n        expr: rpc_latency_seconds\n\
         \x20     - record: rpc:sum\n        expr: sum by (kind) (rpc_latency_seconds)\n\
         \x20     - record: rpc:rate\n        expr: sum(rate(rpc_latency_seconds[1m]))\n\
         \x20     - record: rpc:copy:count\n        expr: histogram_count(rpc:copy)\n\
         \x20     - record: rpc:copy:again\n        expr: rpc:copy\n",
    )
    .unwrap();
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    );
    let flags = ["--enable-feature=native-histograms"];
    let evaluation = format!("--rules.evaluation={mode}");
    // promflow remote-writes what it records to a Prometheus 2.42.
    let received = Prometheus::start_with_args(
        "scrape_configs: []\n",
        &["--web.enable-remote-write-receiver", flags[0]],
    );
    let promflow = Promflow::start_with_args(
        &format!("{yaml}{}", remote_write_to(&received.url("/api/v1/write"))),
        &[flags[0], &evaluation],
    );
    let oracle = Prometheus::start_with_args(&yaml, &flags);
    let recorded = |server: &Peer, name: &str| {
        server.query(name)["result"]
            .as_array()
            .map_or(0, |r| r.len())
    };
    for (who, server) in [("promflow", &*promflow), ("oracle", &*oracle)] {
        assert!(
            wait_until(WAIT, || recorded(server, "rpc:rate") == 1
                && recorded(server, "rpc:copy:count") == 2
                && recorded(server, "rpc:copy:again") == 2),
            "{mode}: {who}: {}\n{}\n{}",
            server.query("{__name__=~\"rpc:.*\"}"),
            server.get("/api/v1/rules").body,
            server.log()
        );
    }
    let queries: &[(&str, Option<&str>)] = &[
        ("rpc:copy", None),
        ("rpc:sum", None),
        ("rpc:rate", None),
        ("rpc:copy:count", None),
        ("rpc:copy:again", None),
        ("histogram_count(rpc:sum)", None),
        ("histogram_sum(rpc:copy)", None),
        ("histogram_quantile(0.9, rpc:copy)", Some("rpc:copy")),
        ("histogram_quantile(0.5, rpc:sum)", Some("rpc:sum")),
    ];
    let at = now_ms();
    for (expr, histograms) in queries {
        let ours = sorted(promflow.query_at(expr, at));
        let theirs = oracle_answer(&oracle, expr, *histograms, at);
        assert!(
            !theirs["result"].as_array().unwrap().is_empty(),
            "{expr}: empty"
        );
        assert!(
            same(&ours, &theirs),
            "{mode}: {expr} at {at}:\npromflow: {ours:#}\noracle:   {theirs:#}"
        );
    }
    // `/federate` in the protobuf format serves the recorded histograms as the
    // oracle's (its count and sum per series; the oracle sends float histograms).
    let federated = |server: &Peer| -> Vec<(Vec<String>, f64, f64)> {
        let resp = common::http::send(
            "GET",
            &server.url(&http::with_query("/federate", &[("match[]", "rpc:copy")])),
            &[("Accept", protobuf::PROTOBUF)],
            None,
            &[],
        )
        .expect("GET /federate");
        assert_eq!(resp.status, 200, "{resp:?}");
        let mut body = &resp.body_bytes[..];
        let mut out = Vec::new();
        while !body.is_empty() {
            let family = <MetricFamily as prost::Message>::decode_length_delimited(&mut body)
                .expect("a delimited MetricFamily");
            for m in family
                .metric
                .iter()
                .filter(|_| family.name.as_deref() == Some("rpc:copy"))
            {
                let Some(h) = &m.histogram else { continue };
                let labels = m
                    .label
                    .iter()
                    .map(|l| format!("{:?}={:?}", l.name, l.value));
                let count = h.sample_count_float.unwrap_or(h.sample_count() as f64);
                out.push((labels.collect::<Vec<String>>(), count, h.sample_sum()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let theirs = federated(&oracle);
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(federated(&promflow), theirs, "{mode}: /federate");
    // The Prometheus promflow remote-writes to holds the recorded histograms.
    for name in ["rpc:copy", "rpc:sum", "rpc:rate"] {
        let theirs = sorted(oracle.query_at(name, at));
        assert!(
            wait_until(WAIT, || same(&sorted(received.query_at(name, at)), &theirs)),
            "{mode}: {name} remote-written: {:#}\noracle: {theirs:#}",
            received.query_at(name, at)
        );
    }
    // The histograms vanish: both write stale markers for the recorded series.
    exporter.set(body(false));
    for (who, server) in [("promflow", &*promflow), ("oracle", &*oracle)] {
        for name in ["rpc:copy", "rpc:sum", "rpc:copy:count", "rpc:copy:again"] {
            assert!(
                wait_until(WAIT, || recorded(server, name) == 0),
                "{mode}: {who}: {name} stays: {}",
                server.query(name)
            );
        }
    }
}

/// A recorded `sum(rate(…[1m]))` of changing histograms: the exporter exposes two
/// histograms of one series with explicit timestamps 1s apart (a float exposed 8s in
/// the past first, so promflow's watermark is held back for the target before they
/// come: not late for the dataflow) and then nothing new, so every evaluation from
/// 1.1s after the second until 58.9s after the first sees the same two samples with
/// the same extrapolation: the same histograms, whenever each server evaluates. The
/// recorded rate (non-zero) and `histogram_quantile`/`histogram_count` over it answer
/// as the oracle's.
#[test]
fn a_recorded_rate_of_changing_histograms_is_the_oracles() {
    let body = |warm_ms: i64, steps: &[(i64, i64)]| {
        let mut families = vec![protobuf::family(
            "steps_total",
            MetricType::Counter,
            None,
            vec![protobuf::counter(1.0, Some(warm_ms))],
        )];
        if let Some(&(k, ts)) = steps.last() {
            families.push(protobuf::family(
                "rpc_latency_seconds",
                MetricType::Histogram,
                None,
                vec![Metric {
                    label: vec![label("kind", "a")],
                    histogram: Some(histogram(k, false)),
                    timestamp_ms: Some(ts),
                    ..Default::default()
                }],
            ));
        }
        protobuf::reply(&families)
    };
    let warm = now_ms() - 8_000;
    let exporter = Exporter::start(body(warm, &[]));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: latency\n    rules:\n\
         \x20     - record: rpc:rate\n        expr: sum(rate(rpc_latency_seconds[1m]))\n",
    )
    .unwrap();
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    );
    let flags = ["--enable-feature=native-histograms"];
    let promflow = Promflow::start_with_args(&yaml, &flags);
    let oracle = Prometheus::start_with_args(&yaml, &flags);
    for (who, server) in [("promflow", &*promflow), ("oracle", &*oracle)] {
        assert!(
            wait_until(WAIT, || server.stored_at("steps_total", warm)),
            "{who}: warm-up"
        );
    }
    // promflow's watermark stands still until it is the hold-back behind the clock.
    std::thread::sleep(Duration::from_secs(10));
    let t0 = now_ms() - 6_000;
    let steps = [(1, t0), (2, t0 + 1_000)];
    for i in 0..steps.len() {
        let (k, ts) = steps[i];
        exporter.set(body(warm, &steps[..=i]));
        let want = histogram(k, false).sample_count.unwrap().to_string();
        for (who, server) in [("promflow", &*promflow), ("oracle", &*oracle)] {
            let count = |at| {
                server.query_at("histogram_count(rpc_latency_seconds)", at)["result"][0]["value"][1]
                    .clone()
            };
            assert!(
                wait_until(WAIT, || count(ts + 500) == want.as_str()),
                "{who}: step {k}: {}",
                count(ts + 500)
            );
        }
    }
    let (_, t1) = steps[1];
    // Evaluations before t1 + 1.1s extrapolate differently: read the recorded series
    // where both servers' newest evaluation is well past that.
    let at = t1 + 15_000;
    std::thread::sleep(Duration::from_millis((at - now_ms()).max(0) as u64));
    // Recorded, non-zero, and its newest evaluation before `at` is past t1 + 1.1s (an
    // evaluation of promflow's dataflow lags its clock by the hold-back).
    let counted = |server: &Peer| {
        let newest = server.query_at("rpc:rate[30s]", at)["result"][0]["histograms"]
            .as_array()
            .and_then(|h| h.last()?[0].as_f64());
        newest.is_some_and(|t| t * 1000.0 >= (t1 + 2_000) as f64)
            && server.query_at("histogram_count(rpc:rate)", at)["result"][0]["value"][1]
                .as_str()
                .is_some_and(|v| v != "0")
    };
    for (who, server) in [("promflow", &*promflow), ("oracle", &*oracle)] {
        assert!(
            wait_until(WAIT, || counted(server)),
            "{who}: {}\n{}",
            server.query_at("rpc:rate", at),
            server.log()
        );
    }
    assert!(at < t0 + 58_000, "the window moved past the first sample");
    let queries: &[(&str, Option<&str>)] = &[
        ("rpc:rate", None),
        ("histogram_count(rpc:rate)", None),
        ("histogram_sum(rpc:rate)", None),
        ("histogram_quantile(0.9, rpc:rate)", Some("rpc:rate")),
    ];
    for (expr, histograms) in queries {
        let ours = sorted(promflow.query_at(expr, at));
        let theirs = oracle_answer(&oracle, expr, *histograms, at);
        assert!(
            same(&ours, &theirs),
            "{expr} at {at}:\npromflow: {ours:#}\noracle:   {theirs:#}"
        );
    }
}

/// The service of `tests/clients/latency_exporter` (the real Go client,
/// client_golang, with native buckets), built with Debian's Go and client packages
/// into the test's target directory, running on 127.0.0.1 until dropped.
struct GoClient {
    child: std::process::Child,
    addr: String,
}

impl GoClient {
    fn start() -> GoClient {
        common::require_peer("/usr/bin/go", "golang-go");
        common::require_peer(
            "/usr/share/gocode/src/github.com/prometheus/client_golang/prometheus/histogram.go",
            "golang-github-prometheus-client-golang-dev",
        );
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let bin = out.join("latency_exporter");
        let mut build = std::process::Command::new("/usr/bin/go");
        build
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(common::repo_root().join("tests/clients/latency_exporter"))
            // Debian's packaged Go libraries, GOPATH mode: nothing is downloaded.
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", out.join("gocache"))
            .env("GOFLAGS", "");
        let built = common::run_command(build, None, Duration::from_secs(600));
        assert!(
            built.status.success(),
            "go build: {}",
            common::combined_output(&built)
        );
        let mut child = std::process::Command::new(&bin)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start latency_exporter");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .expect("latency_exporter's address");
        GoClient {
            child,
            addr: line.trim().to_string(),
        }
    }

    fn get(&self, path_and_query: &str) {
        let url = format!("http://{}{path_and_query}", self.addr);
        let resp = http::get(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(resp.status, 200, "{url}: {}", resp.body);
    }

    fn observe(&self, handler: &str, value: f64, n: u32) {
        self.get(&format!("/observe?handler={handler}&value={value}&n={n}"));
    }
}

impl Drop for GoClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The issue's bar: a latency metric with native buckets from a real client library
/// (Prometheus's Go client, served by promhttp in the protobuf format it negotiates)
/// is scraped and stored by promflow as by Prometheus 2.42: the same histograms
/// (schema, zero bucket, positive and negative buckets), `histogram_count`/`_sum`,
/// `histogram_quantile` of the histograms and of their rate (the rate's scale
/// depends on each server's scrape times, its quantiles do not), and a Prometheus
/// federating promflow gets the same histograms as the oracle scraped itself. No
/// explicit timestamps here: each step's state is read once both have scraped it.
#[test]
fn a_go_client_latency_histogram_is_scraped_queried_and_federated_as_prometheus_does() {
    let client = GoClient::start();
    let observe_step = |k: u32| {
        // Latencies over four decades, a zero bucket (0), negative drift (clock
        // skew corrections), more of them each step.
        for (handler, value, n) in [
            ("api", 0.003, 5 + k),
            ("api", 0.07, 2 * k),
            ("api", 1.7, 1),
            ("static", 0.0, 3),
            ("static", 0.000_4, 4 * k + 1),
            ("drift", -0.25, k + 1),
            ("drift", 12.0, 1),
        ] {
            client.observe(handler, value, n);
        }
        client.get("/step");
    };
    observe_step(0);
    let flags = ["--enable-feature=native-histograms"];
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        client.addr
    );
    let promflow = Promflow::start_with_args(&config, &flags);
    let oracle = Prometheus::start_with_args(&config, &flags);
    let federator = federating(&promflow, &flags);
    let steps_seen = |server: &Peer, k: u32| {
        server.query("steps_total")["result"][0]["value"][1].as_str() == Some(&k.to_string())
    };
    // Both read at one time: the answers hold their evaluation time.
    let counts = |server: &Peer, at: i64| {
        sorted(server.query_at("histogram_count(http_request_duration_seconds)", at))
    };
    for k in 1..=4 {
        // Both hold the state of step k - 1 before step k changes it.
        assert!(
            wait_until(WAIT, || steps_seen(&promflow, k)),
            "promflow step {k}"
        );
        assert!(
            wait_until(WAIT, || steps_seen(&oracle, k)),
            "oracle step {k}"
        );
        let mut at = now_ms();
        assert!(
            wait_until(WAIT, || {
                at = now_ms();
                same(&counts(&federator, at), &counts(&oracle, at))
            }),
            "federator step {k}: {:#} against {:#}",
            counts(&federator, at),
            counts(&oracle, at)
        );
        observe_step(k);
    }
    assert!(
        wait_until(WAIT, || steps_seen(&promflow, 5)),
        "promflow last step"
    );
    assert!(
        wait_until(WAIT, || steps_seen(&oracle, 5)),
        "oracle last step"
    );
    // Two more scrapes each: every server's newest sample is the final state.
    std::thread::sleep(Duration::from_millis(2_500));
    let at = now_ms();
    let queries: &[(&str, Option<&str>)] = &[
        ("http_request_duration_seconds", None),
        ("histogram_count(http_request_duration_seconds)", None),
        ("histogram_sum(http_request_duration_seconds)", None),
        (
            "histogram_quantile(0.5, http_request_duration_seconds)",
            Some("http_request_duration_seconds"),
        ),
        (
            "histogram_quantile(0.99, http_request_duration_seconds)",
            Some("http_request_duration_seconds"),
        ),
        (
            "histogram_quantile(0.9, rate(http_request_duration_seconds[1h]))",
            Some("rate(http_request_duration_seconds[1h])"),
        ),
        (
            "histogram_quantile(0.9, sum(http_request_duration_seconds))",
            Some("sum(http_request_duration_seconds)"),
        ),
        ("count(http_request_duration_seconds_bucket)", None),
    ];
    for (expr, histograms) in queries {
        let ours = sorted(promflow.query_at(expr, at));
        let theirs = oracle_answer(&oracle, expr, *histograms, at);
        assert!(
            same(&ours, &theirs),
            "{expr}:\npromflow: {ours:#}\noracle:   {theirs:#}"
        );
        let federated = oracle_answer(&federator, expr, *histograms, at);
        let direct = theirs;
        if !expr.starts_with("count(") && !expr.contains("rate(") {
            assert!(
                !direct["result"].as_array().unwrap().is_empty(),
                "{expr}: empty"
            );
            assert!(
                same(&federated, &direct),
                "{expr} federated:\nfederator: {federated:#}\noracle:    {direct:#}"
            );
        }
    }
    // The histograms really are native ones with buckets on both sides of zero.
    let raw = promflow.query_at(r#"http_request_duration_seconds{handler="drift"}"#, at);
    let buckets = &raw["result"][0]["histogram"][1]["buckets"];
    assert!(buckets.as_array().is_some_and(|b| b.len() >= 2), "{raw:#}");
}

/// The classic histogram `req_seconds` (two label sets; counts times `times`) and a
/// gauge whose name ends in `_count` beside it, in the text format with explicit
/// timestamps.
fn classic_text(ts: i64, times: i64) -> String {
    let mut body = String::from("# HELP req_seconds Requests.\n# TYPE req_seconds histogram\n");
    for (path, buckets, sum) in [("/a", [3, 8, 12, 15], 9.5), ("/b", [1, 1, 6, 10], 20.25)] {
        let buckets = buckets.map(|n| n * times);
        for (le, n) in ["0.1", "0.5", "1", "+Inf"].iter().zip(buckets) {
            body.push_str(&format!(
                "req_seconds_bucket{{path=\"{path}\",le=\"{le}\"}} {n} {ts}\n"
            ));
        }
        body.push_str(&format!("req_seconds_sum{{path=\"{path}\"}} {sum} {ts}\n"));
        body.push_str(&format!(
            "req_seconds_count{{path=\"{path}\"}} {} {ts}\n",
            buckets[3]
        ));
    }
    body.push_str(&format!(
        "# TYPE jobs_count gauge\njobs_count 4 {ts}\n# TYPE steps_total counter\nsteps_total 1 {ts}\n"
    ));
    body
}

/// The same histogram as a protobuf family with classic buckets only.
fn classic_protobuf(ts: i64) -> Reply {
    let metric = |path: &str, buckets: [u64; 3], count: u64, sum: f64| Metric {
        label: vec![label("path", path)],
        histogram: Some(Histogram {
            sample_count: Some(count),
            sample_sum: Some(sum),
            bucket: [0.1, 0.5, 1.0]
                .iter()
                .zip(buckets)
                .map(|(&le, n)| Bucket {
                    cumulative_count: Some(n),
                    upper_bound: Some(le),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        timestamp_ms: Some(ts),
        ..Default::default()
    };
    protobuf::reply(&[
        protobuf::family(
            "req_seconds",
            MetricType::Histogram,
            Some("Requests."),
            vec![
                metric("/a", [3, 8, 12], 15, 9.5),
                metric("/b", [1, 1, 6], 10, 20.25),
            ],
        ),
        protobuf::family(
            "steps_total",
            MetricType::Counter,
            Some("A float beside the histogram."),
            vec![protobuf::counter(1.0, Some(ts))],
        ),
    ])
}

/// `convert_classic_histograms_to_nhcb` (Prometheus 3.x's scrape setting, which 2.42
/// lacks): each classic histogram scraped (text or protobuf without a native part)
/// is also one native histogram with custom buckets of the series named without
/// suffix; its classic series are kept only with `always_scrape_classic_histograms`.
/// The expectations come from Prometheus 2.42 scraping the same targets: the NHCB's
/// bucket counts are the oracle's classic buckets de-cumulated (bounds = the `le`s),
/// its count and sum the oracle's `_count` and `_sum`, and `histogram_quantile` over it
/// equals the oracle's `histogram_quantile` over the classic buckets.
#[test]
fn classic_histograms_are_converted_to_nhcb_as_prometheus_3_does() {
    let ts = (now_ms() - 60_000) / 1000 * 1000;
    let text = Exporter::start(Reply::text(&classic_text(ts, 1)));
    let proto = Exporter::start(classic_protobuf(ts));
    let jobs = |extra: &str| {
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: text\n{extra}    static_configs:\n      - targets: ['{}']\n  - job_name: proto\n{extra}    static_configs:\n      - targets: ['{}']\n",
            text.addr(),
            proto.addr()
        )
    };
    let promflow = Promflow::start(&jobs("    convert_classic_histograms_to_nhcb: true\n"));
    let keeping = Promflow::start(&jobs(
        "    convert_classic_histograms_to_nhcb: true\n    always_scrape_classic_histograms: true\n",
    ));
    let oracle = Prometheus::start_with_args(&jobs(""), &["--enable-feature=native-histograms"]);
    let servers: [&Peer; 3] = [&promflow, &keeping, &oracle];
    for server in servers {
        for job in ["text", "proto"] {
            let selector = format!("steps_total{{job=\"{job}\"}}");
            assert!(
                wait_until(WAIT, || server.stored_at(&selector, ts)),
                "{job}"
            );
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let at = ts + 1_000;
    let num = |v: &Value| -> f64 { v.as_str().unwrap().parse().unwrap() };
    let one = |server: &Peer, expr: &str| -> f64 {
        let data = server.query_at(expr, at);
        assert_eq!(
            data["result"].as_array().unwrap().len(),
            1,
            "{expr}: {data:#}"
        );
        num(&data["result"][0]["value"][1])
    };
    for job in ["text", "proto"] {
        for path in ["/a", "/b"] {
            let sel = format!("job=\"{job}\",path=\"{path}\"");
            // The oracle's classic buckets, de-cumulated.
            let buckets = oracle.query_at(&format!("req_seconds_bucket{{{sel}}}"), at);
            let mut cumulative: Vec<(f64, f64)> = buckets["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let le = r["metric"]["le"].as_str().unwrap();
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    (le, num(&r["value"][1]))
                })
                .collect();
            cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(cumulative.len(), 4, "{job} {path}: {buckets:#}");
            let mut want = Vec::new();
            let (mut lower, mut below) = (f64::NEG_INFINITY, 0.0);
            for (le, n) in cumulative {
                if n > below {
                    want.push((lower, le, n - below));
                }
                (lower, below) = (le, n);
            }
            let data = promflow.query_at(&format!("req_seconds{{{sel}}}"), at);
            let h = &data["result"][0]["histogram"][1];
            let got: Vec<(f64, f64, f64)> = h["buckets"]
                .as_array()
                .unwrap_or_else(|| panic!("{job} {path}: {data:#}"))
                .iter()
                .map(|b| (num(&b[1]), num(&b[2]), num(&b[3])))
                .collect();
            assert_eq!(got, want, "{job} {path}");
            let count = one(&oracle, &format!("req_seconds_count{{{sel}}}"));
            let sum = one(&oracle, &format!("req_seconds_sum{{{sel}}}"));
            assert_eq!(num(&h["count"]), count, "{job} {path}");
            assert_eq!(num(&h["sum"]), sum, "{job} {path}");
            for q in [0.1, 0.25, 0.5, 0.75, 0.9, 0.99] {
                let ours = one(
                    &promflow,
                    &format!("histogram_quantile({q}, req_seconds{{{sel}}})"),
                );
                let theirs = one(
                    &oracle,
                    &format!("histogram_quantile({q}, req_seconds_bucket{{{sel}}})"),
                );
                assert!(
                    (ours - theirs).abs() <= 1e-12 * theirs.abs().max(1.0),
                    "{job} {path} q={q}: {ours} vs {theirs}"
                );
            }
            // The same in the promflow that keeps the classic series too.
            let kept = keeping.query_at(&format!("histogram_count(req_seconds{{{sel}}})"), at);
            assert_eq!(num(&kept["result"][0]["value"][1]), count);
        }
        // Without always_scrape_classic_histograms no classic series; with it, the
        // oracle's; the gauge named `…_count` stays a float series.
        let classic = format!("{{__name__=~\"req_seconds_(bucket|count|sum)\",job=\"{job}\"}}");
        let none = promflow.query_at(&classic, at);
        assert_eq!(none["result"], serde_json::json!([]), "{job}: {none:#}");
        let ours = sorted(keeping.query_at(&classic, at));
        let theirs = sorted(oracle.query_at(&classic, at));
        assert!(same(&ours, &theirs), "{job}: {ours:#} vs {theirs:#}");
        assert_eq!(ours["result"].as_array().unwrap().len(), 12, "{job}");
    }
    let gauge = promflow.query_at(r#"jobs_count{job="text"}"#, at);
    assert_eq!(gauge["result"][0]["value"][1], "4", "{gauge:#}");

    // A later scrape (the series now known to the scrape cache) converts again.
    let ts2 = ts + 15_000;
    text.set(Reply::text(&classic_text(ts2, 2)));
    for server in [&*promflow, &*keeping] {
        assert!(wait_until(WAIT, || server.stored_at(r#"steps_total{job="text"}"#, ts2)));
    }
    std::thread::sleep(Duration::from_secs(2));
    for (server, expr) in [
        (
            &*promflow,
            r#"histogram_count(req_seconds{job="text",path="/a"})"#,
        ),
        (
            &*keeping,
            r#"histogram_count(req_seconds{job="text",path="/a"})"#,
        ),
        (&*keeping, r#"req_seconds_count{job="text",path="/a"}"#),
    ] {
        let data = server.query_at(expr, ts2 + 1_000);
        assert_eq!(data["result"][0]["value"][1], "30", "{expr}: {data:#}");
    }
}

/// `/federate` of NHCB (`convert_classic_histograms_to_nhcb`): Prometheus 3.7 serves
/// one as the classic histogram it stands for (`makeClassicHistogram`,
/// web/federate.go), 2.42 has no NHCB at all. The oracle is a Prometheus 2.42 scraping
/// the classic histogram directly, in protobuf as the federator reads it (its `le`
/// labels are the protobuf parser's, `1.0` where the text has `1`); a Prometheus 2.42
/// federating promflow (protobuf, native histograms enabled) must then hold the same
/// `_bucket`, `_sum` and `_count` series at the same timestamps.
#[test]
fn an_nhcb_is_federated_as_its_classic_histogram_as_prometheus_3_7_does() {
    let ts = (now_ms() - 60_000) / 1000 * 1000;
    let text = Exporter::start(classic_protobuf(ts));
    let job = |extra: &str| {
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: text\n{extra}    static_configs:\n      - targets: ['{}']\n",
            text.addr()
        )
    };
    let flags = ["--enable-feature=native-histograms"];
    let promflow = Promflow::start(&job("    convert_classic_histograms_to_nhcb: true\n"));
    let oracle = Prometheus::start_with_args(&job(""), &flags);
    let federator = Prometheus::start_with_args(
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['{{__name__=\"req_seconds\"}}']\n    static_configs:\n      - targets: ['{}']\n",
            promflow.addr()
        ),
        &flags,
    );
    let at = ts + 1_000;
    let classic = r#"{__name__=~"req_seconds_(bucket|count|sum)"}"#;
    assert!(wait_until(WAIT, || oracle
        .stored_at(r#"req_seconds_count{path="/a"}"#, ts)));
    assert!(
        wait_until(WAIT, || {
            federator.query_at(classic, at)["result"]
                .as_array()
                .is_some_and(|r| r.len() == 12)
        }),
        "{:#}",
        federator.query_at(classic, at)
    );
    // Every sample stored, with its timestamp.
    let raw = format!("{classic}[1m]");
    let ours = sorted(federator.query_at(&raw, at));
    let theirs = sorted(oracle.query_at(&raw, at));
    assert_eq!(ours, theirs, "federated: {ours:#}\noracle: {theirs:#}");
}

/// The push stream (`/api/v1/stream`) carries scraped native histograms, in its
/// snapshot and as changes, each as the query API shows it; the oracle is a
/// Prometheus 2.42 scraping the same exporter (no exposed timestamps: the samples
/// reach the dataflow's latest-sample table as scraped), queried for the same
/// histograms. The text `/federate` still leaves them out.
#[test]
fn the_push_stream_carries_native_histograms_as_the_query_api_shows_them() {
    let body = |k: i64| {
        let metric = |kind: &str| Metric {
            label: vec![label("kind", kind)],
            histogram: Some(histogram(k, false)),
            ..Default::default()
        };
        protobuf::reply(&[protobuf::family(
            "rpc_latency_seconds",
            MetricType::Histogram,
            None,
            vec![metric("a"), metric("b")],
        )])
    };
    let exporter = Exporter::start(body(0));
    let flags = ["--enable-feature=native-histograms"];
    let promflow = Promflow::start_with_args(&config(&exporter), &flags);
    let oracle = Prometheus::start_with_args(&config(&exporter), &flags);
    let count = |server: &Peer, want: f64| {
        server.query("histogram_count(rpc_latency_seconds)")["result"]
            .as_array()
            .is_some_and(|r| {
                r.len() == 2
                    && r.iter()
                        .all(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()) == Some(want))
            })
    };
    let counts = |k: i64| histogram(k, false).sample_count.unwrap() as f64;
    assert!(wait_until(WAIT, || count(&promflow, counts(0))));
    assert!(wait_until(WAIT, || count(&oracle, counts(0))));
    let theirs = |kind: &str| -> Value {
        let data = oracle.query(&format!("rpc_latency_seconds{{kind=\"{kind}\"}}"));
        data["result"][0]["histogram"][1].clone()
    };
    let mut client = common::stream_client::StreamClient::open(
        &promflow,
        r#"{__name__="rpc_latency_seconds"}"#,
        "application/x-ndjson",
    );
    let mut snapshot = Vec::new();
    loop {
        let e = client.next_event().expect("snapshot");
        if e["type"] == "snapshot_end" {
            break;
        }
        snapshot.push(e);
    }
    assert_eq!(snapshot.len(), 2, "{snapshot:#?}");
    for e in &snapshot {
        let kind = e["labels"]["kind"].as_str().unwrap();
        assert_eq!(e["type"], "sample");
        assert!(e.get("value").is_none(), "{e}");
        assert!(
            same(&e["histogram"], &theirs(kind)),
            "{e} vs {}",
            theirs(kind)
        );
    }
    // A change: the next scrapes bring step 1's histograms.
    exporter.set(body(1));
    assert!(wait_until(WAIT, || count(&oracle, counts(1))));
    let mut changed = std::collections::BTreeMap::new();
    while changed.len() < 2 {
        let e = client.next_event().expect("a change");
        let count = e["histogram"]["count"]
            .as_str()
            .and_then(|c| c.parse().ok());
        if e["type"] == "sample" && count == Some(counts(1)) {
            changed.insert(e["labels"]["kind"].as_str().unwrap().to_string(), e);
        }
    }
    for (kind, e) in &changed {
        assert!(
            same(&e["histogram"], &theirs(kind)),
            "{e} vs {}",
            theirs(kind)
        );
    }
    let federated = promflow.federate_body(&[r#"{job="app"}"#]);
    assert!(!federated.contains("rpc_latency_seconds"), "{federated}");
}
