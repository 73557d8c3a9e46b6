//! The built-in notifier: Alertmanager 0.25's routing, grouping, inhibition,
//! silences and receivers (email, Slack, Pushover, webhook, PagerDuty, OpsGenie, VictorOps,
//! Telegram, Discord, …) inside promflow, configured by
//! an Alertmanager config file (`--alertmanager.config.file`), so one promflow can
//! page without an Alertmanager.
//!
//! Alerts come from promflow's rule manager (through [`sink::AlertFanOut`], beside the
//! Alertmanager sender) and from other Prometheus / promflow servers that POST to
//! `/api/v2/alerts`; the same alert from several senders is one alert.
//!
//! Layout, top to bottom: [`config`] (the file; [`config_show`] prints it back as
//! Alertmanager does), [`matcher`] and [`route`] (the
//! tree), [`alert`] (the alert record), [`dispatcher`] (store, groups, dedup — pure,
//! driven by explicit times), [`inhibit`], [`silence`], [`template`] (data and
//! default templates; [`go_time`] for their time values), [`receivers`] (request bodies and sending), and here the
//! runtime, [`BuiltinNotifier`], which runs the dispatcher on the clock, delivers with
//! retries and counts outcomes.
//!
//! State file: with [`BuiltinNotifier::set_state_file`], the notification log and
//! the silences are saved (JSON, written to a temporary file then renamed) after each
//! change and read back when the notifier is configured, so a restart neither
//! re-sends what was notified nor forgets silences (Alertmanager keeps both in
//! `--storage.path`). Alerts are not saved: senders re-send them.
//!
//! Contract: a delivery that fails with a retryable error (5xx, network) is retried
//! with exponential backoff (0.5s × 1.5ⁿ, at most 60s apart) until it succeeds or the
//! flush's timeout (`group_interval`, at least 10s) passes; every attempt and failure
//! is counted (`alertmanager_notification_requests_total`, `…_failed_total`, and per
//! notification `alertmanager_notifications_total`, `…_failed_total`) and failures
//! are logged; the notification log is not updated, so the next flush tries again.

pub mod alert;
pub mod config;
pub mod config_show;
pub mod dispatcher;
pub mod go_time;
pub mod inhibit;
pub mod matcher;
pub mod receivers;
pub mod route;
pub mod silence;
pub mod sink;
pub mod template;

