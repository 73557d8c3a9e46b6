//! SIGKILL at random moments, many times over, with an exact ledger: every sample
//! promflow acknowledged is there after the restarts, once, with its value; nothing
//! else is.
//!
//! A writer thread sends remote write 1.0 batches (`SERIES` series × `PER_BATCH`
//! samples, timestamps 1 ms apart, values that name the batch and sample) to promflow's
//! receiver without pause, as Prometheus's remote write does: a batch is acknowledged
//! when promflow answers 2xx; a batch that was not (a 5xx, a reset connection, a kill
//! in the middle of the request) is sent again, the same samples, until it is; a 4xx
//! ends its sending, as Prometheus's sender drops a batch on a 4xx. So a batch that
//! promflow wrote but could not acknowledge before it died arrives twice: the second
//! copy must not become a second sample — it is refused whole as out of order (400,
//! as Prometheus 2.42 refuses a request holding samples older than the series' newest,
//! rolling the whole request back) or, holding only exact duplicates, acknowledged.
//! A batch may only be refused after an attempt that was not answered. Meanwhile the main
//! thread kills promflow (SIGKILL, its own child handle) `KILLS` times, each after a
//! random wait (`fastrand`, seed printed), and restarts it on the same data directory.
//!
//! At the end, every series read back (`ledger_metric[1h]`, raw samples) must equal
//! the ledger (every batch sent, acknowledged or refused) exactly: the same
//! timestamps, the same values, no missing one, no extra one, no timestamp twice. External services: none besides promflow.

mod common;

use common::http::{post, with_query};
use common::remote_write::{self, Series};
use common::{now_ms, Promflow, PromflowLaunch};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KILLS: usize = 20;
const SERIES: usize = 4;
const PER_BATCH: usize = 25;

/// Batch `k`: `SERIES` series, each with `PER_BATCH` samples from `base + k*PER_BATCH`.
fn batch(base: i64, k: usize) -> Vec<Series> {
    (0..SERIES)
        .map(|s| {
            let labels = vec![
                ("__name__".to_string(), "ledger_metric".to_string()),
                ("s".to_string(), s.to_string()),
            ];
            let samples = (0..PER_BATCH)
                .map(|i| {
                    let n = k * PER_BATCH + i;
                    (base + n as i64, (n * 10 + s) as f64)
                })
                .collect();
            (labels, samples)
        })
        .collect()
}

/// What the writer saw.
#[derive(Default)]
struct Tally {
    /// Batches acknowledged (0..acked, in order).
    acked: usize,
    /// Attempts that were not acknowledged (error status or transport error).
    unacknowledged_attempts: usize,
    /// Batches refused with a 4xx (after an attempt that was not answered).
    refused: Vec<usize>,
}

#[test]
fn acknowledged_remote_writes_survive_random_sigkills_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let mut promflow = Promflow::launch(PromflowLaunch {
        config_yaml: "scrape_configs: []\n",
        extra_args: &["--web.enable-remote-write-receiver"],
        data_dir: Some(data.path().join("data")),
        ..PromflowLaunch::default()
    });
    let base = now_ms() - 120_000;
    let url = Arc::new(Mutex::new(promflow.url("")));
    let stop = Arc::new(AtomicBool::new(false));
    let acked_now = Arc::new(AtomicU64::new(0));
    let pause_ms = std::env::var("KILL_LOOP_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let writer = {
        let (url, stop, acked_now) = (url.clone(), stop.clone(), acked_now.clone());
        std::thread::spawn(move || {
            let mut tally = Tally::default();
            let deadline = Instant::now() + Duration::from_secs(240);
            for k in 0.. {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
                let body = remote_write::body(&batch(base, k));
                // Until acknowledged or refused (bounded by the deadline: the test
                // then fails).
                let mut unanswered = false;
                loop {
                    assert!(Instant::now() < deadline, "batch {k} never acknowledged");
                    let target = format!("{}/api/v1/write", url.lock().unwrap());
                    match post(&target, Some("application/x-protobuf"), &body) {
                        Ok(r) if (200..300).contains(&r.status) => break,
                        Ok(r) if (400..500).contains(&r.status) => {
                            assert!(
                                unanswered,
                                "batch {k} refused at its first sending: {} {}",
                                r.status, r.body
                            );
                            tally.refused.push(k);
                            break;
                        }
                        other => {
                            unanswered |= other.is_err();
                            tally.unacknowledged_attempts += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                tally.acked = k + 1;
                acked_now.store(tally.acked as u64, Ordering::SeqCst);
                // About 100 batches a second: a ledger that stays small to read back.
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
            tally
        })
    };

    let seed = fastrand::u64(..);
    eprintln!("kill moments: fastrand seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.u64(20..800)));
        let before = acked_now.load(Ordering::SeqCst);
        let killed_at = Instant::now();
        promflow.kill_and_restart();
        *url.lock().unwrap() = promflow.url("");
        eprintln!(
            "kill {kill}: {before} batches acknowledged before it, ready again in {:?}",
            killed_at.elapsed()
        );
    }
    // Let the writer get a few batches through the last instance, then stop it.
    let last = acked_now.load(Ordering::SeqCst);
    assert!(
        common::wait_until(Duration::from_secs(20), || acked_now.load(Ordering::SeqCst)
            >= last + 3),
        "no batch acknowledged after the last restart:\n{}",
        promflow.log()
    );
    stop.store(true, Ordering::SeqCst);
    let tally = writer.join().unwrap();
    eprintln!(
        "{} batches sent ({} samples), {} attempts not acknowledged, refused as written \
         before: {:?}",
        tally.acked,
        tally.acked * SERIES * PER_BATCH,
        tally.unacknowledged_attempts,
        tally.refused
    );
    assert!(tally.acked >= KILLS, "only {} batches", tally.acked);

    // One more restart, so the check also reads what the WAL replays on its own.
    promflow.kill_and_restart();
    let end = base + (tally.acked * PER_BATCH) as i64;
    let at = format!("{}.{:03}", end / 1000, end % 1000);
    let body = promflow.get_ok(&with_query(
        "/api/v1/query",
        &[("query", "ledger_metric[1h]"), ("time", &at)],
    ));
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut got: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for series in v["data"]["result"].as_array().unwrap() {
        let s = series["metric"]["s"].as_str().unwrap().to_string();
        let points = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let ms = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (ms, p[1].as_str().unwrap().to_string())
            })
            .collect();
        assert!(got.insert(s, points).is_none(), "a series twice");
    }
    assert_eq!(got.len(), SERIES, "series: {:?}", got.keys());
    for s in 0..SERIES {
        let expected: Vec<(i64, String)> = (0..tally.acked * PER_BATCH)
            .map(|n| (base + n as i64, (n * 10 + s).to_string()))
            .collect();
        let actual = &got[&s.to_string()];
        let (want, have): (BTreeSet<_>, BTreeSet<_>) =
            (expected.iter().collect(), actual.iter().collect());
        let lost: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(
            lost.is_empty() && extra.is_empty() && actual.len() == expected.len(),
            "series s={s}: {} samples read, {} acknowledged; lost {:?}…; not acknowledged \
             or twice {:?}…",
            actual.len(),
            expected.len(),
            &lost[..lost.len().min(5)],
            &extra[..extra.len().min(5)]
        );
    }
}
