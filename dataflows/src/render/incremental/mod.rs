//! Incremental evaluation: a rule's result kept per series and per group, recomputed
//! at each evaluation time only where an input changed.
//!
//! PromQL (the node kinds of [`crate::render::shape`]):
//! ```promql
//! rate(x[1m]) * 100 > 5            # per series: recomputed when a sample enters or leaves
//!                                  # that series' window (and every time for `rate`)
//! sum by (job) (rate(x[1m]))       # per group: re-reduced only when a member changed
//! sum by (job) (rate(x[1m])) > 10  # map: re-applied only to changed groups
//! a / b < 0.1                      # join: only match groups with a changed side
//! ```
//! Contract: [`IncrementalRule::evaluate`] returns exactly what the reference evaluator
//! returns for the whole plan over the same [`WindowStore`], or `None` when it cannot
//! vouch for that (two elements of a node with the same labels, where the reference
//! may answer with an error or merge them; a join's match group with two elements on
//! a side, where it may answer with a matching error; a per-series error) and the caller
//! evaluates the whole plan. Each node keeps its current elements keyed by input
//! series (per-series, map), group labels (aggregate) or match group (join) and reports
//! which keys changed.
//!
//! When a per-series element must be recomputed: a sample of the series arrives
//! ([`IncrementalRule::arrived`], at the time it enters the window), or a time event
//! passes — the oldest sample in the window leaves it (for an instant selector: the
//! newest sample passes the lookback delta), a sample already held enters it, or,
//! for `t`-dependent functions (`rate`'s extrapolation), every evaluation while the
//! window is not empty. These times sit in an agenda, so an evaluation touches only
//! the series due, never the others. Each recomputation evaluates the node's sub-plan
//! over that one series' window, O(window): common plans (an instant selector, a
//! range function, then element-wise operations with constants) as a `SeriesKernel`
//! calling the reference evaluator's own per-series functions on the retained slice
//! (no evaluator, no copy), others with the reference evaluator over a source
//! holding that one series. A group is re-reduced with the reference's
//! [`reduce`] over its members' values, a join's match group re-matched with its
//! [`result_labels`] and [`matched_element`]. Keys carry their labels' hash ([`LabelsKey`]), so
//! the maps of series, elements and groups never rehash label sets.

use crate::labels::Labels;
use crate::promql::eval::aggregate::{group_labels, reduce};
use crate::promql::eval::binary::{matched_element, result_labels, scalar_element, signature};
use crate::promql::eval::functions::{range_element, range_kernel, RangeParams};
use crate::promql::eval::selector::{latest_in_lookback, range_window, RangeArg};
use crate::promql::eval::{finish_vector, math, Element, EvalError, EvalResult, Evaluator};
use crate::promql::eval::{Selected, SeriesSource, Value};
use crate::promql::plan::{AggOp, BinOp, Grouping, Matching, Plan};
use crate::render::shape::{constant, element_wise, per_series_range_function, Shape};
use crate::render::window::{self, within, KeyHasher, LabelsKey, WindowStore};
use crate::selector::Selector;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// How the reference evaluator is set up for a rule (lookback, subquery step, the
/// query range for `@ start()`/`@ end()`/`step()`).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Lookback delta (ms).
    pub lookback_ms: i64,
    /// Default subquery step (ms).
    pub subquery_step_ms: i64,
    /// Query range start (ms); `None`: the evaluation time.
    pub start_ms: Option<i64>,
    /// Query range end (ms); `None`: the evaluation time.
    pub end_ms: Option<i64>,
    /// Query step (ms).
    pub step_ms: i64,
}

impl Settings {
    /// An evaluator over `source` at `t`.
    pub fn evaluator<'a>(&self, source: &'a dyn SeriesSource, t: i64) -> Evaluator<'a> {
        let mut ev = Evaluator::new(source, t);
        ev.lookback_ms = self.lookback_ms;
        ev.subquery_step_ms = self.subquery_step_ms;
        ev.start_ms = self.start_ms.unwrap_or(t);
        ev.end_ms = self.end_ms.unwrap_or(t);
        ev.step_ms = self.step_ms;
        ev
    }
}

