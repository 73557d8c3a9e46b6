//! Remote write 2.0 (`io.prometheus.write.v2.Request`) between promflow processes, the
//! fallback to 1.0, and a real Prometheus 2.42 (1.0 only) still writing to promflow.
//!
//! - A promflow scrapes an exporter and sends with `protobuf_message:
//!   io.prometheus.write.v2.Request` to two promflow receivers: one that accepts only
//!   2.0 (`--web.remote-write-receiver.accepted-protobuf-messages`), so what reaches it
//!   came as 2.0, and one that accepts only 1.0, which answers 415 (as Prometheus 3.x
//!   does) so that the sender falls back to 1.0. All three answer the same query alike.
//! - Requests posted by the test: 2.0's symbol table and label references, the
//!   `X-Prometheus-Remote-Write-*-Written` headers, native histograms stored beside
//!   the floats (as Prometheus 3.x does), out-of-range symbol references, 415 for
//!   unknown messages and encodings.
//! - Prometheus 2.42 remote-writes (1.0, `Content-Type: application/x-protobuf`) to a
//!   promflow with the default accepted messages.
//! - The 2.0 sender's series carry their metric's metadata (type, help, unit) as the
//!   target exposes it (read from the requests by a capturing receiver: promflow's
//!   receiver, like Prometheus's, does not serve remote-written metadata on
//!   `/api/v1/metadata`).
//!
//! No 2.0 peer is installed (Debian's Prometheus is 2.42), so the 2.0 requests are the
//! ones promflow's sender and `promflow::remote::proto::v2` (the upstream field numbers)
//! build.
//!
//! External services: Prometheus (Debian `prometheus`).

mod common;

use common::exporter::{Exporter, Reply};
use common::http::send;
use common::receiver::CaptureServer;
use common::{now_ms, wait_until, Peer, Prometheus, Promflow};
use promflow::remote::proto::{self, v2, HistogramCount, HistogramZeroCount};
use std::time::Duration;

const RECEIVER: &str = "--web.enable-remote-write-receiver";
const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn exposition() -> Reply {
    Reply::text("# TYPE m gauge\nm{i=\"0\"} 1\nm{i=\"1\"} 2.5\n# TYPE c counter\nc_total 7\n")
}

/// The answer to `query` at `at_ms`, as sorted `labels value` lines.
fn answer(peer: &Peer, query: &str, at_ms: i64) -> Vec<String> {
    peer.vector_lines(query, Some(at_ms))
}

fn metric(promflow: &Promflow, name: &str, remote: &str) -> f64 {
    promflow
        .metrics()
        .find(name, &[("remote_name", remote)])
        .map(|s| s.value)
        .unwrap_or_else(|| panic!("{name}{{remote_name={remote}}} missing"))
}

#[test]
fn promflow_sends_2_0_to_promflow_and_falls_back_to_1_0_on_415() {
    let v2_only = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            RECEIVER,
            "--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
        ],
    );
    let v1_only = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            RECEIVER,
            "--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest",
        ],
    );
    let exporter = Exporter::start(exposition());
    let queue = "    protobuf_message: io.prometheus.write.v2.Request\n    queue_config: {batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 200ms}\n";
    let sender = Promflow::start(&format!(
        "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: data\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {}\n    name: v2\n{queue}  - url: {}\n    name: v1\n{queue}",
        exporter.addr(),
        v2_only.url("/api/v1/write"),
        v1_only.url("/api/v1/write"),
    ));

    // Scraped at least a second's worth, then compared at a time all three have.
    assert!(wait_until(Duration::from_secs(30), || {
        [&v2_only, &v1_only]
            .iter()
            .all(|p| answer(p, "count_over_time(m[1m])", now_ms()).len() == 2)
    }));
    std::thread::sleep(Duration::from_secs(1));
    let at = now_ms() - 500;
    assert!(wait_until(Duration::from_secs(10), || {
        let want = answer(&sender, "{job=\"data\"}", at);
        [&v2_only, &v1_only]
            .iter()
            .all(|p| answer(p, "{job=\"data\"}", at) == want)
    }));
    let want = answer(&sender, "{job=\"data\"}", at);
    assert!(
        want.iter()
            .any(|l| l.contains("\"c_total\"") && l.ends_with("\"7\"")),
        "{want:?}"
    );
    assert_eq!(
        want.len(),
        3 + 5,
        "m twice, c_total, and the 5 scrape series"
    );

    // Only the 1.0-only receiver made the sender fall back; nothing was lost.
    let log = sender.log();
    assert_eq!(
        log.matches("falling back to remote write 1.0").count(),
        1,
        "{log}"
    );
    assert!(log.contains(&v1_only.url("/api/v1/write")));
    for remote in ["v1", "v2"] {
        assert_eq!(
            metric(
                &sender,
                "prometheus_remote_storage_samples_failed_total",
                remote
            ),
            0.0
        );
    }
}

