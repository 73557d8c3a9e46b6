//! One rule group's state and its evaluation: [`GroupState::evaluate`] is a plain
//! function of (time, results) that writes rule outputs with stale markers and steps
//! alerting rules' state (see [`crate::rules::manager`] for who calls it when).

use crate::rules::alert::{
    final_labels, keeps_final_labels_distinct, Alert, AlertRuleState, Candidate,
};
use crate::rules::file::{Rule, RuleGroup, RuleKind};
use crate::rules::metrics::GroupCounters;
use crate::rules::options::ManagerOptions;
use crate::rules::sinks::{
    RuleError, RuleEvaluator, RuleResult, RuleValue, RuleWrites, SampleSink,
};
use crate::rules::template::{self, QueryFn, TemplateData};
use dataflows::promql::plan::{parse, Plan};
use dataflows::render::extent::{selector_uses, QueryRange};
use dataflows::{Labels, STALE_MARKER};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub(crate) previous_series: HashSet<Arc<Labels>>,
    /// Samples the last step wrote (0 if it failed): the group's
    /// `prometheus_rule_group_last_evaluation_samples` sums them.
    pub last_samples: usize,
    /// The last result, by labels (on arrival: what changes apply to, and what timer
    /// steps and refreshes step with).
    pub(crate) current: HashMap<Arc<Labels>, Current>,
    /// Whether adding the rule's name and labels to the elements of `current` keeps
    /// them distinct (no element has `__name__` or a label the rule sets), so changes
    /// to a recording rule can be written alone. Known after each whole result.
    distinct_outputs: bool,
}

/// An element of a rule's last result.
#[derive(Clone, Debug)]
pub(crate) struct Current {
    value: RuleValue,
    /// A recording rule's output series for it, once computed.
    output: Option<Arc<Labels>>,
}

impl RuleState {
    /// When an on-arrival alerting rule is next stepped without a new result (its
    /// nearest `for`/`keep_firing_for` deadline), or `None`. None after a failed
    /// evaluation: a step with the same result fails the same way (duplicate alert
    /// labels, the limit), or would act on the result before the failure; as
    /// Prometheus, which fails once per interval, the next arrival or group tick
    /// evaluates again.
    pub(crate) fn timer_deadline(&self) -> Option<i64> {
        if !self.last_error.is_empty() {
            return None;
        }
        self.alerts.as_ref()?.next_deadline(self.last_eval_ms)
    }

    /// The last result as a vector (in no particular order).
    pub(crate) fn current_result(&self) -> Vec<(Arc<Labels>, RuleValue)> {
        self.current
            .iter()
            .map(|(labels, c)| (labels.clone(), c.value.clone()))
            .collect()
    }

