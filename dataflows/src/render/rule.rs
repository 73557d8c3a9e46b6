//! Registered expressions: what a rule is, when it is evaluated, what it outputs.
//!
//! PromQL: any instant-query expression, e.g. a recording or alerting rule
//! ```promql
//! sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) > 0.9
//! ```
//! Owns the registration-time checks (a schedule that makes sense, a plan shape the
//! maintained mode supports: anything else is [`RenderError::NotSupported`]), the
//! [`Registry`] shared by the service thread and the timely workers, and the routing
//! table the workers use to send each sample to the worker owning the rules reading it.

use crate::labels::Labels;
use crate::promql::eval::{EvalError, SeriesSource, Value};
use crate::promql::plan::Plan;
use crate::render::extent::{selector_uses, Extent, QueryRange, SelectorUse};
use crate::selector::{MatchKind, Selector};
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// Identifies a registered expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub u64);

/// Which evaluation times a registered expression is evaluated at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Evaluation {
    /// Per series and per group, recomputing only what changed, when the plan has an
    /// incremental shape (see [`crate::render::shape`]); else as `WholePlan`.
    #[default]
    Incremental,
    /// The whole plan by the reference evaluator over the retained windows.
    WholePlan,
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
}

/// One evaluation of a registered expression.
#[derive(Clone, Debug)]
pub struct RuleOutput {
    /// The rule.
    pub rule: RuleId,
    /// The evaluation time (ms).
    pub eval_ms: i64,
    /// The result, exactly what the reference evaluator gives at `eval_ms`.
    pub value: Result<Value, EvalError>,
}

impl RuleOutput {
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

/// Seed points for one window: `(selector key, series, points)`.
pub type SeedSeries = (String, Arc<Labels>, Vec<(i64, f64)>);

/// A registered expression, as the owning worker sees it.
pub struct RuleSpec {
    /// Its id.
    pub id: RuleId,
    /// The plan.
    pub plan: Plan,
    /// Its evaluation times.
    pub schedule: RuleSchedule,
    /// Incremental or whole-plan.
    pub evaluation: Evaluation,
    /// The selectors it reads and how far.
    pub uses: Vec<SelectorUse>,
    /// The watermark when it was registered: the first evaluation time of an
    /// `Interval` schedule is not before it.
    pub registered_at_ms: i64,
    /// The worker that keeps its state and evaluates it.
    pub owner: usize,
    /// Where evaluations go.
    pub output: Sender<RuleOutput>,
    /// Samples to start the windows with, taken by the owner when it installs the rule.
    pub seed: Mutex<Vec<SeedSeries>>,
}

impl RuleSpec {
    /// Validates and analyses a registration.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: RuleId,
        plan: Plan,
        schedule: RuleSchedule,
        lookback_ms: i64,
        registered_at_ms: i64,
        peers: usize,
        output: Sender<RuleOutput>,
        seed_from: Option<&dyn SeriesSource>,
    ) -> Result<RuleSpec, RenderError> {
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
        let uses = selector_uses(&plan, lookback_ms, range);
        if uses.is_empty() && schedule == RuleSchedule::OnArrival {
            return Err(RenderError::NotSupported(
                "on-arrival evaluation of an expression that reads no series \
                 (nothing would ever trigger it); use an interval"
                    .into(),
            ));
        }
        // Rules reading the same first selector land on the same worker and share
        // its window; a rule reading nothing goes by its id.
        let owner_hash = uses
            .iter()
            .map(|u| u.key.as_str())
            .min()
            .map(|k| xxh3_64(k.as_bytes()))
            .unwrap_or(id.0);
        let mut seed = Vec::new();
        if let Some(source) = seed_from {
            for u in &uses {
                for extent in [u.relative, u.absolute].into_iter().flatten() {
                    let (lo, hi) = match extent {
                        Extent::Relative { back, fwd } => {
                            let first = first_eval(schedule, registered_at_ms);
                            (first - back, first + fwd.max(0))
                        }
                        Extent::Absolute { lo, hi } => (lo, hi),
                    };
                    for (labels, points) in source.select(&u.selector, lo, hi) {
                        seed.push((u.key.clone(), labels, points));
                    }
                }
            }
        }
        Ok(RuleSpec {
            id,
            plan,
            schedule,
            evaluation: Evaluation::default(),
            uses,
            registered_at_ms,
            owner: (owner_hash % peers.max(1) as u64) as usize,
            output,
            seed: Mutex::new(seed),
        })
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

/// Which worker wants samples of which selector: the table the router consults.
#[derive(Default)]
pub struct Routing {
    /// Selectors with a `__name__="…"` matcher, by that name.
    by_name: HashMap<String, Vec<(Selector, usize)>>,
    /// Every other selector.
    other: Vec<(Selector, usize)>,
}

impl Routing {
    /// Whether no rule is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.other.is_empty()
    }

    /// Calls `to` once per worker owning a rule that reads a series with `labels`.
    pub fn owners(&self, labels: &Labels, mut to: impl FnMut(usize)) {
        let mut seen: u64 = 0;
        let mut seen_high: Vec<usize> = Vec::new();
        let named = self.by_name.get(labels.metric_name());
        for (sel, owner) in named.into_iter().flatten().chain(self.other.iter()) {
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
                to(*owner);
            }
        }
    }
}