/// A 2.0 request of `series` (labels, samples) with native histogram samples at
/// `histograms` (ms) on the first series: integer histograms of count 3 (all in the
/// zero bucket), sum 1.5.
/// One series of a test request: its labels and its `(ms, value)` samples.
type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn v2_body(series: &[TestSeries], histograms: &[i64]) -> Vec<u8> {
    v2_body_started(series, histograms, 0)
}

/// [`v2_body`] with every series' `created_timestamp` at `created` (ms; 0: none).
fn v2_body_started(series: &[TestSeries], histograms: &[i64], created: i64) -> Vec<u8> {
    let mut symbols = v2::Symbols::new();
    let timeseries = series
        .iter()
        .enumerate()
        .map(|(i, (labels, samples))| v2::TimeSeries {
            labels_refs: labels
                .iter()
                .flat_map(|(n, v)| [symbols.intern(n), symbols.intern(v)])
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| v2::Sample { value, timestamp })
                .collect(),
            histograms: if i == 0 {
                histograms
                    .iter()
                    .map(|&timestamp| promflow::remote::proto::Histogram {
                        count: Some(HistogramCount::Int(3)),
                        zero_count: Some(HistogramZeroCount::Int(3)),
                        zero_threshold: 0.001,
                        sum: 1.5,
                        timestamp,
                        ..Default::default()
                    })
                    .collect()
            } else {
                Vec::new()
            },
            metadata: Some(v2::Metadata {
                r#type: 2,
                help_ref: symbols.intern("a gauge"),
                unit_ref: 0,
            }),
            created_timestamp: created,
            ..Default::default()
        })
        .collect();
    proto::encode(&v2::Request {
        symbols: symbols.into_table(),
        timeseries,
    })
}

fn post_v2(
    promflow: &Promflow,
    content_type: &str,
    encoding: &str,
    body: &[u8],
) -> common::http::HttpResponse {
    send(
        "POST",
        &promflow.url("/api/v1/write"),
        &[
            ("Content-Encoding", encoding),
            ("X-Prometheus-Remote-Write-Version", "2.0.0"),
        ],
        Some(content_type),
        body,
    )
    .expect("POST /api/v1/write")
}

