//! The TSDB admin endpoints, served only with `--web.enable-admin-api` (otherwise each
//! answers Prometheus's `unavailable` error "admin APIs disabled"):
//! - `POST|PUT /api/v1/admin/tsdb/delete_series` (`match[]`, optional `start`/`end`):
//!   deletes the matching samples (see [`crate::storage::Storage::delete_series`]); 204;
//! - `POST|PUT /api/v1/admin/tsdb/clean_tombstones`: rewrites blocks without deleted
//!   samples; 204;
//! - `POST|PUT /api/v1/admin/tsdb/snapshot` (`skip_head`): a copy of the data under
//!   `<storage.tsdb.path>/snapshots/<name>` that opens as a data directory; answers
//!   `{"name": …}`.
//!
//! Parameters and error texts follow Prometheus 2.42's `web/api/v1/api.go`.

use crate::api::federate::parse_selector;
use crate::api::params::{parse_time_param, Params, RequestError};
use crate::api::response::{api_error, api_success, ApiError, ErrorType};
use crate::service::Service;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

fn disabled(service: &Service) -> Option<Response> {
    (!service.options.enable_admin_api)
        .then(|| api_error(ErrorType::Unavailable, "admin APIs disabled"))
}

/// `delete_series`.
pub async fn delete_series(State(service): State<Arc<Service>>, params: Params) -> Response {
    if let Some(refused) = disabled(&service) {
        return refused;
    }
    let matches = params.all("match[]");
    if matches.is_empty() {
        return api_error(ErrorType::BadData, "no match[] parameter provided");
    }
    let mut selectors = Vec::new();
    for m in matches {
        match parse_selector(m) {
            Ok(s) => selectors.push(s),
            Err(e) => {
                return api_error(
                    ErrorType::BadData,
                    &format!("invalid parameter \"match[]\": {e}"),
                )
            }
        }
    }
    let time = |name: &'static str, default: i64| -> Result<i64, RequestError> {
        params.get(name).map_or(Ok(default), |t| {
            parse_time_param(t).map_err(|source| RequestError::AdminTime { name, source })
        })
    };
    let (start, end) = match (time("start", i64::MIN), time("end", i64::MAX)) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let storage = service.ingester.storage().clone();
    let deleted =
        tokio::task::spawn_blocking(move || storage.delete_series(&selectors, start, end)).await;
    match deleted {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => api_error(ErrorType::Internal, &format!("delete series: {e}")),
        Err(e) => api_error(ErrorType::Internal, &format!("delete series: {e}")),
    }
}

/// `clean_tombstones`.
pub async fn clean_tombstones(State(service): State<Arc<Service>>) -> Response {
    if let Some(refused) = disabled(&service) {
        return refused;
    }
    let storage = service.ingester.storage().clone();
    match tokio::task::spawn_blocking(move || storage.clean_tombstones()).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => api_error(ErrorType::Internal, &format!("clean tombstones: {e}")),
        Err(e) => api_error(ErrorType::Internal, &format!("clean tombstones: {e}")),
    }
}

/// `snapshot`.
pub async fn snapshot(State(service): State<Arc<Service>>, params: Params) -> Response {
    if let Some(refused) = disabled(&service) {
        return refused;
    }
    let skip_head = match params.get("skip_head") {
        None | Some("") => false,
        Some(v) => match parse_go_bool(v) {
            Some(b) => b,
            None => {
                return api_error(
                    ErrorType::BadData,
                    &format!("invalid parameter \"skip_head\": unable to parse boolean: strconv.ParseBool: parsing {v:?}: invalid syntax"),
                )
            }
        },
    };
    let name = snapshot_name();
    let dir = service.options.storage_path.join("snapshots").join(&name);
    let storage = service.ingester.storage().clone();
    match tokio::task::spawn_blocking(move || storage.snapshot(&dir, skip_head)).await {
        Ok(Ok(())) => api_success(json!({ "name": name })),
        Ok(Err(e)) => api_error(ErrorType::Internal, &format!("create snapshot: {e}")),
        Err(e) => api_error(ErrorType::Internal, &format!("create snapshot: {e}")),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `<UTC time as 20060102T150405Z>-<16 hex digits>`, like Prometheus's snapshot names.
fn snapshot_name() -> String {
    let now = chrono::Utc::now();
    let unique = xxhash_rust::xxh3::xxh3_64(
        format!(
            "{}-{}-{:?}",
            now.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    format!("{}-{unique:016x}", now.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_booleans_and_snapshot_names() {
        assert_eq!(parse_go_bool("T"), Some(true));
        assert_eq!(parse_go_bool("False"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
        let name = snapshot_name();
        assert_eq!(
            name.len(),
            "20261125T081739Z-25c8b621a91f2c1c".len(),
            "{name}"
        );
        assert_eq!(&name[8..9], "T");
        assert_eq!(&name[15..17], "Z-");
    }
}
