//! Checking an eval's outcome against its expectation, as upstream's runner does.
//!
//! Shared by both conformance modes (ad-hoc evaluation and maintained rules), so that
//! they judge results by exactly the same rules: floats compare with a relative
//! tolerance of 1e-6 (NaN equals NaN, a stale marker only a stale marker), vectors by
//! label set (and order when `expect ordered`), matrices point by point, expected
//! failures by message or regex.

use super::{Eval, EvalTime, Expected, FailMatch, Point};
use crate::labels::Labels;
use crate::promql::durations::QueryTimes;
use crate::promql::eval::{Element, EvalError, Series, Value};
use crate::promql::plan::{self, Plan, PlanError};
use crate::sample::is_stale_marker;
use std::collections::{HashMap, HashSet};

/// Float equality as upstream's runner: NaN equals NaN (stale only equals stale),
/// else relative difference below 1e-6, exact near zero.
pub fn float_eq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan() && is_stale_marker(a) == is_stale_marker(b);
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

/// The `step()`/`range()` values of an eval, for duration expressions.
pub fn query_times(e: &Eval) -> QueryTimes {
    match e.time {
        EvalTime::Instant { .. } => QueryTimes::default(),
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => QueryTimes {
            step_ms,
            range_ms: end_ms - start_ms,
        },
    }
}

/// Plans an eval's expression. `Err` decides the eval without running it: an error
/// Prometheus raises when it creates the query is judged like a runtime error
/// (`Ok(())` when the eval expects it), anything else is the failure reason.
pub fn plan_eval(e: &Eval) -> Result<Plan, Result<(), String>> {
    match plan::parse_with(&e.expr, query_times(e)) {
        Ok(p) => Ok(p),
        Err(PlanError::Invalid(m)) => Err(check(e, Err(EvalError(m)))),
        Err(err @ PlanError::NotSupported(_)) => Err(Err(err.to_string())),
        Err(PlanError::Parse(m)) => Err(Err(format!("parser limitation: {m}"))),
    }
}

fn expected_floats(points: &[Option<Point>]) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| match p {
            Some(Point::Float(v)) => Some(*v),
            _ => None,
        })
        .collect()
}

fn show_vector(v: &[Element]) -> String {
    let items: Vec<String> = v
        .iter()
        .take(4)
        .map(|e| format!("{} {}", e.labels, e.value))
        .collect();
    items.join("; ")
}

/// Compares an instant vector with the expected series lines.
pub fn compare_vector(got: &[Element], exp: &Expected, ordered: bool) -> Result<(), String> {
    let Expected::Series(exp) = exp else {
        return Err(format!("expected a scalar, got a vector of {}", got.len()));
    };
    if got.len() != exp.len() {
        return Err(format!(
            "expected {} elements, got {}: {}",
            exp.len(),
            got.len(),
            show_vector(got)
        ));
    }
    let by_labels: HashMap<&Labels, f64> = got.iter().map(|e| (&*e.labels, e.value)).collect();
    for (i, (labels, points)) in exp.iter().enumerate() {
        let want = expected_floats(points)
            .first()
            .copied()
            .flatten()
            .unwrap_or(f64::NAN);
        let Some(&v) = by_labels.get(labels) else {
            return Err(format!("missing {labels}; got {}", show_vector(got)));
        };
        if !float_eq(v, want) {
            return Err(format!("{labels}: expected {want}, got {v}"));
        }
        if ordered && *got[i].labels != *labels {
            return Err(format!(
                "order: expected {labels} at {i}, got {}",
                got[i].labels
            ));
        }
    }
    Ok(())
}

/// Compares a matrix with the expected series lines, point `i` at `start + i * step`.
pub fn compare_matrix(got: &[Series], exp: &Expected, start: i64, step: i64) -> Result<(), String> {
    let Expected::Series(exp) = exp else {
        return Err("expected a scalar, got a matrix".into());
    };
    let by_labels: HashMap<&Labels, &Series> = got.iter().map(|s| (&*s.labels, s)).collect();
    let mut seen = HashSet::new();
    for (labels, points) in exp {
        seen.insert(labels);
        let want: Vec<(i64, f64)> = expected_floats(points)
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v)))
            .collect();
        let Some(s) = by_labels.get(labels) else {
            if want.is_empty() {
                continue;
            }
            return Err(format!("missing series {labels}"));
        };
        if s.points.len() != want.len()
            || s.points
                .iter()
                .zip(&want)
                .any(|(g, w)| g.0 != w.0 || !float_eq(g.1, w.1))
        {
            return Err(format!("{labels}: expected {want:?}, got {:?}", s.points));
        }
    }
    for s in got {
        if !seen.contains(&*s.labels) {
            return Err(format!("unexpected series {}", s.labels));
        }
    }
    Ok(())
}

/// Whether `text` contains a match of `re` (an invalid regex matches nothing).
fn regex_find(re: &str, text: &str) -> bool {
    regex::Regex::new(re)
        .map(|r| r.is_match(text))
        .unwrap_or(false)
}

/// Judges the result of an eval (an instant value, or for a range eval the assembled
/// matrix): `Ok(())` is a pass, `Err` the reason it failed.
pub fn check(e: &Eval, result: Result<Value, EvalError>) -> Result<(), String> {
    if let Some(fail) = &e.fail {
        return match (result, fail) {
            (Ok(_), _) => Err("expected failure, got a result".into()),
            (Err(_), FailMatch::Any) => Ok(()),
            (Err(err), FailMatch::Message(m)) if err.0.trim() == m.trim() => Ok(()),
            (Err(err), FailMatch::Regex(r)) if regex_find(r, &err.0) => Ok(()),
            (Err(err), _) => Err(format!("wrong error message: {}", err.0)),
        };
    }
    let value = result.map_err(|err| format!("error: {}", err.0))?;
    if let Some(s) = &e.string {
        return match value {
            Value::String(got) if got == *s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    match (value, &e.time) {
        (Value::Scalar(v), _) => match e.expected {
            Expected::Scalar(want) if float_eq(v, want) => Ok(()),
            _ => Err(format!("got scalar {v}")),
        },
        (Value::Vector(v), _) => compare_vector(&v, &e.expected, e.ordered),
        (
            Value::Matrix(m),
            EvalTime::Range {
                start_ms, step_ms, ..
            },
        ) => compare_matrix(&m, &e.expected, *start_ms, *step_ms),
        (Value::Matrix(m), EvalTime::Instant { .. }) => match e.range_vector {
            Some((start, _, step)) => compare_matrix(&m, &e.expected, start, step),
            None => Err("got a range vector".into()),
        },
        (Value::String(s), _) => Err(format!("got string {s:?}")),
    }
}
