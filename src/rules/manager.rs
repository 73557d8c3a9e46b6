//! The rule manager: evaluates rule groups, like Prometheus, through the maintained
//! dataflow.
//!
//! Owns: one runner thread per group that evaluates its rules in order; recording
//! rule outputs and `ALERTS`/`ALERTS_FOR_STATE` are written back through a
//! [`SampleSink`] (the ingester: storage and the dataflow's latest-sample table, for
//! queries, federation and the push stream), with stale markers for series that
//! left a rule's output; alerting rules drive [`AlertRuleState`], which emits a
//! change record (pending/firing/resolved) when an alert's state changes; alerts due
//! for sending go to an [`AlertSink`] (the notifier). Reload ([`RuleManager::apply`])
//! replaces groups and keeps the alert state of rules that did not change.
//!
//! **Where results come from.** With a [`Maintained`] runtime each rule is registered
//! in the dataflow with [`Engine::register_seeded`] (windows seeded from storage, so
//! the first result is exact) and its results are read from the rule's output channel:
//! - *interval* mode ([`EvaluationMode::Interval`], the default): the schedule is
//!   `RuleSchedule::Interval` on Prometheus's grid for the group (interval, per-group
//!   offset, minus `query_offset`); at each tick the runner takes the dataflow's result
//!   for exactly that time, so results, `ALERTS` samples and state transitions are
//!   those of Prometheus at each tick. `for` fires at the first tick `>= activeAt + for`.
//! - *on-arrival* mode (`--rules.evaluation=on-arrival`, or a group whose name matches
//!   `--rules.on-arrival-groups`): the schedule is
//!   `RuleSchedule::OnArrival`: each result (a batch the rule reads arrived, or a
//!   sample left a window) steps the rule at its own time. The `for` and
//!   `keep_firing_for` clocks are exact: the runner steps the rule again at the alert's
//!   deadline (a timer), once the dataflow's frontier has passed it, with the last
//!   result; so an alert fires at `activeAt + for`, not at the next sample. Firing
//!   alerts are re-sent (every resend delay) as their rule is evaluated, at the rule's
//!   own evaluation times, which keeps the notifier's times monotonic per rule.
//!
//! **Rules that read rule outputs** (a recording rule's name, `ALERTS`,
//! `ALERTS_FOR_STATE`, in any group): rule outputs are written back *after* the
//! evaluation that produced them, i.e. behind the dataflow's frontier, so they do not
//! enter the dataflow's rule windows (only its latest-sample table). Such a rule is
//! evaluated over storage by the [`RuleEvaluator`] ([`HeadEvaluator`]) at the group's
//! ticks, in rule order, after the earlier rules of the group wrote their outputs —
//! exactly Prometheus's semantics for recording rules feeding later rules of the same
//! group at the same evaluation time; in on-arrival mode also right after the group's
//! dataflow rules wrote new outputs (at their time), so an alert on a recording rule
//! of its group reacts on arrival too. (So does any rule the dataflow refuses to
//! register.) A selector with no `__name__` equality is assumed to possibly read rule
//! outputs.
//!
//! **Restart.** At the first evaluation after startup, pending alerts get their
//! `activeAt` back from `ALERTS_FOR_STATE` in storage with Prometheus's algorithm
//! (`--rules.alert.for-outage-tolerance`, `--rules.alert.for-grace-period`; see
//! [`crate::rules::restore`]). Firing alerts of rules with `keep_firing_for` (which
//! Prometheus loses) are kept in a small state file in the storage directory, written
//! atomically when they change, and restored as firing with their keep-firing clock.
//!
//! Without a runtime ([`RuleManager::new`]), and in `promflow test rules`, every rule
//! is evaluated by the [`RuleEvaluator`]; [`GroupState::evaluate`] is a plain function
//! of (time, evaluator) so tests drive it directly.

use crate::rules::file::RuleGroup;
use crate::rules::group::{rule_output_names, GroupState};
use crate::rules::options::ManagerOptions;
use crate::rules::restore::{self, KeepFiringFile};
use crate::rules::runner::{Context, GroupRunner, Maintained};
use crate::rules::sinks::{AlertSink, RuleEvaluator, SampleSink};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct RunningGroup {
    state: Arc<Mutex<GroupState>>,
    stop: Arc<AtomicBool>,
    /// Dropped with the group (replaced, removed, stopped): wakes its thread's waits
    /// (see the runner's `stopped`).
    _stopped: crossbeam_channel::Sender<()>,
}

/// Evaluates the groups of the loaded rule files; see the module doc.
pub struct RuleManager {
    context: Arc<Context>,
    groups: Mutex<Vec<RunningGroup>>,
    /// Whether the first `apply` (startup) happened: only its groups restore state.
    started: AtomicBool,
    /// The recording rules' output names of the last `apply` (which rules read rule
    /// outputs decides where each rule is evaluated).
    outputs: Mutex<HashSet<String>>,
}

