//! The per-target scrape cache, like Prometheus's `scrapeCache`: what each series
//! text of a target's exposition became, and which series the last scrape produced.
//!
//! Contract:
//! - An entry maps a *series text* (the metric name and label block exactly as
//!   exposed, see [`crate::scrape::exposition`]) to the final series after target
//!   labels and metric relabeling — its id, shared labels and storage handle
//!   ([`SeriesRef`]) — or to "dropped by relabeling". Texts are told apart by their
//!   128-bit hash, not kept (see `Entry::check`). A text found here is not parsed
//!   into labels, hashed, relabeled or checked against the label limits again, and its
//!   samples reach the head without a lookup there: one hash of the text per known
//!   sample, the series then found by its slot.
//! - Entries are kept in the order their texts were first exposed, and each lookup
//!   first tries the entry after the one the previous lookup found: a target exposing
//!   its series in the same order every scrape (client libraries sort them) costs one
//!   compare of the hash per line and no probe of the hash index, which is used only
//!   when the order changed (a new series, one gone, another order), and resynchronises
//!   the next guess.
//! - The storage handle travels with the samples of a scrape ([`Lookup::Series`] lends
//!   it out) and is given back by [`ScrapeCache::give_back`] once storage has appended
//!   them (and filled in the handles of new series), so no reference count moves for a
//!   known series.
//! - Entries hold for one target's settings and one exposition format: a loop is
//!   replaced when its target's settings change (`TargetSpec::same_settings`: relabel
//!   rules, `honor_labels`, limits, …), which starts an empty cache, and a change of
//!   format between scrapes empties it.
//! - Staleness is by final series, not by text: a series produced (without an
//!   explicit timestamp) by the previous scrape and not by this one is reported stale
//!   once by [`ScrapeCache::end`]; a failed scrape reports every such series. Within
//!   one scrape a series is produced once: a later sample of a series the scrape
//!   already produced (a repeated line, or two texts that relabel to one series) is
//!   reported as a duplicate, and the first value is kept, as Prometheus's head does.
//! - With `created-timestamp-zero-ingestion`, a series remembers the start timestamp
//!   whose zero sample was last written for it ([`ScrapeCache::record_starts`]), so a
//!   start repeated scrape after scrape (a counter's, for its whole life) is written
//!   once ([`ScrapeCache::start_is_new`]); Prometheus leaves that to its head, which
//!   refuses the repeats as out of order. Only the start's low 32 bits are kept (the
//!   entry stays 40 bytes): a new start that equals the last in them, 2^32 ms
//!   (49.7 days) apart to the millisecond, is not written.
//! - Entries not seen in a successful scrape are forgotten at its end (Prometheus's
//!   iteration-based clean-up); failed scrapes keep them unless the cache has grown
//!   past twice its last successful size plus 1,000, so churn cannot grow it without
//!   bound.

use crate::scrape::exposition::Format;
use crate::storage::SeriesRef;
use dataflows::render::window::KeyMap;
use dataflows::Labels;
use hashbrown::HashTable;
use std::sync::Arc;

/// See the module documentation.
#[derive(Default)]
pub struct ScrapeCache {
    /// The series texts, in the order they were first exposed (see the module
    /// documentation), each by its 128-bit hash.
    entries: Vec<Entry>,
    /// A text's entry (its position in `entries`) by the low half of the text's hash
    /// ([`Entry::key`]).
    index: HashTable<u32>,
    /// The entry the next lookup tries first: the one after the entry the previous
    /// lookup (or insertion) found.
    next: usize,
    /// The series every entry leads to, by slot; `None`: a free slot.
    slots: Vec<Option<Tracked>>,
    /// Free slots, reused first.
    free: Vec<Slot>,
    /// Final series id → its slot (two texts may relabel to one series).
    by_id: KeyMap<u64, Slot>,
    /// Counts scrapes from 1 (0 is "never"; after 2^32 - 1 it starts at 1 again);
    /// marks what the current one saw. 32 bits keep [`Entry`] at 16 bytes and
    /// [`Tracked`] at 40: an entry or series seen by a scrape exactly 2^32 - 1 scrapes
    /// ago and by none since would count as seen, which only a target failing every
    /// scrape for 136 years at one per second could meet.
    iteration: u32,
    format: Option<Format>,
    /// Entries after the last successful scrape.
    successful_count: usize,
}

/// Where the cache keeps a series; stays the series' while a sample of it is in a
/// scrape's batch.
pub type Slot = u32;

/// [`Entry::series`] of a text metric relabeling drops; no slot gets this far.
const DROPPED: Slot = Slot::MAX;

