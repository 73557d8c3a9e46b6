//! The OTLP receiver (`--web.enable-otlp-receiver`, `POST /api/v1/otlp/v1/metrics`)
//! fed by the real OpenTelemetry Python SDK (`opentelemetry-sdk` with its OTLP/HTTP
//! protobuf exporter, `tests/data/otlp_export.py`): protobuf, gzip-compressed protobuf,
//! and OTLP JSON (the SDK's request through protobuf's JSON mapping).
//!
//! There is no Prometheus 3.x binary here (the installed peer is 2.42, which has no
//! OTLP receiver), so the expected series are derived by hand from Prometheus 3.x's
//! documented translation (docs "OTLP Receiver", the `otlptranslator` rules, and the
//! OpenTelemetry "Prometheus and OpenMetrics compatibility" specification) for the
//! default `translation_strategy: UnderscoreEscapingWithSuffixes`:
//! - `http.server.requests` (counter, unit `{request}`) → `http_server_requests_total`
//!   (a `{...}` unit adds no suffix; monotonic sums end in `_total`);
//! - `network.io` (counter, `By`) → `network_io_bytes_total`;
//! - `queue.items` (up-down counter, `{item}`) → `queue_items` (a non-monotonic sum is
//!   a gauge);
//! - `cpu.utilization` (gauge, unit `1`) → `cpu_utilization_ratio`;
//! - `http.server.duration` (histogram, `ms`) → classic
//!   `http_server_duration_milliseconds_{bucket,sum,count}`, cumulative buckets with
//!   `le` in Go's `FormatFloat(b, 'f', -1)` form and `+Inf` = count (the SDK's default
//!   boundaries 0, 5, 10, ..., 10000);
//! - `rpc.latency` (histogram, `s`, boundaries 0.005, 0.01, 0.1, 1) →
//!   `rpc_latency_seconds_*`;
//! - `latency.exp` (an exponential histogram, `s`; observations 0, 0.2, 0.2, 1.5, 3,
//!   100: the SDK picks scale 4) → one native histogram `latency_exp_seconds`, and
//!   `ratio.exp` (unit `1`; observations 1.001 … 1.003: scale 15) → `ratio_exp`, whose
//!   scale Prometheus merges down to schema 8. The expected histograms are computed from
//!   the data points the SDK exported (the script prints them) by the OTel data
//!   model's rules: bucket `k` of scale `s` is `(2^(k·2^-s), 2^((k+1)·2^-s)]`, lowering
//!   the scale by `d` puts it in bucket `k >> d`; Prometheus's schema is the scale, at
//!   most 8 (`otlptranslator/prometheusremotewrite/histograms.go`), its zero bucket
//!   `[-1e-128, 1e-128]` holds the zero count; `histogram_quantile` interpolates
//!   exponentially inside a bucket (Prometheus 3.x's `histogramQuantile`);
//! - attributes: `http.method` → `http_method` etc.; `job` = `shop/checkout`
//!   (`service.namespace/service.name`), `instance` = `service.instance.id`;
//!   `host.name` promoted by `otlp.promote_resource_attributes` onto every series;
//! - `target_info`: `job`, `instance` and every other resource attribute (escaped).
//! - exemplars (with `exemplar-storage`; the SDK keeps them for measurements in a
//!   sampled span): the exponential histogram's on its series, the counter's on its
//!   series, `rpc.latency`'s on its `_bucket` series as Prometheus 3.x's translator
//!   places them (`addHistogramDataPoints`: each bucket from the lowest takes the next
//!   ones, in the order sent, up to the first above its bound; `+Inf` the rest).
//!
//! A counter exported with delta temporality is refused (Prometheus without
//! `otlp-deltatocumulative`), and counted in `promflow_otlp_refused_points_total`.
//!
//! With `created-timestamp-zero-ingestion`, points' start times become zero samples
//! (a hand-written OTLP JSON request; the expectation from Prometheus 3.x's source).
//!
//! External services: the OpenTelemetry Python SDK in `.venv` (`.ci/test` installs it).

