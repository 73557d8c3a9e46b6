//! Alert state: the state machine of one alerting rule, pure and deterministic: the one
//! kernel every path that steps alerts uses (promflow's rule host, and the alert stage
//! of [`crate::render::alerting`]), which also applies a stage's steps to a mirror.
//!
//! Owns: per-alert state (pending → firing → inactive/resolved) keyed by the alert's
//! final label set ([`final_labels`]), with Prometheus 2.42's exact semantics
//! (`rules/alerting.go`, `AlertingRule.Eval`): an element of the rule's result at `t`
//! makes a new alert pending with `activeAt = t`; it fires at the first evaluation
//! with `t - activeAt >= for`; when it leaves the result a firing alert stays firing
//! for `keep_firing_for`, then becomes inactive with `resolvedAt = t` and is kept
//! [`RESOLVED_RETENTION`] so it can be re-sent as resolved; a pending one is dropped.
//! Each step returns the `ALERTS` and `ALERTS_FOR_STATE` samples Prometheus writes
//! ([`alerts_series`], [`for_state_series`]). Also the arithmetic of the `for`
//! restore after a restart ([`restored_active_at`], [`AlertMachine::restore_for`]).
//!
//! Contract: [`AlertMachine::step`] takes the candidate alerts at `t` (labels already
//! final: [`final_labels`]) and times must not go backwards; duplicate labels fail the
//! step with the state untouched, more pending or firing alerts than the group's
//! `limit` clears it ([`AlertError`]). [`AlertMachine::next_deadline`] is the earliest
//! future time at which a step *without new input* would change state (a `for` or
//! `keep_firing_for` deadline), so a maintained operator can evaluate exactly then.
//! Sending (which alerts to notify, when) is [`AlertMachine::to_send`], mirroring
//! Prometheus's `needsSending`/`ValidUntil`. An alert carries a payload `P` the
//! machine only moves along from its candidates: the expanded annotations in
//! promflow's rule host, `()` in the dataflow (templates read storage, so they stay
//! in the host). Nothing here knows of promflow: its errors map [`AlertError`] to its
//! own.

use crate::labels::{Labels, METRIC_NAME};
use crate::sample::is_stale_marker;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long a resolved alert is kept (and re-sent as resolved): 15 minutes.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// Same, as the name the docs use.
pub const RESOLVED_RETENTION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The label holding an alert's rule name.
pub const ALERT_NAME: &str = "alertname";

/// An alert's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertState {
    /// Resolved (kept for re-sending) or never active.
    Inactive,
    /// Active, waiting for `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// The name Prometheus uses in `ALERTS{alertstate}` and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// What the state machine decides of one alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertCore {
    /// Final labels (incl. `alertname`).
    pub labels: Arc<Labels>,
    /// Current state.
    pub state: AlertState,
    /// Latest value of the result element.
    pub value: f64,
    /// When it became pending (ms).
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it was resolved.
    pub resolved_at_ms: Option<i64>,
    /// Since when it is kept firing without being in the result.
    pub keep_firing_since_ms: Option<i64>,
}

/// One alert: its state, the payload of its latest candidate, and when it was sent.
/// Reads of the state go through to [`AlertCore`] (`alert.state`).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert<P> {
    /// The state.
    pub core: AlertCore,
    /// The payload of the candidate that last updated it (annotations in the host).
    pub payload: P,
    /// Last time it was handed to the notifier.
    pub last_sent_ms: Option<i64>,
    /// `endsAt` sent for a firing alert: 4 × max(resend delay, interval) after sending.
    pub valid_until_ms: Option<i64>,
}

impl<P> std::ops::Deref for Alert<P> {
    type Target = AlertCore;

    fn deref(&self) -> &AlertCore {
        &self.core
    }
}

impl<P> Alert<P> {
    /// A new alert, never sent.
    pub fn new(core: AlertCore, payload: P) -> Alert<P> {
        Alert {
            core,
            payload,
            last_sent_ms: None,
            valid_until_ms: None,
        }
    }
}