struct Entry {
    /// The low half of the text's 128-bit hash ([`text_hash`]): what the index hashes.
    key: u64,
    /// The high half of the text's 128-bit hash ([`text_hash`]). Keeping this instead
    /// of the text saves the text's allocation, about 80 bytes per series of the
    /// compare bench's fleet (a 60-byte text rounded up by malloc, and its 16-byte
    /// box); an entry in the vector and a `u32` in the index take less than the hash
    /// map of 24-byte entries they replace (at 87.5% load or less). Two texts of one target that collide on all 128 bits of xxh3 (odds about
    /// n² / 2^129 for n texts: 10^-27 for a million) would share an entry.
    check: u64,
    /// The final series' slot, [`DROPPED`] if metric relabeling drops the series (not
    /// an `Option`, which would take 8 bytes).
    series: Slot,
    last_iteration: u32,
}

struct Tracked {
    id: u64,
    labels: Arc<Labels>,
    /// The series' storage handle, once storage has stored a sample of it; `None`
    /// while lent out with a sample (see [`ScrapeCache::give_back`]).
    storage: Option<SeriesRef>,
    /// The last scrape that produced a sample of the series (any timestamp).
    last_used: u32,
    /// The last scrape that produced a sample without an explicit timestamp.
    last_untimed: u32,
    /// Produced without an explicit timestamp by the previous scrape: gets a stale
    /// marker if the next one does not produce it.
    live: bool,
    /// The low 32 bits of the start timestamp whose zero sample was written last (0:
    /// none).
    start: u32,
}

/// What the cache says about a sample's series text.
pub enum Lookup<'a> {
    /// Not cached: read its labels and [`ScrapeCache::insert`] them.
    Unknown,
    /// Metric relabeling drops it.
    Dropped,
    /// The scrape already produced this series: not a new sample.
    Duplicate,
    /// The final series: its slot, id and labels, and its storage handle if the cache
    /// has one (lent: give it back with [`ScrapeCache::give_back`]).
    Series(Slot, u64, &'a Arc<Labels>, Option<SeriesRef>),
}

impl ScrapeCache {
    /// An empty cache.
    pub fn new() -> ScrapeCache {
        ScrapeCache::default()
    }

    /// Series texts cached: about the number of samples the next scrape brings.
    pub fn cached_texts(&self) -> usize {
        self.entries.len()
    }

    /// Starts a scrape whose body is in `format`.
    pub fn begin(&mut self, format: Format) {
        if self.format != Some(format) {
            // Series texts were checked by the other format's grammar.
            self.entries.clear();
            self.index.clear();
            self.format = Some(format);
        }
        self.next = 0;
        self.iteration = self.iteration.checked_add(1).unwrap_or(1);
    }

