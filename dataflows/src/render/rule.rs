//! Registered expressions: what a rule is, when it is evaluated, what it outputs.
//!
//! PromQL: any instant-query expression, e.g. a recording or alerting rule
//! ```promql
//! sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) > 0.9
//! ```
//! Owns the registration-time checks (a schedule that makes sense, a plan shape the
//! maintained mode supports: anything else is [`RenderError::NotSupported`]), the
//! [`RuleChange`]s that carry registrations and removals into the dataflow as data,
//! the [`Registry`] each operator builds from the changes it received (placement:
//! which worker owns which rule, which rules are spread), and the routing table the
//! workers use to send each sample to the workers keeping the windows reading it.

use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::promql::eval::native::{parse_handle, SOURCE};
use crate::promql::eval::{EvalError, SeriesSource, Value};
use crate::promql::plan::Plan;
use crate::render::alerting::{AlertSpec, AlertStep};
use crate::render::extent::{selector_uses, Extent, QueryRange, SelectorUse};
use crate::render::spread::{spread_of, Spread};
use crate::selector::{MatchKind, Selector};
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use timely::dataflow::operators::InputCapability;
use timely::progress::frontier::MutableAntichain;
use xxhash_rust::xxh3::xxh3_64;

/// Identifies a registered expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleId(pub u64);

/// Which evaluation times a registered expression is evaluated at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleSchedule {
    /// `start + k * every` for every `k` whose time is not before the registration
    /// watermark, forever: a Prometheus rule group with `interval: every`. Subqueries
    /// without a step use `every` as their step, like Prometheus rules.
    Interval {
        /// First evaluation time (ms).
        start_ms: i64,
        /// Spacing (ms, > 0).
        every_ms: i64,
    },
    /// Once, at `at_ms`: an instant query answered as soon as the frontier passes it.
    At {
        /// The evaluation time (ms).
        at_ms: i64,
    },
    /// `start, start + step, …, end`: a range query maintained as data arrives;
    /// `@ start()`, `@ end()` and `step()` refer to this range.
    Range {
        /// First evaluation time (ms).
        start_ms: i64,
        /// Last evaluation time, inclusive (ms).
        end_ms: i64,
        /// Spacing (ms, > 0).
        step_ms: i64,
    },
    /// Every time a sample the expression reads arrives (at the sample's time, shifted
    /// by the selector's offset) and every time one leaves a window the expression
    /// reads (a range window, the lookback delta): an alert fires right after the
    /// scrape that satisfies it and resolves when its series goes stale.
    OnArrival,
}

/// The subquery step used when neither the subquery nor the schedule gives one (the
/// default global `evaluation_interval`).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// How a registered expression is evaluated at each of its times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evaluation {
    /// Per series and per group, recomputing only what changed, when the plan has an
    /// incremental shape (see [`crate::render::shape`]); else as `WholePlan`.
    #[default]
    Incremental,
    /// The whole plan by the reference evaluator over the retained windows.
    WholePlan,
}

/// What each output of a registered expression holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// The whole result at every evaluation time.
    #[default]
    Whole,
    /// The whole result first; then, while the incremental state can vouch for it,
    /// only what changed since the previous output ([`RuleOutput::gone`]), and nothing
    /// at all for an evaluation that changed nothing. A whole result again after a
    /// rebuild, an error, or an evaluation of the whole plan. For a consumer that keeps
    /// the result itself (an on-arrival rule group): an arrival then costs what it
    /// changed, not the size of the result. A rule with an alert stage
    /// ([`RuleDef::alerting`]) outputs at every evaluation (an empty change when nothing
    /// changed), each with the stage's step.
    Changes,
}

/// Work done by the maintained rules, for stats and tests.
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// Elements and groups recomputed by incremental evaluations.
    pub recomputed: AtomicU64,
    /// Evaluations answered incrementally.
    pub incremental: AtomicU64,
    /// Evaluations of the whole plan.
    pub whole_plan: AtomicU64,
    /// Owned (not spread) rules hosted by this process's workers now (a gauge).
    pub owned: AtomicU64,
    /// Samples sent to workers of other processes with their series id as a
    /// dictionary index ([`crate::render::route::code_for_peers`]).
    pub ids_indexed: AtomicU64,
    /// Dictionary entries those packs brought (an id crossing whole, once per
    /// sender, receiver and period).
    pub id_entries: AtomicU64,
    /// Label sets of rule hosts' and joiners' records sent to workers of other
    /// processes as a dictionary index only ([`crate::render::dictionary`]).
    pub label_refs: AtomicU64,
    /// Label sets those records carried whole (an entry of the labels dictionary,
    /// once per sender, receiver and period).
    pub labels_sent: AtomicU64,
}

