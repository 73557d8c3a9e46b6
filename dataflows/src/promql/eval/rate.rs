//! The rate family: `rate`, `increase`, `delta` (one extrapolation, [`extrapolated`];
//! over an `anchored` / `smoothed` window, [`extended`]), `irate`, `idelta`
//! ([`instant_delta`]), `deriv`, `predict_linear`, `resets`, `changes`.
//!
//! Mirrors Prometheus's `extrapolatedRate`, `extendedRate`, `instantValue`,
//! `funcDeriv`, `funcPredictLinear` (promql/functions.go).
//!
//! Start timestamps (Prometheus 3.x, `use-start-timestamps`): `rate`, `increase`,
//! `irate` and `resets` over a plain window also read each sample's start timestamp
//! (`sts`, aligned with the points by [`aligned_starts`]; empty when the series has
//! none, which behaves exactly as without them): a start after the previous sample
//! is a counter reset ([`is_start_reset`]), and a first sample whose start lies
//! inside the window is taken to start from zero there instead of extrapolating.

use super::math::kahan_inc;
use super::selector::{edge_indices, edge_values, inner_points, RangeArg};
use crate::promql::plan::SelectorModifier;

/// `rate`/`increase` (`counter`) and `delta`: [`extended`] over an `anchored` /
/// `smoothed` window, else [`extrapolated`].
pub fn increase_family(
    points: &[(i64, f64)],
    sts: &[i64],
    arg: &RangeArg,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    match arg.modifier {
        Some(_) => extended(points, arg, counter, per_second),
        None => extrapolated(points, sts, arg, counter, per_second),
    }
}

/// The start timestamps of `points` (time-sorted) from `starts`, the `(timestamp,
/// start)` pairs of those samples that have one (time-sorted): one per point, 0 for
/// none; empty when `starts` is.
pub fn aligned_starts(points: &[(i64, f64)], starts: &[(i64, i64)]) -> Vec<i64> {
    if starts.is_empty() {
        return Vec::new();
    }
    let mut next = starts.iter().peekable();
    points
        .iter()
        .map(|&(t, _)| {
            while next.next_if(|s| s.0 < t).is_some() {}
            next.next_if(|s| s.0 == t).map_or(0, |s| s.1)
        })
        .collect()
}

/// Whether a counter was reset between a sample at `prev_t` (start `prev_st`) and the
/// next one at `t` (start `st`), by their start timestamps (0: unknown). A start at
/// the previous sample's time is a reset for a delta series (the previous sample had
/// a start of its own) but not for a cumulative one whose start is unknown (OTel).
pub fn is_start_reset(prev_st: i64, prev_t: i64, st: i64, t: i64) -> bool {
    if st == 0 || st >= t || st < prev_t {
        return false;
    }
    if st > prev_t {
        return true;
    }
    // A previous start after its own sample is invalid: taken as unknown.
    prev_st <= prev_t && prev_st != 0 && prev_st != prev_t
}

/// Whether some sample of `points` starts before the previous sample's time without
/// sharing its start (Prometheus's start-time overlap warning).
pub fn start_overlap(points: &[(i64, f64)], sts: &[i64]) -> bool {
    (1..sts.len().min(points.len()))
        .any(|i| sts[i] != 0 && sts[i] < points[i - 1].0 && sts[i] != sts[i - 1])
}

/// Whether the counter reset between `points[i - 1]` and `points[i]`: its value went
/// down or its start timestamp says so.
fn reset_at(points: &[(i64, f64)], sts: &[i64], i: usize) -> bool {
    points[i].1 < points[i - 1].1
        || (i < sts.len() && is_start_reset(sts[i - 1], points[i - 1].0, sts[i], points[i].0))
}

/// `rate`/`increase` (`counter`) and `delta`, with Prometheus's extrapolation to the
/// window edges.
///
/// ```promql
/// rate(x[5m])       # counter increase over (t-5m, t], extrapolated, per second
/// increase(x[5m])   # the same, not divided by the range
/// delta(g[5m])      # gauge difference, extrapolated
/// ```
pub fn extrapolated(
    points: &[(i64, f64)],
    sts: &[i64],
    arg: &RangeArg,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    let (&(first_t, first_v), &(last_t, last_v)) = (points.first()?, points.last()?);
    let mut result = last_v - first_v;
    if counter {
        for i in 1..points.len() {
            if reset_at(points, sts, i) {
                result += points[i - 1].1;
            }
        }
    }
    let span = Span {
        first_t,
        last_t,
        samples: points.len(),
        first: first_v,
        increase: result,
    };
    let (factor, from_start) =
        extrapolation(&span, sts.first().copied(), arg, counter, per_second)?;
    if from_start {
        result += first_v;
    }
    Some(result * factor)
}

