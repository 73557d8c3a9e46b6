//! The write path of [`Storage`]: a batch is appended to the head and logged to the
//! WAL in one step, and the WAL is synced on demand.
//!
//! Contract: what [`Storage::append`] (or [`Storage::append_observed`]) returns as
//! accepted is in the write-ahead log before it returns and before any reader sees it;
//! if the WAL cannot be written nothing of the batch is applied, the failure is counted
//! and the error returned (the batch is not acknowledged). Samples older than the
//! newest block's end are refused and counted as out of bounds.

use super::{
    AppendError, AppendOutcome, Applied, HistogramSample, SeriesRef, Storage, StoredHistogram,
};
use dataflows::{Sample, SampleBatch};
use std::sync::atomic::Ordering;

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
