//! The native-histogram trim operators `</` (Prometheus's TRIM_UPPER) and `>/`
//! (TRIM_LOWER), which promql-parser 0.11 does not know.
//!
//! ```promql
//! h </ 0.5                  ->  h <  0.5                 (then: BinOp::TrimUpper)
//! h >/ on (job) bound       ->  h >  on (job) bound      (then: BinOp::TrimLower)
//! ```
//!
//! In Prometheus's grammar the two are binary operators of the comparison level
//! (`%left EQLC GTE GTR LSS LTE NEQ TRIM_UPPER TRIM_LOWER`), take the same
//! `on`/`ignoring`/`group_*`/`fill*` modifiers, and are no comparison (so `bool` is
//! refused). Its lexer reads `</` and `>/` only as two adjacent characters (`< /` is
//! `<` then `/`). [`rewrite`] turns each into `<` / `>` plus a blank, so the parser
//! builds the same tree (same precedence and associativity) and every byte offset
//! stays as written, and records which `<` / `>` operators were trims. Outside
//! strings and comments, the characters `<` and `>` only ever start one of the
//! operators `<` `<=` `</` `>` `>=` `>/`, and a parsed tree's binary operators read
//! left to right come in the order of the text; so [`restore`] walks the tree in
//! text order and marks the recorded nodes: their operator becomes [`UPPER`] or
//! [`LOWER`], tokens the parser never puts in a binary expression (so a user cannot
//! reach the marks by writing them), which lowering (`plan.rs`) reads back.

use crate::promql::plan::{BinOp, PlanError};
use crate::promql::rewrite::{lex, Kind};
use promql_parser::parser::token::{self, TokenId, TokenType};
use promql_parser::parser::Expr;

/// The operator that marks a `</` node (`=`, never a binary operator).
pub const UPPER: TokenId = token::T_EQL;
/// The operator that marks a `>/` node (`=~`, never a binary operator).
pub const LOWER: TokenId = token::T_EQL_REGEX;

/// One `<` / `>` operator of the text: its byte offset and, if it is a trim, which.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operator {
    /// Byte offset of the `<` / `>`.
    pub at: usize,
    /// `Some` for `</` / `>/`.
    pub trim: Option<BinOp>,
}

/// The query with each `</` / `>/` made `< ` / `> `, and every `<` / `>` operator in
/// text order (empty when there is no trim, so [`restore`] has nothing to do).
pub fn rewrite(query: &str) -> (String, Vec<Operator>) {
    let tokens = lex(query);
    let mut ops = Vec::new();
    let mut out = query.to_string();
    let mut any = false;
    for (k, t) in tokens.iter().enumerate() {
        let upper = match t.kind {
            Kind::Punct('<') => true,
            Kind::Punct('>') => false,
            _ => continue,
        };
        let slash = tokens
            .get(k + 1)
            .filter(|n| n.kind == Kind::Punct('/') && n.start == t.end);
        let trim = slash.map(|n| {
            out.replace_range(n.start..n.end, " ");
            if upper {
                BinOp::TrimUpper
            } else {
                BinOp::TrimLower
            }
        });
        any |= trim.is_some();
        ops.push(Operator { at: t.start, trim });
    }
    if !any {
        ops.clear();
    }
    (out, ops)
}

/// Marks the nodes of `expr` (parsed from [`rewrite`]'s text) that `ops` records as
/// trims; refuses `bool` on them as Prometheus does. `query` is the text as written
/// (for positions).
pub fn restore(expr: &mut Expr, ops: &[Operator], query: &str) -> Result<(), PlanError> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut next = ops.iter();
    walk(expr, &mut next, query)?;
    if next.next().is_some() {
        return Err(lost());
    }
    Ok(())
}

fn lost() -> PlanError {
    PlanError::NotSupported("a histogram trim operator where the parser moved it".into())
}

