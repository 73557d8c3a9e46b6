//! The PromQL plan: an explicit tree lowered from promql-parser's AST.
//!
//! Owns parsing ([`parse`]) and lowering. The plan is what evaluators (the reference
//! evaluator in `eval/`, later the maintained dataflow operators) consume; it holds
//! resolved values (milliseconds, anchored matchers, operator enums), never AST types.
//!
//! Contract: every construct either lowers to a [`Plan`] or returns
//! [`PlanError::NotSupported`] / [`PlanError::Parse`] / [`PlanError::Invalid`];
//! lowering never panics.
//!
//! promql-parser 0.11 workarounds (constructs affected):
//! - Duration arithmetic (`[5m+1m]`, `[step()]`, `offset min_of(step(), 1s)`) is
//!   rejected; [`parse_with`] first rewrites it to literals (`durations.rs`).
//! - The `anchored` / `smoothed` selector modifiers, an `info()` data-label selector
//!   that matches the empty label set (`info(x, {l=~".*"})`), and `holt_winters`
//!   (the Prometheus 2.x name of `double_exponential_smoothing`) are rejected;
//!   [`parse_with`] rewrites them before parsing (`rewrite.rs`) and lowering takes
//!   the marker matchers back out (into [`VectorSel::modifier`]).
//! - The native-histogram trim operators `</` and `>/` are unknown to it; [`parse_with`]
//!   rewrites each to `<` / `>` (same precedence and associativity) and lowering
//!   turns those nodes back into [`BinOp::TrimUpper`] / [`BinOp::TrimLower`]
//!   (`trim.rs`).

use crate::promql::depth;
use crate::promql::durations::{self, QueryTimes};
use crate::promql::parse_error;
use crate::promql::rewrite;
use crate::promql::trim;
use crate::selector::{LabelMatcher, MatchKind, MatcherError, Selector};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self as ast, Expr};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why an expression cannot be planned.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanError {
    /// The text does not parse.
    Parse(String),
    /// The text does not parse, and where: 1-based line and column (in bytes), as
    /// Prometheus reports (`1:8: parse error: unclosed left parenthesis`).
    ParseAt {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// A label matcher of a selector is refused (a regex that does not compile).
    Matcher(MatcherError),
    /// It parses but uses something not implemented yet.
    NotSupported(String),
    /// It parses but Prometheus rejects it when the query is created (e.g. `smoothed`
    /// on a function that cannot use it); the message is Prometheus's.
    Invalid(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Parse(m) => write!(f, "parse error: {m}"),
            PlanError::ParseAt { line, col, message } => {
                write!(f, "{line}:{col}: parse error: {message}")
            }
            PlanError::Matcher(e) => write!(f, "parse error: {e}"),
            PlanError::NotSupported(m) => write!(f, "not supported: {m}"),
            PlanError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlanError::Matcher(e) => Some(e),
            _ => None,
        }
    }
}

impl From<MatcherError> for PlanError {
    fn from(e: MatcherError) -> PlanError {
        PlanError::Matcher(e)
    }
}

/// An `@` modifier.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum At {
    /// `@ <timestamp>`, in ms.
    Ms(i64),
    /// `@ start()`.
    Start,
    /// `@ end()`.
    End,
}

/// The `anchored` / `smoothed` selector modifiers (Prometheus 3.x, experimental).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorModifier {
    /// `x[5m] anchored`: the window also takes the last sample at or before its start
    /// (looking back at most the lookback delta).
    Anchored,
    /// `x[5m] smoothed` / `x smoothed`: values at the window edges (or at the instant)
    /// are interpolated between the neighbouring samples, which may lie up to the
    /// lookback delta outside.
    Smoothed,
}

impl SelectorModifier {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            SelectorModifier::Anchored => "anchored",
            SelectorModifier::Smoothed => "smoothed",
        }
    }

    /// The functions whose range argument may carry the modifier.
    pub fn functions(self) -> &'static [&'static str] {
        match self {
            SelectorModifier::Anchored => &["changes", "delta", "increase", "rate", "resets"],
            SelectorModifier::Smoothed => &["delta", "increase", "rate"],
        }
    }
}

/// An instant vector selector with its modifiers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VectorSel {
    /// The matchers, including `__name__` when a name was written.
    pub selector: Selector,
    /// `offset`, in ms (negative for `offset -5m`).
    pub offset_ms: i64,
    /// `@`, if given.
    pub at: Option<At>,
    /// `anchored` / `smoothed`, if given.
    pub modifier: Option<SelectorModifier>,
}

