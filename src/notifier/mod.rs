//! Sending alerts to Alertmanagers (API v2), like Prometheus's `notifier` package.
//!
//! Owns: the bounded queue of alerts to send, the conversion of an [`Alert`] to
//! Alertmanager's v2 payload (`labels` with external labels added, `annotations`,
//! `startsAt` = when it fired, `endsAt` = resolution time or `ValidUntil`,
//! `generatorURL` = external URL + table link of the rule's expression),
//! `alert_relabel_configs`, the discovery of Alertmanagers (a
//! [`DiscoveryManager`] of its own running every entry's `static_configs` and
//! `*_sd_configs`, resolved by [`crate::notifier::alertmanagers`]), and POSTing
//! batches of at most [`MAX_BATCH`] to every resolved Alertmanager at once, with its
//! entry's timeout and basic auth / `Authorization` credentials.
//!
//! Contract: [`Notifier::enqueue`] never blocks; when the queue ([`QUEUE_CAPACITY`])
//! is full the oldest alerts are dropped and counted in
//! `prometheus_notifications_dropped_total`, as Prometheus does. A POST that fails with
//! a network error or a 5xx is retried with exponential backoff ([`FIRST_BACKOFF`]
//! doubling up to [`MAX_BACKOFF`]) until the Alertmanager's `timeout` has passed
//! since the first attempt (so an Alertmanager that starts or restarts meanwhile still
//! gets the batch); a 4xx is not retried. Every failed attempt is counted in
//! `prometheus_notifications_errors_total{alertmanager}` (the URL POSTed to) and
//! logged; the alerts of a batch are counted in
//! `prometheus_notifications_sent_total{alertmanager}` once its POSTs end, accepted or
//! not, as Prometheus counts them; a batch that no Alertmanager accepted is counted in
//! `prometheus_notifications_dropped_total` (the rule manager still re-sends firing
//! alerts every resend delay, 1m). The queue's length and capacity are gauges
//! (`prometheus_notifications_queue_length`, `_capacity`), the number of active
//! Alertmanagers is `prometheus_notifications_alertmanagers_discovered`; an
//! Alertmanager's counters are listed, at 0, once it is discovered.
//! Each batch goes to the Alertmanagers resolved when it is taken from the queue;
//! they are resolved again on every discovery change and every [`Notifier::apply`].

pub mod alertmanagers;

use crate::config::{AlertmanagerConfig, RelabelConfig};
use crate::discovery::{DiscoveryContext, DiscoveryManager};
use crate::notifier::alertmanagers::{AlertmanagerSet, ResolvedAlertmanagers};
use crate::rules::alert::{Alert, AlertState};
use crate::rules::sinks::AlertSink;
use crate::rules::template::graph_link;
use crate::selfmetrics::{AlertmanagerCounters, SelfMetrics};
use dataflows::Labels;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Alerts waiting to be sent, at most, unless [`Notifier::set_queue_capacity`] says
/// otherwise (Prometheus's `--alertmanager.notification-queue-capacity` default).
pub const QUEUE_CAPACITY: usize = 10_000;
/// Alerts per POST (Prometheus's `maxBatchSize`).
pub const MAX_BATCH: usize = 64;
/// The wait before the first retry of a failed POST.
pub const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest wait between retries.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

/// One alert as Alertmanager receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingAlert {
    /// Labels incl. external labels, after `alert_relabel_configs`.
    pub labels: Labels,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `startsAt` (ms).
    pub starts_at_ms: i64,
    /// `endsAt` (ms).
    pub ends_at_ms: i64,
    /// `generatorURL`.
    pub generator_url: String,
}

impl OutgoingAlert {
    /// The v2 JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "labels": labels,
            "annotations": self.annotations,
            "startsAt": rfc3339_ms(self.starts_at_ms),
            "endsAt": rfc3339_ms(self.ends_at_ms),
            "generatorURL": self.generator_url,
        })
    }
}

/// `2024-01-01T00:20:00.000Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// What the notifier needs from the config.
#[derive(Clone, Debug, Default)]
pub struct NotifierConfig {
    /// `global.external_labels`.
    pub external_labels: BTreeMap<String, String>,
    /// `alerting.alert_relabel_configs`.
    pub relabel: Vec<RelabelConfig>,
    /// `alerting.alertmanagers`.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// `--web.external-url`.
    pub external_url: String,
}

/// The Alertmanager notifier.
pub struct Notifier {
    config: Mutex<NotifierConfig>,
    queue: Mutex<VecDeque<OutgoingAlert>>,
    /// The queue's capacity (`--alertmanager.notification-queue-capacity`).
    capacity: std::sync::atomic::AtomicUsize,
    wake: tokio::sync::Notify,
    metrics: Arc<SelfMetrics>,
    /// Clients by `tls_config` (`crate::http_client`).
    clients: crate::http_client::ClientCache,
    /// Discovery of every `alerting.alertmanagers[]` entry's targets.
    discovery: DiscoveryManager<AlertmanagerSet>,
    /// The Alertmanagers of every entry, as last resolved.
    alertmanagers: Mutex<Arc<Vec<ResolvedAlertmanagers>>>,
}

