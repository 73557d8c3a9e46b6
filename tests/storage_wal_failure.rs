//! A batch whose WAL write fails is refused, not acknowledged: nothing of it is kept,
//! the sender hears about it, and what was acknowledged before and after survives a
//! restart.
//!
//! The failure is real: promflow runs under a file size limit (`ulimit -f`, with
//! SIGXFSZ ignored), so a WAL write past the limit fails with EFBIG. A remote-write
//! batch too big for the room left gets a 500 and is absent from queries; a target
//! whose scrapes cannot be written shows the storage error; a small batch after the
//! failure still fits (the half-written record was cut off the segment). After a
//! restart without the limit, the acknowledged batches are there and the refused one
//! is not. External services: none besides promflow and a controllable exporter.

mod common;

use common::now_ms;

use common::exporter::{Exporter, Reply};
use common::http::with_query;
use common::remote_write::{self, Series};
use common::{wait_until, Promflow, PromflowLaunch};
use serde_json::Value;
use std::time::Duration;

/// `count` series of `metric`, one sample each at `ts`, with a label of `pad` bytes of
/// hard-to-compress text (so the WAL record is about as big as the batch).
fn batch(metric: &str, count: usize, pad: usize, ts: i64) -> Vec<u8> {
    let mut noise = noise(metric.len() as u64);
    let series: Vec<Series> = (0..count)
        .map(|i| {
            (
                vec![
                    ("__name__".to_string(), metric.to_string()),
                    ("i".to_string(), i.to_string()),
                    ("pad".to_string(), noise(pad)),
                ],
                vec![(ts, i as f64)],
            )
        })
        .collect();
    remote_write::body(&series)
}

/// A source of hard-to-compress label values (xorshift over lowercase letters).
fn noise(seed: u64) -> impl FnMut(usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    move |n| {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    }
}

fn count(peer: &Promflow, metric: &str, at_ms: i64) -> Option<f64> {
    let at = format!("{}.{:03}", at_ms / 1000, at_ms % 1000);
    let body = peer.get_ok(&with_query(
        "/api/v1/query",
        &[("query", &format!("count({metric})")), ("time", &at)],
    ));
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(|s| s.parse().unwrap())
}

fn write(peer: &Promflow, body: &[u8]) -> u16 {
    remote_write::send(&peer.url(""), body).status
}

#[test]
fn a_batch_the_wal_cannot_take_is_refused_whole() {
    let data = tempfile::tempdir().unwrap();
    // Every scrape of this target is bigger than the room the WAL has.
    let mut pad = noise(7);
    let mut big = String::new();
    for i in 0..4000 {
        big.push_str(&format!(
            "scraped_metric{{i=\"{i}\",pad=\"{}\"}} 1\n",
            pad(100)
        ));
    }
    let exporter = Exporter::start(Reply::text(&big));
    let config = format!(
        "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: big\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    );
    let ts = now_ms() - 60_000;
    let at = ts + 1_000;
    {
        let promflow = Promflow::launch(PromflowLaunch {
            config_yaml: &config,
            extra_args: &[
                "--web.enable-remote-write-receiver",
                "--storage.tsdb.wal-fsync=batch",
            ],
            data_dir: Some(data.path().join("data")),
            file_size_limit_kib: Some(256),
            ..PromflowLaunch::default()
        });
        assert_eq!(write(&promflow, &batch("before_metric", 50, 10, ts)), 204);
        // ~20000 series of 40 random bytes: far more than 256 KiB in the WAL.
        assert_eq!(
            write(&promflow, &batch("refused_metric", 20_000, 40, ts)),
            500
        );
        assert_eq!(write(&promflow, &batch("after_metric", 50, 10, ts)), 204);
        assert_eq!(count(&promflow, "before_metric", at), Some(50.0));
        assert_eq!(count(&promflow, "after_metric", at), Some(50.0));
        assert_eq!(count(&promflow, "refused_metric", at), None);

        // The scrape is refused whole: the target reports the storage error and none of
        // its series (not even `up`) is stored.
        let target_error = || {
            let v: Value = serde_json::from_str(&promflow.get_ok("/api/v1/targets")).unwrap();
            let target = &v["data"]["activeTargets"][0];
            (target["health"] == "down")
                .then(|| target["lastError"].as_str().unwrap_or("").to_string())
        };
        let error = common::wait_for(Duration::from_secs(20), target_error).unwrap_or_else(|| {
            panic!(
                "the target never showed a storage error: {}",
                promflow.get_ok("/api/v1/targets")
            )
        });
        assert!(error.contains("appending to storage"), "{error}");
        assert_eq!(count(&promflow, "scraped_metric", now_ms()), None);
        assert_eq!(count(&promflow, "up", now_ms()), None);

        let failures = promflow
            .metrics()
            .sum("promflow_wal_write_failures_total")
            .unwrap_or(0.0);
        assert!(failures >= 2.0, "failures counted: {failures}");
    }
    // Restarted without the limit: acknowledged batches replay, the refused one is gone.
    let promflow = Promflow::launch(PromflowLaunch {
        config_yaml: "scrape_configs: []\n",
        data_dir: Some(data.path().join("data")),
        ..PromflowLaunch::default()
    });
    assert!(wait_until(Duration::from_secs(10), || count(
        &promflow,
        "before_metric",
        at
    )
    .is_some()));
    assert_eq!(count(&promflow, "before_metric", at), Some(50.0));
    assert_eq!(count(&promflow, "after_metric", at), Some(50.0));
    assert_eq!(count(&promflow, "refused_metric", at), None);
    assert!(!promflow.log().contains("torn"), "{}", promflow.log());
}
