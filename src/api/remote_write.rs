//! `POST /api/v1/write`: the remote write 1.0 receiver (snappy-compressed protobuf
//! `WriteRequest`), behind `--web.enable-remote-write-receiver` like Prometheus.
//!
//! Received samples take the same write path as scraped ones (`Ingester::commit`):
//! storage first, then the dataflow (samples older than the watermark are stored and
//! counted late). Answers 204 on success, 400 for a body that does not decode, 500 when
//! storage refuses the batch (nothing of it is kept; the sender retries).
//! The message types are in [`crate::remote::proto`].

use crate::remote::proto::{self, WriteRequest};
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dataflows::{Labels, Sample};
use std::sync::Arc;

/// The handler.
pub async fn write(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    if !service.options.enable_remote_write_receiver {
        return (
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver\n",
        )
            .into_response();
    }
    let request = match proto::decode::<WriteRequest>(&body) {
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
    match service.ingester.commit(batch) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // Not acknowledged: the sender keeps the samples and retries.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
