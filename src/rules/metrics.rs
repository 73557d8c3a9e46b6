//! The rule manager's self-metrics, under Prometheus 2.42's names, types, help and
//! labels (its `rules` package): per group (`rule_group="<file>;<group>"`)
//! `prometheus_rule_evaluations_total`, `prometheus_rule_evaluation_failures_total`,
//! `prometheus_rule_group_iterations_total`, `prometheus_rule_group_iterations_missed_total`,
//! `prometheus_rule_group_interval_seconds`, `prometheus_rule_group_rules`,
//! `prometheus_rule_group_last_duration_seconds`,
//! `prometheus_rule_group_last_evaluation_timestamp_seconds` and
//! `prometheus_rule_group_last_evaluation_samples`; and, over every group, the summaries
//! `prometheus_rule_evaluation_duration_seconds` (one rule step) and
//! `prometheus_rule_group_duration_seconds` (one group iteration).
//!
//! Contract (what is counted where):
//! - An *evaluation* is one step of one rule: [`GroupState::apply_result`] (which a
//!   step from changes that needs the whole result goes through) or a step from
//!   changes alone in [`GroupState::apply_changes`]; it *fails* when the step records an
//!   error (the result's error, duplicate output labels, the group's limit).
//! - An *iteration* is one group tick of the runner. In interval mode that is
//!   Prometheus's iteration: every rule evaluated once. Ticks the runner woke too late
//!   for are counted as missed and as iterations, as Prometheus counts them.
//! - On-arrival groups: each group tick counts as an iteration (its duration is the
//!   tick's work: the rules over storage), and each rule step — on an arrival, at an
//!   alert's deadline (a timer), at a tick's rewrite — counts as an evaluation.
//! - The group's counters live as long as a group with its file and name is loaded:
//!   a reload that changes the group keeps them, as Prometheus's vectors keep them.
//! - The last evaluation's timestamp is the wall time the last iteration began; before
//!   the first, Go's zero time (-62135596800), as Prometheus reports it.
//! - The last evaluation's samples: the samples each rule's latest step wrote (0 for a
//!   step that failed), summed over the group's rules.

use crate::rules::group::GroupState;
use crate::selfmetrics::Summary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// Go's zero `time.Time` in Unix seconds: Prometheus's last evaluation timestamp of a
/// group not evaluated yet.
const GO_ZERO_TIME_SECONDS: f64 = -62_135_596_800.0;

/// One group's counters (shared by the group's successive states across reloads).
#[derive(Default)]
pub struct GroupCounters {
    /// Rule steps.
    pub evaluations: AtomicU64,
    /// Rule steps that recorded an error.
    pub failures: AtomicU64,
    /// Scheduled iterations, run or missed.
    pub iterations: AtomicU64,
    /// Iterations missed because the runner woke too late.
    pub iterations_missed: AtomicU64,
    /// Wall time the last iteration began (ms since the epoch; 0 if none yet).
    pub last_iteration_ms: AtomicU64,
    /// How long the last iteration took (nanoseconds).
    pub last_duration_ns: AtomicU64,
}

impl GroupCounters {
    /// Counts one rule step (and its failure), observed in the duration summary.
    pub fn evaluation(&self, failed: bool, took: std::time::Duration) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        RULE_EVALUATION_DURATION.observe(took.as_secs_f64());
    }

    /// Counts one iteration that began at wall time `began_ms` and took `took`, after
    /// `missed` ticks it was too late for.
    pub fn iteration(&self, began_ms: i64, took: std::time::Duration, missed: u64) {
        self.iterations.fetch_add(1 + missed, Ordering::Relaxed);
        self.iterations_missed.fetch_add(missed, Ordering::Relaxed);
        self.last_iteration_ms
            .store(began_ms.max(0) as u64, Ordering::Relaxed);
        self.last_duration_ns
            .store(took.as_nanos() as u64, Ordering::Relaxed);
        RULE_GROUP_DURATION.observe(took.as_secs_f64());
    }
}

