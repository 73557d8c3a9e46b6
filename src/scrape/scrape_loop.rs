//! The per-target scrape loop: one tokio task per target.
//!
//! Each tick (offset within the interval by a hash of the target, like Prometheus) it
//! fetches the target with `Accept` negotiation and gzip, enforces the body size and
//! sample/label limits, parses the body, attaches target labels (`honor_labels`
//! semantics), writes stale markers for series that vanished since the last scrape, and
//! appends the synthetic series `up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling` and
//! `scrape_series_added`. A failed scrape yields `up 0` and stale markers for every
//! series of the previous scrape. When the loop is stopped it writes stale markers for
//! everything it produced. Native histograms (jobs with `scrape_native_histograms`)
//! go through the same cache, limits and staleness; their resolution is limited by
//! `native_histogram_min_bucket_factor` and `native_histogram_bucket_limit`, and they
//! are committed apart from the float batch (`Ingester::commit_histograms`: storage
//! only). With `created-timestamp-zero-ingestion` a sample's start timestamp puts the
//! zero sample of the start before it in the batch, once per start and series (see
//! [`BatchBuilder`]'s `start`, `ScrapeCache::start_is_new`).

use crate::config::ScrapeProtocol;
use crate::holdback::TargetHoldback;
use crate::ingest::{now_ms, Ingester};
use crate::relabel;
use crate::scrape::exposition::{self, Format, HistogramRef, NativeHistograms, SampleSink};
use crate::scrape::nhcb;
use crate::scrape::scrape_cache::{Lookup, ScrapeCache, Slot};
use crate::scrape::target::TargetSpec;
use crate::selfmetrics::SelfMetrics;
use crate::storage::exemplars::Exemplar;
use crate::storage::{AppendOutcome, HistogramSample, SeriesRef};
use dataflows::histogram::FloatHistogram;
use dataflows::{Labels, Sample, SampleBatch, STALE_MARKER};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The User-Agent promflow scrapes with.
pub use crate::http_client::USER_AGENT;

/// The last scrape of a target, for `/api/v1/targets` and logs.
#[derive(Clone, Debug, Default)]
pub struct TargetHealth {
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: &'static str,
    /// Error of the last scrape, empty if it succeeded.
    pub last_error: String,
    /// Start of the last scrape (ms).
    pub last_scrape_ms: i64,
    /// Duration of the last scrape.
    pub last_duration: Duration,
    /// Metric metadata (`# HELP`, `# TYPE`, `# UNIT`) of the last successful scrape.
    pub metadata: Arc<Vec<exposition::MetricMetadata>>,
}

/// Why a scrape failed. Displays as the target's `lastError`, in Prometheus's words.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("parse error: {0}")]
    Parse(exposition::ParseError),
    #[error("{0}")]
    Limit(Limit),
    #[error("appending to storage: {0}")]
    Append(crate::storage::AppendError),
}

/// Why the body could not be had.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// A secret file could not be read or an OAuth 2.0 token not had.
    #[error("Get {url:?}: {source}")]
    Authorize {
        url: String,
        source: crate::http_client::AuthError,
    },
    /// The scrape timeout passed first.
    #[error("Get: context deadline exceeded (scrape timeout {0:?})")]
    Timeout(Duration),
    /// The TLS handshake failed; `reason` is Go's wording of it.
    #[error("Get {url:?}: {reason}")]
    Tls { url: String, reason: String },
    /// Any other request failure, shown with its source chain (connection refused, …).
    #[error("{}", with_sources(.0))]
    Request(reqwest::Error),
    #[error("server returned HTTP status {0}")]
    Status(reqwest::StatusCode),
}

