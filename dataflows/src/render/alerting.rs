//! The alert stage: an alerting rule's alert state stepped beside its results, and the
//! record of each step's changes ([`AlertStep`]) that a copy elsewhere applies.
//!
//! Owns: [`AlertStage`], the alert state ([`AlertMachine`] without payload) of one
//! alerting rule whose labels are not templates, stepped with the rule's plain results
//! as they come (a whole result, or the changes since the previous one, or a failed
//! evaluation) and at timer steps (a `for`/`keep_firing_for` deadline or a group tick,
//! stepped with the last result); [`AlertStep`], what one step changed (the alerts new
//! or changed, the alerts dropped, the `activeAt`s the `for` restore set) — the diff of
//! the alert map, not the samples; and [`AlertMirror`], the copy that applies
//! [`AlertStep`]s in order, keeps each alert's payload (the rule host's annotations)
//! and sending times, and yields the same `ALERTS`/`ALERTS_FOR_STATE` samples the
//! kernel's step would.
//!
//! Contract: the stage steps exactly as promflow's rule host steps its own state
//! (`rules::group::GroupState`): a failed evaluation leaves the state untouched; the
//! changes alone are stepped ([`AlertMachine::step_changes`]) only when the host would
//! (the previous evaluation succeeded, every element's final labels stay distinct
//! ([`keeps_final_labels_distinct`]) and no deadline has come,
//! [`AlertMachine::changes_suffice`]), else the whole result is; the `for` restore
//! runs after the first step ([`AlertMachine::restore_for`]), after the samples of
//! that step. A mirror that starts from the stage's seed state (with payloads) and
//! applies every step, given the candidates the step was made of (every element's for
//! a whole step, the new or changed ones' for changes), holds the same alerts,
//! payloads and sending times as the host's own state, and yields the same samples:
//! the property test of promflow's `rules::stage_equivalence` checks it over random
//! results.
//!
//! In the dataflow: a rule registered with an [`AlertSpec`] ([`RuleDef::alerting`],
//! `Engine::register_alerting_to`; interval schedules only, until on-arrival timers
//! step stages) has its stage on its owner: an owned rule's on the owner's rule host
//! (`render::maintain`), a spread rule's in the owner's combiner beside the combined
//! result (`render::spread::combine_partials`), stepped at every tick with the output
//! converted as the host converts it ([`AlertStage::on_rule_output`],
//! [`RuleOutput::arrival`]); the step leaves in [`RuleOutput::alerts`]. The dataflow test `tests/alert_stage.rs` checks
//! the steps, applied to a mirror, against [`AlertMachine::step`] over the reference
//! evaluator at every tick. No consumer applies them yet (promflow's runner: step
//! S5a).

use crate::labels::Labels;
use crate::render::alert_state::{
    alerts_series, final_labels, for_state_series, keeps_final_labels_distinct, Alert, AlertCore,
    AlertError, AlertMachine, AlertState, Candidate, RestorePolicy, StepOutput,
};
#[cfg(doc)]
use crate::render::rule::RuleDef;
use crate::render::rule::{Arrival, RuleOutput};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// An alerting rule as its stage needs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertSpec {
    /// The rule's name (`alertname`).
    pub name: String,
    /// The rule's labels (not templates).
    pub labels: Vec<(String, String)>,
    /// `for` (ms).
    pub for_ms: i64,
    /// `keep_firing_for` (ms).
    pub keep_firing_for_ms: i64,
    /// The group's `limit` (0: none).
    pub limit: usize,
    /// What the state starts from.
    pub seed: AlertSeed,
}

/// What an alert stage's state starts from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AlertSeed {
    /// A reload: the state of the rule it replaces, unchanged.
    pub carried: Vec<AlertCore>,
    /// A restart: firing alerts saved by the keep-firing file (held unless the carried
    /// state has them).
    pub kept_firing: Vec<AlertCore>,
    /// A restart: the `for` restore at the first step.
    pub restore: Option<ForRestoreSeed>,
}

