//! `/api/v1/status/*` (buildinfo, flags, runtimeinfo, tsdb) and `/api/v1/metadata`,
//! with Prometheus's JSON shapes.

use crate::api::cluster_face;
use crate::api::params::Params;
use crate::api::params::RequestError;
use crate::api::response::{
    api_error, api_success, api_success_with_warnings, ApiError, ErrorType,
};
use crate::service::Service;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `GET /api/v1/status/buildinfo`
pub async fn buildinfo() -> Response {
    api_success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// `GET /api/v1/status/flags`: every command-line flag and its value.
pub async fn flags(State(service): State<Arc<Service>>) -> Response {
    let flags: Map<String, Value> = service
        .options
        .flags
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    api_success(Value::Object(flags))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `GET /api/v1/status/runtimeinfo`
pub async fn runtimeinfo(State(service): State<Arc<Service>>) -> Response {
    let process = crate::process_stats::read();
    let metrics = &service.metrics;
    api_success(json!({
        "startTime": rfc3339((process.start_time_seconds * 1000.0) as i64),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": metrics.config_last_reload_successful.get() == 1.0,
        "lastConfigTime": rfc3339((metrics.config_last_reload_success_timestamp_seconds.get() * 1000.0) as i64),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": service.options.workers,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": crate::config::format_duration(service.options.retention),
    }))
}

/// `GET /api/v1/status/tsdb`: head statistics and the top-10 cardinality tables.
pub async fn tsdb(State(service): State<Arc<Service>>) -> Response {
    let head = service.ingester.storage();
    let series = head.series_in_range(&[], i64::MIN, i64::MAX);
    let (min_time, max_time) = head.time_range().unwrap_or((i64::MAX, i64::MIN));
    let mut by_metric: HashMap<&str, u64> = HashMap::new();
    let mut values_by_label: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
    let mut bytes_by_label: HashMap<&str, u64> = HashMap::new();
    let mut by_pair: HashMap<String, u64> = HashMap::new();
    let mut label_pairs = std::collections::HashSet::new();
    for labels in &series {
        *by_metric.entry(labels.metric_name()).or_default() += 1;
        for (name, value) in labels.iter() {
            if values_by_label.entry(name).or_default().insert(value) {
                *bytes_by_label.entry(name).or_default() += value.len() as u64;
            }
            label_pairs.insert((name, value));
            *by_pair.entry(format!("{name}={value}")).or_default() += 1;
        }
    }
    fn top10<K: ToString>(counts: impl IntoIterator<Item = (K, u64)>) -> Value {
        let mut rows: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(10);
        Value::Array(
            rows.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    }
    api_success(json!({
        "headStats": {
            "numSeries": series.len(),
            "numLabelPairs": label_pairs.len(),
            "chunkCount": 0,
            "minTime": min_time,
            "maxTime": max_time,
        },
        "seriesCountByMetricName": top10(by_metric),
        "labelValueCountByLabelName": top10(values_by_label.into_iter().map(|(k, v)| (k, v.len() as u64))),
        "memoryInBytesByLabelName": top10(bytes_by_label),
        "seriesCountByLabelValuePair": top10(by_pair),
    }))
}

/// `GET /api/v1/metadata?metric=&limit=&limit_per_metric=`: metadata of the metrics
/// scraped, merged over targets (in a cluster, every process's: `cluster_face`),
/// distinct entries per metric.
pub async fn metadata(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let parse_limit = |name: &'static str| -> Result<i64, RequestError> {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map_or(Ok(-1), |v| {
                v.parse::<i64>().map_err(|_| RequestError::Integer {
                    name,
                    value: v.to_string(),
                })
            })
    };
    let (limit, per_metric) = match (parse_limit("limit"), parse_limit("limit_per_metric")) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return ApiError::from(e).into_response(),
    };
    let wanted = params.get("metric").filter(|m| !m.is_empty());
    let mut merged: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut add = |family: &str, entry: Value| {
        let list = merged.entry(family.to_string()).or_default();
        if !list.contains(&entry) && (per_metric < 0 || (list.len() as i64) < per_metric) {
            list.push(entry);
        }
    };
    for target in service.scrapes.targets() {
        for m in target.health.metadata.iter() {
            if wanted.is_some_and(|w| w != m.family) {
                continue;
            }
            add(
                &m.family,
                json!({ "type": metadata_type(m), "help": m.help, "unit": m.unit }),
            );
        }
    }
    let limits = ["limit", "limit_per_metric"];
    let (peers, warnings) =
        cluster_face::peer_data(&service, &headers, "/api/v1/metadata", &params, &limits).await;
    for peer in peers {
        let Value::Object(families) = peer else {
            continue;
        };
        for (family, entries) in families {
            let Value::Array(entries) = entries else {
                continue;
            };
            entries.into_iter().for_each(|entry| add(&family, entry));
        }
    }
    let mut data = Map::new();
    for (name, entries) in merged {
        if limit >= 0 && data.len() as i64 >= limit {
            break;
        }
        data.insert(name, Value::Array(entries));
    }
    with_warnings(Value::Object(data), &warnings)
}

