//! Reference evaluator: computes a [`Plan`] at one instant from a [`SeriesSource`].
//!
//! This is the from-scratch oracle that maintained operators are checked against. It
//! follows Prometheus 3.x: instant selectors look back over `(t - lookback, t]`, range
//! selectors cover `(t - range, t]`, a stale marker ends a series, `@`/`offset` shift
//! the evaluation time of the selector (or subquery) they modify. A range query is
//! instant evaluation at each step ([`Evaluator::range`]).
//!
//! One function family per file: [`selector`] (instant/range/subquery selection),
//! [`rate`], [`over_time`], [`aggregate`], [`binary`], [`math`], [`histogram`]
//! (classic-bucket `histogram_quantile`), [`info`], [`functions`] (dispatch, time,
//! labels, absent, sort, clamp, …), [`native`] (native histograms, carried as handles).

pub mod aggregate;
pub mod binary;
pub mod functions;
pub mod histogram;
pub mod info;
pub mod math;
pub mod native;
pub mod over_time;
pub mod rate;
pub mod selector;

use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::promql::plan::{Grouping, Plan};
use crate::selector::Selector;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Selected series: labels and `(timestamp_ms, value)` samples sorted by time.
pub type Selected = Vec<(Arc<Labels>, Vec<(i64, f64)>)>;

/// What [`SeriesSource::select_each`] calls with each selected series: its labels and
/// its samples in the range.
pub type EachSeries<'a> = dyn FnMut(&Arc<Labels>, &[(i64, f64)]) + 'a;

/// Where the evaluator reads samples from.
pub trait SeriesSource {
    /// Every series matching `matchers` with its samples in `[start_ms, end_ms]`
    /// (both inclusive), sorted by time; stale markers included.
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected;

    /// What [`SeriesSource::select`] returns, handed to `each` one series at a time
    /// (in the same order) instead of as an owned list; a source that holds the samples
    /// already lends them without copying.
    fn select_each(
        &self,
        matchers: &Selector,
        start_ms: i64,
        end_ms: i64,
        each: &mut EachSeries<'_>,
    ) {
        for (labels, samples) in self.select(matchers, start_ms, end_ms) {
            each(&labels, &samples);
        }
    }

    /// The start timestamps of the samples of series `labels` (one `select` of
    /// `matchers` returns) in `[start_ms, end_ms]`, as time-sorted `(timestamp,
    /// start)` pairs for those that have one (Prometheus 3.x's `use-start-timestamps`;
    /// read by `rate`, `increase`, `irate`, `resets`). Default: none kept.
    fn start_times(
        &self,
        _matchers: &Selector,
        _labels: &Labels,
        _start_ms: i64,
        _end_ms: i64,
    ) -> Vec<(i64, i64)> {
        Vec::new()
    }

    /// The stored native histogram a sample value names ([`native::SOURCE`] handle
    /// `index`). Default: the source holds none.
    fn histogram(&self, _index: u32) -> Option<Arc<FloatHistogram>> {
        None
    }

    /// Whether the series `labels` (as one `select` returned them) is an element whose
    /// name is pending removal ([`Element::drop_name`]): a source of elements held as
    /// the reference holds a sub-expression's, unfinished (a spread rule's owner
    /// running the operations after its combined result,
    /// [`crate::render::spread`]). An instant selection of it keeps the removal
    /// pending. Default: none (stored series).
    fn names_pending(&self, _labels: &Arc<Labels>) -> bool {
        false
    }
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Element {
    /// Labels of the element.
    pub labels: Arc<Labels>,
    /// Its value.
    pub value: f64,
    /// Delayed name removal (Prometheus 3.x): a function dropped `__name__`, but the
    /// label stays until the end of evaluation (or a subquery boundary) so that
    /// `label_replace(…, "__name__", …)` and `by (__name__)` can still see it.
    pub drop_name: bool,
}

impl Element {
    /// An element whose name is kept.
    pub fn new(labels: Arc<Labels>, value: f64) -> Element {
        Element {
            labels,
            value,
            drop_name: false,
        }
    }

