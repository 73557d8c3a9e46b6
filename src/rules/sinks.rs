//! What a rule group reads from and writes to: the [`RuleEvaluator`] that evaluates
//! a rule over storage, the [`SampleSink`] rule outputs are written to, and the
//! [`AlertSink`] alerts due for sending go to. The alert path starts here: the
//! notifier and the built-in Alertmanager implement [`AlertSink`] downstream.

use crate::storage::Storage;
use dataflows::promql::eval::{EvalError, Evaluator, Value};
use dataflows::promql::plan::Plan;
use dataflows::{Labels, RuleOutput, Sample};
use std::sync::Arc;

use crate::rules::alert::Alert;

/// A rule's result at one time: an instant vector, or the evaluation error.
pub type RuleResult = Result<Vec<(Arc<Labels>, f64)>, RuleError>;

/// Why a rule's evaluation failed. Its text is the rule's `lastError` (the rules API,
/// `promflow test rules`), in Prometheus's words.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// The expression's evaluation failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The expression is neither an instant vector nor a scalar.
    #[error("rule result is not a vector: {0}")]
    NotAVector(String),
    /// A recording rule's output has two series with the same labels.
    #[error("vector contains metrics with the same labelset after applying rule labels")]
    DuplicateAfterRuleLabels,
    /// An alerting rule's alerts have two with the same labels.
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateAfterAlertLabels,
    /// A recording rule's output has more series than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} series")]
    SeriesLimit {
        /// The group's `limit`.
        limit: usize,
        /// The series.
        count: usize,
    },
    /// An alerting rule has more pending or firing alerts than the group's `limit`.
    #[error("exceeded limit of {limit} with {count} alerts")]
    AlertLimit {
        /// The group's `limit`.
        limit: usize,
        /// The alerts.
        count: usize,
    },
    /// The rule's alert state went to a reloaded rule while it was evaluated.
    #[error("alert state moved to a reloaded rule")]
    StateMoved,
}

/// Evaluates a planned expression at one instant (ms) into an instant vector.
pub trait RuleEvaluator: Send + Sync {
    /// The result at `t_ms`; a scalar becomes one element with no labels.
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> RuleResult;
}

/// Where rule outputs are written.
pub trait SampleSink: Send + Sync {
    /// Writes a batch (head, then dataflow).
    fn commit(&self, batch: Vec<Sample>);
}

/// Where alerts due for sending go.
pub trait AlertSink: Send + Sync {
    /// `expr` is the rule's expression (for `generatorURL`).
    fn send(&self, expr: &str, alerts: Vec<Alert>);
}

impl SampleSink for crate::ingest::Ingester {
    fn commit(&self, batch: Vec<Sample>) {
        self.commit_rule_outputs(batch);
    }
}

impl SampleSink for Storage {
    fn commit(&self, batch: Vec<Sample>) {
        // A refused batch is logged and counted by storage.
        let _ = self.append(&batch);
    }
}

/// The reference evaluator over the head.
pub struct HeadEvaluator {
    /// The samples.
    pub head: Arc<Storage>,
    /// Lookback delta (ms).
    pub lookback_ms: i64,
}

impl RuleEvaluator for HeadEvaluator {
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> RuleResult {
        let mut evaluator = Evaluator::new(&*self.head, t_ms);
        evaluator.lookback_ms = self.lookback_ms;
        vector_result(evaluator.instant(plan, t_ms)?)
    }
}

/// Whether a result element's value names a native histogram (a handle of the
/// evaluator, [`dataflows::promql::eval::native`]) rather than being a float. Such an
/// element alerts with the value 0 (as Prometheus 2.42's alerting rules take a
/// histogram sample's float value); a recording rule does not write it yet.
pub(crate) fn is_histogram(value: f64) -> bool {
    dataflows::promql::eval::native::parse_handle(value).is_some()
}

/// A rule result as an instant vector (a scalar is one element without labels).
fn vector_result(value: Value) -> RuleResult {
    match value {
        Value::Vector(v) => Ok(v.into_iter().map(|e| (e.labels, e.value)).collect()),
        Value::Scalar(v) => Ok(vec![(Arc::new(Labels::default()), v)]),
        other => Err(RuleError::NotAVector(format!("{other:?}"))),
    }
}

/// A dataflow evaluation as a rule result (of a rule delivering whole results).
pub(crate) fn output_result(output: RuleOutput) -> RuleResult {
    vector_result(output.value?)
}

/// A dataflow evaluation of a rule delivering changes ([`dataflows::Delivery`]).
pub(crate) enum Arrival {
    /// The whole result.
    Whole(RuleResult),
    /// Elements new or with a new value, and the labels of elements that left.
    Changes {
        set: Vec<(Arc<Labels>, f64)>,
        gone: Vec<Arc<Labels>>,
    },
}

impl Arrival {
    pub(crate) fn of(output: RuleOutput) -> Arrival {
        match output.gone {
            None => Arrival::Whole(output_result(output)),
            Some(gone) => {
                let set = match output.value {
                    Ok(Value::Vector(v)) => v.into_iter().map(|e| (e.labels, e.value)).collect(),
                    _ => Vec::new(),
                };
                Arrival::Changes { set, gone }
            }
        }
    }
}