impl VectorSel {
    /// How much further than the plain selector this one reads, `(before, after)` in
    /// ms: `anchored` reaches one lookback delta before a range window, `smoothed` one
    /// before and one after (an instant `smoothed` selector: one after).
    pub fn extra_reads(&self, lookback_ms: i64, range: bool) -> (i64, i64) {
        match (self.modifier, range) {
            (None, _) => (0, 0),
            (Some(SelectorModifier::Anchored), _) => (lookback_ms, 0),
            (Some(SelectorModifier::Smoothed), true) => (lookback_ms, lookback_ms),
            (Some(SelectorModifier::Smoothed), false) => (0, lookback_ms),
        }
    }
}

/// Aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
    Limitk,
    LimitRatio,
}

/// `by (…)` / `without (…)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Grouping {
    /// `by (labels)`; an aggregation with no clause is `By(vec![])`.
    By(Vec<String>),
    /// `without (labels)`.
    Without(Vec<String>),
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
    /// `</`: a histogram's observations above the bound removed.
    TrimUpper,
    /// `>/`: a histogram's observations below the bound removed.
    TrimLower,
}

impl BinOp {
    /// `== != > < >= <=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    /// `and or unless`.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// `</ >/` (native-histogram trim).
    pub fn is_trim(self) -> bool {
        matches!(self, BinOp::TrimUpper | BinOp::TrimLower)
    }

    /// Whether the result keeps the metric name: comparisons without `bool` and the
    /// trim operators (Prometheus's `changesMetricSchema` is false for them).
    pub fn keeps_name(self, return_bool: bool) -> bool {
        (self.is_comparison() && !return_bool) || self.is_trim()
    }
}

/// Vector matching of a binary operation between two vectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matching {
    /// `on(…)` when true, `ignoring(…)` (or nothing) when false.
    pub on: bool,
    /// The listed labels.
    pub labels: Vec<String>,
    /// Cardinality.
    pub card: Card,
    /// `fill_left(v)` / `fill(v)`: value used for a missing left-hand element.
    pub fill_lhs: Option<f64>,
    /// `fill_right(v)` / `fill(v)`: value used for a missing right-hand element.
    pub fill_rhs: Option<f64>,
}

/// Matching cardinality.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Card {
    /// Default for arithmetic and comparison.
    OneToOne,
    /// `group_left(include…)`.
    ManyToOne(Vec<String>),
    /// `group_right(include…)`.
    OneToMany(Vec<String>),
    /// Set operators.
    ManyToMany,
}

/// A planned PromQL expression.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Plan {
    /// A number literal.
    Number(f64),
    /// A string literal.
    String(String),
    /// `metric{…} offset … @ …`.
    Vector(VectorSel),
    /// `metric{…}[range] …`.
    Matrix {
        /// The selector and its modifiers.
        sel: VectorSel,
        /// Range in ms.
        range_ms: i64,
    },
    /// `expr[range:step] offset … @ …`.
    Subquery {
        /// The inner expression.
        expr: Box<Plan>,
        /// Range in ms.
        range_ms: i64,
        /// Step in ms; `None` uses the default evaluation interval.
        step_ms: Option<i64>,
        /// Offset in ms.
        offset_ms: i64,
        /// `@`, if given.
        at: Option<At>,
    },
    /// A function call; the name is one the evaluator knows.
    Call {
        /// Function name (aliases resolved).
        #[serde(with = "function_name")]
        func: FunctionName,
        /// Arguments.
        args: Vec<Plan>,
    },
    /// An aggregation.
    Aggregate {
        /// The operator.
        op: AggOp,
        /// The aggregated expression.
        expr: Box<Plan>,
        /// `k`, `φ` or the label name of count_values.
        param: Option<Box<Plan>>,
        /// Grouping.
        grouping: Grouping,
    },
    /// A binary operation.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Plan>,
        /// Right operand.
        rhs: Box<Plan>,
        /// Vector matching, when both sides are vectors.
        matching: Option<Matching>,
        /// The `bool` modifier.
        return_bool: bool,
    },
    /// Unary minus.
    Neg(Box<Plan>),
}

/// A function name of [`FUNCTIONS`] (an alias, so serde does not take the field for a
/// string borrowed from its input).
pub type FunctionName = &'static str;

