//! VictorOps (Splunk On-Call) REST endpoint: the event of Alertmanager 0.25's
//! `notify/victorops`.
//!
//! One JSON object of strings POSTed to `<api_url><api_key>/<routing_key>`:
//! `message_type` (the entry's, if `INFO`, `WARNING` or `CRITICAL`, else `CRITICAL`
//! while firing; `RECOVERY` once resolved), `entity_id` (the hash of the group key),
//! `entity_display_name`, `state_message` (cut to 20480 characters),
//! `monitoring_tool`, and the entry's `custom_fields`. The routing key and all texts
//! are templates; `api_key_file` is read at each send and trimmed. Only 5xx and
//! transport errors may be retried.
//!
//! Config: `send_resolved` true; `api_url` from the entry, else
//! `global.victorops_api_url`, else Alertmanager's default, with a `/` added to its
//! path; `api_key`/`api_key_file` from the entry, else from
//! `global.victorops_api_key`/`_file`; `routing_key` required; custom fields may not
//! reuse the fixed fields' names.

use super::ReceiverKind;
use super::{
    group_key_hash, truncate_runes, Call, Delivery, Expander, KeySource, RawGlobalApi, RequestError,
};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{base_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{insert_key, notifier_head, sorted_map, string, url_of};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::collections::BTreeMap;
use std::path::Path;

/// Alertmanager 0.25's default `global.victorops_api_url`.
pub const DEFAULT_API_URL: &str =
    "https://alert.victorops.com/integrations/generic/20131114/alert/";

const MAX_STATE_MESSAGE_RUNES: usize = 20480;

/// Custom fields that would overwrite the event's own.
const RESERVED_FIELDS: [&str; 7] = [
    "routing_key",
    "message_type",
    "state_message",
    "entity_display_name",
    "monitoring_tool",
    "entity_id",
    "entity_state",
];

/// The event for `data` in group `group_key`.
pub fn request(
    c: &VictoropsConfig,
    templates: &Templates,
    data: &Data,
    group_key: &str,
) -> Result<Delivery, RequestError> {
    let mut t = Expander::new(templates, data);
    let api_key = c
        .api_key
        .read()
        .map_err(|e| RequestError::from(e).context("failed to read API key from file"))?;
    let mut url = c.api_url.clone();
    url.set_path(&format!(
        "{}{api_key}/{}",
        url.path(),
        t.expand(&c.routing_key)
    ));
    let mut message_type = t.expand(&c.message_type);
    if data.status == "resolved" {
        message_type = "RECOVERY".into();
    } else if !["INFO", "WARNING", "CRITICAL"].contains(&message_type.as_str()) {
        message_type = "CRITICAL".into();
    }
    let mut event = BTreeMap::new();
    event.insert("message_type".to_string(), message_type);
    event.insert("entity_id".into(), group_key_hash(group_key));
    event.insert(
        "entity_display_name".into(),
        t.expand(&c.entity_display_name),
    );
    event.insert(
        "state_message".into(),
        truncate_runes(t.expand(&c.state_message), MAX_STATE_MESSAGE_RUNES),
    );
    event.insert("monitoring_tool".into(), t.expand(&c.monitoring_tool));
    for (k, v) in &c.custom_fields {
        event.insert(k.clone(), t.expand(v));
    }
    t.finish()?;
    Ok(Delivery::Calls(vec![Call::post_json(
        url.to_string(),
        serde_json::to_vec(&event).unwrap_or_default(),
        &[],
    )]))
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of a VictorOps config (`DefaultVictorOpsConfig`).
pub mod defaults {
    /// `message_type`.
    pub const MESSAGE_TYPE: &str = "CRITICAL";
    /// `state_message`.
    pub const STATE_MESSAGE: &str = r#"{{ template "victorops.default.state_message" . }}"#;
    /// `entity_display_name`.
    pub const ENTITY_DISPLAY_NAME: &str =
        r#"{{ template "victorops.default.entity_display_name" . }}"#;
    /// `monitoring_tool`.
    pub const MONITORING_TOOL: &str = r#"{{ template "victorops.default.monitoring_tool" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawVictorops {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
    pub(crate) api_key: Option<String>,
    pub(crate) api_key_file: Option<String>,
    pub(crate) api_url: Option<String>,
    pub(crate) routing_key: Option<String>,
    pub(crate) message_type: Option<String>,
    pub(crate) state_message: Option<String>,
    pub(crate) entity_display_name: Option<String>,
    pub(crate) monitoring_tool: Option<String>,
    pub(crate) custom_fields: Option<BTreeMap<String, String>>,
}

/// `victorops_configs` entry; text fields are templates.
#[derive(Clone, Debug)]
pub struct VictoropsConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// The API key.
    pub api_key: KeySource,
    /// Base URL, its path ending in `/`.
    pub api_url: reqwest::Url,
    /// Template.
    pub routing_key: String,
    /// Template.
    pub message_type: String,
    /// Template.
    pub state_message: String,
    /// Template.
    pub entity_display_name: String,
    /// Template.
    pub monitoring_tool: String,
    /// Templates.
    pub custom_fields: BTreeMap<String, String>,
}

/// Resolves one `victorops_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawVictorops,
    globals: &Globals,
    global: &RawGlobalApi,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> VictoropsConfig {
    let routing_key = c.routing_key.clone().unwrap_or_default();
    if routing_key.is_empty() {
        p.push(
            path.key("routing_key"),
            "missing Routing key in VictorOps config",
        );
    }
    let custom_fields = c.custom_fields.clone().unwrap_or_default();
    for field in RESERVED_FIELDS {
        if custom_fields.contains_key(field) {
            p.push(
                path.key("custom_fields").key(field),
                format!("victorOps config contains custom field {field} which cannot be used as it conflicts with the fixed/static fields"),
            );
        }
    }
    let api_key = global.key_for(
        &c.api_key,
        &c.api_key_file,
        "no global VictorOps API Key set",
        base,
        path,
        p,
    );
    let api_url = base_url(
        &c.api_url,
        &global.api_url,
        DEFAULT_API_URL,
        &path.key("api_url"),
        p,
    );
    VictoropsConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
        api_key,
        api_url,
        routing_key,
        message_type: template_or(&c.message_type, defaults::MESSAGE_TYPE),
        state_message: template_or(&c.state_message, defaults::STATE_MESSAGE),
        entity_display_name: template_or(&c.entity_display_name, defaults::ENTITY_DISPLAY_NAME),
        monitoring_tool: template_or(&c.monitoring_tool, defaults::MONITORING_TOOL),
        custom_fields,
    }
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults, the global key and URL filled in, keys as `<secret>`.
pub(crate) fn show(c: &YamlValue, global: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    insert_key(
        &mut m,
        c,
        ["api_key", "api_key_file"],
        global,
        ["victorops_api_key", "victorops_api_key_file"],
    );
    let url = url_of(
        c,
        "api_url",
        global,
        "victorops_api_url",
        DEFAULT_API_URL,
        true,
    );
    m.insert("api_url".into(), url.into());
    for (key, default) in [
        ("routing_key", ""),
        ("message_type", defaults::MESSAGE_TYPE),
        ("state_message", defaults::STATE_MESSAGE),
        ("entity_display_name", defaults::ENTITY_DISPLAY_NAME),
        ("monitoring_tool", defaults::MONITORING_TOOL),
    ] {
        let text = c.get(key).and_then(string);
        m.insert(key.into(), text.as_deref().unwrap_or(default).into());
    }
    if let Some(f) = c.get("custom_fields").and_then(sorted_map) {
        m.insert("custom_fields".into(), f);
    }
    m
}

impl ReceiverKind for VictoropsConfig {
    type Raw = RawVictorops;
    const NAME: &'static str = "victorops";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawVictorops,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> VictoropsConfig {
        resolve(raw, global, &global.raw.victorops(), base, path, p)
    }

    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        group_key: &str,
    ) -> Result<Delivery, RequestError> {
        request(self, templates, data, group_key)
    }

    fn http_config(&self) -> Option<&HttpClientConfig> {
        Some(&self.http_config)
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn show(entry: &YamlValue, global: &YamlValue) -> Mapping {
        show(entry, global)
    }
}
