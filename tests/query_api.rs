//! `/api/v1/query` and `/api/v1/query_range` against a real Prometheus (Debian
//! `prometheus`) holding the same samples.
//!
//! Both scrape their own copy of a controllable exporter that serves a fixed sequence
//! of bodies with explicit timestamps (one point per series per body, 15s apart,
//! ending ~5 minutes ago), so both stores hold exactly the same samples. Then the same
//! queries go to both APIs and the answers are compared: result type, label sets,
//! timestamps, and values (to 1e-9 relative: summation order may differ).
//!
//! Query times, and the samples themselves, are placed so that no window boundary
//! falls on a sample: there Prometheus 2.42's closed range windows and promflow's
//! left-open ones (Prometheus 3.x) would select different samples.

mod common;

use common::{api_seconds, now_ms};

use common::exporter::{Exporter, Reply};
use common::http::with_query;
use common::{wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const POINTS: i64 = 60;
const STEP_MS: i64 = 15_000;

/// The i-th body: every series' i-th point at `t0 + i*15s`.
fn body(t0: i64, i: i64) -> Reply {
    body_at(Some(t0 + i * STEP_MS), i)
}

/// The i-th body, each line stamped `ts` (or not stamped at all: scrape time).
fn body_at(ts: Option<i64>, i: i64) -> Reply {
    let ts = ts.map(|t| t.to_string()).unwrap_or_default();
    let f = i as f64;
    let mut lines = vec![
        "# HELP http_requests_total Requests served.".to_string(),
        "# TYPE http_requests_total counter".to_string(),
        "# TYPE node_memory_free_bytes gauge".to_string(),
        // A counter with a reset half way.
        format!(
            "http_requests_total{{job=\"api\",instance=\"a\",code=\"200\"}} {} {ts}",
            if i < 30 { f * 10.0 } else { (f - 30.0) * 3.0 }
        ),
        format!(
            "http_requests_total{{job=\"api\",instance=\"b\",code=\"500\"}} {} {ts}",
            f * 1.5
        ),
        format!(
            "http_requests_total{{job=\"web\",instance=\"c\",code=\"200\"}} {} {ts}",
            f * f
        ),
        format!(
            "node_memory_free_bytes{{instance=\"a\"}} {} {ts}",
            1e9 - f * 1e6
        ),
        format!(
            "node_memory_free_bytes{{instance=\"b\"}} {} {ts}",
            5e8 + (f * 0.7).sin() * 1e7
        ),
        format!(
            "node_memory_free_bytes{{instance=\"c\"}} {} {ts}",
            2e8 + f * 3e5
        ),
    ];
    for (le, rate) in [("0.1", 2.0), ("0.5", 5.0), ("1", 7.0), ("+Inf", 8.0)] {
        lines.push(format!(
            "request_duration_seconds_bucket{{instance=\"h\",le=\"{le}\"}} {} {ts}",
            f * rate
        ));
    }
    lines.push(format!(
        "request_duration_seconds_sum{{instance=\"h\"}} {} {ts}",
        f * 3.3
    ));
    lines.push(format!(
        "request_duration_seconds_count{{instance=\"h\"}} {} {ts}",
        f * 8.0
    ));
    if i < 40 {
        lines.push(format!("flaky_gauge{{instance=\"x\"}} {} {ts}", 100.0 - f));
    }
    let lines: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
    Reply::text(&(lines.join("\n") + "\n"))
}

fn config(exporter: &Exporter) -> String {
    format!(
        "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\nscrape_configs:\n  - job_name: data\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

fn api(peer: &Peer, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let response = peer.get(&with_query(path, params));
    let json: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("{path} {params:?}: not JSON ({e}): {}", response.body));
    (response.status, json)
}

/// A result in a comparable form: series (labels as text) → points.
fn normalise(data: &Value) -> (String, BTreeMap<String, Vec<(f64, f64)>>) {
    let kind = data["resultType"].as_str().unwrap_or_default().to_string();
    let mut out = BTreeMap::new();
    let point = |p: &Value| (p[0].as_f64().unwrap(), parse_value(p[1].as_str().unwrap()));
    match kind.as_str() {
        "scalar" | "string" => {
            out.insert(
                String::new(),
                vec![(data["result"][0].as_f64().unwrap(), 0.0)],
            );
            if kind == "scalar" {
                out.insert(String::new(), vec![point(&data["result"])]);
            }
        }
        _ => {
            for s in data["result"].as_array().unwrap() {
                let key = s["metric"].to_string();
                let points = match s.get("values") {
                    Some(values) => values.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                out.insert(key, points);
            }
        }
    }
    (kind, out)
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn compare(what: &str, ours: &Value, theirs: &Value) -> Option<String> {
    let (ok, ek) = (normalise(ours), normalise(theirs));
    if ok.0 != ek.0 {
        return Some(format!(
            "{what}: result type {} vs prometheus {}",
            ok.0, ek.0
        ));
    }
    if ok.1.keys().collect::<Vec<_>>() != ek.1.keys().collect::<Vec<_>>() {
        return Some(format!(
            "{what}: series differ\n  promflow:   {:?}\n  prometheus: {:?}",
            ok.1.keys().collect::<Vec<_>>(),
            ek.1.keys().collect::<Vec<_>>()
        ));
    }
    for (series, points) in &ok.1 {
        let expected = &ek.1[series];
        let same = points.len() == expected.len()
            && points
                .iter()
                .zip(expected)
                .all(|(a, b)| a.0 == b.0 && close(a.1, b.1));
        if !same {
            return Some(format!(
                "{what}: {series}\n  promflow:   {points:?}\n  prometheus: {expected:?}"
            ));
        }
    }
    None
}

const INSTANT_QUERIES: &[&str] = &[
    "http_requests_total",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "increase(http_requests_total[2m])",
    "irate(http_requests_total[1m])",
    "resets(http_requests_total[10m])",
    "delta(node_memory_free_bytes[3m])",
    "deriv(node_memory_free_bytes[5m])",
    "predict_linear(node_memory_free_bytes[5m], 3600)",
    "avg_over_time(node_memory_free_bytes[4m])",
    "max_over_time(node_memory_free_bytes[4m]) - min_over_time(node_memory_free_bytes[4m])",
    "count_over_time(http_requests_total[1m])",
    "stddev_over_time(node_memory_free_bytes[5m])",
    "quantile_over_time(0.9, node_memory_free_bytes[5m])",
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    "topk(2, http_requests_total)",
    "bottomk(1, node_memory_free_bytes)",
    "quantile(0.5, http_requests_total)",
    "stddev(node_memory_free_bytes)",
    "count by (job) (http_requests_total)",
    "count_values(\"v\", count_over_time(http_requests_total[1m]))",
    "http_requests_total / on(instance) group_left node_memory_free_bytes",
    "sum by (job) (http_requests_total) > 100",
    "sum by (job) (http_requests_total) > bool 100",
    "http_requests_total and on(instance) node_memory_free_bytes > 4e8",
    "http_requests_total unless on(instance) node_memory_free_bytes > 4e8",
    "node_memory_free_bytes offset 2m",
    "label_replace(http_requests_total, \"host\", \"h-$1\", \"instance\", \"(.*)\")",
    "label_join(http_requests_total, \"jc\", \"-\", \"job\", \"code\")",
    "absent(nonexistent_metric)",
    "absent(http_requests_total)",
    "flaky_gauge",
    "last_over_time(flaky_gauge[10m])",
    "time()",
    "vector(1) + 1",
    "scalar(sum(http_requests_total)) * 2",
    "clamp(node_memory_free_bytes, 3e8, 6e8)",
    "abs(-node_memory_free_bytes) ^ 0.5",
    "timestamp(http_requests_total)",
    "max_over_time(rate(http_requests_total[1m])[5m:30s])",
];

/// Two exporters serving the same sequence, promflow scraping one and Prometheus the
/// other, both holding every body once this returns.
struct SameData {
    t0: i64,
    _exporters: (Exporter, Exporter),
    promflow: Promflow,
    prometheus: Prometheus,
}

fn same_data() -> SameData {
    // Samples sit 7.5s off the 15s grid: subquery steps, aligned to absolute
    // multiples of their step, then never fall on a sample (where Prometheus 2.42's
    // closed windows and promflow's left-open ones would differ).
    let t0 = (now_ms() - (POINTS * STEP_MS + 5 * 60_000)) / STEP_MS * STEP_MS + STEP_MS / 2;
    let bodies: Vec<Reply> = (0..POINTS).map(|i| body(t0, i)).collect();
    let for_promflow = Exporter::start_sequence(bodies.clone());
    let for_prometheus = Exporter::start_sequence(bodies);
    let promflow = Promflow::start(&config(&for_promflow));
    let prometheus = Prometheus::start(&config(&for_prometheus));
    assert!(
        wait_until(Duration::from_secs(60), || for_promflow.sequence_done()
            && for_prometheus.sequence_done()),
        "the scrapers did not fetch every body"
    );
    // One more scrape each so the last body is stored.
    std::thread::sleep(Duration::from_secs(1));
    SameData {
        t0,
        _exporters: (for_promflow, for_prometheus),
        promflow,
        prometheus,
    }
}

#[test]
fn query_api_answers_like_prometheus() {
    let SameData {
        t0,
        promflow,
        prometheus,
        ..
    } = same_data();
    let last = t0 + (POINTS - 1) * STEP_MS;
    let times = [
        t0 + 5 * 60_000 + 7_500,
        t0 + 7 * 60_000 + 3_300,
        t0 + 11 * 60_000 + 500,
        last + 4_100,
        // flaky_gauge stopped at point 40: within, then beyond the lookback delta.
        t0 + 40 * STEP_MS + 2 * 60_000 + 1_700,
        t0 + 40 * STEP_MS + 6 * 60_000 + 1_700,
    ];
    let mut problems = Vec::new();
    for query in INSTANT_QUERIES {
        for &t in &times {
            let params = [("query", *query), ("time", &api_seconds(t))];
            let (our_status, ours) = api(&promflow, "/api/v1/query", &params);
            let (their_status, theirs) = api(&prometheus, "/api/v1/query", &params);
            if our_status != their_status || ours["status"] != theirs["status"] {
                problems.push(format!("{query} @{t}: status {our_status} {ours} vs prometheus {their_status} {theirs}"));
            } else if theirs["status"] == "success" {
                problems.extend(compare(
                    &format!("{query} @{t}"),
                    &ours["data"],
                    &theirs["data"],
                ));
            }
        }
    }
    for query in [
        "rate(http_requests_total[1m])",
        "sum by (job) (increase(http_requests_total[2m]))",
        "node_memory_free_bytes",
        "flaky_gauge",
        "1 + 1",
    ] {
        let params = [
            ("query", query),
            ("start", &api_seconds(t0 + 2 * 60_000 + 1_100)),
            ("end", &api_seconds(last + 7 * 60_000)),
            ("step", "30"),
        ];
        let (_, ours) = api(&promflow, "/api/v1/query_range", &params);
        let (_, theirs) = api(&prometheus, "/api/v1/query_range", &params);
        assert_eq!(theirs["status"], "success", "{query}: {theirs}");
        if ours["status"] != "success" {
            problems.push(format!("range {query}: {ours}"));
        } else {
            problems.extend(compare(
                &format!("range {query}"),
                &ours["data"],
                &theirs["data"],
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn query_api_errors_like_prometheus() {
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let promflow = Promflow::start(&config(&exporter));
    let prometheus = Prometheus::start(&config(&exporter));
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/api/v1/query", &[("query", "sum(")]),
        ("/api/v1/query", &[("query", "m"), ("time", "yesterday")]),
        ("/api/v1/query", &[]),
        (
            "/api/v1/query_range",
            &[("query", "m"), ("start", "10"), ("end", "5"), ("step", "1")],
        ),
        (
            "/api/v1/query_range",
            &[("query", "m"), ("start", "0"), ("end", "5"), ("step", "0")],
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "m"),
                ("start", "0"),
                ("end", "100000"),
                ("step", "1"),
            ],
        ),
    ];
    for (path, params) in cases {
        let (our_status, ours) = api(&promflow, path, params);
        let (their_status, theirs) = api(&prometheus, path, params);
        assert_eq!(
            our_status, their_status,
            "{path} {params:?}: {ours} vs {theirs}"
        );
        assert_eq!(
            ours["errorType"], theirs["errorType"],
            "{path} {params:?}: {ours} vs {theirs}"
        );
    }
    // Parse errors: the same text, position included (`1:8: parse error: …`), where
    // promql-parser's message lets promflow say where.
    for query in [
        "sum(",
        "sum(foo",
        "sum by (",
        r#"foo{a="b"} +"#,
        "foo and",
        "x[5m",
        "x[5m:",
        "1 + foo{",
        "rate(foo)",
        "abs(foo[5m])",
        "histogram_quantile(foo)",
        // Where promql-parser says only "invalid promql query": the first token
        // that cannot continue, worded as Prometheus's grammar does.
        "foo bar",
        "sum(x) by",
        "sum by (a b) (x)",
        "sum(rate(x y))",
        "sum without (a) ",
        r#"x{a="b" c="d"}"#,
        "foo{a=}",
        r#"foo{="b"}"#,
        "x{a}",
        r#"x{a "b"}"#,
        "x offset y",
        "x @ foo",
        "foo[5m] @ start(1)",
        "x + on a y",
        "x + on(a) group_left(b) group_right y",
        "x == bool bool y",
        "x % % y",
        r#"x "abcdefghijklmnop""#,
        "foo:bar baz:qux",
        "1 2",
        "()",
        "sum(x) by (a) by (b)",
        "count_values(\"a\" x)",
        // Messages promql-parser gives without a position or in other words.
        "{}",
        "unknown_fn(x)",
        "x[5x]",
        "x offset 5x",
        "x[1h:5m:1m]",
        "x[0s]",
        "foo{a~\"b\"}",
        "$x",
        "foo )",
        "sum(x,)",
        "foo{a=\"b\"}[5m][5m]",
        "count_values(x)",
        "`foo",
        "holt_winters(x[5m], 0.5)",
        // Type errors, which promql-parser reports without a place: at the operand,
        // argument, parameter, operator or selector Prometheus names.
        "foo[5m] + 1",
        r#""a" + 1"#,
        "1 + foo[5m]",
        "sum(foo[5m])",
        "sum(foo[5m] + 1)",
        "foo offset 5m offset 5m",
        "foo @ 1 @ 2",
        r#"-"a""#,
        "-foo[5m]",
        "1 and 1",
        "1 > 2",
        "count_values(1, foo)",
        r#"topk("a", foo)"#,
        r#"foo{__name__="a"}"#,
        r#"{__name__=""}"#,
        "foo and on(a) group_left bar",
        "foo * on(a) group_left(a) bar",
        "absent(foo[5m])",
        "quantile_over_time(foo, bar[5m])",
        "rate(1)",
        "time(1)",
        r#"label_replace(foo, "a", "b", "c")"#,
        "foo[5m:1m:1m]",
        "sum(foo) without (a) by (b)",
        "foo[5m] offset 1h [1m]",
        r#""foo"[5m]"#,
        "max_over_time(rate(foo[5m])[5m])",
        "sort(foo[5m])",
        "foo == bool",
        "foo + bar[5m]",
        "scalar(foo[5m])",
        r#"vector("a")"#,
        r#"round(foo, "a")"#,
        "foo or 1",
        "1 unless foo",
        r#"histogram_quantile("a", foo)"#,
        "sum by (a) (foo) + foo[1m]",
        r#"rate(foo[5m]) + "x""#,
        "foo[5m] == bool 1",
        r#"foo @ "x""#,
        r#"clamp(foo, "a", 1)"#,
        r#"label_join(foo, 1, ",", "a")"#,
        "histogram_quantile(0.9, foo[5m])",
        "foo + on(a) bar[5m]",
        "-foo[5m] + 1",
        "foo[5m] and bar",
        "quantile(foo, bar)",
        "sum without(a) (foo[5m])",
        "1 < bool foo[5m]",
        "foo + bool bar",
        "foo @ 1 offset 1m @ 2",
    ] {
        let (_, ours) = api(&promflow, "/api/v1/query", &[("query", query)]);
        let (_, theirs) = api(&prometheus, "/api/v1/query", &[("query", query)]);
        assert_eq!(ours["error"], theirs["error"], "{query}");
        assert_eq!(ours["errorType"], "bad_data", "{query}");
    }
    // A label name whose escapes are not UTF-8 fails when evaluated, as in Prometheus.
    let query = r#"label_join(m, "\xff", ",")"#;
    let (our_status, ours) = api(&promflow, "/api/v1/query", &[("query", query)]);
    let (their_status, theirs) = api(&prometheus, "/api/v1/query", &[("query", query)]);
    assert_eq!(our_status, their_status, "{query}: {ours} vs {theirs}");
    assert_eq!(ours["error"], theirs["error"], "{query}");
    assert_eq!(ours["errorType"], theirs["errorType"], "{query}");
}

/// A non-query answer's `data` in a comparable form: list items sorted.
fn sorted_data(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = match &v["data"] {
        Value::Array(a) => a.iter().map(|x| x.to_string()).collect(),
        other => vec![other.to_string()],
    };
    items.sort();
    items
}

/// The series/label/metadata endpoints Grafana uses for its query builder.
#[test]
fn series_labels_and_metadata_like_prometheus() {
    let data = same_data();
    let (promflow, prometheus) = (&data.promflow, &data.prometheus);
    let start = api_seconds(data.t0);
    let end = api_seconds(now_ms());
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/api/v1/series".into(),
            vec![("match[]", "http_requests_total")],
        ),
        (
            "/api/v1/series".into(),
            vec![
                ("match[]", r#"{job="api"}"#),
                ("match[]", "node_memory_free_bytes"),
            ],
        ),
        (
            "/api/v1/series".into(),
            vec![("match[]", "flaky_gauge"), ("start", &start), ("end", &end)],
        ),
        ("/api/v1/series".into(), vec![]),
        ("/api/v1/labels".into(), vec![]),
        (
            "/api/v1/labels".into(),
            vec![("match[]", "node_memory_free_bytes")],
        ),
        ("/api/v1/label/__name__/values".into(), vec![]),
        ("/api/v1/label/job/values".into(), vec![]),
        (
            "/api/v1/label/code/values".into(),
            vec![("match[]", r#"{job="api"}"#)],
        ),
        (
            "/api/v1/metadata".into(),
            vec![("metric", "http_requests_total")],
        ),
        (
            "/api/v1/metadata".into(),
            vec![("metric", "node_memory_free_bytes")],
        ),
        (
            "/api/v1/query_exemplars".into(),
            vec![
                ("query", "http_requests_total"),
                ("start", &start),
                ("end", &end),
            ],
        ),
    ];
    for (path, params) in &cases {
        let (our_status, ours) = api(promflow, path, params);
        let (their_status, theirs) = api(prometheus, path, params);
        assert_eq!(
            our_status, their_status,
            "{path} {params:?}: {ours} vs {theirs}"
        );
        assert_eq!(ours["status"], theirs["status"], "{path} {params:?}");
        assert_eq!(ours["errorType"], theirs["errorType"], "{path} {params:?}");
        assert_eq!(
            sorted_data(&ours),
            sorted_data(&theirs),
            "{path} {params:?}"
        );
    }
    // `limit` (not in Prometheus 2.42): truncates with a warning.
    let (_, limited) = api(promflow, "/api/v1/label/__name__/values", &[("limit", "2")]);
    assert_eq!(limited["data"].as_array().unwrap().len(), 2, "{limited}");
    assert_eq!(limited["warnings"][0], "results truncated due to limit");
}

/// (method, path, form parameters)
type GrafanaRequest<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// The request sequence Grafana's Prometheus data source sends when a dashboard opens
/// and its query editor is used: GET probes, then POST form bodies. Each answer must
/// have the same status, error type, result type and content as Prometheus's.
#[test]
fn grafana_request_sequence_is_answered_like_prometheus() {
    let data = same_data();
    let now = now_ms();
    let start = api_seconds(now - 3600 * 1000);
    let end = api_seconds(now);
    let last = data.t0 + (POINTS - 1) * STEP_MS;
    let at = api_seconds(last + 4_100);
    let form = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", common::http::encode(k), common::http::encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let sequence: Vec<GrafanaRequest> = vec![
        ("GET", "/api/v1/status/buildinfo", vec![]),
        (
            "POST",
            "/api/v1/query",
            vec![("query", "1+1"), ("time", &end)],
        ),
        (
            "GET",
            "/api/v1/labels",
            vec![("start", &start), ("end", &end)],
        ),
        (
            "GET",
            "/api/v1/label/__name__/values",
            vec![("start", &start), ("end", &end)],
        ),
        ("GET", "/api/v1/metadata", vec![]),
        (
            "POST",
            "/api/v1/series",
            vec![
                ("match[]", "http_requests_total"),
                ("start", &start),
                ("end", &end),
            ],
        ),
        (
            "POST",
            "/api/v1/labels",
            vec![
                ("match[]", "http_requests_total"),
                ("start", &start),
                ("end", &end),
            ],
        ),
        (
            "GET",
            "/api/v1/label/job/values",
            vec![
                ("match[]", "http_requests_total"),
                ("start", &start),
                ("end", &end),
            ],
        ),
        (
            "POST",
            "/api/v1/query_range",
            vec![
                ("query", "sum by (job) (rate(http_requests_total[5m]))"),
                ("start", &start),
                ("end", &end),
                ("step", "15"),
            ],
        ),
        (
            "POST",
            "/api/v1/query",
            vec![("query", "sum(http_requests_total)"), ("time", &at)],
        ),
        (
            "POST",
            "/api/v1/query_exemplars",
            vec![
                ("query", "http_requests_total"),
                ("start", &start),
                ("end", &end),
            ],
        ),
        (
            "POST",
            "/api/v1/query",
            vec![
                ("query", "sum(rate(http_requests_total[5m]) by (job)"),
                ("time", &end),
            ],
        ),
    ];
    for (method, path, params) in &sequence {
        let send = |peer: &Peer| -> (u16, Value) {
            let response = match *method {
                "GET" => peer.get(&with_query(path, params)),
                _ => common::http::post(
                    &peer.url(path),
                    Some("application/x-www-form-urlencoded"),
                    form(params).as_bytes(),
                )
                .unwrap(),
            };
            let json = serde_json::from_str(&response.body)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", response.body));
            (response.status, json)
        };
        let (our_status, ours) = send(&data.promflow);
        let (their_status, theirs) = send(&data.prometheus);
        let what = format!("{method} {path} {params:?}");
        assert_eq!(our_status, their_status, "{what}: {ours} vs {theirs}");
        assert_eq!(ours["errorType"], theirs["errorType"], "{what}");
        if *path == "/api/v1/status/buildinfo" || theirs["status"] != "success" {
            continue;
        }
        match theirs["data"].get("resultType") {
            Some(_) => {
                if let Some(problem) = compare(&what, &ours["data"], &theirs["data"]) {
                    panic!("{problem}");
                }
            }
            None => {
                assert_eq!(sorted_data(&ours), sorted_data(&theirs), "{what}");
            }
        }
    }
}

/// `/api/v1/targets/metadata` for one exporter scraped by both.
#[test]
fn targets_metadata_like_prometheus() {
    let exporter = Exporter::start(Reply::text(
        "# HELP a_total Requests.\n# TYPE a_total counter\na_total 1\n# TYPE g gauge\ng 2\n# HELP u Untyped one.\n# TYPE u untyped\nu 3\n",
    ));
    let promflow = Promflow::start(&config(&exporter));
    let prometheus = Prometheus::start(&config(&exporter));
    let has_metadata = |peer: &Peer| {
        let (_, v) = api(peer, "/api/v1/targets/metadata", &[]);
        v["data"].as_array().is_some_and(|a| !a.is_empty())
    };
    assert!(wait_until(Duration::from_secs(20), || has_metadata(
        &promflow
    ) && has_metadata(
        &prometheus
    )));
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("metric", "a_total")],
        &[("metric", "u")],
        &[("match_target", r#"{job="data"}"#)],
        &[("match_target", r#"{job="other"}"#)],
        &[("metric", "missing")],
        &[("limit", "1")],
        &[("match_target", "{")],
    ];
    for params in cases {
        let (our_status, ours) = api(&promflow, "/api/v1/targets/metadata", params);
        let (their_status, theirs) = api(&prometheus, "/api/v1/targets/metadata", params);
        assert_eq!(our_status, their_status, "{params:?}: {ours} vs {theirs}");
        assert_eq!(
            ours["errorType"], theirs["errorType"],
            "{params:?}: {ours} vs {theirs}"
        );
        if theirs["status"] == "success" {
            assert_eq!(sorted_data(&ours), sorted_data(&theirs), "{params:?}");
        }
    }
}

/// A real Prometheus remote-writes what it scrapes into a promflow that scrapes
/// nothing itself; the same queries then give the same answers on both.
///
/// Prometheus forwards only samples newer than its remote-write queue's start, so the
/// bodies carry no timestamps here: the samples are stamped at Prometheus's scrapes
/// (every 100ms) and forwarded with those stamps.
#[test]
fn remote_write_from_prometheus_answers_like_prometheus() {
    let receiver = Promflow::start_with_args(
        "scrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    );
    let exporter = Exporter::start(Reply::text(""));
    let prometheus = Prometheus::start(&format!(
        "{}remote_write:\n  - url: http://{}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n",
        config(&exporter),
        receiver.addr()
    ));
    // Start the data once remote write is flowing (`up` has come through).
    assert!(wait_until(Duration::from_secs(60), || {
        let (_, v) = api(&receiver, "/api/v1/query", &[("query", "up")]);
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    }));
    exporter.play_sequence((0..POINTS).map(|i| body_at(None, i)).collect());
    assert!(wait_until(Duration::from_secs(60), || exporter.sequence_done()));
    std::thread::sleep(Duration::from_secs(1));
    let now = now_ms();
    let at = api_seconds(now);
    let count = |peer: &Peer| {
        let (_, v) = api(
            peer,
            "/api/v1/query",
            &[
                ("query", "count_over_time(http_requests_total[1h])"),
                ("time", &at),
            ],
        );
        // Series in a stable order, so the two answers compare as text.
        let mut series: Vec<String> = v["data"]["result"]
            .as_array()
            .map(|a| a.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default();
        series.sort();
        series.join(",")
    };
    assert!(
        wait_until(Duration::from_secs(60), || {
            let theirs = count(&prometheus);
            !theirs.is_empty() && count(&receiver) == theirs
        }),
        "promflow did not receive every sample: {} vs prometheus {}\nreceiver has: {}\nprometheus remote storage: {}\nreceiver at {} log:\n{}",
        count(&receiver),
        api(&receiver, "/api/v1/query", &[("query", r#"count by (__name__) ({__name__=~".+"})"#)]).1,
        count(&prometheus),
        prometheus
            .get("/metrics")
            .body
            .lines()
            .filter(|l| l.starts_with("prometheus_remote_storage_samples"))
            .collect::<Vec<_>>()
            .join("\n"),
        receiver.addr(),
        receiver.log().lines().take(8).collect::<Vec<_>>().join("\n")
    );
    let mut problems = Vec::new();
    for query in INSTANT_QUERIES {
        for t in [now - 2_000, now] {
            let params = [("query", *query), ("time", &api_seconds(t))];
            let (_, ours) = api(&receiver, "/api/v1/query", &params);
            let (_, theirs) = api(&prometheus, "/api/v1/query", &params);
            if theirs["status"] == "success" {
                problems.extend(compare(
                    &format!("{query} @{t}"),
                    &ours["data"],
                    &theirs["data"],
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // Without the flag the endpoint is refused, as in Prometheus.
    let closed = Promflow::start("scrape_configs: []\n");
    let response = common::http::post(
        &closed.url("/api/v1/write"),
        Some("application/x-protobuf"),
        b"",
    )
    .unwrap();
    assert_eq!(response.status, 404);
}

/// Warnings and infos (Prometheus 3.x; 2.42 has none of these, so the expected texts
/// are the ones Prometheus's own PromQL test scripts check, without their `(l:c)`
/// position suffix, which promflow's plans do not keep).
#[test]
fn query_annotations_like_prometheus_3() {
    let exporter = Exporter::start(Reply::text(
        "http_requests_total{instance=\"a\"} 10\nnode_memory_free_bytes{instance=\"a\"} 5\n",
    ));
    let promflow = Promflow::start(&config(&exporter));
    let scraped = || {
        let (_, v) = api(
            &promflow,
            "/api/v1/query",
            &[("query", "count_over_time(node_memory_free_bytes[1m])")],
        );
        v["data"]["result"][0]["value"][1]
            .as_str()
            .is_some_and(|n| n.parse::<f64>().unwrap_or(0.0) >= 3.0)
    };
    assert!(
        wait_until(Duration::from_secs(30), scraped),
        "no samples scraped"
    );
    let annotations = |path: &str, params: &[(&str, &str)]| {
        let (status, v) = api(&promflow, path, params);
        assert_eq!(
            (status, &v["status"]),
            (200, &Value::from("success")),
            "{params:?}: {v}"
        );
        (v["warnings"].clone(), v["infos"].clone())
    };
    let q = |query: &'static str| [("query", query)];
    assert_eq!(
        annotations("/api/v1/query", &q("rate(node_memory_free_bytes[1m])")),
        (
            Value::Null,
            serde_json::json!(["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"node_memory_free_bytes\""])
        )
    );
    assert_eq!(
        annotations("/api/v1/query", &q("rate(http_requests_total[1m])")),
        (Value::Null, Value::Null)
    );
    assert_eq!(
        annotations("/api/v1/query", &q("histogram_quantile(0.5, node_memory_free_bytes)")),
        (
            serde_json::json!(["PromQL warning: bucket label \"le\" is missing or has a malformed value of \"\" for metric name \"node_memory_free_bytes\""]),
            Value::Null
        )
    );
    assert_eq!(
        annotations("/api/v1/query", &q("quantile(1.5, node_memory_free_bytes)")),
        (
            serde_json::json!([
                "PromQL warning: quantile value should be between 0 and 1, got 1.5"
            ]),
            Value::Null
        )
    );
    let now = api_seconds(now_ms());
    assert_eq!(
        annotations(
            "/api/v1/query_range",
            &[("query", "sort(node_memory_free_bytes)"), ("start", &now), ("end", &now), ("step", "1")]
        ),
        (
            serde_json::json!(["PromQL warning: sort is ineffective for range queries since results are always ordered by labels"]),
            Value::Null
        )
    );
}