#[test]
fn the_receiver_reads_2_0_requests_and_refuses_what_it_cannot_store() {
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &[RECEIVER]);
    let t = now_ms() - 10_000;
    let body = v2_body(
        &[
            (
                &[("__name__", "pushed"), ("k", "a")],
                &[(t, 1.0), (t + 1000, 2.0)],
            ),
            (&[("__name__", "pushed"), ("k", "b")], &[(t, 3.0)]),
        ],
        &[],
    );
    let r = post_v2(&promflow, V2_CONTENT_TYPE, "snappy", &body);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("3")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        Some("0")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Exemplars-Written"),
        Some("0")
    );
    assert_eq!(
        answer(&promflow, "pushed", t + 1000),
        [
            "{\"__name__\":\"pushed\",\"k\":\"a\"} \"2\"",
            "{\"__name__\":\"pushed\",\"k\":\"b\"} \"3\""
        ]
    );

    // Native histograms: stored beside the float samples, as Prometheus 3.x does.
    let body = v2_body(
        &[
            (&[("__name__", "with_hist")], &[]),
            (&[("__name__", "beside_hist")], &[(t, 4.0)]),
        ],
        &[t, t + 1],
    );
    let r = post_v2(&promflow, V2_CONTENT_TYPE, "snappy", &body);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("1")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        Some("2")
    );
    assert_eq!(answer(&promflow, "beside_hist", t).len(), 1);
    assert_eq!(
        answer(&promflow, "histogram_count(with_hist)", t + 1000),
        ["{} \"3\""]
    );
    assert_eq!(
        answer(&promflow, "histogram_sum(with_hist)", t + 1000),
        ["{} \"1.5\""]
    );

    // A label reference past the symbol table.
    let bad = proto::encode(&v2::Request {
        symbols: vec![String::new(), "__name__".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 9],
            ..Default::default()
        }],
    });
    let r = post_v2(&promflow, V2_CONTENT_TYPE, "snappy", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("symbol reference 9 out of range"),
        "{}",
        r.body
    );

    // Unknown messages, other media types and encodings: 415.
    for (content_type, encoding) in [
        (
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
            "snappy",
        ),
        ("application/json", "snappy"),
        (V2_CONTENT_TYPE, "zstd"),
    ] {
        let r = post_v2(&promflow, content_type, encoding, &body);
        assert_eq!(r.status, 415, "{content_type} {encoding}: {}", r.body);
    }
}

/// `--enable-feature=created-timestamp-zero-ingestion`: a series' `created_timestamp`
/// puts the zero sample of its start before its first float sample and before each
/// histogram, as Prometheus 3.x's handler does (storage/remote/write_handler.go of
/// v3.5, where the field is per series: `AppendCTZeroSample`,
/// `AppendHistogramCTZeroSample`), uncounted in the `…-Written` headers; the start
/// again (or one not after the newest sample) writes nothing more.
#[test]
fn created_timestamps_of_2_0_series_become_zero_samples() {
    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            RECEIVER,
            "--enable-feature=created-timestamp-zero-ingestion",
        ],
    );
    let t = now_ms() / 1000 * 1000 - 20_000;
    let raw = |expr: &str| -> Vec<(i64, String)> {
        let data = promflow.query_at(&format!("{expr}[1h]"), t + 10_000);
        let series = &data["result"][0];
        let points = series["values"]
            .as_array()
            .or(series["histograms"].as_array())
            .cloned()
            .unwrap_or_default();
        points
            .iter()
            .map(|p| {
                let value = p[1]["count"].as_str().or(p[1].as_str()).unwrap();
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    value.to_string(),
                )
            })
            .collect()
    };
    let post = |samples: &[(i64, f64)], histograms: &[i64], created: i64| {
        let series: [TestSeries; 2] = [
            (&[("__name__", "started_hist")], &[]),
            (&[("__name__", "started_total")], samples),
        ];
        let body = v2_body_started(&series, histograms, created);
        let r = post_v2(&promflow, V2_CONTENT_TYPE, "snappy", &body);
        assert_eq!(r.status, 204, "{}", r.body);
        let written = |h: &str| r.header(h).map(str::to_string);
        (
            written("X-Prometheus-Remote-Write-Samples-Written"),
            written("X-Prometheus-Remote-Write-Histograms-Written"),
        )
    };
    let counts = |s: &str, h: &str| (Some(s.to_string()), Some(h.to_string()));
    assert_eq!(
        post(&[(t, 1.0), (t + 1000, 2.0)], &[t, t + 1000], t - 5000),
        counts("2", "2")
    );
    assert_eq!(
        post(&[(t + 2000, 3.0)], &[t + 2000], t - 5000),
        counts("1", "1")
    );
    assert_eq!(
        post(&[(t + 3000, 4.0)], &[t + 3000], t + 1000),
        counts("1", "1")
    );
    let zero = |ms: i64, v: &str| (ms, v.to_string());
    assert_eq!(
        raw("started_total"),
        [
            zero(t - 5000, "0"),
            zero(t, "1"),
            zero(t + 1000, "2"),
            zero(t + 2000, "3"),
            zero(t + 3000, "4")
        ]
    );
    assert_eq!(
        raw("started_hist"),
        [
            zero(t - 5000, "0"),
            zero(t, "3"),
            zero(t + 1000, "3"),
            zero(t + 2000, "3"),
            zero(t + 3000, "3")
        ]
    );
}

