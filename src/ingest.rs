//! Ingest: the one path every scraped sample takes into storage and the dataflow.
//!
//! Contract: a scrape calls [`Ingester::begin_scrape`] *before* it reads the clock for
//! its sample timestamps and holds the returned [`ScrapeInFlight`] until it has committed
//! its samples. The watermark given to the dataflow is the minimum start time of the
//! scrapes in flight (or now, when none is), so the input frontier never passes a
//! scrape that can still produce samples, and once the last scrape in flight has ended
//! it is past that scrape's samples (see [`ScrapeInFlight`]'s drop). While a target
//! brings samples with their own, older timestamps (federation), the watermark is held
//! back further by their lag (see [`crate::holdback`]). [`Ingester::commit`] writes to
//! storage first and then feeds the dataflow what storage stored (storage forwards it
//! to the remote write queues; a sample repeated from the previous scrape is neither).
//! A batch travels as one [`SampleBatch`] all the way: columns of series ids,
//! timestamps and values, with the labels only of the series its producer has no
//! storage handle for (see [`dataflows::catalog`]: a scrape cache slot keeps the
//! labels it announced, so its series stays in the dataflow's catalog while the slot
//! lives); storage reads labels only for series it creates, remote write only for
//! series it has none queued of, and the dataflow gets the same columns, filtered to
//! what storage stored.
//! [`Ingester::commit_histograms`] writes native-histogram samples to storage and
//! the remote write queues, then feeds the dataflow what storage stored (its histogram
//! column); [`Ingester::commit_exemplars`] exemplars to the exemplar storage, the WAL
//! and the remote write queues.
//! With `--enable-feature=created-timestamp-zero-ingestion`
//! ([`Ingester::ingests_start_zeros`]) producers put the zero sample of a series'
//! start before the sample that carried a new start timestamp
//! ([`dataflows::is_start_zero`]; storage drops it silently where the series already
//! has a sample at or after it). The dataflow is fed what storage stored without start
//! timestamps (storage keeps none, so maintained rules read what ad-hoc queries read),
//! the zero samples older than its watermark (a start is usually long past) included:
//! they enter with their batch and the windows place them by their timestamps
//! ([`Engine::feed_with_start_zeros`]), so a maintained rule reads what an evaluation
//! over storage reads from then on.
//! [`Ingester::commit_rule_outputs`] writes rule outputs (always behind the
//! frontier), floats and native histograms, to storage (so the remote write queues)
//! and the floats to the latest-sample table; the dataflow's input does not take them.

use crate::holdback::{Holdbacks, TargetHoldback};
use crate::remote::write::RemoteWrite;
use crate::selfmetrics::SelfMetrics;
use crate::storage::exemplars::{Exemplar, ExemplarStore};
use crate::storage::{
    AppendError, AppendOutcome, Applied, HistogramSample, SeriesRef, Storage, StoredHistogram,
};
use dataflows::{is_start_zero, Engine, Sample, SampleBatch};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Owns the watermark and the write path.
pub struct Ingester {
    storage: Arc<Storage>,
    engine: Arc<Engine>,
    remote_write: RemoteWrite,
    metrics: Arc<SelfMetrics>,
    /// Start time (ms) → number of scrapes in flight that started then.
    in_flight: Mutex<BTreeMap<i64, usize>>,
    /// How far the watermark is held back for targets with exposed timestamps.
    holdbacks: Arc<Holdbacks>,
    /// Scraped exemplars (capacity 0, keeping none, until the service sizes it).
    exemplars: ExemplarStore,
    /// `--enable-feature=created-timestamp-zero-ingestion`.
    start_zeros: AtomicBool,
}

/// A scrape in flight; dropping it releases its hold on the watermark.
pub struct ScrapeInFlight {
    ingester: Arc<Ingester>,
    start_ms: i64,
}

impl ScrapeInFlight {
    /// The scrape's start time, the timestamp of its samples.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }
}

