//! The latest sample of every live series: the maintained output behind `/federate`.
//!
//! PromQL (instant-vector selector at the frontier):
//! ```promql
//! {__name__=~".+"}   # every series' newest sample within the lookback delta, not stale
//! ```
//! The table is sharded by series id (`id % workers`); a map series id → newest
//! sample per shard. The feeding thread applies each batch fed to the dataflow to the
//! shards directly, before the workers get it ([`LatestTable::apply_fed`]); a series'
//! labels are read from the [`SeriesCatalog`] when it enters its shard. Each worker
//! retires its shard as its input frontier moves and sweeps its shard of the catalog
//! then ([`LatestRetirer`], see [`crate::catalog`]). Readers see every shard. When the
//! input frontier passes `timestamp + lookback`, an entry can never be selected again
//! and is retired, so the table holds the active window only.
//!
//! Each shard indexes its entries by label ([`Postings`], as the storage head does), so
//! a read with selectors ([`LatestTable::for_each_live_matching`]) costs what it
//! selects, not the size of the table: the index changes only when a series enters or
//! is retired, never for a new value of a known series.
//!
//! A series' newest sample may be a native histogram (the batch's histogram column,
//! [`SampleBatch::histograms`]): its entry then holds the histogram
//! ([`LatestEntry::histogram`]) and a float value of 0; a later float sample (a stale
//! marker of the histogram series) replaces it. Readers that cannot show histograms
//! (the text exposition) skip such entries, as Prometheus's federation does.
//!
//! Changes are also pushed to subscribers ([`LatestTable::subscribe`]) as they are
//! applied: every accepted sample, every stale marker, every series retired past the
//! lookback delta. A subscriber's callback runs on the feeding thread (a scrape's, a
//! rule group's) or a worker thread, and must not block.

use crate::catalog::SeriesCatalog;
use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::postings::Postings;
use crate::sample::{is_stale_marker, Point, SampleBatch};
use crate::selector::Selector;
use hashbrown::HashTable;
use std::sync::{Arc, RwLock};

/// The newest sample of one series.
#[derive(Clone, Debug)]
pub struct LatestEntry {
    /// The series' labels.
    pub labels: Arc<Labels>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The value; a stale marker when the series went away; 0 when the newest sample
    /// is a native histogram.
    pub value: f64,
    /// The native histogram, when the newest sample is one.
    pub histogram: Option<Arc<FloatHistogram>>,
}

impl LatestEntry {
    /// Whether an instant selector at `at_ms` selects this sample: not a stale marker,
    /// and in `(at - lookback, at]`.
    pub fn is_live(&self, at_ms: i64, lookback_ms: i64) -> bool {
        !is_stale_marker(self.value)
            && self.timestamp_ms <= at_ms
            && self.timestamp_ms > at_ms - lookback_ms
    }
}

/// One worker's part of the table.
type Shard = RwLock<ShardData>;

/// The newest sample of each series in a slot, the slot found by series id and by
/// label ([`Postings`] over slot numbers). Freed slots are reused.
///
/// A series is found by id first at the slot after the one found last (`next`), then
/// through `index`: a series takes a slot when it enters, so a target's series sit
/// in the order of its first batch, and each later batch (in the same order) finds
/// them one after another without a probe of the index. The compare bench (100k
/// series, 50 targets, every 5s, no rules) showed the need: the upsert with a hash-map
/// probe per sample took about 15% of the process's CPU in its ingest phase (perf
/// record), mostly waiting on memory.
struct ShardData {
    /// The occupied slots by series id (already a hash, used as the index's hash).
    index: HashTable<u32>,
    /// The series id by slot (of a free slot: the last series that held it).
    ids: Vec<u64>,
    /// Where the next lookup by id looks first.
    next: usize,
    /// The entries by slot; `None` for a free slot.
    entries: Vec<Option<LatestEntry>>,
    /// Free slots.
    free: Vec<u32>,
    /// Label postings of the occupied slots.
    postings: Postings,
    /// The frontier of the last retirement scan (ms; scans are at least a second of
    /// frontier apart).
    retired_through: u64,
    /// At most the oldest timestamp of a live (not stale) entry: exact after a scan,
    /// lowered by later upserts (`i64::MAX`: none).
    oldest_live_ms: i64,
    /// The same for stale markers.
    oldest_stale_ms: i64,
}

