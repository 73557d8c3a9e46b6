//! Tests of the exposition parsers: one test per grammar feature for each format,
//! then a corpus of bad inputs that must fail on a named line, then a
//! no-panic sweep over truncations and byte flips of valid bodies.

use super::*;

fn text(body: &str) -> Exposition {
    parse(body.as_bytes(), Format::PrometheusText)
        .unwrap_or_else(|e| panic!("text body failed: {e}\n{body}"))
}

fn om(body: &str) -> Exposition {
    parse(body.as_bytes(), Format::OpenMetrics)
        .unwrap_or_else(|e| panic!("OpenMetrics body failed: {e}\n{body}"))
}

/// A sample built from string pieces, for comparisons.
fn sample(name: &str, labels: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) -> Sample {
    Sample {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        value,
        timestamp_ms,
    }
}

fn meta(family: &str, kind: MetricType, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        family: family.to_string(),
        kind,
        help: help.to_string(),
        unit: unit.to_string(),
    }
}

fn only_value(exposition: &Exposition) -> f64 {
    assert_eq!(exposition.samples.len(), 1, "{exposition:?}");
    exposition.samples[0].value
}

// ---- content negotiation -------------------------------------------------------

#[test]
fn format_from_content_type() {
    use Format::*;
    let cases = [
        (
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            OpenMetrics,
        ),
        (
            Some("application/openmetrics-text;version=0.0.1"),
            OpenMetrics,
        ),
        (Some("Application/OpenMetrics-Text"), OpenMetrics),
        (
            Some(" application/openmetrics-text ; version=1.0.0"),
            OpenMetrics,
        ),
        (
            Some("text/plain; version=0.0.4; charset=utf-8"),
            PrometheusText,
        ),
        (Some("text/plain"), PrometheusText),
        (Some("application/json"), PrometheusText),
        (Some(""), PrometheusText),
        (Some(";;;"), PrometheusText),
        (None, PrometheusText),
    ];
    for (content_type, want) in cases {
        assert_eq!(
            Format::from_content_type(content_type),
            want,
            "{content_type:?}"
        );
    }
}

#[test]
fn accept_headers_match_prometheus() {
    use crate::config::ScrapeProtocol;
    // Prometheus 2.49-2.55's `acceptHeader` for its two defaults (four protocols
    // known, so weights start at 0.5).
    assert_eq!(
        ScrapeProtocol::accept_header(&ScrapeProtocol::DEFAULT),
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    );
    assert_eq!(
        ScrapeProtocol::accept_header(&ScrapeProtocol::PROTO_FIRST),
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
    );
    assert_eq!(
        ScrapeProtocol::accept_header(&[ScrapeProtocol::PrometheusText0_0_4]),
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.4"
    );
}

#[test]
fn parse_error_display() {
    let err = ParseError {
        line: 12,
        message: "bad".into(),
    };
    assert_eq!(err.to_string(), "line 12: bad");
}

// ---- Prometheus text 0.0.4 ---------------------------------------------------

#[test]
fn text_simple_samples_and_timestamps() {
    let got = text("a 1\nb{x=\"y\"} 2.5 1700000000000\nc_total{x=\"1\",y=\"2\"} -3e2\n");
    assert_eq!(
        got.samples,
        vec![
            sample("a", &[], 1.0, None),
            sample("b", &[("x", "y")], 2.5, Some(1_700_000_000_000)),
            sample("c_total", &[("x", "1"), ("y", "2")], -300.0, None),
        ]
    );
    assert!(got.metadata.is_empty());
}

#[test]
fn text_help_and_type() {
    let got = text(
        "# HELP http_requests_total The total.\\nSecond line \\\\ \\\" kept\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{code=\"200\"} 1027\n\
         # TYPE rpc summary\n# TYPE h histogram\n# TYPE g gauge\n# TYPE u untyped\n",
    );
    assert_eq!(
        got.metadata,
        vec![
            meta(
                "http_requests_total",
                MetricType::Counter,
                "The total.\nSecond line \\ \\\" kept",
                ""
            ),
            meta("rpc", MetricType::Summary, "", ""),
            meta("h", MetricType::Histogram, "", ""),
            meta("g", MetricType::Gauge, "", ""),
            meta("u", MetricType::Untyped, "", ""),
        ]
    );
}

#[test]
fn text_help_edge_cases() {
    // Empty help, tabs as separators, trailing blanks kept, repeated HELP: last wins.
    let got = text("# HELP a\n#\tHELP\tb\tx y  \n# HELP c first\n# HELP c second\n# HELP d   \n");
    assert_eq!(
        got.metadata,
        vec![
            meta("a", MetricType::Unknown, "", ""),
            meta("b", MetricType::Unknown, "x y  ", ""),
            meta("c", MetricType::Unknown, "second", ""),
            meta("d", MetricType::Unknown, "", ""),
        ]
    );
}

#[test]
fn text_other_comments_are_ignored() {
    let got = text(
        "#no space\n# just a comment\n#\n# HELPER text\n# TYPEWRITER\n# help lower case\n\
         # comment with invalid utf8 \u{fffd}\nx 1\n",
    );
    assert_eq!(got.samples, vec![sample("x", &[], 1.0, None)]);
    assert!(got.metadata.is_empty());
    // Invalid UTF-8 in an ordinary comment is ignored, as in Prometheus.
    let body = b"# caf\xe9\nx 1\n";
    assert_eq!(
        parse(body, Format::PrometheusText).unwrap().samples.len(),
        1
    );
}