/// A [`Plan::Call`]'s function name as data: written as a string, read back as the
/// `&'static str` of [`FUNCTIONS`] (a plan crosses processes in a rule change).
mod function_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(func: &&'static str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(func)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        let name = String::deserialize(d)?;
        super::FUNCTIONS
            .iter()
            .find(|f| **f == name)
            .copied()
            .ok_or_else(|| serde::de::Error::custom(format!("unknown function {name:?}")))
    }
}

/// Functions the evaluator implements; a call to anything else is `not supported`.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "end",
    "first_over_time",
    "max_of",
    "min_of",
    "range",
    "start",
    "step",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "double_exponential_smoothing",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_quantiles",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "hour",
    "idelta",
    "increase",
    "info",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start_timestamp",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Parses and lowers a PromQL expression of an instant query.
pub fn parse(query: &str) -> Result<Plan, PlanError> {
    parse_with(query, QueryTimes::default())
}

/// Parses and lowers a PromQL expression; `times` gives `step()` and `range()` for
/// duration expressions.
///
/// The nesting limits of `depth.rs` are checked first; parsing and lowering run on its
/// parse thread, and the plan returned is one any thread can walk.
pub fn parse_with(query: &str, times: QueryTimes) -> Result<Plan, PlanError> {
    parse_on_stack(query, times, depth::check_plan)
}

/// Parses and lowers an ad-hoc query: as [`parse_with`], but the plan may nest as
/// deep as the text does, so it comes as a [`depth::QueryPlan`] (evaluated on a thread
/// of [`depth::QUERY_STACK_BYTES`]).
pub fn parse_query_with(query: &str, times: QueryTimes) -> Result<depth::QueryPlan, PlanError> {
    // Bounded by the text already (`check_text`).
    parse_on_stack(query, times, |_| Ok(())).map(depth::QueryPlan::new)
}

fn parse_on_stack(
    query: &str,
    times: QueryTimes,
    check: fn(&Plan) -> Result<(), PlanError>,
) -> Result<Plan, PlanError> {
    let text_depth = depth::check_text(query)?;
    depth::on_parse_stack(text_depth, || {
        let text = rewrite::rewrite(&durations::rewrite(query, times));
        let (text, trims) = trim::rewrite(&text);
        let mut expr = ast::parse(&text).map_err(|m| parse_error::syntax_error(query, m))?;
        trim::restore(&mut expr, &trims, &text)?;
        let plan = lower(&expr)?;
        check(&plan)?;
        Ok(plan)
    })?
}

/// The expression as Prometheus prints a parsed query (`parser.Expr.String()`, which
/// its rules API and alerts' `generatorURL` show); the text as written when it needs
/// one of promflow's rewrites (or durations arithmetic) to parse.
pub fn format_query(query: &str) -> String {
    let Ok(text_depth) = depth::check_text(query) else {
        return query.to_string();
    };
    depth::on_parse_stack(text_depth, || {
        let rewritten = rewrite::rewrite(&durations::rewrite(query, QueryTimes::default()));
        if rewritten != query || !trim::rewrite(query).1.is_empty() {
            return query.to_string();
        }
        ast::parse(query)
            .map(|expr| expr.to_string())
            .unwrap_or_else(|_| query.to_string())
    })
    .unwrap_or_else(|_| query.to_string())
}

fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<ast::Offset>) -> i64 {
    match o {
        None => 0,
        Some(ast::Offset::Pos(d)) => ms(d),
        Some(ast::Offset::Neg(d)) => -ms(d),
    }
}

fn at(a: &Option<ast::AtModifier>) -> Option<At> {
    a.as_ref().map(|a| match a {
        ast::AtModifier::Start => At::Start,
        ast::AtModifier::End => At::End,
        ast::AtModifier::At(t) => At::Ms(system_time_ms(t)),
    })
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => ms(&d),
        Err(e) => -ms(&e.duration()),
    }
}

fn lower_selector(vs: &ast::VectorSelector) -> Result<VectorSel, PlanError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(PlanError::NotSupported("`or` inside a selector".into()));
    }
    let mut matchers = Vec::new();
    let mut modifier = None;
    let has_name = vs.matchers.matchers.iter().any(|m| m.name == "__name__");
    if let (Some(name), false) = (&vs.name, has_name) {
        matchers.push(LabelMatcher::new("__name__", "=", name)?);
    }
    for m in &vs.matchers.matchers {
        if m.name == rewrite::MARKER {
            modifier = match m.value.as_str() {
                "anchored" => Some(SelectorModifier::Anchored),
                "smoothed" => Some(SelectorModifier::Smoothed),
                _ => None,
            };
            continue;
        }
        let op = match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        matchers.push(LabelMatcher::new(&m.name, op, &m.value)?);
    }
    Ok(VectorSel {
        selector: Selector { matchers },
        offset_ms: offset_ms(&vs.offset),
        at: at(&vs.at),
        modifier,
    })
}