impl Default for ShardData {
    fn default() -> ShardData {
        ShardData {
            index: HashTable::new(),
            ids: Vec::new(),
            next: 0,
            entries: Vec::new(),
            free: Vec::new(),
            postings: Postings::default(),
            retired_through: 0,
            oldest_live_ms: i64::MAX,
            oldest_stale_ms: i64::MAX,
        }
    }
}

impl ShardData {
    /// The entries whose slots are `refs` (as [`Postings::select`] gives them).
    fn entries_of<'a>(&'a self, refs: &'a [u32]) -> impl Iterator<Item = &'a LatestEntry> + 'a {
        refs.iter()
            .filter_map(|&r| self.entries.get(r as usize).and_then(Option::as_ref))
    }

    /// The slot of series `id`, if it has one.
    #[inline]
    fn slot_of(&self, id: u64) -> Option<usize> {
        let guess = self.next;
        if self.ids.get(guess) == Some(&id) && self.entries[guess].is_some() {
            return Some(guess);
        }
        let ids = &self.ids;
        self.index
            .find(id, |&slot| ids[slot as usize] == id)
            .map(|&slot| slot as usize)
    }

    /// Makes `sample` its series' newest entry unless a newer one is held; the change
    /// to publish, when `publishing`. `labels` gives the series' labels when it enters
    /// (`None`: not known, the sample is skipped).
    fn upsert(
        &mut self,
        sample: Point,
        histogram: Option<&Arc<FloatHistogram>>,
        labels: impl FnOnce() -> Option<Arc<Labels>>,
        publishing: bool,
    ) -> Option<LatestChange> {
        let entry = match self.slot_of(sample.series_id) {
            Some(slot) => {
                self.next = slot + 1;
                let entry = self.entries[slot]
                    .as_mut()
                    .expect("a slot in the map holds an entry");
                if entry.timestamp_ms > sample.timestamp_ms {
                    return None;
                }
                entry.timestamp_ms = sample.timestamp_ms;
                entry.value = sample.value;
                entry.histogram = histogram.cloned();
                entry
            }
            None => {
                let labels = labels()?;
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.ids[slot as usize] = sample.series_id;
                        slot
                    }
                    None => {
                        self.entries.push(None);
                        self.ids.push(sample.series_id);
                        (self.entries.len() - 1) as u32
                    }
                };
                self.postings.add(slot, &labels);
                let ids = &self.ids;
                self.index
                    .insert_unique(sample.series_id, slot, |&s| ids[s as usize]);
                self.next = slot as usize + 1;
                self.entries[slot as usize].insert(LatestEntry {
                    labels,
                    timestamp_ms: sample.timestamp_ms,
                    value: sample.value,
                    histogram: histogram.cloned(),
                })
            }
        };
        let oldest = if is_stale_marker(entry.value) {
            &mut self.oldest_stale_ms
        } else {
            &mut self.oldest_live_ms
        };
        *oldest = (*oldest).min(entry.timestamp_ms);
        publishing.then(|| {
            if is_stale_marker(entry.value) {
                LatestChange::Stale {
                    labels: entry.labels.clone(),
                    timestamp_ms: entry.timestamp_ms,
                }
            } else {
                LatestChange::Sample(entry.clone())
            }
        })
    }

    /// Drops the entries `retire` says to (called with each entry; it may record
    /// changes to publish), freeing their slots and unindexing them in one batch.
    /// Recomputes the oldest timestamps from the entries kept.
    fn retire(&mut self, mut retire: impl FnMut(&LatestEntry) -> bool) {
        let entries = &mut self.entries;
        let mut gone: Vec<(u32, Arc<Labels>)> = Vec::new();
        let (mut oldest_live, mut oldest_stale) = (i64::MAX, i64::MAX);
        self.index.retain(|&mut slot| {
            let cell = &mut entries[slot as usize];
            let Some(entry) = cell.as_ref() else {
                return true;
            };
            if !retire(entry) {
                let oldest = if is_stale_marker(entry.value) {
                    &mut oldest_stale
                } else {
                    &mut oldest_live
                };
                *oldest = (*oldest).min(entry.timestamp_ms);
                return true;
            }
            if let Some(entry) = cell.take() {
                gone.push((slot, entry.labels));
            }
            false
        });
        self.postings
            .remove(gone.iter().map(|(slot, labels)| (*slot, &**labels)));
        self.free.extend(gone.iter().map(|(slot, _)| *slot));
        self.oldest_live_ms = oldest_live;
        self.oldest_stale_ms = oldest_stale;
    }

    /// The frontier from which the next scan retires something (`u64::MAX`: never, the
    /// shard being empty); see [`LatestTable::retirement_due`].
    fn retirement_due(&self, lookback_ms: i64) -> u64 {
        // Retired once the frontier is past `timestamp + lookback` (stale: past the
        // marker), and scanned only a second of frontier after the last scan.
        let due = self
            .oldest_live_ms
            .saturating_add(lookback_ms)
            .min(self.oldest_stale_ms)
            .saturating_add(1);
        if due == i64::MAX {
            return u64::MAX;
        }
        (due.max(0) as u64).max(self.retired_through + RETIRE_EVERY_MS)
    }
}

