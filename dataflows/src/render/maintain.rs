//! Maintained evaluation: each registered expression evaluated at its evaluation times
//! over the retained windows, as soon as the frontier passes what it reads.
//!
//! PromQL: any expression the reference evaluator supports, e.g.
//! ```promql
//! sum by (job) (rate(http_requests_total[5m]))        # evaluated at each t of its schedule
//! ```
//! One operator per worker hosts every rule that worker owns (see [`crate::render`]
//! for the ownership rule) and its part of every spread rule ([`crate::render::spread`]).
//! It reads the rule changes from the control stream into its own [`Registry`] and
//! handles, in logical-time order, everything older than both its inputs' frontiers:
//! before the changes of time `c` it makes every evaluation ready at frontier `c`, so
//! a rule is evaluated at the same times on every worker whatever frontiers each
//! happened to see. Per activation it (1) installs and drops rules as the changes say,
//! (2) adds routed samples to the [`WindowStore`] (one for owned rules, one for the
//! series this worker keeps for spread rules; a time's packs from other processes are
//! decoded once every series-id dictionary entry they bring is learned,
//! [`crate::sample::ReceivedIds`]) and, for on-arrival rules, records the
//! evaluation times they trigger, (3) evaluates every rule whose next evaluation time
//! `t` is *ready* — every sample it can read at `t` is older than the input frontier —
//! sending `(t, result)` to the rule's channel (for a rule registered by another
//! process, through the exchange to the worker delivering it there,
//! [`crate::render::spread::HostRecord::Output`]), or for a spread rule its partials to
//! the owner (a join's side elements to the workers of their match groups,
//! [`crate::render::spread::part_records`]), all at logical time `ready(t)`, and (4)
//! retires samples no rule can read any more. A rule's seed series arrive on an input
//! of their own ([`crate::render::seed`]) before the change installing it is applied.
//!
//! An owned alerting rule registered with an alert stage ([`RuleSpec::alerting`]:
//! interval schedules only; a spread one's is in its combiner) has its [`AlertStage`]
//! here, on its owner:
//! each evaluation, in `t` order in the same call that makes it, steps the stage with
//! the result as the rule host converts it ([`AlertStage::on_rule_output`]), and the
//! step leaves with the output ([`RuleOutput::alerts`]; to a home in another process
//! in a [`crate::render::spread::HostRecord::Alerting`]). It steps at every tick: an
//! evaluation delivering changes that changed nothing leaves as an empty change with
//! its step. Every other rule carries no step and costs nothing more.
//!
//! An evaluation is incremental ([`IncrementalRule`]: only the series and groups whose
//! inputs changed are recomputed) when the plan has an incremental shape and the rule
//! did not ask for [`Evaluation::WholePlan`]; otherwise, or when the incremental state
//! cannot vouch for the result, the reference evaluator runs the whole plan over the
//! store. The windows (appended as samples arrive, retired as the frontier passes,
//! shared by every rule reading the same selector on this worker) and the schedule are
//! maintained either way.
//!
//! Native histograms arrive on an input of their own (routed like the floats) and go
//! into the same windows ([`WindowStore::insert_histogram`]), and reach an incremental
//! rule's state as floats do. A rule whose incremental state does not take them (a
//! join, [`IncrementalRule::takes_histograms`]) is evaluated whole-plan from the first
//! one on (its state is dropped). Results leave detached ([`detach`], or the
//! incremental state's own) with the histograms they name ([`RuleOutput::histograms`];
//! a spread part's partials likewise).

use crate::catalog::SeriesCatalog;
use crate::labels::Labels;
use crate::promql::eval::native::detach;
use crate::promql::eval::{Element, EvalResult, Value};
use crate::promql::plan::Plan;
use crate::render::alerting::AlertStage;
use crate::render::extent::Extent;
use crate::render::incremental::{Delta, Detached, IncrementalRule, Settings};
use crate::render::route::{id_epoch, Announcement, Routed, ANNOUNCE_PERIOD_MS};
use crate::render::rule::{
    first_eval, hold_by_time, Delivery, Destination, Evaluation, LocalRules, Registry, RuleChange,
    RuleCounters, RuleId, RuleOutput, RuleSchedule, RuleSpec, SeedRecord, SeedSeries,
    DEFAULT_SUBQUERY_STEP_MS,
};
use crate::render::shape::shape;
use crate::render::spread::{members_plan, part_records, HostRecord};
use crate::render::window::{Reach, WindowStore};
use crate::sample::{HistogramPoint, Pack, PackedPoints, Point, ReceivedIds};
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// A result and the native histograms its handles name ([`detach`]; empty for floats).
pub type Evaluated = Detached;