type Key = LabelsKey;
type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;
type KeySet = HashSet<Key, BuildHasherDefault<KeyHasher>>;

/// The hash of an element's labels: its key's when they are the key's labels.
fn labels_hash(key: &Key, labels: &Arc<Labels>) -> u64 {
    if Arc::ptr_eq(&key.labels, labels) {
        key.hash
    } else {
        Labels::hash(labels)
    }
}

/// A node's current elements by key, and how many elements share a label set.
#[derive(Default)]
struct Outputs {
    /// Each element with the hash of its labels.
    elements: KeyMap<(Element, u64)>,
    /// Elements per label-set hash. Two label sets with one hash count as a collision
    /// too: that only sends the evaluation to the whole plan.
    label_counts: window::KeyMap<u64, u32>,
    /// Elements whose labels another element already has.
    collisions: usize,
}

impl Outputs {
    /// The element of `key`, if any.
    fn get(&self, key: &Key) -> Option<&Element> {
        self.elements.get(key).map(|(e, _)| e)
    }

    /// Sets the element of `key`; whether it changed.
    fn set(&mut self, key: &Key, new: Option<Element>) -> bool {
        let Some(mut e) = new else {
            return match self.elements.remove(key) {
                Some((_, old_hash)) => {
                    self.count(old_hash, false);
                    true
                }
                None => false,
            };
        };
        let Some(slot) = self.elements.get_mut(key) else {
            let hash = labels_hash(key, &e.labels);
            self.elements.insert(key.clone(), (e, hash));
            self.count(hash, true);
            return true;
        };
        if slot.0.labels == e.labels {
            if slot.0.value.to_bits() == e.value.to_bits() && slot.0.drop_name == e.drop_name {
                return false;
            }
            // Keep the old `Arc` (fewer label sets alive, faster compares).
            e.labels = slot.0.labels.clone();
            slot.0 = e;
            return true;
        }
        let hash = labels_hash(key, &e.labels);
        let old_hash = std::mem::replace(slot, (e, hash)).1;
        self.count(hash, true);
        self.count(old_hash, false);
        true
    }

    fn count(&mut self, hash: u64, add: bool) {
        if add {
            let c = self.label_counts.entry(hash).or_insert(0);
            if *c > 0 {
                self.collisions += 1;
            }
            *c += 1;
        } else if let Some(c) = self.label_counts.get_mut(&hash) {
            *c -= 1;
            if *c > 0 {
                self.collisions -= 1;
            } else {
                self.label_counts.remove(&hash);
            }
        }
    }
}

/// No series at all (for evaluating constants).
struct NoSeries;

impl SeriesSource for NoSeries {
    fn select(&self, _matchers: &Selector, _start_ms: i64, _end_ms: i64) -> Selected {
        Vec::new()
    }
}

/// The value of a constant plan (a number, or arithmetic on numbers).
fn constant_value(plan: &Plan) -> Option<f64> {
    if !constant(plan) {
        return None;
    }
    Evaluator::new(&NoSeries, 0).scalar(plan, 0).ok()
}

/// One element-wise operation with constant operands, as the reference applies it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `-x`.
    Neg,
    /// `x op s`, or `s op x` when `swap`.
    Scalar {
        op: BinOp,
        s: f64,
        swap: bool,
        return_bool: bool,
    },
    /// `abs(x)`, `sqrt(x)`, … ([`math::unary`]).
    Unary(fn(f64) -> f64),
}