/// Frontier progress (ms) between two retirement scans of a shard: a full scan per
/// step would cost more than the memory it frees.
const RETIRE_EVERY_MS: u64 = 1000;

/// Frontier progress (ms) between two sweeps of the worker's catalog shard: an entry
/// can only go once its latest-sample entry (which holds its labels) retired, which
/// takes a lookback delta, so sweeping every second scanned every series for nothing.
const SWEEP_EVERY_MS: u64 = 10_000;

/// One change to the table, as pushed to subscribers.
#[derive(Clone, Debug)]
pub enum LatestChange {
    /// A new newest sample of a series (a new series, or a new value).
    Sample(LatestEntry),
    /// The series got a stale marker at this time: it went away from its target.
    Stale {
        /// The series' labels.
        labels: Arc<Labels>,
        /// When the marker was written (ms).
        timestamp_ms: i64,
    },
    /// No sample for longer than the lookback delta: the series is no longer live.
    Expired {
        /// The series' labels.
        labels: Arc<Labels>,
        /// Its last sample's time (ms).
        timestamp_ms: i64,
    },
}

/// A subscriber's callback: called with each batch of changes, on the thread that
/// applied them (a feeding thread or a worker).
pub type ChangeListener = Arc<dyn Fn(&[LatestChange]) + Send + Sync>;

/// The subscribers, by id.
type Listeners = RwLock<Vec<(u64, ChangeListener)>>;

/// The maintained table, one shard per worker. Cheap to clone (shared).
#[derive(Clone)]
pub struct LatestTable {
    shards: Arc<Vec<Shard>>,
    listeners: Arc<Listeners>,
    next_listener: Arc<std::sync::atomic::AtomicU64>,
}

impl LatestTable {
    /// An empty table with one shard per worker.
    pub fn new(workers: usize) -> LatestTable {
        LatestTable {
            shards: Arc::new((0..workers.max(1)).map(|_| Shard::default()).collect()),
            listeners: Arc::new(Listeners::default()),
            next_listener: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Registers `listener` for every later change; returns an id for
    /// [`LatestTable::unsubscribe`].
    pub fn subscribe(&self, listener: ChangeListener) -> u64 {
        let id = self
            .next_listener
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, listener));
        id
    }

    /// Removes a subscriber.
    pub fn unsubscribe(&self, id: u64) {
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
    }

