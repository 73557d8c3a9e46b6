//! What a rule group reads from and writes to: the [`RuleEvaluator`] that evaluates
//! a rule over storage, the [`SampleSink`] rule outputs are written to, and the
//! [`AlertSink`] alerts due for sending go to. The alert path starts here: the
//! notifier and the built-in Alertmanager implement [`AlertSink`] downstream.

use crate::storage::Storage;
use dataflows::promql::eval::{Evaluator, Value};
use dataflows::promql::plan::Plan;
use dataflows::{Labels, RuleOutput, Sample};
use std::sync::Arc;

use crate::rules::alert::Alert;

/// A rule's result at one time: an instant vector, or the evaluation error.
pub type RuleResult = Result<Vec<(Arc<Labels>, f64)>, String>;

/// Evaluates a planned expression at one instant (ms) into an instant vector.
pub trait RuleEvaluator: Send + Sync {
    /// The result at `t_ms`; a scalar becomes one element with no labels.
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> Result<Vec<(Arc<Labels>, f64)>, String>;
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
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> Result<Vec<(Arc<Labels>, f64)>, String> {
        let mut evaluator = Evaluator::new(&*self.head, t_ms);
        evaluator.lookback_ms = self.lookback_ms;
        vector_result(evaluator.instant(plan, t_ms).map_err(|e| e.to_string())?)
    }
}

/// A rule result as an instant vector (a scalar is one element without labels).
fn vector_result(value: Value) -> Result<Vec<(Arc<Labels>, f64)>, String> {
    match value {
        Value::Vector(v) => Ok(v.into_iter().map(|e| (e.labels, e.value)).collect()),
        Value::Scalar(v) => Ok(vec![(Arc::new(Labels::default()), v)]),
        other => Err(format!("rule result is not a vector: {other:?}")),
    }
}

/// A dataflow evaluation as a rule result.
pub(crate) fn output_result(output: RuleOutput) -> Result<Vec<(Arc<Labels>, f64)>, String> {
    vector_result(output.value.map_err(|e| e.to_string())?)
}