use crate::alertmanager::alert::{now_nanos, Alert, Nanos};
use crate::alertmanager::config::NotifyConfig;
use crate::alertmanager::dispatcher::{Dispatcher, Flush};
use crate::alertmanager::receivers::{send, Failure, SendError, INTEGRATIONS};
use crate::alertmanager::silence::Silences;
use crate::config::HttpClientConfig;
use crate::exposition::{write_header, write_sample, write_single};
use crate::http_client::ClientCache;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First retry delay.
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long notification log entries and expired silences are kept (Alertmanager's
/// `--data.retention`).
pub const STATE_RETENTION: Duration = Duration::from_secs(120 * 3600);

/// Outcome counters, named like Alertmanager's.
#[derive(Default)]
pub struct NotifyMetrics {
    counters: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    alerts_received_firing: AtomicU64,
    alerts_received_resolved: AtomicU64,
    alerts_invalid: AtomicU64,
}

impl NotifyMetrics {
    fn inc(&self, metric: &'static str, integration: &'static str) {
        *self
            .counters
            .lock()
            .entry((metric, integration))
            .or_default() += 1;
    }

    /// A counter's value (`metric` without the `alertmanager_` prefix).
    pub fn get(&self, metric: &str, integration: &str) -> u64 {
        self.counters
            .lock()
            .iter()
            .find(|((m, i), _)| *m == metric && *i == integration)
            .map_or(0, |(_, v)| *v)
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock();
        for (metric, help) in [
            (
                "notifications_total",
                "The total number of attempted notifications.",
            ),
            (
                "notifications_failed_total",
                "The total number of failed notifications.",
            ),
            (
                "notification_requests_total",
                "The total number of attempted notification requests.",
            ),
            (
                "notification_requests_failed_total",
                "The total number of failed notification requests.",
            ),
        ] {
            let name = format!("alertmanager_{metric}");
            write_header(&mut out, &name, "counter", help);
            let counted = counters
                .keys()
                .filter(|(m, _)| *m == metric)
                .map(|(_, i)| *i);
            // Counters Alertmanager 0.25 initialises are rendered even at 0, the
            // others once counted; series come out sorted by integration.
            let initialised = INTEGRATIONS
                .iter()
                .filter(|(_, from_start)| *from_start)
                .map(|(name, _)| *name);
            let integrations: std::collections::BTreeSet<&str> =
                initialised.chain(counted).collect();
            for integration in integrations {
                let v = counters.get(&(metric, integration)).copied().unwrap_or(0);
                write_sample(
                    &mut out,
                    &name,
                    [("integration", integration)],
                    v as f64,
                    None,
                );
            }
        }
        let name = "alertmanager_alerts_received_total";
        write_header(
            &mut out,
            name,
            "counter",
            "The total number of received alerts.",
        );
        for (status, count) in [
            ("firing", &self.alerts_received_firing),
            ("resolved", &self.alerts_received_resolved),
        ] {
            let v = count.load(Ordering::Relaxed) as f64;
            write_sample(&mut out, name, [("status", status)], v, None);
        }
        write_single(
            &mut out,
            "alertmanager_alerts_invalid_total",
            "counter",
            "The total number of received alerts that were invalid.",
            self.alerts_invalid.load(Ordering::Relaxed) as f64,
        );
        out
    }
}

/// The runtime; see the module doc.
pub struct BuiltinNotifier {
    dispatcher: Mutex<Option<Dispatcher>>,
    state_file: Mutex<Option<PathBuf>>,
    wake: tokio::sync::Notify,
    /// Clients by the receivers' `tls_config` and proxy options (`crate::http_client`).
    clients: ClientCache,
    /// Outcome counters.
    pub metrics: NotifyMetrics,
}

impl BuiltinNotifier {
    /// A notifier without configuration (it accepts nothing until [`Self::apply`]).
    pub fn new() -> Arc<BuiltinNotifier> {
        Arc::new(BuiltinNotifier {
            dispatcher: Mutex::new(None),
            state_file: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            clients: ClientCache::default(),
            metrics: NotifyMetrics::default(),
        })
    }

    /// Where the notification log and silences are saved (see the module doc); call
    /// before the first [`Self::apply`].
    pub fn set_state_file(&self, path: PathBuf) {
        *self.state_file.lock() = Some(path);
    }

    /// Installs a configuration (or removes it with `None`), keeping alerts, the
    /// notification log and silences across reloads; the first configuration reads
    /// the state file. `external_url` is what templates see as `.ExternalURL`.
    pub fn apply(&self, config: Option<NotifyConfig>, external_url: &str) {
        let mut d = self.dispatcher.lock();
        *d = match (d.take(), config) {
            (_, None) => None,
            (None, Some(c)) => {
                let mut fresh = Dispatcher::new(Arc::new(c), external_url);
                self.restore(&mut fresh);
                Some(fresh)
            }
            (Some(old), Some(c)) => Some(old.reconfigure(Arc::new(c), external_url, now_nanos())),
        };
        drop(d);
        self.wake.notify_one();
    }

    fn restore(&self, dispatcher: &mut Dispatcher) {
        let Some(path) = self.state_file.lock().clone() else {
            return;
        };
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the notifier state; starting without it");
                return;
            }
        };
        match serde_json::from_slice::<serde_json::Value>(&text) {
            Ok(saved) => {
                for problem in dispatcher.restore(&saved) {
                    tracing::warn!(path = %path.display(), %problem, "skipped part of the notifier state");
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "notifier state is not JSON; starting without it")
            }
        }
    }

    /// Writes the state file, if one is set (see the module doc).
    fn save(&self) {
        let Some(path) = self.state_file.lock().clone() else {
            return;
        };
        let Some(snapshot) = self.with_dispatcher(|d| d.snapshot(now_nanos(), STATE_RETENTION))
        else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, serde_json::to_vec(&snapshot).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the notifier state");
        }
    }

    /// Changes the silences with `f` and saves the state; `None` when not configured.
    pub fn with_silences<T>(&self, f: impl FnOnce(&mut Silences, Nanos) -> T) -> Option<T> {
        let result = self.with_dispatcher(|d| f(&mut d.silences, now_nanos()));
        self.save();
        result
    }

    /// Whether a configuration is installed.
    pub fn is_enabled(&self) -> bool {
        self.dispatcher.lock().is_some()
    }

    /// `global.resolve_timeout` (5m when not configured).
    pub fn resolve_timeout(&self) -> Duration {
        self.dispatcher
            .lock()
            .as_ref()
            .map_or(Duration::from_secs(300), Dispatcher::resolve_timeout)
    }

    /// Accepts alerts received at `now`; returns false when not configured.
    pub fn put(&self, alerts: Vec<Alert>, now: Nanos) -> bool {
        let mut d = self.dispatcher.lock();
        let Some(d) = d.as_mut() else {
            return false;
        };
        for a in alerts {
            if a.resolved_at(now) {
                self.metrics
                    .alerts_received_resolved
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.metrics
                    .alerts_received_firing
                    .fetch_add(1, Ordering::Relaxed);
            }
            d.put(a, now);
        }
        self.wake.notify_one();
        true
    }

    /// Counts alerts refused by the API.
    pub fn count_invalid(&self, n: usize) {
        self.metrics
            .alerts_invalid
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Runs `f` on the dispatcher, if configured.
    pub fn with_dispatcher<T>(&self, f: impl FnOnce(&mut Dispatcher) -> T) -> Option<T> {
        self.dispatcher.lock().as_mut().map(f)
    }

    /// Delivers every flush due at `now` and waits for the deliveries (with their
    /// retries); returns how many flushes there were. The clock-driven loop
    /// ([`Self::run`]) and tests with their own clock both go through here.
    pub async fn flush_due(&self, now: Nanos) -> usize {
        let flushes = self
            .with_dispatcher(|d| d.take_due(now))
            .unwrap_or_default();
        let n = flushes.len();
        let deliveries = flushes.into_iter().map(|f| self.deliver(f));
        futures_util::future::join_all(deliveries).await;
        n
    }

    async fn deliver(&self, flush: Flush) {
        let templates = self.with_dispatcher(|d| d.templates());
        let deliveries = flush.jobs.iter().map(|job| async {
            let kind = job.integration.kind();
            let http = job.integration.http_config().cloned().unwrap_or_default();
            self.metrics.inc("notifications_total", kind);
            let result = match &templates {
                Some(t) => match job.integration.request(t, &job.data, &flush.group_key) {
                    Ok(request) => match self.clients.get(&http) {
                        Ok(client) => {
                            self.send_with_retries(&client, &http, kind, &request, flush.timeout)
                                .await
                        }
                        Err(e) => Err(SendError::Permanent(Failure::Client(e))),
                    },
                    Err(e) => Err(e.into()),
                },
                None => Err(SendError::Permanent(Failure::NotConfigured)),
            };
            match result {
                Ok(()) => true,
                Err(e) => {
                    self.metrics.inc("notifications_failed_total", kind);
                    tracing::error!(receiver = %flush.receiver, integration = kind, group = %flush.group_key, error = %e, "notify failed");
                    false
                }
            }
        });
        let delivered = futures_util::future::join_all(deliveries).await;
        self.with_dispatcher(|d| d.complete(&flush, &delivered));
        if delivered.iter().any(|ok| *ok) {
            self.save();
        }
        self.wake.notify_one();
    }

    async fn send_with_retries(
        &self,
        client: &reqwest::Client,
        http: &HttpClientConfig,
        kind: &'static str,
        request: &receivers::Delivery,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let deadline = Instant::now() + timeout;
        let mut delay = BACKOFF_INITIAL;
        loop {
            self.metrics.inc("notification_requests_total", kind);
            let left = deadline.saturating_duration_since(Instant::now());
            match send(client, http, request, left.max(Duration::from_millis(100))).await {
                Ok(()) => return Ok(()),
                Err(SendError::Retryable(e)) => {
                    self.metrics.inc("notification_requests_failed_total", kind);
                    if Instant::now() + delay >= deadline {
                        return Err(SendError::Retryable(Failure::GaveUp(Box::new(e))));
                    }
                    tracing::warn!(integration = kind, error = %e, retry_in = ?delay, "notify attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.mul_f64(1.5).min(BACKOFF_MAX);
                }
                Err(e) => {
                    self.metrics.inc("notification_requests_failed_total", kind);
                    return Err(e);
                }
            }
        }
    }

    /// Flushes groups on the wall clock until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = now_nanos();
            let flushes = self
                .with_dispatcher(|d| d.take_due(now))
                .unwrap_or_default();
            for flush in flushes {
                let me = self.clone();
                tokio::spawn(async move { me.deliver(flush).await });
            }
            let Some(next) = self.with_dispatcher(|d| d.next_due()) else {
                // Not configured: nothing to flush until `apply` installs a config.
                self.wake.notified().await;
                continue;
            };
            let wait = next
                .map(|t| Duration::from_nanos((t - now_nanos()).max(0) as u64))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}
