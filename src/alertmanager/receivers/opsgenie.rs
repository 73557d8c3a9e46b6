//! OpsGenie's Alert API v2: the requests of Alertmanager 0.25's `notify/opsgenie`.
//!
//! While the group fires, `POST <api_url>v2/alerts` creates (or, by the same alias,
//! updates) an alert `{alias, message, description, details, source, responders,
//! tags, note, priority, entity, actions}` — the alias is the hash of the group key,
//! `message` is cut to 130 characters, `details` are the common labels overlaid with
//! the entry's `details`, `tags` and `actions` are comma-separated lists, responders
//! of type `teams` become one `team` responder per comma-separated name, and
//! responders that expand to nothing are dropped. With `update_alerts`, two more
//! requests follow: `PUT …/v2/alerts/<alias>/message?identifierType=alias` and
//! `…/description`. Once resolved, `POST …/v2/alerts/<alias>/close?identifierType=alias`
//! with `{source}`. Every request carries `Authorization: GenieKey <api_key>` (the key
//! is a template; `api_key_file` is read at each send, not trimmed, as Alertmanager
//! does). Requests go in order and stop at the first failure; 5xx and 429 may be
//! retried.
//!
//! Config: `send_resolved` true; `api_url` from the entry, else
//! `global.opsgenie_api_url`, else `https://api.opsgenie.com/`, with a `/` added to
//! its path; `api_key`/`api_key_file` from the entry, else from
//! `global.opsgenie_api_key`/`_file`; responder types checked (lower-cased) against
//! `team|teams|user|escalation|schedule` unless they are templates.

use super::ReceiverKind;
use super::{
    group_key_hash, truncate_runes, Call, Delivery, Expander, KeySource, RawGlobalApi,
    RequestError, Retrier,
};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{base_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{
    insert_key, insert_nonempty, insert_text, notifier_head, sorted_map, url_of,
};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::collections::BTreeMap;
use std::path::Path;

/// Alertmanager 0.25's default `global.opsgenie_api_url`.
pub const DEFAULT_API_URL: &str = "https://api.opsgenie.com/";

const MAX_MESSAGE_RUNES: usize = 130;
const RETRY_CODES: &[u16] = &[429];

/// The requests for `data` in group `group_key`.
pub fn request(
    c: &OpsgenieConfig,
    templates: &Templates,
    data: &Data,
    group_key: &str,
) -> Result<Delivery, RequestError> {
    let mut t = Expander::new(templates, data);
    let alias = group_key_hash(group_key);
    let url = |suffix: &str, by_alias: bool| {
        let mut u = c.api_url.clone();
        u.set_path(&format!("{}{suffix}", u.path()));
        if by_alias {
            u.query_pairs_mut().append_pair("identifierType", "alias");
        }
        u.to_string()
    };
    // (method, url, body)
    let mut requests: Vec<(reqwest::Method, String, Value)> = Vec::new();
    if data.status == "resolved" {
        requests.push((
            reqwest::Method::POST,
            url(&format!("v2/alerts/{alias}/close"), true),
            json!({"source": t.expand(&c.source)}),
        ));
    } else {
        let message = truncate_runes(t.expand(&c.message), MAX_MESSAGE_RUNES);
        let mut details: BTreeMap<String, String> = data.common_labels.clone();
        for (k, v) in &c.details {
            details.insert(k.clone(), t.expand(v));
        }
        let mut responders = Vec::new();
        for r in &c.responders {
            let [id, name, username, kind] =
                [&r.id, &r.name, &r.username, &r.kind].map(|f| t.expand(f));
            if [&id, &name, &username, &kind].iter().all(|s| s.is_empty()) {
                continue;
            }
            if kind == "teams" {
                for team in safe_split(&name) {
                    let team = t.expand(team);
                    responders.push(responder("", &team, "", &t.expand("team")));
                }
                continue;
            }
            responders.push(responder(&id, &name, &username, &kind));
        }
        let description = t.expand(&c.description);
        let mut m = Map::new();
        m.insert("alias".into(), json!(alias));
        m.insert("message".into(), json!(message));
        put_nonempty(&mut m, "description", &description);
        m.insert("details".into(), json!(details));
        m.insert("source".into(), json!(t.expand(&c.source)));
        if !responders.is_empty() {
            m.insert("responders".into(), Value::Array(responders));
        }
        let tags = t.expand(&c.tags);
        if !safe_split(&tags).is_empty() {
            m.insert("tags".into(), json!(safe_split(&tags)));
        }
        put_nonempty(&mut m, "note", &t.expand(&c.note));
        put_nonempty(&mut m, "priority", &t.expand(&c.priority));
        put_nonempty(&mut m, "entity", &t.expand(&c.entity));
        let actions = t.expand(&c.actions);
        if !safe_split(&actions).is_empty() {
            m.insert("actions".into(), json!(safe_split(&actions)));
        }
        requests.push((
            reqwest::Method::POST,
            url("v2/alerts", false),
            Value::Object(m),
        ));
        if c.update_alerts {
            let mut msg = Map::new();
            put_nonempty(&mut msg, "message", &message);
            requests.push((
                reqwest::Method::PUT,
                url(&format!("v2/alerts/{alias}/message"), true),
                Value::Object(msg),
            ));
            let mut desc = Map::new();
            put_nonempty(&mut desc, "description", &description);
            requests.push((
                reqwest::Method::PUT,
                url(&format!("v2/alerts/{alias}/description"), true),
                Value::Object(desc),
            ));
        }
    }
    let key = c
        .api_key
        .read_raw()
        .map_err(|e| RequestError::from(e).context("read key_file error"))?;
    let key = t.expand(&key);
    t.finish().map_err(|e| e.context("templating error"))?;
    Ok(Delivery::Calls(
        requests
            .into_iter()
            .map(|(method, url, body)| Call {
                method,
                url,
                headers: vec![("Authorization", format!("GenieKey {key}"))],
                content_type: "application/json",
                body: serde_json::to_vec(&body).unwrap_or_default(),
                retrier: Retrier::Status(RETRY_CODES),
            })
            .collect(),
    ))
}

fn responder(id: &str, name: &str, username: &str, kind: &str) -> Value {
    let mut m = Map::new();
    put_nonempty(&mut m, "id", id);
    put_nonempty(&mut m, "name", name);
    put_nonempty(&mut m, "username", username);
    m.insert("type".into(), json!(kind));
    Value::Object(m)
}

fn put_nonempty(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), json!(v));
    }
}

