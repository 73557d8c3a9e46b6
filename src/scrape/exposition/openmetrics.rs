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
//! `_created` samples are ordinary series, as in Prometheus 2.42, unless the sink
//! wants start timestamps ([`SampleSink::start_timestamps`]): then, as Prometheus
//! 3.x's `OpenMetricsParser` with `WithOMParserSTSeriesSkipped`, the `_created` lines
//! of counter, summary and histogram families are checked but not given as samples,
//! and each sample of such a family gets as start timestamp the value of the first
//! `_created` line after it, up to the next metadata line, when that line is of the
//! same series (see [`Starts`]).

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
    let mut starts = on_sample.start_timestamps().then(Starts::default);
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
        if let Some(starts) = &mut starts {
            // The body after this line, where its `_created` line may be.
            let end = line.bytes.as_ptr() as usize - body.as_ptr() as usize + line.bytes.len();
            starts.rest = body.get(end + 1..).unwrap_or_default();
        }
        parse_line(
            line.bytes,
            metadata,
            &mut labels,
            starts.as_mut(),
            on_sample,
        )
        .map_err(fail)?;
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
    starts: Option<&mut Starts<'_>>,
    on_sample: &mut S,
) -> Result<(), ErrorKind> {
    let cursor = Cursor::new(line);
    match cursor.peek() {
        Some(b'#') => parse_metadata(cursor, metadata, starts),
        _ => parse_sample(cursor, labels, starts, on_sample),
    }
}

fn parse_metadata(
    mut cursor: Cursor<'_>,
    metadata: &mut MetadataTable,
    starts: Option<&mut Starts<'_>>,
) -> Result<(), ErrorKind> {
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
    if let Some(starts) = starts {
        starts.family_len = family.len();
        if keyword == "TYPE" {
            starts.kind = metric_type(text).ok();
        }
    }
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
    starts: Option<&mut Starts<'_>>,
    sink: &mut S,
) -> Result<(), ErrorKind> {
    let start = cursor.pos();
    let name = cursor
        .metric_name()
        .ok_or_else(|| cursor.expected(Expected::LineStartOpenMetrics))?;
    let skipped = starts.as_ref().is_some_and(|s| s.skips(name));
    if S::KNOWS_SERIES && !skipped {
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
                give_start(starts, series, name, sink);
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
    if skipped {
        return Ok(());
    }
    sink.sample(SampleRef {
        series,
        name,
        labels,
        value,
        timestamp_ms,
    });
    give_start(starts, series, name, sink);
    give_exemplar(exemplar, labels, sink)
}

/// Gives the sink the start timestamp of the sample just given, if it has one.
fn give_start<S: SampleSink>(
    starts: Option<&mut Starts<'_>>,
    series: &[u8],
    name: &str,
    sink: &mut S,
) {
    if let Some(start_ms) = starts.and_then(|s| s.of(series, name)) {
        sink.start(start_ms);
    }
}

/// The start timestamps of a body's samples, as Prometheus 3.x's
/// `OpenMetricsParser.StartTimestamp` finds them (model/textparse/openmetricsparse.go):
/// only in counter, summary and histogram families (the type of the last TYPE line);
/// from a sample, the lines after it are read up to the next metadata line (or the
/// end) for the first `_created` line; it is the sample's when it is of the same
/// series: the same labels, in the same order, but `le` of a histogram and `quantile`
/// of a summary, and the same name up to the family name's length (that of the last
/// metadata line) as the `_created` line's without its suffix. Its value, float
/// seconds, times 1000 truncated, is the start in milliseconds. The last series found
/// is remembered, so a histogram's buckets do not each read ahead again. Prometheus
/// compares hashes of that text; this compares the text itself.
#[derive(Default)]
struct Starts<'a> {
    /// The body after the line being read.
    rest: &'a [u8],
    /// The type of the last TYPE line.
    kind: Option<MetricType>,
    /// The length of the name of the last metadata line.
    family_len: usize,
    /// The series text ([`Starts::key`]) of the start found last, and that start.
    found: Option<(Vec<u8>, i64)>,
}

impl Starts<'_> {
    /// Whether the sample `name` is a `_created` line the sink does not get.
    fn skips(&self, name: &str) -> bool {
        self.has_starts() && name.ends_with("_created")
    }

    fn has_starts(&self) -> bool {
        matches!(
            self.kind,
            Some(MetricType::Counter | MetricType::Summary | MetricType::Histogram)
        )
    }

    /// The start timestamp of the sample with series text `series` (as exposed) and
    /// name `name`, if it has one.
    fn of(&mut self, series: &[u8], name: &str) -> Option<i64> {
        if !self.has_starts() {
            self.found = None;
            return None;
        }
        let stem = name.get(..self.family_len).unwrap_or(name);
        let key = self.key(series, stem)?;
        if let Some((found, start_ms)) = &self.found {
            if *found == key {
                return Some(*start_ms);
            }
        }
        // Remembered when found, forgotten when not (as Prometheus's cache).
        let start_ms = self.find(&key);
        self.found = start_ms.map(|start_ms| (key, start_ms));
        start_ms
    }

    /// The start in the first `_created` line after the sample, if it is of the
    /// series `key`.
    fn find(&self, key: &[u8]) -> Option<i64> {
        for line in lex::lines(self.rest) {
            let mut cursor = Cursor::new(line.bytes);
            if cursor.peek() == Some(b'#') {
                break;
            }
            let created = cursor.metric_name()?;
            let Some(stem) = created.strip_suffix("_created") else {
                continue;
            };
            let series = if cursor.eat(b'{') {
                if !cursor.skip_label_block() {
                    return None;
                }
                cursor.since(0)
            } else {
                created.as_bytes()
            };
            if self.key(series, stem)? != key {
                return None;
            }
            let value = lex::parse_float(space_then_token(&mut cursor, "value").ok()?).ok()?;
            let start_ms = (value * 1000.0) as i64;
            return (value.is_finite() && start_ms != 0).then_some(start_ms);
        }
        None
    }

    /// What tells a sample's series apart when looking for its start: its labels
    /// (names and values as exposed, but `le` of a histogram, `quantile` of a
    /// summary), then `stem`.
    fn key(&self, series: &[u8], stem: &str) -> Option<Vec<u8>> {
        let mut cursor = Cursor::new(series);
        cursor.metric_name()?;
        let mut key = Vec::with_capacity(series.len());
        if cursor.eat(b'{') {
            let mut labels = Vec::new();
            parse_labels(&mut cursor, &mut labels).ok()?;
            for (name, value) in labels {
                let skipped = match self.kind {
                    Some(MetricType::Histogram) => name == "le",
                    Some(MetricType::Summary) => name == "quantile",
                    _ => false,
                };
                if !skipped {
                    for part in [name.as_bytes(), value.as_bytes()] {
                        key.extend_from_slice(part);
                        key.push(0xff);
                    }
                }
            }
        }
        key.extend_from_slice(stem.as_bytes());
        Some(key)
    }
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
