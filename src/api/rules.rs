//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's JSON shapes.
//!
//! Both read the rule manager's state; `type=alert|record` filters rules. Alert values
//! are formatted like Prometheus (`strconv.FormatFloat(v, 'e', -1, 64)`), times as
//! RFC 3339. Groups of the config's rule files and groups registered over HTTP are
//! listed together; each group has `origin`: `file`, or `api` (its `file` is then its
//! namespace). Asked for `application/yaml`, `/api/v1/rules` answers the registered
//! groups' definitions instead ([`crate::api::rules_admin`]).

use crate::api::params::Params;
use crate::api::query::labels_json;
use crate::api::response::{api_error, api_success, go_number, ErrorType};
use crate::rules::alert::{Alert, AlertState};
use crate::rules::file::RuleKind;
use crate::service::Service;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use dataflows::go_float::format_e;
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// `2024-01-01T00:20:00.123Z`; the zero time for "never", as Go prints it.
fn time_json(ms: i64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn alert_json(a: &Alert) -> Json {
    let mut j = json!({
        "labels": labels_json(&a.labels),
        "annotations": a.payload,
        "state": a.state.as_str(),
        "activeAt": time_json(a.active_at_ms),
        "value": format_e(a.value),
    });
    if let Some(since) = a.keep_firing_since_ms {
        j["keepFiringSince"] = json!(time_json(since));
    }
    j
}

/// `GET /api/v1/rules`.
pub async fn rules(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    params: Params,
) -> Response {
    let forwarded = crate::api::cluster_face::to_rule_host(
        &service,
        axum::http::Method::GET,
        &uri,
        &headers,
        Default::default(),
    );
    if let Some(answer) = forwarded.await {
        return answer;
    }
    let wants_yaml = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/yaml"));
    if wants_yaml {
        return crate::api::rules_admin::get_all(&service);
    }
    let filter = match params.get("type") {
        None | Some("") => None,
        Some("alert") => Some(RuleKind::Alerting),
        Some("record") => Some(RuleKind::Recording),
        Some(other) => {
            return api_error(
                ErrorType::BadData,
                &format!("invalid parameter \"type\": not supported value {other:?}"),
            )
        }
    };
    let groups = service.rules.with_groups(|g| {
        let rules: Vec<Json> = g
            .rules
            .iter()
            .filter(|r| filter.as_ref().is_none_or(|k| *k == r.rule.kind))
            .map(|r| {
                let health = if !r.evaluated {
                    "unknown"
                } else if r.last_error.is_empty() {
                    "ok"
                } else {
                    "err"
                };
                let mut j = json!({
                    "name": r.rule.name,
                    "query": r.rule.query,
                    "labels": r.rule.labels,
                    "health": health,
                    "evaluationTime": r.eval_duration.as_secs_f64(),
                    "lastEvaluation": time_json(r.last_eval_ms),
                });
                if !r.last_error.is_empty() {
                    j["lastError"] = json!(r.last_error);
                }
                match &r.alerts {
                    Some(state) => {
                        j["state"] = json!(state.rule_state().as_str());
                        j["duration"] = go_number(r.rule.for_.as_secs_f64());
                        j["keepFiringFor"] = go_number(r.rule.keep_firing_for.as_secs_f64());
                        j["annotations"] = json!(r.rule.annotations);
                        j["alerts"] = Json::Array(
                            state
                                .alerts()
                                .filter(|a| a.state != AlertState::Inactive)
                                .map(alert_json)
                                .collect(),
                        );
                        j["type"] = json!("alerting");
                    }
                    None => {
                        j["type"] = json!("recording");
                        // `omitempty` on a recording rule's labels in Prometheus.
                        if r.rule.labels.is_empty() {
                            j.as_object_mut().map(|o| o.remove("labels"));
                        }
                    }
                }
                j
            })
            .collect();
        let origin = if service
            .rule_registry
            .is_registered(&g.group.file, &g.group.name)
        {
            "api"
        } else {
            "file"
        };
        json!({
            "name": g.group.name,
            "file": g.group.file.display().to_string(),
            "origin": origin,
            "rules": rules,
            "interval": go_number(g.interval.as_secs_f64()),
            "limit": g.group.limit,
            "evaluationTime": g.eval_duration.as_secs_f64(),
            "lastEvaluation": time_json(g.last_eval_ms),
        })
    });
    api_success(json!({ "groups": groups }))
}

/// `GET /api/v1/alerts`: every pending or firing alert.
pub async fn alerts(State(service): State<Arc<Service>>, uri: axum::http::Uri) -> Response {
    if let Some(answer) = crate::api::cluster_face::from_rule_host(&service, &uri).await {
        return answer;
    }
    let mut alerts = Vec::new();
    service.rules.with_groups(|g| {
        for r in &g.rules {
            if let Some(state) = &r.alerts {
                alerts.extend(
                    state
                        .alerts()
                        .filter(|a| a.state != AlertState::Inactive)
                        .map(alert_json),
                );
            }
        }
    });
    api_success(json!({ "alerts": alerts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_times_format_like_prometheus() {
        assert_eq!(format_e(95.0), "9.5e+01");
        assert_eq!(format_e(1.0), "1e+00");
        assert_eq!(format_e(0.001), "1e-03");
        assert_eq!(time_json(1_704_068_400_000), "2024-01-01T00:20:00Z");
        assert_eq!(time_json(1_704_068_400_123), "2024-01-01T00:20:00.123Z");
    }
}