/// An element of the rule's result, turned into an alert candidate.
#[derive(Clone, Debug)]
pub struct Candidate<P> {
    /// Final labels ([`final_labels`]).
    pub labels: Arc<Labels>,
    /// The element's value.
    pub value: f64,
    /// What the alert carries along (annotations in the host).
    pub payload: P,
}

/// What one evaluation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepOutput {
    /// `ALERTS{…, alertstate}` = 1 and `ALERTS_FOR_STATE{…}` = activeAt seconds, at `t`.
    pub samples: Vec<(Arc<Labels>, f64)>,
    /// Alerts whose state changed at this step: (labels, old, new).
    pub changes: Vec<(Arc<Labels>, AlertState, AlertState)>,
    /// [`AlertMachine::step_changes`]: the `ALERTS`/`ALERTS_FOR_STATE` series that
    /// end at this step (their alert resolved or left while pending).
    pub ended: Vec<Arc<Labels>>,
}

/// Why a step failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertError {
    /// Two candidates have the same final labels (the state is untouched).
    Duplicate,
    /// More pending or firing alerts than the group's `limit` (the state is cleared).
    Limit {
        /// The group's `limit`.
        limit: usize,
        /// The pending and firing alerts.
        count: usize,
    },
}

/// The state of one alerting rule.
#[derive(Clone, Debug)]
pub struct AlertMachine<P> {
    for_ms: i64,
    keep_firing_for_ms: i64,
    /// By final labels; a mirror ([`crate::render::alerting::AlertMirror`]) writes it
    /// as its stage's steps say.
    pub(crate) active: BTreeMap<Arc<Labels>, Alert<P>>,
}

impl<P: Clone> AlertMachine<P> {
    /// A rule with `for` and `keep_firing_for` in ms.
    pub fn new(for_ms: i64, keep_firing_for_ms: i64) -> AlertMachine<P> {
        AlertMachine {
            for_ms,
            keep_firing_for_ms,
            active: BTreeMap::new(),
        }
    }

    /// Evaluates at `t_ms` with the rule's result. `limit` > 0 bounds the number of
    /// pending/firing alerts; exceeding it clears all state and is an error, as in
    /// Prometheus. Duplicate label sets are an error (state unchanged).
    pub fn step(
        &mut self,
        t_ms: i64,
        candidates: Vec<Candidate<P>>,
        limit: usize,
    ) -> Result<StepOutput, AlertError> {
        let mut current: BTreeMap<Arc<Labels>, Candidate<P>> = BTreeMap::new();
        for c in candidates {
            if current.contains_key(&c.labels) {
                return Err(AlertError::Duplicate);
            }
            current.insert(c.labels.clone(), c);
        }
        let mut out = StepOutput::default();
        for (labels, c) in &current {
            match self.active.get_mut(labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.core.value = c.value;
                    a.payload = c.payload.clone();
                }
                _ => {
                    out.changes
                        .push((labels.clone(), AlertState::Inactive, AlertState::Pending));
                    let core = AlertCore {
                        labels: labels.clone(),
                        state: AlertState::Pending,
                        value: c.value,
                        active_at_ms: t_ms,
                        fired_at_ms: None,
                        resolved_at_ms: None,
                        keep_firing_since_ms: None,
                    };
                    self.active
                        .insert(labels.clone(), Alert::new(core, c.payload.clone()));
                }
            }
        }
        let mut active_or_pending = 0;
        let mut remove = Vec::new();
        for (labels, a) in self.active.iter_mut() {
            let a = &mut a.core;
            if !current.contains_key(labels) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(t_ms);
                    keep_firing = t_ms - since < self.keep_firing_for_ms;
                }
                let expired = a
                    .resolved_at_ms
                    .is_some_and(|r| t_ms - r > RESOLVED_RETENTION_MS);
                if a.state == AlertState::Pending || expired {
                    remove.push(labels.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    out.changes
                        .push((labels.clone(), a.state, AlertState::Inactive));
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(t_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_or_pending += 1;
            if a.state == AlertState::Pending && t_ms - a.active_at_ms >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(t_ms);
                out.changes
                    .push((labels.clone(), AlertState::Pending, AlertState::Firing));
            }
            out.samples.push((alerts_series(labels, a.state), 1.0));
            out.samples
                .push((for_state_series(labels), (a.active_at_ms / 1000) as f64));
        }
        for labels in remove {
            self.active.remove(&labels);
        }
        if limit > 0 && active_or_pending > limit {
            self.active.clear();
            return Err(AlertError::Limit {
                limit,
                count: active_or_pending,
            });
        }
        // A new alert with `for: 0` went straight through pending to firing.
        Ok(out)
    }

