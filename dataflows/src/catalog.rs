//! The series catalog: series id → labels, shared by the dataflow's workers.
//!
//! Contract: samples enter the dataflow as columns of ids, timestamps and values
//! ([`crate::SampleBatch`]); a batch carries the labels only of the series its producer
//! has not announced before, and [`crate::Engine::feed`] puts them here before the
//! samples reach a worker. Operators that need a series' labels (routing by selector,
//! the rules' windows, the latest-sample table) look them up by id
//! ([`SeriesCatalog::with`]); a lookup that finds nothing is counted
//! ([`SeriesCatalog::missing`]) and the sample skipped there.
//!
//! Retirement: an entry leaves at a sweep ([`SeriesCatalog::sweep`], run by each
//! worker for its shard beside the latest-sample table's retirement, at most once per ten
//! seconds of frontier progress) when nothing else holds its labels — no latest-sample entry, no rule
//! window, and no producer's cache (a scrape cache slot keeps the `Arc` it announced)
//! — and it was not announced since the previous sweep. A producer that keeps the
//! announced `Arc` while it may send the series again can therefore announce once; a
//! producer without a cache announces every series of every batch (idempotent).
//!
//! Why a sharded map by hand and not a differential-dataflow arrangement of (series id
//! → labels): `dataflows/benches/arrangements.rs` ("catalog" case: release, one
//! worker, 100k series of six labels, the same `Arc<Labels>` values on both sides;
//! 3 runs on the shared 2-core machine, 2026-12-07) measures the arrangement at
//! 4.8–5.7× the map's cost to build, 8.4–10.1× per lookup and 17–21× per series
//! entering or leaving. Lookups are the hot path (a router or window that meets a
//! series it has not cached), by id in arrival order, from every worker of the
//! process; an arrangement would also be per worker, where this map is shared.

use crate::labels::Labels;
use crate::render::window::KeyMap;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One series' labels, and whether it was announced since the last sweep.
struct Entry {
    labels: Arc<Labels>,
    announced: AtomicBool,
}

/// Series id → labels, sharded by id (shard `id % shards`, the worker that sweeps it).
pub struct SeriesCatalog {
    shards: Vec<RwLock<KeyMap<u64, Entry>>>,
    missing: AtomicU64,
    retired: AtomicU64,
}

impl SeriesCatalog {
    /// An empty catalog with `shards` shards (one per worker).
    pub fn new(shards: usize) -> SeriesCatalog {
        SeriesCatalog {
            shards: (0..shards.max(1)).map(|_| RwLock::default()).collect(),
            missing: AtomicU64::new(0),
            retired: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: u64) -> &RwLock<KeyMap<u64, Entry>> {
        &self.shards[(id % self.shards.len() as u64) as usize]
    }

    /// Makes `labels` the labels of series `id` unless it has them already (an entry
    /// present keeps its `Arc`), and keeps the entry past the next sweep.
    pub fn announce(&self, id: u64, labels: &Arc<Labels>) {
        let shard = self.shard(id);
        if let Some(entry) = shard.read().get(&id) {
            entry.announced.store(true, Ordering::Relaxed);
            return;
        }
        shard.write().entry(id).or_insert_with(|| Entry {
            labels: labels.clone(),
            announced: AtomicBool::new(true),
        });
    }

    /// Calls `f` with the labels of series `id`; `None` (and counted as missing) when
    /// the catalog does not know it.
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&Arc<Labels>) -> R) -> Option<R> {
        let shard = self.shard(id).read();
        match shard.get(&id) {
            Some(entry) => Some(f(&entry.labels)),
            None => {
                self.missing.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether the entry of series `id` holds `labels` itself (the same `Arc`): a
    /// producer keeping that `Arc` keeps the entry past every sweep, and need not
    /// announce the series again.
    pub fn holds(&self, id: u64, labels: &Arc<Labels>) -> bool {
        self.shard(id)
            .read()
            .get(&id)
            .is_some_and(|e| Arc::ptr_eq(&e.labels, labels))
    }

    /// The labels of series `id`, if known (not counted when not).
    pub fn get(&self, id: u64) -> Option<Arc<Labels>> {
        self.shard(id).read().get(&id).map(|e| e.labels.clone())
    }

    /// Drops the entries of shard `index` that nothing else holds and that were not
    /// announced since the previous sweep (see the module's retirement contract).
    pub fn sweep(&self, index: usize) {
        let Some(shard) = self.shards.get(index) else {
            return;
        };
        let mut shard = shard.write();
        let before = shard.len();
        shard.retain(|_, entry| {
            let announced = entry.announced.swap(false, Ordering::Relaxed);
            announced || Arc::strong_count(&entry.labels) > 1
        });
        let retired = (before - shard.len()) as u64;
        self.retired.fetch_add(retired, Ordering::Relaxed);
    }

    /// Entries dropped by sweeps so far: a cache by series id (the routing's) is
    /// rebuilt once as many ids have gone as it holds, so it does not keep the ids
    /// of series that churned away.
    pub fn retired(&self) -> u64 {
        self.retired.load(Ordering::Relaxed)
    }

    /// The number of series known.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no series is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups of ids the catalog did not know (samples skipped by an operator).
    pub fn missing(&self) -> u64 {
        self.missing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry stays while a producer holds its labels or it was announced since the
    /// last sweep; once neither holds, the next sweep drops it and lookups miss.
    #[test]
    fn entries_retire_once_unheld_and_unannounced() {
        let catalog = SeriesCatalog::new(2);
        let held = Arc::new(Labels::from_strs(&[("__name__", "held")]));
        let once = Arc::new(Labels::from_strs(&[("__name__", "once")]));
        catalog.announce(held.hash(), &held);
        catalog.announce(once.hash(), &once);
        let once_id = once.hash();
        drop(once);
        // A second announcement with another Arc of equal labels keeps the first.
        let copy = Arc::new((*held).clone());
        catalog.announce(held.hash(), &copy);
        assert!(Arc::ptr_eq(&catalog.get(held.hash()).unwrap(), &held));
        assert!(catalog.holds(held.hash(), &held));
        assert!(
            !catalog.holds(held.hash(), &copy),
            "equal labels, another Arc"
        );

        for shard in 0..2 {
            catalog.sweep(shard);
        }
        assert_eq!(catalog.len(), 2, "announced since the last sweep: kept");
        for shard in 0..2 {
            catalog.sweep(shard);
        }
        assert_eq!(catalog.len(), 1);
        assert_eq!(
            catalog.with(held.hash(), |l| l.metric_name().to_string()),
            Some("held".to_string())
        );
        assert_eq!(catalog.with(once_id, |_| ()), None);
        assert_eq!(catalog.missing(), 1);
    }
}
