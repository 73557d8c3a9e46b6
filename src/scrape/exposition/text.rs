//! The Prometheus text exposition format, version 0.0.4, read line by line.
//!
//! Grammar, as Prometheus 2.42's `promlex.l` and `promparse.go` accept it (spaces
//! and tabs are interchangeable wherever blanks are allowed):
//!
//! ```text
//! line     = blanks ( "" | comment | sample ) ;
//! comment  = "#" blanks1 ( "HELP" | "TYPE" ) blanks1 name [ byte text ]  (* text: rest of line *)
//!          | "#" anything ;                                             (* ignored *)
//! sample   = name blanks [ "{" labels "}" ] blanks value [ blanks1 digits ] blanks ;
//! labels   = blanks { lname blanks "=" blanks quoted blanks [ "," ] blanks } ;
//! ```
//!
//! The byte right after a HELP/TYPE name is dropped (it is normally the separating
//! space), the TYPE text must be exactly a type word, and label pairs may be
//! separated by a comma, a trailing comma or (a Prometheus quirk) nothing at all.
//! A body need not end with a newline.

use super::error::{ErrorKind, Excerpt, Expected};
use super::lex::{self, Cursor, LabelRef};
use super::{MetadataTable, MetricType, ParseError, SampleRef, SampleSink};

pub(super) fn parse<S: SampleSink>(
    body: &[u8],
    metadata: &mut MetadataTable,
    on_sample: &mut S,
) -> Result<(), ParseError> {
    let mut labels = Vec::new();
    for line in lex::lines(body) {
        parse_line(line.bytes, metadata, &mut labels, on_sample)
            .map_err(|kind| ParseError::at_line(line.number, kind))?;
    }
    Ok(())
}

fn parse_line<'a, S: SampleSink>(
    line: &'a [u8],
    metadata: &mut MetadataTable,
    labels: &mut Vec<LabelRef<'a>>,
    on_sample: &mut S,
) -> Result<(), ErrorKind> {
    let mut cursor = Cursor::new(line);
    cursor.skip_blanks();
    match cursor.peek() {
        None => Ok(()),
        Some(b'#') => parse_comment(cursor, metadata),
        Some(_) => parse_sample(cursor, labels, on_sample),
    }
}

fn parse_comment(mut cursor: Cursor<'_>, metadata: &mut MetadataTable) -> Result<(), ErrorKind> {
    cursor.eat(b'#');
    if !matches!(cursor.peek(), Some(b' ' | b'\t')) {
        return Ok(());
    }
    cursor.skip_blanks();
    let keyword = if cursor.eat_prefix(b"HELP") {
        "HELP"
    } else if cursor.eat_prefix(b"TYPE") {
        "TYPE"
    } else {
        return Ok(());
    };
    if !matches!(cursor.peek(), Some(b' ' | b'\t')) {
        // "# HELPful remark": an ordinary comment.
        return Ok(());
    }
    cursor.skip_blanks();
    let family = cursor
        .metric_name()
        .ok_or_else(|| cursor.expected(Expected::MetricNameAfter(keyword)))?;
    let rest = cursor.take_rest();
    // Prometheus's lexer reads a rest made only of blanks as no text at all.
    let text = if rest.iter().all(|&b| b == b' ' || b == b'\t') {
        &[]
    } else {
        rest.get(1..).unwrap_or_default()
    };
    if keyword == "HELP" {
        let help = std::str::from_utf8(text).map_err(|_| ErrorKind::HelpNotUtf8 {
            family: family.to_string(),
        })?;
        metadata.set_help(family, lex::unescape(help, lex::TEXT_HELP_ESCAPES));
    } else {
        metadata.set_kind(family, metric_type(text)?);
    }
    Ok(())
}

fn metric_type(word: &[u8]) -> Result<MetricType, ErrorKind> {
    Ok(match word {
        b"counter" => MetricType::Counter,
        b"gauge" => MetricType::Gauge,
        b"histogram" => MetricType::Histogram,
        b"summary" => MetricType::Summary,
        b"untyped" => MetricType::Untyped,
        _ => return Err(ErrorKind::InvalidMetricType(Excerpt::of(word))),
    })
}