impl Drop for ScrapeInFlight {
    /// The scrape is over (committed, failed, or its task was aborted): the watermark
    /// moves past its samples at once, not at the next housekeeping tick.
    ///
    /// With nothing else in flight the watermark is the clock, which does not pass
    /// samples stamped in the current millisecond (a scrape beginning now would get
    /// that timestamp too). A scrape that ends within the millisecond it started in
    /// (a small target on loopback) therefore waits the rest of that millisecond here
    /// before advancing: otherwise its samples stayed at the frontier, and the
    /// on-arrival evaluations they release waited for whatever advanced the watermark
    /// next (up to the 250 ms tick): the "missed wake-up" of alert-latency runs.
    fn drop(&mut self) {
        let alone = {
            let mut in_flight = self.ingester.in_flight.lock();
            if let Some(count) = in_flight.get_mut(&self.start_ms) {
                *count -= 1;
                if *count == 0 {
                    in_flight.remove(&self.start_ms);
                }
            }
            in_flight.is_empty()
        };
        if alone {
            wait_past_ms(self.start_ms);
        }
        self.ingester.advance_watermark();
    }
}

/// Sleeps until the clock has left millisecond `ms` (at most about 1 ms; returns at
/// once if it already has, and gives up if the clock stepped back meanwhile).
fn wait_past_ms(ms: i64) {
    for _ in 0..3 {
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let left_ns = (ms + 1).saturating_mul(1_000_000) - now_ns;
        if left_ns <= 0 || left_ns > 1_000_000 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_nanos(left_ns as u64));
    }
}

impl Ingester {
    /// A new ingester writing to `storage` and feeding `engine`.
    pub fn new(
        storage: Arc<Storage>,
        engine: Arc<Engine>,
        metrics: Arc<SelfMetrics>,
    ) -> Arc<Ingester> {
        let holdbacks = Holdbacks::new(engine.lookback_ms());
        Arc::new(Ingester {
            storage,
            engine,
            holdbacks,
            remote_write: RemoteWrite::new(),
            metrics,
            in_flight: Mutex::new(BTreeMap::new()),
            exemplars: ExemplarStore::new(0),
            start_zeros: AtomicBool::new(false),
        })
    }

    /// Sets whether producers write the zero sample of each new start timestamp
    /// (`--enable-feature=created-timestamp-zero-ingestion`; see the module docs).
    pub fn set_start_zero_ingestion(&self, on: bool) {
        self.start_zeros.store(on, Ordering::Relaxed);
    }

    /// Whether producers write the zero sample of each new start timestamp.
    pub fn ingests_start_zeros(&self) -> bool {
        self.start_zeros.load(Ordering::Relaxed)
    }

    /// The scraped exemplars (see [`crate::storage::exemplars`]).
    pub fn exemplars(&self) -> &ExemplarStore {
        &self.exemplars
    }

    /// Whether scrapes should keep exemplars: exemplar storage is on.
    pub fn wants_exemplars(&self) -> bool {
        self.exemplars.enabled()
    }

    /// Keeps committed exemplars (a scrape's, or received by remote write), by their
    /// series' ids (series storage holds once their samples were committed): in the
    /// exemplar storage and its WAL records, and hands those kept to the remote write
    /// queues. Returns how many were out of order (Prometheus counts those; the other
    /// refusals are silent).
    pub fn commit_exemplars(&self, exemplars: Vec<(u64, Exemplar)>) -> usize {
        let remote = &self.remote_write;
        self.storage
            .append_exemplars(&self.exemplars, exemplars, |kept| {
                remote.enqueue_exemplars(kept)
            })
    }

    /// Sizes the exemplar storage (0: off, as without
    /// `--enable-feature=exemplar-storage`), keeping the newest that fit; the first
    /// time, it takes the exemplars the WAL replayed (see
    /// [`Storage::restore_exemplars`]).
    pub fn size_exemplars(&self, capacity: usize) {
        self.exemplars.resize(capacity);
        self.storage.restore_exemplars(&self.exemplars);
    }

