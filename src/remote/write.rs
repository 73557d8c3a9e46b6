//! The remote write sender: forwards every sample storage accepts to the `remote_write`
//! endpoints of the config, as remote write 1.0 (snappy-compressed protobuf
//! `WriteRequest`), like Prometheus 2.42's queue manager, or as remote write 2.0
//! (`io.prometheus.write.v2.Request`, a symbol table and label references) with
//! `protobuf_message: io.prometheus.write.v2.Request`, like Prometheus 3.x.
//!
//! Contract:
//! - [`RemoteWrite::enqueue`] is called by the ingest path with the samples storage
//!   stored, in the order storage applied them, [`RemoteWrite::enqueue_histograms`]
//!   with the native-histogram samples, [`RemoteWrite::enqueue_exemplars`] with the
//!   exemplars the exemplar storage kept; they only copy them into bounded
//!   per-shard buffers (series → shard by hash, so a series keeps its order; one
//!   push, `Queue::push`, for every kind) and never block. Histograms go only to
//!   queues with `send_native_histograms: true`, exemplars only to queues with
//!   `send_exemplars: true` (as in Prometheus). A shard keeps each kind in a lane of
//!   its own beside the float samples (float-only series pay nothing for the others);
//!   all count against its bound and the batch size, and a request carries them all,
//!   each series' histograms in its `histograms` (sent as integer histograms when
//!   every count is whole, as Prometheus sends what it scrapes) and exemplars in its
//!   `exemplars`, counted in the `prometheus_remote_storage_{histograms,exemplars}_*`
//!   metrics. An item that finds its shard's buffer full is dropped and counted
//!   (`prometheus_remote_storage_samples_dropped_total` and its siblings). A shard
//!   buffers at most `capacity × max_shards / shards` samples: the room Prometheus's shards have in
//!   flight, here kept in memory because promflow does not re-read its WAL. A buffered
//!   sample is `(series id, timestamp, value)`; the shard keeps each series' labels
//!   once, beside the buffer, while it has samples of it queued (and, for series
//!   without, until that table outgrows the label cache limit), and resolves them when
//!   it builds a request.
//! - Each shard sends batches of up to `max_samples_per_send` samples, or fewer once
//!   its oldest has waited `batch_send_deadline`. Per series, `external_labels` are
//!   added (labels already present win), then `write_relabel_configs` run; a series
//!   they drop is counted as dropped.
//! - A request that fails with a network error, a 5xx, or a 429 when
//!   `retry_on_http_429` is set is retried after `min_backoff`, doubled per attempt up
//!   to `max_backoff`, until it succeeds (the shard waits meanwhile, its buffer keeps
//!   filling). Any other 4xx drops the batch (`..._samples_failed_total`), except a 415
//!   to a 2.0 request: the receiver does not take 2.0, so the batch is sent again as 1.0
//!   and the queue keeps sending 1.0 until it is replaced (a reload with changed
//!   settings).
//! - 2.0 series carry their metric's metadata (type, help, unit), as Prometheus 3.x's
//!   2.0 sender does for every series of every request: looked up by metric family
//!   (the name, else the name without a `_total`, `_bucket`, `_count`, `_sum`,
//!   `_created`, `_gcount`, `_gsum` or `_info` suffix) in the metadata of the scraped
//!   targets ([`RemoteWrite::set_metadata_source`], read again at most every
//!   [`METADATA_REFRESH`]); the first target's entry wins where targets differ
//!   (Prometheus keeps it per series).
//! - 2.0 samples and histograms carry no `start_timestamp` and series no
//!   `created_timestamp` (field 6, which 3.9 reserves), as Prometheus 3.9's sender:
//!   storage keeps no start timestamps (3.11's `st-storage` is not implemented); the
//!   zero samples `created-timestamp-zero-ingestion` wrote go as samples.
//! - [`RemoteWrite::apply`] (config load and reload) keeps the queues whose settings
//!   (and `tls_config` files' contents) did not change and replaces the others; a
//!   replaced queue makes one last attempt to send what it holds. Each queue has its
//!   own client, built from its `tls_config` when it starts.
//!
//! Shards: a fixed number, `min_shards` (at least 1); Prometheus resizes between
//! `min_shards` and `max_shards` from the observed rate, which promflow does not yet.

use crate::config::{ProtobufMessage, RemoteWriteConfig};
use crate::exposition::{MetricMetadata, MetricType};
use crate::remote::proto::{self, v2, WriteRequest};
use crate::storage::exemplars::Exemplar;
use crate::storage::KeptExemplar;
use dataflows::histogram::FloatHistogram;
use dataflows::render::window::KeyMap;
use dataflows::{Labels, SampleBatch};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// `User-Agent` of remote write requests.
/// Relabel results cached per shard before the cache is cleared (series churn).
const LABEL_CACHE_LIMIT: usize = 1 << 20;

/// How often a 2.0 queue reads the targets' metadata again.
pub const METADATA_REFRESH: Duration = Duration::from_secs(5);