impl Notifier {
    /// A notifier; call [`Notifier::run`] in a task to send.
    pub fn new(ctx: DiscoveryContext) -> Arc<Notifier> {
        ctx.metrics
            .notifications_queue_capacity
            .set(QUEUE_CAPACITY as f64);
        Arc::new(Notifier {
            capacity: std::sync::atomic::AtomicUsize::new(QUEUE_CAPACITY),
            config: Mutex::new(NotifierConfig::default()),
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            metrics: ctx.metrics.clone(),
            clients: crate::http_client::ClientCache::default(),
            discovery: DiscoveryManager::new(ctx),
            alertmanagers: Mutex::new(Arc::new(Vec::new())),
        })
    }

    /// `--alertmanager.notification-queue-capacity`: the most alerts waiting to be sent.
    pub fn set_queue_capacity(&self, capacity: usize) {
        self.capacity
            .store(capacity, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .notifications_queue_capacity
            .set(capacity as f64);
    }

    /// Replaces the configuration (on reload): discovery of entries that did not
    /// change keeps running. Must be called within a tokio runtime.
    pub fn apply(&self, config: NotifierConfig) {
        let sets = AlertmanagerSet::of(&config.alertmanagers);
        *self.config.lock() = config;
        self.discovery.apply(&sets);
        self.resolve_alertmanagers();
    }

    /// The Alertmanagers of every `alerting.alertmanagers[]` entry, in config order.
    pub fn alertmanagers(&self) -> Arc<Vec<ResolvedAlertmanagers>> {
        self.alertmanagers.lock().clone()
    }

    /// Stops discovering Alertmanagers.
    pub fn stop_discovery(&self) {
        self.discovery.stop_all();
    }

    /// Resolves every entry's discovered groups into Alertmanagers.
    fn resolve_alertmanagers(&self) {
        // Held from snapshot to store, so an older snapshot never replaces a newer one.
        let mut current = self.alertmanagers.lock();
        let resolved: Vec<ResolvedAlertmanagers> = self
            .discovery
            .snapshot()
            .iter()
            .map(|(set, groups)| alertmanagers::resolve(set, groups))
            .collect();
        let active: usize = resolved.iter().map(|r| r.active.len()).sum();
        {
            // Listed at 0 once discovered, as Prometheus initializes them.
            let mut ams = self
                .metrics
                .alertmanagers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for url in resolved.iter().flat_map(|r| r.active.iter()) {
                ams.entry(url.to_string()).or_default();
            }
        }
        self.metrics
            .notifications_alertmanagers_discovered
            .set(active as f64);
        *current = Arc::new(resolved);
    }

    /// Resolves the Alertmanagers again on every discovery change, while the
    /// notifier lives.
    async fn follow_discovery(notifier: std::sync::Weak<Notifier>) {
        let Some(mut updates) = notifier.upgrade().map(|n| n.discovery.subscribe()) else {
            return;
        };
        // A provider may have reported before this subscription existed: resolve once
        // right away so that is not lost.
        updates.mark_changed();
        while updates.changed().await.is_ok() {
            updates.borrow_and_update();
            let Some(notifier) = notifier.upgrade() else {
                return;
            };
            notifier.resolve_alertmanagers();
        }
    }

    /// Converts alerts of rule `expr` and queues them; see the module contract.
    pub fn enqueue(&self, expr: &str, alerts: Vec<Alert>) {
        let config = self.config.lock().clone();
        if config.alertmanagers.is_empty() {
            return;
        }
        let outgoing: Vec<OutgoingAlert> = alerts
            .into_iter()
            .filter_map(|a| to_outgoing(&config, expr, &a))
            .collect();
        let capacity = self.capacity.load(std::sync::atomic::Ordering::Relaxed);
        let mut queue = self.queue.lock();
        queue.extend(outgoing);
        self.metrics
            .notifications_queue_length
            .set(queue.len().min(capacity) as f64);
        if queue.len() > capacity {
            let excess = queue.len() - capacity;
            queue.drain(..excess);
            self.metrics.notifications_dropped.add(excess as u64);
            tracing::warn!(
                dropped = excess,
                "notification queue full; dropped the oldest alerts"
            );
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Alerts waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Sends queued alerts until the task is aborted (and follows discovery).
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(Self::follow_discovery(Arc::downgrade(&self)));
        loop {
            let batch: Vec<OutgoingAlert> = {
                let mut queue = self.queue.lock();
                let n = queue.len().min(MAX_BATCH);
                let batch = queue.drain(..n).collect();
                self.metrics
                    .notifications_queue_length
                    .set(queue.len() as f64);
                batch
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let body = serde_json::Value::Array(batch.iter().map(|a| a.to_json()).collect());
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let sets = self.alertmanagers();
            let posts = sets.iter().flat_map(|set| {
                set.active
                    .iter()
                    .map(|url| self.post(&set.set.config, url, &body, batch.len()))
            });
            let delivered = futures_util::future::join_all(posts)
                .await
                .into_iter()
                .any(|accepted| accepted);
            if !delivered {
                self.metrics.notifications_dropped.add(batch.len() as u64);
                tracing::warn!(
                    count = batch.len(),
                    "no Alertmanager accepted the alerts; dropped"
                );
            }
        }
    }

    /// POSTs `body` to one Alertmanager, retrying (see the module contract); whether
    /// it was accepted.
    async fn post(&self, am: &AlertmanagerConfig, url: &str, body: &[u8], n: usize) -> bool {
        let deadline = tokio::time::Instant::now() + am.timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let retry = match self.post_once(am, url, body.to_vec(), left).await {
                Ok(()) => {
                    self.count_alertmanager(url, |c| c.sent += n as u64);
                    return true;
                }
                Err(retry) => retry,
            };
            self.count_alertmanager(url, |c| c.errors += 1);
            let now = tokio::time::Instant::now();
            if !retry || now + backoff >= deadline {
                // As Prometheus counts a batch it tried to send, accepted or not.
                self.count_alertmanager(url, |c| c.sent += n as u64);
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Updates the counters of the Alertmanager at `url`.
    fn count_alertmanager(&self, url: &str, f: impl FnOnce(&mut AlertmanagerCounters)) {
        let mut ams = self
            .metrics
            .alertmanagers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(ams.entry(url.to_string()).or_default());
    }

    /// One POST with `timeout`; on failure, whether it is worth retrying.
    async fn post_once(
        &self,
        am: &AlertmanagerConfig,
        url: &str,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<(), bool> {
        let client = match self.clients.get(&am.http) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(%url, error = %e, "sending alerts to Alertmanager failed");
                return Err(false);
            }
        };
        let request = client
            .post(url)
            .timeout(timeout)
            .header("Content-Type", "application/json")
            .body(body);
        let request = match crate::http_client::authorize(request, &am.http).await {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(%url, error = %e, "sending alerts to Alertmanager failed");
                return Err(true);
            }
        };
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                tracing::warn!(%url, status = %r.status(), "Alertmanager refused alerts");
                Err(r.status().is_server_error())
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "sending alerts to Alertmanager failed");
                Err(true)
            }
        }
    }
}

