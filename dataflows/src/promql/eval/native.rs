//! Native histograms in the reference evaluator (ad hoc mode).
//!
//! A histogram sample travels through the evaluator as a *handle*: an `f64` NaN whose
//! bits name a [`FloatHistogram`] held by the [`SeriesSource`] (stored samples,
//! [`SOURCE`]) or by the [`Evaluator`] (results computed during this query, [`MADE`]).
//! The handles are signalling NaNs: any float arithmetic on one yields a quiet NaN,
//! which names nothing, so a float path that does not know histograms cannot produce a
//! wrong histogram. Selectors, windows, `@`/`offset`, subqueries and range-query
//! assembly carry handles like floats; the code that gives histograms a meaning asks
//! [`Evaluator::histogram`] and answers with [`Evaluator::boxed`].
//!
//! Owns: `histogram_count/sum/avg/stddev/stdvar/fraction`, native `histogram_quantile`,
//! the range functions over histogram windows ([`range_kernel`]), `sum`/`avg`/`count`
//! over histograms ([`aggregate`]), binary operators with a histogram operand
//! ([`binop`]), and Prometheus's annotations for mixing floats and histograms.
//! Mirrors promql/functions.go, promql/quantile.go and promql/engine.go.
//!
//! The maintained dataflow (render/) evaluates plans that read histograms with this
//! same evaluator over its windows (which hold handles of their own slots, see
//! `render/window.rs`), whole or, in its incremental state, one series' window
//! ([`super::functions::window_value`]) or one group ([`super::aggregate::group_value`])
//! at a time. A result leaves the evaluator *detached* ([`detach`]): each
//! handle renamed to [`SOURCE`] `i` of a list of histograms that travels with it (a
//! rule's output, a spread rule's partials), which [`Detached`] resolves again.
//!
//! [`SeriesSource`]: super::SeriesSource

use super::selector::RangeArg;
use super::{Element, EvalResult, Evaluator, Value};
use crate::histogram::{Bucket, CombineError, CounterResetHint, FloatHistogram};
use crate::labels::Labels;
use crate::promql::plan::{AggOp, BinOp};
use std::sync::Arc;

/// What [`window_value`] answers for a mixed window of a float-only function (a
/// handle of no kind).
const MIXED: f64 = f64::from_bits(0x7ff4_ffff_0000_0000);

/// Top 16 bits of a handle: a signalling NaN (quiet bit clear).
const HANDLE_TOP: u64 = 0x7ff4;
/// Handle kind of a histogram the source holds.
pub const SOURCE: u64 = 1;
/// Handle kind of a histogram made during the evaluation.
pub const MADE: u64 = 2;

/// The handle `(kind, index)` as a value.
pub fn handle(kind: u64, index: u32) -> f64 {
    f64::from_bits(HANDLE_TOP << 48 | kind << 32 | u64::from(index))
}

/// The `(kind, index)` a value names, if it is a handle.
pub fn parse_handle(v: f64) -> Option<(u64, u32)> {
    let bits = v.to_bits();
    (bits >> 48 == HANDLE_TOP).then_some(((bits >> 32) & 0xffff, bits as u32))
}

/// Renames every histogram handle in `value` (which `ev` resolves) to [`SOURCE`] `i` of
/// the returned list, so the value outlives `ev` and the source it read.
pub fn detach(ev: &Evaluator<'_>, value: &mut Value) -> Vec<Arc<FloatHistogram>> {
    let mut out = Vec::new();
    let mut rename = |v: &mut f64| {
        if let Some(h) = ev.histogram(*v) {
            out.push(h);
            *v = handle(SOURCE, (out.len() - 1) as u32);
        }
    };
    match value {
        Value::Vector(elements) => elements.iter_mut().for_each(|e| rename(&mut e.value)),
        Value::Matrix(series) => series
            .iter_mut()
            .flat_map(|s| s.points.iter_mut())
            .for_each(|p| rename(&mut p.1)),
        Value::Scalar(_) | Value::String(_) => {}
    }
    out
}

/// The histograms of a detached value, as a source that holds no series: an evaluator
/// over it resolves the value's handles.
pub struct Detached<'a>(pub &'a [Arc<FloatHistogram>]);

impl super::SeriesSource for Detached<'_> {
    fn select(&self, _: &crate::selector::Selector, _: i64, _: i64) -> super::Selected {
        Vec::new()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.0.get(index as usize).cloned()
    }
}