mod common;

use common::http::post;
use common::Promflow;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The Python with the OpenTelemetry SDK: `$OTLP_PYTHON`, else `<repo>/.venv/bin/python`.
fn otel_python() -> PathBuf {
    let python = std::env::var_os("OTLP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join(".venv/bin/python"));
    let ok = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the OpenTelemetry SDK is missing for {}: run `bash .ci/test`, or `.venv/bin/pip install \
         opentelemetry-sdk opentelemetry-exporter-otlp-proto-http` in the repository root, or set OTLP_PYTHON",
        python.display()
    );
    python
}

/// What the exporter script sent, as it prints it.
struct Exported {
    /// The resource attributes.
    resource: Vec<(String, String)>,
    /// The exponential-histogram data points, by metric name.
    exponential: serde_json::Map<String, Value>,
    /// The exemplars of the sums' and explicit-bucket histograms' points, by metric
    /// name.
    sampled: serde_json::Map<String, Value>,
}

/// Runs the exporter script; what it sent.
fn export(python: &PathBuf, promflow: &Promflow, mode: &str) -> Exported {
    let mut cmd = Command::new(python);
    cmd.arg(common::repo_root().join("tests/data/otlp_export.py"))
        .arg(promflow.url(""))
        .arg(mode);
    let out = common::run_command(cmd, None, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "otlp_export.py {mode}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    let attrs = printed["resource"]
        .as_object()
        .expect("resource attributes")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string attribute").to_string()))
        .collect();
    let object = |key: &str| printed[key].as_object().expect(key).clone();
    Exported {
        resource: attrs,
        exponential: object("exponential"),
        sampled: object("exemplars"),
    }
}

/// Every float series with `instance="<instance>"` now, as `{labels} "value"` lines
/// (native histograms, which have no `value`, are checked apart).
fn stored(promflow: &Promflow, instance: &str) -> BTreeSet<String> {
    promflow
        .vector_lines(&format!("{{instance=\"{instance}\"}}"), None)
        .into_iter()
        .filter(|l| !l.ends_with(" null"))
        .collect()
}

/// A bucket as the API prints it: boundary rule, lower, upper, count.
type ApiBucket = (u64, f64, f64, f64);

fn num(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The native histogram an exponential data point becomes (see the file's doc):
/// `(count, sum, buckets)` with the buckets in the API's order (zero bucket, then the
/// positive ones ascending); the SDK records no negative values.
fn expected_native(point: &Value) -> (f64, f64, Vec<ApiBucket>) {
    let scale = point["scale"].as_i64().unwrap();
    let schema = scale.min(8);
    let down = scale - schema;
    assert!(
        point["negative"]["bucket_counts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.as_u64() == Some(0)),
        "{point}"
    );
    let mut merged: std::collections::BTreeMap<i64, f64> = Default::default();
    let offset = point["positive"]["offset"].as_i64().unwrap();
    for (i, c) in point["positive"]["bucket_counts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let c = c.as_u64().unwrap();
        if c > 0 {
            *merged.entry((offset + i as i64) >> down).or_default() += c as f64;
        }
    }
    let bound = |k: i64| 2f64.powf(k as f64 / 2f64.powi(schema as i32));
    let mut buckets = Vec::new();
    let zero = point["zero_count"].as_u64().unwrap() as f64;
    if zero > 0.0 {
        buckets.push((3, -1e-128, 1e-128, zero));
    }
    for (k, c) in merged {
        buckets.push((0, bound(k), bound(k + 1), c));
    }
    (
        point["count"].as_u64().unwrap() as f64,
        point["sum"].as_f64().unwrap(),
        buckets,
    )
}

/// Prometheus 3.x's `histogram_quantile` (`promql/quantile.go`) over positive buckets
/// (with a zero bucket below them): below q = 0.5 the rank `q·count` is counted from
/// the lowest bucket, else `(1-q)·count` from the highest; the bucket where it is
/// reached is interpolated exponentially (linearly in the zero bucket, from 0).
fn expected_quantile(q: f64, count: f64, buckets: &[ApiBucket]) -> f64 {
    let forward = q < 0.5;
    let rank = if forward {
        q * count
    } else {
        (1.0 - q) * count
    };
    let ordered: Vec<&ApiBucket> = if forward {
        buckets.iter().collect()
    } else {
        buckets.iter().rev().collect()
    };
    let mut seen = 0.0;
    for &&(_, lower, upper, c) in &ordered {
        if c == 0.0 {
            continue;
        }
        seen += c;
        if seen >= rank {
            let into = if forward {
                rank - (seen - c)
            } else {
                seen - rank
            };
            let fraction = into / c;
            if lower < 0.0 {
                return upper * fraction;
            }
            let (lo, up) = (lower.log2(), upper.log2());
            return (lo + (up - lo) * fraction).exp2();
        }
    }
    f64::NAN
}

/// An exemplar as compared: `trace_id`, `span_id`, value, time (ms).
type ExemplarRow = (String, String, f64, i64);

/// The exemplars of a data point, as the script printed them.
fn sent_exemplars(exemplars: &Value) -> Vec<ExemplarRow> {
    exemplars
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["trace_id"].as_str().unwrap().to_string(),
                e["span_id"].as_str().unwrap().to_string(),
                e["value"].as_f64().unwrap(),
                (e["time_unix_nano"].as_u64().unwrap() / 1_000_000) as i64,
            )
        })
        .collect()
}

/// The exemplars `/api/v1/query_exemplars` has for `selector` over the last hour, by
/// series (its `le`, "" for none); each must have only `trace_id` and `span_id`.
fn stored_exemplars(promflow: &Promflow, selector: &str) -> BTreeMap<String, Vec<ExemplarRow>> {
    let now = common::now_ms() / 1000;
    let body = promflow.get_ok(&common::http::with_query(
        "/api/v1/query_exemplars",
        &[
            ("query", selector),
            ("start", &(now - 3600).to_string()),
            ("end", &(now + 3600).to_string()),
        ],
    ));
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            let le = series["seriesLabels"]["le"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let rows = series["exemplars"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    assert_eq!(e["labels"].as_object().unwrap().len(), 2, "{e}");
                    (
                        e["labels"]["trace_id"].as_str().unwrap().to_string(),
                        e["labels"]["span_id"].as_str().unwrap().to_string(),
                        num(&e["value"]),
                        (e["timestamp"].as_f64().unwrap() * 1000.0).round() as i64,
                    )
                })
                .collect();
            (le, rows)
        })
        .collect()
}