impl Step {
    /// The step `plan` applies to its element-wise operand, if it is one of these.
    fn of(plan: &Plan) -> Option<Step> {
        match plan {
            Plan::Neg(_) => Some(Step::Neg),
            Plan::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                ..
            } if !op.is_set() => {
                let (s, swap) = match constant_value(rhs) {
                    Some(s) => (s, false),
                    None => (constant_value(lhs)?, true),
                };
                Some(Step::Scalar {
                    op: *op,
                    s,
                    swap,
                    return_bool: *return_bool,
                })
            }
            Plan::Call { func, args } if args.len() == 1 => math::unary(func).map(Step::Unary),
            _ => None,
        }
    }

    /// The step applied to `e`; `None`: a comparison filtered it out.
    fn apply(&self, e: Element) -> Option<Element> {
        match *self {
            Step::Neg => Some(Element::name_dropped(e.labels, -e.value)),
            Step::Scalar {
                op,
                s,
                swap,
                return_bool,
            } => scalar_element(op, e, s, swap, return_bool),
            Step::Unary(f) => Some(Element::name_dropped(e.labels, f(e.value))),
        }
    }
}

/// What a per-series plan reads from its series' window at `t`.
#[derive(Clone, Debug)]
enum Read {
    /// An instant selector: the newest sample within the lookback delta.
    Instant { offset_ms: i64 },
    /// A range function of a range selector without modifier.
    Range {
        func: &'static str,
        offset_ms: i64,
        range_ms: i64,
        params: RangeParams,
    },
}

/// A per-series plan as the reference evaluator's per-series functions applied to the
/// retained slice of one series: a [`Read`], then element-wise [`Step`]s.
#[derive(Clone, Debug)]
struct SeriesKernel {
    read: Read,
    /// Innermost first.
    steps: Vec<Step>,
}

impl SeriesKernel {
    /// The kernel of `plan`, or `None` when only the evaluator handles it.
    fn of(plan: &Plan) -> Option<SeriesKernel> {
        let read = match plan {
            Plan::Vector(sel) if sel.at.is_none() && sel.modifier.is_none() => Read::Instant {
                offset_ms: sel.offset_ms,
            },
            Plan::Call { func, args } if per_series_range_function(func) => {
                // Where the reference takes the range argument and the scalars from.
                let (matrix, param, smoothing) = match *func {
                    "quantile_over_time" => (1, Some(0), None),
                    "predict_linear" => (0, Some(1), None),
                    "double_exponential_smoothing" => (0, None, Some((1, 2))),
                    _ => (0, None, None),
                };
                let arity = 1 + usize::from(param.is_some()) + 2 * usize::from(smoothing.is_some());
                if args.len() != arity {
                    return None;
                }
                let Plan::Matrix { sel, range_ms } = &args[matrix] else {
                    return None;
                };
                if sel.at.is_some() || sel.modifier.is_some() {
                    return None;
                }
                let mut params = RangeParams::default();
                if let Some(i) = param {
                    params.param = constant_value(&args[i])?;
                }
                if let Some((sf, tf)) = smoothing {
                    params.sf = constant_value(&args[sf])?;
                    params.tf = constant_value(&args[tf])?;
                }
                Read::Range {
                    func,
                    offset_ms: sel.offset_ms,
                    range_ms: *range_ms,
                    params,
                }
            }
            _ => {
                let (operand, _) = element_wise(plan)?;
                let mut kernel = SeriesKernel::of(operand)?;
                kernel.steps.push(Step::of(plan)?);
                return Some(kernel);
            }
        };
        Some(SeriesKernel {
            read,
            steps: Vec::new(),
        })
    }

