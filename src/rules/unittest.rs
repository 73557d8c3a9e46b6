//! `promflow test rules`: promtool's rule unit-test format, run on the reference
//! evaluator and the alert state machine.
//!
//! Owns: reading a test file (`rule_files`, `evaluation_interval`, `group_eval_order`
//! is not supported, `tests[]` with `interval`, `input_series`, `alert_rule_test`,
//! `promql_expr_test`, `external_labels`), loading the series into a fresh head at
//! `0, interval, 2·interval…`, evaluating every group at each `evaluation_interval`
//! tick from 0 to the last `eval_time` (like promtool 2.42), and comparing *firing*
//! alerts and expression results with the expectations.
//!
//! Contract: [`run_file`] returns, per check, what was computed ([`Outcome`]), so
//! tests compare it with what promtool computed on the same file.

use crate::rules::alert::AlertState;
use crate::rules::file::load_files;
use crate::rules::group::GroupState;
use crate::rules::options::ManagerOptions;
use crate::rules::sinks::{HeadEvaluator, RuleEvaluator, RuleValue, SampleSink};
use crate::storage::Storage;
use dataflows::promql::plan::parse;
use dataflows::promql::testscript::{
    parse_duration_ms, parse_values, split_series, NotationError, Point,
};
use dataflows::{Labels, Sample};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// A computed expression result: (labels, value) per element.
pub type GotSamples = Vec<(BTreeMap<String, String>, f64)>;

/// A computed alert: labels and annotations.
pub type GotAlert = (BTreeMap<String, String>, BTreeMap<String, String>);

/// What one check computed and whether it matched.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// An `alert_rule_test`: the firing alerts of `alertname` at `time_ms`.
    Alerts {
        /// The alert name.
        alertname: String,
        /// Evaluation time (ms from 0).
        time_ms: i64,
        /// Firing alerts, sorted.
        got: Vec<GotAlert>,
        /// Whether they equal the expectation.
        pass: bool,
    },
    /// A `promql_expr_test`.
    Expr {
        /// The expression.
        expr: String,
        /// Evaluation time (ms from 0).
        time_ms: i64,
        /// Result (labels, value), sorted by labels; `Err` on evaluation error, the
        /// text `promflow test rules` prints.
        got: Result<GotSamples, String>,
        /// Whether it equals the expectation.
        pass: bool,
    },
}

impl Outcome {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        match self {
            Outcome::Alerts { pass, .. } | Outcome::Expr { pass, .. } => *pass,
        }
    }
}

fn label_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct NoAlerts;

/// Why a test file could not be run; `promflow test rules` prints its text.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Yaml {
        path: std::path::PathBuf,
        source: serde_yaml_ng::Error,
    },
    /// The rule files under test do not load: each problem on its own line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    RuleFiles(Vec<crate::rules::file::RuleProblem>),
    /// A duration, series or value list of the test file does not read.
    #[error(transparent)]
    Notation(#[from] dataflows::promql::testscript::NotationError),
}