/// The exemplars stored for the histogram are the data point's, as Prometheus 3.x
/// keeps them: value, time, labels `trace_id` and `span_id` (hex; the filtered
/// attributes are empty here).
fn check_exemplars(promflow: &Promflow, name: &str, instance: &str, point: &Value) {
    let sent = sent_exemplars(&point["exemplars"]);
    assert!(!sent.is_empty(), "the SDK kept exemplars: {point}");
    let stored = stored_exemplars(promflow, &format!("{name}{{instance=\"{instance}\"}}"));
    assert_eq!(
        stored,
        BTreeMap::from([(String::new(), sent)]),
        "{instance}"
    );
}

/// A classic histogram's exemplars by its `_bucket` series' `le`, placed as Prometheus
/// 3.x's OTLP translator does (`addHistogramDataPoints`,
/// otlptranslator/prometheusremotewrite/helper.go): in the order sent, each bucket
/// from the lowest bound takes the next exemplars up to the first above its bound,
/// `+Inf` the rest (buckets without any left out, as the API leaves them out).
fn by_bucket(sent: Vec<ExemplarRow>, bounds: &[(f64, &str)]) -> BTreeMap<String, Vec<ExemplarRow>> {
    let mut out: BTreeMap<String, Vec<ExemplarRow>> = BTreeMap::new();
    let mut rest = sent.into_iter().peekable();
    for (bound, le) in bounds {
        while let Some(e) = rest.next_if(|e| e.2 <= *bound) {
            out.entry(le.to_string()).or_default().push(e);
        }
    }
    for e in rest {
        out.entry("+Inf".to_string()).or_default().push(e);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Checks the stored native histogram `name` of `instance` against the exponential
/// data point the SDK sent, and `histogram_count`, `histogram_sum` and
/// `histogram_quantile` over it.
fn check_native(promflow: &Promflow, name: &str, instance: &str, point: &Value) {
    let (count, sum, buckets) = expected_native(point);
    let selector = format!("{name}{{instance=\"{instance}\"}}");
    let data = promflow.query(&selector);
    let result = data["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{selector}: {data:#}");
    let h = &result[0]["histogram"][1];
    assert!(
        close(num(&h["count"]), count),
        "{selector}: {h:#} vs count {count}"
    );
    assert!(close(num(&h["sum"]), sum), "{selector}: {h:#} vs sum {sum}");
    let got: Vec<ApiBucket> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b[0].as_u64().unwrap(), num(&b[1]), num(&b[2]), num(&b[3])))
        .collect();
    assert_eq!(
        got.len(),
        buckets.len(),
        "{selector}: {got:?} vs {buckets:?}"
    );
    for (g, w) in got.iter().zip(&buckets) {
        assert!(
            g.0 == w.0 && close(g.1, w.1) && close(g.2, w.2) && g.3 == w.3,
            "{selector}: {got:?} vs {buckets:?}"
        );
    }
    let scalar = |expr: String| -> f64 {
        let data = promflow.query(&expr);
        num(&data["result"][0]["value"][1])
    };
    assert!(close(scalar(format!("histogram_count({selector})")), count));
    assert!(close(scalar(format!("histogram_sum({selector})")), sum));
    for q in [0.25, 0.5, 0.9] {
        let got = scalar(format!("histogram_quantile({q}, {selector})"));
        let want = expected_quantile(q, count, &buckets);
        assert!(
            close(got, want),
            "{selector}: quantile {q}: {got} vs {want}"
        );
    }
}

