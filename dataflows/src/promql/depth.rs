//! How deep a PromQL expression may nest, and the stack it is parsed on.
//!
//! Parsing and every walk of an expression (promql-parser's own type checks, its
//! `Display` and `Drop` of the AST, the pre-parse rewrites, lowering, evaluation,
//! rendering, and `Drop` / `Clone` of the [`Plan`]) recurse once per level of
//! nesting. Unbounded, `((((…1…))))` 5,000 deep overflowed a 2 MiB thread stack and
//! aborted the process. The bounds, checked before anything recursive runs:
//!
//! 1. [`check_text`]: a scan of the raw text bounds the depth of the AST it parses
//!    to (brackets, plus every operator of each enclosing level, see [`text_depth`])
//!    and refuses more than [`MAX_TEXT_DEPTH`]. What passes is parsed and lowered by
//!    [`on_parse_stack`] on a thread whose stack ([`PARSE_STACK_BYTES`]) holds that
//!    depth with a wide margin; text at most [`SHALLOW_TEXT_DEPTH`] deep (every real
//!    query) is parsed on the calling thread instead.
//! 2. [`check_plan`]: the lowered [`Plan`] (parentheses gone, `-1` folded into a
//!    literal as Prometheus does) is refused when it nests deeper than
//!    [`MAX_PLAN_DEPTH`], a depth every walk of a plan handles on a default 2 MiB
//!    thread stack (tokio workers, timely workers), so plans can go anywhere.
//! 3. Ad-hoc queries only: [`crate::promql::plan::parse_query_with`] lets the plan nest
//!    as deep as the text ([`MAX_TEXT_DEPTH`]), so that `1+1+…+1` with 10,000 terms is
//!    answered as Prometheus answers it. Such a plan is a [`QueryPlan`]: evaluated on
//!    a thread of [`QUERY_STACK_BYTES`] (the query API starts one per deep query;
//!    a [`QueryPlan::is_shallow`] plan is evaluated where the request is served) and
//!    dropped on one wherever its owner lets it go; it never reaches rules, views or
//!    the dataflow.
//!
//! Contract: [`crate::promql::plan::parse_with`] and
//! [`crate::promql::plan::format_query`] apply 1 and 2,
//! [`crate::promql::plan::parse_query_with`] 1 and 3; an expression over a limit is a
//! parse error that names the limit (`expression nesting depth 100001 exceeds the
//! limit of 10000`), never a stack overflow. Prometheus 2.42 (Go, growable stacks)
//! answers 10,000- and 100,000-deep parentheses and unary minus; promflow answers
//! 10,000 and refuses 100,000.

use crate::promql::plan::{Plan, PlanError};
use crate::promql::rewrite::{lex, Kind};
use promql_parser::parser::Expr;

/// The deepest AST (as bounded by [`text_depth`]) promflow parses: 10,000 nested
/// parentheses or unary minus signs parse, as in Prometheus.
pub const MAX_TEXT_DEPTH: usize = 10_000;

/// The deepest lowered plan promflow evaluates or maintains (a leaf is depth 0).
///
/// Plans are evaluated on tokio's worker threads (the query API, in `block_in_place`)
/// and rule threads, and rendered on timely's worker threads, all with Rust's default
/// 2 MiB stack. Measured on 2 MiB (debug build,
/// whose frames are the largest): a chain of subqueries
/// (`max_over_time(max_over_time(x[1m:])[1m:])`, two plan levels per subquery) is
/// evaluated at depth 200 and overflows at 400; binary chains overflow rendering at
/// 600. 100 keeps the worst case near half the stack; real queries nest a few levels.
pub const MAX_PLAN_DEPTH: usize = 100;

/// The stack of the thread an ad-hoc query is evaluated on (by the query API): its
/// plan may nest [`MAX_TEXT_DEPTH`] levels. Measured (debug build, whose frames are the
/// largest, 10,000 levels): binary chains (`+`, `or`, `* on()`, `^`), unary minus,
/// nested calls, aggregations and subqueries, evaluated as instant and range queries
/// and dropped, fit in 128 MiB (nested calls, the deepest frames, overflow 64 MiB);
/// 256 MiB is twice that. Only the pages touched are committed; the thread ends with
/// the query.
pub const QUERY_STACK_BYTES: usize = 256 << 20;

