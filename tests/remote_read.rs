//! `/api/v1/read` (remote read, sampled responses) queried by a real Prometheus 2.42
//! whose `remote_read` points at promflow and which holds no data of its own.
//!
//! promflow receives samples by remote write and has `external_labels: {dc: pf}`.
//! The same instant and range queries then give, through Prometheus, what promflow
//! answers itself with the external label added (as Prometheus's read handler adds
//! it); an equality matcher on the external label (`{dc="pf"}`) still selects the
//! series. External services: Prometheus (Debian `prometheus`).

mod common;

use common::{api_seconds, now_ms};

use common::http::with_query;
use common::remote_write::{self, Series};
use common::{Peer, Prometheus, Promflow};
use serde_json::Value;

const STEP: i64 = 15_000;
const POINTS: i64 = 200;

fn data(t0: i64) -> Vec<Series> {
    let mut out = Vec::new();
    for (job, k) in [("api", 1.0), ("web", 2.5)] {
        for instance in ["a", "b"] {
            out.push((
                vec![
                    ("__name__".to_string(), "requests_total".to_string()),
                    ("job".to_string(), job.to_string()),
                    ("instance".to_string(), instance.to_string()),
                ],
                (0..POINTS)
                    .map(|i| (t0 + i * STEP, k * (i * i) as f64))
                    .collect(),
            ));
        }
    }
    out
}

/// `data` of a query answer, series sorted, with `dc="pf"` added where `add_dc`.
fn data_of(peer: &Peer, path: &str, params: &[(&str, &str)], add_dc: bool) -> Value {
    let body = peer.get_ok(&with_query(path, params));
    let mut v: Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array_mut().unwrap();
    if add_dc {
        for r in result.iter_mut() {
            r["metric"]["dc"] = Value::String("pf".into());
        }
    }
    result.sort_by_key(|r| r["metric"].to_string());
    v["data"].take()
}

#[test]
fn prometheus_queries_promflow_through_remote_read() {
    let promflow = Promflow::start_with_args(
        "global:\n  external_labels:\n    dc: pf\nscrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    );
    let t0 = (now_ms() - POINTS * STEP - 60_000) / 1000 * 1000 + 500;
    let r = remote_write::send(&promflow.url(""), &remote_write::body(&data(t0)));
    assert_eq!(r.status, 204, "{}", r.body);
    let prometheus = Prometheus::start(&format!(
        "scrape_configs: []\nremote_read:\n  - url: {}\n    read_recent: true\n",
        promflow.url("/api/v1/read")
    ));
    let at = api_seconds(t0 + (POINTS - 1) * STEP + 2_000);
    let (start, end) = (api_seconds(t0 + 3_000), at.clone());
    let mut checked = 0;
    for query in [
        "requests_total",
        "rate(requests_total[5m])",
        "sum by (job) (rate(requests_total[5m]))",
        "count_over_time(requests_total[1h])",
        "requests_total{instance=\"a\"}",
    ] {
        let params = [("query", query), ("time", at.as_str())];
        let ours = data_of(
            &promflow,
            "/api/v1/query",
            &params,
            query != "sum by (job) (rate(requests_total[5m]))",
        );
        let theirs = data_of(&prometheus, "/api/v1/query", &params, false);
        assert!(!ours["result"].as_array().unwrap().is_empty(), "{query}");
        assert_eq!(theirs, ours, "{query}");
        let range = [
            ("query", query),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", "60"),
        ];
        let ours = data_of(
            &promflow,
            "/api/v1/query_range",
            &range,
            query != "sum by (job) (rate(requests_total[5m]))",
        );
        let theirs = data_of(&prometheus, "/api/v1/query_range", &range, false);
        assert_eq!(theirs, ours, "range {query}");
        checked += 1;
    }
    assert_eq!(checked, 5);
    // A matcher on the external label selects promflow's series (without the label).
    let params = [
        ("query", "count(requests_total{dc=\"pf\"})"),
        ("time", at.as_str()),
    ];
    let through = data_of(&prometheus, "/api/v1/query", &params, false);
    assert_eq!(through["result"][0]["value"][1], "4", "{through}");
}

/// `--storage.remote.read-sample-limit` and `--storage.remote.read-concurrent-limit`
/// are honoured like Prometheus's: a read returning more samples than the limit is
/// refused with the same status and message.
#[test]
fn read_sample_limit_like_prometheus() {
    use promflow::remote::proto::{self, LabelMatcher, Query, ReadRequest};
    let args = [
        "--web.enable-remote-write-receiver",
        "--storage.remote.read-sample-limit=10",
        "--storage.remote.read-concurrent-limit=1",
    ];
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &args);
    let prometheus = Prometheus::start_with_args("scrape_configs: []\n", &args);
    let t0 = now_ms() - POINTS * STEP;
    let body = remote_write::body(&data(t0));
    for peer in [&*promflow, &*prometheus] {
        let resp = remote_write::send(&peer.url(""), &body);
        assert!(resp.status / 100 == 2, "remote write: {resp:?}");
    }
    let read = |job: &str| {
        proto::encode(&ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: t0,
                end_timestamp_ms: t0 + POINTS * STEP,
                matchers: vec![
                    LabelMatcher {
                        r#type: 0,
                        name: "__name__".into(),
                        value: "requests_total".into(),
                    },
                    LabelMatcher {
                        r#type: 0,
                        name: "job".into(),
                        value: job.into(),
                    },
                ],
                ..Query::default()
            }],
            accepted_response_types: vec![],
        })
    };
    let post = |peer: &Peer, body: &[u8]| {
        common::http::post(
            &peer.url("/api/v1/read"),
            Some("application/x-protobuf"),
            body,
        )
        .expect("POST /api/v1/read")
    };
    // 2 series × 200 samples: over the limit of 10.
    let ours = post(&promflow, &read("api"));
    let theirs = post(&prometheus, &read("api"));
    assert_eq!(ours.status, 400, "{ours:?}");
    assert_eq!(
        (ours.status, ours.body.clone()),
        (theirs.status, theirs.body)
    );
    assert!(ours.body.contains("exceeded sample limit (10)"), "{ours:?}");
    // Nothing matches: within the limit.
    let ours = post(&promflow, &read("none"));
    let theirs = post(&prometheus, &read("none"));
    assert_eq!((ours.status, theirs.status), (200, 200));
}