/// `{labels} value` as [`stored`] prints it (serde_json keeps insertion order, so the
/// labels are sorted here as the API sorts them).
fn line(labels: &[(&str, &str)], value: &str) -> String {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let map: serde_json::Map<String, Value> = sorted
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    format!("{} \"{value}\"", Value::Object(map))
}

/// The series Prometheus 3.x's documented translation gives for the script's metrics.
fn expected(instance: &str, resource: &[(String, String)]) -> BTreeSet<String> {
    let base = [
        ("job", "shop/checkout"),
        ("instance", instance),
        ("host_name", "h1"),
    ];
    let with = |name: &str, extra: &[(&str, &str)], value: &str| {
        let mut labels: Vec<(&str, &str)> = base.to_vec();
        labels.push(("__name__", name));
        labels.extend_from_slice(extra);
        line(&labels, value)
    };
    let mut out = BTreeSet::new();
    out.insert(with(
        "http_server_requests_total",
        &[("http_method", "GET"), ("http_status_code", "200")],
        "5",
    ));
    out.insert(with(
        "network_io_bytes_total",
        &[("direction", "in")],
        "1024",
    ));
    out.insert(with("queue_items", &[], "3"));
    out.insert(with("cpu_utilization_ratio", &[("cpu", "0")], "0.25"));
    // Observations 3, 7, 30 ms over the SDK's default boundaries.
    let ms_buckets = [
        ("0", "0"),
        ("5", "1"),
        ("10", "2"),
        ("25", "2"),
        ("50", "3"),
        ("75", "3"),
        ("100", "3"),
        ("250", "3"),
        ("500", "3"),
        ("750", "3"),
        ("1000", "3"),
        ("2500", "3"),
        ("5000", "3"),
        ("7500", "3"),
        ("10000", "3"),
        ("+Inf", "3"),
    ];
    for (le, n) in ms_buckets {
        out.insert(with(
            "http_server_duration_milliseconds_bucket",
            &[("le", le)],
            n,
        ));
    }
    out.insert(with("http_server_duration_milliseconds_sum", &[], "40"));
    out.insert(with("http_server_duration_milliseconds_count", &[], "3"));
    // Observations 0.003, 0.05, 2 s.
    for (le, n) in [
        ("0.005", "1"),
        ("0.01", "1"),
        ("0.1", "2"),
        ("1", "2"),
        ("+Inf", "3"),
    ] {
        out.insert(with("rpc_latency_seconds_bucket", &[("le", le)], n));
    }
    out.insert(with("rpc_latency_seconds_sum", &[], "2.053"));
    out.insert(with("rpc_latency_seconds_count", &[], "3"));
    out.insert(target_info(instance, resource));
    out
}

