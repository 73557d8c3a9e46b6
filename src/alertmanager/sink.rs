//! Where the rule manager's alerts go: [`AlertFanOut`] hands each batch to the
//! Alertmanager sender and to the built-in notifier.
//!
//! The built-in notifier receives what an Alertmanager would: the same conversion
//! ([`crate::notifier::to_outgoing`]: external labels, alert relabeling,
//! `startsAt`/`endsAt` as Prometheus sends them), received at the wall clock.

use crate::alertmanager::alert::{now_nanos, Alert, Nanos};
use crate::alertmanager::BuiltinNotifier;
use crate::notifier::{to_outgoing, Notifier, NotifierConfig};
use crate::rules::alert::Alert as RuleAlert;
use crate::rules::sinks::AlertSink;
use parking_lot::Mutex;
use std::sync::Arc;

/// Sends rule alerts to both notifiers.
pub struct AlertFanOut {
    /// The Alertmanager sender.
    pub alertmanagers: Arc<Notifier>,
    /// The built-in notifier.
    pub builtin: Arc<BuiltinNotifier>,
    /// Labels and relabeling applied to outgoing alerts.
    pub config: Mutex<NotifierConfig>,
}

impl AlertSink for AlertFanOut {
    fn send(&self, expr: &str, alerts: Vec<RuleAlert>) {
        if self.builtin.is_enabled() {
            let config = self.config.lock().clone();
            let timeout = self.builtin.resolve_timeout().as_nanos() as Nanos;
            let now = now_nanos();
            self.builtin
                .put(to_builtin(&config, expr, &alerts, now, timeout), now);
        }
        self.alertmanagers.send(expr, alerts);
    }
}

/// Rule alerts as the built-in notifier stores them, received at `now`.
/// An alert without `endsAt` gets `now + resolve_timeout`, as the API gives it.
pub fn to_builtin(
    config: &NotifierConfig,
    expr: &str,
    alerts: &[RuleAlert],
    now: Nanos,
    resolve_timeout: Nanos,
) -> Vec<Alert> {
    const MS: i64 = 1_000_000;
    alerts
        .iter()
        .filter_map(|a| to_outgoing(config, expr, a))
        .map(|o| Alert {
            labels: o
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: o.annotations,
            starts_at: o.starts_at_ms * MS,
            ends_at: if o.ends_at_ms == 0 {
                now + resolve_timeout
            } else {
                o.ends_at_ms * MS
            },
            generator_url: o.generator_url,
            updated_at: now,
            timeout: o.ends_at_ms == 0,
        })
        .collect()
}
