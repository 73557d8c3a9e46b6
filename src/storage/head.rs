//! The in-memory head: the recent samples of every series, appended in time order.
//!
//! Contract: [`Head::append`] keeps samples per series in timestamp order, refusing
//! (and counting) samples older than the newest one already held for that series, and
//! duplicates of the newest timestamp, as Prometheus's head does. [`Head::select`] returns
//! the samples of matching series in a closed time range. [`Head::truncate_before`] drops
//! what has left the retention window, and series with nothing left.
//!
//! Every series carries a small number, its *ref*, by which the write-ahead log names
//! it. [`Head::append_logged`] hands the new series and the accepted samples of a batch
//! to a logging callback while it still holds the write lock, so no reader sees a
//! sample before it is logged; [`Head::replay_series`] and [`Head::replay_samples`]
//! rebuild the head from the log with the same refs.

use super::chunk::{EncodedChunk, SeriesChunks};
use dataflows::{Labels, Sample, Selector};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

struct MemSeries {
    labels: Arc<Labels>,
    wal_ref: u32,
    samples: SeriesChunks,
}

/// What one append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples stored.
    pub appended: usize,
    /// Series seen for the first time.
    pub new_series: usize,
    /// Samples refused: older than (or at the same time as) the series' newest sample.
    pub out_of_order: usize,
    /// Samples refused: older than the bound set by [`Head::refuse_before`] (their time
    /// range is in a block already).
    pub out_of_bounds: usize,
}

/// The samples of one series in a time range, as [`Head::select`] returns them.
pub type SeriesSamplesInRange = (Arc<Labels>, Vec<(i64, f64)>);

#[derive(Default)]
struct Inner {
    /// Series id ([`Labels::hash`]) → series.
    series: HashMap<u64, MemSeries>,
    next_ref: u32,
}

/// The in-memory head.
pub struct Head {
    inner: RwLock<Inner>,
    /// Samples older than this are refused ([`Head::refuse_before`]).
    min_valid_t: AtomicI64,
}

