//! Storage: where samples live after they are scraped, for queries and history.
//!
//! [`Storage`] is the one type the rest of promflow talks to: `append` a batch (it is
//! in the write-ahead log before `append` returns and before any reader sees it),
//! `select` by matchers and time range, list series, trim by retention. Inside, one job
//! per module:
//! - [`wal`]: the write-ahead log (segments, checksums, fsync policy, replay);
//! - [`chunk`]: Gorilla-compressed sample chunks;
//! - [`head`]: the in-memory head of every series, built of chunks;
//! - [`histogram_chunk`]: the native-histogram samples of a series, kept by the head
//!   beside its float chunks, and persisted in blocks beside them (the same chunks);
//! - [`postings`]: the label index of the head and of each block, which resolves
//!   matchers to series;
//! - [`block`]: persisted, read-only blocks of one time range each;
//! - [`exemplars`]: the newest exemplars, in memory (a ring apart from [`Storage`],
//!   held by the ingester); [`Storage::append_exemplars`] keeps them there and logs
//!   them to the WAL, which replays them at the next start
//!   ([`Storage::restore_exemplars`]);
//! - [`range_reader`]: reads each selector once for a whole range query.
//!
//! `Storage`'s own methods, one idea per file: this file holds the type, its options
//! and errors, opening (blocks, WAL replay) and what is held (time range, counts,
//! blocks, bytes); `append.rs` the write path; `select.rs` reads by matchers over the
//! blocks and the head (`select`, `series_in_range`); `label_names.rs` label names and
//! values from the indexes; `lifecycle.rs` housekeeping (block cuts, compaction,
//! retention, WAL truncation); `admin.rs` the TSDB admin operations (delete series,
//! clean tombstones, snapshot); `metrics.rs` storage's self-metrics.
//!
//! Lifecycle (driven by [`Storage::housekeeping`], once a minute): when the head spans
//! more than 1.5 block ranges, its oldest complete block range `[k·range, (k+1)·range)`
//! is written as a block, the head drops those samples and the WAL retires the
//! segments that held only them. Samples older than the newest block's end are
//! refused from then on (counted as out of order). Blocks whose end is more than the
//! retention before the newest data are deleted. A query reads every overlapping
//! block and the head, merged by series, one sample per timestamp.

mod admin;
mod append;
pub mod block;
pub mod chunk;
pub mod exemplars;
pub mod head;
pub mod histogram_chunk;
mod label_names;
mod lifecycle;
mod metrics;
pub mod postings;
pub mod range_reader;
mod select;
#[cfg(test)]
mod tests;
mod varint;
pub mod wal;

pub use head::{
    AppendOutcome, Applied, HistogramSample, Refusal, SeriesHistogramsInRange, SeriesInRange,
    SeriesRef, SeriesSamplesInRange, StoredHistogram,
};

pub use append::KeptExemplar;
pub use select::HistogramSource;
pub use wal::WalFsync;

use block::Block;
use metrics::StorageMetrics;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use wal::{Record, Wal};

/// How long an in-memory-only storage ([`Storage::new`]) keeps samples: a block range
/// and a half plus the lookback delta, like a Prometheus head.
pub const MEMORY_ONLY_RETENTION: Duration = Duration::from_secs(3 * 3600);

/// How storage is set up (from the `--storage.tsdb.*` flags).
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// `--storage.tsdb.path`: the data directory.
    pub path: PathBuf,
    /// `--storage.tsdb.wal-fsync`.
    pub wal_fsync: WalFsync,
    /// `--storage.tsdb.min-block-duration`: the time range of a block cut from the head.
    pub min_block_duration: Duration,
    /// `--storage.tsdb.retention.time`: blocks ending this long before the newest data
    /// are deleted.
    pub retention: Duration,
    /// `--storage.tsdb.retention.size` in bytes (0: no limit). Counted as Prometheus
    /// does: the WAL, then blocks from the newest; the oldest blocks past the limit
    /// are deleted.
    pub retention_size: u64,
}

impl StorageOptions {
    /// Options with Prometheus's defaults (2h blocks, 15d retention, fsync every 1s).
    pub fn new(path: PathBuf) -> StorageOptions {
        StorageOptions {
            path,
            wal_fsync: WalFsync::Every(Duration::from_secs(1)),
            min_block_duration: Duration::from_secs(2 * 3600),
            retention: Duration::from_secs(15 * 24 * 3600),
            retention_size: 0,
        }
    }
}

/// Why a batch was not appended (nothing of it was applied).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The write-ahead log could not be written.
    #[error("writing the write-ahead log: {0}")]
    Wal(std::io::Error),
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

