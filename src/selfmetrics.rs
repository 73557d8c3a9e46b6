//! promflow's own metrics, served on `/metrics` in the text exposition format.
//!
//! Operational events (a scrape error, a parse error, a reload) bump a counter here in
//! one place and are logged by their caller; this module only counts and renders.

use crate::exposition::{write_header, write_sample};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A monotonically increasing counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, stored as `f64` bits.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    /// Adds `d` (negative to subtract), atomically.
    pub fn add(&self, d: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + d).to_bits())
            });
    }
}

/// A summary over a sliding window, as Prometheus's client summaries: quantiles of the
/// observations of the last [`Summary::WINDOW`] (at most [`Summary::KEEP`] of the
/// newest), with the `_sum` and `_count` of every observation.
#[derive(Default)]
pub struct Summary(Mutex<SummaryState>);

#[derive(Default)]
struct SummaryState {
    recent: std::collections::VecDeque<(std::time::Instant, f64)>,
    sum: f64,
    count: u64,
}

impl Summary {
    /// How long an observation counts in the quantiles (Prometheus's `MaxAge`).
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
    /// The most observations kept for the quantiles.
    pub const KEEP: usize = 4096;

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.sum += v;
        s.count += 1;
        if s.recent.len() == Self::KEEP {
            s.recent.pop_front();
        }
        s.recent.push_back((std::time::Instant::now(), v));
    }

    /// Writes the family `name` with `quantiles` (NaN while the window is empty, as
    /// Prometheus writes them).
    pub fn render(&self, out: &mut String, name: &str, help: &str, quantiles: &[f64]) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while s
            .recent
            .front()
            .is_some_and(|(at, _)| at.elapsed() > Self::WINDOW)
        {
            s.recent.pop_front();
        }
        let mut values: Vec<f64> = s.recent.iter().map(|(_, v)| *v).collect();
        values.sort_by(f64::total_cmp);
        write_header(out, name, "summary", help);
        for q in quantiles {
            let value = if values.is_empty() {
                f64::NAN
            } else {
                let rank = (q * values.len() as f64).ceil() as usize;
                values[rank.clamp(1, values.len()) - 1]
            };
            let q = q.to_string();
            write_sample(out, name, [("quantile", q.as_str())], value, None);
        }
        write_sample(out, &format!("{name}_sum"), [], s.sum, None);
        write_sample(out, &format!("{name}_count"), [], s.count as f64, None);
    }
}

/// Per-Alertmanager notification counters (Prometheus's `alertmanager` label: the
/// URL alerts are POSTed to).
#[derive(Default, Clone, Copy)]
pub struct AlertmanagerCounters {
    /// Alerts sent (accepted or not), one per alert per batch.
    pub sent: u64,
    /// Failed POST attempts.
    pub errors: u64,
}

/// Counters kept per scrape job.
#[derive(Default)]
pub struct JobCounters {
    /// Scrapes attempted.
    pub scrapes: u64,
    /// Scrapes that failed (network, HTTP status, limit, parse).
    pub failures: u64,
    /// Scrapes that failed because the body did not parse.
    pub parse_errors: u64,
}

/// Service discovery mechanisms with refresh counters (always rendered, even at 0).
pub const SD_MECHANISMS: [&str; 3] = ["dns", "ec2", "file"];

/// Counters kept per service discovery mechanism.
#[derive(Default, Clone, Copy)]
pub struct SdCounters {
    /// Refreshes attempted.
    pub refreshes: u64,
    /// Refreshes (or file reads) that failed; the last good targets were kept.
    pub failures: u64,
}