/// One evaluation of a registered expression.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleOutput {
    /// The rule.
    pub rule: RuleId,
    /// The evaluation time (ms).
    pub eval_ms: i64,
    /// The result, exactly what the reference evaluator gives at `eval_ms`; with
    /// [`Delivery::Changes`] and `gone` set, only the elements that are new or whose
    /// value changed since the rule's previous output.
    pub value: Result<Value, EvalError>,
    /// `None`: `value` is the whole result. `Some`: `value` holds the changed elements
    /// and this the labels of the elements that left the result (only with
    /// [`Delivery::Changes`]).
    pub gone: Option<Vec<Arc<Labels>>>,
    /// The native histograms of `value`: an element whose value is the handle
    /// `(SOURCE, i)` ([`crate::promql::eval::native`]) is `histograms[i]`
    /// ([`RuleOutput::histogram`]). Empty (no allocation) for a float result.
    pub histograms: Vec<Arc<FloatHistogram>>,
    /// An alerting rule's alert stage's step at this evaluation
    /// ([`crate::render::alerting`]; [`RuleDef::alerting`]); `None` for every other
    /// rule. Not serialized with the output: an output crossing processes carries it
    /// in a record of its own ([`crate::render::spread::HostRecord::Alerting`]), so an
    /// output without one crosses as it did before.
    /// Boxed: an output without one stays the size it was.
    #[serde(skip)]
    pub alerts: Option<Box<AlertStep>>,
}

/// An element's value as a consumer of instant vectors takes it ([`RuleOutput::arrival`],
/// [`instant_vector`]): promflow's rule host a float or a native histogram, the alert
/// stage a float (a histogram's is 0, as Prometheus 2.42 takes a histogram sample's
/// float value).
pub trait ElementValue: Sized {
    /// A scalar result's value.
    fn scalar(value: f64) -> Self;
    /// An element's value, and the native histogram it names, if it is one.
    fn element(value: f64, histogram: Option<Arc<FloatHistogram>>) -> Self;
}

impl ElementValue for f64 {
    fn scalar(value: f64) -> f64 {
        value
    }

    fn element(value: f64, histogram: Option<Arc<FloatHistogram>>) -> f64 {
        match histogram {
            Some(_) => 0.0,
            None => value,
        }
    }
}

/// A rule's result as an instant vector (a scalar is one element without labels), each
/// element's value with the histogram `histogram` resolves its handle to; `Err` with
/// the value's text for a string or range vector. The one conversion of a result the
/// rule host and the alert stage both make: the host takes the value (its elements'
/// labels move), the stage borrows it (they are shared).
pub fn instant_vector<T: ElementValue>(
    value: Cow<'_, Value>,
    histogram: impl Fn(f64) -> Option<Arc<FloatHistogram>>,
) -> Result<Vec<(Arc<Labels>, T)>, String> {
    let element = |labels, v: f64| (labels, T::element(v, histogram(v)));
    match value {
        Cow::Owned(Value::Vector(v)) => {
            Ok(v.into_iter().map(|e| element(e.labels, e.value)).collect())
        }
        Cow::Borrowed(Value::Vector(v)) => Ok(v
            .iter()
            .map(|e| element(e.labels.clone(), e.value))
            .collect()),
        other => match other.as_ref() {
            Value::Scalar(v) => Ok(vec![(Arc::new(Labels::default()), T::scalar(*v))]),
            other => Err(format!("{other:?}")),
        },
    }
}

/// Why a rule's evaluation gave no instant vector ([`Arrival::Whole`]).
#[derive(Clone, Debug, PartialEq)]
pub enum NoVector {
    /// The evaluation failed.
    Eval(EvalError),
    /// The result is a string or a range vector (its text).
    NotAVector(String),
}

/// A rule's evaluation as a consumer of instant vectors takes it ([`RuleOutput::arrival`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Arrival<T> {
    /// The whole result, or why it is none.
    Whole(Result<Vec<(Arc<Labels>, T)>, NoVector>),
    /// Elements new or with a new value, and the labels of elements that left
    /// ([`Delivery::Changes`]).
    Changes {
        /// New or changed elements.
        set: Vec<(Arc<Labels>, T)>,
        /// Labels of the elements that left.
        gone: Vec<Arc<Labels>>,
    },
}

