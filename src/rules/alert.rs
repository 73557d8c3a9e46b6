//! The alert state machine of one alerting rule: pure and deterministic.
//!
//! Owns: per-alert state (pending → firing → inactive/resolved) keyed by the alert's
//! final label set, with Prometheus 2.42's exact semantics (`rules/alerting.go`,
//! `AlertingRule.Eval`): an element of the rule's result at `t` makes a new alert
//! pending with `activeAt = t`; it fires at the first evaluation with
//! `t - activeAt >= for`; when it leaves the result a firing alert stays firing for
//! `keep_firing_for`, then becomes inactive with `resolvedAt = t` and is kept
//! [`RESOLVED_RETENTION`] so it can be re-sent as resolved; a pending one is dropped.
//! Each step returns the `ALERTS` and `ALERTS_FOR_STATE` samples Prometheus writes.
//!
//! Contract: [`AlertRuleState::step`] takes the candidate alerts at `t` (labels
//! already final: result labels without `__name__`, rule labels, `alertname`) and
//! times must not go backwards. [`AlertRuleState::next_deadline`] is the earliest
//! future time at which a step *without new input* would change state (a `for` or
//! `keep_firing_for` deadline), so a maintained operator can evaluate exactly then.
//! Sending (which alerts to notify, when) is [`AlertRuleState::to_send`], mirroring
//! Prometheus's `needsSending`/`ValidUntil`.

use crate::rules::sinks::RuleError;
use dataflows::Labels;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long a resolved alert is kept (and re-sent as resolved): 15 minutes.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// Same, as the name the docs use.
pub const RESOLVED_RETENTION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// An alert's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// One alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Final labels (incl. `alertname`).
    pub labels: Arc<Labels>,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
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
    /// Last time it was handed to the notifier.
    pub last_sent_ms: Option<i64>,
    /// `endsAt` sent for a firing alert: 4 × max(resend delay, interval) after sending.
    pub valid_until_ms: Option<i64>,
}

/// An element of the rule's result, turned into an alert candidate.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Final labels.
    pub labels: Arc<Labels>,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// The element's value.
    pub value: f64,
}

/// What one evaluation produced.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// `ALERTS{…, alertstate}` = 1 and `ALERTS_FOR_STATE{…}` = activeAt seconds, at `t`.
    pub samples: Vec<(Arc<Labels>, f64)>,
    /// Alerts whose state changed at this step: (labels, old, new).
    pub changes: Vec<(Arc<Labels>, AlertState, AlertState)>,
    /// [`AlertRuleState::step_changes`]: the `ALERTS`/`ALERTS_FOR_STATE` series that
    /// end at this step (their alert resolved or left while pending).
    pub ended: Vec<Arc<Labels>>,
}

/// The state of one alerting rule.
#[derive(Clone, Debug)]
pub struct AlertRuleState {
    for_ms: i64,
    keep_firing_for_ms: i64,
    active: BTreeMap<Arc<Labels>, Alert>,
}

impl AlertRuleState {
    /// A rule with `for` and `keep_firing_for` in ms.
    pub fn new(for_ms: i64, keep_firing_for_ms: i64) -> AlertRuleState {
        AlertRuleState {
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
        candidates: Vec<Candidate>,
        limit: usize,
    ) -> Result<StepOutput, RuleError> {
        let mut current: BTreeMap<Arc<Labels>, Candidate> = BTreeMap::new();
        for c in candidates {
            if current.contains_key(&c.labels) {
                return Err(RuleError::DuplicateAfterAlertLabels);
            }
            current.insert(c.labels.clone(), c);
        }
        let mut out = StepOutput::default();
        for (labels, c) in &current {
            match self.active.get_mut(labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = c.value;
                    a.annotations = c.annotations.clone();
                }
                _ => {
                    out.changes
                        .push((labels.clone(), AlertState::Inactive, AlertState::Pending));
                    self.active.insert(
                        labels.clone(),
                        Alert {
                            labels: labels.clone(),
                            annotations: c.annotations.clone(),
                            state: AlertState::Pending,
                            value: c.value,
                            active_at_ms: t_ms,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            keep_firing_since_ms: None,
                            last_sent_ms: None,
                            valid_until_ms: None,
                        },
                    );
                }
            }
        }
        let mut active_or_pending = 0;
        let mut remove = Vec::new();
        for (labels, a) in self.active.iter_mut() {
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
            return Err(RuleError::AlertLimit {
                limit,
                count: active_or_pending,
            });
        }
        // A new alert with `for: 0` went straight through pending to firing.
        Ok(out)
    }