/// At most this many evaluations of one interval rule per activation; older ones are
/// skipped (like Prometheus's missed iterations when a group falls behind).
const MAX_CATCH_UP: i64 = 10_000;

/// Retire at most once per this much frontier progress (ms).
const RETIRE_EVERY_MS: i64 = 1_000;

struct RuleState {
    spec: Arc<RuleSpec>,
    /// What it evaluates: the rule's plan, or a local plan of a spread rule.
    plan: Plan,
    /// A spread rule's part: evaluates every time due, never skipping (all workers
    /// must make the same evaluations).
    part: bool,
    /// A spread rule's part whose elements cross unfinished, as the reference holds
    /// them ([`crate::render::spread::Spread::sends_elements`]).
    side: bool,
    /// Interval / At / Range: the next evaluation time; `None` when done.
    next: Option<i64>,
    /// OnArrival: triggered evaluation times not yet evaluated.
    pending: BTreeSet<i64>,
    /// The latest evaluation time evaluated.
    last: Option<i64>,
    /// Largest `fwd` over the relative reads (how far past `t` an evaluation reads).
    fwd: i64,
    /// Largest fixed time read (an `@` modifier), if any.
    fixed_hi: Option<i64>,
    /// Whether its windows were released after its last evaluation.
    released: bool,
    /// How the reference evaluator is set up for it.
    settings: Settings,
    /// Per-series/group state when the plan has an incremental shape (and the rule
    /// asked for it); `None`: the whole plan is evaluated each time.
    incremental: Option<IncrementalRule>,
    /// Whether the last evaluation was answered by `incremental`.
    answered_incrementally: bool,
}

impl RuleState {
    /// The state of `plan`, the rule's, or (`part`: `Some(i)`) the `i`th local plan
    /// of a spread rule.
    fn new(spec: Arc<RuleSpec>, plan: Plan, part: Option<usize>, lookback_ms: i64) -> RuleState {
        let side =
            part.is_some_and(|i| (spec.spread.as_ref()).is_some_and(|s| s.sends_elements(i)));
        let part = part.is_some();
        let mut fwd = 0;
        let mut fixed_hi = None;
        for u in &spec.uses {
            if let Some(Extent::Relative { fwd: f, .. }) = u.relative {
                fwd = fwd.max(f);
            }
            if let Some(Extent::Absolute { hi, .. }) = u.absolute {
                fixed_hi = Some(fixed_hi.map_or(hi, |h: i64| h.max(hi)));
            }
        }
        let next = match spec.schedule {
            RuleSchedule::OnArrival => None,
            s => Some(first_eval(s, spec.registered_at_ms)),
        };
        let mut settings = Settings {
            lookback_ms,
            subquery_step_ms: DEFAULT_SUBQUERY_STEP_MS,
            start_ms: None,
            end_ms: None,
            step_ms: 0,
            at_newest: spec.schedule == RuleSchedule::OnArrival,
        };
        match spec.schedule {
            RuleSchedule::Interval { every_ms, .. } => settings.subquery_step_ms = every_ms,
            RuleSchedule::Range {
                start_ms,
                end_ms,
                step_ms,
            } => {
                settings.start_ms = Some(start_ms);
                settings.end_ms = Some(end_ms);
                settings.step_ms = step_ms;
            }
            _ => {}
        }
        let incremental = match spec.evaluation {
            Evaluation::Incremental => shape(&plan, lookback_ms).map(IncrementalRule::new),
            Evaluation::WholePlan => None,
        };
        RuleState {
            spec,
            plan,
            part,
            side,
            next,
            pending: BTreeSet::new(),
            last: None,
            fwd,
            fixed_hi,
            released: false,
            settings,
            incremental,
            answered_incrementally: false,
        }
    }

