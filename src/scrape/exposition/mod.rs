//! Parsing of scrape response bodies: the Prometheus text format 0.0.4, the
//! OpenMetrics 1.0 text format and the protobuf format (`protobuf.rs`), plus the
//! content negotiation that picks between them.
//!
//! Contract:
//! - [`parse`] turns a whole body into samples and per-family metadata, or returns
//!   the first [`ParseError`], which names the 1-based line and what was wrong.
//!   Like Prometheus, one bad line fails the whole scrape; nothing is returned
//!   partially. No input makes it panic. (The protobuf format has no lines: its
//!   errors have line 0 and name the message instead; see `protobuf.rs`.)
//! - What is accepted and rejected follows Prometheus 2.42's `textparse` package
//!   (`promparse.go`, `openmetricsparse.go`), with these deliberate differences:
//!   duplicate label names (and a `__name__` label inside braces) are rejected here
//!   rather than later at append time; a raw newline inside a quoted label value
//!   is an error (Prometheus' lexer lets the value run on to the next line); a NUL
//!   byte outside label values, HELP text and comments is an error (Prometheus
//!   stops reading silently there).
//! - Samples come out in body order with their labels in exposition order (not
//!   sorted); label values and HELP text are unescaped. Histograms, summaries and
//!   the OpenMetrics composite types are just their series: `_bucket`, `_sum`,
//!   `_count`, `_created`, quantiles, stateset members, all as plain samples
//!   (`_created` of counters, summaries and histograms not, for a sink that wants
//!   start timestamps: [`SampleSink::start_timestamps`]) —
//!   except a native histogram in a protobuf body when the sink ingests them
//!   ([`SampleSink::native_histograms`]): one [`HistogramRef`] for
//!   [`SampleSink::histogram`] (see `protobuf.rs`). Exemplars are checked, and given
//!   to a sink that wants them ([`SampleSink::exemplar`]) after their sample.
//! - Start (created) timestamps go to a sink that wants them ([`SampleSink::start`])
//!   after their sample, as Prometheus 3.x's parsers' `StartTimestamp` gives them
//!   (model/textparse): a protobuf counter's, summary's or histogram's
//!   `created_timestamp`, for each of its samples; in OpenMetrics the value of the
//!   family's `_created` line of the same series, looked for after the sample.
//! - Timestamps are milliseconds: the text format's integer milliseconds as they
//!   are, OpenMetrics' float seconds times 1000 truncated toward zero.
//! - Each sample also carries its *series text*: the bytes from the metric name
//!   through the label block's closing `}` (just the name without one), exactly as
//!   exposed. [`parse_with`] lets a [`SampleSink`] take a line by its series text,
//!   value and timestamp before its labels are read, which is how the scrape cache
//!   skips labels it has seen (Prometheus's `Series()` fast path): the labels of a
//!   series text are read and checked only the first time a sink sees it.
//!
//! The module knows nothing of HTTP beyond `Content-Type` (the `Accept` header is
//! built from the job's `scrape_protocols`, `config::ScrapeProtocol`), of targets or
//! of storage.

mod error;
mod lex;
pub mod metrics_proto;
mod openmetrics;
mod protobuf;
mod text;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// An exposition format this module can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    PrometheusText,
    /// The OpenMetrics 1.0 text format.
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` protobuf messages.
    Protobuf,
}

impl Format {
    /// Picks the format from a response's `Content-Type`, as Prometheus does: the
    /// media type `application/openmetrics-text` (any case, any parameters) means
    /// OpenMetrics, `application/vnd.google.protobuf` the protobuf format (its
    /// `proto` and `encoding` parameters are not checked, as in Prometheus);
    /// anything else, including a missing or malformed header, means the
    /// Prometheus text format.
    ///
    /// ```
    /// use promflow::scrape::exposition::Format;
    /// let om = Format::from_content_type(Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    /// assert_eq!(om, Format::OpenMetrics);
    /// assert_eq!(Format::from_content_type(Some("text/plain; version=0.0.4")), Format::PrometheusText);
    /// assert_eq!(Format::from_content_type(None), Format::PrometheusText);
    /// let pb = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
    /// assert_eq!(Format::from_content_type(Some(pb)), Format::Protobuf);
    /// ```
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        let media_type = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else if media_type.eq_ignore_ascii_case("application/vnd.google.protobuf") {
            Format::Protobuf
        } else {
            Format::PrometheusText
        }
    }
}