#[test]
fn text_blank_lines_and_whitespace() {
    let got = text("\n\n  \t\n  a   1 \t 5  \n\tb{ x = \"1\" , y=\"2\" , }\t2\t\n\n");
    assert_eq!(
        got.samples,
        vec![
            sample("a", &[], 1.0, Some(5)),
            sample("b", &[("x", "1"), ("y", "2")], 2.0, None),
        ]
    );
}

#[test]
fn text_no_trailing_newline() {
    assert_eq!(text("a 1").samples, vec![sample("a", &[], 1.0, None)]);
    assert_eq!(text("a 1 2").samples, vec![sample("a", &[], 1.0, Some(2))]);
    assert!(text("").samples.is_empty());
}

#[test]
fn text_label_value_escapes() {
    let got = text(r#"a{x="q\"b\\s\nn",y="\t kept",z="é😀",w=""} 1"#);
    assert_eq!(
        got.samples[0].labels,
        vec![
            ("x".to_string(), "q\"b\\s\nn".to_string()),
            ("y".to_string(), "\\t kept".to_string()),
            ("z".to_string(), "é😀".to_string()),
            ("w".to_string(), String::new()),
        ]
    );
}

#[test]
fn text_label_set_shapes() {
    // Empty braces, trailing comma, and (Prometheus quirk) no comma at all.
    assert!(text("a{} 1").samples[0].labels.is_empty());
    assert_eq!(text("a{x=\"1\",} 1").samples[0].labels.len(), 1);
    assert_eq!(text("a{x=\"1\" y=\"2\"} 1").samples[0].labels.len(), 2);
    // No blank needed between the closing brace and the value.
    assert_eq!(only_value(&text("a{x=\"1\"}7")), 7.0);
}

#[test]
fn text_names_charset() {
    let got = text("a:b_c:9 1\n_x 1\n:y 1\nn{_l=\"\",L9_=\"\"} 1\n");
    let names: Vec<_> = got.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a:b_c:9", "_x", ":y", "n"]);
    assert_eq!(got.samples[3].labels[1].0, "L9_");
}

#[test]
fn text_values() {
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("-1", -1.0),
        ("+1", 1.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("-2.5e+2", -250.0),
        ("0", 0.0),
        ("007", 7.0),
        ("1.7976931348623157e308", f64::MAX),
        ("1e-400", 0.0),
        ("+Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("Inf", f64::INFINITY),
        ("inf", f64::INFINITY),
        ("+infinity", f64::INFINITY),
        ("-Infinity", f64::NEG_INFINITY),
        ("9007199254740993", 9007199254740992.0),
    ];
    for (token, want) in cases {
        let got = only_value(&text(&format!("a {token}\n")));
        assert_eq!(got.to_bits(), want.to_bits(), "{token}");
    }
    for token in ["NaN", "nan", "NAN"] {
        let got = only_value(&text(&format!("a {token}\n")));
        assert_eq!(got.to_bits(), 0x7ff8_0000_0000_0001, "{token}");
    }
}

#[test]
fn text_timestamps() {
    let got = text("a 1 0\nb 1 9223372036854775807\nc 1 0001\n");
    let ts: Vec<_> = got.samples.iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(ts, [Some(0), Some(i64::MAX), Some(1)]);
}

#[test]
fn text_histogram_and_summary_are_plain_series() {
    let got = text(
        "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 4.5\nh_count 3\n\
         # TYPE s summary\ns{quantile=\"0.99\"} 1\ns_sum 2\ns_count 3\n",
    );
    let names: Vec<_> = got.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["h_bucket", "h_bucket", "h_sum", "h_count", "s", "s_sum", "s_count"]
    );
    assert_eq!(
        got.samples[1].labels,
        vec![("le".to_string(), "+Inf".to_string())]
    );
}

#[test]
fn text_nul_allowed_in_label_values_help_and_comments() {
    let body = b"# HELP a x\0y\n# c\0\na{l=\"\0\"} 1\n";
    let got = parse(body, Format::PrometheusText).unwrap();
    assert_eq!(got.metadata[0].help, "x\0y");
    assert_eq!(got.samples[0].labels[0].1, "\0");
}

#[test]
fn parse_each_streams_borrowed_samples() {
    let body = b"a{x=\"1\",y=\"e\\\\\"} 1\nb 2 3\n";
    let mut seen = Vec::new();
    let metadata = parse_each(body, Format::PrometheusText, |s| {
        seen.push(s.to_owned());
        if s.name == "a" {
            assert!(matches!(s.labels[0].1, Cow::Borrowed("1")));
            assert!(matches!(s.labels[1].1, Cow::Owned(_)));
        }
    })
    .unwrap();
    assert!(metadata.is_empty());
    assert_eq!(seen, parse(body, Format::PrometheusText).unwrap().samples);
}

// ---- OpenMetrics 1.0 ------------------------------------------------------------

#[test]
fn om_minimal_and_eof() {
    assert_eq!(om("# EOF\n"), Exposition::default());
    assert_eq!(om("# EOF"), Exposition::default());
    assert_eq!(
        om("a 1\n# EOF\n").samples,
        vec![sample("a", &[], 1.0, None)]
    );
}

#[test]
fn om_metadata_lines() {
    let got = om("# TYPE foo_seconds counter\n# UNIT foo_seconds seconds\n\
                  # HELP foo_seconds A \\\"quoted\\\" \\\\ help\\nline \\t.\n\
                  foo_seconds_total 1\nfoo_seconds_created 1.6e9\n\
                  # TYPE i info\n# TYPE s stateset\n# TYPE gh gaugehistogram\n# TYPE u unknown\n\
                  # TYPE g gauge\n# TYPE h histogram\n# TYPE sm summary\n# UNIT e \n# HELP e \n# EOF\n");
    assert_eq!(
        got.metadata,
        vec![
            meta(
                "foo_seconds",
                MetricType::Counter,
                "A \"quoted\" \\ help\nline \\t.",
                "seconds"
            ),
            meta("i", MetricType::Info, "", ""),
            meta("s", MetricType::StateSet, "", ""),
            meta("gh", MetricType::GaugeHistogram, "", ""),
            meta("u", MetricType::Unknown, "", ""),
            meta("g", MetricType::Gauge, "", ""),
            meta("h", MetricType::Histogram, "", ""),
            meta("sm", MetricType::Summary, "", ""),
            meta("e", MetricType::Unknown, "", ""),
        ]
    );
    // Counters' family names come without `_total`; `_created` is a plain series.
    assert_eq!(
        got.samples,
        vec![
            sample("foo_seconds_total", &[], 1.0, None),
            sample("foo_seconds_created", &[], 1.6e9, None),
        ]
    );
}

#[test]
fn om_timestamps_are_seconds() {
    let got = om("a 1 1520879607.789\nb 1 1520879607\nc 1 -1.5\nd 1 1e3\ne 1 0.0009\n# EOF\n");
    let ts: Vec<_> = got.samples.iter().map(|s| s.timestamp_ms).collect();
    assert_eq!(
        ts,
        [
            Some(1_520_879_607_789),
            Some(1_520_879_607_000),
            Some(-1500),
            Some(1_000_000),
            Some(0)
        ]
    );
}

#[test]
fn om_labels_and_escapes() {
    let got = om("a{x=\"1\",y=\"q\\\"\\n\\\\\"} 1\nb{} 2\n# EOF\n");
    assert_eq!(
        got.samples,
        vec![
            sample("a", &[("x", "1"), ("y", "q\"\n\\")], 1.0, None),
            sample("b", &[], 2.0, None),
        ]
    );
}

#[test]
fn om_values() {
    let got = om("a +Inf\nb -Inf\nc NaN\nd 1.5e-3\ne -0\n# EOF\n");
    let values: Vec<_> = got.samples.iter().map(|s| s.value).collect();
    assert_eq!(values[0], f64::INFINITY);
    assert_eq!(values[1], f64::NEG_INFINITY);
    assert_eq!(values[2].to_bits(), 0x7ff8_0000_0000_0001);
    assert_eq!(values[3], 1.5e-3);
    assert!(values[4] == 0.0 && values[4].is_sign_negative());
}

#[test]
fn om_exemplars_are_parsed_and_skipped() {
    let got = om("# TYPE foo histogram\n\
                  foo_bucket{le=\"0.1\"} 8 # {trace_id=\"abc\"} 0.05 1520879607.789\n\
                  foo_bucket{le=\"+Inf\"} 9 123 # {} 1\n\
                  foo_count 9\n\
                  bar_total 3 # {a=\"1\",b=\"x\\\"y\"} NaN\n# EOF\n");
    assert_eq!(
        got.samples,
        vec![
            sample("foo_bucket", &[("le", "0.1")], 8.0, None),
            sample("foo_bucket", &[("le", "+Inf")], 9.0, Some(123_000)),
            sample("foo_count", &[], 9.0, None),
            sample("bar_total", &[], 3.0, None),
        ]
    );
}

/// An exemplar as [`WithExemplars`] keeps it: labels, value, timestamp.
pub(super) type OwnedExemplar = (Vec<(String, String)>, f64, Option<i64>);

/// A sink that wants exemplars: each sample's name with the exemplars given after it.
#[derive(Default)]
pub(super) struct WithExemplars(pub Vec<(String, Vec<OwnedExemplar>)>);

impl SampleSink for WithExemplars {
    fn sample(&mut self, sample: SampleRef<'_>) {
        self.0.push((sample.name.to_string(), Vec::new()));
    }

    fn exemplars(&self) -> bool {
        true
    }

    fn exemplar(&mut self, exemplar: ExemplarRef<'_>) {
        let labels = exemplar
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let last = self.0.last_mut().expect("a sample first");
        last.1.push((labels, exemplar.value, exemplar.timestamp_ms));
    }
}

/// Exemplar labels as owned pairs.
pub(super) fn pairs(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn om_exemplars_go_to_a_sink_that_wants_them_after_their_sample() {
    let body = "# TYPE foo histogram\n\
                foo_bucket{le=\"0.1\"} 8 # {trace_id=\"abc\"} 0.05 1520879607.789\n\
                foo_bucket{le=\"+Inf\"} 9 123 # {} 1\n\
                foo_count 9\n\
                bar_total 3 # {a=\"1\",b=\"x\\\"y\"} NaN\n# EOF\n";
    let mut sink = WithExemplars::default();
    parse_with(body.as_bytes(), Format::OpenMetrics, &mut sink).unwrap();
    let got = &sink.0;
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0].1,
        vec![(pairs(&[("trace_id", "abc")]), 0.05, Some(1_520_879_607_789))]
    );
    assert_eq!(got[1].1, vec![(vec![], 1.0, None)]);
    assert!(got[2].1.is_empty());
    assert_eq!(got[3].1.len(), 1);
    assert_eq!(got[3].1[0].0, pairs(&[("a", "1"), ("b", "x\"y")]));
    assert!(got[3].1[0].1.is_nan());
}

