//! The rules API: rule groups registered, read and removed over HTTP, in the shape of
//! the Cortex/Mimir ruler configuration API.
//!
//! - `PUT /api/v1/rules/{namespace}/{group}`: the body is one rule group (the group
//!   object of a rule file, `name` equal to `{group}`) in YAML or JSON. It is
//!   validated completely first ([`crate::rules::registry::validate_group`]): any
//!   problem answers 400 `bad_data` listing every problem with its body line, and
//!   nothing changes. A valid group is persisted, then installed: `202 Accepted`.
//! - `GET /api/v1/rules/{namespace}/{group}`: the group's definition as YAML;
//!   `GET /api/v1/rules/{namespace}`: `{namespace: [groups]}` as YAML;
//!   `GET /api/v1/rules` with `Accept: application/yaml`: every namespace (without
//!   it, `/api/v1/rules` is Prometheus's JSON listing, see [`crate::api::rules`]).
//!   404 `not_found` when there is nothing.
//! - `DELETE /api/v1/rules/{namespace}/{group}` and `DELETE /api/v1/rules/{namespace}`:
//!   202, or 404 when it was not registered.
//!
//! In a cluster (`--cluster.*`), every request is passed on to the process that
//! hosts the rules (the first; `api::cluster_face::to_rule_host`), so rule groups
//! registered on any process are evaluated, listed and removed there.
//!
//! Changes are refused with 403 `unavailable` unless `--web.enable-rules-api` is set.
//! Only the changed group is (re)installed: the rule manager keeps the state of every
//! other group. Deleting a group resolves its firing alerts: they are sent to the
//! Alertmanagers once more with `endsAt` = now, so receivers hear that they ended
//! (rather than waiting for the `endsAt` of their last firing notification).

use crate::api::cluster_face::{from_rule_host, to_rule_host};
use crate::api::response::{api_disabled, api_error, ApiError, ErrorType};
use crate::ingest::now_ms;
use crate::rules::alert::{Alert, AlertState};
use crate::rules::registry::validate_group;
use crate::rules::sinks::AlertSink;
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use serde_yaml_ng::{Mapping, Value};
use std::sync::Arc;

/// The content type of the YAML answers (Mimir's).
const YAML: &str = "application/yaml";

/// `PUT /api/v1/rules/{namespace}/{group}`.
pub async fn put_group(
    State(service): State<Arc<Service>>,
    Path((namespace, group)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refused) = refuse_unless_enabled(&service) {
        return refused;
    }
    let forwarded = to_rule_host(&service, Method::PUT, &uri, &headers, body.clone().into());
    if let Some(answer) = forwarded.await {
        return answer;
    }
    let registered = match validate_group(&namespace, &group, &body) {
        Ok(r) => r,
        Err(problems) => {
            return api_error(
                ErrorType::BadData,
                &format!("invalid rule group: {}", problems.join("; ")),
            )
        }
    };
    if service
        .config_rule_files()
        .iter()
        .any(|f| f.as_os_str() == namespace.as_str())
    {
        return api_error(
            ErrorType::BadData,
            &format!("namespace {namespace:?} is a rule file of the configuration"),
        );
    }
    if let Err(e) = service.rule_registry.put(&namespace, registered) {
        return ApiError::from(e).into_response();
    }
    service.apply_registered_rules().await;
    accepted()
}

