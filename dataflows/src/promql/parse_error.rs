//! Parse errors in Prometheus's words and with its `line:col` position.
//!
//! promql-parser reports many syntax errors as just "invalid promql query", and others
//! without a position or in slightly different words. [`syntax_error`] turns its
//! message into Prometheus's (2.42 checked side by side, `tests/query_api.rs`): where
//! promql-parser says nothing useful, a recognizer over the raw text ([`first_unexpected`])
//! finds the first token that cannot continue the query and words it the way
//! Prometheus's grammar does (`unexpected identifier "b" in grouping opts, expected ","
//! or ")"`); for other messages the offending construct is found in the raw text.
//!
//! Type errors (an operand, argument or parameter of the wrong type, a scalar
//! comparison without `bool`, a modifier given twice) come from promql-parser with no
//! place; [`type_error_position`] finds the node Prometheus reports them at.
//!
//! Contract: positions are of the text the user wrote (before the rewrites of
//! `durations.rs` and `rewrite.rs`); a message whose place cannot be found is returned
//! without a position rather than with a wrong one.

use crate::promql::plan::PlanError;
use crate::promql::rewrite::{self, Kind, Token};

/// Aggregation operators: an aggregation when followed by `(`, `by` or `without`.
const AGGREGATORS: [&str; 14] = [
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
];

/// Keywords Prometheus's lexer knows (written `<by>` in messages).
const KEYWORDS: [&str; 8] = [
    "bool",
    "by",
    "group_left",
    "group_right",
    "ignoring",
    "offset",
    "on",
    "without",
];

/// Operators written as words (`<op:and>`).
const WORD_OPERATORS: [&str; 4] = ["and", "or", "unless", "atan2"];

/// Words that may name a metric where an operand starts (Prometheus's
/// `metric_identifier`): besides identifiers, these keywords and aggregators.
const NAME_KEYWORDS: [&str; 8] = [
    "by", "without", "and", "or", "unless", "offset", "start", "end",
];

