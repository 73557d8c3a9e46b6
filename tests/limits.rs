//! Limits where input arrives, side by side with a real Prometheus 2.42 (Debian
//! `prometheus`) given the same limits: scrape `body_size_limit`, `sample_limit`,
//! label limits and `target_limit` (the target's health and lastError, the `scrape_*`
//! series and the counters on /metrics), `--query.max-samples` (which queries are
//! refused, with which status and error), request body size on the form endpoints,
//! and the limits without a Prometheus counterpart (remote write body size,
//! `--web.stream.max-consumers`), each with its counter.

mod common;

use common::exporter::{Exporter, Reply};
use common::http;
use common::{wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// 240 bytes: three samples, one with a 90-byte label name and an 84-byte value.
const BODY: &str = "# TYPE a counter\na_total{x=\"1\"} 1\nb{averyveryveryverylonglabelnamexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\"} 2\nc{p=\"1\",q=\"2\",r=\"3\"} 3\n";

/// One job per limit (and the body size limit on both sides of the body's size).
fn scrape_config(exporter: &Exporter) -> String {
    let addr = exporter.addr();
    let job = |name: &str, limit: &str| {
        format!(
            "  - job_name: {name}\n    {limit}\n    static_configs: [{{targets: ['{addr}']}}]\n"
        )
    };
    let size = BODY.len();
    let mut config =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n".to_string();
    config.push_str(&job("body_small", "body_size_limit: 100B"));
    config.push_str(&job("body_exact", &format!("body_size_limit: {size}B")));
    config.push_str(&job(
        "body_above",
        &format!("body_size_limit: {}B", size + 1),
    ));
    config.push_str(&job("samples", "sample_limit: 2"));
    config.push_str(&job("samples_ok", "sample_limit: 3"));
    config.push_str(&job("labels", "label_limit: 3"));
    config.push_str(&job("label_name", "label_name_length_limit: 10"));
    config.push_str(&job("label_value", "label_value_length_limit: 20"));
    // Three targets: the same address with three label sets.
    for (name, limit) in [("targets", 2), ("targets_ok", 3)] {
        config.push_str(&format!(
            "  - job_name: {name}\n    target_limit: {limit}\n    static_configs: [{{targets: ['{addr}']}}, {{targets: ['{addr}'], labels: {{g: '2'}}}}, {{targets: ['{addr}'], labels: {{g: '3'}}}}]\n"
        ));
    }
    config
}

/// `(job, labels) → (health, lastError)` from `/api/v1/targets`.
fn targets(peer: &Peer) -> BTreeMap<(String, String), (String, String)> {
    let body: Value = serde_json::from_str(&peer.get_ok("/api/v1/targets")).unwrap();
    body["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let label = |n: &str| t["labels"][n].as_str().unwrap().to_string();
            let field = |n: &str| t[n].as_str().unwrap().to_string();
            (
                (label("job"), t["labels"].to_string()),
                (field("health"), field("lastError")),
            )
        })
        .collect()
}