#[test]
fn om_composite_types_are_plain_series() {
    let got = om("# TYPE s stateset\ns{s=\"a\"} 1\ns{s=\"b\"} 0\n\
                  # TYPE i info\ni_info{version=\"1.2\"} 1\n\
                  # TYPE gh gaugehistogram\ngh_bucket{le=\"+Inf\"} 3\ngh_gcount 3\ngh_gsum 1\n# EOF\n");
    let names: Vec<_> = got.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["s", "s", "i_info", "gh_bucket", "gh_gcount", "gh_gsum"]
    );
}

// ---- bad inputs ---------------------------------------------------------------

/// Each case: format, body, the line the error must name, a piece of its message.
const BAD: &[(Format, &[u8], usize, &str)] = {
    use Format::{OpenMetrics as OM, PrometheusText as T};
    &[
        // Truncated lines.
        (T, b"a 1\nb", 2, "expected value"),
        (T, b"a 1\nb{", 2, "expected label name"),
        (T, b"a{x", 1, "expected '='"),
        (T, b"a{x=", 1, "'\"'"),
        (T, b"a{x=\"1", 1, "unterminated label value"),
        (T, b"a{x=\"1\"", 1, "expected label name or '}'"),
        (T, b"a{x=\"1\"}", 1, "expected value"),
        (T, b"# HELP ", 1, "expected metric name after HELP"),
        (T, b"# TYPE a", 1, "invalid metric type"),
        (OM, b"a 1\nb", 2, "data does not end with # EOF"),
        (OM, b"a{x=\"1\n# EOF\n", 1, "unterminated label value"),
        (OM, b"a\n# EOF\n", 1, "expected ' ' and value"),
        (
            OM,
            b"# HELP a\n# EOF\n",
            1,
            "expected ' ' and text after HELP",
        ),
        // Bad escapes and quoting.
        (T, b"a{x=\"1\\\"} 1\n", 1, "unterminated label value"),
        (T, b"a{x=\"1\\", 1, "backslash at end of line"),
        (T, b"a{x=1} 1\n", 1, "'\"'"),
        (T, b"a{x='1'} 1\n", 1, "'\"'"),
        (OM, b"a{x=\"\\\"} 1\n# EOF\n", 1, "unterminated label value"),
        // Raw newline inside a label value (Prometheus would join the lines).
        (T, b"a{x=\"1\n2\"} 1\n", 1, "unterminated label value"),
        // Bad numbers.
        (T, b"a 1.2.3\n", 1, "invalid number"),
        (T, b"a one\n", 1, "invalid number"),
        (T, b"a 0x1A\n", 1, "invalid number"),
        (T, b"a 0x1p3\n", 1, "invalid number"),
        (T, b"a 1_000\n", 1, "invalid number"),
        (T, b"a 1e\n", 1, "invalid number"),
        (T, b"a .\n", 1, "invalid number"),
        (T, b"a -\n", 1, "invalid number"),
        (T, b"a +NaN\n", 1, "invalid number"),
        (T, b"a -nan\n", 1, "invalid number"),
        (T, b"a infin\n", 1, "invalid number"),
        (T, b"a 1e400\n", 1, "out of range"),
        (T, b"a -1e400\n", 1, "out of range"),
        (T, b"a 1}\n", 1, "invalid number"),
        (T, b"a 1 -5\n", 1, "expected timestamp"),
        (T, b"a 1 1.5\n", 1, "expected end of line after timestamp"),
        (T, b"a 1 2 3\n", 1, "expected end of line after timestamp"),
        (T, b"a 1 9223372036854775808\n", 1, "out of range"),
        (T, b"a 1 12abc\n", 1, "expected end of line after timestamp"),
        (OM, b"a 1 NaN\n# EOF\n", 1, "invalid timestamp"),
        (OM, b"a 1 +Inf\n# EOF\n", 1, "invalid timestamp"),
        (OM, b"a 1 1e400\n# EOF\n", 1, "out of range"),
        (OM, b"a 1 abc\n# EOF\n", 1, "invalid number"),
        (OM, b"a x\n# EOF\n", 1, "invalid number"),
        // OpenMetrics EOF rules.
        (OM, b"", 1, "data does not end with # EOF"),
        (OM, b"a 1\n", 2, "data does not end with # EOF"),
        (OM, b"a 1\n# EOF\nb 1\n", 3, "unexpected data after # EOF"),
        (OM, b"# EOF\n\n", 2, "unexpected data after # EOF"),
        (OM, b"# EOF\n# EOF\n", 2, "unexpected data after # EOF"),
        (OM, b"# EOF \n", 1, "unexpected data after # EOF"),
        (OM, b"# EOFx\n", 1, "unexpected data after # EOF"),
        (OM, b"a 1\n# EO", 2, "data does not end with # EOF"),
        // OpenMetrics strictness.
        (OM, b"\n# EOF\n", 1, "expected metric name"),
        (OM, b"# comment\n# EOF\n", 1, "expected '# HELP '"),
        (OM, b"#HELP a x\n# EOF\n", 1, "expected '# HELP '"),
        (OM, b"a  1\n# EOF\n", 1, "expected ' ' and value"),
        (OM, b"a 1 \n# EOF\n", 1, "expected ' ' and timestamp"),
        (OM, b"a\t1\n# EOF\n", 1, "expected ' ' and value"),
        (OM, b"a{x=\"1\",} 1\n# EOF\n", 1, "expected label name"),
        (OM, b"a{x=\"1\" } 1\n# EOF\n", 1, "expected ',' or '}'"),
        (
            OM,
            b"a{x=\"1\"y=\"2\"} 1\n# EOF\n",
            1,
            "expected ',' or '}'",
        ),
        (OM, b"a{,} 1\n# EOF\n", 1, "expected label name"),
        (
            OM,
            b"a 1 2 3\n# EOF\n",
            1,
            "expected exemplar or end of line",
        ),
        (OM, b"# TYPE a untyped\n# EOF\n", 1, "invalid metric type"),
        (OM, b"# TYPE a counter \n# EOF\n", 1, "invalid metric type"),
        (OM, b"# UNIT a_seconds bytes\n# EOF\n", 1, "not a suffix"),
        (OM, b"# UNIT seconds seconds\n# EOF\n", 1, "not a suffix"),
        (OM, b"# UNIT aseconds seconds\n# EOF\n", 1, "not a suffix"),
        (OM, b"# UNIT a_s \xff\n# EOF\n", 1, "not a suffix"),
        // Exemplars.
        (
            OM,
            b"a 1 # {x=\"1\"} 1\n# EOF\n",
            1,
            "does not support exemplars",
        ),
        (OM, b"a_total 1 # {x=\"1\"}\n# EOF\n", 1, "exemplar value"),
        (OM, b"a_total 1 # {x=\"1\"} z\n# EOF\n", 1, "invalid number"),
        (
            OM,
            b"a_total 1 # {x=\"1\"} 1 NaN\n# EOF\n",
            1,
            "invalid timestamp",
        ),
        (
            OM,
            b"a_total 1 # {x=\"1\"} 1 2 3\n# EOF\n",
            1,
            "end of line after exemplar",
        ),
        (OM, b"a_total 1 # {x=1} 1\n# EOF\n", 1, "'\"'"),
        (OM, b"a_total 1 # x\n# EOF\n", 1, "invalid number"),
        // Invalid names.
        (T, b"1a 1\n", 1, "expected metric name"),
        (T, b"a-b 1\n", 1, "invalid number"),
        (T, b"{x=\"1\"} 1\n", 1, "expected metric name"),
        (T, b"a{1x=\"1\"} 1\n", 1, "expected label name"),
        (T, b"a{x:y=\"1\"} 1\n", 1, "expected '='"),
        (T, b"a{x-y=\"1\"} 1\n", 1, "expected '='"),
        (T, b"\xc3\xa9 1\n", 1, "expected metric name"),
        (T, b"# HELP 1a x\n", 1, "expected metric name after HELP"),
        (T, b"# TYPE a-b counter\n", 1, "invalid metric type"),
        (T, b"# TYPE a  counter\n", 1, "invalid metric type"),
        (T, b"# TYPE a Counter\n", 1, "invalid metric type"),
        (T, b"# TYPE a info\n", 1, "invalid metric type"),
        (OM, b"9a 1\n# EOF\n", 1, "expected metric name"),
        (OM, b"a{1=\"1\"} 1\n# EOF\n", 1, "expected label name"),
        (
            OM,
            b"# TYPE 1a counter\n# EOF\n",
            1,
            "expected metric name after TYPE",
        ),
        // Duplicate labels.
        (
            T,
            b"a{x=\"1\",x=\"2\"} 1\n",
            1,
            "duplicate label name \"x\"",
        ),
        (
            T,
            b"a{__name__=\"b\"} 1\n",
            1,
            "duplicate label name \"__name__\"",
        ),
        (
            OM,
            b"a{x=\"1\",y=\"1\",x=\"1\"} 1\n# EOF\n",
            1,
            "duplicate label name \"x\"",
        ),
        // Invalid UTF-8.
        (T, b"a{x=\"\xff\"} 1\n", 1, "invalid UTF-8 in label value"),
        (T, b"a 1\n# HELP a \xc3\x28\n", 2, "not valid UTF-8"),
        (T, b"a \xff\n", 1, "invalid number"),
        (T, b"a\xff 1\n", 1, "invalid number"),
        (
            OM,
            b"a{x=\"\xe2\x82\"} 1\n# EOF\n",
            1,
            "invalid UTF-8 in label value",
        ),
        (OM, b"# HELP a \xff\n# EOF\n", 1, "not valid UTF-8"),
        // NUL outside the places Prometheus allows it.
        (T, b"a 1\n\0\n", 2, "expected metric name"),
        (T, b"a\0 1\n", 1, "invalid number"),
        // Odd characters and line shapes.
        (T, b"a 1\r\n", 1, "invalid number"),
        (T, b"a{} {}\n", 1, "expected value"),
        (T, b"a 1 {x=\"1\"}\n", 1, "expected timestamp"),
        (T, b"a {x=\"1\"} 1 extra\n", 1, "expected timestamp"),
        (T, b"a{x=\"1\",,} 1\n", 1, "expected label name"),
        (T, b"a{,} 1\n", 1, "expected label name"),
        (T, b"a{x=\"1\"}} 1\n", 1, "invalid number"),
        (
            T,
            b"ok 1\nok 2\n\n# fine\nbad line here\n",
            5,
            "invalid number",
        ),
    ]
};

