//! The in-memory head: the recent samples of every series, appended in time order.
//!
//! Contract: [`Head::append`] keeps samples per series in timestamp order, refusing
//! (and counting) samples older than the newest one already held for that series, and
//! samples at the newest timestamp with another value (`ErrDuplicateSampleForTimestamp`,
//! counted apart), as Prometheus's head does; an exact duplicate of the newest sample
//! (same timestamp, same value bits; for histograms an equal histogram: federation
//! with honored timestamps, a retried remote write) is dropped silently, neither
//! stored again nor counted, as Prometheus's `appendable` lets it through and its
//! commit drops it. The zero sample of a
//! start ([`dataflows::is_start_zero`]) is refused the same way but not counted, as
//! Prometheus's scrape loop ignores `AppendSTZeroSample`'s refusals. [`Head::select`] returns
//! the samples of matching series in a closed time range. [`Head::truncate_before`] drops
//! what has left the retention window, and series with nothing left.
//!
//! Every series carries a small number, its *ref*, by which the write-ahead log names
//! it. A writer that appends the same series again and again (a scrape loop, through its
//! scrape cache) keeps a [`SeriesRef`] per series — Prometheus's `storage.SeriesRef`
//! handed back by `Appender.Append` — and passes it back with the next samples, so a
//! known series is appended without a lookup in the head's maps; a handle of a series
//! that truncation has since removed is noticed (one flag) and resolved again by id.
//! [`Head::append_logged`] hands the new series and the accepted samples of a batch
//! to a logging callback while it still holds the write lock, so no reader sees a
//! sample before it is logged; [`Head::replay_series`] and [`Head::replay_samples`]
//! rebuild the head from the log with the same refs.
//!
//! Native-histogram samples ([`Head::append_histograms_logged`], logged to the WAL
//! the same way, replayed by [`Head::replay_histograms`]) are kept beside the float
//! chunks, in a side map by series id ([`super::histogram_chunk`]) that only series
//! with histograms have: a float series, its append and its selection carry nothing
//! for them. A series may hold both (a histogram series' stale markers are float
//! samples). [`Head::select`] returns floats only; [`Head::select_histograms`] the
//! histograms. Truncation drops both and keeps a series while either remains;
//! [`Head::encode_range`] hands both to a block.
//! Deletion (`delete_logged`, its tombstones replayed) deletes both.
//!
//! Selection goes through the label index ([`super::postings`], keyed by ref), so it
//! costs what it selects. Readers hold the head's lock only to resolve the matchers
//! and take the matching series out (reference-counted); they read samples under each
//! series' own lock, so a large read does not hold appends back, and an append waits
//! for a reader only while it reads one series.

use super::block::BlockSeries;
use super::chunk::{EncodedChunk, SeriesChunks};
use super::histogram_chunk::HistogramChunks;
use super::postings::Postings;
use dataflows::histogram::{CounterResetHint, FloatHistogram};
use dataflows::render::window::KeyMap;
use dataflows::{Labels, Sample, SampleBatch, Selector};
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

struct MemSeries {
    /// The series id ([`Sample::series_id`]) it is held under.
    id: u64,
    labels: Arc<Labels>,
    /// Changes only when the log's replay names the series anew, under the write lock.
    wal_ref: AtomicU32,
    /// The newest timestamp held ([`NO_SAMPLE`] if none), so an append decides on a
    /// sample without locking the series. Written only under the head's write lock, or
    /// under its read lock during replay (when nothing appends), together with
    /// `samples`.
    newest: AtomicI64,
    samples: Mutex<SeriesChunks>,
    /// Set (under the head's write lock) when truncation drops the series: a
    /// [`SeriesRef`] to it is then stale.
    removed: AtomicBool,
}

/// A handle on a series of the head, as [`Head::append_logged`] hands it out: the
/// series itself, so appending through it needs no lookup. Stays valid until
/// truncation removes the series; a stale handle is resolved again by series id when it
/// is passed back, so it is never wrong, only slower.
#[derive(Clone)]
pub struct SeriesRef(Arc<MemSeries>);

impl SeriesRef {
    /// The series id ([`Sample::series_id`]) of the series.
    pub fn series_id(&self) -> u64 {
        self.0.id
    }

    /// The series' labels.
    pub fn labels(&self) -> &Arc<Labels> {
        &self.0.labels
    }

    /// Whether the series is still held (read under the head's write lock, where it
    /// changes).
    fn is_held(&self) -> bool {
        !self.0.removed.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for SeriesRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeriesRef({:x})", self.0.id)
    }
}

/// [`MemSeries::newest`] of a series without samples. A sample at `i64::MIN` itself is
/// refused as out of order, which no scrape or rule produces.
const NO_SAMPLE: i64 = i64::MIN;

impl MemSeries {
    fn new(id: u64, wal_ref: u32, labels: Arc<Labels>) -> Arc<MemSeries> {
        Arc::new(MemSeries {
            id,
            labels,
            wal_ref: AtomicU32::new(wal_ref),
            newest: AtomicI64::new(NO_SAMPLE),
            samples: Mutex::new(SeriesChunks::new()),
            removed: AtomicBool::new(false),
        })
    }

    fn wal_ref(&self) -> u32 {
        self.wal_ref.load(Ordering::Relaxed)
    }

    fn newest(&self) -> i64 {
        self.newest.load(Ordering::Relaxed)
    }

    /// Sets `newest` from the samples held (after a deletion, or to undo an append).
    fn reset_newest(&self, samples: &SeriesChunks) {
        self.newest
            .store(samples.last_ts().unwrap_or(NO_SAMPLE), Ordering::Relaxed);
    }
}

/// What one append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples stored.
    pub appended: usize,
    /// Series seen for the first time.
    pub new_series: usize,
    /// Samples refused: older than the series' newest sample.
    pub out_of_order: usize,
    /// Samples refused: at the series' newest timestamp with another value (for a
    /// histogram: another histogram), Prometheus's `ErrDuplicateSampleForTimestamp`.
    /// Exact duplicates are dropped without being counted anywhere.
    pub duplicate: usize,
    /// Samples refused: older than the bound set by [`Head::refuse_before`] (their time
    /// range is in a block already).
    pub out_of_bounds: usize,
}

/// Why the head would refuse a sample, in the words of Prometheus's storage errors
/// (`storage.ErrOutOfBounds`, `ErrOutOfOrderSample`, `ErrDuplicateSampleForTimestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Older than [`Head::refuse_before`]'s bound.
    #[error("out of bounds")]
    OutOfBounds,
    /// Older than the series' newest sample.
    #[error("out of order sample")]
    OutOfOrder,
    /// At the series' newest timestamp with another value.
    #[error("duplicate sample for timestamp")]
    Duplicate,
}

/// The samples an append stored, as [`Head::append_logged`] hands them on (under the
/// head's write lock).
pub struct Applied<'a> {
    /// Their indices in the batch, ascending.
    pub at: &'a [usize],
    /// The batch appended.
    pub batch: &'a SampleBatch,
    refs: &'a [Option<SeriesRef>],
    by_id: &'a SeriesTable<ById>,
}

impl Applied<'_> {
    /// The labels of the series of the batch's sample `at` (one the head holds, as
    /// every stored sample's series is): from its handle, else looked up by id.
    pub fn labels(&self, at: usize) -> Option<&Arc<Labels>> {
        match self.refs.get(at) {
            Some(Some(r)) => Some(&r.0.labels),
            _ => self.by_id.get(self.batch.series_ids[at]).map(|s| &s.labels),
        }
    }
}

/// The samples of one series in a time range: its labels and `(timestamp, sample)`.
pub type SeriesInRange<T> = (Arc<Labels>, Vec<(i64, T)>);

/// The samples of one series in a time range, as [`Head::select`] returns them.
pub type SeriesSamplesInRange = SeriesInRange<f64>;

/// How a [`SeriesTable`] finds its series: by a key each series carries.
trait SeriesKey {
    type Key: Copy + Eq;
    fn key(series: &MemSeries) -> Self::Key;
    fn hash(key: Self::Key) -> u64;
}

/// By series id ([`Labels::hash`], already a hash: not hashed again).
struct ById;

