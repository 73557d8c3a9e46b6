//! The rate family: `rate`, `increase`, `delta` (one extrapolation, [`extrapolated`];
//! over an `anchored` / `smoothed` window, [`extended`]), `irate`, `idelta`
//! ([`instant_delta`]), `deriv`, `predict_linear`, `resets`, `changes`.
//!
//! Mirrors Prometheus's `extrapolatedRate`, `extendedRate`, `instantValue`,
//! `funcDeriv`, `funcPredictLinear` (promql/functions.go).

use super::math::kahan_inc;
use super::selector::{edge_indices, edge_values, inner_points, RangeArg};
use crate::promql::plan::SelectorModifier;

/// `rate`/`increase` (`counter`) and `delta`: [`extended`] over an `anchored` /
/// `smoothed` window, else [`extrapolated`].
pub fn increase_family(
    points: &[(i64, f64)],
    arg: &RangeArg,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    match arg.modifier {
        Some(_) => extended(points, arg, counter, per_second),
        None => extrapolated(points, arg, counter, per_second),
    }
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
    arg: &RangeArg,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let range_start = arg.window_end - arg.range_ms;
    let range_end = arg.window_end;
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if counter {
        let mut prev = 0.0;
        for &(_, v) in points {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = sampled / (points.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= arg.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
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
pub fn instant_delta(points: &[(i64, f64)], rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = points[points.len() - 2];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = if rate && last_v < prev_v {
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

/// `resets(x[5m])`: number of decreases.
pub fn resets(points: &[(i64, f64)]) -> f64 {
    points.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
}

/// `changes(x[5m])`: number of value changes (NaN to NaN is no change).
pub fn changes(points: &[(i64, f64)]) -> f64 {
    points
        .windows(2)
        .filter(|w| w[1].1 != w[0].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
        .count() as f64
}
