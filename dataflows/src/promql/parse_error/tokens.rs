//! The query as Prometheus's lexer sees it: the word lists of its grammar
//! (aggregators, keywords, operators written as words), the characters of
//! [`rewrite::lex`](crate::promql::rewrite::lex) joined into Prometheus's tokens
//! ([`tokens_of`]: two-character operators joined, numbers told from durations), and
//! how Prometheus's parser names a token in an "unexpected …" message ([`describe`]).
//!
//! Contract: words are compared ignoring ASCII case; every token carries the byte
//! offset where it starts in the query, and the list ends with [`Tok::End`] at the
//! query's length.

use crate::promql::rewrite::{Kind, Token};

/// Aggregation operators: an aggregation when followed by `(`, `by` or `without`.
pub(super) const AGGREGATORS: [&str; 14] = [
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
pub(super) const KEYWORDS: [&str; 8] = [
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
pub(super) const WORD_OPERATORS: [&str; 4] = ["and", "or", "unless", "atan2"];

/// Words that may name a metric where an operand starts (Prometheus's
/// `metric_identifier`): besides identifiers, these keywords and aggregators.
pub(super) const NAME_KEYWORDS: [&str; 8] = [
    "by", "without", "and", "or", "unless", "offset", "start", "end",
];

pub(super) fn is_word(list: &[&str], w: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(w))
}

/// What the recognizer sees: a token of the query as Prometheus's lexer would make it
/// (two-character operators joined; numbers told from durations), or the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Tok<'a> {
    /// An identifier, keyword or word operator, as written.
    Word(&'a str),
    Number(&'a str),
    Duration(&'a str),
    Str(&'a str),
    /// Punctuation or an operator, as written (`=~`, `(`).
    Sym(&'a str),
    End,
}

pub(super) const OPERATORS: [&str; 13] = [
    "+", "-", "*", "/", "%", "^", "==", "!=", "<", "<=", ">", ">=", "atan2",
];

/// Joins the single characters of [`rewrite::lex`](crate::promql::rewrite::lex) into
/// Prometheus's tokens.
pub(super) fn tokens_of<'a>(query: &'a str, raw: &[Token]) -> Vec<(Tok<'a>, usize)> {
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
pub(super) fn describe(tok: Tok<'_>) -> String {
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
