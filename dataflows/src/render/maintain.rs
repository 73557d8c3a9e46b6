//! Maintained evaluation: each registered expression evaluated at its evaluation times
//! over the retained windows, as soon as the frontier passes what it reads.
//!
//! PromQL: any expression the reference evaluator supports, e.g.
//! ```promql
//! sum by (job) (rate(http_requests_total[5m]))        # evaluated at each t of its schedule
//! ```
//! One operator per worker hosts every rule that worker owns (see [`crate::render`]
//! for the ownership rule). Per activation it (1) installs and drops rules as the
//! registry changes, (2) adds routed samples to the shared [`WindowStore`] and, for
//! on-arrival rules, records the evaluation times they trigger, (3) evaluates every
//! rule whose next evaluation time `t` is *ready* — every sample it can read at `t`
//! is older than the input frontier — sending `(t, result)` to the rule's channel, and
//! (4) retires samples no rule can read any more.
//!
//! An evaluation is incremental ([`IncrementalRule`]: only the series and groups whose
//! inputs changed are recomputed) when the plan has an incremental shape and the rule
//! did not ask for [`Evaluation::WholePlan`]; otherwise, or when the incremental state
//! cannot vouch for the result, the reference evaluator runs the whole plan over the
//! store. The windows (appended as samples arrive, retired as the frontier passes,
//! shared by every rule reading the same selector on this worker) and the schedule are
//! maintained either way.

use crate::promql::eval::{EvalResult, Value};
use crate::render::extent::Extent;
use crate::render::incremental::{IncrementalRule, Settings};
use crate::render::rule::{
    first_eval, Evaluation, RuleCounters, RuleId, RuleOutput, RuleSchedule, RuleSpec,
    SharedRegistry, DEFAULT_SUBQUERY_STEP_MS,
};
use crate::render::shape::shape;
use crate::render::window::{Reach, WindowStore};
use crate::sample::Sample;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;
use timely::scheduling::Activator;

/// At most this many evaluations of one interval rule per activation; older ones are
/// skipped (like Prometheus's missed iterations when a group falls behind).
const MAX_CATCH_UP: i64 = 10_000;

/// Retire at most once per this much frontier progress (ms).
const RETIRE_EVERY_MS: i64 = 1_000;

struct RuleState {
    spec: Arc<RuleSpec>,
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
}

