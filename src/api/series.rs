//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values`: what series
//! and labels exist, with Prometheus's parameters (`match[]`, `start`, `end`, `limit`)
//! and JSON shapes. Read from storage; without `match[]`, names and values come
//! straight from the label indexes. In a cluster (`--cluster.*`), the other processes'
//! answers to the same request are merged in (`api::cluster_face`): sorted,
//! deduplicated, then cut to `limit`; a process that does not answer is a warning.

use crate::api::cluster_face;
use crate::api::federate::parse_selector;
use crate::api::params::{Params, RequestError};
use crate::api::query::labels_json;
use crate::api::response::{
    api_error, api_success, api_success_with_warnings, ApiError, ErrorType,
};
use crate::service::Service;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
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

/// Answers a list, truncated to `limit` (0 = none) with Prometheus's warning, and
/// the `warnings` of the cluster's processes that did not answer.
fn limited(items: Vec<Value>, limit: usize, warnings: &[String]) -> Response {
    let mut warnings: Vec<&str> = warnings.iter().map(String::as_str).collect();
    let mut items = items;
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit");
    }
    if warnings.is_empty() {
        return api_success(json!(items));
    }
    api_success_with_warnings(json!(items), &warnings)
}

/// The items of the `data` lists the other processes of a cluster answer to this
/// request (`limit` is applied to the merged list), and a warning for each one that
/// did not answer.
async fn peer_lists(
    service: &Service,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
) -> (Vec<Value>, Vec<String>) {
    let (data, warnings) =
        cluster_face::peer_data(service, headers, path, params, &["limit"]).await;
    let items = data
        .into_iter()
        .filter_map(|data| match data {
            Value::Array(items) => Some(items),
            _ => None,
        })
        .flatten()
        .collect();
    (items, warnings)
}

/// `local` strings with the peers' merged in: sorted, each once.
fn merged_strings(local: Vec<String>, peers: Vec<Value>) -> Vec<Value> {
    let mut all: BTreeSet<String> = local.into_iter().collect();
    all.extend(peers.into_iter().filter_map(|v| match v {
        Value::String(s) => Some(s),
        _ => None,
    }));
    all.into_iter().map(Value::String).collect()
}

/// `GET|POST /api/v1/series`
pub async fn series_api(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let q = match series_query(&params) {
        Ok(q) => q,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if q.selectors.is_empty() {
        return api_error(ErrorType::BadData, "no match[] parameter provided");
    }
    let (peers, warnings) = peer_lists(&service, &headers, "/api/v1/series", &params).await;
    let mut all: BTreeSet<Arc<Labels>> = series(&service, &q).into_iter().collect();
    all.extend(peers.iter().filter_map(|v| {
        let pairs = v.as_object()?.iter().map(|(n, v)| {
            let value = v.as_str().unwrap_or_default().to_string();
            (n.clone(), value)
        });
        Some(Arc::new(Labels::from_pairs(pairs.collect())))
    }));
    let items = all.iter().map(|l| labels_json(l)).collect();
    limited(items, q.limit, &warnings)
}

/// `GET|POST /api/v1/labels`
pub async fn label_names(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
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
    let (peers, warnings) = peer_lists(&service, &headers, "/api/v1/labels", &params).await;
    limited(merged_strings(names, peers), q.limit, &warnings)
}

/// `GET /api/v1/label/<name>/values`
pub async fn label_values(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
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
    let path = format!("/api/v1/label/{}/values", name);
    let (peers, warnings) = peer_lists(&service, &headers, &path, &params).await;
    limited(merged_strings(values, peers), q.limit, &warnings)
}
