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
//! window is not empty — except with [`Settings::at_newest`] (on-arrival rules), where
//! such a series is evaluated at its newest sample's time and is due only when a
//! sample arrives or that newest one leaves (see [`crate::render`]). These times sit in
//! an agenda, so an evaluation touches only the series due, never the others; its
//! next time ([`IncrementalRule::next_wake`]) is when an on-arrival rule is evaluated
//! next without a new sample. Each recomputation evaluates the node's sub-plan
//! over that one series' window, O(window): common plans (an instant selector, a
//! range function, then element-wise operations with constants) as a `SeriesKernel`
//! calling the reference evaluator's own per-series functions on the retained slice
//! (no evaluator, no copy), others with the reference evaluator over a source
//! holding that one series. A group is re-reduced with the reference's
//! [`reduce`] over its members' values, a join's match group re-matched with its
//! [`result_labels`] and [`matched_element`]. Keys carry their labels' hash ([`LabelsKey`]), so
//! the maps of series, elements and groups never rehash label sets. A spread join's
//! joiner ([`crate::render::spread`]) keeps the same matching over the side elements
//! it receives whole at each evaluation ([`SpreadJoin`]), and its sides (as every
//! spread part whose elements cross unfinished: a union's, a pick's or a gather's
//! members, a pair's per-series side) are evaluated unordered and unfinished, as the
//! reference holds them, their labels kept ([`IncrementalRule::evaluate_unordered`]).
//!
//! Native histograms (`sum by (job) (rate(h[5m]))` over native-histogram series): an
//! element may be a histogram, its value a handle `(SOURCE, i)` naming slot `i` of its
//! node's own [`HistogramSlots`] (one slot per element, freed when the element
//! changes or leaves; an element recomputed to an equal histogram is unchanged). A
//! series whose window may hold histograms is computed by the reference's
//! per-window function ([`window_value`]: rate over histograms with its schema
//! reconciliation, counter-reset detection, start timestamps and mixed-window rules)
//! through an evaluator over that window, a group with a histogram member by the
//! reference's [`group_value`], an element-wise operation on a histogram by the
//! evaluator; results are detached ([`Detached`]). A join declines them
//! ([`IncrementalRule::takes_histograms`]): the caller evaluates the whole plan.

use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::promql::eval::aggregate::{group_labels, group_value, reduce};
use crate::promql::eval::binary::{matched_element, result_labels, scalar_element, signature};
use crate::promql::eval::functions::{range_element, range_kernel, window_value, RangeParams};
use crate::promql::eval::native::{handle, SOURCE};
use crate::promql::eval::selector::{latest_in_lookback, range_window, RangeArg};
use crate::promql::eval::{
    drop_name, finish_vector, math, Element, EvalError, EvalResult, Evaluator,
};
use crate::promql::eval::{Selected, SeriesSource, Value};
use crate::promql::plan::{AggOp, BinOp, Grouping, Matching, Plan};
use crate::render::shape::{constant, element_wise, per_series_range_function, Shape};
use crate::render::window::{self, within, HistogramSlots, KeyHasher, LabelsKey, WindowStore};
use crate::selector::Selector;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

mod group;
mod join;
mod map;
mod series;

use group::GroupNode;
use join::{Filing, JoinNode, Matcher};
pub use join::{PartialOf, SpreadJoin};
use map::MapNode;
pub(crate) use series::Step;
use series::{constant_value, Elements, Kept, PerSeriesNode, SeriesKernel};

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
    /// On-arrival semantics for `t`-dependent per-series plans (`rate`, `increase`,
    /// `delta`, `predict_linear`, `timestamp` of a non-selector): each series is
    /// evaluated at the time its newest sample entered the window, and keeps that
    /// element while the sample stays in it (see [`crate::render`]).
    pub at_newest: bool,
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
    /// The native histograms of the elements: an element whose value is a handle
    /// `(SOURCE, i)` is slot `i` here, which only it names (freed when it changes or
    /// leaves).
    histograms: HistogramSlots,
}