/// The on-disk part: blocks and how they are cut and retired.
struct Persisted {
    root: PathBuf,
    range_ms: i64,
    retention_ms: i64,
    retention_bytes: u64,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Serialises housekeeping.
    cutting: Mutex<()>,
}

/// The storage engine: WAL + head. See the module docs.
pub struct Storage {
    head: head::Head,
    wal: Option<Arc<Mutex<Wal>>>,
    persisted: Option<Persisted>,
    metrics: StorageMetrics,
    /// Exemplars the WAL replayed (series id, exemplar), until
    /// [`Storage::restore_exemplars`] hands them to the exemplar storage.
    replayed_exemplars: Mutex<Vec<(u64, exemplars::Exemplar)>>,
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
            head: head::Head::new(),
            wal: None,
            persisted: None,
            metrics: StorageMetrics::default(),
            replayed_exemplars: Mutex::new(Vec::new()),
        }
    }

    /// Opens (or creates) the storage in `options.path`, replaying its WAL.
    pub fn open(options: &StorageOptions) -> Result<Storage, StorageError> {
        let root = options.path.join("blocks");
        let blocks = block::open_all(&root).map_err(|source| StorageError::Open {
            path: root.clone(),
            source,
        })?;
        let min_valid_t = blocks
            .iter()
            .map(|b| b.meta().max_t)
            .max()
            .unwrap_or(i64::MIN);
        let dir = options.path.join("wal");
        let head = head::Head::new();
        let metrics = StorageMetrics::default();
        let mut refs: HashMap<u32, u64> = HashMap::new();
        let mut refused = 0usize;
        let mut replayed_exemplars = Vec::new();
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
            Record::Histograms(samples) => {
                refused += head.replay_histograms(
                    samples
                        .into_iter()
                        .map(|(r, ts, h)| (refs.get(&r).copied(), ts, h)),
                );
            }
            Record::Exemplars(logged) => {
                // As Prometheus: none older than the newest block, none of an unknown
                // series; whether the timestamp was exposed is not logged.
                replayed_exemplars.extend(logged.into_iter().filter_map(
                    |(r, timestamp_ms, value, labels)| {
                        let id = *refs.get(&r)?;
                        (timestamp_ms >= min_valid_t).then_some((
                            id,
                            exemplars::Exemplar {
                                labels,
                                value,
                                timestamp_ms,
                                has_timestamp: false,
                            },
                        ))
                    },
                ));
            }
            Record::Tombstones(deletions) => {
                for (r, min_t, max_t) in deletions {
                    if let Some(&id) = refs.get(&r) {
                        head.replay_delete(id, min_t, max_t);
                    }
                }
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
            exemplars = replayed_exemplars.len(),
            corruptions = stats.corruptions,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "WAL replayed"
        );
        let wal = Arc::new(Mutex::new(wal));
        wal::spawn_syncer(&wal);
        tracing::info!(blocks = blocks.len(), "blocks opened");
        let storage = Storage {
            head,
            wal: Some(wal),
            persisted: Some(Persisted {
                root,
                range_ms: (options.min_block_duration.as_millis() as i64).max(1),
                retention_ms: options.retention.as_millis() as i64,
                retention_bytes: options.retention_size,
                blocks: RwLock::new(blocks.into_iter().map(Arc::new).collect()),
                cutting: Mutex::new(()),
            }),
            metrics,
            replayed_exemplars: Mutex::new(replayed_exemplars),
        };
        // What the WAL still holds of persisted blocks is dropped again.
        if min_valid_t > i64::MIN {
            storage.head.refuse_before(min_valid_t);
            storage.truncate_before(min_valid_t);
        }
        Ok(storage)
    }

    /// The open blocks' metadata, oldest first.
    pub fn blocks(&self) -> Vec<block::BlockMeta> {
        self.persisted.as_ref().map_or_else(Vec::new, |p| {
            p.blocks.read().iter().map(|b| b.meta().clone()).collect()
        })
    }

    /// Bytes on disk: `(blocks, wal)`.
    pub fn disk_bytes(&self) -> (u64, u64) {
        let blocks = self
            .persisted
            .as_ref()
            .map_or(0, |p| p.blocks.read().iter().map(|b| b.disk_bytes()).sum());
        let wal = self.wal.as_ref().map_or(0, |w| w.lock().disk_bytes());
        (blocks, wal)
    }

    /// The oldest and newest sample timestamps held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let blocks = self.blocks();
        let head = self.head.time_range();
        let min = blocks
            .first()
            .map(|b| b.min_t)
            .into_iter()
            .chain(head.map(|h| h.0))
            .min()?;
        let max = blocks
            .last()
            .map(|b| b.max_t - 1)
            .into_iter()
            .chain(head.map(|h| h.1))
            .max()?;
        Some((min, max))
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
    pub fn head(&self) -> &head::Head {
        &self.head
    }
}