impl RuleOutput {
    /// The evaluation as an instant vector ([`instant_vector`]), whole or its changes
    /// (the alert stage's view: the output goes on).
    pub fn arrival<T: ElementValue>(&self) -> Arrival<T> {
        let value = self.value.as_ref().map(Cow::Borrowed);
        self.arrival_of(value.map_err(Clone::clone), self.gone.clone())
    }

    /// [`RuleOutput::arrival`], taking the output (the rule host's: nothing is copied).
    pub fn into_arrival<T: ElementValue>(mut self) -> Arrival<T> {
        let value = std::mem::replace(&mut self.value, Ok(Value::Vector(Vec::new())));
        let gone = self.gone.take();
        self.arrival_of(value.map(Cow::Owned), gone)
    }

    fn arrival_of<T: ElementValue>(
        &self,
        value: Result<Cow<'_, Value>, EvalError>,
        gone: Option<Vec<Arc<Labels>>>,
    ) -> Arrival<T> {
        let histogram = |v| self.histogram(v).cloned();
        match (gone, value) {
            (None, Err(e)) => Arrival::Whole(Err(NoVector::Eval(e))),
            (None, Ok(value)) => {
                Arrival::Whole(instant_vector(value, histogram).map_err(NoVector::NotAVector))
            }
            (Some(gone), value) => Arrival::Changes {
                set: match value {
                    Ok(v) if matches!(*v, Value::Vector(_)) => {
                        instant_vector(v, histogram).unwrap_or_default()
                    }
                    _ => Vec::new(),
                },
                gone,
            },
        }
    }

    /// The native histogram an element's value names, if it is one.
    pub fn histogram(&self, value: f64) -> Option<&Arc<FloatHistogram>> {
        match parse_handle(value)? {
            (SOURCE, i) => self.histograms.get(i as usize),
            _ => None,
        }
    }

    /// The result as samples: a vector's elements, a scalar as one element without
    /// labels; `None` for errors, strings and range vectors.
    pub fn samples(&self) -> Option<Vec<(Arc<Labels>, f64)>> {
        match &self.value {
            Ok(Value::Vector(v)) => Some(v.iter().map(|e| (e.labels.clone(), e.value)).collect()),
            Ok(Value::Scalar(s)) => Some(vec![(Arc::new(Labels::default()), *s)]),
            _ => None,
        }
    }
}

/// Why an expression cannot be registered.
#[derive(Clone, Debug, PartialEq)]
pub enum RenderError {
    /// The plan shape has no maintained evaluation.
    NotSupported(String),
    /// The schedule is malformed.
    BadSchedule(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::NotSupported(m) => write!(f, "not supported in maintained mode: {m}"),
            RenderError::BadSchedule(m) => write!(f, "bad rule schedule: {m}"),
        }
    }
}

impl std::error::Error for RenderError {}

/// Seed points for one window: `(selector key, series, float points, histogram
/// points)`.
pub type SeedSeries = (
    String,
    Arc<Labels>,
    Vec<(i64, f64)>,
    Vec<(i64, Arc<FloatHistogram>)>,
);

/// A seed series on its way to the worker keeping its window: `(worker, rule, series)`
/// (see [`crate::render::seed`]).
pub type SeedRecord = (u64, RuleId, SeedSeries);