fn labels(l: &promql_parser::label::Labels) -> Vec<String> {
    l.labels.clone()
}

/// Lowers a parsed AST.
pub fn lower(expr: &Expr) -> Result<Plan, PlanError> {
    Ok(match expr {
        Expr::NumberLiteral(n) => Plan::Number(n.val),
        Expr::StringLiteral(s) => Plan::String(s.val.clone()),
        Expr::Paren(p) => lower(&p.expr)?,
        Expr::Unary(u) => Plan::Neg(Box::new(lower(&u.expr)?)),
        Expr::VectorSelector(vs) => {
            let sel = lower_selector(vs)?;
            if sel.modifier == Some(SelectorModifier::Anchored) {
                return Err(PlanError::Invalid(
                    "anchored modifier can only be used with range vector selectors".into(),
                ));
            }
            Plan::Vector(sel)
        }
        Expr::MatrixSelector(m) => Plan::Matrix {
            sel: lower_selector(&m.vs)?,
            range_ms: ms(&m.range),
        },
        Expr::Subquery(s) => Plan::Subquery {
            expr: Box::new(lower(&s.expr)?),
            range_ms: ms(&s.range),
            step_ms: s.step.as_ref().map(ms).filter(|s| *s > 0),
            offset_ms: offset_ms(&s.offset),
            at: at(&s.at),
        },
        Expr::Call(c) if c.func.name == "info" => lower_info(&c.args.args)?,
        Expr::Call(c) => {
            let name = c.func.name;
            let func = FUNCTIONS
                .iter()
                .find(|f| **f == name)
                .ok_or_else(|| PlanError::NotSupported(format!("function {name}")))?;
            let args: Vec<Plan> = c
                .args
                .args
                .iter()
                .map(|a| lower(a))
                .collect::<Result<_, _>>()?;
            for a in &args {
                if let Plan::Matrix {
                    sel:
                        VectorSel {
                            modifier: Some(m), ..
                        },
                    ..
                } = a
                {
                    if !m.functions().contains(func) {
                        return Err(PlanError::Invalid(format!(
                            "{} modifier can only be used with: {} - not with {func}",
                            m.name(),
                            m.functions().join(", ")
                        )));
                    }
                }
            }
            Plan::Call { func, args }
        }
        Expr::Aggregate(a) => lower_aggregate(a)?,
        Expr::Binary(b) => lower_binary(b)?,
        Expr::Extension(_) => return Err(PlanError::NotSupported("extension expression".into())),
    })
}

/// `info(expr [, {data-label selector}])` lowers to `Call("info", [expr, selector])`
/// where the selector reads the info series: the given matchers (with
/// `__name__="target_info"` when none names a metric, `__name__=~".+_info"` when all
/// that do are negative), at the time the first selector of `expr` reads (its `@` and
/// offsets, through enclosing subqueries).
fn lower_info(args: &[Box<Expr>]) -> Result<Plan, PlanError> {
    let expr = lower(
        args.first()
            .ok_or_else(|| PlanError::Parse("info() needs an instant vector argument".into()))?,
    )?;
    let mut matchers = match args.get(1).map(|a| &**a) {
        None => Vec::new(),
        Some(Expr::VectorSelector(vs)) => lower_selector(vs)?.selector.matchers,
        Some(_) => {
            return Err(PlanError::Parse(
                "expected label selector as the second argument of info()".into(),
            ))
        }
    };
    // No name matcher: target_info. Only negative ones: any other info metric.
    let names: Vec<&LabelMatcher> = matchers
        .iter()
        .filter(|m| m.name == crate::labels::METRIC_NAME)
        .collect();
    let implied = if names.is_empty() {
        Some(("=", "target_info"))
    } else if names
        .iter()
        .all(|m| matches!(m.kind, MatchKind::NotEqual(_) | MatchKind::NotRegex(_)))
    {
        Some(("=~", ".+_info"))
    } else {
        None
    };
    if let Some((op, value)) = implied {
        let m = LabelMatcher::new(crate::labels::METRIC_NAME, op, value);
        matchers.insert(0, m?);
    }
    let (at, offset_ms) = first_read_time(&expr, None, 0).unwrap_or((None, 0));
    let info = VectorSel {
        selector: Selector { matchers },
        offset_ms,
        at,
        modifier: None,
    };
    Ok(Plan::Call {
        func: "info",
        args: vec![expr, Plan::Vector(info)],
    })
}

