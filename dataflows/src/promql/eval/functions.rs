//! Function calls: dispatch by name, plus the small families that do not deserve a
//! file of their own (time and date, labels, absent, sort, clamp/round, scalar/vector,
//! timestamp). Range-vector families live in [`super::rate`] and [`super::over_time`],
//! element-wise math in [`super::math`], classic `histogram_quantile` in
//! [`super::histogram`].
//!
//! Contract: `__name__` is dropped from the output of every function except
//! `label_replace`, `label_join`, `sort*`, `first_over_time` and `last_over_time`
//! (Prometheus 3.x). The drop is delayed ([`Element::drop_name`]) and applied by
//! [`super::finish_vector`] at the end of the query or at a subquery boundary.

use super::selector::{effective_time, instant_with_ts, range_arg, range_window, RangeArg};
use super::{math, native, over_time, rate, Element, EvalError, EvalResult, Evaluator, Value};
use crate::labels::Labels;
use crate::promql::plan::{Plan, VectorSel};
use crate::selector::MatchKind;
use std::sync::Arc;

/// Whether a call with `args` is of a range-vector function (one element per series
/// of its range argument, at most).
pub fn takes_range(args: &[Plan]) -> bool {
    args.iter()
        .any(|a| matches!(a, Plan::Matrix { .. } | Plan::Subquery { .. }))
}

