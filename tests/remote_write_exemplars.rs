//! Exemplars over remote write (`send_exemplars: true`), in both directions, against
//! real Prometheus 2.42 (`--enable-feature=exemplar-storage`):
//!
//! - the oracle path: Prometheus A scrapes an exporter whose OpenMetrics body carries
//!   exemplars (counters and a histogram bucket, with and without their own
//!   timestamp, one out of order) and remote-writes to Prometheus B
//!   (`--web.enable-remote-write-receiver`); B's `/api/v1/query_exemplars` is what a
//!   receiver should answer;
//! - promflow's sender: promflow P scrapes the same exporter and remote-writes to
//!   Prometheus C (1.0) and, as remote write 2.0, to a promflow that takes only 2.0;
//! - promflow's receiver: A also remote-writes to a promflow R.
//!
//! After each step (explicit sample timestamps, so every server holds the same
//! samples), C, R and the 2.0 receiver answer the same exemplars as B. The steps'
//! timestamps are the time of the step: Prometheus's sender skips samples older than
//! its start.
//!
//! External services: Prometheus (Debian `prometheus`), three times.

mod common;

use std::time::Duration;

use common::exporter::{Exporter, Reply};
use common::{http, now_ms, wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const EXEMPLARS: &str = "--enable-feature=exemplar-storage";
const RECEIVER: &str = "--web.enable-remote-write-receiver";

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The OpenMetrics body of step `k`, every sample at `ts`, the previous step's at
/// `prev_ts`.
fn reply(k: i64, ts: i64, prev_ts: i64) -> Reply {
    let t = seconds(ts);
    // Step 2's exemplar of /a is older than step 1's: out of order, neither kept nor
    // sent.
    let a_ts = if k == 2 { prev_ts - 1000 } else { ts - 500 };
    let body = format!(
        "# TYPE http_requests counter\n\
         http_requests_total{{path=\"/a\"}} {a} {t} # {{trace_id=\"a{k}\"}} {av} {a_ts}\n\
         http_requests_total{{path=\"/b\"}} {b} {t} # {{trace_id=\"b{bk}\",span_id=\"s\"}} 1\n\
         # TYPE latency histogram\n\
         latency_bucket{{le=\"0.1\"}} {k} {t} # {{trace_id=\"l{k}\"}} 0.05 {l_ts}\n\
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
        // /b's exemplar changes every other step: the same one again is sent once.
        bk = k / 2,
        l_ts = seconds(ts - 100),
        inf = k + 1,
        sum = 0.25 * k as f64,
    );
    Reply {
        status: 200,
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        gzip: false,
        body: body.into_bytes(),
    }
}

/// A scrape job for `exporter` and `remote_write` entries `(url, extra settings)`.
fn config(exporter: &Exporter, remotes: &[(String, &str)]) -> String {
    let mut text = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\nremote_write:\n",
        exporter.addr()
    );
    for (url, extra) in remotes {
        text.push_str(&format!(
            "  - url: {url}\n    send_exemplars: true\n    queue_config: {{batch_send_deadline: 100ms, min_backoff: 50ms, max_backoff: 200ms}}\n{extra}"
        ));
    }
    text
}

/// `/api/v1/query_exemplars`'s data for `query` over `[start, end]`.
fn exemplars(server: &Peer, query: &str, start: i64, end: i64) -> Value {
    let (start, end) = (seconds(start), seconds(end));
    let resp = server.get(&http::with_query(
        "/api/v1/query_exemplars",
        &[("query", query), ("start", &start), ("end", &end)],
    ));
    let v: Value = serde_json::from_str(&resp.body)
        .unwrap_or_else(|e| panic!("{query}: bad JSON ({e}): {}", resp.body));
    assert_eq!(v["status"], "success", "{query}: {v}");
    v["data"].clone()
}

const QUERIES: &[&str] = &[
    "http_requests_total",
    r#"http_requests_total{path="/b"}"#,
    "latency_bucket",
    r#"{__name__=~"http_.*|latency_.*"}"#,
];

