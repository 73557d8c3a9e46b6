//! Storage: where samples live after they are scraped, for queries and history.
//!
//! [`Storage`] is the one type the rest of promflow talks to: `append` a batch (it is
//! in the write-ahead log before `append` returns and before any reader sees it),
//! `select` by matchers and time range, list series, trim by retention. Inside, one job
//! per module:
//! - [`wal`]: the write-ahead log (segments, checksums, fsync policy, replay);
//! - [`chunk`]: Gorilla-compressed sample chunks;
//! - [`head`]: the in-memory head of every series, built of chunks;
//! - [`postings`]: the label index of the head and of each block, which resolves
//!   matchers to series;
//! - [`block`]: persisted, read-only blocks of one time range each;
//! - [`range_reader`]: reads each selector once for a whole range query.
//!
//! Lifecycle (driven by [`Storage::housekeeping`], once a minute): when the head spans
//! more than 1.5 block ranges, its oldest complete block range `[k·range, (k+1)·range)`
//! is written as a block, the head drops those samples and the WAL retires the
//! segments that held only them. Samples older than the newest block's end are
//! refused from then on (counted as out of order). Blocks whose end is more than the
//! retention before the newest data are deleted. A query reads every overlapping
//! block and the head, merged by series, one sample per timestamp.

pub mod block;
pub mod chunk;
pub mod head;
mod label_names;
pub mod postings;
pub mod range_reader;
pub mod wal;

pub use head::{AppendOutcome, Applied, SeriesRef, SeriesSamplesInRange};

pub use wal::WalFsync;

