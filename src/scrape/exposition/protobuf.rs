//! The protobuf exposition format
//! (`application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`):
//! a sequence of `MetricFamily` messages ([`super::metrics_proto`]), each preceded by
//! its length as a varint.
//!
//! Samples come out as Prometheus's `textparse.ProtobufParser` emulates the text
//! format (Prometheus 2.42 and later): counters, gauges and untyped metrics are one
//! sample each; a summary is `_count`, `_sum`, then one sample per quantile with a
//! `quantile` label; a histogram is `_count`, `_sum`, then one `_bucket` sample per
//! classic bucket with an `le` label, plus a `+Inf` bucket (valued at the count)
//! when the last bucket is not already `+Inf`. `le` and `quantile` values are
//! formatted as Prometheus formats them (`formatOpenMetricsFloat`: Go's shortest
//! `%g`, with `.0` appended to integers, so `le="1.0"`, `le="+Inf"`). Float counts
//! (`*_count_float`) take precedence when non-zero, as in Prometheus since float
//! histograms came (2.42 predates them and reads them as 0).
//!
//! A native histogram (spans, zero bucket) is read as Prometheus reads it when
//! native histograms are not being ingested (the sink's
//! [`SampleSink::native_histograms`] is off): as its classic buckets only (its
//! `_count`, `_sum`, the buckets it also exposes, and `+Inf`), the native buckets
//! dropped. When they are ingested, it is one [`SampleSink::histogram`] of the
//! series named without suffix (see `native_histogram`), followed by its classic
//! series only when the sink keeps them (`always_scrape_classic_histograms`); a
//! histogram without a native part is its classic series either way. Exemplars (a
//! counter's, each classic bucket's; for a native histogram its first bucket's) go
//! to a sink that wants them after their sample, and so do created timestamps
//! (`ProtobufParser.StartTimestamp`: a counter's, summary's or histogram's, gauge
//! histograms' too, for each sample of the metric).
//!
//! A metric's `timestamp_ms` of 0 means "no timestamp" (Prometheus's convention,
//! proto2 aside). Values are passed on with their bits as sent: Prometheus does not
//! normalise NaNs read from protobuf, so a target sending the staleness marker's
//! bits sends a staleness marker. Families without metrics are skipped entirely
//! (no metadata either); the others record their HELP (possibly empty), their type
//! (`untyped` as the text format's `untyped`) and their unit when one is given.
//!
//! Errors follow Prometheus's wording where it has one (`invalid metric name: x`,
//! `invalid label name: x`, `unknown metric type for metric "x": 9`) and name the
//! 1-based index of the offending message; a truncated or undecodable message is an
//! error as well. Label pairs are checked the way the text format checks them:
//! duplicate names (including the `le`/`quantile` label added here) are an error.
//!
//! Each sample's series text (for [`SampleSink::known`]) is Prometheus's
//! `metricBytes`: the name, then `0xff name 0xff value` for each label pair in
//! order, the `le`/`quantile` pair last. It is built from labels already checked,
//! so a sink may trust any series text it was given before in this format.

use std::borrow::Cow;

use prost::Message;

use super::error::ErrorKind;
use super::lex::{self, Cursor, LabelRef};
use super::metrics_proto::{self as pb, MetricFamily};
use super::{
    ExemplarRef, HistogramRef, MetadataTable, MetricType, NativeHistograms, ParseError, SampleRef,
    SampleSink,
};
use dataflows::histogram::{counts_from_deltas, CounterResetHint, FloatHistogram, Span};

/// Prometheus's `model.SeparatorByte`.
const SEPARATOR: u8 = 0xff;

pub(super) fn parse<S: SampleSink>(
    body: &[u8],
    metadata: &mut MetadataTable,
    sink: &mut S,
) -> Result<(), ParseError> {
    let mut rest = body;
    let mut index = 0usize;
    let mut family = MetricFamily::default();
    let mut scratch = Scratch::default();
    while !rest.is_empty() {
        index += 1;
        let fail = |kind| ParseError::in_family(index, kind);
        rest = read_delimited(rest, &mut family).map_err(fail)?;
        parse_family(&family, metadata, &mut scratch, sink).map_err(fail)?;
    }
    Ok(())
}