fn metric(promflow: &Promflow, name: &str, remote: &str) -> f64 {
    promflow
        .metrics()
        .find(name, &[("remote_name", remote)])
        .map(|s| s.value)
        .unwrap_or_else(|| panic!("{name}{{remote_name={remote}}} missing"))
}

#[test]
fn exemplars_are_remote_written_both_ways_as_prometheus_does() {
    let step_ts = || now_ms() / 1000 * 1000;
    // Until the steps begin, a body without exemplars: whether a sender scraped it
    // before then makes no difference.
    let mut idle = reply(0, step_ts() - 60_000, step_ts() - 120_000);
    idle.body = format!(
        "# TYPE steps counter\nsteps_total 0 {}\n# EOF\n",
        seconds(step_ts() - 60_000)
    )
    .into_bytes();
    let exporter = Exporter::start(idle);
    let receiving = [RECEIVER, EXEMPLARS];
    let b = Prometheus::start_with_args("scrape_configs: []\n", &receiving);
    let c = Prometheus::start_with_args("scrape_configs: []\n", &receiving);
    let r = Promflow::start_with_args("scrape_configs: []\n", &receiving);
    let r2 = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            RECEIVER,
            EXEMPLARS,
            "--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
        ],
    );
    let _a = Prometheus::start_with_args(
        &config(
            &exporter,
            &[(b.url("/api/v1/write"), ""), (r.url("/api/v1/write"), "")],
        ),
        &[EXEMPLARS],
    );
    let p = Promflow::start_with_args(
        &config(
            &exporter,
            &[
                (c.url("/api/v1/write"), "    name: to_c\n"),
                (
                    r2.url("/api/v1/write"),
                    "    name: to_r2\n    protobuf_message: io.prometheus.write.v2.Request\n",
                ),
            ],
        ),
        &[EXEMPLARS],
    );
    let receivers: [(&str, &Peer); 3] = [
        ("Prometheus C (from promflow, 1.0)", &c),
        ("promflow R (from Prometheus)", &r),
        ("promflow R2 (from promflow, 2.0)", &r2),
    ];
    // Every step after both senders started.
    std::thread::sleep(Duration::from_secs(1));
    let base = step_ts();
    let mut prev_ts = base - 1000;
    for k in 0..5 {
        let ts = step_ts().max(prev_ts + 1000);
        exporter.set(reply(k, ts, prev_ts));
        for server in [&b as &Peer, &c, &r, &r2] {
            assert!(
                wait_until(WAIT, || server.stored_at("steps_total", ts)),
                "step {k}"
            );
        }
        // A scrape more (duplicates) by both senders.
        std::thread::sleep(Duration::from_millis(1_500));
        for range in [(base - 1000, ts), (prev_ts, ts - 200)] {
            for query in QUERIES {
                let want = exemplars(&b, query, range.0, range.1);
                for (name, receiver) in receivers {
                    assert!(
                        wait_until(WAIT, || exemplars(receiver, query, range.0, range.1)
                            == want),
                        "step {k}, {query} over {range:?} on {name}:\n{:#}\nPrometheus B:\n{want:#}\npromflow P (the sender):\n{:#}",
                        exemplars(receiver, query, range.0, range.1),
                        exemplars(&p, query, range.0, range.1),
                    );
                }
            }
        }
        prev_ts = ts;
    }
    let all = exemplars(&b, r#"{__name__=~".+"}"#, base - 60_000, now_ms() + 60_000);
    let sent: usize = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["exemplars"].as_array().unwrap().len())
        .sum();
    // Per step: /a (but step 2), /b every other step, the bucket.
    assert_eq!(sent, 4 + 3 + 5, "{all:#}");
    for remote in ["to_c", "to_r2"] {
        assert_eq!(
            metric(&p, "prometheus_remote_storage_exemplars_total", remote),
            sent as f64,
            "{remote}"
        );
        assert_eq!(
            metric(
                &p,
                "prometheus_remote_storage_exemplars_failed_total",
                remote
            ),
            0.0
        );
    }
}
