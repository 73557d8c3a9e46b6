//! The group runner: one thread per rule group that takes each rule's results (from
//! the maintained dataflow or from storage) at the group's evaluation times, steps
//! the [`GroupState`], writes outputs and sends alerts, until stopped. What results
//! come from where, and when, is described in [`crate::rules::manager`].

use crate::ingest::now_ms;
use crate::remote::read::WithRemote;
use crate::rules::alert::Alert;
use crate::rules::file::RuleGroup;
use crate::rules::group::{output_names, reads_rule_outputs, GroupState};
use crate::rules::metrics::GroupCounters;
use crate::rules::options::{EvaluationMode, ManagerOptions};
use crate::rules::restore::{self, KeepFiringFile};
use crate::rules::sinks::{
    output_result, AlertSink, Arrival, RemoteSlot, RuleEvaluator, RuleResult, SampleSink,
};
use crate::storage::Storage;
use dataflows::promql::eval::SeriesSource;
use dataflows::promql::plan::Plan;
use dataflows::{Delivery, Engine, RenderError, RuleId, RuleOutput, RuleSchedule};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the manager needs to evaluate through the dataflow and to restore state.
pub struct Maintained {
    /// The dataflow rules are registered in.
    pub engine: Arc<Engine>,
    /// Storage: seeds rule windows, and holds `ALERTS_FOR_STATE` for the restore.
    pub history: Arc<Storage>,
    /// Lookback delta (ms).
    pub lookback_ms: i64,
    /// Where firing `keep_firing_for` alerts are persisted.
    pub state_file: Option<PathBuf>,
    /// The other stores seeds are read from beside `history` (`remote_read`
    /// endpoints; a cluster's other processes seed from their own storage in the
    /// dataflow), once the service has set them.
    pub remote: RemoteSlot,
}

impl Maintained {
    /// Registers `plan` with windows seeded from storage and the `remote_read`
    /// endpoints (each asked for what an evaluation now reads; one that does not answer
    /// is left out); in a cluster every other process adds its own storage's series.
    fn register(
        &self,
        plan: Plan,
        schedule: RuleSchedule,
        to: Option<(crossbeam_channel::Sender<RuleOutput>, Delivery)>,
    ) -> Result<(RuleId, crossbeam_channel::Receiver<RuleOutput>), RenderError> {
        let fetched = self
            .remote
            .get()
            .map(|remote| remote.fetch_seeds(&plan, now_ms()))
            .filter(|f| !f.is_empty());
        let with_remote = fetched.as_ref().map(|fetched| WithRemote {
            local: &*self.history,
            fetched,
        });
        let history: &dyn SeriesSource = match &with_remote {
            Some(source) => source,
            None => &*self.history,
        };
        match to {
            Some((tx, delivery)) => self
                .engine
                .register_seeded_to(plan, schedule, history, tx, delivery)
                .map(|id| (id, crossbeam_channel::never())),
            None => self
                .engine
                .register_seeded(plan, schedule, history)
                .map(|handle| (handle.id, handle.output)),
        }
    }
}

/// What every group runner of one manager shares: where results come from and go to.
pub(crate) struct Context {
    pub(crate) evaluator: Arc<dyn RuleEvaluator>,
    pub(crate) sink: Arc<dyn SampleSink>,
    pub(crate) alerts: Arc<dyn AlertSink>,
    pub(crate) maintained: Option<Maintained>,
    pub(crate) keep_firing: Option<KeepFiringFile>,
    pub(crate) options: Mutex<ManagerOptions>,
    /// When the manager was created (ms): `ALERTS_FOR_STATE` from before is restored.
    pub(crate) created_ms: i64,
}

impl Context {
    fn send(&self, sends: Vec<(String, Vec<Alert>)>) {
        for (expr, alerts) in sends {
            self.alerts.send(&expr, alerts);
        }
    }
}

/// Prometheus's group offset: groups with the same interval do not all run at once.
fn group_offset_ms(group: &RuleGroup, interval_ms: i64) -> i64 {
    let key = format!("{}\u{ff}{}", group.file.display(), group.name);
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % interval_ms.max(1) as u64) as i64
}

/// The next evaluation time strictly after `now_ms` on the group's aligned grid.
pub fn next_eval_time(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let adj = now_ms - offset_ms;
    let base = adj - adj.rem_euclid(interval_ms);
    base + offset_ms + interval_ms
}