/// The metadata of every scraped target (see [`RemoteWrite::set_metadata_source`]).
pub type MetadataSource = Arc<dyn Fn() -> Vec<MetricMetadata> + Send + Sync>;

/// Metric metadata by family name.
type ByFamily = Arc<HashMap<String, MetricMetadata>>;

/// Metric metadata by family, shared by the queues, read from the source at most
/// every [`METADATA_REFRESH`].
#[derive(Default)]
struct MetadataTable {
    source: RwLock<Option<MetadataSource>>,
    table: Mutex<Option<(std::time::Instant, ByFamily)>>,
}

impl MetadataTable {
    fn current(&self) -> ByFamily {
        let mut table = self.table.lock();
        if let Some((at, t)) = &*table {
            if at.elapsed() < METADATA_REFRESH {
                return t.clone();
            }
        }
        let mut by_family = HashMap::new();
        if let Some(source) = &*self.source.read() {
            for m in source() {
                by_family.entry(m.family.clone()).or_insert(m);
            }
        }
        let t = Arc::new(by_family);
        *table = Some((std::time::Instant::now(), t.clone()));
        t
    }
}

/// The metadata of metric `name`'s family in `table`, as 2.0's `Metadata` (the help
/// and unit interned in `symbols`); `None` if the family has none.
fn v2_metadata(
    table: &HashMap<String, MetricMetadata>,
    name: &str,
    symbols: &mut v2::Symbols,
) -> Option<v2::Metadata> {
    const SUFFIXES: [&str; 8] = [
        "_total", "_bucket", "_count", "_sum", "_created", "_gcount", "_gsum", "_info",
    ];
    let m = table.get(name).or_else(|| {
        SUFFIXES
            .iter()
            .find_map(|s| table.get(name.strip_suffix(s)?))
    })?;
    let r#type = match m.kind {
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
        MetricType::Untyped | MetricType::Unknown => 0,
    };
    Some(v2::Metadata {
        r#type,
        help_ref: symbols.intern(&m.help),
        unit_ref: symbols.intern(&m.unit),
    })
}

/// Every configured remote write queue.
pub struct RemoteWrite {
    queues: RwLock<Vec<Arc<Queue>>>,
    metadata: Arc<MetadataTable>,
    samples_in: AtomicU64,
    histograms_in: AtomicU64,
    exemplars_in: AtomicU64,
    highest_in_ms: AtomicI64,
}

/// A native-histogram sample waiting in a shard (its labels in [`Buffer::labels`]).
struct PendingHistogram {
    series_id: u64,
    timestamp_ms: i64,
    histogram: FloatHistogram,
}

/// A sample waiting in a shard (its labels in [`Buffer::labels`]).
struct Pending {
    series_id: u64,
    timestamp_ms: i64,
    value: f64,
}

/// An exemplar waiting in a shard (its series' labels in [`Buffer::labels`]).
struct PendingExemplar {
    series_id: u64,
    exemplar: Exemplar,
}

/// A shard's queued samples and exemplars and the labels of their series.
#[derive(Default)]
struct Buffer {
    samples: VecDeque<Pending>,
    /// Native-histogram samples (empty while only floats are written).
    histograms: VecDeque<PendingHistogram>,
    /// Exemplars (empty unless `send_exemplars`).
    exemplars: VecDeque<PendingExemplar>,
    /// Series id → labels and the number of its items in `samples`, `histograms`
    /// and `exemplars`. Entries whose count is 0 are dropped once the table outgrows
    /// [`LABEL_CACHE_LIMIT`].
    labels: KeyMap<u64, (Arc<Labels>, usize)>,
}

impl Buffer {
    /// Items queued, of every kind (each counts against the shard's bound and the
    /// batch size).
    fn len(&self) -> usize {
        self.samples.len() + self.histograms.len() + self.exemplars.len()
    }
}

/// A kind of item a shard queues, in a lane of its own (so float-only series pay
/// nothing for the others): float samples, native-histogram samples, exemplars.
trait Lane: Sized {
    /// Its series.
    fn series_id(&self) -> u64;
    /// Its lane in a shard's buffer.
    fn lane(buffer: &mut Buffer) -> &mut VecDeque<Self>;
    /// Its counters.
    fn counters(metrics: &QueueMetrics) -> &KindCounters;
}

impl Lane for Pending {
    fn series_id(&self) -> u64 {
        self.series_id
    }
    fn lane(buffer: &mut Buffer) -> &mut VecDeque<Self> {
        &mut buffer.samples
    }
    fn counters(metrics: &QueueMetrics) -> &KindCounters {
        &metrics.samples
    }
}

impl Lane for PendingHistogram {
    fn series_id(&self) -> u64 {
        self.series_id
    }
    fn lane(buffer: &mut Buffer) -> &mut VecDeque<Self> {
        &mut buffer.histograms
    }
    fn counters(metrics: &QueueMetrics) -> &KindCounters {
        &metrics.histograms
    }
}