    /// Looks a series text up and, if it is cached, marks it seen by this scrape;
    /// `timed` says the sample has an explicit timestamp that is kept.
    pub fn lookup(&mut self, text: &[u8], timed: bool) -> Lookup<'_> {
        let iteration = self.iteration;
        let (key, check) = text_hash(text);
        let Some(at) = self.find(key, check) else {
            return Lookup::Unknown;
        };
        self.next = at + 1;
        let entry = &mut self.entries[at];
        entry.last_iteration = iteration;
        if entry.series == DROPPED {
            return Lookup::Dropped;
        }
        let slot = entry.series;
        match self.slots.get_mut(slot as usize) {
            Some(Some(tracked)) => tracked.produce(slot, iteration, timed),
            _ => Lookup::Unknown,
        }
    }

    /// The position of the entry of the text hashed to `(key, check)`: the guess
    /// first, then the index.
    ///
    /// The guess (the entry after the last one found) is the fast path the compare
    /// bench (100k series, 50 targets, scraped every 5s) showed the need for: with a
    /// probe of a hash map per sample, the cache took 16% of the process's CPU in its
    /// ingest phase (perf record), mostly waiting on memory for the probe.
    #[inline]
    fn find(&self, key: u64, check: u64) -> Option<usize> {
        if let Some(entry) = self.entries.get(self.next) {
            if entry.key == key && entry.check == check {
                return Some(self.next);
            }
        }
        let at = self.position(key)?;
        (self.entries[at].check == check).then_some(at)
    }

    /// The position of the entry whose key is `key`.
    fn position(&self, key: u64) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(key, |&at| entries[at as usize].key == key)
            .map(|&at| at as usize)
    }

    /// Rebuilds the index from `entries` (after entries were removed).
    fn reindex(&mut self) {
        let entries = &self.entries;
        self.index.clear();
        self.index
            .reserve(entries.len(), |&at| entries[at as usize].key);
        for (at, entry) in entries.iter().enumerate() {
            self.index
                .insert_unique(entry.key, at as u32, |&at| entries[at as usize].key);
        }
    }

    /// Caches what a series text not found by [`ScrapeCache::lookup`] became
    /// (`None`: dropped by relabeling) and marks it seen by this scrape.
    pub fn insert(&mut self, text: &[u8], labels: Option<Labels>, timed: bool) -> Lookup<'_> {
        let iteration = self.iteration;
        let slot = labels.map(|labels| self.slot_of(labels));
        // A hash collision with another text: that one keeps the entry, this one is
        // read in full every time.
        let (key, check) = text_hash(text);
        if self.position(key).is_none() {
            let at = self.entries.len();
            self.entries.push(Entry {
                key,
                check,
                series: slot.unwrap_or(DROPPED),
                last_iteration: iteration,
            });
            let entries = &self.entries;
            self.index
                .insert_unique(key, at as u32, |&at| entries[at as usize].key);
            self.next = at + 1;
        }
        match slot.and_then(|slot| Some((slot, self.slots[slot as usize].as_mut()?))) {
            Some((slot, tracked)) => tracked.produce(slot, iteration, timed),
            None => Lookup::Dropped,
        }
    }

    /// The slot of the series `labels`, taken (a free one first) if it has none.
    fn slot_of(&mut self, labels: Labels) -> Slot {
        let id = labels.hash();
        if let Some(&slot) = self.by_id.get(&id) {
            return slot;
        }
        let tracked = Tracked {
            id,
            labels: Arc::new(labels),
            storage: None,
            last_used: 0,
            last_untimed: 0,
            live: false,
            start: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(tracked);
                slot
            }
            None => {
                self.slots.push(Some(tracked));
                (self.slots.len() - 1) as Slot
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    /// Gives back the storage handles lent with this scrape's samples, or filled in
    /// by storage for new series: `(slot, handle)` per sample. A handle of a series
    /// the cache no longer tracks (in that slot) is dropped.
    pub fn give_back(&mut self, handles: impl Iterator<Item = (Slot, Option<SeriesRef>)>) {
        for (slot, handle) in handles {
            let (Some(handle), Some(Some(tracked))) = (handle, self.slots.get_mut(slot as usize))
            else {
                continue;
            };
            if tracked.id == handle.series_id() && tracked.storage.is_none() {
                tracked.storage = Some(handle);
            }
        }
    }

    /// Whether `start_ms` is not the start whose zero sample was last written for the
    /// series in `slot` (see the module documentation).
    pub fn start_is_new(&self, slot: Slot, start_ms: i64) -> bool {
        match self.slots.get(slot as usize) {
            Some(Some(tracked)) => tracked.start == 0 || tracked.start != start_ms as u32,
            _ => true,
        }
    }

    /// Records the starts whose zero samples a stored batch held: `(slot, start)`.
    pub fn record_starts(&mut self, starts: impl IntoIterator<Item = (Slot, i64)>) {
        for (slot, start_ms) in starts {
            if let Some(Some(tracked)) = self.slots.get_mut(slot as usize) {
                tracked.start = start_ms as u32;
            }
        }
    }

    /// Ends the scrape: calls `stale` for each series the previous scrape produced
    /// without an explicit timestamp and this one did not (every such series if the
    /// scrape failed), forgets what the clean-up rule says, and returns how many
    /// series this scrape produced that the previous one did not.
    pub fn end(&mut self, succeeded: bool, mut stale: impl FnMut(u64, &Arc<Labels>)) -> usize {
        let iteration = self.iteration;
        let mut added = 0;
        for tracked in self.slots.iter_mut().flatten() {
            let now = succeeded && tracked.last_untimed == iteration;
            if now && !tracked.live {
                added += 1;
            }
            if tracked.live && !now {
                stale(tracked.id, &tracked.labels);
            }
            tracked.live = now;
        }
        let flush = if succeeded {
            self.successful_count = self.entries.len();
            true
        } else {
            self.entries.len() > self.successful_count * 2 + 1000
        };
        if flush {
            if self.entries.iter().any(|e| e.last_iteration != iteration) {
                // Kept in their order; positions moved, so the index is rebuilt (only
                // when a text vanished, not in a steady state).
                self.entries.retain(|e| e.last_iteration == iteration);
                self.reindex();
            }
            // An entry seen now marked its series used now, so none is left dangling;
            // the series of this scrape's batch keep their slots.
            for (slot, place) in self.slots.iter_mut().enumerate() {
                let Some(tracked) = place else { continue };
                if tracked.last_used != iteration && !tracked.live {
                    self.by_id.remove(&tracked.id);
                    *place = None;
                    self.free.push(slot as Slot);
                }
            }
        }
        added
    }

    /// The series the last scrape produced without an explicit timestamp, for the
    /// stale markers written when the target goes away.
    pub fn live(&self) -> impl Iterator<Item = (u64, &Arc<Labels>)> {
        self.slots
            .iter()
            .flatten()
            .filter(|t| t.live)
            .map(|t| (t.id, &t.labels))
    }
}

impl Tracked {
    fn produce(&mut self, slot: Slot, iteration: u32, timed: bool) -> Lookup<'_> {
        if !timed {
            if self.last_untimed == iteration {
                return Lookup::Duplicate;
            }
            self.last_untimed = iteration;
        }
        self.last_used = iteration;
        // A second sample of the series in one scrape (explicit timestamps) goes
        // without the handle: storage finds the series by id.
        Lookup::Series(slot, self.id, &self.labels, self.storage.take())
    }
}