/// Where one rule's results come from.
enum Source {
    /// The evaluator over storage, at the group's ticks.
    Storage,
    /// The dataflow; `held` is an evaluation read ahead of the tick being served.
    Dataflow {
        id: dataflows::RuleId,
        output: crossbeam_channel::Receiver<RuleOutput>,
        held: Option<RuleOutput>,
    },
}

/// On-arrival mode: the one channel the group's maintained rules send their
/// evaluations to (one wait per wake-up, not a wait over a channel per rule), and each
/// rule's index in the group.
struct Arrivals {
    output: crossbeam_channel::Receiver<RuleOutput>,
    index: HashMap<dataflows::RuleId, usize>,
}

/// On-arrival mode: a group tick's rewrite of every series of the group's maintained
/// rules, due at `t_eval` once the dataflow has emitted everything up to it.
struct Refresh {
    t_eval: i64,
    /// Per rule of the group: rewritten already (an output after `t_eval` came first).
    done: Vec<bool>,
}

/// How often (ms) an on-arrival group waiting to rewrite its series at a tick looks
/// whether the frontier has passed it.
const REFRESH_POLL_MS: u64 = 10;

/// The most group ticks whose rewrite waits for the frontier (bounds the queue if the
/// dataflow stops advancing).
const MAX_REFRESHES_DUE: usize = 64;

/// Runs one group until stopped: the thread body.
pub(crate) struct GroupRunner {
    context: Arc<Context>,
    state: Arc<Mutex<GroupState>>,
    stop: Arc<AtomicBool>,
    /// Never sent on: disconnected when the group is stopped (its sender dropped), which
    /// ends every wait of the thread at once, so the waits need no polling timeout.
    stopped: crossbeam_channel::Receiver<()>,
    sources: Vec<Source>,
    /// For each rule over storage, the earlier rules of the group whose outputs it reads.
    reads_earlier: Vec<Vec<usize>>,
    /// On-arrival mode: the channel every maintained rule of the group sends to.
    arrivals: Option<Arrivals>,
    /// On-arrival mode: group ticks whose rewrite of every series of the maintained
    /// rules is still due, oldest first (see [`GroupRunner::on_arrival_step`]).
    refreshes: std::collections::VecDeque<Refresh>,
    mode: EvaluationMode,
    interval_ms: i64,
    offset_ms: i64,
    /// The group's `prometheus_rule_*` counters (iterations are counted here).
    counters: Arc<GroupCounters>,
}

impl GroupRunner {
    pub(crate) fn new(
        context: Arc<Context>,
        state: Arc<Mutex<GroupState>>,
        stop: Arc<AtomicBool>,
        stopped: crossbeam_channel::Receiver<()>,
        outputs: &HashSet<String>,
    ) -> GroupRunner {
        let policy = context.options.lock().evaluation.clone();
        let mut s = state.lock();
        let mode = policy.mode_for(&s.group.name);
        let interval_ms = s.interval.as_millis().max(1) as i64;
        let offset_ms = group_offset_ms(&s.group, interval_ms);
        let query_offset_ms = s.group.query_offset.as_millis() as i64;
        let mut sources = Vec::with_capacity(s.rules.len());
        let shared = (mode == EvaluationMode::OnArrival).then(crossbeam_channel::unbounded);
        for rs in &mut s.rules {
            let source = match &context.maintained {
                Some(m) if !reads_rule_outputs(&rs.rule.plan, outputs, m.lookback_ms) => {
                    let schedule = match mode {
                        EvaluationMode::Interval => RuleSchedule::Interval {
                            start_ms: offset_ms - query_offset_ms,
                            every_ms: interval_ms,
                        },
                        EvaluationMode::OnArrival => RuleSchedule::OnArrival,
                    };
                    let plan = (*rs.rule.plan).clone();
                    let registered = match &shared {
                        Some((tx, rx)) => m
                            .register(plan, schedule, Some((tx.clone(), Delivery::Changes)))
                            .map(|(id, _)| (id, rx.clone())),
                        None => m.register(plan, schedule, None),
                    };
                    match registered {
                        Ok((id, output)) => Source::Dataflow {
                            id,
                            output,
                            held: None,
                        },
                        Err(e) => {
                            tracing::info!(rule = %rs.rule.name, reason = %e, "rule evaluated over storage");
                            Source::Storage
                        }
                    }
                }
                Some(_) => {
                    tracing::info!(rule = %rs.rule.name, reason = "reads a rule's output", "rule evaluated over storage");
                    Source::Storage
                }
                None => Source::Storage,
            };
            rs.maintained = matches!(source, Source::Dataflow { .. });
            sources.push(source);
        }
        let index: HashMap<_, _> = sources
            .iter()
            .enumerate()
            .filter_map(|(i, source)| match source {
                Source::Dataflow { id, .. } => Some((*id, i)),
                Source::Storage => None,
            })
            .collect();
        // No maintained rule: nothing sends, and a wait on the channel would end at once.
        let arrivals = shared
            .filter(|_| !index.is_empty())
            .map(|(_, output)| Arrivals { output, index });
        let lookback_ms = context.maintained.as_ref().map_or(0, |m| m.lookback_ms);
        let reads_earlier = (0..s.rules.len())
            .map(|j| {
                if !matches!(sources[j], Source::Storage) {
                    return Vec::new();
                }
                (0..j)
                    .filter(|&i| {
                        let names = output_names(&s.rules[i].rule).into_iter().collect();
                        reads_rule_outputs(&s.rules[j].rule.plan, &names, lookback_ms)
                    })
                    .collect()
            })
            .collect();
        let counters = s.counters.clone();
        drop(s);
        GroupRunner {
            counters,
            context,
            state,
            stop,
            stopped,
            sources,
            reads_earlier,
            arrivals,
            refreshes: std::collections::VecDeque::new(),
            mode,
            interval_ms,
            offset_ms,
        }
    }