    /// How many subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn publish(&self, changes: &[LatestChange]) {
        if changes.is_empty() {
            return;
        }
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        for (_, listener) in listeners.iter() {
            listener(changes);
        }
    }

    /// Calls `visit` with every series whose newest sample is not a stale marker and
    /// lies in `(at - lookback, at]`, the way an instant selector at `at` sees it, where
    /// `at` is `clock()` read once per shard, *after* the shard is locked for reading.
    ///
    /// Why after: the table keeps only the newest sample of a series, and a sample is
    /// applied no earlier than its timestamp (a scrape's samples carry its start time, a
    /// rule's its evaluation time). A time read before the read began is older than the
    /// samples applied while the read goes on (a scrape that started after it), and
    /// those samples have already replaced the previous ones that were live then: the
    /// series would be missing from the read. Read under the lock, `at` is at least
    /// every timestamp the shard holds, so every live series is visited. Only a sample
    /// with an explicit timestamp in the future is left out, as Prometheus's
    /// `/federate` (`maxt` = now) leaves it out.
    pub fn for_each_live(
        &self,
        clock: impl Fn() -> i64,
        lookback_ms: i64,
        mut visit: impl FnMut(&LatestEntry),
    ) {
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            let at_ms = clock();
            for entry in shard.entries.iter().flatten() {
                if entry.is_live(at_ms, lookback_ms) {
                    visit(entry);
                }
            }
        }
    }

    /// [`LatestTable::for_each_live`] of the series some of `selectors` match (each
    /// once), found through each shard's label index: the cost follows the number of
    /// series selected, not the table's size. No selector selects nothing.
    pub fn for_each_live_matching(
        &self,
        clock: impl Fn() -> i64,
        lookback_ms: i64,
        selectors: &[Selector],
        mut visit: impl FnMut(&LatestEntry),
    ) {
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            let at_ms = clock();
            let refs = match selectors {
                [] => Vec::new(),
                [one] => shard.postings.select(one),
                many => {
                    let mut refs: Vec<u32> =
                        many.iter().flat_map(|s| shard.postings.select(s)).collect();
                    refs.sort_unstable();
                    refs.dedup();
                    refs
                }
            };
            for entry in shard.entries_of(&refs) {
                if entry.is_live(at_ms, lookback_ms) {
                    visit(entry);
                }
            }
        }
    }

    /// How many series the table holds (including stale ones not yet retired).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).index.len())
            .sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest input frontier (ms) at which the dataflow retires an entry, given
    /// no new sample: `u64::MAX` if the table is empty. Until the frontier reaches it,
    /// moving the frontier changes nothing here (a reader filters by its own clock).
    /// Never later than the true time (an entry updated since the last scan may count
    /// with its older timestamp).
    pub fn retirement_due(&self, lookback_ms: i64) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .retirement_due(lookback_ms)
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Applies samples written back from outside the dataflow, behind its frontier
    /// (rule outputs: an evaluation at `t` is emitted once the frontier passed `t`), as
    /// fed samples are: newest sample per series, published to subscribers, retired
    /// like the rest.
    ///
    /// The batch announces the labels of its series ([`SampleBatch::new_series`]),
    /// read only for a series entering the table; each shard is locked once per batch.
    pub fn apply_written_back(&self, batch: &SampleBatch) {
        let mut announced = None;
        self.apply(batch, |id| {
            announced
                .get_or_insert_with(|| batch.announced())
                .get(&id)
                .map(|&labels| Arc::clone(labels))
        });
    }

    /// Applies a batch fed to the dataflow ([`crate::Engine::feed`], which calls this
    /// once the batch's late samples are dropped and its announcements are in
    /// `catalog`): the table is updated by the feeding thread from the batch's columns,
    /// not by the workers after an exchange by series id. On the compare bench (100k
    /// series scraped every 5s, no rules) the exchange of every sample to the worker
    /// owning its shard and the upsert there took about 30% of the process's CPU in the
    /// ingest phase (perf record); the upsert alone is a fraction of that.
    pub fn apply_fed(&self, batch: &SampleBatch, catalog: &SeriesCatalog) {
        self.apply(batch, |id| catalog.with(id, Arc::clone));
    }

    /// Upserts every sample of `batch` into its series' shard (`id % shards`), each
    /// shard locked once; `labels` gives a series' labels when it enters the table
    /// (`None`: the sample is skipped). Changes are published in batch order.
    fn apply(&self, batch: &SampleBatch, mut labels: impl FnMut(u64) -> Option<Arc<Labels>>) {
        let publishing = self.subscribers() > 0;
        let shards = self.shards.len() as u64;
        // Each change with its sample's place in the batch: published in batch order.
        let mut changes: Vec<(usize, LatestChange)> = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let index = index as u64;
            // One pass over the ids per shard (shards are the workers, a handful), no
            // per-batch index lists.
            let mut mine = batch
                .series_ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| id % shards == index)
                .peekable();
            let has_histograms = || {
                batch
                    .histograms
                    .iter()
                    .any(|h| h.series_id % shards == index)
            };
            if mine.peek().is_none() && !has_histograms() {
                continue;
            }
            let mut data = shard.write().unwrap_or_else(|e| e.into_inner());
            for (at, &series_id) in mine {
                let point = Point {
                    series_id,
                    timestamp_ms: batch.timestamps_ms[at],
                    value: batch.values[at],
                    start_ms: 0,
                };
                if let Some(change) = data.upsert(point, None, || labels(series_id), publishing) {
                    changes.push((at, change));
                }
            }
            // The histograms, ordered after the floats (a float and a histogram of one
            // series at one time: the histogram is newest).
            let floats = batch.series_ids.len();
            for (at, h) in batch.histograms.iter().enumerate() {
                if h.series_id % shards != index {
                    continue;
                }
                let point = Point {
                    series_id: h.series_id,
                    timestamp_ms: h.timestamp_ms,
                    value: 0.0,
                    start_ms: 0,
                };
                let labels = || labels(h.series_id);
                if let Some(change) = data.upsert(point, Some(&h.histogram), labels, publishing) {
                    changes.push((floats + at, change));
                }
            }
        }
        if changes.is_empty() {
            return;
        }
        if self.shards.len() > 1 {
            changes.sort_by_key(|&(at, _)| at);
        }
        let changes: Vec<LatestChange> = changes.into_iter().map(|(_, c)| c).collect();
        self.publish(&changes);
    }

    fn shard(&self, index: usize) -> &Shard {
        &self.shards[index % self.shards.len()]
    }
}