impl Lane for PendingExemplar {
    fn series_id(&self) -> u64 {
        self.series_id
    }
    fn lane(buffer: &mut Buffer) -> &mut VecDeque<Self> {
        &mut buffer.exemplars
    }
    fn counters(metrics: &QueueMetrics) -> &KindCounters {
        &metrics.exemplars
    }
}

/// One `remote_write` entry at work.
struct Queue {
    config: RemoteWriteConfig,
    /// Built from `config.http`, with the hash of its files' contents.
    client: reqwest::Client,
    tls_fingerprint: u64,
    external_labels: BTreeMap<String, String>,
    /// `remote_name`: the configured name, or a hash of the config like Prometheus.
    name: String,
    shards: Vec<Shard>,
    shard_bound: usize,
    stopping: AtomicBool,
    /// Set when a 2.0 request was answered 415: send 1.0 from then on.
    fell_back: AtomicBool,
    metrics: QueueMetrics,
    /// Metric metadata for 2.0 requests.
    metadata: Arc<MetadataTable>,
}

struct Shard {
    buffer: Mutex<Buffer>,
    wake: Notify,
}

/// The counters of one kind of item (`prometheus_remote_storage_{samples,histograms,
/// exemplars}_*`).
#[derive(Default)]
struct KindCounters {
    total: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct QueueMetrics {
    samples: KindCounters,
    histograms: KindCounters,
    exemplars: KindCounters,
    bytes_total: AtomicU64,
    highest_sent_ms: AtomicI64,
}

/// How many items of each kind a request carries: samples, histograms, exemplars.
#[derive(Clone, Copy, Default)]
struct Counts([u64; 3]);

impl Counts {
    /// Adds them to one counter of each kind (`total`, `failed`, …).
    fn add_to(self, metrics: &QueueMetrics, counter: fn(&KindCounters) -> &AtomicU64) {
        let kinds = [&metrics.samples, &metrics.histograms, &metrics.exemplars];
        for (kind, n) in kinds.into_iter().zip(self.0) {
            if n > 0 {
                counter(kind).fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn is_empty(self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }
}

impl Default for RemoteWrite {
    fn default() -> RemoteWrite {
        RemoteWrite::new()
    }
}

impl RemoteWrite {
    /// No queues yet (see [`RemoteWrite::apply`]).
    pub fn new() -> RemoteWrite {
        RemoteWrite {
            queues: RwLock::new(Vec::new()),
            metadata: Arc::default(),
            samples_in: AtomicU64::new(0),
            histograms_in: AtomicU64::new(0),
            exemplars_in: AtomicU64::new(0),
            highest_in_ms: AtomicI64::new(0),
        }
    }

    /// Where 2.0 queues read metric metadata from (the scraped targets'); without one,
    /// 2.0 series carry none.
    pub fn set_metadata_source(&self, source: MetadataSource) {
        *self.metadata.source.write() = Some(source);
        *self.metadata.table.lock() = None;
    }

    /// Puts the configured queues in place: unchanged ones keep running (and what they
    /// hold), others start; queues no longer configured stop. Needs a tokio runtime.
    pub fn apply(&self, configs: &[RemoteWriteConfig], external_labels: &BTreeMap<String, String>) {
        let mut queues = self.queues.write();
        let mut next = Vec::new();
        for config in configs {
            let tls_fingerprint =
                crate::http_client::tls_files_fingerprint(&config.http.tls_config);
            let same = queues.iter().position(|q| {
                q.external_labels == *external_labels
                    && q.tls_fingerprint == tls_fingerprint
                    && serde_json::to_value(&q.config).ok() == serde_json::to_value(config).ok()
            });
            match same {
                Some(i) => next.push(queues.remove(i)),
                None => {
                    // Validated with the config; a file changed since fails here.
                    let client = match crate::http_client::build_client(&config.http) {
                        Ok(client) => client,
                        Err(e) => {
                            tracing::error!(url = %config.url, error = %e, "remote write queue not started");
                            continue;
                        }
                    };
                    let queue = Arc::new(Queue::new(
                        config.clone(),
                        client,
                        tls_fingerprint,
                        external_labels.clone(),
                        self.metadata.clone(),
                    ));
                    for shard in 0..queue.shards.len() {
                        tokio::spawn(run_shard(queue.clone(), shard));
                    }
                    tracing::info!(url = %config.url, remote_name = %queue.name, shards = queue.shards.len(), "remote write queue started");
                    next.push(queue);
                }
            }
        }
        for old in queues.drain(..) {
            old.stop();
        }
        *queues = next;
    }

    /// Stops every queue (each makes one last attempt to send what it holds).
    pub fn stop_all(&self) {
        for q in self.queues.write().drain(..) {
            q.stop();
        }
    }

    /// Copies the samples at the indices `stored` of `batch` into the queues; see the
    /// module contract. `labels` gives the labels of the series of a sample (by index),
    /// asked only for a series a shard has no samples of queued. Cheap and
    /// non-blocking: storage calls it under its lock.
    pub fn enqueue(
        &self,
        batch: &SampleBatch,
        stored: &[usize],
        labels: &dyn Fn(usize) -> Option<Arc<Labels>>,
    ) {
        if stored.is_empty() {
            return;
        }
        self.samples_in
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        if let Some(newest) = stored.iter().map(|&i| batch.timestamps_ms[i]).max() {
            self.highest_in_ms.fetch_max(newest, Ordering::Relaxed);
        }
        for queue in self.queues.read().iter() {
            queue.enqueue(batch, stored, labels);
        }
    }

    /// Copies native-histogram samples storage stored (`(series id, labels, timestamp,
    /// histogram)`, in the order it applied them) into the queues; see the module
    /// contract. Cheap and non-blocking: storage calls it under its lock.
    pub fn enqueue_histograms(&self, stored: &[(u64, &Arc<Labels>, i64, &FloatHistogram)]) {
        if stored.is_empty() {
            return;
        }
        self.histograms_in
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        if let Some(newest) = stored.iter().map(|s| s.2).max() {
            self.highest_in_ms.fetch_max(newest, Ordering::Relaxed);
        }
        for queue in self.queues.read().iter() {
            queue.enqueue_histograms(stored);
        }
    }

    /// Copies the exemplars the exemplar storage kept (in the order it kept them)
    /// into the queues with `send_exemplars: true`; see the module contract. Cheap and
    /// non-blocking.
    pub fn enqueue_exemplars(&self, kept: &[KeptExemplar<'_>]) {
        if kept.is_empty() {
            return;
        }
        self.exemplars_in
            .fetch_add(kept.len() as u64, Ordering::Relaxed);
        for queue in self.queues.read().iter() {
            queue.enqueue_exemplars(kept);
        }
    }

    /// The `prometheus_remote_storage_*` metrics, Prometheus's names and labels.
    pub fn render_metrics(&self) -> String {
        let queues = self.queues.read();
        let mut out = String::new();
        let global = [
            (
                "prometheus_remote_storage_samples_in_total",
                "counter",
                "Samples in to remote storage, compare to samples out for queue managers.",
                self.samples_in.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_remote_storage_histograms_in_total",
                "counter",
                "HistogramSamples in to remote storage, compare to histograms out for queue managers.",
                self.histograms_in.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_remote_storage_exemplars_in_total",
                "counter",
                "Exemplars in to remote storage, compare to exemplars out for queue managers.",
                self.exemplars_in.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_remote_storage_highest_timestamp_in_seconds",
                "gauge",
                "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
                self.highest_in_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
        ];
        for (name, kind, help, value) in global {
            crate::exposition::write_single(&mut out, name, kind, help, value);
        }
        type Metric = (&'static str, &'static str, &'static str, fn(&Queue) -> f64);
        let per_queue: [Metric; 20] = [
            ("prometheus_remote_storage_samples_total", "counter", "Total number of samples sent to remote storage.", |q| q.metrics.samples.total.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_samples_failed_total", "counter", "Total number of samples which failed on send to remote storage, non-recoverable errors.", |q| q.metrics.samples.failed.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_samples_retried_total", "counter", "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.", |q| q.metrics.samples.retried.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_samples_dropped_total", "counter", "Total number of samples which were dropped before being sent via remote write, either via relabelling or because the queue was full.", |q| q.metrics.samples.dropped.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_samples_pending", "gauge", "The number of samples pending in the queues shards to be sent to the remote storage.", |q| q.pending::<Pending>() as f64),
            ("prometheus_remote_storage_bytes_total", "counter", "The total number of bytes of data (not metadata) sent by the queue after compression.", |q| q.metrics.bytes_total.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_queue_highest_sent_timestamp_seconds", "gauge", "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.", |q| q.metrics.highest_sent_ms.load(Ordering::Relaxed) as f64 / 1000.0),
            ("prometheus_remote_storage_shards", "gauge", "The number of shards used for parallel sending to the remote storage.", |q| q.shards.len() as f64),
            ("prometheus_remote_storage_shard_capacity", "gauge", "The capacity of each shard of the queue used for parallel sending to the remote storage.", |q| q.shard_bound as f64),
            ("prometheus_remote_storage_max_samples_per_send", "gauge", "The maximum number of samples to be sent, in a single request, to the remote storage.", |q| q.config.queue_config.max_samples_per_send as f64),
            ("prometheus_remote_storage_histograms_total", "counter", "Total number of histograms sent to remote storage.", |q| q.metrics.histograms.total.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_histograms_failed_total", "counter", "Total number of histograms which failed on send to remote storage, non-recoverable errors.", |q| q.metrics.histograms.failed.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_histograms_retried_total", "counter", "Total number of histograms which failed on send to remote storage but were retried because the send error was recoverable.", |q| q.metrics.histograms.retried.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_histograms_dropped_total", "counter", "Total number of histograms which were dropped after being read from the WAL before being sent via remote write, either via relabelling or unintentionally because of an unknown reference ID.", |q| q.metrics.histograms.dropped.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_histograms_pending", "gauge", "The number of histograms pending in the queues shards to be sent to the remote storage.", |q| q.pending::<PendingHistogram>() as f64),
            ("prometheus_remote_storage_exemplars_total", "counter", "Total number of exemplars sent to remote storage.", |q| q.metrics.exemplars.total.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_exemplars_failed_total", "counter", "Total number of exemplars which failed on send to remote storage, non-recoverable errors.", |q| q.metrics.exemplars.failed.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_exemplars_retried_total", "counter", "Total number of exemplars which failed on send to remote storage but were retried because the send error was recoverable.", |q| q.metrics.exemplars.retried.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_exemplars_dropped_total", "counter", "Total number of exemplars which were dropped after being read from the WAL before being sent via remote write, either via relabelling or unintentionally because of an unknown reference ID.", |q| q.metrics.exemplars.dropped.load(Ordering::Relaxed) as f64),
            ("prometheus_remote_storage_exemplars_pending", "gauge", "The number of exemplars pending in the queues shards to be sent to the remote storage.", |q| q.pending::<PendingExemplar>() as f64),
        ];
        for (name, kind, help, value) in per_queue {
            if queues.is_empty() {
                continue;
            }
            crate::exposition::write_header(&mut out, name, kind, help);
            for q in queues.iter() {
                crate::exposition::write_sample(
                    &mut out,
                    name,
                    [
                        ("remote_name", q.name.as_str()),
                        ("url", q.config.url.as_str()),
                    ],
                    value(q),
                    None,
                );
            }
        }
        out
    }
}

impl Queue {
    fn new(
        config: RemoteWriteConfig,
        client: reqwest::Client,
        tls_fingerprint: u64,
        external_labels: BTreeMap<String, String>,
        metadata: Arc<MetadataTable>,
    ) -> Queue {
        let q = &config.queue_config;
        let shards = q.min_shards.clamp(1, q.max_shards.max(1));
        let shard_bound = (q.capacity.max(1) * q.max_shards.max(1) / shards).max(1);
        let name = if config.name.is_empty() {
            use md5::{Digest, Md5};
            let json = serde_json::to_vec(&config).unwrap_or_default();
            let digest = Md5::digest(&json);
            digest[..3].iter().map(|b| format!("{b:02x}")).collect()
        } else {
            config.name.clone()
        };
        Queue {
            external_labels,
            name,
            shards: (0..shards)
                .map(|_| Shard {
                    buffer: Mutex::new(Buffer::default()),
                    wake: Notify::new(),
                })
                .collect(),
            shard_bound,
            stopping: AtomicBool::new(false),
            fell_back: AtomicBool::new(false),
            metrics: QueueMetrics::default(),
            metadata,
            config,
            client,
            tls_fingerprint,
        }
    }

    fn enqueue(
        &self,
        batch: &SampleBatch,
        stored: &[usize],
        labels_of: &dyn Fn(usize) -> Option<Arc<Labels>>,
    ) {
        self.push(
            stored.iter().map(|&i| Pending {
                series_id: batch.series_ids[i],
                timestamp_ms: batch.timestamps_ms[i],
                value: batch.values[i],
            }),
            |k| labels_of(stored[k]),
        );
    }

    /// Like [`Queue::enqueue`], for native-histogram samples; nothing unless
    /// `send_native_histograms` is set (as in Prometheus, they are not sent then).
    fn enqueue_histograms(&self, stored: &[(u64, &Arc<Labels>, i64, &FloatHistogram)]) {
        if !self.config.send_native_histograms {
            return;
        }
        self.push(
            stored
                .iter()
                .map(|&(series_id, _, timestamp_ms, h)| PendingHistogram {
                    series_id,
                    timestamp_ms,
                    histogram: h.clone(),
                }),
            |k| Some(stored[k].1.clone()),
        );
    }

    /// Like [`Queue::enqueue`], for exemplars; nothing unless `send_exemplars` is set
    /// (as in Prometheus).
    fn enqueue_exemplars(&self, kept: &[KeptExemplar<'_>]) {
        if !self.config.send_exemplars {
            return;
        }
        self.push(
            kept.iter()
                .map(|&(series_id, _, exemplar)| PendingExemplar {
                    series_id,
                    exemplar: exemplar.clone(),
                }),
            |k| Some(kept[k].1.clone()),
        );
    }

    /// The one push into the shards, for every kind of item: the `k`-th of `items`
    /// goes to its series' shard (series id modulo shards, so a series keeps its
    /// order), each shard locked once. `labels_of(k)` gives the labels of item `k`'s
    /// series, asked only when the shard has nothing of that series queued. An item
    /// that finds its shard full (every lane counts against the bound), or has no
    /// labels (not a series of its batch), is dropped and counted; a shard holding a
    /// full batch (`max_samples_per_send`) is woken.
    fn push<T: Lane>(
        &self,
        items: impl Iterator<Item = T>,
        labels_of: impl Fn(usize) -> Option<Arc<Labels>>,
    ) {
        let n = self.shards.len();
        let mut by_shard: Vec<Vec<(usize, T)>> = (0..n).map(|_| Vec::new()).collect();
        for (k, item) in items.enumerate() {
            by_shard[(item.series_id() % n as u64) as usize].push((k, item));
        }
        let mut dropped = 0u64;
        for (shard, items) in self.shards.iter().zip(by_shard) {
            if items.is_empty() {
                continue;
            }
            let mut buffer = shard.buffer.lock();
            for (k, item) in items {
                if buffer.len() >= self.shard_bound {
                    dropped += 1;
                    continue;
                }
                let series_id = item.series_id();
                match buffer.labels.get_mut(&series_id) {
                    Some((_, queued)) => *queued += 1,
                    None => {
                        let Some(series_labels) = labels_of(k) else {
                            dropped += 1;
                            continue;
                        };
                        buffer.labels.insert(series_id, (series_labels, 1));
                    }
                }
                T::lane(&mut buffer).push_back(item);
            }
            let full = buffer.len() >= self.config.queue_config.max_samples_per_send;
            drop(buffer);
            if full {
                shard.wake.notify_one();
            }
        }
        if dropped > 0 {
            T::counters(&self.metrics)
                .dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Items of kind `T` queued in the shards.
    fn pending<T: Lane>(&self) -> usize {
        self.shards
            .iter()
            .map(|s| T::lane(&mut s.buffer.lock()).len())
            .sum()
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            shard.wake.notify_one();
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The message to send now: the configured one, 1.0 after a fallback.
    fn message(&self) -> ProtobufMessage {
        if self.fell_back.load(Ordering::Relaxed) {
            ProtobufMessage::V1
        } else {
            self.config.protobuf_message
        }
    }

    /// The labels to send for a series: external labels added, then relabeled.
    fn outgoing_labels(&self, labels: &Labels) -> Option<Vec<proto::Label>> {
        let with_external;
        let labels = if self.external_labels.is_empty() {
            labels
        } else {
            let mut pairs: Vec<(String, String)> = labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            for (name, value) in &self.external_labels {
                if labels.get(name).is_none() {
                    pairs.push((name.clone(), value.clone()));
                }
            }
            with_external = Labels::from_pairs(pairs);
            &with_external
        };
        let relabeled = crate::relabel::process(&self.config.write_relabel_configs, labels)?;
        Some(
            relabeled
                .iter()
                .map(|(name, value)| proto::Label {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        )
    }
}

/// One shard: waits for a full batch or the batch deadline, then sends.
async fn run_shard(queue: Arc<Queue>, index: usize) {
    let client = queue.client.clone();
    let shard = &queue.shards[index];
    let q = queue.config.queue_config.clone();
    let max = q.max_samples_per_send.max(1);
    let mut cache: HashMap<u64, Option<Vec<proto::Label>>> = HashMap::new();
    loop {
        let stopping = queue.is_stopping();
        let ready = shard.buffer.lock().len() >= max;
        if !ready && !stopping {
            // A partial batch goes once its deadline passes.
            let _ = tokio::time::timeout(q.batch_send_deadline, shard.wake.notified()).await;
        }
        if cache.len() > LABEL_CACHE_LIMIT {
            cache.clear();
        }
        // The series whose outgoing labels are not cached, with their labels.
        let mut fresh: KeyMap<u64, Arc<Labels>> = KeyMap::default();
        let taken = {
            let mut buffer = shard.buffer.lock();
            let taken = Taken::from(&mut buffer, max);
            let labels = &mut buffer.labels;
            for series_id in taken.series_ids() {
                let Some((series, queued)) = labels.get_mut(&series_id) else {
                    continue;
                };
                *queued -= 1;
                if !cache.contains_key(&series_id) {
                    fresh.entry(series_id).or_insert_with(|| series.clone());
                }
            }
            if labels.len() > LABEL_CACHE_LIMIT {
                labels.retain(|_, (_, queued)| *queued > 0);
            }
            taken
        };
        for (id, labels) in fresh {
            cache.insert(id, queue.outgoing_labels(&labels));
        }
        if taken.is_empty() {
            if queue.is_stopping() {
                return;
            }
            continue;
        }
        send_batch(&queue, &client, &cache, taken).await;
    }
}

/// What a shard takes for one request.
struct Taken {
    samples: Vec<Pending>,
    histograms: Vec<PendingHistogram>,
    exemplars: Vec<PendingExemplar>,
}

impl Taken {
    /// Up to `max` items, the oldest of each lane: histograms and exemplars a share
    /// in proportion to what is queued (at least one each when any is), samples the
    /// rest.
    fn from(buffer: &mut Buffer, max: usize) -> Taken {
        let queued = buffer.len();
        let share = |len: usize| {
            if queued <= max {
                len
            } else {
                (len * max / queued).max(usize::from(len > 0))
            }
        };
        let h = share(buffer.histograms.len()).min(max);
        let e = share(buffer.exemplars.len()).min(max - h);
        let n = buffer.samples.len().min(max - h - e);
        Taken {
            samples: buffer.samples.drain(..n).collect(),
            histograms: buffer.histograms.drain(..h).collect(),
            exemplars: buffer.exemplars.drain(..e).collect(),
        }
    }

    fn series_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let samples = self.samples.iter().map(|p| p.series_id);
        let histograms = self.histograms.iter().map(|p| p.series_id);
        let exemplars = self.exemplars.iter().map(|p| p.series_id);
        samples.chain(histograms).chain(exemplars)
    }

    fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.histograms.is_empty() && self.exemplars.is_empty()
    }
}

/// Builds one request from what a shard took (grouped by series: each series'
/// samples, histograms and exemplars) and sends it with retries; see the module
/// contract.
async fn send_batch(
    queue: &Queue,
    client: &reqwest::Client,
    cache: &HashMap<u64, Option<Vec<proto::Label>>>,
    taken: Taken,
) {
    let m = &queue.metrics;
    let mut series: Vec<proto::TimeSeries> = Vec::new();
    let mut slot: HashMap<u64, usize> = HashMap::new();
    let mut dropped = Counts::default();
    let mut newest = i64::MIN;
    // The series' entry in the request; `None` when the shard had no labels for it
    // (cannot happen: it keeps them while samples are queued) or relabeling dropped
    // it: its samples are dropped.
    let mut entry = |series_id: u64| -> Option<usize> {
        let Some(Some(labels)) = cache.get(&series_id) else {
            return None;
        };
        Some(*slot.entry(series_id).or_insert_with(|| {
            series.push(proto::TimeSeries {
                labels: labels.clone(),
                ..Default::default()
            });
            series.len() - 1
        }))
    };
    // Placed first, pushed after: `entry` holds `series` meanwhile.
    let mut placed: Vec<(usize, proto::Sample)> = Vec::with_capacity(taken.samples.len());
    for p in &taken.samples {
        let Some(at) = entry(p.series_id) else {
            dropped.0[0] += 1;
            continue;
        };
        let sample = proto::Sample {
            value: p.value,
            timestamp: p.timestamp_ms,
        };
        placed.push((at, sample));
        newest = newest.max(p.timestamp_ms);
    }
    let mut placed_histograms = Vec::with_capacity(taken.histograms.len());
    for p in &taken.histograms {
        let Some(at) = entry(p.series_id) else {
            dropped.0[1] += 1;
            continue;
        };
        let h = proto::Histogram::from_float(p.timestamp_ms, &p.histogram);
        placed_histograms.push((at, h));
        newest = newest.max(p.timestamp_ms);
    }
    let mut placed_exemplars = Vec::with_capacity(taken.exemplars.len());
    for p in &taken.exemplars {
        let Some(at) = entry(p.series_id) else {
            dropped.0[2] += 1;
            continue;
        };
        let e = &p.exemplar;
        let exemplar = proto::Exemplar {
            labels: e
                .labels
                .iter()
                .map(|(name, value)| proto::Label {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            value: e.value,
            timestamp: e.timestamp_ms,
        };
        placed_exemplars.push((at, exemplar));
    }
    for (at, sample) in placed {
        series[at].samples.push(sample);
    }
    for (at, h) in placed_histograms {
        series[at].histograms.push(h);
    }
    for (at, e) in placed_exemplars {
        series[at].exemplars.push(e);
    }
    dropped.add_to(m, |k| &k.dropped);
    let taken_counts = [
        taken.samples.len(),
        taken.histograms.len(),
        taken.exemplars.len(),
    ];
    let mut counts = Counts::default();
    for (i, n) in taken_counts.into_iter().enumerate() {
        counts.0[i] = n as u64 - dropped.0[i];
    }
    if counts.is_empty() {
        return;
    }
    let [count, histogram_count, exemplar_count] = counts.0;
    let mut message = queue.message();
    let metadata = match message {
        ProtobufMessage::V2 => Some(queue.metadata.current()),
        ProtobufMessage::V1 => None,
    };
    let mut body = encode_as(message, series.clone(), metadata.as_deref());
    let q = &queue.config.queue_config;
    let mut backoff = q.min_backoff;
    loop {
        counts.add_to(m, |k| &k.total);
        m.bytes_total
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let outcome = post(queue, client, body.clone(), message).await;
        let retry = match outcome {
            Ok(status) if status.is_success() => {
                m.highest_sent_ms.fetch_max(newest, Ordering::Relaxed);
                return;
            }
            Ok(status)
                if status == reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE
                    && message == ProtobufMessage::V2 =>
            {
                if !queue.fell_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(url = %queue.config.url, "remote write 2.0 answered 415 Unsupported Media Type; falling back to remote write 1.0 (prometheus.WriteRequest)");
                }
                message = ProtobufMessage::V1;
                body = encode_as(message, series.clone(), None);
                continue;
            }
            Ok(status)
                if status.is_server_error() || (status.as_u16() == 429 && q.retry_on_http_429) =>
            {
                format!("HTTP status {status}")
            }
            Ok(status) => {
                counts.add_to(m, |k| &k.failed);
                tracing::error!(url = %queue.config.url, %status, samples = count, histograms = histogram_count, exemplars = exemplar_count, "remote write refused a batch; dropping it (not retried)");
                return;
            }
            Err(e) => e.to_string(),
        };
        if queue.is_stopping() {
            counts.add_to(m, |k| &k.failed);
            tracing::warn!(url = %queue.config.url, samples = count, error = %retry, "remote write queue stopped; dropping a batch that failed");
            return;
        }
        counts.add_to(m, |k| &k.retried);
        tracing::warn!(url = %queue.config.url, error = %retry, retry_in_ms = backoff.as_millis() as u64, "remote write failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(q.max_backoff.max(Duration::from_millis(1)));
    }
}

/// The request body for `series` in `message`'s format; 2.0 series carry their
/// family's entry of `metadata`.
fn encode_as(
    message: ProtobufMessage,
    series: Vec<proto::TimeSeries>,
    metadata: Option<&HashMap<String, MetricMetadata>>,
) -> Vec<u8> {
    match message {
        ProtobufMessage::V1 => proto::encode(&WriteRequest { timeseries: series }),
        ProtobufMessage::V2 => {
            let mut symbols = v2::Symbols::new();
            let timeseries = series
                .into_iter()
                .map(|s| v2::TimeSeries {
                    metadata: metadata.and_then(|table| {
                        let name = s.labels.iter().find(|l| l.name == "__name__")?;
                        v2_metadata(table, &name.value, &mut symbols)
                    }),
                    labels_refs: s
                        .labels
                        .iter()
                        .flat_map(|l| [symbols.intern(&l.name), symbols.intern(&l.value)])
                        .collect(),
                    samples: s
                        .samples
                        .iter()
                        .map(|x| v2::Sample {
                            value: x.value,
                            timestamp: x.timestamp,
                            // None, as Prometheus 3.9 sends (its WAL keeps no start
                            // timestamps before 3.11's `st-storage`; storage keeps
                            // none here): the zero samples of starts go as samples.
                            start_timestamp: 0,
                        })
                        .collect(),
                    histograms: s.histograms,
                    exemplars: s
                        .exemplars
                        .iter()
                        .map(|e| v2::Exemplar {
                            labels_refs: e
                                .labels
                                .iter()
                                .flat_map(|l| [symbols.intern(&l.name), symbols.intern(&l.value)])
                                .collect(),
                            value: e.value,
                            timestamp: e.timestamp,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect();
            proto::encode(&v2::Request {
                symbols: symbols.into_table(),
                timeseries,
            })
        }
    }
}

async fn post(
    queue: &Queue,
    client: &reqwest::Client,
    body: Vec<u8>,
    message: ProtobufMessage,
) -> Result<reqwest::StatusCode, PostError> {
    let c = &queue.config;
    let (content_type, version) = match message {
        ProtobufMessage::V1 => ("application/x-protobuf", "0.1.0"),
        ProtobufMessage::V2 => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
    };
    let mut request = client
        .post(&c.url)
        .timeout(c.remote_timeout)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", content_type)
        .header("X-Prometheus-Remote-Write-Version", version)
        .body(body);
    for (name, value) in &c.headers {
        request = request.header(name, value);
    }
    Ok(crate::http_client::authorize(request, &c.http)
        .await?
        .send()
        .await?
        .status())
}

/// Why a batch could not be posted (it is retried).
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// No credentials.
    #[error(transparent)]
    Auth(#[from] crate::http_client::AuthError),
    /// The request failed.
    #[error(transparent)]
    Request(#[from] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_labels_fill_in_then_write_relabel_configs_run() {
        let config = crate::config::Config::load_str(
            "remote_write:\n- url: http://127.0.0.1:9/w\n  write_relabel_configs:\n  - source_labels: [__name__]\n    regex: drop_me\n    action: drop\n",
            "t.yml",
            std::path::Path::new("."),
        )
        .unwrap();
        let external: BTreeMap<String, String> = [
            ("dc".to_string(), "x".to_string()),
            ("job".to_string(), "ext".to_string()),
        ]
        .into();
        let client = crate::http_client::default_client().unwrap();
        let queue = Queue::new(
            config.remote_write[0].clone(),
            client,
            0,
            external,
            Arc::default(),
        );
        let sent = queue
            .outgoing_labels(&Labels::from_strs(&[("__name__", "m"), ("job", "own")]))
            .unwrap();
        let sent: Vec<(String, String)> = sent.into_iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(
            sent,
            [("__name__", "m"), ("dc", "x"), ("job", "own")]
                .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert!(queue
            .outgoing_labels(&Labels::from_strs(&[("__name__", "drop_me")]))
            .is_none());
        assert_eq!(queue.name.len(), 6, "a hash of the config names it");
    }
}