/// The stack of the thread [`on_parse_stack`] runs on. Measured (debug build): parsing,
/// printing and lowering `1+1+…+1` with 10,000 operators (the most stack per level of
/// the shapes tried: parentheses, unary minus, calls, aggregations, subqueries) needs
/// between 64 and 128 MiB; 256 MiB leaves twice that. Only the pages touched are
/// committed, and the thread ends with the parse.
pub const PARSE_STACK_BYTES: usize = 256 << 20;

/// Text at most this deep (by [`text_depth`]) is parsed and lowered on the calling
/// thread, and its query plan is evaluated there: 64 levels at the parse measurement
/// above (at most 128 MiB for 10,000 levels, 13.4 KiB a level) take under 1 MiB of a
/// 2 MiB stack, and its plan nests less than [`MAX_PLAN_DEPTH`]. A thread per parse
/// and per query cost a wake-up per hand-off, which on a loaded machine is
/// milliseconds a query (`benches/compare.rs` at 100k series, load 3 to 6: the alert
/// expression answered in 7.3 ms p50 against 0.7 ms on an idle machine).
pub const SHALLOW_TEXT_DEPTH: usize = 64;

/// Operators written as words.
const WORD_OPERATORS: [&str; 4] = ["and", "or", "unless", "atan2"];

/// An upper bound of how deep the AST of `query` nests, from its tokens alone.
///
/// Every AST node is a bracket pair (call, aggregation, parentheses, matchers), a
/// `[…]` wrapping the operand before it (range, subquery), or an operator (unary or
/// binary). Along any path from the root to a leaf, the nodes are the brackets that
/// enclose the leaf and at most every operator and `[…]` of each level those
/// brackets open (and of the top level), so the bound is the deepest such sum. It
/// overcounts (a `-` in `1e-3` or `offset -5m`, a `<` in `<=`), never undercounts.
pub fn text_depth(query: &str) -> usize {
    let tokens = lex(query);
    // Per open level: operators (and `[…]` wrappers) in it, deepest closed child.
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    let punct = |i: usize| match tokens.get(i).map(|t| t.kind) {
        Some(Kind::Punct(c)) => Some(c),
        _ => None,
    };
    for (i, t) in tokens.iter().enumerate() {
        let operator = match t.kind {
            Kind::Punct('(' | '[' | '{') => {
                levels.push((0, 0));
                false
            }
            Kind::Punct(c @ (')' | ']' | '}')) => {
                if levels.len() > 1 {
                    let (ops, child) = levels.pop().unwrap_or_default();
                    let parent = levels.last_mut().expect("the top level stays");
                    parent.1 = parent.1.max(1 + ops + child);
                    // `x[5m]`, `x[5m:1m]` wrap the operand before them.
                    parent.0 += usize::from(c == ']');
                }
                false
            }
            Kind::Punct('+' | '-' | '*' | '/' | '%' | '^' | '<' | '>') => true,
            // `==` and `!=` (not `=`, `=~`, `!~` of matchers).
            Kind::Punct('=' | '!') => punct(i + 1) == Some('='),
            Kind::Ident => {
                let w = &query[t.start..t.end];
                WORD_OPERATORS.iter().any(|k| k.eq_ignore_ascii_case(w))
            }
            _ => false,
        };
        if operator {
            levels.last_mut().expect("the top level stays").0 += 1;
        }
    }
    // Close what is left open (the parser reports it), innermost first.
    while levels.len() > 1 {
        let (ops, child) = levels.pop().unwrap_or_default();
        let parent = levels.last_mut().expect("the top level stays");
        parent.1 = parent.1.max(1 + ops + child);
    }
    let (ops, child) = levels[0];
    ops + child
}

/// Refuses text whose AST could nest deeper than [`MAX_TEXT_DEPTH`]; else the bound
/// of [`text_depth`], for [`on_parse_stack`].
pub fn check_text(query: &str) -> Result<usize, PlanError> {
    let depth = text_depth(query);
    too_deep(depth, MAX_TEXT_DEPTH)?;
    Ok(depth)
}