/// Evaluates `func(args…)` at `t`.
pub fn call(ev: &Evaluator<'_>, func: &str, args: &[Plan], t: i64) -> EvalResult<Value> {
    let arg = |i: usize| {
        args.get(i)
            .ok_or_else(|| EvalError::Unsupported(format!("missing argument {i} of {func}")))
    };
    if takes_range(args) {
        return range_function(ev, func, args, t);
    }
    if let Some(result) = native::instant_function(ev, func, args, t) {
        return result;
    }
    if let Some(f) = math::unary(func) {
        return map_values(native::floats_only(ev, ev.vector(arg(0)?, t)?), f);
    }
    Ok(match func {
        "time" => Value::Scalar(t as f64 / 1000.0),
        "start" => Value::Scalar(ev.start_ms as f64 / 1000.0),
        "end" => Value::Scalar(ev.end_ms as f64 / 1000.0),
        "step" => Value::Scalar(ev.step_ms as f64 / 1000.0),
        "range" => Value::Scalar((ev.end_ms - ev.start_ms) as f64 / 1000.0),
        "min_of" | "max_of" => {
            let (a, b) = (ev.scalar(arg(0)?, t)?, ev.scalar(arg(1)?, t)?);
            Value::Scalar(if a.is_nan() || b.is_nan() {
                f64::NAN
            } else if func == "min_of" {
                a.min(b)
            } else {
                a.max(b)
            })
        }
        "pi" => Value::Scalar(std::f64::consts::PI),
        "vector" => Value::Vector(vec![Element::new(Arc::default(), ev.scalar(arg(0)?, t)?)]),
        "scalar" => {
            let v = native::floats_only(ev, ev.vector(arg(0)?, t)?);
            Value::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN })
        }
        "timestamp" => match arg(0)? {
            Plan::Vector(sel) => Value::Vector(
                instant_with_ts(ev, sel, t)
                    .into_iter()
                    .map(|(l, ts, _)| Element::name_dropped(l, ts as f64 / 1000.0))
                    .collect(),
            ),
            other => map_values(ev.vector(other, t)?, |_| t as f64 / 1000.0)?,
        },
        // The start timestamp of the sample each series has at `t` (0: none); of a
        // plain selector only, as the start timestamps do not survive an expression.
        "start_timestamp" => match arg(0)? {
            Plan::Vector(sel) => Value::Vector(
                instant_with_ts(ev, sel, t)
                    .into_iter()
                    .map(|(l, ts, _)| {
                        let starts = ev.source.start_times(&sel.selector, &l, ts, ts);
                        let st = starts.iter().find(|s| s.0 == ts).map_or(0, |s| s.1);
                        Element::name_dropped(l, st as f64 / 1000.0)
                    })
                    .collect(),
            ),
            _ => Value::Vector(Vec::new()),
        },
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = native::floats_only(ev, ev.vector(arg(0)?, t)?);
            let (lo, hi) = match func {
                "clamp" => (Some(ev.scalar(arg(1)?, t)?), Some(ev.scalar(arg(2)?, t)?)),
                "clamp_min" => (Some(ev.scalar(arg(1)?, t)?), None),
                _ => (None, Some(ev.scalar(arg(1)?, t)?)),
            };
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if hi < lo {
                    return Ok(Value::Vector(Vec::new()));
                }
            }
            // Go's math.Max / math.Min: a NaN bound makes NaN.
            map_values(v, move |x| {
                let x = lo.map_or(x, |lo| go_max(x, lo));
                hi.map_or(x, |hi| go_min(x, hi))
            })?
        }
        "round" => {
            let v = native::floats_only(ev, ev.vector(arg(0)?, t)?);
            let to = match args.get(1) {
                Some(p) => ev.scalar(p, t)?,
                None => 1.0,
            };
            map_values(v, move |x| math::round(x, to))?
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = match args.first() {
                Some(p) => native::floats_only(ev, ev.vector(p, t)?),
                None => vec![Element::new(Arc::default(), t as f64 / 1000.0)],
            };
            let f = date_part(func);
            map_values(v, f)?
        }
        "absent" => {
            let v = ev.vector(arg(0)?, t)?;
            absent(v.is_empty(), arg(0)?)
        }
        "info" => match args {
            [base, Plan::Vector(info)] => Value::Vector(super::info::eval(ev, base, info, t)?),
            _ => {
                return Err(EvalError::Unsupported(
                    "info() needs a vector and a label selector".into(),
                ))
            }
        },
        "label_replace" => label_replace(ev, args, t)?,
        "label_join" => label_join(ev, args, t)?,
        "sort" | "sort_desc" => {
            let mut v = native::floats_only(ev, ev.vector(arg(0)?, t)?);
            let desc = func == "sort_desc";
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.value.total_cmp(&a.value),
                _ => a.value.total_cmp(&b.value),
            });
            Value::Vector(v)
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.vector(arg(0)?, t)?;
            let mut names = Vec::new();
            for p in &args[1..] {
                names.push(ev.string(p, t)?);
            }
            v.sort_by(|a, b| {
                let o = names
                    .iter()
                    .map(|n| {
                        natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.labels.cmp(&b.labels));
                if func == "sort_by_label_desc" {
                    o.reverse()
                } else {
                    o
                }
            });
            Value::Vector(v)
        }
        "histogram_quantiles" => {
            // histogram_quantiles(v, "q", 0.5, 0.9): one element per group and φ,
            // labelled q="0.5" etc.
            let v = ev.vector(arg(0)?, t)?;
            let label = ev.string(arg(1)?, t)?;
            let mut out = Vec::new();
            for p in &args[2..] {
                let phi = ev.scalar(p, t)?;
                check_quantile(ev, phi);
                let (native, classic) = native::quantiles(ev, phi, v.clone());
                for e in native
                    .into_iter()
                    .chain(super::histogram::quantile(ev, phi, classic))
                {
                    let labels = set_label(&e.labels, &label, &format!("{phi:?}"));
                    out.push(Element {
                        labels,
                        value: e.value,
                        drop_name: e.drop_name,
                    });
                }
            }
            Value::Vector(out)
        }
        "histogram_quantile" => {
            let phi = ev.scalar(arg(0)?, t)?;
            check_quantile(ev, phi);
            let (mut native, classic) = native::quantiles(ev, phi, ev.vector(arg(1)?, t)?);
            native.extend(super::histogram::quantile(ev, phi, classic));
            Value::Vector(native)
        }
        other => {
            return Err(EvalError::Unsupported(format!(
                "not supported: function {other}"
            )))
        }
    })
}

/// Go's `math.Max`: +Inf wins, then NaN.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: -Inf wins, then NaN.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn map_values(v: Vec<Element>, f: impl Fn(f64) -> f64) -> EvalResult<Value> {
    Ok(Value::Vector(
        v.into_iter()
            .map(|e| Element::name_dropped(e.labels, f(e.value)))
            .collect(),
    ))
}