/// `target_info` for a resource: job, instance, and every non-identifying attribute
/// with its name escaped (`.` → `_`).
fn target_info(instance: &str, resource: &[(String, String)]) -> String {
    let escaped: Vec<(String, String)> = resource
        .iter()
        .filter(|(k, _)| {
            !["service.name", "service.namespace", "service.instance.id"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.replace('.', "_"), v.clone()))
        .collect();
    let mut labels: Vec<(&str, &str)> = escaped
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.extend([
        ("__name__", "target_info"),
        ("job", "shop/checkout"),
        ("instance", instance),
    ]);
    line(&labels, "1")
}

fn refused_points(promflow: &Promflow) -> f64 {
    promflow
        .metrics()
        .sum("promflow_otlp_refused_points_total")
        .expect("promflow_otlp_refused_points_total")
}

#[test]
fn the_python_sdk_exports_to_promflow_as_to_prometheus_3() {
    let python = otel_python();
    let promflow = Promflow::start_with_args(
        "otlp:\n  promote_resource_attributes: [host.name]\nscrape_configs: []\n",
        &[
            "--web.enable-otlp-receiver",
            "--enable-feature=exemplar-storage",
        ],
    );
    for mode in ["protobuf", "gzip", "json"] {
        let before = refused_points(&promflow);
        let Exported {
            resource,
            exponential: points,
            sampled,
        } = export(&python, &promflow, mode);
        let instance = format!("pod-{mode}");
        let want = expected(&instance, &resource);
        let got = stored(&promflow, &instance);
        assert_eq!(
            got.difference(&want).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{mode}: stored but not expected"
        );
        assert_eq!(
            want.difference(&got).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{mode}: expected but not stored"
        );
        assert_eq!(refused_points(&promflow), before, "{mode}: nothing refused");
        // The SDK keeps scale 4 for the wide one and more than 8 for the close one.
        assert_eq!(points["latency.exp"]["scale"], 4, "{mode}: {points:?}");
        assert!(
            points["ratio.exp"]["scale"].as_i64().unwrap() > 8,
            "{points:?}"
        );
        check_native(
            &promflow,
            "latency_exp_seconds",
            &instance,
            &points["latency.exp"],
        );
        check_native(&promflow, "ratio_exp", &instance, &points["ratio.exp"]);
        check_exemplars(
            &promflow,
            "latency_exp_seconds",
            &instance,
            &points["latency.exp"],
        );
        // A sum's exemplars go to its series, a classic histogram's to its buckets'
        // (none to `_sum` or `_count`).
        let requests = sent_exemplars(&sampled["http.server.requests"]);
        assert_eq!(requests.len(), 1, "{mode}: {sampled:?}");
        let selector = |name: &str| format!("{name}{{instance=\"{instance}\"}}");
        assert_eq!(
            stored_exemplars(&promflow, &selector("http_server_requests_total")),
            BTreeMap::from([(String::new(), requests)]),
            "{mode}"
        );
        let latency = sent_exemplars(&sampled["rpc.latency"]);
        assert_eq!(latency.len(), 3, "{mode}: {sampled:?}");
        let bounds = [(0.005, "0.005"), (0.01, "0.01"), (0.1, "0.1"), (1.0, "1")];
        assert_eq!(
            stored_exemplars(
                &promflow,
                &format!("{{__name__=~\"rpc_latency_seconds_.*\", instance=\"{instance}\"}}")
            ),
            by_bucket(latency, &bounds),
            "{mode}"
        );
    }

    // Delta temporality: refused, only target_info is stored for that resource.
    let before = refused_points(&promflow);
    let resource = export(&python, &promflow, "delta").resource;
    let got = stored(&promflow, "pod-delta");
    assert_eq!(got, BTreeSet::from([target_info("pod-delta", &resource)]));
    assert_eq!(refused_points(&promflow), before + 1.0);
    assert!(promflow
        .log()
        .contains("invalid temporality and type combination for metric \\\"delta.requests\\\""));

    // Bodies that are not OTLP, and other content types.
    let url = promflow.url("/api/v1/otlp/v1/metrics");
    let r = post(&url, Some("application/x-protobuf"), b"\xff\xff\xff").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&url, Some("application/json"), b"{\"resourceMetrics\": 5}").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&url, Some("text/plain"), b"x").unwrap();
    assert_eq!(r.status, 415, "{}", r.body);
}

