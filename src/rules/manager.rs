//! The rule manager: evaluates rule groups, like Prometheus, through the maintained
//! dataflow.
//!
//! Owns: one runner thread per group that evaluates its rules in order; recording
//! rule outputs and `ALERTS`/`ALERTS_FOR_STATE` are written back through a
//! [`SampleSink`] (the ingester: storage and the dataflow's latest-sample table, for
//! queries, federation and the push stream), with stale markers for series that
//! left a rule's output; alerting rules drive [`AlertRuleState`], which emits a
//! change record (pending/firing/resolved) when an alert's state changes; alerts due
//! for sending go to an [`AlertSink`] (the notifier). Reload ([`RuleManager::apply`])
//! replaces groups and keeps the alert state of rules that did not change.
//!
//! **Where results come from.** With a [`Maintained`] runtime each rule is registered
//! in the dataflow with [`Engine::register_seeded`] (windows seeded from storage, so
//! the first result is exact) and its results are read from the rule's output channel:
//! - *interval* mode ([`EvaluationMode::Interval`], the default): the schedule is
//!   `RuleSchedule::Interval` on Prometheus's grid for the group (interval, per-group
//!   offset, minus `query_offset`); at each tick the runner takes the dataflow's result
//!   for exactly that time, so results, `ALERTS` samples and state transitions are
//!   those of Prometheus at each tick. `for` fires at the first tick `>= activeAt + for`.
//! - *on-arrival* mode (`--rules.evaluation=on-arrival`, or a group whose name matches
//!   `--rules.on-arrival-groups`): the schedule is
//!   `RuleSchedule::OnArrival`: each result (a batch the rule reads arrived, or a
//!   sample left a window) steps the rule at its own time. The `for` and
//!   `keep_firing_for` clocks are exact: the runner steps the rule again at the alert's
//!   deadline (a timer), once the dataflow's frontier has passed it, with the last
//!   result; so an alert fires at `activeAt + for`, not at the next sample. Firing
//!   alerts are re-sent (every resend delay) as their rule is evaluated, at the rule's
//!   own evaluation times, which keeps the notifier's times monotonic per rule.
//!
//! **Rules that read rule outputs** (a recording rule's name, `ALERTS`,
//! `ALERTS_FOR_STATE`, in any group): rule outputs are written back *after* the
//! evaluation that produced them, i.e. behind the dataflow's frontier, so they do not
//! enter the dataflow's rule windows (only its latest-sample table). Such a rule is
//! evaluated over storage by the [`RuleEvaluator`] ([`HeadEvaluator`]) at the group's
//! ticks, in rule order, after the earlier rules of the group wrote their outputs —
//! exactly Prometheus's semantics for recording rules feeding later rules of the same
//! group at the same evaluation time; in on-arrival mode also right after the group's
//! dataflow rules wrote new outputs (at their time), so an alert on a recording rule
//! of its group reacts on arrival too. (So does any rule the dataflow refuses to
//! register.) A selector with no `__name__` equality is assumed to possibly read rule
//! outputs.
//!
//! **Restart.** At the first evaluation after startup, pending alerts get their
//! `activeAt` back from `ALERTS_FOR_STATE` in storage with Prometheus's algorithm
//! (`--rules.alert.for-outage-tolerance`, `--rules.alert.for-grace-period`; see
//! [`crate::rules::restore`]). Firing alerts of rules with `keep_firing_for` (which
//! Prometheus loses) are kept in a small state file in the storage directory, written
//! atomically when they change, and restored as firing with their keep-firing clock.
//!
//! Without a runtime ([`RuleManager::new`]), and in `promflow test rules`, every rule
//! is evaluated by the [`RuleEvaluator`]; [`GroupState::evaluate`] is a plain function
//! of (time, evaluator) so tests drive it directly.

use crate::rules::alert::{Alert, AlertRuleState, Candidate};
use crate::rules::file::{Rule, RuleGroup, RuleKind};
use crate::rules::restore::{self, KeepFiringFile};
use crate::rules::template::{self, QueryFn, TemplateData};
use crate::storage::Storage;
use dataflows::promql::eval::{Evaluator, SeriesSource, Value};
use dataflows::promql::plan::{parse, Plan};
use dataflows::render::extent::{selector_uses, QueryRange};
use dataflows::{Engine, Labels, RuleOutput, RuleSchedule, Sample, STALE_MARKER};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rule's result at one time: an instant vector, or the evaluation error.
pub type RuleResult = Result<Vec<(Arc<Labels>, f64)>, String>;

/// Evaluates a planned expression at one instant (ms) into an instant vector.
pub trait RuleEvaluator: Send + Sync {
    /// The result at `t_ms`; a scalar becomes one element with no labels.
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> Result<Vec<(Arc<Labels>, f64)>, String>;
}

/// Where rule outputs are written.
pub trait SampleSink: Send + Sync {
    /// Writes a batch (head, then dataflow).
    fn commit(&self, batch: Vec<Sample>);
}

/// Where alerts due for sending go.
pub trait AlertSink: Send + Sync {
    /// `expr` is the rule's expression (for `generatorURL`).
    fn send(&self, expr: &str, alerts: Vec<Alert>);
}

impl SampleSink for crate::ingest::Ingester {
    fn commit(&self, batch: Vec<Sample>) {
        self.commit_rule_outputs(batch);
    }
}

