//! Scraping the protobuf exposition format, side by side with the oracle: a
//! controllable exporter (`tests/common/exporter.rs`) serves length-delimited
//! `io.prometheus.client.MetricFamily` messages, encoded here, and promflow and a real
//! Prometheus 2.42 (started with `--enable-feature=native-histograms`, so it reads
//! protobuf as its native-histogram scrapes do) scrape it. The float series both
//! store, their values and the metadata both report must be the same.
//!
//! Native histograms: with `scrape_native_histograms: true` promflow stores them as
//! native samples only, as Prometheus 2.42 does (it has no
//! `scrape_classic_histograms` yet); their `histogram_count`/`histogram_sum` are
//! compared here, the rest in `tests/native_histograms.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::exporter::Exporter;
use common::protobuf::{self, label};
use common::{now_ms, wait_until, Peer, Prometheus, Promflow};
use promflow::scrape::exposition::metrics_proto::{
    Bucket, BucketSpan, Counter, Exemplar, Gauge, Histogram, LabelPair, Metric, MetricFamily,
    MetricType, Quantile, Summary, Timestamp, Untyped,
};

const WAIT: Duration = Duration::from_secs(30);

fn family(name: &str, kind: MetricType, help: &str, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        help: Some(help.into()),
        r#type: Some(kind as i32),
        metric,
        unit: None,
    }
}

fn bucket(upper: f64, count: u64) -> Bucket {
    Bucket {
        cumulative_count: Some(count),
        upper_bound: Some(upper),
        ..Default::default()
    }
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    Metric {
        label: labels,
        gauge: Some(Gauge { value: Some(value) }),
        ..Default::default()
    }
}

