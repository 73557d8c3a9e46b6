//! Conformance: runs Prometheus's PromQL test scripts (`shared/promql-tests/*.test`)
//! through the script reader and the reference evaluator, prints pass / fail /
//! skipped per file, and fails if any file passes fewer evals than its recorded floor
//! in [`FLOORS`] (raise the floors as support grows; never lower them silently).
//!
//! Skipped: evals that touch native histograms (`INDEX.tsv` column
//! `uses_native_histograms`, or a `{{…}}` expected value). Annotation expectations
//! (`expect warn/info…`) are not checked yet. Set `PROMQL_VERBOSE=1` to print every
//! failing eval with its reason.

use dataflows::promql::durations::QueryTimes;
use dataflows::promql::eval::{
    Element, EvalError, Evaluator, Selected, Series, SeriesSource, Value,
};
use dataflows::promql::plan::{self, PlanError};
use dataflows::promql::testscript::{
    parse_script, Command, Eval, EvalTime, Expected, FailMatch, Point,
};
use dataflows::{is_stale_marker, Labels, Selector};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/promql-tests");

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

/// Samples loaded by a script, like upstream's test storage.
#[derive(Default)]
struct MemStorage {
    series: BTreeMap<Arc<Labels>, BTreeMap<i64, f64>>,
    /// Set when a selection returned a native-histogram placeholder sample.
    touched_histogram: std::cell::Cell<bool>,
}

/// Stored in place of a native-histogram sample: a NaN no computation produces.
const HISTOGRAM_BITS: u64 = 0x7ff0_0000_0000_0bad;

impl SeriesSource for MemStorage {
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        self.series
            .iter()
            .filter(|(l, _)| matchers.matches(l))
            .map(|(l, pts)| {
                (
                    l.clone(),
                    pts.range(start_ms..=end_ms)
                        .map(|(t, v)| (*t, *v))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, pts)| !pts.is_empty())
            .inspect(|(_, pts)| {
                if pts.iter().any(|p| p.1.to_bits() == HISTOGRAM_BITS) {
                    self.touched_histogram.set(true);
                }
            })
            .collect()
    }
}

#[derive(Default, Debug)]
struct Counts {
    pass: usize,
    fail: usize,
    skipped: usize,
}

/// Float equality as upstream's runner: NaN equals NaN (stale only equals stale),
/// else relative difference below 1e-6, exact near zero.
fn float_eq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan() && is_stale_marker(a) == is_stale_marker(b);
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

fn expected_floats(points: &[Option<Point>]) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| match p {
            Some(Point::Float(v)) => Some(*v),
            _ => None,
        })
        .collect()
}

fn compare_vector(got: &[Element], exp: &Expected, ordered: bool) -> Result<(), String> {
    let Expected::Series(exp) = exp else {
        return Err(format!("expected a scalar, got a vector of {}", got.len()));
    };
    if got.len() != exp.len() {
        return Err(format!(
            "expected {} elements, got {}: {}",
            exp.len(),
            got.len(),
            show_vector(got)
        ));
    }
    let by_labels: HashMap<&Labels, f64> = got.iter().map(|e| (&*e.labels, e.value)).collect();
    for (i, (labels, points)) in exp.iter().enumerate() {
        let want = expected_floats(points)
            .first()
            .copied()
            .flatten()
            .unwrap_or(f64::NAN);
        let Some(&v) = by_labels.get(labels) else {
            return Err(format!("missing {labels}; got {}", show_vector(got)));
        };
        if !float_eq(v, want) {
            return Err(format!("{labels}: expected {want}, got {v}"));
        }
        if ordered && *got[i].labels != *labels {
            return Err(format!(
                "order: expected {labels} at {i}, got {}",
                got[i].labels
            ));
        }
    }
    Ok(())
}

fn show_vector(v: &[Element]) -> String {
    let items: Vec<String> = v
        .iter()
        .take(4)
        .map(|e| format!("{} {}", e.labels, e.value))
        .collect();
    items.join("; ")
}

fn compare_matrix(got: &[Series], exp: &Expected, start: i64, step: i64) -> Result<(), String> {
    let Expected::Series(exp) = exp else {
        return Err("expected a scalar, got a matrix".into());
    };
    let by_labels: HashMap<&Labels, &Series> = got.iter().map(|s| (&*s.labels, s)).collect();
    let mut seen = HashSet::new();
    for (labels, points) in exp {
        seen.insert(labels);
        let want: Vec<(i64, f64)> = expected_floats(points)
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v)))
            .collect();
        let Some(s) = by_labels.get(labels) else {
            if want.is_empty() {
                continue;
            }
            return Err(format!("missing series {labels}"));
        };
        if s.points.len() != want.len()
            || s.points
                .iter()
                .zip(&want)
                .any(|(g, w)| g.0 != w.0 || !float_eq(g.1, w.1))
        {
            return Err(format!("{labels}: expected {want:?}, got {:?}", s.points));
        }
    }
    for s in got {
        if !seen.contains(&*s.labels) {
            return Err(format!("unexpected series {}", s.labels));
        }
    }
    Ok(())
}

