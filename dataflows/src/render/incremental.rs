//! Incremental evaluation: a rule's result kept per series and per group, recomputed
//! at each evaluation time only where an input changed.
//!
//! PromQL (the node kinds of [`crate::render::shape`]):
//! ```promql
//! rate(x[1m]) * 100 > 5            # per series: recomputed when a sample enters or leaves
//!                                  # that series' window (and every time for `rate`)
//! sum by (job) (rate(x[1m]))       # per group: re-reduced only when a member changed
//! sum by (job) (rate(x[1m])) > 10  # map: re-applied only to changed groups
//! ```
//! Contract: [`IncrementalRule::evaluate`] returns exactly what the reference evaluator
//! returns for the whole plan over the same [`WindowStore`], or `None` when it cannot
//! vouch for that (two elements of a node with the same labels, where the reference
//! may answer with an error or merge them; a per-series error) and the caller
//! evaluates the whole plan. Each node keeps its current elements keyed by input
//! series (per-series, map) or group labels (aggregate) and reports which keys changed.
//!
//! When a per-series element must be recomputed: a sample of the series arrives
//! ([`IncrementalRule::arrived`], at the time it enters the window), or a time event
//! passes — the oldest sample in the window leaves it (for an instant selector: the
//! newest sample passes the lookback delta), a sample already held enters it, or,
//! for `t`-dependent functions (`rate`'s extrapolation), every evaluation while the
//! window is not empty. These times sit in an agenda, so an evaluation touches only
//! the series due, never the others. Each recomputation evaluates the node's sub-plan
//! with the reference evaluator over that one series' window (O(window), no copy of
//! the other series).

use crate::labels::Labels;
use crate::promql::eval::aggregate::group_labels;
use crate::promql::eval::{finish_vector, Element, EvalResult, Evaluator, Selected};
use crate::promql::eval::{SeriesSource, Value};
use crate::promql::plan::{Grouping, Plan};
use crate::render::shape::Shape;
use crate::render::window::{within, WindowStore};
use crate::selector::Selector;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// A node's current elements by key, and how many labels two keys share.
#[derive(Default)]
struct Outputs {
    elements: HashMap<Arc<Labels>, Element>,
    label_counts: HashMap<Arc<Labels>, u32>,
    /// Elements whose labels another element already has.
    collisions: usize,
}

