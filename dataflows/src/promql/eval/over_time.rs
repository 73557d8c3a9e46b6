//! `*_over_time` functions: one value per series from the samples in its window.
//!
//! ```promql
//! avg_over_time(x[5m])  sum_over_time  count_over_time  min_over_time  max_over_time
//! last_over_time  present_over_time  stddev_over_time  stdvar_over_time
//! quantile_over_time(0.9, x[5m])  mad_over_time(x[5m])
//! double_exponential_smoothing(x[5m], sf, tf)   # alias holt_winters
//! ```
//!
//! Mirrors the `funcXxxOverTime` functions of Prometheus (promql/functions.go).

use super::math;
use super::EvalError;

/// Applies the named `*_over_time` aggregation to one series' window; `None` means
/// "no output for this series". `param` is φ for `quantile_over_time`.
pub fn apply(name: &str, points: &[(i64, f64)], param: f64) -> Option<f64> {
    let (&(first_ts, first), &(last_ts, last)) = (points.first()?, points.last()?);
    let values = || points.iter().map(|p| p.1);
    Some(match name {
        "avg_over_time" => math::mean(values()),
        "sum_over_time" => math::sum(values()),
        "count_over_time" => points.len() as f64,
        "min_over_time" => math::min(values()),
        "max_over_time" => math::max(values()),
        "last_over_time" => last,
        "first_over_time" => first,
        "ts_of_first_over_time" => first_ts as f64 / 1000.0,
        "ts_of_last_over_time" => last_ts as f64 / 1000.0,
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            let max = name == "ts_of_max_over_time";
            let mut best = points[0];
            for &p in &points[1..] {
                if (max && p.1 > best.1) || (!max && p.1 < best.1) || best.1.is_nan() {
                    best = p;
                }
            }
            best.0 as f64 / 1000.0
        }
        "present_over_time" => 1.0,
        "stddev_over_time" => math::variance(values()).sqrt(),
        "stdvar_over_time" => math::variance(values()),
        "quantile_over_time" => math::quantile(param, &mut values().collect::<Vec<f64>>()),
        "mad_over_time" if values().any(|v| v.is_nan()) => f64::NAN,
        "mad_over_time" => {
            let median = math::quantile(0.5, &mut values().collect::<Vec<f64>>());
            let mut dev: Vec<f64> = values().map(|x| (x - median).abs()).collect();
            math::quantile(0.5, &mut dev)
        }
        _ => return None,
    })
}

/// Whether `name` is handled by [`apply`].
pub fn is_over_time(name: &str) -> bool {
    matches!(
        name,
        "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "last_over_time"
            | "first_over_time"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
            | "ts_of_min_over_time"
            | "ts_of_max_over_time"
            | "present_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "quantile_over_time"
            | "mad_over_time"
    )
}

/// `double_exponential_smoothing(x[r], sf, tf)`.
pub fn double_exponential_smoothing(
    points: &[(i64, f64)],
    sf: f64,
    tf: f64,
) -> Result<Option<f64>, EvalError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(EvalError::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(EvalError::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
        )));
    }
    if points.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, &(_, v)) in points.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}