    /// An element whose name is dropped at the end of evaluation.
    pub fn name_dropped(labels: Arc<Labels>, value: f64) -> Element {
        Element {
            labels,
            value,
            drop_name: true,
        }
    }
}

/// Applies delayed name removal: drops `__name__` from flagged elements and checks
/// that the label sets are still unique.
pub fn finish_vector(v: Vec<Element>) -> EvalResult<Vec<Element>> {
    let v: Vec<Element> = v
        .into_iter()
        .map(|e| {
            if e.drop_name {
                Element::new(drop_name(&e.labels), e.value)
            } else {
                e
            }
        })
        .collect();
    check_unique(&v)?;
    Ok(v)
}

/// One series of a range vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Labels of the series.
    pub labels: Arc<Labels>,
    /// Points `(timestamp_ms, value)`, sorted by time.
    pub points: Vec<(i64, f64)>,
}

/// A PromQL value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
    /// An instant vector.
    Vector(Vec<Element>),
    /// A range vector.
    Matrix(Vec<Series>),
}

/// Why an evaluation failed. Its `Display` is Prometheus's message, word for word (the
/// API answers it as `error`; tests compare it with Prometheus's). Which API error type
/// each variant is answered with is decided by the API, in one place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EvalError {
    /// The query would hold more than `--query.max-samples` samples ([`SampleBudget`]).
    TooManySamples,
    /// The query ran past its deadline ([`Evaluator::deadline`]).
    TimedOut,
    /// Two elements of a result have the same labels (e.g. after a function dropped
    /// `__name__`).
    DuplicateLabelset,
    /// Any other runtime error of the query, in Prometheus's words: a function argument
    /// out of its domain, a vector matching that is not one-to-one, …
    Execution(String),
    /// A plan the evaluator cannot evaluate: a node whose operands are not of the type
    /// it needs, or a function it does not implement (the planner lets neither through;
    /// Prometheus refuses such queries when it parses them).
    Unsupported(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::TooManySamples => f.write_str(
                "query processing would load too many samples into memory in query execution",
            ),
            EvalError::TimedOut => f.write_str("query timed out in expression evaluation"),
            EvalError::DuplicateLabelset => {
                f.write_str("vector cannot contain metrics with the same labelset")
            }
            EvalError::Execution(m) | EvalError::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EvalError {}

/// Shorthand result type.
pub type EvalResult<T> = Result<T, EvalError>;

/// `--query.max-samples`: the samples a query holds at once, counted the way
/// Prometheus 2.42's engine counts them for an instant evaluation. A selector holds
/// what it selected (a range selector every point of its window); a function,
/// aggregation or binary operation over instant vectors counts its inputs a second time
/// while it combines them (Prometheus gathers each step's inputs into a vector) and
/// then holds only its output; a range function holds one window at a time plus its
/// outputs; a number holds one sample; unary minus nothing more. A range query holds
/// its result as it grows, plus each step's evaluation. Prometheus evaluates a range
/// query node by node over all steps, so for nested expressions its count is larger
/// than this one: such range queries may be served by promflow slightly past the point
/// where Prometheus refuses them.
#[derive(Debug)]
pub struct SampleBudget {
    max: usize,
    held: Cell<usize>,
}

impl SampleBudget {
    /// A budget of `max` samples.
    pub fn new(max: usize) -> SampleBudget {
        SampleBudget {
            max,
            held: Cell::new(0),
        }
    }

    /// Holds `n` more samples, or fails with [`EvalError::TooManySamples`].
    pub fn take(&self, n: usize) -> EvalResult<()> {
        let held = self.held.get().saturating_add(n);
        self.held.set(held);
        if held > self.max {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    /// Lets go of `n` samples.
    pub fn release(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
    }

    /// Samples held now.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    fn set(&self, held: usize) {
        self.held.set(held);
    }
}

/// The samples a value holds in Prometheus's count ([`SampleBudget`]).
fn samples_in(value: &Value) -> usize {
    match value {
        Value::Scalar(_) => 1,
        Value::String(_) => 0,
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.iter().map(|s| s.points.len()).sum(),
    }
}

/// Settings and the source for one query.
pub struct Evaluator<'a> {
    /// The samples.
    pub source: &'a dyn SeriesSource,
    /// Lookback delta in ms (Prometheus default 5m).
    pub lookback_ms: i64,
    /// Default subquery step in ms (the rule/global evaluation interval; tests use 1m).
    pub subquery_step_ms: i64,
    /// Query start (for `@ start()`), ms.
    pub start_ms: i64,
    /// Query end (for `@ end()`), ms.
    pub end_ms: i64,
    /// Query step (for `step()`), ms; 0 for instant queries.
    pub step_ms: i64,
    /// `--query.max-samples` (no limit unless set).
    pub samples: SampleBudget,
    /// When the query times out: evaluation stops at the next node or step after it
    /// (Prometheus checks its context at each step), so a timed-out query frees its
    /// thread.
    pub deadline: Option<std::time::Instant>,
    /// Warnings and infos raised so far.
    annotations: RefCell<Annotations>,
    /// Label sets derived during this evaluation ([`Evaluator::derived`]).
    derived: RefCell<HashMap<(usize, usize), Derived, BuildAddressHasher>>,
    /// Every distinct set [`Evaluator::derived`] returned, so that equal sets are one
    /// `Arc` (found by address in [`LabelSlots`]).
    interned: RefCell<HashSet<Arc<Labels>>>,
    /// Histograms computed during this evaluation ([`native::MADE`] handles).
    histograms: RefCell<Vec<Arc<FloatHistogram>>>,
}

/// The most label sets [`Evaluator::derived`] remembers.
const MAX_DERIVED: usize = 1 << 16;

/// How a label set is derived from another ([`Evaluator::derived`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Derivation<'p> {
    /// Without `__name__` and its metadata labels ([`drop_name`]).
    DropName,
    /// The group of an aggregation ([`aggregate::group_labels`]).
    Group(&'p Grouping),
    /// Without `le` (the bucket group of `histogram_quantile`).
    WithoutLe,
}

impl Derivation<'_> {
    /// Part of the memo key: a number per kind, the grouping's address for a group
    /// (checked against the stored grouping on a hit).
    fn tag(&self) -> usize {
        match self {
            Derivation::DropName => 0,
            Derivation::WithoutLe => 1,
            Derivation::Group(g) => *g as *const Grouping as usize,
        }
    }
}

