//! The OTLP metrics messages the OTLP receiver reads (`opentelemetry/proto/collector/
//! metrics/v1`, `metrics/v1`, `common/v1`, `resource/v1`), declared with prost's derive
//! like [`super::proto`], with the upstream field numbers, and with serde for OTLP's
//! JSON encoding (lowerCamelCase keys, 64-bit integers as strings or numbers, enums as
//! integers, doubles also as `"NaN"`/`"Infinity"`/`"-Infinity"`).
//!
//! Why not the `opentelemetry-proto` crate: it needs `opentelemetry` and
//! `opentelemetry_sdk` besides the messages, and brings `base64` 0.22 next to our
//! 0.23 (a second major, refused by deny.toml's `multiple-versions`).
//!
//! Only what the translation reads is declared: scope attributes and min/max are
//! skipped as unknown fields (protobuf) or unknown keys (JSON).

use prost::{Message, Oneof};
use serde::Deserialize;

/// `ExportMetricsServiceRequest` (its JSON form is `MetricsData`'s too).
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExportMetricsServiceRequest {
    /// One entry per resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

/// `ResourceMetrics`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceMetrics {
    /// The resource the metrics describe.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// The metrics, per instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

/// `Resource`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Resource {
    /// Resource attributes (`service.name`, `host.name`, ...).
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `ScopeMetrics`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ScopeMetrics {
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
}

/// `Metric`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Metric {
    /// The instrument's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its description (Prometheus's HELP).
    #[prost(string, tag = "2")]
    pub description: String,
    /// Its UCUM unit (`s`, `By`, `1`, `{request}`, ...).
    #[prost(string, tag = "3")]
    pub unit: String,
    /// The points, by kind.
    #[prost(oneof = "Data", tags = "5, 7, 9, 10, 11")]
    #[serde(flatten)]
    pub data: Option<Data>,
}

/// `Metric.data`.
#[derive(Clone, PartialEq, Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Data {
    /// A gauge.
    #[prost(message, tag = "5")]
    Gauge(Gauge),
    /// A sum (monotonic or not, cumulative or delta).
    #[prost(message, tag = "7")]
    Sum(Sum),
    /// An explicit-bucket histogram.
    #[prost(message, tag = "9")]
    Histogram(Histogram),
    /// An exponential histogram (a native histogram in Prometheus).
    #[prost(message, tag = "10")]
    ExponentialHistogram(ExponentialHistogram),
    /// A summary.
    #[prost(message, tag = "11")]
    Summary(Summary),
}

/// `AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA`.
pub const TEMPORALITY_DELTA: i32 = 1;
/// `AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE`.
pub const TEMPORALITY_CUMULATIVE: i32 = 2;
/// `DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`.
pub const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// `Gauge`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Gauge {
    /// The points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

/// `Sum`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Sum {
    /// The points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    /// `0` unspecified, [`TEMPORALITY_DELTA`], [`TEMPORALITY_CUMULATIVE`].
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
    /// Whether the sum only goes up (a counter).
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

/// `Histogram`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Histogram {
    /// The points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
    /// As in [`Sum`].
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// `ExponentialHistogram` (a native histogram in Prometheus, see [`super::otlp`]).
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExponentialHistogram {
    /// The points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<ExponentialHistogramDataPoint>,
    /// As in [`Sum`].
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
}