/// A registration as data: what a [`RuleChange::Install`] carries to every operator of
/// every worker (of every process), each of which builds its own [`RuleSpec`] from it
/// ([`RuleSpec::analyse`]: deterministic, so every operator sees the same rule). The
/// rule's output channel is not data: it stays in the registering process
/// ([`LocalRules`]), found by the rule's id; its seed travels beside the change, to
/// the workers keeping its windows only ([`crate::render::seed`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleDef {
    /// Its id (unique in the cluster).
    pub id: RuleId,
    /// The plan.
    pub plan: Plan,
    /// Its evaluation times.
    pub schedule: RuleSchedule,
    /// Incremental or whole-plan.
    pub evaluation: Evaluation,
    /// Whole results or changes.
    pub delivery: Delivery,
    /// The watermark of the registering process when it was registered.
    pub registered_at_ms: i64,
    /// The engine's lookback delta (ms).
    pub lookback_ms: i64,
    /// The process holding its output channel ([`LocalRules`]).
    pub home_process: usize,
    /// Workers per process (the same in every process of a timely cluster).
    pub process_workers: usize,
    /// Whether a one-to-one join of two per-series plans is spread
    /// ([`crate::EngineConfig::spread_joins`] of the registering engine).
    pub spread_joins: bool,
    /// Whether a rule whose owner would evaluate every element is spread anyway
    /// ([`crate::EngineConfig::spread_owner_bound`] of the registering engine).
    pub spread_owner_bound: bool,
    /// Whether its windows are seeded ([`crate::Engine::register_seeded`]): the
    /// registering process sends its own storage's series beside the change, and every
    /// other process its own storage's, in the dataflow ([`crate::render::seed`]).
    pub seeded: bool,
    /// An alerting rule whose alert state is stepped in the dataflow (interval
    /// schedules only): the owner of an owned rule runs its alert stage beside the
    /// evaluation, the owner of a spread rule beside the combined result, and each
    /// step leaves with the result ([`RuleOutput::alerts`]; see
    /// [`crate::render::alerting`]). `None` for every other rule.
    pub alerting: Option<Arc<AlertSpec>>,
}

/// A registered expression, as an operator sees it: its [`RuleDef`] analysed.
pub struct RuleSpec {
    /// Its id.
    pub id: RuleId,
    /// The plan.
    pub plan: Plan,
    /// Its evaluation times.
    pub schedule: RuleSchedule,
    /// Incremental or whole-plan.
    pub evaluation: Evaluation,
    /// Whole results or changes ([`Delivery::Whole`] unless the registration asked).
    pub delivery: Delivery,
    /// The selectors it reads and how far.
    pub uses: Vec<SelectorUse>,
    /// The watermark when it was registered: the first evaluation time of an
    /// `Interval` schedule is not before it.
    pub registered_at_ms: i64,
    /// Hash choosing its owner worker when no registered rule reads its selectors
    /// (see [`Registry::insert`]).
    pub home: u64,
    /// Spread over every worker (per-series work where the series lives, partial
    /// aggregates combined on the owner), when its shape allows ([`spread_of`]) and
    /// there is more than one worker.
    pub spread: Option<Spread>,
    /// The process holding its output channel.
    pub home_process: usize,
    /// Workers per process.
    pub process_workers: usize,
    /// The workers it may be owned by: for an owned rule every worker of every
    /// process (its results cross back to the home process when its owner is
    /// elsewhere, [`RuleSpec::delivered_by`]); for a spread rule those of its home
    /// process, where its owner combines the partials and delivers the results.
    pub owners: std::ops::Range<usize>,
    /// Its alert stage's definition ([`RuleDef::alerting`]).
    pub alerting: Option<Arc<AlertSpec>>,
}

impl RuleSpec {
    /// Validates and analyses a registration, for a dataflow of `peers` workers in
    /// all.
    pub fn analyse(def: &RuleDef, peers: usize) -> Result<RuleSpec, RenderError> {
        let schedule = def.schedule;
        let range = match schedule {
            RuleSchedule::Interval { every_ms, .. } if every_ms <= 0 => {
                return Err(RenderError::BadSchedule("interval must be positive".into()))
            }
            RuleSchedule::Range {
                start_ms,
                end_ms,
                step_ms,
            } => {
                if step_ms <= 0 || end_ms < start_ms {
                    return Err(RenderError::BadSchedule(
                        "range needs step > 0 and end >= start".into(),
                    ));
                }
                QueryRange {
                    start_ms: Some(start_ms),
                    end_ms: Some(end_ms),
                }
            }
            _ => QueryRange {
                start_ms: None,
                end_ms: None,
            },
        };
        if def.alerting.is_some() && !matches!(schedule, RuleSchedule::Interval { .. }) {
            return Err(RenderError::BadSchedule(
                "an alert stage steps at the ticks of an interval schedule only".into(),
            ));
        }
        let uses = selector_uses(&def.plan, def.lookback_ms, range);
        if uses.is_empty() && schedule == RuleSchedule::OnArrival {
            return Err(RenderError::NotSupported(
                "on-arrival evaluation of an expression that reads no series \
                 (nothing would ever trigger it); use an interval"
                    .into(),
            ));
        }
        // Rules reading the same first selector land on the same worker and share
        // its window; a rule reading nothing goes by its id.
        let home = uses
            .iter()
            .map(|u| u.key.as_str())
            .min()
            .map(|k| xxh3_64(k.as_bytes()))
            .unwrap_or(def.id.0);
        // With one worker there is nothing to spread over.
        let spread = (peers > 1)
            .then(|| {
                spread_of(
                    &def.plan,
                    schedule,
                    def.evaluation,
                    &uses,
                    def.spread_joins,
                    def.spread_owner_bound,
                )
            })
            .flatten();
        let per = def.process_workers.max(1);
        let owners = match spread {
            Some(_) => def.home_process * per..(def.home_process + 1) * per,
            None => 0..peers.max(1),
        };
        Ok(RuleSpec {
            id: def.id,
            plan: def.plan.clone(),
            schedule,
            evaluation: def.evaluation,
            delivery: def.delivery,
            uses,
            registered_at_ms: def.registered_at_ms,
            home,
            spread,
            home_process: def.home_process,
            process_workers: def.process_workers.max(1),
            owners,
            alerting: def.alerting.clone(),
        })
    }