/// The `@` and offset with which the first selector of `plan` (in evaluation order)
/// reads, composed with those of the subqueries around it (`at`, `offset_ms`).
fn first_read_time(plan: &Plan, at: Option<At>, offset_ms: i64) -> Option<(Option<At>, i64)> {
    let compose = |inner_at: Option<At>, inner_offset: i64| match inner_at {
        Some(a) => (Some(a), inner_offset),
        None => (at, offset_ms + inner_offset),
    };
    match plan {
        Plan::Number(_) | Plan::String(_) => None,
        Plan::Vector(sel) | Plan::Matrix { sel, .. } => Some(compose(sel.at, sel.offset_ms)),
        Plan::Subquery {
            expr,
            offset_ms: o,
            at: a,
            ..
        } => {
            let (at, offset_ms) = compose(*a, *o);
            first_read_time(expr, at, offset_ms)
        }
        Plan::Call { args, .. } => args.iter().find_map(|a| first_read_time(a, at, offset_ms)),
        Plan::Aggregate { expr, param, .. } => std::iter::once(expr)
            .chain(param)
            .find_map(|a| first_read_time(a, at, offset_ms)),
        Plan::Binary { lhs, rhs, .. } => {
            first_read_time(lhs, at, offset_ms).or_else(|| first_read_time(rhs, at, offset_ms))
        }
        Plan::Neg(inner) => first_read_time(inner, at, offset_ms),
    }
}

fn lower_aggregate(a: &ast::AggregateExpr) -> Result<Plan, PlanError> {
    let op = match a.op.to_string().to_lowercase().as_str() {
        "sum" => AggOp::Sum,
        "avg" => AggOp::Avg,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "count" => AggOp::Count,
        "group" => AggOp::Group,
        "stddev" => AggOp::Stddev,
        "stdvar" => AggOp::Stdvar,
        "topk" => AggOp::Topk,
        "bottomk" => AggOp::Bottomk,
        "quantile" => AggOp::Quantile,
        "count_values" => AggOp::CountValues,
        "limitk" => AggOp::Limitk,
        "limit_ratio" => AggOp::LimitRatio,
        other => return Err(PlanError::NotSupported(format!("aggregation {other}"))),
    };
    let grouping = match &a.modifier {
        None => Grouping::By(Vec::new()),
        Some(ast::LabelModifier::Include(l)) => Grouping::By(labels(l)),
        Some(ast::LabelModifier::Exclude(l)) => Grouping::Without(labels(l)),
    };
    Ok(Plan::Aggregate {
        op,
        expr: Box::new(lower(&a.expr)?),
        param: match &a.param {
            Some(p) => Some(Box::new(lower(p)?)),
            None => None,
        },
        grouping,
    })
}