/// `ExponentialHistogramDataPoint` (`min` and `max` are not read).
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExponentialHistogramDataPoint {
    /// The point's attributes (labels).
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// When the point's cumulative series started, nanoseconds since the epoch (0:
    /// unknown).
    #[prost(fixed64, tag = "2")]
    #[serde(deserialize_with = "json::u64_any")]
    pub start_time_unix_nano: u64,
    /// Nanoseconds since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64_any")]
    pub time_unix_nano: u64,
    /// Observations.
    #[prost(fixed64, tag = "4")]
    #[serde(deserialize_with = "json::u64_any")]
    pub count: u64,
    /// Sum of the observations, when recorded.
    #[prost(double, optional, tag = "5")]
    #[serde(deserialize_with = "json::opt_f64_any")]
    pub sum: Option<f64>,
    /// Resolution: bucket `i` holds `(base^i, base^(i+1)]`, `base = 2^(2^-scale)`.
    #[prost(sint32, tag = "6")]
    #[serde(deserialize_with = "json::i32_any")]
    pub scale: i32,
    /// Observations in the zero bucket.
    #[prost(fixed64, tag = "7")]
    #[serde(deserialize_with = "json::u64_any")]
    pub zero_count: u64,
    /// Buckets of positive observations.
    #[prost(message, optional, tag = "8")]
    pub positive: Option<ExponentialBuckets>,
    /// Buckets of negative observations (by absolute value).
    #[prost(message, optional, tag = "9")]
    pub negative: Option<ExponentialBuckets>,
    /// As in [`NumberDataPoint`].
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// Width of the zero bucket (Prometheus 3.x does not read it either).
    #[prost(double, tag = "14")]
    #[serde(deserialize_with = "json::f64_any")]
    pub zero_threshold: f64,
    /// Sampled observations.
    #[prost(message, repeated, tag = "11")]
    pub exemplars: Vec<Exemplar>,
}

/// `Exemplar`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Exemplar {
    /// The measurement's attributes that the point's attributes left out.
    #[prost(message, repeated, tag = "7")]
    pub filtered_attributes: Vec<KeyValue>,
    /// Nanoseconds since the epoch.
    #[prost(fixed64, tag = "2")]
    #[serde(deserialize_with = "json::u64_any")]
    pub time_unix_nano: u64,
    /// The value.
    #[prost(oneof = "ExemplarValue", tags = "3, 6")]
    #[serde(flatten)]
    pub value: Option<ExemplarValue>,
    /// The span's id, 8 bytes (hex in JSON).
    #[prost(bytes = "vec", tag = "4")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub span_id: Vec<u8>,
    /// The trace's id, 16 bytes (hex in JSON).
    #[prost(bytes = "vec", tag = "5")]
    #[serde(deserialize_with = "json::hex_bytes")]
    pub trace_id: Vec<u8>,
}

/// `ExponentialHistogramDataPoint.Buckets`: dense counts from index `offset`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExponentialBuckets {
    /// Index of the first bucket.
    #[prost(sint32, tag = "1")]
    #[serde(deserialize_with = "json::i32_any")]
    pub offset: i32,
    /// Per-bucket (not cumulative) counts.
    #[prost(uint64, repeated, tag = "2")]
    #[serde(deserialize_with = "json::vec_u64_any")]
    pub bucket_counts: Vec<u64>,
}

/// `Summary`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Summary {
    /// The points.
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<SummaryDataPoint>,
}

/// `NumberDataPoint`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NumberDataPoint {
    /// The point's attributes (labels).
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// When the point's cumulative series started, nanoseconds since the epoch (0:
    /// unknown).
    #[prost(fixed64, tag = "2")]
    #[serde(deserialize_with = "json::u64_any")]
    pub start_time_unix_nano: u64,
    /// Nanoseconds since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64_any")]
    pub time_unix_nano: u64,
    /// The value.
    #[prost(oneof = "NumberValue", tags = "4, 6")]
    #[serde(flatten)]
    pub value: Option<NumberValue>,
    /// [`FLAG_NO_RECORDED_VALUE`] marks a stale point.
    #[prost(uint32, tag = "8")]
    pub flags: u32,
    /// Sampled measurements (read for sums).
    #[prost(message, repeated, tag = "5")]
    pub exemplars: Vec<Exemplar>,
}

