//! Reader for Prometheus's PromQL test scripts (the `*.test` files).
//!
//! Owns the script syntax only, as described in `shared/promql-tests/FORMAT.md`:
//! blocks, `load`/`clear`/`eval` commands, `expect` directives and expected-result
//! lines. Values use the series notation of [`values`]. It does not evaluate anything;
//! the conformance runner (`tests/promql_conformance.rs`) drives an evaluator with
//! the [`Command`]s returned by [`parse_script`].
//!
//! Contract: a script that upstream accepts parses without error (expressions are
//! kept as text, not parsed here); native-histogram points become
//! [`Point::Histogram`].

pub mod compare;
mod error;
pub mod store;
mod values;

pub use error::{NotationError, ScriptProblem};
pub use values::{parse_duration_ms, parse_histogram, parse_number, parse_values, Point};

use crate::labels::Labels;

/// One command of a script, in file order.
#[derive(Clone, Debug)]
pub enum Command {
    /// `load <interval>` (or `load_with_nhcb`): samples to add to storage.
    Load(Load),
    /// `clear`: drop all samples.
    Clear {
        /// 1-based line of the command.
        line: usize,
    },
    /// `eval …`: one query and its expectation.
    Eval(Box<Eval>),
}

/// A `load` block.
#[derive(Clone, Debug)]
pub struct Load {
    /// 1-based line of the command.
    pub line: usize,
    /// Spacing of points in milliseconds.
    pub interval_ms: i64,
    /// Whether this was `load_with_nhcb` (classic histograms also become native ones).
    pub with_nhcb: bool,
    /// Series and their points; `None` is a missing point. Point `i` is at `i * interval_ms`.
    pub series: Vec<(Labels, Vec<Option<Point>>)>,
    /// Start-timestamp lines (`name{…}@st …`, FORMAT.md §3.4): per series, the offset
    /// (ms) of each point's start timestamp from the point's own timestamp; `None`:
    /// no start timestamp.
    pub start_offsets: Vec<(Labels, Vec<Option<i64>>)>,
}

/// When an eval runs.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalTime {
    /// `eval instant at T`.
    Instant {
        /// Evaluation time in ms.
        at_ms: i64,
    },
    /// `eval range from A to B step S`.
    Range {
        /// Start, ms.
        start_ms: i64,
        /// End, ms (inclusive).
        end_ms: i64,
        /// Step, ms.
        step_ms: i64,
    },
}

/// How an expected failure's message is checked.
#[derive(Clone, Debug, PartialEq)]
pub enum FailMatch {
    /// Any error.
    Any,
    /// The error string must equal this (trimmed).
    Message(String),
    /// The error string must match this regex.
    Regex(String),
}

/// One `eval` command with its expectation.
#[derive(Clone, Debug)]
pub struct Eval {
    /// 1-based line of the command.
    pub line: usize,
    /// The PromQL text, unparsed.
    pub expr: String,
    /// Instant or range.
    pub time: EvalTime,
    /// `expect fail` (or `eval_fail`).
    pub fail: Option<FailMatch>,
    /// `expect ordered` (or `eval_ordered`).
    pub ordered: bool,
    /// `expect warn|info|no_warn|no_info` directives, kept as written (not checked yet).
    pub annotations: Vec<String>,
    /// `expect range vector from A to B step S`: the instant result is a matrix.
    pub range_vector: Option<(i64, i64, i64)>,
    /// `expect string "…"`.
    pub string: Option<String>,
    /// The expected result lines.
    pub expected: Expected,
}

/// Expected result of an eval.
#[derive(Clone, Debug)]
pub enum Expected {
    /// A bare number line: the result is a scalar.
    Scalar(f64),
    /// Series lines (possibly none: the result must be empty).
    Series(Vec<(Labels, Vec<Option<Point>>)>),
}