/// Runs every test group of the file; the outcome of each check, in file order.
pub fn run_file(path: &Path) -> Result<Vec<Outcome>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: TestFile = serde_yaml_ng::from_str(&text).map_err(|source| RunError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_paths: Vec<_> = file.rule_files.iter().map(|f| base.join(f)).collect();
    let groups = load_files(&rule_paths).map_err(RunError::RuleFiles)?;
    let eval_interval = match &file.evaluation_interval {
        Some(s) => parse_duration_ms(s)?,
        None => 60_000,
    };
    let mut outcomes = Vec::new();
    for test in &file.tests {
        let _ = &test.name;
        let interval = match &test.interval {
            Some(s) => parse_duration_ms(s)?,
            None => eval_interval,
        };
        let head = Arc::new(Storage::new());
        for input in &test.input_series {
            let (labels, _) = split_series(&input.series)?;
            let labels = Arc::new(labels);
            let mut batch = Vec::new();
            for (i, p) in parse_values(&input.values)?.into_iter().enumerate() {
                if let Some(Point::Float(v)) = p {
                    batch.push(Sample {
                        series_id: labels.hash(),
                        labels: labels.clone(),
                        timestamp_ms: i as i64 * interval,
                        value: v,
                        start_ms: 0,
                    });
                }
            }
            head.append(&batch)
                .expect("an in-memory storage takes every batch");
        }
        let evaluator: Arc<dyn RuleEvaluator> =
            Arc::new(HeadEvaluator::new(head.clone(), 5 * 60_000));
        let options = ManagerOptions {
            default_interval: std::time::Duration::from_millis(eval_interval as u64),
            external_labels: test.external_labels.clone(),
            ..ManagerOptions::default()
        };
        let mut states: Vec<GroupState> = groups
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.interval = None;
                GroupState::new(g, options.default_interval)
            })
            .collect();
        let mut alert_tests: Vec<(i64, &AlertTest)> = test
            .alert_rule_test
            .iter()
            .map(|t| Ok((parse_duration_ms(&t.eval_time)?, t)))
            .collect::<Result<_, RunError>>()?;
        alert_tests.sort_by_key(|(t, _)| *t);
        let mut expr_tests: Vec<(i64, &ExprTest)> = test
            .promql_expr_test
            .iter()
            .map(|t| Ok((parse_duration_ms(&t.eval_time)?, t)))
            .collect::<Result<_, RunError>>()?;
        expr_tests.sort_by_key(|(t, _)| *t);
        let max_t = alert_tests
            .iter()
            .map(|(t, _)| *t)
            .chain(expr_tests.iter().map(|(t, _)| *t))
            .max()
            .unwrap_or(0);
        let mut next_alert = 0;
        let mut ts = 0;
        while ts <= max_t {
            for g in &mut states {
                g.evaluate(ts, &evaluator, &*head as &dyn SampleSink, &options);
            }
            let _ = NoAlerts;
            while next_alert < alert_tests.len() && alert_tests[next_alert].0 < ts + eval_interval {
                let (t, at) = alert_tests[next_alert];
                next_alert += 1;
                let mut got: Vec<GotAlert> = Vec::new();
                for g in &states {
                    for r in &g.rules {
                        if r.rule.name != at.alertname {
                            continue;
                        }
                        if let Some(s) = &r.alerts {
                            got.extend(
                                s.alerts()
                                    .filter(|a| a.state == AlertState::Firing)
                                    .map(|a| (label_map(&a.labels), a.payload.clone())),
                            );
                        }
                    }
                }
                got.sort();
                let mut want: Vec<GotAlert> = at
                    .exp_alerts
                    .iter()
                    .map(|e| {
                        let mut l = e.exp_labels.clone();
                        l.insert("alertname".into(), at.alertname.clone());
                        (l, e.exp_annotations.clone())
                    })
                    .collect();
                want.sort();
                outcomes.push(Outcome::Alerts {
                    alertname: at.alertname.clone(),
                    time_ms: t,
                    pass: got == want,
                    got,
                });
            }
            ts += eval_interval;
        }
        for (t, et) in expr_tests {
            let got = parse(&et.expr)
                .map_err(|e| e.to_string())
                .and_then(|plan| evaluator.evaluate(&plan, t).map_err(|e| e.to_string()))
                .map(|v| {
                    // A histogram matches no expected float (2.42's `exp_samples`
                    // holds floats only).
                    let value = |x: &RuleValue| match x {
                        RuleValue::Float(x) => *x,
                        RuleValue::Histogram(_) => f64::NAN,
                    };
                    let mut v: Vec<_> = v.iter().map(|(l, x)| (label_map(l), value(x))).collect();
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                    v
                });
            let want: Result<Vec<_>, NotationError> = et
                .exp_samples
                .iter()
                .map(|s| {
                    let labels = if s.labels.trim().is_empty() {
                        Labels::default()
                    } else {
                        split_series(&s.labels)?.0
                    };
                    Ok((label_map(&labels), s.value))
                })
                .collect();
            let pass = match (&got, want) {
                (Ok(g), Ok(mut w)) => {
                    w.sort_by(|a, b| a.0.cmp(&b.0));
                    g.len() == w.len()
                        && g.iter().zip(&w).all(|(a, b)| {
                            a.0 == b.0 && (a.1 == b.1 || (a.1 - b.1).abs() <= 1e-9 * b.1.abs())
                        })
                }
                _ => false,
            };
            outcomes.push(Outcome::Expr {
                expr: et.expr.clone(),
                time_ms: t,
                got,
                pass,
            });
        }
    }
    Ok(outcomes)
}
