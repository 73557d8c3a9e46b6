//! What the format parsers find wrong with a body, as kinds rather than text: each
//! parser returns an [`ErrorKind`] and turns it into a [`super::ParseError`] at the
//! one place that knows the position (the line number, or the protobuf message's
//! index). The texts are the messages users see in the targets page and the scrape
//! log, so the `Display` of each kind is that message, unchanged.

use std::fmt;

/// Why one line (or one protobuf message) was rejected, without its position.
#[derive(Debug, thiserror::Error)]
pub(super) enum ErrorKind {
    /// The grammar allows something else at this point of the line.
    #[error("expected {expected}, got {got}")]
    Expected { expected: Expected, got: Got },
    #[error("unterminated label value (missing closing '\"')")]
    UnclosedLabelValue,
    #[error("unterminated label value (backslash at end of line)")]
    BackslashAtEndOfLine,
    #[error("invalid UTF-8 in label value {0}")]
    LabelValueNotUtf8(Excerpt),
    #[error("HELP text of {family} is not valid UTF-8")]
    HelpNotUtf8 { family: String },
    #[error("invalid number {0}")]
    InvalidNumber(Excerpt),
    #[error("number {0} out of range")]
    NumberOutOfRange(Excerpt),
    #[error("invalid timestamp {0}")]
    InvalidTimestamp(Excerpt),
    #[error("timestamp {0} out of range")]
    TimestampOutOfRange(Excerpt),
    #[error("invalid metric type {0}")]
    InvalidMetricType(Excerpt),
    #[error("duplicate label name {label:?} in {metric}")]
    DuplicateLabel { label: String, metric: String },
    /// OpenMetrics: a UNIT that is not a `_`-separated suffix of its family.
    #[error("unit {unit} is not a suffix of metric {family}")]
    UnitNotSuffix { unit: Excerpt, family: String },
    /// OpenMetrics: an exemplar on a sample other than `_total` or `_bucket`.
    #[error("metric name {metric} does not support exemplars (only _total and _bucket do)")]
    ExemplarNotSupported { metric: String },
    #[error("unexpected data after # EOF")]
    DataAfterEof,
    #[error("data does not end with # EOF")]
    MissingEof,
    #[error("data does not end with # EOF (last line {0} has no newline)")]
    LastLineUnterminated(Excerpt),
    /// Protobuf: a length prefix that is not a varint of at most 32 bits.
    #[error("invalid varint encountered")]
    InvalidVarint,
    /// Protobuf: a length prefix that runs past the body.
    #[error("insufficient length of buffer, expected at least {needed} bytes, got {got} bytes")]
    ShortBuffer { needed: usize, got: usize },
    #[error("invalid message: {0}")]
    InvalidMessage(prost::DecodeError),
    #[error("invalid metric name: {0}")]
    InvalidMetricName(String),
    #[error("invalid label name: {0}")]
    InvalidLabelName(String),
    #[error("unknown metric type for metric {name:?}: {raw}")]
    UnknownMetricType { name: String, raw: i32 },
    /// A native histogram Prometheus's `Validate` refuses at append (spans against
    /// bucket counts, negative offsets or counts, count rules): its words.
    #[error("histogram {metric}: {error}")]
    InvalidHistogram {
        metric: String,
        error: dataflows::histogram::InvalidHistogram,
    },
    /// A native histogram schema outside -4..=8.
    #[error("histogram {metric}: invalid histogram schema {schema}")]
    HistogramSchema { metric: String, schema: i32 },
}

/// What the grammar allowed where an [`ErrorKind::Expected`] was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expected {
    /// The `"` that opens a label value.
    OpeningQuote,
    /// The family name of a HELP, TYPE or UNIT line.
    MetricNameAfter(&'static str),
    /// Text format: the start of a line.
    LineStart,
    /// Text format: a sample's value.
    ValueAfterMetric(String),
    /// Text format: what may follow a value.
    TimestampOrEnd,
    /// Text format: what may follow a timestamp.
    EndAfterTimestamp,
    /// Text format: inside a label block.
    LabelNameOrClose,
    /// Both formats: after a label name.
    EqualsAfterLabel(String),
    /// OpenMetrics: a line starting with `#`.
    MetadataKeyword,
    /// OpenMetrics: the text of a HELP, TYPE or UNIT line.
    TextAfter {
        keyword: &'static str,
        family: String,
    },
    /// OpenMetrics: the start of a line.
    LineStartOpenMetrics,
    /// OpenMetrics: what may follow a timestamp.
    ExemplarOrEnd,
    /// OpenMetrics: one space, then the named token.
    SpaceAnd(&'static str),
    /// OpenMetrics: inside a label block.
    LabelName,
    /// OpenMetrics: after a label value.
    CommaOrClose,
    /// OpenMetrics: what may follow an exemplar.
    EndAfterExemplar,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::OpeningQuote => f.write_str("'\"' to open the label value"),
            Expected::MetricNameAfter(keyword) => write!(f, "metric name after {keyword}"),
            Expected::LineStart => f.write_str("metric name, comment or blank line"),
            Expected::ValueAfterMetric(name) => write!(f, "value after metric {name}"),
            Expected::TimestampOrEnd => f.write_str("timestamp or end of line after value"),
            Expected::EndAfterTimestamp => f.write_str("end of line after timestamp"),
            Expected::LabelNameOrClose => f.write_str("label name or '}'"),
            Expected::EqualsAfterLabel(label) => write!(f, "'=' after label name {label}"),
            Expected::MetadataKeyword => f.write_str("'# HELP ', '# TYPE ', '# UNIT ' or '# EOF'"),
            Expected::TextAfter { keyword, family } => {
                write!(f, "' ' and text after {keyword} {family}")
            }
            Expected::LineStartOpenMetrics => f.write_str("metric name or '# '"),
            Expected::ExemplarOrEnd => f.write_str("exemplar or end of line after timestamp"),
            Expected::SpaceAnd(what) => write!(f, "' ' and {what}"),
            Expected::LabelName => f.write_str("label name"),
            Expected::CommaOrClose => f.write_str("',' or '}' after label value"),
            Expected::EndAfterExemplar => f.write_str("end of line after exemplar"),
        }
    }
}

/// What was found instead: the end of the line or the start of the rest of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Got {
    EndOfLine,
    Text(Excerpt),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::EndOfLine => f.write_str("end of line"),
            Got::Text(excerpt) => excerpt.fmt(f),
        }
    }
}

/// Up to 40 bytes of the body, shown quoted (`"…"`, with a trailing `…` when the
/// bytes went on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Excerpt {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Excerpt {
    const MAX: usize = 40;

    pub(super) fn of(bytes: &[u8]) -> Excerpt {
        Excerpt {
            bytes: bytes.get(..Self::MAX).unwrap_or(bytes).to_vec(),
            truncated: bytes.len() > Self::MAX,
        }
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.bytes))?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}