/// Decodes the length-delimited message at the start of `bytes` into `family`
/// and returns what follows it.
fn read_delimited<'a>(bytes: &'a [u8], family: &mut MetricFamily) -> Result<&'a [u8], ErrorKind> {
    let mut cursor = bytes;
    let length =
        prost::decode_length_delimiter(&mut cursor).map_err(|_| ErrorKind::InvalidVarint)?;
    // Prometheus reads the length as at most a 32-bit varint.
    if bytes.len() - cursor.len() > 5 {
        return Err(ErrorKind::InvalidVarint);
    }
    if length > cursor.len() {
        return Err(ErrorKind::ShortBuffer {
            needed: length + (bytes.len() - cursor.len()),
            got: bytes.len(),
        });
    }
    let (message, rest) = cursor.split_at(length);
    family.clear();
    family.merge(message).map_err(ErrorKind::InvalidMessage)?;
    Ok(rest)
}

/// Buffers reused from sample to sample.
#[derive(Default)]
struct Scratch {
    series: Vec<u8>,
    name: String,
}

fn parse_family<S: SampleSink>(
    family: &MetricFamily,
    metadata: &mut MetadataTable,
    scratch: &mut Scratch,
    sink: &mut S,
) -> Result<(), ErrorKind> {
    if family.metric.is_empty() {
        return Ok(());
    }
    let name = family.name.as_deref().unwrap_or_default();
    if !whole(name, Cursor::metric_name) {
        return Err(ErrorKind::InvalidMetricName(name.to_string()));
    }
    let raw_type = family.r#type.unwrap_or_default();
    let kind = match pb::MetricType::try_from(raw_type) {
        Ok(pb::MetricType::Counter) => MetricType::Counter,
        Ok(pb::MetricType::Gauge) => MetricType::Gauge,
        Ok(pb::MetricType::Summary) => MetricType::Summary,
        Ok(pb::MetricType::Untyped) => MetricType::Untyped,
        Ok(pb::MetricType::Histogram) => MetricType::Histogram,
        Ok(pb::MetricType::GaugeHistogram) => MetricType::GaugeHistogram,
        Err(_) => {
            return Err(ErrorKind::UnknownMetricType {
                name: name.to_string(),
                raw: raw_type,
            })
        }
    };
    metadata.set_help(
        name,
        Cow::Borrowed(family.help.as_deref().unwrap_or_default()),
    );
    metadata.set_kind(name, kind);
    if let Some(unit) = family.unit.as_deref().filter(|u| !u.is_empty()) {
        metadata.set_unit(name, unit);
    }
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for metric in &family.metric {
        labels.clear();
        for pair in &metric.label {
            let label = pair.name.as_deref().unwrap_or_default();
            if !whole(label, Cursor::label_name) {
                return Err(ErrorKind::InvalidLabelName(label.to_string()));
            }
            labels.push((label, pair.value.as_deref().unwrap_or_default()));
        }
        let created = match kind {
            MetricType::Counter => metric.counter.as_ref().map(|c| &c.created_timestamp),
            MetricType::Summary => metric.summary.as_ref().map(|s| &s.created_timestamp),
            MetricType::Histogram | MetricType::GaugeHistogram => {
                metric.histogram.as_ref().map(|h| &h.created_timestamp)
            }
            _ => None,
        };
        let start_ms = match created.and_then(Option::as_ref) {
            Some(ts) if sink.start_timestamps() => {
                ts.seconds.saturating_mul(1000) + i64::from(ts.nanos / 1_000_000)
            }
            _ => 0,
        };
        let mut out = Emitter {
            scratch: &mut *scratch,
            sink: &mut *sink,
            labels: &labels,
            timestamp_ms: metric.timestamp_ms.filter(|&ts| ts != 0),
            start_ms,
        };
        match kind {
            MetricType::Counter => {
                out.emit(
                    name,
                    "",
                    None,
                    value(metric.counter.as_ref().map(|c| c.value)),
                )?;
                out.exemplar(metric.counter.as_ref().and_then(|c| c.exemplar.as_ref()));
            }
            MetricType::Gauge => out.emit(
                name,
                "",
                None,
                value(metric.gauge.as_ref().map(|g| g.value)),
            )?,
            MetricType::Untyped => out.emit(
                name,
                "",
                None,
                value(metric.untyped.as_ref().map(|u| u.value)),
            )?,
            MetricType::Summary => {
                let empty = pb::Summary::default();
                let summary = metric.summary.as_ref().unwrap_or(&empty);
                out.emit(
                    name,
                    "_count",
                    None,
                    summary.sample_count.unwrap_or_default() as f64,
                )?;
                out.emit(name, "_sum", None, summary.sample_sum.unwrap_or_default())?;
                for quantile in &summary.quantile {
                    let q = format_open_metrics_float(quantile.quantile.unwrap_or_default());
                    let label = Some(("quantile", q.as_str()));
                    out.emit(name, "", label, quantile.value.unwrap_or_default())?;
                }
            }
            _ => {
                let empty = pb::Histogram::default();
                let histogram = metric.histogram.as_ref().unwrap_or(&empty);
                if let NativeHistograms::On { keep_classic } = out.sink.native_histograms() {
                    if histogram.is_native() {
                        let gauge = kind == MetricType::GaugeHistogram;
                        let native = native_histogram(name, histogram, gauge)?;
                        out.emit_histogram(name, native)?;
                        // Prometheus 2.42 takes the first bucket's exemplar there is.
                        out.exemplar(histogram.bucket.iter().find_map(|b| b.exemplar.as_ref()));
                        if !keep_classic {
                            continue;
                        }
                    }
                }
                let count = float_or_int(histogram.sample_count_float, histogram.sample_count);
                out.emit(name, "_count", None, count)?;
                out.emit(name, "_sum", None, histogram.sample_sum.unwrap_or_default())?;
                let mut saw_inf = false;
                for bucket in &histogram.bucket {
                    let upper = bucket.upper_bound.unwrap_or_default();
                    let le = format_open_metrics_float(upper);
                    let cumulative =
                        float_or_int(bucket.cumulative_count_float, bucket.cumulative_count);
                    out.emit(name, "_bucket", Some(("le", le.as_str())), cumulative)?;
                    out.exemplar(bucket.exemplar.as_ref());
                    if upper == f64::INFINITY {
                        // Prometheus stops at the +Inf bucket.
                        saw_inf = true;
                        break;
                    }
                }
                if !saw_inf {
                    out.emit(name, "_bucket", Some(("le", "+Inf")), count)?;
                }
            }
        }
    }
    Ok(())
}