#[test]
fn bad_inputs_fail_on_the_named_line() {
    let mut failures = Vec::new();
    for (format, body, line, fragment) in BAD {
        match parse(body, *format) {
            Ok(got) => failures.push(format!(
                "{format:?} {:?}: accepted, got {got:?}",
                String::from_utf8_lossy(body)
            )),
            Err(err) if err.line != *line || !err.message.contains(fragment) => {
                failures.push(format!(
                    "{format:?} {:?}: got `{err}`, want line {line} containing {fragment:?}",
                    String::from_utf8_lossy(body)
                ))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad inputs misjudged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Valid bodies covering every grammar path, used by the no-panic sweep below.
const VALID: &[(Format, &str)] = &[
    (
        Format::PrometheusText,
        "# HELP a Some \\\\ help\\n.\n# TYPE a counter\na{x=\"1\",y=\"q\\\"\\\\\\n\",} 1.5e3 123\n\
         # comment\n\n\tb {z=\"é\"} -Inf\nc NaN 9\n",
    ),
    // Lines the fast path splits from their end: blanks and digits inside label
    // values, timestamps, tabs and trailing blanks.
    (
        Format::PrometheusText,
        "d{v=\"x 5\"} 2 7\ne{w=\"1 2\"}\t3\t\ne 4  \nf {u=\"9 \",} 10\t 11 \n",
    ),
    (
        Format::OpenMetrics,
        "# HELP a_seconds Some \\\" help\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\n\
         a_seconds_total{x=\"1\",y=\"\\\"\"} 1.5e3 123.456 # {t=\"é\"} 0.5 1.25\n\
         a_seconds_created 1.7e9\nb{} +Inf\n# EOF\n",
    ),
];

#[test]
fn truncations_and_byte_flips_never_panic() {
    let replacements = [
        b'\0', b'\n', b' ', b'\t', b'"', b'\\', b'{', b'}', b',', b'=', b'#', 0xff, 0xc3, b'e',
    ];
    for (format, body) in VALID {
        let body = body.as_bytes();
        parse(body, *format).expect("the valid body itself must parse");
        for end in 0..=body.len() {
            let _ = parse(&body[..end], *format);
        }
        for position in 0..body.len() {
            for replacement in replacements {
                let mut mutated = body.to_vec();
                mutated[position] = replacement;
                let _ = parse(&mutated, *format);
                mutated.remove(position);
                let _ = parse(&mutated, *format);
            }
        }
    }
}

#[test]
fn many_labels_use_the_sorting_duplicate_check() {
    let mut line = String::from("a{");
    for i in 0..40 {
        line.push_str(&format!("l{i}=\"v\","));
    }
    let ok = format!("{line}}} 1\n");
    assert_eq!(text(&ok).samples[0].labels.len(), 40);
    let bad = format!("{line}l7=\"again\"}} 1\n");
    let err = parse(bad.as_bytes(), Format::PrometheusText).unwrap_err();
    assert!(err.message.contains("\"l7\""), "{err}");
}

// ---- the series-text fast path -------------------------------------------------

/// Like the scrape cache: remembers the series texts it was given with labels and
/// takes those by text from then on.
#[derive(Default)]
struct Remembering {
    seen: std::collections::HashSet<Vec<u8>>,
    /// (series text, value bits, timestamp) of every sample, in order.
    got: Vec<(Vec<u8>, u64, Option<i64>)>,
    /// Samples whose labels were read.
    read: usize,
}

impl SampleSink for Remembering {
    const KNOWS_SERIES: bool = true;

    fn known(&mut self, series: &[u8], value: f64, timestamp_ms: Option<i64>) -> bool {
        let known = self.seen.contains(series);
        if known {
            self.got
                .push((series.to_vec(), value.to_bits(), timestamp_ms));
        }
        known
    }

    fn sample(&mut self, sample: SampleRef<'_>) {
        self.read += 1;
        self.seen.insert(sample.series.to_vec());
        self.got.push((
            sample.series.to_vec(),
            sample.value.to_bits(),
            sample.timestamp_ms,
        ));
    }
}

/// The outcome and samples of `parse_each`, the reference for the fast path.
type Outcome = (
    Result<Vec<MetricMetadata>, ParseError>,
    Vec<(Vec<u8>, u64, Option<i64>)>,
);

fn reference(body: &[u8], format: Format) -> Outcome {
    let mut got = Vec::new();
    let result = parse_each(body, format, |s| {
        got.push((s.series.to_vec(), s.value.to_bits(), s.timestamp_ms))
    });
    (result, got)
}

#[test]
fn series_text_is_the_name_and_label_block_as_exposed() {
    let body = b"a{x=\"}\\\"\"} 1\n  b {y=\"2\"}\t2\nc 3 9\n";
    let got: Vec<Vec<u8>> = reference(body, Format::PrometheusText)
        .1
        .into_iter()
        .map(|(series, _, _)| series)
        .collect();
    assert_eq!(
        got,
        [
            b"a{x=\"}\\\"\"}".to_vec(),
            b"b {y=\"2\"}".to_vec(),
            b"c".to_vec()
        ]
    );
}

#[test]
fn known_series_are_taken_by_text_with_the_same_outcome() {
    let replacements = [b'\n', b' ', b'"', b'\\', b'{', b'}', b',', b'=', 0xff, b'1'];
    for (format, body) in VALID {
        let body = body.as_bytes();
        let mut primed = Remembering::default();
        parse_with(body, *format, &mut primed).expect("the valid body parses");
        let first_read = primed.read;
        primed.got.clear();
        // Again: every label block is taken by its text.
        let again = parse_with(body, *format, &mut primed);
        assert_eq!((again, primed.got.clone()), reference(body, *format));
        assert_eq!(primed.read, first_read, "labels read again");
        // Changed bodies: known texts or not, the outcome is parse_each's.
        let mut bodies = Vec::new();
        for end in 0..body.len() {
            bodies.push(body[..end].to_vec());
        }
        for position in 0..body.len() {
            for replacement in replacements {
                let mut mutated = body.to_vec();
                mutated[position] = replacement;
                bodies.push(mutated);
            }
        }
        for mutated in bodies {
            primed.got.clear();
            let mut sink = Remembering {
                seen: primed.seen.clone(),
                ..Remembering::default()
            };
            let outcome = (parse_with(&mutated, *format, &mut sink), sink.got);
            assert_eq!(
                outcome,
                reference(&mutated, *format),
                "{:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
    }
}

// ---- start (created) timestamps ------------------------------------------------

/// A sink that wants start timestamps, optionally through the series-text fast path:
/// `(name with labels, start)` per sample, the start 0 when none came after it.
#[derive(Default)]
struct Starting {
    fast: bool,
    seen: std::collections::HashSet<Vec<u8>>,
    got: Vec<(String, i64)>,
}

impl SampleSink for Starting {
    const KNOWS_SERIES: bool = true;

    fn known(&mut self, series: &[u8], _value: f64, _timestamp_ms: Option<i64>) -> bool {
        let known = self.fast && self.seen.contains(series);
        if known {
            self.got
                .push((String::from_utf8_lossy(series).into_owned(), 0));
        }
        known
    }

    fn sample(&mut self, sample: SampleRef<'_>) {
        self.seen.insert(sample.series.to_vec());
        self.got
            .push((String::from_utf8_lossy(sample.series).into_owned(), 0));
    }

    fn start_timestamps(&self) -> bool {
        true
    }

    fn start(&mut self, start_ms: i64) {
        self.got.last_mut().unwrap().1 = start_ms;
    }
}

/// Looking ahead for `_created` lines reads lines the parser has not checked yet:
/// no truncation or byte flip of the valid bodies makes it panic, and a body the
/// parser accepts or refuses is accepted or refused alike.
#[test]
fn start_lookups_never_panic() {
    let replacements = [b'\n', b' ', b'"', b'\\', b'{', b'}', b'#', 0xff, b'_'];
    for (format, body) in VALID {
        let body = body.as_bytes();
        let mut bodies: Vec<Vec<u8>> = (0..body.len()).map(|end| body[..end].to_vec()).collect();
        for position in 0..body.len() {
            for replacement in replacements {
                let mut mutated = body.to_vec();
                mutated[position] = replacement;
                bodies.push(mutated);
            }
        }
        for mutated in bodies {
            let mut sink = Starting::default();
            let outcome = parse_with(&mutated, *format, &mut sink).map(|_| ());
            assert_eq!(
                outcome,
                parse_each(&mutated, *format, |_| {}).map(|_| ()),
                "{:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
    }
}

fn starts(body: &[u8], format: Format) -> Vec<(String, i64)> {
    let mut sink = Starting::default();
    parse_with(body, format, &mut sink).unwrap();
    // Again, each series now taken by its text: the same starts.
    let first = std::mem::take(&mut sink.got);
    sink.fast = true;
    parse_with(body, format, &mut sink).unwrap();
    assert_eq!(sink.got, first, "through the fast path");
    first
}

/// Prometheus 3.x's `OpenMetricsParser` with `WithOMParserSTSeriesSkipped` (the
/// scrape loop's setting under `created-timestamp-zero-ingestion`;
/// model/textparse/openmetricsparse.go, `StartTimestamp`): the `_created` lines of
/// counters, summaries and histograms are not samples; each sample's start is the
/// first `_created` line after it up to the next metadata line, if of its series
/// (`le`, `quantile` aside); float seconds times 1000, truncated.
#[test]
fn openmetrics_created_lines_are_starts_of_their_series() {
    let body = b"# TYPE a counter\n\
a_total{x=\"1\"} 5\n\
a_created{x=\"1\"} 1000.0015\n\
a_total{x=\"2\"} 6\n\
a_total{x=\"3\"} 7\n\
a_created{x=\"3\"} 1001\n\
a_created{x=\"2\"} 1002\n\
# TYPE h histogram\n\
h_bucket{le=\"1\",y=\"a\"} 1\n\
h_bucket{le=\"+Inf\",y=\"a\"} 2\n\
h_count{y=\"a\"} 2\n\
h_sum{y=\"a\"} 3\n\
h_created{y=\"a\"} 1003\n\
# TYPE s summary\n\
s{quantile=\"0.5\"} 1\n\
s_count 1\n\
s_sum 1\n\
s_created 1004\n\
# TYPE g gauge\n\
g_created 1005\n\
# TYPE late counter\n\
late_created 1006\n\
late_total 1\n\
# TYPE gone counter\n\
gone_total 1\n\
# HELP gone_created the next family's line comes after a metadata line\n\
gone_created 1007\n\
# EOF\n";
    assert_eq!(
        starts(body, Format::OpenMetrics),
        [
            ("a_total{x=\"1\"}".into(), 1_000_001),
            // The next `_created` line is x="3"'s: none (Prometheus reads no further).
            ("a_total{x=\"2\"}".into(), 0),
            ("a_total{x=\"3\"}".into(), 1_001_000),
            ("h_bucket{le=\"1\",y=\"a\"}".into(), 1_003_000),
            ("h_bucket{le=\"+Inf\",y=\"a\"}".into(), 1_003_000),
            ("h_count{y=\"a\"}".into(), 1_003_000),
            ("h_sum{y=\"a\"}".into(), 1_003_000),
            ("s{quantile=\"0.5\"}".into(), 1_004_000),
            ("s_count".into(), 1_004_000),
            ("s_sum".into(), 1_004_000),
            // A gauge's `_created` is a series like any other.
            ("g_created".into(), 0),
            // A `_created` line before its sample is not looked back for.
            ("late_total".into(), 0),
            ("gone_total".into(), 0),
        ]
    );
    // Without a sink that wants starts, `_created` lines are samples (Prometheus 2.42,
    // and 3.x without the feature).
    let names: Vec<String> = parse(body, Format::OpenMetrics)
        .unwrap()
        .samples
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n.ends_with("_created"))
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
}

/// Prometheus 3.x's `ProtobufParser.StartTimestamp`: a counter's, summary's or
/// histogram's `created_timestamp` (seconds and nanoseconds, to milliseconds) for
/// every sample of the metric; none for gauges.
#[test]
fn protobuf_created_timestamps_are_starts_of_every_sample_of_the_metric() {
    use super::metrics_proto::{self as pb, Metric, MetricFamily, Timestamp};
    use prost::Message;
    let created = Some(Timestamp {
        seconds: 1000,
        nanos: 2_500_000,
    });
    let family = |name: &str, kind: pb::MetricType, metric: Metric| MetricFamily {
        name: Some(name.into()),
        help: None,
        r#type: Some(kind as i32),
        metric: vec![metric],
        unit: None,
    };
    let families = [
        family(
            "c_total",
            pb::MetricType::Counter,
            Metric {
                counter: Some(pb::Counter {
                    value: Some(1.0),
                    exemplar: None,
                    created_timestamp: created,
                }),
                ..Default::default()
            },
        ),
        family(
            "s",
            pb::MetricType::Summary,
            Metric {
                summary: Some(pb::Summary {
                    sample_count: Some(1),
                    sample_sum: Some(1.0),
                    quantile: vec![],
                    created_timestamp: created,
                }),
                ..Default::default()
            },
        ),
        family(
            "h",
            pb::MetricType::Histogram,
            Metric {
                histogram: Some(pb::Histogram {
                    sample_count: Some(1),
                    created_timestamp: created,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        family(
            "g",
            pb::MetricType::Gauge,
            Metric {
                gauge: Some(pb::Gauge { value: Some(1.0) }),
                ..Default::default()
            },
        ),
    ];
    let mut body = Vec::new();
    for f in &families {
        f.encode_length_delimited(&mut body).unwrap();
    }
    let got: Vec<(String, i64)> = starts(&body, Format::Protobuf)
        .into_iter()
        .map(|(series, start)| (series.split('\u{fffd}').next().unwrap().to_string(), start))
        .collect();
    assert_eq!(
        got,
        [
            ("c_total".into(), 1_000_002),
            ("s_count".into(), 1_000_002),
            ("s_sum".into(), 1_000_002),
            ("h_count".into(), 1_000_002),
            ("h_sum".into(), 1_000_002),
            ("h_bucket".into(), 1_000_002),
            ("g".into(), 0),
        ]
    );
}