impl SampleSink for Storage {
    fn commit(&self, batch: Vec<Sample>) {
        // A refused batch is logged and counted by storage.
        let _ = self.append(&batch);
    }
}

/// The reference evaluator over the head.
pub struct HeadEvaluator {
    /// The samples.
    pub head: Arc<Storage>,
    /// Lookback delta (ms).
    pub lookback_ms: i64,
}

impl RuleEvaluator for HeadEvaluator {
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> Result<Vec<(Arc<Labels>, f64)>, String> {
        let mut evaluator = Evaluator::new(&*self.head, t_ms);
        evaluator.lookback_ms = self.lookback_ms;
        vector_result(evaluator.instant(plan, t_ms).map_err(|e| e.to_string())?)
    }
}

/// A rule result as an instant vector (a scalar is one element without labels).
fn vector_result(value: Value) -> Result<Vec<(Arc<Labels>, f64)>, String> {
    match value {
        Value::Vector(v) => Ok(v.into_iter().map(|e| (e.labels, e.value)).collect()),
        Value::Scalar(v) => Ok(vec![(Arc::new(Labels::default()), v)]),
        other => Err(format!("rule result is not a vector: {other:?}")),
    }
}

/// A dataflow evaluation as a rule result.
fn output_result(output: RuleOutput) -> Result<Vec<(Arc<Labels>, f64)>, String> {
    vector_result(output.value.map_err(|e| e.to_string())?)
}

/// Which times rules are evaluated at (with a [`Maintained`] runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvaluationMode {
    /// At the group interval, like Prometheus.
    #[default]
    Interval,
    /// Whenever a sample the rule reads arrives or expires, with exact `for` timers.
    OnArrival,
}

impl std::str::FromStr for EvaluationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "interval" => Ok(EvaluationMode::Interval),
            "on-arrival" => Ok(EvaluationMode::OnArrival),
            other => Err(format!(
                "unknown rule evaluation mode {other:?} (expected \"interval\" or \"on-arrival\")"
            )),
        }
    }
}

/// The evaluation mode of every group: `--rules.evaluation` for all groups, except
/// groups whose name matches `--rules.on-arrival-groups`, which are evaluated on
/// arrival. (A flag rather than a rule-file field keeps rule files valid for promtool.)
#[derive(Clone, Debug, Default)]
pub struct EvaluationPolicy {
    /// `--rules.evaluation`.
    pub default: EvaluationMode,
    /// `--rules.on-arrival-groups`, anchored at both ends like Prometheus's regexes.
    pub on_arrival_groups: Option<regex::Regex>,
}

impl EvaluationPolicy {
    /// The mode of the group named `group`.
    pub fn mode_for(&self, group: &str) -> EvaluationMode {
        match &self.on_arrival_groups {
            Some(re) if re.is_match(group) => EvaluationMode::OnArrival,
            _ => self.default,
        }
    }

    /// The `--rules.on-arrival-groups` pattern as given (without the anchors).
    pub fn groups_pattern(&self) -> Option<&str> {
        let anchored = self.on_arrival_groups.as_ref()?.as_str();
        anchored.strip_prefix("^(?:")?.strip_suffix(")$")
    }

    /// Parses a `--rules.on-arrival-groups` value into an anchored regex.
    pub fn parse_groups(pattern: &str) -> Result<regex::Regex, String> {
        // Compiled unanchored first so an error points into the pattern as written.
        regex::Regex::new(pattern)
            .and_then(|_| regex::Regex::new(&format!("^(?:{pattern})$")))
            .map_err(|e| format!("invalid group name regex: {e}"))
    }
}

impl PartialEq for EvaluationPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.default == other.default
            && self.on_arrival_groups.as_ref().map(|r| r.as_str())
                == other.on_arrival_groups.as_ref().map(|r| r.as_str())
    }
}

/// How a pending alert's `activeAt` comes back after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForRestore {
    /// The alert keeps its `activeAt` (the downtime counts towards `for`), whatever
    /// its `for`: an alert pending when promflow stopped fires when it would have.
    #[default]
    Keep,
    /// Prometheus 2.42's algorithm: only for `for` >= the grace period, the downtime
    /// does not count, and a restored alert fires no sooner than the grace period.
    Prometheus,
}

impl std::str::FromStr for ForRestore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(ForRestore::Keep),
            "prometheus" => Ok(ForRestore::Prometheus),
            other => Err(format!(
                "unknown for-restore mode {other:?} (expected \"keep\" or \"prometheus\")"
            )),
        }
    }
}

/// Settings shared by all groups.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerOptions {
    /// `global.evaluation_interval`.
    pub default_interval: Duration,
    /// `global.external_labels` (for templates; the notifier adds them to alerts).
    pub external_labels: BTreeMap<String, String>,
    /// `--web.external-url`.
    pub external_url: String,
    /// How often a firing alert is re-sent (Prometheus's `--rules.alert.resend-delay`, 1m).
    pub resend_delay: Duration,
    /// `--rules.evaluation` and `--rules.on-arrival-groups`.
    pub evaluation: EvaluationPolicy,
    /// `--rules.alert.for-outage-tolerance`: the longest downtime after which alert
    /// state is still restored (1h).
    pub for_outage_tolerance: Duration,
    /// `--rules.alert.for-grace-period`: the least time between restore and firing of
    /// a restored pending alert whose `for` is at least this long (10m).
    pub for_grace_period: Duration,
    /// `--rules.alert.for-restore`.
    pub for_restore: ForRestore,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            default_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay: Duration::from_secs(60),
            evaluation: EvaluationPolicy::default(),
            for_outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
            for_restore: ForRestore::Keep,
        }
    }
}

