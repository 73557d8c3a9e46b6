//! Checking an eval's outcome against its expectation, as upstream's runner does.
//!
//! Shared by both conformance modes (ad-hoc evaluation and maintained rules), so that
//! they judge results by exactly the same rules: floats compare with a relative
//! tolerance of 1e-6 (NaN equals NaN, a stale marker only a stale marker), native
//! histograms compacted, field by field with that tolerance (the counter-reset hint
//! only when the expectation names one), vectors by label set (and order when
//! `expect ordered`), matrices point by point, expected failures by message or regex.
//! A result's histograms are read through a [`Resolve`] (the evaluator's handles).

use super::{Eval, EvalTime, Expected, FailMatch, Point};
use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::promql::durations::QueryTimes;
use crate::promql::eval::{Annotations, Element, EvalError, Series, Value};
use crate::promql::plan::{self, Plan, PlanError};
use crate::sample::is_stale_marker;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The histogram a result value names, if any.
pub type Resolve<'a> = &'a dyn Fn(f64) -> Option<Arc<FloatHistogram>>;

/// Whether a result value is the expected point.
fn point_eq(got: f64, want: &Point, resolve: Resolve<'_>) -> bool {
    match (resolve(got), want) {
        (None, Point::Float(w)) => float_eq(got, *w),
        (Some(h), Point::Histogram { h: w, hint_set }) => w.same(&h, *hint_set, float_eq),
        _ => false,
    }
}

/// A result value as the scripts write it.
fn show(v: f64, resolve: Resolve<'_>) -> String {
    match resolve(v) {
        Some(h) => h.to_string(),
        None => v.to_string(),
    }
}

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
        Err(PlanError::Invalid(m)) => Err(check(e, Err(EvalError::Execution(m)))),
        Err(err @ PlanError::NotSupported(_)) => Err(Err(err.to_string())),
        Err(err @ (PlanError::Parse(_) | PlanError::ParseAt { .. } | PlanError::Matcher(_))) => {
            Err(Err(format!("parser limitation: {err}")))
        }
    }
}

fn show_vector(v: &[Element], resolve: Resolve<'_>) -> String {
    let items: Vec<String> = v
        .iter()
        .take(4)
        .map(|e| format!("{} {}", e.labels, show(e.value, resolve)))
        .collect();
    items.join("; ")
}