impl Outputs {
    /// The element of `key`, if any.
    fn get(&self, key: &Key) -> Option<&Element> {
        self.elements.get(key).map(|(e, _)| e)
    }

    /// The histogram an element's value names, if it is one of these outputs'.
    fn histogram(&self, value: f64) -> Option<Arc<FloatHistogram>> {
        self.histograms.of(value)
    }

    /// `e` as an element of these outputs: a histogram that `ev` resolves is kept here
    /// (its value becomes a handle of this node's).
    fn adopt(&mut self, ev: &Evaluator<'_>, mut e: Element) -> Element {
        if let Some(h) = ev.histogram(e.value) {
            e.value = self.histograms.keep(h);
        }
        e
    }

    /// Sets the element of `key` (a histogram value: a handle [`Outputs::adopt`]
    /// gave); whether it changed.
    fn set(&mut self, key: &Key, new: Option<Element>) -> bool {
        let Some(mut e) = new else {
            return match self.elements.remove(key) {
                Some((old, old_hash)) => {
                    self.histograms.release(old.value);
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
            if slot.0.drop_name == e.drop_name {
                if slot.0.value.to_bits() == e.value.to_bits() {
                    return false;
                }
                let (old, new) = (
                    self.histograms.of(slot.0.value),
                    self.histograms.of(e.value),
                );
                if old.is_some() && old == new {
                    // The same histogram again: the element is unchanged.
                    self.histograms.release(e.value);
                    return false;
                }
            }
            // Keep the old `Arc` (fewer label sets alive, faster compares).
            e.labels = slot.0.labels.clone();
            let old = std::mem::replace(&mut slot.0, e);
            self.histograms.release(old.value);
            return true;
        }
        let hash = labels_hash(key, &e.labels);
        let (old, old_hash) = std::mem::replace(slot, (e, hash));
        self.histograms.release(old.value);
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

/// Per-evaluation context.
struct Ctx<'a> {
    store: &'a WindowStore,
    settings: &'a Settings,
    t: i64,
    rebuild: bool,
    /// Elements and groups recomputed.
    recomputed: u64,
}

/// On a rebuild, the keys a node must revisit: every key its input holds now and
/// every key it knew before (those may have left), each once, in order.
fn every_key<'a>(input: &Outputs, known: impl Iterator<Item = &'a Key>) -> Vec<Key> {
    let mut all: BTreeSet<Key> = input.elements.keys().cloned().collect();
    all.extend(known.cloned());
    all.into_iter().collect()
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
                arrivals: Vec::new(),
                computed_at: KeyMap::default(),
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
                matcher: Matcher::new(op, matching, return_bool),
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
                    n.arrived(key, ts.saturating_sub(n.fwd));
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

    /// Whether a series of this node is due at or before `t`.
    fn due_by(&self, t: i64) -> bool {
        match self {
            Node::PerSeries(n) => n.due_by(t),
            Node::Map(n) => n.input.due_by(t),
            Node::Group(n) => n.input.due_by(t),
            Node::Join(n) => n.lhs.due_by(t) || n.rhs.due_by(t),
        }
    }

    /// The earliest time a series of this node is due with no new sample.
    fn next_wake(&mut self) -> Option<i64> {
        match self {
            Node::PerSeries(n) => n.next_wake(),
            Node::Map(n) => n.input.next_wake(),
            Node::Group(n) => n.input.next_wake(),
            Node::Join(n) => match (n.lhs.next_wake(), n.rhs.next_wake()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// Whether its elements may be histograms: every node but a join computes them as
    /// the reference does (a join's matching is float arithmetic).
    fn takes_histograms(&self) -> bool {
        match self {
            Node::PerSeries(_) => true,
            Node::Map(n) => n.input.takes_histograms(),
            Node::Group(n) => n.input.takes_histograms(),
            Node::Join(_) => false,
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
            Node::Join(n) => n.matcher.crowded() + n.lhs.collisions() + n.rhs.collisions(),
        }
    }
}

/// A rule's incremental state.
pub struct IncrementalRule {
    root: Node,
    /// Recompute every element at the next evaluation (at start, after an error, after
    /// samples were seeded into a window it reads).
    rebuild: bool,
    /// [`IncrementalRule::evaluate_changes`]: what the previous result held; `None`
    /// when the next result must be whole.
    sent: Option<Sent>,
}

/// What [`IncrementalRule::evaluate_changes`] gives.
#[derive(Debug)]
pub enum Delta {
    /// The whole result, exactly the reference's, with the histograms it names.
    Whole(Detached),
    /// What changed since the previous result: `gone` are the labels of elements that
    /// left it, `set` the elements that are new or whose value changed (applied after
    /// `gone`; a label set is never in both).
    Changes {
        /// New or changed elements.
        set: Vec<Element>,
        /// Labels of elements that left.
        gone: Vec<Arc<Labels>>,
        /// The native histograms of `set` (see [`Detached`]).
        histograms: Vec<Arc<FloatHistogram>>,
    },
}

/// A result and the native histograms its elements name: an element whose value is
/// the handle `(SOURCE, i)` is `histograms[i]` (as a detached evaluator result,
/// [`crate::promql::eval::native::detach`]); empty for floats.
pub type Detached = (EvalResult<Value>, Vec<Arc<FloatHistogram>>);

/// Renames the histogram handles of `elements` (which `held` resolves) to
/// `(SOURCE, i)` of the returned list.
fn detach(held: &HistogramSlots, elements: &mut [Element]) -> Vec<Arc<FloatHistogram>> {
    let mut out = Vec::new();
    if held.is_empty() {
        return out;
    }
    for e in elements {
        if let Some(h) = held.of(e.value) {
            out.push(h);
            e.value = handle(SOURCE, (out.len() - 1) as u32);
        }
    }
    out
}

/// One element of the previous result, by the root's key.
struct SentElement {
    /// Its labels as the root holds them.
    labels: Arc<Labels>,
    /// Whether the name is dropped at the end ([`Element::drop_name`]).
    drop_name: bool,
    /// Its labels as sent (name dropped when asked).
    finished: Arc<Labels>,
    /// Its value's bits.
    bits: u64,
}

/// The previous result of a rule delivering changes.
#[derive(Default)]
struct Sent {
    by_key: KeyMap<SentElement>,
    /// Elements per label set as sent: two with one label set (possible once names are
    /// dropped) make the reference answer with an error.
    counts: HashMap<Arc<Labels>, u32>,
    /// Label sets held by more than one element.
    duplicates: usize,
}

impl Sent {
    fn count(&mut self, labels: &Arc<Labels>, add: bool) {
        if add {
            let c = self.counts.entry(labels.clone()).or_insert(0);
            *c += 1;
            if *c == 2 {
                self.duplicates += 1;
            }
        } else if let Some(c) = self.counts.get_mut(labels) {
            *c -= 1;
            if *c == 1 {
                self.duplicates -= 1;
            } else if *c == 0 {
                self.counts.remove(labels);
            }
        }
    }

    /// Records `key`'s element now (`None`: it left), adding what changed to `set`
    /// and `gone`.
    fn update(
        &mut self,
        key: &Key,
        now: Option<&Element>,
        set: &mut Vec<Element>,
        gone: &mut Vec<Arc<Labels>>,
    ) {
        let Some(e) = now else {
            if let Some(old) = self.by_key.remove(key) {
                self.count(&old.finished, false);
                gone.push(old.finished);
            }
            return;
        };
        let bits = e.value.to_bits();
        let old = self.by_key.get(key);
        let finished = match old {
            Some(o) if o.drop_name == e.drop_name && o.labels == e.labels => o.finished.clone(),
            _ if e.drop_name => drop_name(&e.labels),
            _ => e.labels.clone(),
        };
        match old {
            Some(o) if o.finished == finished => {
                if o.bits == bits {
                    return;
                }
            }
            Some(o) => {
                let was = o.finished.clone();
                self.count(&was, false);
                gone.push(was);
                self.count(&finished, true);
            }
            None => self.count(&finished, true),
        }
        set.push(Element::new(finished.clone(), e.value));
        self.by_key.insert(
            key.clone(),
            SentElement {
                labels: e.labels.clone(),
                drop_name: e.drop_name,
                finished,
                bits,
            },
        );
    }
}

impl IncrementalRule {
    /// The incremental state of a plan of this shape (see [`crate::render::shape`]).
    pub fn new(shape: Shape) -> IncrementalRule {
        IncrementalRule {
            root: Node::new(shape),
            rebuild: true,
            sent: None,
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

    /// The earliest time an element can change with no new sample (a sample leaves or
    /// enters a window): the next evaluation an on-arrival rule needs besides the
    /// arrival times. `None` while a rebuild is pending or nothing is due.
    pub fn next_wake(&mut self) -> Option<i64> {
        if self.rebuild {
            return None;
        }
        self.root.next_wake()
    }

    /// Whether an evaluation at `t` has anything to recompute: a rebuild, an arrival,
    /// or a sample entering or leaving a window by `t`. One that has not changes
    /// nothing.
    pub fn due_by(&self, t: i64) -> bool {
        self.rebuild || self.root.due_by(t)
    }

    /// Forget what is known: recompute everything at the next evaluation.
    pub fn rebuild(&mut self) {
        self.rebuild = true;
    }

    /// Whether it evaluates over windows holding native histograms (else the caller
    /// evaluates the whole plan once one holds one): every shape but a join.
    pub fn takes_histograms(&self) -> bool {
        self.root.takes_histograms()
    }

    /// For an aggregation: the labels of every group with a member after the last
    /// evaluation, whether it yields an element or not (a spread worker's groups,
    /// [`crate::render::spread::members_plan`]); `None` for other shapes.
    pub fn groups(&self) -> Option<Vec<Arc<Labels>>> {
        match &self.root {
            Node::Group(n) => Some(n.filing.members.keys().map(|k| k.labels.clone()).collect()),
            _ => None,
        }
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
    ) -> Option<Detached> {
        self.sent = None;
        self.update(store, settings, t, recomputed)?;
        let elements = self.sorted().into_iter().map(|(_, e)| e.clone()).collect();
        Some(self.detached(finish_vector(elements)))
    }

    /// A finished result of the root's elements, detached.
    fn detached(&self, result: EvalResult<Vec<Element>>) -> Detached {
        match result {
            Ok(mut v) => {
                let held = detach(&self.root.out().histograms, &mut v);
                (Ok(Value::Vector(v)), held)
            }
            Err(e) => (Err(e), Vec::new()),
        }
    }

    /// Like [`IncrementalRule::evaluate`], giving only what changed since the previous
    /// result when it can ([`crate::render::rule::Delivery::Changes`]): the whole
    /// result the first time, after a rebuild and after any evaluation it could not
    /// vouch for (`None`, where the caller evaluated the whole plan); an evaluation
    /// that changed nothing gives empty changes. Costs what changed, where
    /// [`IncrementalRule::evaluate`] sorts and copies the whole result.
    pub fn evaluate_changes(
        &mut self,
        store: &WindowStore,
        settings: &Settings,
        t: i64,
        recomputed: &mut u64,
    ) -> Option<Delta> {
        self.track(store, settings, t, recomputed, true)
    }

    /// [`IncrementalRule::evaluate_changes`]; with `changes` false, empty
    /// [`Delta::Changes`] where it would give changes (the caller reads the result it
    /// keeps, [`Sent`]).
    fn track(
        &mut self,
        store: &WindowStore,
        settings: &Settings,
        t: i64,
        recomputed: &mut u64,
        changes: bool,
    ) -> Option<Delta> {
        let Some(updated) = self.update(store, settings, t, recomputed) else {
            self.sent = None;
            return None;
        };
        let Some(sent) = self.sent.as_mut() else {
            let elements = self.sorted();
            let whole = finish_vector(elements.iter().map(|(_, e)| (*e).clone()).collect());
            let mut sent = Sent::default();
            if let Ok(finished) = &whole {
                for ((key, e), finished) in elements.iter().zip(finished) {
                    sent.count(&finished.labels, true);
                    sent.by_key.insert(
                        (*key).clone(),
                        SentElement {
                            labels: e.labels.clone(),
                            drop_name: e.drop_name,
                            finished: finished.labels.clone(),
                            bits: e.value.to_bits(),
                        },
                    );
                }
            }
            self.sent = whole.is_ok().then_some(sent);
            return Some(Delta::Whole(self.detached(whole)));
        };
        let (mut set, mut gone) = (Vec::new(), Vec::new());
        for key in &updated {
            sent.update(key, self.root.out().get(key), &mut set, &mut gone);
        }
        if sent.duplicates > 0 {
            // The reference answers with an error: let it.
            self.sent = None;
            return None;
        }
        if !changes {
            (set, gone) = (Vec::new(), Vec::new());
        }
        if !gone.is_empty() && !set.is_empty() {
            let now: HashSet<&Arc<Labels>> = set.iter().map(|e| &e.labels).collect();
            gone.retain(|l| !now.contains(l));
        }
        let histograms = detach(&self.root.out().histograms, &mut set);
        Some(Delta::Changes {
            set,
            gone,
            histograms,
        })
    }

    /// Like [`IncrementalRule::evaluate`], the elements in no particular order and
    /// unfinished, as the reference holds a sub-expression's (a name pending removal
    /// still there, with [`Element::drop_name`]), their labels the same `Arc` while an
    /// element's labels do not change: a spread join's side, which its joiners match as
    /// the reference matches the sides and file by labels ([`SpreadJoin`]), and every
    /// other spread part whose elements cross unfinished, for the owner to finish
    /// ([`crate::render::spread::Spread::sends_elements`]). Costs what
    /// changed and a copy of the result, where [`IncrementalRule::evaluate`] also sorts
    /// it, makes every name-dropped label set again and checks them for duplicates
    /// (which the reference checks only once the whole result is finished).
    pub fn evaluate_unordered(
        &mut self,
        store: &WindowStore,
        settings: &Settings,
        t: i64,
        recomputed: &mut u64,
    ) -> Option<Detached> {
        self.sent = None;
        self.update(store, settings, t, recomputed)?;
        let elements = (self.root.out().elements.values())
            .map(|(e, _)| e.clone())
            .collect();
        Some(self.detached(Ok(elements)))
    }

    /// Brings every node up to `t`; the root's changed keys, or `None` when the result
    /// must come from the whole plan (an error, or two elements with one label set).
    fn update(
        &mut self,
        store: &WindowStore,
        settings: &Settings,
        t: i64,
        recomputed: &mut u64,
    ) -> Option<Vec<Key>> {
        let rebuild = self.rebuild;
        let mut ctx = Ctx {
            store,
            settings,
            t,
            rebuild,
            recomputed: 0,
        };
        let updated = self.root.update(&mut ctx);
        *recomputed += ctx.recomputed;
        let Ok(updated) = updated else {
            // The reference gives the error; state may be half updated.
            self.rebuild = true;
            return None;
        };
        self.rebuild = false;
        if self.root.collisions() > 0 {
            return None;
        }
        if rebuild {
            // Everything may have changed: the next result of `evaluate_changes` is whole.
            self.sent = None;
        }
        Some(updated)
    }

    /// The root's elements ordered by key (the reference's order once finished).
    fn sorted(&self) -> Vec<(&Key, &Element)> {
        let mut elements: Vec<(&Key, &Element)> = self
            .root
            .out()
            .elements
            .iter()
            .map(|(k, (e, _))| (k, e))
            .collect();
        elements.sort_by(|a, b| a.0.cmp(b.0));
        elements
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
