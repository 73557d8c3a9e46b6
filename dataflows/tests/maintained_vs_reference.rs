//! Oracle test for maintained evaluation (conformance mode (b)): every eval of the
//! PromQL test scripts is registered as a maintained rule, the loaded samples are
//! streamed into an [`Engine`] in time order with the watermark advancing behind
//! them, and the rule's output at the eval time (each step of a range eval) is judged
//! with the same comparison as mode (a) (`promql::testscript::compare`).
//!
//! Prints pass / fail / skipped per file next to mode (a)'s pass count and fails if a
//! file passes fewer evals than its floor in [`FLOORS`]. Evals mode (a) skips
//! (native histograms) are skipped here too. `PROMQL_VERBOSE=1` prints each eval
//! where the modes disagree.

mod common;

use common::{histogram_evals, reference, test_files, Counts};
use dataflows::promql::eval::{EvalError, Series, Value};
use dataflows::promql::testscript::compare::{check, plan_eval};
use dataflows::promql::testscript::store::MemStorage;
use dataflows::promql::testscript::{parse_script, Command, Eval, EvalTime};
use dataflows::{Engine, EngineConfig, Labels, RuleHandle, RuleSchedule, Sample};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Minimum passing evals per file in mode (b).
/// Every file is at mode (a)'s count (see `promql_conformance.rs`).
const FLOORS: &[(&str, usize)] = &[
    ("aggregators.test", 125),
    ("at_modifier.test", 78),
    ("collision.test", 2),
    ("duration_expression.test", 59),
    ("extended_vectors.test", 30),
    ("fill-modifier.test", 46),
    ("functions.test", 325),
    ("histograms.test", 64),
    ("info.test", 0),
    ("limit.test", 0),
    ("literals.test", 25),
    ("name_label_dropping.test", 30),
    ("native_histograms.test", 3),
    ("operators.test", 142),
    ("range_queries.test", 16),
    ("selectors.test", 31),
    ("staleness.test", 17),
    ("start_timestamps.test", 3),
    ("subquery.test", 32),
    ("trig_functions.test", 19),
    ("type_and_unit.test", 58),
];

/// The result of a range eval assembled from its per-step outputs, like the
/// reference evaluator's `range`.
fn assemble_range(outputs: Vec<(i64, Result<Value, EvalError>)>) -> Result<Value, EvalError> {
    let mut out: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
    for (t, value) in outputs {
        match value? {
            Value::Scalar(v) => out.entry(Arc::default()).or_default().push((t, v)),
            Value::Vector(v) => {
                for e in v {
                    out.entry(e.labels).or_default().push((t, e.value));
                }
            }
            _ => return Err(EvalError("range query of a non-vector expression".into())),
        }
    }
    Ok(Value::Matrix(
        out.into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect(),
    ))
}

fn wait_for_frontier(engine: &Engine, at_least: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while engine.stats().frontier_ms < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "frontier stuck at {:?}",
            engine.stats()
        );
        std::thread::yield_now();
    }
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

struct Outcome {
    line: usize,
    expr: String,
    /// Mode (a) passed.
    reference_ok: bool,
    /// Mode (b): `None` skipped.
    maintained: Option<Result<(), String>>,
}

