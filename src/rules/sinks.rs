//! What a rule group reads from and writes to: the [`RuleEvaluator`] that evaluates
//! a rule over storage, the [`SampleSink`] rule outputs are written to, and the
//! [`AlertSink`] alerts due for sending go to. The alert path starts here: the
//! notifier and the built-in Alertmanager implement [`AlertSink`] downstream.

use crate::remote::read::{Fetched, WithRemote};
use crate::storage::{HistogramSample, HistogramSource, Storage};
use dataflows::histogram::FloatHistogram;
use dataflows::promql::eval::{EvalError, Evaluator, SeriesSource, Value};
use dataflows::promql::plan::Plan;
use dataflows::render::rule::{self, instant_vector, ElementValue, NoVector};
use dataflows::{Labels, RuleOutput, Sample};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use crate::rules::alert::{Alert, AlertError};

/// A rule's result at one time: an instant vector, or the evaluation error.
pub type RuleResult = Result<Vec<(Arc<Labels>, RuleValue)>, RuleError>;

/// The value of an element of a rule's result: a float, or a native histogram
/// (resolved from the evaluator's handle while the evaluation's histograms were at
/// hand, so it outlives them).
#[derive(Clone, Debug, PartialEq)]
pub enum RuleValue {
    /// A float sample's value.
    Float(f64),
    /// A native histogram.
    Histogram(Arc<FloatHistogram>),
}

impl RuleValue {
    /// The float an alert and its templates take (`$value`, `query`): a histogram's is
    /// 0, as Prometheus 2.42 takes a histogram sample's float value.
    pub fn float(&self) -> f64 {
        match self {
            RuleValue::Float(v) => *v,
            RuleValue::Histogram(_) => 0.0,
        }
    }
}

/// What one rule evaluation writes: float samples (stale markers included: a
/// histogram series goes stale with a float stale marker, as storage keeps them) and
/// native-histogram samples.
#[derive(Debug, Default)]
pub struct RuleWrites {
    /// Float samples and stale markers.
    pub floats: Vec<Sample>,
    /// Native-histogram samples.
    pub histograms: Vec<HistogramSample>,
}

impl RuleWrites {
    /// Room for `n` samples of either kind.
    pub fn with_capacity(n: usize) -> RuleWrites {
        RuleWrites {
            floats: Vec::with_capacity(n),
            histograms: Vec::new(),
        }
    }

    /// Adds the sample of series `labels` at `t_ms` (a float may be the stale marker).
    pub fn push(&mut self, labels: Arc<Labels>, t_ms: i64, value: &RuleValue) {
        let series_id = labels.hash();
        match value {
            RuleValue::Float(value) => self.floats.push(Sample {
                series_id,
                labels,
                timestamp_ms: t_ms,
                value: *value,
                start_ms: 0,
            }),
            RuleValue::Histogram(h) => self.histograms.push(HistogramSample {
                series_id,
                labels,
                timestamp_ms: t_ms,
                histogram: (**h).clone(),
                start_ms: 0,
            }),
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.floats.is_empty() && self.histograms.is_empty()
    }
}

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

impl From<AlertError> for RuleError {
    fn from(e: AlertError) -> RuleError {
        match e {
            AlertError::Duplicate => RuleError::DuplicateAfterAlertLabels,
            AlertError::Limit { limit, count } => RuleError::AlertLimit { limit, count },
        }
    }
}

/// Evaluates a planned expression at one instant (ms) into an instant vector.
pub trait RuleEvaluator: Send + Sync {
    /// The result at `t_ms`; a scalar becomes one element with no labels.
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> RuleResult;
}

/// Where rule outputs are written.
pub trait SampleSink: Send + Sync {
    /// Writes one evaluation's outputs.
    fn commit(&self, writes: RuleWrites);
}

/// Where alerts due for sending go.
pub trait AlertSink: Send + Sync {
    /// `expr` is the rule's expression (for `generatorURL`).
    fn send(&self, expr: &str, alerts: Vec<Alert>);
}

impl SampleSink for crate::ingest::Ingester {
    fn commit(&self, writes: RuleWrites) {
        self.commit_rule_outputs(writes.floats, writes.histograms);
    }
}

impl SampleSink for Storage {
    fn commit(&self, writes: RuleWrites) {
        // A refused batch is logged and counted by storage.
        let _ = self.append(&writes.floats);
        let _ = self.append_histograms(writes.histograms);
    }
}

/// The series other stores hold for what a plan reads at one instant: the config's
/// `remote_read` endpoints and a cluster's other processes (Prometheus's rules read
/// its fanout storage, remote read included). Implemented by the service, which knows
/// them; a failed endpoint is left out.
pub trait RemoteSeries: Send + Sync {
    /// What the endpoints hold for `plan` evaluated at `t_ms`.
    fn fetch(&self, plan: &Plan, t_ms: i64) -> Fetched;