// The metadata types live in the layer-0 `exposition` module (remote write and the
// API use them without depending on the scrape layer); the parser produces them.
pub use crate::exposition::{MetricMetadata, MetricType};

/// One sample. `labels` excludes the metric name and keeps exposition order;
/// label values are unescaped. A NaN value read from a text format has
/// Prometheus's canonical NaN bits (`0x7ff8000000000001`); one from protobuf keeps
/// the bits it was sent with.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// The exposed timestamp in milliseconds, if any.
    pub timestamp_ms: Option<i64>,
}

/// A sample borrowed from the body being parsed, as given to [`parse_each`].
/// Same meaning as [`Sample`], without the per-sample allocations.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRef<'a> {
    /// The series text as exposed (see the module doc).
    pub series: &'a [u8],
    pub name: &'a str,
    pub labels: &'a [(&'a str, Cow<'a, str>)],
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// An exemplar of the sample just given to the sink (OpenMetrics ` # {…} v [ts]`, or a
/// protobuf counter's or bucket's `exemplar`), as given to [`SampleSink::exemplar`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarRef<'a> {
    /// As exposed (not sorted; empty values kept: storage drops them).
    pub labels: &'a [(&'a str, Cow<'a, str>)],
    pub value: f64,
    /// Milliseconds, when the exemplar has a timestamp of its own.
    pub timestamp_ms: Option<i64>,
}

impl SampleRef<'_> {
    /// Copies the sample into an owned [`Sample`].
    pub fn to_owned(&self) -> Sample {
        Sample {
            name: self.name.to_string(),
            labels: self
                .labels
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// A native histogram read from a protobuf body, as given to
/// [`SampleSink::histogram`]: one sample of the series named without suffix, as
/// Prometheus ingests it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRef<'a> {
    /// The series text (the protobuf format's `metricBytes` of the name and labels).
    pub series: &'a [u8],
    pub name: &'a str,
    pub labels: &'a [(&'a str, Cow<'a, str>)],
    /// Integer histograms (deltas in the exposition) are converted to float counts;
    /// the counter-reset hint is `Gauge` for a gauge histogram, else `Unknown`, as
    /// Prometheus's protobuf parser sets it.
    pub histogram: dataflows::histogram::FloatHistogram,
    pub timestamp_ms: Option<i64>,
}

/// Whether a [`SampleSink`] ingests native histograms (the job's
/// `scrape_native_histograms`), and whether it keeps the classic series of a
/// histogram that has a native part too (`always_scrape_classic_histograms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NativeHistograms {
    /// A native histogram is read as its classic series only.
    #[default]
    Off,
    /// A native histogram is one histogram sample; its classic series are produced
    /// as well only when `keep_classic`.
    On { keep_classic: bool },
}

/// Everything a body contained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// One entry per family that has metadata lines, in order of first mention.
    pub metadata: Vec<MetricMetadata>,
}

/// Why a body was rejected. Displays as `line 12: <message>`, or just the message
/// when there is no line. Built from the parsers' `error::ErrorKind` where the
/// position is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number; 0 for the protobuf format, which has no lines.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.message);
        }
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// A text-format error on the 1-based `line`.
    fn at_line(line: usize, kind: error::ErrorKind) -> ParseError {
        ParseError {
            line,
            message: kind.to_string(),
        }
    }

    /// A protobuf error in the 1-based `index`th message.
    fn in_family(index: usize, kind: error::ErrorKind) -> ParseError {
        ParseError {
            line: 0,
            message: format!("metric family {index}: {kind}"),
        }
    }
}

/// Parses a whole body in `format`.
pub fn parse(body: &[u8], format: Format) -> Result<Exposition, ParseError> {
    let mut samples = Vec::new();
    let metadata = parse_each(body, format, |sample| samples.push(sample.to_owned()))?;
    Ok(Exposition { samples, metadata })
}