/// What the `for` restore reads: the last sample written before the restart of each
/// `ALERTS_FOR_STATE` series of the rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForRestoreSeed {
    /// How `activeAt` is restored.
    pub policy: RestorePolicy,
    /// The outage tolerance (ms): samples older than the first step's time minus this
    /// are not restored.
    pub tolerance_ms: i64,
    /// Per alert (final labels): the time (ms) and value (`activeAt`, s) of its
    /// series' last sample before the restart.
    pub last: Vec<(Arc<Labels>, i64, f64)>,
}

/// A rule's result as the stage takes it: element labels and float values (a
/// histogram's float is 0, as the host takes it).
#[derive(Clone, Debug, PartialEq)]
pub enum StageInput {
    /// The whole result; `None`: the evaluation failed.
    Whole(Option<Vec<(Arc<Labels>, f64)>>),
    /// The elements new or with a new value, and the labels of the elements that left.
    Changes {
        /// New or changed elements.
        set: Vec<(Arc<Labels>, f64)>,
        /// Labels of elements that left.
        gone: Vec<Arc<Labels>>,
    },
}

/// How a step stepped the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    /// Not at all: the evaluation failed.
    Skipped,
    /// With the whole result ([`AlertMachine::step`]).
    Whole,
    /// With the changes alone ([`AlertMachine::step_changes`]).
    Changes,
}

/// What one step of an alert stage changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertStep {
    /// The evaluation time (ms).
    pub t_ms: i64,
    /// How the state was stepped.
    pub kind: StepKind,
    /// A timer step: with the last result, no new evaluation.
    pub timer: bool,
    /// `Err(Duplicate)`: nothing changed; `Err(Limit)`: every alert was dropped.
    pub outcome: Result<(), AlertError>,
    /// Alerts new, or with a changed state or time (the full state; a value change
    /// alone is not one: values travel with the results).
    pub upserts: Vec<AlertCore>,
    /// Alerts dropped (pending ones that left, resolved ones past retention).
    pub removed: Vec<Arc<Labels>>,
    /// The `for` restore after this (first) step: alerts and their `activeAt`, set
    /// after the step's samples.
    pub restored: Vec<(Arc<Labels>, i64)>,
}

/// The fields of an alert a step may change, but its value (see
/// [`AlertStep::upserts`]).
fn stepped_fields(a: &AlertCore) -> (AlertState, i64, Option<i64>, Option<i64>, Option<i64>) {
    (
        a.state,
        a.active_at_ms,
        a.fired_at_ms,
        a.resolved_at_ms,
        a.keep_firing_since_ms,
    )
}

/// One alerting rule's alert state, stepped with its results; see the module doc.
#[derive(Clone, Debug)]
pub struct AlertStage {
    name: String,
    labels: Vec<(String, String)>,
    limit: usize,
    machine: AlertMachine<()>,
    /// The last result: element labels and values.
    current: HashMap<Arc<Labels>, f64>,
    /// Whether every element of `current` keeps its final labels distinct.
    distinct: bool,
    /// The time of the last step, and whether it succeeded.
    last: Option<(i64, bool)>,
    /// The `for` restore, until the first step.
    restore: Option<ForRestoreSeed>,
}

impl AlertStage {
    /// A stage for `spec`, its state seeded.
    pub fn new(spec: AlertSpec) -> AlertStage {
        let AlertSpec {
            name,
            labels,
            for_ms,
            keep_firing_for_ms,
            limit,
            seed,
        } = spec;
        let carried = seed
            .carried
            .into_iter()
            .map(|c| Alert::new(c, ()))
            .collect();
        let mut machine = AlertMachine::from_alerts(for_ms, keep_firing_for_ms, carried);
        for core in seed.kept_firing {
            machine.insert_if_absent(Alert::new(core, ()));
        }
        AlertStage {
            name,
            labels,
            limit,
            machine,
            current: HashMap::new(),
            distinct: false,
            last: None,
            restore: seed.restore,
        }
    }

