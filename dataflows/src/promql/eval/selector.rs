//! Selection: instant selectors (lookback), range selectors and subqueries.
//!
//! ```promql
//! x{a="b"} offset 5m @ 100      # last sample in (t' - lookback, t'], t' = 100s - 5m
//! x[5m]                         # every sample in (t - 5m, t]
//! expr[10m:1m]                  # expr at each multiple of 1m in (t - 10m, t]
//! x[5m] anchored                # (t - 5m, t] plus the last sample at or before t - 5m
//! x[5m] smoothed                # values interpolated onto t - 5m and t
//! x smoothed                    # the value interpolated onto t
//! ```
//!
//! Contract: a stale marker as the latest sample hides the series from an instant
//! selector; stale markers never appear in range-selector output.

use super::{Element, EvalError, EvalResult, Evaluator, Series, Value};
use crate::labels::Labels;
use crate::promql::plan::{At, Plan, SelectorModifier, VectorSel};
use crate::sample::is_stale_marker;
use std::borrow::Cow;
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
    let mut out = Vec::new();
    ev.source.select_each(
        &sel.selector,
        eff - ev.lookback_ms + 1,
        eff,
        &mut |labels, points| {
            if let Some((ts, v)) = latest_in_lookback(points, eff, ev.lookback_ms) {
                out.push((labels.clone(), ts, v));
            }
        },
    );
    out
}

/// What an instant selector reads from one series at `eff` (the evaluation time
/// after `offset`/`@`): its newest sample in `(eff - lookback_ms, eff]` of the
/// time-sorted `points`, unless that sample is a stale marker.
pub fn latest_in_lookback(points: &[(i64, f64)], eff: i64, lookback_ms: i64) -> Option<(i64, f64)> {
    let end = points.partition_point(|p| p.0 <= eff);
    let &(ts, v) = points[..end].last()?;
    (!is_stale_marker(v) && ts > eff - lookback_ms).then_some((ts, v))
}

/// What a range selector without modifier reads from one series: the samples of the
/// time-sorted `points` in `(lo, hi]`, stale markers left out (borrowed unless there
/// is one to leave out).
pub fn range_window(points: &[(i64, f64)], lo: i64, hi: i64) -> Cow<'_, [(i64, f64)]> {
    let start = points.partition_point(|p| p.0 <= lo);
    let end = points.partition_point(|p| p.0 <= hi).max(start);
    let window = &points[start..end];
    if window.iter().any(|p| is_stale_marker(p.1)) {
        Cow::Owned(
            window
                .iter()
                .copied()
                .filter(|p| !is_stale_marker(p.1))
                .collect(),
        )
    } else {
        Cow::Borrowed(window)
    }
}

/// An instant selector evaluated at `t`.
pub fn instant(ev: &Evaluator<'_>, sel: &VectorSel, t: i64) -> Vec<Element> {
    if sel.modifier == Some(SelectorModifier::Smoothed) {
        return smoothed_instant(ev, sel, t);
    }
    instant_with_ts(ev, sel, t)
        .into_iter()
        .map(|(labels, _, value)| Element {
            drop_name: ev.source.names_pending(&labels),
            labels,
            value,
        })
        .collect()
}

/// `x smoothed`: the value at `t'` interpolated between the last sample at or before
/// it and the first after it (both within one lookback delta); the last value when no
/// later sample exists yet; nothing when no earlier one does.
fn smoothed_instant(ev: &Evaluator<'_>, sel: &VectorSel, t: i64) -> Vec<Element> {
    let eff = effective_time(ev, sel.at, sel.offset_ms, t);
    ev.source
        .select(
            &sel.selector,
            eff - ev.lookback_ms + 1,
            eff + ev.lookback_ms,
        )
        .into_iter()
        .filter_map(|(labels, points)| {
            let points: Vec<(i64, f64)> = points
                .into_iter()
                .filter(|p| !is_stale_marker(p.1))
                .collect();
            let histograms = points.iter().filter(|p| ev.is_histogram(p.1)).count();
            if histograms > 0 && histograms < points.len() {
                ev.warn(format!(
                    "encountered a mix of histograms and floats for metric name {}",
                    super::native::metric_name(&labels)
                ));
                return None;
            }
            let next = points.partition_point(|p| p.0 < eff);
            if histograms > 0 {
                let value = smoothed_histogram(ev, &points, next, eff, &labels)?;
                return Some(Element::new(labels, value));
            }
            let value = match (next.checked_sub(1), points.get(next)) {
                (_, Some(&(ts, v))) if ts == eff => v,
                (Some(prev), Some(&next)) => interpolate(points[prev], next, eff, false),
                (Some(prev), None) => points[prev].1,
                (None, _) => return None,
            };
            Some(Element::new(labels, value))
        })
        .collect()
}

