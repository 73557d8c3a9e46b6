//! Aggregations: `sum avg min max count group stddev stdvar topk bottomk quantile
//! count_values limitk limit_ratio` with `by`/`without`.
//!
//! ```promql
//! sum by (job) (x)          # one element per distinct job, labels {job}
//! topk without (i) (2, x)   # the elements themselves, per group
//! count_values("v", x)      # one element per distinct value, labels {v="<value>"}
//! ```
//!
//! Mirrors `aggregation` in Prometheus's engine.go. `limit_ratio(r, x)` keeps the
//! elements whose Prometheus series hash, as a fraction of `u64::MAX`, is below `r`
//! (or, for a negative `r`, at least `1 + r`), so `limit_ratio(r, x)` and
//! `limit_ratio(-(1 - r), x)` are complements and the same series are picked as by
//! Prometheus.

use super::{math, Derivation, Element, EvalError, EvalResult, Evaluator, LabelSlots, Value};
use crate::labels::Labels;
use crate::promql::plan::{AggOp, Grouping, Plan};
use std::sync::Arc;

/// The group labels of `labels` under `grouping` (`without` also drops `__name__`).
pub fn group_labels(labels: &Labels, grouping: &Grouping) -> Labels {
    Labels::from_pairs(
        labels
            .iter()
            .filter(|(n, _)| match grouping {
                Grouping::By(keep) => keep.iter().any(|k| k == n),
                Grouping::Without(drop) => !super::is_name_label(n) && !drop.iter().any(|d| d == n),
            })
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

/// Evaluates an aggregation at `t`.
pub fn eval(
    ev: &Evaluator<'_>,
    op: AggOp,
    expr: &Plan,
    param: Option<&Plan>,
    grouping: &Grouping,
    t: i64,
) -> EvalResult<Value> {
    let input = ev.vector(expr, t)?;
    // Groups in first-seen order.
    let mut groups: Vec<(Arc<Labels>, Vec<Element>)> = Vec::new();
    let mut slots = LabelSlots::default();
    let mut add = |key: Arc<Labels>, e: Element| {
        let (at, new) = slots.slot(&key);
        if new {
            groups.push((key, Vec::new()));
        }
        groups[at].1.push(e);
    };
    if op == AggOp::CountValues {
        let label = match param {
            Some(p) => ev.string(p, t)?,
            None => {
                return Err(EvalError::Unsupported(
                    "count_values needs a label name".into(),
                ))
            }
        };
        if !super::functions::valid_label_name(&label) {
            return Err(EvalError::Execution(format!(
                "invalid label name {label:?}"
            )));
        }
        for e in input {
            let mut pairs: Vec<(String, String)> = group_labels(&e.labels, grouping)
                .into_pairs()
                .into_iter()
                .filter(|(n, _)| *n != label)
                .collect();
            let value = match ev.histogram(e.value) {
                Some(h) => h.go_string(),
                None => format_value(e.value),
            };
            pairs.push((label.clone(), value));
            add(Arc::new(Labels::from_pairs(pairs)), e);
        }
        return Ok(Value::Vector(
            groups
                .into_iter()
                .map(|(k, elems)| Element::new(k, elems.len() as f64))
                .collect(),
        ));
    }
    let scalar_param = match (op, param) {
        (_, Some(p)) => ev.scalar(p, t)?,
        _ => 0.0,
    };
    if op == AggOp::Quantile {
        super::functions::check_quantile(ev, scalar_param);
    }
    let k_param = matches!(
        op,
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio
    );
    if k_param && scalar_param.is_nan() {
        return Err(EvalError::Execution(
            if op == AggOp::LimitRatio {
                "Ratio value is NaN"
            } else {
                "Parameter value is NaN"
            }
            .into(),
        ));
    }
    let ratio = if op == AggOp::LimitRatio {
        capped_ratio(ev, scalar_param)
    } else {
        0.0
    };
    for e in input {
        add(ev.derived(&e.labels, Derivation::Group(grouping)), e);
    }
    let mut out = Vec::new();
    for (key, elems) in groups {
        let elems = &elems;
        let value = match op {
            AggOp::Topk | AggOp::Bottomk => {
                let floats = super::native::floats_only(ev, elems.clone());
                if floats.len() < elems.len() {
                    let name = if op == AggOp::Topk { "topk" } else { "bottomk" };
                    ev.info(format!("ignored histogram in {name} aggregation"));
                }
                out.extend(top_k(&floats, scalar_param, op == AggOp::Topk));
                continue;
            }
            AggOp::LimitRatio => {
                out.extend(
                    elems
                        .iter()
                        .filter(|e| ratio_sampled(&e.labels, ratio))
                        .cloned(),
                );
                continue;
            }
            AggOp::Limitk => {
                // The first k elements of the group, in input order.
                if scalar_param >= 1.0 {
                    out.extend(elems.iter().take(scalar_param as usize).cloned());
                }
                continue;
            }
            _ => match group_value(ev, op, elems, scalar_param) {
                Some(v) => v,
                None => continue,
            },
        };
        // With `by (__name__)` the name survives; it is still dropped at the end if
        // any input of the group had it pending removal.
        out.push(Element {
            labels: key,
            value,
            drop_name: elems.iter().any(|e| e.drop_name),
        });
    }
    Ok(Value::Vector(out))
}

/// The value of a one-element-per-group aggregation over a group's elements in input
/// order, histograms included ([`super::native::aggregate`]; a histogram result is a
/// handle `ev` made); `None`: the group yields nothing. `param` is φ of `quantile`.
pub fn group_value(ev: &Evaluator<'_>, op: AggOp, elems: &[Element], param: f64) -> Option<f64> {
    let mut values: Vec<f64> = elems.iter().map(|e| e.value).collect();
    match super::native::aggregate(ev, op, elems, &mut values) {
        Some(native) => native,
        None => reduce(op, &values, param),
    }
}

/// The value of a one-element-per-group aggregation (`sum avg count group min max
/// stddev stdvar quantile`) over a group's values in input order; `param` is φ of
/// `quantile`. `None` for the other operators.
pub fn reduce(op: AggOp, values: &[f64], param: f64) -> Option<f64> {
    Some(match op {
        AggOp::Sum => math::sum(values.iter().copied()),
        AggOp::Avg => math::mean(values.iter().copied()),
        AggOp::Count => values.len() as f64,
        AggOp::Group => 1.0,
        AggOp::Min => math::min(values.iter().copied()),
        AggOp::Max => math::max(values.iter().copied()),
        AggOp::Stddev => math::variance(values.iter().copied()).sqrt(),
        AggOp::Stdvar => math::variance(values.iter().copied()),
        AggOp::Quantile => math::quantile(param, &mut values.to_vec()),
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::CountValues | AggOp::LimitRatio => {
            return None
        }
    })
}

/// The `k` largest (or smallest) elements, best first; NaN counts as the worst.
fn top_k(elems: &[Element], k: f64, largest: bool) -> Vec<Element> {
    if k.is_nan() || k < 1.0 {
        return Vec::new();
    }
    let k = (k as usize).min(elems.len());
    let mut sorted: Vec<Element> = elems.to_vec();
    sorted.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if largest => b.value.total_cmp(&a.value),
        _ => a.value.total_cmp(&b.value),
    });
    sorted.truncate(k);
    sorted
}

/// `limit_ratio`'s ratio, capped to [-1, 1] with Prometheus's warning.
fn capped_ratio(ev: &Evaluator<'_>, ratio: f64) -> f64 {
    if (-1.0..=1.0).contains(&ratio) {
        return ratio;
    }
    let capped = ratio.clamp(-1.0, 1.0);
    ev.warn(format!(
        "ratio value should be between -1 and 1, got {}, capping to {}",
        format_value(ratio),
        format_value(capped)
    ));
    capped
}

/// Whether `limit_ratio(ratio, …)` keeps the series `labels` (Prometheus's
/// `HashRatioSampler`).
fn ratio_sampled(labels: &Labels, ratio: f64) -> bool {
    let offset = labels.prometheus_hash() as f64 / u64::MAX as f64;
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

/// Floats as Go's `strconv.FormatFloat(v, 'f', -1, 64)` (see [`crate::go_float`]).
pub use crate::go_float::{format_f as format_value, GoFloat};
