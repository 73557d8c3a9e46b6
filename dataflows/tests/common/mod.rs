//! Shared by the conformance runners: where the scripts are, which evals touch native
//! histograms (skipped), and the reference (mode (a)) run of one eval.

#![allow(dead_code)]

use dataflows::promql::eval::{EvalError, Evaluator, Value};
use dataflows::promql::plan::Plan;
use dataflows::promql::testscript::store::MemStorage;
use dataflows::promql::testscript::{Eval, EvalTime};
use std::collections::HashSet;
use std::path::PathBuf;

/// The conformance scripts.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/promql-tests");

/// Pass / fail / skipped of one file.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub skipped: usize,
}

/// `(file, line)` pairs INDEX.tsv flags as touching native histograms.
pub fn histogram_evals() -> HashSet<(String, usize)> {
    let text = std::fs::read_to_string(format!("{DIR}/INDEX.tsv")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() < 4 || f[3] != "1" {
                return None;
            }
            Some((f[0].to_string(), f[1].parse().ok()?))
        })
        .collect()
}

/// The `.test` files, sorted; `None` when the data is not there.
pub fn test_files() -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(DIR).ok()?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    Some(files)
}

/// Mode (a): the reference evaluator over the loaded samples.
pub fn reference(store: &MemStorage, plan: &Plan, e: &Eval) -> Result<Value, EvalError> {
    match e.time {
        EvalTime::Instant { at_ms } => Evaluator::new(store, at_ms).instant(plan, at_ms),
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let mut ev = Evaluator::new(store, start_ms);
            ev.end_ms = end_ms;
            ev.step_ms = step_ms;
            ev.range(plan, start_ms, end_ms, step_ms).map(Value::Matrix)
        }
    }
}
