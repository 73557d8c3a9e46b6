//! Alertmanager's API v2 for the built-in notifier: `POST /api/v2/alerts` (so
//! Prometheus and other promflow servers can send their alerts here, as to an
//! Alertmanager), `GET /api/v2/alerts`, `GET /api/v2/alerts/groups`, silences
//! (`GET`/`POST /api/v2/silences`, `GET`/`DELETE /api/v2/silence/{id}`), `GET
//! /api/v2/status` and `GET /api/v2/receivers`, with Alertmanager 0.25's JSON shapes,
//! so Alertmanager's clients (`amtool`, Grafana's Alertmanager data source) work
//! against it.
//!
//! Errors are a JSON string with the status Alertmanager uses (400 for bad input,
//! 404 for an unknown silence); without `--alertmanager.config.file` every endpoint
//! answers 404 with a message saying so.

use crate::alertmanager::alert::{
    fingerprint_hex, format_time_api, from_postable, now_nanos, Nanos,
};
use crate::alertmanager::dispatcher::AlertStatus;
use crate::alertmanager::matcher::{parse_matchers, Matchers};
use crate::alertmanager::silence::SilenceError;
use crate::api::params::Params;
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(Value::String(message.into()))).into_response()
}

fn not_configured() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "the built-in notifier is not enabled (start promflow with --alertmanager.config.file)",
    )
}

/// `POST /api/v2/alerts`: valid alerts are accepted even when others are refused.
pub async fn post_alerts(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let notifier = &service.builtin_notifier;
    if !notifier.is_enabled() {
        return not_configured();
    }
    let list: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(Value::Array(list)) => list,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "body must be a JSON array of alerts",
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let now = now_nanos();
    let timeout = notifier.resolve_timeout().as_nanos() as i64;
    let mut valid = Vec::new();
    let mut problems = Vec::new();
    for (i, v) in list.iter().enumerate() {
        match from_postable(v, now, timeout) {
            Ok(a) => valid.push(a),
            Err(e) => problems.push(format!("alert {i}: {e}")),
        }
    }
    notifier.count_invalid(problems.len());
    notifier.put(valid, now);
    if problems.is_empty() {
        StatusCode::OK.into_response()
    } else {
        error(StatusCode::BAD_REQUEST, problems.join("; "))
    }
}

/// Why the filters of an alert listing were refused (a 400, see [`alert_query_error`]).
#[derive(Debug, thiserror::Error)]
enum AlertQueryError {
    #[error("{name}: expected true or false, got {value:?}")]
    Flag { name: &'static str, value: String },
    #[error(transparent)]
    Filter(#[from] crate::alertmanager::matcher::MatcherError),
    #[error("receiver: {0}")]
    Receiver(regex::Error),
}

fn alert_query_error(e: AlertQueryError) -> Response {
    error(StatusCode::BAD_REQUEST, e.to_string())
}

/// A boolean filter parameter (default true).
fn flag(params: &Params, name: &'static str) -> Result<bool, AlertQueryError> {
    match params.get(name) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(AlertQueryError::Flag {
            name,
            value: other.to_string(),
        }),
    }
}

/// The filters of `GET /api/v2/alerts` and `GET /api/v2/alerts/groups`.
struct AlertQuery {
    active: bool,
    silenced: bool,
    inhibited: bool,
    filter: Matchers,
    receiver: Option<regex::Regex>,
}

impl AlertQuery {
    /// Reads `active`, `silenced`, `inhibited` (default true), `filter` (matcher
    /// lists, all must match) and `receiver` (an anchored regex).
    fn from_params(params: &Params) -> Result<AlertQuery, AlertQueryError> {
        let mut filter = Vec::new();
        for f in params.all("filter") {
            filter.extend(parse_matchers(f)?);
        }
        let receiver = params
            .get("receiver")
            .map(|r| regex::Regex::new(&format!("^(?:{r})$")))
            .transpose()
            .map_err(AlertQueryError::Receiver)?;
        Ok(AlertQuery {
            active: flag(params, "active")?,
            silenced: flag(params, "silenced")?,
            inhibited: flag(params, "inhibited")?,
            filter: Matchers::sorted(filter),
            receiver,
        })
    }