/// Runs the evals of one storage state: one engine, every eval registered, the
/// samples streamed once.
fn run_segment(store: &MemStorage, evals: Vec<Eval>, skip: &dyn Fn(&Eval) -> bool) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut live: Vec<(Eval, usize, dataflows::promql::plan::Plan)> = Vec::new();
    for e in evals {
        if skip(&e) {
            outcomes.push(Outcome {
                line: e.line,
                expr: e.expr.clone(),
                reference_ok: false,
                maintained: None,
            });
            continue;
        }
        let plan = match plan_eval(&e) {
            Ok(p) => p,
            Err(reason) => {
                outcomes.push(Outcome {
                    line: e.line,
                    expr: e.expr.clone(),
                    reference_ok: false,
                    maintained: Some(Err(reason)),
                });
                continue;
            }
        };
        store.touched_histogram.set(false);
        let reference_ok = check(&e, reference(store, &plan, &e)).is_ok();
        if store.touched_histogram.get() {
            outcomes.push(Outcome {
                line: e.line,
                expr: e.expr.clone(),
                reference_ok: false,
                maintained: None,
            });
            continue;
        }
        outcomes.push(Outcome {
            line: e.line,
            expr: e.expr.clone(),
            reference_ok,
            maintained: Some(Err("not run".into())),
        });
        live.push((e, outcomes.len() - 1, plan));
    }
    if live.is_empty() {
        return outcomes;
    }
    let engine = match Engine::start(EngineConfig {
        workers: 2,
        lookback_ms: 300_000,
    }) {
        Ok(engine) => engine,
        Err(err) => panic!("engine did not start: {err}"),
    };
    let mut handles: Vec<(usize, &Eval, Option<RuleHandle>)> = Vec::new();
    for (e, index, plan) in &live {
        match engine.register(plan.clone(), schedule(e)) {
            Ok(h) => handles.push((*index, e, Some(h))),
            Err(err) => {
                outcomes[*index].maintained = Some(Err(err.to_string()));
                handles.push((*index, e, None));
            }
        }
    }
    // Stream in time order, the watermark just behind each batch.
    let samples = store.samples_in_time_order();
    let mut i = 0;
    while i < samples.len() {
        let ts = samples[i].0;
        let mut batch = Vec::new();
        while i < samples.len() && samples[i].0 == ts {
            let (t, labels, value) = &samples[i];
            batch.push(Sample {
                series_id: labels.hash(),
                labels: labels.clone(),
                timestamp_ms: *t,
                value: *value,
            });
            i += 1;
        }
        engine.feed(batch);
        engine.advance_watermark(ts + 1);
        // Let the dataflow catch up, so that evaluations happen while data streams in
        // (an evaluation made before its inputs are complete shows as a failure).
        wait_for_frontier(&engine, ts + 1);
    }
    // Closing the input evaluates everything still pending.
    engine.shutdown();
    for (index, e, handle) in handles {
        let Some(handle) = handle else { continue };
        let outputs: Vec<(i64, Result<Value, EvalError>)> = handle
            .output
            .try_iter()
            .map(|o| (o.eval_ms, o.value))
            .collect();
        let result = match e.time {
            EvalTime::Instant { at_ms } => match outputs.into_iter().next() {
                Some((t, v)) if t == at_ms => Some(v),
                Some((t, _)) => {
                    outcomes[index].maintained = Some(Err(format!("output at {t}, not {at_ms}")));
                    None
                }
                None => {
                    outcomes[index].maintained = Some(Err("no output".into()));
                    None
                }
            },
            EvalTime::Range { .. } => Some(assemble_range(outputs)),
        };
        if let Some(result) = result {
            outcomes[index].maintained = Some(check(e, result));
        }
    }
    outcomes
}

fn run_file(
    name: &str,
    text: &str,
    hist: &HashSet<(String, usize)>,
    verbose: bool,
) -> (Counts, usize) {
    let cmds = parse_script(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let skip = |e: &Eval| hist.contains(&(name.to_string(), e.line)) || e.expects_histograms();
    let mut store = MemStorage::default();
    let mut pending: Vec<Eval> = Vec::new();
    let mut outcomes = Vec::new();
    for cmd in cmds {
        match cmd {
            Command::Eval(e) => pending.push(*e),
            other => {
                outcomes.extend(run_segment(&store, std::mem::take(&mut pending), &skip));
                match other {
                    Command::Load(load) => store.load(load),
                    _ => store = MemStorage::default(),
                }
            }
        }
    }
    outcomes.extend(run_segment(&store, pending, &skip));
    let mut counts = Counts::default();
    let mut reference_pass = 0;
    for o in outcomes {
        if o.reference_ok {
            reference_pass += 1;
        }
        match o.maintained {
            None => counts.skipped += 1,
            Some(Ok(())) => counts.pass += 1,
            Some(Err(reason)) => {
                counts.fail += 1;
                if verbose && o.reference_ok {
                    println!("DIFF {name}:{} {}\n     {reason}", o.line, o.expr);
                }
            }
        }
    }
    (counts, reference_pass)
}

#[test]
fn maintained_vs_reference() {
    let Some(files) = test_files() else {
        println!("no conformance data at {}; skipping", common::DIR);
        return;
    };
    let verbose = std::env::var_os("PROMQL_VERBOSE").is_some();
    let hist = histogram_evals();
    let mut below = Vec::new();
    let (mut tp, mut tf, mut ts, mut ta) = (0, 0, 0, 0);
    println!(
        "{:<28} {:>6} {:>5} {:>7} {:>8}",
        "file", "pass(b)", "fail", "skipped", "pass(a)"
    );
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (c, a) = run_file(&name, &text, &hist, verbose);
        println!(
            "{name:<28} {:>6} {:>5} {:>7} {:>8}",
            c.pass, c.fail, c.skipped, a
        );
        (tp, tf, ts, ta) = (tp + c.pass, tf + c.fail, ts + c.skipped, ta + a);
        if let Some((_, floor)) = FLOORS.iter().find(|(f, _)| *f == name) {
            if c.pass < *floor {
                below.push(format!("{name}: {} < floor {floor}", c.pass));
            }
        }
    }
    println!("{:<28} {tp:>6} {tf:>5} {ts:>7} {ta:>8}", "total");
    assert!(
        below.is_empty(),
        "mode (b) pass counts below floor: {below:?}"
    );
}
