//! The remote write 1.0 and remote read messages of Prometheus's `prompb` package
//! (`remote.proto`, `types.proto`), remote write 2.0's `io.prometheus.write.v2.Request`
//! (`prompb/io/prometheus/write/v2/types.proto`, in [`v2`]), declared with prost's
//! derive (no protoc at build time), and their framing: a protobuf message inside
//! Snappy's block format.
//!
//! Field numbers follow `prompb`. Exemplars and native histograms are not carried in
//! 1.0; in 2.0 they are read to be counted (and refused: promflow stores neither).

use prost::Message;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (exemplars and native histograms are not read).
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, including `__name__`.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
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
        /// Native histogram samples (counted, not stored).
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        /// Exemplars (counted, not stored).
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        /// Type, help and unit of the series' metric.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        /// When the series (counter, histogram) started, ms; 0 unknown.
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
    }

    /// `io.prometheus.write.v2.Histogram`, its timestamp only.
    #[derive(Clone, PartialEq, Message)]
    pub struct Histogram {
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
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
}
