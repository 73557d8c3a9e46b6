//! The `anchored` / `smoothed` selector modifiers (experimental Prometheus 3.x syntax
//! promql-parser 0.11 rejects): rewritten before parsing into a marker matcher on the
//! selector they modify, which lowering (`plan.rs`) takes back out.
//!
//! ```promql
//! rate(x{a="b"}[5m] offset 1m anchored)  ->  rate(x{__promflow_modifier__="anchored",a="b"}[5m] offset 1m)
//! x @ 100 smoothed                       ->  x{__promflow_modifier__="smoothed"} @ 100
//! ```
//!
//! Contract: a keyword is rewritten only where it follows a selector and its
//! `[range]`, `offset` and `@` modifiers (so a metric named `smoothed` is left alone);
//! anything else is left as is, for the parser to report.

/// The label name of the marker matcher.
pub const MARKER: &str = "__promflow_modifier__";

/// The keywords, as they are written.
const KEYWORDS: [&str; 2] = ["anchored", "smoothed"];

/// Identifiers after which an identifier starts an operand (so is not a modifier).
const OPERATOR_WORDS: [&str; 12] = [
    "and",
    "or",
    "unless",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "atan2",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Str,
    Ident,
    Num,
    Punct(char),
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn lex(q: &str) -> Vec<Token> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            Kind::Str
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                i += 1;
            }
            Kind::Num
        } else if ident(c) {
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            Kind::Ident
        } else {
            i += 1;
            Kind::Punct(c as char)
        };
        out.push(Token {
            kind,
            start,
            end: i,
        });
    }
    out
}

/// For each closing bracket token, the index of its opening one.
fn openers(tokens: &[Token]) -> Vec<Option<usize>> {
    let mut out = vec![None; tokens.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => stack.push(i),
            Kind::Punct(')' | ']' | '}') => out[i] = stack.pop(),
            _ => {}
        }
    }
    out
}

/// Rewrites every `anchored` / `smoothed` modifier into a marker matcher.
pub fn rewrite(query: &str) -> String {
    if !KEYWORDS
        .iter()
        .any(|k| query.to_ascii_lowercase().contains(k))
    {
        return query.to_string();
    }
    let tokens = lex(query);
    let open = openers(&tokens);
    let text = |i: usize| &query[tokens[i].start..tokens[i].end];
    let is = |i: usize, k: Kind| tokens[i].kind == k;
    let word = |i: usize, w: &str| is(i, Kind::Ident) && text(i).eq_ignore_ascii_case(w);
    // (position, text to insert) and (start, end) to delete.
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut deletes: Vec<(usize, usize)> = Vec::new();
    for k in 1..tokens.len() {
        let Some(keyword) = KEYWORDS.iter().find(|w| word(k, w)) else {
            continue;
        };
        let operand_end = match tokens[k - 1].kind {
            Kind::Punct(']' | '}' | ')') | Kind::Num => true,
            Kind::Ident => !OPERATOR_WORDS.iter().any(|w| word(k - 1, w)),
            _ => false,
        };
        if !operand_end {
            continue;
        }
        // Walk back over `[range]`, `offset d` and `@ t` to the selector.
        let mut j = k as isize - 1;
        let at = |j: isize| usize::try_from(j).ok();
        while let Some(u) = at(j) {
            let signed =
                |n: isize| at(n).is_some_and(|n| matches!(tokens[n].kind, Kind::Punct('-' | '+')));
            match tokens[u].kind {
                Kind::Punct(']') => match open[u] {
                    Some(o) => j = o as isize - 1,
                    None => break,
                },
                Kind::Punct(')') => match open[u] {
                    Some(o)
                        if o >= 2
                            && (word(o - 1, "start") || word(o - 1, "end"))
                            && is(o - 2, Kind::Punct('@')) =>
                    {
                        j = o as isize - 3
                    }
                    _ => break,
                },
                Kind::Num => {
                    let base = if signed(j - 1) { j - 2 } else { j - 1 };
                    match at(base) {
                        Some(b) if is(b, Kind::Punct('@')) || word(b, "offset") => j = base - 1,
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        let Some(sel_end) = at(j) else { continue };
        let marker = format!("{MARKER}=\"{keyword}\"");
        match tokens[sel_end].kind {
            Kind::Punct('}') => {
                let Some(o) = open[sel_end] else { continue };
                let sep = if o + 1 == sel_end { "" } else { "," };
                inserts.push((tokens[o].end, format!("{marker}{sep}")));
            }
            Kind::Ident if !OPERATOR_WORDS.iter().any(|w| word(sel_end, w)) => {
                inserts.push((tokens[sel_end].end, format!("{{{marker}}}")));
            }
            _ => continue,
        }
        deletes.push((tokens[k].start, tokens[k].end));
    }
    let mut out = String::with_capacity(query.len() + 64);
    let mut pos = 0;
    let mut edits: Vec<(usize, Option<&str>, usize)> = inserts
        .iter()
        .map(|(p, s)| (*p, Some(s.as_str()), *p))
        .chain(deletes.iter().map(|(s, e)| (*s, None, *e)))
        .collect();
    edits.sort_by_key(|e| e.0);
    for (start, insert, end) in edits {
        out.push_str(&query[pos..start]);
        if let Some(s) = insert {
            out.push_str(s);
        }
        pos = end;
    }
    out.push_str(&query[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mode: &str) -> String {
        format!("{MARKER}=\"{mode}\"")
    }

    #[test]
    fn marks_the_selector_a_modifier_follows() {
        assert_eq!(
            rewrite(r#"rate(x{a="b"}[5m] offset 1m anchored)"#),
            format!(r#"rate(x{{{},a="b"}}[5m] offset 1m )"#, m("anchored"))
        );
        assert_eq!(
            rewrite("x @ 100 smoothed + 0"),
            format!("x{{{}}} @ 100  + 0", m("smoothed"))
        );
        assert_eq!(
            rewrite("x offset -100 smoothed"),
            format!("x{{{}}} offset -100 ", m("smoothed"))
        );
        assert_eq!(
            rewrite("x{}[1m] @ end() smoothed"),
            format!("x{{{}}}[1m] @ end() ", m("smoothed"))
        );
    }

    #[test]
    fn leaves_metric_names_and_strings_alone() {
        for q in [
            "smoothed + anchored",
            "x > bool smoothed",
            r#"x{l="y[1m] smoothed"}"#,
            "sum by (smoothed) (x)",
            "(x) smoothed",
        ] {
            assert_eq!(rewrite(q), q);
        }
    }
}
