//! Where a type error is: Prometheus reports type errors at the node they are about
//! (an operand, an argument, a selector, an operator); promql-parser reports them
//! without a place. The functions here find that node in the tokens: operands and
//! their ends, binary operators with the start of each side, the arguments of calls
//! and aggregations.
//!
//! Contract: [`type_error_position`] returns the offset of that node and Prometheus's
//! wording for a message it knows (`matrix` named `range vector`, quotes as Go's `%q`),
//! `None` for any other message or when the node is not found; [`argument_of_type`]
//! the start of the first argument of a call that has a given type, as far as the
//! tokens tell.

use super::tokens::{is_word, tokens_of, Tok, AGGREGATORS, OPERATORS, WORD_OPERATORS};
use crate::promql::rewrite::Token;

type Toks<'a> = [(Tok<'a>, usize)];

const COMPARISONS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];

/// Whether `t` is a binary operator (`+`, `==`, `and`, …).
fn is_binary_op(t: Tok<'_>) -> bool {
    match t {
        Tok::Sym(s) => OPERATORS.contains(&s),
        Tok::Word(w) => is_word(&WORD_OPERATORS, w),
        _ => false,
    }
}

/// The opener of the group closed at `i`.
fn opener(toks: &Toks<'_>, i: usize) -> Option<usize> {
    let (open, close) = match toks[i].0 {
        Tok::Sym(")") => ("(", ")"),
        Tok::Sym("]") => ("[", "]"),
        Tok::Sym("}") => ("{", "}"),
        _ => return None,
    };
    let mut depth = 0;
    for j in (0..=i).rev() {
        match toks[j].0 {
            Tok::Sym(c) if c == close => depth += 1,
            Tok::Sym(o) if o == open => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first token of the operand that ends just before token `end`: a selector with
/// its braces, range and modifiers, a call, an aggregation with its clause, a
/// parenthesized expression or a literal, with a unary sign before it.
fn operand_start(toks: &Toks<'_>, end: usize) -> usize {
    let mut i = end;
    while let Some(p) = i.checked_sub(1) {
        let prev = toks[p].0;
        let word = |t: Tok<'_>, list: &[&str]| matches!(t, Tok::Word(w) if is_word(list, w));
        let take = match (prev, (i < end).then(|| toks[i].0)) {
            (_, None) => !is_binary_op(prev) && !matches!(prev, Tok::Sym("(" | "," | "[" | "{")),
            (Tok::Sym("@"), _) => true,
            (p, _) if word(p, &["offset"]) => true,
            (_, Some(c)) if word(c, &["offset"]) || c == Tok::Sym("@") => true,
            (_, Some(Tok::Sym("{" | "["))) => {
                matches!(prev, Tok::Word(_) | Tok::Sym("}" | ")" | "]"))
            }
            (Tok::Word(w), Some(Tok::Sym("("))) => {
                !is_word(&WORD_OPERATORS, w)
                    && !is_word(&["bool", "on", "ignoring", "group_left", "group_right"], w)
            }
            (Tok::Word(w), Some(c)) if word(c, &["by", "without"]) => is_word(&AGGREGATORS, w),
            (Tok::Sym(")"), Some(Tok::Sym("("))) => opener(toks, p)
                .and_then(|o| o.checked_sub(1))
                .is_some_and(|b| word(toks[b].0, &["by", "without"])),
            (Tok::Sym("-" | "+"), Some(_)) => p.checked_sub(1).is_none_or(|b| {
                is_binary_op(toks[b].0) || matches!(toks[b].0, Tok::Sym("(" | ","))
            }),
            _ => false,
        };
        if !take {
            break;
        }
        i = match prev {
            Tok::Sym(")" | "]" | "}") => opener(toks, p).unwrap_or(p),
            _ => p,
        };
    }
    i
}

/// The operand that starts at token `start`: its end (exclusive), where a binary
/// operator, a closing bracket or a comma at its own depth comes.
fn operand_end(toks: &Toks<'_>, start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    if matches!(toks.get(i).map(|t| t.0), Some(Tok::Sym("-" | "+"))) {
        i += 1;
    }
    while i < toks.len() {
        match toks[i].0 {
            Tok::End => break,
            Tok::Sym("(" | "[" | "{") => depth += 1,
            Tok::Sym(")" | "]" | "}") if depth == 0 => break,
            Tok::Sym(")" | "]" | "}") => depth -= 1,
            Tok::Sym(",") if depth == 0 => break,
            t if depth == 0 && i > start && is_binary_op(t) => break,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Whether the operand `toks[start..end]` is a range vector or a string (the types a
/// binary expression or an aggregation refuses): a `[…]` at its own depth, or a
/// string literal alone.
fn is_range_or_string(toks: &Toks<'_>, start: usize, end: usize) -> bool {
    if end == start + 1 && matches!(toks[start].0, Tok::Str(_)) {
        return true;
    }
    let mut depth = 0usize;
    for t in &toks[start..end] {
        match t.0 {
            Tok::Sym("[") if depth == 0 => return true,
            Tok::Sym("(" | "{" | "[") => depth += 1,
            Tok::Sym(")" | "}" | "]") => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The first token of a binary operator's right operand, past `bool`, `on(…)`,
/// `ignoring(…)` and `group_left(…)`/`group_right(…)`.
fn right_operand(toks: &Toks<'_>, op: usize) -> usize {
    let mut i = op + 1;
    loop {
        match toks.get(i).map(|t| t.0) {
            Some(Tok::Word(w)) if is_word(&["bool"], w) => i += 1,
            Some(Tok::Word(w)) if is_word(&["on", "ignoring", "group_left", "group_right"], w) => {
                i += 1;
                if toks.get(i).map(|t| t.0) == Some(Tok::Sym("(")) {
                    let mut depth = 0;
                    while i < toks.len() {
                        match toks[i].0 {
                            Tok::Sym("(") => depth += 1,
                            Tok::Sym(")") => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => return i,
        }
    }
}

/// Binary operators in text order, with the start of the operand on each side.
fn binary_operators(toks: &Toks<'_>) -> Vec<(usize, usize, usize)> {
    (0..toks.len())
        .filter(|&o| is_binary_op(toks[o].0))
        // A sign where an operand starts is unary.
        .filter(|&o| {
            !matches!(toks[o].0, Tok::Sym("-" | "+"))
                || o.checked_sub(1).is_some_and(|b| {
                    !is_binary_op(toks[b].0) && !matches!(toks[b].0, Tok::Sym("(" | ","))
                })
        })
        .map(|o| (operand_start(toks, o), o, right_operand(toks, o)))
        .collect()
}

/// The arguments of the call or aggregation whose `(` is at `open`: their token ranges.
fn arguments(toks: &Toks<'_>, open: usize) -> Vec<(usize, usize)> {
    let mut args = Vec::new();
    let mut start = open + 1;
    let mut depth = 0usize;
    for (i, tok) in toks.iter().enumerate().skip(open + 1) {
        match tok.0 {
            Tok::Sym("(" | "[" | "{") => depth += 1,
            Tok::Sym(")" | "]" | "}") if depth == 0 => {
                if i > start {
                    args.push((start, i));
                }
                break;
            }
            Tok::Sym(")" | "]" | "}") => depth -= 1,
            Tok::Sym(",") if depth == 0 => {
                args.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    args
}

/// The `(` of each aggregation's arguments, in text order.
fn aggregation_arguments(toks: &Toks<'_>) -> Vec<usize> {
    let mut out = Vec::new();
    for i in 0..toks.len() {
        if !matches!(toks[i].0, Tok::Word(w) if is_word(&AGGREGATORS, w)) {
            continue;
        }
        let mut j = i + 1;
        // `sum by (a) (x)`: past the clause.
        if matches!(toks.get(j).map(|t| t.0), Some(Tok::Word(w)) if is_word(&["by", "without"], w))
        {
            let close = arguments(toks, j + 1).last().map_or(j + 2, |a| a.1);
            j = close + 1;
        }
        if toks.get(j).map(|t| t.0) == Some(Tok::Sym("(")) {
            out.push(j);
        }
    }
    out
}

/// Prometheus's type names for promql-parser's (`matrix` is a range vector).
fn type_name(t: &str) -> &str {
    match t {
        "matrix" => "range vector",
        "vector" => "instant vector",
        other => other,
    }
}

/// `'x'` quoting as Go's `%q`.
fn go_quotes(message: &str) -> String {
    let parts: Vec<&str> = message.split('\'').collect();
    if parts.len().is_multiple_of(2) {
        return message.to_string();
    }
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("{part:?}"));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The start of the first argument of the call to `func` that has type `got`
/// (promql-parser's name: `matrix`, `vector`, `scalar`, `string`), as far as the
/// tokens tell.
pub(super) fn argument_of_type(query: &str, raw: &[Token], func: &str, got: &str) -> Option<usize> {
    let toks = tokens_of(query, raw);
    let toks = &toks[..];
    let open = (1..toks.len()).find(|&i| {
        toks[i].0 == Tok::Sym("(") && matches!(toks[i - 1].0, Tok::Word(w) if w == func)
    })?;
    let (s, _) = arguments(toks, open).into_iter().find(|&(s, e)| {
        let alone = e == s + 1;
        match got {
            "string" => alone && matches!(toks[s].0, Tok::Str(_)),
            "scalar" => alone && matches!(toks[s].0, Tok::Number(_)),
            "matrix" => is_range_or_string(toks, s, e),
            _ => {
                !is_range_or_string(toks, s, e) && (!alone || !matches!(toks[s].0, Tok::Number(_)))
            }
        }
    })?;
    Some(toks[s].1)
}

/// Where Prometheus reports a type error promql-parser words as `message`, and its
/// wording; `None` when the message is not one of these or the place is not found.
pub(super) fn type_error_position(
    query: &str,
    raw: &[Token],
    message: &str,
) -> Option<(usize, String)> {
    let toks = tokens_of(query, raw);
    let toks = &toks[..];
    let ops = binary_operators(toks);
    let at = |i: usize| toks[i].1;
    let op_is = |o: usize, list: &[&str]| match toks[o].0 {
        Tok::Sym(s) => list.contains(&s),
        Tok::Word(w) => is_word(list, w),
        _ => false,
    };
    if message == "binary expression must contain only scalar and instant vector types" {
        return ops.iter().find_map(|&(l, o, r)| {
            if is_range_or_string(toks, l, o) {
                Some((at(l), message.to_string()))
            } else if is_range_or_string(toks, r, operand_end(toks, r)) {
                Some((at(r), message.to_string()))
            } else {
                None
            }
        });
    }
    if let Some(rest) = message.strip_prefix("expected type ") {
        // expected type vector in aggregation expression, got matrix
        let (want, got) = rest.split_once(" in aggregation expression, got ")?;
        let opens = aggregation_arguments(toks);
        let message = |what: &str| {
            format!(
                "expected type {} in aggregation {what}, got {}",
                type_name(want),
                type_name(got)
            )
        };
        if want == "vector" {
            return opens.iter().find_map(|&open| {
                let (s, e) = *arguments(toks, open).last()?;
                is_range_or_string(toks, s, e).then(|| (at(s), message("expression")))
            });
        }
        // The first parameter (of an aggregation that has one) of the type got.
        let params: Vec<(usize, usize)> = opens
            .iter()
            .map(|&open| arguments(toks, open))
            .filter(|args| args.len() == 2)
            .map(|args| args[0])
            .collect();
        let lone = |s: usize, e: usize, string: bool| {
            e == s + 1
                && match toks[s].0 {
                    Tok::Str(_) => string,
                    Tok::Number(_) => !string,
                    _ => false,
                }
        };
        let param = params
            .iter()
            .find(|&&(s, e)| match got {
                "string" => lone(s, e, true),
                "scalar" => lone(s, e, false),
                "matrix" => is_range_or_string(toks, s, e),
                _ => !lone(s, e, true) && !lone(s, e, false) && !is_range_or_string(toks, s, e),
            })
            .or(params.first())?;
        return Some((at(param.0), message("parameter")));
    }
    let unary = "unary expression only allowed on expressions of type scalar or vector, got: ";
    if let Some(got) = message.strip_prefix(unary) {
        let sign = (0..toks.len()).find(|&i| {
            matches!(toks[i].0, Tok::Sym("-" | "+"))
                && i.checked_sub(1).is_none_or(|b| {
                    is_binary_op(toks[b].0) || matches!(toks[b].0, Tok::Sym("(" | ","))
                })
        })?;
        return Some((
            at(sign),
            format!(
                "unary expression only allowed on expressions of type scalar or instant vector, \
                 got {:?}",
                type_name(got)
            ),
        ));
    }
    // The whole binary expression: the start of its left operand.
    let whole = message.starts_with("set operator '")
        || message.starts_with("no grouping allowed for")
        || message == "vector matching only allowed between instant vectors"
        || message == "set operations must always be many-to-many";
    if whole {
        let o = ops.iter().find(|&&(_, o, _)| {
            if message.starts_with("set operator") || message.starts_with("no grouping") {
                op_is(o, &WORD_OPERATORS[..3])
            } else {
                true
            }
        })?;
        return Some((at(o.0), go_quotes(message)));
    }
    // The operator itself.
    let operator = if message == "comparisons between scalars must use BOOL modifier" {
        ops.iter()
            .find(|&&(_, o, r)| op_is(o, &COMPARISONS) && r == o + 1)
    } else if message == "bool modifier can only be used on comparison operators" {
        ops.iter()
            .find(|&&(_, o, _)| matches!(toks[o + 1].0, Tok::Word(w) if is_word(&["bool"], w)))
    } else if message.contains("must not occur in ON and GROUP clause at once") {
        ops.iter().find(|&&(_, o, r)| {
            r > o + 1
                && toks[o + 1..r]
                    .iter()
                    .any(|t| matches!(t.0, Tok::Word(w) if is_word(&["on"], w)))
        })
    } else {
        None
    };
    if let Some(&(_, o, _)) = operator {
        return Some((at(o), go_quotes(message)));
    }
    // The selector: `foo{__name__="a"}`, `foo offset 1m offset 2m`, `foo @ 1 @ 2`.
    if message.starts_with("metric name must not be set twice") {
        let brace = (0..toks.len()).find(|&i| {
            toks[i].0 == Tok::Sym("{") && i > 0 && matches!(toks[i - 1].0, Tok::Word(_))
        })?;
        return Some((at(brace - 1), go_quotes(message)));
    }
    let modifier = match message {
        "offset may not be set multiple times" => Some(Tok::Word("offset")),
        "@ <timestamp> may not be set multiple times" => Some(Tok::Sym("@")),
        _ => None,
    }?;
    let same = |t: Tok<'_>| match (t, modifier) {
        (Tok::Word(a), Tok::Word(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    };
    let second = (0..toks.len()).filter(|&i| same(toks[i].0)).nth(1)?;
    Some((at(operand_start(toks, second)), message.to_string()))
}