    /// Whether `labels` keeps its distinctness once the rule's name (a recording
    /// rule's `__name__`, an alerting rule's `alertname`) and labels are added (see
    /// `distinct_outputs`).
    fn output_stays_distinct(&self, labels: &Labels) -> bool {
        let rule_labels = self.rule.labels.keys().map(String::as_str);
        match self.rule.kind {
            RuleKind::Recording => {
                labels.get(dataflows::labels::METRIC_NAME).is_none() && { rule_labels }
                    .all(|k| labels.get(k).is_none())
            }
            RuleKind::Alerting => keeps_final_labels_distinct(labels, rule_labels),
        }
    }
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
    /// The group's `prometheus_rule_*` counters (kept by a reload that replaces the
    /// state of a group with the same file and name).
    pub counters: Arc<GroupCounters>,
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
                last_samples: 0,
                current: HashMap::new(),
                distinct_outputs: false,
            })
            .collect();
        GroupState {
            group,
            interval,
            rules,
            last_eval_ms: 0,
            eval_duration: Duration::ZERO,
            counters: Arc::default(),
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
    /// alerts due for sending; a failed evaluation only records its error.
    pub fn apply_result(
        &mut self,
        index: usize,
        t_eval: i64,
        result: RuleResult,
        evaluator: &Arc<dyn RuleEvaluator>,
        sink: &dyn SampleSink,
        options: &ManagerOptions,
    ) -> Option<(String, Vec<Alert>)> {
        let limit = self.group.limit;
        let interval_ms = self.interval.as_millis() as i64;
        let rs = &mut self.rules[index];
        let rule_started = Instant::now();
        let result = result.and_then(|r| {
            rs.current = r
                .iter()
                .map(|(labels, value)| {
                    let current = Current {
                        value: value.clone(),
                        output: None,
                    };
                    (labels.clone(), current)
                })
                .collect();
            rs.distinct_outputs = r.iter().all(|(labels, _)| rs.output_stays_distinct(labels));
            rule_output(rs, t_eval, r, evaluator, options, limit)
        });
        let series: Vec<(Arc<Labels>, RuleValue)> = match result {
            Ok(series) => {
                rs.last_error.clear();
                series
            }
            Err(e) => {
                // As Prometheus 2.42's `Group.Eval`: a failed evaluation writes
                // nothing, not even stale markers for the previous one's series (they
                // stay until an evaluation succeeds without them, or the lookback
                // passes), and sends no alerts.
                tracing::warn!(rule = %rs.rule.name, error = %e, "rule evaluation failed");
                rs.last_error = e.to_string();
                rs.last_eval_ms = t_eval;
                rs.evaluated = true;
                rs.eval_duration = rule_started.elapsed();
                rs.last_samples = 0;
                self.counters.evaluation(true, rs.eval_duration);
                return None;
            }
        };
        rs.last_samples = series.len();
        sink.commit(step_writes(&mut rs.previous_series, t_eval, series, None));
        rs.last_eval_ms = t_eval;
        rs.evaluated = true;
        rs.eval_duration = rule_started.elapsed();
        self.counters.evaluation(false, rs.eval_duration);
        let state = rs.alerts.as_mut()?;
        let due = state.to_send(t_eval, options.resend_delay.as_millis() as i64, interval_ms);
        (!due.is_empty()).then(|| (rs.rule.query.clone(), due))
    }

    /// Steps rule `index` at `t_eval` with the changes since its previous result
    /// (elements that left it, then elements new or with a new value), as an on-arrival
    /// rule delivering changes gets them. A recording rule writes just those series
    /// (a stale marker for each that left); the others, and whatever needs the whole
    /// result to check (a series limit, outputs that might collide, a previous error),
    /// step with the whole result as [`GroupState::apply_result`] does.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_changes(
        &mut self,
        index: usize,
        t_eval: i64,
        set: Vec<(Arc<Labels>, RuleValue)>,
        gone: Vec<Arc<Labels>>,
        evaluator: &Arc<dyn RuleEvaluator>,
        sink: &dyn SampleSink,
        options: &ManagerOptions,
    ) -> Option<(String, Vec<Alert>)> {
        let limit = self.group.limit;
        let rs = &mut self.rules[index];
        let started = Instant::now();
        let left: Vec<(Arc<Labels>, Current)> = gone
            .into_iter()
            .filter_map(|labels| rs.current.remove_entry(&labels))
            .collect();
        // The changes alone are enough when the outputs they make cannot collide with
        // others, nothing needs the whole result counted (a recording rule's limit),
        // an alerting rule's labels do not depend on the value (templates) and no
        // `for`/`keep_firing_for` deadline has passed.
        let alone = rs.evaluated
            && rs.last_error.is_empty()
            && rs.distinct_outputs
            && set
                .iter()
                .all(|(labels, _)| rs.output_stays_distinct(labels))
            && match rs.rule.kind {
                RuleKind::Recording => limit == 0 || rs.current.len() + set.len() <= limit,
                RuleKind::Alerting => {
                    !rs.rule.labels.iter().any(|(_, v)| v.contains("{{"))
                        && rs.alerts.as_ref().is_some_and(|a| {
                            a.next_deadline(rs.last_eval_ms).is_none_or(|d| d > t_eval)
                        })
                }
            };
        if !alone {
            for (labels, value) in set {
                let output = None;
                rs.current.insert(labels, Current { value, output });
            }
            let whole = rs.current_result();
            return self.apply_result(index, t_eval, Ok(whole), evaluator, sink, options);
        }
        let (series, ended) = match rs.rule.kind {
            RuleKind::Recording => {
                let ended = left
                    .into_iter()
                    .map(|(labels, current)| {
                        (current.output).unwrap_or_else(|| record_labels(&rs.rule, &labels))
                    })
                    .collect();
                let mut series = Vec::with_capacity(set.len());
                for (labels, value) in set {
                    let output = match rs.current.get(&labels).and_then(|c| c.output.clone()) {
                        Some(output) => output,
                        None => record_labels(&rs.rule, &labels),
                    };
                    series.push((output.clone(), value.clone()));
                    let current = Current {
                        value,
                        output: Some(output),
                    };
                    rs.current.insert(labels, current);
                }
                (series, ended)
            }
            RuleKind::Alerting => {
                let query = template_query(evaluator, t_eval);
                let gone: Vec<Arc<Labels>> = left
                    .into_iter()
                    .map(|(labels, current)| match current.output {
                        Some(output) => output,
                        None => {
                            let value = current.value.float();
                            alert_candidate(&rs.rule, &labels, value, &query, options).labels
                        }
                    })
                    .collect();
                let mut candidates = Vec::with_capacity(set.len());
                for (labels, value) in set {
                    let c = alert_candidate(&rs.rule, &labels, value.float(), &query, options);
                    let output = Some(c.labels.clone());
                    rs.current.insert(labels, Current { value, output });
                    candidates.push(c);
                }
                let Some(state) = rs.alerts.as_mut() else {
                    let moved = Err(RuleError::StateMoved);
                    return self.apply_result(index, t_eval, moved, evaluator, sink, options);
                };
                let step = match state.step_changes(t_eval, candidates, &gone, limit) {
                    Ok(step) => step,
                    Err(e) => {
                        let e = Err(e.into());
                        return self.apply_result(index, t_eval, e, evaluator, sink, options);
                    }
                };
                for (labels, from, to) in &step.changes {
                    tracing::debug!(alert = %labels, from = from.as_str(), to = to.as_str(), at_ms = t_eval, "alert state changed");
                }
                let samples = step.samples.into_iter();
                let series = samples.map(|(l, v)| (l, RuleValue::Float(v))).collect();
                (series, step.ended)
            }
        };
        rs.last_samples = series.len();
        sink.commit(step_writes(
            &mut rs.previous_series,
            t_eval,
            series,
            Some(ended),
        ));
        rs.last_eval_ms = t_eval;
        rs.eval_duration = started.elapsed();
        self.counters.evaluation(false, rs.eval_duration);
        let interval_ms = self.interval.as_millis() as i64;
        let state = rs.alerts.as_mut()?;
        let due = state.to_send(t_eval, options.resend_delay.as_millis() as i64, interval_ms);
        (!due.is_empty()).then(|| (rs.rule.query.clone(), due))
    }

    /// Takes in a result (`gone` is `None`) or changes (see
    /// [`GroupState::apply_changes`]) that came behind a step the rule already took:
    /// kept in its last result, written and stepped with it at its next step.
    pub(crate) fn absorb(
        &mut self,
        index: usize,
        set: Vec<(Arc<Labels>, RuleValue)>,
        gone: Option<Vec<Arc<Labels>>>,
    ) {
        let rs = &mut self.rules[index];
        match gone {
            None => rs.current.clear(),
            Some(gone) => {
                for labels in gone {
                    rs.current.remove(&labels);
                }
            }
        }
        for (labels, value) in set {
            rs.distinct_outputs &= rs.output_stays_distinct(&labels);
            let output = None;
            rs.current.insert(labels, Current { value, output });
        }
    }

    /// The earliest `for`/`keep_firing_for` deadline after `t_ms` of any rule.
    pub fn next_deadline(&self, t_ms: i64) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(|r| r.alerts.as_ref()?.next_deadline(t_ms))
            .min()
    }
}

