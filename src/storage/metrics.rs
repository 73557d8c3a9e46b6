//! Storage's self-metrics: the counters storage keeps as it works ([`StorageMetrics`])
//! and their rendering for `/metrics`, with gauges of what is held on disk and in the
//! head.
//!
//! Contract: [`Storage::render_metrics`] writes every family through
//! [`crate::exposition`], one sample each (`prometheus_tsdb_head_samples_appended_total`:
//! one per `type`, `float` and `histogram`), the same family names whatever the storage
//! (an in-memory storage reports zero for what it does not have).

use super::Storage;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters storage keeps as it works, rendered by [`Storage::render_metrics`].
#[derive(Default)]
pub(super) struct StorageMetrics {
    pub(super) wal_corruptions: AtomicU64,
    pub(super) wal_write_failures: AtomicU64,
    pub(super) wal_replayed_records: AtomicU64,
    pub(super) wal_truncations: AtomicU64,
    pub(super) blocks_cut: AtomicU64,
    pub(super) compactions: AtomicU64,
    pub(super) blocks_deleted: AtomicU64,
    pub(super) block_failures: AtomicU64,
    pub(super) out_of_bounds: AtomicU64,
    pub(super) size_retentions: AtomicU64,
}

impl Storage {
    /// Storage self-metrics in the text exposition format, for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let (wal_bytes, segments) = self
            .wal
            .as_ref()
            .map(|w| {
                let w = w.lock();
                (w.disk_bytes(), w.segment_count())
            })
            .unwrap_or((0, 0));
        let (block_bytes, _) = self.disk_bytes();
        let rows: [(&str, &str, &str, f64); 15] = [
            (
                "prometheus_tsdb_wal_corruptions_total",
                "counter",
                "Total number of WAL corruptions.",
                m.wal_corruptions.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_write_failures_total",
                "counter",
                "Batches the WAL failed to write.",
                m.wal_write_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_replayed_records_total",
                "counter",
                "WAL records replayed at startup.",
                m.wal_replayed_records.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_truncations_total",
                "counter",
                "WAL truncations that retired segments.",
                m.wal_truncations.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_wal_storage_size_bytes",
                "gauge",
                "Bytes of WAL segments and checkpoints on disk.",
                wal_bytes as f64,
            ),
            (
                "promflow_wal_segments",
                "gauge",
                "WAL segments on disk.",
                segments as f64,
            ),
            (
                "promflow_tsdb_head_chunks_bytes",
                "gauge",
                "Bytes of compressed samples in the head.",
                self.head.chunk_bytes() as f64,
            ),
            (
                "promflow_tsdb_block_compactions_total",
                "counter",
                "Block merges of small blocks.",
                m.compactions.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_blocks_loaded",
                "gauge",
                "Persisted blocks open.",
                self.blocks().len() as f64,
            ),
            (
                "promflow_tsdb_storage_blocks_bytes",
                "gauge",
                "Bytes of persisted blocks on disk.",
                block_bytes as f64,
            ),
            (
                "promflow_tsdb_compactions_total",
                "counter",
                "Blocks cut from the head.",
                m.blocks_cut.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_blocks_deleted_total",
                "counter",
                "Blocks deleted past retention.",
                m.blocks_deleted.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_size_retentions_total",
                "counter",
                "Blocks deleted because the storage exceeded --storage.tsdb.retention.size.",
                m.size_retentions.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_block_failures_total",
                "counter",
                "Failed block writes and reads.",
                m.block_failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "promflow_tsdb_out_of_bounds_samples_total",
                "counter",
                "Samples refused for being older than the newest block.",
                m.out_of_bounds.load(Ordering::Relaxed) as f64,
            ),
        ];
        // One writer of the text format for every self-metric (Go's float spelling).
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            crate::exposition::write_single(&mut out, name, kind, help, value);
        }
        crate::exposition::write_single(
            &mut out,
            "prometheus_tsdb_head_series",
            "gauge",
            "Total number of series in the head block.",
            self.head.series_count() as f64,
        );
        let (floats, histograms) = self.head.samples_appended();
        let name = "prometheus_tsdb_head_samples_appended_total";
        crate::exposition::write_header(
            &mut out,
            name,
            "counter",
            "Total number of appended samples.",
        );
        for (kind, value) in [("float", floats), ("histogram", histograms)] {
            crate::exposition::write_sample(&mut out, name, [("type", kind)], value as f64, None);
        }
        out
    }
}
