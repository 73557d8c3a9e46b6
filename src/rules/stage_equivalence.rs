//! The alert stage and its mirror step alerts exactly as the rule host does: random
//! results driven through [`GroupState`] (the host path: `apply_result`,
//! `apply_changes`, timer steps, the `for` restore and the keep-firing seed) and
//! through [`AlertStage`] + [`AlertMirror`] (`dataflows::render::alerting`) leave, at
//! every step, the same alerts (state, annotations, sending times), write the same
//! `ALERTS`/`ALERTS_FOR_STATE` samples and stale markers, and send the same alerts.

use crate::rules::alert::{
    AlertError, AlertMirror, AlertRuleState, AlertState, Annotations, Candidate,
};
use crate::rules::group::{alert_candidate, step_writes, template_query, GroupState};
use crate::rules::options::{ForRestore, ManagerOptions};
use crate::rules::restore::{
    for_restore_seed, restore_for_state, restore_keep_firing, saved_core, SavedAlert,
};
use crate::rules::sinks::{
    RuleError, RuleEvaluator, RuleResult, RuleValue, RuleWrites, SampleSink,
};
use dataflows::promql::eval::{Selected, SeriesSource};
use dataflows::promql::plan::Plan;
use dataflows::render::alerting::{
    AlertSeed, AlertSpec, AlertStage, AlertStep, StageInput, StepKind,
};
use dataflows::{Labels, Selector, STALE_MARKER};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

const S: i64 = 1_000;
const M: i64 = 60 * S;

/// Templates' `query` reads nothing here.
struct NoSeries;
impl RuleEvaluator for NoSeries {
    fn evaluate(&self, _: &Plan, _: i64) -> RuleResult {
        Ok(Vec::new())
    }
}

/// Collects what a step writes.
#[derive(Default)]
struct Capture(Mutex<Vec<RuleWrites>>);
impl SampleSink for Capture {
    fn commit(&self, writes: RuleWrites) {
        self.0.lock().push(writes);
    }
}

/// Writes as comparable rows: (series, time, value bits), sorted.
fn rows(writes: Vec<RuleWrites>) -> Vec<(String, i64, u64)> {
    let mut rows: Vec<_> = writes
        .into_iter()
        .flat_map(|w| w.floats)
        .map(|s| (s.labels.to_string(), s.timestamp_ms, s.value.to_bits()))
        .collect();
    rows.sort();
    rows
}

/// `ALERTS_FOR_STATE` samples in storage before the restart.
struct Stored(Selected);
impl SeriesSource for Stored {
    fn select(&self, sel: &Selector, start: i64, end: i64) -> Selected {
        self.0
            .iter()
            .filter(|(labels, _)| sel.matches(labels))
            .map(|(labels, points)| {
                let points = points
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= start && *t <= end)
                    .collect();
                (labels.clone(), points)
            })
            .filter(|(_, points): &(_, Vec<_>)| !points.is_empty())
            .collect()
    }
}

/// A seeded generator.
struct Random(u64);
impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A random result: instances `h0`…`h5`, some absent; now and then an element whose
/// final labels equal another's (a `severity` the rule overrides, or a `__name__`).
fn result(random: &mut Random) -> BTreeMap<Arc<Labels>, f64> {
    let mut out = BTreeMap::new();
    for i in 0..6 {
        if random.below(3) == 0 {
            continue;
        }
        let instance = ("instance".to_string(), format!("h{i}"));
        let mut pairs = vec![instance.clone()];
        match random.below(30) {
            0 => pairs.push(("severity".into(), "low".into())),
            1 => pairs.push(("__name__".into(), "up".into())),
            // Its twin: the same final labels.
            2 => {
                let twin = vec![instance, ("severity".into(), "low".into())];
                out.insert(Arc::new(Labels::from_pairs(twin)), 1.0);
            }
            _ => {}
        }
        out.insert(Arc::new(Labels::from_pairs(pairs)), random.below(3) as f64);
    }
    out
}

/// Both paths of one rule, stepped alike.
struct Run {
    host: GroupState,
    capture: Arc<Capture>,
    evaluator: Arc<dyn RuleEvaluator>,
    options: ManagerOptions,
    stage: AlertStage,
    mirror: AlertMirror,
    /// The mirror's side of the host: the last result, the series written.
    current: BTreeMap<Arc<Labels>, f64>,
    previous: HashSet<Arc<Labels>>,
    restore: Option<(i64, Stored)>,
    label: String,
    /// How often each case came up (see [`Run::count`]).
    seen: BTreeMap<&'static str, usize>,
}