impl Outputs {
    /// Sets the element of `key`; whether it changed.
    fn set(&mut self, key: &Arc<Labels>, new: Option<Element>) -> bool {
        let old = match &new {
            Some(e) => self.elements.insert(key.clone(), e.clone()),
            None => self.elements.remove(key),
        };
        let same = match (&old, &new) {
            (Some(a), Some(b)) => {
                a.labels == b.labels
                    && a.value.to_bits() == b.value.to_bits()
                    && a.drop_name == b.drop_name
            }
            (None, None) => true,
            _ => false,
        };
        if same {
            return false;
        }
        if let Some(old) = old {
            if let Some(c) = self.label_counts.get_mut(&old.labels) {
                *c -= 1;
                if *c > 0 {
                    self.collisions -= 1;
                } else {
                    self.label_counts.remove(&old.labels);
                }
            }
        }
        if let Some(new) = new {
            let c = self.label_counts.entry(new.labels).or_insert(0);
            if *c > 0 {
                self.collisions += 1;
            }
            *c += 1;
        }
        true
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
    key: String,
    back: i64,
    fwd: i64,
    latest_only: bool,
    time_dependent: bool,
    /// The earliest time each series must be recomputed at (absent: only on arrival).
    wake: HashMap<Arc<Labels>, i64>,
    /// `wake`, by time (entries may be stale: `wake` decides).
    agenda: BTreeMap<i64, Vec<Arc<Labels>>>,
    out: Outputs,
}

impl PerSeriesNode {
    fn schedule(&mut self, labels: &Arc<Labels>, at: i64) {
        let wake = self.wake.entry(labels.clone()).or_insert(i64::MAX);
        if at < *wake {
            *wake = at;
            self.agenda.entry(at).or_default().push(labels.clone());
        }
    }

    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Arc<Labels>>> {
        let t = ctx.t;
        let mut due: Vec<Arc<Labels>> = Vec::new();
        if ctx.rebuild {
            self.agenda.clear();
            self.wake.clear();
            let mut all: BTreeSet<Arc<Labels>> = ctx
                .store
                .series(&self.key)
                .map(|(l, _)| l.clone())
                .collect();
            all.extend(self.out.elements.keys().cloned());
            due.extend(all);
        } else {
            while let Some(entry) = self.agenda.first_entry() {
                if *entry.key() > t {
                    break;
                }
                for labels in entry.remove() {
                    if self.wake.get(&labels).is_some_and(|w| *w <= t) {
                        self.wake.remove(&labels);
                        due.push(labels);
                    }
                }
            }
        }
        let mut changed = Vec::new();
        for labels in due {
            ctx.recomputed += 1;
            let points = ctx.store.points(&self.key, &labels);
            let source = OneSeries {
                labels: &labels,
                points,
            };
            let element = match ctx.settings.evaluator(&source, t).eval(&self.plan, t)? {
                Value::Vector(v) => v.into_iter().next(),
                _ => None,
            };
            let next = self.next_change(points, t);
            if self.out.set(&labels, element) {
                changed.push(labels.clone());
            }
            if next != i64::MAX {
                self.schedule(&labels, next);
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

struct MapNode {
    input: Box<Node>,
    plan: Plan,
    writes_name: bool,
    out: Outputs,
}

impl MapNode {
    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Arc<Labels>>> {
        let mut keys = self.input.update(ctx)?;
        if ctx.rebuild {
            let mut all: BTreeSet<Arc<Labels>> =
                self.input.out().elements.keys().cloned().collect();
            all.extend(self.out.elements.keys().cloned());
            keys = all.into_iter().collect();
        }
        let mut changed = Vec::new();
        for key in keys {
            ctx.recomputed += 1;
            let element = match self.input.out().elements.get(&key) {
                None => None,
                Some(input) => {
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
    plan: Plan,
    grouping: Grouping,
    /// Input keys by group, in label order (the reference's input order).
    members: HashMap<Arc<Labels>, BTreeSet<Arc<Labels>>>,
    group_of: HashMap<Arc<Labels>, Arc<Labels>>,
    out: Outputs,
}

impl GroupNode {
    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Arc<Labels>>> {
        let mut keys = self.input.update(ctx)?;
        if ctx.rebuild {
            let mut all: BTreeSet<Arc<Labels>> =
                self.input.out().elements.keys().cloned().collect();
            all.extend(self.group_of.keys().cloned());
            keys = all.into_iter().collect();
        }
        let mut dirty: HashSet<Arc<Labels>> = HashSet::new();
        for key in keys {
            if let Some(group) = self.group_of.remove(&key) {
                if let Some(m) = self.members.get_mut(&group) {
                    m.remove(&key);
                }
                dirty.insert(group);
            }
            if let Some(e) = self.input.out().elements.get(&key) {
                let labels = group_labels(&e.labels, &self.grouping);
                // One Arc per group.
                let group = match self.members.get_key_value(&labels) {
                    Some((g, _)) => g.clone(),
                    None => Arc::new(labels),
                };
                self.members
                    .entry(group.clone())
                    .or_default()
                    .insert(key.clone());
                self.group_of.insert(key, group.clone());
                dirty.insert(group);
            }
        }
        let mut changed = Vec::new();
        for group in dirty {
            ctx.recomputed += 1;
            let inputs = &self.input.out().elements;
            let members: Vec<&Element> = self
                .members
                .get(&group)
                .into_iter()
                .flatten()
                .filter_map(|k| inputs.get(k))
                .collect();
            let element = if members.is_empty() {
                self.members.remove(&group);
                None
            } else {
                let drop_name = members.iter().any(|e| e.drop_name);
                let source = Elements {
                    elements: members,
                    t: ctx.t,
                };
                match ctx
                    .settings
                    .evaluator(&source, ctx.t)
                    .eval(&self.plan, ctx.t)?
                {
                    Value::Vector(v) => v.into_iter().next().map(|mut e| {
                        e.drop_name = drop_name;
                        e
                    }),
                    _ => None,
                }
            };
            if self.out.set(&group, element) {
                changed.push(group);
            }
        }
        Ok(changed)
    }
}

enum Node {
    PerSeries(PerSeriesNode),
    Map(MapNode),
    Group(GroupNode),
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
                plan,
                key,
                back,
                fwd,
                latest_only,
                time_dependent,
                wake: HashMap::new(),
                agenda: BTreeMap::new(),
                out: Outputs::default(),
            }),
            Shape::Map {
                input,
                plan,
                writes_name,
            } => Node::Map(MapNode {
                input: Box::new(Node::new(*input)),
                plan,
                writes_name,
                out: Outputs::default(),
            }),
            Shape::Aggregate {
                input,
                plan,
                grouping,
            } => Node::Group(GroupNode {
                input: Box::new(Node::new(*input)),
                plan,
                grouping,
                members: HashMap::new(),
                group_of: HashMap::new(),
                out: Outputs::default(),
            }),
        }
    }

    fn out(&self) -> &Outputs {
        match self {
            Node::PerSeries(n) => &n.out,
            Node::Map(n) => &n.out,
            Node::Group(n) => &n.out,
        }
    }

    fn update(&mut self, ctx: &mut Ctx<'_>) -> EvalResult<Vec<Arc<Labels>>> {
        match self {
            Node::PerSeries(n) => n.update(ctx),
            Node::Map(n) => n.update(ctx),
            Node::Group(n) => n.update(ctx),
        }
    }

    fn arrived(&mut self, key: &str, labels: &Arc<Labels>, ts: i64) {
        match self {
            Node::PerSeries(n) => {
                if n.key == key {
                    let at = ts.saturating_sub(n.fwd);
                    n.schedule(labels, at);
                }
            }
            Node::Map(n) => n.input.arrived(key, labels, ts),
            Node::Group(n) => n.input.arrived(key, labels, ts),
        }
    }

    fn collisions(&self) -> usize {
        let own = self.out().collisions;
        own + match self {
            Node::PerSeries(_) => 0,
            Node::Map(n) => n.input.collisions(),
            Node::Group(n) => n.input.collisions(),
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

    /// A sample of series `labels` at `ts` was added to window `key`.
    pub fn arrived(&mut self, key: &str, labels: &Arc<Labels>, ts: i64) {
        if !self.rebuild {
            self.root.arrived(key, labels, ts);
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
        let mut elements: Vec<(&Arc<Labels>, &Element)> = self.root.out().elements.iter().collect();
        elements.sort_by(|a, b| a.0.cmp(b.0));
        Some(
            finish_vector(elements.into_iter().map(|(_, e)| e.clone()).collect())
                .map(Value::Vector),
        )
    }
}