/// Functions whose (first or second) argument is a range vector.
fn range_function(ev: &Evaluator<'_>, func: &str, args: &[Plan], t: i64) -> EvalResult<Value> {
    let (matrix_idx, param) = match func {
        "quantile_over_time" => (1, ev.scalar(&args[0], t)?),
        "predict_linear" => (0, ev.scalar(&args[1], t)?),
        _ => (0, 0.0),
    };
    if let Plan::Matrix { sel, range_ms } = &args[matrix_idx] {
        if sel.modifier.is_none() && func != "absent_over_time" {
            let (sf, tf) = smoothing_factors(ev, func, args, t)?;
            let params = RangeParams { param, sf, tf };
            return plain_window_function(ev, func, sel, *range_ms, t, params);
        }
    }
    let arg = range_arg(ev, &args[matrix_idx], t)?;
    if func == "absent_over_time" {
        return Ok(absent(arg.series.is_empty(), &args[0]));
    }
    let (sf, tf) = smoothing_factors(ev, func, args, t)?;
    // Over an `anchored` window, `changes` and `resets` see its edge points too.
    let arg = match arg.modifier {
        Some(_) if !matches!(func, "rate" | "increase" | "delta") => RangeArg {
            window_end: arg.window_end,
            range_ms: arg.range_ms,
            modifier: None,
            series: arg.window_series(),
        },
        _ => arg,
    };
    if func == "quantile_over_time" {
        check_quantile(ev, param);
    }
    let params = RangeParams { param, sf, tf };
    let mut out = Vec::with_capacity(arg.series.len());
    for s in &arg.series {
        let value = match native::range_kernel(ev, func, &s.points, &[], &arg, &s.labels) {
            native::Window::Value(value) => value,
            native::Window::FloatsOfMixed => {
                let floats = native::float_points(ev, &s.points);
                range_kernel(func, &floats, &[], &arg, t, params)?
            }
            native::Window::Floats => {
                if func == "rate" || func == "increase" {
                    possible_non_counter(ev, &s.labels);
                }
                range_kernel(func, &s.points, &[], &arg, t, params)?
            }
        };
        if let Some(value) = value {
            ev.samples.take(1)?;
            out.push(range_element(func, s.labels.clone(), value));
        }
    }
    // The windows are let go once the outputs are computed.
    ev.samples
        .release(arg.series.iter().map(|s| s.points.len()).sum());
    Ok(Value::Vector(out))
}

/// The factors of `double_exponential_smoothing` (zeros for other functions).
fn smoothing_factors(
    ev: &Evaluator<'_>,
    func: &str,
    args: &[Plan],
    t: i64,
) -> EvalResult<(f64, f64)> {
    Ok(if func == "double_exponential_smoothing" {
        (ev.scalar(&args[1], t)?, ev.scalar(&args[2], t)?)
    } else {
        (0.0, 0.0)
    })
}

/// A range function over a plain window `x[r]` (no `anchored`/`smoothed`): the
/// kernel runs on the samples the source lends ([`SeriesSource::select_each`]), with
/// no copy of each window first. The same elements, annotations and errors as going
/// through [`range_arg`].
///
/// [`SeriesSource::select_each`]: super::SeriesSource::select_each
fn plain_window_function(
    ev: &Evaluator<'_>,
    func: &str,
    sel: &VectorSel,
    range_ms: i64,
    t: i64,
    params: RangeParams,
) -> EvalResult<Value> {
    if func == "quantile_over_time" {
        check_quantile(ev, params.param);
    }
    let end = effective_time(ev, sel.at, sel.offset_ms, t);
    let start = end - range_ms;
    let arg = RangeArg {
        series: Vec::new(),
        window_end: end,
        range_ms,
        modifier: None,
    };
    // Per series only when the selector does not already say (profiles: label lookups
    // for every series at every step).
    let counter = (func == "rate" || func == "increase") && !selects_counters(sel);
    let mut out = Vec::new();
    let mut failed = None;
    ev.source
        .select_each(&sel.selector, start + 1, end, &mut |labels, points| {
            let window = range_window(points, start, end);
            if failed.is_some() || window.is_empty() {
                return;
            }
            // One window is held at a time, with the outputs so far.
            if let Err(e) = ev.samples.take(window.len()) {
                failed = Some(e);
                return;
            }
            let starts = if reads_start_times(func) {
                ev.source.start_times(&sel.selector, labels, start + 1, end)
            } else {
                Vec::new()
            };
            let value = window_value(ev, func, &window, &starts, &arg, t, params, labels, counter);
            match value {
                Ok(Some(value)) => match ev.samples.take(1) {
                    Ok(()) => out.push(range_element(func, labels.clone(), value)),
                    Err(e) => failed = Some(e),
                },
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
            ev.samples.release(window.len());
        });
    match failed {
        Some(e) => Err(e),
        None => Ok(Value::Vector(out)),
    }
}

/// The value of range function `func` over one series' plain window `window` (start
/// timestamps `starts`), histograms included ([`native::range_kernel`]), with the
/// reference's annotations (`counter`: check the name says it is a counter): what
/// [`plain_window_function`] gives for the series, and what a maintained rule's
/// per-series state computes for a window that may hold histograms.
#[allow(clippy::too_many_arguments)]
pub fn window_value(
    ev: &Evaluator<'_>,
    func: &str,
    window: &[(i64, f64)],
    starts: &[(i64, i64)],
    arg: &RangeArg,
    t: i64,
    params: RangeParams,
    labels: &Labels,
    counter: bool,
) -> EvalResult<Option<f64>> {
    let native = native::range_kernel(ev, func, window, starts, arg, labels);
    if counter && native == native::Window::Floats {
        possible_non_counter(ev, labels);
    }
    if counter_func(func) && !starts.is_empty() {
        start_overlap(ev, labels, window, starts);
    }
    match native {
        native::Window::Value(value) => Ok(value),
        native::Window::FloatsOfMixed => {
            let floats = native::float_points(ev, window);
            range_kernel(func, &floats, starts, arg, t, params)
        }
        native::Window::Floats => range_kernel(func, window, starts, arg, t, params),
    }
}

/// The scalar arguments of a range function: φ of `quantile_over_time`, the seconds
/// of `predict_linear` (both `param`), the factors of `double_exponential_smoothing`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeParams {
    /// φ or seconds.
    pub param: f64,
    /// Smoothing factor.
    pub sf: f64,
    /// Trend factor.
    pub tf: f64,
}