/// `x smoothed` over histogram samples `points` (`next`: the first at or after
/// `eff`): the one at `eff`, else interpolated between its neighbours (as a counter
/// unless both are gauge histograms), else the last one with its counter-reset hint
/// made unknown. Mixed exponential and custom buckets: nothing, with Prometheus's
/// warning.
fn smoothed_histogram(
    ev: &Evaluator<'_>,
    points: &[(i64, f64)],
    next: usize,
    eff: i64,
    labels: &Labels,
) -> Option<f64> {
    use crate::histogram::CounterResetHint;
    let at = |i: usize| Some((points[i].0, ev.histogram(points[i].1)?));
    match (next.checked_sub(1), points.get(next)) {
        (_, Some(&(ts, v))) if ts == eff => Some(v),
        (Some(prev), Some(_)) => {
            let ((t1, h1), (t2, h2)) = (at(prev)?, at(next)?);
            if h1.uses_custom_buckets() != h2.uses_custom_buckets() {
                ev.warn(format!(
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
                    super::native::metric_name(labels)
                ));
                return None;
            }
            let counter = h1.counter_reset_hint != CounterResetHint::Gauge
                || h2.counter_reset_hint != CounterResetHint::Gauge;
            let h = super::native::interpolate_histograms(
                ev,
                (t1, &h1),
                (t2, &h2),
                eff,
                counter,
                labels,
            )?;
            Some(ev.boxed(h))
        }
        (Some(prev), None) => {
            let mut h = at(prev)?.1.as_ref().clone();
            h.counter_reset_hint = CounterResetHint::Unknown;
            Some(ev.boxed(h))
        }
        (None, _) => None,
    }
}

/// The value at `t` on the line between samples `a` and `b`; for a counter that
/// reset between them, the line starts from zero at `a`.
pub fn interpolate(a: (i64, f64), b: (i64, f64), t: i64, counter: bool) -> f64 {
    let y1 = if counter && b.1 < a.1 { 0.0 } else { a.1 };
    y1 + (b.1 - y1) * (t - a.0) as f64 / (b.0 - a.0) as f64
}

/// A range-vector argument with the window it was taken over (needed by `rate`'s
/// extrapolation).
pub struct RangeArg {
    /// The series; none is empty. With a [`SelectorModifier`], the samples read
    /// around the window too (see [`VectorSel::extra_reads`]).
    pub series: Vec<Series>,
    /// The window's inclusive end, ms.
    pub window_end: i64,
    /// The window's length, ms; the window is `(window_end - range_ms, window_end]`.
    pub range_ms: i64,
    /// `anchored` / `smoothed`, if the selector has it.
    pub modifier: Option<SelectorModifier>,
}

impl RangeArg {
    /// The samples a function other than `rate`/`increase`/`delta` sees: as read for
    /// a plain window; for a modified one, the samples inside it plus one point
    /// exactly on each edge (Prometheus's `extendFloats`).
    pub fn window_series(self) -> Vec<Series> {
        let Some(modifier) = self.modifier else {
            return self.series;
        };
        let (start, end) = (self.window_end - self.range_ms, self.window_end);
        let smoothed = modifier == SelectorModifier::Smoothed;
        self.series
            .into_iter()
            .filter_map(|s| {
                let points = with_edges(&s.points, start, end, smoothed)?;
                Some(Series {
                    labels: s.labels,
                    points,
                })
            })
            .collect()
    }
}