/// One memo entry of [`Evaluator::derived`]: the source set (held, so that its address
/// names it as long as the entry exists), the grouping it was derived by (if any),
/// and the result.
struct Derived {
    from: Arc<Labels>,
    grouping: Option<Grouping>,
    labels: Arc<Labels>,
}

/// Prometheus's annotations of a query result: messages that do not fail it, as
/// `PromQL warning: …` / `PromQL info: …` (without Prometheus's `(line:col)` suffix:
/// plans do not keep source positions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// Warnings, sorted, each once.
    pub warnings: BTreeSet<String>,
    /// Infos, sorted, each once.
    pub infos: BTreeSet<String>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator for an instant query at `t_ms` with Prometheus's defaults.
    pub fn new(source: &'a dyn SeriesSource, t_ms: i64) -> Evaluator<'a> {
        Evaluator {
            source,
            lookback_ms: 5 * 60_000,
            subquery_step_ms: 60_000,
            start_ms: t_ms,
            end_ms: t_ms,
            step_ms: 0,
            samples: SampleBudget::new(usize::MAX),
            deadline: None,
            annotations: RefCell::default(),
            derived: RefCell::default(),
            interned: RefCell::default(),
            histograms: RefCell::default(),
        }
    }

    /// Raises a warning (`msg` without the `PromQL warning: ` prefix).
    pub fn warn(&self, msg: impl std::fmt::Display) {
        let text = format!("PromQL warning: {msg}");
        self.annotations.borrow_mut().warnings.insert(text);
    }

    /// Raises an info (`msg` without the `PromQL info: ` prefix).
    pub fn info(&self, msg: impl std::fmt::Display) {
        let text = format!("PromQL info: {msg}");
        self.annotations.borrow_mut().infos.insert(text);
    }

    /// The label set derived from `from` by `how`, memoized for this evaluation: a
    /// range query derives the same sets at every step, and an unchanged `Arc` lets the
    /// steps' results be matched up by address.
    pub fn derived(&self, from: &Arc<Labels>, how: Derivation<'_>) -> Arc<Labels> {
        let key = (Arc::as_ptr(from) as usize, how.tag());
        let grouping = match how {
            Derivation::Group(g) => Some(g),
            _ => None,
        };
        if let Some(d) = self.derived.borrow().get(&key) {
            if Arc::ptr_eq(&d.from, from) && d.grouping.as_ref() == grouping {
                return d.labels.clone();
            }
        }
        let mut memo = self.derived.borrow_mut();
        if memo.len() >= MAX_DERIVED {
            // Sources that are new at every step (never hit): start over rather than
            // hold every step's sets.
            memo.clear();
            self.interned.borrow_mut().clear();
        }
        let labels = match how {
            Derivation::DropName => drop_name(from),
            Derivation::Group(g) => Arc::new(aggregate::group_labels(from, g)),
            Derivation::WithoutLe => Arc::new(Labels::from_pairs(
                from.iter()
                    .filter(|(n, _)| *n != "le")
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )),
        };
        let labels = {
            let mut interned = self.interned.borrow_mut();
            match interned.get(&labels) {
                Some(same) => same.clone(),
                None => {
                    interned.insert(labels.clone());
                    labels
                }
            }
        };
        memo.insert(
            key,
            Derived {
                from: from.clone(),
                grouping: grouping.cloned(),
                labels: labels.clone(),
            },
        );
        labels
    }

    /// The annotations raised so far, leaving none.
    pub fn take_annotations(&self) -> Annotations {
        self.annotations.take()
    }

    /// Evaluates `plan` at every step of `[start, end]`, assembling a matrix (a scalar
    /// result becomes a series with no labels). Series are sorted by labels.
    pub fn range(&self, plan: &Plan, start: i64, end: i64, step: i64) -> EvalResult<Vec<Series>> {
        if sorts(plan) {
            self.warn(
                "sort is ineffective for range queries since results are always ordered by labels",
            );
        }
        let steps = if step > 0 {
            ((end - start) / step + 1).clamp(1, 1 << 16) as usize
        } else {
            1
        };
        let mut matrix = Matrix::new(steps);
        let mut t = start;
        while t <= end {
            // The result so far stays held; each step's evaluation adds its own.
            let base = self.samples.held();
            let value = self.eval(plan, t)?;
            self.samples.set(base);
            self.samples.take(samples_in(&value))?;
            match value {
                Value::Scalar(v) => matrix.push(Arc::default(), t, v)?,
                Value::Vector(v) => {
                    for e in v {
                        let labels = if e.drop_name {
                            self.derived(&e.labels, Derivation::DropName)
                        } else {
                            e.labels
                        };
                        matrix.push(labels, t, e.value)?;
                    }
                }
                _ => {
                    return Err(EvalError::Unsupported(
                        "range query of a non-vector expression".into(),
                    ))
                }
            }
            if step <= 0 {
                break;
            }
            t += step;
        }
        Ok(matrix.into_sorted())
    }

    /// Evaluates a whole query at `t` (ms): [`Evaluator::eval`] plus delayed name removal.
    pub fn instant(&self, plan: &Plan, t: i64) -> EvalResult<Value> {
        Ok(match self.eval(plan, t)? {
            Value::Vector(v) => Value::Vector(finish_vector(v)?),
            other => other,
        })
    }

    /// Evaluates a sub-expression `plan` at `t` (ms); names may still be pending removal.
    /// Counts the samples it holds in [`Evaluator::samples`].
    pub fn eval(&self, plan: &Plan, t: i64) -> EvalResult<Value> {
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(EvalError::TimedOut);
        }
        let base = self.samples.held();
        let value = self.eval_node(plan, t)?;
        match plan {
            Plan::Number(_) | Plan::Vector(_) => self.samples.take(samples_in(&value))?,
            // Held by the selection itself, or nothing more.
            Plan::String(_) | Plan::Matrix { .. } | Plan::Subquery { .. } | Plan::Neg(_) => {}
            Plan::Call { args, .. } if functions::takes_range(args) => {}
            Plan::Call { .. } | Plan::Aggregate { .. } | Plan::Binary { .. } => {
                let inputs = self.samples.held().saturating_sub(base);
                self.samples.take(inputs)?;
                self.samples.take(samples_in(&value))?;
                self.samples.set(base + samples_in(&value));
            }
        }
        Ok(value)
    }

    fn eval_node(&self, plan: &Plan, t: i64) -> EvalResult<Value> {
        Ok(match plan {
            Plan::Number(v) => Value::Scalar(*v),
            Plan::String(s) => Value::String(s.clone()),
            Plan::Vector(sel) => Value::Vector(selector::instant(self, sel, t)),
            Plan::Matrix { .. } | Plan::Subquery { .. } => {
                Value::Matrix(selector::range_arg(self, plan, t)?.window_series())
            }
            Plan::Neg(inner) => match self.eval(inner, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => Value::Vector(
                    v.into_iter()
                        .map(|e| {
                            let value = native::negate(self, e.value).unwrap_or(-e.value);
                            Element::name_dropped(e.labels, value)
                        })
                        .collect(),
                ),
                _ => {
                    return Err(EvalError::Unsupported(
                        "unary minus on a non-numeric value".into(),
                    ))
                }
            },
            Plan::Call { func, args } => {
                let v = functions::call(self, func, args, t)?;
                // A range function's elements are its distinct input series, labels
                // unchanged (the name drop is delayed): nothing to check.
                if let Value::Vector(v) = &v {
                    if !functions::takes_range(args) {
                        check_unique(v)?;
                    }
                }
                v
            }
            Plan::Aggregate {
                op,
                expr,
                param,
                grouping,
            } => aggregate::eval(self, *op, expr, param.as_deref(), grouping, t)?,
            Plan::Binary {
                op,
                lhs,
                rhs,
                matching,
                return_bool,
            } => binary::eval(self, *op, lhs, rhs, matching.as_ref(), *return_bool, t)?,
        })
    }

    /// Evaluates to an instant vector, or errors.
    pub fn vector(&self, plan: &Plan, t: i64) -> EvalResult<Vec<Element>> {
        match self.eval(plan, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(EvalError::Unsupported(format!(
                "expected instant vector, got {other:?}"
            ))),
        }
    }

    /// Evaluates to a scalar, or errors.
    pub fn scalar(&self, plan: &Plan, t: i64) -> EvalResult<f64> {
        match self.eval(plan, t)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(EvalError::Unsupported("expected scalar".into())),
        }
    }

    /// Evaluates to a string, or errors.
    pub fn string(&self, plan: &Plan, t: i64) -> EvalResult<String> {
        match self.eval(plan, t)? {
            Value::String(s) => Ok(s),
            _ => Err(EvalError::Unsupported("expected string".into())),
        }
    }
}

