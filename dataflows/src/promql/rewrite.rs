//! Pre-parse rewrites of valid PromQL that promql-parser 0.11 rejects, each into
//! something it accepts and that lowering (`plan.rs`) turns back into what was meant.
//!
//! ```promql
//! rate(x{a="b"}[5m] offset 1m anchored)  ->  rate(x{__promflow_rewrite__="anchored",a="b"}[5m] offset 1m)
//! x @ 100 smoothed                       ->  x{__promflow_rewrite__="smoothed"} @ 100
//! info(x, {data=~".*"})                  ->  info(x, {__promflow_rewrite__="info",data=~".*"})
//! holt_winters(x[5m], 0.5, 0.5)          ->  double_exponential_smoothing(x[5m], 0.5, 0.5)
//! label_join(x, "\xff", ",")              ->  label_join(x, "\u{fffd}", ",")
//! ```
//!
//! - `anchored` / `smoothed` modifiers become a marker matcher on the selector they
//!   modify. A keyword is rewritten only where it follows a selector and its
//!   `[range]`, `offset` and `@` modifiers, so a metric named `smoothed` is left alone.
//! - The data-label selector of `info()` may match the empty label set, which the
//!   parser refuses for a selector; a marker matcher makes it acceptable.
//! - `holt_winters`, the Prometheus 2.x name of `double_exponential_smoothing`.
//! - A string whose escapes (`\xff`, `\377`) spell bytes that are not UTF-8: Go keeps
//!   the bytes (and then rejects them as a label name), promql-parser decodes each as a
//!   character (`\xff` to `ÿ`, a valid name). The string is rewritten with U+FFFD in
//!   their place, as Prometheus prints them, and [`NOT_UTF8`] marks it as not a name.
//!
//! Anything else is left as is, for the parser to report. Marker matchers are taken
//! out again when the selector is lowered.

/// The label name of the marker matchers.
pub const MARKER: &str = "__promflow_rewrite__";

/// The value of the marker on the data-label selector of `info()`.
pub const INFO_SELECTOR: &str = "info";

/// What stands for bytes that are not UTF-8 in a rewritten string literal.
pub const NOT_UTF8: char = char::REPLACEMENT_CHARACTER;

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

/// What a token of [`lex`] is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Str,
    Ident,
    Num,
    Punct(char),
}

