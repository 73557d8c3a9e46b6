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
//! - Native histograms Prometheus's head refuses (`Validate`) refuse the request: in
//!   1.0 side by side with Prometheus 2.42 (the same text; 2.42 answers 500, 3.7 on and
//!   promflow 400; neither stores anything of the request), in 2.0 as 3.7's
//!   `appendV2` (400 naming the series, the rest stored).
//! - The 2.0 sender's series carry their metric's metadata (type, help, unit) as the
//!   target exposes it (read from the requests by a capturing receiver: promflow's
//!   receiver, like Prometheus's, does not serve remote-written metadata on
//!   `/api/v1/metadata`).
//!
//! - Start timestamps with `created-timestamp-zero-ingestion`: per sample and histogram
//!   (`start_timestamp`, Prometheus 3.9 on) and per series (`created_timestamp`, older
//!   senders) received; none sent, as 3.9.
//!
//! No 2.0 peer is installed (Debian's Prometheus is 2.42), so the 2.0 requests are the
//! ones promflow's sender and `promflow::remote::proto::v2` (the upstream field numbers)
//! build, and for start timestamps ones the test writes in the wire format by hand.
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
                .map(|&(timestamp, value)| v2::Sample {
                    value,
                    timestamp,
                    start_timestamp: 0,
                })
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

/// Protobuf's wire format, written by hand for the test requests of
/// [`start_timestamps_of_2_0_samples_become_zero_samples`], with the field numbers of
/// prometheus/prometheus's prompb/io/prometheus/write/v2/types.proto (v3.9): built
/// apart from promflow's own messages, so a wrong field number there shows.
mod wire {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(out: &mut Vec<u8>, field: u64, wire_type: u64) {
        varint(out, field << 3 | wire_type);
    }

    /// An `int64` / `uint64` / `uint32` field (proto3: 0 is not written).
    pub fn int(out: &mut Vec<u8>, field: u64, v: i64) {
        if v != 0 {
            key(out, field, 0);
            varint(out, v as u64);
        }
    }

    pub fn double(out: &mut Vec<u8>, field: u64, v: f64) {
        key(out, field, 1);
        out.extend(v.to_le_bytes());
    }

    /// A `string`, `bytes`, embedded message or packed field.
    pub fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        key(out, field, 2);
        varint(out, b.len() as u64);
        out.extend(b);
    }

    pub fn packed(out: &mut Vec<u8>, field: u64, vs: &[u32]) {
        let mut body = Vec::new();
        for &v in vs {
            varint(&mut body, u64::from(v));
        }
        bytes(out, field, &body);
    }

    /// `Sample`: value 1, timestamp 2, start_timestamp 3.
    pub fn sample(value: f64, timestamp: i64, start: i64) -> Vec<u8> {
        let mut out = Vec::new();
        double(&mut out, 1, value);
        int(&mut out, 2, timestamp);
        int(&mut out, 3, start);
        out
    }

    /// `Histogram`, an integer one with `count` observations, all in the zero
    /// bucket: count_int 1, sum 3, zero_threshold 5, zero_count_int 6, timestamp 15,
    /// start_timestamp 17.
    pub fn histogram(count: i64, timestamp: i64, start: i64) -> Vec<u8> {
        let mut out = Vec::new();
        int(&mut out, 1, count);
        double(&mut out, 3, 1.5);
        double(&mut out, 5, 0.001);
        int(&mut out, 6, count);
        int(&mut out, 15, timestamp);
        int(&mut out, 17, start);
        out
    }

    /// A series of a request: its name, its encoded samples and histograms, and its
    /// `created_timestamp` (0: none).
    pub type Series<'a> = (&'a str, Vec<Vec<u8>>, Vec<Vec<u8>>, i64);

    /// `Request` (symbols 4, timeseries 5) of series `(name, samples, histograms,
    /// created)`: `TimeSeries` labels_refs 1, samples 2, histograms 3 and the field 6
    /// of senders before 3.9 (`created_timestamp`), Snappy-compressed.
    pub fn request(series: &[Series]) -> Vec<u8> {
        let mut symbols = vec!["".to_string(), "__name__".to_string()];
        let mut out = Vec::new();
        let mut timeseries = Vec::new();
        for (name, samples, histograms, created) in series {
            symbols.push(name.to_string());
            let mut ts = Vec::new();
            packed(&mut ts, 1, &[1, symbols.len() as u32 - 1]);
            for s in samples {
                bytes(&mut ts, 2, s);
            }
            for h in histograms {
                bytes(&mut ts, 3, h);
            }
            int(&mut ts, 6, *created);
            timeseries.push(ts);
        }
        for symbol in &symbols {
            bytes(&mut out, 4, symbol.as_bytes());
        }
        for ts in &timeseries {
            bytes(&mut out, 5, ts);
        }
        snap::raw::Encoder::new().compress_vec(&out).unwrap()
    }
}