/// `NumberDataPoint.value`.
#[derive(Clone, PartialEq, Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NumberValue {
    /// A double.
    #[prost(double, tag = "4")]
    AsDouble(#[serde(deserialize_with = "json::f64_any")] f64),
    /// An integer.
    #[prost(sfixed64, tag = "6")]
    AsInt(#[serde(deserialize_with = "json::i64_any")] i64),
}

/// `Exemplar.value` (its field numbers differ from [`NumberValue`]'s).
#[derive(Clone, PartialEq, Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExemplarValue {
    /// A double.
    #[prost(double, tag = "3")]
    AsDouble(#[serde(deserialize_with = "json::f64_any")] f64),
    /// An integer.
    #[prost(sfixed64, tag = "6")]
    AsInt(#[serde(deserialize_with = "json::i64_any")] i64),
}

/// `HistogramDataPoint`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HistogramDataPoint {
    /// The point's attributes (labels).
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// When the point's cumulative series started, nanoseconds since the epoch (0:
    /// unknown).
    #[prost(fixed64, tag = "2")]
    #[serde(deserialize_with = "json::u64_any")]
    pub start_time_unix_nano: u64,
    /// Nanoseconds since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64_any")]
    pub time_unix_nano: u64,
    /// Observations.
    #[prost(fixed64, tag = "4")]
    #[serde(deserialize_with = "json::u64_any")]
    pub count: u64,
    /// Sum of the observations, when recorded.
    #[prost(double, optional, tag = "5")]
    #[serde(deserialize_with = "json::opt_f64_any")]
    pub sum: Option<f64>,
    /// Per-bucket (not cumulative) counts, one more than `explicit_bounds`.
    #[prost(fixed64, repeated, tag = "6")]
    #[serde(deserialize_with = "json::vec_u64_any")]
    pub bucket_counts: Vec<u64>,
    /// Upper bounds of the buckets but the last.
    #[prost(double, repeated, tag = "7")]
    #[serde(deserialize_with = "json::vec_f64_any")]
    pub explicit_bounds: Vec<f64>,
    /// As in [`NumberDataPoint`].
    #[prost(uint32, tag = "10")]
    pub flags: u32,
    /// Sampled observations.
    #[prost(message, repeated, tag = "8")]
    pub exemplars: Vec<Exemplar>,
}

/// `SummaryDataPoint`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SummaryDataPoint {
    /// The point's attributes (labels).
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
    /// When the point's cumulative series started, nanoseconds since the epoch (0:
    /// unknown).
    #[prost(fixed64, tag = "2")]
    #[serde(deserialize_with = "json::u64_any")]
    pub start_time_unix_nano: u64,
    /// Nanoseconds since the epoch.
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64_any")]
    pub time_unix_nano: u64,
    /// Observations.
    #[prost(fixed64, tag = "4")]
    #[serde(deserialize_with = "json::u64_any")]
    pub count: u64,
    /// Their sum.
    #[prost(double, tag = "5")]
    #[serde(deserialize_with = "json::f64_any")]
    pub sum: f64,
    /// The quantiles.
    #[prost(message, repeated, tag = "6")]
    pub quantile_values: Vec<ValueAtQuantile>,
    /// As in [`NumberDataPoint`].
    #[prost(uint32, tag = "8")]
    pub flags: u32,
}