/// Alertmanager's `safeSplit`: `s` trimmed, split on commas, empty parts dropped
/// (the parts themselves are not trimmed).
fn safe_split(s: &str) -> Vec<&str> {
    s.trim().split(',').filter(|x| !x.is_empty()).collect()
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of an OpsGenie config (`DefaultOpsGenieConfig`).
pub mod defaults {
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "opsgenie.default.message" . }}"#;
    /// `description`.
    pub const DESCRIPTION: &str = r#"{{ template "opsgenie.default.description" . }}"#;
    /// `source`.
    pub const SOURCE: &str = r#"{{ template "opsgenie.default.source" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOpsgenie {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
    pub(crate) api_key: Option<String>,
    pub(crate) api_key_file: Option<String>,
    pub(crate) api_url: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) details: Option<BTreeMap<String, String>>,
    pub(crate) entity: Option<String>,
    pub(crate) responders: Option<Vec<RawResponder>>,
    pub(crate) actions: Option<String>,
    pub(crate) tags: Option<String>,
    pub(crate) note: Option<String>,
    pub(crate) priority: Option<String>,
    pub(crate) update_alerts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawResponder {
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) username: Option<String>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
}

/// `opsgenie_configs` entry; text fields are templates.
#[derive(Clone, Debug)]
pub struct OpsgenieConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// Template once read.
    pub api_key: KeySource,
    /// Base URL, its path ending in `/`.
    pub api_url: reqwest::Url,
    /// Template.
    pub message: String,
    /// Template.
    pub description: String,
    /// Template.
    pub source: String,
    /// Templates.
    pub details: BTreeMap<String, String>,
    /// Template.
    pub entity: String,
    /// `responders` (templates).
    pub responders: Vec<Responder>,
    /// Template (comma-separated).
    pub actions: String,
    /// Template (comma-separated).
    pub tags: String,
    /// Template.
    pub note: String,
    /// Template.
    pub priority: String,
    /// `update_alerts`.
    pub update_alerts: bool,
}