    /// The state.
    pub fn machine(&self) -> &AlertMachine<()> {
        &self.machine
    }

    /// The earliest deadline after the last step at which a timer step would change
    /// the state ([`AlertMachine::next_deadline`]); none before the first step.
    pub fn next_deadline(&self) -> Option<i64> {
        let (last, _) = self.last?;
        self.machine.next_deadline(last)
    }

    /// The final labels of an element labelled `labels`.
    pub fn final_labels(&self, labels: &Labels) -> Arc<Labels> {
        final_labels(labels, &self.labels, &self.name)
    }

    fn keeps_distinct(&self, labels: &Labels) -> bool {
        keeps_final_labels_distinct(labels, self.labels.iter().map(|(k, _)| k.as_str()))
    }

    fn candidates(&self, elements: &[(Arc<Labels>, f64)]) -> Vec<Candidate<()>> {
        elements
            .iter()
            .map(|(labels, value)| Candidate {
                labels: self.final_labels(labels),
                value: *value,
                payload: (),
            })
            .collect()
    }

    /// Steps with the rule's evaluation at `t_ms`.
    pub fn on_output(&mut self, t_ms: i64, input: StageInput) -> AlertStep {
        self.step(t_ms, input, false)
    }

    /// Steps with a rule's evaluation as the dataflow outputs it, converted as the
    /// rule host converts it ([`RuleOutput::arrival`]: a result that is no instant
    /// vector fails, a histogram's value is 0).
    pub fn on_rule_output(&mut self, output: &RuleOutput) -> AlertStep {
        let input = match output.arrival::<f64>() {
            Arrival::Whole(result) => StageInput::Whole(result.ok()),
            Arrival::Changes { set, gone } => StageInput::Changes { set, gone },
        };
        self.on_output(output.eval_ms, input)
    }

    /// A timer step at `t_ms`: the last result again.
    pub fn on_timer(&mut self, t_ms: i64) -> AlertStep {
        let whole = self.current.iter().map(|(l, v)| (l.clone(), *v)).collect();
        self.step(t_ms, StageInput::Whole(Some(whole)), true)
    }

    fn step(&mut self, t_ms: i64, input: StageInput, timer: bool) -> AlertStep {
        let mut step = AlertStep {
            t_ms,
            kind: StepKind::Skipped,
            timer,
            outcome: Ok(()),
            upserts: Vec::new(),
            removed: Vec::new(),
            restored: Vec::new(),
        };
        let before: BTreeMap<Arc<Labels>, AlertCore> = self
            .machine
            .alerts()
            .map(|a| (a.labels.clone(), a.core.clone()))
            .collect();
        let outcome = match input {
            StageInput::Whole(None) => None,
            StageInput::Whole(Some(result)) => {
                self.distinct = result.iter().all(|(l, _)| self.keeps_distinct(l));
                self.current = result.iter().cloned().collect();
                let candidates = self.candidates(&result);
                step.kind = StepKind::Whole;
                Some(self.machine.step(t_ms, candidates, self.limit))
            }
            StageInput::Changes { set, gone } => {
                let left: Vec<Arc<Labels>> = gone
                    .into_iter()
                    .filter(|l| self.current.remove(l).is_some())
                    .collect();
                let alone = self.last.is_some_and(|(last, ok)| {
                    ok && self.distinct
                        && set.iter().all(|(l, _)| self.keeps_distinct(l))
                        && self.machine.changes_suffice(last, t_ms)
                });
                self.current.extend(set.iter().cloned());
                if alone {
                    let candidates = self.candidates(&set);
                    let gone: Vec<Arc<Labels>> =
                        left.iter().map(|l| self.final_labels(l)).collect();
                    step.kind = StepKind::Changes;
                    Some(
                        self.machine
                            .step_changes(t_ms, candidates, &gone, self.limit),
                    )
                } else {
                    let whole: Vec<(Arc<Labels>, f64)> =
                        self.current.iter().map(|(l, v)| (l.clone(), *v)).collect();
                    self.distinct = whole.iter().all(|(l, _)| self.keeps_distinct(l));
                    let candidates = self.candidates(&whole);
                    step.kind = StepKind::Whole;
                    Some(self.machine.step(t_ms, candidates, self.limit))
                }
            }
        };
        let ok = matches!(outcome, Some(Ok(_)));
        self.last = Some((t_ms, ok));
        if let Some(Err(e)) = outcome {
            step.outcome = Err(e);
        } else if ok {
            for (labels, old) in &before {
                match self.machine.get(labels) {
                    None => step.removed.push(labels.clone()),
                    Some(a) if stepped_fields(&a.core) != stepped_fields(old) => {
                        step.upserts.push(a.core.clone())
                    }
                    Some(_) => {}
                }
            }
            for a in self.machine.alerts() {
                if !before.contains_key(&a.labels) {
                    step.upserts.push(a.core.clone());
                }
            }
        }
        if let Some(seed) = self.restore.take() {
            let mint = t_ms - seed.tolerance_ms;
            let last: HashMap<Arc<Labels>, (i64, f64)> = seed
                .last
                .into_iter()
                .filter(|(_, t_down, _)| *t_down >= mint)
                .map(|(labels, t_down, v)| (labels, (t_down, v)))
                .collect();
            step.restored = self
                .machine
                .restore_for(t_ms, seed.policy, |labels| last.get(labels).copied());
        }
        step
    }
}

