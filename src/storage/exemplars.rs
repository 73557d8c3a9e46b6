//! Exemplars: the newest exemplars scraped, at most `max_exemplars` of them over all
//! series, in one ring (Prometheus's circular exemplar storage, `tsdb/exemplar.go`).
//!
//! Contract, as Prometheus 2.42 with `--enable-feature=exemplar-storage`:
//! - [`ExemplarStore::add`] keeps an exemplar of a series unless it equals the
//!   series' newest one (same labels and value, and the same timestamp when either
//!   has its own: an exemplar exposed again unchanged is kept once), is not newer
//!   than it (out of order: counted), or its labels exceed 128 characters (names and
//!   values, counted in characters). Its labels lose empty values. When the ring is
//!   full the oldest exemplar of all is overwritten. Refusals are the caller's to
//!   count (Prometheus counts out-of-order ones per scrape, in
//!   `prometheus_target_scrapes_exemplar_out_of_order_total`).
//! - [`ExemplarStore::select`] answers `/api/v1/query_exemplars`: per series matching
//!   any of the selectors, its exemplars in `[start, end]` oldest first, the series
//!   in label order; series without one there are left out.
//! - A capacity of 0 stores nothing (the feature off); [`ExemplarStore::resize`]
//!   keeps the newest exemplars that fit, as a configuration reload does.
//!
//! The ring is in memory; [`super::Storage::append_exemplars`] logs what it keeps to
//! the WAL and [`super::Storage::restore_exemplars`] replays them at start, as
//! Prometheus does.

use dataflows::{Labels, Selector};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Prometheus's `exemplar.ExemplarMaxLabelSetLength`: characters of names and values.
const MAX_LABEL_SET_CHARS: usize = 128;

/// One exemplar.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
    /// Whether the timestamp was exposed (otherwise it is the scrape's).
    pub has_timestamp: bool,
}

impl Exemplar {
    /// Prometheus's `Exemplar.Equals`: the timestamps count only when one was exposed.
    fn same_as(&self, other: &Exemplar) -> bool {
        self.labels == other.labels
            && (!(self.has_timestamp || other.has_timestamp)
                || self.timestamp_ms == other.timestamp_ms)
            && self.value == other.value
    }
}

/// Why an exemplar was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Storage is off (capacity 0).
    Disabled,
    /// Equal to the series' newest exemplar (not an error in Prometheus).
    Duplicate,
    /// Not newer than the series' newest exemplar.
    OutOfOrder,
    /// Labels longer than 128 characters.
    LabelLength,
}

/// One series' exemplars in the ring: oldest and newest slot.
struct SeriesIndex {
    oldest: usize,
    newest: usize,
}

struct Slot {
    exemplar: Exemplar,
    series: Arc<Labels>,
    /// The series' next (newer) exemplar.
    next: Option<usize>,
}

#[derive(Default)]
struct Ring {
    slots: Vec<Option<Slot>>,
    capacity: usize,
    /// Slots written.
    held: usize,
    next: usize,
    index: HashMap<Arc<Labels>, SeriesIndex>,
}

/// The exemplar ring and its counters (Prometheus's `prometheus_tsdb_exemplar_*`).
#[derive(Default)]
pub struct ExemplarStore {
    ring: Mutex<Ring>,
    appended: AtomicU64,
}

/// What the store holds, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExemplarStats {
    pub appended_total: u64,
    pub held: usize,
    pub series: usize,
    pub capacity: usize,
    /// `prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds` as Prometheus 2.42
    /// computes it, despite its help text: the timestamp (ms) of the exemplar to be
    /// overwritten next (the oldest) once the ring is full, before that the first
    /// one's; 0 when none.
    pub last_timestamp_ms: i64,
}

impl ExemplarStore {
    /// A store of at most `capacity` exemplars (0: off).
    pub fn new(capacity: usize) -> ExemplarStore {
        let store = ExemplarStore::default();
        store.resize(capacity);
        store
    }

    /// Changes the capacity, keeping the newest exemplars that fit.
    pub fn resize(&self, capacity: usize) {
        let mut ring = self.ring.lock();
        if ring.capacity == capacity {
            return;
        }
        let old = std::mem::take(&mut *ring);
        ring.capacity = capacity;
        ring.slots = (0..capacity).map(|_| None).collect();
        // Oldest first: the slots from `next` on, then those before it.
        let held = old.slots.len();
        let mut kept: Vec<Slot> = (0..held)
            .filter_map(|i| old_slot(&old, (old.next + i) % held.max(1)))
            .collect();
        let skip = kept.len().saturating_sub(capacity);
        for slot in kept.drain(..).skip(skip) {
            ring.push(slot.series, slot.exemplar);
        }
    }

