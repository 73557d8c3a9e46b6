//! The TSDB admin operations of the API (`/api/v1/admin/tsdb/*`): deleting series,
//! cleaning tombstones and taking a snapshot.
//!
//! Contract: a deletion is seen by queries at once and survives a restart (a WAL
//! tombstone record for the head, tombstones in blocks);
//! [`Storage::clean_tombstones`] or compaction makes it final. A snapshot is a
//! directory that opens as a data directory with the same samples (with `skip_head`,
//! the blocks' only). Each runs serialised with housekeeping, so nothing is cut,
//! compacted or deleted meanwhile.

use super::block::Block;
use super::Storage;
use dataflows::Selector;
use std::sync::Arc;

impl Storage {
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
}
