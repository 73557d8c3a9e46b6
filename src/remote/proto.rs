//! The remote write 1.0 and remote read messages of Prometheus's `prompb` package
//! (`remote.proto`, `types.proto`), remote write 2.0's `io.prometheus.write.v2.Request`
//! (`prompb/io/prometheus/write/v2/types.proto`, in [`v2`]), declared with prost's
//! derive (no protoc at build time), and their framing: a protobuf message inside
//! Snappy's block format.
//!
//! Field numbers follow `prompb`. Native histograms ([`Histogram`], the same message in
//! 1.0 and 2.0) convert to and from promflow's [`FloatHistogram`]: integer histograms
//! (counts as deltas) when every count is a whole number, as Prometheus sends the
//! histograms it scrapes, else float histograms; received ones are checked as Prometheus
//! 3.x's receiver checks them ([`Histogram::to_valid_float`]). Exemplars ([`Exemplar`], 2.0's
//! [`v2::Exemplar`]) are carried in both.

use dataflows::histogram::{
    counts_from_deltas, deltas_from_counts, CounterResetHint, FloatHistogram, InvalidHistogram,
    Span,
};
use prost::{Message, Oneof};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, including `__name__`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars in time order.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native-histogram samples in time order.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// The exemplar's labels (e.g. `trace_id`).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the epoch; 0 for none (Prometheus reads it so).
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Histogram` (and `io.prometheus.write.v2.Histogram`, the same fields and
/// 2.0's `start_timestamp`): a native-histogram sample. Integer histograms carry
/// `*_int` counts and bucket `*_deltas`, float histograms `*_float` counts and bucket
/// `*_counts`.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Observations in total.
    #[prost(oneof = "HistogramCount", tags = "1, 2")]
    pub count: Option<HistogramCount>,
    /// Sum of the observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// The bucket schema.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    #[prost(oneof = "HistogramZeroCount", tags = "6, 7")]
    pub zero_count: Option<HistogramZeroCount>,
    /// Spans of the negative buckets.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Integer histograms: negative bucket counts as deltas.
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Float histograms: negative bucket counts.
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Spans of the positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Integer histograms: positive bucket counts as deltas.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Float histograms: positive bucket counts.
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// `ResetHint`: 0 unknown, 1 yes, 2 no, 3 gauge.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Upper bounds of custom buckets (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    /// Remote write 2.0 only (1.0's message has no field 17): when the histogram
    /// started counting, ms; 0 unknown (Prometheus 3.9 on).
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

/// `Histogram.count`.
#[derive(Clone, Copy, PartialEq, Oneof)]
pub enum HistogramCount {
    /// Of an integer histogram.
    #[prost(uint64, tag = "1")]
    Int(u64),
    /// Of a float histogram.
    #[prost(double, tag = "2")]
    Float(f64),
}

/// `Histogram.zero_count`.
#[derive(Clone, Copy, PartialEq, Oneof)]
pub enum HistogramZeroCount {
    /// Of an integer histogram.
    #[prost(uint64, tag = "6")]
    Int(u64),
    /// Of a float histogram.
    #[prost(double, tag = "7")]
    Float(f64),
}

/// `prometheus.BucketSpan`.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span (or the first bucket's index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

impl Histogram {
    /// `h` at `timestamp` as Prometheus sends it: an integer histogram when every count
    /// is a whole number (`HistogramToHistogramProto`), else a float one
    /// (`FloatHistogramToHistogramProto`); the counter-reset hint as it is.
    pub fn from_float(timestamp: i64, h: &FloatHistogram) -> Histogram {
        let spans = |spans: &[Span]| -> Vec<BucketSpan> {
            spans
                .iter()
                .map(|s| BucketSpan {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        let mut out = Histogram {
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            negative_spans: spans(&h.negative_spans),
            positive_spans: spans(&h.positive_spans),
            reset_hint: match h.counter_reset_hint {
                CounterResetHint::Unknown => 0,
                CounterResetHint::Reset => 1,
                CounterResetHint::NotReset => 2,
                CounterResetHint::Gauge => 3,
            },
            timestamp,
            custom_values: h.custom_values.clone(),
            ..Histogram::default()
        };
        if h.has_whole_counts() {
            out.count = Some(HistogramCount::Int(h.count as u64));
            out.zero_count = Some(HistogramZeroCount::Int(h.zero_count as u64));
            out.negative_deltas = deltas_from_counts(&h.negative_buckets);
            out.positive_deltas = deltas_from_counts(&h.positive_buckets);
        } else {
            out.count = Some(HistogramCount::Float(h.count));
            out.zero_count = Some(HistogramZeroCount::Float(h.zero_count));
            out.negative_counts = h.negative_buckets.clone();
            out.positive_counts = h.positive_buckets.clone();
        }
        out
    }

    /// Whether it is a float histogram (its count is a float), as Prometheus's
    /// `IsFloatHistogram` tells them apart.
    pub fn is_float(&self) -> bool {
        matches!(self.count, Some(HistogramCount::Float(_)))
    }

    /// The histogram as Prometheus 3.x's receiver appends it, or why its head refuses
    /// it: a reserved exponential schema above 8 (9..=52) is reduced to 8 first, once
    /// its spans are found to describe its buckets (`remoteWriteAppender.AppendHistogram`
    /// in storage/remote/write_handler.go, `ReduceResolution`), then the histogram is
    /// checked by [`FloatHistogram::validate`] (the head's `Validate`), as an integer
    /// histogram unless [`Histogram::is_float`].
    pub fn to_valid_float(&self) -> Result<FloatHistogram, InvalidHistogram> {
        let mut h = self.to_float();
        if (9..=52).contains(&h.schema) {
            h.validate_spans()?;
            h.reduce_resolution(8);
        }
        h.validate(!self.is_float())?;
        Ok(h)
    }

    /// The histogram as promflow holds it: integer counts summed from their deltas.
    pub fn to_float(&self) -> FloatHistogram {
        let spans = |spans: &[BucketSpan]| -> Vec<Span> {
            spans
                .iter()
                .map(|s| Span {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        let float = self.is_float();
        let (negative, positive) = if float {
            (self.negative_counts.clone(), self.positive_counts.clone())
        } else {
            (
                counts_from_deltas(&self.negative_deltas),
                counts_from_deltas(&self.positive_deltas),
            )
        };
        FloatHistogram {
            counter_reset_hint: match self.reset_hint {
                1 => CounterResetHint::Reset,
                2 => CounterResetHint::NotReset,
                3 => CounterResetHint::Gauge,
                _ => CounterResetHint::Unknown,
            },
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: match self.zero_count {
                Some(HistogramZeroCount::Int(n)) => n as f64,
                Some(HistogramZeroCount::Float(v)) => v,
                None => 0.0,
            },
            count: match self.count {
                Some(HistogramCount::Int(n)) => n as f64,
                Some(HistogramCount::Float(v)) => v,
                None => 0.0,
            },
            sum: self.sum,
            positive_spans: spans(&self.positive_spans),
            negative_spans: spans(&self.negative_spans),
            positive_buckets: positive,
            negative_buckets: negative,
            custom_values: self.custom_values.clone(),
        }
    }
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadRequest {
    /// The queries, answered in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `ReadRequest.ResponseType` values the client accepts, preferred first
    /// (`0` SAMPLES, `1` STREAMED_XOR_CHUNKS). Empty means SAMPLES.
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `ReadRequest.ResponseType.SAMPLES`.
pub const RESPONSE_TYPE_SAMPLES: i32 = 0;

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadResponse {
    /// One result per query, in the request's order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, Message)]
pub struct Query {
    /// Start of the range, ms.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End of the range, ms.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Label matchers, all of which a series must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// Hints (step, function, range); not used for selection.
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryResult {
    /// The matching series with their samples in the range.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelMatcher {
    /// `0` EQ, `1` NEQ, `2` RE, `3` NRE.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.ReadHints`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadHints {
    /// Query step, ms.
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// The function around the selector.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start, ms.
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End, ms.
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Grouping labels.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// `by` or `without`.
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of the selector, ms.
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// Remote write 2.0: strings interned in `symbols` (`symbols[0]` is `""`), series
/// referring to them by index.
pub mod v2 {
    use prost::Message;

    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Request {
        /// Every string of the request, deduplicated; `symbols[0]` is the empty string.
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// The series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `io.prometheus.write.v2.TimeSeries`.
    #[derive(Clone, PartialEq, Message)]
    pub struct TimeSeries {
        /// Name, value, name, value, ... as indices into `symbols`.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples in time order.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<super::Histogram>,
        /// Exemplars.
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        /// Type, help and unit of the series' metric.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        /// When the series (counter, histogram) started, ms; 0 unknown. Before
        /// Prometheus 3.9 (spec 2.0-rc.3); 3.9 reserves field 6 and sends starts per
        /// sample ([`Sample::start_timestamp`], `Histogram.start_timestamp`). Read
        /// from older senders, never sent.
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }

    /// `io.prometheus.write.v2.Sample`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Sample {
        /// The value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        /// When the counter started counting, ms; 0 unknown (Prometheus 3.9 on,
        /// spec 2.0-rc.4).
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }

    /// `io.prometheus.write.v2.Exemplar`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Exemplar {
        /// Labels as in [`TimeSeries::labels_refs`].
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// The value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `io.prometheus.write.v2.Metadata`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Metadata {
        /// `MetricType`: 0 unspecified, 1 counter, 2 gauge, 3 histogram,
        /// 4 gaugehistogram, 5 summary, 6 info, 7 stateset.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// HELP text, an index into `symbols`.
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        /// Unit, an index into `symbols`.
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    /// Builds a request's symbol table as series are added.
    #[derive(Default)]
    pub struct Symbols {
        table: Vec<String>,
        index: std::collections::HashMap<String, u32>,
    }

    impl Symbols {
        /// A table holding `""` at 0.
        pub fn new() -> Symbols {
            let mut s = Symbols::default();
            s.intern("");
            s
        }

        /// The index of `text`, added if new.
        pub fn intern(&mut self, text: &str) -> u32 {
            if let Some(&i) = self.index.get(text) {
                return i;
            }
            let i = self.table.len() as u32;
            self.table.push(text.to_string());
            self.index.insert(text.to_string(), i);
            i
        }

        /// The table, for [`Request::symbols`].
        pub fn into_table(self) -> Vec<String> {
            self.table
        }
    }
}

/// Encodes `message` as a remote write / read body: protobuf, then Snappy (block format).
pub fn encode(message: &impl Message) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&message.encode_to_vec())
        .expect("snappy compresses any input below 4 GiB")
}