    /// Whether exemplars are kept (the capacity is not 0).
    pub fn enabled(&self) -> bool {
        self.ring.lock().capacity > 0
    }

    /// Keeps `exemplar` of the series `series` (see the module doc).
    pub fn add(&self, series: &Arc<Labels>, exemplar: Exemplar) -> Result<(), Refused> {
        let chars: usize = exemplar
            .labels
            .iter()
            .map(|(n, v)| n.chars().count() + v.chars().count())
            .sum();
        let mut ring = self.ring.lock();
        if ring.capacity == 0 {
            return Err(Refused::Disabled);
        }
        if chars > MAX_LABEL_SET_CHARS {
            return Err(Refused::LabelLength);
        }
        if let Some(newest) = ring
            .index
            .get(series)
            .and_then(|i| ring.slots[i.newest].as_ref())
        {
            if newest.exemplar.same_as(&exemplar) {
                return Err(Refused::Duplicate);
            }
            if exemplar.timestamp_ms <= newest.exemplar.timestamp_ms {
                return Err(Refused::OutOfOrder);
            }
        }
        ring.push(series.clone(), exemplar);
        self.appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The exemplars in `[start_ms, end_ms]` of every series matching any of
    /// `selectors`, per series oldest first, series in label order.
    pub fn select(
        &self,
        start_ms: i64,
        end_ms: i64,
        selectors: &[Selector],
    ) -> Vec<(Arc<Labels>, Vec<Exemplar>)> {
        let ring = self.ring.lock();
        let mut out = Vec::new();
        for (series, index) in &ring.index {
            if !selectors.iter().any(|s| s.matches(series)) {
                continue;
            }
            let mut exemplars = Vec::new();
            let mut at = Some(index.oldest);
            while let Some(slot) = at.and_then(|i| ring.slots[i].as_ref()) {
                let ts = slot.exemplar.timestamp_ms;
                if ts > end_ms {
                    break;
                }
                if ts >= start_ms {
                    exemplars.push(slot.exemplar.clone());
                }
                at = slot.next;
            }
            if !exemplars.is_empty() {
                out.push((series.clone(), exemplars));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn stats(&self) -> ExemplarStats {
        let ring = self.ring.lock();
        // As Prometheus's `computeMetrics` sets it: the exemplar in the slot written
        // next (the oldest once the ring is full), else the first slot's.
        let last_timestamp_ms = [ring.next, 0]
            .into_iter()
            .find_map(|i| ring.slots.get(i)?.as_ref())
            .map_or(0, |s| s.exemplar.timestamp_ms);
        ExemplarStats {
            appended_total: self.appended.load(Ordering::Relaxed),
            held: ring.held,
            series: ring.index.len(),
            capacity: ring.capacity,
            last_timestamp_ms,
        }
    }
}

impl ExemplarStore {
    /// Prometheus's `prometheus_tsdb_exemplar_*` families in the text format, for
    /// `/metrics`.
    pub fn render_metrics(&self) -> String {
        let s = self.stats();
        let rows: [(&str, &str, &str, f64); 5] = [
            (
                "prometheus_tsdb_exemplar_exemplars_appended_total",
                "counter",
                "Total number of appended exemplars.",
                s.appended_total as f64,
            ),
            (
                "prometheus_tsdb_exemplar_exemplars_in_storage",
                "gauge",
                "Number of exemplars currently in circular storage.",
                s.held as f64,
            ),
            (
                "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
                "gauge",
                "Number of series with exemplars currently in circular storage.",
                s.series as f64,
            ),
            (
                "prometheus_tsdb_exemplar_last_exemplars_timestamp_seconds",
                "gauge",
                "The timestamp of the newest exemplar stored in circular storage.",
                s.last_timestamp_ms as f64 / 1000.0,
            ),
            (
                "prometheus_tsdb_exemplar_max_exemplars",
                "gauge",
                "Total number of exemplars the exemplar storage can store, resizeable.",
                s.capacity as f64,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            crate::exposition::write_single(&mut out, name, kind, help, value);
        }
        out
    }
}

/// A copy of `ring`'s slot `i`, if held.
fn old_slot(ring: &Ring, i: usize) -> Option<Slot> {
    ring.slots.get(i)?.as_ref().map(|s| Slot {
        exemplar: s.exemplar.clone(),
        series: s.series.clone(),
        next: None,
    })
}

impl Ring {
    /// Writes `exemplar` at the next slot, overwriting the oldest of all.
    fn push(&mut self, series: Arc<Labels>, exemplar: Exemplar) {
        let at = self.next;
        let old = self.slots[at].take();
        if old.is_none() {
            self.held += 1;
        }
        if let Some(old) = old {
            match old.next {
                None => {
                    self.index.remove(&old.series);
                }
                Some(next) => {
                    if let Some(i) = self.index.get_mut(&old.series) {
                        i.oldest = next;
                    }
                }
            }
        }
        match self.index.get_mut(&series) {
            Some(i) => {
                if let Some(newest) = self.slots[i.newest].as_mut() {
                    newest.next = Some(at);
                }
                i.newest = at;
            }
            None => {
                self.index.insert(
                    series.clone(),
                    SeriesIndex {
                        oldest: at,
                        newest: at,
                    },
                );
            }
        }
        self.slots[at] = Some(Slot {
            exemplar,
            series,
            next: None,
        });
        self.next = (at + 1) % self.capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, value: f64, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_strs(&[("trace_id", trace)]),
            value,
            timestamp_ms: ts,
            has_timestamp: true,
        }
    }

    fn series(name: &str) -> Arc<Labels> {
        Arc::new(Labels::from_strs(&[("__name__", name)]))
    }

    fn all() -> Vec<Selector> {
        vec![Selector::default()]
    }

    #[test]
    fn the_ring_keeps_the_newest_and_drops_duplicates_and_older_ones() {
        let store = ExemplarStore::new(3);
        let (a, b) = (series("a"), series("b"));
        assert_eq!(store.add(&a, ex("1", 1.0, 10)), Ok(()));
        assert_eq!(store.add(&a, ex("1", 1.0, 10)), Err(Refused::Duplicate));
        assert_eq!(store.add(&a, ex("2", 2.0, 5)), Err(Refused::OutOfOrder));
        assert_eq!(store.add(&b, ex("3", 3.0, 11)), Ok(()));
        assert_eq!(store.add(&a, ex("4", 4.0, 12)), Ok(()));
        assert_eq!(store.add(&b, ex("5", 5.0, 13)), Ok(()));
        // The first exemplar of `a` was overwritten.
        let got = store.select(0, 100, &all());
        let values: Vec<(String, Vec<f64>)> = got
            .iter()
            .map(|(s, e)| (s.to_string(), e.iter().map(|e| e.value).collect()))
            .collect();
        assert_eq!(
            values,
            vec![
                ("a{}".to_string(), vec![4.0]),
                ("b{}".to_string(), vec![3.0, 5.0])
            ]
        );
        assert_eq!(store.select(12, 12, &all()).len(), 1);
        let stats = store.stats();
        assert_eq!(stats.appended_total, 4);
        // The "last" timestamp is the slot written next: the oldest, 11.
        assert_eq!(
            (stats.held, stats.series, stats.last_timestamp_ms),
            (3, 2, 11)
        );
    }

    #[test]
    fn resizing_keeps_the_newest_and_zero_turns_it_off() {
        let store = ExemplarStore::new(4);
        let a = series("a");
        for i in 0..4 {
            store.add(&a, ex(&i.to_string(), i as f64, i)).unwrap();
        }
        store.resize(2);
        let got = store.select(i64::MIN, i64::MAX, &all());
        assert_eq!(
            got[0].1.iter().map(|e| e.value).collect::<Vec<_>>(),
            [2.0, 3.0]
        );
        store.add(&a, ex("9", 9.0, 9)).unwrap();
        let got = store.select(i64::MIN, i64::MAX, &all());
        assert_eq!(
            got[0].1.iter().map(|e| e.value).collect::<Vec<_>>(),
            [3.0, 9.0]
        );
        store.resize(0);
        assert!(store.select(i64::MIN, i64::MAX, &all()).is_empty());
        assert_eq!(store.add(&a, ex("10", 10.0, 10)), Err(Refused::Disabled));
    }

    #[test]
    fn an_exemplar_without_its_own_timestamp_exposed_again_is_kept_once() {
        let store = ExemplarStore::new(10);
        let a = series("a");
        let scraped = |ts| Exemplar {
            has_timestamp: false,
            ..ex("1", 1.0, ts)
        };
        assert_eq!(store.add(&a, scraped(10)), Ok(()));
        assert_eq!(store.add(&a, scraped(20)), Err(Refused::Duplicate));
        let long = "x".repeat(121);
        assert_eq!(store.add(&a, ex(&long, 2.0, 30)), Err(Refused::LabelLength));
    }
}