    /// Like [`AlertRuleState::step`], given only what changed since the previous step
    /// (`set`: candidates new or with a new value; `gone`: labels of alerts whose
    /// element left the result) at a time before every deadline
    /// ([`AlertRuleState::next_deadline`]; else step with the whole result): the same
    /// state afterwards, with the samples of the series that begin (a new pending or
    /// firing alert) and, in `ended`, the series that end. Series of alerts that stay
    /// as they were are not repeated (whoever writes them refreshes them).
    pub fn step_changes(
        &mut self,
        t_ms: i64,
        set: Vec<Candidate>,
        gone: &[Arc<Labels>],
        limit: usize,
    ) -> Result<StepOutput, RuleError> {
        let mut out = StepOutput::default();
        for labels in gone {
            let Some(a) = self.active.get_mut(labels) else {
                continue;
            };
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
                    a.value = c.value;
                    a.annotations = c.annotations;
                    a.keep_firing_since_ms = None;
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
                    self.active.insert(
                        c.labels.clone(),
                        Alert {
                            labels: c.labels,
                            annotations: c.annotations,
                            state,
                            value: c.value,
                            active_at_ms: t_ms,
                            fired_at_ms: (state == AlertState::Firing).then_some(t_ms),
                            resolved_at_ms: None,
                            keep_firing_since_ms: None,
                            last_sent_ms: None,
                            valid_until_ms: None,
                        },
                    );
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
                return Err(RuleError::AlertLimit {
                    limit,
                    count: active,
                });
            }
        }
        Ok(out)
    }

    /// Every alert held (pending, firing, and resolved ones kept for re-sending).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
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
    pub fn to_send(&mut self, t_ms: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert> {
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
            a.active_at_ms = active_at_ms;
        }
    }

    /// Holds `alert` unless an alert with its labels is held already (the restore of
    /// firing alerts after a restart).
    pub fn insert_if_absent(&mut self, alert: Alert) {
        self.active.entry(alert.labels.clone()).or_insert(alert);
    }

    /// Restores alerts (e.g. kept across a reload of an unchanged rule).
    pub fn from_alerts(for_ms: i64, keep_firing_for_ms: i64, alerts: Vec<Alert>) -> Self {
        AlertRuleState {
            for_ms,
            keep_firing_for_ms,
            active: alerts.into_iter().map(|a| (a.labels.clone(), a)).collect(),
        }
    }
}

/// `ALERTS{<labels>, alertstate="…"}`.
pub fn alerts_series(labels: &Labels, state: AlertState) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("__name__".into(), "ALERTS".into()));
    pairs.push(("alertstate".into(), state.as_str().into()));
    Arc::new(Labels::from_pairs(pairs))
}

/// `ALERTS_FOR_STATE{<labels>}`.
pub fn for_state_series(labels: &Labels) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("__name__".into(), "ALERTS_FOR_STATE".into()));
    Arc::new(Labels::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    fn cand(instance: &str) -> Candidate {
        Candidate {
            labels: Arc::new(Labels::from_pairs(vec![
                ("alertname".into(), "A".into()),
                ("instance".into(), instance.into()),
            ])),
            annotations: BTreeMap::new(),
            value: 1.0,
        }
    }

    fn states(s: &AlertRuleState) -> Vec<(String, &'static str)> {
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
            let mut whole = AlertRuleState::new(for_ms, keep_firing_ms);
            let mut changes = AlertRuleState::new(for_ms, keep_firing_ms);
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
                let deadline_passed = changes.next_deadline(previous_t).is_some_and(|d| d <= t);
                if step == 0 || deadline_passed {
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
                let held = |s: &AlertRuleState| -> Vec<Alert> {
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
        let mut s = AlertRuleState::new(5 * M, 0);
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
        let mut s = AlertRuleState::new(5 * M, 0);
        s.step(0, vec![cand("a")], 0).unwrap();
        s.step(M, vec![], 0).unwrap();
        assert_eq!(s.alerts().count(), 0);
        s.step(2 * M, vec![cand("a")], 0).unwrap();
        assert_eq!(s.alerts().next().unwrap().active_at_ms, 2 * M);
    }

    #[test]
    fn keep_firing_for_holds_then_resolves() {
        let mut s = AlertRuleState::new(0, 2 * M);
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
        let mut s = AlertRuleState::new(0, 0);
        s.step(0, vec![cand("a")], 0).unwrap();
        assert_eq!(s.to_send(0, M, 15_000).len(), 1);
        assert_eq!(s.to_send(30_000, M, 15_000).len(), 0);
        assert_eq!(s.to_send(M, M, 15_000).len(), 0, "strictly after the delay");
        let sent = s.to_send(M + 1, M, 15_000);
        assert_eq!(sent[0].valid_until_ms, Some(M + 1 + 4 * M));
        assert!(s.step(M, vec![cand("a"), cand("b")], 1).is_err());
        assert_eq!(s.alerts().count(), 0);
    }
}