impl SeriesKey for ById {
    type Key = u64;
    fn key(series: &MemSeries) -> u64 {
        series.id
    }
    fn hash(id: u64) -> u64 {
        id
    }
}

/// By ref (a counter: spread by a multiplicative hash).
struct ByRef;

impl SeriesKey for ByRef {
    type Key = u32;
    fn key(series: &MemSeries) -> u32 {
        series.wal_ref()
    }
    fn hash(wal_ref: u32) -> u64 {
        u64::from(wal_ref).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Series by a key they carry: a table of the series' pointers (8 bytes a slot), not
/// of `(key, pointer)` pairs (16), the key read from the series itself. Every series
/// is in two of them, so this is about 20 bytes less per series at the tables' load.
struct SeriesTable<K: SeriesKey> {
    table: HashTable<Arc<MemSeries>>,
    by: std::marker::PhantomData<K>,
}

impl<K: SeriesKey> Default for SeriesTable<K> {
    fn default() -> Self {
        SeriesTable {
            table: HashTable::new(),
            by: std::marker::PhantomData,
        }
    }
}

impl<K: SeriesKey> SeriesTable<K> {
    fn get(&self, key: K::Key) -> Option<&Arc<MemSeries>> {
        self.table.find(K::hash(key), |s| K::key(s) == key)
    }

    fn contains(&self, key: K::Key) -> bool {
        self.get(key).is_some()
    }

    /// Inserts `series`, replacing the one held under its key.
    fn insert(&mut self, series: Arc<MemSeries>) {
        let key = K::key(&series);
        match self
            .table
            .entry(K::hash(key), |s| K::key(s) == key, |s| K::hash(K::key(s)))
        {
            hashbrown::hash_table::Entry::Occupied(mut held) => *held.get_mut() = series,
            hashbrown::hash_table::Entry::Vacant(place) => {
                place.insert(series);
            }
        }
    }

    fn remove(&mut self, key: K::Key) {
        if let Ok(held) = self.table.find_entry(K::hash(key), |s| K::key(s) == key) {
            held.remove();
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn values(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.table.iter()
    }
}

/// The native-histogram samples of one series in a time range
/// ([`Head::select_histograms`]).
pub type SeriesHistogramsInRange = SeriesInRange<FloatHistogram>;

/// A native-histogram sample an append stored, as [`Head::append_histograms_logged`]
/// hands it on: `(series id, labels, timestamp, histogram)`.
pub type StoredHistogram<'a> = (u64, &'a Arc<Labels>, i64, &'a FloatHistogram);

/// One native-histogram sample to append ([`Head::append_histograms_logged`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    /// The series id ([`Labels::hash`] of `labels`).
    pub series_id: u64,
    pub labels: Arc<Labels>,
    pub timestamp_ms: i64,
    /// Its counter-reset hint is kept only when it says `Gauge`; otherwise the head
    /// sets it against the series' previous histogram (see the module docs).
    pub histogram: FloatHistogram,
    /// As [`dataflows::Sample::start_ms`] (0: none); equal to `timestamp_ms` in the
    /// zero sample of a start ([`HistogramSample::start_zero`]).
    pub start_ms: i64,
}

impl HistogramSample {
    /// The zero sample of this sample's series at its start `start_ms`
    /// ([`dataflows::is_start_zero`]): an empty histogram with the sample's schema,
    /// zero threshold and custom bounds, as Prometheus's `AppendHistogramSTZeroSample`
    /// (tsdb/head_append.go) writes it; a gauge histogram's stays a gauge.
    pub fn start_zero(&self, start_ms: i64) -> HistogramSample {
        let h = &self.histogram;
        let counter_reset_hint = match h.counter_reset_hint {
            CounterResetHint::Gauge => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        };
        HistogramSample {
            series_id: self.series_id,
            labels: self.labels.clone(),
            timestamp_ms: start_ms,
            histogram: FloatHistogram {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                custom_values: h.custom_values.clone(),
                counter_reset_hint,
                ..FloatHistogram::default()
            },
            start_ms,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Series id → series.
    by_id: SeriesTable<ById>,
    /// Ref → series. A series' ref changes only in replay, taken out and put back.
    by_ref: SeriesTable<ByRef>,
    /// The label index, by ref.
    postings: Postings,
    next_ref: u32,
    /// Native-histogram samples by series id, only for series that have them: float
    /// series carry nothing for them. Read and written under this lock (histogram
    /// series are few; their reads copy the samples in range out).
    histograms: KeyMap<u64, HistogramChunks>,
}

impl Inner {
    fn insert(&mut self, series: Arc<MemSeries>) {
        let wal_ref = series.wal_ref();
        self.postings.add(wal_ref, &series.labels);
        self.by_id.insert(series.clone());
        self.by_ref.insert(series);
    }

    /// A ref no series holds, from `next` on (refs wrap after 2^32 series, and old
    /// series may still hold small ones); `next` moves past it.
    fn free_ref(&self, next: &mut u32) -> u32 {
        while self.by_ref.contains(*next) {
            *next = next.wrapping_add(1);
        }
        let free = *next;
        *next = next.wrapping_add(1);
        free
    }

    /// The oldest and newest sample times held, from every series (`(MAX, MIN)` if none).
    fn time_bounds(&self) -> (i64, i64) {
        let mut bounds = (i64::MAX, i64::MIN);
        for s in self.by_ref.values() {
            let samples = s.samples.lock();
            if let (Some(first), Some(last)) = (samples.first_ts(), samples.last_ts()) {
                bounds = (bounds.0.min(first), bounds.1.max(last));
            }
        }
        for h in self.histograms.values() {
            if let (Some(first), Some(last)) = (h.first_ts(), h.last_ts()) {
                bounds = (bounds.0.min(first), bounds.1.max(last));
            }
        }
        bounds
    }
}

/// The in-memory head.
pub struct Head {
    inner: RwLock<Inner>,
    /// Samples older than this are refused ([`Head::refuse_before`]).
    min_valid_t: AtomicI64,
    /// The oldest and newest sample times held (`MAX`/`MIN` when empty), kept up to date
    /// under the write lock by appends and truncation, so [`Head::time_range`] needs no
    /// scan; a deletion marks them stale and the next read recomputes them.
    min_t: AtomicI64,
    max_t: AtomicI64,
    bounds_stale: AtomicBool,
    /// Samples held and bytes of their encoding ([`SeriesChunks::encoded_bytes`]),
    /// kept up to date by every change of a series' samples, so the gauges of
    /// `/metrics` read them instead of walking every series (which took 5% of the
    /// process's CPU at 100k series with `/metrics` read twice in 30 s).
    samples_held: AtomicUsize,
    bytes_held: AtomicUsize,
    /// Set once a histogram sample is held (never cleared): readers skip the side map
    /// of histograms until then.
    has_histograms: AtomicBool,
    /// Samples appended by the write paths (not by the WAL replay), floats and
    /// histograms: `prometheus_tsdb_head_samples_appended_total{type}`.
    appended: [AtomicU64; 2],
}

impl Default for Head {
    fn default() -> Head {
        Head {
            inner: RwLock::default(),
            min_valid_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            bounds_stale: AtomicBool::new(false),
            samples_held: AtomicUsize::new(0),
            bytes_held: AtomicUsize::new(0),
            has_histograms: AtomicBool::new(false),
            appended: Default::default(),
        }
    }
}

impl Head {
    /// An empty head.
    pub fn new() -> Head {
        Head::default()
    }

    /// Appends a batch; see the module contract.
    pub fn append(&self, batch: &[Sample]) -> AppendOutcome {
        self.append_columns(&SampleBatch::from_samples(batch))
    }

    /// Appends a batch in columns; see the module contract and
    /// [`Head::append_logged`] for the labels it needs.
    pub fn append_columns(&self, batch: &SampleBatch) -> AppendOutcome {
        let logged = self.append_logged(
            batch,
            &mut [],
            |_, _| Ok::<(), std::convert::Infallible>(()),
            |_| {},
        );
        match logged {
            Ok(outcome) => outcome,
            Err(never) => match never {},
        }
    }

    /// Appends a batch and, before any reader can see it, calls `log` with the series
    /// created (`(ref, labels)`) and the samples accepted (`(ref, ts, value)`). If `log`
    /// fails, nothing of the batch is applied (no series created, no sample stored)
    /// and its error is returned. Once the batch is applied, and still under the lock
    /// (so concurrent appends are seen in the order they were applied), `applied` gets
    /// the samples stored ([`Applied`]: their indices in `batch`, their series' labels).
    ///
    /// `refs` is empty, or holds per sample of `batch` the [`SeriesRef`] of its series
    /// if the caller has one: a held series is then appended to without a lookup. Once
    /// the batch is applied, every entry whose series is held (its own, or created or
    /// found by id here) holds its `SeriesRef`; entries are left as they were if `log`
    /// fails.
    ///
    /// Labels are read only for the series the head creates: from the sample's stale
    /// [`SeriesRef`] if it has one, else from [`SampleBatch::new_series`], which must
    /// therefore announce every series of the batch that has no handle (a sample of a
    /// series the head neither holds nor finds labels for is skipped, a producer's bug).
    ///
    /// Samples older than [`Head::refuse_before`]'s bound are refused here, under the
    /// write lock, so a block cut that raised the bound before reading the head sees
    /// every sample the head accepted below it.
    pub fn append_logged<E>(
        &self,
        batch: &SampleBatch,
        refs: &mut [Option<SeriesRef>],
        log: impl FnOnce(&[(u32, &Labels)], &[(u32, i64, f64)]) -> Result<(), E>,
        applied: impl FnOnce(&Applied<'_>),
    ) -> Result<AppendOutcome, E> {
        let mut outcome = AppendOutcome::default();
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let min_valid = self.min_valid_t.load(Ordering::Acquire);
        let (ids, timestamps, values) = (&batch.series_ids, &batch.timestamps_ms, &batch.values);
        // Decide first, apply after the log succeeded. A sample of a series held is
        // decided on by one lookup and the series' `newest` (moved on as samples are
        // accepted, so a batch holding a series twice is decided in order); series
        // the batch creates are tracked by id until they exist.
        let mut created: Vec<(u64, u32, &Arc<Labels>)> = Vec::new();
        // Per series created: its ref, newest timestamp and value so far.
        let mut creating: KeyMap<u64, (u32, i64, f64)> = KeyMap::default();
        // The batch's announcements by id, built when a series is first created.
        let mut announced: Option<KeyMap<u64, &Arc<Labels>>> = None;
        let mut next_ref = inner.next_ref;
        let mut accepted: Vec<(u32, i64, f64)> = Vec::with_capacity(batch.len());
        let mut accepted_at: Vec<usize> = Vec::with_capacity(batch.len());
        // Per accepted sample: the series held it goes to (`None`: one created).
        let mut targets: Vec<Option<&MemSeries>> = Vec::with_capacity(batch.len());
        // Indices in `refs` to fill in once the batch is applied.
        let mut unresolved: Vec<usize> = Vec::new();
        for (at, (&id, &ts)) in ids.iter().zip(timestamps).enumerate() {
            let mut stale = None;
            let held = match refs.get(at) {
                Some(Some(r)) if r.is_held() => {
                    debug_assert_eq!(r.series_id(), id);
                    Some(&r.0)
                }
                Some(r) => {
                    stale = r.as_ref();
                    unresolved.push(at);
                    inner.by_id.get(id)
                }
                None => inner.by_id.get(id),
            };
            // The zero sample of a start goes only where it is newest, else silently
            // (Prometheus's scrape loop ignores `AppendSTZeroSample`'s refusals).
            let start_zero = batch.is_start_zero_at(at);
            if ts < min_valid {
                outcome.out_of_bounds += usize::from(!start_zero);
                continue;
            }
            let (wal_ref, target) = match held {
                Some(s) => {
                    let newest = s.newest();
                    if newest > ts {
                        outcome.out_of_order += usize::from(!start_zero);
                        continue;
                    }
                    if newest == ts {
                        // The value at `ts`: stored, or accepted earlier in this batch.
                        let last = match s.samples.lock().last() {
                            Some((t, v)) if t == ts => v,
                            _ => accepted
                                .iter()
                                .rev()
                                .find(|a| a.0 == s.wal_ref() && a.1 == ts)
                                .map_or(f64::NAN, |a| a.2),
                        };
                        if !start_zero && last.to_bits() != values[at].to_bits() {
                            outcome.duplicate += 1;
                        }
                        continue;
                    }
                    s.newest.store(ts, Ordering::Relaxed);
                    (s.wal_ref(), Some(&**s))
                }
                None => {
                    let state = match creating.entry(id) {
                        Entry::Occupied(state) => state.into_mut(),
                        Entry::Vacant(place) => {
                            let labels = match stale {
                                Some(r) => Some(&r.0.labels),
                                None => announced
                                    .get_or_insert_with(|| batch.announced())
                                    .get(&id)
                                    .copied(),
                            };
                            let Some(labels) = labels else {
                                // Neither held nor announced: nothing to create it from.
                                continue;
                            };
                            let wal_ref = inner.free_ref(&mut next_ref);
                            created.push((id, wal_ref, labels));
                            place.insert((wal_ref, NO_SAMPLE, 0.0))
                        }
                    };
                    if state.1 > ts {
                        outcome.out_of_order += usize::from(!start_zero);
                        continue;
                    }
                    if state.1 == ts {
                        if !start_zero && state.2.to_bits() != values[at].to_bits() {
                            outcome.duplicate += 1;
                        }
                        continue;
                    }
                    state.1 = ts;
                    state.2 = values[at];
                    (state.0, None)
                }
            };
            accepted.push((wal_ref, ts, values[at]));
            accepted_at.push(at);
            targets.push(target);
        }
        let new_series: Vec<(u32, &Labels)> = created.iter().map(|c| (c.1, c.2.as_ref())).collect();
        if let Err(e) = log(&new_series, &accepted) {
            for s in targets.iter().flatten() {
                s.reset_newest(&s.samples.lock());
            }
            return Err(e);
        }
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        let mut bytes = 0;
        for (&(_, ts, value), target) in accepted.iter().zip(&targets) {
            min_t = min_t.min(ts);
            max_t = max_t.max(ts);
            if let Some(s) = target {
                bytes += s.samples.lock().push(ts, value);
            }
        }
        drop(targets);
        inner.next_ref = next_ref;
        outcome.new_series = created.len();
        if !created.is_empty() {
            for (id, wal_ref, labels) in created {
                inner.insert(MemSeries::new(id, wal_ref, labels.clone()));
            }
            for &at in &accepted_at {
                let id = ids[at];
                if creating.contains_key(&id) {
                    if let Some(s) = inner.by_id.get(id) {
                        bytes += s.samples.lock().push(timestamps[at], values[at]);
                        s.newest.store(timestamps[at], Ordering::Relaxed);
                    }
                }
            }
        }
        for at in unresolved {
            let held = inner.by_id.get(ids[at]);
            refs[at] = held.map(|s| SeriesRef(s.clone()));
        }
        self.widen_bounds(min_t, max_t);
        outcome.appended = accepted_at.len();
        self.appended[0].fetch_add(outcome.appended as u64, Ordering::Relaxed);
        self.samples_held
            .fetch_add(outcome.appended, Ordering::Relaxed);
        self.bytes_held.fetch_add(bytes, Ordering::Relaxed);
        applied(&Applied {
            at: &accepted_at,
            batch,
            refs,
            by_id: &inner.by_id,
        });
        Ok(outcome)
    }

    /// A series' encoded samples went from `before` to `after` bytes (re-encoding after
    /// a deletion may grow them).
    fn bytes_changed(&self, before: usize, after: usize) {
        if after >= before {
            self.bytes_held.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.bytes_held.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    fn widen_bounds(&self, min_t: i64, max_t: i64) {
        self.min_t.fetch_min(min_t, Ordering::AcqRel);
        self.max_t.fetch_max(max_t, Ordering::AcqRel);
    }

    /// From now on, samples older than `min_valid_ms` are refused (counted as out of
    /// bounds): their time range is being, or has been, persisted in a block. The bound
    /// only rises.
    pub fn refuse_before(&self, min_valid_ms: i64) {
        self.min_valid_t.fetch_max(min_valid_ms, Ordering::AcqRel);
    }

    /// The bound set by [`Head::refuse_before`] (`i64::MIN` if none).
    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    /// The first refusal the head would give a sample of `floats`, then of
    /// `histograms`, judged against what it holds (not against each other), as
    /// Prometheus's appender judges each `Append` against the committed head; the zero
    /// samples of starts are never refused. A writer that must store all or nothing
    /// (the remote write receiver, which Prometheus rolls back whole) asks first.
    pub fn first_refusal(
        &self,
        floats: &[Sample],
        histograms: &[HistogramSample],
    ) -> Option<Refusal> {
        let min_valid = self.min_valid_t.load(Ordering::Acquire);
        let inner = self.inner.read();
        let float_refusal = |s: &Sample| {
            if s.timestamp_ms < min_valid {
                return Some(Refusal::OutOfBounds);
            }
            let held = inner.by_id.get(s.series_id)?;
            let newest = held.newest();
            if newest > s.timestamp_ms {
                return Some(Refusal::OutOfOrder);
            }
            let last = held.samples.lock().last();
            match last {
                Some((t, v)) if t == s.timestamp_ms && v.to_bits() != s.value.to_bits() => {
                    Some(Refusal::Duplicate)
                }
                _ => None,
            }
        };
        let histogram_refusal = |s: &HistogramSample| {
            if s.timestamp_ms < min_valid {
                return Some(Refusal::OutOfBounds);
            }
            let (t, last) = inner.histograms.get(&s.series_id)?.last()?;
            if *t > s.timestamp_ms {
                Some(Refusal::OutOfOrder)
            } else if *t == s.timestamp_ms && !same_histogram(last, &s.histogram) {
                Some(Refusal::Duplicate)
            } else {
                None
            }
        };
        floats
            .iter()
            .filter(|s| !dataflows::is_start_zero(s.timestamp_ms, s.start_ms))
            .find_map(float_refusal)
            .or_else(|| {
                histograms
                    .iter()
                    .filter(|s| !dataflows::is_start_zero(s.timestamp_ms, s.start_ms))
                    .find_map(histogram_refusal)
            })
    }

    /// Whether series `id` has a histogram sample in `[start, end]`.
    fn has_histogram_in(&self, id: u64, start_ms: i64, end_ms: i64) -> bool {
        self.has_histograms.load(Ordering::Relaxed)
            && self
                .inner
                .read()
                .histograms
                .get(&id)
                .is_some_and(|h| h.has_sample_in(start_ms, end_ms))
    }

    /// Whether any histogram sample was ever appended (a cheap test readers use to
    /// skip looking for histograms).
    pub fn has_histograms(&self) -> bool {
        self.has_histograms.load(Ordering::Relaxed)
    }

    /// Appends native-histogram samples, kept apart from the float path (which they do
    /// not slow down): series are found by id or created from the sample's labels; a
    /// sample not newer than the series' newest histogram, or older than
    /// [`Head::refuse_before`]'s bound, is refused and counted. Before any reader sees
    /// them and under the write lock, `log` gets the series created and the samples
    /// accepted (`(ref, ts, histogram)`); if it fails, nothing is applied. Then, still
    /// under the lock (so in the order appends are applied), `applied` gets the
    /// samples stored, with the hints stored.
    ///
    /// The counter-reset hint stored is `Gauge` for gauge histograms; otherwise
    /// `Reset` when the sample went down against the series' previous histogram
    /// ([`FloatHistogram::detect_reset`]), `NotReset` when it did not, `Unknown` for
    /// the first: what Prometheus's chunk iterator reports for samples appended alike.
    pub fn append_histograms_logged<E>(
        &self,
        samples: Vec<HistogramSample>,
        log: impl FnOnce(&[(u32, &Labels)], &[(u32, i64, &FloatHistogram)]) -> Result<(), E>,
        applied: impl FnOnce(&[StoredHistogram<'_>]),
    ) -> Result<AppendOutcome, E> {
        let mut outcome = AppendOutcome::default();
        if samples.is_empty() {
            return Ok(outcome);
        }
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let min_valid = self.min_valid_t.load(Ordering::Acquire);
        let mut next_ref = inner.next_ref;
        let mut created: Vec<(u64, u32, Arc<Labels>)> = Vec::new();
        // Per series touched: the ref and the newest histogram so far (for order and
        // the reset hint), starting from what is held.
        let mut newest: KeyMap<u64, (u32, Option<(i64, FloatHistogram)>)> = KeyMap::default();
        let mut accepted: Vec<(u64, u32, i64, FloatHistogram)> = Vec::with_capacity(samples.len());
        for sample in samples {
            let id = sample.series_id;
            let start_zero = dataflows::is_start_zero(sample.timestamp_ms, sample.start_ms);
            if sample.timestamp_ms < min_valid {
                outcome.out_of_bounds += usize::from(!start_zero);
                continue;
            }
            let state = match newest.entry(id) {
                Entry::Occupied(state) => state.into_mut(),
                Entry::Vacant(place) => {
                    let wal_ref = match inner.by_id.get(id) {
                        Some(s) => s.wal_ref(),
                        None => {
                            let wal_ref = inner.free_ref(&mut next_ref);
                            created.push((id, wal_ref, sample.labels.clone()));
                            wal_ref
                        }
                    };
                    let last = inner.histograms.get(&id).and_then(|h| h.last().cloned());
                    place.insert((wal_ref, last))
                }
            };
            match &state.1 {
                Some((ts, _)) if *ts > sample.timestamp_ms => {
                    outcome.out_of_order += usize::from(!start_zero);
                    continue;
                }
                Some((ts, last)) if *ts == sample.timestamp_ms => {
                    if !start_zero && !same_histogram(last, &sample.histogram) {
                        outcome.duplicate += 1;
                    }
                    continue;
                }
                _ => {}
            }
            let mut h = sample.histogram;
            if h.counter_reset_hint != CounterResetHint::Gauge {
                h.counter_reset_hint = match &state.1 {
                    None => CounterResetHint::Unknown,
                    Some((_, previous)) if h.detect_reset(previous) => CounterResetHint::Reset,
                    Some(_) => CounterResetHint::NotReset,
                };
            }
            state.1 = Some((sample.timestamp_ms, h.clone()));
            accepted.push((id, state.0, sample.timestamp_ms, h));
        }
        {
            let new_series: Vec<(u32, &Labels)> =
                created.iter().map(|c| (c.1, c.2.as_ref())).collect();
            let logged: Vec<(u32, i64, &FloatHistogram)> =
                accepted.iter().map(|a| (a.1, a.2, &a.3)).collect();
            log(&new_series, &logged)?;
        }
        inner.next_ref = next_ref;
        outcome.new_series = created.len();
        for (id, wal_ref, labels) in created {
            inner.insert(MemSeries::new(id, wal_ref, labels));
        }
        {
            let stored: Vec<StoredHistogram<'_>> = accepted
                .iter()
                .filter_map(|(id, _, ts, h)| Some((*id, &inner.by_id.get(*id)?.labels, *ts, h)))
                .collect();
            applied(&stored);
        }
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        outcome.appended = accepted.len();
        self.appended[1].fetch_add(outcome.appended as u64, Ordering::Relaxed);
        for (id, _, ts, h) in accepted {
            min_t = min_t.min(ts);
            max_t = max_t.max(ts);
            inner.histograms.entry(id).or_default().push(ts, h);
        }
        if outcome.appended > 0 {
            self.has_histograms.store(true, Ordering::Relaxed);
            self.widen_bounds(min_t, max_t);
        }
        Ok(outcome)
    }

    /// Replay: appends logged histogram samples of series ids (their hints as
    /// logged); returns how many were refused as out of order (or for an unknown
    /// series).
    pub fn replay_histograms(
        &self,
        samples: impl Iterator<Item = (Option<u64>, i64, FloatHistogram)>,
    ) -> usize {
        let mut refused = 0;
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (id, ts, h) in samples {
            let Some(id) = id.filter(|id| inner.by_id.contains(*id)) else {
                refused += 1;
                continue;
            };
            let chunks = inner.histograms.entry(id).or_default();
            if chunks.last_ts().is_some_and(|last| last >= ts) {
                refused += 1;
                continue;
            }
            chunks.push(ts, h);
            min_t = min_t.min(ts);
            max_t = max_t.max(ts);
        }
        if min_t <= max_t {
            self.has_histograms.store(true, Ordering::Relaxed);
            self.widen_bounds(min_t, max_t);
        }
        refused
    }

    /// The histogram samples of every series matching `selector` with timestamps in
    /// `[start, end]`; series without one there are left out.
    pub fn select_histograms(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesHistogramsInRange> {
        if !self.has_histograms() {
            return Vec::new();
        }
        let inner = self.inner.read();
        if inner.histograms.is_empty() {
            return Vec::new();
        }
        matching_refs(&inner.postings, std::slice::from_ref(selector))
            .iter()
            .filter_map(|&r| inner.by_ref.get(r))
            .filter_map(|s| {
                let samples = inner.histograms.get(&s.id)?.range(start_ms, end_ms);
                (!samples.is_empty()).then(|| (s.labels.clone(), samples))
            })
            .collect()
    }

    /// The WAL ref and labels of each series of `ids` the head holds (`None` for one
    /// it does not), for records that refer to series (exemplars).
    pub fn logged_series(&self, ids: impl Iterator<Item = u64>) -> Vec<Option<(u32, Arc<Labels>)>> {
        let inner = self.inner.read();
        ids.map(|id| inner.by_id.get(id).map(|s| (s.wal_ref(), s.labels.clone())))
            .collect()
    }

    /// Replay: (re)defines the series `wal_ref` as `labels`; returns its series id. A
    /// series already held under another ref takes the new one.
    pub fn replay_series(&self, wal_ref: u32, labels: Labels) -> u64 {
        let id = labels.hash();
        let mut inner = self.inner.write();
        inner.next_ref = inner.next_ref.max(wal_ref.wrapping_add(1));
        match inner.by_id.get(id).cloned() {
            Some(s) if s.wal_ref() != wal_ref => {
                let old = s.wal_ref();
                inner.by_ref.remove(old);
                inner.postings.remove([(old, s.labels.as_ref())]);
                s.wal_ref.store(wal_ref, Ordering::Relaxed);
                inner.insert(s);
            }
            Some(_) => {}
            None => inner.insert(MemSeries::new(id, wal_ref, Arc::new(labels))),
        }
        id
    }

    /// Replay: appends logged samples of series ids; returns how many were refused as
    /// out of order (or for an unknown series).
    pub fn replay_samples(&self, samples: impl Iterator<Item = (Option<u64>, i64, f64)>) -> usize {
        let mut refused = 0;
        let inner = self.inner.write();
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        let (mut pushed, mut bytes) = (0, 0);
        for (id, ts, value) in samples {
            let Some(s) = id.and_then(|id| inner.by_id.get(id)) else {
                refused += 1;
                continue;
            };
            let mut chunks = s.samples.lock();
            if s.newest() < ts {
                bytes += chunks.push(ts, value);
                pushed += 1;
                s.newest.store(ts, Ordering::Relaxed);
                min_t = min_t.min(ts);
                max_t = max_t.max(ts);
            } else {
                refused += 1;
            }
        }
        self.widen_bounds(min_t, max_t);
        self.samples_held.fetch_add(pushed, Ordering::Relaxed);
        self.bytes_held.fetch_add(bytes, Ordering::Relaxed);
        refused
    }

    /// Deletes the samples in `[min_t, max_t]` of every series matching any of
    /// `selectors`. Under the write lock, and before anything is deleted, `log` gets
    /// `(ref, min_t, max_t)` of each series that has samples there; if it fails, nothing
    /// is deleted. Returns the number of samples deleted.
    pub fn delete_logged<E>(
        &self,
        selectors: &[Selector],
        min_t: i64,
        max_t: i64,
        log: impl FnOnce(&[(u32, i64, i64)]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let histograms = &mut inner.histograms;
        let has_histogram_in = |id: &u64| {
            histograms
                .get(id)
                .is_some_and(|h| h.has_sample_in(min_t, max_t))
        };
        let doomed: Vec<&Arc<MemSeries>> = matching_refs(&inner.postings, selectors)
            .iter()
            .filter_map(|&r| inner.by_ref.get(r))
            .filter(|s| s.samples.lock().has_sample_in(min_t, max_t) || has_histogram_in(&s.id))
            .collect();
        let deletions: Vec<(u32, i64, i64)> =
            doomed.iter().map(|s| (s.wal_ref(), min_t, max_t)).collect();
        log(&deletions)?;
        let (mut deleted, mut floats_deleted) = (0, 0);
        for s in doomed {
            let mut samples = s.samples.lock();
            let bytes = samples.encoded_bytes();
            floats_deleted += samples.delete_range(min_t, max_t);
            self.bytes_changed(bytes, samples.encoded_bytes());
            s.reset_newest(&samples);
            if let Some(h) = histograms.get_mut(&s.id) {
                deleted += h.delete_range(min_t, max_t);
                if h.is_empty() {
                    histograms.remove(&s.id);
                }
            }
        }
        // The float counter only: histograms are counted from their side map.
        self.samples_held
            .fetch_sub(floats_deleted, Ordering::Relaxed);
        deleted += floats_deleted;
        if deleted > 0 {
            self.bounds_stale.store(true, Ordering::Release);
        }
        Ok(deleted)
    }

    /// Replay: deletes the samples of series `id` in `[min_t, max_t]`.
    pub fn replay_delete(&self, id: u64, min_t: i64, max_t: i64) {
        if let Some(s) = self.inner.read().by_id.get(id) {
            let mut samples = s.samples.lock();
            let bytes = samples.encoded_bytes();
            let deleted = samples.delete_range(min_t, max_t);
            if deleted > 0 {
                self.samples_held.fetch_sub(deleted, Ordering::Relaxed);
                self.bytes_changed(bytes, samples.encoded_bytes());
                s.reset_newest(&samples);
                self.bounds_stale.store(true, Ordering::Release);
            }
        }
        if self.has_histograms() {
            let mut inner = self.inner.write();
            if let Some(h) = inner.histograms.get_mut(&id) {
                if h.delete_range(min_t, max_t) > 0 {
                    self.bounds_stale.store(true, Ordering::Release);
                }
                if h.is_empty() {
                    inner.histograms.remove(&id);
                }
            }
        }
    }

    /// The series matching any of `selectors` (every series if there are none), in ref
    /// order: resolved over the index and taken out under a short read lock.
    fn matching(&self, selectors: &[Selector]) -> Vec<Arc<MemSeries>> {
        let inner = self.inner.read();
        matching_refs(&inner.postings, selectors)
            .iter()
            .filter_map(|&r| inner.by_ref.get(r).cloned())
            .collect()
    }

    /// The samples of every series matching `selector` with timestamps in `[start, end]`.
    /// Series with no sample in the range are left out.
    pub fn select(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesSamplesInRange> {
        self.matching(std::slice::from_ref(selector))
            .into_iter()
            .filter_map(|s| {
                let samples: Vec<(i64, f64)> = s.samples.lock().range(start_ms, end_ms).collect();
                (!samples.is_empty()).then(|| (s.labels.clone(), samples))
            })
            .collect()
    }

    /// Labels of every series matching any of `selectors` (all series if there are
    /// none) with at least one sample in `[start, end]`, sorted.
    pub fn series_in_range(
        &self,
        selectors: &[Selector],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        let mut out: Vec<Arc<Labels>> = self
            .matching(selectors)
            .into_iter()
            .filter(|s| {
                s.samples.lock().has_sample_in(start_ms, end_ms)
                    || self.has_histogram_in(s.id, start_ms, end_ms)
            })
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    /// Every label name of a series held, sorted (from the index, no series read).
    pub fn label_names(&self) -> Vec<String> {
        self.inner.read().postings.label_names()
    }

    /// Every value of label `name` among the series held, sorted (from the index).
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.inner.read().postings.label_values(name)
    }

    /// Drops samples older than `cutoff_ms`, and series left empty.
    pub fn truncate_before(&self, cutoff_ms: i64) {
        self.truncate_before_then(cutoff_ms, |_| {});
    }

    /// Like [`Head::truncate_before`], then calls `then` with every series left
    /// (`(ref, labels)`) while still holding the write lock, so no series can be
    /// created in between.
    pub fn truncate_before_then<R>(
        &self,
        cutoff_ms: i64,
        then: impl FnOnce(&mut dyn Iterator<Item = (u32, &Labels)>) -> R,
    ) -> R {
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let mut emptied: Vec<Arc<MemSeries>> = Vec::new();
        if !inner.histograms.is_empty() {
            inner.histograms.retain(|_, h| {
                h.drop_before(cutoff_ms);
                !h.is_empty()
            });
        }
        let (mut held, mut bytes) = (0, 0);
        for s in inner.by_ref.values() {
            let mut samples = s.samples.lock();
            samples.drop_before(cutoff_ms);
            if samples.is_empty() && !inner.histograms.contains_key(&s.id) {
                emptied.push(s.clone());
            }
            held += samples.len();
            bytes += samples.encoded_bytes();
        }
        // Recounted while every series is walked anyway (and appends wait for the lock).
        self.samples_held.store(held, Ordering::Relaxed);
        self.bytes_held.store(bytes, Ordering::Relaxed);
        for s in &emptied {
            inner.by_ref.remove(s.wal_ref());
            inner.by_id.remove(s.id);
            s.removed.store(true, Ordering::Relaxed);
        }
        inner
            .postings
            .remove(emptied.iter().map(|s| (s.wal_ref(), s.labels.as_ref())));
        let (min_t, max_t) = inner.time_bounds();
        self.min_t.store(min_t, Ordering::Release);
        self.max_t.store(max_t, Ordering::Release);
        self.bounds_stale.store(false, Ordering::Release);
        let mut live = inner
            .by_ref
            .values()
            .map(|s| (s.wal_ref(), s.labels.as_ref()));
        then(&mut live)
    }

    /// Every series with samples (floats or histograms) in `[start, end]`, encoded
    /// afresh into chunks that hold only those samples (to persist them in a block).
    ///
    /// The histogram series (few) are encoded under the head's read lock, the float
    /// series each under its own lock only, so appends go on meanwhile.
    pub fn encode_range(&self, start: i64, end: i64) -> Vec<BlockSeries> {
        let series = self.matching(&[]);
        let mut histograms: KeyMap<u64, Vec<EncodedChunk>> = KeyMap::default();
        if self.has_histograms() {
            let inner = self.inner.read();
            for (&id, h) in inner.histograms.iter() {
                let chunks = h.encode_range(start, end);
                if !chunks.is_empty() {
                    histograms.insert(id, chunks);
                }
            }
        }
        series
            .into_iter()
            .map(|s| BlockSeries {
                labels: s.labels.clone(),
                floats: s.samples.lock().encode_range(start, end),
                histograms: histograms.remove(&s.id).unwrap_or_default(),
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The oldest and newest sample timestamps held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        if self.bounds_stale.swap(false, Ordering::AcqRel) {
            let inner = self.inner.read();
            let (min_t, max_t) = inner.time_bounds();
            self.min_t.store(min_t, Ordering::Release);
            self.max_t.store(max_t, Ordering::Release);
        }
        let min_t = self.min_t.load(Ordering::Acquire);
        let max_t = self.max_t.load(Ordering::Acquire);
        (min_t <= max_t).then_some((min_t, max_t))
    }

    /// The number of series held.
    pub fn series_count(&self) -> usize {
        self.inner.read().by_id.len()
    }

    /// Float and histogram samples appended so far (WAL replay aside).
    pub fn samples_appended(&self) -> (u64, u64) {
        (
            self.appended[0].load(Ordering::Relaxed),
            self.appended[1].load(Ordering::Relaxed),
        )
    }

    /// The number of samples held (floats and histograms).
    pub fn sample_count(&self) -> usize {
        let histograms: usize = if self.has_histograms() {
            self.inner.read().histograms.values().map(|h| h.len()).sum()
        } else {
            0
        };
        self.samples_held.load(Ordering::Relaxed) + histograms
    }

    /// Bytes of compressed sample data held (float and histogram chunks).
    pub fn chunk_bytes(&self) -> usize {
        let histograms: usize = if self.has_histograms() {
            self.inner
                .read()
                .histograms
                .values()
                .map(|h| h.encoded_bytes())
                .sum()
        } else {
            0
        };
        self.bytes_held.load(Ordering::Relaxed) + histograms
    }
}

/// The refs of the series matching any of `selectors` (all if there are none), sorted.
/// Whether histogram `b` repeats `a`, as Prometheus's `Histogram.Equals` judges an
/// append at the newest timestamp: schema, zero threshold, counts, sum (bitwise) and
/// bucket layout alike, the counter-reset hint aside. The common case (the same
/// exposition scraped again) is the same columns; otherwise both are compacted first.
fn same_histogram(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let bits = |x: f64, y: f64| x.to_bits() == y.to_bits();
    let all_bits =
        |x: &[f64], y: &[f64]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| bits(*p, *q));
    let columns_alike = a.schema == b.schema
        && bits(a.zero_threshold, b.zero_threshold)
        && bits(a.zero_count, b.zero_count)
        && bits(a.count, b.count)
        && bits(a.sum, b.sum)
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && all_bits(&a.positive_buckets, &b.positive_buckets)
        && all_bits(&a.negative_buckets, &b.negative_buckets)
        && all_bits(&a.custom_values, &b.custom_values);
    columns_alike || a.same(b, false, bits)
}

fn matching_refs(postings: &Postings, selectors: &[Selector]) -> Vec<u32> {
    match selectors {
        [] => postings.select(&Selector::default()),
        [one] => postings.select(one),
        many => {
            let mut refs: Vec<u32> = many.iter().flat_map(|s| postings.select(s)).collect();
            refs.sort_unstable();
            refs.dedup();
            refs
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::postings::tests::{random_labels, random_selector};
    use dataflows::LabelMatcher;

    /// A head series stays within 120 bytes with its `Arc` counts (128 with malloc's
    /// rounding; see `chunk::OpenChunk`), on 64-bit targets.
    #[test]
    fn a_series_stays_compact() {
        assert!(std::mem::size_of::<MemSeries>() + 16 <= 120);
    }

    /// A sample of `m{job=…}`, shared by the storage tests.
    pub(crate) fn sample(job: &str, ts: i64, value: f64) -> Sample {
        let labels = Labels::from_pairs(vec![
            ("__name__".into(), "m".into()),
            ("job".into(), job.into()),
        ]);
        Sample {
            series_id: labels.hash(),
            labels: Arc::new(labels),
            timestamp_ms: ts,
            value,
            start_ms: 0,
        }
    }

    #[test]
    fn refs_wrap_around_without_reusing_a_held_one() {
        let head = Head::new();
        head.inner.write().next_ref = u32::MAX - 1;
        head.append(&["a", "b", "c", "d"].map(|job| sample(job, 10, 1.0)));
        // As if the counter came round again while a..d are still held.
        head.inner.write().next_ref = u32::MAX - 1;
        head.append(&["e", "f"].map(|job| sample(job, 10, 1.0)));
        let inner = head.inner.read();
        let mut refs: Vec<u32> = inner.by_ref.values().map(|s| s.wal_ref()).collect();
        refs.sort_unstable();
        assert_eq!(refs, vec![0, 1, 2, 3, u32::MAX - 1, u32::MAX]);
        assert_eq!(inner.by_id.len(), 6);
    }

    #[test]
    fn appends_in_order_and_refuses_out_of_order() {
        let head = Head::new();
        let out = head.append(&[
            sample("a", 10, 1.0),
            sample("a", 20, 2.0),
            sample("b", 10, 1.0),
        ]);
        assert_eq!(
            out,
            AppendOutcome {
                appended: 3,
                new_series: 2,
                ..AppendOutcome::default()
            }
        );
        let out = head.append(&[
            sample("a", 20, 9.0),
            sample("a", 15, 9.0),
            sample("a", 30, 3.0),
        ]);
        assert_eq!(
            out,
            AppendOutcome {
                appended: 1,
                new_series: 0,
                out_of_order: 1,
                duplicate: 1,
                out_of_bounds: 0,
            }
        );
        assert_eq!(head.sample_count(), 4);
    }

    /// Prometheus's `memSeries.appendable` (tsdb/head_append.go, 2.42): at the newest
    /// timestamp, the same value bits (a stale marker too) pass and are dropped at
    /// commit, uncounted; another value is `ErrDuplicateSampleForTimestamp`. Held and
    /// new series, and a value accepted earlier in the same batch, alike.
    #[test]
    fn an_exact_duplicate_is_dropped_silently_and_another_value_is_a_duplicate() {
        let head = Head::new();
        let stale = dataflows::STALE_MARKER;
        let out = head.append(&[
            sample("new", 10, 1.0),
            sample("new", 10, 1.0),
            sample("new", 10, 2.0),
        ]);
        let counts = |o: AppendOutcome| (o.appended, o.out_of_order, o.duplicate);
        assert_eq!(counts(out), (1, 0, 1));
        let out = head.append(&[sample("new", 10, 1.0), sample("new", 10, -1.0)]);
        assert_eq!(counts(out), (0, 0, 1));
        let out = head.append(&[
            sample("new", 20, stale),
            sample("new", 20, stale),
            sample("new", 20, f64::NAN),
            sample("new", 15, 1.0),
        ]);
        assert_eq!(counts(out), (1, 1, 1));
        let out = head.append(&[sample("new", 20, stale)]);
        assert_eq!(counts(out), (0, 0, 0));
        assert_eq!(head.sample_count(), 2);
    }

    /// The zero sample of a start (Prometheus's `AppendSTZeroSample`,
    /// tsdb/head_append.go): stored before its sample when the series has nothing at
    /// or after it (a new series, or a start after its newest sample); otherwise
    /// dropped without counting, as the scrape loop ignores its refusal; floats and
    /// native histograms alike.
    #[test]
    fn zero_samples_of_starts_go_where_newest_and_are_dropped_silently_elsewhere() {
        let head = Head::new();
        let zero = |job: &str, start: i64| Sample {
            start_ms: start,
            ..sample(job, start, 0.0)
        };
        let out = head.append(&[zero("a", 5), sample("a", 10, 3.0)]);
        assert_eq!((out.appended, out.out_of_order), (2, 0));
        // The same start again, a start at the newest sample, one before it.
        let out = head.append(&[zero("a", 5), sample("a", 20, 4.0)]);
        assert_eq!((out.appended, out.out_of_order), (1, 0));
        let out = head.append(&[zero("a", 20), sample("a", 30, 5.0)]);
        assert_eq!((out.appended, out.out_of_order), (1, 0));
        // A restart: a start after the newest sample.
        let out = head.append(&[zero("a", 35), sample("a", 40, 1.0)]);
        assert_eq!((out.appended, out.out_of_order), (2, 0));
        let all = head.select(&Selector::default(), 0, 100);
        assert_eq!(
            all[0].1,
            vec![
                (5, 0.0),
                (10, 3.0),
                (20, 4.0),
                (30, 5.0),
                (35, 0.0),
                (40, 1.0)
            ]
        );
        // Beyond the bound the head refuses: dropped, uncounted.
        head.refuse_before(50);
        let out = head.append(&[zero("a", 45), sample("a", 60, 2.0)]);
        assert_eq!(
            (out.appended, out.out_of_order, out.out_of_bounds),
            (1, 0, 0)
        );

        let h = |ts: i64, count: f64| HistogramSample {
            series_id: 7,
            labels: Arc::new(Labels::from_pairs(vec![("__name__".into(), "h".into())])),
            timestamp_ms: ts,
            histogram: FloatHistogram {
                schema: 2,
                zero_threshold: 0.5,
                count,
                ..FloatHistogram::default()
            },
            start_ms: 0,
        };
        let append = |samples: Vec<HistogramSample>| {
            let logged = head.append_histograms_logged(
                samples,
                |_, _| Ok::<(), std::convert::Infallible>(()),
                |_| {},
            );
            logged.unwrap_or_else(|never| match never {})
        };
        let first = h(100, 3.0);
        let out = append(vec![first.start_zero(90), first.clone()]);
        assert_eq!((out.appended, out.out_of_order), (2, 0));
        let next = h(110, 4.0);
        let out = append(vec![next.start_zero(90), next]);
        assert_eq!((out.appended, out.out_of_order), (1, 0));
        let stored = head.select_histograms(&Selector::default(), 0, 200);
        let got: Vec<(i64, i32, f64, f64)> = stored[0]
            .1
            .iter()
            .map(|(t, h)| (*t, h.schema, h.zero_threshold, h.count))
            .collect();
        assert_eq!(
            got,
            [(90, 2, 0.5, 0.0), (100, 2, 0.5, 3.0), (110, 2, 0.5, 4.0)]
        );
    }

    #[test]
    fn selects_by_matchers_and_closed_range() {
        let head = Head::new();
        head.append(&[
            sample("a", 10, 1.0),
            sample("a", 20, 2.0),
            sample("a", 30, 3.0),
            sample("b", 20, 5.0),
        ]);
        let sel = Selector {
            matchers: vec![LabelMatcher::new("job", "=", "a").unwrap()],
        };
        let got = head.select(&sel, 20, 30);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, vec![(20, 2.0), (30, 3.0)]);
    }

    #[test]
    fn truncation_drops_old_samples_and_empty_series() {
        let head = Head::new();
        head.append(&[
            sample("a", 10, 1.0),
            sample("a", 20, 2.0),
            sample("b", 5, 5.0),
        ]);
        head.truncate_before(15);
        assert_eq!((head.series_count(), head.sample_count()), (1, 1));
    }

    #[test]
    fn a_failed_log_applies_nothing_of_the_batch() {
        let head = Head::new();
        head.append(&[sample("a", 10, 1.0)]);
        let refused = head.append_logged(
            &SampleBatch::from_samples(&[sample("a", 20, 2.0), sample("b", 20, 2.0)]),
            &mut [],
            |_, _| Err("disk full"),
            |_| panic!("nothing applied"),
        );
        assert_eq!(refused, Err("disk full"));
        assert_eq!((head.series_count(), head.sample_count()), (1, 1));
        // The refs the refused batch would have used are handed out again.
        let mut logged = Vec::new();
        let out = head
            .append_logged(
                &SampleBatch::from_samples(&[sample("b", 20, 2.0), sample("a", 20, 2.0)]),
                &mut [],
                |series, samples| {
                    logged.push((
                        series.iter().map(|s| s.0).collect::<Vec<_>>(),
                        samples.to_vec(),
                    ));
                    Ok::<(), ()>(())
                },
                |applied| {
                    assert_eq!(applied.at, [0, 1]);
                    let names: Vec<&str> = (0..2)
                        .map(|at| applied.labels(at).unwrap().get("job").unwrap())
                        .collect();
                    assert_eq!(names, ["b", "a"]);
                },
            )
            .unwrap();
        assert_eq!((out.appended, out.new_series), (2, 1));
        assert_eq!(logged, vec![(vec![1], vec![(1, 20, 2.0), (0, 20, 2.0)])]);
    }

    /// Handles come back for every series held; appending through them stores what a
    /// lookup by id would; a handle of a series truncation removed is stale and is
    /// resolved again (to the series created anew), never appended to.
    #[test]
    fn series_refs_append_without_lookup_and_stale_ones_are_resolved_again() {
        let head = Head::new();
        // As a scrape sends them: only the series without a handle are announced.
        let append = |batch: &[Sample], refs: &mut [Option<SeriesRef>]| {
            let mut columns = SampleBatch::with_capacity(batch.len());
            for (sample, r) in batch.iter().zip(refs.iter()) {
                columns.push_sample(sample, r.is_none());
            }
            head.append_logged(&columns, refs, |_, _| Ok::<(), ()>(()), |_| {})
                .unwrap()
        };
        let mut refs = vec![None, None];
        let out = append(&[sample("a", 10, 1.0), sample("b", 10, 1.0)], &mut refs);
        assert_eq!((out.appended, out.new_series), (2, 2));
        let ids: Vec<u64> = refs
            .iter()
            .map(|r| r.as_ref().unwrap().series_id())
            .collect();
        assert_eq!(
            ids,
            [sample("a", 0, 0.0).series_id, sample("b", 0, 0.0).series_id]
        );

        // Through the handles: in order, refused when not newer.
        let out = append(&[sample("a", 20, 2.0), sample("b", 10, 9.0)], &mut refs);
        let counts = (
            out.appended,
            out.out_of_order,
            out.duplicate,
            out.new_series,
        );
        assert_eq!(counts, (1, 0, 1, 0));
        let all = head.select(&Selector::default(), 0, 100);
        let values: Vec<Vec<(i64, f64)>> = all.into_iter().map(|(_, s)| s).collect();
        assert_eq!(values, [vec![(10, 1.0), (20, 2.0)], vec![(10, 1.0)]]);

        // "b" is dropped by truncation; its handle is stale, so the sample creates the
        // series again and the handle is replaced by the new series'.
        head.append(&[sample("a", 30, 3.0)]);
        head.truncate_before(15);
        assert_eq!(head.series_count(), 1);
        let stale = refs[1].clone().unwrap();
        assert!(!stale.is_held());
        let out = append(&[sample("a", 40, 4.0), sample("b", 40, 4.0)], &mut refs);
        assert_eq!((out.appended, out.new_series), (2, 1));
        assert!(refs[1].as_ref().unwrap().is_held());
        assert_eq!(
            stale.0.samples.lock().len(),
            0,
            "nothing went to the removed series"
        );
        let b = Selector {
            matchers: vec![LabelMatcher::new("job", "=", "b").unwrap()],
        };
        assert_eq!(head.select(&b, 0, 100)[0].1, vec![(40, 4.0)]);
    }

    #[test]
    fn samples_repeated_within_a_batch_keep_time_order() {
        let head = Head::new();
        let out = head.append(&[
            sample("new", 20, 1.0),
            sample("new", 20, 2.0),
            sample("new", 10, 3.0),
            sample("new", 30, 4.0),
        ]);
        assert_eq!((out.appended, out.out_of_order, out.duplicate), (2, 1, 1));
        let all = head.select(&Selector { matchers: vec![] }, 0, 100);
        assert_eq!(all[0].1, vec![(20, 1.0), (30, 4.0)]);
    }

    #[test]
    fn a_held_series_is_decided_in_batch_order_and_after_deletions() {
        let head = Head::new();
        head.append(&[sample("a", 10, 1.0)]);
        let out = head.append(&[
            sample("a", 30, 1.0),
            sample("a", 20, 2.0),
            sample("a", 30, 3.0),
            sample("a", 40, 4.0),
        ]);
        assert_eq!((out.appended, out.out_of_order, out.duplicate), (2, 1, 1));
        // Deleting the newest samples lets older ones in again.
        let deleted = head.delete_logged(&[], 25, 100, |_| Ok::<(), ()>(()));
        assert_eq!(deleted, Ok(2));
        assert_eq!(head.append(&[sample("a", 20, 5.0)]).appended, 1);
        let all = head.select(&Selector { matchers: vec![] }, 0, 100);
        assert_eq!(all[0].1, vec![(10, 1.0), (20, 5.0)]);
    }

    #[test]
    fn samples_below_the_bound_are_refused_as_out_of_bounds() {
        let head = Head::new();
        head.refuse_before(100);
        head.refuse_before(50);
        assert_eq!(head.min_valid_t(), 100);
        let out = head.append(&[sample("a", 99, 1.0), sample("a", 100, 1.0)]);
        assert_eq!((out.appended, out.out_of_bounds), (1, 1));
    }

    /// The samples and bytes the head keeps count of, as walking every series finds them.
    fn walked_counts(head: &Head) -> (usize, usize) {
        head.matching(&[]).iter().fold((0, 0), |(n, b), s| {
            let samples = s.samples.lock();
            (n + samples.len(), b + samples.encoded_bytes())
        })
    }

    /// The counts `/metrics` reads stay those of a walk through appends (batches with
    /// new, held and out-of-order samples), a replay, deletions (which re-encode) and
    /// truncations, on random series.
    #[test]
    fn kept_sample_and_byte_counts_match_a_walk() {
        let mut rng = fastrand::Rng::with_seed(7);
        let head = Head::new();
        let series: Vec<Arc<Labels>> = (0..50)
            .map(|i| {
                Arc::new(Labels::from_pairs(vec![
                    ("__name__".into(), "m".into()),
                    ("i".into(), i.to_string()),
                ]))
            })
            .collect();
        let check = |head: &Head| {
            assert_eq!(
                (head.sample_count(), head.chunk_bytes()),
                walked_counts(head)
            );
        };
        for round in 0..300i64 {
            let batch: Vec<Sample> = (0..rng.usize(1..40))
                .map(|_| {
                    let labels = series[rng.usize(..series.len())].clone();
                    Sample {
                        series_id: labels.hash(),
                        labels,
                        timestamp_ms: round * 10 - rng.i64(0..30),
                        value: if rng.bool() { 1.0 } else { rng.f64() * 1e6 },
                        start_ms: 0,
                    }
                })
                .collect();
            head.append(&batch);
            if round % 50 == 17 {
                let doomed = Selector {
                    matchers: vec![LabelMatcher::new("i", "=~", "1.*").unwrap()],
                };
                let (min_t, max_t) = (round * 10 - 400, round * 10 - 200);
                head.delete_logged(std::slice::from_ref(&doomed), min_t, max_t, |_| {
                    Ok::<(), ()>(())
                })
                .unwrap();
                check(&head);
            }
            if round % 70 == 69 {
                head.truncate_before(round * 10 - 300);
            }
            check(&head);
        }
        let id = series[3].hash();
        head.replay_samples([(Some(id), 1_000_000, 2.0), (Some(id), 1_000_010, 3.0)].into_iter());
        check(&head);
        head.replay_delete(id, 1_000_000, 1_000_000);
        check(&head);
    }

    /// Random series selected by random matchers through the index, compared with
    /// checking every series against the matchers; again after truncation dropped the
    /// series with only old samples and a deletion emptied more of them.
    #[test]
    fn indexed_selection_matches_a_scan_through_truncation_and_deletion() {
        let mut rng = fastrand::Rng::with_seed(19);
        let head = Head::new();
        let mut live: Vec<(Arc<Labels>, i64)> = Vec::new();
        for i in 0..400 {
            let mut pairs = random_labels(&mut rng).into_pairs();
            pairs.push(("i".into(), i.to_string()));
            let labels = Arc::new(Labels::from_pairs(pairs));
            let ts = if rng.bool() { 10 } else { 100 };
            head.append(&[Sample {
                series_id: labels.hash(),
                labels: labels.clone(),
                timestamp_ms: ts,
                value: 1.0,
                start_ms: 0,
            }]);
            live.push((labels, ts));
        }
        let check = |live: &[(Arc<Labels>, i64)], rng: &mut fastrand::Rng| {
            for _ in 0..200 {
                let selector = random_selector(rng);
                let mut got: Vec<Arc<Labels>> = head
                    .select(&selector, i64::MIN, i64::MAX)
                    .into_iter()
                    .map(|(labels, _)| labels)
                    .collect();
                got.sort();
                let mut want: Vec<Arc<Labels>> = live
                    .iter()
                    .filter(|(labels, _)| selector.matches(labels))
                    .map(|(labels, _)| labels.clone())
                    .collect();
                want.sort();
                assert_eq!(got, want, "{selector:?}");
                let listed = head.series_in_range(std::slice::from_ref(&selector), 0, 200);
                assert_eq!(listed, want, "{selector:?}");
            }
        };
        check(&live, &mut rng);
        assert_eq!(head.time_range(), Some((10, 100)));

        head.truncate_before(50);
        live.retain(|(_, ts)| *ts >= 50);
        assert_eq!(head.series_count(), live.len());
        check(&live, &mut rng);
        assert_eq!(head.time_range(), Some((100, 100)));

        let doomed = Selector {
            matchers: vec![LabelMatcher::new("job", "=~", "a|b").unwrap()],
        };
        let deleted =
            head.delete_logged(std::slice::from_ref(&doomed), 0, 200, |_| Ok::<(), ()>(()));
        let before = live.len();
        live.retain(|(labels, _)| !doomed.matches(labels));
        assert_eq!(deleted, Ok(before - live.len()));
        head.truncate_before(50);
        assert_eq!(head.series_count(), live.len());
        check(&live, &mut rng);
        let names: std::collections::BTreeSet<String> = live
            .iter()
            .flat_map(|(labels, _)| {
                labels
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(head.label_names(), names.into_iter().collect::<Vec<_>>());
    }
}