    /// The element of the series `labels` whose retained samples are `points`, at `t`.
    fn element(
        &self,
        labels: &Arc<Labels>,
        points: &[(i64, f64)],
        t: i64,
        lookback_ms: i64,
    ) -> EvalResult<Option<Element>> {
        let mut element = match &self.read {
            Read::Instant { offset_ms } => latest_in_lookback(points, t - offset_ms, lookback_ms)
                .map(|(_, v)| Element::new(labels.clone(), v)),
            Read::Range {
                func,
                offset_ms,
                range_ms,
                params,
            } => {
                let end = t - offset_ms;
                let window = range_window(points, end - range_ms, end);
                if window.is_empty() {
                    return Ok(None);
                }
                let arg = RangeArg {
                    series: Vec::new(),
                    window_end: end,
                    range_ms: *range_ms,
                    modifier: None,
                };
                range_kernel(func, &window, &arg, t, *params)?
                    .map(|v| range_element(func, labels.clone(), v))
            }
        };
        for step in &self.steps {
            element = match element {
                Some(e) => step.apply(e),
                None => return Ok(None),
            };
        }
        Ok(element)
    }
}

/// One series' window as a source: every `select` answers with this series.
struct OneSeries<'a> {
    labels: &'a Arc<Labels>,
    points: &'a [(i64, f64)],
}

impl SeriesSource for OneSeries<'_> {
    fn select(&self, _matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        let points = within(self.points, start_ms, end_ms);
        if points.is_empty() {
            return Vec::new();
        }
        vec![(self.labels.clone(), points.to_vec())]
    }
}

/// Elements as a source for a node's [`crate::render::shape::hole`]: each is a series
/// with one sample at the evaluation time.
struct Elements<'a> {
    elements: Vec<&'a Element>,
    t: i64,
}

impl SeriesSource for Elements<'_> {
    fn select(&self, _matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        if self.t < start_ms || self.t > end_ms {
            return Vec::new();
        }
        self.elements
            .iter()
            .map(|e| (e.labels.clone(), vec![(self.t, e.value)]))
            .collect()
    }
}

/// Per-evaluation context.
struct Ctx<'a> {
    store: &'a WindowStore,
    settings: &'a Settings,
    t: i64,
    rebuild: bool,
    /// Elements and groups recomputed.
    recomputed: u64,
}

struct PerSeriesNode {
    plan: Plan,
    /// The plan as per-series kernels, when it has that form.
    kernel: Option<SeriesKernel>,
    key: String,
    back: i64,
    fwd: i64,
    latest_only: bool,
    time_dependent: bool,
    /// The earliest time each series must be recomputed at (absent: only on arrival).
    wake: KeyMap<i64>,
    /// `wake`, by time (entries may be stale: `wake` decides).
    agenda: BTreeMap<i64, Vec<Key>>,
    out: Outputs,
}

impl PerSeriesNode {
    fn schedule(&mut self, key: &Key, at: i64) {
        match self.wake.get_mut(key) {
            Some(wake) if at >= *wake => return,
            Some(wake) => *wake = at,
            None => {
                self.wake.insert(key.clone(), at);
            }
        }
        self.agenda.entry(at).or_default().push(key.clone());
    }

    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let t = ctx.t;
        let mut due: Vec<Key> = Vec::new();
        if ctx.rebuild {
            self.agenda.clear();
            self.wake.clear();
            let mut all: BTreeSet<Key> = ctx.store.series(&self.key).map(|(k, _)| k).collect();
            all.extend(self.out.elements.keys().cloned());
            due.extend(all);
        } else {
            while let Some(entry) = self.agenda.first_entry() {
                if *entry.key() > t {
                    break;
                }
                for key in entry.remove() {
                    if let Some(wake) = self.wake.get_mut(&key) {
                        if *wake <= t {
                            // Rescheduled (or removed) below.
                            *wake = i64::MAX;
                            due.push(key);
                        }
                    }
                }
            }
        }
        let window = ctx.store.window(&self.key);
        let mut changed = Vec::new();
        for key in due {
            ctx.recomputed += 1;
            let points = window.map_or(&[][..], |w| w.points(&key));
            let element = match &self.kernel {
                Some(kernel) => kernel.element(&key.labels, points, t, ctx.settings.lookback_ms)?,
                None => {
                    let source = OneSeries {
                        labels: &key.labels,
                        points,
                    };
                    match ctx.settings.evaluator(&source, t).eval(&self.plan, t)? {
                        Value::Vector(v) => v.into_iter().next(),
                        _ => None,
                    }
                }
            };
            let next = self.next_change(points, t);
            if next != i64::MAX {
                self.schedule(&key, next);
            } else {
                self.wake.remove(&key);
            }
            if self.out.set(&key, element) {
                changed.push(key);
            }
        }
        Ok(changed)
    }

    /// The first time after `t` the element can change with no new sample.
    fn next_change(&self, points: &[(i64, f64)], t: i64) -> i64 {
        let (lo, hi) = (t.saturating_sub(self.back), t.saturating_add(self.fwd));
        let end = points.partition_point(|p| p.0 <= hi);
        // A sample already held enters the window.
        let mut next = points
            .get(end)
            .map_or(i64::MAX, |p| p.0.saturating_sub(self.fwd));
        let window = &points[points.partition_point(|p| p.0 < lo).min(end)..end];
        let leaving = if self.latest_only {
            window.last()
        } else {
            window.first()
        };
        if let Some(&(ts, _)) = leaving {
            next = next.min(ts.saturating_add(self.back).saturating_add(1));
            if self.time_dependent {
                next = next.min(t + 1);
            }
        }
        next.max(t + 1)
    }
}