/// How deep a plan nests (a leaf is 0), walked without recursion.
pub fn plan_depth(plan: &Plan) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(plan, 0)];
    while let Some((p, d)) = stack.pop() {
        deepest = deepest.max(d);
        match p {
            Plan::Number(_) | Plan::String(_) | Plan::Vector(_) | Plan::Matrix { .. } => {}
            Plan::Subquery { expr, .. } | Plan::Neg(expr) => stack.push((expr, d + 1)),
            Plan::Call { args, .. } => stack.extend(args.iter().map(|a| (a, d + 1))),
            Plan::Aggregate { expr, param, .. } => {
                stack.push((expr, d + 1));
                stack.extend(param.iter().map(|p| (&**p, d + 1)));
            }
            Plan::Binary { lhs, rhs, .. } => {
                stack.push((lhs, d + 1));
                stack.push((rhs, d + 1));
            }
        }
    }
    deepest
}

/// Refuses a plan deeper than [`MAX_PLAN_DEPTH`].
pub fn check_plan(plan: &Plan) -> Result<(), PlanError> {
    too_deep(plan_depth(plan), MAX_PLAN_DEPTH)
}

fn too_deep(depth: usize, limit: usize) -> Result<(), PlanError> {
    if depth > limit {
        return Err(PlanError::Parse(format!(
            "expression nesting depth {depth} exceeds the limit of {limit}"
        )));
    }
    Ok(())
}

/// Runs `f`, which parses text [`check_text`] found `depth` deep, and returns its
/// result: on the calling thread when the text is at most [`SHALLOW_TEXT_DEPTH`] deep,
/// else on a thread with a [`PARSE_STACK_BYTES`] stack (a panic in `f` is resumed here).
pub fn on_parse_stack<T: Send>(depth: usize, f: impl FnOnce() -> T + Send) -> Result<T, PlanError> {
    if depth <= SHALLOW_TEXT_DEPTH {
        return Ok(f());
    }
    on_thread("promql-parse", PARSE_STACK_BYTES, f)
}

/// Runs `f` on a thread named `name` with a `stack_bytes` stack and waits for it.
fn on_thread<T: Send>(
    name: &str,
    stack_bytes: usize,
    f: impl FnOnce() -> T + Send,
) -> Result<T, PlanError> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.into())
            .stack_size(stack_bytes)
            .spawn_scoped(scope, f)
            .map_err(|e| PlanError::Parse(format!("cannot start the parser thread: {e}")))?;
        match thread.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A query's plan that may nest deeper than [`MAX_PLAN_DEPTH`] (up to
/// [`MAX_TEXT_DEPTH`]): walk it only on a thread of [`QUERY_STACK_BYTES`]; dropped
/// anywhere, it is dropped on a thread with the stack for it.
#[derive(Debug)]
pub struct QueryPlan {
    plan: Option<Plan>,
    /// Nests deeper than [`MAX_PLAN_DEPTH`].
    deep: bool,
}

impl QueryPlan {
    /// Wraps a plan (bounded by [`MAX_TEXT_DEPTH`] already).
    pub fn new(plan: Plan) -> QueryPlan {
        let deep = plan_depth(&plan) > MAX_PLAN_DEPTH;
        QueryPlan {
            plan: Some(plan),
            deep,
        }
    }

    /// The plan, to walk on a thread of [`QUERY_STACK_BYTES`] unless
    /// [`QueryPlan::is_shallow`].
    pub fn plan(&self) -> &Plan {
        self.plan
            .as_ref()
            .expect("a QueryPlan holds its plan until dropped")
    }

    /// Nests at most [`MAX_PLAN_DEPTH`]: any thread with a 2 MiB stack may walk it.
    pub fn is_shallow(&self) -> bool {
        !self.deep
    }
}

impl Drop for QueryPlan {
    fn drop(&mut self) {
        if let Some(plan) = self.plan.take() {
            if self.deep {
                // `Drop` of a plan recurses once per level.
                let _ = on_thread("promql-drop", QUERY_STACK_BYTES, move || drop(plan));
            }
        }
    }
}

/// Parses `text` with promql-parser under the limit of [`check_text`] and hands its AST
/// to `f`, both on the parse thread (where the AST is also dropped): for callers that
/// read the AST themselves (series selectors).
pub fn parse_ast<T: Send, E: Send + From<AstError>>(
    text: &str,
    f: impl FnOnce(Expr) -> Result<T, E> + Send,
) -> Result<T, E> {
    let depth = check_text(text).map_err(AstError::Limit)?;
    let parse_and_read = || match promql_parser::parser::parse(text) {
        Ok(expr) => f(expr),
        Err(message) => Err(AstError::Syntax(message).into()),
    };
    on_parse_stack(depth, parse_and_read).map_err(AstError::Limit)?
}