/// Every metric promflow exports about itself.
#[derive(Default)]
pub struct SelfMetrics {
    /// Samples written to storage.
    pub samples_ingested: Counter,
    /// Samples refused by storage: out of order, duplicate timestamps with another
    /// value, out of bounds (exact duplicates are dropped uncounted).
    pub samples_out_of_order: Counter,
    /// Per-job scrape counters, keyed by job name.
    pub jobs: Mutex<BTreeMap<String, JobCounters>>,
    /// 1 if the last configuration reload succeeded.
    pub config_last_reload_successful: Gauge,
    /// When the configuration was last loaded successfully (seconds).
    pub config_last_reload_success_timestamp_seconds: Gauge,
    /// Reloads that failed.
    pub config_reload_failures: Counter,
    /// Per Alertmanager URL: alerts sent and failed POSTs (an Alertmanager is listed,
    /// at 0, once discovered).
    pub alertmanagers: Mutex<BTreeMap<String, AlertmanagerCounters>>,
    /// Alerts dropped: the notification queue was full, or no Alertmanager took them.
    pub notifications_dropped: Counter,
    /// Alerts waiting in the notification queue.
    pub notifications_queue_length: Gauge,
    /// `--alertmanager.notification-queue-capacity`, as the notifier applies it.
    pub notifications_queue_capacity: Gauge,
    /// Alertmanagers discovered and active (after relabeling and deduplication).
    pub notifications_alertmanagers_discovered: Gauge,
    /// Per-mechanism discovery counters, keyed by mechanism (`dns`, `ec2`, `file`).
    pub sd: Mutex<BTreeMap<&'static str, SdCounters>>,
    /// DNS discovery: names looked up (`prometheus_sd_dns_lookups_total`).
    pub sd_dns_lookups: Counter,
    /// DNS discovery: lookups that failed (`prometheus_sd_dns_lookup_failures_total`).
    pub sd_dns_lookup_failures: Counter,
    /// Limits that refused input (rendered under Prometheus's names where it has one).
    pub limits: LimitCounters,
}

/// How often each limit on incoming data was hit (see README, "Limits").
#[derive(Default)]
pub struct LimitCounters {
    /// Scrapes whose body reached `body_size_limit`.
    pub scrape_body_size: Counter,
    /// Scrapes with more samples than `sample_limit`.
    pub scrape_samples: Counter,
    /// Scraped exemplars not newer than their series' newest (dropped).
    pub exemplars_out_of_order: Counter,
    /// Scraped samples (floats and native histograms) older than their series' newest.
    pub scrape_samples_out_of_order: Counter,
    /// Scraped samples at their series' newest timestamp with another value (exact
    /// duplicates are dropped uncounted, as Prometheus does).
    pub scrape_samples_duplicate: Counter,
    /// Scraped samples older than the head's lower bound (their time is in a block).
    pub scrape_samples_out_of_bounds: Counter,
    /// Scrapes that failed on `label_limit`, `label_name_length_limit` or
    /// `label_value_length_limit`.
    pub scrape_labels: Counter,
    /// Target updates where a job had more targets than its `target_limit`.
    pub targets: Counter,
    /// Queries refused by `--query.max-samples`.
    pub query_samples: Counter,
    /// Ad-hoc queries being evaluated or waiting for a turn (`--query.max-concurrency`).
    pub queries_in_flight: Gauge,
    /// `--query.max-concurrency`.
    pub queries_concurrent_max: Gauge,
    /// Request bodies refused for their size, per endpoint.
    pub request_bodies: Mutex<BTreeMap<&'static str, u64>>,
    /// Stream consumers connected now.
    pub stream_consumers: Gauge,
    /// Stream requests refused because `--web.stream.max-consumers` were connected.
    pub stream_consumers_refused: Counter,
}

impl LimitCounters {
    /// Counts a request body refused on `endpoint` for its size.
    pub fn record_body_too_large(&self, endpoint: &'static str) {
        let mut bodies = self
            .request_bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *bodies.entry(endpoint).or_default() += 1;
    }
}

/// Values read from elsewhere at render time (storage, engine, process).
pub struct RenderInputs {
    /// Series in the head.
    pub active_series: usize,
    /// Samples in the head.
    pub head_samples: usize,
    /// The engine's watermark and frontier (ms) and its late/fed counts.
    pub engine: dataflows::EngineStats,
    /// Now (ms).
    pub now_ms: i64,
    /// Targets being scraped.
    pub active_targets: usize,
}