    /// The result at `t`: incrementally when the rule's shape allows and the
    /// incremental state can vouch for it, else the whole plan over the windows. A
    /// spread part whose elements cross unfinished (a join's side, a union's, a pick's
    /// or a gather's members, a pair's per-series side) is in no particular order and
    /// unfinished, as the reference holds it, its labels kept from one evaluation to the
    /// next
    /// ([`IncrementalRule::evaluate_unordered`]).
    fn evaluate(&mut self, store: &WindowStore, counters: &RuleCounters, t: i64) -> Evaluated {
        let side = self.side();
        if let Some(inc) = &mut self.incremental {
            let mut recomputed = 0;
            let result = match side {
                true => inc.evaluate_unordered(store, &self.settings, t, &mut recomputed),
                false => inc.evaluate(store, &self.settings, t, &mut recomputed),
            };
            counters.recomputed.fetch_add(recomputed, Ordering::Relaxed);
            if let Some(result) = result {
                counters.incremental.fetch_add(1, Ordering::Relaxed);
                self.answered_incrementally = true;
                return result;
            }
        }
        self.answered_incrementally = false;
        self.evaluate_whole_plan(store, counters, t)
    }

    /// Whether it is a spread part whose elements cross as the reference holds them
    /// (unfinished): a join's side, a union's, a pick's or a gather's members, a pair's
    /// per-series side.
    fn side(&self) -> bool {
        self.side
    }

    /// A spread part's groups after its evaluation at `t` over `store` holding native
    /// histograms (see [`members_plan`]): from the incremental state when it answered,
    /// else by the reference evaluator; `None` when the part needs none.
    fn members(&self, store: &WindowStore, t: i64) -> Option<EvalResult<Value>> {
        let plan = members_plan(&self.plan)?;
        let groups = self.incremental.as_ref().and_then(|inc| inc.groups());
        match groups.filter(|_| self.answered_incrementally) {
            // Only their labels are read.
            Some(groups) => Some(Ok(Value::Vector(
                groups.into_iter().map(|g| Element::new(g, 0.0)).collect(),
            ))),
            None => Some(self.settings.evaluator(store, t).instant(&plan, t)),
        }
    }

    /// The reference evaluator's result for the whole plan at `t` (a spread part whose
    /// elements cross unfinished: as the reference holds it), detached from the store
    /// when it
    /// may hold histograms.
    fn evaluate_whole_plan(
        &mut self,
        store: &WindowStore,
        counters: &RuleCounters,
        t: i64,
    ) -> Evaluated {
        counters.whole_plan.fetch_add(1, Ordering::Relaxed);
        let ev = self.settings.evaluator(store, t);
        let mut value = match self.side() {
            true => ev.eval(&self.plan, t),
            false => ev.instant(&self.plan, t),
        };
        let histograms = match &mut value {
            Ok(v) if store.has_histograms() => detach(&ev, v),
            _ => Vec::new(),
        };
        (value, histograms)
    }

    /// Whether its incremental state (if any) evaluates over windows holding native
    /// histograms ([`IncrementalRule::takes_histograms`]).
    fn takes_histograms(&self) -> bool {
        self.incremental
            .as_ref()
            .is_none_or(IncrementalRule::takes_histograms)
    }

    /// Drops the incremental state (the rule reads a window holding histograms) and,
    /// on arrival, schedules the times the samples already held leave its windows
    /// (which the incremental state would have known).
    fn decline_incremental(&mut self, store: &WindowStore) {
        if self.incremental.take().is_none() || self.spec.schedule != RuleSchedule::OnArrival {
            return;
        }
        let spec = self.spec.clone();
        for u in &spec.uses {
            let reach = Reach {
                relative: u.relative,
                absolute: u.absolute,
                latest_only: u.latest_only,
            };
            for (_, points) in store.series(&u.key) {
                for &(ts, _) in points {
                    self.trigger(ts, reach);
                }
            }
        }
    }

    /// The output at `t` as the rule's [`Delivery`] asks; `None` when it delivers
    /// changes and nothing changed.
    fn output(
        &mut self,
        store: &WindowStore,
        counters: &RuleCounters,
        t: i64,
    ) -> Option<RuleOutput> {
        let rule = self.spec.id;
        let output = move |(value, histograms): Evaluated, gone| RuleOutput {
            rule,
            eval_ms: t,
            value,
            gone,
            histograms,
            alerts: None,
        };
        let changes = self.spec.delivery == Delivery::Changes;
        let Some(inc) = self.incremental.as_mut().filter(|_| changes) else {
            return Some(output(self.evaluate(store, counters, t), None));
        };
        let mut recomputed = 0;
        let delta = inc.evaluate_changes(store, &self.settings, t, &mut recomputed);
        counters.recomputed.fetch_add(recomputed, Ordering::Relaxed);
        match delta {
            Some(Delta::Whole(value)) => {
                counters.incremental.fetch_add(1, Ordering::Relaxed);
                Some(output(value, None))
            }
            Some(Delta::Changes {
                set,
                gone,
                histograms,
            }) => {
                counters.incremental.fetch_add(1, Ordering::Relaxed);
                let changed = !set.is_empty() || !gone.is_empty();
                changed.then(|| output((Ok(Value::Vector(set)), histograms), Some(gone)))
            }
            None => Some(output(self.evaluate_whole_plan(store, counters, t), None)),
        }
    }