/// A success answer, with the cluster's `warnings` if there are any.
fn with_warnings(data: Value, warnings: &[String]) -> Response {
    if warnings.is_empty() {
        return api_success(data);
    }
    let warnings: Vec<&str> = warnings.iter().map(String::as_str).collect();
    api_success_with_warnings(data, &warnings)
}

/// The `type` the metadata APIs report: Prometheus says `unknown` for `untyped`.
pub fn metadata_type(m: &crate::exposition::MetricMetadata) -> &'static str {
    match m.kind.as_str() {
        "untyped" => "unknown",
        other => other,
    }
}

/// `GET /api/v1/targets/metadata?match_target=&metric=&limit=`: metadata per target
/// (in a cluster, every process's targets: `cluster_face`).
pub async fn targets_metadata(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let selector = match params.get("match_target").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match crate::api::federate::parse_selector(m) {
            Ok(s) => Some(s),
            Err(e) => {
                return api_error(
                    ErrorType::BadData,
                    &format!("invalid parameter \"match_target\": {e}"),
                )
            }
        },
    };
    let limit = match params.get("limit").filter(|v| !v.is_empty()) {
        None => -1,
        Some(v) => match v.parse::<i64>() {
            Ok(l) => l,
            Err(_) => {
                return api_error(
                    ErrorType::BadData,
                    &format!("invalid parameter \"limit\": {v:?}"),
                )
            }
        },
    };
    let metric = params.get("metric").filter(|m| !m.is_empty());
    let mut out = Vec::new();
    for target in service.scrapes.targets() {
        // As in Prometheus 2.42, `limit` is checked per target, before its entries.
        if limit >= 0 && out.len() as i64 >= limit {
            break;
        }
        if selector
            .as_ref()
            .is_some_and(|s| !s.matches(&target.spec.labels))
        {
            continue;
        }
        for m in target.health.metadata.iter() {
            if metric.is_some_and(|name| name != m.family) {
                continue;
            }
            // Prometheus leaves `metric` out when the request named it.
            let mut entry = Map::new();
            entry.insert(
                "target".into(),
                crate::api::query::labels_json(&target.spec.labels),
            );
            if metric.is_none() {
                entry.insert("metric".into(), json!(m.family));
            }
            entry.insert("type".into(), json!(metadata_type(m)));
            entry.insert("help".into(), json!(m.help));
            entry.insert("unit".into(), json!(m.unit));
            let entry = Value::Object(entry);
            out.push(entry);
        }
    }
    // The other processes' targets after this one's, `limit` checked per target as
    // above.
    let path = "/api/v1/targets/metadata";
    let (peers, warnings) = cluster_face::peer_data(&service, &headers, path, &params, &[]).await;
    let mut last_target = None;
    for entries in peers.into_iter().filter_map(|p| match p {
        Value::Array(entries) => Some(entries),
        _ => None,
    }) {
        for e in entries {
            let target = e["target"].clone();
            if last_target.as_ref() != Some(&target) {
                if limit >= 0 && out.len() as i64 >= limit {
                    break;
                }
                last_target = Some(target);
            }
            out.push(e);
        }
    }
    with_warnings(Value::Array(out), &warnings)
}

/// `GET /api/v1/status/config`: the configuration in force as YAML, secrets shown as
/// `<secret>`.
pub async fn config(State(service): State<Arc<Service>>) -> Response {
    let yaml = service.config.read().to_yaml();
    api_success(json!({ "yaml": yaml }))
}
