//! Selection: instant selectors (lookback), range selectors and subqueries.
//!
//! ```promql
//! x{a="b"} offset 5m @ 100      # last sample in (t' - lookback, t'], t' = 100s - 5m
//! x[5m]                         # every sample in (t - 5m, t]
//! expr[10m:1m]                  # expr at each multiple of 1m in (t - 10m, t]
//! ```
//!
//! Contract: a stale marker as the latest sample hides the series from an instant
//! selector; stale markers never appear in range-selector output.

use super::{Element, EvalError, EvalResult, Evaluator, Series, Value};
use crate::labels::Labels;
use crate::promql::plan::{At, Plan, VectorSel};
use crate::sample::is_stale_marker;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The time a selector (or subquery) with `at` and `offset_ms` reads at, for eval time `t`.
pub fn effective_time(ev: &Evaluator<'_>, at: Option<At>, offset_ms: i64, t: i64) -> i64 {
    let base = match at {
        None => t,
        Some(At::Ms(ms)) => ms,
        Some(At::Start) => ev.start_ms,
        Some(At::End) => ev.end_ms,
    };
    base - offset_ms
}

/// The latest non-stale sample of each selected series within the lookback window,
/// as `(labels, timestamp, value)`.
pub fn instant_with_ts(
    ev: &Evaluator<'_>,
    sel: &VectorSel,
    t: i64,
) -> Vec<(Arc<Labels>, i64, f64)> {
    let eff = effective_time(ev, sel.at, sel.offset_ms, t);
    ev.source
        .select(&sel.selector, eff - ev.lookback_ms + 1, eff)
        .into_iter()
        .filter_map(|(labels, points)| {
            let &(ts, v) = points.iter().rev().find(|(ts, _)| *ts <= eff)?;
            if is_stale_marker(v) || ts <= eff - ev.lookback_ms {
                None
            } else {
                Some((labels, ts, v))
            }
        })
        .collect()
}

/// An instant selector evaluated at `t`.
pub fn instant(ev: &Evaluator<'_>, sel: &VectorSel, t: i64) -> Vec<Element> {
    instant_with_ts(ev, sel, t)
        .into_iter()
        .map(|(labels, _, value)| Element::new(labels, value))
        .collect()
}

/// A range-vector argument with the window it was taken over (needed by `rate`'s
/// extrapolation).
pub struct RangeArg {
    /// The series; none is empty.
    pub series: Vec<Series>,
    /// The window's inclusive end, ms.
    pub window_end: i64,
    /// The window's length, ms; the window is `(window_end - range_ms, window_end]`.
    pub range_ms: i64,
}

/// Evaluates a matrix selector or subquery at `t`.
pub fn range_arg(ev: &Evaluator<'_>, plan: &Plan, t: i64) -> EvalResult<RangeArg> {
    match plan {
        Plan::Matrix { sel, range_ms } => {
            let end = effective_time(ev, sel.at, sel.offset_ms, t);
            let series = ev
                .source
                .select(&sel.selector, end - range_ms + 1, end)
                .into_iter()
                .filter_map(|(labels, points)| {
                    let points: Vec<(i64, f64)> = points
                        .into_iter()
                        .filter(|(ts, v)| {
                            *ts > end - range_ms && *ts <= end && !is_stale_marker(*v)
                        })
                        .collect();
                    (!points.is_empty()).then_some(Series { labels, points })
                })
                .collect();
            Ok(RangeArg {
                series,
                window_end: end,
                range_ms: *range_ms,
            })
        }
        Plan::Subquery {
            expr,
            range_ms,
            step_ms,
            offset_ms,
            at,
        } => {
            let end = effective_time(ev, *at, *offset_ms, t);
            let step = step_ms.unwrap_or(ev.subquery_step_ms).max(1);
            let lower = end - range_ms;
            let mut ts = lower.div_euclid(step) * step;
            if ts <= lower {
                ts += step;
            }
            let mut out: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
            while ts <= end {
                match ev.instant(expr, ts)? {
                    Value::Vector(v) => {
                        for e in v {
                            out.entry(e.labels).or_default().push((ts, e.value));
                        }
                    }
                    Value::Scalar(v) => out.entry(Arc::default()).or_default().push((ts, v)),
                    _ => return Err(EvalError("subquery of a non-vector expression".into())),
                }
                ts += step;
            }
            Ok(RangeArg {
                series: out
                    .into_iter()
                    .map(|(labels, points)| Series { labels, points })
                    .collect(),
                window_end: end,
                range_ms: *range_ms,
            })
        }
        _ => Err(EvalError("expected a range vector argument".into())),
    }
}