/// `e` followed by each of its sources, `: `-separated.
fn with_sources(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Which limit failed a scrape (each has its counter on `/metrics`), in Prometheus
/// 2.42's words (`verifyLabelLimits`: names and values cut to 50 characters, the
/// value quoted, lengths in bytes).
#[derive(Debug, thiserror::Error)]
enum Limit {
    #[error("body size limit exceeded")]
    BodySize,
    #[error("sample limit exceeded")]
    Samples,
    /// A native histogram has more buckets than `native_histogram_bucket_limit` even
    /// at the lowest resolution (Prometheus's `errBucketLimit`).
    #[error("histogram bucket limit exceeded")]
    Buckets,
    #[error("label_limit exceeded (metric: {metric}, number of labels: {count}, limit: {limit})")]
    Labels {
        metric: String,
        count: usize,
        limit: u64,
    },
    #[error("label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {length}, limit: {limit})")]
    LabelNameLength {
        metric: String,
        name: String,
        length: usize,
        limit: u64,
    },
    // Debug quoting is Go's `%q` for printable text.
    #[error("label_value_length_limit exceeded (metric: {metric}, label name: {name}, value: {value:?}, length: {length}, limit: {limit})")]
    LabelValueLength {
        metric: String,
        name: String,
        value: String,
        length: usize,
        limit: u64,
    },
    /// The job is over its `target_limit` (counted where targets are resolved; the
    /// text is the one target resolution gave).
    #[error("{0}")]
    Targets(String),
}

/// What the loop needs from the rest of the service.
#[derive(Clone)]
pub struct LoopContext {
    /// HTTP client of the target's job (built by `crate::http_client` from the
    /// job's `tls_config`; shared by the job's loops).
    pub client: reqwest::Client,
    /// Where samples go.
    pub ingester: Arc<Ingester>,
    /// Self-monitoring.
    pub metrics: Arc<SelfMetrics>,
}

/// State kept from one scrape to the next.
struct LoopState {
    /// What each exposed series became, and which series get stale markers when they
    /// vanish. Lives as long as the loop, i.e. as the target's settings.
    cache: ScrapeCache,
    /// Labels of `up`, `scrape_duration_seconds`, … in [`REPORT_SERIES`] order.
    report_labels: Vec<Arc<Labels>>,
    /// Their series ids.
    report_ids: Vec<u64>,
    /// Their storage handles, once stored (see [`ScrapeCache::give_back`]).
    report_refs: Vec<Option<SeriesRef>>,
    /// With `honor_timestamps`: the lag of the target's exposed timestamps, holding
    /// the watermark back while the loop runs (see `crate::holdback`).
    holdback: Option<TargetHoldback>,
    /// The size of the last body read: the next body's buffer is allocated at about
    /// that size at once, not grown by doubling (see [`fetch`]).
    last_body_len: usize,
}

/// How a loop is told to stop: `true` = write stale markers (target went away),
/// `false` = just stop (a replacement loop takes over).
pub type StopSignal = watch::Sender<Option<bool>>;

/// Runs the loop for `spec` until `stop` says so.
pub async fn run(
    spec: Arc<TargetSpec>,
    ctx: LoopContext,
    health: Arc<Mutex<TargetHealth>>,
    mut stop: watch::Receiver<Option<bool>>,
) {
    let interval = spec.interval.max(Duration::from_millis(1));
    let offset = scrape_offset(spec.identity(), interval, now_ms());
    let report_labels: Vec<Arc<Labels>> = REPORT_SERIES
        .iter()
        .map(|name| Arc::new(with_name(&spec.labels, name)))
        .collect();
    let mut state = LoopState {
        cache: ScrapeCache::new(),
        report_ids: report_labels.iter().map(|l| l.hash()).collect(),
        report_labels,
        report_refs: vec![None; REPORT_SERIES.len()],
        holdback: spec
            .honor_timestamps
            .then(|| ctx.ingester.target_holdback()),
        last_body_len: 0,
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let write_stale = loop {
        tokio::select! {
            _ = ticker.tick() => scrape_once(&spec, &ctx, &health, &mut state).await,
            changed = stop.changed() => {
                let stale = *stop.borrow();
                match (changed, stale) {
                    (Ok(()), Some(stale)) => break stale,
                    (Ok(()), None) => continue,
                    (Err(_), _) => break true,
                }
            }
        }
    };
    if write_stale {
        let ts = now_ms();
        let mut batch: Vec<Sample> = state
            .cache
            .live()
            .map(|(id, labels)| Sample {
                series_id: id,
                labels: labels.clone(),
                timestamp_ms: ts,
                value: STALE_MARKER,
                start_ms: 0,
            })
            .collect();
        for labels in state.report_labels {
            batch.push(Sample {
                series_id: labels.hash(),
                labels,
                timestamp_ms: ts,
                value: STALE_MARKER,
                start_ms: 0,
            });
        }
        // A refused batch is logged and counted by storage.
        let _ = ctx.ingester.commit(batch);
    }
}

const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Prometheus spreads targets over the interval: each scrapes at a fixed phase given by
/// a hash of the target.
fn scrape_offset(target_hash: u64, interval: Duration, now_ms: i64) -> Duration {
    let interval_ns = interval.as_nanos().max(1) as u64;
    let now_ns = (now_ms as u64).wrapping_mul(1_000_000);
    let phase = target_hash % interval_ns;
    let into_interval = now_ns % interval_ns;
    Duration::from_nanos((phase + interval_ns - into_interval) % interval_ns)
}

async fn scrape_once(
    spec: &TargetSpec,
    ctx: &LoopContext,
    health: &Mutex<TargetHealth>,
    state: &mut LoopState,
) {
    let in_flight = ctx.ingester.begin_scrape();
    let ts = in_flight.start_ms();
    let started = Instant::now();
    let fetched = match &spec.forced_error {
        // Over the job's `target_limit`: not scraped, the error is reported as a scrape's.
        Some(forced) => Err(ScrapeError::Limit(Limit::Targets(forced.clone()))),
        None => fetch(spec, ctx, state.last_body_len).await,
    };
    if let Ok((body, _)) = &fetched {
        state.last_body_len = body.len();
    }
    let mut scraped = 0usize;
    // Samples left after metric relabeling (duplicates included); after a limit
    // stopped the scrape, those kept before it (Prometheus reports them as
    // `scrape_samples_post_metric_relabeling`).
    let mut post_relabel = 0usize;
    let mut metadata = None;
    let result = fetched.and_then(|(body, content_type)| {
        let format = Format::from_content_type(content_type.as_deref());
        state.cache.begin(format);
        let exemplars = ctx.ingester.wants_exemplars();
        let starts = ctx.ingester.ingests_start_zeros();
        let mut builder = BatchBuilder::new(spec, ts, &mut state.cache, exemplars, starts);
        let parsed = exposition::parse_with(&body, format, &mut builder);
        if let Ok(metadata) = &parsed {
            builder.convert_nhcb(metadata, format);
        }
        scraped = builder.scraped;
        post_relabel = builder.out.post_relabel;
        metadata = Some(parsed.map_err(ScrapeError::Parse)?);
        builder.finish()
    });
    let duration = started.elapsed();
    let (
        Batch {
            samples: mut batch,
            mut slots,
            mut refs,
            histograms,
            exemplars,
            starts,
            ..
        },
        error,
    ) = match result {
        Ok(batch) => (batch, None),
        Err(e) => {
            if !matches!(e, ScrapeError::Limit(..)) {
                post_relabel = 0;
            }
            (Batch::new(ts, 0), Some(e))
        }
    };
    let added = state.cache.end(error.is_none(), |id, labels| {
        batch.new_series.push((id, labels.clone()));
        batch.push(id, ts, STALE_MARKER, 0);
    });
    // Stale markers go without handles: storage finds their series by id.
    slots.resize(batch.len(), NO_SLOT);
    refs.resize(batch.len(), None);
    let up = if error.is_none() { 1.0 } else { 0.0 };
    let values = [
        up,
        duration.as_secs_f64(),
        scraped as f64,
        post_relabel as f64,
        added as f64,
    ];
    for (((labels, &id), value), handle) in state
        .report_labels
        .iter()
        .zip(&state.report_ids)
        .zip(values)
        .zip(&mut state.report_refs)
    {
        let handle = handle.take();
        if handle.is_none() {
            batch.new_series.push((id, labels.clone()));
        }
        batch.push(id, ts, value, 0);
        refs.push(handle);
    }
    let committed =
        ctx.ingester
            .commit_scrape(batch, &mut refs, &in_flight, state.holdback.as_mut());
    let committed = committed.and_then(|floats| {
        let histograms = ctx.ingester.commit_histograms(histograms)?;
        count_refused(spec, ctx, floats, histograms);
        Ok(())
    });
    if committed.is_ok() {
        state.cache.record_starts(starts);
        let out_of_order = ctx.ingester.commit_exemplars(exemplars);
        if out_of_order > 0 {
            ctx.metrics
                .limits
                .exemplars_out_of_order
                .add(out_of_order as u64);
            tracing::warn!(
                scrape_pool = %spec.config.job_name,
                target = %spec.url,
                num_dropped = out_of_order,
                "Error on ingesting out-of-order exemplars"
            );
        }
    }
    let report_refs = refs.split_off(slots.len());
    for (place, handle) in state.report_refs.iter_mut().zip(report_refs) {
        *place = handle;
    }
    state.cache.give_back(
        slots
            .into_iter()
            .zip(refs)
            .filter(|(slot, _)| *slot != NO_SLOT),
    );
    // Ends the scrape: the watermark passes its samples (see `ScrapeInFlight`).
    drop(in_flight);
    // Storage refused the batch: nothing of this scrape is kept, the target reports it.
    let error = match (error, committed) {
        (None, Err(e)) => Some(ScrapeError::Append(e)),
        (error, _) => error,
    };

    let parse_error = matches!(error, Some(ScrapeError::Parse(_)));
    if let Some(ScrapeError::Limit(limit)) = &error {
        let limits = &ctx.metrics.limits;
        match limit {
            Limit::BodySize => limits.scrape_body_size.inc(),
            Limit::Samples => limits.scrape_samples.inc(),
            Limit::Labels { .. }
            | Limit::LabelNameLength { .. }
            | Limit::LabelValueLength { .. } => limits.scrape_labels.inc(),
            // Prometheus's `…_exceeded_native_histogram_bucket_limit_total` is not
            // among promflow's self-metrics yet.
            Limit::Targets(_) | Limit::Buckets => {}
        }
    }
    ctx.metrics
        .record_scrape(&spec.job, error.is_some(), parse_error);
    if let Some(e) = &error {
        tracing::debug!(job = %spec.job, url = %spec.url, error = %e, "scrape failed");
    }
    let mut h = health.lock();
    h.health = if error.is_none() { "up" } else { "down" };
    h.last_error = error.map(|e| e.to_string()).unwrap_or_default();
    h.last_scrape_ms = ts;
    h.last_duration = duration;
    if let Some(metadata) = metadata {
        if *h.metadata != metadata {
            h.metadata = Arc::new(metadata);
        }
    }
}

/// Counts and logs a scrape's samples storage refused (floats and histograms), as
/// Prometheus's scrape loop does with the errors its appender returns
/// (`checkAddError`, scrape/scrape.go): out of order, duplicate timestamps with another
/// value, out of bounds. Exact duplicates (a target repeating its exposed timestamps,
/// federation) are dropped by storage uncounted.
fn count_refused(
    spec: &TargetSpec,
    ctx: &LoopContext,
    floats: AppendOutcome,
    histograms: AppendOutcome,
) {
    let limits = &ctx.metrics.limits;
    for (count, counter, message) in [
        (
            floats.out_of_order + histograms.out_of_order,
            &limits.scrape_samples_out_of_order,
            "Error on ingesting out-of-order samples",
        ),
        (
            floats.duplicate + histograms.duplicate,
            &limits.scrape_samples_duplicate,
            "Error on ingesting samples with different value but same timestamp",
        ),
        (
            floats.out_of_bounds + histograms.out_of_bounds,
            &limits.scrape_samples_out_of_bounds,
            "Error on ingesting samples that are too old or are too far into the future",
        ),
    ] {
        if count > 0 {
            counter.add(count as u64);
            tracing::warn!(
                scrape_pool = %spec.config.job_name,
                target = %spec.url,
                num_dropped = count,
                "{message}"
            );
        }
    }
}

/// The most a scrape's body buffer is allocated at before any of it arrived.
const PRESIZE_LIMIT: usize = 16 << 20;

/// Reads the target's body; `size_hint` is the last body's size.
async fn fetch(
    spec: &TargetSpec,
    ctx: &LoopContext,
    size_hint: usize,
) -> Result<(Vec<u8>, Option<String>), ScrapeError> {
    let request = ctx
        .client
        .get(&spec.url)
        .header(
            reqwest::header::ACCEPT,
            ScrapeProtocol::accept_header(&spec.config.scrape_protocols),
        )
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", spec.timeout.as_secs_f64()),
        )
        .timeout(spec.timeout);
    let request = crate::http_client::authorize(request, &spec.config.http)
        .await
        .map_err(|source| FetchError::Authorize {
            url: spec.url.clone(),
            source,
        })?;
    let retry = request.try_clone();
    let sent = Instant::now();
    let mut response = match (request.send().await, retry) {
        (Ok(response), _) => response,
        // A kept-alive connection the target closed as the request went out (a server
        // whose idle timeout is about the scrape interval): Go's transport, and so
        // Prometheus, sends the request again on a new connection, and so does this,
        // once, within what is left of the timeout.
        (Err(e), Some(retry)) if closed_before_response(&e) => {
            let left = spec.timeout.saturating_sub(sent.elapsed());
            retry
                .timeout(left)
                .send()
                .await
                .map_err(|e| fetch_error(e, spec))?
        }
        (Err(e), _) => return Err(fetch_error(e, spec).into()),
    };
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()).into());
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Sized at once for the announced length, or the last body plus an eighth (a
    // gzipped body announces none): a body grown from empty by doubling is
    // reallocated and copied at each step, for every scrape (the compare bench's
    // targets send about 140 kB). Never more than the body size limit, nor than
    // `PRESIZE_LIMIT` on a target's word.
    let mut capacity = size_hint + size_hint / 8;
    if let Some(announced) = response.content_length() {
        capacity = usize::try_from(announced).unwrap_or(usize::MAX);
    }
    capacity = capacity.min(PRESIZE_LIMIT);
    if spec.limits.body_size > 0 {
        capacity = capacity.min(usize::try_from(spec.limits.body_size).unwrap_or(usize::MAX));
    }
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(|e| fetch_error(e, spec))? {
        body.extend_from_slice(&chunk);
        // Prometheus reads at most the limit and fails when it got that much.
        if spec.limits.body_size > 0 && body.len() as u64 >= spec.limits.body_size {
            return Err(ScrapeError::Limit(Limit::BodySize));
        }
    }
    Ok((body, content_type))
}