/// On a rebuild, the keys a node must revisit: every key its input holds now and
/// every key it knew before (those may have left), each once, in order.
fn every_key<'a>(input: &Outputs, known: impl Iterator<Item = &'a Key>) -> Vec<Key> {
    let mut all: BTreeSet<Key> = input.elements.keys().cloned().collect();
    all.extend(known.cloned());
    all.into_iter().collect()
}

struct MapNode {
    input: Box<Node>,
    plan: Plan,
    /// The operation as a [`Step`], when it is one.
    step: Option<Step>,
    writes_name: bool,
    out: Outputs,
}

impl MapNode {
    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let mut keys = self.input.update(ctx)?;
        if ctx.rebuild {
            keys = every_key(self.input.out(), self.out.elements.keys());
        }
        let mut changed = Vec::new();
        for key in keys {
            ctx.recomputed += 1;
            let element = match (self.input.out().get(&key), self.step) {
                (None, _) => None,
                (Some(input), Some(step)) => step.apply(input.clone()),
                (Some(input), None) => {
                    let source = Elements {
                        elements: vec![input],
                        t: ctx.t,
                    };
                    match ctx
                        .settings
                        .evaluator(&source, ctx.t)
                        .eval(&self.plan, ctx.t)?
                    {
                        Value::Vector(v) => v.into_iter().next().map(|mut e| {
                            // The hole's element had no pending removal: carry the input's.
                            e.drop_name |= input.drop_name && !self.writes_name;
                            e
                        }),
                        _ => None,
                    }
                }
            };
            if self.out.set(&key, element) {
                changed.push(key);
            }
        }
        Ok(changed)
    }
}

struct GroupNode {
    input: Box<Node>,
    op: AggOp,
    /// The constant parameter (φ of `quantile`), if it has one.
    param: Option<f64>,
    grouping: Grouping,
    /// Input keys by group.
    filing: Filing,
    out: Outputs,
}

impl GroupNode {
    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let mut keys = self.input.update(ctx)?;
        if ctx.rebuild {
            keys = every_key(self.input.out(), self.filing.group_of.keys());
        }
        let mut dirty = KeySet::default();
        let grouping = &self.grouping;
        for key in keys {
            let input = self.input.out().get(&key);
            self.filing
                .refile(key, input, |l| group_labels(l, grouping), &mut dirty);
        }
        let mut changed = Vec::new();
        let mut values = Vec::new();
        for group in dirty {
            ctx.recomputed += 1;
            let inputs = self.input.out();
            values.clear();
            let mut drop_name = false;
            for e in self.filing.members(&group).filter_map(|k| inputs.get(k)) {
                values.push(e.value);
                drop_name |= e.drop_name;
            }
            let element = if values.is_empty() {
                None
            } else {
                let param = self.param.unwrap_or(0.0);
                let value = reduce(self.op, &values, param).ok_or_else(|| {
                    EvalError(format!("{:?} is not one element per group", self.op))
                })?;
                Some(Element {
                    labels: group.labels.clone(),
                    value,
                    drop_name,
                })
            };
            if self.out.set(&group, element) {
                changed.push(group);
            }
        }
        Ok(changed)
    }
}