/// A token: its kind and byte range in the query.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Splits a query into strings, identifiers, numbers (durations included) and single
/// punctuation characters, skipping blanks and comments.
pub(super) fn lex(q: &str) -> Vec<Token> {
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
pub(super) fn openers(tokens: &[Token]) -> Vec<Option<usize>> {
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

/// Applies every rewrite.
pub fn rewrite(query: &str) -> String {
    let tokens = lex(query);
    let open = openers(&tokens);
    let src = Source {
        query,
        tokens: &tokens,
        open: &open,
    };
    let mut edits = Vec::new();
    for k in 0..src.tokens.len() {
        src.modifier(k, &mut edits);
        src.info_selector(k, &mut edits);
        if src.is(k, Kind::Str) {
            edits.extend(not_utf8_string(&src.tokens[k], src.text(k)));
        }
        if src.word(k, "holt_winters") && src.is(k + 1, Kind::Punct('(')) {
            edits.push(Edit {
                start: src.tokens[k].start,
                end: src.tokens[k].end,
                insert: "double_exponential_smoothing".into(),
            });
        }
    }
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(query.len() + 64);
    let mut pos = 0;
    for e in edits {
        out.push_str(&query[pos..e.start]);
        out.push_str(&e.insert);
        pos = e.end;
    }
    out.push_str(&query[pos..]);
    out
}

/// The byte offset of the first call to `func`.
pub fn call(query: &str, func: &str) -> Option<usize> {
    call_tokens(query, func).map(|(name, _)| name)
}

/// The byte offset of the first argument of the first call to `func`.
pub fn first_argument(query: &str, func: &str) -> Option<usize> {
    call_tokens(query, func).and_then(|(_, arg)| arg)
}

/// Offsets of the name and of the first argument of the first call to `func`.
fn call_tokens(query: &str, func: &str) -> Option<(usize, Option<usize>)> {
    let tokens = lex(query);
    let i = (0..tokens.len().saturating_sub(1)).find(|&i| {
        tokens[i].kind == Kind::Ident
            && &query[tokens[i].start..tokens[i].end] == func
            && tokens[i + 1].kind == Kind::Punct('(')
    })?;
    Some((tokens[i].start, tokens.get(i + 2).map(|t| t.start)))
}

/// The edit rewriting a quoted string literal whose escapes spell bytes that are not
/// UTF-8 (see the module doc); `None` for any other token.
fn not_utf8_string(token: &Token, text: &str) -> Option<Edit> {
    let bytes = go_unquote(text)?;
    if std::str::from_utf8(&bytes).is_ok() {
        return None;
    }
    let mut insert = String::from("\"");
    for c in String::from_utf8_lossy(&bytes).chars() {
        match c {
            '\\' | '"' => insert.extend(['\\', c]),
            c if c.is_control() => insert.push_str(&format!("\\u{:04x}", c as u32)),
            c => insert.push(c),
        }
    }
    insert.push('"');
    Some(Edit {
        start: token.start,
        end: token.end,
        insert,
    })
}

/// The bytes a `"…"` or `'…'` literal stands for, with Go's escapes (`\n`, `\xHH`,
/// `\ooo`, `\uHHHH`, `\UHHHHHHHH`); `None` for a raw string or a malformed literal
/// (left for the parser to report).
fn go_unquote(text: &str) -> Option<Vec<u8>> {
    let quote = text.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let body = text.strip_prefix(quote)?.strip_suffix(quote)?.as_bytes();
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok();
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        let simple = match e {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' | b'"' | b'\'' => Some(e),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let (len, value) = match e {
            b'x' => (4, hex(body.get(i + 2..i + 4)?)?),
            b'0'..=b'7' => {
                let digits = std::str::from_utf8(body.get(i + 1..i + 4)?).ok()?;
                (4, u32::from_str_radix(digits, 8).ok().filter(|v| *v < 256)?)
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let c = char::from_u32(hex(body.get(i + 2..i + 2 + n)?)?)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 2 + n;
                continue;
            }
            _ => return None,
        };
        out.push(value as u8);
        i += len;
    }
    Some(out)
}

/// Replace `start..end` (empty: insert at `start`) by `insert`.
struct Edit {
    start: usize,
    end: usize,
    insert: String,
}

struct Source<'a> {
    query: &'a str,
    tokens: &'a [Token],
    open: &'a [Option<usize>],
}