impl SelfMetrics {
    /// Records the outcome of one scrape of `job`.
    pub fn record_scrape(&self, job: &str, failed: bool, parse_error: bool) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let counters = jobs.entry(job.to_string()).or_default();
        counters.scrapes += 1;
        counters.failures += failed as u64;
        counters.parse_errors += parse_error as u64;
    }

    /// Records one discovery refresh of `mechanism`.
    pub fn record_sd_refresh(&self, mechanism: &'static str, failed: bool) {
        let mut sd = self.sd.lock().unwrap_or_else(|e| e.into_inner());
        let counters = sd.entry(mechanism).or_default();
        counters.refreshes += 1;
        counters.failures += failed as u64;
    }

    /// Records a failure inside a refresh that otherwise went on (a file that
    /// could not be read).
    pub fn record_sd_failure(&self, mechanism: &'static str) {
        let mut sd = self.sd.lock().unwrap_or_else(|e| e.into_inner());
        sd.entry(mechanism).or_default().failures += 1;
    }

    /// Failures counted so far for `mechanism`.
    pub fn sd_failures(&self, mechanism: &str) -> u64 {
        let sd = self.sd.lock().unwrap_or_else(|e| e.into_inner());
        sd.get(mechanism).map_or(0, |c| c.failures)
    }

    /// Renders every metric in the text exposition format 0.0.4.
    pub fn render(&self, inputs: &RenderInputs) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(&[(&str, &str)], f64)]| {
            write_header(&mut out, name, kind, help);
            for (labels, value) in rows {
                write_sample(&mut out, name, labels.iter().copied(), *value, None);
            }
        };
        metric(
            "promflow_build_info",
            "gauge",
            "A metric with a constant '1' value labeled by the version promflow was built from.",
            &[(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        );
        metric(
            "promflow_samples_ingested_total",
            "counter",
            "Samples written to storage and fed to the dataflow.",
            &[(&[], self.samples_ingested.get() as f64)],
        );
        metric(
            "promflow_samples_out_of_order_total",
            "counter",
            "Samples refused by storage: out of order, at the newest timestamp with another value, or out of bounds (exact duplicates are not).",
            &[(&[], self.samples_out_of_order.get() as f64)],
        );
        metric(
            "promflow_samples_late_total",
            "counter",
            "Samples older than the dataflow's watermark, stored but not fed to the dataflow.",
            &[(&[], inputs.engine.samples_late as f64)],
        );
        metric(
            "promflow_engine_samples_unknown_series_total",
            "counter",
            "Samples the dataflow skipped because its series catalog did not know their series (0 unless a producer failed to announce a new series).",
            &[(&[], inputs.engine.samples_unknown_series as f64)],
        );
        metric(
            "promflow_engine_exchange_ids_indexed_total",
            "counter",
            "Samples sent to another process of the cluster with their series id as an index into the series-id dictionary of the sending and receiving workers.",
            &[(&[], inputs.engine.exchange_ids_indexed as f64)],
        );
        metric(
            "promflow_engine_exchange_id_entries_total",
            "counter",
            "Series-id dictionary entries sent to other processes of the cluster (a series id crossing whole, about once per sending worker, receiving worker and 10 minutes).",
            &[(&[], inputs.engine.exchange_id_entries as f64)],
        );
        metric(
            "promflow_engine_exchange_label_refs_total",
            "counter",
            "Label sets of spread rules' partials, join sides, joined elements and rule outputs sent to another process of the cluster as an index into the labels dictionary of the sending and receiving workers (the receiving worker had them in the period).",
            &[(&[], inputs.engine.exchange_label_refs as f64)],
        );
        metric(
            "promflow_engine_exchange_labels_sent_total",
            "counter",
            "Label sets sent whole to another process of the cluster in spread rules' partials, join sides, joined elements and rule outputs (about once per sending worker, receiving worker and 10 minutes).",
            &[(&[], inputs.engine.exchange_labels_sent as f64)],
        );
        metric(
            "promflow_engine_rules_installed_total",
            "counter",
            "Rules installed in the dataflow (a rule group change installs only its own rules).",
            &[(&[], inputs.engine.rules_installed as f64)],
        );
        metric(
            "promflow_engine_rules_owned",
            "gauge",
            "Owned (not spread) maintained rules this process's workers evaluate, whichever process registered them.",
            &[(&[], inputs.engine.rules_owned as f64)],
        );
        metric(
            "promflow_active_series",
            "gauge",
            "Series held in the in-memory head.",
            &[(&[], inputs.active_series as f64)],
        );
        metric(
            "promflow_head_samples",
            "gauge",
            "Samples held in the in-memory head.",
            &[(&[], inputs.head_samples as f64)],
        );
        metric(
            "promflow_active_targets",
            "gauge",
            "Targets being scraped.",
            &[(&[], inputs.active_targets as f64)],
        );
        metric(
            "promflow_dataflow_frontier_timestamp_seconds",
            "gauge",
            "The time up to which the dataflow has processed all input.",
            &[(&[], inputs.engine.frontier_ms as f64 / 1000.0)],
        );
        let lag = (inputs.now_ms - inputs.engine.frontier_ms).max(0) as f64 / 1000.0;
        metric(
            "promflow_dataflow_lag_seconds",
            "gauge",
            "How far the dataflow's frontier is behind the wall clock.",
            &[(&[], lag)],
        );
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let per_job = |pick: fn(&JobCounters) -> u64| -> Vec<(String, f64)> {
                jobs.iter()
                    .map(|(job, c)| (job.clone(), pick(c) as f64))
                    .collect()
            };
            for (name, help, rows) in [
                (
                    "promflow_scrapes_total",
                    "Scrapes attempted, per job.",
                    per_job(|c| c.scrapes),
                ),
                (
                    "promflow_scrape_failures_total",
                    "Scrapes that failed, per job.",
                    per_job(|c| c.failures),
                ),
                (
                    "promflow_scrape_parse_errors_total",
                    "Scrapes whose body did not parse, per job.",
                    per_job(|c| c.parse_errors),
                ),
            ] {
                let rows: Vec<([(&str, &str); 1], f64)> = rows
                    .iter()
                    .map(|(job, v)| ([("job", job.as_str())], *v))
                    .collect();
                let rows: Vec<(&[(&str, &str)], f64)> =
                    rows.iter().map(|(l, v)| (&l[..], *v)).collect();
                metric(name, "counter", help, &rows);
            }
        }
        {
            let sd = self.sd.lock().unwrap_or_else(|e| e.into_inner());
            let mut mechanisms: Vec<&str> = SD_MECHANISMS.to_vec();
            mechanisms.extend(sd.keys().filter(|m| !SD_MECHANISMS.contains(m)));
            for (name, help, pick) in [
                (
                    "promflow_sd_refreshes_total",
                    "Service discovery refreshes, per mechanism.",
                    (|c: &SdCounters| c.refreshes) as fn(&SdCounters) -> u64,
                ),
                (
                    "promflow_sd_refresh_failures_total",
                    "Service discovery refreshes that failed (the last good targets were kept), per mechanism.",
                    |c: &SdCounters| c.failures,
                ),
                (
                    "prometheus_sd_refresh_failures_total",
                    "Number of refresh failures for the given SD mechanism.",
                    |c: &SdCounters| c.failures,
                ),
            ] {
                let labels: Vec<[(&str, &str); 1]> =
                    mechanisms.iter().map(|m| [("mechanism", *m)]).collect();
                let rows: Vec<(&[(&str, &str)], f64)> = labels
                    .iter()
                    .zip(&mechanisms)
                    .map(|(l, m)| (&l[..], sd.get(m).map_or(0, pick) as f64))
                    .collect();
                metric(name, "counter", help, &rows);
            }
        }
        let limits = &self.limits;
        for (name, help, value) in [
            (
                "prometheus_target_scrapes_exceeded_body_size_limit_total",
                "Total number of scrapes that hit the body size limit",
                limits.scrape_body_size.get(),
            ),
            (
                "prometheus_target_scrapes_exceeded_sample_limit_total",
                "Total number of scrapes that hit the sample limit and were rejected.",
                limits.scrape_samples.get(),
            ),
            (
                "prometheus_target_scrapes_exemplar_out_of_order_total",
                "Total number of exemplar rejected due to not being out of the expected order.",
                limits.exemplars_out_of_order.get(),
            ),
            (
                "prometheus_target_scrapes_sample_out_of_order_total",
                "Total number of samples rejected due to not being out of the expected order.",
                limits.scrape_samples_out_of_order.get(),
            ),
            (
                "prometheus_target_scrapes_sample_duplicate_timestamp_total",
                "Total number of samples rejected due to duplicate timestamps but different values.",
                limits.scrape_samples_duplicate.get(),
            ),
            (
                "prometheus_target_scrapes_sample_out_of_bounds_total",
                "Total number of samples rejected due to timestamp falling outside of the time bounds.",
                limits.scrape_samples_out_of_bounds.get(),
            ),
            (
                "prometheus_target_scrape_pool_exceeded_label_limits_total",
                "Total number of times scrape pools hit the label limits, during sync or config reload.",
                limits.scrape_labels.get(),
            ),
            (
                "prometheus_target_scrape_pool_exceeded_target_limit_total",
                "Total number of times scrape pools hit the target limit, during sync or config reload.",
                limits.targets.get(),
            ),
            (
                "promflow_query_max_samples_exceeded_total",
                "Queries refused because they would load more samples than --query.max-samples.",
                limits.query_samples.get(),
            ),
            (
                "promflow_stream_consumers_refused_total",
                "Stream requests refused because --web.stream.max-consumers streams were open.",
                limits.stream_consumers_refused.get(),
            ),
            (
                "prometheus_sd_dns_lookups_total",
                "The number of DNS-SD lookups.",
                self.sd_dns_lookups.get(),
            ),
            (
                "prometheus_sd_dns_lookup_failures_total",
                "The number of DNS-SD lookup failures.",
                self.sd_dns_lookup_failures.get(),
            ),
        ] {
            metric(name, "counter", help, &[(&[], value as f64)]);
        }
        for (name, help, value) in [
            (
                "prometheus_engine_queries",
                "The current number of queries being executed or waiting.",
                limits.queries_in_flight.get(),
            ),
            (
                "prometheus_engine_queries_concurrent_max",
                "The max number of concurrent queries.",
                limits.queries_concurrent_max.get(),
            ),
            (
                "promflow_stream_consumers",
                "Consumers connected to /api/v1/stream.",
                limits.stream_consumers.get(),
            ),
        ] {
            metric(name, "gauge", help, &[(&[], value)]);
        }
        {
            let bodies = limits
                .request_bodies
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let labels: Vec<[(&str, &str); 1]> = bodies.keys().map(|e| [("handler", *e)]).collect();
            let rows: Vec<(&[(&str, &str)], f64)> = labels
                .iter()
                .zip(bodies.values())
                .map(|(l, v)| (&l[..], *v as f64))
                .collect();
            metric(
                "promflow_http_request_body_too_large_total",
                "counter",
                "Requests refused because their body was larger than the endpoint's limit, per endpoint.",
                &rows,
            );
        }
        metric(
            "prometheus_config_last_reload_successful",
            "gauge",
            "Whether the last configuration reload attempt was successful.",
            &[(&[], self.config_last_reload_successful.get())],
        );
        metric(
            "prometheus_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Timestamp of the last successful configuration reload.",
            &[(&[], self.config_last_reload_success_timestamp_seconds.get())],
        );
        metric(
            "promflow_config_reload_failures_total",
            "counter",
            "Configuration reloads that failed.",
            &[(&[], self.config_reload_failures.get() as f64)],
        );
        {
            let ams = self.alertmanagers.lock().unwrap_or_else(|e| e.into_inner());
            let labels: Vec<[(&str, &str); 1]> = ams
                .keys()
                .map(|url| [("alertmanager", url.as_str())])
                .collect();
            for (name, help, pick) in [
                (
                    "prometheus_notifications_errors_total",
                    "Total number of errors sending alert notifications.",
                    (|c: &AlertmanagerCounters| c.errors) as fn(&AlertmanagerCounters) -> u64,
                ),
                (
                    "prometheus_notifications_sent_total",
                    "Total number of alerts sent.",
                    |c: &AlertmanagerCounters| c.sent,
                ),
            ] {
                let rows: Vec<(&[(&str, &str)], f64)> = labels
                    .iter()
                    .zip(ams.values())
                    .map(|(l, c)| (&l[..], pick(c) as f64))
                    .collect();
                metric(name, "counter", help, &rows);
            }
        }
        metric(
            "prometheus_notifications_dropped_total",
            "counter",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            &[(&[], self.notifications_dropped.get() as f64)],
        );
        metric(
            "prometheus_notifications_queue_length",
            "gauge",
            "The number of alert notifications in the queue.",
            &[(&[], self.notifications_queue_length.get())],
        );
        metric(
            "prometheus_notifications_queue_capacity",
            "gauge",
            "The capacity of the alert notifications queue.",
            &[(&[], self.notifications_queue_capacity.get())],
        );
        metric(
            "prometheus_notifications_alertmanagers_discovered",
            "gauge",
            "The number of alertmanagers discovered and active.",
            &[(&[], self.notifications_alertmanagers_discovered.get())],
        );
        let process = crate::process_stats::read();
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            &[(&[], process.cpu_seconds)],
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            &[(&[], process.resident_bytes)],
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            &[(&[], process.virtual_bytes)],
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            &[(&[], process.open_fds)],
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            &[(&[], process.start_time_seconds)],
        );
        out
    }
}