    /// Registers a scrape starting now; its samples carry the returned start time.
    pub fn begin_scrape(self: &Arc<Self>) -> ScrapeInFlight {
        let mut in_flight = self.in_flight.lock();
        // Read the clock under the lock so the watermark cannot pass it meanwhile.
        let start_ms = now_ms();
        *in_flight.entry(start_ms).or_insert(0) += 1;
        ScrapeInFlight {
            ingester: self.clone(),
            start_ms,
        }
    }

    /// Writes a batch to storage (which hands what it stored to the remote write
    /// queues), then feeds it to the dataflow. Returns what storage did (the series it
    /// saw for the first time, the samples it refused). A batch storage refuses (its
    /// WAL could not be written) is not fed to the dataflow either: the caller gets the
    /// error. A producer without a series cache hands its samples (`Vec<Sample>`:
    /// every series announced).
    pub fn commit(&self, batch: impl Into<SampleBatch>) -> Result<AppendOutcome, AppendError> {
        self.commit_observed(batch.into(), &mut [], |_, _| {})
    }

    /// Like [`Ingester::commit`] for the batch of `scrape`, and records in `holdback`
    /// (the target's, when it honors exposed timestamps) how far the samples storage
    /// stored lag the scrape's start. `refs` holds per sample its series' storage
    /// handle if the scrape cache has one, and gets those of the series storage
    /// holds (see [`crate::storage::head::Head::append_logged`]); the batch announces
    /// the series without one.
    pub fn commit_scrape(
        &self,
        batch: SampleBatch,
        refs: &mut [Option<SeriesRef>],
        scrape: &ScrapeInFlight,
        holdback: Option<&mut TargetHoldback>,
    ) -> Result<AppendOutcome, AppendError> {
        let Some(holdback) = holdback else {
            return self.commit_observed(batch, refs, |_, _| {});
        };
        let start_ms = scrape.start_ms;
        let mut lag_ms = 0;
        let committed = self.commit_observed(batch, refs, |batch, stored| {
            // The zero samples of starts are not the target's lag.
            lag_ms = stored
                .iter()
                .filter(|&&i| !batch.is_start_zero_at(i))
                .map(|&i| start_ms - batch.timestamps_ms[i])
                .max()
                .unwrap_or(0);
        });
        if committed.is_ok() {
            holdback.observe(start_ms, lag_ms);
        }
        committed
    }

    /// Writes native-histogram samples (a scrape's, or received by remote write) to
    /// storage (WAL and head), hands what it stored to the remote write queues and
    /// feeds it to the dataflow (its histogram column: the maintained rules reading
    /// them, and the latest-sample table, so the push stream).
    /// A series is announced to the dataflow's catalog only while the catalog does not
    /// hold it with the labels the head keeps. Returns what storage did.
    pub fn commit_histograms(
        &self,
        samples: Vec<HistogramSample>,
    ) -> Result<AppendOutcome, AppendError> {
        if samples.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let mut fed = SampleBatch::default();
        let catalog = self.engine.catalog();
        // The zero samples of starts, marked for the dataflow (see the module docs).
        let zeros: Vec<(u64, i64)> = samples
            .iter()
            .filter(|s| is_start_zero(s.timestamp_ms, s.start_ms))
            .map(|s| (s.series_id, s.timestamp_ms))
            .collect();
        let outcome = self.store_histograms_observed(samples, |stored| {
            for &(series_id, labels, ts, histogram) in stored {
                // Announced unless the catalog holds the head's own labels: the head
                // keeps them while the series lives, so the entry stays (as a scrape
                // cache slot keeps a float series').
                if !catalog.holds(series_id, labels) {
                    fed.new_series.push((series_id, labels.clone()));
                }
                let zero = zeros.contains(&(series_id, ts));
                let mark = if zero { ts } else { 0 };
                fed.push_histogram(series_id, ts, Arc::new(histogram.clone()), mark);
            }
        })?;
        if zeros.is_empty() {
            self.engine.feed(fed);
        } else {
            self.engine.feed_with_start_zeros(fed);
        }
        Ok(outcome)
    }