/// Whether a request failed because its connection closed before any response came
/// (hyper's "connection closed before message completed").
fn closed_before_response(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        source = error.source();
    }
    false
}

fn fetch_error(e: reqwest::Error, spec: &TargetSpec) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout(spec.timeout)
    } else if let Some(reason) = crate::http_client::describe_tls_failure(&e) {
        // Prometheus's wording: `Get "<url>": x509: certificate signed by unknown authority`.
        FetchError::Tls {
            url: spec.url.clone(),
            reason,
        }
    } else {
        FetchError::Request(e)
    }
}

/// Turns the samples of one scrape into a batch: target labels, metric relabeling and
/// limits through the scrape cache. The first limit error stops the scrape.
struct BatchBuilder<'a> {
    spec: &'a TargetSpec,
    cache: &'a mut ScrapeCache,
    out: Batch,
    /// Samples read.
    scraped: usize,
    error: Option<ScrapeError>,
    /// Whether exemplars are kept (exemplar storage is on).
    exemplars: bool,
    /// Whether the zero samples of start timestamps are written
    /// (`created-timestamp-zero-ingestion`).
    starts: bool,
    /// Classic histograms to convert (`convert_classic_histograms_to_nhcb`).
    nhcb: Option<nhcb::Collector>,
    /// Whether the sample given last went to [`BatchBuilder::nhcb`] (its start
    /// timestamp goes there too).
    collected: bool,
}