#[test]
fn prometheus_2_42_still_writes_1_0_to_promflow() {
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &[RECEIVER]);
    let exporter = Exporter::start(exposition());
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: data\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {}\n    queue_config: {{batch_send_deadline: 100ms}}\n",
        exporter.addr(),
        promflow.url("/api/v1/write"),
    ));
    assert!(wait_until(Duration::from_secs(60), || answer(
        &promflow,
        "m",
        now_ms()
    )
    .len()
        == 2));
    std::thread::sleep(Duration::from_secs(1));
    let at = now_ms() - 500;
    assert!(wait_until(Duration::from_secs(10), || answer(
        &promflow,
        "{job=\"data\"}",
        at
    ) == answer(
        &prometheus,
        "{job=\"data\"}",
        at
    )));
    assert!(!promflow.log().contains("remote write request refused"));
}

/// A series' 2.0 metadata as `(type, help, unit)`.
type Meta = (i32, String, String);

/// The metadata of each series in `request`, with the series' name.
fn metadata_by_name(request: &v2::Request) -> Vec<(String, Option<Meta>)> {
    let sym = |i: u32| request.symbols[i as usize].clone();
    request
        .timeseries
        .iter()
        .map(|ts| {
            let name = ts
                .labels_refs
                .chunks(2)
                .find(|pair| sym(pair[0]) == "__name__")
                .map_or_else(String::new, |pair| sym(pair[1]));
            let meta = ts
                .metadata
                .as_ref()
                .map(|m| (m.r#type, sym(m.help_ref), sym(m.unit_ref)));
            (name, meta)
        })
        .collect()
}

#[test]
fn promflow_sends_metric_metadata_with_2_0_series() {
    let capture = CaptureServer::start();
    let exporter = Exporter::start(Reply::text(
        "# HELP m Temperature now.\n# TYPE m gauge\nm{i=\"0\"} 1\n# HELP c_total Requests served.\n# TYPE c_total counter\nc_total 7\n",
    ));
    let _sender = Promflow::start(&format!(
        "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: data\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {}\n    protobuf_message: io.prometheus.write.v2.Request\n    queue_config: {{batch_send_deadline: 100ms}}\n",
        exporter.addr(),
        capture.url("/api/v1/write"),
    ));
    // The metadata is read again every 5 s: a request after the first scrape has it.
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            seen = capture
                .requests()
                .iter()
                .filter_map(|r| proto::decode::<v2::Request>(&r.body).ok())
                .flat_map(|req| metadata_by_name(&req))
                .filter(|(name, meta)| (name == "m" || name == "c_total") && meta.is_some())
                .collect();
            seen.iter().any(|(n, _)| n == "m") && seen.iter().any(|(n, _)| n == "c_total")
        }),
        "no 2.0 series with metadata for m and c_total; requests: {}",
        capture.count()
    );
    for (name, meta) in &seen {
        let want = match name.as_str() {
            "m" => (2, "Temperature now.".to_string(), String::new()),
            _ => (1, "Requests served.".to_string(), String::new()),
        };
        assert_eq!(meta.as_ref(), Some(&want), "{name}");
    }
}
