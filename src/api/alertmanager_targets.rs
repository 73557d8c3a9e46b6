//! `GET /api/v1/alertmanagers`: the Alertmanagers alerts are sent to, in Prometheus
//! 2.42's shape (not to be confused with [`super::alertmanager`], the Alertmanager API
//! that the built-in notifier serves).
//!
//! Contract: `{"activeAlertmanagers": [{"url": …}], "droppedAlertmanagers":
//! [{"url": …}]}`: every resolved Alertmanager URL of every `alerting.alertmanagers[]`
//! entry (in config order, then discovery order), and the URLs (before relabeling) of
//! the targets `relabel_configs` dropped; see `crate::notifier::alertmanagers`.

use crate::api::response::api_success;
use crate::service::Service;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// Handles `GET /api/v1/alertmanagers`.
pub async fn alertmanagers(State(service): State<Arc<Service>>) -> Response {
    let sets = service.notifier.alertmanagers();
    let list = |urls: &mut dyn Iterator<Item = &String>| -> Value {
        urls.map(|url| json!({ "url": url })).collect()
    };
    api_success(json!({
        "activeAlertmanagers": list(&mut sets.iter().flat_map(|s| &s.active)),
        "droppedAlertmanagers": list(&mut sets.iter().flat_map(|s| &s.dropped)),
    }))
}
