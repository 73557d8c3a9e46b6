//! `POST /api/v1/otlp/v1/metrics`: the OTLP/HTTP metrics receiver, behind
//! `--web.enable-otlp-receiver` (or `--enable-feature=otlp-write-receiver`) like
//! Prometheus 3.x.
//!
//! Bodies are `ExportMetricsServiceRequest`s, protobuf (`application/x-protobuf`) or
//! JSON (`application/json`), optionally gzip-compressed (`Content-Encoding: gzip`).
//! They are translated by [`crate::remote::otlp`] with the config's `otlp:` settings and
//! take the remote write receiver's path (`Ingester::commit`, then
//! `Ingester::commit_histograms` for the native histograms). Metrics the translation
//! refuses (delta temporality, exponential histograms of a scale below -4) are logged and counted in
//! `promflow_otlp_refused_points_total`, and the rest is stored, as Prometheus logs
//! translation errors and answers 200. Answers: 200 with an empty
//! `ExportMetricsServiceResponse` in the request's encoding; 400 for a body that does
//! not decode; 415 for another content type; 500 when storage refuses the batch.

use crate::remote::{otlp, otlp_proto};
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The most bytes a gzip body may inflate to.
const MAX_INFLATED: u64 = 256 << 20;

/// Points of metrics the translation refused, since start.
pub static REFUSED_POINTS: AtomicU64 = AtomicU64::new(0);

/// `promflow_otlp_refused_points_total`, for `/metrics`.
pub fn render_metrics(out: &mut String) {
    crate::exposition::write_single(
        out,
        "promflow_otlp_refused_points_total",
        "counter",
        "OTLP data points refused by the translation (delta temporality, exponential histograms of a scale below -4, invalid names).",
        REFUSED_POINTS.load(Ordering::Relaxed) as f64,
    );
}

fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// The handler.
pub async fn metrics(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !service.options.enable_otlp_receiver {
        return text(
            StatusCode::NOT_FOUND,
            "otlp write receiver needs to be enabled with --web.enable-otlp-receiver".into(),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        _ => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type {content_type:?}: use application/x-protobuf or application/json"),
            )
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let inflated;
    let raw: &[u8] = match encoding.as_str() {
        "" | "identity" => &body,
        "gzip" => {
            let mut out = Vec::new();
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(MAX_INFLATED + 1)
                .read_to_end(&mut out);
            match read {
                Ok(n) if n as u64 > MAX_INFLATED => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("gzip body inflates past {MAX_INFLATED} bytes"),
                    )
                }
                Ok(_) => {}
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("gzip decode: {e}")),
            }
            inflated = out;
            &inflated
        }
        other => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding {other:?}"),
            )
        }
    };
    let request = match otlp_proto::decode_request(raw, json) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "OTLP request refused");
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let config = service.config.read().otlp.clone();
    let lookback_ms = service.options.lookback_delta.as_millis() as i64;
    let translated = otlp::translate(&request, &config, lookback_ms);
    if !translated.refused.is_empty() {
        REFUSED_POINTS.fetch_add(translated.refused_points as u64, Ordering::Relaxed);
        tracing::warn!(
            points = translated.refused_points,
            errors = %translated.refused.join("; "),
            "Error translating OTLP metrics to Prometheus write request"
        );
    }
    tracing::debug!(
        samples = translated.samples.len(),
        histograms = translated.histograms.len(),
        "OTLP request"
    );
    let ingester = &service.ingester;
    let committed = ingester
        .commit(ingester.start_zeros(translated.samples))
        .and_then(|_| {
            ingester.commit_histograms(ingester.start_zero_histograms(translated.histograms))
        });
    if let Err(e) = committed {
        return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    if service.ingester.wants_exemplars() && !translated.exemplars.is_empty() {
        service.ingester.commit_exemplars(translated.exemplars);
    }
    // An empty ExportMetricsServiceResponse: no bytes in protobuf, `{}` in JSON.
    let (content_type, body): (&str, &[u8]) = if json {
        ("application/json", b"{}")
    } else {
        ("application/x-protobuf", b"")
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        body.to_vec(),
    )
        .into_response()
}