/// Why [`parse_ast`] has no AST to hand over.
#[derive(Clone, Debug, PartialEq)]
pub enum AstError {
    /// The text nests too deep, or the parse thread could not start.
    Limit(PlanError),
    /// promql-parser's message, as it words it.
    Syntax(String),
}

impl std::fmt::Display for AstError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AstError::Limit(e) => e.fmt(f),
            AstError::Syntax(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AstError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AstError::Limit(e) => Some(e),
            AstError::Syntax(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::eval::Evaluator;
    use crate::promql::plan::parse;
    use crate::promql::testscript::store::MemStorage;
    use crate::render::RuleSchedule;
    use crate::{Engine, EngineConfig, Labels};
    use std::sync::Arc;

    #[test]
    fn bounds_nesting_from_the_text() {
        for (q, want) in [
            ("1", 0),
            ("(1)", 1),
            ("((1))", 2),
            ("---1", 3),
            ("1+1+1", 2),
            ("(1)+1+1", 3),
            ("-(-(1))", 4),
            ("sum by (a) (rate(x{a=\"(((\"}[5m]))", 4),
            ("x[5m:1m]", 2),
            ("a == b and c != d", 3),
            ("x{a=~\"b\", c!~\"d\"} # ((((", 1),
            ("((((1", 4),
            ("1))))", 0),
        ] {
            assert_eq!(text_depth(q), want, "{q}");
        }
    }

    /// `n` levels of one shape around a leaf.
    fn nested(kind: &str, n: usize) -> String {
        match kind {
            "paren" => format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            "neg" => format!("{}1", "-".repeat(n)),
            "binary" => vec!["x"; n + 1].join("+"),
            "neg_vector" => format!("{}x{}", "-(".repeat(n), ")".repeat(n)),
            "call" => format!("{}x{}", "abs(".repeat(n), ")".repeat(n)),
            "sum" => format!("{}x{}", "sum(".repeat(n), ")".repeat(n)),
            "subquery" => format!("{}x{}", "max_over_time(".repeat(n), "[1m:])".repeat(n)),
            _ => unreachable!("{kind}"),
        }
    }

    #[test]
    fn deep_text_is_refused_before_parsing_and_names_the_limit() {
        for kind in ["paren", "neg", "binary", "call", "subquery"] {
            let err = parse(&nested(kind, 100_000)).unwrap_err().to_string();
            assert!(
                err.starts_with("parse error: expression nesting depth ")
                    && err.ends_with(&format!("exceeds the limit of {MAX_TEXT_DEPTH}")),
                "{kind}: {err}"
            );
        }
    }

    #[test]
    fn ten_thousand_parentheses_or_minus_signs_parse_like_prometheus() {
        // Prometheus 2.42 answers 1 for both (an even number of minus signs).
        for kind in ["paren", "neg"] {
            let plan = parse(&nested(kind, MAX_TEXT_DEPTH)).unwrap();
            assert!(
                matches!(plan, Plan::Number(v) if v == 1.0),
                "{kind}: {plan:?}"
            );
        }
        let err = parse(&nested("paren", MAX_TEXT_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("limit of 10000"), "{err}");
    }

    #[test]
    fn the_recursive_helpers_before_the_parser_run_on_the_parse_stack() {
        let n = MAX_TEXT_DEPTH - 1;
        // A syntax error 10,000 levels deep goes through the error recognizer.
        let broken = format!("{}1 +{}", "(".repeat(n), ")".repeat(n));
        let err = parse(&broken).unwrap_err().to_string();
        assert!(err.contains("parse error"), "{err}");
        // Duration arithmetic is rewritten by a recursive-descent reader (`[…]` and
        // the range it wraps count two levels).
        let n = MAX_TEXT_DEPTH - 2;
        let range = format!("x[{}5m{}]", "(".repeat(n), ")".repeat(n));
        let Plan::Matrix { range_ms, .. } = parse(&range).unwrap() else {
            panic!("not a range selector");
        };
        assert_eq!(range_ms, 300_000);
    }

    #[test]
    fn plans_over_the_limit_are_refused_after_lowering() {
        for kind in ["binary", "neg_vector", "call", "sum"] {
            assert_eq!(
                plan_depth(&parse(&nested(kind, MAX_PLAN_DEPTH)).unwrap()),
                100
            );
            let err = parse(&nested(kind, 5_000)).unwrap_err().to_string();
            assert!(
                err.ends_with(&format!("exceeds the limit of {MAX_PLAN_DEPTH}")),
                "{kind}: {err}"
            );
        }
    }

    /// The deepest plans allowed are evaluated (instant and range), cloned, dropped and
    /// rendered into the dataflow on 2 MiB stacks, as tokio's and timely's threads have.
    #[test]
    fn the_deepest_plans_run_on_default_thread_stacks() {
        let engine = Engine::start(EngineConfig {
            workers: 1,
            lookback_ms: 300_000,
            cluster: None,
            spread_joins: false,
            spread_owner_bound: false,
        })
        .unwrap();
        for (kind, levels) in [
            ("binary", MAX_PLAN_DEPTH),
            ("neg_vector", MAX_PLAN_DEPTH),
            ("call", MAX_PLAN_DEPTH),
            ("sum", MAX_PLAN_DEPTH),
            ("subquery", MAX_PLAN_DEPTH / 2),
        ] {
            let plan = parse(&nested(kind, levels)).unwrap();
            assert_eq!(plan_depth(&plan), MAX_PLAN_DEPTH, "{kind}");
            let rendered = plan.clone();
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn_scoped(s, move || {
                        let x = Labels::from_pairs(vec![("__name__".into(), "x".into())]);
                        let mut store = MemStorage::default();
                        let samples = (0..100).map(|i| (i * 15_000, i as f64)).collect();
                        store.series.insert(Arc::new(x), samples);
                        let store = &store;
                        let at = Evaluator::new(store, 600_000).instant(&plan, 600_000);
                        let over = Evaluator::new(store, 0).range(&plan, 0, 600_000, 60_000);
                        assert!(at.is_ok() && over.is_ok(), "{kind}");
                        drop(plan.clone());
                    })
                    .unwrap()
                    .join()
                    .unwrap()
            });
            let rule = engine.register(rendered, RuleSchedule::At { at_ms: 1_000 });
            assert!(rule.is_ok(), "{kind}");
        }
    }

    /// Query plans as deep as the text allows are evaluated (instant and range) and
    /// dropped on half of [`QUERY_STACK_BYTES`]; dropped elsewhere, a
    /// [`QueryPlan`] goes to a big stack by itself.
    #[test]
    fn the_deepest_query_plans_run_on_half_the_query_stack() {
        use crate::promql::durations::QueryTimes;
        use crate::promql::plan::parse_query_with;
        let n = MAX_TEXT_DEPTH;
        for query in [
            vec!["1"; n + 1].join("+"),
            vec!["x"; n + 1].join("+"),
            vec!["x"; n + 1].join(" or "),
            vec!["x"; n].join(" * on() "),
            vec!["2"; n + 1].join("^"),
            nested("neg_vector", n / 2),
            nested("call", n - 1),
            nested("sum", n - 1),
            nested("subquery", n / 2 - 1),
        ] {
            let plan = parse_query_with(&query, QueryTimes::default()).unwrap();
            assert!(plan_depth(plan.plan()) > MAX_PLAN_DEPTH, "{}", &query[..20]);
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .stack_size(QUERY_STACK_BYTES / 2)
                    .spawn_scoped(s, || {
                        let x = Labels::from_pairs(vec![("__name__".into(), "x".into())]);
                        let mut store = MemStorage::default();
                        let samples = (0..100).map(|i| (i * 15_000, 1.0)).collect();
                        store.series.insert(Arc::new(x), samples);
                        let store = &store;
                        let at = Evaluator::new(store, 600_000).instant(plan.plan(), 600_000);
                        let over = Evaluator::new(store, 0).range(plan.plan(), 0, 600_000, 60_000);
                        assert!(at.is_ok() && over.is_ok(), "{}", &query[..20]);
                        drop(plan);
                    })
                    .unwrap()
                    .join()
                    .unwrap()
            });
        }
        // Dropped on this (test) thread's stack: handed to a big one.
        let plan = parse_query_with(&vec!["x"; n + 1].join("+"), QueryTimes::default());
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn_scoped(s, move || drop(plan))
                .unwrap()
                .join()
                .unwrap()
        });
    }
}