/// The stale marker a rule writes for an output series that left its result (a
/// histogram series' too: Prometheus appends the float stale marker, its head turns it
/// into a histogram one; storage keeps it beside the histograms).
const STALE: RuleValue = RuleValue::Float(STALE_MARKER);

/// What a step at `t` writes of a rule's output `series`, given the series it wrote
/// before (`previous`, kept up to date): the series, and a stale marker for each that
/// ended — those in `ended` for a step with the changes alone (written first), the
/// previous ones not in `series` for a step with the whole result (`ended` is `None`).
pub(crate) fn step_writes(
    previous: &mut HashSet<Arc<Labels>>,
    t: i64,
    series: Vec<(Arc<Labels>, RuleValue)>,
    ended: Option<Vec<Arc<Labels>>>,
) -> RuleWrites {
    let mut batch = RuleWrites::with_capacity(series.len());
    match ended {
        Some(ended) => {
            for labels in ended {
                previous.remove(&labels);
                batch.push(labels, t, &STALE);
            }
            for (labels, value) in series {
                batch.push(labels.clone(), t, &value);
                previous.insert(labels);
            }
        }
        None => {
            let now: HashSet<Arc<Labels>> = series.iter().map(|(l, _)| l.clone()).collect();
            for (labels, value) in series {
                batch.push(labels, t, &value);
            }
            for gone in previous.difference(&now) {
                batch.push(gone.clone(), t, &STALE);
            }
            *previous = now;
        }
    }
    batch
}