/// The samples a scrape produced so far, with the cache slot and storage handle of
/// each sample's series (columns beside `samples`, which announces the series
/// without a handle).
struct Batch {
    /// The scrape's time: the timestamp of samples without a kept explicit one.
    ts: i64,
    samples: SampleBatch,
    /// The series' slot in the scrape cache ([`NO_SLOT`]: not from the cache).
    slots: Vec<Slot>,
    /// The series' storage handle, lent by the cache (`None`: storage looks it up).
    refs: Vec<Option<SeriesRef>>,
    /// Samples left after metric relabeling, duplicates included (Prometheus's
    /// `scrape_samples_post_metric_relabeling`, and what `sample_limit` counts).
    post_relabel: usize,
    /// Native-histogram samples (jobs with `scrape_native_histograms`), stored apart
    /// from the float columns (see `Ingester::commit_histograms`).
    histograms: Vec<HistogramSample>,
    /// Exemplars (when kept: [`BatchBuilder::exemplars`]) by their sample's series id.
    exemplars: Vec<(u64, Exemplar)>,
    /// The sample added last, while kept (for its exemplar and start timestamp).
    last: Option<Last>,
    /// The zero samples of starts in the batch: the series' cache slot and the start
    /// (recorded in the cache once the batch is stored: [`ScrapeCache::record_starts`]).
    starts: Vec<(Slot, i64)>,
}