/// Retires one worker's shard of the table as the input frontier moves (the worker
/// calls [`LatestRetirer::advance`] with its input time after each round of commands),
/// and sweeps its shard of the catalog. Entries are retired once the frontier passes
/// `timestamp + lookback_ms` (a stale marker: once it passes the marker).
pub struct LatestRetirer {
    table: LatestTable,
    catalog: Arc<SeriesCatalog>,
    worker_index: usize,
    lookback_ms: i64,
    retired_through: u64,
    swept_through: u64,
}

impl LatestRetirer {
    /// The retirer of `table`'s (and `catalog`'s) shard `worker_index`.
    pub fn new(
        table: LatestTable,
        catalog: Arc<SeriesCatalog>,
        worker_index: usize,
        lookback_ms: i64,
    ) -> LatestRetirer {
        LatestRetirer {
            table,
            catalog,
            worker_index,
            lookback_ms,
            retired_through: 0,
            swept_through: 0,
        }
    }

    /// The input frontier is now `front`: every sample fed before it was applied (see
    /// [`LatestTable::apply_fed`]). Retires at most once per `RETIRE_EVERY_MS` of
    /// frontier progress.
    pub fn advance(&mut self, front: u64) {
        if front == u64::MAX || front < self.retired_through + RETIRE_EVERY_MS {
            return;
        }
        self.retired_through = front;
        let lookback_ms = self.lookback_ms;
        let publishing = self.table.subscribers() > 0;
        let mut changes: Vec<LatestChange> = Vec::new();
        let mut data = self
            .table
            .shard(self.worker_index)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Scanned only once something is due (the oldest live entry expires, a stale
        // marker was passed): every second, a scan of a shard whose series all report
        // every few seconds found nothing to retire.
        if front >= data.retirement_due(lookback_ms) {
            data.retired_through = front;
            let front = front as i64;
            data.retire(|e| {
                let expired = e.timestamp_ms + lookback_ms < front;
                let stale_passed = is_stale_marker(e.value) && e.timestamp_ms < front;
                if expired && !is_stale_marker(e.value) && publishing {
                    changes.push(LatestChange::Expired {
                        labels: e.labels.clone(),
                        timestamp_ms: e.timestamp_ms,
                    });
                }
                expired || stale_passed
            });
        }
        drop(data);
        if front >= self.swept_through + SWEEP_EVERY_MS {
            self.swept_through = front;
            self.catalog.sweep(self.worker_index);
        }
        self.table.publish(&changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Sample;
    use std::cell::Cell;

    fn write_back(table: &LatestTable, samples: Vec<Sample>) {
        table.apply_written_back(&SampleBatch::from(samples));
    }

    fn sample(series_id: u64, timestamp_ms: i64, value: f64) -> Sample {
        let labels = Labels::from_pairs(vec![
            ("__name__".into(), "m".into()),
            ("id".into(), series_id.to_string()),
        ]);
        Sample {
            series_id,
            labels: Arc::new(labels),
            timestamp_ms,
            value,
            start_ms: 0,
        }
    }

    /// A native histogram is its series' newest sample (published with it); a later
    /// stale marker (a float sample) replaces it.
    #[test]
    fn a_histogram_is_the_newest_sample_until_a_float_replaces_it() {
        let table = LatestTable::new(2);
        let seen: Arc<std::sync::Mutex<Vec<LatestChange>>> = Arc::default();
        let sink = seen.clone();
        table.subscribe(Arc::new(move |changes: &[LatestChange]| {
            sink.lock().unwrap().extend_from_slice(changes)
        }));
        let h = Arc::new(FloatHistogram {
            count: 3.0,
            sum: 1.5,
            ..FloatHistogram::default()
        });
        let labels = sample(1, 0, 0.0).labels;
        let mut batch = SampleBatch::default();
        batch.new_series.push((1, labels.clone()));
        batch.push_histogram(1, 1_000, h.clone(), 0);
        table.apply(&batch, |_| Some(labels.clone()));
        let mut live = Vec::new();
        table.for_each_live(|| 1_000, 300_000, |e| live.push(e.clone()));
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].histogram.as_deref(), Some(&*h));
        match &seen.lock().unwrap()[..] {
            [LatestChange::Sample(e)] => assert_eq!(e.histogram.as_deref(), Some(&*h)),
            other => panic!("{other:?}"),
        }
        write_back(&table, vec![sample(1, 2_000, crate::sample::STALE_MARKER)]);
        let mut live = 0;
        table.for_each_live(|| 2_000, 300_000, |_| live += 1);
        assert_eq!(live, 0);
    }

    /// Issue 19: a scrape applied while a read goes on (here, to the shard read second)
    /// replaces a live sample with a newer one; the read must still show the series.
    #[test]
    fn a_sample_applied_during_a_read_is_read() {
        let table = LatestTable::new(2);
        // Series 0 lives in shard 0, series 1 in shard 1.
        write_back(&table, vec![sample(0, 1_000, 1.0), sample(1, 1_000, 1.0)]);
        let clock = Cell::new(1_000);
        let mut seen = Vec::new();
        table.for_each_live(
            || clock.get(),
            300_000,
            |e| {
                if e.labels.get("id") == Some("0") {
                    // The next scrape starts and is applied while shard 0 is read.
                    clock.set(1_500);
                    write_back(&table, vec![sample(1, 1_500, 2.0)]);
                }
                seen.push((e.labels.get("id").unwrap().to_string(), e.value));
            },
        );
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, vec![("0".into(), 1.0), ("1".into(), 2.0)]);
    }

