//! promql-parser's error messages in Prometheus's words and at Prometheus's place:
//! [`syntax_error`] recognizes each message promql-parser gives (wrong arity or
//! argument type in a call, unknown function, lexer errors, unclosed brackets, bad
//! numbers and durations, …), rewords it as Prometheus 2.42 does and finds the
//! offending construct in the raw text. "invalid promql query" goes to the recognizer
//! (`recognizer.rs`), type errors to `type_position.rs`.
//!
//! Contract (the parent module's): positions are of the text the user wrote; a message
//! whose place cannot be found is returned as [`PlanError::Parse`], without a position.

use super::recognizer::first_unexpected;
use super::tokens::is_word;
use super::type_position::{argument_of_type, type_error_position};
use crate::promql::plan::PlanError;
use crate::promql::rewrite::{self, Kind, Token};

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