/// What [`extrapolation`] needs to know of a window's samples: the first and last
/// sample times, how many there are, the first value and the increase (for
/// histograms: their counts).
pub struct Span {
    /// Time of the first sample, ms.
    pub first_t: i64,
    /// Time of the last sample, ms.
    pub last_t: i64,
    /// Samples in the window.
    pub samples: usize,
    /// The first value.
    pub first: f64,
    /// The increase (last minus first, plus what resets lost).
    pub increase: f64,
}

/// Prometheus's extrapolation of `extrapolatedRate`: the factor to scale a window's
/// increase by, and whether the first sample's own value belongs to the increase (its
/// start timestamp `start` lies inside the window: the counter was zero there, no
/// extrapolation to the left). `None`: no result (fewer than two samples, without
/// such a start).
pub fn extrapolation(
    span: &Span,
    start: Option<i64>,
    arg: &RangeArg,
    counter: bool,
    per_second: bool,
) -> Option<(f64, bool)> {
    let Span {
        first_t,
        last_t,
        samples,
        first: first_v,
        increase: result,
    } = *span;
    let range_start = arg.window_end - arg.range_ms;
    let range_end = arg.window_end;
    let mut from_start = false;
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let mut sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = match samples {
        0 | 1 => 0.0,
        n => sampled / (n - 1) as f64,
    };
    let threshold = avg_step * 1.1;
    match start {
        // The first sample starts inside the window: the counter was zero at its
        // start, no extrapolation to the left (with one sample, none to the right).
        Some(st) if counter && st != 0 && st > range_start && st < first_t => {
            to_start = 0.0;
            sampled = (last_t - st) as f64 / 1000.0;
            from_start = true;
        }
        _ if samples < 2 => return None,
        _ => {
            if to_start >= threshold {
                to_start = avg_step / 2.0;
            }
            if counter && result > 0.0 && first_v >= 0.0 {
                let to_zero = sampled * (first_v / result);
                if to_zero < to_start {
                    to_start = to_zero;
                }
            }
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if per_second {
        factor /= arg.range_ms as f64 / 1000.0;
    }
    Some((factor, from_start))
}

/// `rate`/`increase` (`counter`) and `delta` over an `anchored` or `smoothed` window:
/// no extrapolation; the difference between the values at the window edges (the
/// edge samples, or interpolated onto the edges), plus for counters every reset
/// between them.
///
/// ```promql
/// increase(x[5m] anchored)   # from the last sample at or before t-5m to the last one
/// rate(x[5m] smoothed)       # from x interpolated at t-5m to x interpolated at t
/// ```
pub fn extended(
    points: &[(i64, f64)],
    arg: &RangeArg,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    let smoothed = arg.modifier == Some(SelectorModifier::Smoothed);
    let (start, end) = (arg.window_end - arg.range_ms, arg.window_end);
    let edges = edge_indices(points, start, end, smoothed)?;
    if smoothed && points[edges.0].0 > end {
        return None;
    }
    let (left, right) = edge_values(points, edges, start, end, smoothed, counter);
    let mut result = right - left;
    if counter {
        let mut prev = left;
        for &(_, v) in inner_points(points, edges, start, end) {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
        if right < prev {
            result += prev;
        }
    }
    if per_second {
        result /= arg.range_ms as f64 / 1000.0;
    }
    Some(result)
}

/// `irate` (`rate`) and `idelta`: from the last two samples only.
pub fn instant_delta(points: &[(i64, f64)], sts: &[i64], rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len();
    let (prev_t, prev_v) = points[n - 2];
    let (last_t, last_v) = points[n - 1];
    let mut result = if rate && reset_at(points, sts, n - 1) {
        last_v
    } else {
        last_v - prev_v
    };
    let interval = last_t - prev_t;
    if interval == 0 {
        return None;
    }
    if rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_ms`.
pub fn linear_regression(points: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_ms) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// `deriv(g[5m])`: per-second slope of the least-squares line.
pub fn deriv(points: &[(i64, f64)]) -> Option<f64> {
    (points.len() >= 2).then(|| linear_regression(points, points[0].0).0)
}

/// `predict_linear(g[5m], s)`: the line's value `s` seconds after the evaluation time.
pub fn predict_linear(points: &[(i64, f64)], eval_ms: i64, seconds: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(points, eval_ms);
    Some(intercept + slope * seconds)
}

/// `resets(x[5m])`: number of decreases (and of resets the start timestamps show).
pub fn resets(points: &[(i64, f64)], sts: &[i64]) -> f64 {
    (1..points.len())
        .filter(|&i| reset_at(points, sts, i))
        .count() as f64
}

/// `changes(x[5m])`: number of value changes (NaN to NaN is no change).
pub fn changes(points: &[(i64, f64)]) -> f64 {
    points
        .windows(2)
        .filter(|w| w[1].1 != w[0].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
        .count() as f64
}