/// `DELETE /api/v1/rules/{namespace}/{group}`.
pub async fn delete_group(
    State(service): State<Arc<Service>>,
    Path((namespace, group)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    delete(&service, &uri, &namespace, Some(&group)).await
}

/// `DELETE /api/v1/rules/{namespace}`.
pub async fn delete_namespace(
    State(service): State<Arc<Service>>,
    Path(namespace): Path<String>,
    uri: Uri,
) -> Response {
    delete(&service, &uri, &namespace, None).await
}

/// Removes one group of `namespace`, or all of them; resolves their firing alerts.
async fn delete(service: &Service, uri: &Uri, namespace: &str, group: Option<&str>) -> Response {
    if let Some(refused) = refuse_unless_enabled(service) {
        return refused;
    }
    let no_headers = HeaderMap::new();
    let forwarded = to_rule_host(service, Method::DELETE, uri, &no_headers, Bytes::new());
    if let Some(answer) = forwarded.await {
        return answer;
    }
    let firing = firing_alerts(service, namespace, group);
    let removed = match group {
        Some(group) => service.rule_registry.delete_group(namespace, group),
        None => service.rule_registry.delete_namespace(namespace),
    };
    match removed {
        Ok(true) => {
            service.apply_registered_rules().await;
            send_resolved(service, firing);
            accepted()
        }
        Ok(false) if group.is_some() => api_error(ErrorType::NotFound, "group does not exist"),
        Ok(false) => api_error(ErrorType::NotFound, "namespace does not exist"),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/v1/rules/{namespace}/{group}`.
pub async fn get_group(
    State(service): State<Arc<Service>>,
    Path((namespace, group)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    if let Some(answer) = from_rule_host(&service, &uri).await {
        return answer;
    }
    match service.rule_registry.definition(&namespace, &group) {
        Some(definition) => yaml(&definition),
        None => api_error(ErrorType::NotFound, "group does not exist"),
    }
}

/// `GET /api/v1/rules/{namespace}`.
pub async fn get_namespace(
    State(service): State<Arc<Service>>,
    Path(namespace): Path<String>,
    uri: Uri,
) -> Response {
    if let Some(answer) = from_rule_host(&service, &uri).await {
        return answer;
    }
    namespaces(service.rule_registry.definitions(Some(&namespace)))
}

/// `GET /api/v1/rules` asking for YAML: every registered namespace.
pub fn get_all(service: &Service) -> Response {
    namespaces(service.rule_registry.definitions(None))
}

fn namespaces(definitions: Mapping) -> Response {
    if definitions.is_empty() {
        return api_error(ErrorType::NotFound, "no rule groups found");
    }
    yaml(&Value::Mapping(definitions))
}

fn yaml(value: &Value) -> Response {
    match serde_yaml_ng::to_string(value) {
        Ok(text) => ([(header::CONTENT_TYPE, YAML)], text).into_response(),
        Err(e) => api_error(ErrorType::Internal, &e.to_string()),
    }
}

/// The firing alerts of the registered groups of `namespace` (one `group`, or all),
/// per rule expression.
fn firing_alerts(
    service: &Service,
    namespace: &str,
    group: Option<&str>,
) -> Vec<(String, Vec<Alert>)> {
    let mut out = Vec::new();
    service.rules.with_groups(|g| {
        let selected = g.group.file.as_os_str() == namespace
            && group.is_none_or(|name| name == g.group.name)
            && service
                .rule_registry
                .is_registered(&g.group.file, &g.group.name);
        if !selected {
            return;
        }
        for rule in &g.rules {
            let Some(state) = &rule.alerts else { continue };
            let firing: Vec<Alert> = state
                .alerts()
                .filter(|a| a.state == AlertState::Firing)
                .cloned()
                .collect();
            if !firing.is_empty() {
                out.push((rule.rule.query.clone(), firing));
            }
        }
    });
    out
}

/// Sends `alerts` (of removed rules) as resolved now.
fn send_resolved(service: &Service, alerts: Vec<(String, Vec<Alert>)>) {
    let now = now_ms();
    for (expr, alerts) in alerts {
        let resolved = alerts
            .into_iter()
            .map(|mut a| {
                a.core.state = AlertState::Inactive;
                a.core.resolved_at_ms = Some(now);
                a.last_sent_ms = Some(now);
                a
            })
            .collect();
        service.notifier.send(&expr, resolved);
    }
}

/// Mimir's answer to an accepted change.
fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "data": null})),
    )
        .into_response()
}

fn refuse_unless_enabled(service: &Service) -> Option<Response> {
    (!service.options.enable_rules_api).then(|| {
        api_disabled(
            "rules API disabled: start promflow with --web.enable-rules-api to change rule groups",
        )
    })
}
