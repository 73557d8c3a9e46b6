//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values`: what series
//! and labels exist, with Prometheus's parameters (`match[]`, `start`, `end`, `limit`)
//! and JSON shapes. Read from storage; without `match[]`, names and values come
//! straight from the label indexes.

use crate::api::federate::parse_selector;
use crate::api::params::{Params, RequestError};
use crate::api::query::labels_json;
use crate::api::response::{
    api_error, api_success, api_success_with_warnings, ApiError, ErrorType,
};
use crate::service::Service;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use dataflows::{Labels, Selector};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The series-selecting parameters shared by the three endpoints.
struct SeriesQuery {
    selectors: Vec<Selector>,
    start_ms: i64,
    end_ms: i64,
    limit: usize,
}

fn series_query(params: &Params) -> Result<SeriesQuery, RequestError> {
    let mut selectors = Vec::new();
    for m in params.all("match[]") {
        selectors.push(parse_selector(m).map_err(|source| RequestError::Selector {
            name: "match[]",
            source,
        })?);
    }
    let (start_ms, end_ms) = params.optional_range()?;
    let limit = match params.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| RequestError::Limit(l.to_string()))?,
    };
    Ok(SeriesQuery {
        selectors,
        start_ms,
        end_ms,
        limit,
    })
}

fn series(service: &Service, q: &SeriesQuery) -> Vec<Arc<Labels>> {
    service
        .ingester
        .storage()
        .series_in_range(&q.selectors, q.start_ms, q.end_ms)
}

/// Answers a list, truncated to `limit` (0 = none) with Prometheus's warning.
fn limited(items: Vec<Value>, limit: usize) -> Response {
    if limit > 0 && items.len() > limit {
        let truncated: Vec<Value> = items.into_iter().take(limit).collect();
        return api_success_with_warnings(json!(truncated), &["results truncated due to limit"]);
    }
    api_success(json!(items))
}

/// `GET|POST /api/v1/series`
pub async fn series_api(State(service): State<Arc<Service>>, params: Params) -> Response {
    let q = match series_query(&params) {
        Ok(q) => q,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if q.selectors.is_empty() {
        return api_error(ErrorType::BadData, "no match[] parameter provided");
    }
    let items = series(&service, &q)
        .iter()
        .map(|l| labels_json(l))
        .collect();
    limited(items, q.limit)
}

/// `GET|POST /api/v1/labels`
pub async fn label_names(State(service): State<Arc<Service>>, params: Params) -> Response {
    let q = match series_query(&params) {
        Ok(q) => q,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let names: Vec<String> = if q.selectors.is_empty() {
        service.ingester.storage().label_names(q.start_ms, q.end_ms)
    } else {
        let names: BTreeSet<String> = series(&service, &q)
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>())
            .collect();
        names.into_iter().collect()
    };
    limited(names.into_iter().map(Value::String).collect(), q.limit)
}

/// `GET /api/v1/label/<name>/values`
pub async fn label_values(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    if !crate::relabel::is_valid_label_name(&name) {
        return api_error(ErrorType::BadData, &format!("invalid label name: {name:?}"));
    }
    let q = match series_query(&params) {
        Ok(q) => q,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let values: Vec<String> = if q.selectors.is_empty() {
        service
            .ingester
            .storage()
            .label_values(&name, q.start_ms, q.end_ms)
    } else {
        let values: BTreeSet<String> = series(&service, &q)
            .iter()
            .filter_map(|l| l.get(&name).map(str::to_string))
            .collect();
        values.into_iter().collect()
    };
    limited(values.into_iter().map(Value::String).collect(), q.limit)
}