/// One rule and what its evaluations left behind.
pub struct RuleState {
    /// The rule.
    pub rule: Rule,
    /// Alert state (alerting rules).
    pub alerts: Option<AlertRuleState>,
    /// Last error, empty when healthy.
    pub last_error: String,
    /// Time of the last evaluation (ms), 0 if never.
    pub last_eval_ms: i64,
    /// Wall time the last evaluation took.
    pub eval_duration: Duration,
    /// Whether it was evaluated at all.
    pub evaluated: bool,
    /// Whether its results come from the maintained dataflow (else from storage).
    pub maintained: bool,
    previous_series: HashSet<Arc<Labels>>,
    /// The last result (for on-arrival timer steps).
    last_result: Vec<(Arc<Labels>, f64)>,
}

/// A group and its rules' state.
pub struct GroupState {
    /// The group as loaded.
    pub group: RuleGroup,
    /// Effective interval.
    pub interval: Duration,
    /// Rules in order.
    pub rules: Vec<RuleState>,
    /// Last evaluation time (ms).
    pub last_eval_ms: i64,
    /// Wall time of the last evaluation.
    pub eval_duration: Duration,
}

impl GroupState {
    /// A fresh group state.
    pub fn new(group: RuleGroup, default_interval: Duration) -> GroupState {
        let interval = group.interval.unwrap_or(default_interval);
        let rules = group
            .rules
            .iter()
            .map(|rule| RuleState {
                alerts: (rule.kind == RuleKind::Alerting).then(|| {
                    AlertRuleState::new(
                        rule.for_.as_millis() as i64,
                        rule.keep_firing_for.as_millis() as i64,
                    )
                }),
                rule: rule.clone(),
                last_error: String::new(),
                last_eval_ms: 0,
                eval_duration: Duration::ZERO,
                evaluated: false,
                maintained: false,
                previous_series: HashSet::new(),
                last_result: Vec::new(),
            })
            .collect();
        GroupState {
            group,
            interval,
            rules,
            last_eval_ms: 0,
            eval_duration: Duration::ZERO,
        }
    }

    /// Evaluates every rule at `t_ms` in order, writing outputs to `sink` before the
    /// next rule runs (so later rules see earlier recording rules), and returns the
    /// alerts due for sending per rule expression.
    pub fn evaluate(
        &mut self,
        t_ms: i64,
        evaluator: &Arc<dyn RuleEvaluator>,
        sink: &dyn SampleSink,
        options: &ManagerOptions,
    ) -> Vec<(String, Vec<Alert>)> {
        self.evaluate_with(
            t_ms,
            &mut |rule, t| evaluator.evaluate(&rule.plan, t),
            evaluator,
            sink,
            options,
        )
    }

    /// Like [`GroupState::evaluate`], with each rule's result at the evaluation time
    /// taken from `results(rule_index, eval_time)`; `evaluator` serves templates'
    /// `query`.
    pub fn evaluate_with(
        &mut self,
        t_ms: i64,
        results: &mut dyn FnMut(&Rule, i64) -> RuleResult,
        evaluator: &Arc<dyn RuleEvaluator>,
        sink: &dyn SampleSink,
        options: &ManagerOptions,
    ) -> Vec<(String, Vec<Alert>)> {
        let started = Instant::now();
        let t_eval = t_ms - self.group.query_offset.as_millis() as i64;
        let mut to_send = Vec::new();
        for index in 0..self.rules.len() {
            let result = results(&self.rules[index].rule, t_eval);
            to_send.extend(self.apply_result(index, t_eval, result, evaluator, sink, options));
            self.rules[index].last_eval_ms = t_ms;
        }
        self.last_eval_ms = t_ms;
        self.eval_duration = started.elapsed();
        to_send
    }

    /// Steps rule `index` at `t_eval` with `result`: writes its output series (and
    /// stale markers for series that left it), steps its alert state, and returns its
    /// alerts due for sending.
    pub fn apply_result(
        &mut self,
        index: usize,
        t_eval: i64,
        result: Result<Vec<(Arc<Labels>, f64)>, String>,
        evaluator: &Arc<dyn RuleEvaluator>,
        sink: &dyn SampleSink,
        options: &ManagerOptions,
    ) -> Option<(String, Vec<Alert>)> {
        let limit = self.group.limit;
        let interval_ms = self.interval.as_millis() as i64;
        let rs = &mut self.rules[index];
        let rule_started = Instant::now();
        let result = result.and_then(|r| {
            rs.last_result = r.clone();
            rule_output(rs, t_eval, r, evaluator, options, limit)
        });
        let series: Vec<(Arc<Labels>, f64)> = match result {
            Ok(series) => {
                rs.last_error.clear();
                series
            }
            Err(e) => {
                tracing::warn!(rule = %rs.rule.name, error = %e, "rule evaluation failed");
                rs.last_error = e;
                Vec::new()
            }
        };
        let now: HashSet<Arc<Labels>> = series.iter().map(|(l, _)| l.clone()).collect();
        let mut batch: Vec<Sample> = series
            .into_iter()
            .map(|(labels, value)| Sample {
                series_id: labels.hash(),
                labels,
                timestamp_ms: t_eval,
                value,
            })
            .collect();
        for gone in rs.previous_series.difference(&now) {
            batch.push(Sample {
                series_id: gone.hash(),
                labels: gone.clone(),
                timestamp_ms: t_eval,
                value: STALE_MARKER,
            });
        }
        rs.previous_series = now;
        sink.commit(batch);
        rs.last_eval_ms = t_eval;
        rs.evaluated = true;
        rs.eval_duration = rule_started.elapsed();
        let state = rs.alerts.as_mut()?;
        let due = state.to_send(t_eval, options.resend_delay.as_millis() as i64, interval_ms);
        (!due.is_empty()).then(|| (rs.rule.query.clone(), due))
    }

