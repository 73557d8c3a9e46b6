//! `GET /api/v1/targets`: the active and dropped targets, in Prometheus 2.42's shape.
//!
//! Contract: `activeTargets` lists every scraped target with `discoveredLabels`,
//! `labels`, `scrapePool`, `scrapeUrl`, `globalUrl`, `lastError`, `lastScrape`
//! (RFC 3339, `0001-01-01T00:00:00Z` before the first scrape),
//! `lastScrapeDuration` (seconds), `health` (`up`, `down`, `unknown`),
//! `scrapeInterval` and `scrapeTimeout`; `droppedTargets` lists the discovered labels
//! of targets relabeling dropped. `?state=active|dropped|any` (default any) empties
//! the list not asked for, as Prometheus does. Pools are sorted by name, targets in
//! a pool by URL. In a cluster, `activeTargets` gathers every process's targets
//! (`cluster_face`); each process scrapes its own share, and all drop the same ones.
//!
//! `GET /api/v1/targets/relabel_steps?scrapePool=<job>&labels=<JSON object>` (as
//! Prometheus 3.x, for its UI): what each of the pool's `relabel_configs` leaves of
//! the given discovered labels — `{"steps": [{"rule", "output", "keep"}]}` — so a
//! dropped target shows which step dropped it.

use crate::api::cluster_face;
use crate::config::format_duration;
use crate::service::Service;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The query parameters of `/api/v1/targets`.
#[derive(Deserialize)]
pub struct TargetsQuery {
    state: Option<String>,
}

/// Handles `GET /api/v1/targets`.
pub async fn targets(
    State(service): State<Arc<Service>>,
    Query(query): Query<TargetsQuery>,
    headers: HeaderMap,
) -> Response {
    let state = query.state.unwrap_or_default().to_ascii_lowercase();
    let (show_active, show_dropped) = match state.as_str() {
        "" | "any" => (true, true),
        "active" => (true, false),
        "dropped" => (false, true),
        other => {
            let body = json!({
                "status": "error",
                "errorType": "bad_data",
                "error": format!("invalid state {other:?}: use active, dropped or any"),
            });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let host = global_host();
    let mut active: Vec<Value> = if show_active {
        service
            .scrapes
            .targets()
            .into_iter()
            .map(|t| {
                let spec = &t.spec;
                json!({
                    "discoveredLabels": spec.discovered_labels,
                    "labels": spec.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                    "scrapePool": spec.job,
                    "scrapeUrl": spec.url,
                    "globalUrl": global_url(&spec.url, &host),
                    "lastError": t.health.last_error,
                    "lastScrape": rfc3339_ms(t.health.last_scrape_ms),
                    "lastScrapeDuration": t.health.last_duration.as_secs_f64(),
                    "health": t.health.health,
                    "scrapeInterval": format_duration(spec.interval),
                    "scrapeTimeout": format_duration(spec.timeout),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    if show_active && !cluster_face::local_only(&service, &headers) {
        let (peers, _unanswered) =
            cluster_face::gather(&service, "/api/v1/targets?state=active").await;
        for peer in peers {
            if let Some(theirs) = peer["data"]["activeTargets"].as_array() {
                active.extend(theirs.iter().cloned());
            }
        }
        let key = |t: &Value| (t["scrapePool"].to_string(), t["scrapeUrl"].to_string());
        active.sort_by_key(key);
    }
    let dropped: Vec<Value> = if show_dropped {
        service
            .dropped_targets
            .read()
            .iter()
            .map(|d| json!({ "discoveredLabels": d.discovered_labels }))
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(json!({
        "status": "success",
        "data": { "activeTargets": active, "droppedTargets": dropped },
    }))
    .into_response()
}

/// The host name other machines know this one by (Prometheus's default external URL
/// host): the kernel's host name.
fn global_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `url` with a loopback host (`127.0.0.1`, `localhost`, `::1`) replaced by `host`,
/// as Prometheus's `globalUrl`.
pub fn global_url(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (hostname, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let bare = hostname.trim_start_matches('[').trim_end_matches(']');
    if !matches!(bare, "127.0.0.1" | "localhost" | "::1") {
        return url.to_string();
    }
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC, fractional seconds without
/// trailing zeros (Go's `RFC3339Nano`); 0 is Go's zero time.
pub fn rfc3339_ms(ms: i64) -> String {
    if ms <= 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    if millis != 0 {
        let fraction = format!("{millis:03}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_like_go() {
        assert_eq!(rfc3339_ms(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(rfc3339_ms(951_782_400_120), "2000-02-29T00:00:00.12Z");
        assert_eq!(rfc3339_ms(1_700_000_000_005), "2023-11-14T22:13:20.005Z");
    }

    #[test]
    fn global_url_names_this_host_instead_of_loopback() {
        assert_eq!(
            global_url("http://127.0.0.1:9100/metrics", "box"),
            "http://box:9100/metrics"
        );
        assert_eq!(
            global_url("http://localhost:9100/metrics?a=b", "box"),
            "http://box:9100/metrics?a=b"
        );
        assert_eq!(global_url("http://[::1]:80/m", "box"), "http://box:80/m");
        assert_eq!(
            global_url("http://127.0.0.2:9100/metrics", "box"),
            "http://127.0.0.2:9100/metrics"
        );
    }
}

/// The query parameters of `/api/v1/targets/relabel_steps`.
#[derive(Deserialize)]
pub struct RelabelStepsQuery {
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
    labels: Option<String>,
}

/// Handles `GET /api/v1/targets/relabel_steps`.
pub async fn relabel_steps(
    State(service): State<Arc<Service>>,
    Query(query): Query<RelabelStepsQuery>,
) -> Response {
    use crate::api::response::{api_error, ErrorType};
    let Some(pool) = query.scrape_pool.filter(|p| !p.is_empty()) else {
        return api_error(ErrorType::BadData, "no scrapePool given");
    };
    let labels: std::collections::BTreeMap<String, String> =
        match serde_json::from_str(query.labels.as_deref().unwrap_or("")) {
            Ok(labels) => labels,
            Err(e) => {
                return api_error(ErrorType::BadData, &format!("error parsing labels: {e}"));
            }
        };
    let config = service.config.read().clone();
    let Some(job) = config.scrape_configs.iter().find(|j| j.job_name == pool) else {
        return api_error(
            ErrorType::BadData,
            &format!("scrape pool {pool:?} not found"),
        );
    };
    let input = dataflows::Labels::from_pairs(labels.into_iter().collect());
    let steps: Vec<Value> = job
        .relabel_configs
        .iter()
        .zip(crate::relabel::steps(&job.relabel_configs, &input))
        .map(|(rule, (output, keep))| {
            let mut r = serde_json::Map::new();
            if !rule.source_labels.is_empty() {
                r.insert("sourceLabels".into(), json!(rule.source_labels));
            }
            r.insert("separator".into(), json!(rule.separator));
            r.insert("regex".into(), json!(rule.regex_source));
            if rule.modulus != 0 {
                r.insert("modulus".into(), json!(rule.modulus));
            }
            if !rule.target_label.is_empty() {
                r.insert("targetLabel".into(), json!(rule.target_label));
            }
            r.insert("replacement".into(), json!(rule.replacement));
            r.insert("action".into(), json!(rule.action.as_str()));
            json!({ "rule": r, "output": output, "keep": keep })
        })
        .collect();
    axum::Json(json!({ "status": "success", "data": { "steps": steps } })).into_response()
}
