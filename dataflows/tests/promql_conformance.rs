//! Conformance: runs Prometheus's PromQL test scripts (`shared/promql-tests/*.test`)
//! through the script reader and the reference evaluator, prints pass / fail /
//! skipped per file, and fails if any file passes fewer evals than its recorded floor
//! in [`FLOORS`] (raise the floors as support grows; never lower them silently).
//!
//! Skipped: evals that touch native histograms (`INDEX.tsv` column
//! `uses_native_histograms`, or a `{{…}}` expected value). Annotation expectations
//! (`expect warn/info…`) are not checked yet. Set `PROMQL_VERBOSE=1` to print every
//! failing eval with its reason.

mod common;

use common::{histogram_evals, reference, test_files, Counts};
use dataflows::promql::testscript::compare::{check, plan_eval};
use dataflows::promql::testscript::store::MemStorage;
use dataflows::promql::testscript::{parse_script, Command, Eval};
use std::collections::HashSet;

/// Minimum passing evals per file.
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

/// Runs one eval; `Ok(())` is a pass.
fn run_eval(store: &MemStorage, e: &Eval) -> Result<(), String> {
    let plan = plan_eval(e)?;
    check(e, reference(store, &plan, e))
}

fn run_file(name: &str, text: &str, hist: &HashSet<(String, usize)>, verbose: bool) -> Counts {
    let mut counts = Counts::default();
    let cmds = parse_script(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut store = MemStorage::default();
    for cmd in cmds {
        match cmd {
            Command::Clear { .. } => store = MemStorage::default(),
            Command::Load(load) => store.load(load),
            Command::Eval(e) => {
                if hist.contains(&(name.to_string(), e.line)) || e.expects_histograms() {
                    counts.skipped += 1;
                    continue;
                }
                store.touched_histogram.set(false);
                let outcome = run_eval(&store, &e);
                if store.touched_histogram.get() {
                    counts.skipped += 1;
                    continue;
                }
                match outcome {
                    Ok(()) => counts.pass += 1,
                    Err(reason) => {
                        counts.fail += 1;
                        if verbose {
                            println!("FAIL {name}:{} {}\n     {reason}", e.line, e.expr);
                        }
                    }
                }
            }
        }
    }
    counts
}

#[test]
fn promql_conformance() {
    let Some(files) = test_files() else {
        println!("no conformance data at {}; skipping", common::DIR);
        return;
    };
    let verbose = std::env::var_os("PROMQL_VERBOSE").is_some();
    let hist = histogram_evals();
    let mut below = Vec::new();
    let (mut tp, mut tf, mut ts) = (0, 0, 0);
    println!(
        "{:<28} {:>5} {:>5} {:>7}",
        "file", "pass", "fail", "skipped"
    );
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let c = run_file(&name, &text, &hist, verbose);
        println!("{name:<28} {:>5} {:>5} {:>7}", c.pass, c.fail, c.skipped);
        (tp, tf, ts) = (tp + c.pass, tf + c.fail, ts + c.skipped);
        if let Some((_, floor)) = FLOORS.iter().find(|(f, _)| *f == name) {
            if c.pass < *floor {
                below.push(format!("{name}: {} < floor {floor}", c.pass));
            }
        }
    }
    println!("{:<28} {tp:>5} {tf:>5} {ts:>7}", "total");
    assert!(below.is_empty(), "pass counts below floor: {below:?}");
}