/// A recording rule's output series for an element labelled `labels`: the rule's name
/// and labels added.
fn record_labels(rule: &Rule, labels: &Labels) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("__name__".into(), rule.name.clone()));
    pairs.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Arc::new(Labels::from_pairs(pairs))
}

/// The templates' `query` function of an alerting rule evaluated at `t`.
pub(crate) fn template_query(evaluator: &Arc<dyn RuleEvaluator>, t: i64) -> QueryFn {
    let evaluator = evaluator.clone();
    Arc::new(move |q: &str| {
        let plan = parse(q)?;
        Ok(evaluator
            .evaluate(&plan, t)?
            .into_iter()
            .map(|(l, v)| ((*l).clone(), v.float()))
            .collect())
    })
}

/// The alert an element (`labels`, `value`) of an alerting rule's result makes: its
/// labels without `__name__`, the rule's labels and `alertname`, and the annotations,
/// templates expanded.
pub(crate) fn alert_candidate(
    rule: &Rule,
    labels: &Labels,
    value: f64,
    query: &QueryFn,
    options: &ManagerOptions,
) -> Candidate {
    let name = format!("__alert_{}", rule.name);
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
    let rule_labels: Vec<(String, String)> = rule
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), expand(v)))
        .collect();
    let annotations = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), expand(v)))
        .collect();
    Candidate {
        labels: final_labels(labels, &rule_labels, &rule.name),
        value,
        payload: annotations,
    }
}

/// One rule's output series at `t` from its result; alerting rules step their state.
fn rule_output(
    rs: &mut RuleState,
    t: i64,
    result: Vec<(Arc<Labels>, RuleValue)>,
    evaluator: &Arc<dyn RuleEvaluator>,
    options: &ManagerOptions,
    limit: usize,
) -> RuleResult {
    let rule = &rs.rule;
    match rule.kind {
        RuleKind::Recording => {
            let mut out = Vec::with_capacity(result.len());
            let mut seen = HashSet::new();
            for (labels, value) in result {
                let labels = record_labels(rule, &labels);
                if !seen.insert(labels.clone()) {
                    return Err(RuleError::DuplicateAfterRuleLabels);
                }
                out.push((labels, value));
            }
            if limit > 0 && out.len() > limit {
                return Err(RuleError::SeriesLimit {
                    limit,
                    count: out.len(),
                });
            }
            Ok(out)
        }
        RuleKind::Alerting => {
            let query = template_query(evaluator, t);
            let candidates: Vec<Candidate> = result
                .into_iter()
                .map(|(labels, value)| {
                    alert_candidate(rule, &labels, value.float(), &query, options)
                })
                .collect();
            let Some(state) = rs.alerts.as_mut() else {
                return Err(RuleError::StateMoved);
            };
            let step = state.step(t, candidates, limit)?;
            for (labels, from, to) in &step.changes {
                tracing::debug!(alert = %labels, from = from.as_str(), to = to.as_str(), at_ms = t, "alert state changed");
            }
            let samples = step.samples.into_iter();
            Ok(samples.map(|(l, v)| (l, RuleValue::Float(v))).collect())
        }
    }
}

impl GroupState {
    /// The earliest alert deadline after each rule's own last evaluation.
    pub(crate) fn next_deadline_after_last(&self) -> Option<i64> {
        self.rules
            .iter()
            .filter_map(RuleState::timer_deadline)
            .min()
    }
}

/// Names of the series rules write: recording rule names, `ALERTS`, `ALERTS_FOR_STATE`.
pub(crate) fn rule_output_names(groups: &[RuleGroup]) -> HashSet<String> {
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
pub(crate) fn output_names(rule: &Rule) -> Vec<String> {
    match rule.kind {
        RuleKind::Recording => vec![rule.name.clone()],
        RuleKind::Alerting => vec!["ALERTS".into(), "ALERTS_FOR_STATE".into()],
    }
}

/// Whether `plan` may read a series named in `outputs` (see the module doc).
pub(crate) fn reads_rule_outputs(plan: &Plan, outputs: &HashSet<String>, lookback_ms: i64) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