/// `prometheus_rule_evaluation_duration_seconds`: one rule step.
static RULE_EVALUATION_DURATION: LazyLock<Summary> = LazyLock::new(Summary::default);
/// `prometheus_rule_group_duration_seconds`: one group iteration.
static RULE_GROUP_DURATION: LazyLock<Summary> = LazyLock::new(Summary::default);

/// Prometheus's `GroupKey`: `<file>;<group>`.
pub fn group_key(state: &GroupState) -> String {
    format!("{};{}", state.group.file.display(), state.group.name)
}

/// The family in the text format, for `/metrics`; `groups` is every loaded group's
/// state (see [`crate::rules::manager::RuleManager::with_groups`]).
pub fn render(out: &mut String, groups: &[GroupFigures]) {
    use crate::exposition::{write_header, write_sample};
    RULE_EVALUATION_DURATION.render(
        out,
        "prometheus_rule_evaluation_duration_seconds",
        "The duration for a rule to execute.",
        &[0.5, 0.9, 0.99],
    );
    RULE_GROUP_DURATION.render(
        out,
        "prometheus_rule_group_duration_seconds",
        "The duration of rule group evaluations.",
        &[0.01, 0.05, 0.5, 0.9, 0.99],
    );
    type Pick = fn(&GroupFigures) -> f64;
    let families: [(&str, &str, &str, Pick); 9] = [
        (
            "prometheus_rule_evaluation_failures_total",
            "counter",
            "The total number of rule evaluation failures.",
            |g| g.failures as f64,
        ),
        (
            "prometheus_rule_evaluations_total",
            "counter",
            "The total number of rule evaluations.",
            |g| g.evaluations as f64,
        ),
        (
            "prometheus_rule_group_interval_seconds",
            "gauge",
            "The interval of a rule group.",
            |g| g.interval_seconds,
        ),
        (
            "prometheus_rule_group_iterations_missed_total",
            "counter",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            |g| g.iterations_missed as f64,
        ),
        (
            "prometheus_rule_group_iterations_total",
            "counter",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            |g| g.iterations as f64,
        ),
        (
            "prometheus_rule_group_last_duration_seconds",
            "gauge",
            "The duration of the last rule group evaluation.",
            |g| g.last_duration_seconds,
        ),
        (
            "prometheus_rule_group_last_evaluation_samples",
            "gauge",
            "The number of samples returned during the last rule group evaluation.",
            |g| g.last_samples as f64,
        ),
        (
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "gauge",
            "The timestamp of the last rule group evaluation in seconds.",
            |g| g.last_evaluation_seconds,
        ),
        (
            "prometheus_rule_group_rules",
            "gauge",
            "The number of rules.",
            |g| g.rules as f64,
        ),
    ];
    for (name, kind, help, pick) in families {
        write_header(out, name, kind, help);
        for g in groups {
            write_sample(out, name, [("rule_group", g.key.as_str())], pick(g), None);
        }
    }
}

/// One group's figures, read under its lock for [`render`].
pub struct GroupFigures {
    key: String,
    evaluations: u64,
    failures: u64,
    iterations: u64,
    iterations_missed: u64,
    interval_seconds: f64,
    rules: usize,
    last_duration_seconds: f64,
    last_evaluation_seconds: f64,
    last_samples: usize,
}

impl GroupFigures {
    /// Reads `state`'s figures.
    pub fn of(state: &GroupState) -> GroupFigures {
        let c = &state.counters;
        let last_ms = c.last_iteration_ms.load(Ordering::Relaxed);
        GroupFigures {
            key: group_key(state),
            evaluations: c.evaluations.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            iterations: c.iterations.load(Ordering::Relaxed),
            iterations_missed: c.iterations_missed.load(Ordering::Relaxed),
            interval_seconds: state.interval.as_secs_f64(),
            rules: state.rules.len(),
            last_duration_seconds: c.last_duration_ns.load(Ordering::Relaxed) as f64 / 1e9,
            last_evaluation_seconds: if last_ms == 0 {
                GO_ZERO_TIME_SECONDS
            } else {
                last_ms as f64 / 1000.0
            },
            last_samples: state.rules.iter().map(|r| r.last_samples).sum(),
        }
    }
}