    /// The earliest `for`/`keep_firing_for` deadline after `t_ms` of any rule.
    pub fn next_deadline(&self, t_ms: i64) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(|r| r.alerts.as_ref()?.next_deadline(t_ms))
            .min()
    }
}

/// One rule's output series at `t` from its result; alerting rules step their state.
fn rule_output(
    rs: &mut RuleState,
    t: i64,
    result: Vec<(Arc<Labels>, f64)>,
    evaluator: &Arc<dyn RuleEvaluator>,
    options: &ManagerOptions,
    limit: usize,
) -> Result<Vec<(Arc<Labels>, f64)>, String> {
    let rule = &rs.rule;
    match rule.kind {
        RuleKind::Recording => {
            let mut out = Vec::with_capacity(result.len());
            let mut seen = HashSet::new();
            for (labels, value) in result {
                let mut pairs: Vec<(String, String)> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pairs.push(("__name__".into(), rule.name.clone()));
                pairs.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                let labels = Arc::new(Labels::from_pairs(pairs));
                if !seen.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                out.push((labels, value));
            }
            if limit > 0 && out.len() > limit {
                return Err(format!(
                    "exceeded limit of {limit} with {} series",
                    out.len()
                ));
            }
            Ok(out)
        }
        RuleKind::Alerting => {
            let query: QueryFn = {
                let evaluator = evaluator.clone();
                Arc::new(move |q: &str| {
                    let plan = parse(q).map_err(|e| e.to_string())?;
                    Ok(evaluator
                        .evaluate(&plan, t)?
                        .into_iter()
                        .map(|(l, v)| ((*l).clone(), v))
                        .collect())
                })
            };
            let name = format!("__alert_{}", rule.name);
            let mut candidates = Vec::with_capacity(result.len());
            for (labels, value) in result {
                let data = TemplateData {
                    labels: labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    external_labels: options.external_labels.clone(),
                    external_url: options.external_url.clone(),
                    value,
                };
                let expand = |text: &str| {
                    template::expand(&name, text, &data, Some(query.clone()))
                        .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
                };
                let mut pairs: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(k, _)| *k != "__name__")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                for (k, v) in &rule.labels {
                    pairs.push((k.clone(), expand(v)));
                }
                pairs.push(("alertname".into(), rule.name.clone()));
                let annotations = rule
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(v)))
                    .collect();
                candidates.push(Candidate {
                    labels: Arc::new(Labels::from_pairs(pairs)),
                    annotations,
                    value,
                });
            }
            let Some(state) = rs.alerts.as_mut() else {
                return Err("alert state moved to a reloaded rule".into());
            };
            let step = state.step(t, candidates, limit)?;
            for (labels, from, to) in &step.changes {
                tracing::debug!(alert = %labels, from = from.as_str(), to = to.as_str(), at_ms = t, "alert state changed");
            }
            Ok(step.samples)
        }
    }
}

/// Prometheus's group offset: groups with the same interval do not all run at once.
fn group_offset_ms(group: &RuleGroup, interval_ms: i64) -> i64 {
    let key = format!("{}\u{ff}{}", group.file.display(), group.name);
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % interval_ms.max(1) as u64) as i64
}

/// The next evaluation time strictly after `now_ms` on the group's aligned grid.
pub fn next_eval_time(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let adj = now_ms - offset_ms;
    let base = adj - adj.rem_euclid(interval_ms);
    base + offset_ms + interval_ms
}

/// Names of the series rules write: recording rule names, `ALERTS`, `ALERTS_FOR_STATE`.
fn rule_output_names(groups: &[RuleGroup]) -> HashSet<String> {
    // `ALERTS`/`ALERTS_FOR_STATE` always: a reload may have just removed the
    // alerting rules whose series are still being written back.
    let mut names: HashSet<String> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .flat_map(output_names)
        .collect();
    names.insert("ALERTS".into());
    names.insert("ALERTS_FOR_STATE".into());
    names
}

/// The metric names one rule writes: its own (recording), or `ALERTS` and
/// `ALERTS_FOR_STATE` (alerting).
fn output_names(rule: &Rule) -> Vec<String> {
    match rule.kind {
        RuleKind::Recording => vec![rule.name.clone()],
        RuleKind::Alerting => vec!["ALERTS".into(), "ALERTS_FOR_STATE".into()],
    }
}