/// `--enable-feature=created-timestamp-zero-ingestion` and Prometheus 3.9's remote
/// write 2.0 (spec 2.0-rc.4): each sample's and histogram's `start_timestamp` puts
/// the zero sample of its start before it (storage/remote/write_handler.go,
/// `appendV2`: `AppendSTZeroSample` / `AppendHistogramSTZeroSample` before every
/// sample with a start, the refusals ignored; tsdb/head_append.go refuses a start not
/// before its sample and one not after the series' newest sample), so a restart in
/// the middle of a series' samples is written too. A sample without one takes its
/// series' `created_timestamp` (field 6, of senders before 3.9) as before. The zero
/// samples are not counted in the `…-Written` headers.
#[test]
fn start_timestamps_of_2_0_samples_become_zero_samples() {
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
                let ms = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ms, value.to_string())
            })
            .collect()
    };
    let post = |series: &[wire::Series]| {
        let r = post_v2(&promflow, V2_CONTENT_TYPE, "snappy", &wire::request(series));
        assert_eq!(r.status, 204, "{}", r.body);
        let written = |h: &str| r.header(h).unwrap_or_default().to_string();
        (
            written("X-Prometheus-Remote-Write-Samples-Written"),
            written("X-Prometheus-Remote-Write-Histograms-Written"),
        )
    };
    let (sample, histogram) = (wire::sample, wire::histogram);
    let counts = |s: &str, h: &str| (s.to_string(), h.to_string());
    assert_eq!(
        post(&[
            (
                "st_total",
                vec![sample(1.0, t, t - 5000), sample(2.0, t + 1000, t - 5000)],
                vec![],
                0
            ),
            (
                "st_hist",
                vec![],
                vec![histogram(3, t, t - 5000), histogram(3, t + 1000, t - 5000)],
                0
            ),
            // Older senders: the series' start, before its first sample only.
            (
                "ct_total",
                vec![sample(1.0, t, 0), sample(2.0, t + 1000, 0)],
                vec![],
                t - 3000
            ),
        ]),
        counts("4", "2")
    );
    // A restart after the newest sample, then the same start again (nothing), a start
    // at its sample (nothing), a restart between two samples of one request.
    assert_eq!(
        post(&[
            ("st_total", vec![sample(3.0, t + 2000, t + 1500)], vec![], 0),
            ("st_hist", vec![], vec![histogram(3, t + 2000, t + 1500)], 0),
        ]),
        counts("1", "1")
    );
    assert_eq!(
        post(&[(
            "st_total",
            vec![
                sample(4.0, t + 3000, t + 1500),
                sample(5.0, t + 4000, t + 4000),
                sample(6.0, t + 5000, t + 1500),
                sample(1.0, t + 6000, t + 5500),
            ],
            vec![],
            0
        )]),
        counts("4", "0")
    );
    let at = |ms: i64, v: &str| (ms, v.to_string());
    assert_eq!(
        raw("st_total"),
        [
            at(t - 5000, "0"),
            at(t, "1"),
            at(t + 1000, "2"),
            at(t + 1500, "0"),
            at(t + 2000, "3"),
            at(t + 3000, "4"),
            at(t + 4000, "5"),
            at(t + 5000, "6"),
            at(t + 5500, "0"),
            at(t + 6000, "1"),
        ]
    );
    assert_eq!(
        raw("st_hist"),
        [
            at(t - 5000, "0"),
            at(t, "3"),
            at(t + 1000, "3"),
            at(t + 1500, "0"),
            at(t + 2000, "3"),
        ]
    );
    assert_eq!(
        raw("ct_total"),
        [at(t - 3000, "0"), at(t, "1"), at(t + 1000, "2")]
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

/// With `created-timestamp-zero-ingestion`, the 2.0 sender sends what Prometheus 3.9's
/// does: the zero sample of a scraped counter's start as a sample (it is in the WAL
/// like any other), and no start timestamps — neither the samples'
/// `start_timestamp` nor the series' `created_timestamp` (3.9's queue manager,
/// storage/remote/queue_manager.go `populateV2TimeSeries`, sets only value and
/// timestamp; starts reach its WAL only with 3.11's `st-storage`).
#[test]
fn promflow_sends_start_zero_samples_without_start_timestamps_as_3_9_does() {
    let capture = CaptureServer::start();
    let start = now_ms() / 1000 * 1000 - 10_000;
    let exporter = Exporter::start(Reply {
        status: 200,
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        gzip: false,
        body: format!(
            "# TYPE c counter\nc_total 7\nc_created {}.000\n# EOF\n",
            start / 1000
        )
        .into_bytes(),
    });
    let _sender = Promflow::start_with_args(
        &format!(
            "global:\n  scrape_interval: 200ms\nscrape_configs:\n  - job_name: data\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {}\n    protobuf_message: io.prometheus.write.v2.Request\n    queue_config: {{batch_send_deadline: 100ms}}\n",
            exporter.addr(),
            capture.url("/api/v1/write"),
        ),
        &["--enable-feature=created-timestamp-zero-ingestion"],
    );
    let sent = || -> Vec<v2::TimeSeries> {
        capture
            .requests()
            .iter()
            .filter_map(|r| proto::decode::<v2::Request>(&r.body).ok())
            .flat_map(|req| {
                let name = |ts: &v2::TimeSeries| {
                    ts.labels_refs
                        .chunks(2)
                        .find(|p| req.symbols[p[0] as usize] == "__name__")
                        .map(|p| req.symbols[p[1] as usize].clone())
                };
                req.timeseries
                    .iter()
                    .filter(|ts| name(ts).as_deref() == Some("c_total"))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let samples = |series: &[v2::TimeSeries]| -> Vec<(i64, f64)> {
        series
            .iter()
            .flat_map(|ts| ts.samples.iter().map(|s| (s.timestamp, s.value)))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || samples(&sent()).len() >= 3),
        "requests: {}",
        capture.count()
    );
    let series = sent();
    let all = samples(&series);
    assert_eq!(all[0], (start, 0.0), "{all:?}");
    assert!(
        all[1..].iter().all(|s| s.0 > start && s.1 == 7.0),
        "{all:?}"
    );
    assert!(series
        .iter()
        .all(|ts| ts.created_timestamp == 0 && ts.samples.iter().all(|s| s.start_timestamp == 0)));
}

/// An integer native histogram of schema 0 with `spans` (offset, length) and bucket
/// `deltas` on the positive side, `count` observations, `sum`, at `timestamp`.
fn int_histogram(
    timestamp: i64,
    count: u64,
    sum: f64,
    spans: &[(i32, u32)],
    deltas: &[i64],
) -> proto::Histogram {
    proto::Histogram {
        count: Some(HistogramCount::Int(count)),
        zero_count: Some(HistogramZeroCount::Int(0)),
        sum,
        positive_spans: spans
            .iter()
            .map(|&(offset, length)| proto::BucketSpan { offset, length })
            .collect(),
        positive_deltas: deltas.to_vec(),
        timestamp,
        ..Default::default()
    }
}

fn post_v1(peer: &Peer, body: &[u8]) -> common::http::HttpResponse {
    send(
        "POST",
        &peer.url("/api/v1/write"),
        &[
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        Some("application/x-protobuf"),
        body,
    )
    .expect("POST /api/v1/write")
}

fn v1_series(
    labels: &[(&str, &str)],
    samples: &[(i64, f64)],
    histograms: Vec<proto::Histogram>,
) -> proto::TimeSeries {
    proto::TimeSeries {
        labels: labels
            .iter()
            .map(|(name, value)| proto::Label {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| proto::Sample { value, timestamp })
            .collect(),
        exemplars: Vec::new(),
        histograms,
    }
}

/// A native histogram Prometheus's head refuses (`Validate`) refuses the request.
/// 1.0, side by side with Prometheus 2.42: a float sample, a valid histogram and an
/// invalid one in a request; 2.42 answers 500 (its handler knew no other answer for
/// the error), Prometheus 3.7 on 400 (storage/remote/write_handler.go,
/// `isHistogramValidationError`), which promflow follows: the same text as 2.42's, and
/// neither stores anything of the request (rolled back). 2.0 (no 2.0 peer: as 3.7's
/// `appendV2`): 400 naming the series, the rest of the request stored and counted.
#[test]
fn invalid_native_histograms_refuse_the_request_as_prometheus_does() {
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &[RECEIVER]);
    let oracle = Prometheus::start_with_args(
        "scrape_configs: []\n",
        &[RECEIVER, "--enable-feature=native-histograms"],
    );
    let t = now_ms() - 10_000;
    let valid = || int_histogram(t, 3, 2.0, &[(0, 2)], &[1, 1]);
    let mut float_negative = valid();
    float_negative.count = Some(HistogramCount::Float(3.0));
    float_negative.zero_count = Some(HistogramZeroCount::Float(0.0));
    float_negative.positive_deltas.clear();
    float_negative.positive_counts = vec![1.0, -2.0];
    let cases = [
        ("spans", int_histogram(t + 1, 3, 2.0, &[(0, 3)], &[1, 1])),
        (
            "offset",
            int_histogram(t + 1, 3, 2.0, &[(0, 1), (-2, 1)], &[1, 1]),
        ),
        (
            "negative",
            int_histogram(t + 1, 0, 2.0, &[(0, 2)], &[1, -2]),
        ),
        (
            "count",
            int_histogram(t + 1, 1, f64::NAN, &[(0, 2)], &[1, 1]),
        ),
        (
            "float",
            proto::Histogram {
                timestamp: t + 1,
                ..float_negative
            },
        ),
    ];
    let stored = |peer: &Peer, case: &str| {
        answer(
            peer,
            &format!("count({{__name__=~\"(float|hist)_{case}\"}})"),
            t + 1000,
        )
    };
    for (case, invalid) in cases {
        let float_name = format!("float_{case}");
        let hist_name = format!("hist_{case}");
        let body = proto::encode(&proto::WriteRequest {
            timeseries: vec![
                v1_series(&[("__name__", &float_name)], &[(t, 1.0)], Vec::new()),
                v1_series(&[("__name__", &hist_name)], &[], vec![valid(), invalid]),
            ],
        });
        let theirs = post_v1(&oracle, &body);
        let ours = post_v1(&promflow, &body);
        assert_eq!(theirs.status, 500, "{case}: 2.42: {}", theirs.body);
        assert_eq!(ours.status, 400, "{case}: {}", ours.body);
        assert_eq!(ours.body, theirs.body, "{case}");
        assert!(stored(&oracle, case).is_empty(), "{case}: 2.42 stored");
        assert!(stored(&promflow, case).is_empty(), "{case}: stored");
    }
    assert!(
        promflow
            .log()
            .contains("remote write request refused: invalid histogram"),
        "{}",
        promflow.log()
    );
    // Once valid, the same request is stored by both.
    let body = proto::encode(&proto::WriteRequest {
        timeseries: vec![
            v1_series(&[("__name__", "float_ok")], &[(t, 1.0)], Vec::new()),
            v1_series(&[("__name__", "hist_ok")], &[], vec![valid()]),
        ],
    });
    for peer in [&*oracle, &*promflow] {
        let r = post_v1(peer, &body);
        assert_eq!(r.status, 204, "{}", r.body);
        assert_eq!(stored(peer, "ok"), ["{} \"2\""]);
    }
    // A count other than the buckets' sum (the sum not NaN): refused by Prometheus
    // 3.x's rule, which 2.42 did not have (it stores it).
    let body = proto::encode(&proto::WriteRequest {
        timeseries: vec![v1_series(
            &[("__name__", "hist_mismatch")],
            &[],
            vec![int_histogram(t, 5, 2.0, &[(0, 2)], &[1, 1])],
        )],
    });
    assert_eq!(post_v1(&oracle, &body).status, 204);
    let r = post_v1(&promflow, &body);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body,
        "3 observations found in buckets, but the Count field is 5: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)\n"
    );

    // 2.0: the rest of the request is stored and counted; the answer names the series.
    let mut symbols = v2::Symbols::new();
    let mut series = |name: &str, samples: Vec<v2::Sample>, histograms| v2::TimeSeries {
        labels_refs: vec![symbols.intern("__name__"), symbols.intern(name)],
        samples,
        histograms,
        ..Default::default()
    };
    let timeseries = vec![
        series(
            "v2_float",
            vec![v2::Sample {
                value: 1.0,
                timestamp: t,
                start_timestamp: 0,
            }],
            Vec::new(),
        ),
        series(
            "v2_hist",
            Vec::new(),
            vec![valid(), int_histogram(t + 1, 3, 2.0, &[(0, 3)], &[1, 1])],
        ),
    ];
    let body = proto::encode(&v2::Request {
        symbols: symbols.into_table(),
        timeseries,
    });
    let r = post_v2(&promflow, V2_CONTENT_TYPE, "snappy", &body);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body,
        "positive side: spans need 3 buckets, have 2 buckets: histogram spans specify different number of buckets than provided for series {__name__=\"v2_hist\"}\n"
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("1")
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Histograms-Written"),
        Some("1")
    );
    assert_eq!(answer(&promflow, "v2_float", t + 1000).len(), 1);
    assert_eq!(
        answer(&promflow, "histogram_count(v2_hist)", t + 1000),
        ["{} \"3\""]
    );
}
