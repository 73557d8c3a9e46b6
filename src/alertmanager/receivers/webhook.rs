//! Webhooks: the JSON message of Alertmanager 0.25's `notify/webhook` (version 4):
//! the template data plus `version`, `groupKey` and `truncatedAlerts`, with at most
//! `max_alerts` alerts.

use super::Request;
use super::{Delivery, ReceiverKind, RequestError};
use crate::alertmanager::alert::{format_time, ZERO_TIME};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config};
use crate::alertmanager::config_show::{notifier_head, string};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::{json, Value};
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::Path;

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

// ---------------------------------------------------------------------------
// Config

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWebhook {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) url: Option<String>,
    pub(crate) max_alerts: Option<u64>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
}

/// `webhook_configs` entry.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// Where to POST.
    pub url: Secret,
    /// At most this many alerts per message (0: all).
    pub max_alerts: u64,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
}

/// Resolves one `webhook_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawWebhook,
    globals: &Globals,
    base: &Path,
    cpath: &FieldPath,
    p: &mut Problems,
) -> WebhookConfig {
    let url = c.url.clone().unwrap_or_default();
    if url.is_empty() {
        p.push(
            cpath.key("url"),
            "one of url or url_file must be configured",
        );
    } else if let Err(e) = check_http_url(&url) {
        p.push(cpath.key("url"), e.to_string());
    }
    WebhookConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        url: Secret::new(url),
        max_alerts: c.max_alerts.unwrap_or(0),
        http_config: receiver_http_config(&c.http_config, globals, base, cpath, p),
    }
}

impl ReceiverKind for WebhookConfig {
    type Raw = RawWebhook;
    const NAME: &'static str = "webhook";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawWebhook,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> WebhookConfig {
        resolve(raw, global, base, path, p)
    }

    fn request(
        &self,
        _templates: &Templates,
        data: &Data,
        group_key: &str,
    ) -> Result<Delivery, RequestError> {
        Ok(Delivery::Http(request(self, data, group_key)))
    }

    fn http_config(&self) -> Option<&HttpClientConfig> {
        Some(&self.http_config)
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn show(entry: &YamlValue, _global: &YamlValue) -> Mapping {
        show(entry)
    }
}

/// An entry as Alertmanager 0.25 marshals it.
pub(crate) fn show(c: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    if let Some(url) = c.get("url").and_then(string) {
        m.insert("url".into(), url.into());
    }
    m.insert(
        "max_alerts".into(),
        c.get("max_alerts")
            .and_then(YamlValue::as_u64)
            .unwrap_or(0)
            .into(),
    );
    m
}