    /// Like [`AlertMachine::step`], given only what changed since the previous step
    /// (`set`: candidates new or with a new value; `gone`: labels of alerts whose
    /// element left the result) at a time before every deadline
    /// ([`AlertMachine::changes_suffice`]; else step with the whole result): the same
    /// state afterwards, with the samples of the series that begin (a new pending or
    /// firing alert) and, in `ended`, the series that end. Series of alerts that stay
    /// as they were are not repeated (whoever writes them refreshes them).
    pub fn step_changes(
        &mut self,
        t_ms: i64,
        set: Vec<Candidate<P>>,
        gone: &[Arc<Labels>],
        limit: usize,
    ) -> Result<StepOutput, AlertError> {
        let mut out = StepOutput::default();
        for labels in gone {
            let Some(a) = self.active.get_mut(labels) else {
                continue;
            };
            let a = &mut a.core;
            if a.state == AlertState::Inactive {
                continue;
            }
            if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                // Kept firing until its deadline, which a whole step handles.
                a.keep_firing_since_ms.get_or_insert(t_ms);
                continue;
            }
            out.changes
                .push((labels.clone(), a.state, AlertState::Inactive));
            out.ended.push(alerts_series(labels, a.state));
            out.ended.push(for_state_series(labels));
            if a.state == AlertState::Pending {
                self.active.remove(labels);
            } else {
                a.state = AlertState::Inactive;
                a.resolved_at_ms = Some(t_ms);
            }
        }
        for c in set {
            match self.active.get_mut(&c.labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.core.value = c.value;
                    a.core.keep_firing_since_ms = None;
                    a.payload = c.payload;
                }
                _ => {
                    // `for: 0` goes through pending to firing at once, as in a step.
                    let state = if self.for_ms <= 0 {
                        AlertState::Firing
                    } else {
                        AlertState::Pending
                    };
                    out.changes
                        .push((c.labels.clone(), AlertState::Inactive, AlertState::Pending));
                    if state == AlertState::Firing {
                        out.changes.push((
                            c.labels.clone(),
                            AlertState::Pending,
                            AlertState::Firing,
                        ));
                    }
                    out.samples.push((alerts_series(&c.labels, state), 1.0));
                    out.samples
                        .push((for_state_series(&c.labels), (t_ms / 1000) as f64));
                    let core = AlertCore {
                        labels: c.labels.clone(),
                        state,
                        value: c.value,
                        active_at_ms: t_ms,
                        fired_at_ms: (state == AlertState::Firing).then_some(t_ms),
                        resolved_at_ms: None,
                        keep_firing_since_ms: None,
                    };
                    self.active.insert(c.labels, Alert::new(core, c.payload));
                }
            }
        }
        if limit > 0 {
            let active = self
                .active
                .values()
                .filter(|a| a.state != AlertState::Inactive)
                .count();
            if active > limit {
                self.active.clear();
                return Err(AlertError::Limit {
                    limit,
                    count: active,
                });
            }
        }
        Ok(out)
    }

    /// Whether a step at `t_ms` may take only the changes since the step at `last_ms`
    /// ([`AlertMachine::step_changes`]): no deadline after `last_ms` has come by `t_ms`.
    pub fn changes_suffice(&self, last_ms: i64, t_ms: i64) -> bool {
        self.next_deadline(last_ms).is_none_or(|d| d > t_ms)
    }

    /// Every alert held (pending, firing, and resolved ones kept for re-sending).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert<P>> {
        self.active.values()
    }

    /// The alert with final labels `labels`.
    pub fn get(&self, labels: &Labels) -> Option<&Alert<P>> {
        self.active.get(labels)
    }

    /// The most severe state of the rule's alerts (for `/api/v1/rules`).
    pub fn rule_state(&self) -> AlertState {
        let mut state = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => state = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        state
    }

    /// The earliest time after `t_ms` at which an evaluation with unchanged input would
    /// change an alert's state: a pending alert's `activeAt + for`, or a kept-firing
    /// alert's `keep_firing_since + keep_firing_for`.
    pub fn next_deadline(&self, t_ms: i64) -> Option<i64> {
        self.active
            .values()
            .filter_map(|a| match a.state {
                AlertState::Pending => Some(a.active_at_ms + self.for_ms),
                AlertState::Firing => a.keep_firing_since_ms.map(|s| s + self.keep_firing_for_ms),
                AlertState::Inactive => None,
            })
            // A deadline already passed (e.g. `activeAt` restored after a restart) is due
            // at the next instant.
            .map(|d| d.max(t_ms + 1))
            .min()
    }

    /// Alerts to hand to the notifier at `t_ms` (Prometheus's `sendAlerts`): firing
    /// ones not sent for `resend_delay_ms`, and resolved ones not sent since they
    /// resolved. Marks them sent.
    pub fn to_send(&mut self, t_ms: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert<P>> {
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            let needs = match a.state {
                AlertState::Pending => false,
                _ => {
                    let resolved_since_sent = match (a.resolved_at_ms, a.last_sent_ms) {
                        (Some(r), Some(s)) => r > s,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    resolved_since_sent || a.last_sent_ms.is_none_or(|s| s + resend_delay_ms < t_ms)
                }
            };
            if needs {
                a.last_sent_ms = Some(t_ms);
                a.valid_until_ms = Some(t_ms + 4 * resend_delay_ms.max(interval_ms));
                out.push(a.clone());
            }
        }
        out
    }

    /// The rule's `for` (ms).
    pub fn for_ms(&self) -> i64 {
        self.for_ms
    }

    /// The rule's `keep_firing_for` (ms).
    pub fn keep_firing_for_ms(&self) -> i64 {
        self.keep_firing_for_ms
    }

    /// Sets the `activeAt` of a held alert (the restore after a restart).
    pub fn set_active_at(&mut self, labels: &Labels, active_at_ms: i64) {
        if let Some(a) = self.active.get_mut(labels) {
            a.core.active_at_ms = active_at_ms;
        }
    }

    /// Holds `alert` unless an alert with its labels is held already (the restore of
    /// firing alerts after a restart).
    pub fn insert_if_absent(&mut self, alert: Alert<P>) {
        self.active.entry(alert.labels.clone()).or_insert(alert);
    }

    /// Restores alerts (e.g. kept across a reload of an unchanged rule).
    pub fn from_alerts(for_ms: i64, keep_firing_for_ms: i64, alerts: Vec<Alert<P>>) -> Self {
        AlertMachine {
            for_ms,
            keep_firing_for_ms,
            active: alerts.into_iter().map(|a| (a.labels.clone(), a)).collect(),
        }
    }

    /// The `for` restore at the first step after a restart, at `t_ms`: each alert that
    /// step made pending (`activeAt == t_ms`) whose `ALERTS_FOR_STATE` series' last
    /// sample written before the restart, `last(alert labels)` = (time, value), is not
    /// a stale marker gets its `activeAt` back ([`restored_active_at`]). `last` looks
    /// within the outage tolerance. The restored alerts and their `activeAt`.
    pub fn restore_for(
        &mut self,
        t_ms: i64,
        policy: RestorePolicy,
        mut last: impl FnMut(&Arc<Labels>) -> Option<(i64, f64)>,
    ) -> Vec<(Arc<Labels>, i64)> {
        if !policy.restores(self.for_ms) {
            return Vec::new();
        }
        let mut restored = Vec::new();
        for a in self.active.values_mut() {
            if a.state != AlertState::Pending || a.active_at_ms != t_ms {
                continue;
            }
            let Some((t_down, v)) = last(&a.labels) else {
                continue;
            };
            if is_stale_marker(v) {
                continue;
            }
            let Some(active_at) = restored_active_at(policy, self.for_ms, t_ms, t_down, v) else {
                continue;
            };
            a.core.active_at_ms = active_at;
            restored.push((a.labels.clone(), active_at));
        }
        restored
    }
}