/// A reader error, with its 1-based line.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptError {
    /// Line of the error.
    pub line: usize,
    /// What is wrong.
    pub problem: ScriptProblem,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for ScriptError {}

fn err<T>(line: usize, problem: ScriptProblem) -> Result<T, ScriptError> {
    Err(ScriptError { line, problem })
}

/// The error on `line` for `problem` (a [`ScriptProblem`] or a [`NotationError`]).
fn at(line: usize) -> impl Fn(ScriptProblem) -> ScriptError {
    move |problem| ScriptError { line, problem }
}

/// Parses a whole script into commands.
pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let lineno = i + 1;
        i += 1;
        if line.is_empty() {
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or("").to_lowercase();
        if word == "clear" {
            out.push(Command::Clear { line: lineno });
            continue;
        }
        // The block body: following lines up to the first empty one.
        let body_start = i;
        while i < lines.len() && !lines[i].is_empty() {
            i += 1;
        }
        let body: Vec<(usize, &str)> = (body_start..i).map(|j| (j + 1, lines[j])).collect();
        if word.starts_with("load") {
            out.push(Command::Load(parse_load(lineno, line, &body)?));
        } else if word.starts_with("eval") {
            out.push(Command::Eval(Box::new(parse_eval(lineno, line, &body)?)));
        } else {
            return err(lineno, ScriptProblem::UnknownCommand(word));
        }
    }
    Ok(out)
}

