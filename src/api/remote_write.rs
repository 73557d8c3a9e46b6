//! `POST /api/v1/write`: the remote write 1.0 receiver (snappy-compressed protobuf
//! `WriteRequest`), behind `--web.enable-remote-write-receiver` like Prometheus.
//!
//! Received samples take the same write path as scraped ones (`Ingester::commit`):
//! storage first, then the dataflow (samples older than the watermark are stored and
//! counted late). Answers 204 on success, 400 for a body that does not decode.
//! The message types are declared here with prost's derive (no protoc at build time);
//! field numbers follow Prometheus's `prompb/remote.proto` and `types.proto`.

use crate::service::Service;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dataflows::{Labels, Sample};
use prost::Message;
use std::sync::Arc;

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
    pub samples: Vec<WriteSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
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
pub struct WriteSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Decodes a remote write body: snappy block format around a protobuf `WriteRequest`.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy decode: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf decode: {e}"))
}

/// The handler.
pub async fn write(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    if !service.options.enable_remote_write_receiver {
        return (
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver\n",
        )
            .into_response();
    }
    let request = match decode(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "remote write request refused");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    tracing::debug!(series = request.timeseries.len(), "remote write request");
    let mut batch = Vec::new();
    for series in request.timeseries {
        let labels = Labels::from_pairs(
            series
                .labels
                .into_iter()
                .map(|l| (l.name, l.value))
                .collect(),
        );
        if labels.metric_name().is_empty() {
            tracing::warn!(%labels, "remote write request refused: a series without a metric name");
            return (
                StatusCode::BAD_REQUEST,
                format!("series without a metric name: {labels}\n"),
            )
                .into_response();
        }
        let labels = Arc::new(labels);
        let series_id = labels.hash();
        batch.extend(series.samples.into_iter().map(|s| Sample {
            series_id,
            labels: labels.clone(),
            timestamp_ms: s.timestamp,
            value: s.value,
        }));
    }
    service.ingester.commit(batch);
    StatusCode::NO_CONTENT.into_response()
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
                samples: vec![WriteSample {
                    value: 1.5,
                    timestamp: 42,
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        assert_eq!(decode(&body).unwrap(), request);
        assert!(decode(b"not snappy").is_err());
    }
}