/// Slots of distinct label sets, found by the address of an `Arc` (a set seen before
/// through the same `Arc`: a selected series, or a set from [`Evaluator::derived`],
/// at every step) or else by the labels themselves. The index holds every `Arc` whose
/// address it knows, so an address names one label set for the index's lifetime.
#[derive(Default)]
pub struct LabelSlots {
    by_address: HashMap<usize, usize, BuildAddressHasher>,
    by_labels: HashMap<Arc<Labels>, usize>,
}

impl LabelSlots {
    /// The slot of `labels`, and whether it is new (numbered in first-seen order).
    pub fn slot(&mut self, labels: &Arc<Labels>) -> (usize, bool) {
        let address = Arc::as_ptr(labels) as usize;
        if let Some(&at) = self.by_address.get(&address) {
            return (at, false);
        }
        if let Some(&at) = self.by_labels.get(labels) {
            return (at, false);
        }
        let at = self.by_labels.len();
        self.by_address.insert(address, at);
        self.by_labels.insert(labels.clone(), at);
        (at, true)
    }
}

/// Hashes addresses (`usize` keys, or tuples of them) by one multiplication each:
/// addresses are distinct, and SipHash showed in profiles.
#[derive(Clone, Copy, Default)]
pub struct BuildAddressHasher;

