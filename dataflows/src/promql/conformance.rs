//! The PromQL conformance runner: runs Prometheus's `.test` scripts in both modes and
//! reports, per eval, whether it passed.
//!
//! - Mode (a), *ad hoc*: the reference evaluator over the loaded samples.
//! - Mode (b), *maintained*: every eval of a storage state is registered on an
//!   [`Engine`] with 2 workers as a maintained rule (`At` for instant evals, `Range`
//!   for range evals), the loaded samples are streamed in time order with the
//!   watermark just behind each batch, and the rule's output at the eval time is
//!   judged the same way.
//! - Mode (c), *spread*: as (b) on an engine with [`SPREAD_WORKERS`] workers, where
//!   every rule whose shape allows it is spread ([`crate::render::spread`]: each
//!   worker computes its own series and partial aggregates, combined on the rule's
//!   owner) rather than placed on one owner worker.
//!
//! Native histograms run in both modes: mode (b) feeds the stored histograms to the
//! engine beside the floats ([`SampleBatch::histograms`]) and reads each output's
//! histograms from [`RuleOutput::histograms`]. Used by the conformance test
//! (`dataflows/tests/promql_conformance.rs`) and by `promflow test promql`.
//!
//! [`RuleOutput::histograms`]: crate::render::RuleOutput::histograms

use crate::engine::{Engine, EngineConfig, EngineError, EngineStats};
use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::promql::eval::native::{handle, parse_handle, MADE, SOURCE};
use crate::promql::eval::{Annotations, EvalError, Evaluator, Series, Value};
use crate::promql::plan::Plan;
use crate::promql::testscript::compare::{check_annotations, check_with, plan_eval, Mismatch};
use crate::promql::testscript::store::MemStorage;
use crate::promql::testscript::{parse_script, Command, Eval, EvalTime, ScriptError};
use crate::render::{RuleHandle, RuleOutput, RuleSchedule};
use crate::sample::SampleBatch;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How one eval fared in one mode.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The result matched the script's expectation.
    Pass,
    /// It did not; why.
    Fail(String),
    /// Not run in this mode.
    Skipped,
}

/// One eval's outcome in both modes.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    /// Line of the `eval` command in the script.
    pub line: usize,
    /// The expression.
    pub expr: String,
    /// Mode (a), ad hoc.
    pub adhoc: Verdict,
    /// Mode (b), maintained.
    pub maintained: Verdict,
    /// Mode (c), maintained on [`SPREAD_WORKERS`] workers, spread where the shape
    /// allows.
    pub spread: Verdict,
    /// The annotations of mode (a) against the eval's `expect warn|info|no_warn|no_info`
    /// directives, if it has any (reported apart: not part of the verdicts).
    pub annotations: Option<Verdict>,
}

/// Pass / fail / skipped counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Failed.
    pub fail: usize,
    /// Skipped (not run in that mode).
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, v: &Verdict) {
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail(_) => self.fail += 1,
            Verdict::Skipped => self.skipped += 1,
        }
    }
}

/// The outcomes of one script.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    /// Every eval, in script order.
    pub outcomes: Vec<EvalOutcome>,
}

impl FileReport {
    /// Counts in mode (a).
    pub fn adhoc(&self) -> Counts {
        let mut c = Counts::default();
        self.outcomes.iter().for_each(|o| c.add(&o.adhoc));
        c
    }

    /// Annotation expectations of mode (a): `(met, checked)`.
    pub fn annotations(&self) -> (usize, usize) {
        let checked: Vec<&Verdict> = self
            .outcomes
            .iter()
            .filter_map(|o| o.annotations.as_ref())
            .collect();
        let met = checked.iter().filter(|v| ***v == Verdict::Pass).count();
        (met, checked.len())
    }

    /// Counts in mode (b).
    pub fn maintained(&self) -> Counts {
        let mut c = Counts::default();
        self.outcomes.iter().for_each(|o| c.add(&o.maintained));
        c
    }

    /// Counts in mode (c).
    pub fn spread(&self) -> Counts {
        let mut c = Counts::default();
        self.outcomes.iter().for_each(|o| c.add(&o.spread));
        c
    }
}