fn is_word(list: &[&str], w: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// A parser error of promql-parser for `query`, in Prometheus's words and with its
/// position where it can be found.
pub fn syntax_error(query: &str, message: String) -> PlanError {
    let at = |offset: usize, message: String| {
        let before = &query[..offset.min(query.len())];
        let line = before.matches('\n').count() + 1;
        let col = offset.min(query.len()) - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        PlanError::ParseAt { line, col, message }
    };
    let end = query.trim_end().len();
    let tokens = rewrite::lex(query);
    let text = |t: &Token| &query[t.start..t.end];
    let find = |pred: &dyn Fn(usize) -> bool| (0..tokens.len()).find(|&i| pred(i));
    let punct = |i: usize, c: char| tokens.get(i).is_some_and(|t| t.kind == Kind::Punct(c));
    if message == "invalid promql query" || message.starts_with("invalid label matcher") {
        return match first_unexpected(query, &tokens) {
            Some((offset, message)) => at(offset, message),
            None => PlanError::Parse(message),
        };
    }
    if message == "unexpected end of input inside brackets" {
        return at(end, "unclosed left bracket".into());
    }
    if message.contains("unclosed") || message.contains("unexpected end of input") {
        return at(end, message);
    }
    // expected 2 argument(s) in call to 'histogram_quantile', got 1
    let arity_error = message
        .split_once(" in call to '")
        .and_then(|(head, r)| Some((head, r.split_once("', got ")?)));
    if let Some((head, (func, got))) = arity_error {
        // `holt_winters` was rewritten to its 3.x name.
        let written = ["holt_winters", func]
            .into_iter()
            .filter(|f| *f == func || func == "double_exponential_smoothing")
            .find_map(|f| Some((f, rewrite::call(query, f)?)));
        let message = |f: &str| format!("{head} in call to {f:?}, got {got}");
        return match written {
            Some((f, offset)) => at(offset, message(f)),
            None => PlanError::Parse(message(func)),
        };
    }
    // expected type matrix in call to function 'rate', got vector
    let type_error = message
        .strip_prefix("expected type ")
        .and_then(|r| r.split_once(" in call to function '"))
        .and_then(|(want, r)| {
            let (func, got) = r.split_once("', got ")?;
            Some((want, func, got))
        });
    if let Some((want, func, got)) = type_error {
        let name = |t: &str| match t {
            "matrix" => "range vector".to_string(),
            "vector" => "instant vector".to_string(),
            other => other.to_string(),
        };
        let message = format!(
            "expected type {} in call to function {func:?}, got {}",
            name(want),
            name(got)
        );
        return match argument_of_type(query, &tokens, func, got)
            .or_else(|| rewrite::first_argument(query, func))
        {
            Some(offset) => at(offset, message),
            None => PlanError::Parse(message),
        };
    }
    if let Some(func) = message
        .strip_prefix("unknown function with name '")
        .and_then(|r| r.strip_suffix('\''))
    {
        let message = format!("unknown function with name {func:?}");
        return match rewrite::call(query, func) {
            Some(offset) => at(offset, message),
            None => PlanError::Parse(message),
        };
    }
    // Lexer errors: at the character (Prometheus's lexer reports where the token
    // it was reading starts).
    let lexer_error = [
        "unexpected character: '",
        "unexpected character inside braces: '",
        "unexpected character inside brackets: '",
        "unexpected character after '",
    ]
    .iter()
    .find_map(|p| message.strip_prefix(p)?.chars().next());
    if let Some(c) = lexer_error {
        return match find(&|i| tokens[i].kind == Kind::Punct(c)) {
            Some(i) => at(tokens[i].start, message),
            None => PlanError::Parse(message),
        };
    }
    if message.starts_with("unterminated quoted string") {
        let raw = message.ends_with('`');
        let message = if raw {
            "unterminated raw string"
        } else {
            "unterminated quoted string"
        };
        return match tokens.last().filter(|t| t.kind == Kind::Str) {
            Some(t) => at(t.start, message.into()),
            None => PlanError::Parse(message.into()),
        };
    }
    if message == "unexpected right parenthesis ')'" {
        // After the parenthesis no `(` opened.
        let open = rewrite::openers(&tokens);
        return match find(&|i| punct(i, ')') && open[i].is_none()) {
            Some(i) => at(tokens[i].end, message),
            None => PlanError::Parse(message),
        };
    }
    if message == "trailing commas not allowed in function call args" {
        return match find(&|i| punct(i, ',') && punct(i + 1, ')')) {
            Some(i) => at(tokens[i].start, message),
            None => PlanError::Parse(message),
        };
    }
    if message == "ranges only allowed for vector selectors" {
        // A `[range]` after `)` or `]`, not a subquery.
        let open = rewrite::openers(&tokens);
        let range_after_bracket = |i: usize| {
            punct(i, '[')
                && i > 0
                && tokens[i - 1].kind != Kind::Ident
                && !punct(i - 1, '}')
                && (i + 1..tokens.len())
                    .take_while(|&j| open[j] != Some(i))
                    .all(|j| !punct(j, ':'))
        };
        return match find(&range_after_bracket) {
            Some(i) => at(tokens[i].start, message),
            None => PlanError::Parse(message),
        };
    }
    if message == "vector selector must contain at least one non-empty matcher" {
        // Braces without a metric name before them.
        let bare = |i: usize| {
            punct(i, '{')
                && (i == 0
                    || tokens[i - 1].kind != Kind::Ident
                    || tokens[i - 1].end < tokens[i].start)
        };
        return match find(&bare) {
            Some(i) => at(tokens[i].start, message),
            None => PlanError::Parse(message),
        };
    }
    if message.starts_with("wrong number of arguments for aggregate expression") {
        // The first aggregation that takes a parameter.
        let param_aggregation = |i: usize| {
            tokens[i].kind == Kind::Ident
                && is_word(
                    &[
                        "topk",
                        "bottomk",
                        "quantile",
                        "count_values",
                        "limitk",
                        "limit_ratio",
                    ],
                    text(&tokens[i]),
                )
        };
        return match find(&param_aggregation) {
            Some(i) => at(tokens[i].start, message),
            None => PlanError::Parse(message),
        };
    }
    // bad number or duration syntax: 5x
    if let Some(bad) = message.strip_prefix("bad number or duration syntax: ") {
        let open = rewrite::openers(&tokens);
        let Some(i) = find(&|i| tokens[i].kind == Kind::Num && text(&tokens[i]) == bad) else {
            return PlanError::Parse(message);
        };
        // Inside `[…]` the lexer reads only durations.
        let in_brackets = (i + 1..tokens.len())
            .find(|&j| punct(j, ']') || punct(j, '[') || punct(j, '(') || punct(j, ')'))
            .is_some_and(|j| punct(j, ']') && open[j].is_some_and(|o| o < i));
        let what = if in_brackets {
            "duration"
        } else {
            "number or duration"
        };
        return at(
            tokens[i].start,
            format!("bad {what} syntax: {:?}", number_prefix(bad)),
        );
    }
    if message == "unexpected second colon(:) in brackets" {
        // The lexer reads `1h:5m:1m` as one token: look at the bytes inside `[…]`.
        let second = find(&|i| punct(i, '[')).and_then(|o| {
            let inner = query[tokens[o].end..].split(']').next().unwrap_or("");
            let (first, _) = inner.match_indices(':').nth(1)?;
            Some(tokens[o].end + first)
        });
        let message = "unexpected colon ':'".to_string();
        return match second {
            Some(offset) => at(offset, message),
            None => PlanError::Parse(message),
        };
    }
    if message == "duration must be greater than 0" {
        let zero = |i: usize| {
            tokens[i].kind == Kind::Num
                && i > 0
                && (punct(i - 1, '[') || punct(i - 1, ':'))
                && text(&tokens[i])
                    .chars()
                    .all(|c| !c.is_ascii_digit() || c == '0')
        };
        return match find(&zero) {
            Some(i) => at(tokens[i].start, message),
            None => PlanError::Parse(message),
        };
    }
    if let Some((offset, message)) = type_error_position(query, &tokens, &message) {
        return at(offset, message);
    }
    if let Some(got) = message.strip_prefix(
        "unary expression only allowed on expressions of type scalar or vector, got: ",
    ) {
        return PlanError::Parse(format!(
            "unary expression only allowed on expressions of type scalar or instant vector, \
             got {got:?}"
        ));
    }
    // set operator 'and' not allowed in binary scalar expression
    if let Some(rest) = message.strip_prefix("set operator '") {
        if let Some((op, tail)) = rest.split_once('\'') {
            return PlanError::Parse(format!("set operator {op:?}{tail}"));
        }
    }
    PlanError::Parse(message)
}

// --- Where a type error is: Prometheus reports type errors at the node they are
// about (an operand, an argument, a selector, an operator); promql-parser reports
// them without a place. The functions below find that node in the tokens.

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
fn argument_of_type(query: &str, raw: &[Token], func: &str, got: &str) -> Option<usize> {
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
fn type_error_position(query: &str, raw: &[Token], message: &str) -> Option<(usize, String)> {
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

/// The part of a malformed number or duration Prometheus's lexer read before it
/// stopped (`5` of `5x`, `5m` of `5mx`): digits, then units each followed by digits.
fn number_prefix(text: &str) -> &str {
    let b = text.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        i
    };
    let mut i = digits(0);
    while let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
        .iter()
        .find(|u| text[i..].starts_with(**u))
    {
        i = digits(i + unit.len());
    }
    &text[..i]
}

/// What the recognizer sees: a token of the query as Prometheus's lexer would make it
/// (two-character operators joined; numbers told from durations), or the end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tok<'a> {
    /// An identifier, keyword or word operator, as written.
    Word(&'a str),
    Number(&'a str),
    Duration(&'a str),
    Str(&'a str),
    /// Punctuation or an operator, as written (`=~`, `(`).
    Sym(&'a str),
    End,
}

const OPERATORS: [&str; 13] = [
    "+", "-", "*", "/", "%", "^", "==", "!=", "<", "<=", ">", ">=", "atan2",
];

/// Joins the single characters of [`rewrite::lex`] into Prometheus's tokens.
fn tokens_of<'a>(query: &'a str, raw: &[Token]) -> Vec<(Tok<'a>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let t = raw[i];
        let text = &query[t.start..t.end];
        let tok = match t.kind {
            Kind::Ident if is_word(&["inf", "nan"], text) => Tok::Number(text),
            Kind::Ident => Tok::Word(text),
            Kind::Str => Tok::Str(text),
            Kind::Num if text.parse::<f64>().is_ok() || text.starts_with("0x") => Tok::Number(text),
            Kind::Num => Tok::Duration(text),
            Kind::Punct(c) => {
                let next = raw.get(i + 1).filter(|n| n.start == t.end);
                let pair = next.and_then(|n| match (c, n.kind) {
                    ('=', Kind::Punct('=' | '~'))
                    | ('!', Kind::Punct('=' | '~'))
                    | ('<' | '>', Kind::Punct('=')) => Some(&query[t.start..n.end]),
                    _ => None,
                });
                if let Some(p) = pair {
                    i += 1;
                    Tok::Sym(p)
                } else {
                    Tok::Sym(text)
                }
            }
        };
        out.push((tok, t.start));
        i += 1;
    }
    out.push((Tok::End, query.len()));
    out
}

/// How Prometheus's parser names a token in "unexpected …".
fn describe(tok: Tok<'_>) -> String {
    let quote = |s: &str| format!("{s:?}");
    match tok {
        Tok::End => "end of input".into(),
        Tok::Word(w) if is_word(&KEYWORDS, w) => format!("<{w}>"),
        Tok::Word(w) if is_word(&WORD_OPERATORS, w) => format!("<op:{w}>"),
        Tok::Word(w) if is_word(&AGGREGATORS, w) => format!("<aggr:{w}>"),
        Tok::Word(w) if w.contains(':') => format!("metric identifier {}", quote(w)),
        Tok::Word(w) => format!("identifier {}", quote(w)),
        Tok::Number(n) => format!("number {}", quote(n)),
        Tok::Duration(d) => format!("duration {}", quote(d)),
        Tok::Str(s) if s.chars().count() > 10 => {
            format!(
                "string {}...",
                quote(&s.chars().take(10).collect::<String>())
            )
        }
        Tok::Str(s) => format!("string {}", quote(s)),
        Tok::Sym(s) if OPERATORS.contains(&s) || matches!(s, "=~" | "!~" | "@") => {
            format!("<op:{s}>")
        }
        Tok::Sym(s) => quote(s),
    }
}

/// Where the query first stops being PromQL and Prometheus's message for it; `None` if
/// the recognizer finds nothing wrong (the parser's complaint is then about meaning).
fn first_unexpected(query: &str, raw: &[Token]) -> Option<(usize, String)> {
    let mut r = Recognizer {
        toks: tokens_of(query, raw),
        i: 0,
        aggregation_depth: 0,
    };
    r.expr().and_then(|()| r.expect_end()).err()
}

type Step = Result<(), (usize, String)>;

/// A recursive-descent recognizer of PromQL that fails where Prometheus's grammar does,
/// with the message of the grammar's error rule that would catch it.
struct Recognizer<'a> {
    toks: Vec<(Tok<'a>, usize)>,
    i: usize,
    /// How many aggregations the current token is inside (their errors say "in
    /// aggregation").
    aggregation_depth: usize,
}

impl<'a> Recognizer<'a> {
    fn peek(&self) -> Tok<'a> {
        self.toks[self.i.min(self.toks.len() - 1)].0
    }

    fn peek_at(&self, k: usize) -> Tok<'a> {
        self.toks[(self.i + k).min(self.toks.len() - 1)].0
    }

    fn bump(&mut self) {
        self.i += 1;
    }

    fn sym(&self, s: &str) -> bool {
        self.peek() == Tok::Sym(s)
    }

    fn word(&self, list: &[&str]) -> bool {
        matches!(self.peek(), Tok::Word(w) if is_word(list, w))
    }

    /// Fails at the current token, in `context` with `expected` if given.
    fn fail(&self, context: &str, expected: &str) -> Step {
        let mut m = format!("unexpected {}", describe(self.peek()));
        if !context.is_empty() {
            m.push_str(" in ");
            m.push_str(context);
        }
        if !expected.is_empty() {
            m.push_str(", expected ");
            m.push_str(expected);
        }
        Err((self.toks[self.i.min(self.toks.len() - 1)].1, m))
    }

    /// Fails at the current token, without a rule of its own.
    fn fail_plain(&self) -> Step {
        if self.aggregation_depth > 0 {
            self.fail("aggregation", "")
        } else {
            self.fail("", "")
        }
    }

    fn expect_end(&self) -> Step {
        if self.peek() == Tok::End {
            Ok(())
        } else {
            self.fail_plain()
        }
    }

    /// operand (binary-operator modifiers operand)*
    fn expr(&mut self) -> Step {
        self.operand()?;
        loop {
            let binary = match self.peek() {
                Tok::Sym(s) => OPERATORS.contains(&s),
                Tok::Word(w) => is_word(&WORD_OPERATORS, w),
                _ => false,
            };
            if !binary {
                return Ok(());
            }
            self.bump();
            if self.word(&["bool"]) {
                self.bump();
            }
            if self.word(&["on", "ignoring"]) {
                self.bump();
                self.grouping()?;
                if self.word(&["group_left", "group_right"]) {
                    self.bump();
                    if self.sym("(") {
                        self.grouping()?;
                    }
                }
            }
            self.operand()?;
        }
    }

    /// A unary-signed primary with its `[…]`, `offset` and `@` modifiers.
    fn operand(&mut self) -> Step {
        while self.sym("-") || self.sym("+") {
            self.bump();
        }
        self.primary()?;
        loop {
            if self.sym("[") {
                self.bump();
                self.brackets()?;
            } else if self.word(&["offset"]) {
                self.bump();
                if self.sym("-") {
                    self.bump();
                }
                match self.peek() {
                    Tok::Duration(_) | Tok::Number(_) => self.bump(),
                    _ => return self.fail("offset", "duration"),
                }
            } else if self.sym("@") {
                self.bump();
                self.at_modifier()?;
            } else {
                return Ok(());
            }
        }
    }

    fn primary(&mut self) -> Step {
        match self.peek() {
            Tok::Number(_) | Tok::Str(_) => {
                self.bump();
                Ok(())
            }
            Tok::Sym("(") => {
                self.bump();
                self.expr()?;
                self.close(")")
            }
            Tok::Sym("{") => self.matchers(),
            Tok::Word(w)
                if is_word(&AGGREGATORS, w)
                    && (self.peek_at(1) == Tok::Sym("(")
                        || matches!(self.peek_at(1), Tok::Word(k) if is_word(&["by", "without"], k))) =>
            {
                self.bump();
                self.aggregation()
            }
            Tok::Word(w)
                if !(is_word(&KEYWORDS, w) || is_word(&WORD_OPERATORS, w))
                    || is_word(&NAME_KEYWORDS, w) =>
            {
                self.bump();
                if self.sym("(") {
                    self.bump();
                    self.arguments()
                } else if self.sym("{") {
                    self.matchers()
                } else {
                    Ok(())
                }
            }
            _ => self.fail_plain(),
        }
    }

    fn close(&mut self, s: &str) -> Step {
        if self.sym(s) {
            self.bump();
            Ok(())
        } else {
            self.fail_plain()
        }
    }

    /// After `name(`: arguments up to `)`.
    fn arguments(&mut self) -> Step {
        if self.sym(")") {
            self.bump();
            return Ok(());
        }
        loop {
            self.expr()?;
            if self.sym(",") {
                self.bump();
                if self.sym(")") {
                    // A trailing comma: the parser names it.
                    self.bump();
                    return Ok(());
                }
            } else {
                return self.close(")");
            }
        }
    }

    /// After the aggregator: `[by|without (…)] (args) [by|without (…)]`.
    fn aggregation(&mut self) -> Step {
        self.aggregation_depth += 1;
        let modifier_first = self.word(&["by", "without"]);
        if modifier_first {
            self.bump();
            self.grouping()?;
        }
        if !self.sym("(") {
            return self.fail("aggregation", "");
        }
        self.bump();
        self.arguments()?;
        self.aggregation_depth -= 1;
        if !modifier_first && self.word(&["by", "without"]) {
            self.bump();
            self.grouping()?;
        }
        Ok(())
    }

    /// `(label, …)` after `by`, `without`, `on`, `ignoring` or a group modifier.
    fn grouping(&mut self) -> Step {
        let context = "grouping opts";
        if !self.sym("(") {
            return self.fail(context, "\"(\"");
        }
        self.bump();
        if self.sym(")") {
            self.bump();
            return Ok(());
        }
        loop {
            if !matches!(self.peek(), Tok::Word(_)) {
                return self.fail(context, "label");
            }
            self.bump();
            if self.sym(")") {
                self.bump();
                return Ok(());
            }
            if !self.sym(",") {
                return self.fail(context, "\",\" or \")\"");
            }
            self.bump();
            if self.sym(")") {
                self.bump();
                return Ok(());
            }
        }
    }

    /// `{name op "value", …}`, at the `{`.
    fn matchers(&mut self) -> Step {
        let context = "label matching";
        self.bump();
        loop {
            if self.sym("}") {
                self.bump();
                return Ok(());
            }
            let quoted = match self.peek() {
                Tok::Word(_) => false,
                Tok::Str(_) => true,
                _ => return self.fail(context, "identifier or \"}\""),
            };
            self.bump();
            if matches!(self.peek(), Tok::Sym("=" | "!=" | "=~" | "!~")) {
                self.bump();
            } else if quoted && matches!(self.peek(), Tok::Sym("," | "}")) {
                // A quoted metric name (`{"x"}`, Prometheus 3.x).
                if self.sym(",") {
                    self.bump();
                }
                continue;
            } else {
                return self.fail(context, "label matching operator");
            }
            if !matches!(self.peek(), Tok::Str(_)) {
                return self.fail(context, "string");
            }
            self.bump();
            if self.sym(",") {
                self.bump();
            } else if !self.sym("}") {
                return self.fail(context, "\",\" or \"}\"");
            }
        }
    }

    /// After `[`: a range `d]` or a subquery `d:[d]]`.
    fn brackets(&mut self) -> Step {
        if !matches!(self.peek(), Tok::Duration(_) | Tok::Number(_)) {
            return self.fail("subquery selector", "duration");
        }
        self.bump();
        if self.sym("]") {
            self.bump();
            return Ok(());
        }
        if !self.sym(":") {
            return self.fail("subquery or range", "\":\" or \"]\"");
        }
        self.bump();
        if matches!(self.peek(), Tok::Duration(_) | Tok::Number(_)) {
            self.bump();
            if !self.sym("]") {
                return self.fail("subquery selector", "\"]\"");
            }
        } else if !self.sym("]") {
            return self.fail("subquery selector", "duration or \"]\"");
        }
        self.bump();
        Ok(())
    }

    /// After `@`: a timestamp or `start()` / `end()`.
    fn at_modifier(&mut self) -> Step {
        let context = "@";
        if self.sym("-") || self.sym("+") {
            self.bump();
        }
        match self.peek() {
            Tok::Number(_) => {
                self.bump();
                Ok(())
            }
            Tok::Word(w) if is_word(&["start", "end"], w) => {
                self.bump();
                for s in ["(", ")"] {
                    if !self.sym(s) {
                        return self.fail(context, "timestamp");
                    }
                    self.bump();
                }
                Ok(())
            }
            _ => self.fail(context, "timestamp"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(q: &str) -> String {
        crate::promql::plan::parse(q).unwrap_err().to_string()
    }

    #[test]
    fn words_tokens_like_prometheus() {
        assert_eq!(describe(Tok::Word("by")), "<by>");
        assert_eq!(describe(Tok::Word("and")), "<op:and>");
        assert_eq!(describe(Tok::Sym("%")), "<op:%>");
        assert_eq!(describe(Tok::Sym("=")), "\"=\"");
        assert_eq!(describe(Tok::Word("a:b")), "metric identifier \"a:b\"");
        assert_eq!(
            describe(Tok::Str("\"abcdefghijklmnop\"")),
            r#"string "\"abcdefghi"..."#
        );
    }

    #[test]
    fn finds_the_first_unexpected_token() {
        // Prometheus 2.42's answers (tests/query_api.rs compares more side by side).
        for (q, want) in [
            (
                "foo bar",
                r#"1:5: parse error: unexpected identifier "bar""#,
            ),
            (
                "sum by (a b) (x)",
                r#"1:11: parse error: unexpected identifier "b" in grouping opts, expected "," or ")""#,
            ),
            (
                "sum(rate(x y))",
                r#"1:12: parse error: unexpected identifier "y" in aggregation"#,
            ),
            (
                r#"x{a="b" c="d"}"#,
                r#"1:9: parse error: unexpected identifier "c" in label matching, expected "," or "}""#,
            ),
            (
                "foo[5m] @ start(1)",
                r#"1:17: parse error: unexpected number "1" in @, expected timestamp"#,
            ),
            ("x % % y", "1:5: parse error: unexpected <op:%>"),
            ("sum(x) by (a) by (b)", "1:15: parse error: unexpected <by>"),
        ] {
            assert_eq!(error(q), want, "{q}");
        }
    }

    #[test]
    fn type_errors_at_the_node_prometheus_names() {
        // Prometheus 2.42's answers (tests/query_api.rs compares more side by side).
        for (q, want) in [
            (
                "foo[5m] + 1",
                "1:1: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "sum by (a) (foo) + foo[1m]",
                "1:20: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "sum(foo[5m])",
                "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
            ),
            (
                "quantile(foo, bar)",
                "1:10: parse error: expected type scalar in aggregation parameter, got instant vector",
            ),
            ("1 > 2", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
            (
                "foo @ 1 offset 1m @ 2",
                "1:1: parse error: @ <timestamp> may not be set multiple times",
            ),
            (
                r#"round(foo, "a")"#,
                r#"1:12: parse error: expected type scalar in call to function "round", got string"#,
            ),
            (
                "foo[5m] offset 1h [1m]",
                "1:19: parse error: ranges only allowed for vector selectors",
            ),
        ] {
            assert_eq!(error(q), want, "{q}");
        }
    }
}