impl Source<'_> {
    fn text(&self, i: usize) -> &str {
        &self.query[self.tokens[i].start..self.tokens[i].end]
    }

    fn is(&self, i: usize, k: Kind) -> bool {
        self.tokens.get(i).is_some_and(|t| t.kind == k)
    }

    fn word(&self, i: usize, w: &str) -> bool {
        self.is(i, Kind::Ident) && self.text(i).eq_ignore_ascii_case(w)
    }

    fn operator_word(&self, i: usize) -> bool {
        OPERATOR_WORDS.iter().any(|w| self.word(i, w))
    }

    /// The edit adding `marker` to the selector that ends at token `end` (`}` or a
    /// metric name).
    fn mark_selector(&self, end: usize, marker: &str) -> Option<Edit> {
        let t = self.tokens;
        let (at, insert) = match t[end].kind {
            Kind::Punct('}') => {
                let o = self.open[end]?;
                let sep = if o + 1 == end { "" } else { "," };
                (t[o].end, format!("{marker}{sep}"))
            }
            Kind::Ident if !self.operator_word(end) => (t[end].end, format!("{{{marker}}}")),
            _ => return None,
        };
        Some(Edit {
            start: at,
            end: at,
            insert,
        })
    }

    /// `anchored` / `smoothed` at token `k`.
    fn modifier(&self, k: usize, edits: &mut Vec<Edit>) {
        let Some(keyword) = KEYWORDS.iter().find(|w| self.word(k, w)) else {
            return;
        };
        let operand_end = k > 0
            && match self.tokens[k - 1].kind {
                Kind::Punct(']' | '}' | ')') | Kind::Num => true,
                Kind::Ident => !self.operator_word(k - 1),
                _ => false,
            };
        if !operand_end {
            return;
        }
        // Walk back over `[range]`, `offset d` and `@ t` to the selector.
        let at = |j: isize| usize::try_from(j).ok();
        let signed = |n: isize| {
            at(n).is_some_and(|n| self.is(n, Kind::Punct('-')) || self.is(n, Kind::Punct('+')))
        };
        let mut j = k as isize - 1;
        while let Some(u) = at(j) {
            match self.tokens[u].kind {
                Kind::Punct(']') => match self.open[u] {
                    Some(o) => j = o as isize - 1,
                    None => break,
                },
                Kind::Punct(')') => match self.open[u] {
                    Some(o)
                        if o >= 2
                            && (self.word(o - 1, "start") || self.word(o - 1, "end"))
                            && self.is(o - 2, Kind::Punct('@')) =>
                    {
                        j = o as isize - 3
                    }
                    _ => break,
                },
                Kind::Num => {
                    let base = if signed(j - 1) { j - 2 } else { j - 1 };
                    match at(base) {
                        Some(b) if self.is(b, Kind::Punct('@')) || self.word(b, "offset") => {
                            j = base - 1
                        }
                        _ => break,
                    }
                }
                _ => break,
            }
        }
        let marker = format!("{MARKER}=\"{keyword}\"");
        if let Some(edit) = at(j).and_then(|end| self.mark_selector(end, &marker)) {
            edits.push(edit);
            edits.push(Edit {
                start: self.tokens[k].start,
                end: self.tokens[k].end,
                insert: String::new(),
            });
        }
    }

    /// `info(expr, {…})` at token `k`: marks a second argument written as bare braces.
    fn info_selector(&self, k: usize, edits: &mut Vec<Edit>) {
        if !(self.is(k, Kind::Ident) && self.text(k) == "info" && self.is(k + 1, Kind::Punct('(')))
        {
            return;
        }
        // The first comma at depth one inside the call's parentheses.
        let mut depth = 0;
        let mut i = k + 1;
        while i < self.tokens.len() {
            match self.tokens[i].kind {
                Kind::Punct('(' | '[' | '{') => depth += 1,
                Kind::Punct(')' | ']' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                Kind::Punct(',') if depth == 1 => break,
                _ => {}
            }
            i += 1;
        }
        if !self.is(i + 1, Kind::Punct('{')) {
            return;
        }
        let Some(close) = (i + 2..self.tokens.len()).find(|&c| self.open[c] == Some(i + 1)) else {
            return;
        };
        let marker = format!("{MARKER}=\"{INFO_SELECTOR}\"");
        edits.extend(self.mark_selector(close, &marker));
    }
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
    fn info_selector_and_holt_winters() {
        assert_eq!(
            rewrite(r#"info(rate(x[1m]), {data=~".*"})"#),
            format!(r#"info(rate(x[1m]), {{{},data=~".*"}})"#, m(INFO_SELECTOR))
        );
        assert_eq!(rewrite("info(x, y_info)"), "info(x, y_info)");
        assert_eq!(
            rewrite(r#"holt_winters(x[5m], 0.5, 0.5) + y{a="holt_winters"}"#),
            r#"double_exponential_smoothing(x[5m], 0.5, 0.5) + y{a="holt_winters"}"#
        );
    }

    #[test]
    fn strings_that_are_not_utf8() {
        assert_eq!(
            rewrite(r#"label_join(x, "\xff", ",")"#),
            "label_join(x, \"\u{fffd}\", \",\")"
        );
        assert_eq!(rewrite(r#"x{a='\377b\n'}"#), "x{a=\"\u{fffd}b\\u000a\"}");
        // Escapes that spell UTF-8, and raw strings, are left to the parser.
        for q in [
            r#"x{a="\xc3\xbf"}"#,
            r#"x{a="\u00ff\x41"}"#,
            r#"x{a=`\xff`}"#,
        ] {
            assert_eq!(rewrite(q), q);
        }
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
