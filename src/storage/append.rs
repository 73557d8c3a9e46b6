//! The write path of [`Storage`]: a batch is appended to the head and logged to the
//! WAL in one step, and the WAL is synced on demand.
//!
//! Contract: what [`Storage::append`] (or [`Storage::append_observed`]) returns as
//! accepted is in the write-ahead log before it returns and before any reader sees it;
//! if the WAL cannot be written nothing of the batch is applied, the failure is counted
//! and the error returned (the batch is not acknowledged). Samples older than the
//! newest block's end are refused and counted as out of bounds.
//!
//! Exemplars ([`Storage::append_exemplars`]) go to the exemplar storage (a ring held
//! by the ingester) and, those it keeps, to the WAL; a start replays them
//! ([`Storage::restore_exemplars`]), as Prometheus does.

use super::exemplars::{Exemplar, ExemplarStore, Refused};
use super::{
    AppendError, AppendOutcome, Applied, HistogramSample, SeriesRef, Storage, StoredHistogram,
};
use dataflows::{Labels, Sample, SampleBatch};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An exemplar kept: its series' id and labels, and the exemplar.
pub type KeptExemplar<'a> = (u64, &'a Arc<Labels>, &'a Exemplar);

impl Storage {
    /// `fsync`s the WAL (at a clean shutdown, whatever `--storage.tsdb.wal-fsync` says).
    pub fn sync_wal(&self) -> std::io::Result<()> {
        match &self.wal {
            Some(wal) => wal.lock().sync(),
            None => Ok(()),
        }
    }

    /// Appends a batch: the accepted samples (and new series) are written to the WAL
    /// before this returns and before a query can see them. If the WAL cannot be
    /// written, nothing of the batch is applied and the error is returned: the batch
    /// is not acknowledged.
    pub fn append(&self, batch: &[Sample]) -> Result<AppendOutcome, AppendError> {
        self.append_observed(&SampleBatch::from_samples(batch), &mut [], |_| {})
    }

