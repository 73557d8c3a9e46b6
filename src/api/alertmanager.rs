//! Alertmanager's API v2 for the built-in notifier: `POST /api/v2/alerts` (so
//! Prometheus and other promflow servers can send their alerts here, as to an
//! Alertmanager), `GET /api/v2/alerts`, and silences (`GET`/`POST /api/v2/silences`,
//! `GET`/`DELETE /api/v2/silence/{id}`), with Alertmanager 0.25's JSON shapes.
//!
//! Errors are a JSON string with the status Alertmanager uses (400 for bad input,
//! 404 for an unknown silence); without `--alertmanager.config.file` every endpoint
//! answers 404 with a message saying so.

use crate::api::params::Params;
use crate::notify::alert::{fingerprint_hex, format_time_api, from_postable, now_nanos};
use crate::notify::matcher::{parse_matchers, Matchers};
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

/// A boolean filter parameter (default true); `Err` is the message for a bad value.
fn flag(params: &Params, name: &str) -> Result<bool, String> {
    match params.get(name) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("{name}: expected true or false, got {other:?}")),
    }
}

/// `GET /api/v2/alerts?active=&silenced=&inhibited=&filter=&receiver=`.
pub async fn get_alerts(State(service): State<Arc<Service>>, params: Params) -> Response {
    let (active, silenced, inhibited) = match (
        flag(&params, "active"),
        flag(&params, "silenced"),
        flag(&params, "inhibited"),
    ) {
        (Ok(a), Ok(s), Ok(i)) => (a, s, i),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, e)
        }
    };
    let mut filter = Vec::new();
    for f in params.all("filter") {
        match parse_matchers(f) {
            Ok(m) => filter.extend(m),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    let filter = Matchers::sorted(filter);
    let receiver = match params
        .get("receiver")
        .map(|r| regex::Regex::new(&format!("^(?:{r})$")))
    {
        None => None,
        Some(Ok(re)) => Some(re),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("receiver: {e}")),
    };
    let now = now_nanos();
    let Some(mut list) = service.builtin_notifier.with_dispatcher(|d| d.list(now)) else {
        return not_configured();
    };
    list.sort_by_key(|s| fingerprint_hex(s.alert.fingerprint()));
    let out: Vec<Value> = list
        .into_iter()
        .filter(|s| !s.alert.resolved_at(now))
        .filter(|s| filter.matches(&s.alert.labels))
        .filter(|s| receiver.as_ref().is_none_or(|re| s.receivers.iter().any(|r| re.is_match(r))))
        .filter(|s| {
            let muted = !s.inhibited_by.is_empty() || !s.silenced_by.is_empty();
            (active || muted)
                && (silenced || s.silenced_by.is_empty())
                && (inhibited || s.inhibited_by.is_empty())
        })
        .map(|s| {
            let muted = !s.inhibited_by.is_empty() || !s.silenced_by.is_empty();
            json!({
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
            })
        })
        .collect();
    Json(Value::Array(out)).into_response()
}

/// `GET /api/v2/silences`.
pub async fn get_silences(State(service): State<Arc<Service>>) -> Response {
    let now = now_nanos();
    match service.builtin_notifier.with_dispatcher(|d| {
        d.silences
            .list()
            .map(|s| s.to_json(now))
            .collect::<Vec<_>>()
    }) {
        Some(list) => Json(Value::Array(list)).into_response(),
        None => not_configured(),
    }
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
        Some(Err(e)) => error(StatusCode::BAD_REQUEST, e),
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

/// `DELETE /api/v2/silence/{id}`: expires it.
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
        Some(Err(e)) if e.contains("not found") => error(StatusCode::NOT_FOUND, e),
        Some(Err(e)) => error(StatusCode::BAD_REQUEST, e),
    }
}