/// How `activeAt` is restored after a restart (see promflow's `rules::restore`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestorePolicy {
    /// `activeAt` as it was.
    Keep,
    /// Prometheus 2.42's `Group.RestoreForState`, with its grace period (ms).
    Prometheus {
        /// `--rules.alert.for-grace-period`.
        grace_ms: i64,
    },
}

impl RestorePolicy {
    /// Whether a rule with `for` of `for_ms` is restored at all (Prometheus: only a
    /// `for` of at least the grace period).
    pub fn restores(self, for_ms: i64) -> bool {
        match self {
            RestorePolicy::Keep => true,
            RestorePolicy::Prometheus { grace_ms } => for_ms >= grace_ms,
        }
    }
}

/// The `activeAt` (ms) an alert of a rule with `for` of `for_ms` gets back at `t_ms`,
/// the first step after a restart, from the last sample of its `ALERTS_FOR_STATE`
/// series before the restart (at `t_down_ms`, value `old_active_s`, `activeAt` in
/// seconds); `None` when `policy` restores no such rule. With `downAt` that sample's
/// time (whole seconds), `remaining = for − (downAt − activeAt)`: [`RestorePolicy::Keep`]
/// keeps the old `activeAt`; Prometheus's keeps it too if `remaining <= 0` (it was
/// firing), fires `grace` after the restore if `remaining < grace` (`activeAt = t +
/// grace − for`), and otherwise does not count the downtime (`activeAt = old + (t −
/// downAt)`).
pub fn restored_active_at(
    policy: RestorePolicy,
    for_ms: i64,
    t_ms: i64,
    t_down_ms: i64,
    old_active_s: f64,
) -> Option<i64> {
    if !policy.restores(for_ms) {
        return None;
    }
    let down_at = t_down_ms.div_euclid(1000) * 1000;
    let old_active_at = (old_active_s as i64) * 1000;
    let remaining = for_ms - (down_at - old_active_at);
    Some(match policy {
        RestorePolicy::Keep => old_active_at,
        RestorePolicy::Prometheus { .. } if remaining <= 0 => old_active_at,
        RestorePolicy::Prometheus { grace_ms } if remaining < grace_ms => t_ms + grace_ms - for_ms,
        RestorePolicy::Prometheus { .. } => old_active_at + (t_ms - down_at),
    })
}