/// The value of range function `func` for one series whose window holds `points`
/// (non-empty, as [`range_arg`] gives them; `arg` says which window), at `t`; `None`:
/// no element for the series. `starts`: the `(timestamp, start)` pairs of the samples
/// that have a start timestamp (read by `rate`, `increase`, `irate`, `resets`; empty
/// for a window that is not a plain selector's: a subquery's carries none).
pub fn range_kernel(
    func: &str,
    points: &[(i64, f64)],
    starts: &[(i64, i64)],
    arg: &RangeArg,
    t: i64,
    params: RangeParams,
) -> EvalResult<Option<f64>> {
    let p = points;
    let sts = || rate::aligned_starts(p, starts);
    Ok(match func {
        "rate" => rate::increase_family(p, &sts(), arg, true, true),
        "increase" => rate::increase_family(p, &sts(), arg, true, false),
        "delta" => rate::increase_family(p, &[], arg, false, false),
        "irate" => rate::instant_delta(p, &sts(), true),
        "idelta" => rate::instant_delta(p, &[], false),
        "deriv" => rate::deriv(p),
        "predict_linear" => rate::predict_linear(p, t, params.param),
        "resets" => Some(rate::resets(p, &sts())),
        "changes" => Some(rate::changes(p)),
        "double_exponential_smoothing" => {
            over_time::double_exponential_smoothing(p, params.sf, params.tf)?
        }
        f if over_time::is_over_time(f) => over_time::apply(f, p, params.param),
        other => {
            return Err(EvalError::Unsupported(format!(
                "not supported: function {other}"
            )))
        }
    })
}

/// The element of range function `func` for series `labels`: the name is dropped
/// (delayed) except by `last_over_time` and `first_over_time`.
pub fn range_element(func: &str, labels: Arc<Labels>, value: f64) -> Element {
    if func == "last_over_time" || func == "first_over_time" {
        Element::new(labels, value)
    } else {
        Element::name_dropped(labels, value)
    }
}

/// Whether range function `func` reads start timestamps.
pub fn reads_start_times(func: &str) -> bool {
    matches!(func, "rate" | "increase" | "irate" | "resets")
}

fn counter_func(func: &str) -> bool {
    func == "rate" || func == "increase"
}

/// Prometheus's warning for `rate`/`increase` over a window where a sample starts
/// before the previous one's time without sharing its start.
fn start_overlap(
    ev: &Evaluator<'_>,
    labels: &Labels,
    window: &[(i64, f64)],
    starts: &[(i64, i64)],
) {
    if rate::start_overlap(window, &rate::aligned_starts(window, starts)) {
        ev.warn(format!(
            "sample has start time that overlaps with previous sample timestamp for metric {:?}",
            labels.metric_name()
        ));
    }
}