/// Whether `plan` may read a series named in `outputs` (see the module doc).
fn reads_rule_outputs(plan: &Plan, outputs: &HashSet<String>, lookback_ms: i64) -> bool {
    let range = QueryRange {
        start_ms: None,
        end_ms: None,
    };
    selector_uses(plan, lookback_ms, range).iter().any(|u| {
        let name_matchers: Vec<_> = u
            .selector
            .matchers
            .iter()
            .filter(|m| m.name == dataflows::labels::METRIC_NAME)
            .collect();
        outputs
            .iter()
            .any(|name| name_matchers.iter().all(|m| m.matches_value(name)))
    })
}

/// What the manager needs to evaluate through the dataflow and to restore state.
pub struct Maintained {
    /// The dataflow rules are registered in.
    pub engine: Arc<Engine>,
    /// Storage: seeds rule windows, and holds `ALERTS_FOR_STATE` for the restore.
    pub history: Arc<Storage>,
    /// Lookback delta (ms).
    pub lookback_ms: i64,
    /// Where firing `keep_firing_for` alerts are persisted.
    pub state_file: Option<PathBuf>,
}

struct RunningGroup {
    state: Arc<Mutex<GroupState>>,
    stop: Arc<AtomicBool>,
}

/// Evaluates the groups of the loaded rule files; see the module doc.
pub struct RuleManager {
    evaluator: Arc<dyn RuleEvaluator>,
    sink: Arc<dyn SampleSink>,
    alerts: Arc<dyn AlertSink>,
    maintained: Option<Maintained>,
    keep_firing: Option<KeepFiringFile>,
    options: Mutex<ManagerOptions>,
    groups: Mutex<Vec<RunningGroup>>,
    /// Whether the first `apply` (startup) happened: only its groups restore state.
    started: AtomicBool,
    /// The recording rules' output names of the last `apply` (which rules read rule
    /// outputs decides where each rule is evaluated).
    outputs: Mutex<HashSet<String>>,
    /// When the manager was created (ms): `ALERTS_FOR_STATE` from before is restored.
    created_ms: i64,
}

impl RuleManager {
    /// A manager with no groups, evaluating every rule with `evaluator`.
    pub fn new(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
    ) -> Arc<RuleManager> {
        Self::build(evaluator, sink, alerts, None)
    }

    /// A manager evaluating rules through the dataflow (see the module doc).
    pub fn maintained(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
        maintained: Maintained,
    ) -> Arc<RuleManager> {
        Self::build(evaluator, sink, alerts, Some(maintained))
    }

    fn build(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
        maintained: Option<Maintained>,
    ) -> Arc<RuleManager> {
        let keep_firing = maintained
            .as_ref()
            .and_then(|m| m.state_file.clone())
            .map(KeepFiringFile::new);
        Arc::new(RuleManager {
            evaluator,
            sink,
            alerts,
            maintained,
            keep_firing,
            options: Mutex::new(ManagerOptions::default()),
            groups: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
            outputs: Mutex::new(HashSet::new()),
            created_ms: crate::ingest::now_ms(),
        })
    }