impl RuleManager {
    /// A manager with no groups, evaluating every rule with `evaluator`.
    pub fn new(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
    ) -> Arc<RuleManager> {
        Self::build(evaluator, sink, alerts, None)
    }

    /// A manager evaluating rules through the dataflow (see the module doc).
    pub fn maintained(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
        maintained: Maintained,
    ) -> Arc<RuleManager> {
        Self::build(evaluator, sink, alerts, Some(maintained))
    }

    fn build(
        evaluator: Arc<dyn RuleEvaluator>,
        sink: Arc<dyn SampleSink>,
        alerts: Arc<dyn AlertSink>,
        maintained: Option<Maintained>,
    ) -> Arc<RuleManager> {
        let keep_firing = maintained
            .as_ref()
            .and_then(|m| m.state_file.clone())
            .map(KeepFiringFile::new);
        Arc::new(RuleManager {
            context: Arc::new(Context {
                evaluator,
                sink,
                alerts,
                maintained,
                keep_firing,
                options: Mutex::new(ManagerOptions::default()),
                created_ms: crate::ingest::now_ms(),
            }),
            groups: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
            outputs: Mutex::new(HashSet::new()),
        })
    }

    /// Replaces the groups. A group whose definition did not change (same file, name,
    /// settings and rules, with the same options and the same recording rules around
    /// it) keeps running untouched: its dataflow rules stay registered. In a changed
    /// group, rules identical to a rule of the old group keep their alert state, as
    /// Prometheus keeps it on reload.
    pub fn apply(self: &Arc<Self>, groups: Vec<RuleGroup>, options: ManagerOptions) {
        let startup = !self.started.swap(true, Ordering::SeqCst);
        let outputs = rule_output_names(&groups);
        let same_surroundings = {
            let mut previous_options = self.context.options.lock();
            let mut previous_outputs = self.outputs.lock();
            let same = !startup && *previous_options == options && *previous_outputs == outputs;
            *previous_options = options.clone();
            *previous_outputs = outputs.clone();
            same
        };
        let mut running = self.groups.lock();
        let mut old: HashMap<(PathBuf, String), RunningGroup> = running
            .drain(..)
            .map(|g| {
                let key = {
                    let s = g.state.lock();
                    (s.group.file.clone(), s.group.name.clone())
                };
                (key, g)
            })
            .collect();
        let restored = match (&self.context.keep_firing, startup) {
            (Some(file), true) => file.load(options.for_outage_tolerance),
            _ => Vec::new(),
        };
        if let Some(file) = &self.context.keep_firing {
            file.retain_groups(
                &groups
                    .iter()
                    .map(|g| (g.file.clone(), g.name.clone()))
                    .collect(),
            );
        }
        for group in groups {
            let key = (group.file.clone(), group.name.clone());
            if same_surroundings {
                let unchanged = old
                    .get(&key)
                    .is_some_and(|g| g.state.lock().group.definition() == group.definition());
                if unchanged {
                    running.push(old.remove(&key).expect("checked above"));
                    continue;
                }
            }
            let mut state = GroupState::new(group, options.default_interval);
            if let Some(previous) = old.remove(&key) {
                previous.stop.store(true, Ordering::SeqCst);
                let mut previous = previous.state.lock();
                state.counters = previous.counters.clone();
                for rs in &mut state.rules {
                    let identity = rs.rule.identity();
                    if let Some(p) = previous
                        .rules
                        .iter_mut()
                        .find(|p| p.rule.identity() == identity)
                    {
                        rs.alerts = p.alerts.take();
                        rs.previous_series = std::mem::take(&mut p.previous_series);
                    }
                }
            }
            restore::restore_keep_firing(&mut state, &restored);
            let stop = Arc::new(AtomicBool::new(false));
            let (stopped_tx, stopped) = crossbeam_channel::bounded(0);
            let state = Arc::new(Mutex::new(state));
            let runner = GroupRunner::new(
                self.context.clone(),
                state.clone(),
                stop.clone(),
                stopped,
                &outputs,
            );
            let name = format!("rules-{}", key.1);
            let spawned = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || runner.run(startup));
            if let Err(e) = spawned {
                tracing::error!(group = %key.1, error = %e, "cannot start rule group");
            }
            running.push(RunningGroup {
                state,
                stop,
                _stopped: stopped_tx,
            });
        }
        for removed in old.into_values() {
            removed.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Stops every group.
    pub fn stop(&self) {
        for g in self.groups.lock().drain(..) {
            g.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Calls `f` with each group's state, in file order.
    pub fn with_groups<T>(&self, mut f: impl FnMut(&GroupState) -> T) -> Vec<T> {
        self.groups
            .lock()
            .iter()
            .map(|g| f(&g.state.lock()))
            .collect()
    }
}
