//! Conformance: runs Prometheus's PromQL test scripts (`shared/promql-tests/*.test`)
//! in three modes — (a) ad hoc, (b) maintained rules fed the samples as a stream on 2
//! workers, (c) the same on 4 workers with every rule whose shape allows it spread
//! over the workers (see `dataflows::promql::conformance`) — prints pass / fail /
//! skipped per file and mode, and compares with the checked-in baseline
//! `tests/promql_baseline.tsv`, which lists every eval that does not pass, per mode
//! (`adhoc`, `maintained`, `spread`), with a one-line reason. Native histograms
//! run in every mode (none is skipped).
//!
//! Fails if an eval fails that the baseline does not list (a regression). Evals the
//! baseline lists that now pass are printed: remove them from the baseline (or
//! regenerate it with `PROMQL_WRITE_BASELINE=1`). `PROMQL_VERBOSE=1` prints every
//! failure with its reason, and every unmet annotation expectation (counted apart).
//!
//! The scripts are the project's shared data (`../shared` beside the checkout): without
//! them the test says it is skipped, and fails under `CI=true`
//! (`dataflows::shared_data`).

use dataflows::promql::conformance::{run_script, Verdict};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;
use std::path::PathBuf;

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/promql_baseline.tsv");

/// `(file, line, mode)` → reason, one line of the baseline.
type Failure = (String, usize, &'static str, String);

/// Why the evals that still fail do, by file (and line): written before the mismatch in
/// the baseline.
const KNOWN_CAUSES: &[(&str, Option<usize>, &str)] = &[];

fn cause(file: &str, line: usize) -> Option<&'static str> {
    KNOWN_CAUSES
        .iter()
        .find(|(f, l, _)| *f == file && l.is_none_or(|l| l == line))
        .map(|(_, _, why)| *why)
}

fn one_line(reason: &str) -> String {
    let flat: String = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(200).collect()
}

fn read_baseline() -> BTreeSet<(String, usize, String)> {
    let text = std::fs::read_to_string(BASELINE).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(2)?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn promql_conformance() {
    let Some(scripts) = dataflows::shared_data::locate("promql-tests", "PromQL conformance") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&scripts)
        .unwrap_or_else(|e| panic!("conformance scripts at {}: {e}", scripts.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", scripts.display());
    let verbose = std::env::var_os("PROMQL_VERBOSE").is_some();

    let mut failures: Vec<Failure> = Vec::new();
    let row = |name: &str, v: &[usize]| {
        let cells: Vec<String> = v.iter().map(|n| format!("{n:>7}")).collect();
        println!("{name:<28} {}", cells.join(" "));
    };
    println!(
        "{:<28} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "file",
        "pass(a)",
        "fail(a)",
        "pass(b)",
        "fail(b)",
        "skip(b)",
        "pass(c)",
        "fail(c)",
        "skip(c)"
    );
    let mut totals = [0usize; 8];
    let mut annotations = (0usize, 0usize);
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let report = run_script(&text, &HashSet::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (a, b, c) = (report.adhoc(), report.maintained(), report.spread());
        let counts = [
            a.pass, a.fail, b.pass, b.fail, b.skipped, c.pass, c.fail, c.skipped,
        ];
        row(&name, &counts);
        for (t, v) in totals.iter_mut().zip(counts) {
            *t += v;
        }
        let (met, checked) = report.annotations();
        annotations = (annotations.0 + met, annotations.1 + checked);
        for o in &report.outcomes {
            if let (true, Some(Verdict::Fail(reason))) = (verbose, &o.annotations) {
                println!("ANNOTATIONS {name}:{} {}\n     {reason}", o.line, o.expr);
            }
            for (mode, verdict) in [
                ("adhoc", &o.adhoc),
                ("maintained", &o.maintained),
                ("spread", &o.spread),
            ] {
                match verdict {
                    Verdict::Fail(reason) => {
                        if verbose {
                            println!("FAIL ({mode}) {name}:{} {}\n     {reason}", o.line, o.expr);
                        }
                        failures.push((name.clone(), o.line, mode, one_line(reason)));
                    }
                    Verdict::Skipped => {
                        let why = "skipped: not run in this mode".to_string();
                        failures.push((name.clone(), o.line, mode, why));
                    }
                    Verdict::Pass => {}
                }
            }
        }
    }
    row("total", &totals);
    println!(
        "annotations (ad hoc, not part of the verdicts): {} of {} evals with \
         `expect warn|info|no_warn|no_info` meet them",
        annotations.0, annotations.1
    );

    if std::env::var_os("PROMQL_WRITE_BASELINE").is_some() {
        let mut out = String::from(
            "# PromQL conformance baseline: every eval that does not pass, per mode, with why.\n\
             # Checked by dataflows/tests/promql_conformance.rs; regenerate with\n\
             # PROMQL_WRITE_BASELINE=1 cargo test -p dataflows --test promql_conformance\n\
             # file\tline\tmode\treason\n",
        );
        for (file, line, mode, reason) in &failures {
            let reason = match cause(file, *line).filter(|_| !reason.starts_with("skipped")) {
                Some(why) => one_line(&format!("{why}; {reason}")),
                None => reason.clone(),
            };
            let _ = writeln!(out, "{file}\t{line}\t{mode}\t{reason}");
        }
        std::fs::write(BASELINE, out).expect("write baseline");
        return;
    }

    let baseline = read_baseline();
    let current: BTreeSet<(String, usize, String)> = failures
        .iter()
        .map(|(f, l, m, _)| (f.clone(), *l, m.to_string()))
        .collect();
    for fixed in baseline.difference(&current) {
        println!("now passes (remove from the baseline): {fixed:?}");
    }
    let regressions: Vec<String> = failures
        .iter()
        .filter(|(f, l, m, _)| !baseline.contains(&(f.clone(), *l, m.to_string())))
        .map(|(f, l, m, r)| format!("{f}:{l} ({m}): {r}"))
        .collect();
    assert!(
        regressions.is_empty(),
        "{} evals fail that the baseline does not list:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}