fn parse_sample<'a, S: SampleSink>(
    mut cursor: Cursor<'a>,
    labels: &mut Vec<LabelRef<'a>>,
    sink: &mut S,
) -> Result<(), ErrorKind> {
    if S::KNOWS_SERIES && known_from_end(cursor.rest(), sink) {
        return Ok(());
    }
    let start = cursor.pos();
    let name = cursor
        .metric_name()
        .ok_or_else(|| cursor.expected(Expected::LineStart))?;
    cursor.skip_blanks();
    labels.clear();
    let series = if cursor.eat(b'{') {
        parse_labels(&mut cursor, labels)?;
        cursor.since(start)
    } else {
        name.as_bytes()
    };
    let (value, timestamp_ms) = value_and_timestamp(cursor, name)?;
    if let Some(duplicate) = lex::duplicate_label(labels) {
        return Err(ErrorKind::DuplicateLabel {
            label: duplicate.to_string(),
            metric: name.to_string(),
        });
    }
    sink.sample(SampleRef {
        series,
        name,
        labels,
        value,
        timestamp_ms,
    });
    Ok(())
}

/// The scrape cache's fast path: offers `line` (from its metric name on) to the sink
/// as series text, value and timestamp, split from the end of the line without
/// reading the name or the labels; returns true if the sink took it.
///
/// A value and a timestamp hold no blanks, so the line is `series blanks value
/// [blanks digits] blanks`: the last token is the value, or the timestamp with the
/// value before it, whichever split leaves a series text the sink knows. A known
/// series text is a whole series text the full reading produced (it ends with its
/// name or its label block's `}`), so the full reading of this line would stop at
/// the same place and read the same value and timestamp; any other line falls
/// through to it, which says what is wrong.
fn known_from_end<S: SampleSink>(line: &[u8], sink: &mut S) -> bool {
    let Some((series, last)) = split_last_token(line) else {
        return false;
    };
    if let Ok(value) = lex::parse_float(last) {
        if sink.known(series, value, None) {
            return true;
        }
    }
    if last.is_empty() || !last.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (Ok(timestamp_ms), Some((series, value))) =
        (lex::parse_millis(last), split_last_token(series))
    else {
        return false;
    };
    match lex::parse_float(value) {
        Ok(value) => sink.known(series, value, Some(timestamp_ms)),
        Err(_) => false,
    }
}

/// Splits `line`'s last blank-separated token off: (what precedes it without its
/// trailing blanks, the token); `None` if the line has no blank before it.
fn split_last_token(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = trim_end_blanks(line);
    let blank = memchr::memrchr2(b' ', b'\t', line)?;
    Some((trim_end_blanks(line.get(..blank)?), line.get(blank + 1..)?))
}

fn trim_end_blanks(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |last| last + 1);
    bytes.get(..end).unwrap_or_default()
}

/// Reads the rest of a sample line after its series: value, optional timestamp.
fn value_and_timestamp(
    mut cursor: Cursor<'_>,
    name: &str,
) -> Result<(f64, Option<i64>), ErrorKind> {
    cursor.skip_blanks();
    let value = cursor.take_while(|b| !matches!(b, b' ' | b'\t' | b'{'));
    if value.is_empty() {
        return Err(cursor.expected(Expected::ValueAfterMetric(name.to_string())));
    }
    let value = lex::parse_float(value)?;
    cursor.skip_blanks();
    let mut timestamp_ms = None;
    if !cursor.at_end() {
        let digits = cursor.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(cursor.expected(Expected::TimestampOrEnd));
        }
        timestamp_ms = Some(lex::parse_millis(digits)?);
        cursor.skip_blanks();
        if !cursor.at_end() {
            return Err(cursor.expected(Expected::EndAfterTimestamp));
        }
    }
    Ok((value, timestamp_ms))
}

/// Parses label pairs after the opening `{`, through the closing `}`.
fn parse_labels<'a>(
    cursor: &mut Cursor<'a>,
    labels: &mut Vec<LabelRef<'a>>,
) -> Result<(), ErrorKind> {
    loop {
        cursor.skip_blanks();
        if cursor.eat(b'}') {
            return Ok(());
        }
        let label = cursor
            .label_name()
            .ok_or_else(|| cursor.expected(Expected::LabelNameOrClose))?;
        cursor.skip_blanks();
        if !cursor.eat(b'=') {
            return Err(cursor.expected(Expected::EqualsAfterLabel(label.to_string())));
        }
        cursor.skip_blanks();
        let value = cursor.label_value()?;
        labels.push((label, value));
        cursor.skip_blanks();
        cursor.eat(b',');
    }
}