/// Runs one eval; `Ok(())` is a pass.
fn run_eval(store: &MemStorage, e: &Eval) -> Result<(), String> {
    let times = match e.time {
        EvalTime::Instant { .. } => QueryTimes::default(),
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => QueryTimes {
            step_ms,
            range_ms: end_ms - start_ms,
        },
    };
    let plan = match plan::parse_with(&e.expr, times) {
        Ok(p) => p,
        Err(err @ PlanError::NotSupported(_)) => return Err(err.to_string()),
        Err(PlanError::Parse(m)) => return Err(format!("parser limitation: {m}")),
    };
    let result: Result<Value, EvalError> = match e.time {
        EvalTime::Instant { at_ms } => Evaluator::new(store, at_ms).instant(&plan, at_ms),
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let mut ev = Evaluator::new(store, start_ms);
            ev.end_ms = end_ms;
            ev.step_ms = step_ms;
            ev.range(&plan, start_ms, end_ms, step_ms)
                .map(Value::Matrix)
        }
    };
    if let Some(fail) = &e.fail {
        return match (result, fail) {
            (Ok(_), _) => Err("expected failure, got a result".into()),
            (Err(_), FailMatch::Any) => Ok(()),
            (Err(err), FailMatch::Message(m)) if err.0.trim() == m.trim() => Ok(()),
            (Err(err), FailMatch::Regex(r)) if regex_lite_match(r, &err.0) => Ok(()),
            (Err(err), _) => Err(format!("wrong error message: {}", err.0)),
        };
    }
    let value = result.map_err(|err| format!("error: {}", err.0))?;
    if let Some(s) = &e.string {
        return match value {
            Value::String(got) if got == *s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    match (value, &e.time) {
        (Value::Scalar(v), _) => match e.expected {
            Expected::Scalar(want) if float_eq(v, want) => Ok(()),
            _ => Err(format!("got scalar {v}")),
        },
        (Value::Vector(v), _) => compare_vector(&v, &e.expected, e.ordered),
        (
            Value::Matrix(m),
            EvalTime::Range {
                start_ms, step_ms, ..
            },
        ) => compare_matrix(&m, &e.expected, *start_ms, *step_ms),
        (Value::Matrix(m), EvalTime::Instant { .. }) => match e.range_vector {
            Some((start, _, step)) => compare_matrix(&m, &e.expected, start, step),
            None => Err("got a range vector".into()),
        },
        (Value::String(s), _) => Err(format!("got string {s:?}")),
    }
}

fn regex_lite_match(re: &str, text: &str) -> bool {
    // The dataflows crate depends on `regex`; dev code reuses it through a selector.
    dataflows::LabelMatcher::new("x", "=~", &format!(".*(?:{re}).*"))
        .map(|m| m.matches_value(text))
        .unwrap_or(false)
}

/// `(file, line)` pairs INDEX.tsv flags as touching native histograms.
fn histogram_evals() -> HashSet<(String, usize)> {
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

fn run_file(name: &str, text: &str, hist: &HashSet<(String, usize)>, verbose: bool) -> Counts {
    let mut counts = Counts::default();
    let cmds = parse_script(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut store = MemStorage::default();
    for cmd in cmds {
        match cmd {
            Command::Clear { .. } => store = MemStorage::default(),
            Command::Load(load) => {
                for (labels, points) in load.series {
                    let entry = store.series.entry(Arc::new(labels)).or_default();
                    for (i, p) in points.into_iter().enumerate() {
                        let v = match p {
                            Some(Point::Float(v)) => v,
                            Some(Point::Histogram) => f64::from_bits(HISTOGRAM_BITS),
                            None => continue,
                        };
                        entry.insert(i as i64 * load.interval_ms, v);
                    }
                }
            }
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
    let Ok(entries) = std::fs::read_dir(DIR) else {
        println!("no conformance data at {DIR}; skipping");
        return;
    };
    let verbose = std::env::var_os("PROMQL_VERBOSE").is_some();
    let hist = histogram_evals();
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
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
