//! Storage: where samples live after they are scraped, for queries and history.
//!
//! [`Storage`] is the one type the rest of promflow talks to: `append` a batch (it is
//! in the write-ahead log before `append` returns and before any reader sees it),
//! `select` by matchers and time range, list series, trim by retention. Inside, one job
//! per module:
//! - [`wal`]: the write-ahead log (segments, checksums, fsync policy, replay);
//! - [`chunk`]: Gorilla-compressed sample chunks;
//! - [`head`]: the in-memory head of every series, built of chunks.

pub mod chunk;
pub mod head;
pub mod wal;

pub use head::{AppendOutcome, Head, SeriesSamplesInRange};
pub use wal::WalFsync;

use dataflows::{Labels, Sample, Selector};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wal::{Record, Wal};

/// How storage is set up (from the `--storage.tsdb.*` flags).
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// `--storage.tsdb.path`: the data directory.
    pub path: PathBuf,
    /// `--storage.tsdb.wal-fsync`.
    pub wal_fsync: WalFsync,
}

/// A storage failure that stops startup.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory or the WAL could not be read or created.
    #[error("opening storage in {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

#[derive(Default)]
struct StorageMetrics {
    wal_corruptions: AtomicU64,
    wal_write_failures: AtomicU64,
    wal_replayed_records: AtomicU64,
    wal_truncations: AtomicU64,
}

/// The storage engine: WAL + head. See the module docs.
pub struct Storage {
    head: Head,
    wal: Option<Arc<Mutex<Wal>>>,
    metrics: StorageMetrics,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage::new()
    }
}

impl Storage {
    /// A storage held in memory only (no WAL), for tests and tools.
    pub fn new() -> Storage {
        Storage {
            head: Head::new(),
            wal: None,
            metrics: StorageMetrics::default(),
        }
    }

    /// Opens (or creates) the storage in `options.path`, replaying its WAL.
    pub fn open(options: &StorageOptions) -> Result<Storage, StorageError> {
        let dir = options.path.join("wal");
        let head = Head::new();
        let metrics = StorageMetrics::default();
        let mut refs: HashMap<u32, u64> = HashMap::new();
        let mut refused = 0usize;
        let started = std::time::Instant::now();
        let (wal, stats) = Wal::open(&dir, options.wal_fsync, |record| match record {
            Record::Series(series) => {
                for (r, labels) in series {
                    refs.insert(r, head.replay_series(r, labels));
                }
            }
            Record::Samples(samples) => {
                refused += head.replay_samples(
                    samples
                        .into_iter()
                        .map(|(r, ts, v)| (refs.get(&r).copied(), ts, v)),
                );
            }
        })
        .map_err(|source| StorageError::Open {
            path: dir.clone(),
            source,
        })?;
        metrics
            .wal_corruptions
            .store(stats.corruptions, Ordering::Relaxed);
        metrics
            .wal_replayed_records
            .store(stats.records, Ordering::Relaxed);
        tracing::info!(
            segments = stats.segments,
            records = stats.records,
            series = head.series_count(),
            samples = head.sample_count(),
            refused,
            corruptions = stats.corruptions,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "WAL replayed"
        );
        let wal = Arc::new(Mutex::new(wal));
        wal::spawn_syncer(&wal);
        Ok(Storage {
            head,
            wal: Some(wal),
            metrics,
        })
    }

