//! `--web.cors.origin`: the CORS headers Prometheus sets on its API (`httputil.SetCORS`).
//!
//! Contract: a request to `/api/v1/…` with an `Origin` header gets
//! `Access-Control-Allow-Headers`, `-Methods`, `-Expose-Headers` and `Vary: Origin`,
//! plus `Access-Control-Allow-Origin`: `*` when the flag is `.*` (the default), the
//! origin itself when it matches the (anchored) regex, nothing otherwise. `OPTIONS`
//! on an API route answers 204 with those headers (a browser's preflight). Applied to
//! matched routes only, so an unknown path stays a plain 404, as in Prometheus.

use crate::service::Service;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const FIXED: [(header::HeaderName, &str); 4] = [
    (
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "Accept, Authorization, Content-Type, Origin",
    ),
    (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
    (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
    (header::VARY, "Origin"),
];

/// The middleware; see the module contract.
pub async fn cors(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let (Some(origin), true) = (origin, request.uri().path().starts_with("/api/v1/")) else {
        return next.run(request).await;
    };
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in FIXED {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let allowed = &service.options.cors_origin;
    if allowed.as_str() == "^(?:.*)$" {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if origin.to_str().is_ok_and(|o| allowed.is_match(o)) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// `--web.cors.origin` as the anchored regex [`cors`] matches with.
pub fn origin_regex(flag: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{flag})$"))
}