/// Input keys filed under a group computed from their labels (an aggregation's
/// group, a join side's match group), and each key's group.
#[derive(Default)]
struct Filing {
    /// The group of each input key, and the input labels it was computed from.
    group_of: KeyMap<(Arc<Labels>, Key)>,
    /// Input keys by group, in label order (the reference's input order).
    members: KeyMap<BTreeSet<Key>>,
    /// Groups with more than one member.
    crowded: usize,
}

impl Filing {
    /// Files input key `key` (now `input`, or gone) under its group `group_of(labels)`;
    /// marks the groups it left and joined dirty.
    fn refile(
        &mut self,
        key: Key,
        input: Option<&Element>,
        group_of: impl Fn(&Labels) -> Labels,
        dirty: &mut KeySet,
    ) {
        if let (Some((labels, group)), Some(e)) = (self.group_of.get(&key), input) {
            if Arc::ptr_eq(labels, &e.labels) {
                // Same labels, same group: only its value changed.
                dirty.insert(group.clone());
                return;
            }
        }
        if let Some((_, group)) = self.group_of.remove(&key) {
            if let Some(keys) = self.members.get_mut(&group) {
                keys.remove(&key);
                if keys.len() == 1 {
                    self.crowded -= 1;
                }
                if keys.is_empty() {
                    self.members.remove(&group);
                }
            }
            dirty.insert(group);
        }
        if let Some(e) = input {
            let group = Key::new(Arc::new(group_of(&e.labels)));
            // One `Arc` per group.
            let group = match self.members.get_key_value(&group) {
                Some((g, _)) => g.clone(),
                None => group,
            };
            let keys = self.members.entry(group.clone()).or_default();
            keys.insert(key.clone());
            if keys.len() == 2 {
                self.crowded += 1;
            }
            self.group_of.insert(key, (e.labels.clone(), group.clone()));
            dirty.insert(group);
        }
    }

    /// The members of `group`, in label order.
    fn members(&self, group: &Key) -> impl Iterator<Item = &Key> {
        self.members.get(group).into_iter().flatten()
    }

    /// The one member of `group`, if it has exactly one.
    fn single(&self, group: &Key) -> Option<&Key> {
        match self.members.get(group) {
            Some(keys) if keys.len() == 1 => keys.first(),
            _ => None,
        }
    }
}

struct JoinNode {
    lhs: Box<Node>,
    rhs: Box<Node>,
    op: BinOp,
    matching: Matching,
    return_bool: bool,
    /// Left and right keys by match group.
    sides: [Filing; 2],
    /// Per match group: the left labels its result labels were computed from, and
    /// those (one-to-one, they depend on the left labels only).
    result_labels: KeyMap<(Arc<Labels>, Arc<Labels>)>,
    out: Outputs,
}

