//! Fuzzes the PromQL path of the query API: parse and lower
//! (`dataflows::promql::plan::parse_with`), print (`format_query`, what the rules API
//! and alerts show), then evaluate with the reference evaluator (the one
//! `/api/v1/query` and `/api/v1/query_range` run) as an instant and as a range query
//! over a small fixed data set. Checks only that nothing panics, aborts, or runs
//! without bound.
//!
//! The evaluator has no cancellation and no sample limit yet, so a query such as
//! `x[10y:1ms]` (3·10¹¹ subquery steps) runs for hours here as in the server (where
//! `--query.timeout` answers, but the evaluation goes on). Plans whose subquery steps
//! exceed [`STEP_BUDGET`] are parsed and lowered but not evaluated.
#![no_main]

use dataflows::promql::durations::QueryTimes;
use dataflows::promql::eval::Evaluator;
use dataflows::promql::plan::{self, Plan};
use libfuzzer_sys::fuzz_target;

mod common;

/// Range queries: 0 to 10m, one step a minute (the data set's span).
const START_MS: i64 = 0;
const END_MS: i64 = 600_000;
const STEP_MS: i64 = 60_000;
/// Instant queries: at 5m.
const INSTANT_MS: i64 = 300_000;
/// The evaluator's default subquery step (the server's `evaluation_interval`).
const SUBQUERY_STEP_MS: i64 = 60_000;
/// Most subquery evaluations one query may cost (product over nested subqueries).
const STEP_BUDGET: i64 = 50_000;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = plan::format_query(query);
    let times = QueryTimes {
        step_ms: STEP_MS,
        range_ms: END_MS - START_MS,
    };
    let Ok(plan) = plan::parse_with(query, times) else {
        return;
    };
    let steps = (END_MS - START_MS) / STEP_MS + 1;
    if subquery_steps(&plan).saturating_mul(steps) > STEP_BUDGET {
        return;
    }
    let store = common::data_set();
    let instant = Evaluator::new(store, INSTANT_MS);
    let _ = instant.instant(&plan, INSTANT_MS);
    let mut range = Evaluator::new(store, START_MS);
    range.start_ms = START_MS;
    range.end_ms = END_MS;
    range.step_ms = STEP_MS;
    let _ = range.range(&plan, START_MS, END_MS, STEP_MS);
});

/// How many times the deepest chain of subqueries evaluates its innermost expression
/// per evaluation of `plan` (1 without subqueries).
fn subquery_steps(plan: &Plan) -> i64 {
    match plan {
        Plan::Number(_) | Plan::String(_) | Plan::Vector(_) | Plan::Matrix { .. } => 1,
        Plan::Subquery {
            expr,
            range_ms,
            step_ms,
            ..
        } => {
            let step = step_ms.unwrap_or(SUBQUERY_STEP_MS).max(1);
            ((*range_ms).max(0) / step + 1).saturating_mul(subquery_steps(expr))
        }
        Plan::Call { args, .. } => args.iter().map(subquery_steps).fold(1, i64::saturating_add),
        Plan::Aggregate { expr, param, .. } => {
            subquery_steps(expr).saturating_add(param.as_deref().map_or(0, subquery_steps))
        }
        Plan::Binary { lhs, rhs, .. } => subquery_steps(lhs).saturating_add(subquery_steps(rhs)),
        Plan::Neg(expr) => subquery_steps(expr),
    }
}