    /// Whether the alert passes the state and label filters at `now`.
    fn keeps(&self, s: &AlertStatus, now: Nanos) -> bool {
        let muted = !s.inhibited_by.is_empty() || !s.silenced_by.is_empty();
        !s.alert.resolved_at(now)
            && self.filter.matches(&s.alert.labels)
            && (self.active || muted)
            && (self.silenced || s.silenced_by.is_empty())
            && (self.inhibited || s.inhibited_by.is_empty())
    }

    fn receiver_matches(&self, name: &str) -> bool {
        self.receiver.as_ref().is_none_or(|re| re.is_match(name))
    }
}

/// The v2 `GettableAlert` JSON (`generatorURL` left out when empty, as
/// Alertmanager's `omitempty` does).
fn gettable_alert(s: &AlertStatus) -> Value {
    let muted = !s.inhibited_by.is_empty() || !s.silenced_by.is_empty();
    let mut alert = json!({
        "annotations": s.alert.annotations,
        "endsAt": format_time_api(s.alert.ends_at),
        "fingerprint": fingerprint_hex(s.alert.fingerprint()),
        "receivers": s.receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "startsAt": format_time_api(s.alert.starts_at),
        "status": {
            "inhibitedBy": s.inhibited_by.iter().map(|fp| fingerprint_hex(*fp)).collect::<Vec<_>>(),
            "silencedBy": s.silenced_by,
            "state": if muted { "suppressed" } else { "active" },
        },
        "updatedAt": format_time_api(s.alert.updated_at),
        "generatorURL": s.alert.generator_url,
        "labels": s.alert.labels,
    });
    if s.alert.generator_url.is_empty() {
        if let Some(o) = alert.as_object_mut() {
            o.remove("generatorURL");
        }
    }
    alert
}

/// `GET /api/v2/alerts?active=&silenced=&inhibited=&filter=&receiver=`.
pub async fn get_alerts(State(service): State<Arc<Service>>, params: Params) -> Response {
    let query = match AlertQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => return alert_query_error(e),
    };
    let now = now_nanos();
    let Some(mut list) = service.builtin_notifier.with_dispatcher(|d| d.list(now)) else {
        return not_configured();
    };
    list.sort_by_key(|s| fingerprint_hex(s.alert.fingerprint()));
    let out: Vec<Value> = list
        .iter()
        .filter(|s| query.keeps(s, now))
        .filter(|s| s.receivers.iter().any(|r| query.receiver_matches(r)))
        .map(gettable_alert)
        .collect();
    Json(Value::Array(out)).into_response()
}

/// `GET /api/v2/alerts/groups?active=&silenced=&inhibited=&filter=&receiver=`: the
/// aggregation groups (`labels`, `receiver`, `alerts`) whose route's receiver
/// matches, with the alerts that pass the filters; groups left empty are dropped.
pub async fn get_alert_groups(State(service): State<Arc<Service>>, params: Params) -> Response {
    let query = match AlertQuery::from_params(&params) {
        Ok(q) => q,
        Err(e) => return alert_query_error(e),
    };
    let now = now_nanos();
    let Some(groups) = service
        .builtin_notifier
        .with_dispatcher(|d| d.group_list(now))
    else {
        return not_configured();
    };
    let out: Vec<Value> = groups
        .iter()
        .filter(|g| query.receiver_matches(&g.receiver))
        .filter_map(|g| {
            let alerts: Vec<Value> = g
                .alerts
                .iter()
                .filter(|s| query.keeps(s, now))
                .map(gettable_alert)
                .collect();
            (!alerts.is_empty()).then(|| {
                json!({
                    "alerts": alerts,
                    "labels": g.labels,
                    "receiver": {"name": g.receiver},
                })
            })
        })
        .collect();
    Json(Value::Array(out)).into_response()
}