/// An alert's final labels from a result element's `result` labels: without
/// `__name__`, with the rule's `rule_labels` (their templates expanded; they override
/// the element's) and `alertname` = `name`.
pub fn final_labels(result: &Labels, rule_labels: &[(String, String)], name: &str) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = result
        .iter()
        .filter(|(k, _)| *k != METRIC_NAME)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.extend(rule_labels.iter().cloned());
    pairs.push((ALERT_NAME.into(), name.into()));
    Arc::new(Labels::from_pairs(pairs))
}

/// Whether the final labels of an element labelled `result` cannot equal another
/// element's ([`final_labels`] keeps every label it has): it has no `__name__`, no
/// `alertname` and none of the labels `rule_label_names` the rule sets.
pub fn keeps_final_labels_distinct<'a>(
    result: &Labels,
    mut rule_label_names: impl Iterator<Item = &'a str>,
) -> bool {
    result.get(METRIC_NAME).is_none()
        && result.get(ALERT_NAME).is_none()
        && rule_label_names.all(|k| result.get(k).is_none())
}

/// `ALERTS{<labels>, alertstate="…"}`.
pub fn alerts_series(labels: &Labels, state: AlertState) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push((METRIC_NAME.into(), "ALERTS".into()));
    pairs.push(("alertstate".into(), state.as_str().into()));
    Arc::new(Labels::from_pairs(pairs))
}