    pub(crate) fn run(mut self, startup: bool) {
        let rules = self.sources.len();
        // Per rule: its alerts' `for` state is restored at its first evaluation after
        // startup (`restore`).
        let mut restore_pending: Vec<bool> = vec![startup; rules];
        let mut next_tick =
            next_eval_time(crate::ingest::now_ms(), self.interval_ms, self.offset_ms);
        while !self.stop.load(Ordering::SeqCst) {
            match self.mode {
                EvaluationMode::Interval => {
                    if !self.sleep_until(next_tick) {
                        break;
                    }
                    next_tick = self.iteration(next_tick, &mut restore_pending);
                }
                EvaluationMode::OnArrival => {
                    let mut refresh = None;
                    if crate::ingest::now_ms() >= next_tick {
                        refresh = Some(next_tick);
                        next_tick = self.iteration(next_tick, &mut restore_pending);
                    }
                    self.on_arrival_step(next_tick, refresh, &mut restore_pending);
                }
            }
        }
        if let Some(m) = &self.context.maintained {
            for source in &self.sources {
                if let Source::Dataflow { id, .. } = source {
                    m.engine.unregister(*id);
                }
            }
        }
    }

    /// The group tick at `t` (see [`GroupRunner::tick`]), counted as an iteration with
    /// the ticks skipped after it as missed ones; the next tick's time.
    fn iteration(&mut self, t: i64, restore_pending: &mut [bool]) -> i64 {
        let began_ms = crate::ingest::now_ms();
        let started = Instant::now();
        self.tick(t, restore_pending);
        let took = started.elapsed();
        let next = next_eval_time(
            crate::ingest::now_ms().max(t),
            self.interval_ms,
            self.offset_ms,
        );
        let missed = ((next - t) / self.interval_ms - 1).max(0) as u64;
        self.counters.iteration(began_ms, took, missed);
        next
    }