    /// The last timestamp an evaluation at `t` can read (never before `t`).
    fn ready_time(&self, t: i64) -> i64 {
        let mut r = t.max(t.saturating_add(self.fwd));
        if let Some(h) = self.fixed_hi {
            r = r.max(h);
        }
        r
    }

    /// Records the on-arrival evaluation times a new sample at `ts` causes.
    fn trigger(&mut self, ts: i64, reach: Reach) {
        if self.spec.schedule != RuleSchedule::OnArrival {
            return;
        }
        let floor = self.last.map_or(self.spec.registered_at_ms, |l| l + 1);
        let mut add = |t: i64| {
            if t >= floor {
                self.pending.insert(t);
            }
        };
        if let Some(Extent::Relative { back, fwd }) = reach.relative {
            // Enters what `t` reads at `ts - fwd`, leaves it at `ts + back + 1`. An
            // incremental rule knows when a sample leaving changes its result (its
            // agenda, see `schedule_wake`): only the arrival is scheduled here.
            add(ts.saturating_sub(fwd));
            if self.incremental.is_none() {
                add(ts.saturating_add(back).saturating_add(1));
            }
        }
        if reach.absolute.is_some() {
            add(ts);
        }
    }

    /// On arrival, after an evaluation at `t`: schedules the incremental state's next
    /// time event (a sample leaving or entering a window), so an evaluation happens
    /// only when an element can change.
    fn schedule_wake(&mut self, t: i64) {
        if self.spec.schedule != RuleSchedule::OnArrival {
            return;
        }
        if let Some(wake) = self.incremental.as_mut().and_then(|inc| inc.next_wake()) {
            if wake > t {
                self.pending.insert(wake);
            }
        }
    }

    /// The earliest time this rule may still be evaluated at, given input frontier
    /// `frontier` (`i64::MAX` when the input is closed).
    fn earliest_next(&self, frontier: i64) -> Option<i64> {
        match self.spec.schedule {
            RuleSchedule::OnArrival => {
                let future =
                    (frontier != i64::MAX).then(|| frontier.saturating_sub(self.fwd.max(0)));
                match (self.pending.first().copied(), future) {
                    (Some(p), Some(f)) => Some(p.min(f)),
                    (p, f) => p.or(f),
                }
            }
            _ => self.next,
        }
    }

    /// Evaluation times due now, in order; advances the schedule past them.
    fn due(&mut self, frontier: i64) -> Vec<i64> {
        let closed = frontier == i64::MAX;
        let mut out = Vec::new();
        match self.spec.schedule {
            RuleSchedule::OnArrival => {
                while let Some(&t) = self.pending.first() {
                    if !closed && self.ready_time(t) >= frontier {
                        break;
                    }
                    self.pending.pop_first();
                    let Some(inc) = self.incremental.as_mut() else {
                        out.push(t);
                        continue;
                    };
                    // A wake scheduled for a sample leaving a window, which a later
                    // arrival made stale, would change nothing: skipped (a spread
                    // part evaluates every time, its owner waits for each).
                    if self.part || inc.due_by(t) {
                        out.push(t);
                        // One at a time: the evaluation may schedule an earlier time.
                        break;
                    }
                }
            }
            RuleSchedule::At { .. } => {
                if let Some(t) = self.next {
                    if closed || self.ready_time(t) < frontier {
                        out.push(t);
                        self.next = None;
                    }
                }
            }
            RuleSchedule::Range {
                end_ms, step_ms, ..
            } => {
                while let Some(t) = self.next {
                    if t > end_ms || (!closed && self.ready_time(t) >= frontier) {
                        break;
                    }
                    out.push(t);
                    self.next = t.checked_add(step_ms).filter(|n| *n <= end_ms);
                }
                if self.next.is_some_and(|n| n > end_ms) {
                    self.next = None;
                }
            }
            RuleSchedule::Interval { every_ms, .. } => {
                // Infinite: nothing more is due once the input is closed.
                let Some(mut t) = self.next else {
                    return out;
                };
                if closed {
                    return out;
                }
                let ready = frontier - 1 - (self.ready_time(t) - t);
                if ready >= t {
                    let count = (ready - t) / every_ms + 1;
                    if count > MAX_CATCH_UP && !self.part {
                        t = t.saturating_add((count - MAX_CATCH_UP).saturating_mul(every_ms));
                    }
                }
                while self.ready_time(t) < frontier {
                    out.push(t);
                    match t.checked_add(every_ms) {
                        Some(n) => t = n,
                        None => {
                            self.next = None;
                            return out;
                        }
                    }
                }
                self.next = Some(t);
            }
        }
        out
    }