/// `(job, labels) → value` of an instant query.
fn values(peer: &Peer, expr: &str) -> BTreeMap<(String, String), String> {
    let body: Value =
        serde_json::from_str(&peer.get_ok(&http::with_query("/api/v1/query", &[("query", expr)])))
            .unwrap();
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let label = |n: &str| r["metric"][n].as_str().unwrap_or("").to_string();
            (
                (label("job"), r["metric"].to_string()),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all_scraped(peer: &Peer) -> bool {
    let t = targets(peer);
    t.len() == 14 && t.values().all(|(health, _)| health != "unknown")
}

#[test]
fn scrape_limits_fail_the_scrape_like_prometheus() {
    common::require_peer("/usr/bin/prometheus", "prometheus");
    let exporter = Exporter::start(Reply::text(BODY));
    assert_eq!(BODY.len(), 240);
    let config = scrape_config(&exporter);
    let promflow = Promflow::start(&config);
    let oracle = Prometheus::start(&config);
    assert!(
        wait_until(WAIT, || all_scraped(&promflow)),
        "{:?}",
        targets(&promflow)
    );
    assert!(
        wait_until(WAIT, || all_scraped(&oracle)),
        "{:?}",
        targets(&oracle)
    );
    // Two scrapes of every target at least, so both report the same steady state.
    std::thread::sleep(Duration::from_secs(3));

    let want = targets(&oracle);
    assert_eq!(targets(&promflow), want);
    // The oracle's answers are the ones this test was written for.
    let down: Vec<&str> = want
        .iter()
        .filter(|(_, (health, _))| health == "down")
        .map(|((job, _), _)| job.as_str())
        .collect();
    assert_eq!(
        down,
        [
            "body_exact",
            "body_small",
            "label_name",
            "label_value",
            "labels",
            "samples",
            "targets",
            "targets",
            "targets"
        ]
    );
    for series in [
        "up",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        assert_eq!(
            values(&promflow, series),
            values(&oracle, series),
            "{series}"
        );
    }
    // Nothing of a failed scrape is kept; the targets within their limits are served.
    assert_eq!(
        values(&promflow, "a_total")
            .keys()
            .map(|(j, _)| j.as_str())
            .collect::<Vec<_>>(),
        values(&oracle, "a_total")
            .keys()
            .map(|(j, _)| j.as_str())
            .collect::<Vec<_>>(),
    );

    let ours = promflow.metrics();
    let theirs = oracle.metrics();
    for counter in [
        "prometheus_target_scrapes_exceeded_body_size_limit_total",
        "prometheus_target_scrapes_exceeded_sample_limit_total",
        "prometheus_target_scrape_pool_exceeded_label_limits_total",
    ] {
        // Counted per failed scrape: both have counted some.
        assert!(theirs.sum(counter).unwrap() > 0.0, "{counter}");
        assert!(ours.sum(counter).unwrap() > 0.0, "{counter}");
    }
    // Counted when a pool goes over its limit: once for static targets.
    let counter = "prometheus_target_scrape_pool_exceeded_target_limit_total";
    assert_eq!(ours.sum(counter), theirs.sum(counter));
}

fn post_form(peer: &Peer, path: &str, form: &[u8]) -> http::HttpResponse {
    post_with_curl(peer, path, "application/x-www-form-urlencoded", form)
}

/// POSTs with curl (Debian `curl`): a server may answer a body over its limit before
/// reading all of it, which curl reports as the answer rather than as a write error.
fn post_with_curl(peer: &Peer, path: &str, content_type: &str, body: &[u8]) -> http::HttpResponse {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Content-Type: {content_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(peer.url(path))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    http::HttpResponse {
        status: status.trim().parse().unwrap(),
        headers: Vec::new(),
        body: body.to_string(),
        body_bytes: body.as_bytes().to_vec(),
    }
}

/// Status, `errorType` and `error` of an answer (`success` when it succeeded).
fn outcome(response: &http::HttpResponse) -> (u16, String, String) {
    let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    let text = |n: &str| body[n].as_str().unwrap_or("").to_string();
    (
        response.status,
        text("status"),
        format!("{} {}", text("errorType"), text("error")),
    )
}

#[test]
fn query_max_samples_refuses_what_prometheus_refuses() {
    common::require_peer("/usr/bin/prometheus", "prometheus");
    // One series per name: counts are exact and the same on both sides.
    let exporter = Exporter::start(Reply::text("a_total 1\nb 2\nc 3\n"));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{}']}}]\n",
        exporter.addr()
    );
    let args = ["--query.max-samples=3"];
    let promflow = Promflow::start_with_args(&config, &args);
    let oracle = Prometheus::start_with_args(&config, &args);
    for peer in [&*promflow, &*oracle] {
        // Eight scrapes at least: every window and range step below has its samples.
        assert!(wait_until(WAIT, || !values(peer, "a_total offset 8s").is_empty()));
    }
    let at = format!("{:.3}", common::now_ms() as f64 / 1000.0 - 1.0);
    let queries = [
        "a_total",
        "{job=\"app\"}",
        "sum({job=\"app\"})",
        "a_total[1500ms]",
        "a_total[10m]",
        "sum(a_total)",
        "sum(a_total) + sum(a_total)",
        "sum(a_total) + 1",
        "a_total * 2",
        "-a_total",
        "topk(1, a_total)",
        "count(up)",
        "max_over_time(a_total[3s:1s])",
        "rate(a_total[10m])",
    ];
    let mut refused = 0;
    for query in queries {
        let form = format!("query={}&time={at}", http::encode(query));
        let ours = outcome(&post_form(&promflow, "/api/v1/query", form.as_bytes()));
        let theirs = outcome(&post_form(&oracle, "/api/v1/query", form.as_bytes()));
        assert_eq!(ours, theirs, "{query}");
        refused += (theirs.0 == 422) as u32;
    }
    // Both kinds are in the list.
    assert!(refused >= 5 && refused < queries.len() as u32, "{refused}");
    // Range queries: a selector holds one sample per step.
    for (span, step) in [(2, 1), (3, 1), (4, 2), (6, 2)] {
        let end = common::now_ms() / 1000 - 1;
        let form = format!("query=a_total&start={}&end={end}&step={step}", end - span);
        let ours = outcome(&post_form(
            &promflow,
            "/api/v1/query_range",
            form.as_bytes(),
        ));
        let theirs = outcome(&post_form(&oracle, "/api/v1/query_range", form.as_bytes()));
        assert_eq!(ours, theirs, "span {span} step {step}");
    }
    let counted = promflow
        .metrics()
        .sum("promflow_query_max_samples_exceeded_total")
        .unwrap();
    assert!(counted >= refused as f64, "{counted}");
    // `--query.max-concurrency` is on /metrics as Prometheus shows it.
    let gauge = "prometheus_engine_queries_concurrent_max";
    assert_eq!(promflow.metrics().sum(gauge), oracle.metrics().sum(gauge));
}

#[test]
fn request_bodies_are_bounded_per_endpoint_and_streams_by_consumers() {
    common::require_peer("/usr/bin/prometheus", "prometheus");
    let exporter = Exporter::start(Reply::text("a_total 1\n"));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{}']}}]\n",
        exporter.addr()
    );
    let promflow = Promflow::start_with_args(
        &config,
        &[
            "--web.enable-remote-write-receiver",
            "--web.stream.max-consumers=1",
        ],
    );
    let oracle = Prometheus::start(&config);
    for peer in [&*promflow, &*oracle] {
        assert!(wait_until(WAIT, || !values(peer, "up").is_empty()));
    }
    // Go's form limit (10 MiB): under it served, over it refused with its error.
    let form = |pad: usize| format!("match[]=up&pad={}", "x".repeat(pad)).into_bytes();
    for (pad, served) in [(9 << 20, true), (11 << 20, false)] {
        let body = form(pad);
        let ours = post_form(&promflow, "/api/v1/series", &body);
        let theirs = post_form(&oracle, "/api/v1/series", &body);
        assert_eq!(outcome(&ours), outcome(&theirs), "pad {pad}");
        assert_eq!(theirs.status == 200, served, "{}", theirs.body);
    }
    let query = format!("query=up&pad={}", "x".repeat(3 << 20));
    let served = post_form(&promflow, "/api/v1/query", query.as_bytes());
    assert_eq!(served.status, 200, "{}", served.body);

    // Remote write: far above what a sender batches, refused before decoding.
    let huge = vec![0u8; 33 << 20];
    let refused = post_with_curl(&promflow, "/api/v1/write", "application/x-protobuf", &huge);
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(
        refused.body.contains("request body too large"),
        "{}",
        refused.body
    );
    let metrics = promflow.metrics();
    let counted = |handler: &str| {
        metrics
            .find(
                "promflow_http_request_body_too_large_total",
                &[("handler", handler)],
            )
            .map(|s| s.value)
    };
    assert_eq!(counted("/api/v1/series"), Some(1.0));
    assert_eq!(counted("/api/v1/write"), Some(1.0));

    // One stream consumer: a second is refused while the first is open.
    let mut first = std::net::TcpStream::connect(promflow.addr()).unwrap();
    std::io::Write::write_all(
        &mut first,
        b"GET /api/v1/stream?match[]=up HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    assert!(wait_until(WAIT, || promflow
        .metrics()
        .sum("promflow_stream_consumers")
        == Some(1.0)));
    let second = promflow.get(&http::with_query("/api/v1/stream", &[("match[]", "up")]));
    assert_eq!(second.status, 503, "{}", second.body);
    assert!(
        second.body.contains("--web.stream.max-consumers"),
        "{}",
        second.body
    );
    drop(first);
    assert!(wait_until(WAIT, || promflow
        .metrics()
        .sum("promflow_stream_consumers")
        == Some(0.0)));
    assert_eq!(
        promflow
            .metrics()
            .sum("promflow_stream_consumers_refused_total"),
        Some(1.0)
    );
}