fn lower_binary(b: &ast::BinaryExpr) -> Result<Plan, PlanError> {
    let op = match b.op.to_string().to_lowercase().as_str() {
        _ if b.op.id() == trim::UPPER => BinOp::TrimUpper,
        _ if b.op.id() == trim::LOWER => BinOp::TrimLower,
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "^" => BinOp::Pow,
        "atan2" => BinOp::Atan2,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        ">" => BinOp::Gt,
        "<" => BinOp::Lt,
        ">=" => BinOp::Ge,
        "<=" => BinOp::Le,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "unless" => BinOp::Unless,
        other => return Err(PlanError::NotSupported(format!("binary operator {other}"))),
    };
    let (matching, return_bool) = match &b.modifier {
        None => (None, false),
        Some(m) => {
            let card = match &m.card {
                ast::VectorMatchCardinality::OneToOne => Card::OneToOne,
                ast::VectorMatchCardinality::ManyToOne(l) => Card::ManyToOne(labels(l)),
                ast::VectorMatchCardinality::OneToMany(l) => Card::OneToMany(labels(l)),
                ast::VectorMatchCardinality::ManyToMany => Card::ManyToMany,
            };
            let (on, labels) = match &m.matching {
                None => (false, Vec::new()),
                Some(ast::LabelModifier::Include(l)) => (true, labels(l)),
                Some(ast::LabelModifier::Exclude(l)) => (false, labels(l)),
            };
            let matching = Matching {
                on,
                labels,
                card,
                fill_lhs: m.fill_values.lhs,
                fill_rhs: m.fill_values.rhs,
            };
            (Some(matching), m.return_bool)
        }
    };
    Ok(Plan::Binary {
        op,
        lhs: Box::new(lower(&b.lhs)?),
        rhs: Box::new(lower(&b.rhs)?),
        matching,
        return_bool,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_selectors_with_modifiers() {
        let Plan::Matrix { sel, range_ms } =
            parse(r#"foo{a=~"x.*"}[5m] offset -1m @ 100"#).unwrap()
        else {
            panic!("not a matrix")
        };
        assert_eq!(range_ms, 300_000);
        assert_eq!(sel.offset_ms, -60_000);
        assert_eq!(sel.at, Some(At::Ms(100_000)));
        assert_eq!(sel.selector.matchers.len(), 2);
    }

    #[test]
    fn holt_winters_is_an_alias() {
        let p = parse(
            r#"holt_winters(x[5m], 0.5, 0.5) + on() label_replace(y, "a", "holt_winters", "b", "")"#,
        );
        let Ok(Plan::Binary { lhs, .. }) = p else {
            panic!("{p:?}")
        };
        assert!(matches!(
            *lhs,
            Plan::Call {
                func: "double_exponential_smoothing",
                ..
            }
        ));
    }

    #[test]
    fn binary_matching_and_aggregation() {
        let p = parse("sum without (a) (x) / on (b) group_left (c) y").unwrap();
        let Plan::Binary {
            op, matching, lhs, ..
        } = p
        else {
            panic!("not binary")
        };
        assert_eq!(op, BinOp::Div);
        let m = matching.unwrap();
        assert!(m.on);
        assert_eq!(m.card, Card::ManyToOne(vec!["c".into()]));
        assert!(matches!(
            *lhs,
            Plan::Aggregate {
                op: AggOp::Sum,
                grouping: Grouping::Without(_),
                ..
            }
        ));
    }

    #[test]
    fn range_modifiers_lower_and_are_checked() {
        let Ok(Plan::Call { args, .. }) = parse(r#"rate(x{a="b"}[5m] smoothed)"#) else {
            panic!("not a call")
        };
        let Plan::Matrix { sel, .. } = &args[0] else {
            panic!("not a matrix")
        };
        assert_eq!(sel.modifier, Some(SelectorModifier::Smoothed));
        assert_eq!(sel.selector.matchers.len(), 2);
        assert_eq!(
            parse("deriv(x[5m] anchored)").unwrap_err(),
            PlanError::Invalid(
                "anchored modifier can only be used with: changes, delta, increase, rate, \
                 resets - not with deriv"
                    .into()
            )
        );
    }

    #[test]
    fn info_reads_its_series_when_the_argument_does() {
        let info_sel = |q: &str| match parse(q) {
            Ok(Plan::Call { func: "info", args }) => match &args[1] {
                Plan::Vector(sel) => sel.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let sel = info_sel("info(last_over_time((x offset 1m)[10m:1m] @ 180))");
        assert_eq!((sel.at, sel.offset_ms), (Some(At::Ms(180_000)), 60_000));
        assert_eq!(sel.selector.matchers[0].name, "__name__");
        let sel = info_sel("info(last_over_time(x[5m:1m] offset 6m) * y offset 1m)");
        assert_eq!((sel.at, sel.offset_ms), (None, 360_000));
        let sel = info_sel(r#"info(x, {data=~".*"})"#);
        assert_eq!(sel.selector.matchers.len(), 2);
    }

    #[test]
    fn parse_errors_say_where_like_prometheus() {
        // The texts Prometheus 2.42 answers for these queries.
        for (q, want) in [
            ("sum(foo", "1:8: parse error: unclosed left parenthesis"),
            (
                r#"foo{a="b"} +"#,
                "1:13: parse error: unexpected end of input",
            ),
            (
                "rate(foo)",
                "1:6: parse error: expected type range vector in call to function \"rate\", \
                 got instant vector",
            ),
        ] {
            assert_eq!(parse(q).unwrap_err().to_string(), want, "{q}");
        }
    }

    #[test]
    fn unsupported_is_an_error_not_a_panic() {
        assert!(matches!(parse("info2(x)"), Err(PlanError::ParseAt { .. })));
        assert!(matches!(parse("foo bar"), Err(PlanError::ParseAt { .. })));
    }
}