    /// The indexed read visits what checking every live entry against the selectors
    /// visits, as series come, get new values, go stale and are retired (their slots
    /// reused by later series).
    #[test]
    fn an_indexed_read_visits_what_a_scan_visits() {
        use crate::postings::testing::{random_labels, random_selector};
        let mut rng = fastrand::Rng::with_seed(19);
        let table = LatestTable::new(2);
        for round in 0..40i64 {
            let samples = (0..rng.usize(0..80))
                .map(|_| {
                    let labels = Arc::new(random_labels(&mut rng));
                    let value = if rng.u8(0..8) == 0 {
                        crate::sample::STALE_MARKER
                    } else {
                        rng.f64()
                    };
                    Sample {
                        series_id: labels.hash(),
                        labels,
                        timestamp_ms: round * 100 + rng.i64(0..100),
                        value,
                        start_ms: 0,
                    }
                })
                .collect();
            write_back(&table, samples);
            for shard in table.shards.iter() {
                shard
                    .write()
                    .unwrap()
                    .retire(|e| e.timestamp_ms + 300 < round * 100);
            }
            let at = round * 100 + 50;
            for _ in 0..30 {
                let selectors: Vec<Selector> = (0..rng.usize(0..3))
                    .map(|_| random_selector(&mut rng))
                    .collect();
                let mut scanned = Vec::new();
                table.for_each_live(
                    || at,
                    250,
                    |e| {
                        if selectors.iter().any(|s| s.matches(&e.labels)) {
                            scanned.push((e.labels.to_string(), e.timestamp_ms));
                        }
                    },
                );
                let mut indexed = Vec::new();
                table.for_each_live_matching(
                    || at,
                    250,
                    &selectors,
                    |e| indexed.push((e.labels.to_string(), e.timestamp_ms)),
                );
                scanned.sort();
                indexed.sort();
                assert_eq!(indexed, scanned, "round {round}, {selectors:?}");
            }
        }
    }

    #[test]
    fn stale_expired_and_future_samples_are_not_live() {
        let table = LatestTable::new(1);
        write_back(
            &table,
            vec![
                sample(0, 1_000, 1.0),
                sample(1, 1_000, crate::sample::STALE_MARKER),
                sample(2, 2_001, 1.0),
            ],
        );
        let mut live = Vec::new();
        table.for_each_live(
            || 2_000,
            1_000,
            |e| live.push(e.labels.get("id").unwrap().to_string()),
        );
        assert!(live.is_empty(), "{live:?}");
        table.for_each_live(
            || 1_999,
            1_000,
            |e| live.push(e.labels.get("id").unwrap().to_string()),
        );
        assert_eq!(live, vec!["0".to_string()]);
    }
}