/// Parses a whole body in `format`, handing each sample to `on_sample` as it is
/// read instead of collecting them, and returns the metadata. On error, the
/// samples before the bad line have already been handed over; the caller decides
/// whether to discard them (Prometheus does).
pub fn parse_each<F>(
    body: &[u8],
    format: Format,
    on_sample: F,
) -> Result<Vec<MetricMetadata>, ParseError>
where
    F: FnMut(SampleRef<'_>),
{
    parse_with(body, format, &mut EverySample(on_sample))
}

/// Receives the samples of [`parse_with`].
pub trait SampleSink {
    /// Whether the parser should offer lines to [`SampleSink::known`] first.
    const KNOWS_SERIES: bool = false;

    /// A sample line by its series text (see the module doc), before its labels are
    /// read. Returns true if the sink took the sample; otherwise the parser reads and
    /// checks the labels and calls [`SampleSink::sample`]. The rest of the line
    /// (value, timestamp, exemplar) has been checked; the label block has not, but it
    /// is valid whenever `series` equals the series text of a sample this sink was
    /// given through `sample` in the same format — so a sink should answer true only
    /// for those.
    fn known(&mut self, _series: &[u8], _value: f64, _timestamp_ms: Option<i64>) -> bool {
        false
    }

    /// A sample with its labels read and checked.
    fn sample(&mut self, sample: SampleRef<'_>);

    /// Whether native histograms are wanted (only the protobuf format carries them).
    fn native_histograms(&self) -> NativeHistograms {
        NativeHistograms::Off
    }

    /// A native histogram, labels read and checked; only called when
    /// [`SampleSink::native_histograms`] is on.
    fn histogram(&mut self, _histogram: HistogramRef<'_>) {}

    /// Whether exemplars are wanted (otherwise they are checked and dropped).
    fn exemplars(&self) -> bool {
        false
    }

    /// The exemplar of the sample (or native histogram) given just before, checked;
    /// only called when [`SampleSink::exemplars`] is true.
    fn exemplar(&mut self, _exemplar: ExemplarRef<'_>) {}

    /// Whether start timestamps are wanted (Prometheus 3.x's
    /// `created-timestamp-zero-ingestion`); then the OpenMetrics `_created` series of
    /// counters, summaries and histograms are not given as samples (Prometheus's
    /// `WithOMParserSTSeriesSkipped`).
    fn start_timestamps(&self) -> bool {
        false
    }

    /// The start timestamp (ms, not 0) of the sample (or native histogram) given just
    /// before; only called when [`SampleSink::start_timestamps`] is true.
    fn start(&mut self, _start_ms: i64) {}
}

/// [`parse_each`]'s sink: every sample to one callback, labels always read.
struct EverySample<F>(F);

impl<F: FnMut(SampleRef<'_>)> SampleSink for EverySample<F> {
    fn sample(&mut self, sample: SampleRef<'_>) {
        (self.0)(sample)
    }
}

/// Parses a whole body in `format`, handing each sample to `sink` (see
/// [`SampleSink`]), and returns the metadata. Errors as [`parse_each`].
pub fn parse_with<S: SampleSink>(
    body: &[u8],
    format: Format,
    sink: &mut S,
) -> Result<Vec<MetricMetadata>, ParseError> {
    let mut metadata = MetadataTable::default();
    match format {
        Format::PrometheusText => text::parse(body, &mut metadata, sink)?,
        Format::OpenMetrics => openmetrics::parse(body, &mut metadata, sink)?,
        Format::Protobuf => protobuf::parse(body, &mut metadata, sink)?,
    }
    Ok(metadata.entries)
}

/// Collects metadata lines by family, keeping first-mention order.
#[derive(Default)]
struct MetadataTable {
    entries: Vec<MetricMetadata>,
    index: HashMap<String, usize>,
}

impl MetadataTable {
    fn family(&mut self, family: &str) -> &mut MetricMetadata {
        // HELP, TYPE and UNIT of one family are nearly always adjacent.
        let last_matches = self.entries.last().is_some_and(|m| m.family == family);
        let position = if last_matches {
            self.entries.len() - 1
        } else if let Some(&position) = self.index.get(family) {
            position
        } else {
            self.index.insert(family.to_string(), self.entries.len());
            self.entries.push(MetricMetadata {
                family: family.to_string(),
                kind: MetricType::Unknown,
                help: String::new(),
                unit: String::new(),
            });
            self.entries.len() - 1
        };
        &mut self.entries[position]
    }

    fn set_help(&mut self, family: &str, help: Cow<'_, str>) {
        self.family(family).help = help.into_owned();
    }

    fn set_kind(&mut self, family: &str, kind: MetricType) {
        self.family(family).kind = kind;
    }

    fn set_unit(&mut self, family: &str, unit: &str) {
        self.family(family).unit = unit.to_string();
    }
}