/// The exposed families: every metric type, exemplars, an explicit timestamp,
/// NaN, a value with the staleness marker's bits, float counts, native histograms
/// with and without classic buckets, awkward bucket bounds.
fn families(timestamp_ms: i64) -> Vec<MetricFamily> {
    let exemplar = Exemplar {
        label: vec![label("trace_id", "0af7651916cd43dd8448eb211c80319c")],
        value: Some(0.07),
        timestamp: Some(Timestamp {
            seconds: timestamp_ms / 1000,
            nanos: 0,
        }),
    };
    let native = Histogram {
        sample_count: Some(12),
        sample_sum: Some(8.25),
        schema: Some(1),
        zero_threshold: Some(0.001),
        zero_count: Some(2),
        positive_span: vec![
            BucketSpan {
                offset: Some(-1),
                length: Some(2),
            },
            BucketSpan {
                offset: Some(3),
                length: Some(1),
            },
        ],
        positive_delta: vec![3, -1, 2],
        negative_span: vec![BucketSpan {
            offset: Some(0),
            length: Some(1),
        }],
        negative_delta: vec![1],
        ..Default::default()
    };
    vec![
        family(
            "http_requests_total",
            MetricType::Counter,
            "Requests served.",
            vec![
                Metric {
                    label: vec![label("code", "200"), label("method", "get")],
                    counter: Some(Counter {
                        value: Some(1027.0),
                        exemplar: Some(exemplar.clone()),
                        created_timestamp: None,
                    }),
                    ..Default::default()
                },
                Metric {
                    label: vec![label("code", "500"), label("path", "a \"quoted\"\\\nline")],
                    counter: Some(Counter {
                        value: Some(3.0),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
        ),
        family(
            "temperature_celsius",
            MetricType::Gauge,
            "",
            vec![
                gauge(vec![label("room", "a")], -12.5),
                gauge(vec![label("room", "nan")], f64::NAN),
                gauge(vec![label("room", "inf")], f64::NEG_INFINITY),
                gauge(
                    vec![label("room", "stale_bits")],
                    f64::from_bits(0x7ff0_0000_0000_0002),
                ),
                Metric {
                    timestamp_ms: Some(timestamp_ms),
                    ..gauge(vec![label("room", "timestamped")], 21.0)
                },
            ],
        ),
        family(
            "legacy_thing",
            MetricType::Untyped,
            "An untyped metric.",
            vec![Metric {
                untyped: Some(Untyped {
                    value: Some(0.0015),
                }),
                ..Default::default()
            }],
        ),
        family("no_metrics", MetricType::Gauge, "Skipped.", vec![]),
        family(
            "rpc_duration_seconds",
            MetricType::Summary,
            "RPC latency.",
            vec![Metric {
                label: vec![label("service", "x")],
                summary: Some(Summary {
                    sample_count: Some(9),
                    sample_sum: Some(1.5),
                    quantile: vec![
                        Quantile {
                            quantile: Some(0.5),
                            value: Some(0.05),
                        },
                        Quantile {
                            quantile: Some(0.99),
                            value: Some(0.3),
                        },
                        Quantile {
                            quantile: Some(1.0),
                            value: Some(f64::NAN),
                        },
                    ],
                    created_timestamp: None,
                }),
                ..Default::default()
            }],
        ),
        family(
            "request_size_bytes",
            MetricType::Histogram,
            "Sizes.",
            vec![Metric {
                histogram: Some(Histogram {
                    sample_count: Some(40),
                    sample_sum: Some(123456.0),
                    bucket: vec![
                        bucket(0.005, 1),
                        Bucket {
                            exemplar: Some(exemplar),
                            ..bucket(0.1, 2)
                        },
                        bucket(1.0, 5),
                        bucket(2.5, 7),
                        bucket(100.0, 20),
                        bucket(1e6, 39),
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
        family(
            "float_histogram",
            MetricType::Histogram,
            "",
            vec![Metric {
                histogram: Some(Histogram {
                    sample_count_float: Some(4.5),
                    sample_sum: Some(3.0),
                    bucket: vec![
                        Bucket {
                            cumulative_count_float: Some(1.5),
                            upper_bound: Some(-1.0),
                            ..Default::default()
                        },
                        Bucket {
                            cumulative_count_float: Some(4.5),
                            upper_bound: Some(f64::INFINITY),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        ),
        family(
            "latency_seconds",
            MetricType::Histogram,
            "Native, with classic buckets too.",
            vec![
                Metric {
                    label: vec![label("kind", "both")],
                    histogram: Some(Histogram {
                        bucket: vec![bucket(0.25, 4), bucket(1.0, 9)],
                        ..native.clone()
                    }),
                    ..Default::default()
                },
                Metric {
                    label: vec![label("kind", "native_only")],
                    histogram: Some(native),
                    ..Default::default()
                },
            ],
        ),
    ]
}

fn config(exporter: &Exporter, job_extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n{job_extra}    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

/// The float samples of `{job="app"}` a server answers now, as `series => value`
/// (series with sorted labels; values as the API spells them). Native histogram
/// samples are left out.
fn float_samples(server: &Peer) -> BTreeMap<String, String> {
    let data = server.query(r#"{job="app"}"#);
    let mut out = BTreeMap::new();
    for entry in data["result"].as_array().unwrap() {
        let Some(value) = entry.get("value") else {
            continue;
        };
        let metric: BTreeMap<String, String> =
            serde_json::from_value(entry["metric"].clone()).unwrap();
        let name = metric.get("__name__").cloned().unwrap_or_default();
        let labels: Vec<String> = metric
            .iter()
            .filter(|(k, _)| *k != "__name__")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        out.insert(
            format!("{name}{{{}}}", labels.join(",")),
            value[1].as_str().unwrap().to_string(),
        );
    }
    out
}

/// `GET /api/v1/metadata` of the families the body exposes: family => (type, help).
fn metadata(server: &Peer, families: &[MetricFamily]) -> BTreeMap<String, (String, String)> {
    let body: serde_json::Value = serde_json::from_str(&server.get_ok("/api/v1/metadata")).unwrap();
    let mut out = BTreeMap::new();
    for family in families {
        let name = family.name.clone().unwrap();
        if let Some(entries) = body["data"][&name].as_array() {
            let first = &entries[0];
            out.insert(
                name,
                (
                    first["type"].as_str().unwrap().to_string(),
                    first["help"].as_str().unwrap().to_string(),
                ),
            );
        }
    }
    out
}

#[test]
fn protobuf_scrapes_store_what_prometheus_stores() {
    let families = families(now_ms() - 30_000);
    let exporter = Exporter::start(protobuf::reply(&families));
    let promflow = Promflow::start(&config(&exporter, "    scrape_native_histograms: true\n"));
    let oracle = Prometheus::start_with_args(
        &config(&exporter, ""),
        &["--enable-feature=native-histograms"],
    );
    let scraped = |server: &Peer| {
        float_samples(server)
            .keys()
            .any(|k| k.starts_with("request_size_bytes_bucket"))
    };
    assert!(
        wait_until(WAIT, || scraped(&promflow)),
        "promflow: {:#?}",
        float_samples(&promflow)
    );
    assert!(
        wait_until(WAIT, || scraped(&oracle)),
        "oracle: {:#?}",
        float_samples(&oracle)
    );
    // A couple more scrapes each, so staleness of any series would show.
    std::thread::sleep(Duration::from_secs(3));
    let mut ours = float_samples(&promflow);
    let theirs = float_samples(&oracle);
    assert!(
        !theirs.keys().any(|k| k.contains("stale_bits")),
        "the staleness marker's bits are a staleness marker: {theirs:#?}"
    );
    // Float counts came after 2.42 (which reads them as 0); checked in the unit tests.
    let float_histogram: Vec<_> = ours
        .keys()
        .filter(|k| k.starts_with("float_histogram_"))
        .cloned()
        .collect();
    assert_eq!(float_histogram.len(), 4, "{ours:#?}");
    ours.retain(|k, _| !k.starts_with("float_histogram_"));
    let mut theirs = theirs;
    theirs.retain(|k, _| !k.starts_with("float_histogram_"));
    // Both store the native histograms as native samples only (left out above) and
    // count each as one scraped sample.
    assert!(
        !ours.keys().any(|k| k.starts_with("latency_seconds")),
        "{ours:#?}"
    );
    // Timing, not content.
    ours.retain(|k, _| !k.starts_with("scrape_duration_seconds"));
    theirs.retain(|k, _| !k.starts_with("scrape_duration_seconds"));
    assert_eq!(ours, theirs);
    assert!(ours.len() > 20, "{ours:#?}");

    // The native series answer as the oracle's do (tests/native_histograms.rs
    // compares them in depth).
    for kind in ["both", "native_only"] {
        for expr in ["histogram_count", "histogram_sum"] {
            let query = format!("{expr}(latency_seconds{{kind={kind:?}}})");
            let value = |server: &Peer| {
                server.query(&query)["result"][0]["value"][1]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(value(&promflow), value(&oracle), "{query}");
        }
    }
    assert_eq!(metadata(&promflow, &families), metadata(&oracle, &families));
}

#[test]
fn scrape_protocols_decide_the_accept_header_and_content_type_the_parser() {
    let families = families(now_ms());
    let exporter = Exporter::start(protobuf::reply(&families));
    let promflow = Promflow::start(&format!(
        "{}  - job_name: text_only\n    scrape_protocols: [PrometheusText0.0.4]\n    static_configs:\n      - targets: ['{}']\n",
        config(&exporter, ""),
        exporter.addr()
    ));
    assert!(wait_until(WAIT, || exporter.requests().len() >= 2));
    let mut accepts: Vec<String> = exporter
        .requests()
        .iter()
        .filter_map(|r| {
            r.iter()
                .find(|(k, _)| k == "accept")
                .map(|(_, v)| v.clone())
        })
        .collect();
    accepts.sort();
    accepts.dedup();
    // Prometheus's acceptHeader for DefaultScrapeProtocols and for one protocol.
    assert_eq!(
        accepts,
        [
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.4",
        ]
    );
    // The reply's Content-Type, not what was asked for, picks the parser.
    assert!(wait_until(WAIT, || {
        let up = promflow.federate(&[r#"{__name__="http_requests_total"}"#]);
        up.samples.len() == 4
    }));
    drop(promflow);

    let native = Promflow::start(&config(&exporter, "    scrape_native_histograms: true\n"));
    let before = exporter.requests().len();
    assert!(wait_until(WAIT, || exporter.requests().len() > before));
    let last = exporter.requests().last().cloned().unwrap();
    let accept = last
        .iter()
        .find(|(k, _)| k == "accept")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        accept,
        Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
    );
    drop(native);
}