    /// The process of worker `worker`.
    pub fn process_of(&self, worker: usize) -> usize {
        worker / self.process_workers
    }

    /// The worker that delivers the results of this rule when its owner is `owner`:
    /// the owner itself when it is in the home process (or for a spread rule, whose
    /// owner always is), else the home process's first worker, which receives them
    /// through the dataflow.
    pub fn delivered_by(&self, owner: usize) -> usize {
        if self.process_of(owner) == self.home_process {
            owner
        } else {
            self.home_process * self.process_workers
        }
    }

    /// The samples of `source` the first evaluation reads, per window: what the
    /// windows start with ([`crate::Engine::register_seeded`]).
    pub fn seed(&self, source: &dyn SeriesSource) -> Vec<SeedSeries> {
        let mut seed = Vec::new();
        for u in &self.uses {
            for extent in [u.relative, u.absolute].into_iter().flatten() {
                let (lo, hi) = match extent {
                    Extent::Relative { back, fwd } => {
                        let first = first_eval(self.schedule, self.registered_at_ms);
                        (first - back, first + fwd.max(0))
                    }
                    Extent::Absolute { lo, hi } => (lo, hi),
                };
                for (labels, mut points) in source.select(&u.selector, lo, hi) {
                    // The source's histogram handles name its own storage: the
                    // histograms themselves go to the window.
                    let mut histograms = Vec::new();
                    points.retain(|&(ts, v)| match parse_handle(v) {
                        Some((SOURCE, i)) => {
                            histograms.extend(source.histogram(i).map(|h| (ts, h)));
                            false
                        }
                        _ => true,
                    });
                    seed.push((u.key.clone(), labels, points, histograms));
                }
            }
        }
        seed
    }
}

/// What the registering process keeps of each rule until the dataflow takes it: the
/// output channel, taken by the one operator that delivers the rule's results (the
/// owner's rule host, the home process's combiner for a rule owned in another process
/// or for a spread rule). It cannot cross processes, so it does not travel in a
/// [`RuleChange`]; it is found by the rule's id.
#[derive(Default)]
pub struct LocalRules {
    rules: Mutex<HashMap<RuleId, Sender<RuleOutput>>>,
}

impl LocalRules {
    /// Keeps `output` for rule `id` until taken.
    pub fn insert(&self, id: RuleId, output: Sender<RuleOutput>) {
        self.rules.lock().insert(id, output);
    }

    /// Takes rule `id`'s output channel (once: the operator delivering its results);
    /// `None` if this process does not hold it.
    pub fn take_output(&self, id: RuleId) -> Option<Sender<RuleOutput>> {
        self.rules.lock().remove(&id)
    }

    /// Forgets rule `id` (removed before the dataflow took what it keeps).
    pub fn forget(&self, id: RuleId) {
        self.rules.lock().remove(&id);
    }