/// Threads of the process named `name` (`/proc/<pid>/task/*/comm`).
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|comm| comm.trim() == name)
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_timed_out_query_stops_and_gives_its_turn_back() {
    let exporter = Exporter::start(Reply::text("a_total 1\n"));
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{}']}}]\n",
        exporter.addr()
    );
    let promflow = Promflow::start_with_args(&config, &["--query.max-concurrency=1"]);
    assert!(wait_until(WAIT, || !values(&promflow, "a_total").is_empty()));
    // 86,400,000 subquery steps: far more than a second of work.
    let slow = "query=count_over_time(a_total[1d:1ms])&timeout=1s";
    let answer = post_form(&promflow, "/api/v1/query", slow.as_bytes());
    assert_eq!(
        outcome(&answer),
        (
            503,
            "error".to_string(),
            "timeout query timed out in expression evaluation".to_string()
        )
    );
    // The evaluation itself stops at its deadline: its thread ends, and the one turn
    // of --query.max-concurrency=1 is free for the next query.
    assert!(wait_until(Duration::from_secs(5), || threads_named(
        promflow.pid(),
        "promql-query"
    ) == 0));
    let fast = post_form(&promflow, "/api/v1/query", b"query=a_total");
    assert_eq!(outcome(&fast).1, "success", "{}", fast.body);
    assert_eq!(
        promflow.metrics().sum("prometheus_engine_queries"),
        Some(0.0)
    );
}