#[test]
fn the_receiver_is_off_without_the_flag() {
    let promflow = Promflow::start("scrape_configs: []\n");
    let r = post(
        &promflow.url("/api/v1/otlp/v1/metrics"),
        Some("application/json"),
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("--web.enable-otlp-receiver"));
    // --enable-feature=otlp-write-receiver (Prometheus 2.47+) turns it on too.
    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &["--enable-feature=otlp-write-receiver"],
    );
    let r = post(
        &promflow.url("/api/v1/otlp/v1/metrics"),
        Some("application/json"),
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "{}");
}

/// `otlp: convert_histograms_to_nhcb: true` (Prometheus 3.x): explicit-bucket
/// histograms are stored as native histograms with custom buckets (schema -53) of the
/// series named without suffix, instead of the classic series: the explicit bounds
/// are the custom bounds, bucket `i` holds `bucket_counts[i]` (the last one up to
/// `+Inf`, the first one from `-Inf`, as Prometheus's `getBound` gives), and
/// `histogram_quantile` interpolates linearly, as over the classic buckets.
#[test]
fn explicit_histograms_become_custom_bucket_histograms_with_convert_histograms_to_nhcb() {
    let python = otel_python();
    let promflow = Promflow::start_with_args(
        "otlp:\n  convert_histograms_to_nhcb: true\nscrape_configs: []\n",
        &["--web.enable-otlp-receiver"],
    );
    let points = export(&python, &promflow, "protobuf").exponential;
    let inf = f64::INFINITY;
    // rpc.latency: observations 0.003, 0.05, 2 over the bounds 0.005, 0.01, 0.1, 1.
    // http.server.duration: 3, 7, 30 ms over the SDK's default bounds 0, 5, 10, 25, 50, …
    for (name, count, sum, buckets, median) in [
        (
            "rpc_latency_seconds",
            3.0,
            2.053,
            vec![
                (0, -inf, 0.005, 1.0),
                (0, 0.01, 0.1, 1.0),
                (0, 1.0, inf, 1.0),
            ],
            // rank 1.5: half way through (0.01, 0.1].
            0.055,
        ),
        (
            "http_server_duration_milliseconds",
            3.0,
            40.0,
            vec![
                (0, 0.0, 5.0, 1.0),
                (0, 5.0, 10.0, 1.0),
                (0, 25.0, 50.0, 1.0),
            ],
            // rank 1.5: half way through (5, 10].
            7.5,
        ),
    ] {
        let selector = format!("{name}{{instance=\"pod-protobuf\"}}");
        let data = promflow.query(&selector);
        let h = &data["result"][0]["histogram"][1];
        assert!(close(num(&h["count"]), count), "{selector}: {data:#}");
        assert!(close(num(&h["sum"]), sum), "{selector}: {data:#}");
        let got: Vec<ApiBucket> = h["buckets"]
            .as_array()
            .unwrap_or_else(|| panic!("{selector}: {data:#}"))
            .iter()
            .map(|b| (b[0].as_u64().unwrap(), num(&b[1]), num(&b[2]), num(&b[3])))
            .collect();
        assert_eq!(got, buckets, "{selector}");
        let q = promflow.query(&format!("histogram_quantile(0.5, {selector})"));
        assert!(
            close(num(&q["result"][0]["value"][1]), median),
            "{selector}: {q:#}"
        );
        // No classic series.
        let classic = promflow.query(&format!("{{__name__=~\"{name}_.*\"}}"));
        assert_eq!(classic["result"], serde_json::json!([]), "{name}");
    }
    // Exponential histograms are native histograms here too.
    check_native(
        &promflow,
        "latency_exp_seconds",
        "pod-protobuf",
        &points["latency.exp"],
    );
}