impl RuleState {
    fn new(spec: Arc<RuleSpec>, lookback_ms: i64) -> RuleState {
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
            Evaluation::Incremental => shape(&spec.plan, lookback_ms).map(IncrementalRule::new),
            Evaluation::WholePlan => None,
        };
        RuleState {
            spec,
            next,
            pending: BTreeSet::new(),
            last: None,
            fwd,
            fixed_hi,
            released: false,
            settings,
            incremental,
        }
    }

    /// The result at `t`: incrementally when the rule's shape allows and the
    /// incremental state can vouch for it, else the whole plan over the windows.
    fn evaluate(
        &mut self,
        store: &WindowStore,
        counters: &RuleCounters,
        t: i64,
    ) -> EvalResult<Value> {
        if let Some(inc) = &mut self.incremental {
            let mut recomputed = 0;
            let result = inc.evaluate(store, &self.settings, t, &mut recomputed);
            counters.recomputed.fetch_add(recomputed, Ordering::Relaxed);
            if let Some(result) = result {
                counters.incremental.fetch_add(1, Ordering::Relaxed);
                return result;
            }
        }
        counters.whole_plan.fetch_add(1, Ordering::Relaxed);
        self.settings
            .evaluator(store, t)
            .instant(&self.spec.plan, t)
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
                    out.push(t);
                    // One at a time: the evaluation may schedule an earlier time.
                    if self.incremental.is_some() {
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
                    if count > MAX_CATCH_UP {
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

/// Hosts the rules this worker owns. `routed` carries `(owner, sample)` from the
/// router; `retained[worker_index]` is kept at the number of samples the windows
/// hold. Returns the operator's activator, to poke it when the registry changes.
pub fn maintain_rules<'scope>(
    routed: Stream<'scope, u64, Vec<(u64, Sample)>>,
    registry: SharedRegistry,
    worker_index: usize,
    lookback_ms: i64,
    retained: Arc<Vec<AtomicU64>>,
    counters: Arc<RuleCounters>,
) -> Option<Activator> {
    let scope = routed.scope();
    let slot: Rc<RefCell<Option<Activator>>> = Rc::new(RefCell::new(None));
    let slot_in = slot.clone();
    let _ = routed.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Exchange::new(|(owner, _): &(u64, Sample)| *owner),
        "MaintainRules",
        move |cap, info| {
            drop(cap);
            *slot_in.borrow_mut() = Some(scope.activator_for(info.address.clone()));
            let mut store = WindowStore::default();
            let mut rules: BTreeMap<RuleId, RuleState> = BTreeMap::new();
            let mut seen_version = 0u64;
            let mut retired_at = i64::MIN;
            move |(input, frontier), _output| {
                // (1) Install and drop rules.
                let changed = {
                    let reg = registry.lock();
                    (reg.version() != seen_version).then(|| {
                        seen_version = reg.version();
                        reg.owned_by(worker_index)
                    })
                };
                if let Some(owned) = changed {
                    let ids: BTreeSet<RuleId> = owned.iter().map(|r| r.id).collect();
                    let gone: Vec<RuleId> = rules
                        .keys()
                        .filter(|id| !ids.contains(id))
                        .copied()
                        .collect();
                    for id in gone {
                        rules.remove(&id);
                        store.remove_user(id);
                    }
                    for spec in owned {
                        if rules.contains_key(&spec.id) {
                            continue;
                        }
                        for u in &spec.uses {
                            let reach = Reach {
                                relative: u.relative,
                                absolute: u.absolute,
                                latest_only: u.latest_only,
                            };
                            store.add_user(&u.key, &u.selector, spec.id, reach);
                        }
                        for (key, labels, points) in std::mem::take(&mut *spec.seed.lock()) {
                            store.seed(&key, labels, &points);
                            // Rules already reading the window did not see these arrive.
                            for user in store.users(&key) {
                                if let Some(inc) =
                                    rules.get_mut(&user).and_then(|r| r.incremental.as_mut())
                                {
                                    inc.rebuild();
                                }
                            }
                        }
                        rules.insert(spec.id, RuleState::new(spec, lookback_ms));
                    }
                }
                // (2) New samples.
                input.for_each(|_time, batch| {
                    for (_, sample) in batch.drain(..) {
                        store.insert(&sample, |rule, reach, key, hash| {
                            if let Some(state) = rules.get_mut(&rule) {
                                state.trigger(sample.timestamp_ms, reach);
                                if let Some(inc) = &mut state.incremental {
                                    inc.arrived(key, &sample.labels, hash, sample.timestamp_ms);
                                }
                            }
                        });
                    }
                });
                // (3) Evaluate what is ready.
                let front = frontier
                    .frontier()
                    .iter()
                    .min()
                    .map_or(i64::MAX, |f| (*f).min(i64::MAX as u64 - 1) as i64);
                let mut done = Vec::new();
                for (id, state) in rules.iter_mut() {
                    loop {
                        let due = state.due(front);
                        if due.is_empty() {
                            break;
                        }
                        for t in due {
                            let value = state.evaluate(&store, &counters, t);
                            state.last = Some(t);
                            state.schedule_wake(t);
                            let _ = state.spec.output.send(RuleOutput {
                                rule: *id,
                                eval_ms: t,
                                value,
                            });
                        }
                    }
                    if state.finished() && !state.released {
                        state.released = true;
                        done.push(*id);
                    }
                }
                for id in done {
                    // Keeps the rule (it stays registered) but releases its windows.
                    store.remove_user(id);
                }
                // (4) Retire.
                if front == i64::MAX || front >= retired_at.saturating_add(RETIRE_EVERY_MS) {
                    retired_at = front;
                    store.retire(|rule| rules.get(&rule).and_then(|s| s.earliest_next(front)));
                    if let Some(gauge) = retained.get(worker_index) {
                        gauge.store(store.len() as u64, Ordering::Relaxed);
                    }
                }
            }
        },
    );
    let activator = slot.borrow_mut().take();
    activator
}
