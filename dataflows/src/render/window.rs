//! Retained selector windows, shared by every rule a worker owns.
//!
//! PromQL: the selectors themselves, instant and range
//! ```promql
//! x{job="node"}          # last sample in (t - lookback, t]
//! x{job="node"}[5m]      # samples in (t - 5m, t]
//! ```
//! One window per distinct selector (keyed by its canonical matcher text): rules that
//! read the same selector on this worker share one copy of its samples, kept for the
//! union of what they read. Samples are retired once no rule can read them any more:
//! below the earliest next evaluation time minus the window's reach, and for plain
//! instant selectors below the newest sample at or before the next evaluation (one
//! sample per idle series instead of a lookback delta of them). Series are found by
//! [`LabelsKey`] (labels with their hash, so incremental rules look a series up
//! without comparing label sets) and listed in label order. Implements the
//! reference evaluator's [`SeriesSource`], so a plan evaluates over exactly the
//! retained samples.
//!
//! **Native histograms.** A histogram sample sits among its series' samples as the
//! reference evaluator carries it, a handle ([`native`]: a signalling NaN naming
//! [`SOURCE`] slot `i`), and the histogram itself in the store's
//! [`HistogramSlots`] (an `Arc` per slot, slots reused once their sample is retired or
//! replaced), which [`SeriesSource::histogram`] resolves. So selection, `@`/`offset`,
//! subqueries and retirement treat both kinds alike, the evaluator gives histograms
//! their meaning, and a float-only store pays one flag test where a sample leaves.
//! A window that has held a histogram says so for good
//! ([`WindowStore::holds_histograms`]): the incremental path then computes its series
//! through the reference's histogram-aware functions, and keeps the histograms of its
//! own elements in [`HistogramSlots`] too.
//!
//! [`native`]: crate::promql::eval::native

use crate::histogram::FloatHistogram;
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::eval::native::{handle, parse_handle, SOURCE};
use crate::promql::eval::{Selected, SeriesSource};
use crate::render::extent::{selector_key, Extent};
use crate::render::rule::RuleId;
use crate::sample::{HistogramPoint, Point};
use crate::selector::{MatchKind, Selector};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// What one rule reads through one selector.
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    /// Reads relative to the evaluation time.
    pub relative: Option<Extent>,
    /// Reads at fixed times.
    pub absolute: Option<Extent>,
    /// The relative reads need only the newest sample at or before the window's end.
    pub latest_only: bool,
}

/// A label set with its [`Labels::hash`], computed once: as a map key it hashes eight
/// bytes, and an equal key is usually the same `Arc` (no label compare). Ordered by
/// labels (the reference's series order).
#[derive(Clone, Debug)]
pub struct LabelsKey {
    /// [`Labels::hash`] of `labels`.
    pub hash: u64,
    /// The labels.
    pub labels: Arc<Labels>,
}

impl LabelsKey {
    /// The key of `labels` (hashes them).
    pub fn new(labels: Arc<Labels>) -> LabelsKey {
        LabelsKey {
            hash: Labels::hash(&labels),
            labels,
        }
    }
}

impl PartialEq for LabelsKey {
    fn eq(&self, other: &LabelsKey) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.labels, &other.labels) || self.labels == other.labels)
    }
}

impl Eq for LabelsKey {}