/// Whether `scan` reads all of `name` as one name.
fn whole<'a>(name: &'a str, scan: fn(&mut Cursor<'a>) -> Option<&'a str>) -> bool {
    let mut cursor = Cursor::new(name.as_bytes());
    scan(&mut cursor).is_some() && cursor.at_end()
}

/// The value of a counter, gauge or untyped metric: 0 when the field is missing.
fn value(field: Option<Option<f64>>) -> f64 {
    field.flatten().unwrap_or_default()
}

/// Prometheus's choice between a float count and an integer one: the float one
/// unless it is 0.
fn float_or_int(float: Option<f64>, int: Option<u64>) -> f64 {
    match float.unwrap_or_default() {
        0.0 => int.unwrap_or_default() as f64,
        float => float,
    }
}

/// Hands the samples of one metric to the sink.
struct Emitter<'s, 'l, 'a, S> {
    scratch: &'s mut Scratch,
    sink: &'s mut S,
    labels: &'l [(&'a str, &'a str)],
    timestamp_ms: Option<i64>,
    /// The metric's created timestamp (ms), 0 when none or not wanted.
    start_ms: i64,
}

impl<S: SampleSink> Emitter<'_, '_, '_, S> {
    /// One sample named `family` + `suffix`, with the metric's labels and `extra`
    /// (`le` or `quantile`) after them.
    fn emit(
        &mut self,
        family: &str,
        suffix: &str,
        extra: Option<(&str, &str)>,
        value: f64,
    ) -> Result<(), ErrorKind> {
        let Scratch { series, name } = &mut *self.scratch;
        name.clear();
        name.push_str(family);
        name.push_str(suffix);
        series.clear();
        series.extend_from_slice(name.as_bytes());
        for (label, value) in self.labels.iter().chain(extra.as_ref()) {
            series.push(SEPARATOR);
            series.extend_from_slice(label.as_bytes());
            series.push(SEPARATOR);
            series.extend_from_slice(value.as_bytes());
        }
        if S::KNOWS_SERIES && self.sink.known(series, value, self.timestamp_ms) {
            self.start();
            return Ok(());
        }
        let labels: Vec<LabelRef<'_>> = self
            .labels
            .iter()
            .chain(extra.as_ref())
            .map(|&(label, value)| (label, Cow::Borrowed(value)))
            .collect();
        if let Some(duplicate) = lex::duplicate_label(&labels) {
            return Err(ErrorKind::DuplicateLabel {
                label: duplicate.to_string(),
                metric: name.to_string(),
            });
        }
        self.sink.sample(SampleRef {
            series,
            name,
            labels: &labels,
            value,
            timestamp_ms: self.timestamp_ms,
        });
        self.start();
        Ok(())
    }

    /// The metric's created timestamp, after each of its samples.
    fn start(&mut self) {
        if self.start_ms != 0 {
            self.sink.start(self.start_ms);
        }
    }
}

