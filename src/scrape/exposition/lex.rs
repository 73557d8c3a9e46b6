//! Lexing pieces shared by the Prometheus text and OpenMetrics parsers: splitting
//! a body into lines, a byte cursor over one line, name and quoted-string scanners,
//! escape handling, number parsing with Go's `strconv` rules, and the duplicate
//! label check.
//!
//! Everything here works on bytes and returns `Result<_, ErrorKind>`, a kind
//! without a line number; the format parsers attach the line. Nothing
//! here indexes out of bounds or unwraps input-derived data.

use std::borrow::Cow;

use super::error::{ErrorKind, Excerpt, Expected, Got};

/// Prometheus's canonical NaN (`value.NormalNaN`): every parsed NaN gets these bits,
/// so NaN samples compare bit-equal and never look like a staleness marker.
pub(super) const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// A label as parsed: the name borrowed from the body, the value unescaped.
pub(super) type LabelRef<'a> = (&'a str, Cow<'a, str>);

/// One line of a body, without its `\n`.
pub(super) struct Line<'a> {
    /// 1-based line number.
    pub number: usize,
    pub bytes: &'a [u8],
    /// Whether the line ended with `\n` (only the last line of a body may not).
    pub terminated: bool,
}

/// Splits `body` into lines. A final `\n` does not start an empty last line.
pub(super) fn lines(body: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut rest = body;
    let mut number = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        number += 1;
        let line = match memchr::memchr(b'\n', rest) {
            Some(end) => {
                let (bytes, tail) = rest.split_at(end);
                rest = tail.get(1..).unwrap_or_default();
                Line {
                    number,
                    bytes,
                    terminated: true,
                }
            }
            None => {
                let bytes = rest;
                rest = &[];
                Line {
                    number,
                    bytes,
                    terminated: false,
                }
            }
        };
        Some(line)
    })
}

/// A read position inside one line.
#[derive(Clone)]
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The read position, for [`Cursor::since`].
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes read from position `start` up to here.
    pub fn since(&self, start: usize) -> &'a [u8] {
        self.bytes.get(start..self.pos).unwrap_or_default()
    }

    /// Skips a label block whose `{` was just consumed, through its closing `}`,
    /// without reading the labels: quoted values (with backslash escapes) may hold
    /// `}`. Returns false, having consumed nothing, if the line ends first. Says
    /// nothing about whether the labels are valid; for a block the label parsers
    /// accept it stops where they stop.
    pub fn skip_label_block(&mut self) -> bool {
        let rest = self.rest();
        let mut quoted = false;
        let mut i = 0;
        while let Some(&b) = rest.get(i) {
            match (quoted, b) {
                (true, b'\\') => i += 1,
                (_, b'"') => quoted = !quoted,
                (false, b'}') => {
                    self.pos += i + 1;
                    return true;
                }
                _ => {}
            }
            i += 1;
        }
        false
    }

    /// The unread part of the line.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// Consumes `byte` if it is next.
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `prefix` if the rest starts with it.
    pub fn eat_prefix(&mut self, prefix: &[u8]) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    /// Consumes `byte` or fails with [`Cursor::expected`].
    pub fn expect(&mut self, byte: u8, expected: Expected) -> Result<(), ErrorKind> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.expected(expected))
        }
    }

    /// The error for finding the rest of the line where `expected` should be.
    pub fn expected(&self, expected: Expected) -> ErrorKind {
        ErrorKind::Expected {
            expected,
            got: self.got(),
        }
    }

    /// Skips spaces and tabs (the Prometheus text format's whitespace).
    pub fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Consumes the longest run of bytes for which `keep` holds.
    pub fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let len = rest.iter().position(|&b| !keep(b)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or_default()
    }

    /// Consumes everything left on the line.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let rest = self.rest();
        self.pos = self.bytes.len();
        rest
    }

    /// Scans a metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), or returns `None` and
    /// consumes nothing.
    pub fn metric_name(&mut self) -> Option<&'a str> {
        self.name(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
    }

    /// Scans a label name (`[a-zA-Z_][a-zA-Z0-9_]*`), or returns `None` and
    /// consumes nothing.
    pub fn label_name(&mut self) -> Option<&'a str> {
        self.name(|b| b.is_ascii_alphabetic() || b == b'_')
    }

    fn name(&mut self, is_letter: impl Fn(u8) -> bool) -> Option<&'a str> {
        if !self.peek().is_some_and(&is_letter) {
            return None;
        }
        let name = self.take_while(|b| is_letter(b) || b.is_ascii_digit());
        // Only ASCII was taken, so this cannot fail.
        std::str::from_utf8(name).ok()
    }

    /// Scans a double-quoted label value whose opening quote is next and returns
    /// it unescaped. `\\`, `\"` and `\n` are escapes; any other backslash pair is
    /// kept verbatim, as Prometheus does. The value must be valid UTF-8 and end on
    /// this line.
    pub fn label_value(&mut self) -> Result<Cow<'a, str>, ErrorKind> {
        self.expect(b'"', Expected::OpeningQuote)?;
        let rest = self.rest();
        let mut i = 0;
        loop {
            match rest.get(i) {
                None => return Err(ErrorKind::UnclosedLabelValue),
                Some(b'"') => break,
                Some(b'\\') if i + 1 >= rest.len() => return Err(ErrorKind::BackslashAtEndOfLine),
                Some(b'\\') => i += 2,
                Some(_) => i += 1,
            }
        }
        let raw = rest.get(..i).unwrap_or_default();
        self.pos += i + 1;
        let raw =
            std::str::from_utf8(raw).map_err(|_| ErrorKind::LabelValueNotUtf8(Excerpt::of(raw)))?;
        Ok(unescape(raw, LABEL_VALUE_ESCAPES))
    }

    /// What is left, for an error message: `"…"` or `end of line`.
    pub fn got(&self) -> Got {
        if self.at_end() {
            Got::EndOfLine
        } else {
            Got::Text(Excerpt::of(self.rest()))
        }
    }
}