impl Run {
    /// The host's candidate for an element (annotations expanded).
    fn candidate(&self, labels: &Labels, value: f64, t: i64) -> Candidate {
        let query = template_query(&self.evaluator, t);
        alert_candidate(
            &self.host.rules[0].rule,
            labels,
            value,
            &query,
            &self.options,
        )
    }

    /// Steps both paths at `t`: `input` (or, for a timer, the last result), and checks
    /// they agree; the stage's step.
    fn step(&mut self, t: i64, input: Option<StageInput>) -> AlertStep {
        let resend_ms = self.options.resend_delay.as_millis() as i64;
        let interval_ms = self.host.interval.as_millis() as i64;
        // The host path.
        let (evaluator, sink, options) = (&self.evaluator, &*self.capture, &self.options);
        let host_sent = match &input {
            None => {
                let last = self.host.rules[0].current_result();
                self.host
                    .apply_result(0, t, Ok(last), evaluator, sink, options)
            }
            Some(StageInput::Whole(result)) => {
                let result: RuleResult = match result {
                    None => Err(RuleError::NotAVector("string".into())),
                    Some(r) => Ok(r
                        .iter()
                        .map(|(l, v)| (l.clone(), RuleValue::Float(*v)))
                        .collect()),
                };
                self.host
                    .apply_result(0, t, result, evaluator, sink, options)
            }
            Some(StageInput::Changes { set, gone }) => {
                let set = set
                    .iter()
                    .map(|(l, v)| (l.clone(), RuleValue::Float(*v)))
                    .collect();
                self.host
                    .apply_changes(0, t, set, gone.clone(), evaluator, sink, options)
            }
        };
        if let Some((started, stored)) = self.restore.take() {
            restore_for_state(&mut self.host, 0, t, started, &stored, &self.options);
        }
        let host_writes = rows(std::mem::take(&mut *self.capture.0.lock()));
        // The stage and its mirror.
        let step = match &input {
            None => self.stage.on_timer(t),
            Some(input) => self.stage.on_output(t, input.clone()),
        };
        let elements: Vec<(Arc<Labels>, f64)> = match &input {
            Some(StageInput::Whole(None)) => Vec::new(),
            Some(StageInput::Whole(Some(result))) => {
                self.current = result.iter().cloned().collect();
                result.clone()
            }
            Some(StageInput::Changes { set, gone }) => {
                for labels in gone {
                    self.current.remove(labels);
                }
                self.current.extend(set.iter().cloned());
                set.clone()
            }
            None => Vec::new(),
        };
        let stepped: Vec<(Arc<Labels>, f64)> = match step.kind {
            StepKind::Skipped => Vec::new(),
            StepKind::Changes => elements,
            StepKind::Whole => self.current.iter().map(|(l, v)| (l.clone(), *v)).collect(),
        };
        let candidates = stepped
            .iter()
            .map(|(labels, value)| self.candidate(labels, *value, t))
            .collect();
        let (mirror_writes, mirror_sent) = match self.mirror.apply(&step, candidates) {
            Ok(out) if step.kind != StepKind::Skipped => {
                let samples = out
                    .samples
                    .into_iter()
                    .map(|(l, v)| (l, RuleValue::Float(v)))
                    .collect();
                let ended = (step.kind == StepKind::Changes).then_some(out.ended);
                let writes = step_writes(&mut self.previous, t, samples, ended);
                let sent = self.mirror.machine_mut().to_send(t, resend_ms, interval_ms);
                (rows(vec![writes]), sent)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let at = format!("{}, t {t}, step {step:?}", self.label);
        let host_state = self.host.rules[0].alerts.as_ref().unwrap();
        let host_alerts: Vec<_> = host_state.alerts().cloned().collect();
        let mirror_alerts: Vec<_> = self.mirror.machine().alerts().cloned().collect();
        assert_eq!(host_alerts, mirror_alerts, "alerts, {at}");
        let stage_cores: Vec<_> = self.stage.machine().alerts().map(|a| &a.core).collect();
        let host_cores: Vec<_> = host_alerts.iter().map(|a| &a.core).collect();
        assert_eq!(host_cores, stage_cores, "stage state, {at}");
        assert_eq!(host_writes, mirror_writes, "writes, {at}");
        let host_sent = host_sent.map(|(_, sent)| sent).unwrap_or_default();
        assert_eq!(host_sent, mirror_sent, "sent, {at}");
        let last = self.host.rules[0].last_eval_ms;
        let host_deadline = host_state.next_deadline(last);
        assert_eq!(host_deadline, self.stage.next_deadline(), "deadline, {at}");
        self.count(&step, input.is_none());
        step
    }

    /// Counts the cases `step` shows.
    fn count(&mut self, step: &AlertStep, timer: bool) {
        let mut cases = Vec::new();
        cases.push(match step.kind {
            StepKind::Skipped => "failed evaluation",
            StepKind::Whole => "whole step",
            StepKind::Changes => "changes step",
        });
        match step.outcome {
            Err(AlertError::Duplicate) => cases.push("duplicate labels"),
            Err(AlertError::Limit { .. }) => cases.push("limit"),
            Ok(()) => {}
        }
        if timer {
            cases.push("timer step");
        }
        if !step.restored.is_empty() {
            cases.push("for restored");
        }
        if !step.removed.is_empty() {
            cases.push("removed");
        }
        let alerts = || self.mirror.machine().alerts();
        if alerts().any(|a| a.state == AlertState::Firing) {
            cases.push("firing");
        }
        if alerts().any(|a| a.state == AlertState::Inactive) {
            cases.push("resolved");
        }
        if alerts().any(|a| a.keep_firing_since_ms.is_some()) {
            cases.push("kept firing");
        }
        for case in cases {
            *self.seen.entry(case).or_default() += 1;
        }
    }

    /// The host's next deadline after its last step.
    fn deadline(&self) -> Option<i64> {
        let rs = &self.host.rules[0];
        rs.alerts.as_ref()?.next_deadline(rs.last_eval_ms)
    }
}

/// Every case in `expected` came up in `runs`.
fn assert_seen(runs: &[BTreeMap<&'static str, usize>], expected: &[&str]) {
    let mut all: BTreeMap<&str, usize> = BTreeMap::new();
    for seen in runs {
        for (case, n) in seen {
            *all.entry(case).or_default() += n;
        }
    }
    for case in expected {
        assert!(all.get(case).is_some_and(|n| *n > 0), "no {case}: {all:?}");
    }
}

const CASES: [&str; 10] = [
    "carried",
    "failed evaluation",
    "whole step",
    "duplicate labels",
    "limit",
    "for restored",
    "removed",
    "firing",
    "resolved",
    "kept firing",
];

/// How a run's state starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// After a restart: the `for` restore (this policy) and the keep-firing file.
    Restart(ForRestore),
    /// After a reload: the state of the rule it replaces.
    Reload,
}

/// A run of rule `A` (`for`, `keep_firing_for`, the group's `limit`), its state seeded
/// as `start` says (a restart just before `first`: the `for` restore, firing alerts
/// from the keep-firing file; or a reload), its first step at `first`.
fn run(
    label: String,
    (for_ms, keep_firing_ms): (i64, i64),
    limit: usize,
    start: Start,
    random: &mut Random,
    first: i64,
) -> Run {
    let policy = match start {
        Start::Restart(policy) => policy,
        Start::Reload => ForRestore::Keep,
    };
    let text = format!(
        "groups:\n  - name: g\n    interval: 15s\n    limit: {limit}\n    rules:\n      - alert: A\n        expr: up == 0\n        for: {}s\n        keep_firing_for: {}s\n        labels: {{severity: page}}\n        annotations:\n          summary: \"{{{{ $labels.instance }}}} at {{{{ $value }}}}\"\n",
        for_ms / S,
        keep_firing_ms / S,
    );
    let path = std::path::Path::new("r.yml");
    let group = crate::rules::file::load_str(&text, "r.yml", path)
        .unwrap()
        .remove(0);
    let mut host = GroupState::new(group, std::time::Duration::from_secs(15));
    let options = ManagerOptions {
        for_restore: policy,
        resend_delay: std::time::Duration::from_secs(45),
        ..ManagerOptions::default()
    };
    let evaluator: Arc<dyn RuleEvaluator> = Arc::new(NoSeries);
    let started = first - 1;
    let tolerance = options.for_outage_tolerance.as_millis() as i64;
    // What a restart finds: `ALERTS_FOR_STATE` of some instances (a stale marker
    // last, or a sample older than the outage tolerance, now and then), and firing
    // alerts in the keep-firing file.
    let probe = GroupState::new(host.group.clone(), host.interval);
    let final_of = |instance: &str| {
        let labels = Labels::from_pairs(vec![("instance".into(), instance.into())]);
        let query = template_query(&evaluator, first);
        alert_candidate(&probe.rules[0].rule, &labels, 1.0, &query, &options)
    };
    let mut stored = Vec::new();
    let mut saved = Vec::new();
    for i in 0..6 {
        let c = final_of(&format!("h{i}"));
        match random.below(4) {
            0 => {
                let t_down = started - random.below(80) as i64 * M - random.below(1000) as i64;
                let active_s = (t_down / S - random.below(40 * 60) as i64) as f64;
                let last = if random.below(6) == 0 {
                    STALE_MARKER
                } else {
                    active_s
                };
                let series = crate::rules::alert::for_state_series(&c.labels);
                stored.push((series, vec![(t_down - 15 * S, active_s), (t_down, last)]));
            }
            1 => saved.push(SavedAlert {
                file: host.group.file.clone(),
                group: host.group.name.clone(),
                rule: host.rules[0].rule.identity(),
                labels: c
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                annotations: BTreeMap::from([("summary".into(), "saved".into())]),
                value: 1.0,
                active_at_ms: started - 30 * M,
                fired_at_ms: Some(started - 20 * M),
                keep_firing_since_ms: (random.below(2) == 0).then_some(started - 2 * M),
            }),
            _ => {}
        }
    }
    let stored = Stored(stored);
    let rule = host.rules[0].rule.clone();
    let (seed, restore) = match start {
        Start::Restart(_) => {
            restore_keep_firing(&mut host, &saved);
            let from = first - tolerance;
            let seed = AlertSeed {
                carried: Vec::new(),
                kept_firing: saved.iter().map(saved_core).collect(),
                restore: Some(for_restore_seed(&rule, from, started, &stored, &options)),
            };
            (seed, Some((started, stored)))
        }
        Start::Reload => {
            // The state of the rule it replaces, after a few evaluations of its own.
            let mut old = AlertRuleState::new(for_ms, keep_firing_ms);
            let query = template_query(&evaluator, first);
            for step in 0..40 {
                let candidates = result(random)
                    .iter()
                    .map(|(l, v)| alert_candidate(&rule, l, *v, &query, &options))
                    .collect();
                let _ = old.step(first - (40 - step) * 15 * S, candidates, limit);
            }
            let seed = AlertSeed {
                carried: old.alerts().map(|a| a.core.clone()).collect(),
                ..AlertSeed::default()
            };
            host.rules[0].alerts = Some(old);
            (seed, None)
        }
    };
    let seed_carried = seed.carried.clone();
    let spec = AlertSpec {
        name: rule.name.clone(),
        labels: rule
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        for_ms,
        keep_firing_for_ms: keep_firing_ms,
        limit,
        seed,
    };
    let mirror = AlertMirror::new(host.rules[0].alerts.clone().unwrap());
    let mut seen = BTreeMap::new();
    if !seed_carried.is_empty() {
        seen.insert("carried", seed_carried.len());
    }
    Run {
        host,
        capture: Arc::new(Capture::default()),
        evaluator,
        options,
        stage: AlertStage::new(spec),
        mirror,
        current: BTreeMap::new(),
        previous: HashSet::new(),
        restore,
        label,
        seen,
    }
}

const COMBINATIONS: [(i64, i64); 3] = [(0, 0), (2 * M, 0), (M, 3 * M)];

/// Interval rules: a whole result (or a failed evaluation) at every tick.
#[test]
fn stage_and_mirror_step_as_the_host_at_intervals() {
    let mut random = Random(11);
    let mut seen = Vec::new();
    for seed in 0..8 {
        for (c, &times) in COMBINATIONS.iter().enumerate() {
            let limit = [0, 4][seed % 2];
            let start = match seed {
                0..6 => Start::Restart([ForRestore::Keep, ForRestore::Prometheus][(seed / 2) % 2]),
                _ => Start::Reload,
            };
            let first = 100 * M;
            let label = format!("interval, seed {seed}, combination {c}, limit {limit}");
            let mut run = run(label, times, limit, start, &mut random, first);
            for step in 0..400 {
                let t = first + step * 15 * S;
                let input = if random.below(15) == 0 {
                    StageInput::Whole(None)
                } else {
                    StageInput::Whole(Some(result(&mut random).into_iter().collect()))
                };
                run.step(t, Some(input));
            }
            seen.push(run.seen);
        }
    }
    assert_seen(&seen, &CASES);
}

/// On-arrival rules: changes at random times (now and then the whole result, or a
/// failed evaluation), timer steps at every deadline, and a step at every group tick.
#[test]
fn stage_and_mirror_step_as_the_host_on_arrival() {
    let mut random = Random(5);
    let mut seen = Vec::new();
    for seed in 0..8 {
        for (c, &times) in COMBINATIONS.iter().enumerate() {
            let limit = [0, 4][seed % 2];
            let start = match seed {
                0..6 => Start::Restart([ForRestore::Keep, ForRestore::Prometheus][(seed / 2) % 2]),
                _ => Start::Reload,
            };
            let first = 100 * M + 7 * S;
            let label = format!("on arrival, seed {seed}, combination {c}, limit {limit}");
            let mut run = run(label, times, limit, start, &mut random, first);
            let mut previous = result(&mut random);
            let whole = StageInput::Whole(Some(previous.clone().into_iter().collect()));
            run.step(first, Some(whole));
            let mut t = first;
            let mut tick = first - first % M + M;
            for _ in 0..400 {
                let next = t + 1 + random.below(20 * S as u64) as i64;
                // Deadlines and ticks before the next arrival, in time order.
                loop {
                    if tick <= t {
                        // A tick at an arrival's time: that step wrote everything.
                        tick += M;
                        continue;
                    }
                    let due = run.deadline().map_or(tick, |d| d.min(tick));
                    if due >= next {
                        break;
                    }
                    let failed = run.step(due, None).outcome.is_err();
                    t = due;
                    if failed && due != tick {
                        // Duplicate labels in the last result leave a passed deadline
                        // passed: the runner would step again every millisecond until
                        // the next arrival; once is enough here.
                        break;
                    }
                }
                t = next.max(t + 1);
                let now = result(&mut random);
                let input = match random.below(20) {
                    0 => StageInput::Whole(None),
                    1 => StageInput::Whole(Some(now.clone().into_iter().collect())),
                    _ => StageInput::Changes {
                        set: now
                            .iter()
                            .filter(|(l, v)| previous.get(*l) != Some(*v))
                            .map(|(l, v)| (l.clone(), *v))
                            .collect(),
                        gone: previous
                            .keys()
                            .filter(|l| !now.contains_key(*l))
                            .cloned()
                            .collect(),
                    },
                };
                if input != StageInput::Whole(None) {
                    previous = now;
                }
                run.step(t, Some(input));
            }
            seen.push(run.seen);
        }
    }
    assert_seen(&seen, &CASES);
    assert_seen(&seen, &["changes step", "timer step"]);
}

/// A value only the annotations carry: the mirror takes them from the candidates.
#[test]
fn mirror_keeps_the_hosts_annotations() {
    let mut random = Random(3);
    let mut run = run(
        "annotations".into(),
        (2 * M, 0),
        0,
        Start::Restart(ForRestore::Keep),
        &mut random,
        0,
    );
    let labels = Arc::new(Labels::from_pairs(vec![("instance".into(), "h9".into())]));
    run.step(
        0,
        Some(StageInput::Whole(Some(vec![(labels.clone(), 7.0)]))),
    );
    let a = run
        .mirror
        .machine()
        .alerts()
        .find(|a| a.labels.get("instance") == Some("h9"));
    let annotations: &Annotations = &a.unwrap().payload;
    assert_eq!(annotations["summary"], "h9 at 7");
}

/// The stage's steps cross as data: a step changed only what it names.
#[test]
fn steps_name_only_what_changed() {
    let mut random = Random(1);
    let mut run = run(
        "steps".into(),
        (2 * M, 0),
        0,
        Start::Restart(ForRestore::Keep),
        &mut random,
        0,
    );
    let a = Arc::new(Labels::from_pairs(vec![("instance".into(), "h9".into())]));
    let step = |run: &mut Run, t: i64, value: Option<f64>| -> AlertStep {
        let result = value.map(|v| (a.clone(), v)).into_iter().collect();
        run.step(t, Some(StageInput::Whole(Some(result))))
    };
    // (alert h9 upserted, removed); the seeded alerts aside.
    let named = |step: AlertStep| {
        let h9 = |l: &Labels| l.get("instance") == Some("h9");
        let upserts = step.upserts.iter().filter(|c| h9(&c.labels)).count();
        (upserts, step.removed.iter().filter(|l| h9(l)).count())
    };
    assert_eq!(named(step(&mut run, 0, Some(1.0))), (1, 0), "new");
    assert_eq!(
        named(step(&mut run, 15 * S, Some(2.0))),
        (0, 0),
        "a value alone"
    );
    assert_eq!(named(step(&mut run, 2 * M, Some(2.0))), (1, 0), "fires");
    assert_eq!(named(step(&mut run, 3 * M, None)), (1, 0), "resolved, kept");
    assert_eq!(
        named(step(&mut run, 19 * M, None)),
        (0, 1),
        "past retention"
    );
}
