//! Request body size, per endpoint: the one place that reads a request's body before
//! its handler, and refuses it past the endpoint's limit.
//!
//! Contract: a body larger than its endpoint's limit (by `Content-Length`, or once that
//! many bytes have arrived) is refused without reading the rest, counted in
//! `promflow_http_request_body_too_large_total{handler}`, and answered with a clear
//! error naming the limit; a body within the limit reaches the handler whole. The limits
//! are [`LIMITS`] (README, "Limits"): the API v1 form endpoints take what Go's
//! `ParseForm` takes (10 MiB, answered like Prometheus's `http: POST too large`), the
//! others a size far above what their clients send. axum's own default limit is off,
//! so these are the only ones.

use crate::api::response::{api_error, ErrorType};
use crate::service::Service;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const MIB: usize = 1 << 20;

/// Go's `maxFormSize`: the most a form body may hold in Prometheus.
pub const FORM_BODY_LIMIT: usize = 10 * MIB;

/// How an endpoint answers a body over its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// 400 `bad_data`, `error parsing form values: http: POST too large` (Prometheus).
    Form,
    /// 413 with the API's error envelope.
    Json,
    /// 413 with a line of text (remote write and read clients log the body).
    Text,
}

/// Route pattern → (limit in bytes, answer). Routes not listed take
/// [`DEFAULT_LIMIT`].
const LIMITS: &[(&str, usize, Answer)] = &[
    ("/api/v1/query", FORM_BODY_LIMIT, Answer::Form),
    ("/api/v1/query_range", FORM_BODY_LIMIT, Answer::Form),
    ("/api/v1/series", FORM_BODY_LIMIT, Answer::Form),
    ("/api/v1/labels", FORM_BODY_LIMIT, Answer::Form),
    ("/api/v1/query_exemplars", FORM_BODY_LIMIT, Answer::Form),
    (
        "/api/v1/admin/tsdb/delete_series",
        FORM_BODY_LIMIT,
        Answer::Form,
    ),
    ("/api/v1/write", 32 * MIB, Answer::Text),
    ("/api/v1/otlp/v1/metrics", 32 * MIB, Answer::Text),
    ("/api/v1/read", 32 * MIB, Answer::Text),
    ("/api/v1/rules/{namespace}/{group}", 4 * MIB, Answer::Json),
    ("/api/v1/federation/{name}", MIB, Answer::Json),
    ("/api/v2/alerts", 32 * MIB, Answer::Json),
    ("/api/v2/silences", MIB, Answer::Json),
];

/// The limit of every other route (their handlers read no body).
pub const DEFAULT_LIMIT: usize = MIB;

/// The limit of a route pattern, and how it answers when a body is over it.
fn limit_of(route: &str) -> (usize, Answer) {
    LIMITS
        .iter()
        .find(|(r, _, _)| *r == route)
        .map_or((DEFAULT_LIMIT, Answer::Json), |(_, limit, answer)| {
            (*limit, *answer)
        })
}

/// The middleware (a `route_layer`, so the matched route is known).
pub async fn enforce(
    State(service): State<Arc<Service>>,
    route: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let (limit, answer) = limit_of(route.as_str());
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let read = match declared {
        Some(n) if n > limit as u64 => None,
        _ => match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => Some(bytes),
            Err(e) if is_length_limit(&e) => None,
            Err(e) => {
                return api_error(
                    ErrorType::BadData,
                    &format!("reading the request body: {e}"),
                )
            }
        },
    };
    let Some(bytes) = read else {
        let endpoint = LIMITS
            .iter()
            .map(|(r, _, _)| *r)
            .find(|r| *r == route.as_str())
            .unwrap_or("other");
        service.metrics.limits.record_body_too_large(endpoint);
        return too_large(route.as_str(), limit, answer);
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn is_length_limit(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
}

fn too_large(route: &str, limit: usize, answer: Answer) -> Response {
    let message = format!("request body too large: the limit of {route} is {limit} bytes");
    match answer {
        Answer::Form => api_error(
            ErrorType::BadData,
            "error parsing form values: http: POST too large",
        ),
        Answer::Json => {
            let mut response = api_error(ErrorType::BadData, &message);
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            response
        }
        Answer::Text => (StatusCode::PAYLOAD_TOO_LARGE, format!("{message}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_route_is_a_route_and_forms_take_go_s_size() {
        assert_eq!(limit_of("/api/v1/query"), (10 << 20, Answer::Form));
        assert_eq!(limit_of("/metrics"), (DEFAULT_LIMIT, Answer::Json));
        let routes = include_str!("mod.rs");
        for (route, _, _) in LIMITS {
            assert!(routes.contains(&format!("\"{route}\"")), "{route}");
        }
    }
}