/// Most bytes one byte of a Snappy block can decode to, rounded up: a copy with a
/// 2-byte offset is 3 bytes and emits up to 64 (literals emit at most their length).
const SNAPPY_MAX_EXPANSION: usize = 22;

/// Decodes a remote write / read body: Snappy (block format) around a protobuf message.
///
/// The decoder allocates the length a block's header declares before reading it, so
/// a declared length no block of `body`'s size can decode to (5 bytes declaring
/// 4 GiB, found by fuzzing) is refused first.
pub fn decode<M: Message + Default>(body: &[u8]) -> Result<M, DecodeError> {
    let declared = snap::raw::decompress_len(body).map_err(DecodeError::Snappy)?;
    if declared > body.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(DecodeError::DeclaredTooLong {
            declared,
            body: body.len(),
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(DecodeError::Snappy)?;
    M::decode(raw.as_slice()).map_err(DecodeError::Protobuf)
}

/// Why a remote write / read body cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a Snappy block.
    #[error("snappy decode: {0}")]
    Snappy(#[source] snap::Error),
    /// The block's header declares more than `body` bytes can decode to.
    #[error("snappy decode: the header declares {declared} bytes, more than a block of {body} bytes can hold")]
    DeclaredTooLong {
        /// The declared length.
        declared: usize,
        /// The body's length.
        body: usize,
    },
    /// Not the protobuf message.
    #[error("protobuf decode: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Received histograms as Prometheus 3.x's receiver appends them: reserved schemas
    /// above 8 reduced to 8, then `Validate`d (integer or float as sent); no input
    /// panics.
    #[test]
    fn received_histograms_are_reduced_and_validated() {
        let h =
            |schema: i32, count: HistogramCount, spans: &[(i32, u32)], deltas: &[i64]| Histogram {
                count: Some(count),
                sum: 1.0,
                schema,
                positive_spans: spans
                    .iter()
                    .map(|&(offset, length)| BucketSpan { offset, length })
                    .collect(),
                positive_deltas: deltas.to_vec(),
                ..Default::default()
            };
        // Indexes 1 and 2 of schema 9 are index 1 of schema 8.
        let got = h(9, HistogramCount::Int(3), &[(1, 2)], &[1, 1])
            .to_valid_float()
            .unwrap();
        assert_eq!(got.schema, 8);
        assert_eq!(got.positive(), [(1, 3.0)]);
        // Schema 52 reduces too (a shift past the index width, as Go's).
        let got = h(52, HistogramCount::Int(2), &[(-5, 1), (10, 1)], &[1, 0])
            .to_valid_float()
            .unwrap();
        assert_eq!((got.schema, got.positive()), (8, vec![(0, 1.0), (1, 1.0)]));
        assert_eq!(
            h(9, HistogramCount::Int(3), &[(0, 3)], &[1, 1]).to_valid_float().unwrap_err().to_string(),
            "positive side: spans need 3 buckets, have 2 buckets: histogram spans specify different number of buckets than provided"
        );
        assert_eq!(
            h(53, HistogramCount::Int(0), &[], &[]).to_valid_float(),
            Err(InvalidHistogram::InvalidSchema(53))
        );
        // The count rule holds for integer histograms only.
        assert!(h(0, HistogramCount::Int(9), &[(0, 2)], &[1, 1])
            .to_valid_float()
            .is_err());
        let mut float = h(0, HistogramCount::Float(9.0), &[(0, 2)], &[]);
        float.positive_counts = vec![1.0, 2.0];
        assert!(float.to_valid_float().is_ok());
        // Extreme offsets and lengths: an answer, no panic.
        for schema in [0, 9, 52, -53] {
            for spans in [
                vec![(i32::MIN, 1), (i32::MAX, 1), (i32::MAX, 1)],
                vec![(i32::MAX, u32::MAX), (i32::MAX, u32::MAX)],
            ] {
                let deltas = vec![1; spans.iter().map(|s| s.1.min(3) as usize).sum()];
                let _ = h(schema, HistogramCount::Int(3), &spans, &deltas).to_valid_float();
            }
            let _ = h(
                schema,
                HistogramCount::Int(3),
                &[(i32::MIN, 1), (i32::MAX, 1), (i32::MAX, 1)],
                &[1, 0, 0],
            )
            .to_valid_float();
        }
    }

    #[test]
    fn round_trips_a_snappy_protobuf_body() {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.5,
                    timestamp: 42,
                }],
                exemplars: Vec::new(),
                histograms: Vec::new(),
            }],
        };
        assert_eq!(decode::<WriteRequest>(&encode(&request)).unwrap(), request);
        assert!(decode::<WriteRequest>(b"not snappy").is_err());
    }

    #[test]
    fn refuses_a_declared_length_no_block_of_its_size_holds() {
        // The varint 2^32-1 and nothing else: snap allocated 4 GiB for it (seen in
        // snap's `decompress_vec` while writing the remote_write fuzz target).
        let err = decode::<WriteRequest>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "snappy decode: the header declares 4294967295 bytes, more than a block of 5 bytes can hold"
        );
    }

    #[test]
    fn decodes_the_most_compressed_bodies() {
        // 1 MiB of one byte is Snappy's best case (64 bytes per 3-byte copy).
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "a".repeat(1 << 20),
                }],
                samples: Vec::new(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            }],
        };
        let body = encode(&request);
        assert!(
            body.len() * 20 < (1 << 20),
            "compressed to {} bytes",
            body.len()
        );
        assert_eq!(decode::<WriteRequest>(&body).unwrap(), request);
    }

    /// Integer histograms go as deltas and come back the same; float ones as counts.
    #[test]
    fn histograms_convert_as_integer_or_float() {
        let h = FloatHistogram {
            counter_reset_hint: CounterResetHint::NotReset,
            schema: 1,
            zero_threshold: 0.001,
            zero_count: 2.0,
            count: 12.0,
            sum: 10.5,
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
            positive_buckets: vec![2.0, 5.0, 1.0],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            negative_buckets: vec![2.0],
            custom_values: Vec::new(),
        };
        let sent = Histogram::from_float(7, &h);
        assert_eq!(sent.count, Some(HistogramCount::Int(12)));
        assert_eq!(sent.positive_deltas, vec![2, 3, -4]);
        assert_eq!(sent.reset_hint, 2);
        let back = decode::<Histogram>(&encode(&sent)).unwrap();
        assert_eq!(back.to_float(), h);
        let mut float = h.clone();
        float.positive_buckets[0] = 2.5;
        let sent = Histogram::from_float(7, &float);
        assert!(sent.is_float());
        assert_eq!(sent.positive_counts, float.positive_buckets);
        assert_eq!(sent.to_float(), float);
    }
}