    fn finished(&self) -> bool {
        matches!(
            self.spec.schedule,
            RuleSchedule::At { .. } | RuleSchedule::Range { .. }
        ) && self.next.is_none()
    }
}

/// A rule hosted on this worker: an owned rule (one state, results to its channel, or
/// to its home process) or this worker's part of a spread rule (one state per local
/// plan, partials to the owner).
struct Hosted {
    states: Vec<RuleState>,
    /// For a spread rule's part: the owner worker.
    part_of: Option<u64>,
    /// For an owned rule of this process: where its results go (taken from
    /// [`LocalRules`]).
    output: Option<Sender<RuleOutput>>,
    /// For an owned rule of another process: the worker there that delivers its
    /// results ([`RuleSpec::delivered_by`]).
    deliver_by: Option<u64>,
    /// For an owned alerting rule ([`RuleSpec::alerting`]): its alert stage, stepped
    /// at each evaluation, its step sent with the result ([`RuleOutput::alerts`]).
    alert: Option<AlertStage>,
}

/// Everything one worker hosts.
struct Host {
    worker: usize,
    /// The workers of the dataflow (every process's).
    peers: usize,
    lookback_ms: i64,
    registry: Registry,
    /// Windows of the rules this worker owns.
    owned: WindowStore,
    /// Windows of spread rules: the series this worker keeps.
    spread: WindowStore,
    rules: BTreeMap<RuleId, Hosted>,
    counters: Arc<RuleCounters>,
    /// Series id → labels.
    catalog: Arc<SeriesCatalog>,
    /// This process's output channels, by rule.
    local: Arc<LocalRules>,
    /// Seed series received for rules not installed yet, by rule.
    seeds: HashMap<RuleId, Vec<SeedSeries>>,
}

impl Host {
    /// Applies one rule change: installs the rule's state here if this worker owns it
    /// or it is spread, drops it on removal.
    fn apply(&mut self, change: &RuleChange) {
        let applied = self.registry.apply(change);
        if let RuleChange::Remove(id) = change {
            if let Some(hosted) = self.rules.remove(id) {
                if hosted.part_of.is_none() {
                    self.counters.owned.fetch_sub(1, Ordering::Relaxed);
                }
                self.owned.remove_user(*id);
                self.spread.remove_user(*id);
            }
            return;
        }
        let Some((spec, owner)) = applied else { return };
        let (plans, part_of) = match &spec.spread {
            Some(s) => (s.local.clone(), Some(owner as u64)),
            None if owner == self.worker => (vec![spec.plan.clone()], None),
            None => return,
        };
        let (store, rules) = match part_of {
            Some(_) => (&mut self.spread, &mut self.rules),
            None => (&mut self.owned, &mut self.rules),
        };
        for u in &spec.uses {
            let reach = Reach {
                relative: u.relative,
                absolute: u.absolute,
                latest_only: u.latest_only,
            };
            store.add_user(&u.key, &u.selector, spec.id, reach);
        }
        // Sent here by the registering process (`crate::render::seed`): the series
        // this worker keeps.
        let seed = self.seeds.remove(&spec.id).unwrap_or_default();
        // The owner of an owned rule delivers its results in its home process, or
        // sends them there.
        // An owned alerting rule's stage (its spec's schedule is an interval).
        let alert = match part_of {
            Some(_) => None,
            None => spec
                .alerting
                .as_ref()
                .map(|a| AlertStage::new((**a).clone())),
        };
        let (output, deliver_by) = match part_of {
            Some(_) => (None, None),
            None => {
                self.counters.owned.fetch_add(1, Ordering::Relaxed);
                match spec.delivered_by(owner) {
                    w if w == self.worker => (self.local.take_output(spec.id), None),
                    w => (None, Some(w as u64)),
                }
            }
        };
        for (key, labels, points, histograms) in seed {
            store.seed(&key, labels, &points, &histograms);
            // Rules already reading the window did not see these arrive.
            for user in store.users(&key) {
                for state in rules.get_mut(&user).into_iter().flat_map(|h| &mut h.states) {
                    if let Some(inc) = state.incremental.as_mut() {
                        inc.rebuild();
                    }
                }
            }
        }
        let reads_histograms = spec.uses.iter().any(|u| store.holds_histograms(&u.key));
        let states = plans
            .into_iter()
            .enumerate()
            .map(|(i, plan)| {
                let part = part_of.map(|_| i);
                let mut state = RuleState::new(spec.clone(), plan, part, self.lookback_ms);
                if reads_histograms && !state.takes_histograms() {
                    state.incremental = None;
                }
                state
            })
            .collect();
        rules.insert(
            spec.id,
            Hosted {
                states,
                part_of,
                output,
                deliver_by,
                alert,
            },
        );
    }