/// `SummaryDataPoint.ValueAtQuantile`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ValueAtQuantile {
    /// The quantile, 0 to 1.
    #[prost(double, tag = "1")]
    #[serde(deserialize_with = "json::f64_any")]
    pub quantile: f64,
    /// Its value.
    #[prost(double, tag = "2")]
    #[serde(deserialize_with = "json::f64_any")]
    pub value: f64,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyValue {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AnyValue {
    /// The value, by kind; `None` for an empty value.
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    #[serde(flatten)]
    pub value: Option<Value>,
}

/// `AnyValue.value`.
#[derive(Clone, PartialEq, Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Value {
    /// A string.
    #[prost(string, tag = "1")]
    StringValue(String),
    /// A boolean.
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    /// An integer.
    #[prost(int64, tag = "3")]
    IntValue(#[serde(deserialize_with = "json::i64_any")] i64),
    /// A double.
    #[prost(double, tag = "4")]
    DoubleValue(#[serde(deserialize_with = "json::f64_any")] f64),
    /// A list.
    #[prost(message, tag = "5")]
    ArrayValue(ArrayValue),
    /// A map.
    #[prost(message, tag = "6")]
    KvlistValue(KeyValueList),
    /// Bytes (base64 in JSON).
    #[prost(bytes, tag = "7")]
    BytesValue(#[serde(deserialize_with = "json::base64_bytes")] Vec<u8>),
}

/// `ArrayValue`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ArrayValue {
    /// The elements.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `KeyValueList`.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyValueList {
    /// The entries.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// Deserializers for OTLP JSON's scalar forms (the protobuf JSON mapping).
mod json {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Int(i64),
        UInt(u64),
        Float(f64),
        Text(String),
    }

    fn as_f64<E: Error>(s: Scalar) -> Result<f64, E> {
        match s {
            Scalar::Int(i) => Ok(i as f64),
            Scalar::UInt(u) => Ok(u as f64),
            Scalar::Float(f) => Ok(f),
            Scalar::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => other
                    .parse()
                    .map_err(|_| E::custom(format!("not a number: {other:?}"))),
            },
        }
    }

    fn as_u64<E: Error>(s: Scalar) -> Result<u64, E> {
        match s {
            Scalar::Int(i) => u64::try_from(i).map_err(E::custom),
            Scalar::UInt(u) => Ok(u),
            Scalar::Float(f) => Err(E::custom(format!("not an integer: {f}"))),
            Scalar::Text(t) => t.parse().map_err(E::custom),
        }
    }

    pub fn f64_any<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        as_f64(Scalar::deserialize(d)?)
    }

    pub fn opt_f64_any<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Scalar>::deserialize(d)?.map(as_f64).transpose()
    }

    pub fn vec_f64_any<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Scalar>::deserialize(d)?
            .into_iter()
            .map(as_f64)
            .collect()
    }

    pub fn u64_any<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        as_u64(Scalar::deserialize(d)?)
    }

    pub fn vec_u64_any<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Vec::<Scalar>::deserialize(d)?
            .into_iter()
            .map(as_u64)
            .collect()
    }

    pub fn i64_any<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Int(i) => Ok(i),
            Scalar::UInt(u) => i64::try_from(u).map_err(D::Error::custom),
            Scalar::Float(f) => Err(D::Error::custom(format!("not an integer: {f}"))),
            Scalar::Text(t) => t.parse().map_err(D::Error::custom),
        }
    }

    pub fn i32_any<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        i32::try_from(i64_any(d)?).map_err(D::Error::custom)
    }

    /// OTLP JSON's trace and span ids: hex, not base64.
    pub fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom(format!("odd-length hex id {text:?}")));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| D::Error::custom(format!("not a hex id: {text:?}")))
            })
            .collect()
    }

    pub fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(D::Error::custom)
    }
}

/// Decodes a request body: `json` for `application/json`, protobuf otherwise.
pub fn decode_request(
    body: &[u8],
    json: bool,
) -> Result<ExportMetricsServiceRequest, OtlpDecodeError> {
    if json {
        serde_json::from_slice(body).map_err(OtlpDecodeError::Json)
    } else {
        ExportMetricsServiceRequest::decode(body).map_err(OtlpDecodeError::Protobuf)
    }
}

/// Why an OTLP request body cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum OtlpDecodeError {
    /// Not the JSON of the request.
    #[error("json decode: {0}")]
    Json(#[source] serde_json::Error),
    /// Not the protobuf of the request.
    #[error("protobuf decode: {0}")]
    Protobuf(#[source] prost::DecodeError),
}