/// `ALERTS_FOR_STATE{<labels>}`.
pub fn for_state_series(labels: &Labels) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push((METRIC_NAME.into(), "ALERTS_FOR_STATE".into()));
    Arc::new(Labels::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    type Machine = AlertMachine<()>;

    fn cand(instance: &str) -> Candidate<()> {
        Candidate {
            labels: Arc::new(Labels::from_pairs(vec![
                ("alertname".into(), "A".into()),
                ("instance".into(), instance.into()),
            ])),
            value: 1.0,
            payload: (),
        }
    }

    fn states(s: &Machine) -> Vec<(String, &'static str)> {
        s.alerts()
            .map(|a| {
                (
                    a.labels.get("instance").unwrap().to_string(),
                    a.state.as_str(),
                )
            })
            .collect()
    }

    /// Steps with only the changes (a whole step whenever a deadline has passed, as
    /// the group runner does) leave the same alerts as whole steps, on random results;
    /// resolved alerts past their retention (dropped only by whole steps, which the
    /// runner makes at every group tick) aside.
    #[test]
    fn stepping_with_changes_keeps_the_state_of_whole_steps() {
        let mut seed = 7u64;
        let mut below = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for (for_ms, keep_firing_ms) in [(0, 0), (2 * M, 0), (M, 3 * M)] {
            let mut whole = Machine::new(for_ms, keep_firing_ms);
            let mut changes = Machine::new(for_ms, keep_firing_ms);
            let mut previous: BTreeMap<String, f64> = BTreeMap::new();
            let mut previous_t = 0;
            for step in 0..600 {
                let t = step * 15_000;
                let mut result: BTreeMap<String, f64> = BTreeMap::new();
                for i in 0..6 {
                    if below(3) > 0 {
                        result.insert(format!("h{i}"), below(4) as f64);
                    }
                }
                let candidate = |instance: &str, value: f64| Candidate {
                    value,
                    ..cand(instance)
                };
                let all = result.iter().map(|(i, v)| candidate(i, *v)).collect();
                whole.step(t, all, 0).unwrap();
                if step == 0 || !changes.changes_suffice(previous_t, t) {
                    let all = result.iter().map(|(i, v)| candidate(i, *v)).collect();
                    changes.step(t, all, 0).unwrap();
                } else {
                    let set = result
                        .iter()
                        .filter(|(i, v)| previous.get(*i) != Some(*v))
                        .map(|(i, v)| candidate(i, *v))
                        .collect();
                    let gone: Vec<Arc<Labels>> = previous
                        .keys()
                        .filter(|i| !result.contains_key(*i))
                        .map(|i| cand(i).labels)
                        .collect();
                    changes.step_changes(t, set, &gone, 0).unwrap();
                }
                let held = |s: &Machine| -> Vec<Alert<()>> {
                    s.alerts()
                        .filter(|a| {
                            a.resolved_at_ms
                                .is_none_or(|r| t - r <= RESOLVED_RETENTION_MS)
                        })
                        .cloned()
                        .collect()
                };
                assert_eq!(
                    held(&whole),
                    held(&changes),
                    "for {for_ms}, keep firing {keep_firing_ms}, step {step}"
                );
                previous = result;
                previous_t = t;
            }
        }
    }

    #[test]
    fn pending_then_firing_at_exactly_for_then_resolved_and_kept_15m() {
        let mut s = Machine::new(5 * M, 0);
        s.step(0, vec![cand("a")], 0).unwrap();
        assert_eq!(states(&s), vec![("a".into(), "pending")]);
        assert_eq!(s.next_deadline(0), Some(5 * M));
        let out = s.step(4 * M, vec![cand("a")], 0).unwrap();
        assert!(out.changes.is_empty());
        let out = s.step(5 * M, vec![cand("a")], 0).unwrap();
        assert_eq!(out.changes[0].2, AlertState::Firing);
        assert_eq!(out.samples[0].0.get("alertstate"), Some("firing"));
        assert_eq!(out.samples[1].1, 0.0);
        let out = s.step(6 * M, vec![], 0).unwrap();
        assert!(out.samples.is_empty());
        assert_eq!(states(&s), vec![("a".into(), "inactive")]);
        let sent = s.to_send(6 * M, M, M);
        assert_eq!(sent[0].resolved_at_ms, Some(6 * M));
        s.step(21 * M, vec![], 0).unwrap();
        assert_eq!(s.alerts().count(), 1, "kept exactly 15m");
        s.step(21 * M + 1, vec![], 0).unwrap();
        assert_eq!(s.alerts().count(), 0);
    }

    #[test]
    fn pending_alert_that_disappears_is_dropped() {
        let mut s = Machine::new(5 * M, 0);
        s.step(0, vec![cand("a")], 0).unwrap();
        s.step(M, vec![], 0).unwrap();
        assert_eq!(s.alerts().count(), 0);
        s.step(2 * M, vec![cand("a")], 0).unwrap();
        assert_eq!(s.alerts().next().unwrap().active_at_ms, 2 * M);
    }

    #[test]
    fn keep_firing_for_holds_then_resolves() {
        let mut s = Machine::new(0, 2 * M);
        s.step(0, vec![cand("a")], 0).unwrap();
        assert_eq!(states(&s), vec![("a".into(), "firing")]);
        s.step(M, vec![], 0).unwrap();
        assert_eq!(states(&s), vec![("a".into(), "firing")]);
        assert_eq!(s.next_deadline(M), Some(3 * M));
        s.step(2 * M, vec![], 0).unwrap();
        assert_eq!(states(&s), vec![("a".into(), "firing")]);
        s.step(3 * M, vec![], 0).unwrap();
        assert_eq!(states(&s), vec![("a".into(), "inactive")]);
    }

    #[test]
    fn resend_delay_and_limit() {
        let mut s = Machine::new(0, 0);
        s.step(0, vec![cand("a")], 0).unwrap();
        assert_eq!(s.to_send(0, M, 15_000).len(), 1);
        assert_eq!(s.to_send(30_000, M, 15_000).len(), 0);
        assert_eq!(s.to_send(M, M, 15_000).len(), 0, "strictly after the delay");
        let sent = s.to_send(M + 1, M, 15_000);
        assert_eq!(sent[0].valid_until_ms, Some(M + 1 + 4 * M));
        assert_eq!(
            s.step(M, vec![cand("a"), cand("b")], 1),
            Err(AlertError::Limit { limit: 1, count: 2 })
        );
        assert_eq!(s.alerts().count(), 0);
    }

    #[test]
    fn duplicate_final_labels_fail_the_step_and_keep_the_state() {
        let mut s = Machine::new(5 * M, 0);
        s.step(0, vec![cand("a")], 0).unwrap();
        let before: Vec<_> = s.alerts().cloned().collect();
        assert_eq!(
            s.step(M, vec![cand("b"), cand("b")], 0),
            Err(AlertError::Duplicate)
        );
        assert_eq!(s.alerts().cloned().collect::<Vec<_>>(), before);
        // A rule label overriding the one two elements differ by makes them equal.
        let rule = [("instance".to_string(), "all".to_string())];
        let one = Labels::from_pairs(vec![
            ("__name__".into(), "up".into()),
            ("instance".into(), "x".into()),
        ]);
        let two = Labels::from_pairs(vec![("instance".into(), "y".into())]);
        assert_eq!(
            final_labels(&one, &rule, "A"),
            final_labels(&two, &rule, "A")
        );
        assert!(!keeps_final_labels_distinct(&one, ["job"].into_iter()));
        assert!(!keeps_final_labels_distinct(&two, ["instance"].into_iter()));
        assert!(keeps_final_labels_distinct(&two, ["job"].into_iter()));
    }

    #[test]
    fn restored_active_at_follows_both_policies() {
        let prometheus = RestorePolicy::Prometheus { grace_ms: 10 * M };
        // Down 2m after becoming active, 20m `for`, back at 105m.
        let restore =
            |policy, for_ms| restored_active_at(policy, for_ms, 105 * M, 102 * M + 500, 6000.0);
        assert_eq!(restore(RestorePolicy::Keep, 20 * M), Some(100 * M));
        assert_eq!(restore(prometheus, 20 * M), Some(103 * M));
        assert_eq!(
            restore(prometheus, 5 * M),
            None,
            "for below the grace period"
        );
        // Already firing when it went down: kept; little left: fires grace after.
        assert_eq!(
            restored_active_at(prometheus, 20 * M, 140 * M, 130 * M, 6000.0),
            Some(100 * M)
        );
        assert_eq!(
            restored_active_at(prometheus, 20 * M, 120 * M, 115 * M, 6000.0),
            Some(110 * M)
        );
    }
}