/// A responder; the fields are templates.
#[derive(Clone, Debug)]
pub struct Responder {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `username`.
    pub username: String,
    /// `type`.
    pub kind: String,
}

/// Resolves one `opsgenie_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawOpsgenie,
    globals: &Globals,
    global: &RawGlobalApi,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> OpsgenieConfig {
    let api_key = global.key_for(
        &c.api_key,
        &c.api_key_file,
        "no global OpsGenie API Key set either inline or in a file",
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
    let responders = c
        .responders
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let [id, name, username, kind] =
                [&r.id, &r.name, &r.username, &r.kind].map(|f| f.clone().unwrap_or_default());
            let shown = |kind: &str| format!("{{{id} {name} {username} {kind}}}");
            if id.is_empty() && username.is_empty() && name.is_empty() {
                p.push(
                    path.key("responders").index(i),
                    format!(
                        "opsGenieConfig responder {} has to have at least one of id, username or name specified",
                        shown(&kind)
                    ),
                );
            }
            if !kind.contains("{{") {
                let lower = kind.to_lowercase();
                if !["team", "teams", "user", "escalation", "schedule"].contains(&lower.as_str()) {
                    p.push(
                        path.key("responders").index(i).key("type"),
                        format!(
                            "opsGenieConfig responder {} type does not match valid options ^(team|teams|user|escalation|schedule)$",
                            shown(&lower)
                        ),
                    );
                }
            }
            Responder {
                id,
                name,
                username,
                kind,
            }
        })
        .collect();
    OpsgenieConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
        api_key,
        api_url,
        message: template_or(&c.message, defaults::MESSAGE),
        description: template_or(&c.description, defaults::DESCRIPTION),
        source: template_or(&c.source, defaults::SOURCE),
        details: c.details.clone().unwrap_or_default(),
        entity: c.entity.clone().unwrap_or_default(),
        responders,
        actions: c.actions.clone().unwrap_or_default(),
        tags: c.tags.clone().unwrap_or_default(),
        note: c.note.clone().unwrap_or_default(),
        priority: c.priority.clone().unwrap_or_default(),
        update_alerts: c.update_alerts.unwrap_or(false),
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
        ["opsgenie_api_key", "opsgenie_api_key_file"],
    );
    let url = url_of(
        c,
        "api_url",
        global,
        "opsgenie_api_url",
        DEFAULT_API_URL,
        true,
    );
    m.insert("api_url".into(), url.into());
    insert_text(&mut m, c, "message", defaults::MESSAGE);
    insert_text(&mut m, c, "description", defaults::DESCRIPTION);
    insert_text(&mut m, c, "source", defaults::SOURCE);
    if let Some(d) = c.get("details").and_then(sorted_map) {
        m.insert("details".into(), d);
    }
    insert_nonempty(&mut m, c, &["entity"]);
    let responders: Vec<YamlValue> = c
        .get("responders")
        .and_then(YamlValue::as_sequence)
        .into_iter()
        .flatten()
        .map(|r| {
            let mut i = Mapping::new();
            insert_nonempty(&mut i, r, &["id", "name", "username", "type"]);
            YamlValue::Mapping(i)
        })
        .collect();
    if !responders.is_empty() {
        m.insert("responders".into(), YamlValue::Sequence(responders));
    }
    insert_nonempty(&mut m, c, &["actions", "tags", "note", "priority"]);
    if c.get("update_alerts").and_then(YamlValue::as_bool) == Some(true) {
        m.insert("update_alerts".into(), true.into());
    }
    m
}

impl ReceiverKind for OpsgenieConfig {
    type Raw = RawOpsgenie;
    const NAME: &'static str = "opsgenie";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawOpsgenie,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> OpsgenieConfig {
        resolve(raw, global, &global.raw.opsgenie(), base, path, p)
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