    /// The number of rules with something not yet taken.
    pub fn len(&self) -> usize {
        self.rules.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The first evaluation time of a schedule for a rule registered at `registered_at`.
pub fn first_eval(schedule: RuleSchedule, registered_at: i64) -> i64 {
    match schedule {
        RuleSchedule::Interval { start_ms, every_ms } => {
            if start_ms >= registered_at {
                start_ms
            } else {
                let k = (registered_at - start_ms + every_ms - 1) / every_ms;
                start_ms + k * every_ms
            }
        }
        RuleSchedule::At { at_ms } => at_ms,
        RuleSchedule::Range { start_ms, .. } => start_ms,
        RuleSchedule::OnArrival => registered_at,
    }
}

/// Where a window of a selector is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Keeper {
    /// On this worker, for the rules it owns.
    Owner(usize),
    /// On the worker owning the series (its id modulo the workers), for spread rules.
    BySeries,
}

/// Which worker wants samples of which selector: the table the router consults.
#[derive(Default)]
pub struct Routing {
    /// Selectors with a `__name__="…"` matcher, by that name.
    by_name: HashMap<String, Vec<(Selector, Keeper)>>,
    /// Every other selector.
    other: Vec<(Selector, Keeper)>,
    /// The number of workers.
    peers: usize,
}

/// Where a routed sample goes: the worker, and whether to the windows of spread rules
/// (else of the rules that worker owns).
pub type Destination = (u64, bool);

impl Routing {
    /// Whether no rule is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.other.is_empty()
    }

    /// Calls `to` once per destination keeping a window that reads series
    /// `series_id`, labelled `labels`.
    pub fn destinations(&self, labels: &Labels, series_id: u64, mut to: impl FnMut(Destination)) {
        let mut seen: u64 = 0;
        let mut seen_high: Vec<usize> = Vec::new();
        let mut spread = false;
        let named = self.by_name.get(labels.metric_name());
        for (sel, keeper) in named.into_iter().flatten().chain(self.other.iter()) {
            let owner = match keeper {
                Keeper::BySeries => {
                    if !spread && sel.matches(labels) {
                        spread = true;
                        to((series_id % self.peers.max(1) as u64, true));
                    }
                    continue;
                }
                Keeper::Owner(owner) => owner,
            };
            let first = if *owner < 64 {
                seen & (1 << owner) == 0
            } else {
                !seen_high.contains(owner)
            };
            if first && sel.matches(labels) {
                if *owner < 64 {
                    seen |= 1 << owner;
                } else {
                    seen_high.push(*owner);
                }
                to((*owner as u64, false));
            }
        }
    }
}

/// A change to the registered rules, entering the dataflow as data: every worker
/// receives it on its control input at the logical time it was made, and applies the
/// changes in time order (before the samples of that time), so every operator's
/// [`Registry`] goes through the same states and places rules the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RuleChange {
    /// A rule registered (a replacement is a removal and an installation).
    Install(Arc<RuleDef>),
    /// A rule removed: its state is dropped, its channel closes.
    Remove(RuleId),
}

/// Keeps what an input brings by its logical time until the operator's frontier passes
/// that time ([`frontier_of`]): an operator's `input.for_each`, e.g. of the rule
/// changes of its control input.
pub fn hold_by_time<D>(
    held: &mut BTreeMap<u64, Vec<D>>,
) -> impl FnMut(InputCapability<u64>, &mut Vec<D>) + '_ {
    move |cap, batch| {
        if let Some(t) = cap.least() {
            held.entry(*t).or_default().append(batch);
        }
    }
}

/// The earliest time an operator's data and control inputs may still bring (`u64::MAX`
/// once both are done): what it holds for earlier times is complete, rule changes
/// included.
pub fn frontier_of(data: &MutableAntichain<u64>, control: &MutableAntichain<u64>) -> u64 {
    let (data, control) = (data.frontier(), control.frontier());
    data.iter()
        .chain(control.iter())
        .min()
        .copied()
        .unwrap_or(u64::MAX)
}

/// A rule id's bits above this are its registering process (ids are unique in a
/// cluster; in one process, process 0, they are the plain counter).
pub const RULE_ID_PROCESS_SHIFT: u32 = 48;

impl RuleChange {
    /// The process the change came from: changes of one logical time are applied in
    /// the order of their processes, each process's in the order it made them.
    pub fn origin(&self) -> usize {
        match self {
            RuleChange::Install(def) => def.home_process,
            RuleChange::Remove(id) => (id.0 >> RULE_ID_PROCESS_SHIFT) as usize,
        }
    }
}

/// The registered rules as one operator of one worker knows them (from the
/// [`RuleChange`]s it received): who owns which, and the routing table.
pub struct Registry {
    /// Each rule with its owner worker.
    rules: BTreeMap<RuleId, (Arc<RuleSpec>, usize)>,
    routing: Arc<Routing>,
    peers: usize,
}