/// Registered rules, shared by the engine (writes) and the workers (read).
#[derive(Default)]
pub struct Registry {
    rules: BTreeMap<RuleId, Arc<RuleSpec>>,
    routing: Arc<Routing>,
    /// Bumped on every change, so workers notice cheaply.
    version: u64,
    next_id: u64,
}

impl Registry {
    /// A fresh rule id.
    pub fn next_id(&mut self) -> RuleId {
        self.next_id += 1;
        RuleId(self.next_id)
    }

    /// Whether no rule is registered.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds a rule and rebuilds the routing table. A rule reading a selector some
    /// registered rule already reads goes to that rule's worker (whatever its own
    /// smallest selector is), so the two share one window for it.
    pub fn insert(&mut self, mut spec: RuleSpec) {
        if let Some(owner) = self.owner_reading(&spec.uses) {
            spec.owner = owner;
        }
        self.rules.insert(spec.id, Arc::new(spec));
        self.changed();
    }

    /// The worker of the oldest registered rule reading one of `uses`' selectors.
    fn owner_reading(&self, uses: &[SelectorUse]) -> Option<usize> {
        self.rules
            .values()
            .find(|r| r.uses.iter().any(|u| uses.iter().any(|n| n.key == u.key)))
            .map(|r| r.owner)
    }

    /// Removes a rule; whether it existed.
    pub fn remove(&mut self, id: RuleId) -> bool {
        let existed = self.rules.remove(&id).is_some();
        if existed {
            self.changed();
        }
        existed
    }

    /// The change counter.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The current routing table.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.clone()
    }

    /// The rules `worker` owns.
    pub fn owned_by(&self, worker: usize) -> Vec<Arc<RuleSpec>> {
        self.rules
            .values()
            .filter(|r| r.owner == worker)
            .cloned()
            .collect()
    }

    fn changed(&mut self) {
        self.version += 1;
        let mut routing = Routing::default();
        let mut seen: std::collections::HashSet<(String, usize)> = Default::default();
        for rule in self.rules.values() {
            for u in &rule.uses {
                if !seen.insert((u.key.clone(), rule.owner)) {
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
                        .push((u.selector.clone(), rule.owner)),
                    None => routing.other.push((u.selector.clone(), rule.owner)),
                }
            }
        }
        self.routing = Arc::new(routing);
    }
}

/// The registry as shared between threads.
pub type SharedRegistry = Arc<Mutex<Registry>>;
