//! Crash safety of storage: whatever promflow has acknowledged survives SIGKILL.
//!
//! promflow scrapes several controllable exporters (`common::exporter`, on 127.0.0.1)
//! every 100ms while a thread keeps changing their values. The test reads every raw
//! sample promflow answers for `crash_metric[1h]` at a fixed time `T` (a range-vector
//! instant query), kills promflow with SIGKILL (`Child::kill`) while it is still
//! ingesting, restarts it on the same `--storage.tsdb.path`, and checks that at `T`:
//! - every sample queryable before the kill is queryable after, with the same value
//!   (compared bit for bit through the JSON text);
//! - no series has two samples at one timestamp, and each series has at least as many
//!   samples as before (samples committed between the read and the kill may add some).
//!
//! This runs three kill/restart cycles. External services: none besides promflow.

mod common;

use common::now_ms;

use common::exporter::{Exporter, Reply};
use common::http::{get, with_query};
use common::{free_port, promflow_bin, wait_until, STARTUP_TIMEOUT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const EXPORTERS: usize = 4;
const SERIES_PER_EXPORTER: usize = 25;
const CYCLES: usize = 3;

/// `series labels → [(timestamp as text, value as text)]`.
type Samples = BTreeMap<String, Vec<(String, String)>>;

/// A promflow child on a data directory the test owns, killed (SIGKILL) on drop.
struct Running {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let log = dir.join(format!("promflow-{}.log", free_port()));
        for _attempt in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let out = File::create(&log).unwrap();
            let child = Command::new(promflow_bin())
                .arg(format!(
                    "--config.file={}",
                    dir.join("promflow.yml").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg("--storage.tsdb.wal-fsync=1s")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("spawn promflow");
            let mut running = Running {
                child,
                addr,
                log: log.clone(),
            };
            let ready = wait_until(STARTUP_TIMEOUT, || {
                matches!(running.child.try_wait(), Ok(Some(_)))
                    || matches!(get(&running.url("/-/ready")), Ok(r) if r.status == 200)
            });
            if ready && !matches!(running.child.try_wait(), Ok(Some(_))) {
                return running;
            }
            let text = fs::read_to_string(&log).unwrap_or_default();
            assert!(
                text.to_ascii_lowercase().contains("address already in use"),
                "promflow did not start: {text}"
            );
        }
        panic!("promflow: no free port");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every raw sample of `crash_metric` in the hour up to `t_ms`.
    fn samples_at(&self, t_ms: i64) -> Samples {
        let time = format!("{}.{:03}", t_ms / 1000, t_ms % 1000);
        let url = self.url(&with_query(
            "/api/v1/query",
            &[("query", "crash_metric[1h]"), ("time", &time)],
        ));
        let resp = get(&url).expect("query");
        assert_eq!(resp.status, 200, "{}", resp.body);
        let v: Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["data"]["resultType"], "matrix", "{}", resp.body);
        let mut out = Samples::new();
        for series in v["data"]["result"].as_array().unwrap() {
            let key = series["metric"].to_string();
            let points = series["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].to_string(), p[1].as_str().unwrap().to_string()))
                .collect();
            assert!(out.insert(key, points).is_none(), "a series twice");
        }
        out
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn body(exporter: usize, round: u64) -> Reply {
    let mut text = String::from("# TYPE crash_metric gauge\n");
    for s in 0..SERIES_PER_EXPORTER {
        // Values with many significant bits, and negative ones, to exercise XOR.
        let v = (round as f64) * 1.1 + s as f64 / 7.0 - exporter as f64 * 3.3;
        text.push_str(&format!("crash_metric{{series=\"{s}\"}} {v}\n"));
    }
    Reply::text(&text)
}

#[test]
fn acknowledged_samples_survive_sigkill_without_duplicates() {
    let dir = tempfile::Builder::new()
        .prefix("promflow-crash-")
        .tempdir()
        .unwrap();
    let exporters: Vec<Arc<Exporter>> = (0..EXPORTERS)
        .map(|e| Arc::new(Exporter::start(body(e, 0))))
        .collect();
    let targets: Vec<String> = exporters
        .iter()
        .map(|e| format!("'{}'", e.addr()))
        .collect();
    fs::write(
        dir.path().join("promflow.yml"),
        format!(
            "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n\
             scrape_configs:\n  - job_name: crash\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();

    // Keep the values moving for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let changer = {
        let (stop, exporters) = (stop.clone(), exporters.clone());
        std::thread::spawn(move || {
            let mut round = 1;
            while !stop.load(Ordering::SeqCst) {
                for (e, exporter) in exporters.iter().enumerate() {
                    exporter.set(body(e, round));
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(37));
            }
        })
    };

    let mut promflow = Running::start(dir.path());
    for cycle in 0..CYCLES {
        // Let it ingest a while, so later cycles also replay earlier restarts' segments.
        let want_series = EXPORTERS * SERIES_PER_EXPORTER;
        let t = now_ms() + 1500;
        let ingesting = wait_until(Duration::from_secs(20), || {
            now_ms() > t && promflow.samples_at(t).len() == want_series
        });
        assert!(
            ingesting,
            "cycle {cycle}: not all series ingested\n{}",
            promflow.log_text()
        );
        let before = promflow.samples_at(t);
        let total: usize = before.values().map(Vec::len).sum();
        assert!(
            total >= want_series * 5,
            "cycle {cycle}: only {total} samples"
        );

        // SIGKILL while scrapes keep landing.
        let _ = promflow.child.kill();
        let _ = promflow.child.wait();
        drop(promflow);
        promflow = Running::start(dir.path());

        let after = promflow.samples_at(t);
        for (series, points) in &before {
            let got = after
                .get(series)
                .unwrap_or_else(|| panic!("cycle {cycle}: series {series} lost"));
            let mut seen = std::collections::HashSet::new();
            for (ts, _) in got {
                assert!(
                    seen.insert(ts),
                    "cycle {cycle}: {series} has two samples at {ts}"
                );
            }
            assert!(
                got.len() >= points.len(),
                "cycle {cycle}: {series} had {} samples, now {}",
                points.len(),
                got.len()
            );
            let got_map: BTreeMap<&String, &String> = got.iter().map(|(t, v)| (t, v)).collect();
            for (ts, value) in points {
                assert_eq!(
                    got_map.get(ts).copied(),
                    Some(value),
                    "cycle {cycle}: {series} at {ts}"
                );
            }
        }
        eprintln!(
            "cycle {cycle}: {total} samples in {} series before the kill, all present after",
            before.len()
        );
    }
    let metrics = get(&promflow.url("/metrics")).unwrap().body;
    assert!(
        metrics.contains("prometheus_tsdb_wal_corruptions_total"),
        "no WAL corruption counter on /metrics"
    );
    stop.store(true, Ordering::SeqCst);
    changer.join().unwrap();
}

/// A WAL whose last record was torn by the crash (the newest segment cut short by a
/// few bytes) and one with garbage appended: promflow still starts, truncates the
/// tail, counts it in `prometheus_tsdb_wal_corruptions_total`, and keeps every sample before it.
#[test]
fn a_torn_wal_tail_is_truncated_and_counted_not_fatal() {
    let dir = tempfile::Builder::new()
        .prefix("promflow-torn-")
        .tempdir()
        .unwrap();
    let exporter = Exporter::start(body(0, 1));
    fs::write(
        dir.path().join("promflow.yml"),
        format!(
            "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n\
             scrape_configs:\n  - job_name: torn\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr()
        ),
    )
    .unwrap();
    let wal = dir.path().join("data").join("wal");
    let newest_segment = || {
        let mut segments: Vec<_> = fs::read_dir(&wal)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .is_ok()
            })
            .filter(|p| fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
            .collect();
        segments.sort();
        segments.pop().expect("a non-empty segment")
    };
    let corruptions = |p: &Running| -> f64 {
        let metrics = get(&p.url("/metrics")).unwrap().body;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("prometheus_tsdb_wal_corruptions_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("prometheus_tsdb_wal_corruptions_total on /metrics")
    };
    for damage in ["cut", "garbage"] {
        let promflow = Running::start(dir.path());
        let t = now_ms() + 1000;
        assert!(wait_until(Duration::from_secs(20), || now_ms() > t
            && promflow.samples_at(t).values().map(Vec::len).sum::<usize>()
                >= SERIES_PER_EXPORTER * 5));
        let before: usize = promflow.samples_at(t).values().map(Vec::len).sum();
        drop(promflow); // SIGKILL
        let segment = newest_segment();
        let mut bytes = fs::read(&segment).unwrap();
        match damage {
            "cut" => bytes.truncate(bytes.len() - 3),
            _ => bytes.extend_from_slice(b"\x10\x00\x00\x00garbage-garbage!"),
        }
        fs::write(&segment, bytes).unwrap();

        let promflow = Running::start(dir.path());
        assert_eq!(
            corruptions(&promflow),
            1.0,
            "{damage}: {}",
            promflow.log_text()
        );
        assert!(
            promflow.log_text().contains("torn or corrupt tail"),
            "{damage}: no log line"
        );
        let after: usize = promflow.samples_at(t).values().map(Vec::len).sum();
        // Only the torn record (one scrape: SERIES_PER_EXPORTER samples) may be lost.
        assert!(
            after + SERIES_PER_EXPORTER >= before,
            "{damage}: {before} samples before, {after} after"
        );
        eprintln!("{damage}: {before} samples before, {after} after, start ok");
    }
}
