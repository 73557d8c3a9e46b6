//! The OpenMetrics 1.0 text format, read line by line.
//!
//! Grammar, as Prometheus 2.42's `openmetricslex.l` and `openmetricsparse.go`
//! accept it. Separators are exactly one space; there are no blank lines, no
//! free comments and no trailing commas; every line ends with `\n` except `# EOF`,
//! which must come last:
//!
//! ```text
//! body     = { line "\n" } "# EOF" [ "\n" ] ;
//! line     = "# " ( "HELP" | "TYPE" | "UNIT" ) " " name " " text
//!          | sample ;
//! sample   = name [ "{" [ label { "," label } ] "}" ] " " value [ " " seconds ]
//!            [ " # {" [ label { "," label } ] "}" " " value [ " " seconds ] ] ;
//! label    = lname "=" quoted ;
//! ```
//!
//! HELP text uses the label value escapes (`\\`, `\"`, `\n`); a non-empty UNIT
//! must be a `_`-separated suffix of the family name. Timestamps are float
//! seconds, converted to milliseconds. Exemplars (the part after ` # `) are only
//! allowed on `_total` and `_bucket` samples; they are validated, and given to a sink
//! that wants them.
//! `_created` samples are ordinary series, as in Prometheus 2.42.

use super::error::{ErrorKind, Excerpt, Expected};
use super::lex::{self, Cursor, LabelRef, LABEL_VALUE_ESCAPES};
use super::{ExemplarRef, MetadataTable, MetricType, ParseError, SampleRef, SampleSink};

pub(super) fn parse<S: SampleSink>(
    body: &[u8],
    metadata: &mut MetadataTable,
    on_sample: &mut S,
) -> Result<(), ParseError> {
    let mut labels = Vec::new();
    let mut eof_line = None;
    let mut next_line = 1;
    for line in lex::lines(body) {
        let fail = |kind| ParseError::at_line(line.number, kind);
        next_line = line.number + 1;
        if eof_line.is_some() {
            return Err(fail(ErrorKind::DataAfterEof));
        }
        if line.bytes == b"# EOF" {
            eof_line = Some(line.number);
            continue;
        }
        if !line.terminated {
            return Err(fail(ErrorKind::LastLineUnterminated(Excerpt::of(
                line.bytes,
            ))));
        }
        parse_line(line.bytes, metadata, &mut labels, on_sample).map_err(fail)?;
    }
    match eof_line {
        Some(_) => Ok(()),
        None => Err(ParseError::at_line(next_line, ErrorKind::MissingEof)),
    }
}

fn parse_line<'a, S: SampleSink>(
    line: &'a [u8],
    metadata: &mut MetadataTable,
    labels: &mut Vec<LabelRef<'a>>,
    on_sample: &mut S,
) -> Result<(), ErrorKind> {
    let cursor = Cursor::new(line);
    match cursor.peek() {
        Some(b'#') => parse_metadata(cursor, metadata),
        _ => parse_sample(cursor, labels, on_sample),
    }
}

fn parse_metadata(mut cursor: Cursor<'_>, metadata: &mut MetadataTable) -> Result<(), ErrorKind> {
    let keyword = if cursor.eat_prefix(b"# HELP ") {
        "HELP"
    } else if cursor.eat_prefix(b"# TYPE ") {
        "TYPE"
    } else if cursor.eat_prefix(b"# UNIT ") {
        "UNIT"
    } else if cursor.rest().starts_with(b"# EOF") {
        return Err(ErrorKind::DataAfterEof);
    } else {
        return Err(cursor.expected(Expected::MetadataKeyword));
    };
    let family = cursor
        .metric_name()
        .ok_or_else(|| cursor.expected(Expected::MetricNameAfter(keyword)))?;
    if !cursor.eat(b' ') {
        return Err(cursor.expected(Expected::TextAfter {
            keyword,
            family: family.to_string(),
        }));
    }
    let text = cursor.take_rest();
    match keyword {
        "HELP" => {
            let help = std::str::from_utf8(text).map_err(|_| ErrorKind::HelpNotUtf8 {
                family: family.to_string(),
            })?;
            metadata.set_help(family, lex::unescape(help, LABEL_VALUE_ESCAPES));
        }
        "TYPE" => metadata.set_kind(family, metric_type(text)?),
        _ => {
            let not_a_suffix = || ErrorKind::UnitNotSuffix {
                unit: Excerpt::of(text),
                family: family.to_string(),
            };
            let unit = std::str::from_utf8(text).map_err(|_| not_a_suffix())?;
            let is_suffix = family
                .strip_suffix(unit)
                .is_some_and(|stem| stem.ends_with('_'));
            if !unit.is_empty() && !is_suffix {
                return Err(not_a_suffix());
            }
            metadata.set_unit(family, unit);
        }
    }
    Ok(())
}

fn metric_type(word: &[u8]) -> Result<MetricType, ErrorKind> {
    Ok(match word {
        b"counter" => MetricType::Counter,
        b"gauge" => MetricType::Gauge,
        b"histogram" => MetricType::Histogram,
        b"gaugehistogram" => MetricType::GaugeHistogram,
        b"summary" => MetricType::Summary,
        b"info" => MetricType::Info,
        b"stateset" => MetricType::StateSet,
        b"unknown" => MetricType::Unknown,
        _ => return Err(ErrorKind::InvalidMetricType(Excerpt::of(word))),
    })
}