    /// Like [`Storage::append`] for a batch in columns; `refs` are the batch's series
    /// handles, as [`super::head::Head::append_logged`] takes and fills them in (empty: none),
    /// and the batch announces the labels of the series without one; `stored` gets
    /// the samples stored ([`Applied`]), once they are logged and while no other
    /// append can interleave (so whatever it forwards them to sees every series in
    /// time order).
    pub fn append_observed(
        &self,
        batch: &SampleBatch,
        refs: &mut [Option<SeriesRef>],
        stored: impl FnOnce(&Applied<'_>),
    ) -> Result<AppendOutcome, AppendError> {
        let outcome = match &self.wal {
            None => {
                self.head
                    .append_logged(batch, refs, |_, _| Ok::<(), std::io::Error>(()), stored)
            }
            Some(wal) => self.head.append_logged(
                batch,
                refs,
                |series, samples| wal.lock().log(series, samples),
                stored,
            ),
        };
        self.counted(outcome, batch.len(), "samples")
    }

    /// Appends native-histogram samples ([`super::head::Head::append_histograms_logged`]):
    /// logged to the WAL before this returns, nothing applied if that fails.
    pub fn append_histograms(
        &self,
        samples: Vec<HistogramSample>,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_histograms_observed(samples, |_| {})
    }

    /// Like [`Storage::append_histograms`]; `stored` gets the samples stored once they
    /// are logged and while no other append can interleave (as for
    /// [`Storage::append_observed`]: the remote write queues take them there).
    pub fn append_histograms_observed(
        &self,
        samples: Vec<HistogramSample>,
        stored: impl FnOnce(&[StoredHistogram<'_>]),
    ) -> Result<AppendOutcome, AppendError> {
        let count = samples.len();
        let outcome = match &self.wal {
            None => self.head.append_histograms_logged(
                samples,
                |_, _| Ok::<(), std::io::Error>(()),
                stored,
            ),
            Some(wal) => self.head.append_histograms_logged(
                samples,
                |series, logged| wal.lock().log_histograms(series, logged),
                stored,
            ),
        };
        self.counted(outcome, count, "histogram samples")
    }

    /// Keeps `exemplars` (each by its series' id) of series the head holds in `store`
    /// ([`ExemplarStore::add`]: duplicates, older and oversized ones are refused; those
    /// of a series the head does not hold are dropped, as Prometheus refuses them) and
    /// logs those it kept to the WAL, in the order kept, while no other call can
    /// interleave, so that a replay fills the ring alike. `kept` then gets them (the
    /// remote write queues take them there). Returns how many were refused as out of
    /// order (the caller counts them, as Prometheus does per scrape). A failed WAL
    /// write is logged and counted; the exemplars stay in memory (they are lost at a
    /// restart only).
    pub fn append_exemplars(
        &self,
        store: &ExemplarStore,
        exemplars: Vec<(u64, Exemplar)>,
        kept: impl FnOnce(&[KeptExemplar<'_>]),
    ) -> usize {
        if exemplars.is_empty() || !store.enabled() {
            return 0;
        }
        let series = self.head.logged_series(exemplars.iter().map(|e| e.0));
        let mut out_of_order = 0;
        let mut added: Vec<(u64, u32, Arc<Labels>, Exemplar)> = Vec::new();
        {
            let mut wal = self.wal.as_ref().map(|w| w.lock());
            for ((id, exemplar), series) in exemplars.into_iter().zip(series) {
                let Some((wal_ref, labels)) = series else {
                    continue;
                };
                match store.add(&labels, exemplar.clone()) {
                    Ok(()) => added.push((id, wal_ref, labels, exemplar)),
                    Err(Refused::OutOfOrder) => out_of_order += 1,
                    Err(Refused::Duplicate | Refused::LabelLength | Refused::Disabled) => {}
                }
            }
            if let Some(wal) = wal.as_mut() {
                let logged: Vec<(u32, i64, f64, &Labels)> = added
                    .iter()
                    .map(|(_, r, _, e)| (*r, e.timestamp_ms, e.value, &e.labels))
                    .collect();
                if let Err(e) = wal.log_exemplars(&logged) {
                    self.metrics
                        .wal_write_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, count = logged.len(), "writing the WAL failed; the exemplars are kept in memory only");
                }
            }
        }
        if !added.is_empty() {
            let stored: Vec<KeptExemplar<'_>> = added
                .iter()
                .map(|(id, _, labels, e)| (*id, labels, e))
                .collect();
            kept(&stored);
        }
        out_of_order
    }

    /// Hands the exemplars the WAL replayed at [`Storage::open`] to `store` (once:
    /// later calls find none), oldest first; with the store off (capacity 0) they are
    /// dropped, as Prometheus replays none then.
    pub fn restore_exemplars(&self, store: &ExemplarStore) {
        let replayed = std::mem::take(&mut *self.replayed_exemplars.lock());
        if replayed.is_empty() || !store.enabled() {
            return;
        }
        let series = self.head.logged_series(replayed.iter().map(|e| e.0));
        let mut restored = 0usize;
        for ((_, exemplar), series) in replayed.into_iter().zip(series) {
            if let Some((_, labels)) = series {
                restored += usize::from(store.add(&labels, exemplar).is_ok());
            }
        }
        tracing::info!(exemplars = restored, "exemplars replayed from the WAL");
    }

    /// Counts an append's samples refused as out of bounds, or its WAL failure (logged:
    /// the `count` `what` of the batch are refused).
    fn counted(
        &self,
        outcome: Result<AppendOutcome, std::io::Error>,
        count: usize,
        what: &str,
    ) -> Result<AppendOutcome, AppendError> {
        match outcome {
            Ok(outcome) => {
                self.metrics
                    .out_of_bounds
                    .fetch_add(outcome.out_of_bounds as u64, Ordering::Relaxed);
                Ok(outcome)
            }
            Err(e) => {
                self.metrics
                    .wal_write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, count, "writing the WAL failed; the batch's {what} are refused");
                Err(AppendError::Wal(e))
            }
        }
    }
}
