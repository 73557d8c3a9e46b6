//! The lifecycle of what storage holds, driven by [`Storage::housekeeping`] once a
//! minute: cutting blocks from the head, compacting small blocks into larger ones,
//! deleting blocks past retention (time and size), and retiring WAL segments
//! ([`Storage::truncate_before`]).
//!
//! Contract (see the module docs of [`crate::storage`]): a sample is always in a block
//! or in the head, never in neither: the head refuses samples before a range is read
//! for its block, and drops them only after the block is written; a compacted block is
//! in place before its inputs are deleted; housekeeping is serialised. An in-memory
//! storage only drops samples older than [`MEMORY_ONLY_RETENTION`].

use super::block::{self, Block};
use super::{Persisted, Storage, MEMORY_ONLY_RETENTION};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Storage {
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
}