impl Evaluator<'_> {
    /// The histogram `v` names, if it is a histogram handle.
    pub fn histogram(&self, v: f64) -> Option<Arc<FloatHistogram>> {
        match parse_handle(v)? {
            (SOURCE, i) => self.source.histogram(i),
            (MADE, i) => self.histograms.borrow().get(i as usize).cloned(),
            _ => None,
        }
    }

    /// A handle for `h`, valid as long as this evaluator.
    pub fn boxed(&self, h: FloatHistogram) -> f64 {
        let mut made = self.histograms.borrow_mut();
        made.push(Arc::new(h));
        handle(MADE, (made.len() - 1) as u32)
    }

    /// The histograms this evaluation made, by index (to read a result's handles after
    /// the evaluator is gone).
    pub fn made_histograms(&self) -> Vec<Arc<FloatHistogram>> {
        self.histograms.borrow().clone()
    }

    /// Whether `v` is a histogram handle.
    pub fn is_histogram(&self, v: f64) -> bool {
        self.histogram(v).is_some()
    }
}

/// Elements that are floats, dropping histograms (what Prometheus's float-only
/// functions do).
pub fn floats_only(ev: &Evaluator<'_>, v: Vec<Element>) -> Vec<Element> {
    v.into_iter()
        .filter(|e| !ev.is_histogram(e.value))
        .collect()
}

/// The instant-vector functions of histograms; `None` for other functions.
pub fn instant_function(
    ev: &Evaluator<'_>,
    func: &str,
    args: &[crate::promql::plan::Plan],
    t: i64,
) -> Option<EvalResult<Value>> {
    let per_histogram = |i: usize, f: &dyn Fn(&FloatHistogram, &Arc<Labels>) -> f64| {
        let v = ev.vector(&args[i], t)?;
        Ok(Value::Vector(
            v.into_iter()
                .filter_map(|e| {
                    let h = ev.histogram(e.value)?;
                    Some(Element::name_dropped(e.labels.clone(), f(&h, &e.labels)))
                })
                .collect(),
        ))
    };
    Some(match func {
        "histogram_count" => per_histogram(0, &|h, _| h.count),
        "histogram_sum" => per_histogram(0, &|h, _| h.sum),
        "histogram_avg" => per_histogram(0, &|h, _| h.sum / h.count),
        "histogram_stddev" => per_histogram(0, &|h, _| variance(h).sqrt()),
        "histogram_stdvar" => per_histogram(0, &|h, _| variance(h)),
        "histogram_fraction" => (|| {
            let lower = ev.scalar(&args[0], t)?;
            let upper = ev.scalar(&args[1], t)?;
            let (native, classic) = split_classic_native(ev, ev.vector(&args[2], t)?);
            let mut out: Vec<Element> = native
                .into_iter()
                .map(|(e, h)| {
                    let value = fraction(ev, lower, upper, &h, &e.labels);
                    Element::name_dropped(e.labels, value)
                })
                .collect();
            out.extend(super::histogram::fraction(ev, lower, upper, classic));
            Ok(Value::Vector(out))
        })(),
        _ => return None,
    })
}

/// Prometheus's `histogramVariance`: each bucket's observations taken at its
/// (geometric, or for custom buckets arithmetic) middle, 0 in the zero bucket.
fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let mut variance = 0.0;
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let delta = val - mean;
        variance += b.count * delta * delta;
    }
    variance / h.count
}

/// The zero bucket's bounds narrowed to one side when the histogram has buckets on
/// that side only (Prometheus's quantile and fraction treat it so).
fn one_sided_zero_bucket(h: &FloatHistogram, b: &mut Bucket) {
    if b.lower < 0.0 && b.upper > 0.0 || (b.lower <= 0.0 && b.upper >= 0.0) {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    }
}

