//! The disk fills up while promflow writes its WAL: ingest refuses with a clear error,
//! nothing acknowledged is lost, and ingest resumes when space returns.
//!
//! The disk is real and really full: promflow's data directory is on a tmpfs of
//! `TMPFS_SIZE` mounted for this test (it needs root, as `.ci/run` is; where mounting
//! is refused the test says so and stops — tests/storage_wal_failure.rs covers a WAL
//! write failure through a file size limit without root). A filler file takes every
//! free byte, so WAL writes fail with ENOSPC:
//! - before: a remote-write batch is acknowledged (204);
//! - full: a batch is refused (5xx, with a body that names the storage error) and is
//!   absent from queries; `promflow_wal_write_failures_total` counts it;
//! - the filler is removed: the refused batch, sent again, and a new one are
//!   acknowledged;
//! - after SIGKILL and restart on the same tmpfs, exactly the acknowledged batches are
//!   there.
//!
//! External services: none besides promflow.

mod common;

use common::http::{post, with_query};
use common::remote_write::{self, Series};
use common::{now_ms, Promflow, PromflowLaunch};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const TMPFS_SIZE: &str = "16m";
/// Samples per batch: their WAL record is several pages, more than the slack a full
/// tmpfs leaves in the last page of the open segment.
const PER_BATCH: usize = 20_000;

/// A tmpfs mounted on a temp dir, unmounted (lazily) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("promflow-diskfull-")
            .tempdir()
            .unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `count` samples of series `{__name__=metric}` from `ts`, 1 ms apart.
fn batch(metric: &str, ts: i64) -> Vec<u8> {
    let series: Vec<Series> = vec![(
        vec![("__name__".to_string(), metric.to_string())],
        (0..PER_BATCH).map(|i| (ts + i as i64, i as f64)).collect(),
    )];
    remote_write::body(&series)
}

fn write(promflow: &Promflow, body: &[u8]) -> (u16, String) {
    let r = post(
        &promflow.url("/api/v1/write"),
        Some("application/x-protobuf"),
        body,
    )
    .expect("POST /api/v1/write");
    (r.status, r.body)
}

/// How many samples of `metric` promflow has in the hour before `at_ms`.
fn stored(promflow: &Promflow, metric: &str, at_ms: i64) -> usize {
    let at = format!("{}.{:03}", at_ms / 1000, at_ms % 1000);
    let body = promflow.get_ok(&with_query(
        "/api/v1/query",
        &[("query", &format!("{metric}[1h]")), ("time", &at)],
    ));
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum()
}

/// Fills the file system holding `dir` to the last byte; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    // Bounded: the tmpfs is TMPFS_SIZE.
    for _ in 0..100_000 {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    for _ in 0..64 * 1024 {
        if file.write_all(&[0x5a]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
    path
}

#[test]
fn a_full_disk_refuses_ingest_loses_nothing_acknowledged_and_recovers() {
    let tmpfs = match Tmpfs::mount() {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "NOT RUN: a tmpfs cannot be mounted here ({}; uid {}): \
                 tests/storage_wal_failure.rs covers WAL write failures without root",
                e.trim(),
                current_uid()
            );
            return;
        }
    };
    let data = tmpfs.path().join("data");
    let launch = || {
        Promflow::launch(PromflowLaunch {
            config_yaml: "scrape_configs: []\n",
            extra_args: &[
                "--web.enable-remote-write-receiver",
                "--storage.tsdb.wal-fsync=batch",
            ],
            data_dir: Some(data.clone()),
            ..PromflowLaunch::default()
        })
    };
    let promflow = launch();
    let ts = now_ms() - 60_000;
    let at = ts + PER_BATCH as i64 + 1_000;
    assert_eq!(write(&promflow, &batch("before_full", ts)).0, 204);

    let filler = fill(tmpfs.path());
    let (status, body) = write(&promflow, &batch("while_full", ts));
    assert!(
        (500..600).contains(&status),
        "a batch the WAL cannot take must be refused: {status} {body}"
    );
    assert!(
        body.to_ascii_lowercase().contains("no space left"),
        "the refusal should name the storage error: {body}"
    );
    assert_eq!(stored(&promflow, "while_full", at), 0);
    assert_eq!(stored(&promflow, "before_full", at), PER_BATCH);
    let failures = promflow
        .metrics()
        .sum("promflow_wal_write_failures_total")
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "failures counted: {failures}");
    assert!(
        promflow.log().contains("writing the WAL failed"),
        "the failure should be logged"
    );

    // Space returns: the refused batch (sent again) and a new one are taken.
    fs::remove_file(&filler).unwrap();
    assert_eq!(write(&promflow, &batch("while_full", ts)).0, 204);
    assert_eq!(write(&promflow, &batch("after_full", ts)).0, 204);
    for metric in ["before_full", "while_full", "after_full"] {
        assert_eq!(stored(&promflow, metric, at), PER_BATCH, "{metric}");
    }

    // Crash and replay: exactly the acknowledged samples.
    let promflow = promflow.restart();
    for metric in ["before_full", "while_full", "after_full"] {
        assert_eq!(
            stored(&promflow, metric, at),
            PER_BATCH,
            "{metric} after restart:\n{}",
            promflow.log()
        );
    }
    drop(promflow);
}

/// The user id, for the message when mounting is refused.
fn current_uid() -> String {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