    /// Appends a batch: the accepted samples (and new series) are written to the WAL
    /// before this returns and before a query can see them.
    pub fn append(&self, batch: &[Sample]) -> AppendOutcome {
        let Some(wal) = &self.wal else {
            return self.head.append(batch);
        };
        self.head.append_logged(batch, |series, samples| {
            if let Err(e) = wal.lock().log(series, samples) {
                self.metrics
                    .wal_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, samples = samples.len(), "writing the WAL failed; these samples are in memory only");
            }
        })
    }

    /// The samples of every series matching `selector` with timestamps in `[start, end]`.
    pub fn select(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesSamplesInRange> {
        self.head.select(selector, start_ms, end_ms)
    }

    /// Labels of every series matching any of `selectors` (all if none) with a sample in
    /// `[start, end]`, sorted.
    pub fn series_in_range(
        &self,
        selectors: &[Selector],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        self.head.series_in_range(selectors, start_ms, end_ms)
    }

    /// Drops samples older than `cutoff_ms` and retires the WAL segments that held only
    /// such samples.
    pub fn truncate_before(&self, cutoff_ms: i64) {
        let Some(wal) = &self.wal else {
            self.head.truncate_before(cutoff_ms);
            return;
        };
        let result = self
            .head
            .truncate_before_then(cutoff_ms, |live| wal.lock().truncate(cutoff_ms, live));
        match result {
            Ok(0) => {}
            Ok(removed) => {
                self.metrics.wal_truncations.fetch_add(1, Ordering::Relaxed);
                tracing::info!(removed, "WAL segments retired");
            }
            Err(e) => tracing::error!(error = %e, "truncating the WAL failed"),
        }
    }

    /// The oldest and newest sample timestamps held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.head.time_range()
    }

    /// The number of series held.
    pub fn series_count(&self) -> usize {
        self.head.series_count()
    }

    /// The number of samples held.
    pub fn sample_count(&self) -> usize {
        self.head.sample_count()
    }

    /// The in-memory head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Storage self-metrics in the text exposition format, for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let (wal_bytes, segments) = self
            .wal
            .as_ref()
            .map(|w| {
                let w = w.lock();
                (w.disk_bytes(), w.segment_count())
            })
            .unwrap_or((0, 0));
        let rows: [(&str, &str, &str, f64); 7] = [
            (
                "promflow_wal_corruptions_total",
                "counter",
                "WAL torn or corrupt tails truncated at replay.",
                m.wal_corruptions.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_write_failures_total",
                "counter",
                "Batches the WAL failed to write.",
                m.wal_write_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_replayed_records_total",
                "counter",
                "WAL records replayed at startup.",
                m.wal_replayed_records.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_truncations_total",
                "counter",
                "WAL truncations that retired segments.",
                m.wal_truncations.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_storage_size_bytes",
                "gauge",
                "Bytes of WAL segments and checkpoints on disk.",
                wal_bytes as f64,
            ),
            (
                "promflow_wal_segments",
                "gauge",
                "WAL segments on disk.",
                segments as f64,
            ),
            (
                "promflow_tsdb_head_chunks_bytes",
                "gauge",
                "Bytes of compressed samples in the head.",
                self.head.chunk_bytes() as f64,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }
}

impl dataflows::promql::eval::SeriesSource for Storage {
    fn select(
        &self,
        matchers: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> dataflows::promql::eval::Selected {
        Storage::select(self, matchers, start_ms, end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(job: &str, ts: i64, value: f64) -> Sample {
        let labels = Labels::from_pairs(vec![
            ("__name__".into(), "m".into()),
            ("job".into(), job.into()),
        ]);
        Sample {
            series_id: labels.hash(),
            labels: Arc::new(labels),
            timestamp_ms: ts,
            value,
        }
    }

    fn all(storage: &Storage) -> Vec<(String, Vec<(i64, u64)>)> {
        let mut out: Vec<_> = storage
            .select(&Selector { matchers: vec![] }, i64::MIN, i64::MAX)
            .into_iter()
            .map(|(l, s)| {
                (
                    l.to_string(),
                    s.into_iter().map(|(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_reopened_storage_holds_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions {
            path: dir.path().to_path_buf(),
            wal_fsync: WalFsync::Batch,
        };
        let before = {
            let s = Storage::open(&options).unwrap();
            s.append(&[sample("a", 10, 1.0), sample("b", 10, 2.0)]);
            s.append(&[
                sample("a", 20, dataflows::STALE_MARKER),
                sample("a", 15, 9.0),
            ]);
            all(&s)
        };
        let s = Storage::open(&options).unwrap();
        assert_eq!(all(&s), before);
        // New series after a restart keep distinct refs from replayed ones.
        s.append(&[sample("c", 30, 3.0), sample("a", 30, 4.0)]);
        let before = all(&s);
        drop(s);
        let s = Storage::open(&options).unwrap();
        assert_eq!(all(&s), before);
        assert_eq!(s.sample_count(), 5);
    }

    #[test]
    fn truncation_retires_segments_and_keeps_live_series_replayable() {
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions {
            path: dir.path().to_path_buf(),
            wal_fsync: WalFsync::Every(std::time::Duration::from_millis(10)),
        };
        {
            let s = Storage::open(&options).unwrap();
            s.append(&[sample("old", 10, 1.0), sample("kept", 10, 1.0)]);
        }
        {
            // Restart: segment 2 begins; series "kept" was defined in segment 1.
            let s = Storage::open(&options).unwrap();
            s.append(&[sample("kept", 5000, 2.0)]);
            s.truncate_before(1000);
            assert!(s
                .render_metrics()
                .contains("promflow_wal_truncations_total 1\n"));
        }
        let s = Storage::open(&options).unwrap();
        assert_eq!(
            all(&s),
            vec![(
                "m{job=\"kept\"}".to_string(),
                vec![(5000, 2.0f64.to_bits())]
            )]
        );
    }
}