fn parse_load(lineno: usize, line: &str, body: &[(usize, &str)]) -> Result<Load, ScriptError> {
    let mut parts = line.split_whitespace();
    let word = parts.next().unwrap_or("");
    let with_nhcb = match word {
        "load" => false,
        "load_with_nhcb" => true,
        other => return err(lineno, ScriptProblem::UnknownLoadCommand(other.to_string())),
    };
    let interval = parts.next().ok_or(ScriptError {
        line: lineno,
        problem: ScriptProblem::LoadWithoutInterval,
    })?;
    let interval_ms = parse_duration_ms(interval).map_err(|m| at(lineno)(m.into()))?;
    let mut series: Vec<(Labels, Vec<Option<Point>>)> = Vec::new();
    let mut start_offsets: Vec<(Labels, Vec<Option<i64>>)> = Vec::new();
    for &(l, text) in body {
        let e = |problem: NotationError| at(l)(problem.into());
        let st_text = without_st(text);
        let (labels, rest) = split_series(st_text.as_deref().unwrap_or(text)).map_err(e)?;
        let points = parse_values(rest).map_err(e)?;
        if st_text.is_some() {
            // Offsets are durations, read as seconds by the value notation.
            let offsets = points
                .into_iter()
                .map(|p| match p {
                    Some(Point::Float(secs)) => Ok(Some((secs * 1000.0).round() as i64)),
                    Some(Point::Histogram { .. }) => {
                        Err(at(l)(ScriptProblem::HistogramInStartLine))
                    }
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>, _>>()?;
            start_offsets.retain(|(s, _)| *s != labels);
            start_offsets.push((labels, offsets));
            continue;
        }
        // A repeated series replaces the earlier line.
        series.retain(|(s, _)| *s != labels);
        series.push((labels, points));
    }
    Ok(Load {
        line: lineno,
        interval_ms,
        with_nhcb,
        series,
        start_offsets,
    })
}

/// A start-timestamp line (its series ends in `@st`) without the `@st`; `None` for
/// any other line.
fn without_st(text: &str) -> Option<String> {
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let series = text[..end].strip_suffix("@st")?;
    Some(format!("{series}{}", &text[end..]))
}

fn parse_eval(lineno: usize, line: &str, body: &[(usize, &str)]) -> Result<Eval, ScriptError> {
    let e = |m: ScriptProblem| ScriptError {
        line: lineno,
        problem: m,
    };
    let ne = |m: NotationError| e(m.into());
    let (word, rest) = split_word(line);
    let mut fail = None;
    let mut ordered = false;
    let mut annotations = Vec::new();
    match word.to_lowercase().as_str() {
        "eval" => {}
        "eval_fail" => fail = Some(FailMatch::Any),
        "eval_ordered" => ordered = true,
        "eval_warn" => annotations.push("warn".to_string()),
        "eval_info" => annotations.push("info".to_string()),
        other => return Err(e(ScriptProblem::UnknownEvalCommand(other.to_string()))),
    }
    let (kind, rest) = split_word(rest);
    let (time, expr) = match kind {
        "instant" => {
            let (at, rest) = split_word(rest);
            if at != "at" {
                return Err(e(ScriptProblem::ExpectedAt));
            }
            let (t, expr) = split_word(rest);
            let at_ms = parse_duration_ms(t).map_err(ne)?;
            (EvalTime::Instant { at_ms }, expr)
        }
        "range" => {
            let mut toks = Vec::new();
            let mut r = rest;
            for _ in 0..6 {
                let (w, rr) = split_word(r);
                toks.push(w);
                r = rr;
            }
            if toks[0] != "from" || toks[2] != "to" || toks[4] != "step" {
                return Err(e(ScriptProblem::ExpectedRange));
            }
            let start_ms = parse_duration_ms(toks[1]).map_err(ne)?;
            let end_ms = parse_duration_ms(toks[3]).map_err(ne)?;
            let step_ms = parse_duration_ms(toks[5]).map_err(ne)?;
            if end_ms < start_ms {
                return Err(e(ScriptProblem::RangeEndBeforeStart));
            }
            (
                EvalTime::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                },
                r,
            )
        }
        other => return Err(e(ScriptProblem::UnknownEvalKind(other.to_string()))),
    };
    if expr.trim().is_empty() {
        return Err(e(ScriptProblem::EvalWithoutExpression));
    }
    let mut eval = Eval {
        line: lineno,
        expr: expr.trim().to_string(),
        time,
        fail,
        ordered,
        annotations,
        range_vector: None,
        string: None,
        expected: Expected::Series(Vec::new()),
    };
    let mut series = Vec::new();
    let mut scalar = None;
    for &(l, text) in body {
        let le = at(l);
        let lne = |m: NotationError| at(l)(m.into());
        let (w, rest) = split_word(text);
        match w {
            "expect" => parse_expect(&mut eval, rest).map_err(le)?,
            "expected_fail_message" => eval.fail = Some(FailMatch::Message(rest.trim().into())),
            "expected_fail_regexp" => eval.fail = Some(FailMatch::Regex(rest.trim().into())),
            _ => {
                if !text.contains(char::is_whitespace) && !text.contains('{') {
                    if let Ok(v) = parse_number(text) {
                        scalar = Some(v);
                        continue;
                    }
                }
                let (labels, rest) = split_series(text).map_err(lne)?;
                let points = parse_values(rest).map_err(lne)?;
                if points.len() > 1
                    && matches!(eval.time, EvalTime::Instant { .. })
                    && eval.range_vector.is_none()
                {
                    return Err(le(ScriptProblem::SeveralValuesForInstant));
                }
                series.push((labels, points));
            }
        }
    }
    eval.expected = match scalar {
        Some(v) if series.is_empty() => Expected::Scalar(v),
        Some(_) => return err(lineno, ScriptProblem::ScalarAndSeries),
        None => Expected::Series(series),
    };
    Ok(eval)
}

fn parse_expect(eval: &mut Eval, rest: &str) -> Result<(), ScriptProblem> {
    let (kind, rest) = split_word(rest);
    match kind {
        "fail" => {
            let rest = rest.trim();
            eval.fail = Some(if let Some(m) = rest.strip_prefix("msg:") {
                FailMatch::Message(m.trim().to_string())
            } else if let Some(r) = rest.strip_prefix("regex:") {
                FailMatch::Regex(r.trim().to_string())
            } else {
                FailMatch::Any
            });
        }
        "ordered" => eval.ordered = true,
        "warn" | "info" | "no_warn" | "no_info" => {
            eval.annotations.push(format!("{kind} {}", rest.trim()))
        }
        "range" => {
            let toks: Vec<&str> = rest.split_whitespace().collect();
            if toks.len() != 7 || toks[0] != "vector" || toks[1] != "from" || toks[3] != "to" {
                return Err(ScriptProblem::ExpectedRangeVector);
            }
            eval.range_vector = Some((
                parse_duration_ms(toks[2])?,
                parse_duration_ms(toks[4])?,
                parse_duration_ms(toks[6])?,
            ));
        }
        "string" => {
            let s = rest.trim();
            let inner = s
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| s.strip_prefix('`').and_then(|s| s.strip_suffix('`')))
                .ok_or_else(|| ScriptProblem::BadExpectedString(s.to_string()))?;
            eval.string = Some(inner.to_string());
        }
        other => return Err(ScriptProblem::UnknownExpectDirective(other.to_string())),
    }
    Ok(())
}