/// Escapes in label values (both formats) and OpenMetrics HELP text.
pub(super) const LABEL_VALUE_ESCAPES: &[(u8, char)] = &[(b'\\', '\\'), (b'"', '"'), (b'n', '\n')];
/// Escapes in Prometheus text HELP lines (`\"` stays as it is).
pub(super) const TEXT_HELP_ESCAPES: &[(u8, char)] = &[(b'\\', '\\'), (b'n', '\n')];

/// Replaces each backslash pair listed in `escapes`; other backslashes stay, like
/// Go's `strings.Replacer` that Prometheus uses. Borrows when nothing changes.
pub(super) fn unescape<'a>(raw: &'a str, escapes: &[(u8, char)]) -> Cow<'a, str> {
    let Some(first) = raw.find('\\') else {
        return Cow::Borrowed(raw);
    };
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    out.push_str(raw.get(..first).unwrap_or_default());
    // `copied_from` is where the next verbatim run starts; every split point below
    // sits next to an ASCII byte, so it is a char boundary.
    let mut copied_from = first;
    let mut i = first;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'\\') {
            let next = bytes.get(i + 1).copied();
            if let Some(&(_, replacement)) = escapes.iter().find(|(e, _)| Some(*e) == next) {
                out.push_str(raw.get(copied_from..i).unwrap_or_default());
                out.push(replacement);
                i += 2;
                copied_from = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(raw.get(copied_from..).unwrap_or_default());
    Cow::Owned(out)
}

/// Parses a sample value or OpenMetrics timestamp the way Prometheus does: Go's
/// `strconv.ParseFloat` restricted to pre-Go-1.13 forms (no hex, no `_`). Accepts
/// decimal floats with optional sign and exponent, `Inf`/`Infinity` with optional
/// sign and `NaN`, case-insensitively. Out-of-range values are errors.
pub(super) fn parse_float(token: &[u8]) -> Result<f64, ErrorKind> {
    let invalid = || ErrorKind::InvalidNumber(Excerpt::of(token));
    let unsigned = match token.first() {
        Some(b'-' | b'+') => token.get(1..).unwrap_or_default(),
        _ => token,
    };
    // The common case first: a decimal number, with no NaN/Inf comparisons.
    if unsigned
        .first()
        .is_some_and(|&b| b.is_ascii_digit() || b == b'.')
    {
        // Starting with a digit or a point, Rust's grammar for floats is the decimal
        // one (no `inf`/`nan` words can follow; hex digits, `x`, `p` and `_` are
        // refused, see the exposition tests), and Rust rounds correctly like Go: no
        // first pass over the characters (every scraped value comes here).
        let value: f64 = std::str::from_utf8(token)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(invalid)?;
        if value.is_infinite() {
            return Err(ErrorKind::NumberOutOfRange(Excerpt::of(token)));
        }
        return Ok(value);
    }
    if unsigned.eq_ignore_ascii_case(b"nan") {
        // Go accepts no sign on NaN.
        return if unsigned.len() == token.len() {
            Ok(f64::from_bits(NORMAL_NAN_BITS))
        } else {
            Err(invalid())
        };
    }
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return Ok(if token.first() == Some(&b'-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    Err(invalid())
}

/// Parses a Prometheus text timestamp: decimal digits only (no sign), as an i64
/// of milliseconds.
pub(super) fn parse_millis(token: &[u8]) -> Result<i64, ErrorKind> {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::InvalidTimestamp(Excerpt::of(token)));
    }
    std::str::from_utf8(token)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| ErrorKind::TimestampOutOfRange(Excerpt::of(token)))
}

/// Parses an OpenMetrics timestamp (float seconds) into milliseconds, truncating
/// toward zero like Prometheus's `int64(ts * 1000)`. NaN and infinities are errors.
pub(super) fn parse_seconds_as_millis(token: &[u8]) -> Result<i64, ErrorKind> {
    let seconds = parse_float(token)?;
    if !seconds.is_finite() {
        return Err(ErrorKind::InvalidTimestamp(Excerpt::of(token)));
    }
    // `as` saturates on overflow instead of wrapping: no panic, no UB.
    Ok((seconds * 1000.0) as i64)
}

/// Returns the first label name that occurs twice, counting the metric name as a
/// `__name__` label.
pub(super) fn duplicate_label<'a>(labels: &[LabelRef<'a>]) -> Option<&'a str> {
    const SMALL: usize = 16;
    if let Some((name, _)) = labels.iter().find(|(name, _)| *name == "__name__") {
        return Some(name);
    }
    if labels.len() <= SMALL {
        for (i, (name, _)) in labels.iter().enumerate() {
            if labels.iter().skip(i + 1).any(|(other, _)| other == name) {
                return Some(name);
            }
        }
        return None;
    }
    let mut names: Vec<&'a str> = labels.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}