impl<S: SampleSink> Emitter<'_, '_, '_, S> {
    /// The exemplar of the sample emitted last, to a sink that wants exemplars, its
    /// timestamp in milliseconds when it has one.
    fn exemplar(&mut self, exemplar: Option<&pb::Exemplar>) {
        let Some(exemplar) = exemplar.filter(|_| self.sink.exemplars()) else {
            return;
        };
        let labels: Vec<LabelRef<'_>> = exemplar
            .label
            .iter()
            .map(|pair| {
                let value = pair.value.as_deref().unwrap_or_default();
                (
                    pair.name.as_deref().unwrap_or_default(),
                    Cow::Borrowed(value),
                )
            })
            .collect();
        let timestamp_ms = exemplar
            .timestamp
            .as_ref()
            .map(|ts| ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000));
        self.sink.exemplar(ExemplarRef {
            labels: &labels,
            value: exemplar.value.unwrap_or_default(),
            timestamp_ms,
        });
    }

    /// One native histogram sample named `family`, with the metric's labels.
    fn emit_histogram(&mut self, family: &str, histogram: FloatHistogram) -> Result<(), ErrorKind> {
        let Scratch { series, .. } = &mut *self.scratch;
        series.clear();
        series.extend_from_slice(family.as_bytes());
        for (label, value) in self.labels {
            series.push(SEPARATOR);
            series.extend_from_slice(label.as_bytes());
            series.push(SEPARATOR);
            series.extend_from_slice(value.as_bytes());
        }
        let labels: Vec<LabelRef<'_>> = self
            .labels
            .iter()
            .map(|&(label, value)| (label, Cow::Borrowed(value)))
            .collect();
        if let Some(duplicate) = lex::duplicate_label(&labels) {
            return Err(ErrorKind::DuplicateLabel {
                label: duplicate.to_string(),
                metric: family.to_string(),
            });
        }
        self.sink.histogram(HistogramRef {
            series,
            name: family,
            labels: &labels,
            histogram,
            timestamp_ms: self.timestamp_ms,
        });
        self.start();
        Ok(())
    }
}

/// The native part of `h` as Prometheus's `ProtobufParser.Histogram` reads it: a float
/// histogram when `sample_count_float` or `zero_count_float` is positive, else an
/// integer one whose bucket deltas are summed into absolute counts; the counter-reset
/// hint is `Gauge` for a gauge histogram and `Unknown` otherwise. Checked as
/// Prometheus's head checks it at append (`Validate`: spans against bucket counts,
/// offsets, no negative count, the count rules; [`FloatHistogram::validate`]), which
/// fails the scrape here.
fn native_histogram(
    metric: &str,
    h: &pb::Histogram,
    gauge: bool,
) -> Result<FloatHistogram, ErrorKind> {
    let schema = h.schema.unwrap_or_default();
    if !(-4..=8).contains(&schema) {
        return Err(ErrorKind::HistogramSchema {
            metric: metric.to_string(),
            schema,
        });
    }
    let spans = |spans: &[pb::BucketSpan]| -> Vec<Span> {
        spans
            .iter()
            .map(|s| Span {
                offset: s.offset.unwrap_or_default(),
                length: s.length.unwrap_or_default(),
            })
            .collect()
    };
    let is_float = h.sample_count_float.unwrap_or_default() > 0.0
        || h.zero_count_float.unwrap_or_default() > 0.0;
    let (count, zero_count, positive, negative) = if is_float {
        (
            h.sample_count_float.unwrap_or_default(),
            h.zero_count_float.unwrap_or_default(),
            h.positive_count.clone(),
            h.negative_count.clone(),
        )
    } else {
        (
            h.sample_count.unwrap_or_default() as f64,
            h.zero_count.unwrap_or_default() as f64,
            counts_from_deltas(&h.positive_delta),
            counts_from_deltas(&h.negative_delta),
        )
    };
    let out = FloatHistogram {
        counter_reset_hint: if gauge {
            CounterResetHint::Gauge
        } else {
            CounterResetHint::Unknown
        },
        schema,
        zero_threshold: h.zero_threshold.unwrap_or_default(),
        zero_count,
        count,
        sum: h.sample_sum.unwrap_or_default(),
        positive_spans: spans(&h.positive_span),
        negative_spans: spans(&h.negative_span),
        positive_buckets: positive,
        negative_buckets: negative,
        custom_values: Vec::new(),
    };
    out.validate(!is_float)
        .map_err(|error| ErrorKind::InvalidHistogram {
            metric: metric.to_string(),
            error,
        })?;
    Ok(out)
}