impl Registry {
    /// No rules, over `peers` workers.
    pub fn new(peers: usize) -> Registry {
        Registry {
            rules: BTreeMap::new(),
            routing: Arc::new(Routing {
                peers,
                ..Routing::default()
            }),
            peers: peers.max(1),
        }
    }

    /// Applies a change; for an installation, the rule as analysed here and its owner
    /// (`None` for a definition that does not analyse: the registering engine
    /// refused it, so no process sends one).
    pub fn apply(&mut self, change: &RuleChange) -> Option<(Arc<RuleSpec>, usize)> {
        match change {
            RuleChange::Install(def) => {
                let spec = Arc::new(RuleSpec::analyse(def, self.peers).ok()?);
                let owner = self.insert(spec.clone());
                Some((spec, owner))
            }
            RuleChange::Remove(id) => {
                self.remove(*id);
                None
            }
        }
    }

    /// Adds a rule and rebuilds the routing table; returns its owner. A rule (not
    /// spread) reading a selector some registered rule already reads on its owner goes
    /// to that rule's worker (whatever its own smallest selector is), so the two share
    /// one window for it; otherwise it goes to the worker owning the fewest such rules
    /// ([`Registry::least_loaded`]). A spread rule's owner, which only combines its
    /// partials, is the one its `home` hash picks.
    pub fn insert(&mut self, spec: Arc<RuleSpec>) -> usize {
        let owners = spec.owners.len().max(1) as u64;
        let owner = match spec.spread {
            Some(_) => spec.owners.start + (spec.home % owners) as usize,
            None => self
                .owner_reading(&spec)
                .unwrap_or_else(|| self.least_loaded(&spec)),
        };
        self.rules.insert(spec.id, (spec, owner));
        self.changed();
        owner
    }

    /// The worker of `spec.owners` that owns the fewest registered rules that are not
    /// spread; of several, the first from the one its `home` hash picks on. Every
    /// operator holds the same rules when it places one (they apply the same changes in
    /// the same order), so they all place it alike; the count of rules stands for their
    /// cost, which nothing knows at registration (a rule's series arrive later, on
    /// whichever workers keep them).
    fn least_loaded(&self, spec: &RuleSpec) -> usize {
        let workers = spec.owners.len().max(1);
        let mut owned = vec![0usize; workers];
        for (rule, owner) in self.rules.values() {
            if rule.spread.is_none() && spec.owners.contains(owner) {
                owned[owner - spec.owners.start] += 1;
            }
        }
        let first = (spec.home % workers as u64) as usize;
        let least = (0..workers)
            .map(|k| (first + k) % workers)
            .min_by_key(|&w| owned[w])
            .unwrap_or(first);
        spec.owners.start + least
    }

    /// The worker of the oldest registered (not spread) rule of the same home process
    /// reading one of `spec`'s selectors.
    fn owner_reading(&self, spec: &RuleSpec) -> Option<usize> {
        let uses = &spec.uses;
        self.rules
            .values()
            .filter(|(r, _)| r.spread.is_none() && r.owners == spec.owners)
            .find(|(r, _)| r.uses.iter().any(|u| uses.iter().any(|n| n.key == u.key)))
            .map(|(_, owner)| *owner)
    }

    /// Removes a rule; whether it existed.
    pub fn remove(&mut self, id: RuleId) -> bool {
        let existed = self.rules.remove(&id).is_some();
        if existed {
            self.changed();
        }
        existed
    }

    /// A registered rule and its owner.
    pub fn get(&self, id: RuleId) -> Option<&(Arc<RuleSpec>, usize)> {
        self.rules.get(&id)
    }

