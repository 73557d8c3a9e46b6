//! `remote_read:` in the config: promflow's ad-hoc queries read the endpoints beside
//! local storage, side by side with a real Prometheus 2.42 given the same config.
//!
//! An *archive* Prometheus 2.42 holds old samples (received by remote write). A
//! promflow and an oracle Prometheus 2.42 with the same `remote_read` entries (and
//! the same recent samples of their own, by remote write) must answer the same
//! instant and range queries: the archive's series merged with local ones, only
//! what is older than local storage without `read_recent`, `required_matchers`
//! deciding which selectors are asked, external labels sent as matchers and taken
//! off the answers, and an endpoint that is down a warning, not an error.
//! External services: Prometheus (Debian `prometheus`).

mod common;

use common::http::with_query;
use common::remote_write::{self, Series};
use common::{api_seconds, free_port, now_ms, Peer, Prometheus, Promflow};
use serde_json::Value;

const STEP: i64 = 15_000;

fn series(name: &str, labels: &[(&str, &str)], points: Vec<(i64, f64)>) -> Series {
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    pairs.extend(labels.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    (pairs, points)
}

/// Samples `from..to` (step indices) of a counter growing by `k` a step.
fn counter(t0: i64, from: i64, to: i64, k: f64) -> Vec<(i64, f64)> {
    (from..to).map(|i| (t0 + i * STEP, k * i as f64)).collect()
}

fn write(peer: &Peer, data: &[Series]) {
    let r = remote_write::send(&peer.url(""), &remote_write::body(data));
    assert_eq!(r.status, 204, "{}", r.body);
}

/// The answer of `path` with `params`: `data` with its series sorted, and whether
/// it carries warnings.
fn answer(peer: &Peer, path: &str, params: &[(&str, &str)]) -> (Value, bool) {
    let body = peer.get_ok(&with_query(path, params));
    let mut v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array_mut()
        .unwrap()
        .sort_by_key(|r| r["metric"].to_string());
    let warned = v["warnings"].as_array().is_some_and(|w| !w.is_empty());
    (v["data"].take(), warned)
}

#[test]
fn queries_read_remote_endpoints_as_prometheus_does() {
    let receiver = ["--web.enable-remote-write-receiver"];
    // The archive: 100 old steps of every series; its `dc` labels are the ones the
    // readers' external label selects (dc="eu") or not.
    let archive = Prometheus::start_with_args("scrape_configs: []\n", &receiver);
    let t0 = (now_ms() - 120 * STEP) / 1000 * 1000 + 250;
    let mut old = Vec::new();
    for (job, k) in [("api", 1.0), ("web", 2.0), ("batch", 3.0)] {
        for dc in ["eu", "us"] {
            old.push(series(
                "requests_total",
                &[("job", job), ("dc", dc)],
                counter(t0, 0, 100, k),
            ));
        }
    }
    write(&archive, &old);
    // Each reader holds recent samples of one series of its own (steps 90..120, so
    // local storage starts at step 90: the archive's 90..100 overlap it).
    let recent = [series(
        "requests_total",
        &[("job", "api")],
        counter(t0, 90, 120, 1.0),
    )];
    let dead = format!("http://127.0.0.1:{}/api/v1/read", free_port());
    let config = format!(
        "global:\n  external_labels:\n    dc: eu\nscrape_configs: []\nremote_read:\n  - url: {archive}\n    name: archive\n  - url: {archive}\n    name: batch_only\n    read_recent: true\n    required_matchers:\n      job: batch\n",
        archive = archive.url("/api/v1/read"),
    );
    let promflow = Promflow::start_with_args(&config, &receiver);
    let oracle = Prometheus::start_with_args(&config, &receiver);
    write(&promflow, &recent);
    write(&oracle, &recent);
    let at = api_seconds(t0 + 119 * STEP + 1_000);
    // Where the archive's series are still within the lookback delta.
    let mid = api_seconds(t0 + 95 * STEP + 1_000);
    // Evaluation times between samples (Prometheus 3.x's left-open windows, which
    // promflow follows, and 2.42's closed ones then read the same samples).
    let (start, end) = (api_seconds(t0 + 10 * STEP + 1_000), at.clone());
    let mut nonempty = 0;
    for query in [
        "requests_total",
        r#"requests_total{job="api"}"#,
        r#"requests_total{job="batch"}"#,
        r#"requests_total{job=~"web|batch"}"#,
        r#"requests_total{dc="us"}"#,
        "rate(requests_total[5m])",
        "sum by (job) (increase(requests_total[30m]))",
        "count_over_time(requests_total[1h])",
        "requests_total offset 10m",
    ] {
        for (path, params) in [
            (
                "/api/v1/query",
                vec![("query", query), ("time", at.as_str())],
            ),
            (
                "/api/v1/query",
                vec![("query", query), ("time", mid.as_str())],
            ),
            (
                "/api/v1/query_range",
                vec![
                    ("query", query),
                    ("start", start.as_str()),
                    ("end", end.as_str()),
                    ("step", "60"),
                ],
            ),
        ] {
            let (ours, _) = answer(&promflow, path, &params);
            let (theirs, _) = answer(&oracle, path, &params);
            assert_eq!(ours, theirs, "{path} {query}");
            nonempty += usize::from(!theirs["result"].as_array().unwrap().is_empty());
        }
    }
    // Most of them find something: the comparison is not of empty answers.
    assert!(nonempty >= 24, "{nonempty} non-empty answers of 27");

    // An endpoint that is down: the answer is what the others hold, with a warning.
    let with_dead = format!("{config}  - url: {dead}\n    read_recent: true\n");
    let promflow = Promflow::start_with_args(&with_dead, &receiver);
    let oracle = Prometheus::start_with_args(&with_dead, &receiver);
    write(&promflow, &recent);
    write(&oracle, &recent);
    let params = [
        ("query", "count_over_time(requests_total[1h])"),
        ("time", at.as_str()),
    ];
    let (ours, warned) = answer(&promflow, "/api/v1/query", &params);
    let (theirs, oracle_warned) = answer(&oracle, "/api/v1/query", &params);
    assert!(oracle_warned, "the oracle warns of the dead endpoint");
    assert!(warned, "promflow warns of the dead endpoint");
    assert_eq!(ours, theirs);
    assert!(!theirs["result"].as_array().unwrap().is_empty());
}