/// Splits off the first whitespace-separated word; the rest keeps its inner spacing.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Splits `name{l="v", …} values…` into the label set and the value text.
pub fn split_series(text: &str) -> Result<(Labels, &str), NotationError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'{' {
        i += 1;
    }
    let name = &text[..i];
    let mut pairs = Vec::new();
    if !name.is_empty() {
        pairs.push(("__name__".to_string(), name.to_string()));
    }
    if i < bytes.len() && bytes[i] == b'{' {
        let (inner, end) = brace_body(text, i)?;
        parse_label_list(inner, &mut pairs)?;
        i = end;
    }
    if name.is_empty() && pairs.is_empty() && !text[i..].trim().is_empty() && i == 0 {
        return Err(NotationError::NoSeries(text.to_string()));
    }
    Ok((Labels::from_pairs(pairs), text[i..].trim()))
}

/// Returns the text between `{` at `open` and its matching `}`, and the index after it.
fn brace_body(text: &str, open: usize) -> Result<(&str, usize), NotationError> {
    let mut in_quote: Option<char> = None;
    let mut escaped = false;
    for (j, c) in text[open + 1..].char_indices() {
        let at = open + 1 + j;
        if let Some(q) = in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                in_quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_quote = Some(c),
            '}' => return Ok((&text[open + 1..at], at + 1)),
            _ => {}
        }
    }
    Err(NotationError::UnclosedBrace(text.to_string()))
}

/// Parses `a="x", "b.c"="y", "name"` (a bare quoted string is the metric name).
fn parse_label_list(inner: &str, pairs: &mut Vec<(String, String)>) -> Result<(), NotationError> {
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Ok(());
        };
        let name = if c == '"' || c == '\'' || c == '`' {
            read_quoted(&mut chars)?
        } else {
            let mut n = String::new();
            while chars
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '.')
            {
                n.push(chars.next().unwrap_or_default());
            }
            if n.is_empty() {
                return Err(NotationError::BadLabelList(inner.to_string()));
            }
            n
        };
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let value = read_quoted(&mut chars)?;
            pairs.push((name, value));
        } else {
            pairs.push(("__name__".to_string(), name));
        }
    }
}

fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<String, NotationError> {
    let q = chars.next().ok_or(NotationError::ExpectedQuotedString)?;
    if q != '"' && q != '\'' && q != '`' {
        return Err(NotationError::ExpectedQuote(q));
    }
    let mut out = String::new();
    while let Some(c) = chars.next() {
        if c == q {
            return Ok(out);
        }
        if c == '\\' && q != '`' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    if o != q && o != '"' && o != '\'' {
                        out.push('\\');
                    }
                    out.push(o)
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(NotationError::UnterminatedString)
}

#[cfg(test)]
mod tests;