/// Compares an instant vector with the expected series lines.
pub fn compare_vector(
    got: &[Element],
    exp: &Expected,
    ordered: bool,
    resolve: Resolve<'_>,
) -> Result<(), String> {
    let Expected::Series(exp) = exp else {
        return Err(format!("expected a scalar, got a vector of {}", got.len()));
    };
    if got.len() != exp.len() {
        return Err(format!(
            "expected {} elements, got {}: {}",
            exp.len(),
            got.len(),
            show_vector(got, resolve)
        ));
    }
    let by_labels: HashMap<&Labels, f64> = got.iter().map(|e| (&*e.labels, e.value)).collect();
    for (i, (labels, points)) in exp.iter().enumerate() {
        let want = points
            .first()
            .cloned()
            .flatten()
            .unwrap_or(Point::Float(f64::NAN));
        let Some(&v) = by_labels.get(labels) else {
            return Err(format!(
                "missing {labels}; got {}",
                show_vector(got, resolve)
            ));
        };
        if !point_eq(v, &want, resolve) {
            return Err(format!(
                "{labels}: expected {}, got {}",
                show_point(&want),
                show(v, resolve)
            ));
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

fn show_point(p: &Point) -> String {
    match p {
        Point::Float(v) => v.to_string(),
        Point::Histogram { h, .. } => h.to_string(),
    }
}

/// Compares a matrix with the expected series lines, point `i` at `start + i * step`.
pub fn compare_matrix(
    got: &[Series],
    exp: &Expected,
    start: i64,
    step: i64,
    resolve: Resolve<'_>,
) -> Result<(), String> {
    let Expected::Series(exp) = exp else {
        return Err("expected a scalar, got a matrix".into());
    };
    let by_labels: HashMap<&Labels, &Series> = got.iter().map(|s| (&*s.labels, s)).collect();
    let mut seen = HashSet::new();
    for (labels, points) in exp {
        seen.insert(labels);
        let want: Vec<(i64, &Point)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (start + i as i64 * step, v)))
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
                .any(|(g, w)| g.0 != w.0 || !point_eq(g.1, w.1, resolve))
        {
            let want: Vec<(i64, String)> = want.iter().map(|(t, p)| (*t, show_point(p))).collect();
            let got: Vec<(i64, String)> = s
                .points
                .iter()
                .map(|(t, v)| (*t, show(*v, resolve)))
                .collect();
            return Err(format!("{labels}: expected {want:?}, got {got:?}"));
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
/// matrix): `Ok(())` is a pass, `Err` the reason it failed. A value that is a
/// histogram handle is not one here (see [`check_with`]).
pub fn check(e: &Eval, result: Result<Value, EvalError>) -> Result<(), String> {
    check_with(e, result, &|_| None)
}

/// [`check`], with the result's histograms read through `resolve`.
pub fn check_with(
    e: &Eval,
    result: Result<Value, EvalError>,
    resolve: Resolve<'_>,
) -> Result<(), String> {
    if let Some(fail) = &e.fail {
        return match (result, fail) {
            (Ok(_), _) => Err("expected failure, got a result".into()),
            (Err(_), FailMatch::Any) => Ok(()),
            (Err(err), FailMatch::Message(m)) if err.to_string().trim() == m.trim() => Ok(()),
            (Err(err), FailMatch::Regex(r)) if regex_find(r, &err.to_string()) => Ok(()),
            (Err(err), _) => Err(format!("wrong error message: {err}")),
        };
    }
    let value = result.map_err(|err| format!("error: {err}"))?;
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
        (Value::Vector(v), _) => compare_vector(&v, &e.expected, e.ordered, resolve),
        (
            Value::Matrix(m),
            EvalTime::Range {
                start_ms, step_ms, ..
            },
        ) => compare_matrix(&m, &e.expected, *start_ms, *step_ms, resolve),
        (Value::Matrix(m), EvalTime::Instant { .. }) => match e.range_vector {
            Some((start, _, step)) => compare_matrix(&m, &e.expected, start, step, resolve),
            None => Err("got a range vector".into()),
        },
        (Value::String(s), _) => Err(format!("got string {s:?}")),
    }
}

/// An annotation text without Prometheus's `(line:col)` suffix (promflow's have none).
fn without_position(text: &str) -> &str {
    match text
        .trim_end()
        .strip_suffix(')')
        .and_then(|t| t.rsplit_once(" ("))
    {
        Some((head, pos)) if pos.split(':').all(|n| n.parse::<u32>().is_ok()) => head.trim(),
        _ => text.trim(),
    }
}

/// A directive's regex without a trailing position pattern (`\([0-9]+:[0-9]+\)`).
fn regex_without_position(re: &str) -> &str {
    re.trim_end()
        .strip_suffix("\\)")
        .and_then(|r| r.rfind("\\(").map(|i| r[..i].trim_end()))
        .unwrap_or(re)
}

/// Judges the annotations of an eval against its `expect warn|info|no_warn|no_info`
/// directives, as upstream's runner: `no_…` means none of that level; `warn`/`info`
/// means at least one, and with `msg:`/`regex:` each directive matches some annotation
/// and every annotation matches some directive. Positions are not compared. `None`
/// when the eval has no such directive.
pub fn check_annotations(e: &Eval, got: &Annotations) -> Option<Result<(), String>> {
    if e.annotations.is_empty() {
        return None;
    }
    let check = |level: &str, texts: &std::collections::BTreeSet<String>| -> Result<(), String> {
        let texts: Vec<&str> = texts.iter().map(|t| without_position(t)).collect();
        let none = format!("no_{level}");
        if e.annotations.iter().any(|d| d.trim() == none) && !texts.is_empty() {
            return Err(format!("expected no {level}, got {texts:?}"));
        }
        let directives: Vec<&str> = e
            .annotations
            .iter()
            .filter_map(|d| d.strip_prefix(level))
            .filter(|rest| rest.is_empty() || rest.starts_with(' '))
            .map(str::trim)
            .collect();
        if directives.is_empty() {
            return Ok(());
        }
        if texts.is_empty() {
            return Err(format!("expected a {level} annotation, got none"));
        }
        let matches = |d: &str, t: &str| match (d.strip_prefix("msg:"), d.strip_prefix("regex:")) {
            (Some(m), _) => without_position(m.trim()) == t,
            (_, Some(r)) => regex_find(regex_without_position(r.trim()), t),
            _ => true,
        };
        for d in &directives {
            if !texts.iter().any(|t| matches(d, t)) {
                return Err(format!("no {level} matches {d:?}; got {texts:?}"));
            }
        }
        let specific: Vec<&&str> = directives.iter().filter(|d| !d.is_empty()).collect();
        if !specific.is_empty() {
            if let Some(t) = texts
                .iter()
                .find(|t| !specific.iter().any(|d| matches(d, t)))
            {
                return Err(format!("unexpected {level} {t:?}"));
            }
        }
        Ok(())
    };
    Some(check("warn", &got.warnings).and_then(|()| check("info", &got.infos)))
}