    /// The window store a routed sample goes to (the spread rules' or the owned
    /// ones'), with the rules and the catalog, borrowed apart.
    fn parts(
        &mut self,
        spread: bool,
    ) -> (
        &mut WindowStore,
        &mut BTreeMap<RuleId, Hosted>,
        &SeriesCatalog,
    ) {
        let store = if spread {
            &mut self.spread
        } else {
            &mut self.owned
        };
        (store, &mut self.rules, &self.catalog)
    }

    /// Adds a routed sample to the windows reading it (its labels from the catalog, for
    /// a series the windows do not know yet).
    fn insert(&mut self, ((_, spread), point): (Destination, Point)) {
        let (store, rules, catalog) = self.parts(spread);
        let labels = || catalog.with(point.series_id, Arc::clone);
        store.insert(&point, labels, |rule, reach, key, labels, hash| {
            for state in rules.get_mut(&rule).into_iter().flat_map(|h| &mut h.states) {
                state.trigger(point.timestamp_ms, reach);
                if let Some(inc) = &mut state.incremental {
                    inc.arrived(key, labels, hash, point.timestamp_ms);
                }
            }
        });
    }

    /// Adds a routed native-histogram sample to the windows reading it; the rules
    /// reading them whose incremental state does not take histograms (a join) decline
    /// incremental evaluation from now on.
    fn insert_histogram(&mut self, ((_, spread), point): (Destination, HistogramPoint)) {
        let (store, rules, catalog) = self.parts(spread);
        let labels = || catalog.with(point.series_id, Arc::clone);
        let mut declined = Vec::new();
        store.insert_histogram(&point, labels, |rule, reach, key, labels, hash| {
            for state in rules.get_mut(&rule).into_iter().flat_map(|h| &mut h.states) {
                if !state.takes_histograms() {
                    declined.push(rule);
                }
                state.trigger(point.timestamp_ms, reach);
                if let Some(inc) = &mut state.incremental {
                    inc.arrived(key, labels, hash, point.timestamp_ms);
                }
            }
        });
        declined.dedup();
        for rule in declined {
            for state in rules.get_mut(&rule).into_iter().flat_map(|h| &mut h.states) {
                state.decline_incremental(store);
            }
        }
    }

    /// Makes every evaluation ready at input frontier `front`: owned rules' results go
    /// to their channels (or, for a rule of another process, into `out`), spread parts'
    /// partials into `out`, with their logical time.
    fn evaluate_ready(&mut self, front: i64, out: &mut Vec<(u64, HostRecord)>) {
        let mut done = Vec::new();
        for (id, hosted) in self.rules.iter_mut() {
            let (first, others) = hosted.states.split_first_mut().expect("a state per rule");
            loop {
                let due = first.due(front);
                if due.is_empty() {
                    break;
                }
                for other in others.iter_mut() {
                    other.next = first.next;
                }
                for t in due {
                    let Some(owner) = hosted.part_of else {
                        let mut output = first.output(&self.owned, &self.counters, t);
                        first.last = Some(t);
                        first.schedule_wake(t);
                        if let Some(stage) = &mut hosted.alert {
                            // Steps at every tick: an evaluation that changed nothing
                            // is an empty change.
                            let mut stepped = output.unwrap_or_else(|| RuleOutput {
                                rule: *id,
                                eval_ms: t,
                                value: Ok(Value::Vector(Vec::new())),
                                gone: Some(Vec::new()),
                                histograms: Vec::new(),
                                alerts: None,
                            });
                            stepped.alerts = Some(Box::new(stage.on_rule_output(&stepped)));
                            output = Some(stepped);
                        }
                        match (output, &hosted.output, hosted.deliver_by) {
                            (Some(output), Some(to), _) => {
                                let _ = to.send(output);
                            }
                            // To the home process, at the time the evaluation became
                            // ready, as a spread part's partials.
                            (Some(mut output), None, Some(by)) => {
                                let at = first.ready_time(t).max(0) as u64;
                                let record = match output.alerts.take() {
                                    Some(step) => HostRecord::Alerting(by, output, step),
                                    None => HostRecord::Output(by, output),
                                };
                                out.push((at, record));
                            }
                            _ => {}
                        }
                        continue;
                    };
                    let mut values = vec![first.evaluate(&self.spread, &self.counters, t)];
                    first.last = Some(t);
                    for other in others.iter_mut() {
                        values.push(other.evaluate(&self.spread, &self.counters, t));
                        other.last = Some(t);
                    }
                    let histograms = self.spread.has_histograms();
                    let members = std::iter::once(&*first)
                        .chain(others.iter())
                        .map(|s| histograms.then(|| s.members(&self.spread, t)).flatten())
                        .collect();
                    // Not before the held capability: `t` was not ready at the
                    // frontier it was downgraded to.
                    let at = first.ready_time(t).max(0) as u64;
                    let spread = first.spec.spread.as_ref().expect("a spread rule's part");
                    let records =
                        part_records(spread, (*id, owner, t), values, members, self.peers);
                    out.extend(records.into_iter().map(|record| (at, record)));
                }
            }
            if first.finished() && !first.released {
                first.released = true;
                done.push(*id);
            }
        }
        for id in done {
            // Keeps the rule (it stays registered) but releases its windows.
            self.owned.remove_user(id);
            self.spread.remove_user(id);
        }
    }