fn parse_sample<'a, S: SampleSink>(
    mut cursor: Cursor<'a>,
    labels: &mut Vec<LabelRef<'a>>,
    sink: &mut S,
) -> Result<(), ErrorKind> {
    let start = cursor.pos();
    let name = cursor
        .metric_name()
        .ok_or_else(|| cursor.expected(Expected::LineStartOpenMetrics))?;
    if S::KNOWS_SERIES {
        // As in the text format: the series text without reading the labels.
        let mut fast = cursor.clone();
        let series = if !fast.eat(b'{') {
            Some(name.as_bytes())
        } else if fast.skip_label_block() {
            Some(fast.since(start))
        } else {
            None
        };
        if let (Some(series), Ok((value, timestamp_ms, exemplar))) =
            (series, rest_of_sample(fast, name))
        {
            if sink.known(series, value, timestamp_ms) {
                return give_exemplar(exemplar, labels, sink);
            }
        }
    }
    labels.clear();
    let series = if cursor.eat(b'{') {
        parse_labels(&mut cursor, labels)?;
        cursor.since(start)
    } else {
        name.as_bytes()
    };
    let (value, timestamp_ms, exemplar) = rest_of_sample(cursor, name)?;
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
    give_exemplar(exemplar, labels, sink)
}

/// Gives the sink the exemplar [`rest_of_sample`] found (already checked), if it wants
/// exemplars: read again from its cursor, into `labels` (the sample's are done with).
fn give_exemplar<'a, S: SampleSink>(
    exemplar: Option<Cursor<'a>>,
    labels: &mut Vec<LabelRef<'a>>,
    sink: &mut S,
) -> Result<(), ErrorKind> {
    let Some(mut cursor) = exemplar.filter(|_| sink.exemplars()) else {
        return Ok(());
    };
    labels.clear();
    parse_labels(&mut cursor, labels)?;
    let value = lex::parse_float(space_then_token(&mut cursor, "exemplar value")?)?;
    let timestamp_ms = if cursor.at_end() {
        None
    } else {
        Some(lex::parse_seconds_as_millis(space_then_token(
            &mut cursor,
            "exemplar timestamp",
        )?)?)
    };
    sink.exemplar(ExemplarRef {
        labels,
        value,
        timestamp_ms,
    });
    Ok(())
}

/// Reads the rest of a sample line after its series: value, optional timestamp,
/// optional exemplar (checked; its start, after ` # {`, returned).
#[allow(clippy::type_complexity)]
fn rest_of_sample<'a>(
    mut cursor: Cursor<'a>,
    name: &str,
) -> Result<(f64, Option<i64>, Option<Cursor<'a>>), ErrorKind> {
    let value = lex::parse_float(space_then_token(&mut cursor, "value")?)?;
    let mut timestamp_ms = None;
    if !cursor.at_end() && !cursor.rest().starts_with(b" # {") {
        timestamp_ms = Some(lex::parse_seconds_as_millis(space_then_token(
            &mut cursor,
            "timestamp",
        )?)?);
    }
    if !cursor.at_end() {
        if !cursor.eat_prefix(b" # {") {
            return Err(cursor.expected(Expected::ExemplarOrEnd));
        }
        let exemplar = cursor.clone();
        check_exemplar(name, &mut cursor)?;
        return Ok((value, timestamp_ms, Some(exemplar)));
    }
    Ok((value, timestamp_ms, None))
}

/// Reads `" " token`, where the token runs to the next space or the line's end.
fn space_then_token<'a>(
    cursor: &mut Cursor<'a>,
    what: &'static str,
) -> Result<&'a [u8], ErrorKind> {
    let token = if cursor.eat(b' ') {
        cursor.take_while(|b| b != b' ')
    } else {
        &[]
    };
    if token.is_empty() {
        return Err(cursor.expected(Expected::SpaceAnd(what)));
    }
    Ok(token)
}

/// Parses label pairs after the opening `{`, through the closing `}`.
fn parse_labels<'a>(
    cursor: &mut Cursor<'a>,
    labels: &mut Vec<LabelRef<'a>>,
) -> Result<(), ErrorKind> {
    if cursor.eat(b'}') {
        return Ok(());
    }
    loop {
        let label = cursor
            .label_name()
            .ok_or_else(|| cursor.expected(Expected::LabelName))?;
        if !cursor.eat(b'=') {
            return Err(cursor.expected(Expected::EqualsAfterLabel(label.to_string())));
        }
        let value = cursor.label_value()?;
        labels.push((label, value));
        if cursor.eat(b'}') {
            return Ok(());
        }
        if !cursor.eat(b',') {
            return Err(cursor.expected(Expected::CommaOrClose));
        }
    }
}

/// Validates an exemplar after its ` # {` and consumes it through the line's end.
fn check_exemplar(name: &str, cursor: &mut Cursor<'_>) -> Result<(), ErrorKind> {
    if !(name.ends_with("_total") || name.ends_with("_bucket")) {
        return Err(ErrorKind::ExemplarNotSupported {
            metric: name.to_string(),
        });
    }
    let mut exemplar_labels = Vec::new();
    parse_labels(cursor, &mut exemplar_labels)?;
    lex::parse_float(space_then_token(cursor, "exemplar value")?)?;
    if !cursor.at_end() {
        lex::parse_seconds_as_millis(space_then_token(cursor, "exemplar timestamp")?)?;
    }
    if !cursor.at_end() {
        return Err(cursor.expected(Expected::EndAfterExemplar));
    }
    Ok(())
}