    /// What the `remote_read` endpoints alone hold for `plan` evaluated at `t_ms`: the
    /// seeds of a maintained rule, whose windows every process of a cluster seeds from
    /// its own storage in the dataflow (`dataflows::render::seed`).
    fn fetch_seeds(&self, plan: &Plan, t_ms: i64) -> Fetched;
}

/// The reference evaluator over storage, native histograms included (as the ad-hoc
/// query API reads it: [`HistogramSource`]), and over what [`HeadEvaluator::remote`]
/// fetches, once set: in a cluster, the rules evaluated here read every process's
/// samples, as queries do.
pub struct HeadEvaluator {
    /// The samples.
    pub head: Arc<Storage>,
    /// Lookback delta (ms).
    pub lookback_ms: i64,
    /// The other stores read beside `head`; unset: none.
    pub remote: RemoteSlot,
}

/// Where the service puts its [`RemoteSeries`] once it exists (after the rule manager
/// is made): shared by the [`HeadEvaluator`] and the seeding of maintained rules.
pub type RemoteSlot = Arc<OnceLock<Arc<dyn RemoteSeries>>>;

impl HeadEvaluator {
    /// An evaluator over `head` alone (until [`HeadEvaluator::remote`] is set).
    pub fn new(head: Arc<Storage>, lookback_ms: i64) -> HeadEvaluator {
        HeadEvaluator {
            head,
            lookback_ms,
            remote: RemoteSlot::default(),
        }
    }

    fn evaluate_over(&self, source: &dyn SeriesSource, plan: &Plan, t_ms: i64) -> RuleResult {
        let mut evaluator = Evaluator::new(source, t_ms);
        evaluator.lookback_ms = self.lookback_ms;
        let value = evaluator.instant(plan, t_ms)?;
        vector_result(value, |v| evaluator.histogram(v))
    }
}

impl RuleEvaluator for HeadEvaluator {
    fn evaluate(&self, plan: &Plan, t_ms: i64) -> RuleResult {
        let local = HistogramSource::new(&self.head);
        let fetched = self.remote.get().map(|remote| remote.fetch(plan, t_ms));
        match fetched.filter(|f| !f.is_empty()) {
            Some(fetched) => {
                let source = WithRemote {
                    local: &local,
                    fetched: &fetched,
                };
                self.evaluate_over(&source, plan, t_ms)
            }
            None => self.evaluate_over(&local, plan, t_ms),
        }
    }
}

/// A rule result as an instant vector (a scalar is one element without labels); an
/// element whose value is a histogram handle gets the histogram `histogram` resolves
/// it to ([`dataflows::promql::eval::native`]): the dataflow's conversion
/// ([`instant_vector`]), which the alert stage makes of the same results.
fn vector_result(
    value: Value,
    histogram: impl Fn(f64) -> Option<Arc<FloatHistogram>>,
) -> RuleResult {
    instant_vector(Cow::Owned(value), histogram).map_err(RuleError::NotAVector)
}

/// The host's element values: a float, or the native histogram the element names.
impl ElementValue for RuleValue {
    fn scalar(value: f64) -> RuleValue {
        RuleValue::Float(value)
    }

    fn element(value: f64, histogram: Option<Arc<FloatHistogram>>) -> RuleValue {
        histogram.map_or(RuleValue::Float(value), RuleValue::Histogram)
    }
}

/// A dataflow evaluation as a rule result (of a rule delivering whole results).
pub(crate) fn output_result(mut output: RuleOutput) -> RuleResult {
    output.gone = None;
    match Arrival::of(output) {
        Arrival::Whole(result) => result,
        Arrival::Changes { .. } => unreachable!("a whole output"),
    }
}

/// A dataflow evaluation of a rule delivering changes ([`dataflows::Delivery`]).
pub(crate) enum Arrival {
    /// The whole result.
    Whole(RuleResult),
    /// Elements new or with a new value, and the labels of elements that left.
    Changes {
        set: Vec<(Arc<Labels>, RuleValue)>,
        gone: Vec<Arc<Labels>>,
    },
}

impl Arrival {
    /// The dataflow's conversion ([`RuleOutput::into_arrival`]), its failures as
    /// [`RuleError`]s.
    pub(crate) fn of(output: RuleOutput) -> Arrival {
        match output.into_arrival::<RuleValue>() {
            rule::Arrival::Whole(Ok(set)) => Arrival::Whole(Ok(set)),
            rule::Arrival::Whole(Err(NoVector::NotAVector(text))) => {
                Arrival::Whole(Err(RuleError::NotAVector(text)))
            }
            rule::Arrival::Whole(Err(NoVector::Eval(e))) => Arrival::Whole(Err(RuleError::Eval(e))),
            rule::Arrival::Changes { set, gone } => Arrival::Changes { set, gone },
        }
    }
}