/// The Alertmanager release whose API this implements; `versionInfo.version` says
/// it (clients such as `amtool` warn when it differs from theirs), promflow's own
/// version is the `revision`.
const API_VERSION: &str = "0.25.0";

/// `GET /api/v2/status`: Alertmanager's status with clustering disabled, the
/// config as Alertmanager shows it, the process start as `uptime`, and the version
/// (see [`API_VERSION`]).
pub async fn get_status(State(service): State<Arc<Service>>) -> Response {
    let Some(original) = service
        .builtin_notifier
        .with_dispatcher(|d| d.config().original.clone())
    else {
        return not_configured();
    };
    let started = (crate::process_stats::read().start_time_seconds * 1e9) as Nanos;
    Json(json!({
        "cluster": {"peers": [], "status": "disabled"},
        "config": {"original": original},
        "uptime": format_time_api(started),
        "versionInfo": {
            "branch": "promflow",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": env!("CARGO_PKG_VERSION"),
            "version": API_VERSION,
        },
    }))
    .into_response()
}

/// `GET /api/v2/receivers`: `[{"name": …}]` in config order.
pub async fn get_receivers(State(service): State<Arc<Service>>) -> Response {
    match service
        .builtin_notifier
        .with_dispatcher(|d| d.receiver_names())
    {
        Some(names) => {
            Json(names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()).into_response()
        }
        None => not_configured(),
    }
}

/// `GET /api/v2/silences?filter=`: see `Silences::query` for the filter and order.
pub async fn get_silences(State(service): State<Arc<Service>>, params: Params) -> Response {
    let mut filter = Vec::new();
    for f in params.all("filter") {
        match parse_matchers(f) {
            Ok(m) => filter.extend(m),
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    let now = now_nanos();
    match service.builtin_notifier.with_dispatcher(|d| {
        d.silences
            .query(&filter, now)
            .into_iter()
            .map(|s| s.to_json(now))
            .collect::<Vec<_>>()
    }) {
        Some(list) => Json(Value::Array(list)).into_response(),
        None => not_configured(),
    }
}

/// A silence error as Alertmanager 0.25 answers it: a bad or unknown silence in a
/// POST is a 400; expiring an unknown id is a 500 ("silence not found").
fn silence_error(e: SilenceError) -> Response {
    let status = match e {
        SilenceError::Invalid(_)
        | SilenceError::Matchers(_)
        | SilenceError::Time(_)
        | SilenceError::TimeRequired(_)
        | SilenceError::UnknownId(_) => StatusCode::BAD_REQUEST,
        SilenceError::NotFound => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// `POST /api/v2/silences`: creates or updates; answers `{"silenceID": …}`.
pub async fn post_silence(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    match service
        .builtin_notifier
        .with_silences(|silences, now| silences.post(&v, now))
    {
        None => not_configured(),
        Some(Ok(id)) => Json(json!({"silenceID": id})).into_response(),
        Some(Err(e)) => silence_error(e),
    }
}

/// `GET /api/v2/silence/{id}`.
pub async fn get_silence(State(service): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    let now = now_nanos();
    match service
        .builtin_notifier
        .with_dispatcher(|d| d.silences.get(&id).map(|s| s.to_json(now)))
    {
        None => not_configured(),
        Some(Some(s)) => Json(s).into_response(),
        Some(None) => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

/// `DELETE /api/v2/silence/{id}`: expires it; an unknown id is a 500 with "silence
/// not found", as in Alertmanager 0.25.
pub async fn delete_silence(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Response {
    match service
        .builtin_notifier
        .with_silences(|silences, now| silences.expire(&id, now))
    {
        None => not_configured(),
        Some(Ok(())) => StatusCode::OK.into_response(),
        Some(Err(e)) => silence_error(e),
    }
}