impl JoinNode {
    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        let changed = [self.lhs.update(ctx)?, self.rhs.update(ctx)?];
        let mut dirty = KeySet::default();
        for ((mut keys, input), side) in changed
            .into_iter()
            .zip([&self.lhs, &self.rhs])
            .zip(&mut self.sides)
        {
            if ctx.rebuild {
                keys = every_key(input.out(), side.group_of.keys());
            }
            let signature = |l: &Labels| Labels::from_pairs(signature(l, &self.matching));
            for key in keys {
                let e = input.out().get(&key);
                side.refile(key, e, signature, &mut dirty);
            }
        }
        let mut changed = Vec::new();
        for sig in dirty {
            ctx.recomputed += 1;
            let pair = self.sides[0]
                .single(&sig)
                .and_then(|l| self.lhs.out().get(l))
                .zip(
                    self.sides[1]
                        .single(&sig)
                        .and_then(|r| self.rhs.out().get(r)),
                );
            let element = pair.and_then(|(l, r)| {
                let labels = match self.result_labels.get(&sig) {
                    Some((from, labels)) if Arc::ptr_eq(from, &l.labels) => labels.clone(),
                    _ => {
                        let labels = result_labels(
                            &l.labels,
                            &r.labels,
                            self.op,
                            &self.matching,
                            &[],
                            self.return_bool,
                        );
                        self.result_labels
                            .insert(sig.clone(), (l.labels.clone(), labels.clone()));
                        labels
                    }
                };
                matched_element(
                    self.op,
                    (l.value, r.value),
                    labels,
                    l.drop_name,
                    self.return_bool,
                )
            });
            if pair.is_none() {
                self.result_labels.remove(&sig);
            }
            if self.out.set(&sig, element) {
                changed.push(sig);
            }
        }
        Ok(changed)
    }
}

enum Node {
    PerSeries(PerSeriesNode),
    Map(MapNode),
    Group(GroupNode),
    Join(JoinNode),
}

impl Node {
    fn new(shape: Shape) -> Node {
        match shape {
            Shape::PerSeries {
                plan,
                key,
                back,
                fwd,
                latest_only,
                time_dependent,
            } => Node::PerSeries(PerSeriesNode {
                kernel: SeriesKernel::of(&plan),
                plan,
                key,
                back,
                fwd,
                latest_only,
                time_dependent,
                wake: KeyMap::default(),
                agenda: BTreeMap::new(),
                out: Outputs::default(),
            }),
            Shape::Map {
                input,
                plan,
                writes_name,
            } => Node::Map(MapNode {
                input: Box::new(Node::new(*input)),
                step: Step::of(&plan),
                plan,
                writes_name,
                out: Outputs::default(),
            }),
            Shape::Aggregate {
                input,
                plan,
                grouping,
            } => {
                let (op, param) = match &plan {
                    Plan::Aggregate { op, param, .. } => {
                        (*op, param.as_deref().and_then(constant_value))
                    }
                    _ => (AggOp::CountValues, None),
                };
                Node::Group(GroupNode {
                    input: Box::new(Node::new(*input)),
                    op,
                    param,
                    grouping,
                    filing: Filing::default(),
                    out: Outputs::default(),
                })
            }
            Shape::Join {
                lhs,
                rhs,
                op,
                matching,
                return_bool,
            } => Node::Join(JoinNode {
                lhs: Box::new(Node::new(*lhs)),
                rhs: Box::new(Node::new(*rhs)),
                op,
                matching,
                return_bool,
                sides: Default::default(),
                result_labels: KeyMap::default(),
                out: Outputs::default(),
            }),
        }
    }

    fn out(&self) -> &Outputs {
        match self {
            Node::PerSeries(n) => &n.out,
            Node::Map(n) => &n.out,
            Node::Group(n) => &n.out,
            Node::Join(n) => &n.out,
        }
    }

    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Key>> {
        match self {
            Node::PerSeries(n) => n.update(ctx),
            Node::Map(n) => n.update(ctx),
            Node::Group(n) => n.update(ctx),
            Node::Join(n) => n.update(ctx),
        }
    }

    fn arrived(&mut self, window: &str, key: &Key, ts: i64) {
        match self {
            Node::PerSeries(n) => {
                if n.key == window {
                    let at = ts.saturating_sub(n.fwd);
                    n.schedule(key, at);
                }
            }
            Node::Map(n) => n.input.arrived(window, key, ts),
            Node::Group(n) => n.input.arrived(window, key, ts),
            Node::Join(n) => {
                n.lhs.arrived(window, key, ts);
                n.rhs.arrived(window, key, ts);
            }
        }
    }

