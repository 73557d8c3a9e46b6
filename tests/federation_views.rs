//! Registered federation views (`PUT /api/v1/federation/{name}`): `/federate?view=`
//! serves what `/federate?match[]=` serves for the same selectors (the per-request
//! path, itself checked against a real Prometheus in `tests/federation.rs`), the
//! stream of a view carries its snapshot then its changes only, views survive a
//! restart, and bad registrations change nothing.
//!
//! Peers: the controllable exporter (`common::exporter`) scraped by promflow.

mod common;

use common::exporter::{Exporter, Reply};
use common::exposition::Exposition;
use common::http::{self, HttpResponse};
use common::stream_client::StreamClient;
use common::{wait_until, Promflow};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn start(exporter: &Exporter) -> Promflow {
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n  external_labels:\n    site: s1\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    );
    Promflow::start_with_args(&config, &["--web.enable-federation-views-api"])
}

fn put_view(promflow: &Promflow, name: &str, content_type: &str, body: &str) -> HttpResponse {
    http::send(
        "PUT",
        &promflow.url(&format!("/api/v1/federation/{name}")),
        &[],
        Some(content_type),
        body.as_bytes(),
    )
    .expect("PUT")
}

/// Samples as (labels, value), ignoring timestamps (two reads may straddle a scrape).
fn samples(e: &Exposition) -> Vec<String> {
    let mut out: Vec<String> = e
        .samples
        .iter()
        .map(|s| format!("{} {}", s.series(), s.value))
        .collect();
    out.sort();
    out
}

fn view_body(promflow: &Promflow, name: &str) -> Exposition {
    common::exposition::parse(&promflow.get_ok(&format!("/federate?view={name}")))
}

#[test]
fn a_view_serves_federate_and_the_stream_from_its_maintained_output() {
    let exporter = Exporter::start(Reply::text("a{x=\"1\"} 1\na{x=\"2\"} 2\nb 3\n"));
    let promflow = start(&exporter);
    assert!(wait_until(WAIT, || promflow.federate(&["b"]).samples.len() == 1));

    let form = format!("match[]={}", http::encode("{__name__=\"a\"}"));
    let resp = put_view(
        &promflow,
        "a-only",
        "application/x-www-form-urlencoded",
        &form,
    );
    assert_eq!(resp.status, 202, "{}", resp.body);
    let by_view = view_body(&promflow, "a-only");
    assert_eq!(by_view.samples.len(), 2, "{by_view:?}");
    assert_eq!(
        samples(&by_view),
        samples(&promflow.federate(&["{__name__=\"a\"}"]))
    );
    let info: Value = serde_json::from_str(&promflow.get_ok("/api/v1/federation/a-only")).unwrap();
    assert_eq!(info["data"]["match[]"][0], "{__name__=\"a\"}");
    assert_eq!(info["data"]["series"], 2);

    let mut client = StreamClient::open_path(
        &promflow,
        "/api/v1/stream?view=a-only",
        "application/x-ndjson",
    );
    let mut snapshot = [client.next_event().unwrap(), client.next_event().unwrap()];
    snapshot.sort_by_key(|e| e["labels"]["x"].as_str().unwrap().to_string());
    assert_eq!(snapshot[0]["labels"]["x"], "1");
    assert_eq!(snapshot[0]["labels"]["site"], "s1", "external labels");
    assert_eq!(snapshot[1]["value"], "2");
    let end = client.next_event().unwrap();
    assert_eq!(end["type"], "snapshot_end", "{end}");
    assert_eq!(end["series"], 2, "{end}");

    exporter.set(Reply::text("a{x=\"1\"} 5\nb 7\n"));
    let (mut a5, mut a2_stale) = (false, false);
    let deadline = Instant::now() + WAIT;
    while !(a5 && a2_stale) && Instant::now() < deadline {
        let e = client.next_event().expect("stream ended early");
        assert_eq!(e["labels"]["__name__"], "a", "the view only carries a: {e}");
        a5 |= e["labels"]["x"] == "1" && e["value"] == "5";
        a2_stale |= e["labels"]["x"] == "2" && e["type"] == "stale";
    }
    assert!(
        a5 && a2_stale,
        "missing changes (a5 {a5}, stale {a2_stale})"
    );
    assert!(wait_until(WAIT, || samples(&view_body(
        &promflow, "a-only"
    )) == samples(
        &promflow.federate(&["{__name__=\"a\"}"])
    ) && view_body(&promflow, "a-only")
        .samples
        .len()
        == 1));

    // Deleting the view ends its streams.
    let resp = http::send(
        "DELETE",
        &promflow.url("/api/v1/federation/a-only"),
        &[],
        None,
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    let deadline = Instant::now() + WAIT;
    while client.next_event().is_some() {
        assert!(
            Instant::now() < deadline,
            "stream of a deleted view did not end"
        );
    }
    assert_eq!(promflow.get("/federate?view=a-only").status, 404);
    assert_eq!(promflow.get("/api/v1/stream?view=a-only").status, 404);
}

#[test]
fn views_come_back_after_a_restart() {
    let exporter = Exporter::start(Reply::text("a 1\nb 2\n"));
    let promflow = start(&exporter);
    let resp = put_view(&promflow, "b", "application/json", r#"{"match[]": ["b"]}"#);
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert!(wait_until(WAIT, || view_body(&promflow, "b").samples.len() == 1));
    let promflow = promflow.restart();
    let listed: Value = serde_json::from_str(&promflow.get_ok("/api/v1/federation")).unwrap();
    assert_eq!(listed["data"][0]["name"], "b");
    assert!(wait_until(WAIT, || {
        let body = view_body(&promflow, "b");
        body.samples.len() == 1 && body.samples[0].value == 2.0
    }));
}

#[test]
fn invalid_views_are_refused_and_change_nothing() {
    let exporter = Exporter::start(Reply::text("a 1\n"));
    let promflow = start(&exporter);
    assert_eq!(
        put_view(&promflow, "v", "application/json", r#"{"match[]": ["a"]}"#).status,
        202
    );
    let state = promflow.dir().join("data/federation_views.yml");
    let stored = std::fs::read_to_string(&state).unwrap();
    for (content_type, body, expected) in [
        (
            "application/x-www-form-urlencoded",
            "match[]=sum(a)",
            "not a series selector",
        ),
        (
            "application/x-www-form-urlencoded",
            "match[]=a%7B",
            "invalid match[]",
        ),
        (
            "application/x-www-form-urlencoded",
            "",
            "no match[] selector",
        ),
        (
            "application/x-www-form-urlencoded",
            "query=a",
            "unknown parameter \"query\"",
        ),
        (
            "application/json",
            r#"{"match": ["a"]}"#,
            "must be {\"match[]\"",
        ),
        (
            "application/json",
            r#"{"match[]": "a"}"#,
            "invalid JSON body",
        ),
    ] {
        let resp = put_view(&promflow, "v", content_type, body);
        assert_eq!(resp.status, 400, "{body:?}: {}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["errorType"], "bad_data");
        assert!(
            v["error"].as_str().unwrap().contains(expected),
            "{body:?}: {}",
            v["error"]
        );
    }
    assert_eq!(std::fs::read_to_string(&state).unwrap(), stored);
    let info: Value = serde_json::from_str(&promflow.get_ok("/api/v1/federation/v")).unwrap();
    assert_eq!(info["data"]["match[]"], serde_json::json!(["a"]));
    assert_eq!(promflow.get("/federate?view=v&match[]=a").status, 400);
}
