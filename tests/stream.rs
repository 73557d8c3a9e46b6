//! `/api/v1/stream`: snapshot then changes, and slow consumers dropped with a bound.
//! Peers: a controllable exporter (`tests/common/exporter.rs`) scraped by promflow.

mod common;

use common::exporter::{Exporter, Reply};
use common::stream_client::StreamClient;
use common::{wait_until, Promflow};
use serde_json::Value;
use std::time::{Duration, Instant};

fn config(exporter: &Exporter, interval: &str) -> String {
    format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  external_labels:\n    site: s1\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

fn named<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    (e["labels"]["__name__"] == name).then_some(e)
}

#[test]
fn snapshot_then_changes() {
    let exporter = Exporter::start(Reply::text("a 1\nb 2\n"));
    let promflow = Promflow::start(&config(&exporter, "500ms"));
    assert!(wait_until(Duration::from_secs(20), || promflow
        .federate(&["b"])
        .samples
        .len()
        == 1));

    let mut client = StreamClient::open(&promflow, r#"{job="app"}"#, "application/x-ndjson");
    let first = client.next_event().expect("snapshot");
    assert_eq!(first["type"], "sample", "{first}");
    assert_eq!(first["labels"]["site"], "s1", "external labels: {first}");
    assert_eq!(first["labels"]["job"], "app");

    exporter.set(Reply::text("a 5\n"));
    // Both changes come from one scrape; their order within it is not specified.
    let (mut a5, mut b_stale) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (a5.is_none() || b_stale.is_none()) && Instant::now() < deadline {
        let Some(e) = client.next_event() else { break };
        if named(&e, "a").is_some() && e["value"] == "5" {
            a5 = Some(e);
        } else if named(&e, "b").is_some() && e["type"] == "stale" {
            b_stale = Some(e);
        }
    }
    let a5 = a5.expect("no event for a's new value");
    assert!(a5["timestamp"].as_i64().unwrap() > 0);
    let b_stale = b_stale.expect("no stale event for b");
    assert!(b_stale.get("value").is_none());
}

#[test]
fn server_sent_events_when_asked() {
    let exporter = Exporter::start(Reply::text("a 1\n"));
    let promflow = Promflow::start(&config(&exporter, "500ms"));
    assert!(wait_until(Duration::from_secs(20), || promflow
        .federate(&["a"])
        .samples
        .len()
        == 1));
    let mut client = StreamClient::open(&promflow, "a", "text/event-stream");
    assert_eq!(client.next_line().unwrap(), "event: sample");
    let data = client.next_line().unwrap();
    let e: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(e["labels"]["__name__"], "a");
    assert_eq!(client.next_line().unwrap(), "");
}

#[test]
fn a_stalled_consumer_is_dropped_without_growing_memory() {
    let series = 3000;
    let body: String = (0..series)
        .map(|i| format!("m{{i=\"{i}\"}} {i}\n"))
        .collect();
    let exporter = Exporter::start(Reply::text(&body));
    let promflow = Promflow::start(&config(&exporter, "100ms"));
    assert!(wait_until(Duration::from_secs(20), || promflow
        .federate(&["m"])
        .samples
        .len()
        == series));
    let rss = |p: &Promflow| p.metrics().sum("process_resident_memory_bytes").unwrap();
    let before = rss(&promflow);

    // Opens the stream and reads nothing for 15s: ~30k events/s are produced meanwhile.
    let mut stalled = StreamClient::open(&promflow, "m", "application/x-ndjson");
    std::thread::sleep(Duration::from_secs(15));
    let during = rss(&promflow);
    // The consumer's queue is bounded (10k events, a few MB), whatever it is sent.
    assert!(
        during - before < 200e6,
        "RSS grew by {} MB",
        (during - before) / 1e6
    );

    // Reading now: what was buffered, then the final event, then the end.
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(e) = stalled.next_event() {
        last = Some(e);
        assert!(Instant::now() < deadline, "stream did not end");
    }
    let last = last.expect("no events at all");
    assert_eq!(last["type"], "dropped", "{last}");
}