/// The edges of a modified window `(start, end]` over `points` (sorted, non-empty):
/// indices of the sample that stands for the start (the last at or before it, else
/// the first) and of the one that stands for the end (the last; when smoothing, the
/// first at or after the end, else the last). `None` when nothing lies after `start`.
pub fn edge_indices(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    smoothed: bool,
) -> Option<(usize, usize)> {
    let n = points.len();
    let head = &points[..n.checked_sub(1)?];
    let first = head.partition_point(|p| p.0 <= start).saturating_sub(1);
    let last = if smoothed {
        head.partition_point(|p| p.0 < end)
    } else {
        n - 1
    };
    (points[last].0 > start).then_some((first, last))
}

/// The values at the window edges: the edge samples', or (smoothing) interpolated
/// between the samples around each edge.
pub fn edge_values(
    points: &[(i64, f64)],
    (first, last): (usize, usize),
    start: i64,
    end: i64,
    smoothed: bool,
    counter: bool,
) -> (f64, f64) {
    let left = if smoothed && points[first].0 < start {
        interpolate(points[first], points[first + 1], start, counter)
    } else {
        points[first].1
    };
    let right = if smoothed && last > 0 && points[last].0 > end {
        interpolate(points[last - 1], points[last], end, counter)
    } else {
        points[last].1
    };
    (left, right)
}

/// The samples strictly inside `(start, end)` between the edge samples.
pub fn inner_points(
    points: &[(i64, f64)],
    (first, last): (usize, usize),
    start: i64,
    end: i64,
) -> &[(i64, f64)] {
    let lo = if points[first].0 <= start {
        first + 1
    } else {
        first
    };
    let hi = if points[last].0 >= end {
        last
    } else {
        last + 1
    };
    if lo < hi {
        &points[lo..hi]
    } else {
        &[]
    }
}

fn with_edges(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    smoothed: bool,
) -> Option<Vec<(i64, f64)>> {
    let edges = edge_indices(points, start, end, smoothed)?;
    let (left, right) = edge_values(points, edges, start, end, smoothed, false);
    let inner = inner_points(points, edges, start, end);
    let mut out = Vec::with_capacity(inner.len() + 2);
    out.push((start, left));
    out.extend_from_slice(inner);
    out.push((end, right));
    Some(out)
}

/// Evaluates a matrix selector or subquery at `t`.
pub fn range_arg(ev: &Evaluator<'_>, plan: &Plan, t: i64) -> EvalResult<RangeArg> {
    match plan {
        Plan::Matrix { sel, range_ms } => {
            let end = effective_time(ev, sel.at, sel.offset_ms, t);
            let (before, after) = sel.extra_reads(ev.lookback_ms, true);
            let (lo, hi) = (end - range_ms - before, end + after);
            let mut series = Vec::new();
            let mut held = Ok(());
            ev.source
                .select_each(&sel.selector, lo + 1, hi, &mut |labels, points| {
                    let points = range_window(points, lo, hi).into_owned();
                    if held.is_ok() && !points.is_empty() {
                        // Every point of the window is held (`--query.max-samples`).
                        held = ev.samples.take(points.len());
                        series.push(Series {
                            labels: labels.clone(),
                            points,
                        });
                    }
                });
            held?;
            Ok(RangeArg {
                series,
                window_end: end,
                range_ms: *range_ms,
                modifier: sel.modifier,
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
                            let value = super::native::hint_unknown(ev, e.value);
                            out.entry(e.labels).or_default().push((ts, value));
                        }
                    }
                    Value::Scalar(v) => out.entry(Arc::default()).or_default().push((ts, v)),
                    _ => {
                        return Err(EvalError::Unsupported(
                            "subquery of a non-vector expression".into(),
                        ))
                    }
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
                modifier: None,
            })
        }
        _ => Err(EvalError::Unsupported(
            "expected a range vector argument".into(),
        )),
    }
}