    /// Drops samples no rule can read any more, given input frontier `front`.
    fn retire(&mut self, front: i64) {
        let rules = &self.rules;
        let next = |rule| {
            rules
                .get(&rule)
                .and_then(|h| h.states.first())
                .and_then(|s| s.earliest_next(front))
        };
        self.owned.retire(next);
        self.spread.retire(next);
    }
}

/// Hosts the rules this worker owns and its part of every spread rule. `routed`
/// carries the router's packs of samples by `(worker, spread)`, `routed_histograms`
/// the same for native-histogram samples, `seeds` the seed series of rules being
/// installed ([`crate::render::seed`]), `control` the rule changes;
/// `retained[worker_index % workers per process]` is kept at the number of samples the
/// windows hold.
/// Returns the spread rules' partial records and the results of owned rules of other
/// processes, for [`crate::render::spread`]'s combine.
#[allow(clippy::too_many_arguments)]
pub fn maintain_rules<'scope>(
    routed: Stream<'scope, u64, Vec<Routed<PackedPoints>>>,
    routed_histograms: Stream<'scope, u64, Vec<Routed<Vec<HistogramPoint>>>>,
    announcements: Stream<'scope, u64, Vec<Announcement>>,
    seeds: Stream<'scope, u64, Vec<SeedRecord>>,
    catalog: Arc<SeriesCatalog>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    worker_index: usize,
    peers: usize,
    lookback_ms: i64,
    retained: Arc<Vec<AtomicU64>>,
    counters: Arc<RuleCounters>,
    local: Arc<LocalRules>,
) -> Stream<'scope, u64, Vec<HostRecord>> {
    // Three inputs (floats, histograms, rule changes): timely's `binary_frontier`
    // spelled out with one more input.
    let mut builder = OperatorBuilder::new("MaintainRules".to_owned(), routed.scope());
    let mut input = builder.new_input(
        routed,
        Exchange::new(|routed: &Routed<PackedPoints>| routed.to.0),
    );
    let mut histogram_input = builder.new_input(
        routed_histograms,
        Exchange::new(|routed: &Routed<Vec<HistogramPoint>>| routed.to.0),
    );
    let mut announced = builder.new_input(
        announcements,
        Exchange::new(|(worker, _, _): &Announcement| *worker),
    );
    let mut seeded = builder.new_input(seeds, Exchange::new(|(worker, _, _): &SeedRecord| *worker));
    let mut ctl = builder.new_input(control, Pipeline);
    let (output, stream) = builder.new_output::<Vec<HostRecord>>();
    let mut output = OutputBuilder::from(output);
    builder.build(move |mut capabilities| {
        let mut cap: Option<Capability<u64>> = capabilities.pop();
        let mut host = Host {
            worker: worker_index,
            peers,
            lookback_ms,
            registry: Registry::new(peers),
            owned: WindowStore::default(),
            spread: WindowStore::default(),
            rules: BTreeMap::new(),
            counters,
            catalog,
            local,
            seeds: HashMap::new(),
        };
        let mut samples: BTreeMap<u64, Vec<Routed<PackedPoints>>> = BTreeMap::new();
        let mut histograms: BTreeMap<u64, Vec<Routed<Vec<HistogramPoint>>>> = BTreeMap::new();
        let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
        let mut retired_at = i64::MIN;
        // Labels announced by routers of other processes, by announcement period: held
        // (so the catalog keeps them) through the period after theirs.
        let mut held: BTreeMap<u64, Vec<Arc<Labels>>> = BTreeMap::new();
        // The series-id dictionaries of the routers of other processes
        // ([`crate::render::route::code_for_peers`]).
        let mut dictionaries = ReceivedIds::default();
        move |frontiers| {
            let mut output = output.activate();
            // Before any sample: the frontier below covers this input too, so the
            // labels of every sample processed now have arrived.
            announced.for_each(|time, batch| {
                let period = time.least().map_or(0, |t| t / ANNOUNCE_PERIOD_MS);
                let held = held.entry(period).or_default();
                for (_, id, labels) in batch.drain(..) {
                    host.catalog.announce(id, &labels);
                    held.extend(host.catalog.get(id));
                }
            });
            // Before the changes installing their rules (the frontier covers this input).
            seeded.for_each(|_, batch| {
                for (_, rule, series) in batch.drain(..) {
                    host.seeds.entry(rule).or_default().push(series);
                }
            });
            input.for_each(hold_by_time(&mut samples));
            histogram_input.for_each(hold_by_time(&mut histograms));
            ctl.for_each(hold_by_time(&mut changes));
            let front_at = frontiers
                .iter()
                .filter_map(|f| f.frontier().iter().min().copied())
                .min()
                .unwrap_or(u64::MAX);
            let front = if front_at == u64::MAX {
                i64::MAX
            } else {
                front_at.min(i64::MAX as u64 - 1) as i64
            };
            // Everything before the frontier, in time order: a change at `c` after
            // the evaluations ready at `c` and before the samples of time `c`.
            let mut out = Vec::new();
            loop {
                let c = changes.keys().next().copied().filter(|c| *c < front_at);
                let s = [samples.keys().next(), histograms.keys().next()]
                    .into_iter()
                    .flatten()
                    .min()
                    .copied()
                    .filter(|s| *s < front_at);
                match (c, s) {
                    (None, None) => break,
                    (Some(c), s) if s.is_none_or(|s| c <= s) => {
                        host.evaluate_ready(c.min(i64::MAX as u64) as i64, &mut out);
                        for change in changes.remove(&c).unwrap_or_default() {
                            host.apply(&change);
                        }
                    }
                    (_, Some(s)) => {
                        // Every entry a pack of time `s` brings, before any of them is
                        // decoded: one may use an index another brings.
                        let mut packs = samples.remove(&s).unwrap_or_default();
                        for routed in &packs {
                            dictionaries.learn(&routed.samples);
                        }
                        for mut routed in packs.drain(..) {
                            dictionaries.decode(&mut routed.samples);
                            let to = routed.to;
                            routed.samples.unpack(|point| host.insert((to, point)));
                        }
                        for routed in histograms.remove(&s).unwrap_or_default() {
                            let to = routed.to;
                            routed
                                .samples
                                .unpack(|point| host.insert_histogram((to, point)));
                        }
                    }
                    (Some(_), None) => unreachable!("handled above"),
                }
            }
            host.evaluate_ready(front, &mut out);
            // No pack of a time before the frontier is to come.
            dictionaries.forget_before(id_epoch(front_at));
            if let Some(cap) = &cap {
                for (at, record) in out {
                    let at = at.max(*cap.time());
                    output.session(&cap.delayed(&at)).give(record);
                }
            }
            if front == i64::MAX || front >= retired_at.saturating_add(RETIRE_EVERY_MS) {
                retired_at = front;
                let period = front_at / ANNOUNCE_PERIOD_MS;
                held.retain(|p, _| p.saturating_add(1) >= period);
                host.retire(front);
                // This process's gauges, by the worker's index within it.
                if let Some(gauge) = retained.get(worker_index % retained.len().max(1)) {
                    let held = host.owned.len() + host.spread.len();
                    gauge.store(held as u64, Ordering::Relaxed);
                }
            }
            if front_at == u64::MAX {
                cap = None;
            } else if let Some(cap) = &mut cap {
                cap.downgrade(&front_at);
            }
        }
    });
    stream
}