/// A text's 128-bit xxh3 hash: (the map key, the check kept in the entry).
fn text_hash(text: &[u8]) -> (u64, u64) {
    let hash = xxhash_rust::xxh3::xxh3_128(text);
    (hash as u64, (hash >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Labels {
        Labels::from_pairs(vec![("__name__".to_string(), name.to_string())])
    }

    fn scrape(
        cache: &mut ScrapeCache,
        texts: &[&str],
        succeeded: bool,
    ) -> (Vec<String>, Vec<String>, usize) {
        cache.begin(Format::PrometheusText);
        let mut produced = Vec::new();
        for text in texts {
            let lookup = match cache.lookup(text.as_bytes(), false) {
                Lookup::Unknown => {
                    // Relabeling drops names starting with "drop".
                    let l = (!text.starts_with("drop")).then(|| labels(text.trim_end_matches('2')));
                    cache.insert(text.as_bytes(), l, false)
                }
                other => other,
            };
            if let Lookup::Series(_, _, l, _) = lookup {
                produced.push(l.metric_name().to_string());
            }
        }
        let mut stale = Vec::new();
        let added = cache.end(succeeded, |_, l| stale.push(l.metric_name().to_string()));
        stale.sort();
        (produced, stale, added)
    }

    #[test]
    fn known_texts_are_produced_vanished_ones_stale_once() {
        let mut cache = ScrapeCache::new();
        assert_eq!(
            scrape(&mut cache, &["a", "b", "drop_c"], true),
            (vec!["a".into(), "b".into()], vec![], 2)
        );
        assert_eq!(
            scrape(&mut cache, &["a", "drop_c"], true),
            (vec!["a".into()], vec!["b".into()], 0)
        );
        assert_eq!(
            scrape(&mut cache, &["a"], true),
            (vec!["a".into()], vec![], 0)
        );
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.by_id.len(), 1);
        assert_eq!(cache.slots.iter().flatten().count(), 1);
        // A failed scrape marks everything stale; the next success adds it back.
        assert_eq!(
            scrape(&mut cache, &["a"], false),
            (vec!["a".into()], vec!["a".into()], 0)
        );
        assert_eq!(
            scrape(&mut cache, &["a"], true),
            (vec!["a".into()], vec![], 1)
        );
    }

    /// The lookup's guess follows the order of the texts it found last; in any other
    /// order (reversed, a text inserted, texts gone and back) the same series are
    /// found, and entries of vanished texts leave the index with them.
    #[test]
    fn any_order_finds_the_same_series() {
        let mut cache = ScrapeCache::new();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let rounds: [(&[&str], &[&str], usize); 5] = [
            (&["a", "b", "c", "d"], &[], 4),
            (&["d", "c", "b", "a"], &[], 0),
            (&["a", "x", "b", "c", "d"], &[], 1),
            (&["b", "d"], &["a", "c", "x"], 0),
            (&["a", "b", "c", "d"], &[], 2),
        ];
        for (texts, stale, added) in rounds {
            assert_eq!(
                scrape(&mut cache, texts, true),
                (strings(texts), strings(stale), added),
                "{texts:?}"
            );
            assert_eq!(cache.entries.len(), texts.len());
            assert_eq!(cache.index.len(), texts.len());
            for text in texts {
                let (key, check) = text_hash(text.as_bytes());
                let at = cache.position(key).unwrap();
                assert_eq!(cache.entries[at].check, check);
            }
        }
    }

    /// The per-series sizes the field comments count on (64-bit targets).
    #[test]
    fn entries_stay_compact() {
        assert!(std::mem::size_of::<Entry>() <= 24);
        assert!(std::mem::size_of::<Option<Tracked>>() <= 40);
    }

    #[test]
    fn a_series_is_produced_once_per_scrape() {
        let mut cache = ScrapeCache::new();
        // "a2" relabels to the series of "a": a duplicate, like a repeated line.
        assert_eq!(
            scrape(&mut cache, &["a", "a", "a2"], true).0,
            vec!["a".to_string()]
        );
        assert_eq!(
            scrape(&mut cache, &["a2", "a"], true).0,
            vec!["a".to_string()]
        );
        // Only "a2" now: the series lives on through the other text.
        assert_eq!(
            scrape(&mut cache, &["a2"], true),
            (vec!["a".into()], vec![], 0)
        );
    }
}