/// The copy of an alert stage's state that applies its [`AlertStep`]s, with payloads
/// and sending times; see the module doc.
#[derive(Clone, Debug)]
pub struct AlertMirror<P> {
    machine: AlertMachine<P>,
}

impl<P: Clone + Default> AlertMirror<P> {
    /// A mirror of the stage seeded with `machine`'s alerts (the same cores).
    pub fn new(machine: AlertMachine<P>) -> AlertMirror<P> {
        AlertMirror { machine }
    }

    /// The state.
    pub fn machine(&self) -> &AlertMachine<P> {
        &self.machine
    }

    /// The state, to send from ([`AlertMachine::to_send`]).
    pub fn machine_mut(&mut self) -> &mut AlertMachine<P> {
        &mut self.machine
    }

    /// Applies `step`, made of `candidates` (their payloads and values; every
    /// element's for a whole step, the new or changed ones' for changes), and returns
    /// what the kernel's step returned: the samples (and for changes, the series that
    /// ended), or its error; nothing for a skipped step.
    pub fn apply(
        &mut self,
        step: &AlertStep,
        candidates: Vec<Candidate<P>>,
    ) -> Result<StepOutput, AlertError> {
        let out = self.apply_diff(step, candidates);
        for (labels, active_at) in &step.restored {
            self.machine.set_active_at(labels, *active_at);
        }
        out
    }