    /// Appends native-histogram samples to storage, hands what it stored to the remote
    /// write queues and to `stored`, and counts.
    fn store_histograms_observed(
        &self,
        samples: Vec<HistogramSample>,
        stored: impl FnOnce(&[StoredHistogram<'_>]),
    ) -> Result<AppendOutcome, AppendError> {
        let remote = &self.remote_write;
        let outcome = self
            .storage
            .append_histograms_observed(samples, |applied| {
                remote.enqueue_histograms(applied);
                stored(applied);
            })?;
        Ok(self.counted(outcome))
    }

    /// The samples of a producer without a series cache (the remote write and OTLP
    /// receivers), their start timestamps (`start_ms`) turned into what storage
    /// takes: with `created-timestamp-zero-ingestion`, the zero sample of a start
    /// ([`dataflows::is_start_zero`]) before each sample whose start is before it
    /// (storage drops the repeats); the start timestamps themselves go either way.
    pub fn start_zeros(&self, samples: Vec<Sample>) -> Vec<Sample> {
        self.with_start_zeros(
            samples,
            |s| (&mut s.start_ms, s.timestamp_ms),
            |s, start_ms| Sample {
                timestamp_ms: start_ms,
                value: 0.0,
                start_ms,
                ..s.clone()
            },
        )
    }

    /// [`Ingester::start_zeros`] for native histograms
    /// ([`HistogramSample::start_zero`]).
    pub fn start_zero_histograms(&self, samples: Vec<HistogramSample>) -> Vec<HistogramSample> {
        self.with_start_zeros(
            samples,
            |s| (&mut s.start_ms, s.timestamp_ms),
            |s, start_ms| s.start_zero(start_ms),
        )
    }

    /// Either kind of sample: `start` gives a sample's start slot and its time,
    /// `zero` the zero sample of a start.
    fn with_start_zeros<S>(
        &self,
        mut samples: Vec<S>,
        start: impl Fn(&mut S) -> (&mut i64, i64),
        zero: impl Fn(&S, i64) -> S,
    ) -> Vec<S> {
        if samples.iter_mut().all(|s| *start(s).0 == 0) {
            return samples;
        }
        let on = self.ingests_start_zeros();
        let mut out = Vec::with_capacity(samples.len() + 1);
        for mut sample in samples {
            let (slot, at) = start(&mut sample);
            let start_ms = std::mem::take(slot);
            if on && start_ms != 0 && start_ms < at {
                out.push(zero(&sample, start_ms));
            }
            out.push(sample);
        }
        out
    }

    /// A tracker of the lag of a target's exposed timestamps, holding the watermark
    /// back while the target lives (see [`crate::holdback`]).
    pub fn target_holdback(&self) -> TargetHoldback {
        self.holdbacks.target()
    }

    /// Stores `batch`, hands the indices of what was stored to `observe`, and feeds
    /// those samples (the same columns, with the batch's announcements) to the dataflow.
    fn commit_observed(
        &self,
        mut batch: SampleBatch,
        refs: &mut [Option<SeriesRef>],
        observe: impl FnOnce(&SampleBatch, &[usize]),
    ) -> Result<AppendOutcome, AppendError> {
        if batch.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let remote = &self.remote_write;
        // The indices stored, kept only when not every sample was.
        let mut partly: Option<Vec<usize>> = None;
        let outcome = self.store_observed(&batch, refs, |applied| {
            enqueue(remote, applied);
            observe(applied.batch, applied.at);
            if applied.at.len() < applied.batch.len() {
                partly = Some(applied.at.to_vec());
            }
        })?;
        if let Some(stored) = partly {
            batch.retain_indices(&stored);
        }
        if batch.start_ms.is_none() {
            self.engine.feed(batch);
        } else {
            batch.keep_start_zero_marks();
            self.engine.feed_with_start_zeros(batch);
        }
        Ok(outcome)
    }

    /// Writes rule outputs: floats (stale markers included) and native histograms to
    /// storage (which hands them to the remote write queues), and the floats to the
    /// dataflow's latest-sample table (federation, the push stream) directly — they
    /// are produced after the frontier passed their time, so the dataflow's input
    /// would refuse them as late. Rules that read them are evaluated over storage (see
    /// `rules::manager`); `/federate` reads histograms from storage. A batch storage
    /// refuses is logged and counted there, and not shown as latest either.
    pub fn commit_rule_outputs(&self, batch: Vec<Sample>, histograms: Vec<HistogramSample>) {
        if !batch.is_empty() {
            let batch = SampleBatch::from(batch);
            let remote = &self.remote_write;
            if self
                .store_observed(&batch, &mut [], |applied| enqueue(remote, applied))
                .is_ok()
            {
                self.engine.latest().apply_written_back(&batch);
            }
        }
        if !histograms.is_empty() {
            // A refused batch is logged and counted by storage.
            let _ = self.store_histograms_observed(histograms, |_| {});
        }
    }

    /// Appends to storage, handing what it stored to `stored`, and counts.
    fn store_observed(
        &self,
        batch: &SampleBatch,
        refs: &mut [Option<SeriesRef>],
        stored: impl FnOnce(&Applied<'_>),
    ) -> Result<AppendOutcome, AppendError> {
        let outcome = self.storage.append_observed(batch, refs, stored)?;
        Ok(self.counted(outcome))
    }

    /// Counts an append's samples (ingested; refused as out of order, as duplicates
    /// with another value, or out of bounds; exact duplicates are neither).
    fn counted(&self, outcome: AppendOutcome) -> AppendOutcome {
        self.metrics.samples_ingested.add(outcome.appended as u64);
        self.metrics
            .samples_out_of_order
            .add((outcome.out_of_order + outcome.duplicate + outcome.out_of_bounds) as u64);
        outcome
    }

    /// Advances the dataflow's watermark as far as the scrapes in flight and the
    /// hold-back for exposed timestamps allow.
    pub fn advance_watermark(&self) {
        let in_flight = self.in_flight.lock();
        let watermark = in_flight.keys().next().copied().unwrap_or_else(now_ms);
        self.engine
            .advance_watermark(watermark - self.holdbacks.current_ms());
    }

    /// The storage this ingester writes to.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// The remote write queues fed with what storage stores.
    pub fn remote_write(&self) -> &RemoteWrite {
        &self.remote_write
    }

    /// The dataflow engine this ingester feeds.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// Hands what storage stored to the remote write queues, labels from storage.
fn enqueue(remote: &RemoteWrite, applied: &Applied<'_>) {
    remote.enqueue(applied.batch, applied.at, &|at| applied.labels(at).cloned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflows::promql::plan::parse;
    use dataflows::{EngineConfig, Labels, RuleSchedule};
    use std::time::{Duration, Instant};

    fn ingester() -> Arc<Ingester> {
        let engine = Engine::start(EngineConfig {
            workers: 2,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: true,
            spread_owner_bound: false,
        })
        .unwrap();
        Ingester::new(
            Arc::new(Storage::new()),
            Arc::new(engine),
            Arc::new(SelfMetrics::default()),
        )
    }

    fn sample(ts: i64, value: f64) -> Sample {
        let labels = Labels::from_pairs(vec![("__name__".into(), "m".into())]);
        Sample {
            series_id: labels.hash(),
            labels: Arc::new(labels),
            timestamp_ms: ts,
            value,
            start_ms: 0,
        }
    }

    /// A scrape's batch as the scrape cache builds it: a series is announced (its
    /// labels in the batch) only while the producer has no storage handle for it;
    /// once it has, the samples travel as ids alone and still reach storage and the
    /// dataflow, and the handle stays the one storage gave.
    #[test]
    fn a_known_series_travels_without_its_labels() {
        let ingester = ingester();
        let engine = ingester.engine().clone();
        let known = sample(0, 0.0);
        let id = known.series_id;
        let mut refs = vec![None];
        let mut t = now_ms();
        for k in 0..3 {
            let scrape = ingester.begin_scrape();
            t = t.max(scrape.start_ms()) + 1;
            let mut batch = SampleBatch::with_capacity(1);
            if refs[0].is_none() {
                batch.new_series.push((id, known.labels.clone()));
            }
            batch.push(id, t, k as f64, 0);
            let new = ingester
                .commit_scrape(batch, &mut refs, &scrape, None)
                .unwrap()
                .new_series;
            assert_eq!(new, usize::from(k == 0));
            assert_eq!(refs[0].as_ref().map(SeriesRef::series_id), Some(id));
            drop(scrape);
        }
        assert_eq!(ingester.storage().sample_count(), 3);
        assert_eq!(engine.stats().samples_fed, 3);
        assert!(engine.catalog().get(id).is_some());
    }

    /// Samples with older exposed timestamps (federation): the first scrape measures
    /// their lag and the watermark stays that far (plus the margin) behind, so a
    /// scrape once the watermark has fallen back has its new samples fed, not late; a
    /// sample repeated from the previous scrape is not stored, and so not fed again.
    #[test]
    fn exposed_timestamps_hold_the_watermark_back_by_their_lag() {
        use crate::holdback::MARGIN_MS;
        let ingester = ingester();
        let engine = ingester.engine().clone();
        engine.advance_watermark(now_ms());
        let mut holdback = ingester.target_holdback();
        let lag = 200;

        let scrape = ingester.begin_scrape();
        let first = scrape.start_ms() - lag;
        ingester
            .commit_scrape(
                vec![sample(first, 1.0)].into(),
                &mut [],
                &scrape,
                Some(&mut holdback),
            )
            .unwrap();
        drop(scrape);
        assert_eq!(holdback.held_ms(), lag + MARGIN_MS);
        assert_eq!(engine.stats().samples_late, 1, "no measure yet: late");

        // The watermark stands still until the clock is the hold-back past it.
        std::thread::sleep(Duration::from_millis((lag + MARGIN_MS + 20) as u64));
        let scrape = ingester.begin_scrape();
        let second = scrape.start_ms() - lag;
        let fed = engine.stats().samples_fed;
        ingester
            .commit_scrape(
                vec![sample(first, 1.0), sample(second, 2.0)].into(),
                &mut [],
                &scrape,
                Some(&mut holdback),
            )
            .unwrap();
        drop(scrape);
        let stats = engine.stats();
        assert_eq!(stats.samples_late, 1, "{stats:?}");
        assert_eq!(stats.samples_fed, fed + 1, "only the new sample is fed");
        assert!(
            stats.watermark_ms <= now_ms() - lag - MARGIN_MS,
            "{stats:?}"
        );

        // The target goes: its hold-back with it.
        drop(holdback);
        ingester.advance_watermark();
        assert!(engine.stats().watermark_ms > now_ms() - lag);
    }

    /// A histogram series is announced to the catalog while it does not hold the
    /// head's labels of it: after the first batch it does, and that keeps its entry past
    /// sweeps, so later batches (announcing nothing) still reach the rule reading it.
    /// Each batch brings its own labels (as a producer without a series cache does).
    #[test]
    fn a_histogram_series_is_announced_until_the_catalog_holds_it() {
        use dataflows::histogram::FloatHistogram;
        use dataflows::promql::eval::Value;
        let ingester = ingester();
        let engine = ingester.engine().clone();
        let rule = engine
            .register(parse("h").unwrap(), RuleSchedule::OnArrival)
            .unwrap();
        let labels = Labels::from_pairs(vec![("__name__".into(), "h".into())]);
        let id = labels.hash();
        for k in 1..4 {
            let scrape = ingester.begin_scrape();
            let ts = scrape.start_ms();
            let sample = HistogramSample {
                series_id: id,
                labels: Arc::new(labels.clone()),
                timestamp_ms: ts,
                histogram: FloatHistogram {
                    count: k as f64,
                    ..Default::default()
                },
                start_ms: 0,
            };
            ingester.commit_histograms(vec![sample]).unwrap();
            drop(scrape);
            let at = Instant::now();
            let count = loop {
                let out = rule
                    .output
                    .recv_timeout(Duration::from_secs(2).saturating_sub(at.elapsed()))
                    .unwrap_or_else(|_| panic!("batch {k}: no evaluation"));
                if out.eval_ms < ts {
                    continue;
                }
                let Ok(Value::Vector(v)) = &out.value else {
                    panic!("batch {k}: {:?}", out.value);
                };
                break v
                    .first()
                    .and_then(|e| out.histogram(e.value))
                    .map(|h| h.count);
            };
            assert_eq!(count, Some(k as f64), "batch {k}");
            // Sweeps with nothing announced since keep the entry: the head holds it.
            let catalog = engine.catalog();
            for _ in 0..2 {
                (0..2).for_each(|shard| catalog.sweep(shard));
            }
            assert!(catalog.get(id).is_some(), "batch {k}: retired");
        }
        assert_eq!(engine.catalog().missing(), 0);
    }

    /// Producers without a series cache (remote write, OTLP): with
    /// `created-timestamp-zero-ingestion` the zero sample of a start goes before each
    /// sample whose start is before it; without, nothing is added; start timestamps
    /// are never left on the samples.
    #[test]
    fn start_timestamps_of_received_samples_become_zero_samples_with_the_feature() {
        let ingester = ingester();
        let started = |ts: i64, start_ms: i64| Sample {
            start_ms,
            ..sample(ts, 1.0)
        };
        let samples = vec![started(10, 5), started(20, 20), started(30, 0)];
        let seen = |samples: Vec<Sample>| -> Vec<(i64, f64, i64)> {
            samples
                .iter()
                .map(|s| (s.timestamp_ms, s.value, s.start_ms))
                .collect()
        };
        let off = seen(ingester.start_zeros(samples.clone()));
        assert_eq!(off, [(10, 1.0, 0), (20, 1.0, 0), (30, 1.0, 0)]);
        ingester.set_start_zero_ingestion(true);
        let on = seen(ingester.start_zeros(samples));
        assert_eq!(on, [(5, 0.0, 5), (10, 1.0, 0), (20, 1.0, 0), (30, 1.0, 0)]);
    }

    /// A scrape that begins, commits and ends within one millisecond of the clock:
    /// once it has ended, with nothing else in flight, the watermark is past its
    /// samples, so an on-arrival rule over them is evaluated at once. Nothing else
    /// advances the watermark here (no housekeeping tick, no other scrape): a scrape
    /// that left it at its own start time had its evaluation wait for whatever
    /// advanced it next (the 250 ms tick in the service).
    #[test]
    fn a_scrape_ending_in_its_start_millisecond_releases_its_samples() {
        let ingester = ingester();
        let rule = ingester
            .engine()
            .register(parse("sum(m)").unwrap(), RuleSchedule::OnArrival)
            .unwrap();
        let mut within_start_ms = 0;
        for k in 0..20 {
            // Start just after a millisecond boundary, so the scrape usually ends in it.
            let t0 = now_ms();
            while now_ms() == t0 {
                std::hint::spin_loop();
            }
            let scrape = ingester.begin_scrape();
            let ts = scrape.start_ms();
            ingester.commit(vec![sample(ts, k as f64)]).unwrap();
            if now_ms() == ts {
                within_start_ms += 1;
            }
            drop(scrape);
            let at = Instant::now();
            loop {
                let out = rule
                    .output
                    .recv_timeout(Duration::from_secs(2).saturating_sub(at.elapsed()))
                    .unwrap_or_else(|_| {
                        panic!(
                            "scrape {k} at {ts}: no evaluation; {:?}",
                            ingester.engine().stats()
                        )
                    });
                if out.eval_ms >= ts {
                    break;
                }
            }
        }
        assert!(
            within_start_ms > 0,
            "no scrape ended within its start millisecond: the case was not exercised"
        );
    }
}