impl Default for Head {
    fn default() -> Head {
        Head {
            inner: RwLock::default(),
            min_valid_t: AtomicI64::new(i64::MIN),
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
        match self.append_logged(batch, |_, _| Ok::<(), std::convert::Infallible>(()), |_| {}) {
            Ok(outcome) => outcome,
            Err(never) => match never {},
        }
    }

    /// Appends a batch and, before any reader can see it, calls `log` with the series
    /// created (`(ref, labels)`) and the samples accepted (`(ref, ts, value)`). If `log`
    /// fails, nothing of the batch is applied (no series created, no sample stored)
    /// and its error is returned. Once the batch is applied, and still under the lock
    /// (so concurrent appends are seen in the order they were applied), `applied` gets
    /// the indices in `batch` of the samples stored.
    ///
    /// Samples older than [`Head::refuse_before`]'s bound are refused here, under the
    /// write lock, so a block cut that raised the bound before reading the head sees
    /// every sample the head accepted below it.
    pub fn append_logged<E>(
        &self,
        batch: &[Sample],
        log: impl FnOnce(&[(u32, &Labels)], &[(u32, i64, f64)]) -> Result<(), E>,
        applied: impl FnOnce(&[usize]),
    ) -> Result<AppendOutcome, E> {
        let mut outcome = AppendOutcome::default();
        let mut inner = self.inner.write();
        let inner = &mut *inner;
        let min_valid = self.min_valid_t.load(Ordering::Acquire);
        // Decide first, apply after the log succeeded.
        let mut created: Vec<(u64, u32, &Arc<Labels>)> = Vec::new();
        // Per series touched by the batch: its ref and its newest timestamp so far.
        let mut touched: HashMap<u64, (u32, Option<i64>)> = HashMap::new();
        let mut accepted: Vec<(u32, i64, f64)> = Vec::with_capacity(batch.len());
        let mut accepted_at: Vec<usize> = Vec::with_capacity(batch.len());
        for (at, sample) in batch.iter().enumerate() {
            if sample.timestamp_ms < min_valid {
                outcome.out_of_bounds += 1;
                continue;
            }
            let id = sample.series_id;
            let state = touched
                .entry(id)
                .or_insert_with(|| match inner.series.get(&id) {
                    Some(s) => (s.wal_ref, s.samples.last_ts()),
                    None => {
                        let wal_ref = inner.next_ref.wrapping_add(created.len() as u32);
                        created.push((id, wal_ref, &sample.labels));
                        (wal_ref, None)
                    }
                });
            if state.1.is_some_and(|newest| newest >= sample.timestamp_ms) {
                outcome.out_of_order += 1;
                continue;
            }
            state.1 = Some(sample.timestamp_ms);
            accepted.push((state.0, sample.timestamp_ms, sample.value));
            accepted_at.push(at);
        }
        let new_series: Vec<(u32, &Labels)> = created.iter().map(|c| (c.1, c.2.as_ref())).collect();
        log(&new_series, &accepted)?;
        inner.next_ref = inner.next_ref.wrapping_add(created.len() as u32);
        outcome.new_series = created.len();
        for (id, wal_ref, labels) in created {
            inner.series.insert(
                id,
                MemSeries {
                    labels: labels.clone(),
                    wal_ref,
                    samples: SeriesChunks::new(),
                },
            );
        }
        for &at in &accepted_at {
            let sample = &batch[at];
            if let Some(s) = inner.series.get_mut(&sample.series_id) {
                s.samples.push(sample.timestamp_ms, sample.value);
            }
        }
        outcome.appended = accepted_at.len();
        applied(&accepted_at);
        Ok(outcome)
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

    /// Replay: (re)defines the series `wal_ref` as `labels`; returns its series id. A
    /// series already held under another ref takes the new one.
    pub fn replay_series(&self, wal_ref: u32, labels: Labels) -> u64 {
        let id = labels.hash();
        let mut inner = self.inner.write();
        inner.next_ref = inner.next_ref.max(wal_ref.wrapping_add(1));
        inner
            .series
            .entry(id)
            .and_modify(|s| s.wal_ref = wal_ref)
            .or_insert_with(|| MemSeries {
                labels: Arc::new(labels),
                wal_ref,
                samples: SeriesChunks::new(),
            });
        id
    }

    /// Replay: appends logged samples of series ids; returns how many were refused as
    /// out of order (or for an unknown series).
    pub fn replay_samples(&self, samples: impl Iterator<Item = (Option<u64>, i64, f64)>) -> usize {
        let mut refused = 0;
        let mut inner = self.inner.write();
        for (id, ts, value) in samples {
            match id.and_then(|id| inner.series.get_mut(&id)) {
                Some(s) if s.samples.last_ts().is_none_or(|last| last < ts) => {
                    s.samples.push(ts, value)
                }
                _ => refused += 1,
            }
        }
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
        let doomed: Vec<u64> = inner
            .series
            .iter()
            .filter(|(_, s)| selectors.iter().any(|sel| sel.matches(&s.labels)))
            .filter(|(_, s)| s.samples.has_sample_in(min_t, max_t))
            .map(|(&id, _)| id)
            .collect();
        let deletions: Vec<(u32, i64, i64)> = doomed
            .iter()
            .filter_map(|id| inner.series.get(id))
            .map(|s| (s.wal_ref, min_t, max_t))
            .collect();
        log(&deletions)?;
        let mut deleted = 0;
        for id in doomed {
            if let Some(s) = inner.series.get_mut(&id) {
                deleted += s.samples.delete_range(min_t, max_t);
            }
        }
        Ok(deleted)
    }

    /// Replay: deletes the samples of series `id` in `[min_t, max_t]`.
    pub fn replay_delete(&self, id: u64, min_t: i64, max_t: i64) {
        if let Some(s) = self.inner.write().series.get_mut(&id) {
            s.samples.delete_range(min_t, max_t);
        }
    }

    /// The samples of every series matching `selector` with timestamps in `[start, end]`.
    /// Series with no sample in the range are left out.
    pub fn select(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesSamplesInRange> {
        let inner = self.inner.read();
        let mut out = Vec::new();
        for s in inner.series.values() {
            if !selector.matches(&s.labels) {
                continue;
            }
            let samples: Vec<(i64, f64)> = s.samples.range(start_ms, end_ms).collect();
            if !samples.is_empty() {
                out.push((s.labels.clone(), samples));
            }
        }
        out
    }

    /// Labels of every series matching any of `selectors` (all series if there are
    /// none) with at least one sample in `[start, end]`, sorted.
    pub fn series_in_range(
        &self,
        selectors: &[Selector],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        let inner = self.inner.read();
        let mut out: Vec<Arc<Labels>> = inner
            .series
            .values()
            .filter(|s| selectors.is_empty() || selectors.iter().any(|sel| sel.matches(&s.labels)))
            .filter(|s| s.samples.has_sample_in(start_ms, end_ms))
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
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
        inner.series.retain(|_, s| {
            s.samples.drop_before(cutoff_ms);
            !s.samples.is_empty()
        });
        let mut live = inner
            .series
            .values()
            .map(|s| (s.wal_ref, s.labels.as_ref()));
        then(&mut live)
    }

    /// Every series with samples in `[start, end]`, encoded afresh into chunks that
    /// hold only those samples (to persist them in a block).
    pub fn encode_range(&self, start: i64, end: i64) -> Vec<(Arc<Labels>, Vec<EncodedChunk>)> {
        let inner = self.inner.read();
        inner
            .series
            .values()
            .map(|s| (s.labels.clone(), s.samples.encode_range(start, end)))
            .filter(|(_, chunks)| !chunks.is_empty())
            .collect()
    }

    /// The oldest and newest sample timestamps held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let inner = self.inner.read();
        let min = inner
            .series
            .values()
            .filter_map(|s| s.samples.first_ts())
            .min()?;
        let max = inner
            .series
            .values()
            .filter_map(|s| s.samples.last_ts())
            .max()?;
        Some((min, max))
    }

    /// The number of series held.
    pub fn series_count(&self) -> usize {
        self.inner.read().series.len()
    }

    /// The number of samples held.
    pub fn sample_count(&self) -> usize {
        self.inner
            .read()
            .series
            .values()
            .map(|s| s.samples.len())
            .sum()
    }

    /// Bytes of compressed sample data held.
    pub fn chunk_bytes(&self) -> usize {
        self.inner
            .read()
            .series
            .values()
            .map(|s| s.samples.encoded_bytes())
            .sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dataflows::LabelMatcher;

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
        }
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
                out_of_order: 0,
                out_of_bounds: 0,
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
                out_of_order: 2,
                out_of_bounds: 0,
            }
        );
        assert_eq!(head.sample_count(), 4);
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
            &[sample("a", 20, 2.0), sample("b", 20, 2.0)],
            |_, _| Err("disk full"),
            |_| panic!("nothing applied"),
        );
        assert_eq!(refused, Err("disk full"));
        assert_eq!((head.series_count(), head.sample_count()), (1, 1));
        // The refs the refused batch would have used are handed out again.
        let mut logged = Vec::new();
        let out = head
            .append_logged(
                &[sample("b", 20, 2.0), sample("a", 20, 2.0)],
                |series, samples| {
                    logged.push((
                        series.iter().map(|s| s.0).collect::<Vec<_>>(),
                        samples.to_vec(),
                    ));
                    Ok::<(), ()>(())
                },
                |at| assert_eq!(at, [0, 1]),
            )
            .unwrap();
        assert_eq!((out.appended, out.new_series), (2, 1));
        assert_eq!(logged, vec![(vec![1], vec![(1, 20, 2.0), (0, 20, 2.0)])]);
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
        assert_eq!((out.appended, out.out_of_order), (2, 2));
        let all = head.select(&Selector { matchers: vec![] }, 0, 100);
        assert_eq!(all[0].1, vec![(20, 1.0), (30, 4.0)]);
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
}
