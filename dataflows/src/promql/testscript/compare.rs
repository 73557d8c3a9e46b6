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
pub fn plan_eval(e: &Eval) -> Result<Plan, Result<(), Mismatch>> {
    match plan::parse_with(&e.expr, query_times(e)) {
        Ok(p) => Ok(p),
        Err(PlanError::Invalid(m)) => Err(check(e, Err(EvalError::Execution(m)))),
        Err(err @ PlanError::NotSupported(_)) => Err(Err(Mismatch::NotSupported(err))),
        Err(err @ (PlanError::Parse(_) | PlanError::ParseAt { .. } | PlanError::Matcher(_))) => {
            Err(Err(Mismatch::ParserLimitation(err)))
        }
    }
}

/// Why an eval failed: what its result (or its planning, or its annotations) showed
/// against what the script expected. Its text is the report's failure reason.
#[derive(Clone, Debug)]
pub enum Mismatch {
    /// promflow does not support the expression.
    NotSupported(PlanError),
    /// promflow's parser refuses what Prometheus's accepts.
    ParserLimitation(PlanError),
    /// A scalar expected, a vector of this many elements got.
    ScalarExpectedGotVector(usize),
    /// The vector's length differs (`shown`: its first elements).
    ElementCount {
        /// Expected elements.
        want: usize,
        /// Elements got.
        got: usize,
        /// Up to four elements got, as `labels value; …`.
        shown: String,
    },
    /// An expected series is not in the vector.
    MissingElement {
        /// The series.
        labels: Labels,
        /// Up to four elements got.
        shown: String,
    },
    /// A series has another value.
    Value {
        /// The series.
        labels: Labels,
        /// The value expected, as shown.
        want: String,
        /// The value got, as shown.
        got: String,
    },
    /// `eval_ordered`: another series at this position.
    Order {
        /// The series expected.
        labels: Labels,
        /// The position.
        index: usize,
        /// The series got.
        got: Labels,
    },
    /// A scalar expected, a matrix got.
    ScalarExpectedGotMatrix,
    /// An expected series is not in the matrix.
    MissingSeries(Labels),
    /// A series of the matrix has other points: (time, value as shown).
    Points {
        /// The series.
        labels: Labels,
        /// The points expected.
        want: Vec<(i64, String)>,
        /// The points got.
        got: Vec<(i64, String)>,
    },
    /// A series of the matrix that was not expected.
    UnexpectedSeries(Labels),
    /// A failure expected, a result got.
    ExpectedFailure,
    /// A failure with another message than expected.
    WrongErrorMessage(EvalError),
    /// A result expected, a failure got.
    Error(EvalError),
    /// A string expected, something else got.
    ExpectedString {
        /// The string.
        want: String,
        /// The value got.
        got: Value,
    },
    /// A scalar got where it was not expected (or another scalar).
    GotScalar(f64),
    /// A range vector got from an instant eval without `expect range vector`.
    GotRangeVector,
    /// A string got where it was not expected.
    GotString(String),
    /// `no_warn` / `no_info`, and annotations of that level got.
    UnexpectedAnnotations {
        /// `warn` or `info`.
        level: &'static str,
        /// Their texts without position.
        texts: Vec<String>,
    },
    /// An annotation of that level expected, none got.
    NoAnnotation {
        /// `warn` or `info`.
        level: &'static str,
    },
    /// No annotation of that level matches a directive.
    NoMatch {
        /// `warn` or `info`.
        level: &'static str,
        /// The directive.
        directive: String,
        /// The texts got.
        texts: Vec<String>,
    },
    /// An annotation no directive of its level matches.
    UnexpectedAnnotation {
        /// `warn` or `info`.
        level: &'static str,
        /// Its text.
        text: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::NotSupported(err) => write!(f, "{err}"),
            Mismatch::ParserLimitation(err) => write!(f, "parser limitation: {err}"),
            Mismatch::ScalarExpectedGotVector(n) => {
                write!(f, "expected a scalar, got a vector of {n}")
            }
            Mismatch::ElementCount { want, got, shown } => {
                write!(f, "expected {want} elements, got {got}: {shown}")
            }
            Mismatch::MissingElement { labels, shown } => {
                write!(f, "missing {labels}; got {shown}")
            }
            Mismatch::Value { labels, want, got } => {
                write!(f, "{labels}: expected {want}, got {got}")
            }
            Mismatch::Order { labels, index, got } => {
                write!(f, "order: expected {labels} at {index}, got {got}")
            }
            Mismatch::ScalarExpectedGotMatrix => f.write_str("expected a scalar, got a matrix"),
            Mismatch::MissingSeries(labels) => write!(f, "missing series {labels}"),
            Mismatch::Points { labels, want, got } => {
                write!(f, "{labels}: expected {want:?}, got {got:?}")
            }
            Mismatch::UnexpectedSeries(labels) => write!(f, "unexpected series {labels}"),
            Mismatch::ExpectedFailure => f.write_str("expected failure, got a result"),
            Mismatch::WrongErrorMessage(err) => write!(f, "wrong error message: {err}"),
            Mismatch::Error(err) => write!(f, "error: {err}"),
            Mismatch::ExpectedString { want, got } => {
                write!(f, "expected string {want:?}, got {got:?}")
            }
            Mismatch::GotScalar(v) => write!(f, "got scalar {v}"),
            Mismatch::GotRangeVector => f.write_str("got a range vector"),
            Mismatch::GotString(s) => write!(f, "got string {s:?}"),
            Mismatch::UnexpectedAnnotations { level, texts } => {
                write!(f, "expected no {level}, got {texts:?}")
            }
            Mismatch::NoAnnotation { level } => {
                write!(f, "expected a {level} annotation, got none")
            }
            Mismatch::NoMatch {
                level,
                directive,
                texts,
            } => write!(f, "no {level} matches {directive:?}; got {texts:?}"),
            Mismatch::UnexpectedAnnotation { level, text } => {
                write!(f, "unexpected {level} {text:?}")
            }
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
) -> Result<(), Mismatch> {
    let Expected::Series(exp) = exp else {
        return Err(Mismatch::ScalarExpectedGotVector(got.len()));
    };
    if got.len() != exp.len() {
        return Err(Mismatch::ElementCount {
            want: exp.len(),
            got: got.len(),
            shown: show_vector(got, resolve),
        });
    }
    let by_labels: HashMap<&Labels, f64> = got.iter().map(|e| (&*e.labels, e.value)).collect();
    for (i, (labels, points)) in exp.iter().enumerate() {
        let want = points
            .first()
            .cloned()
            .flatten()
            .unwrap_or(Point::Float(f64::NAN));
        let Some(&v) = by_labels.get(labels) else {
            return Err(Mismatch::MissingElement {
                labels: labels.clone(),
                shown: show_vector(got, resolve),
            });
        };
        if !point_eq(v, &want, resolve) {
            return Err(Mismatch::Value {
                labels: labels.clone(),
                want: show_point(&want),
                got: show(v, resolve),
            });
        }
        if ordered && *got[i].labels != *labels {
            return Err(Mismatch::Order {
                labels: labels.clone(),
                index: i,
                got: (*got[i].labels).clone(),
            });
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
) -> Result<(), Mismatch> {
    let Expected::Series(exp) = exp else {
        return Err(Mismatch::ScalarExpectedGotMatrix);
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
            return Err(Mismatch::MissingSeries(labels.clone()));
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
            return Err(Mismatch::Points {
                labels: labels.clone(),
                want,
                got,
            });
        }
    }
    for s in got {
        if !seen.contains(&*s.labels) {
            return Err(Mismatch::UnexpectedSeries((*s.labels).clone()));
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
pub fn check(e: &Eval, result: Result<Value, EvalError>) -> Result<(), Mismatch> {
    check_with(e, result, &|_| None)
}

/// [`check`], with the result's histograms read through `resolve`.
pub fn check_with(
    e: &Eval,
    result: Result<Value, EvalError>,
    resolve: Resolve<'_>,
) -> Result<(), Mismatch> {
    if let Some(fail) = &e.fail {
        return match (result, fail) {
            (Ok(_), _) => Err(Mismatch::ExpectedFailure),
            (Err(_), FailMatch::Any) => Ok(()),
            (Err(err), FailMatch::Message(m)) if err.to_string().trim() == m.trim() => Ok(()),
            (Err(err), FailMatch::Regex(r)) if regex_find(r, &err.to_string()) => Ok(()),
            (Err(err), _) => Err(Mismatch::WrongErrorMessage(err)),
        };
    }
    let value = result.map_err(Mismatch::Error)?;
    if let Some(s) = &e.string {
        return match value {
            Value::String(got) if got == *s => Ok(()),
            other => Err(Mismatch::ExpectedString {
                want: s.clone(),
                got: other,
            }),
        };
    }
    match (value, &e.time) {
        (Value::Scalar(v), _) => match e.expected {
            Expected::Scalar(want) if float_eq(v, want) => Ok(()),
            _ => Err(Mismatch::GotScalar(v)),
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
            None => Err(Mismatch::GotRangeVector),
        },
        (Value::String(s), _) => Err(Mismatch::GotString(s)),
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
pub fn check_annotations(e: &Eval, got: &Annotations) -> Option<Result<(), Mismatch>> {
    if e.annotations.is_empty() {
        return None;
    }
    let owned = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect();
    let check = |level: &'static str,
                 texts: &std::collections::BTreeSet<String>|
     -> Result<(), Mismatch> {
        let texts: Vec<&str> = texts.iter().map(|t| without_position(t)).collect();
        let none = format!("no_{level}");
        if e.annotations.iter().any(|d| d.trim() == none) && !texts.is_empty() {
            return Err(Mismatch::UnexpectedAnnotations {
                level,
                texts: owned(&texts),
            });
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
            return Err(Mismatch::NoAnnotation { level });
        }
        let matches = |d: &str, t: &str| match (d.strip_prefix("msg:"), d.strip_prefix("regex:")) {
            (Some(m), _) => without_position(m.trim()) == t,
            (_, Some(r)) => regex_find(regex_without_position(r.trim()), t),
            _ => true,
        };
        for d in &directives {
            if !texts.iter().any(|t| matches(d, t)) {
                return Err(Mismatch::NoMatch {
                    level,
                    directive: d.to_string(),
                    texts: owned(&texts),
                });
            }
        }
        let specific: Vec<&&str> = directives.iter().filter(|d| !d.is_empty()).collect();
        if !specific.is_empty() {
            if let Some(t) = texts
                .iter()
                .find(|t| !specific.iter().any(|d| matches(d, t)))
            {
                return Err(Mismatch::UnexpectedAnnotation {
                    level,
                    text: t.to_string(),
                });
            }
        }
        Ok(())
    };
    Some(check("warn", &got.warnings).and_then(|()| check("info", &got.infos)))
}