    /// [`AlertMirror::apply`] but the restore.
    fn apply_diff(
        &mut self,
        step: &AlertStep,
        candidates: Vec<Candidate<P>>,
    ) -> Result<StepOutput, AlertError> {
        let mut out = StepOutput::default();
        match (&step.outcome, step.kind) {
            (_, StepKind::Skipped) => return Ok(out),
            (Err(AlertError::Duplicate), _) => return Err(AlertError::Duplicate),
            (Err(e @ AlertError::Limit { .. }), _) => {
                self.machine.active.clear();
                return Err(e.clone());
            }
            (Ok(()), _) => {}
        }
        let active = |state: AlertState| state != AlertState::Inactive;
        let mut payloads: HashMap<Arc<Labels>, Candidate<P>> = candidates
            .into_iter()
            .map(|c| (c.labels.clone(), c))
            .collect();
        for labels in &step.removed {
            if let Some(old) = self.machine.active.remove(labels) {
                if active(old.state) {
                    out.changes
                        .push((labels.clone(), old.state, AlertState::Inactive));
                    out.ended.push(alerts_series(labels, old.state));
                    out.ended.push(for_state_series(labels));
                }
            }
        }
        let mut begun = Vec::new();
        for core in &step.upserts {
            let labels = core.labels.clone();
            let old = self.machine.active.get(&labels).map(|a| a.state);
            if !old.is_some_and(active) && active(core.state) {
                // A new alert (a resolved one is replaced, never revived).
                let payload = payloads
                    .get(&labels)
                    .map(|c| c.payload.clone())
                    .unwrap_or_default();
                self.machine
                    .active
                    .insert(labels.clone(), Alert::new(core.clone(), payload));
                out.changes
                    .push((labels.clone(), AlertState::Inactive, AlertState::Pending));
                if core.state == AlertState::Firing {
                    out.changes
                        .push((labels.clone(), AlertState::Pending, AlertState::Firing));
                }
                begun.push(labels);
                continue;
            }
            let old = old.unwrap_or(AlertState::Inactive);
            if old != core.state {
                out.changes.push((labels.clone(), old, core.state));
                if active(old) && !active(core.state) {
                    out.ended.push(alerts_series(&labels, old));
                    out.ended.push(for_state_series(&labels));
                }
            }
            if let Some(a) = self.machine.active.get_mut(&labels) {
                a.core = core.clone();
            }
        }
        for (labels, a) in self.machine.active.iter_mut() {
            if !active(a.state) {
                continue;
            }
            if let Some(c) = payloads.remove(labels) {
                a.core.value = c.value;
                a.payload = c.payload;
            }
        }
        out.samples = match step.kind {
            StepKind::Changes => begun
                .iter()
                .filter_map(|labels| self.machine.active.get(labels))
                .flat_map(|a| samples_of(&a.core))
                .collect(),
            _ => {
                out.ended.clear();
                self.machine
                    .active
                    .values()
                    .filter(|a| active(a.state))
                    .flat_map(|a| samples_of(&a.core))
                    .collect()
            }
        };
        Ok(out)
    }
}