/// Prometheus's `HistogramFraction`.
fn fraction(ev: &Evaluator<'_>, lower: f64, upper: f64, h: &FloatHistogram, l: &Labels) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let buckets = h.all_buckets();
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut seen = 0;
    for b in &buckets {
        seen += 1;
        let mut b = *b;
        count += b.count;
        let zero_bucket = b.lower <= 0.0 && b.upper >= 0.0;
        if zero_bucket {
            one_sided_zero_bucket(h, &mut b);
        }
        let linear = h.uses_custom_buckets() || zero_bucket;
        let interpolate = |v: f64| {
            if linear && b.lower == f64::NEG_INFINITY {
                return b.count;
            }
            rank + b.count * b.fraction_below(v, linear)
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    if h.sum.is_nan() {
        count += buckets[seen..].iter().map(|b| b.count).sum::<f64>();
        if count < h.count {
            ev.info(format!(
                "input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name {:?}",
                l.metric_name()
            ));
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / h.count
}

/// Prometheus's `HistogramQuantile`.
pub fn quantile(ev: &Evaluator<'_>, q: f64, h: &FloatHistogram, l: &Labels) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let forward = h.sum.is_nan() || q < 0.5;
    let mut buckets = h.all_buckets();
    if !forward {
        buckets.reverse();
    }
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut at = None;
    for (i, b) in buckets.iter().enumerate() {
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        at = Some(i);
        if count >= rank {
            break;
        }
    }
    // No bucket with observations (all of them NaN): Prometheus's zero bucket value,
    // which falls short of the rank below.
    let (mut bucket, next) = match at {
        Some(at) => (buckets[at], at + 1),
        None => (
            Bucket {
                lower: 0.0,
                upper: 0.0,
                count: 0.0,
                index: 0,
            },
            buckets.len(),
        ),
    };
    let name = || format!("{:?}", l.metric_name());
    if !h.uses_custom_buckets() {
        if bucket.lower < 0.0 && bucket.upper > 0.0 {
            one_sided_zero_bucket(h, &mut bucket);
        }
    } else if bucket.lower == f64::NEG_INFINITY {
        if bucket.upper <= 0.0 {
            return bucket.upper;
        }
        bucket.lower = 0.0;
    } else if bucket.upper == f64::INFINITY {
        return bucket.lower;
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            ev.info(format!(
                "input to histogram_quantile has NaN observations, result is NaN for metric name {}",
                name()
            ));
            return f64::NAN;
        }
        return bucket.upper;
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    if h.sum.is_nan() {
        let total = count + buckets[next..].iter().map(|b| b.count).sum::<f64>();
        if total < h.count {
            ev.info(format!(
                "input to histogram_quantile has NaN observations, result is skewed higher for metric name {}",
                name()
            ));
        }
    }
    let fraction = rank / bucket.count;
    if h.uses_custom_buckets() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let (lo, up) = (bucket.lower.abs().log2(), bucket.upper.abs().log2());
    if bucket.lower > 0.0 {
        (lo + (up - lo) * fraction).exp2()
    } else {
        -(up + (lo - up) * (1.0 - fraction)).exp2()
    }
}

/// Splits `histogram_quantile`'s input: the quantile of each native histogram, and
/// the float elements left for the classic-bucket path.
pub fn quantiles(ev: &Evaluator<'_>, q: f64, v: Vec<Element>) -> (Vec<Element>, Vec<Element>) {
    let (native, classic) = split_classic_native(ev, v);
    let native = native
        .into_iter()
        .map(|(e, h)| {
            let value = quantile(ev, q, &h, &e.labels);
            Element::name_dropped(e.labels, value)
        })
        .collect();
    (native, classic)
}

/// The native histograms and the classic buckets of a `histogram_quantile` /
/// `histogram_fraction` input. A native histogram with the labels of a classic bucket
/// group (less `le`) is left out with the group, and Prometheus's warning.
pub fn split_classic_native(
    ev: &Evaluator<'_>,
    v: Vec<Element>,
) -> (Vec<(Element, Arc<FloatHistogram>)>, Vec<Element>) {
    let (mut native, mut classic) = (Vec::new(), Vec::new());
    for e in v {
        match ev.histogram(e.value) {
            Some(h) => native.push((e, h)),
            None => classic.push(e),
        }
    }
    if native.is_empty() || classic.is_empty() {
        return (native, classic);
    }
    let without_le = |l: &Labels| {
        Labels::from_pairs(
            l.iter()
                .filter(|(n, _)| *n != "le")
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    };
    let groups: std::collections::HashSet<Labels> =
        classic.iter().map(|e| without_le(&e.labels)).collect();
    let mut mixed = std::collections::HashSet::new();
    native.retain(|(e, _)| {
        let clash = groups.contains(e.labels.as_ref());
        if clash {
            ev.warn(format!(
                "vector contains a mix of classic and native histograms for metric name {}",
                metric_name(&e.labels)
            ));
            mixed.insert(Labels::clone(&e.labels));
        }
        !clash
    });
    classic.retain(|e| !mixed.contains(&without_le(&e.labels)));
    (native, classic)
}

/// A metric name as Prometheus's annotations quote it.
pub(super) fn metric_name(l: &Labels) -> String {
    format!("{:?}", l.metric_name())
}

/// What a range function does with a window ([`range_kernel`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// All floats: the float kernel applies.
    Floats,
    /// Floats and histograms, for a float-only function: the float kernel applies to
    /// the floats ([`float_points`]).
    FloatsOfMixed,
    /// Computed here: the element's value, if any.
    Value(Option<f64>),
}

/// A range function over a window, when it holds histograms.
pub fn range_kernel(
    ev: &Evaluator<'_>,
    func: &str,
    points: &[(i64, f64)],
    starts: &[(i64, i64)],
    arg: &RangeArg,
    labels: &Labels,
) -> Window {
    match window_value(ev, func, points, starts, arg, labels) {
        Some(Some(v)) if v.to_bits() == MIXED.to_bits() => Window::FloatsOfMixed,
        other => Window::from(other),
    }
}

impl From<Option<Option<f64>>> for Window {
    fn from(v: Option<Option<f64>>) -> Window {
        match v {
            None => Window::Floats,
            Some(v) => Window::Value(v),
        }
    }
}

fn window_value(
    ev: &Evaluator<'_>,
    func: &str,
    points: &[(i64, f64)],
    starts: &[(i64, i64)],
    arg: &RangeArg,
    labels: &Labels,
) -> Option<Option<f64>> {
    let hs: Vec<(i64, Arc<FloatHistogram>)> = points
        .iter()
        .filter_map(|&(t, v)| ev.histogram(v).map(|h| (t, h)))
        .collect();
    if hs.is_empty() {
        return None;
    }
    let mixed = hs.len() != points.len();
    // Start timestamps, one per point (empty: none), as the float kernels read them.
    let sts = super::rate::aligned_starts(points, starts);
    let start_reset = |i: usize| {
        i < sts.len()
            && super::rate::is_start_reset(sts[i - 1], points[i - 1].0, sts[i], points[i].0)
    };
    let mixed_warning = || {
        ev.warn(format!(
            "encountered a mix of histograms and floats for metric name {}",
            metric_name(labels)
        ));
        None
    };
    Some(match func {
        "rate" | "increase" | "delta" => {
            if mixed {
                return Some(mixed_warning());
            }
            if arg.modifier.is_some() {
                return Some(
                    extended_rate(ev, func, points, &hs, arg, labels).map(|h| ev.boxed(h)),
                );
            }
            let sts = if func == "delta" { &[][..] } else { &sts[..] };
            rate(ev, func, &hs, sts, arg, labels).map(|h| ev.boxed(h))
        }
        "irate" | "idelta" => {
            let n = points.len();
            if n < 2 {
                return Some(None);
            }
            match (ev.histogram(points[n - 2].1), ev.histogram(points[n - 1].1)) {
                (None, None) => return None,
                (Some(prev), Some(last)) => {
                    let dt = points[n - 1].0 - points[n - 2].0;
                    let reset = func == "irate" && start_reset(n - 1);
                    instant_rate(ev, func == "irate", &prev, &last, dt, reset, labels)
                }
                _ => mixed_warning(),
            }
        }
        "resets" | "changes" => {
            let mut n = 0;
            for (i, w) in points.windows(2).enumerate() {
                let (prev, cur) = (ev.histogram(w[0].1), ev.histogram(w[1].1));
                let counted = match (&prev, &cur) {
                    (None, None) if func == "resets" => w[1].1 < w[0].1,
                    (None, None) => w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()),
                    (Some(p), Some(c)) if func == "resets" => {
                        c.detect_reset(p) || start_reset(i + 1)
                    }
                    (Some(p), Some(c)) => !c.same(p, false, |a, b| a.to_bits() == b.to_bits()),
                    _ => true,
                };
                n += usize::from(counted);
            }
            Some(n as f64)
        }
        "count_over_time" => Some(points.len() as f64),
        // The time of the first / last sample, float or histogram.
        "ts_of_first_over_time" => Some(points[0].0 as f64 / 1000.0),
        "ts_of_last_over_time" => Some(points[points.len() - 1].0 as f64 / 1000.0),
        "present_over_time" => Some(1.0),
        "last_over_time" => Some(points[points.len() - 1].1),
        "first_over_time" => Some(points[0].1),
        "sum_over_time" | "avg_over_time" => {
            if mixed {
                return Some(mixed_warning());
            }
            let all: Vec<&FloatHistogram> = hs.iter().map(|(_, h)| h.as_ref()).collect();
            let mut sum = sum_histograms(ev, &all, labels)?;
            if func == "avg_over_time" {
                sum.kahan_mean(&all);
            }
            Some(ev.boxed(sum))
        }
        _ => {
            // Float-only functions: histograms are ignored.
            if mixed {
                ev.info(format!(
                    "ignored histograms in a range containing both floats and histograms for metric name {}",
                    metric_name(labels)
                ));
            }
            return if mixed { Some(Some(MIXED)) } else { Some(None) };
        }
    })
}

/// The float points of a window (histograms left out).
pub fn float_points(ev: &Evaluator<'_>, points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points
        .iter()
        .copied()
        .filter(|p| !ev.is_histogram(p.1))
        .collect()
}

/// The sum of histograms as Prometheus's `sum` and `sum_over_time` make it: the hint
/// from adding them in order, a warning when both a reset and a not-reset hint were
/// seen, Kahan-compensated counts; `None` (with the warning) when exponential and
/// custom buckets mix.
fn sum_histograms(
    ev: &Evaluator<'_>,
    hs: &[&FloatHistogram],
    labels: &Labels,
) -> Option<FloatHistogram> {
    let mut sum = hs[0].clone();
    let mut reconciled = false;
    for h in &hs[1..] {
        match sum.add(h) {
            Ok(c) => reconciled |= c.custom_bounds_reconciled,
            Err(CombineError::MixedSchemas) => {
                ev.warn(format!(
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
                    metric_name(labels)
                ));
                return None;
            }
        }
    }
    let seen = |hint| hs.iter().any(|h| h.counter_reset_hint == hint);
    if seen(CounterResetHint::Reset) && seen(CounterResetHint::NotReset) {
        ev.warn("conflicting counter resets during histogram aggregation");
    }
    if reconciled {
        ev.info("mismatched custom buckets were reconciled during aggregation");
    }
    sum.kahan_recount(hs);
    Some(sum)
}

/// Prometheus's annotations for what combining two histograms noticed.
fn note_combined(ev: &Evaluator<'_>, c: crate::histogram::Combined, operation: &str) {
    if c.counter_reset_collision {
        ev.warn(format!(
            "conflicting counter resets during histogram {operation}"
        ));
    }
    if c.custom_bounds_reconciled {
        ev.info(format!(
            "mismatched custom buckets were reconciled during {operation}"
        ));
    }
}

fn note(
    ev: &Evaluator<'_>,
    r: Result<crate::histogram::Combined, CombineError>,
    labels: &Labels,
    operation: &str,
) -> bool {
    match r {
        Ok(c) => {
            note_combined(ev, c, operation);
            true
        }
        Err(CombineError::MixedSchemas) => {
            ev.warn(format!(
                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
                metric_name(labels)
            ));
            false
        }
    }
}

/// `rate`/`increase`/`delta` of histograms (Prometheus's `histogramRate` plus the
/// extrapolation of `extrapolatedRate`). `sts`: the samples' start timestamps, one
/// per histogram (empty: none), read as the float kernels read them
/// ([`super::rate`]): a start after the previous sample is a reset, a first sample
/// starting inside the window counts from zero there.
fn rate(
    ev: &Evaluator<'_>,
    func: &str,
    hs: &[(i64, Arc<FloatHistogram>)],
    sts: &[i64],
    arg: &RangeArg,
    labels: &Labels,
) -> Option<FloatHistogram> {
    let counter = func != "delta";
    let first_start = sts
        .first()
        .copied()
        .filter(|&st| counter && st != 0 && st > arg.window_end - arg.range_ms && st < hs[0].0);
    if hs.len() < 2 && first_start.is_none() {
        return None;
    }
    let reset = |i: usize, prev: &FloatHistogram| {
        hs[i].1.detect_reset(prev)
            || (i < sts.len()
                && super::rate::is_start_reset(sts[i - 1], hs[i - 1].0, sts[i], hs[i].0))
    };
    let name = metric_name(labels);
    let (first, last) = (&hs[0].1, &hs[hs.len() - 1].1);
    if counter
        && (first.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        ev.warn(format!(
            "this native histogram metric is not a counter: {name}"
        ));
    }
    let mut prev = first.as_ref().clone();
    let mut custom = prev.uses_custom_buckets();
    if counter && hs.len() > 1 && reset(1, &prev) {
        prev = FloatHistogram {
            schema: hs[1].1.schema,
            custom_values: hs[1].1.custom_values.clone(),
            ..FloatHistogram::default()
        };
        custom = hs[1].1.uses_custom_buckets();
    }
    let mixed_schemas = || {
        ev.warn(format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name}"
        ));
        None
    };
    if last.uses_custom_buckets() != custom {
        return mixed_schemas();
    }
    for (_, h) in hs.iter().take(hs.len() - 1).skip(1) {
        if !counter {
            continue;
        }
        if h.counter_reset_hint == CounterResetHint::Gauge {
            ev.warn(format!(
                "this native histogram metric is not a counter: {name}"
            ));
        }
        if h.uses_custom_buckets() != custom {
            return mixed_schemas();
        }
    }
    let mut result = last.as_ref().clone();
    match result.sub(&prev) {
        Err(_) => return mixed_schemas(),
        Ok(c) if c.custom_bounds_reconciled => {
            ev.info("mismatched custom buckets were reconciled during subtraction")
        }
        Ok(_) => {}
    }
    if counter {
        for (i, (_, cur)) in hs.iter().enumerate().skip(1) {
            if reset(i, &prev) {
                match result.add(&prev) {
                    Err(_) => return mixed_schemas(),
                    Ok(c) if c.custom_bounds_reconciled => {
                        ev.info("mismatched custom buckets were reconciled during addition")
                    }
                    Ok(_) => {}
                }
            }
            prev = cur.as_ref().clone();
        }
    } else if first.counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        ev.warn(format!(
            "this native histogram metric is not a gauge: {name}"
        ));
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact();
    // Extrapolation as for floats, the zero point from the count.
    let span = super::rate::Span {
        first_t: hs[0].0,
        last_t: hs[hs.len() - 1].0,
        samples: hs.len(),
        first: first.count,
        increase: result.count,
    };
    let (factor, from_start) =
        super::rate::extrapolation(&span, first_start, arg, counter, func == "rate")?;
    if from_start {
        if !note(ev, result.add(first), labels, "addition") {
            return None;
        }
        result.compact();
    }
    result.mul(factor);
    Some(result)
}

/// Prometheus's annotations for combining two histograms inside a range function
/// (`addHistogramWithAnnotations` / `subHistogramWithAnnotations`): the reconciled
/// custom buckets info, or (`false`) the mixed schemas warning. Counter-reset hint
/// collisions are not reported.
fn combined(
    ev: &Evaluator<'_>,
    r: Result<crate::histogram::Combined, CombineError>,
    labels: &Labels,
    operation: &str,
) -> bool {
    let quiet = r.map(|c| crate::histogram::Combined {
        counter_reset_collision: false,
        ..c
    });
    note(ev, quiet, labels, operation)
}

/// The histogram at `t` on the line from `a` to `b` (Prometheus's
/// `interpolateHistograms`): `a` or `b` when `t` is one of their times; for a
/// `counter` that reset between them, the line starts from zero at `a`. `None` (with
/// Prometheus's warning) when one has exponential and the other custom buckets.
pub fn interpolate_histograms(
    ev: &Evaluator<'_>,
    a: (i64, &FloatHistogram),
    b: (i64, &FloatHistogram),
    t: i64,
    counter: bool,
    labels: &Labels,
) -> Option<FloatHistogram> {
    if t == a.0 {
        return Some(a.1.clone());
    }
    if t == b.0 {
        return Some(b.1.clone());
    }
    let fraction = (t - a.0) as f64 / (b.0 - a.0) as f64;
    let mut out = b.1.clone();
    if counter && b.1.detect_reset(a.1) {
        out.mul(fraction);
        return Some(out);
    }
    if !combined(ev, out.sub(a.1), labels, "subtraction") {
        return None;
    }
    out.mul(fraction);
    if !combined(ev, out.add(a.1), labels, "addition") {
        return None;
    }
    Some(out)
}

/// `rate`/`increase` (`counter`) and `delta` of histograms over an `anchored` or
/// `smoothed` window (Prometheus's `extendedHistogramRate`): no extrapolation; the
/// histogram at the right edge minus the one at the left edge (edge samples, or
/// interpolated onto the edges), plus for counters what every reset between them
/// lost. `points` are the window's samples as read, `hs` their histograms.
fn extended_rate(
    ev: &Evaluator<'_>,
    func: &str,
    points: &[(i64, f64)],
    hs: &[(i64, Arc<FloatHistogram>)],
    arg: &RangeArg,
    labels: &Labels,
) -> Option<FloatHistogram> {
    use super::selector::edge_indices;
    let counter = func != "delta";
    let smoothed = arg.modifier == Some(crate::promql::plan::SelectorModifier::Smoothed);
    let (start, end) = (arg.window_end - arg.range_ms, arg.window_end);
    let (first, last) = edge_indices(points, start, end, smoothed)?;
    if smoothed && hs[first].0 > end {
        return None;
    }
    let name = metric_name(labels);
    let custom = hs[first].1.uses_custom_buckets();
    for (_, h) in &hs[first..=last] {
        if h.uses_custom_buckets() != custom {
            ev.warn(format!(
                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name}"
            ));
            return None;
        }
        if counter && h.counter_reset_hint == CounterResetHint::Gauge {
            ev.warn(format!(
                "this native histogram metric is not a counter: {name}"
            ));
        }
    }
    let at = |i: usize| (hs[i].0, hs[i].1.as_ref());
    let left = if smoothed && hs[first].0 < start {
        interpolate_histograms(ev, at(first), at(first + 1), start, counter, labels)?
    } else {
        hs[first].1.as_ref().clone()
    };
    let right = if smoothed && last > 0 && hs[last].0 > end {
        interpolate_histograms(ev, at(last - 1), at(last), end, counter, labels)?
    } else {
        hs[last].1.as_ref().clone()
    };
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    if !counter && (!gauge(&left) || !gauge(&right)) {
        ev.warn(format!(
            "this native histogram metric is not a gauge: {name}"
        ));
    }
    let mut result = right.clone();
    if !combined(ev, result.sub(&left), labels, "subtraction") {
        return None;
    }
    if counter {
        // The edge samples stand for themselves (`left`, `right`); a smoothed left
        // edge interpolated across a reset has accounted for it already.
        let mut lo = first + 1;
        let mut prev: &FloatHistogram = &left;
        if smoothed && hs[first].0 < start && hs[first + 1].1.detect_reset(&hs[first].1) {
            prev = &hs[first + 1].1;
            lo += 1;
        }
        if lo <= last {
            let mut correction: Option<FloatHistogram> = None;
            let mut lost = |h: &FloatHistogram| match correction.as_mut() {
                None => {
                    correction = Some(h.clone());
                    true
                }
                Some(c) => combined(ev, c.add(h), labels, "addition"),
            };
            for (_, h) in &hs[lo..last] {
                if h.detect_reset(prev) && !lost(prev) {
                    return None;
                }
                prev = h;
            }
            if right.detect_reset(prev) && !lost(prev) {
                return None;
            }
            if let Some(c) = correction {
                if !combined(ev, result.add(&c), labels, "addition") {
                    return None;
                }
            }
        }
    }
    if func == "rate" {
        result.div(arg.range_ms as f64 / 1000.0);
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact();
    Some(result)
}

/// `irate`/`idelta` over histograms: the last two samples, `dt` ms apart;
/// `start_reset`: the last one's start timestamp says the counter restarted.
fn instant_rate(
    ev: &Evaluator<'_>,
    is_rate: bool,
    prev: &FloatHistogram,
    last: &FloatHistogram,
    dt: i64,
    start_reset: bool,
    labels: &Labels,
) -> Option<f64> {
    if dt == 0 {
        return None;
    }
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    if is_rate && (gauge(prev) || gauge(last)) {
        ev.warn(format!(
            "this native histogram metric is not a counter: {}",
            metric_name(labels)
        ));
    }
    if !is_rate && (!gauge(prev) || !gauge(last)) {
        ev.warn(format!(
            "this native histogram metric is not a gauge: {}",
            metric_name(labels)
        ));
    }
    let mut result = last.clone();
    if is_rate && (start_reset || last.detect_reset(prev)) {
        // The counter restarted: the last sample is the increase.
    } else if !note(ev, result.sub(prev), labels, "subtraction") {
        return None;
    }
    if is_rate {
        result.div(dt as f64 / 1000.0);
    }
    result.counter_reset_hint = CounterResetHint::Gauge;
    result.compact();
    Some(ev.boxed(result))
}

/// One group of `sum`/`avg`/`count`/… when some element is a histogram: `None` when
/// none is (the float path applies); `Some(None)` when the group yields nothing.
pub fn aggregate(
    ev: &Evaluator<'_>,
    op: AggOp,
    elems: &[Element],
    floats: &mut Vec<f64>,
) -> Option<Option<f64>> {
    let hs: Vec<(Arc<FloatHistogram>, &Element)> = elems
        .iter()
        .filter_map(|e| ev.histogram(e.value).map(|h| (h, e)))
        .collect();
    if hs.is_empty() {
        return None;
    }
    floats.retain(|v| !ev.is_histogram(*v));
    let mixed = !floats.is_empty();
    let labels = &hs[0].1.labels;
    Some(match op {
        AggOp::Count => Some(elems.len() as f64),
        AggOp::Group => Some(1.0),
        AggOp::Sum | AggOp::Avg => {
            if mixed {
                ev.warn("encountered a mix of histograms and floats for aggregation");
                return Some(None);
            }
            let all: Vec<&FloatHistogram> = hs.iter().map(|(h, _)| h.as_ref()).collect();
            let Some(mut sum) = sum_histograms(ev, &all, labels) else {
                return Some(None);
            };
            if op == AggOp::Avg {
                sum.kahan_mean(&all);
            }
            sum.compact();
            Some(ev.boxed(sum))
        }
        other => {
            let name = format!("{other:?}").to_lowercase();
            ev.info(format!("ignored histogram in {name} aggregation"));
            if floats.is_empty() {
                return Some(None);
            }
            return None;
        }
    })
}

/// `l op r` where either side is a histogram, or `op` is a trim (`</` `>/`, which
/// yield nothing but an annotation for floats): `None` when neither is; `Some(None)`
/// when the pair yields nothing (with Prometheus's annotation).
pub fn binop(
    ev: &Evaluator<'_>,
    op: BinOp,
    l: f64,
    r: f64,
    return_bool: bool,
) -> Option<Option<f64>> {
    let (hl, hr) = (ev.histogram(l), ev.histogram(r));
    if hl.is_none() && hr.is_none() && !op.is_trim() {
        return None;
    }
    let kind = |h: &Option<Arc<FloatHistogram>>| if h.is_some() { "histogram" } else { "float" };
    let incompatible = || {
        ev.info(format!(
            "incompatible sample types encountered for binary operator {:?}: {} {} {}",
            op_text(op),
            kind(&hl),
            op_text(op),
            kind(&hr)
        ));
        None
    };
    Some(match (op, &hl, &hr) {
        (BinOp::Add | BinOp::Sub, Some(a), Some(b)) => {
            let mut out = a.as_ref().clone();
            let r = if op == BinOp::Add {
                out.add(b)
            } else {
                out.sub(b)
            };
            let what = if op == BinOp::Add {
                "addition"
            } else {
                "subtraction"
            };
            match r {
                Err(_) => {
                    ev.warn(format!(
                        "incompatible bucket layout encountered for binary operator {}",
                        op_text(op)
                    ));
                    None
                }
                Ok(c) => {
                    note_combined(ev, c, what);
                    if op == BinOp::Sub {
                        out.counter_reset_hint = CounterResetHint::Gauge;
                    }
                    out.compact();
                    Some(ev.boxed(out))
                }
            }
        }
        (BinOp::Mul, Some(h), None) | (BinOp::Mul, None, Some(h)) => {
            let s = if hl.is_some() { r } else { l };
            let mut out = h.as_ref().clone();
            out.mul(s);
            Some(ev.boxed(out))
        }
        (BinOp::Div, Some(h), None) => {
            let mut out = h.as_ref().clone();
            out.div(r);
            Some(ev.boxed(out))
        }
        (BinOp::TrimUpper | BinOp::TrimLower, Some(h), None) => {
            let mut out = h.as_ref().clone();
            out.trim(r, op == BinOp::TrimUpper);
            Some(ev.boxed(out))
        }
        (BinOp::Eq | BinOp::Ne, Some(a), Some(b)) => {
            let equal = a.same(b, false, |x, y| x == y || (x.is_nan() && y.is_nan()));
            let keep = equal == (op == BinOp::Eq);
            if return_bool {
                Some(f64::from(u8::from(keep)))
            } else if keep {
                Some(l)
            } else {
                None
            }
        }
        _ => return Some(incompatible()),
    })
}

fn op_text(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Pow => "^",
        BinOp::Atan2 => "atan2",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Gt => ">",
        BinOp::Lt => "<",
        BinOp::Ge => ">=",
        BinOp::Le => "<=",
        BinOp::And => "and",
        BinOp::Or => "or",
        BinOp::Unless => "unless",
        BinOp::TrimUpper => "</",
        BinOp::TrimLower => ">/",
    }
}

/// A subquery's point: a histogram whose hint says "reset" or "not reset" made
/// "unknown" (Prometheus's engine: a subquery may skip or repeat the reset sample).
pub fn hint_unknown(ev: &Evaluator<'_>, v: f64) -> f64 {
    match ev.histogram(v) {
        Some(h)
            if matches!(
                h.counter_reset_hint,
                CounterResetHint::Reset | CounterResetHint::NotReset
            ) =>
        {
            let mut h = h.as_ref().clone();
            h.counter_reset_hint = CounterResetHint::Unknown;
            ev.boxed(h)
        }
        _ => v,
    }
}

/// `-h`: the histogram scaled by -1.
pub fn negate(ev: &Evaluator<'_>, v: f64) -> Option<f64> {
    let h = ev.histogram(v)?;
    let mut out = h.as_ref().clone();
    out.mul(-1.0);
    Some(ev.boxed(out))
}
