//! The rule manager: evaluates rule groups at their interval, like Prometheus.
//!
//! Owns: one task per group that evaluates its rules in order at times aligned to the
//! group's interval (with a per-group offset, as Prometheus spreads groups); recording
//! rule outputs and `ALERTS`/`ALERTS_FOR_STATE` are written back through a
//! [`SampleSink`] (the ingester: head + dataflow), with stale markers for series that
//! left a rule's output; alerting rules drive [`AlertRuleState`]; alerts due for
//! sending go to an [`AlertSink`] (the notifier). Reload ([`RuleManager::apply`])
//! replaces groups and keeps the alert state of rules that did not change.
//!
//! The seam: rules are evaluated through [`RuleEvaluator`]. [`HeadEvaluator`] is the
//! reference evaluator over the in-memory head; the maintained dataflow
//! (`dataflows::render`, `Engine::register(plan, schedule)`) will implement the same
//! trait, and nothing else here needs to change. [`GroupState::evaluate`] is a plain
//! function of (time, evaluator) so tests and `promflow test rules` drive it directly.

use crate::alerting::state::{Alert, AlertRuleState, Candidate};
use crate::alerting::template::{self, QueryFn, TemplateData};
use crate::rules::file::{Rule, RuleGroup, RuleKind};
use crate::storage::Storage;
use dataflows::promql::eval::{Evaluator, Value};
use dataflows::promql::plan::{parse, Plan};
use dataflows::{Labels, Sample, STALE_MARKER};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

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
        // A refused batch is logged and counted by storage.
        let _ = crate::ingest::Ingester::commit(self, batch);
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
        match evaluator.instant(plan, t_ms).map_err(|e| e.to_string())? {
            Value::Vector(v) => Ok(v.into_iter().map(|e| (e.labels, e.value)).collect()),
            Value::Scalar(v) => Ok(vec![(Arc::new(Labels::default()), v)]),
            other => Err(format!("rule result is not a vector: {other:?}")),
        }
    }
}

/// Settings shared by all groups.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// `global.evaluation_interval`.
    pub default_interval: Duration,
    /// `global.external_labels` (for templates; the notifier adds them to alerts).
    pub external_labels: BTreeMap<String, String>,
    /// `--web.external-url`.
    pub external_url: String,
    /// How often a firing alert is re-sent (Prometheus's `--rules.alert.resend-delay`, 1m).
    pub resend_delay: Duration,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            default_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay: Duration::from_secs(60),
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
    previous_series: HashSet<Arc<Labels>>,
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
                previous_series: HashSet::new(),
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
        let started = std::time::Instant::now();
        let t_eval = t_ms - self.group.query_offset.as_millis() as i64;
        let mut to_send = Vec::new();
        let limit = self.group.limit;
        let interval_ms = self.interval.as_millis() as i64;
        for rs in &mut self.rules {
            let rule_started = std::time::Instant::now();
            let result = evaluate_rule(rs, t_eval, evaluator, options, limit);
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
            if let Some(state) = &mut rs.alerts {
                let due =
                    state.to_send(t_eval, options.resend_delay.as_millis() as i64, interval_ms);
                if !due.is_empty() {
                    to_send.push((rs.rule.expr.clone(), due));
                }
            }
            rs.last_eval_ms = t_ms;
            rs.evaluated = true;
            rs.eval_duration = rule_started.elapsed();
        }
        self.last_eval_ms = t_ms;
        self.eval_duration = started.elapsed();
        to_send
    }

    /// The earliest `for`/`keep_firing_for` deadline after `t_ms` of any rule.
    pub fn next_deadline(&self, t_ms: i64) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(|r| r.alerts.as_ref()?.next_deadline(t_ms))
            .min()
    }
}

/// Evaluates one rule: the output series to write at `t`.
fn evaluate_rule(
    rs: &mut RuleState,
    t: i64,
    evaluator: &Arc<dyn RuleEvaluator>,
    options: &ManagerOptions,
    limit: usize,
) -> Result<Vec<(Arc<Labels>, f64)>, String> {
    let rule = &rs.rule;
    let result = evaluator.evaluate(&rule.plan, t)?;
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
            let state = rs.alerts.as_mut().expect("alerting rules have state");
            Ok(state.step(t, candidates, limit)?.samples)
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

struct RunningGroup {
    state: Arc<Mutex<GroupState>>,
    task: tokio::task::JoinHandle<()>,
}

/// Evaluates the groups of the loaded rule files; see the module doc.
pub struct RuleManager {
    evaluator: Arc<dyn RuleEvaluator>,
    sink: Arc<dyn SampleSink>,
    alerts: Arc<dyn AlertSink>,
    options: Mutex<ManagerOptions>,
    groups: Mutex<Vec<RunningGroup>>,
}

impl RuleManager {
    /// A manager with no groups.
    pub fn new(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
    ) -> Arc<RuleManager> {
        Arc::new(RuleManager {
            evaluator,
            sink,
            alerts,
            options: Mutex::new(ManagerOptions::default()),
            groups: Mutex::new(Vec::new()),
        })
    }

    /// Replaces the groups (must run inside a tokio runtime). Rules identical to a
    /// rule of the same group (file and name) keep their alert state, as Prometheus
    /// keeps it on reload.
    pub fn apply(self: &Arc<Self>, groups: Vec<RuleGroup>, options: ManagerOptions) {
        *self.options.lock() = options.clone();
        let mut running = self.groups.lock();
        let mut old: HashMap<(std::path::PathBuf, String), RunningGroup> = running
            .drain(..)
            .map(|g| {
                g.task.abort();
                let key = {
                    let s = g.state.lock();
                    (s.group.file.clone(), s.group.name.clone())
                };
                (key, g)
            })
            .collect();
        for group in groups {
            let mut state = GroupState::new(group, options.default_interval);
            let key = (state.group.file.clone(), state.group.name.clone());
            if let Some(previous) = old.remove(&key) {
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
            let state = Arc::new(Mutex::new(state));
            let task = tokio::spawn(run_group(self.clone(), state.clone()));
            running.push(RunningGroup { state, task });
        }
    }

    /// Stops every group.
    pub fn stop(&self) {
        for g in self.groups.lock().drain(..) {
            g.task.abort();
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
}

async fn run_group(manager: Arc<RuleManager>, state: Arc<Mutex<GroupState>>) {
    let (interval_ms, offset_ms) = {
        let s = state.lock();
        let interval_ms = s.interval.as_millis().max(1) as i64;
        (interval_ms, group_offset_ms(&s.group, interval_ms))
    };
    loop {
        let now = crate::ingest::now_ms();
        let next = next_eval_time(now, interval_ms, offset_ms);
        tokio::time::sleep(Duration::from_millis((next - now).max(0) as u64)).await;
        let options = manager.options.lock().clone();
        let evaluator = manager.evaluator.clone();
        let sink = manager.sink.clone();
        let state2 = state.clone();
        let sends = tokio::task::spawn_blocking(move || {
            state2.lock().evaluate(next, &evaluator, &*sink, &options)
        })
        .await
        .unwrap_or_default();
        for (expr, alerts) in sends {
            manager.alerts.send(&expr, alerts);
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
}