    /// Replaces the groups. A group whose definition did not change (same file, name,
    /// settings and rules, with the same options and the same recording rules around
    /// it) keeps running untouched: its dataflow rules stay registered. In a changed
    /// group, rules identical to a rule of the old group keep their alert state, as
    /// Prometheus keeps it on reload.
    pub fn apply(self: &Arc<Self>, groups: Vec<RuleGroup>, options: ManagerOptions) {
        let startup = !self.started.swap(true, Ordering::SeqCst);
        let outputs = rule_output_names(&groups);
        let same_surroundings = {
            let mut previous_options = self.options.lock();
            let mut previous_outputs = self.outputs.lock();
            let same = !startup && *previous_options == options && *previous_outputs == outputs;
            *previous_options = options.clone();
            *previous_outputs = outputs.clone();
            same
        };
        let mut running = self.groups.lock();
        let mut old: HashMap<(PathBuf, String), RunningGroup> = running
            .drain(..)
            .map(|g| {
                let key = {
                    let s = g.state.lock();
                    (s.group.file.clone(), s.group.name.clone())
                };
                (key, g)
            })
            .collect();
        let restored = match (&self.keep_firing, startup) {
            (Some(file), true) => file.load(options.for_outage_tolerance),
            _ => Vec::new(),
        };
        if let Some(file) = &self.keep_firing {
            file.retain_groups(
                &groups
                    .iter()
                    .map(|g| (g.file.clone(), g.name.clone()))
                    .collect(),
            );
        }
        for group in groups {
            let key = (group.file.clone(), group.name.clone());
            if same_surroundings {
                let unchanged = old
                    .get(&key)
                    .is_some_and(|g| g.state.lock().group.definition() == group.definition());
                if unchanged {
                    running.push(old.remove(&key).expect("checked above"));
                    continue;
                }
            }
            let mut state = GroupState::new(group, options.default_interval);
            if let Some(previous) = old.remove(&key) {
                previous.stop.store(true, Ordering::SeqCst);
                let mut previous = previous.state.lock();
                for rs in &mut state.rules {
                    let identity = rs.rule.identity();
                    if let Some(p) = previous
                        .rules
                        .iter_mut()
                        .find(|p| p.rule.identity() == identity)
                    {
                        rs.alerts = p.alerts.take();
                        rs.previous_series = std::mem::take(&mut p.previous_series);
                    }
                }
            }
            restore::restore_keep_firing(&mut state, &restored);
            let stop = Arc::new(AtomicBool::new(false));
            let state = Arc::new(Mutex::new(state));
            let runner = GroupRunner::new(self.clone(), state.clone(), stop.clone(), &outputs);
            let name = format!("rules-{}", key.1);
            let spawned = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || runner.run(startup));
            if let Err(e) = spawned {
                tracing::error!(group = %key.1, error = %e, "cannot start rule group");
            }
            running.push(RunningGroup { state, stop });
        }
        for removed in old.into_values() {
            removed.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Stops every group.
    pub fn stop(&self) {
        for g in self.groups.lock().drain(..) {
            g.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Calls `f` with each group's state, in file order.
    pub fn with_groups<T>(&self, mut f: impl FnMut(&GroupState) -> T) -> Vec<T> {
        self.groups
            .lock()
            .iter()
            .map(|g| f(&g.state.lock()))
            .collect()
    }

    fn send(&self, sends: Vec<(String, Vec<Alert>)>) {
        for (expr, alerts) in sends {
            self.alerts.send(&expr, alerts);
        }
    }
}

/// Where one rule's results come from.
enum Source {
    /// The evaluator over storage, at the group's ticks.
    Storage,
    /// The dataflow; `held` is an evaluation read ahead of the tick being served.
    Dataflow {
        id: dataflows::RuleId,
        output: crossbeam_channel::Receiver<RuleOutput>,
        held: Option<RuleOutput>,
    },
}

/// Runs one group until stopped: the thread body.
struct GroupRunner {
    manager: Arc<RuleManager>,
    state: Arc<Mutex<GroupState>>,
    stop: Arc<AtomicBool>,
    sources: Vec<Source>,
    /// For each rule over storage, the earlier rules of the group whose outputs it reads.
    reads_earlier: Vec<Vec<usize>>,
    mode: EvaluationMode,
    interval_ms: i64,
    offset_ms: i64,
}

impl GroupRunner {
    fn new(
        manager: Arc<RuleManager>,
        state: Arc<Mutex<GroupState>>,
        stop: Arc<AtomicBool>,
        outputs: &HashSet<String>,
    ) -> GroupRunner {
        let policy = manager.options.lock().evaluation.clone();
        let mut s = state.lock();
        let mode = policy.mode_for(&s.group.name);
        let interval_ms = s.interval.as_millis().max(1) as i64;
        let offset_ms = group_offset_ms(&s.group, interval_ms);
        let query_offset_ms = s.group.query_offset.as_millis() as i64;
        let mut sources = Vec::with_capacity(s.rules.len());
        for rs in &mut s.rules {
            let source = match &manager.maintained {
                Some(m) if !reads_rule_outputs(&rs.rule.plan, outputs, m.lookback_ms) => {
                    let schedule = match mode {
                        EvaluationMode::Interval => RuleSchedule::Interval {
                            start_ms: offset_ms - query_offset_ms,
                            every_ms: interval_ms,
                        },
                        EvaluationMode::OnArrival => RuleSchedule::OnArrival,
                    };
                    match m
                        .engine
                        .register_seeded((*rs.rule.plan).clone(), schedule, &*m.history)
                    {
                        Ok(handle) => Source::Dataflow {
                            id: handle.id,
                            output: handle.output,
                            held: None,
                        },
                        Err(e) => {
                            tracing::info!(rule = %rs.rule.name, reason = %e, "rule evaluated over storage");
                            Source::Storage
                        }
                    }
                }
                Some(_) => {
                    tracing::info!(rule = %rs.rule.name, reason = "reads a rule's output", "rule evaluated over storage");
                    Source::Storage
                }
                None => Source::Storage,
            };
            rs.maintained = matches!(source, Source::Dataflow { .. });
            sources.push(source);
        }
        let lookback_ms = manager.maintained.as_ref().map_or(0, |m| m.lookback_ms);
        let reads_earlier = (0..s.rules.len())
            .map(|j| {
                if !matches!(sources[j], Source::Storage) {
                    return Vec::new();
                }
                (0..j)
                    .filter(|&i| {
                        let names = output_names(&s.rules[i].rule).into_iter().collect();
                        reads_rule_outputs(&s.rules[j].rule.plan, &names, lookback_ms)
                    })
                    .collect()
            })
            .collect();
        drop(s);
        GroupRunner {
            manager,
            state,
            stop,
            sources,
            reads_earlier,
            mode,
            interval_ms,
            offset_ms,
        }
    }

    fn run(mut self, startup: bool) {
        let rules = self.sources.len();
        let mut restore_pending: Vec<bool> = vec![startup; rules];
        let mut next_tick =
            next_eval_time(crate::ingest::now_ms(), self.interval_ms, self.offset_ms);
        while !self.stop.load(Ordering::SeqCst) {
            match self.mode {
                EvaluationMode::Interval => {
                    if !self.sleep_until(next_tick) {
                        break;
                    }
                    self.tick(next_tick, &mut restore_pending);
                    next_tick = next_eval_time(
                        crate::ingest::now_ms().max(next_tick),
                        self.interval_ms,
                        self.offset_ms,
                    );
                }
                EvaluationMode::OnArrival => {
                    if crate::ingest::now_ms() >= next_tick {
                        self.tick(next_tick, &mut restore_pending);
                        next_tick = next_eval_time(
                            crate::ingest::now_ms().max(next_tick),
                            self.interval_ms,
                            self.offset_ms,
                        );
                    }
                    self.on_arrival_step(next_tick, &mut restore_pending);
                }
            }
        }
        if let Some(m) = &self.manager.maintained {
            for source in &self.sources {
                if let Source::Dataflow { id, .. } = source {
                    m.engine.unregister(*id);
                }
            }
        }
    }

    /// Sleeps until wall time `t_ms`; false if stopped meanwhile.
    fn sleep_until(&self, t_ms: i64) -> bool {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            let left = t_ms - crate::ingest::now_ms();
            if left <= 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(left.min(200) as u64));
        }
    }

    /// A group tick at `t`. Interval mode: every rule, in order (dataflow results for
    /// maintained rules). On-arrival mode: the rules evaluated over storage.
    fn tick(&mut self, t: i64, restore_pending: &mut [bool]) {
        let options = self.manager.options.lock().clone();
        let evaluator = self.manager.evaluator.clone();
        let wait = Duration::from_millis(self.interval_ms as u64);
        let mode = self.mode;
        let sources = &mut self.sources;
        let mut state = self.state.lock();
        if self.stop.load(Ordering::SeqCst) {
            return; // replaced by a reload meanwhile: its state moved on
        }
        let sends = match mode {
            EvaluationMode::Interval => {
                let mut index = 0;
                let sends = state.evaluate_with(
                    t,
                    &mut |rule, t_eval| {
                        let source = &mut sources[index];
                        index += 1;
                        match source {
                            Source::Storage => evaluator.evaluate(&rule.plan, t_eval),
                            Source::Dataflow { output, held, .. } => {
                                dataflow_result_at(output, held, t_eval, wait).unwrap_or_else(
                                    || {
                                        tracing::warn!(rule = %rule.name, t_ms = t_eval, "no dataflow result for the tick in time; evaluated over storage");
                                        evaluator.evaluate(&rule.plan, t_eval)
                                    },
                                )
                            }
                        }
                    },
                    &evaluator,
                    &*self.manager.sink,
                    &options,
                );
                let t_eval = t - state.group.query_offset.as_millis() as i64;
                for (index, pending) in restore_pending.iter_mut().enumerate() {
                    if std::mem::take(pending) {
                        Self::restore(&self.manager, &mut state, index, t_eval, &options);
                    }
                }
                sends
            }
            EvaluationMode::OnArrival => {
                let t_eval = t - state.group.query_offset.as_millis() as i64;
                let sends = Self::step_storage_rules(
                    &self.manager,
                    sources,
                    &mut state,
                    restore_pending,
                    &options,
                    |_| Some(t_eval),
                );
                state.last_eval_ms = t;
                sends
            }
        };
        self.persist(&state);
        drop(state);
        self.manager.send(sends);
    }

    /// On-arrival mode: evaluates the group's rules that run over storage, in rule
    /// order, each at `time_of(index)` if that is later than its last evaluation; the
    /// alerts to send.
    fn step_storage_rules(
        manager: &RuleManager,
        sources: &[Source],
        state: &mut GroupState,
        restore_pending: &mut [bool],
        options: &ManagerOptions,
        mut time_of: impl FnMut(usize) -> Option<i64>,
    ) -> Vec<(String, Vec<Alert>)> {
        let evaluator = manager.evaluator.clone();
        let mut sends = Vec::new();
        for index in 0..state.rules.len() {
            if !matches!(sources[index], Source::Storage) {
                continue;
            }
            let Some(t_eval) = time_of(index) else {
                continue;
            };
            let rs = &state.rules[index];
            if rs.evaluated && rs.last_eval_ms >= t_eval {
                continue;
            }
            let result = evaluator.evaluate(&rs.rule.plan, t_eval);
            sends.extend(state.apply_result(
                index,
                t_eval,
                result,
                &evaluator,
                &*manager.sink,
                options,
            ));
            if std::mem::take(&mut restore_pending[index]) {
                Self::restore(manager, state, index, t_eval, options);
            }
        }
        sends
    }

    /// On-arrival mode: waits (until `until_ms` at the latest) for a dataflow result or
    /// an alert deadline, and steps the rules concerned. A rule over storage that
    /// reads outputs of earlier rules of the group is stepped right after they wrote
    /// new outputs, at the latest of their times, so an alert on a recording rule
    /// also changes state on arrival, not at the next tick.
    fn on_arrival_step(&mut self, until_ms: i64, restore_pending: &mut [bool]) {
        let options = self.manager.options.lock().clone();
        let evaluator = self.manager.evaluator.clone();
        let deadline = self.state.lock().next_deadline_after_last();
        let now = crate::ingest::now_ms();
        let wake_at = deadline.map_or(until_ms, |d| d.min(until_ms));
        // At least a few ms: a deadline waiting for the frontier must not spin.
        let timeout = Duration::from_millis((wake_at - now).clamp(5, 200) as u64);
        let mut select = crossbeam_channel::Select::new();
        let mut indices = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            if let Source::Dataflow { output, .. } = source {
                select.recv(output);
                indices.push(index);
            }
        }
        if indices.is_empty() {
            std::thread::sleep(timeout);
        } else {
            // Woken by any output, or the timeout; either way every channel is drained.
            let _ = select.ready_timeout(timeout);
        }
        drop(select);
        let mut sends = Vec::new();
        {
            let mut state = self.state.lock();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            // Drain every channel (also after a timeout: an output may have come since),
            // before any timer step, so no output older than a deadline is left behind.
            let mut output_at: Vec<Option<i64>> = vec![None; self.sources.len()];
            {
                for &index in &indices {
                    let Source::Dataflow { output, .. } = &self.sources[index] else {
                        continue;
                    };
                    while let Ok(out) = output.try_recv() {
                        let t = out.eval_ms;
                        if state.rules[index].evaluated && t < state.rules[index].last_eval_ms {
                            continue; // behind a timer step already taken
                        }
                        sends.extend(state.apply_result(
                            index,
                            t,
                            output_result(out),
                            &evaluator,
                            &*self.manager.sink,
                            &options,
                        ));
                        if std::mem::take(&mut restore_pending[index]) {
                            Self::restore(&self.manager, &mut state, index, t, &options);
                        }
                        output_at[index] = output_at[index].max(Some(t));
                    }
                }
            }
            // Rules over storage that read outputs written just now, at their time.
            let reads_earlier = &self.reads_earlier;
            sends.extend(Self::step_storage_rules(
                &self.manager,
                &self.sources,
                &mut state,
                restore_pending,
                &options,
                |index| {
                    let t = reads_earlier[index]
                        .iter()
                        .filter_map(|&i| output_at[i])
                        .max()?;
                    output_at[index] = Some(t);
                    Some(t)
                },
            ));
            // Timers: step alerting rules whose deadline has passed, once the
            // dataflow has emitted everything before it.
            let now = crate::ingest::now_ms();
            let frontier = self
                .manager
                .maintained
                .as_ref()
                .map_or(i64::MAX, |m| m.engine.stats().frontier_ms);
            for index in 0..state.rules.len() {
                let rs = &state.rules[index];
                if !rs.maintained || !rs.evaluated {
                    continue;
                }
                let Some(d) = rs
                    .alerts
                    .as_ref()
                    .and_then(|a| a.next_deadline(rs.last_eval_ms))
                else {
                    continue;
                };
                if d > now || d >= frontier {
                    continue;
                }
                let last = rs.last_result.clone();
                sends.extend(state.apply_result(
                    index,
                    d,
                    Ok(last),
                    &evaluator,
                    &*self.manager.sink,
                    &options,
                ));
            }
            if !sends.is_empty() {
                self.persist(&state);
            }
        }
        self.manager.send(sends);
    }

