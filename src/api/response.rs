//! The Prometheus API v1 response envelope: `{"status":"success","data":…}` or
//! `{"status":"error","errorType":…,"error":…}`, with the HTTP status each error type
//! maps to. Every API handler answers through here, so the mapping lives in one place.

use crate::api::federation_views::ViewError;
use crate::api::params::RequestError;
use crate::api::rules_simulate::SimulateError;
use crate::rules::registry::RegistryError;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::promql::eval::EvalError;
use serde::Serialize;
use serde_json::{json, Value};

/// A float64 as Go's `encoding/json` writes it: a whole number without a fraction
/// (`60`, where serde_json writes `60.0`), so typed clients see the same number kind.
pub fn go_number(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Prometheus's error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// Bad parameters or unparsable PromQL (400).
    BadData,
    /// A runtime error of the query (422).
    Execution,
    /// The query ran past its timeout (503).
    Timeout,
    /// Something broke inside promflow (500).
    Internal,
    /// The resource does not exist (404).
    NotFound,
    /// The feature is switched off (500: Prometheus 2.42's `respondError` has no case
    /// for it and falls to its default, e.g. "admin APIs disabled").
    Unavailable,
}

impl ErrorType {
    fn name(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::Unavailable => "unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal | ErrorType::Unavailable => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// A success envelope around `data`.
pub fn api_success(data: Value) -> Response {
    axum::Json(json!({ "status": "success", "data": data })).into_response()
}

/// A success envelope with `warnings`.
pub fn api_success_with_warnings(data: Value, warnings: &[&str]) -> Response {
    axum::Json(json!({ "status": "success", "data": data, "warnings": warnings })).into_response()
}

/// A success envelope with the query annotations of Prometheus 3.x: `warnings` and
/// `infos`, each present only when not empty. `data` is serialized straight into the
/// body.
pub fn api_success_annotated<T: Serialize>(
    data: &T,
    warnings: &[String],
    infos: &[String],
) -> Response {
    let envelope = Annotated {
        data,
        warnings,
        infos,
    };
    match serde_json::to_vec(&envelope) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => api_error(
            ErrorType::Internal,
            &format!("encoding the answer failed: {e}"),
        ),
    }
}

struct Annotated<'a, T> {
    data: &'a T,
    warnings: &'a [String],
    infos: &'a [String],
}

impl<T: Serialize> Serialize for Annotated<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("status", "success")?;
        map.serialize_entry("data", self.data)?;
        if !self.warnings.is_empty() {
            map.serialize_entry("warnings", self.warnings)?;
        }
        if !self.infos.is_empty() {
            map.serialize_entry("infos", self.infos)?;
        }
        map.end()
    }
}

/// The answer to a write endpoint that is switched off: 403 with the `unavailable`
/// error type (Prometheus answers a disabled admin API with that error type, a disabled
/// lifecycle API with 403).
pub fn api_disabled(message: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({ "status": "error", "errorType": ErrorType::Unavailable.name(), "error": message })),
    )
        .into_response()
}

/// An error the API answers: its type (which decides the HTTP status) and message.
/// The typed errors of the library modules become one through `From`, here, so which
/// status each of them is answered with is decided in one place.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The error type.
    pub kind: ErrorType,
    /// The `error` text.
    pub message: String,
}

impl ApiError {
    /// An error of type `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        api_error(self.kind, &self.message)
    }
}

/// PromQL evaluation errors, as Prometheus 2.42's API answers them: a timed-out query
/// is `timeout` (503), every other runtime error `execution` (422), the
/// `--query.max-samples` one included.
impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> ApiError {
        let kind = match e {
            EvalError::TimedOut => ErrorType::Timeout,
            EvalError::TooManySamples
            | EvalError::DuplicateLabelset
            | EvalError::Execution(_)
            | EvalError::Unsupported(_) => ErrorType::Execution,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// The rule registry's errors (`/api/v1/rules` writes): its state file could not be
/// read or written, `internal` (500).
impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        ApiError::new(ErrorType::Internal, e.to_string())
    }
}

/// A request refused for its parameters: `bad_data` (400).
impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        ApiError::new(ErrorType::BadData, e.to_string())
    }
}

/// A rule simulation refused for its request: `bad_data` (400).
impl From<SimulateError> for ApiError {
    fn from(e: SimulateError) -> ApiError {
        ApiError::new(ErrorType::BadData, e.to_string())
    }
}

/// Federation view registrations: a selector refused is `bad_data` (400), the state
/// file failing `internal` (500).
impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> ApiError {
        let kind = match e {
            ViewError::NoMatchers | ViewError::Selector { .. } => ErrorType::BadData,
            ViewError::Read(_)
            | ViewError::Parse { .. }
            | ViewError::Stored { .. }
            | ViewError::Encode(_)
            | ViewError::Write { .. } => ErrorType::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// An error envelope.
pub fn api_error(kind: ErrorType, message: &str) -> Response {
    (
        kind.status(),
        axum::Json(json!({ "status": "error", "errorType": kind.name(), "error": message })),
    )
        .into_response()
}

/// Whether the request's `Accept-Encoding` lists gzip (`/federate`, the web UI's assets).
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}