    fn collisions(&self) -> usize {
        let own = self.out().collisions;
        own + match self {
            Node::PerSeries(_) => 0,
            Node::Map(n) => n.input.collisions(),
            Node::Group(n) => n.input.collisions(),
            // A match group with two elements on a side: the reference may answer with
            // a matching error.
            Node::Join(n) => {
                n.sides[0].crowded + n.sides[1].crowded + n.lhs.collisions() + n.rhs.collisions()
            }
        }
    }
}

/// A rule's incremental state.
pub struct IncrementalRule {
    root: Node,
    /// Recompute every element at the next evaluation (at start, after an error, after
    /// samples were seeded into a window it reads).
    rebuild: bool,
}

impl IncrementalRule {
    /// The incremental state of a plan of this shape (see [`crate::render::shape`]).
    pub fn new(shape: Shape) -> IncrementalRule {
        IncrementalRule {
            root: Node::new(shape),
            rebuild: true,
        }
    }

    /// A sample of series `labels` (whose [`Labels::hash`] is `hash`) at `ts` was
    /// added to window `window`.
    pub fn arrived(&mut self, window: &str, labels: &Arc<Labels>, hash: u64, ts: i64) {
        if !self.rebuild {
            let key = Key {
                hash,
                labels: labels.clone(),
            };
            self.root.arrived(window, &key, ts);
        }
    }

    /// Forget what is known: recompute everything at the next evaluation.
    pub fn rebuild(&mut self) {
        self.rebuild = true;
    }

    /// The result at `t` (evaluation times must increase), or `None`: evaluate the
    /// whole plan instead. `recomputed` is increased by the number of elements and
    /// groups recomputed.
    pub fn evaluate(
        &mut self,
        store: &WindowStore,
        settings: &Settings,
        t: i64,
        recomputed: &mut u64,
    ) -> Option<EvalResult<Value>> {
        let mut ctx = Ctx {
            store,
            settings,
            t,
            rebuild: self.rebuild,
            recomputed: 0,
        };
        let updated = self.root.update(&mut ctx);
        *recomputed += ctx.recomputed;
        if updated.is_err() {
            // The reference gives the error; state may be half updated.
            self.rebuild = true;
            return None;
        }
        self.rebuild = false;
        if self.root.collisions() > 0 {
            return None;
        }
        let mut elements: Vec<(&Key, &Element)> = self
            .root
            .out()
            .elements
            .iter()
            .map(|(k, (e, _))| (k, e))
            .collect();
        elements.sort_by(|a, b| a.0.cmp(b.0));
        Some(
            finish_vector(elements.into_iter().map(|(_, e)| e.clone()).collect())
                .map(Value::Vector),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::parse;

    #[test]
    fn common_per_series_plans_run_as_kernels() {
        for q in [
            "up == 0",
            "x offset 1m > bool 3",
            "rate(x[1m]) * 100 > 5",
            "-abs(y)",
            "2 ^ y",
            "quantile_over_time(0.9, x[5m] offset 1m)",
            "predict_linear(x[5m], 3600) < 0",
            "double_exponential_smoothing(x[5m], 0.5, 0.1)",
            "changes(y[1m])",
        ] {
            assert!(SeriesKernel::of(&parse(q).unwrap()).is_some(), "{q}");
        }
        // The evaluator handles the rest.
        for q in [
            "timestamp(x)",
            r#"label_replace(x, "a", "$1", "b", "(.*)")"#,
            "clamp_min(x, 0)",
            "rate(x[5m] anchored)",
            "x smoothed",
        ] {
            assert!(SeriesKernel::of(&parse(q).unwrap()).is_none(), "{q}");
        }
    }
}
