//! Writing the text exposition format 0.0.4, byte for byte as Prometheus writes it:
//! every `/metrics` producer (selfmetrics, storage, remote write, the built-in
//! Alertmanager) and `/federate` write through here.
//!
//! Floats are formatted like Go's `strconv.FormatFloat(v, 'g', -1, 64)` (what
//! Prometheus's `expfmt` uses, [`dataflows::go_float::format_g`]). Label values escape
//! `\`, `"` and newline.
//!
//! It also owns what a family's metadata lines say ([`MetricType`], [`MetricMetadata`]):
//! the scrape parser produces them, remote write and the API read them.

use dataflows::go_float::format_g;
use std::fmt::Write;

/// Appends `value` escaped for a label value in the text format.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a `# TYPE name kind` line.
pub fn write_type(out: &mut String, name: &str, kind: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends the lines that open a metric family: `# HELP name help`, `# TYPE name kind`.
pub fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    write_type(out, name, kind);
}

/// Appends a whole metric family of one sample without labels.
pub fn write_single(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    write_header(out, name, kind, help);
    write_sample(out, name, [], value, None);
}

/// Appends one sample line: `name{l="v",...} value [timestamp]`. Labels are written in
/// the order given.
pub fn write_sample<'a>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    value: f64,
    timestamp_ms: Option<i64>,
) {
    out.push_str(name);
    let mut first = true;
    for (label, label_value) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, label_value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_g(value));
    if let Some(ts) = timestamp_ms {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

/// The type of a metric family, as declared by a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// `untyped` in the Prometheus text format.
    Untyped,
    Info,
    StateSet,
    GaugeHistogram,
    /// `unknown` in OpenMetrics, or no `# TYPE` line at all.
    Unknown,
}

impl MetricType {
    /// The word used for this type in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Unknown => "unknown",
        }
    }
}

/// What the `# HELP`, `# TYPE` and `# UNIT` lines say about one metric family.
/// Fields not given are empty (`kind` is then [`MetricType::Unknown`]); when a
/// line is repeated for a family, the last one wins.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricMetadata {
    /// The family name as written in the metadata lines (for OpenMetrics counters,
    /// without `_total`).
    pub family: String,
    pub kind: MetricType,
    /// Unescaped HELP text.
    pub help: String,
    /// OpenMetrics UNIT; always empty for the text format.
    pub unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_escape_label_values() {
        let mut out = String::new();
        write_sample(&mut out, "m", [("a", "x\"y\\z\nw")], 1.0, Some(42));
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 1 42\n");
        let mut out = String::new();
        write_sample(&mut out, "m", [], 2.0, None);
        assert_eq!(out, "m 2\n");
    }
}