    /// Sleeps until wall time `t_ms`; false if stopped meanwhile.
    fn sleep_until(&self, t_ms: i64) -> bool {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            let left = t_ms - crate::ingest::now_ms();
            if left <= 0 {
                return true;
            }
            self.wait_stopped(Duration::from_millis(left as u64));
        }
    }

    /// Waits `timeout` unless the group is stopped meanwhile (then sets the stop flag,
    /// also when the manager's handle went away without setting it).
    fn wait_stopped(&self, timeout: Duration) {
        if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
            self.stopped.recv_timeout(timeout)
        {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    /// A group tick at `t`. Interval mode: every rule, in order (dataflow results for
    /// maintained rules). On-arrival mode: the rules evaluated over storage.
    fn tick(&mut self, t: i64, restore_pending: &mut [bool]) {
        let options = self.context.options.lock().clone();
        let evaluator = self.context.evaluator.clone();
        let mode = self.mode;
        // The dataflow's results are waited for before the group's state is locked,
        // all within one interval: the API reads that state (rules, alerts), and a
        // reader must never wait on the dataflow.
        let mut from_dataflow = Vec::new();
        if mode == EvaluationMode::Interval {
            let query_offset = self.state.lock().group.query_offset;
            let t_eval = t - query_offset.as_millis() as i64;
            let deadline = Instant::now() + Duration::from_millis(self.interval_ms as u64);
            from_dataflow = self
                .sources
                .iter_mut()
                .map(|source| match source {
                    Source::Storage => None,
                    Source::Dataflow { output, held, .. } => {
                        dataflow_result_at(output, held, t_eval, deadline)
                    }
                })
                .collect();
        }
        let sources = &mut self.sources;
        let mut state = self.state.lock();
        if self.stop.load(Ordering::SeqCst) {
            return; // replaced by a reload meanwhile: its state moved on
        }
        let sends = match mode {
            EvaluationMode::Interval => {
                let mut index = 0;
                let sends = state.evaluate_with(
                    t,
                    &mut |rule, t_eval| {
                        let result = from_dataflow.get_mut(index).and_then(Option::take);
                        index += 1;
                        result.unwrap_or_else(|| {
                            if matches!(sources[index - 1], Source::Dataflow { .. }) {
                                tracing::warn!(rule = %rule.name, t_ms = t_eval, "no dataflow result for the tick in time; evaluated over storage");
                            }
                            evaluator.evaluate(&rule.plan, t_eval)
                        })
                    },
                    &evaluator,
                    &*self.context.sink,
                    &options,
                );
                let t_eval = t - state.group.query_offset.as_millis() as i64;
                for (index, pending) in restore_pending.iter_mut().enumerate() {
                    if std::mem::take(pending) {
                        Self::restore(&self.context, &mut state, index, t_eval, &options);
                    }
                }
                sends
            }
            EvaluationMode::OnArrival => {
                let t_eval = t - state.group.query_offset.as_millis() as i64;
                let sends = Self::step_storage_rules(
                    &self.context,
                    sources,
                    &mut state,
                    restore_pending,
                    &options,
                    |_| Some(t_eval),
                );
                state.last_eval_ms = t;
                sends
            }
        };
        self.persist(&state);
        drop(state);
        self.context.send(sends);
    }

    /// On-arrival mode: evaluates the group's rules that run over storage, in rule
    /// order, each at `time_of(index)` if that is later than its last evaluation; the
    /// alerts to send.
    fn step_storage_rules(
        context: &Context,
        sources: &[Source],
        state: &mut GroupState,
        restore_pending: &mut [bool],
        options: &ManagerOptions,
        mut time_of: impl FnMut(usize) -> Option<i64>,
    ) -> Vec<(String, Vec<Alert>)> {
        let evaluator = context.evaluator.clone();
        let mut sends = Vec::new();
        for index in 0..state.rules.len() {
            if !matches!(sources[index], Source::Storage) {
                continue;
            }
            let Some(t_eval) = time_of(index) else {
                continue;
            };
            let rs = &state.rules[index];
            if rs.evaluated && rs.last_eval_ms >= t_eval {
                continue;
            }
            let result = evaluator.evaluate(&rs.rule.plan, t_eval);
            sends.extend(state.apply_result(
                index,
                t_eval,
                result,
                &evaluator,
                &*context.sink,
                options,
            ));
            if std::mem::take(&mut restore_pending[index]) {
                Self::restore(context, state, index, t_eval, options);
            }
        }
        sends
    }

    /// On-arrival mode: waits (until `until_ms` at the latest) for a dataflow result or
    /// an alert deadline, and steps the rules concerned. A rule over storage that
    /// reads outputs of earlier rules of the group is stepped right after they wrote
    /// new outputs, at the latest of their times, so an alert on a recording rule
    /// also changes state on arrival, not at the next tick. At a group tick
    /// (`refresh`, no wait) every maintained rule is stepped at the tick's time with
    /// its last result: the dataflow sends only changes, so this is what writes each
    /// output series at least once per interval (else an unchanged series would go
    /// stale) and re-sends firing alerts. The step is taken in time order with the
    /// rule's outputs: once the frontier has passed the tick, or just before the
    /// rule's first output after it, whichever comes first — a runner that woke late
    /// (a loaded machine) or a frontier held back must not skip it.
    fn on_arrival_step(
        &mut self,
        until_ms: i64,
        refresh: Option<i64>,
        restore_pending: &mut [bool],
    ) {
        let options = self.context.options.lock().clone();
        let evaluator = self.context.evaluator.clone();
        let deadline = self.state.lock().next_deadline_after_last();
        let now = crate::ingest::now_ms();
        let wake_at = deadline.map_or(until_ms, |d| d.min(until_ms));
        // At least a few ms: a deadline waiting for the frontier must not spin. No
        // upper bound: outputs and a stop end the wait.
        let mut timeout = Duration::from_millis((wake_at - now).max(5) as u64);
        if !self.refreshes.is_empty() {
            // A tick's rewrite waits for the frontier, which sends no wake-up.
            timeout = timeout.min(Duration::from_millis(REFRESH_POLL_MS));
        }
        match &self.arrivals {
            _ if refresh.is_some() => {}
            None => self.wait_stopped(timeout),
            Some(arrivals) => {
                // Woken by an output, a stop, or the timeout; either way the channel is
                // drained.
                let mut select = crossbeam_channel::Select::new();
                select.recv(&arrivals.output);
                select.recv(&self.stopped);
                let _ = select.ready_timeout(timeout);
                if let Err(crossbeam_channel::TryRecvError::Disconnected) = self.stopped.try_recv()
                {
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
        }
        // Read before the channel is drained: every evaluation before it is in the
        // channel by then, so a timer step or refresh before it comes after them.
        let frontier = self
            .context
            .maintained
            .as_ref()
            .map_or(i64::MAX, |m| m.engine.frontier_ms());
        let mut sends = Vec::new();
        {
            let mut state = self.state.lock();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if let Some(tick) = refresh {
                if self.refreshes.len() >= MAX_REFRESHES_DUE {
                    // A frontier stuck this long: the oldest rewrite is given up.
                    self.refreshes.pop_front();
                }
                self.refreshes.push_back(Refresh {
                    t_eval: tick - state.group.query_offset.as_millis() as i64,
                    done: vec![false; state.rules.len()],
                });
            }
            // Drain the channel (also after a timeout: an output may have come since),
            // before any timer step, so no output older than a deadline is left behind;
            // applied in rule order, each rule's in time order.
            let mut output_at: Vec<Option<i64>> = vec![None; self.sources.len()];
            let mut arrived = Vec::new();
            if let Some(arrivals) = &self.arrivals {
                while let Ok(out) = arrivals.output.try_recv() {
                    if let Some(&index) = arrivals.index.get(&out.rule) {
                        arrived.push((index, out));
                    }
                }
            }
            arrived.sort_by_key(|(index, _)| *index);
            for (index, out) in arrived {
                let t = out.eval_ms;
                // Ticks before this output: the dataflow emitted everything of the
                // rule up to them (its outputs come in time order).
                for refresh in self.refreshes.iter_mut() {
                    if refresh.t_eval < t && !refresh.done[index] {
                        refresh.done[index] = true;
                        sends.extend(Self::rewrite(
                            &mut state,
                            index,
                            refresh.t_eval,
                            &evaluator,
                            &*self.context.sink,
                            &options,
                        ));
                    }
                }
                let behind = state.rules[index].evaluated && t < state.rules[index].last_eval_ms;
                let stepped = match Arrival::of(out) {
                    // Behind a timer step or refresh already taken: kept for the next.
                    Arrival::Whole(Ok(result)) if behind => {
                        state.absorb(index, result, None);
                        continue;
                    }
                    Arrival::Changes { set, gone } if behind => {
                        state.absorb(index, set, Some(gone));
                        continue;
                    }
                    Arrival::Whole(_) if behind => continue,
                    Arrival::Whole(result) => state.apply_result(
                        index,
                        t,
                        result,
                        &evaluator,
                        &*self.context.sink,
                        &options,
                    ),
                    Arrival::Changes { set, gone } => state.apply_changes(
                        index,
                        t,
                        set,
                        gone,
                        &evaluator,
                        &*self.context.sink,
                        &options,
                    ),
                };
                sends.extend(stepped);
                if std::mem::take(&mut restore_pending[index]) {
                    Self::restore(&self.context, &mut state, index, t, &options);
                }
                output_at[index] = output_at[index].max(Some(t));
            }
            // Rules over storage that read outputs written just now, at their time.
            let reads_earlier = &self.reads_earlier;
            sends.extend(Self::step_storage_rules(
                &self.context,
                &self.sources,
                &mut state,
                restore_pending,
                &options,
                |index| {
                    let t = reads_earlier[index]
                        .iter()
                        .filter_map(|&i| output_at[i])
                        .max()?;
                    output_at[index] = Some(t);
                    Some(t)
                },
            ));
            // Timers: step alerting rules whose deadline has passed, once the
            // dataflow has emitted everything before it.
            let now = crate::ingest::now_ms();
            for index in 0..state.rules.len() {
                let rs = &state.rules[index];
                if !rs.maintained || !rs.evaluated {
                    continue;
                }
                let Some(d) = rs.timer_deadline() else {
                    continue;
                };
                if d > now || d >= frontier {
                    continue;
                }
                let last = rs.current_result();
                sends.extend(state.apply_result(
                    index,
                    d,
                    Ok(last),
                    &evaluator,
                    &*self.context.sink,
                    &options,
                ));
            }
            while let Some(refresh) = self.refreshes.front() {
                if frontier <= refresh.t_eval {
                    break;
                }
                for index in 0..state.rules.len() {
                    if !refresh.done[index] {
                        sends.extend(Self::rewrite(
                            &mut state,
                            index,
                            refresh.t_eval,
                            &evaluator,
                            &*self.context.sink,
                            &options,
                        ));
                    }
                }
                self.refreshes.pop_front();
            }
            if !sends.is_empty() {
                self.persist(&state);
            }
        }
        self.context.send(sends);
    }

    /// A tick's rewrite of maintained rule `index`: stepped at `t_eval` with its last
    /// result, unless it was stepped at or after `t_eval` already (or never yet).
    fn rewrite(
        state: &mut GroupState,
        index: usize,
        t_eval: i64,
        evaluator: &Arc<dyn RuleEvaluator>,
        sink: &dyn SampleSink,
        options: &ManagerOptions,
    ) -> Option<(String, Vec<Alert>)> {
        let rs = &state.rules[index];
        if !rs.maintained || !rs.evaluated || t_eval <= rs.last_eval_ms {
            return None;
        }
        let last = rs.current_result();
        state.apply_result(index, t_eval, Ok(last), evaluator, sink, options)
    }

    /// Prometheus's `for` restore, once, at the first evaluation after startup.
    fn restore(
        context: &Context,
        state: &mut GroupState,
        index: usize,
        t_eval: i64,
        options: &ManagerOptions,
    ) {
        if let Some(m) = &context.maintained {
            let history: &dyn SeriesSource = &*m.history;
            restore::restore_for_state(state, index, t_eval, context.created_ms, history, options);
        }
    }

    fn persist(&self, state: &GroupState) {
        if let Some(file) = &self.context.keep_firing {
            file.update(state);
        }
    }
}

/// The dataflow's result for exactly `t`, waiting until `deadline` for it; `None` when it
/// did not come (the dataflow skipped `t` or is behind), so the caller falls back to
/// storage.
fn dataflow_result_at(
    output: &crossbeam_channel::Receiver<RuleOutput>,
    held: &mut Option<RuleOutput>,
    t: i64,
    deadline: Instant,
) -> Option<RuleResult> {
    loop {
        let out = match held.take() {
            Some(out) => out,
            None => output
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?,
        };
        match out.eval_ms.cmp(&t) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => return Some(output_result(out)),
            std::cmp::Ordering::Greater => {
                *held = Some(out);
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_times_are_aligned_to_the_interval_and_offset() {
        assert_eq!(next_eval_time(0, 60_000, 0), 60_000);
        assert_eq!(next_eval_time(59_999, 60_000, 0), 60_000);
        assert_eq!(next_eval_time(60_000, 60_000, 0), 120_000);
        assert_eq!(next_eval_time(61_000, 60_000, 5_000), 65_000);
        assert_eq!(next_eval_time(65_000, 60_000, 5_000), 125_000);
    }
}