/// Prometheus's info for `rate`/`increase` over a series whose name does not say it
/// is a counter (and whose `__type__` does not either).
fn possible_non_counter(ev: &Evaluator<'_>, labels: &Labels) {
    let name = labels.metric_name();
    let counter_like = counter_like_name(name) || labels.get("__type__") == Some("counter");
    if !name.is_empty() && !counter_like {
        ev.info(format!(
            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
        ));
    }
}

/// Whether a metric name says it is a counter (`rate`'s info is not raised for it).
fn counter_like_name(name: &str) -> bool {
    ["_total", "_sum", "_count", "_bucket"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// Whether every series `sel` selects has a counter-like name (an `__name__` equality
/// matcher says so), so that no series needs [`possible_non_counter`].
fn selects_counters(sel: &VectorSel) -> bool {
    sel.selector.matchers.iter().any(|m| {
        m.name == crate::labels::METRIC_NAME
            && matches!(&m.kind, MatchKind::Equal(name) if counter_like_name(name))
    })
}

/// Prometheus's warning for a quantile φ outside `[0, 1]`.
pub fn check_quantile(ev: &Evaluator<'_>, phi: f64) {
    if !(0.0..=1.0).contains(&phi) {
        ev.warn(format!(
            "quantile value should be between 0 and 1, got {}",
            super::aggregate::format_value(phi)
        ));
    }
}

/// `absent(x{a="b"})` / `absent_over_time(x{a="b"}[5m])`: `{a="b"} 1` when nothing
/// matched, labels taken from the equality matchers of a plain selector argument.
fn absent(is_empty: bool, arg: &Plan) -> Value {
    if !is_empty {
        return Value::Vector(Vec::new());
    }
    let sel = match arg {
        Plan::Vector(s) | Plan::Matrix { sel: s, .. } => Some(s),
        _ => None,
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut repeated = Vec::new();
    let mut seen = Vec::new();
    if let Some(sel) = sel {
        for m in &sel.selector.matchers {
            if m.name == crate::labels::METRIC_NAME {
                continue;
            }
            if seen.contains(&m.name) {
                repeated.push(m.name.clone());
            }
            seen.push(m.name.clone());
            if let MatchKind::Equal(v) = &m.kind {
                pairs.push((m.name.clone(), v.clone()));
            }
        }
    }
    pairs.retain(|(n, _)| !repeated.contains(n));
    Value::Vector(vec![Element::new(Arc::new(Labels::from_pairs(pairs)), 1.0)])
}

/// Whether a label name written as a string argument is valid: Prometheus 3.x accepts
/// any non-empty UTF-8; bytes that are not UTF-8 arrive as [`rewrite::NOT_UTF8`].
///
/// [`rewrite::NOT_UTF8`]: crate::promql::rewrite::NOT_UTF8
pub(super) fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(crate::promql::rewrite::NOT_UTF8)
}

/// `^(?s:text)$` compiled, once per thread and text: an incremental rule evaluates
/// `label_replace` once per series whose element changed
/// (`render/incremental/series.rs`), and compiling the expression at each call took
/// 7.3 s per evaluation of `label_replace(rate(x[5m]), …)` over 50,000 series
/// (`RULES_PART=4 cargo bench --bench rules`), most of it building the automaton.
/// A `Regex` clone shares the compiled program. Bounded: cleared past 256 texts.
fn anchored_regex(text: &str) -> Result<regex::Regex, regex::Error> {
    thread_local! {
        static COMPILED: std::cell::RefCell<std::collections::HashMap<String, regex::Regex>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    COMPILED.with(|compiled| {
        if let Some(re) = compiled.borrow().get(text) {
            return Ok(re.clone());
        }
        let re = regex::Regex::new(&format!("^(?s:{text})$"))?;
        let mut compiled = compiled.borrow_mut();
        if compiled.len() >= 256 {
            compiled.clear();
        }
        compiled.insert(text.to_string(), re.clone());
        Ok(re)
    })
}

/// `label_replace(v, "dst", "$1-x", "src", "(.*)")`.
fn label_replace(ev: &Evaluator<'_>, args: &[Plan], t: i64) -> EvalResult<Value> {
    if args.len() != 5 {
        return Err(EvalError::Unsupported(
            "label_replace needs 5 arguments".into(),
        ));
    }
    let v = ev.vector(&args[0], t)?;
    let dst = ev.string(&args[1], t)?;
    let repl = ev.string(&args[2], t)?;
    let src = ev.string(&args[3], t)?;
    let re_text = ev.string(&args[4], t)?;
    let re = anchored_regex(&re_text).map_err(|e| {
        EvalError::Execution(format!(
            "invalid regular expression in label_replace(): {re_text}: {e}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(EvalError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let out = v
        .into_iter()
        .map(|e| {
            let value = e.labels.get(&src).unwrap_or("");
            let Some(caps) = re.captures(value) else {
                return e;
            };
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            // Writing `__name__` cancels a pending name removal.
            Element {
                labels: set_label(&e.labels, &dst, &res),
                value: e.value,
                drop_name: e.drop_name && dst != crate::labels::METRIC_NAME,
            }
        })
        .collect();
    Ok(Value::Vector(out))
}

/// `label_join(v, "dst", ",", "src1", "src2", …)`.
fn label_join(ev: &Evaluator<'_>, args: &[Plan], t: i64) -> EvalResult<Value> {
    if args.len() < 3 {
        return Err(EvalError::Unsupported(
            "label_join needs at least 3 arguments".into(),
        ));
    }
    let v = ev.vector(&args[0], t)?;
    let dst = ev.string(&args[1], t)?;
    let sep = ev.string(&args[2], t)?;
    let mut srcs = Vec::new();
    for p in &args[3..] {
        srcs.push(ev.string(p, t)?);
    }
    if !valid_label_name(&dst) {
        return Err(EvalError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(Value::Vector(
        v.into_iter()
            .map(|e| {
                let joined = srcs
                    .iter()
                    .map(|s| e.labels.get(s).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&sep);
                Element {
                    labels: set_label(&e.labels, &dst, &joined),
                    value: e.value,
                    drop_name: e.drop_name && dst != crate::labels::METRIC_NAME,
                }
            })
            .collect(),
    ))
}

/// Natural order: digit runs compare as numbers (`2` < `10`), the rest bytewise.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = if x.0 && y.0 {
            let (tx, ty) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
            tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
        } else {
            x.1.cmp(y.1)
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The labels with `name` set to `value` (removed when `value` is empty).
pub fn set_label(labels: &Arc<Labels>, name: &str, value: &str) -> Arc<Labels> {
    let mut pairs: Vec<(String, String)> = labels
        .iter()
        .filter(|(n, _)| *n != name)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    pairs.push((name.to_string(), value.to_string()));
    Arc::new(Labels::from_pairs(pairs))
}

/// The date function named `func`, applied to Unix seconds (UTC).
fn date_part(func: &str) -> fn(f64) -> f64 {
    match func {
        "day_of_month" => |s| civil(s).2 as f64,
        "day_of_week" => |s| ((secs(s).div_euclid(86_400) + 4).rem_euclid(7)) as f64,
        "day_of_year" => |s| {
            let (y, m, d) = civil(s);
            (days_before_month(y, m) + d) as f64
        },
        "days_in_month" => |s| {
            let (y, m, _) = civil(s);
            (days_before_month(y, m + 1) - days_before_month(y, m)) as f64
        },
        "hour" => |s| (secs(s).rem_euclid(86_400) / 3600) as f64,
        "minute" => |s| (secs(s).rem_euclid(3600) / 60) as f64,
        "month" => |s| civil(s).1 as f64,
        _ => |s| civil(s).0 as f64,
    }
}

fn secs(s: f64) -> i64 {
    s as i64
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in the months before month `m` (1-based; 13 gives the year length).
fn days_before_month(y: i64, m: i64) -> i64 {
    const CUM: [i64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
    CUM[(m - 1) as usize] + i64::from(m > 2 && is_leap(y))
}

/// (year, month, day) of Unix seconds, proleptic Gregorian, UTC.
fn civil(s: f64) -> (i64, i64, i64) {
    let z = secs(s).div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2020-02-29T13:45:00Z
        let s = 1_582_983_900.0;
        assert_eq!(civil(s), (2020, 2, 29));
        assert_eq!(date_part("day_of_year")(s), 60.0);
        assert_eq!(date_part("days_in_month")(s), 29.0);
        assert_eq!(date_part("hour")(s), 13.0);
        assert_eq!(date_part("minute")(s), 45.0);
        assert_eq!(date_part("day_of_week")(s), 6.0);
        assert_eq!(civil(0.0), (1970, 1, 1));
    }
}