/// See [`BuildAddressHasher`].
#[derive(Default)]
pub struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Fibonacci hashing of each word into the state (a tuple of addresses writes
        // several); the rotation brings the well-mixed high bits down too.
        self.0 = (self.0 ^ n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

impl std::hash::BuildHasher for BuildAddressHasher {
    type Hasher = AddressHasher;

    fn build_hasher(&self) -> AddressHasher {
        AddressHasher::default()
    }
}

/// A range query's result as it is assembled step by step.
struct Matrix {
    series: Vec<Series>,
    slots: LabelSlots,
    steps: usize,
}

impl Matrix {
    fn new(steps: usize) -> Matrix {
        Matrix {
            series: Vec::new(),
            slots: LabelSlots::default(),
            steps,
        }
    }

    /// Adds the point `(t, value)` of `labels`; two points of one label set at the same
    /// step are Prometheus's duplicate-labelset error (what [`finish_vector`] checks for
    /// an instant query).
    fn push(&mut self, labels: Arc<Labels>, t: i64, value: f64) -> EvalResult<()> {
        let (at, new) = self.slots.slot(&labels);
        if new {
            self.series.push(Series {
                labels,
                points: Vec::with_capacity(self.steps),
            });
        }
        let points = &mut self.series[at].points;
        if points.last().is_some_and(|p| p.0 == t) {
            return Err(EvalError::DuplicateLabelset);
        }
        points.push((t, value));
        Ok(())
    }

    fn into_sorted(mut self) -> Vec<Series> {
        self.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.series
    }
}

/// Whether `plan` calls one of the `sort` functions anywhere.
fn sorts(plan: &Plan) -> bool {
    match plan {
        Plan::Number(_) | Plan::String(_) | Plan::Vector(_) | Plan::Matrix { .. } => false,
        Plan::Call { func, args } => func.starts_with("sort") || args.iter().any(sorts),
        Plan::Subquery { expr, .. } | Plan::Neg(expr) => sorts(expr),
        Plan::Aggregate { expr, param, .. } => sorts(expr) || param.as_deref().is_some_and(sorts),
        Plan::Binary { lhs, rhs, .. } => sorts(lhs) || sorts(rhs),
    }
}

/// Whether `name` is `__name__` or one of the metadata labels that go with it.
pub fn is_name_label(name: &str) -> bool {
    matches!(name, "__name__" | "__type__" | "__unit__")
}

/// The labels without `__name__` (and the `__type__`/`__unit__` metadata labels, which
/// describe the name and go with it).
pub fn drop_name(labels: &Arc<Labels>) -> Arc<Labels> {
    const NAME_LABELS: [&str; 3] = [crate::labels::METRIC_NAME, "__type__", "__unit__"];
    if !labels.iter().any(|(n, _)| NAME_LABELS.contains(&n)) {
        return labels.clone();
    }
    Arc::new(Labels::from_pairs(
        labels
            .iter()
            .filter(|(n, _)| !NAME_LABELS.contains(n))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    ))
}

/// Prometheus's check that a function result has no two elements with the same labels.
pub fn check_unique(v: &[Element]) -> EvalResult<()> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for e in v {
        if !seen.insert(e.labels.clone()) {
            return Err(EvalError::DuplicateLabelset);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan;
    use crate::promql::testscript::store::MemStorage;

    /// A store that hands out new `Arc`s for the same series at every selection (as a
    /// source reading from disk would), so no address is stable across steps.
    struct FreshArcs<'a>(&'a MemStorage);

    impl SeriesSource for FreshArcs<'_> {
        fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
            self.0
                .select(matchers, start_ms, end_ms)
                .into_iter()
                .map(|(l, s)| (Arc::new(Labels::clone(&l)), s))
                .collect()
        }
    }

    fn store() -> MemStorage {
        let mut store = MemStorage::default();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for name in ["a_total", "b_total"] {
            for instance in ["x", "y", "z"] {
                for le in ["0.1", "1", "+Inf"] {
                    let labels = Labels::from_pairs(vec![
                        ("__name__".into(), name.into()),
                        ("instance".into(), instance.into()),
                        ("le".into(), le.into()),
                    ]);
                    // Series that start late, stop early, and have gaps.
                    let (from, to) = (next() % 20, 20 + next() % 21);
                    let mut total = 0.0;
                    let mut points = std::collections::BTreeMap::new();
                    for i in from..to {
                        total += (next() % 7) as f64;
                        if next() % 5 != 0 {
                            points.insert(i as i64 * 15_000 + 7_500, total);
                        }
                    }
                    store.series.insert(Arc::new(labels), points);
                }
            }
        }
        store
    }

    /// What `range` must equal: the instant query at every step, assembled by labels.
    fn per_step(
        ev: &Evaluator<'_>,
        plan: &Plan,
        start: i64,
        end: i64,
        step: i64,
    ) -> EvalResult<Vec<Series>> {
        let mut out: std::collections::BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = Default::default();
        let mut t = start;
        while t <= end {
            match ev.instant(plan, t)? {
                Value::Scalar(v) => out.entry(Arc::default()).or_default().push((t, v)),
                Value::Vector(v) => {
                    for e in v {
                        out.entry(e.labels).or_default().push((t, e.value));
                    }
                }
                _ => unreachable!(),
            }
            t += step;
        }
        Ok(out
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect())
    }

    /// Values as bits, so that NaN equals NaN.
    type Bits = EvalResult<Vec<(Arc<Labels>, Vec<(i64, u64)>)>>;

    fn bits(result: EvalResult<Vec<Series>>) -> Bits {
        result.map(|series| {
            series
                .into_iter()
                .map(|s| {
                    let points = s.points.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                    (s.labels, points)
                })
                .collect()
        })
    }

    #[test]
    fn range_is_the_instant_query_at_every_step() {
        let store = store();
        let fresh = FreshArcs(&store);
        let queries = [
            "a_total",
            "{le=\"1\"}",
            "rate(a_total[1m])",
            "rate({le=\"1\"}[1m])",
            "sum by (instance) (rate(a_total[1m]))",
            "sum without (le) (a_total)",
            "max by (instance, __name__) ({instance=~\"x|y\", le!=\"1\"})",
            "histogram_quantile(0.9, sum by (le) (rate(a_total[2m])))",
            "histogram_quantile(0.5, rate({__name__=~\".+\", instance=\"x\"}[2m]))",
            "-a_total",
            "count_values(\"v\", a_total > 20)",
            "abs(a_total) + on (instance, le) group_left b_total",
            "time()",
            "max_over_time(rate(a_total[1m])[2m:30s])",
            "label_replace(a_total, \"instance\", \"same\", \"instance\", \".*\")",
            "rate({le=\"1\"}[1m]) + 1",
        ];
        for source in [&store as &dyn SeriesSource, &fresh] {
            for query in queries {
                let plan = plan::parse(query).unwrap();
                for (start, end, step) in [(0, 600_000, 15_000), (60_000, 300_000, 60_000)] {
                    let ev = Evaluator::new(source, start);
                    let got = bits(ev.range(&plan, start, end, step));
                    let want = bits(per_step(
                        &Evaluator::new(source, start),
                        &plan,
                        start,
                        end,
                        step,
                    ));
                    assert_eq!(got, want, "{query} over [{start}, {end}] step {step}");
                    // Names dropped onto one label set; a label_replace collision; two
                    // histograms that differ only by name.
                    let duplicates = ["rate({le", "label_", "histogram_quantile(0.5"]
                        .iter()
                        .any(|p| query.starts_with(p));
                    assert_eq!(got.is_err(), duplicates, "{query}");
                }
            }
        }
    }
}
