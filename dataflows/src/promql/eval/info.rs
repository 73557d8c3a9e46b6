//! `info()`: enriches series with the data labels of the info series that share their
//! identifying labels (`instance`, `job`), as Prometheus's metric-join path
//! (promql/info.go, `applyMetricJoin`).
//!
//! ```promql
//! info(rate(http_requests_total[5m]))               # + every label of target_info
//! info(up, {__name__="build_info", version=~".+"})  # + build_info's version; series
//!                                                   #   without one are dropped
//! ```
//!
//! Contract: the planner gives the info selector (`plan.rs`, `lower_info`): the
//! data-label matchers plus the info metric name matchers (default
//! `__name__="target_info"`), reading at the time the argument's first selector
//! reads. Per base element: if its name matches the name matchers it is an info series
//! itself and passes unchanged; else for each info metric name, the latest info sample
//! with the same name and identifying labels adds its labels (only those named by a
//! data-label matcher, when there are any; never one the element already has; two info
//! series giving one label different values is an error). An element no info series
//! matched is dropped when a data-label matcher does not match the empty value.

use super::selector::instant_with_ts;
use super::{Element, EvalError, EvalResult, Evaluator};
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::plan::{Plan, VectorSel};
use crate::selector::LabelMatcher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The labels that tie a series to its info series.
const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// An info series' key: its metric name and identifying labels.
type InfoKey = (String, Vec<(String, String)>);

/// Evaluates `info(base, info)` at `t`.
pub fn eval(ev: &Evaluator<'_>, base: &Plan, info: &VectorSel, t: i64) -> EvalResult<Vec<Element>> {
    let base = ev.vector(base, t)?;
    let (names, data): (Vec<&LabelMatcher>, Vec<&LabelMatcher>) = info
        .selector
        .matchers
        .iter()
        .partition(|m| m.name == METRIC_NAME);
    let is_info = |l: &Labels| names.iter().all(|m| m.matches_value(l.metric_name()));
    let infos = latest_info_series(ev, info, &base, &is_info, t)?;
    let info_names: BTreeSet<&str> = infos.keys().map(|(name, _)| name.as_str()).collect();
    let all_match_empty = data.iter().all(|m| m.matches_value(""));
    let mut out = Vec::with_capacity(base.len());
    for e in base {
        if is_info(&e.labels) {
            out.push(e);
            continue;
        }
        let id = identity(&e.labels);
        let mut added: BTreeMap<&str, &str> = BTreeMap::new();
        let mut matched = false;
        for name in &info_names {
            let Some(info_labels) = infos.get(&(name.to_string(), id.clone())) else {
                continue;
            };
            matched = true;
            for (n, v) in info_labels.iter() {
                if n == METRIC_NAME || (!data.is_empty() && !data.iter().any(|m| m.name == n)) {
                    continue;
                }
                if let Some(prev) = added.get(n) {
                    if *prev != v {
                        return Err(EvalError::Execution(format!("conflicting label: {n}")));
                    }
                }
                if e.labels.get(n).is_none() {
                    added.insert(n, v);
                }
            }
        }
        if !matched && !all_match_empty {
            continue;
        }
        let labels = if added.is_empty() {
            e.labels.clone()
        } else {
            let mut pairs: Vec<(String, String)> = e
                .labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            pairs.extend(added.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            Arc::new(Labels::from_pairs(pairs))
        };
        out.push(Element { labels, ..e });
    }
    Ok(out)
}

/// The identifying labels of a series, as `(name, value)` pairs (absent ones left out).
fn identity(l: &Labels) -> Vec<(String, String)> {
    IDENTIFYING
        .iter()
        .filter_map(|n| Some((n.to_string(), l.get(n)?.to_string())))
        .collect()
}

/// The info series that can enrich `base`, keyed by `(metric name, identity)`: the
/// latest one where several share a key (same timestamp: an error). Only series whose
/// identifying labels take values some non-info base element has are considered.
fn latest_info_series(
    ev: &Evaluator<'_>,
    info: &VectorSel,
    base: &[Element],
    is_info: &dyn Fn(&Labels) -> bool,
    t: i64,
) -> EvalResult<HashMap<InfoKey, Arc<Labels>>> {
    let mut wanted: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for e in base.iter().filter(|e| !is_info(&e.labels)) {
        for n in IDENTIFYING {
            if let Some(v) = e.labels.get(n) {
                wanted.entry(n).or_default().insert(v);
            }
        }
    }
    let mut out: HashMap<InfoKey, (i64, Arc<Labels>)> = HashMap::new();
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    for (labels, ts, value) in instant_with_ts(ev, info, t) {
        let relevant = wanted
            .iter()
            .all(|(n, values)| labels.get(n).is_some_and(|v| values.contains(v)));
        if !relevant {
            continue;
        }
        if ev.is_histogram(value) {
            return Err(EvalError::Execution("info sample should be float".into()));
        }
        let key = (labels.metric_name().to_string(), identity(&labels));
        match out.get(&key) {
            Some((prev_ts, prev)) if *prev_ts == ts => {
                return Err(EvalError::Execution(format!(
                    "found duplicate series for info metric: existing {prev} @ {prev_ts}, new {labels} @ {ts}"
                )))
            }
            Some((prev_ts, _)) if *prev_ts > ts => {}
            _ => {
                out.insert(key, (ts, labels));
            }
        }
    }
    Ok(out.into_iter().map(|(k, (_, l))| (k, l)).collect())
}