fn walk<'a>(
    expr: &mut Expr,
    ops: &mut impl Iterator<Item = &'a Operator>,
    query: &str,
) -> Result<(), PlanError> {
    match expr {
        Expr::Aggregate(a) => {
            if let Some(p) = a.param.as_mut() {
                walk(p, ops, query)?;
            }
            walk(&mut a.expr, ops, query)
        }
        Expr::Unary(u) => walk(&mut u.expr, ops, query),
        Expr::Paren(p) => walk(&mut p.expr, ops, query),
        Expr::Subquery(s) => walk(&mut s.expr, ops, query),
        Expr::Call(c) => c.args.args.iter_mut().try_for_each(|a| walk(a, ops, query)),
        Expr::Binary(b) => {
            walk(&mut b.lhs, ops, query)?;
            let id = b.op.id();
            if matches!(
                id,
                token::T_LSS | token::T_GTR | token::T_LTE | token::T_GTE
            ) {
                let op = ops.next().ok_or_else(lost)?;
                if let Some(trim) = op.trim {
                    if !matches!(
                        (id, trim),
                        (token::T_LSS, BinOp::TrimUpper) | (token::T_GTR, BinOp::TrimLower)
                    ) {
                        return Err(lost());
                    }
                    if b.modifier.as_ref().is_some_and(|m| m.return_bool) {
                        let (line, col) = position(query, op.at);
                        return Err(PlanError::ParseAt {
                            line,
                            col,
                            message: "bool modifier can only be used on comparison operators"
                                .into(),
                        });
                    }
                    b.op = TokenType::new(if trim == BinOp::TrimUpper {
                        UPPER
                    } else {
                        LOWER
                    });
                }
            }
            walk(&mut b.rhs, ops, query)
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => Ok(()),
    }
}

/// 1-based line and byte column of `at`.
fn position(query: &str, at: usize) -> (usize, usize) {
    let before = &query[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::{parse, Plan};

    fn op(q: &str) -> BinOp {
        match parse(q) {
            Ok(Plan::Binary { op, .. }) => op,
            other => panic!("{q}: {other:?}"),
        }
    }

    #[test]
    fn rewrites_only_adjacent_slashes_outside_strings_and_comments() {
        let (text, ops) = rewrite("a </ b >/ 1 < c");
        assert_eq!(text, "a <  b >  1 < c");
        let trims: Vec<_> = ops.iter().map(|o| o.trim).collect();
        assert_eq!(
            trims,
            [Some(BinOp::TrimUpper), Some(BinOp::TrimLower), None]
        );
        assert!(rewrite("a < /b/").1.is_empty());
        assert!(rewrite("a{x=\"</\"} <= 2 # >/").1.is_empty());
    }

    #[test]
    fn lowers_with_comparison_precedence() {
        assert_eq!(op("h </ 2"), BinOp::TrimUpper);
        assert_eq!(op("h >/ 2"), BinOp::TrimLower);
        assert_eq!(op("h < 2"), BinOp::Lt);
        // `+` binds tighter: the trim is the root.
        assert_eq!(op("h >/ 1 + 1"), BinOp::TrimLower);
        // Left-associative with `<`: `(a < b) </ c`, `(a </ b) > c`.
        assert_eq!(op("a < b </ c"), BinOp::TrimUpper);
        assert_eq!(op("a </ b > c"), BinOp::Gt);
        // `and` binds looser.
        assert_eq!(op("a </ 1 and b >/ 2"), BinOp::And);
        let Ok(Plan::Binary { rhs, .. }) = parse("a and sum(b </ 1) > bool topk(1, c >/ 2)") else {
            panic!()
        };
        let Plan::Binary { op, lhs, rhs, .. } = *rhs else {
            panic!()
        };
        assert_eq!(op, BinOp::Gt);
        let inner = |p: &Plan| match p {
            Plan::Aggregate { expr, .. } => match expr.as_ref() {
                Plan::Binary { op, .. } => *op,
                _ => panic!(),
            },
            _ => panic!(),
        };
        assert_eq!(inner(&lhs), BinOp::TrimUpper);
        assert_eq!(inner(&rhs), BinOp::TrimLower);
    }

    #[test]
    fn takes_matching_but_not_bool() {
        let Ok(Plan::Binary { op, matching, .. }) = parse("h >/ on (job) x") else {
            panic!()
        };
        assert_eq!(op, BinOp::TrimLower);
        let m = matching.unwrap();
        assert!(m.on);
        assert_eq!(m.labels, ["job"]);
        assert_eq!(
            parse("h </ bool 1").unwrap_err().to_string(),
            "1:3: parse error: bool modifier can only be used on comparison operators"
        );
        // `< /` is `<` then `/`, as Prometheus lexes it.
        assert!(parse("h < / 1").is_err());
    }
}
