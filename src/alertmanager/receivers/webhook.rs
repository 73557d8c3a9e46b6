//! Webhooks: the JSON message of Alertmanager 0.25's `notify/webhook` (version 4):
//! the template data plus `version`, `groupKey` and `truncatedAlerts`, with at most
//! `max_alerts` alerts.

use super::Request;
use crate::alertmanager::alert::{format_time, ZERO_TIME};
use crate::alertmanager::config::WebhookConfig;
use crate::alertmanager::template::Data;
use serde_json::{json, Value};

/// The webhook message for `data`.
pub fn message(data: &Data, group_key: &str, max_alerts: u64) -> Value {
    let total = data.alerts.len();
    let data = if max_alerts > 0 && (max_alerts as usize) < total {
        data.truncated(max_alerts as usize)
    } else {
        data.clone()
    };
    let alerts: Vec<Value> = data
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": format_time(a.starts_at),
                "endsAt": a.ends_at.map_or(ZERO_TIME.to_string(), format_time),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "receiver": data.receiver,
        "status": data.status,
        "alerts": alerts,
        "groupLabels": data.group_labels,
        "commonLabels": data.common_labels,
        "commonAnnotations": data.common_annotations,
        "externalURL": data.external_url,
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": total - data.alerts.len(),
    })
}

/// The POST for `data`.
pub fn request(c: &WebhookConfig, data: &Data, group_key: &str) -> Request {
    Request {
        url: c.url.expose().to_string(),
        content_type: "application/json",
        body: serde_json::to_vec(&message(data, group_key, c.max_alerts)).unwrap_or_default(),
    }
}