/// Why a script could not be run at all (as opposed to an eval failing).
#[derive(Debug)]
pub enum RunError {
    /// The script does not read.
    Script(ScriptError),
    /// The engine for mode (b) does not start.
    Engine(EngineError),
    /// The dataflow stopped advancing while samples streamed in.
    FrontierStuck(Box<EngineStats>),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Script(e) => e.fmt(f),
            RunError::Engine(e) => e.fmt(f),
            RunError::FrontierStuck(stats) => write!(f, "dataflow frontier stuck at {stats:?}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Workers of mode (c)'s engine.
pub const SPREAD_WORKERS: usize = 4;

/// Runs a script in every mode. `adhoc_only` are lines of evals to run in mode (a)
/// only (skipped in modes (b) and (c)); the conformance test passes none.
pub fn run_script(text: &str, adhoc_only: &HashSet<usize>) -> Result<FileReport, RunError> {
    let cmds = parse_script(text).map_err(RunError::Script)?;
    let skip = |e: &Eval| adhoc_only.contains(&e.line);
    let skip = &skip;
    let mut store = MemStorage::default();
    let mut pending: Vec<Eval> = Vec::new();
    let mut report = FileReport::default();
    for cmd in cmds {
        match cmd {
            Command::Eval(e) => pending.push(*e),
            other => {
                report
                    .outcomes
                    .extend(run_segment(&store, std::mem::take(&mut pending), skip)?);
                match other {
                    Command::Load(load) => store.load(load),
                    _ => store = MemStorage::default(),
                }
            }
        }
    }
    report.outcomes.extend(run_segment(&store, pending, skip)?);
    Ok(report)
}

/// Mode (a): the reference evaluator over the loaded samples, with the annotations
/// it raised and the histograms it made (what the result's [`MADE`] handles name).
pub fn reference(
    store: &MemStorage,
    plan: &Plan,
    e: &Eval,
) -> (
    Result<Value, EvalError>,
    Annotations,
    Vec<Arc<FloatHistogram>>,
) {
    match e.time {
        EvalTime::Instant { at_ms } => {
            let ev = Evaluator::new(store, at_ms);
            let value = ev.instant(plan, at_ms);
            (value, ev.take_annotations(), ev.made_histograms())
        }
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let mut ev = Evaluator::new(store, start_ms);
            ev.end_ms = end_ms;
            ev.step_ms = step_ms;
            let value = ev.range(plan, start_ms, end_ms, step_ms).map(Value::Matrix);
            (value, ev.take_annotations(), ev.made_histograms())
        }
    }
}

fn verdict(result: Result<(), Mismatch>) -> Verdict {
    match result {
        Ok(()) => Verdict::Pass,
        Err(mismatch) => Verdict::Fail(mismatch.to_string()),
    }
}

/// Runs the evals of one storage state: mode (a) one by one, mode (b) on one engine
/// with every eval registered and the samples streamed once.
fn run_segment(
    store: &MemStorage,
    evals: Vec<Eval>,
    skip: &dyn Fn(&Eval) -> bool,
) -> Result<Vec<EvalOutcome>, RunError> {
    let mut outcomes = Vec::new();
    let mut live: Vec<(Eval, usize, Plan)> = Vec::new();
    for e in evals {
        let mut outcome = EvalOutcome {
            line: e.line,
            expr: e.expr.clone(),
            adhoc: Verdict::Skipped,
            maintained: Verdict::Skipped,
            spread: Verdict::Skipped,
            annotations: None,
        };
        let plan = match plan_eval(&e) {
            Ok(p) => p,
            Err(decided) => {
                outcome.adhoc = verdict(decided.clone());
                if !skip(&e) {
                    outcome.maintained = verdict(decided.clone());
                    outcome.spread = verdict(decided);
                }
                outcomes.push(outcome);
                continue;
            }
        };
        let (value, annotations, made) = reference(store, &plan, &e);
        let resolve = |v: f64| match parse_handle(v)? {
            (SOURCE, i) => store.histograms.get(i as usize).cloned(),
            (MADE, i) => made.get(i as usize).cloned(),
            _ => None,
        };
        outcome.adhoc = verdict(check_with(&e, value, &resolve));
        outcome.annotations = check_annotations(&e, &annotations).map(verdict);
        if !skip(&e) {
            outcome.maintained = Verdict::Fail("not run".into());
            outcome.spread = Verdict::Fail("not run".into());
            live.push((e, outcomes.len(), plan));
        }
        outcomes.push(outcome);
    }
    if live.is_empty() {
        return Ok(outcomes);
    }
    for (index, verdict) in maintained(store, &live, 2)? {
        outcomes[index].maintained = verdict;
    }
    for (index, verdict) in maintained(store, &live, SPREAD_WORKERS)? {
        outcomes[index].spread = verdict;
    }
    Ok(outcomes)
}

/// Modes (b) and (c): the evals registered as maintained rules on an engine with
/// `workers` workers, the samples streamed once; each eval's verdict by its index.
fn maintained(
    store: &MemStorage,
    live: &[(Eval, usize, Plan)],
    workers: usize,
) -> Result<Vec<(usize, Verdict)>, RunError> {
    let mut verdicts = Vec::new();
    let engine = Engine::start(EngineConfig {
        workers,
        lookback_ms: 300_000,
        cluster: None,
        // Mode (c) spreads every shape that can be, joins too.
        spread_joins: workers > 1,
        spread_owner_bound: workers > 1,
    })
    .map_err(RunError::Engine)?;
    let mut handles: Vec<(usize, &Eval, RuleHandle)> = Vec::new();
    for (e, index, plan) in live {
        match engine.register(plan.clone(), schedule(e)) {
            Ok(h) => handles.push((*index, e, h)),
            Err(err) => verdicts.push((*index, Verdict::Fail(err.to_string()))),
        }
    }
    stream_in_time_order(&engine, store)?;
    // Closing the input evaluates everything still pending.
    engine.shutdown();
    for (index, e, rule) in handles {
        let outputs: Vec<RuleOutput> = rule.output.try_iter().collect();
        let verdict = match e.time {
            EvalTime::Instant { at_ms } => match outputs.into_iter().next() {
                Some(o) if o.eval_ms == at_ms => {
                    let resolve = |v: f64| o.histogram(v).cloned();
                    verdict(check_with(e, o.value.clone(), &resolve))
                }
                Some(o) => Verdict::Fail(format!("output at {}, not {at_ms}", o.eval_ms)),
                None => Verdict::Fail("no output".into()),
            },
            EvalTime::Range { .. } => {
                let (value, histograms) = assemble_range(outputs);
                let resolve = |v: f64| match parse_handle(v) {
                    Some((SOURCE, i)) => histograms.get(i as usize).cloned(),
                    _ => None,
                };
                verdict(check_with(e, value, &resolve))
            }
        };
        verdicts.push((index, verdict));
    }
    Ok(verdicts)
}

fn schedule(e: &Eval) -> RuleSchedule {
    match e.time {
        EvalTime::Instant { at_ms } => RuleSchedule::At { at_ms },
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => RuleSchedule::Range {
            start_ms,
            end_ms,
            step_ms,
        },
    }
}

/// Feeds the samples batch by batch (one timestamp each), waiting after each batch
/// until the dataflow has caught up, so evaluations happen while data streams in: an
/// evaluation made before its inputs are complete shows as a failure.
/// A stored histogram (a [`SOURCE`] handle) goes in the batch's histogram column.
fn stream_in_time_order(engine: &Engine, store: &MemStorage) -> Result<(), RunError> {
    let samples = store.samples_in_time_order();
    let mut i = 0;
    while i < samples.len() {
        let ts = samples[i].0;
        let mut batch = SampleBatch::default();
        while i < samples.len() && samples[i].0 == ts {
            let (t, labels, value, start_ms) = &samples[i];
            let id = labels.hash();
            batch.new_series.push((id, labels.clone()));
            match parse_handle(*value) {
                Some((SOURCE, h)) => {
                    let histogram = store.histograms[h as usize].clone();
                    batch.push_histogram(id, *t, histogram, *start_ms);
                }
                _ => batch.push(id, *t, *value, *start_ms),
            }
            i += 1;
        }
        engine.feed(batch);
        engine.advance_watermark(ts + 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine.stats().frontier_ms < ts + 1 {
            if Instant::now() > deadline {
                return Err(RunError::FrontierStuck(Box::new(engine.stats())));
            }
            std::thread::yield_now();
        }
    }
    Ok(())
}

/// A range eval's result assembled from its per-step outputs, like the reference
/// evaluator's `range`, with the histograms it names (as each output's: detached).
fn assemble_range(
    outputs: Vec<RuleOutput>,
) -> (Result<Value, EvalError>, Vec<Arc<FloatHistogram>>) {
    let mut out: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
    let mut histograms = Vec::new();
    for o in outputs {
        let t = o.eval_ms;
        let renumbered = histograms.len() as u32;
        let value = match o.value {
            Ok(value) => value,
            Err(e) => return (Err(e), histograms),
        };
        histograms.extend(o.histograms);
        let rename = |v: f64| match parse_handle(v) {
            Some((SOURCE, h)) => handle(SOURCE, h + renumbered),
            _ => v,
        };
        match value {
            Value::Scalar(v) => out.entry(Arc::default()).or_default().push((t, v)),
            Value::Vector(v) => {
                for e in v {
                    out.entry(e.labels).or_default().push((t, rename(e.value)));
                }
            }
            _ => {
                let error = "range query of a non-vector expression";
                return (Err(EvalError::Unsupported(error.into())), histograms);
            }
        }
    }
    let series = out
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    (Ok(Value::Matrix(series)), histograms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `limit_ratio` on float series, with expectations that follow from its
    /// definition as in Prometheus's limit.test (whose evals all load native
    /// histograms and are skipped): ratio 1 or -1 keeps all, 0 none, and `r` and
    /// `-(1 - r)` are complements. Both modes.
    #[test]
    fn limit_ratio_picks_complementary_subsets() {
        let script = r#"
load 5m
    http_requests{job="api", instance="0", group="production"} 0+10x10
    http_requests{job="api", instance="1", group="production"} 0+20x10
    http_requests{job="api", instance="0", group="canary"} 0+30x10
    http_requests{job="api", instance="1", group="canary"} 0+40x10
    http_requests{job="api", instance="2", group="canary"} 0+50x10
    http_requests{job="api", instance="3", group="canary"} 0+60x10

eval range from 0 to 50m step 5m count(limit_ratio(0.0, http_requests))

eval range from 0 to 50m step 5m count(limit_ratio(1.0, http_requests) and http_requests)
    {} 6+0x10

eval range from 0 to 50m step 5m count(limit_ratio(-1.0, http_requests) and http_requests)
    {} 6+0x10

eval range from 0 to 50m step 5m count(limit_ratio(1.1, http_requests) and http_requests)
    expect warn msg: PromQL warning: ratio value should be between -1 and 1, got 1.1, capping to 1
    {} 6+0x10

eval range from 0 to 50m step 5m count(limit_ratio(0.2, http_requests) or limit_ratio(-0.8, http_requests))
    {} 6+0x10

eval range from 0 to 50m step 5m count(limit_ratio(0.2, http_requests) and limit_ratio(-0.8, http_requests))

eval range from 0 to 50m step 5m count(limit_ratio(time() % 17/17, http_requests) or limit_ratio( - (1.0 - (time() % 17/17)), http_requests))
    {} 6+0x10

eval range from 0 to 50m step 5m count(limit_ratio(time() % 17/17, http_requests) and limit_ratio( - (1.0 - (time() % 17/17)), http_requests))
"#;
        let report = run_script(script, &HashSet::new()).expect("runs");
        for (mode, counts) in [
            ("ad hoc", report.adhoc()),
            ("maintained", report.maintained()),
            ("spread", report.spread()),
        ] {
            assert_eq!(
                (counts.pass, counts.fail),
                (8, 0),
                "{mode}: {:#?}",
                report.outcomes
            );
        }
        assert_eq!(report.annotations(), (1, 1), "the capping warning");
    }
}