    /// The current routing table.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.clone()
    }

    fn changed(&mut self) {
        let mut routing = Routing {
            peers: self.peers,
            ..Routing::default()
        };
        let mut seen: std::collections::HashSet<(String, Keeper)> = Default::default();
        for (rule, owner) in self.rules.values() {
            let keeper = match rule.spread {
                Some(_) => Keeper::BySeries,
                None => Keeper::Owner(*owner),
            };
            for u in &rule.uses {
                if !seen.insert((u.key.clone(), keeper)) {
                    continue;
                }
                let name = u.selector.matchers.iter().find_map(|m| match &m.kind {
                    MatchKind::Equal(v) if m.name == crate::labels::METRIC_NAME => Some(v),
                    _ => None,
                });
                match name {
                    Some(n) => routing
                        .by_name
                        .entry(n.clone())
                        .or_default()
                        .push((u.selector.clone(), keeper)),
                    None => routing.other.push((u.selector.clone(), keeper)),
                }
            }
        }
        self.routing = Arc::new(routing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::parse;

    /// Rule `id`, `query` every minute, registered by `(home process, workers per
    /// process)`.
    fn def(id: u64, query: &str, (home_process, process_workers): (usize, usize)) -> RuleDef {
        RuleDef {
            id: RuleId(id),
            plan: parse(query).unwrap(),
            schedule: RuleSchedule::Interval {
                start_ms: 0,
                every_ms: 60_000,
            },
            evaluation: Evaluation::Incremental,
            delivery: Delivery::Changes,
            registered_at_ms: 0,
            lookback_ms: 300_000,
            home_process,
            process_workers,
            spread_joins: false,
            spread_owner_bound: false,
            seeded: false,
            alerting: None,
        }
    }

    /// A change read back from its serialized form is the same change: the plan's
    /// matchers (regexes too), functions, subqueries and modifiers survive, and every
    /// operator analyses it the same way.
    #[test]
    fn a_rule_change_survives_serialization() {
        for query in [
            r#"sum by (job) (rate(x{job=~"a|b", mode!~"idle"}[5m]))"#,
            r#"label_replace(up{job!="x"} offset 1m, "a", "$1", "job", "(.*)") > 0.5"#,
            "max_over_time(rate(x[1m])[10m:30s] @ 100)",
            "topk(2, x) or on (job) y",
            "x * on (job) group_left (a) y",
        ] {
            let def = RuleDef {
                registered_at_ms: 5,
                ..def((1 << RULE_ID_PROCESS_SHIFT) | 7, query, (1, 2))
            };
            let change = RuleChange::Install(Arc::new(def));
            let text = serde_json::to_string(&change).unwrap();
            let back: RuleChange = serde_json::from_str(&text).unwrap();
            assert_eq!(format!("{back:?}"), format!("{change:?}"), "{query}");
            assert_eq!(back.origin(), 1);
            let (RuleChange::Install(a), RuleChange::Install(b)) = (&change, &back) else {
                panic!()
            };
            let (a, b) = (
                RuleSpec::analyse(a, 4).unwrap(),
                RuleSpec::analyse(b, 4).unwrap(),
            );
            assert_eq!((a.home, a.owners.clone()), (b.home, b.owners.clone()));
            // An owned rule may be owned by any worker of the cluster, a spread one
            // (its combiner) by its home process's.
            match a.spread {
                Some(_) => assert_eq!(a.owners, 2..4),
                None => assert_eq!(a.owners, 0..4),
            }
            assert_eq!((a.delivered_by(0), a.delivered_by(3)), (2, 3));
            assert_eq!(a.spread.is_some(), b.spread.is_some(), "{query}");
        }
    }

    /// Owned rules reading different selectors are placed evenly over the workers (a
    /// hash of their selectors would leave some with twice the rules of others), and
    /// a rule reading a selector another already reads joins it; every registry
    /// applying the same changes places them alike.
    #[test]
    fn owned_rules_are_placed_evenly_and_alike() {
        let changes: Vec<RuleChange> = (0..20)
            .map(|f| {
                def(
                    f,
                    // Owned: a label function inside the aggregation.
                    &format!(
                        r#"sum by (job) (label_replace(rate(family{f}[1m]), "f", "x", "", ""))"#
                    ),
                    (0, 3),
                )
            })
            .chain([def(20, "family7 > 1", (0, 3))])
            .map(|d| RuleChange::Install(Arc::new(d)))
            .collect();
        let place = || {
            let mut registry = Registry::new(3);
            let owners: Vec<usize> = changes
                .iter()
                .map(|c| registry.apply(c).expect("analyses").1)
                .collect();
            owners
        };
        let owners = place();
        assert_eq!(owners, place());
        let mut per_worker = [0; 3];
        for owner in &owners[..20] {
            per_worker[*owner] += 1;
        }
        per_worker.sort();
        assert_eq!(per_worker, [6, 7, 7], "{owners:?}");
        assert_eq!(
            owners[20], owners[7],
            "a rule reading family7 joins its window"
        );
    }
}