/// The `ALERTS` and `ALERTS_FOR_STATE` samples of a pending or firing alert.
fn samples_of(a: &AlertCore) -> [(Arc<Labels>, f64); 2] {
    [
        (alerts_series(&a.labels, a.state), 1.0),
        (for_state_series(&a.labels), (a.active_at_ms / 1000) as f64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000;

    fn element(instance: &str) -> (Arc<Labels>, f64) {
        let labels = Labels::from_pairs(vec![("instance".into(), instance.into())]);
        (Arc::new(labels), 1.0)
    }

    fn spec(for_ms: i64, seed: AlertSeed) -> AlertSpec {
        AlertSpec {
            name: "A".into(),
            labels: vec![("severity".into(), "page".into())],
            for_ms,
            keep_firing_for_ms: 0,
            limit: 0,
            seed,
        }
    }

    /// Steps the stage and the mirror with the whole result `elements` at `t`.
    fn whole(
        stage: &mut AlertStage,
        mirror: &mut AlertMirror<()>,
        t: i64,
        elements: Vec<(Arc<Labels>, f64)>,
    ) -> (AlertStep, StepOutput) {
        let candidates = elements
            .iter()
            .map(|(labels, value)| Candidate {
                labels: stage.final_labels(labels),
                value: *value,
                payload: (),
            })
            .collect();
        let step = stage.on_output(t, StageInput::Whole(Some(elements)));
        let out = mirror.apply(&step, candidates).unwrap();
        (step, out)
    }

    /// The first step's `ALERTS_FOR_STATE` carries the step's time; the restored
    /// `activeAt` shows from the next step on, as the host writes them.
    #[test]
    fn the_for_restore_comes_after_the_first_steps_samples() {
        let alert = final_labels(&element("a").0, &[("severity".into(), "page".into())], "A");
        let restore = ForRestoreSeed {
            policy: RestorePolicy::Keep,
            tolerance_ms: 60 * M,
            last: vec![(alert.clone(), 95 * M, (90 * M / 1000) as f64)],
        };
        let seed = AlertSeed {
            restore: Some(restore),
            ..AlertSeed::default()
        };
        let mut stage = AlertStage::new(spec(20 * M, seed));
        let mut mirror = AlertMirror::new(AlertMachine::new(20 * M, 0));
        let (step, out) = whole(&mut stage, &mut mirror, 100 * M, vec![element("a")]);
        assert_eq!(step.restored, vec![(alert.clone(), 90 * M)]);
        assert_eq!(
            out.samples[1],
            (for_state_series(&alert), (100 * M / 1000) as f64)
        );
        assert_eq!(mirror.machine().get(&alert).unwrap().active_at_ms, 90 * M);
        let (_, out) = whole(&mut stage, &mut mirror, 101 * M, vec![element("a")]);
        assert_eq!(
            out.samples[1],
            (for_state_series(&alert), (90 * M / 1000) as f64)
        );
        // Fires 20m after the restored activeAt.
        let (step, _) = whole(&mut stage, &mut mirror, 110 * M, vec![element("a")]);
        assert_eq!(step.upserts[0].state, AlertState::Firing);
    }

    /// A resolved alert that comes back is a new alert: the mirror forgets when the old
    /// one was sent.
    #[test]
    fn a_resolved_alert_that_comes_back_is_new_to_the_mirror() {
        let mut stage = AlertStage::new(spec(0, AlertSeed::default()));
        let mut mirror = AlertMirror::new(AlertMachine::new(0, 0));
        whole(&mut stage, &mut mirror, 0, vec![element("a")]);
        assert_eq!(mirror.machine_mut().to_send(0, M, M).len(), 1);
        let (step, out) = whole(&mut stage, &mut mirror, M, Vec::new());
        assert_eq!(step.upserts[0].state, AlertState::Inactive);
        assert!(out.samples.is_empty());
        assert_eq!(mirror.machine_mut().to_send(M, M, M).len(), 1, "resolved");
        whole(&mut stage, &mut mirror, 2 * M, vec![element("a")]);
        let a = mirror.machine().alerts().next().unwrap();
        assert_eq!((a.state, a.last_sent_ms), (AlertState::Firing, None));
        assert_eq!(a.active_at_ms, 2 * M);
    }

    /// A failed evaluation steps nothing; duplicate final labels leave the state, a
    /// limit breach clears the mirror too.
    #[test]
    fn failures_reach_the_mirror_as_the_kernel_has_them() {
        let mut stage = AlertStage::new(AlertSpec {
            limit: 1,
            ..spec(5 * M, AlertSeed::default())
        });
        let mut mirror = AlertMirror::new(AlertMachine::new(5 * M, 0));
        whole(&mut stage, &mut mirror, 0, vec![element("a")]);
        let step = stage.on_output(M, StageInput::Whole(None));
        assert_eq!(step.kind, StepKind::Skipped);
        assert_eq!(mirror.apply(&step, Vec::new()), Ok(StepOutput::default()));
        let twin = Labels::from_pairs(vec![
            ("instance".into(), "a".into()),
            ("severity".into(), "low".into()),
        ]);
        let step = stage.on_output(
            2 * M,
            StageInput::Whole(Some(vec![element("a"), (Arc::new(twin), 1.0)])),
        );
        assert_eq!(mirror.apply(&step, Vec::new()), Err(AlertError::Duplicate));
        assert_eq!(mirror.machine().alerts().count(), 1);
        let step = stage.on_output(
            3 * M,
            StageInput::Whole(Some(vec![element("a"), element("b")])),
        );
        let limit = Err(AlertError::Limit { limit: 1, count: 2 });
        assert_eq!(mirror.apply(&step, Vec::new()), limit);
        assert_eq!(mirror.machine().alerts().count(), 0);
        assert_eq!(stage.machine().alerts().count(), 0);
    }
}
