//! `GET|POST /api/v1/query_exemplars`: the exemplars of the series a PromQL query
//! selects, as Prometheus 2.42 answers it.
//!
//! Parameters `query` (required), `start` and `end` (default: all time; `end` before
//! `start` is an error). Every selector of the query (Prometheus's
//! `parser.ExtractSelectors`) selects series; the answer is, per selected series that
//! has exemplars in `[start, end]`, `{"seriesLabels": {…}, "exemplars": [{"labels":
//! {…}, "value": "…", "timestamp": seconds}]}`, series in label order, exemplars
//! oldest first (see [`crate::storage::exemplars`]; with exemplar storage off, none).
//! As in Prometheus, a query without a selector gets `204 No Content`. In a cluster,
//! the other processes' exemplars are merged in (`api::cluster_face`): a series
//! more than one holds has all their exemplars, oldest first.

use crate::api::cluster_face;
use crate::api::params::{Params, RequestError};
use crate::api::query_json::{LabelsJson, SampleValue, Timestamp};
use crate::api::response::{api_success, api_success_with_warnings, ApiError};
use crate::service::Service;
use crate::storage::exemplars::Exemplar;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::promql::plan;
use dataflows::render::extent::{selector_uses, QueryRange};
use dataflows::{Labels, Selector};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One series' exemplars, as Prometheus's `exemplar.QueryResult`.
#[derive(Serialize)]
struct SeriesExemplars<'a> {
    #[serde(rename = "seriesLabels")]
    series_labels: LabelsJson<'a>,
    exemplars: Vec<ExemplarJson<'a>>,
}

#[derive(Serialize)]
struct ExemplarJson<'a> {
    labels: LabelsJson<'a>,
    value: SampleValue,
    timestamp: Timestamp,
}

/// `GET|POST /api/v1/query_exemplars`.
pub async fn query_exemplars(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let request = (|| -> Result<(Vec<Selector>, i64, i64), RequestError> {
        let (start_ms, end_ms) = params.optional_range()?;
        let query = params.get("query").unwrap_or_default();
        let plan = plan::parse(query).map_err(RequestError::Query)?;
        let whole = QueryRange {
            start_ms: None,
            end_ms: None,
        };
        let selectors = selector_uses(&plan, 0, whole)
            .into_iter()
            .map(|u| u.selector)
            .collect();
        Ok((selectors, start_ms, end_ms))
    })();
    let (selectors, start_ms, end_ms) = match request {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if selectors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let found: Vec<(Arc<Labels>, Vec<Exemplar>)> = service
        .ingester
        .exemplars()
        .select(start_ms, end_ms, &selectors);
    let answer: Vec<SeriesExemplars<'_>> = found
        .iter()
        .map(|(series, exemplars)| SeriesExemplars {
            series_labels: LabelsJson(series),
            exemplars: exemplars
                .iter()
                .map(|e| ExemplarJson {
                    labels: LabelsJson(&e.labels),
                    value: SampleValue(e.value),
                    timestamp: Timestamp(e.timestamp_ms),
                })
                .collect(),
        })
        .collect();
    let answer = serde_json::to_value(answer).unwrap_or_default();
    let path = "/api/v1/query_exemplars";
    let (peers, warnings) = cluster_face::peer_data(&service, &headers, path, &params, &[]).await;
    if peers.is_empty() && warnings.is_empty() {
        return api_success(answer);
    }
    // By series (their labels as `seriesLabels` holds them): every process's exemplars.
    let mut merged: BTreeMap<Labels, Vec<Value>> = BTreeMap::new();
    for list in std::iter::once(answer).chain(peers) {
        let Value::Array(list) = list else { continue };
        for mut series in list {
            let Some(labels) = series["seriesLabels"].as_object() else {
                continue;
            };
            let pairs = labels.iter().map(|(n, v)| {
                let value = v.as_str().unwrap_or_default().to_string();
                (n.clone(), value)
            });
            let labels = Labels::from_pairs(pairs.collect());
            if let Value::Array(exemplars) = series["exemplars"].take() {
                merged.entry(labels).or_default().extend(exemplars);
            }
        }
    }
    let answer: Vec<Value> = merged
        .into_iter()
        .map(|(labels, mut exemplars)| {
            exemplars.sort_by(|a, b| {
                let ts = |e: &Value| e["timestamp"].as_f64().unwrap_or_default();
                ts(a).total_cmp(&ts(b))
            });
            json!({ "seriesLabels": LabelsJson(&labels), "exemplars": exemplars })
        })
        .collect();
    let warnings: Vec<&str> = warnings.iter().map(String::as_str).collect();
    api_success_with_warnings(Value::Array(answer), &warnings)
}
