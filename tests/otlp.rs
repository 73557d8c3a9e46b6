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
//! - `latency.exp` (an exponential histogram): refused (native histograms only);
//! - attributes: `http.method` → `http_method` etc.; `job` = `shop/checkout`
//!   (`service.namespace/service.name`), `instance` = `service.instance.id`;
//!   `host.name` promoted by `otlp.promote_resource_attributes` onto every series;
//! - `target_info`: `job`, `instance` and every other resource attribute (escaped).
//!
//! A counter exported with delta temporality is refused (Prometheus without
//! `otlp-deltatocumulative`), and counted in `promflow_otlp_refused_points_total`.
//!
//! External services: the OpenTelemetry Python SDK in `.venv` (`.ci/test` installs it).

mod common;

use common::http::post;
use common::Promflow;
use serde_json::Value;
use std::collections::BTreeSet;
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

/// Runs the exporter script; returns the resource attributes it sent.
fn export(python: &PathBuf, promflow: &Promflow, mode: &str) -> Vec<(String, String)> {
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
    let attrs: serde_json::Map<String, Value> =
        serde_json::from_slice(&out.stdout).expect("resource attributes as JSON");
    attrs
        .into_iter()
        .map(|(k, v)| (k, v.as_str().expect("string attribute").to_string()))
        .collect()
}

/// Every series with `instance="<instance>"` now, as `{labels} "value"` lines.
fn stored(promflow: &Promflow, instance: &str) -> BTreeSet<String> {
    promflow
        .vector_lines(&format!("{{instance=\"{instance}\"}}"), None)
        .into_iter()
        .collect()
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
        &["--web.enable-otlp-receiver"],
    );
    for mode in ["protobuf", "gzip", "json"] {
        let before = refused_points(&promflow);
        let resource = export(&python, &promflow, mode);
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
        assert!(
            refused_points(&promflow) > before,
            "{mode}: the exponential histogram is refused and counted"
        );
        assert!(promflow
            .log()
            .contains("exponential histogram \\\"latency.exp\\\" refused"));
    }

    // Delta temporality: refused, only target_info is stored for that resource.
    let before = refused_points(&promflow);
    let resource = export(&python, &promflow, "delta");
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