use block::Block;
use dataflows::{Labels, Sample, SampleBatch, Selector};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Default)]
struct StorageMetrics {
    wal_corruptions: AtomicU64,
    wal_write_failures: AtomicU64,
    wal_replayed_records: AtomicU64,
    wal_truncations: AtomicU64,
    blocks_cut: AtomicU64,
    compactions: AtomicU64,
    blocks_deleted: AtomicU64,
    block_failures: AtomicU64,
    out_of_bounds: AtomicU64,
    size_retentions: AtomicU64,
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
        }
    }

    /// `fsync`s the WAL (at a clean shutdown, whatever `--storage.tsdb.wal-fsync` says).
    pub fn sync_wal(&self) -> std::io::Result<()> {
        match &self.wal {
            Some(wal) => wal.lock().sync(),
            None => Ok(()),
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
        };
        // What the WAL still holds of persisted blocks is dropped again.
        if min_valid_t > i64::MIN {
            storage.head.refuse_before(min_valid_t);
            storage.truncate_before(min_valid_t);
        }
        Ok(storage)
    }

    /// Appends a batch: the accepted samples (and new series) are written to the WAL
    /// before this returns and before a query can see them. If the WAL cannot be
    /// written, nothing of the batch is applied and the error is returned: the batch
    /// is not acknowledged.
    pub fn append(&self, batch: &[Sample]) -> Result<AppendOutcome, AppendError> {
        self.append_observed(&SampleBatch::from_samples(batch), &mut [], |_| {})
    }

    /// Like [`Storage::append`] for a batch in columns; `refs` are the batch's series
    /// handles, as [`head::Head::append_logged`] takes and fills them in (empty: none),
    /// and the batch announces the labels of the series without one; `stored` gets
    /// the samples stored ([`Applied`]), once they are logged and while no other
    /// append can interleave (so whatever it forwards them to sees every series in
    /// time order).
    pub fn append_observed(
        &self,
        batch: &SampleBatch,
        refs: &mut [Option<SeriesRef>],
        stored: impl FnOnce(&Applied<'_>),
    ) -> Result<AppendOutcome, AppendError> {
        let outcome = match &self.wal {
            None => {
                self.head
                    .append_logged(batch, refs, |_, _| Ok::<(), std::io::Error>(()), stored)
            }
            Some(wal) => self.head.append_logged(
                batch,
                refs,
                |series, samples| wal.lock().log(series, samples),
                stored,
            ),
        };
        match outcome {
            Ok(outcome) => {
                self.metrics
                    .out_of_bounds
                    .fetch_add(outcome.out_of_bounds as u64, Ordering::Relaxed);
                Ok(outcome)
            }
            Err(e) => {
                self.metrics
                    .wal_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, samples = batch.len(), "writing the WAL failed; the batch is refused");
                Err(AppendError::Wal(e))
            }
        }
    }

    /// The samples of every series matching `selector` with timestamps in `[start, end]`.
    pub fn select(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesSamplesInRange> {
        let head = self.head.select(selector, start_ms, end_ms);
        let blocks = self.blocks_overlapping(start_ms, end_ms);
        if blocks.is_empty() {
            return head;
        }
        let mut merged: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
        for block in blocks {
            match block.select(selector, start_ms, end_ms) {
                Ok(found) => {
                    for (labels, samples) in found {
                        merged.entry(labels).or_default().extend(samples);
                    }
                }
                Err(e) => {
                    self.metrics.block_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(block = %block.dir().display(), error = %e, "reading a block failed");
                }
            }
        }
        for (labels, samples) in head {
            merged.entry(labels).or_default().extend(samples);
        }
        merged
            .into_iter()
            .map(|(labels, mut samples)| {
                // Blocks are in time order and the head follows them; a sample can be in
                // both only for the moment between a cut and the head's truncation.
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
                (labels, samples)
            })
            .collect()
    }

    fn blocks_overlapping(&self, start_ms: i64, end_ms: i64) -> Vec<Arc<Block>> {
        self.persisted.as_ref().map_or_else(Vec::new, |p| {
            p.blocks
                .read()
                .iter()
                .filter(|b| b.overlaps(start_ms, end_ms))
                .cloned()
                .collect()
        })
    }

    /// Labels of every series matching any of `selectors` (all if none) with a sample in
    /// `[start, end]`, sorted.
    pub fn series_in_range(
        &self,
        selectors: &[Selector],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        let mut out = self.head.series_in_range(selectors, start_ms, end_ms);
        let blocks = self.blocks_overlapping(start_ms, end_ms);
        if blocks.is_empty() {
            return out;
        }
        let all = [Selector { matchers: vec![] }];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        for block in blocks {
            // Series listed by a block's index have a sample in its range; a partial
            // overlap needs a look at the samples.
            let whole = block.meta().min_t >= start_ms
                && block.meta().max_t - 1 <= end_ms
                && !block.has_tombstones();
            for selector in selectors {
                if whole {
                    out.extend(block.series_matching(std::slice::from_ref(selector)));
                } else if let Ok(found) = block.select(selector, start_ms, end_ms) {
                    out.extend(found.into_iter().map(|(labels, _)| labels));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Periodic upkeep: cuts blocks from the head, retires WAL segments and deletes
    /// blocks past retention (see the module docs). An in-memory storage just drops
    /// samples older than [`MEMORY_ONLY_RETENTION`] before `now_ms`.
    pub fn housekeeping(&self, now_ms: i64) {
        let Some(p) = &self.persisted else {
            self.head
                .truncate_before(now_ms - MEMORY_ONLY_RETENTION.as_millis() as i64);
            return;
        };
        let _serialised = p.cutting.lock();
        while let Some((min_t, max_t)) = self.head.time_range() {
            let start = min_t.div_euclid(p.range_ms) * p.range_ms;
            let end = start + p.range_ms;
            if max_t < end + p.range_ms / 2 {
                break;
            }
            // Refuse samples for the range before reading it, so none lands unseen (the
            // head checks the bound under its write lock).
            self.head.refuse_before(end);
            let series = self.head.encode_range(start, end - 1);
            if !series.is_empty() {
                match Block::write(&p.root, start, end, series) {
                    Ok(block) => {
                        tracing::info!(block = %block.dir().display(), series = block.meta().series, samples = block.meta().samples, "block cut");
                        self.metrics.blocks_cut.fetch_add(1, Ordering::Relaxed);
                        let mut blocks = p.blocks.write();
                        blocks.push(Arc::new(block));
                        blocks.sort_by_key(|b| (b.meta().min_t, b.meta().max_t));
                    }
                    Err(e) => {
                        self.metrics.block_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "writing a block failed; keeping the samples in the head");
                        break;
                    }
                }
            }
            self.truncate_before(end);
        }
        self.compact(p);
        self.apply_retention(p);
    }

    /// Merges the blocks inside each complete aligned window of 3, 9 and 27 block
    /// ranges (as long as the window is at most a tenth of the retention, as in
    /// Prometheus) into one block. A
    /// window is complete once newer data exists past its end. The merged block is in
    /// place before its inputs are deleted.
    fn compact(&self, p: &Persisted) {
        let newest = self.time_range().map(|r| r.1);
        let Some(newest) = newest else { return };
        for factor in [3, 9, 27] {
            let window = p.range_ms * factor;
            // Like Prometheus: no block longer than a tenth of the retention.
            if window > p.retention_ms / 10 {
                break;
            }
            loop {
                let blocks: Vec<Arc<Block>> = p.blocks.read().clone();
                let candidate = blocks.iter().find_map(|b| {
                    let start = b.meta().min_t.div_euclid(window) * window;
                    let end = start + window;
                    let inside: Vec<Arc<Block>> = blocks
                        .iter()
                        .filter(|o| o.meta().min_t >= start && o.meta().max_t <= end)
                        .cloned()
                        .collect();
                    let straddles = blocks.iter().any(|o| {
                        o.meta().min_t < end
                            && o.meta().max_t > start
                            && !inside.iter().any(|i| Arc::ptr_eq(i, o))
                    });
                    (inside.len() >= 2 && !straddles && newest >= end)
                        .then_some((start, end, inside))
                });
                let Some((start, end, inside)) = candidate else {
                    break;
                };
                match block::compact(&p.root, start, end, &inside) {
                    Ok(merged) => {
                        tracing::info!(block = %merged.dir().display(), merged = inside.len(), "blocks compacted");
                        let merged_dir = merged.dir().to_path_buf();
                        {
                            let mut blocks = p.blocks.write();
                            blocks.retain(|b| !inside.iter().any(|i| Arc::ptr_eq(i, b)));
                            blocks.push(Arc::new(merged));
                            blocks.sort_by_key(|b| (b.meta().min_t, b.meta().max_t));
                        }
                        for old in &inside {
                            if old.dir() != merged_dir {
                                if let Err(e) = std::fs::remove_dir_all(old.dir()) {
                                    tracing::error!(block = %old.dir().display(), error = %e, "deleting a compacted block failed");
                                }
                            }
                        }
                        self.metrics.compactions.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.metrics.block_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "compacting blocks failed");
                        return;
                    }
                }
            }
        }
    }

    fn apply_retention(&self, p: &Persisted) {
        let newest = self
            .head
            .time_range()
            .map(|r| r.1)
            .into_iter()
            .chain(p.blocks.read().iter().map(|b| b.meta().max_t))
            .max();
        let Some(newest) = newest else { return };
        let horizon = newest - p.retention_ms;
        // Size: the WAL counts first (Prometheus counts its WAL and head chunk files;
        // the head's chunks live in memory here), then blocks from the newest.
        let mut budget_used = self.wal.as_ref().map_or(0, |w| w.lock().disk_bytes());
        let expired: Vec<(Arc<Block>, &str)> = {
            let mut blocks = p.blocks.write();
            let mut over_size = vec![false; blocks.len()];
            if p.retention_bytes > 0 {
                for (i, b) in blocks.iter().enumerate().rev() {
                    budget_used += b.disk_bytes();
                    over_size[i] = budget_used > p.retention_bytes;
                }
            }
            let mut expired = Vec::new();
            let mut kept = Vec::new();
            for (b, over_size) in blocks.drain(..).zip(over_size) {
                if b.meta().max_t <= horizon {
                    expired.push((b, "time"));
                } else if over_size {
                    expired.push((b, "size"));
                } else {
                    kept.push(b);
                }
            }
            *blocks = kept;
            expired
        };
        for (block, reason) in expired {
            match std::fs::remove_dir_all(block.dir()) {
                Ok(()) => {
                    self.metrics.blocks_deleted.fetch_add(1, Ordering::Relaxed);
                    if reason == "size" {
                        self.metrics.size_retentions.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(block = %block.dir().display(), retention = reason, "block past retention deleted");
                }
                Err(e) => {
                    tracing::error!(block = %block.dir().display(), error = %e, "deleting a block failed")
                }
            }
        }
    }

    /// `delete_series`: deletes the samples in `[min_t, max_t]` of every series matching
    /// any of `selectors`. In the head they go at once (a WAL tombstone record makes
    /// that survive a restart); in blocks they are marked by tombstones, which queries
    /// honour and [`Storage::clean_tombstones`] (or compaction) makes final.
    pub fn delete_series(
        &self,
        selectors: &[Selector],
        min_t: i64,
        max_t: i64,
    ) -> std::io::Result<()> {
        let _serialised = self.persisted.as_ref().map(|p| p.cutting.lock());
        let deleted = match &self.wal {
            None => self
                .head
                .delete_logged(selectors, min_t, max_t, |_| Ok::<(), std::io::Error>(())),
            Some(wal) => self
                .head
                .delete_logged(selectors, min_t, max_t, |deletions| {
                    wal.lock().log_tombstones(deletions)
                }),
        }?;
        let mut marked = 0;
        if let Some(p) = &self.persisted {
            for block in p.blocks.read().iter() {
                marked += block.delete(selectors, min_t, max_t)?;
            }
        }
        tracing::info!(
            head_samples = deleted,
            block_series = marked,
            min_t,
            max_t,
            "series deleted"
        );
        Ok(())
    }

    /// `clean_tombstones`: rewrites every block that has tombstones without the
    /// deleted samples. Returns the number of blocks rewritten.
    pub fn clean_tombstones(&self) -> std::io::Result<usize> {
        let Some(p) = &self.persisted else {
            return Ok(0);
        };
        let _serialised = p.cutting.lock();
        let dirty: Vec<Arc<Block>> = p
            .blocks
            .read()
            .iter()
            .filter(|b| b.has_tombstones())
            .cloned()
            .collect();
        for old in &dirty {
            let meta = old.meta();
            let rewritten = Block::write(&p.root, meta.min_t, meta.max_t, old.live_chunks()?)?;
            tracing::info!(block = %rewritten.dir().display(), samples_before = meta.samples, samples = rewritten.meta().samples, "tombstones cleaned");
            let mut blocks = p.blocks.write();
            for b in blocks.iter_mut() {
                if Arc::ptr_eq(b, old) {
                    *b = Arc::new(Block::open(rewritten.dir())?);
                }
            }
        }
        Ok(dirty.len())
    }

    /// `snapshot`: a copy of the data under `dir` that can be opened as a data
    /// directory: every block hard-linked into `dir/blocks/`, and (unless `skip_head`)
    /// the head written there as one more block. Nothing is cut, compacted or deleted
    /// meanwhile.
    pub fn snapshot(&self, dir: &std::path::Path, skip_head: bool) -> std::io::Result<()> {
        let blocks_dir = dir.join("blocks");
        std::fs::create_dir_all(&blocks_dir)?;
        let _serialised = self.persisted.as_ref().map(|p| p.cutting.lock());
        if let Some(p) = &self.persisted {
            for block in p.blocks.read().iter() {
                let name = block.dir().file_name().unwrap_or_default();
                let to = blocks_dir.join(name);
                std::fs::create_dir_all(&to)?;
                for entry in std::fs::read_dir(block.dir())? {
                    let from = entry?.path();
                    let Some(file) = from.file_name() else {
                        continue;
                    };
                    if std::fs::hard_link(&from, to.join(file)).is_err() {
                        std::fs::copy(&from, to.join(file))?;
                    }
                }
            }
        }
        if !skip_head {
            if let Some((min_t, max_t)) = self.head.time_range() {
                let series = self.head.encode_range(min_t, max_t);
                Block::write(&blocks_dir, min_t, max_t + 1, series)?;
            }
        }
        Ok(())
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
        let (block_bytes, _) = self.disk_bytes();
        let rows: [(&str, &str, &str, f64); 15] = [
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
            (
                "promflow_tsdb_block_compactions_total",
                "counter",
                "Block merges of small blocks.",
                m.compactions.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_blocks_loaded",
                "gauge",
                "Persisted blocks open.",
                self.blocks().len() as f64,
            ),
            (
                "promflow_tsdb_storage_blocks_bytes",
                "gauge",
                "Bytes of persisted blocks on disk.",
                block_bytes as f64,
            ),
            (
                "promflow_tsdb_compactions_total",
                "counter",
                "Blocks cut from the head.",
                m.blocks_cut.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_blocks_deleted_total",
                "counter",
                "Blocks deleted past retention.",
                m.blocks_deleted.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_size_retentions_total",
                "counter",
                "Blocks deleted because the storage exceeded --storage.tsdb.retention.size.",
                m.size_retentions.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_block_failures_total",
                "counter",
                "Failed block writes and reads.",
                m.block_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_out_of_bounds_samples_total",
                "counter",
                "Samples refused for being older than the newest block.",
                m.out_of_bounds.load(Ordering::Relaxed) as f64,
            ),
        ];
        // One writer of the text format for every self-metric (Go's float spelling).
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            crate::exposition::write_single(&mut out, name, kind, help, value);
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

    use head::tests::sample;

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
            wal_fsync: WalFsync::Batch,
            ..StorageOptions::new(dir.path().to_path_buf())
        };
        let before = {
            let s = Storage::open(&options).unwrap();
            s.append(&[sample("a", 10, 1.0), sample("b", 10, 2.0)])
                .unwrap();
            s.append(&[
                sample("a", 20, dataflows::STALE_MARKER),
                sample("a", 15, 9.0),
            ])
            .unwrap();
            all(&s)
        };
        let s = Storage::open(&options).unwrap();
        assert_eq!(all(&s), before);
        // New series after a restart keep distinct refs from replayed ones.
        s.append(&[sample("c", 30, 3.0), sample("a", 30, 4.0)])
            .unwrap();
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
            wal_fsync: WalFsync::Every(std::time::Duration::from_millis(10)),
            ..StorageOptions::new(dir.path().to_path_buf())
        };
        {
            let s = Storage::open(&options).unwrap();
            s.append(&[sample("old", 10, 1.0), sample("kept", 10, 1.0)])
                .unwrap();
        }
        {
            // Restart: segment 2 begins; series "kept" was defined in segment 1.
            let s = Storage::open(&options).unwrap();
            s.append(&[sample("kept", 5000, 2.0)]).unwrap();
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

    /// Three days of samples with explicit timestamps, a minute apart, in time order:
    /// blocks are cut every 2h of data and compacted into 6h ones, queries span blocks
    /// and head, a restart reopens the blocks, and retention (60h, counted from the
    /// newest sample) deletes old ones.
    #[test]
    fn three_day_backfill_cuts_compacts_and_applies_retention() {
        const MINUTE: i64 = 60_000;
        const HOUR: i64 = 60 * MINUTE;
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions {
            retention: Duration::from_secs(60 * 3600),
            ..StorageOptions::new(dir.path().to_path_buf())
        };
        let t0 = 1_700_000_000_000 / (6 * HOUR) * (6 * HOUR);
        let end = t0 + 72 * HOUR;
        let jobs = ["a", "b", "c"];
        let value = |t: i64, j: usize| ((t - t0) / MINUTE) as f64 * 0.5 + j as f64;
        {
            let s = Storage::open(&options).unwrap();
            let mut t = t0;
            while t < end {
                let batch: Vec<Sample> = jobs
                    .iter()
                    .enumerate()
                    .map(|(j, job)| sample(job, t, value(t, j)))
                    .collect();
                assert_eq!(s.append(&batch).unwrap().appended, 3);
                if (t - t0) % HOUR == 0 {
                    s.housekeeping(t);
                }
                t += MINUTE;
            }
            s.housekeeping(end);
            let blocks = s.blocks();
            // Retention keeps blocks ending within 60h of the newest sample.
            assert!(
                blocks.iter().all(|b| b.max_t > end - MINUTE - 60 * HOUR),
                "{blocks:?}"
            );
            // Aligned, disjoint, in order; 2h blocks compacted into 6h ones.
            for pair in blocks.windows(2) {
                assert_eq!(pair[0].max_t, pair[1].min_t, "{blocks:?}");
            }
            for b in &blocks {
                let span = b.max_t - b.min_t;
                assert!(span == 2 * HOUR || span == 6 * HOUR, "{b:?}");
                assert_eq!(b.min_t % span, 0);
                assert_eq!(b.samples as i64, 3 * span / MINUTE);
            }
            let six = blocks
                .iter()
                .filter(|b| b.max_t - b.min_t == 6 * HOUR)
                .count();
            assert!(six >= 8, "{blocks:?}");
            assert!(s
                .render_metrics()
                .contains("promflow_tsdb_block_compactions_total"));
            // The head holds what is not in a block, at most 3.5h.
            let (head_min, _) = s.head().time_range().unwrap();
            assert_eq!(head_min, blocks.last().unwrap().max_t);
            assert!(end - head_min <= 7 * HOUR / 2);
            // Old samples are refused.
            let out = s.append(&[sample("a", head_min - MINUTE, 1.0)]).unwrap();
            assert_eq!(out.out_of_bounds, 1);
        }
        let s = Storage::open(&options).unwrap();
        let first = s.blocks()[0].min_t;
        let sel = Selector {
            matchers: vec![dataflows::LabelMatcher::new("job", "=", "b").unwrap()],
        };
        // A range spanning blocks and the head: every minute, once, with its value.
        let got = s.select(&sel, first, end);
        assert_eq!(got.len(), 1);
        let want: Vec<(i64, f64)> = (0..)
            .map(|i| first + i * MINUTE)
            .take_while(|&t| t < end)
            .map(|t| (t, value(t, 1)))
            .collect();
        assert_eq!(got[0].1, want);
        assert_eq!(s.series_in_range(&[], first, first + HOUR).len(), 3);
        assert_eq!(s.time_range(), Some((first, end - MINUTE)));
        assert!(
            s.select(&sel, t0, first - 1).is_empty(),
            "deleted blocks are gone"
        );
    }

    /// A writer appends late samples (inside the range being cut) while blocks are
    /// cut: every sample storage acknowledged is found afterwards, in a block or in
    /// the head. Before the bound was checked under the head's lock, a sample could
    /// pass the check, land in the head after the cut read it, and be trimmed.
    #[test]
    fn a_late_sample_racing_a_block_cut_is_refused_or_kept() {
        const HOUR: i64 = 3_600_000;
        for round in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let s =
                Arc::new(Storage::open(&StorageOptions::new(dir.path().to_path_buf())).unwrap());
            // The head spans 0..3.5h: housekeeping cuts [0, 2h).
            let mut t = 0;
            while t <= 7 * HOUR / 2 {
                s.append(&[sample("steady", t, 1.0)]).unwrap();
                t += 60_000;
            }
            let cutting = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let started = Arc::new(std::sync::Barrier::new(3));
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    let (s, cutting, started) = (s.clone(), cutting.clone(), started.clone());
                    std::thread::spawn(move || {
                        let mut acknowledged = Vec::new();
                        started.wait();
                        let mut i = 0;
                        while cutting.load(Ordering::Relaxed) && i < 100_000 {
                            // Each late sample is its own series: only the bound refuses it.
                            let job = format!("late-{w}-{i}");
                            let out = s.append(&[sample(&job, HOUR + i, 1.0)]).unwrap();
                            if out.appended == 1 {
                                acknowledged.push(job);
                            }
                            i += 1;
                        }
                        acknowledged
                    })
                })
                .collect();
            started.wait();
            s.housekeeping(7 * HOUR / 2);
            cutting.store(false, Ordering::Relaxed);
            let acknowledged: Vec<String> = writers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect();
            assert_eq!(s.blocks().len(), 1);
            let stored: std::collections::HashSet<String> = s
                .series_in_range(&[], 0, 2 * HOUR)
                .iter()
                .map(|l| l.get("job").unwrap_or_default().to_string())
                .collect();
            let lost: Vec<&String> = acknowledged
                .iter()
                .filter(|j| !stored.contains(*j))
                .collect();
            assert!(
                lost.is_empty(),
                "round {round}: acknowledged then lost: {lost:?}"
            );
        }
    }

    /// Hours of samples, a minute apart, for jobs a, b, c, with housekeeping every hour.
    fn backfill(s: &Storage, from: i64, to: i64) {
        const MINUTE: i64 = 60_000;
        let mut t = from;
        while t < to {
            let batch: Vec<Sample> = ["a", "b", "c"]
                .iter()
                .map(|job| sample(job, t, (t / MINUTE) as f64))
                .collect();
            s.append(&batch).unwrap();
            if t % (3_600_000) == 0 {
                s.housekeeping(t);
            }
            t += MINUTE;
        }
    }

    fn job(name: &str) -> Selector {
        Selector {
            matchers: vec![dataflows::LabelMatcher::new("job", "=", name).unwrap()],
        }
    }

    /// delete_series over blocks and head: queries skip the deleted samples at once,
    /// after a restart, and after clean_tombstones rewrote the blocks; a series deleted
    /// whole is no longer listed.
    #[test]
    fn deleted_series_stay_deleted_through_restart_and_cleaning() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let options = StorageOptions {
            wal_fsync: WalFsync::Batch,
            ..StorageOptions::new(dir.path().to_path_buf())
        };
        let (from, to) = (100 * HOUR, 108 * HOUR);
        // job b loses [101.5h, 107h] (blocks and head), job c everything.
        let (del_from, del_to) = (101 * HOUR + HOUR / 2, 107 * HOUR);
        let expected = |job: &str| -> Vec<i64> {
            (from / 60_000..to / 60_000)
                .map(|m| m * 60_000)
                .filter(|&t| match job {
                    "b" => t < del_from || t > del_to,
                    "c" => false,
                    _ => true,
                })
                .collect()
        };
        let check = |s: &Storage, when: &str| {
            for name in ["a", "b", "c"] {
                let got: Vec<i64> = s
                    .select(&job(name), i64::MIN, i64::MAX)
                    .into_iter()
                    .flat_map(|(_, samples)| samples.into_iter().map(|(t, _)| t))
                    .collect();
                assert_eq!(got, expected(name), "job {name} {when}");
            }
            let listed = s.series_in_range(&[], from, to);
            assert_eq!(listed.len(), 2, "{when}: {listed:?}");
        };
        {
            let s = Storage::open(&options).unwrap();
            backfill(&s, from, to);
            assert!(s.blocks().len() >= 2, "{:?}", s.blocks());
            s.delete_series(&[job("b")], del_from, del_to).unwrap();
            s.delete_series(&[job("c")], i64::MIN, i64::MAX).unwrap();
            check(&s, "after delete");
        }
        let s = Storage::open(&options).unwrap();
        check(&s, "after restart");
        let before: u64 = s.blocks().iter().map(|b| b.samples).sum();
        assert!(s.clean_tombstones().unwrap() >= 2);
        let after: u64 = s.blocks().iter().map(|b| b.samples).sum();
        assert!(after < before, "{after} < {before}");
        check(&s, "after clean_tombstones");
        assert_eq!(s.clean_tombstones().unwrap(), 0, "nothing left to clean");
        drop(s);
        check(
            &Storage::open(&options).unwrap(),
            "after cleaning and restart",
        );
    }

    /// A snapshot opens as a data directory holding the same samples (blocks and head);
    /// with skip_head only the blocks'.
    #[test]
    fn a_snapshot_opens_as_a_data_directory() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(&StorageOptions::new(dir.path().join("data"))).unwrap();
        backfill(&s, 10 * HOUR, 15 * HOUR);
        let (newest_block_end, head_samples) = (s.blocks().last().unwrap().max_t, s.sample_count());
        assert!(head_samples > 0);
        s.snapshot(&dir.path().join("full"), false).unwrap();
        s.snapshot(&dir.path().join("blocks-only"), true).unwrap();
        let full = Storage::open(&StorageOptions::new(dir.path().join("full"))).unwrap();
        assert_eq!(all(&full), all(&s));
        let blocks_only =
            Storage::open(&StorageOptions::new(dir.path().join("blocks-only"))).unwrap();
        let wanted: Vec<_> = all(&s)
            .into_iter()
            .map(|(l, samples)| {
                (
                    l,
                    samples
                        .into_iter()
                        .filter(|(t, _)| *t < newest_block_end)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(all(&blocks_only), wanted);
        // The original keeps working after its blocks were hard-linked.
        s.append(&[sample("a", 15 * HOUR, 1.0)]).unwrap();
        assert_eq!(s.sample_count(), head_samples + 1);
    }

    /// retention.size: after every housekeeping the WAL and blocks fit the limit, the
    /// oldest blocks went first, and no more than needed (one more block would not fit).
    #[test]
    fn size_retention_deletes_the_oldest_blocks_beyond_the_limit() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let limit = 150_000;
        let s = Storage::open(&StorageOptions {
            retention_size: limit,
            ..StorageOptions::new(dir.path().to_path_buf())
        })
        .unwrap();
        let mut t = 0;
        let mut deleted_by_size = false;
        while t < 72 * HOUR {
            backfill(&s, t, t + HOUR);
            t += HOUR;
            s.housekeeping(t);
            let (blocks, wal) = s.disk_bytes();
            // (The WAL alone may exceed it: then every block goes, as in Prometheus.)
            assert!(
                blocks + wal <= limit || blocks == 0,
                "{blocks} + {wal} > {limit} at {t}"
            );
            let metas = s.blocks();
            if let Some(first) = metas.first() {
                if first.min_t > 0 {
                    deleted_by_size = true;
                    let biggest = s
                        .persisted
                        .as_ref()
                        .unwrap()
                        .blocks
                        .read()
                        .iter()
                        .map(|b| b.disk_bytes())
                        .max()
                        .unwrap();
                    assert!(
                        blocks + wal + biggest > limit,
                        "more deleted than needed at {t}"
                    );
                }
                // What is left is the newest data, without gaps.
                for pair in metas.windows(2) {
                    assert_eq!(pair[0].max_t, pair[1].min_t);
                }
            }
        }
        assert!(deleted_by_size);
        assert!(s
            .render_metrics()
            .lines()
            .any(|l| l.starts_with("promflow_tsdb_size_retentions_total ") && !l.ends_with(" 0")));
    }
}
