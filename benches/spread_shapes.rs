//! Issue 14: how many real-world rule shapes run spread over the workers
//! (`dataflows::render::spread`), and which stay on one owner worker.
//!
//! The shapes: every query of the PromQL compliance tester's templates
//! (`../shared/promql-compliance/promql-test-queries.yml`, expanded over the values of
//! `VARIANTS.md`, the ones marked `should_fail` left out) and every rule of the rule
//! files promflow ships (`queries/*.yml`). Each is analysed as an interval rule,
//! incremental, with spread joins, on 2 workers, as the engine analyses a registration
//! ([`RuleSpec::analyse`]): spread, owned, or reading no series (nothing to spread).
//! Not a speed: a count, printed per source; `SHAPES_LIST=1` lists the owned ones.
//!
//! Run: `cargo bench --bench spread_shapes`.

use dataflows::promql::plan::parse;
use dataflows::render::rule::{RuleDef, RuleSpec};
use dataflows::{Delivery, Evaluation, RuleId, RuleSchedule};
use std::collections::BTreeMap;
use std::path::Path;

/// The compliance tester's placeholder values (`VARIANTS.md`).
const VARIANTS: &[(&str, &str)] = &[
    ("range", "1s 15s 1m 5m 15m 1h"),
    ("offset", "1m 5m 10m"),
    ("simpleAggrOp", "sum avg max min count stddev stdvar"),
    (
        "simpleTimeAggrOp",
        "sum avg max min count stddev stdvar absent last",
    ),
    ("topBottomOp", "topk bottomk"),
    ("quantile", "-0.5 0.1 0.5 0.75 0.95 0.90 0.99 1 1.5"),
    ("arithBinOp", "+ - * / % ^"),
    ("compBinOp", "== != < > <= >="),
    ("binOp", "+ - * / % ^ == != < > <= >="),
    (
        "simpleMathFunc",
        "abs ceil floor exp sqrt ln log2 log10 round",
    ),
    ("extrapolatedRateFunc", "delta rate increase"),
    ("clampFunc", "clamp_min clamp_max"),
    ("instantRateFunc", "idelta irate"),
    (
        "dateFunc",
        "day_of_month day_of_week days_in_month hour minute month year",
    ),
    ("smoothingFactor", "0.1 0.5 0.8"),
    ("trendFactor", "0.1 0.5 0.8"),
];

/// `query` with its `{{.name}}` placeholders replaced by every combination of values.
fn expand(query: &str) -> Vec<String> {
    let mut out = vec![query.to_string()];
    for (name, values) in VARIANTS {
        let placeholder = format!("{{{{.{name}}}}}");
        if !query.contains(&placeholder) {
            continue;
        }
        out = out
            .iter()
            .flat_map(|q| values.split(' ').map(|v| q.replace(&placeholder, v)))
            .collect();
    }
    out
}

/// The compliance queries (expanded), the shipped rules' expressions.
fn shapes(repo: &Path) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let file = repo.join("../shared/promql-compliance/promql-test-queries.yml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("compliance yaml");
    for case in doc["test_cases"].as_sequence().expect("test_cases") {
        if case["should_fail"].as_bool() == Some(true) {
            continue;
        }
        let query = case["query"].as_str().expect("a query");
        out.extend(expand(query).into_iter().map(|q| ("compliance", q)));
    }
    let mut files: Vec<_> = std::fs::read_dir(repo.join("queries"))
        .expect("queries/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("a rule file");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("rule yaml");
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                if let Some(expr) = rule["expr"].as_str() {
                    out.push(("shipped rules", expr.to_string()));
                }
            }
        }
    }
    out
}

/// How the engine would run `query` as an interval rule on 2 workers.
fn placement(query: &str) -> &'static str {
    let Ok(plan) = parse(query) else {
        return "does not parse";
    };
    let def = RuleDef {
        id: RuleId(1),
        plan,
        schedule: RuleSchedule::Interval {
            start_ms: 0,
            every_ms: 15_000,
        },
        evaluation: Evaluation::Incremental,
        delivery: Delivery::Whole,
        registered_at_ms: 0,
        lookback_ms: 300_000,
        home_process: 0,
        process_workers: 2,
        spread_joins: true,
        spread_owner_bound: false,
        seeded: false,
        alerting: None,
    };
    match RuleSpec::analyse(&def, 2) {
        Ok(spec) if spec.spread.is_some() => "spread",
        Ok(spec) if spec.uses.is_empty() => "reads no series",
        Ok(_) => "owned",
        Err(_) => "refused",
    }
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = std::env::var("SHAPES_LIST").is_ok_and(|v| v == "1");
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (source, query) in shapes(repo) {
        let how = placement(&query);
        *counts.entry((source, how)).or_default() += 1;
        if list && how == "owned" {
            println!("owned\t{source}\t{query}");
        }
    }
    println!("spread_shapes: interval rules, incremental, 2 workers, spread joins");
    println!("| source | placement | shapes |");
    println!("| --- | --- | --- |");
    for ((source, how), n) in counts {
        println!("| {source} | {how} | {n} |");
    }
}