impl Hash for LabelsKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for LabelsKey {
    fn partial_cmp(&self, other: &LabelsKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LabelsKey {
    fn cmp(&self, other: &LabelsKey) -> std::cmp::Ordering {
        self.labels.cmp(&other.labels)
    }
}

/// Hashes an already hashed key (a `u64`) to itself.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map by [`LabelsKey`] (or by a `u64` hash).
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Distinct lists, each stored once and named by its index: where many series share
/// a few lists (of destinations, of windows), a series keeps a `u32`, not a list.
pub struct DistinctLists<T> {
    lists: Vec<Vec<T>>,
    index: HashMap<Vec<T>, u32>,
}

impl<T> Default for DistinctLists<T> {
    fn default() -> Self {
        DistinctLists {
            lists: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> DistinctLists<T> {
    /// The index of `list`, stored if new.
    pub fn intern(&mut self, list: Vec<T>) -> u32 {
        if let Some(&at) = self.index.get(&list) {
            return at;
        }
        let at = self.lists.len() as u32;
        self.index.insert(list.clone(), at);
        self.lists.push(list);
        at
    }

    /// The list of index `at` (one [`DistinctLists::intern`] returned).
    pub fn get(&self, at: u32) -> &[T] {
        &self.lists[at as usize]
    }

    /// Forgets every list.
    pub fn clear(&mut self) {
        self.lists.clear();
        self.index.clear();
    }
}

/// One series' retained samples, sorted by timestamp, one per timestamp; and the
/// start timestamps of those that have one, as `(timestamp, start)` (sorted; empty
/// for a series without any).
#[derive(Default)]
struct Points(Vec<(i64, f64)>, Vec<(i64, i64)>);

impl Points {
    /// Adds (or replaces) the sample at `ts` with start timestamp `start` (0: none);
    /// in-order arrival is a push. Returns the value replaced, if any.
    fn insert(&mut self, ts: i64, value: f64, start: i64) -> Option<f64> {
        let mut replaced = None;
        match self.0.last() {
            Some(&(last, _)) if last >= ts => match self.0.binary_search_by_key(&ts, |p| p.0) {
                Ok(i) => replaced = Some(std::mem::replace(&mut self.0[i].1, value)),
                Err(i) => self.0.insert(i, (ts, value)),
            },
            _ => self.0.push((ts, value)),
        }
        if start != 0 || !self.1.is_empty() {
            match self.1.binary_search_by_key(&ts, |p| p.0) {
                Ok(i) if start == 0 => drop(self.1.remove(i)),
                Ok(i) => self.1[i].1 = start,
                Err(_) if start == 0 => {}
                Err(i) => self.1.insert(i, (ts, start)),
            }
        }
        replaced
    }

    /// The samples with `start <= ts <= end`.
    fn range(&self, start: i64, end: i64) -> &[(i64, f64)] {
        within(&self.0, start, end)
    }
}

/// The part of time-sorted `points` with `start <= ts <= end`.
pub fn within(points: &[(i64, f64)], start: i64, end: i64) -> &[(i64, f64)] {
    let lo = points.partition_point(|p| p.0 < start);
    let hi = points.partition_point(|p| p.0 <= end);
    &points[lo..hi.max(lo)]
}

/// The native histograms the windows of one store hold, by slot: a window's histogram
/// sample is the handle `(SOURCE, slot)`. Slots of retired samples are reused, so the
/// slots track the histograms held, not every one that came.
#[derive(Default)]
pub struct HistogramSlots {
    slots: Vec<Option<Arc<FloatHistogram>>>,
    free: Vec<u32>,
}

impl HistogramSlots {
    /// Keeps `h` in a slot; its handle.
    pub(crate) fn keep(&mut self, h: Arc<FloatHistogram>) -> f64 {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(h);
                slot
            }
            None => {
                self.slots.push(Some(h));
                (self.slots.len() - 1) as u32
            }
        };
        handle(SOURCE, slot)
    }

    /// Frees the slot `value` names, if it is a histogram handle (a float: nothing).
    pub(crate) fn release(&mut self, value: f64) {
        if let Some((SOURCE, slot)) = parse_handle(value) {
            if let Some(held) = self.slots.get_mut(slot as usize) {
                if held.take().is_some() {
                    self.free.push(slot);
                }
            }
        }
    }

    /// The histogram in `slot`.
    pub(crate) fn get(&self, slot: u32) -> Option<Arc<FloatHistogram>> {
        self.slots.get(slot as usize).cloned().flatten()
    }

    /// The histogram `value` names, if it is a handle of one of these slots.
    pub(crate) fn of(&self, value: f64) -> Option<Arc<FloatHistogram>> {
        match parse_handle(value)? {
            (SOURCE, slot) => self.get(slot),
            _ => None,
        }
    }

    /// Whether no histogram is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held() == 0
    }

    /// Histograms held.
    fn held(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// The retained samples of one selector, by series.
pub struct Window {
    /// The selector's key.
    key: String,
    selector: Selector,
    /// Each series' samples.
    series: KeyMap<LabelsKey, Points>,
    /// The series in label order, with their hashes.
    order: BTreeMap<Arc<Labels>, u64>,
    users: BTreeMap<RuleId, Reach>,
    /// Whether a histogram sample has ever been added (see the module doc).
    holds_histograms: bool,
}

impl Window {
    /// The retained samples of one series (sorted; empty if none).
    pub fn points(&self, key: &LabelsKey) -> &[(i64, f64)] {
        self.series.get(key).map_or(&[], |p| p.0.as_slice())
    }

    /// The start timestamps of one series' retained samples, as `(timestamp, start)`
    /// for those that have one (sorted).
    pub fn start_times(&self, key: &LabelsKey) -> &[(i64, i64)] {
        self.series.get(key).map_or(&[], |p| p.1.as_slice())
    }

    /// The samples of series `labels` (whose [`Labels::hash`] is `hash`), created
    /// empty if new. A known series costs one hash-map lookup (usually the same
    /// `Arc`, so no label compare); only a new one is placed in label order.
    fn entry(&mut self, labels: &Arc<Labels>, hash: u64) -> &mut Points {
        debug_assert_eq!(
            hash,
            Labels::hash(labels),
            "a series id is its labels' hash"
        );
        let key = LabelsKey {
            hash,
            labels: labels.clone(),
        };
        match self.series.entry(key) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                self.order.insert(labels.clone(), hash);
                new.insert(Points::default())
            }
        }
    }

    /// Every series with its key and samples, in label order.
    fn in_order(&self) -> impl Iterator<Item = (LabelsKey, &Points)> {
        self.order.iter().filter_map(|(labels, &hash)| {
            let key = LabelsKey {
                hash,
                labels: labels.clone(),
            };
            let points = self.series.get(&key)?;
            Some((key, points))
        })
    }
}

/// The windows of one worker.
#[derive(Default)]
pub struct WindowStore {
    /// The windows, in slots that change only when the set of windows does.
    slots: Vec<Window>,
    /// Each window's slot by its key.
    index: HashMap<String, usize>,
    /// Slots of windows by the metric name their selector requires, if any.
    by_name: HashMap<String, Vec<usize>>,
    /// Slots of windows whose selector requires no fixed name.
    other: Vec<usize>,
    /// Each series' labels and the windows its samples go to, by series id, until the
    /// set of windows changes: a sample costs one map lookup, not a catalog lookup and
    /// a selector match against every window of its name (on the compare bench's
    /// interval rules at 100k series those were a quarter of the rules' CPU).
    routes: KeyMap<u64, (Arc<Labels>, u32)>,
    /// The distinct lists of slots `routes` points into.
    lists: DistinctLists<usize>,
    /// Series held over all windows at the last retirement: `routes` is emptied once
    /// it holds more than twice as many (series that left do not pile up).
    held_series: usize,
    /// Whether any sample with a start timestamp was inserted (else no lookup).
    has_start_times: bool,
    /// The histograms the windows' handles name.
    histograms: HistogramSlots,
    /// Whether any histogram sample was inserted (else no handle is looked for where
    /// samples leave, and no result is searched for handles).
    has_histograms: bool,
}

fn required_name(sel: &Selector) -> Option<&str> {
    sel.matchers.iter().find_map(|m| match &m.kind {
        MatchKind::Equal(v) if m.name == METRIC_NAME => Some(v.as_str()),
        _ => None,
    })
}

impl WindowStore {
    fn get(&self, key: &str) -> Option<&Window> {
        self.index.get(key).map(|&slot| &self.slots[slot])
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Window> {
        self.index.get(key).map(|&slot| &mut self.slots[slot])
    }

    /// After the set of windows changed: slots by name, and no cached routes.
    fn reindex(&mut self) {
        self.index.clear();
        self.by_name.clear();
        self.other.clear();
        for (slot, w) in self.slots.iter().enumerate() {
            self.index.insert(w.key.clone(), slot);
            match required_name(&w.selector) {
                Some(n) => self.by_name.entry(n.to_string()).or_default().push(slot),
                None => self.other.push(slot),
            }
        }
        self.forget_routes();
    }

    fn forget_routes(&mut self) {
        self.routes.clear();
        self.lists.clear();
    }

    /// Records that `rule` reads `selector` (keyed `key`) with `reach`.
    pub fn add_user(&mut self, key: &str, selector: &Selector, rule: RuleId, reach: Reach) {
        if !self.index.contains_key(key) {
            self.slots.push(Window {
                key: key.to_string(),
                selector: selector.clone(),
                series: KeyMap::default(),
                order: BTreeMap::new(),
                users: BTreeMap::new(),
                holds_histograms: false,
            });
            self.reindex();
        }
        if let Some(w) = self.get_mut(key) {
            w.users.insert(rule, reach);
        }
    }

    /// Forgets `rule`; windows nobody reads are dropped.
    pub fn remove_user(&mut self, rule: RuleId) {
        let before = self.slots.len();
        let histograms = &mut self.histograms;
        self.slots.retain_mut(|w| {
            w.users.remove(&rule);
            let keep = !w.users.is_empty();
            if !keep && w.holds_histograms {
                for points in w.series.values() {
                    points.0.iter().for_each(|p| histograms.release(p.1));
                }
            }
            keep
        });
        if self.slots.len() != before {
            self.reindex();
        }
    }

    /// Adds seed points to the window `key` (idempotent per timestamp): floats and
    /// native histograms.
    pub fn seed(
        &mut self,
        key: &str,
        labels: Arc<Labels>,
        points: &[(i64, f64)],
        histograms: &[(i64, Arc<FloatHistogram>)],
    ) {
        let Some(&slot) = self.index.get(key) else {
            return;
        };
        let hash = Labels::hash(&labels);
        let w = &mut self.slots[slot];
        let slots = &mut self.histograms;
        if !histograms.is_empty() {
            w.holds_histograms = true;
            self.has_histograms = true;
        }
        let series = w.entry(&labels, hash);
        let kept: Vec<(i64, f64)> = histograms
            .iter()
            .map(|(ts, h)| (*ts, slots.keep(h.clone())))
            .collect();
        for &(ts, v) in points.iter().chain(&kept) {
            if let Some(old) = series.insert(ts, v, 0) {
                slots.release(old);
            }
        }
    }

    /// Whether window `key` has ever held a native histogram (see the module doc).
    pub fn holds_histograms(&self, key: &str) -> bool {
        self.has_histograms && self.get(key).is_some_and(|w| w.holds_histograms)
    }

    /// Whether any window of the store has ever held a native histogram: else no value
    /// an evaluation over it gives names one.
    pub fn has_histograms(&self) -> bool {
        self.has_histograms
    }

    /// The rules reading window `key`.
    pub fn users(&self, key: &str) -> impl Iterator<Item = RuleId> + '_ {
        self.get(key)
            .into_iter()
            .flat_map(|w| w.users.keys().copied())
    }

    /// Every series window `key` holds, in label order, with all its retained samples
    /// (sorted).
    pub fn series(&self, key: &str) -> impl Iterator<Item = (LabelsKey, &[(i64, f64)])> {
        self.get(key)
            .into_iter()
            .flat_map(|w| w.in_order().map(|(k, p)| (k, p.0.as_slice())))
    }

    /// The window of selector key `key`, if some rule reads it.
    pub fn window(&self, key: &str) -> Option<&Window> {
        self.get(key)
    }

    /// Adds a sample to every window whose selector matches its series (whose labels
    /// `labels` gives, asked only for a series not seen since the windows last
    /// changed; `None`: unknown, the sample is dropped); calls `matched` with each such
    /// window's readers, the window's key, the series' labels and its id (its
    /// [`Labels::hash`]).
    pub fn insert(
        &mut self,
        sample: &Point,
        labels: impl FnOnce() -> Option<Arc<Labels>>,
        matched: impl FnMut(RuleId, Reach, &str, &Arc<Labels>, u64),
    ) {
        self.has_start_times |= sample.start_ms != 0;
        let value = sample.value;
        let (id, ts, start) = (sample.series_id, sample.timestamp_ms, sample.start_ms);
        self.insert_value::<false>(id, ts, start, labels, |_| value, matched);
    }

    /// [`WindowStore::insert`] for a native-histogram sample: each window reading its
    /// series keeps the histogram in a slot of its own and the slot's handle among the
    /// series' samples.
    pub fn insert_histogram(
        &mut self,
        sample: &HistogramPoint,
        labels: impl FnOnce() -> Option<Arc<Labels>>,
        matched: impl FnMut(RuleId, Reach, &str, &Arc<Labels>, u64),
    ) {
        self.has_histograms = true;
        self.has_start_times |= sample.start_ms != 0;
        let histogram = &sample.histogram;
        self.insert_value::<true>(
            sample.series_id,
            sample.timestamp_ms,
            sample.start_ms,
            labels,
            |slots| slots.keep(histogram.clone()),
            matched,
        );
    }

    /// Adds the sample `(id, ts, value(slots), start)` to every window reading series
    /// `id`; see [`WindowStore::insert`]. `value` is asked once per window (a histogram
    /// takes a slot per window). `HISTOGRAM`: the value is a histogram's handle (for a
    /// float, the histogram bookkeeping compiles away but for a replaced sample).
    fn insert_value<const HISTOGRAM: bool>(
        &mut self,
        series_id: u64,
        ts: i64,
        start: i64,
        labels: impl FnOnce() -> Option<Arc<Labels>>,
        mut value: impl FnMut(&mut HistogramSlots) -> f64,
        mut matched: impl FnMut(RuleId, Reach, &str, &Arc<Labels>, u64),
    ) {
        if self.routes.len() > 2 * self.held_series + 1024 {
            self.routes.clear();
        }
        let route = match self.routes.entry(series_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                let Some(labels) = labels() else { return };
                let named = self.by_name.get(labels.metric_name());
                let to: Vec<usize> = named
                    .into_iter()
                    .flatten()
                    .chain(&self.other)
                    .copied()
                    .filter(|&slot| self.slots[slot].selector.matches(&labels))
                    .collect();
                new.insert((labels, self.lists.intern(to)))
            }
        };
        let (labels, list) = (&route.0, route.1);
        for &slot in self.lists.get(list) {
            let w = &mut self.slots[slot];
            let v = value(&mut self.histograms);
            if HISTOGRAM {
                w.holds_histograms = true;
            }
            let points = w.entry(labels, series_id);
            if let Some(old) = points.insert(ts, v, start) {
                if self.has_histograms {
                    self.histograms.release(old);
                }
            }
            for (rule, reach) in &w.users {
                matched(*rule, *reach, &w.key, labels, series_id);
            }
        }
    }

    /// Drops samples no reader can read again: `next(rule)` is the earliest time the
    /// rule may still be evaluated at (`None`: never again).
    pub fn retire(&mut self, next: impl Fn(RuleId) -> Option<i64>) {
        let mut held = 0;
        let histograms = &mut self.histograms;
        for w in self.slots.iter_mut() {
            let holds_histograms = w.holds_histograms;
            // Relative readers as (window start, window end, latest only).
            let mut readers: Vec<(i64, i64, bool)> = Vec::new();
            let mut fixed: Vec<(i64, i64)> = Vec::new();
            for (rule, reach) in &w.users {
                let Some(t) = next(*rule) else { continue };
                if let Some(Extent::Relative { back, fwd }) = reach.relative {
                    readers.push((
                        t.saturating_sub(back),
                        t.saturating_add(fwd),
                        reach.latest_only,
                    ));
                }
                if let Some(Extent::Absolute { lo, hi }) = reach.absolute {
                    fixed.push((lo, hi));
                }
            }
            w.series.retain(|_, points| {
                // A future evaluation reads at or after `start`; one that needs only the
                // newest sample before `end` never reads below that sample (later
                // arrivals are newer still).
                let keep_from = readers
                    .iter()
                    .map(|&(start, end, latest_only)| {
                        let newest = latest_only
                            .then(|| points.range(i64::MIN, end).last().map(|(ts, _)| *ts))
                            .flatten();
                        newest.map_or(start, |n| n.max(start))
                    })
                    .min()
                    .unwrap_or(i64::MAX);
                let old = points.0.partition_point(|p| p.0 < keep_from);
                if fixed.is_empty() {
                    if holds_histograms {
                        points.0[..old].iter().for_each(|p| histograms.release(p.1));
                    }
                    points.0.drain(..old);
                } else if old > 0 {
                    points.0.retain(|&(ts, v)| {
                        let keep =
                            ts >= keep_from || fixed.iter().any(|&(lo, hi)| ts >= lo && ts <= hi);
                        if !keep && holds_histograms {
                            histograms.release(v);
                        }
                        keep
                    });
                }
                if !points.1.is_empty() {
                    let kept = &points.0;
                    points
                        .1
                        .retain(|s| kept.binary_search_by_key(&s.0, |p| p.0).is_ok());
                }
                !points.0.is_empty()
            });
            if w.order.len() != w.series.len() {
                let series = &w.series;
                w.order.retain(|labels, &mut hash| {
                    series.contains_key(&LabelsKey {
                        hash,
                        labels: labels.clone(),
                    })
                });
            }
            held += w.series.len();
        }
        self.held_series = held;
    }

    /// Native histograms held, over all windows (for tests).
    pub fn histograms_held(&self) -> usize {
        self.histograms.held()
    }

    /// Samples held, over all windows (for tests and stats).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .map(|w| w.series.values().map(|p| p.0.len()).sum::<usize>())
            .sum()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SeriesSource for WindowStore {
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        if start_ms > end_ms {
            return Vec::new();
        }
        let Some(w) = self.get(&selector_key(matchers)) else {
            return Vec::new();
        };
        w.in_order()
            .map(|(key, points)| (key.labels, points.range(start_ms, end_ms).to_vec()))
            .filter(|(_, points)| !points.is_empty())
            .collect()
    }

    fn start_times(
        &self,
        matchers: &Selector,
        labels: &Labels,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(i64, i64)> {
        if !self.has_start_times {
            return Vec::new();
        }
        let Some(w) = self.get(&selector_key(matchers)) else {
            return Vec::new();
        };
        let key = LabelsKey::new(Arc::new(labels.clone()));
        let starts = w.start_times(&key);
        let lo = starts.partition_point(|s| s.0 < start_ms);
        let hi = starts.partition_point(|s| s.0 <= end_ms).max(lo);
        starts[lo..hi].to_vec()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.histograms.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::LabelMatcher;

    fn histogram(count: f64) -> Arc<FloatHistogram> {
        Arc::new(FloatHistogram {
            count,
            sum: count,
            ..FloatHistogram::default()
        })
    }

    /// Histogram samples sit among the floats as handles the store resolves; a slot is
    /// freed when its sample is replaced, retired or its window dropped, and reused; a
    /// float-only window never says it holds histograms.
    #[test]
    fn histograms_are_held_in_slots_freed_as_their_samples_go() {
        let selector = |name: &str| Selector {
            matchers: vec![LabelMatcher::new(METRIC_NAME, "=", name).unwrap()],
        };
        let reach = Reach {
            relative: Some(Extent::Relative {
                back: 60_000,
                fwd: 0,
            }),
            absolute: None,
            latest_only: false,
        };
        let mut store = WindowStore::default();
        let (h, x) = (selector("h"), selector("x"));
        let (hk, xk) = (selector_key(&h), selector_key(&x));
        store.add_user(&hk, &h, RuleId(1), reach);
        store.add_user(&xk, &x, RuleId(2), reach);
        let hl = Arc::new(Labels::from_strs(&[(METRIC_NAME, "h")]));
        let xl = Arc::new(Labels::from_strs(&[(METRIC_NAME, "x")]));
        for k in 0..10 {
            let ts = k * 10_000;
            let sample = HistogramPoint {
                series_id: Labels::hash(&hl),
                timestamp_ms: ts,
                histogram: histogram(k as f64),
                start_ms: 0,
            };
            store.insert_histogram(&sample, || Some(hl.clone()), |_, _, _, _, _| {});
            let point = Point {
                series_id: Labels::hash(&xl),
                timestamp_ms: ts,
                value: k as f64,
                start_ms: 0,
            };
            store.insert(&point, || Some(xl.clone()), |_, _, _, _, _| {});
        }
        assert_eq!(store.histograms_held(), 10);
        assert!(store.holds_histograms(&hk) && !store.holds_histograms(&xk));
        let counts = |store: &WindowStore| -> Vec<f64> {
            let selected = store.select(&h, i64::MIN, i64::MAX);
            selected[0]
                .1
                .iter()
                .map(|&(_, v)| store.histogram(parse_handle(v).unwrap().1).unwrap().count)
                .collect()
        };
        assert_eq!(counts(&store), (0..10).map(f64::from).collect::<Vec<_>>());
        // A sample replaced at its timestamp frees its slot.
        let again = HistogramPoint {
            series_id: Labels::hash(&hl),
            timestamp_ms: 90_000,
            histogram: histogram(99.0),
            start_ms: 0,
        };
        store.insert_histogram(&again, || Some(hl.clone()), |_, _, _, _, _| {});
        assert_eq!(store.histograms_held(), 10);
        assert_eq!(counts(&store).last(), Some(&99.0));
        // Retired below 100s - 60s: four samples left in each window.
        store.retire(|_| Some(100_000));
        assert_eq!(store.histograms_held(), 6);
        assert_eq!(counts(&store), vec![4.0, 5.0, 6.0, 7.0, 8.0, 99.0]);
        assert_eq!(store.len(), 12);
        // New samples reuse the freed slots.
        let next = HistogramPoint {
            series_id: Labels::hash(&hl),
            timestamp_ms: 100_000,
            histogram: histogram(100.0),
            start_ms: 0,
        };
        let slots = store.histograms.slots.len();
        store.insert_histogram(&next, || Some(hl.clone()), |_, _, _, _, _| {});
        assert_eq!(store.histograms.slots.len(), slots);
        assert_eq!(store.histograms_held(), 7);
        // Dropping the window frees the rest.
        store.remove_user(RuleId(1));
        assert_eq!(store.histograms_held(), 0);
        assert_eq!(store.len(), 6, "the float window's samples");
    }
}