/// Prometheus's `formatOpenMetricsFloat`: Go's shortest `%g` (`fmt.Sprint`), with
/// `.0` appended when that has neither a `.` nor an exponent.
pub(super) fn format_open_metrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f == 0.0 {
        return "0.0".into();
    }
    let mut s = dataflows::go_float::format_g(f);
    if f.is_finite() && !s.contains(['.', 'e']) {
        s.push_str(".0");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Exposition, Format, MetricMetadata, MetricType};
    use super::*;
    use pb::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, Quantile, Summary};

    fn label(name: &str, value: &str) -> LabelPair {
        LabelPair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    fn family(name: &str, kind: pb::MetricType, help: &str, metric: Vec<Metric>) -> MetricFamily {
        MetricFamily {
            name: Some(name.into()),
            help: Some(help.into()),
            r#type: Some(kind as i32),
            metric,
            unit: None,
        }
    }

    fn body(families: &[MetricFamily]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    fn protobuf(families: &[MetricFamily]) -> Exposition {
        parse(&body(families), Format::Protobuf).unwrap()
    }

    fn text(body: &str) -> Exposition {
        parse(body.as_bytes(), Format::PrometheusText).unwrap()
    }

    fn bucket(upper: f64, count: u64) -> Bucket {
        Bucket {
            cumulative_count: Some(count),
            upper_bound: Some(upper),
            ..Default::default()
        }
    }

    fn families() -> Vec<MetricFamily> {
        vec![
            family(
                "requests_total",
                pb::MetricType::Counter,
                "Requests.",
                vec![Metric {
                    label: vec![label("code", "200"), label("path", "/a\"b\\c\nd")],
                    counter: Some(Counter {
                        value: Some(12.5),
                        exemplar: Some(pb::Exemplar {
                            label: vec![label("trace_id", "abc")],
                            value: Some(1.0),
                            timestamp: None,
                        }),
                        created_timestamp: None,
                    }),
                    timestamp_ms: Some(1_700_000_000_123),
                    ..Default::default()
                }],
            ),
            family(
                "temperature",
                pb::MetricType::Gauge,
                "",
                vec![
                    Metric {
                        gauge: Some(Gauge { value: Some(-3.0) }),
                        ..Default::default()
                    },
                    Metric {
                        label: vec![label("room", "b")],
                        gauge: Some(Gauge {
                            value: Some(f64::INFINITY),
                        }),
                        ..Default::default()
                    },
                ],
            ),
            family(
                "rpc_seconds",
                pb::MetricType::Summary,
                "RPC latency.",
                vec![Metric {
                    summary: Some(Summary {
                        sample_count: Some(7),
                        sample_sum: Some(0.25),
                        quantile: vec![
                            Quantile {
                                quantile: Some(0.5),
                                value: Some(0.01),
                            },
                            Quantile {
                                quantile: Some(1.0),
                                value: Some(0.2),
                            },
                        ],
                        created_timestamp: None,
                    }),
                    ..Default::default()
                }],
            ),
            family(
                "size_bytes",
                pb::MetricType::Histogram,
                "Sizes.",
                vec![Metric {
                    label: vec![label("x", "y")],
                    histogram: Some(Histogram {
                        sample_count: Some(10),
                        sample_sum: Some(1234.5),
                        bucket: vec![bucket(0.1, 1), bucket(1.0, 2), bucket(1e6, 9)],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            ),
            family("empty", pb::MetricType::Gauge, "skipped", vec![]),
        ]
    }

    #[test]
    fn samples_are_those_of_the_equivalent_text_body() {
        let expected = text(
            "requests_total{code=\"200\",path=\"/a\\\"b\\\\c\\nd\"} 12.5 1700000000123\n\
             temperature -3\n\
             temperature{room=\"b\"} +Inf\n\
             rpc_seconds_count 7\n\
             rpc_seconds_sum 0.25\n\
             rpc_seconds{quantile=\"0.5\"} 0.01\n\
             rpc_seconds{quantile=\"1.0\"} 0.2\n\
             size_bytes_count{x=\"y\"} 10\n\
             size_bytes_sum{x=\"y\"} 1234.5\n\
             size_bytes_bucket{x=\"y\",le=\"0.1\"} 1\n\
             size_bytes_bucket{x=\"y\",le=\"1.0\"} 2\n\
             size_bytes_bucket{x=\"y\",le=\"1e+06\"} 9\n\
             size_bytes_bucket{x=\"y\",le=\"+Inf\"} 10\n",
        );
        let got = protobuf(&families());
        assert_eq!(got.samples, expected.samples);
        let meta = |family: &str, kind, help: &str| MetricMetadata {
            family: family.into(),
            kind,
            help: help.into(),
            unit: String::new(),
        };
        assert_eq!(
            got.metadata,
            vec![
                meta("requests_total", MetricType::Counter, "Requests."),
                meta("temperature", MetricType::Gauge, ""),
                meta("rpc_seconds", MetricType::Summary, "RPC latency."),
                meta("size_bytes", MetricType::Histogram, "Sizes."),
            ]
        );
    }

    #[test]
    fn counter_and_bucket_exemplars_go_to_a_sink_that_wants_them() {
        use super::super::parse_with;
        use super::super::tests::{pairs, WithExemplars};
        let exemplar = |trace: &str, value: f64, ts: Option<(i64, i32)>| pb::Exemplar {
            label: vec![label("trace_id", trace)],
            value: Some(value),
            timestamp: ts.map(|(seconds, nanos)| pb::Timestamp { seconds, nanos }),
        };
        let families = [
            family(
                "requests_total",
                pb::MetricType::Counter,
                "",
                vec![Metric {
                    counter: Some(Counter {
                        value: Some(3.0),
                        exemplar: Some(exemplar("c", 1.0, Some((1_700_000_000, 123_456_789)))),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            ),
            family(
                "size_bytes",
                pb::MetricType::Histogram,
                "",
                vec![Metric {
                    histogram: Some(Histogram {
                        sample_count: Some(2),
                        sample_sum: Some(3.0),
                        bucket: vec![
                            Bucket {
                                exemplar: Some(exemplar("b", 0.5, None)),
                                ..bucket(1.0, 1)
                            },
                            bucket(f64::INFINITY, 2),
                        ],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            ),
        ];
        let mut sink = WithExemplars::default();
        parse_with(&body(&families), Format::Protobuf, &mut sink).unwrap();
        let with: Vec<(&str, &[_])> = sink
            .0
            .iter()
            .filter(|(_, e)| !e.is_empty())
            .map(|(name, e)| (name.as_str(), e.as_slice()))
            .collect();
        assert_eq!(
            with,
            vec![
                (
                    "requests_total",
                    &[(pairs(&[("trace_id", "c")]), 1.0, Some(1_700_000_000_123))][..]
                ),
                (
                    "size_bytes_bucket",
                    &[(pairs(&[("trace_id", "b")]), 0.5, None)][..]
                ),
            ]
        );
    }

    #[test]
    fn native_histograms_keep_their_classic_buckets_only() {
        let native = Histogram {
            sample_count: Some(5),
            sample_sum: Some(2.5),
            schema: Some(3),
            zero_threshold: Some(1e-128),
            zero_count: Some(1),
            positive_span: vec![pb::BucketSpan {
                offset: Some(0),
                length: Some(2),
            }],
            positive_delta: vec![2, 0],
            ..Default::default()
        };
        let with_classic = Histogram {
            bucket: vec![bucket(0.5, 3), bucket(f64::INFINITY, 5)],
            ..native.clone()
        };
        let got = protobuf(&[family(
            "latency",
            pb::MetricType::Histogram,
            "",
            vec![
                Metric {
                    label: vec![label("only", "native")],
                    histogram: Some(native),
                    ..Default::default()
                },
                Metric {
                    histogram: Some(with_classic),
                    ..Default::default()
                },
            ],
        )]);
        let expected = text(
            "latency_count{only=\"native\"} 5\n\
             latency_sum{only=\"native\"} 2.5\n\
             latency_bucket{only=\"native\",le=\"+Inf\"} 5\n\
             latency_count 5\n\
             latency_sum 2.5\n\
             latency_bucket{le=\"0.5\"} 3\n\
             latency_bucket{le=\"+Inf\"} 5\n",
        );
        assert_eq!(got.samples, expected.samples);
    }

    /// A sink that ingests native histograms, collecting floats and histograms.
    struct Native {
        keep_classic: bool,
        floats: Vec<String>,
        histograms: Vec<(String, FloatHistogram, Option<i64>)>,
    }

    impl SampleSink for Native {
        fn sample(&mut self, sample: SampleRef<'_>) {
            self.floats.push(format!(
                "{}{:?} {}",
                sample.name, sample.labels, sample.value
            ));
        }

        fn native_histograms(&self) -> NativeHistograms {
            NativeHistograms::On {
                keep_classic: self.keep_classic,
            }
        }

        fn histogram(&mut self, h: HistogramRef<'_>) {
            let labels: Vec<String> = h.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
            self.histograms.push((
                format!("{}{{{}}}", h.name, labels.join(",")),
                h.histogram,
                h.timestamp_ms,
            ));
        }
    }

    fn native_sink(body: &[u8], keep_classic: bool) -> Result<Native, ParseError> {
        let mut sink = Native {
            keep_classic,
            floats: Vec::new(),
            histograms: Vec::new(),
        };
        super::super::parse_with(body, Format::Protobuf, &mut sink)?;
        Ok(sink)
    }

    #[test]
    fn native_histograms_become_one_histogram_sample_when_ingested() {
        let integer = Histogram {
            sample_count: Some(7),
            sample_sum: Some(2.5),
            schema: Some(3),
            zero_threshold: Some(1e-128),
            zero_count: Some(1),
            positive_span: vec![
                pb::BucketSpan {
                    offset: Some(-1),
                    length: Some(2),
                },
                pb::BucketSpan {
                    offset: Some(3),
                    length: Some(1),
                },
            ],
            positive_delta: vec![2, 0, -1],
            negative_span: vec![pb::BucketSpan {
                offset: Some(2),
                length: Some(1),
            }],
            // 1 in the zero bucket, 5 positive, 1 negative: the count (Prometheus 3.x
            // refuses an integer histogram whose count is not its buckets' sum).
            negative_delta: vec![1],
            bucket: vec![bucket(0.5, 3), bucket(f64::INFINITY, 7)],
            ..Default::default()
        };
        let float = Histogram {
            sample_count_float: Some(2.5),
            sample_sum: Some(1.0),
            schema: Some(0),
            zero_count_float: Some(0.5),
            positive_span: vec![pb::BucketSpan {
                offset: Some(0),
                length: Some(1),
            }],
            positive_count: vec![2.0],
            ..Default::default()
        };
        let classic_only = Histogram {
            sample_count: Some(3),
            sample_sum: Some(1.5),
            bucket: vec![bucket(1.0, 3)],
            ..Default::default()
        };
        let families = [
            family(
                "latency",
                pb::MetricType::Histogram,
                "",
                vec![
                    Metric {
                        label: vec![label("kind", "int")],
                        histogram: Some(integer),
                        timestamp_ms: Some(1_000),
                        ..Default::default()
                    },
                    Metric {
                        label: vec![label("kind", "classic")],
                        histogram: Some(classic_only),
                        ..Default::default()
                    },
                ],
            ),
            family(
                "queue",
                pb::MetricType::GaugeHistogram,
                "",
                vec![Metric {
                    histogram: Some(float),
                    ..Default::default()
                }],
            ),
        ];
        let got = native_sink(&body(&families), false).unwrap();
        let want_int = FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: 1.0,
            count: 7.0,
            sum: 2.5,
            positive_spans: vec![
                Span {
                    offset: -1,
                    length: 2,
                },
                Span {
                    offset: 3,
                    length: 1,
                },
            ],
            negative_spans: vec![Span {
                offset: 2,
                length: 1,
            }],
            positive_buckets: vec![2.0, 2.0, 1.0],
            negative_buckets: vec![1.0],
            custom_values: vec![],
        };
        let want_float = FloatHistogram {
            counter_reset_hint: CounterResetHint::Gauge,
            schema: 0,
            zero_count: 0.5,
            count: 2.5,
            sum: 1.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![2.0],
            ..FloatHistogram::default()
        };
        assert_eq!(
            got.histograms,
            vec![
                ("latency{kind=int}".to_string(), want_int, Some(1_000)),
                ("queue{}".to_string(), want_float, None),
            ]
        );
        // The classic-only histogram stays classic; the native ones give no floats.
        assert_eq!(
            got.floats,
            vec![
                r#"latency_count[("kind", "classic")] 3"#,
                r#"latency_sum[("kind", "classic")] 1.5"#,
                r#"latency_bucket[("kind", "classic"), ("le", "1.0")] 3"#,
                r#"latency_bucket[("kind", "classic"), ("le", "+Inf")] 3"#,
            ]
        );
        // always_scrape_classic_histograms: the classic series too.
        let both = native_sink(&body(&families), true).unwrap();
        assert_eq!(both.histograms.len(), 2);
        assert_eq!(both.floats.len(), 4 + 4 + 3);
        assert_eq!(both.floats[0], r#"latency_count[("kind", "int")] 7"#);
    }

    #[test]
    fn bad_native_histograms_fail_the_scrape() {
        let bad = |h: Histogram| {
            let f = family(
                "x",
                pb::MetricType::Histogram,
                "",
                vec![Metric {
                    histogram: Some(h),
                    ..Default::default()
                }],
            );
            native_sink(&body(&[f]), false).err().unwrap().to_string()
        };
        let spans = vec![pb::BucketSpan {
            offset: Some(0),
            length: Some(2),
        }];
        assert_eq!(
            bad(Histogram {
                schema: Some(0),
                positive_span: spans.clone(),
                positive_delta: vec![1],
                ..Default::default()
            }),
            "metric family 1: histogram x: positive side: spans need 2 buckets, have 1 buckets: histogram spans specify different number of buckets than provided"
        );
        assert_eq!(
            bad(Histogram {
                schema: Some(0),
                positive_span: spans.clone(),
                positive_delta: vec![1, -2],
                ..Default::default()
            }),
            "metric family 1: histogram x: positive side: bucket number 2 has observation count of -1: histogram has a bucket whose observation count is negative"
        );
        // Prometheus 3.x's rule for integer histograms (2.42 only refused a count below
        // the buckets' sum).
        assert_eq!(
            bad(Histogram {
                schema: Some(0),
                sample_count: Some(5),
                sample_sum: Some(1.0),
                positive_span: spans,
                positive_delta: vec![1, 0],
                ..Default::default()
            }),
            "metric family 1: histogram x: 2 observations found in buckets, but the Count field is 5: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
        );
    }

    #[test]
    fn float_counts_win_when_set_and_zero_timestamps_are_absent() {
        let got = protobuf(&[family(
            "h",
            pb::MetricType::GaugeHistogram,
            "",
            vec![Metric {
                histogram: Some(Histogram {
                    sample_count: Some(3),
                    sample_count_float: Some(2.5),
                    bucket: vec![Bucket {
                        cumulative_count_float: Some(1.5),
                        upper_bound: Some(-1.0),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                timestamp_ms: Some(0),
                ..Default::default()
            }],
        )]);
        let expected =
            text("h_count 2.5\nh_sum 0\nh_bucket{le=\"-1.0\"} 1.5\nh_bucket{le=\"+Inf\"} 2.5\n");
        assert_eq!(got.samples, expected.samples);
        assert_eq!(got.metadata[0].kind, MetricType::GaugeHistogram);
    }

    #[test]
    fn stale_marker_bits_pass_through() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let got = protobuf(&[family(
            "g",
            pb::MetricType::Untyped,
            "",
            vec![Metric {
                untyped: Some(pb::Untyped { value: Some(stale) }),
                ..Default::default()
            }],
        )]);
        assert_eq!(got.samples[0].value.to_bits(), stale.to_bits());
        assert_eq!(got.metadata[0].kind, MetricType::Untyped);
    }

    #[test]
    fn le_and_quantile_follow_prometheus_formatting() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (100.0, "100.0"),
            (1e6, "1e+06"),
            (1e-5, "1e-05"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(format_open_metrics_float(f), want, "{f}");
        }
    }

    #[test]
    fn bad_bodies_are_rejected_with_prometheus_wording() {
        let counter = |name: &str, labels: Vec<LabelPair>| {
            family(
                name,
                pb::MetricType::Counter,
                "",
                vec![Metric {
                    label: labels,
                    counter: Some(Counter::default()),
                    ..Default::default()
                }],
            )
        };
        let error = |families: &[MetricFamily]| {
            parse(&body(families), Format::Protobuf)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(&[counter("ok", vec![]), counter("1bad", vec![])]),
            "metric family 2: invalid metric name: 1bad"
        );
        assert_eq!(
            error(&[counter("ok", vec![label("a-b", "")])]),
            "metric family 1: invalid label name: a-b"
        );
        assert_eq!(
            error(&[counter("ok", vec![label("a", "1"), label("a", "2")])]),
            "metric family 1: duplicate label name \"a\" in ok"
        );
        let mut unknown = counter("ok", vec![]);
        unknown.r#type = Some(9);
        assert_eq!(
            error(&[unknown]),
            "metric family 1: unknown metric type for metric \"ok\": 9"
        );
        let whole = body(&[counter("ok", vec![])]);
        let err = parse(&whole[..whole.len() - 1], Format::Protobuf).unwrap_err();
        assert!(err.to_string().contains("insufficient length"), "{err}");
        assert!(parse(&[0xff; 6], Format::Protobuf).is_err());
    }

    #[test]
    fn no_input_panics() {
        let whole = body(&families());
        for end in 0..whole.len() {
            let _ = parse(&whole[..end], Format::Protobuf);
        }
        for i in 0..whole.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bytes = whole.clone();
                bytes[i] ^= flip;
                let _ = parse(&bytes, Format::Protobuf);
            }
        }
    }
}