/// The sample a [`Batch`] added last.
#[derive(Clone, Copy)]
struct Last {
    series_id: u64,
    timestamp_ms: i64,
    slot: Slot,
    /// A native histogram (the last of [`Batch::histograms`]), else the last float.
    histogram: bool,
}

/// [`Batch::slots`] of a sample whose series is not in the scrape cache.
const NO_SLOT: Slot = Slot::MAX;

impl Batch {
    fn new(ts: i64, capacity: usize) -> Batch {
        Batch {
            ts,
            samples: SampleBatch::with_capacity(capacity),
            slots: Vec::with_capacity(capacity),
            refs: Vec::with_capacity(capacity),
            post_relabel: 0,
            histograms: Vec::new(),
            exemplars: Vec::new(),
            last: None,
            starts: Vec::new(),
        }
    }

    /// Adds a sample as the cache resolved it; false if the cache does not know it.
    fn add(&mut self, lookup: Lookup<'_>, value: f64, timestamp_ms: Option<i64>) -> bool {
        self.last = None;
        match lookup {
            Lookup::Unknown => return false,
            Lookup::Dropped => {}
            // The first value of the scrape stays.
            Lookup::Duplicate => self.post_relabel += 1,
            Lookup::Series(slot, series_id, labels, handle) => {
                self.post_relabel += 1;
                self.last = Some(Last {
                    series_id,
                    timestamp_ms: timestamp_ms.unwrap_or(self.ts),
                    slot,
                    histogram: false,
                });
                if handle.is_none() {
                    // Storage and the dataflow's catalog learn the series' labels.
                    self.samples.new_series.push((series_id, labels.clone()));
                }
                self.samples
                    .push(series_id, timestamp_ms.unwrap_or(self.ts), value, 0);
                self.slots.push(slot);
                self.refs.push(handle);
            }
        }
        true
    }
}

impl<'a> BatchBuilder<'a> {
    fn new(
        spec: &'a TargetSpec,
        ts: i64,
        cache: &'a mut ScrapeCache,
        exemplars: bool,
        starts: bool,
    ) -> Self {
        BatchBuilder {
            spec,
            out: Batch::new(ts, cache.cached_texts()),
            cache,
            scraped: 0,
            error: None,
            exemplars,
            starts,
            nhcb: spec
                .config
                .convert_classic_histograms_to_nhcb
                .then(|| nhcb::Collector::new(spec.config.always_scrape_classic_histograms)),
            collected: false,
        }
    }

    /// After the body: the converted classic histograms as native histograms, and the
    /// held-back samples that were not part of one as floats (see [`nhcb`]).
    fn convert_nhcb(&mut self, metadata: &[exposition::MetricMetadata], format: Format) {
        let Some(collector) = self.nhcb.take() else {
            return;
        };
        let (converted, floats) = collector.finish(metadata, format == Format::Protobuf);
        for part in &floats {
            part.with_ref(|sample| self.sample(sample));
            if part.start_ms != 0 {
                self.start(part.start_ms);
            }
            for exemplar in &part.exemplars {
                exemplar.with_ref(|exemplar| self.exemplar(exemplar));
            }
        }
        for h in converted {
            let labels = nhcb::borrowed(&h.labels);
            self.histogram(HistogramRef {
                series: &h.series,
                name: &h.name,
                labels: &labels,
                histogram: h.histogram,
                timestamp_ms: h.timestamp_ms,
            });
            if h.start_ms != 0 {
                self.start(h.start_ms);
            }
            for exemplar in &h.exemplars {
                exemplar.with_ref(|exemplar| self.exemplar(exemplar));
            }
        }
    }

    /// The explicit timestamp kept for a sample, if any.
    fn kept_timestamp(&self, exposed: Option<i64>) -> Option<i64> {
        exposed.filter(|_| self.spec.honor_timestamps)
    }