    /// Prometheus's `for` restore, once, at the first evaluation after startup.
    fn restore(
        manager: &RuleManager,
        state: &mut GroupState,
        index: usize,
        t_eval: i64,
        options: &ManagerOptions,
    ) {
        if let Some(m) = &manager.maintained {
            let history: &dyn SeriesSource = &*m.history;
            restore::restore_for_state(state, index, t_eval, manager.created_ms, history, options);
        }
    }

    fn persist(&self, state: &GroupState) {
        if let Some(file) = &self.manager.keep_firing {
            file.update(state);
        }
    }
}

impl GroupState {
    /// The earliest alert deadline after each rule's own last evaluation.
    fn next_deadline_after_last(&self) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(|r| r.alerts.as_ref()?.next_deadline(r.last_eval_ms))
            .min()
    }
}

/// The dataflow's result for exactly `t`, waiting up to `wait` for it; `None` when it
/// did not come (the dataflow skipped `t` or is behind), so the caller falls back to
/// storage.
fn dataflow_result_at(
    output: &crossbeam_channel::Receiver<RuleOutput>,
    held: &mut Option<RuleOutput>,
    t: i64,
    wait: Duration,
) -> Option<RuleResult> {
    let deadline = Instant::now() + wait;
    loop {
        let out = match held.take() {
            Some(out) => out,
            None => output
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?,
        };
        match out.eval_ms.cmp(&t) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => return Some(output_result(out)),
            std::cmp::Ordering::Greater => {
                *held = Some(out);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_times_are_aligned_to_the_interval_and_offset() {
        assert_eq!(next_eval_time(0, 60_000, 0), 60_000);
        assert_eq!(next_eval_time(59_999, 60_000, 0), 60_000);
        assert_eq!(next_eval_time(60_000, 60_000, 0), 120_000);
        assert_eq!(next_eval_time(61_000, 60_000, 5_000), 65_000);
        assert_eq!(next_eval_time(65_000, 60_000, 5_000), 125_000);
    }

    #[test]
    fn rules_reading_rule_outputs_are_found() {
        let groups = vec![];
        let mut outputs = rule_output_names(&groups);
        outputs.insert("job:up:sum".into());
        let reads = |q: &str| reads_rule_outputs(&parse(q).unwrap(), &outputs, 300_000);
        assert!(reads("job:up:sum > 1"));
        assert!(reads("ALERTS{alertstate=\"firing\"}"));
        assert!(reads("{job=\"x\"}"), "no name matcher: may read anything");
        assert!(reads("{__name__=~\"job:.*\"}"));
        assert!(!reads("up == 0"));
        assert!(!reads("rate(x[5m]) > 1 and on() vector(1)"));
    }
}