/// `--enable-feature=created-timestamp-zero-ingestion`: a point's start time puts the
/// zero sample of that start before it, once, as Prometheus 3.x's OTLP appender does
/// (storage/remote/otlptranslator/prometheusremotewrite/combined_appender.go: when the
/// start is set and before the point; its head refuses the repeats); a start equal to
/// the point's time (OpenTelemetry's "unknown start") writes nothing. Gauges carry
/// start times there too (`addGaugeNumberDataPoints`).
#[test]
fn start_times_become_zero_samples_with_created_timestamp_zero_ingestion() {
    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            "--web.enable-otlp-receiver",
            "--enable-feature=created-timestamp-zero-ingestion",
        ],
    );
    let t = (common::now_ms() - 60_000) / 1000 * 1000;
    let ns = |ms: i64| (ms * 1_000_000).to_string();
    let point = |start: i64, at: i64, v: f64| serde_json::json!({"startTimeUnixNano": ns(start), "timeUnixNano": ns(at), "asDouble": v});
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "jobs", "sum": {
                "dataPoints": [point(t - 5000, t, 3.0), point(t - 5000, t + 1000, 4.0)],
                "aggregationTemporality": 2, "isMonotonic": true}},
            {"name": "queue", "gauge": {"dataPoints": [point(t - 2000, t, 7.0)]}},
            {"name": "unknown_start", "sum": {
                "dataPoints": [point(t, t, 1.0)],
                "aggregationTemporality": 2, "isMonotonic": true}}
        ]}]
    }]});
    let r = post(
        &promflow.url("/api/v1/otlp/v1/metrics"),
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let raw = |selector: &str| -> Vec<(i64, String)> {
        let data = promflow.query_at(&format!("{selector}[1h]"), t + 2000);
        data["result"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let at = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                (at, v[1].as_str().unwrap().to_string())
            })
            .collect()
    };
    let s = |at: i64, v: &str| (at, v.to_string());
    assert_eq!(
        raw("jobs_total"),
        [s(t - 5000, "0"), s(t, "3"), s(t + 1000, "4")]
    );
    assert_eq!(raw("queue"), [s(t - 2000, "0"), s(t, "7")]);
    assert_eq!(raw("unknown_start_total"), [s(t, "1")]);
}