    fn finish(self) -> Result<Batch, ScrapeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let limit = self.spec.limits.samples;
        if limit > 0 && self.out.post_relabel as u64 > limit {
            return Err(ScrapeError::Limit(Limit::Samples));
        }
        Ok(self.out)
    }
}

impl SampleSink for BatchBuilder<'_> {
    const KNOWS_SERIES: bool = true;

    fn known(&mut self, series: &[u8], value: f64, timestamp_ms: Option<i64>) -> bool {
        if self.error.is_some() {
            // A label limit failed the scrape: counting stops at the failing sample,
            // as in Prometheus (the sample limit, checked at the end, counts them all).
            return true;
        }
        if self.nhcb.is_some() {
            // Every sample's name is needed: the labels are read.
            return false;
        }
        let timestamp_ms = self.kept_timestamp(timestamp_ms);
        let lookup = self.cache.lookup(series, timestamp_ms.is_some());
        let known = self.out.add(lookup, value, timestamp_ms);
        self.scraped += usize::from(known);
        known
    }

    fn sample(&mut self, sample: exposition::SampleRef<'_>) {
        self.collected = false;
        if self.error.is_some() {
            return;
        }
        if let Some(collector) = &mut self.nhcb {
            if collector.wants(sample.name) {
                collector.push(&sample);
                self.collected = true;
                if collector.holds_back() {
                    // Its exemplars are not another sample's.
                    self.out.last = None;
                    return;
                }
            }
        }
        self.scraped += 1;
        let labels = match label_new_series(self.spec, &sample) {
            Ok(labels) => labels,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let timestamp_ms = self.kept_timestamp(sample.timestamp_ms);
        let lookup = self
            .cache
            .insert(sample.series, labels, timestamp_ms.is_some());
        self.out.add(lookup, sample.value, timestamp_ms);
    }

    fn native_histograms(&self) -> NativeHistograms {
        let config = &self.spec.config;
        if config.scrape_native_histograms {
            NativeHistograms::On {
                keep_classic: config.always_scrape_classic_histograms,
            }
        } else {
            NativeHistograms::Off
        }
    }

    /// A native histogram: its resolution limited as the job says, its series found
    /// through the scrape cache like a float sample's (so it is relabeled, limited,
    /// counted and marked stale alike), kept in the batch's histogram list. The
    /// cache's storage handle is not used: storage finds the series by id.
    fn histogram(&mut self, sample: HistogramRef<'_>) {
        self.collected = false;
        if self.error.is_some() {
            return;
        }
        if let Some(collector) = &mut self.nhcb {
            collector.native(sample.name, sample.labels);
        }
        self.scraped += 1;
        let mut histogram = sample.histogram;
        let config = &self.spec.config;
        let limited = limit_resolution(
            &mut histogram,
            config.native_histogram_min_bucket_factor,
            config.native_histogram_bucket_limit,
        );
        if let Err(e) = limited {
            self.error = Some(e);
            return;
        }
        let timestamp_ms = self.kept_timestamp(sample.timestamp_ms);
        let timed = timestamp_ms.is_some();
        let lookup = self.cache.lookup(sample.series, timed);
        if !matches!(lookup, Lookup::Unknown) {
            self.out.add_histogram(lookup, histogram, timestamp_ms);
            return;
        }
        let as_float = exposition::SampleRef {
            series: sample.series,
            name: sample.name,
            labels: sample.labels,
            value: 0.0,
            timestamp_ms: sample.timestamp_ms,
        };
        let labels = match label_new_series(self.spec, &as_float) {
            Ok(labels) => labels,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let lookup = self.cache.insert(sample.series, labels, timed);
        self.out.add_histogram(lookup, histogram, timestamp_ms);
    }

    fn exemplars(&self) -> bool {
        self.exemplars
    }

    fn start_timestamps(&self) -> bool {
        self.starts
    }

    /// The start timestamp of the sample just added, if its series is kept: when it
    /// is before the sample and not the start the cache recorded for the series last,
    /// the zero sample of the start goes into the batch before the sample (Prometheus
    /// 3.x's scrape loop calls `AppendSTZeroSample`, or `AppendHistogramSTZeroSample`
    /// for a native histogram, before each such sample: scrape/scrape.go; a start at
    /// or after the sample is its `ErrSTNewerThanSample`, ignored). Storage drops the
    /// zero sample where the series already has a sample at or after it.
    fn start(&mut self, start_ms: i64) {
        if let Some(collector) = self.nhcb.as_mut().filter(|_| self.collected) {
            // A classic histogram's series: the start goes with it to the collector.
            collector.start(start_ms);
        }
        let Some(last) = self.out.last.filter(|_| self.error.is_none()) else {
            return;
        };
        if start_ms >= last.timestamp_ms || !self.cache.start_is_new(last.slot, start_ms) {
            return;
        }
        let out = &mut self.out;
        if last.histogram {
            let at = out.histograms.len() - 1;
            let zero = out.histograms[at].start_zero(start_ms);
            out.histograms.insert(at, zero);
        } else {
            let at = out.samples.len() - 1;
            out.samples.insert_start_zero(at, start_ms);
            // Storage finds the series by id (the sample after it holds the handle).
            out.slots.insert(at, NO_SLOT);
            out.refs.insert(at, None);
        }
        out.starts.push((last.slot, start_ms));
    }

    /// The exemplar of the sample just added, if its series is kept; without an
    /// exposed timestamp it takes its sample's (Prometheus does the same).
    fn exemplar(&mut self, exemplar: exposition::ExemplarRef<'_>) {
        if let Some(collector) = self.nhcb.as_mut().filter(|_| self.collected) {
            // A classic histogram's series: its exemplars go with it to the collector.
            collector.exemplar(&exemplar);
        }
        let Some(Last {
            series_id,
            timestamp_ms: sample_ts,
            ..
        }) = self.out.last.filter(|_| self.error.is_none())
        else {
            return;
        };
        let labels = exemplar
            .labels
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        self.out.exemplars.push((
            series_id,
            Exemplar {
                labels: Labels::from_pairs(labels),
                value: exemplar.value,
                timestamp_ms: exemplar.timestamp_ms.unwrap_or(sample_ts),
                has_timestamp: exemplar.timestamp_ms.is_some(),
            },
        ));
    }
}

impl Batch {
    /// Adds a histogram sample as the cache resolved it.
    fn add_histogram(
        &mut self,
        lookup: Lookup<'_>,
        histogram: FloatHistogram,
        timestamp_ms: Option<i64>,
    ) {
        self.last = None;
        match lookup {
            Lookup::Unknown | Lookup::Dropped => {}
            Lookup::Duplicate => self.post_relabel += 1,
            Lookup::Series(slot, series_id, labels, _handle) => {
                self.post_relabel += 1;
                self.last = Some(Last {
                    series_id,
                    timestamp_ms: timestamp_ms.unwrap_or(self.ts),
                    slot,
                    histogram: true,
                });
                self.histograms.push(HistogramSample {
                    series_id,
                    labels: labels.clone(),
                    timestamp_ms: timestamp_ms.unwrap_or(self.ts),
                    histogram,
                    start_ms: 0,
                });
            }
        }
    }
}

/// `native_histogram_min_bucket_factor` then `native_histogram_bucket_limit`, as
/// Prometheus applies them to a scraped native histogram: the schema is lowered to the
/// highest whose bucket growth factor `2^(2^-schema)` reaches the factor (Prometheus's
/// `pickSchema`), then one step at a time while the histogram has more buckets than
/// the limit; at schema -4 with still too many, the scrape fails with "histogram
/// bucket limit exceeded". Custom buckets (`convert_classic_histograms_to_nhcb`) are
/// kept as they are, and fail the scrape at once when more than the limit.
fn limit_resolution(
    h: &mut FloatHistogram,
    min_bucket_factor: f64,
    limit: u64,
) -> Result<(), ScrapeError> {
    if h.uses_custom_buckets() {
        // Custom buckets (NHCB) cannot be merged: over the limit the scrape fails.
        let buckets = (h.positive_buckets.len() + h.negative_buckets.len()) as u64;
        if limit > 0 && buckets > limit {
            return Err(ScrapeError::Limit(Limit::Buckets));
        }
        return Ok(());
    }
    let max_schema = pick_schema(min_bucket_factor);
    if h.schema > max_schema {
        h.reduce_resolution(max_schema);
    }
    if limit > 0 {
        let buckets =
            |h: &FloatHistogram| (h.positive_buckets.len() + h.negative_buckets.len()) as u64;
        while buckets(h) > limit {
            if h.schema <= -4 {
                return Err(ScrapeError::Limit(Limit::Buckets));
            }
            h.reduce_resolution(h.schema - 1);
        }
    }
    Ok(())
}

/// Prometheus's `pickSchema`: the highest schema whose buckets grow by at least
/// `factor` (a factor of 1 or less, or unset: no limit, schema 8).
fn pick_schema(factor: f64) -> i32 {
    let factor = if factor <= 1.0 { 1.00271 } else { factor };
    let floor = (-factor.log2().log2()).floor();
    floor.clamp(-4.0, 8.0) as i32
}

/// Final labels of a series not in the cache: target labels merged, metric relabeling
/// applied (`None` = dropped), label limits checked.
fn label_new_series(
    spec: &TargetSpec,
    sample: &exposition::SampleRef<'_>,
) -> Result<Option<Labels>, ScrapeError> {
    let scraped: Vec<(String, String)> = sample
        .labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let labels = attach_target_labels(spec, sample.name.to_string(), scraped);
    let Some(labels) = relabel::process(&spec.config.metric_relabel_configs, &labels) else {
        return Ok(None);
    };
    check_label_limits(spec, &labels)?;
    Ok(Some(labels))
}

/// Merges target labels into a scraped sample's labels the way Prometheus does: with
/// `honor_labels` the scraped value wins; otherwise a conflicting scraped label is kept
/// as `exported_<name>` and the target's value wins.
fn attach_target_labels(spec: &TargetSpec, name: String, scraped: Vec<(String, String)>) -> Labels {
    let mut pairs: Vec<(String, String)> =
        Vec::with_capacity(scraped.len() + spec.labels.len() + 1);
    pairs.push(("__name__".into(), name));
    if spec.honor_labels {
        let scraped_names: HashSet<&str> = scraped.iter().map(|(n, _)| n.as_str()).collect();
        for (n, v) in spec.labels.iter() {
            if !scraped_names.contains(n) {
                pairs.push((n.to_string(), v.to_string()));
            }
        }
        // A scraped label with an empty value removes the target label too.
        pairs.extend(scraped);
    } else {
        for (n, v) in scraped {
            if spec.labels.get(&n).is_some() {
                let mut exported = format!("exported_{n}");
                while spec.labels.get(&exported).is_some() {
                    exported = format!("exported_{exported}");
                }
                pairs.push((exported, v));
            } else {
                pairs.push((n, v));
            }
        }
        pairs.extend(
            spec.labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
    }
    Labels::from_pairs(pairs)
}

/// `label_limit`, `label_name_length_limit` and `label_value_length_limit`, with
/// Prometheus 2.42's messages (`verifyLabelLimits`: names and values cut to 50
/// characters, the value quoted, lengths in bytes).
fn check_label_limits(spec: &TargetSpec, labels: &Labels) -> Result<(), ScrapeError> {
    let limits = &spec.limits;
    // Only when a limit is hit (this runs for every new series).
    let metric = || cut50(labels.metric_name());
    let fail = |limit: Limit| Err(ScrapeError::Limit(limit));
    if limits.labels > 0 && labels.len() as u64 > limits.labels {
        return fail(Limit::Labels {
            metric: metric(),
            count: labels.len(),
            limit: limits.labels,
        });
    }
    for (name, value) in labels.iter() {
        if limits.label_name_length > 0 && name.len() as u64 > limits.label_name_length {
            return fail(Limit::LabelNameLength {
                metric: metric(),
                name: cut50(name),
                length: name.len(),
                limit: limits.label_name_length,
            });
        }
        if limits.label_value_length > 0 && value.len() as u64 > limits.label_value_length {
            return fail(Limit::LabelValueLength {
                metric: metric(),
                name: cut50(name),
                value: cut50(value),
                length: value.len(),
                limit: limits.label_value_length,
            });
        }
    }
    Ok(())
}

/// Go's `%.50s`: the first 50 characters.
fn cut50(s: &str) -> String {
    s.chars().take(50).collect()
}

fn with_name(target_labels: &Labels, name: &str) -> Labels {
    let mut pairs: Vec<(String, String)> = target_labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    pairs.push(("__name__".into(), name.to_string()));
    Labels::from_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus's `pickSchema` and bucket-limit reduction (scrape/target.go): a
    /// factor of 1.1 allows schema 2 (buckets grow by 2^(1/4) = 1.19; schema 3's 1.09
    /// is too fine); 20 buckets of schema 3 with a limit of 6 go down to schema 1,
    /// where neighbours have merged into 5; a limit no schema meets fails.
    #[test]
    fn resolution_limits_reduce_as_prometheus_does() {
        use dataflows::histogram::Span;
        assert_eq!(pick_schema(0.0), 8);
        assert_eq!(pick_schema(1.1), 2);
        assert_eq!(pick_schema(2.0), 0);
        assert_eq!(pick_schema(1e9), -4);
        let h = FloatHistogram {
            schema: 3,
            count: 20.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 20,
            }],
            positive_buckets: vec![1.0; 20],
            ..FloatHistogram::default()
        };
        let mut factor = h.clone();
        limit_resolution(&mut factor, 1.1, 0).unwrap();
        assert_eq!((factor.schema, factor.positive_buckets.len()), (2, 11));
        let mut limited = h.clone();
        limit_resolution(&mut limited, 0.0, 6).unwrap();
        assert_eq!(limited.schema, 1);
        assert_eq!(limited.positive_buckets, vec![1.0, 4.0, 4.0, 4.0, 4.0, 3.0]);
        let mut impossible = h.clone();
        let failed = limit_resolution(&mut impossible, 0.0, 1).unwrap_err();
        assert_eq!(failed.to_string(), "histogram bucket limit exceeded");
        // Custom buckets are not merged: within the limit kept, over it refused.
        let custom = FloatHistogram {
            schema: -53,
            custom_values: (1..20).map(f64::from).collect(),
            ..h
        };
        let mut kept = custom.clone();
        limit_resolution(&mut kept, 1.1, 20).unwrap();
        assert_eq!(kept, custom);
        let failed = limit_resolution(&mut kept, 0.0, 19).unwrap_err();
        assert_eq!(failed.to_string(), "histogram bucket limit exceeded");
    }

    #[test]
    fn offsets_are_within_the_interval_and_stable_in_phase() {
        let interval = Duration::from_secs(15);
        for now in [0i64, 1_234, 14_999, 1_700_000_000_123] {
            let off = scrape_offset(42_000_000_007, interval, now);
            assert!(off < interval);
            // Scrape instant modulo the interval is the same whatever `now` is.
            let at_ns = now as u128 * 1_000_000 + off.as_nanos();
            assert_eq!(
                at_ns % interval.as_nanos(),
                42_000_000_007u128 % interval.as_nanos()
            );
        }
    }
}