impl AlertSink for Notifier {
    fn send(&self, expr: &str, alerts: Vec<Alert>) {
        self.enqueue(expr, alerts);
    }
}

/// Prometheus's `SendAlerts` + the notifier's label handling: external labels are
/// added where the alert lacks them, then `alert_relabel_configs` run (may drop).
pub fn to_outgoing(config: &NotifierConfig, expr: &str, a: &Alert) -> Option<OutgoingAlert> {
    let mut pairs: Vec<(String, String)> = config
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    pairs.extend(a.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let labels = crate::relabel::process(&config.relabel, &Labels::from_pairs(pairs))?;
    if labels.is_empty() {
        return None;
    }
    let ends_at_ms = match (a.state, a.resolved_at_ms) {
        (AlertState::Inactive, Some(r)) => r,
        _ => a.valid_until_ms.unwrap_or(0),
    };
    Some(OutgoingAlert {
        labels,
        annotations: a.payload.clone(),
        starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
        ends_at_ms,
        generator_url: format!(
            "{}{}",
            config.external_url.trim_end_matches('/'),
            graph_link(expr, 1)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_prometheus_shape() {
        let alert = Alert {
            core: crate::rules::alert::AlertCore {
                labels: Arc::new(Labels::from_pairs(vec![
                    ("alertname".into(), "HighCPU".into()),
                    ("instance".into(), "b".into()),
                ])),
                state: AlertState::Firing,
                value: 95.0,
                active_at_ms: 1_704_067_200_000,
                fired_at_ms: Some(1_704_068_400_000),
                resolved_at_ms: None,
                keep_firing_since_ms: None,
            },
            payload: BTreeMap::from([("summary".into(), "CPU 95 on b".into())]),
            last_sent_ms: Some(1_704_068_400_000),
            valid_until_ms: Some(1_704_068_640_000),
        };
        let config = NotifierConfig {
            external_labels: BTreeMap::from([
                ("dc".into(), "eu1".into()),
                ("instance".into(), "x".into()),
            ]),
            external_url: "http://vm:9090/".into(),
            ..NotifierConfig::default()
        };
        let out = to_outgoing(&config, "cpu > 90", &alert).unwrap().to_json();
        assert_eq!(
            out,
            json!({
                "labels": {"alertname": "HighCPU", "dc": "eu1", "instance": "b"},
                "annotations": {"summary": "CPU 95 on b"},
                "startsAt": "2024-01-01T00:20:00.000Z",
                "endsAt": "2024-01-01T00:24:00.000Z",
                "generatorURL": "http://vm:9090/graph?g0.expr=cpu+%3E+90&g0.tab=1",
            })
        );
    }
}
