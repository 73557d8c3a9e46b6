//! PagerDuty: the events of Alertmanager 0.25's `notify/pagerduty`, Events API v1
//! (`service_key`) or v2 (`routing_key`).
//!
//! Both send one JSON event per notification, `trigger` while the group fires and
//! `resolve` once it is resolved, deduplicated on the hash of the group key. v2 posts
//! `{routing_key, dedup_key, event_action, payload: {summary, source, severity,
//! class, component, group, custom_details}, client, client_url, images, links}` to
//! `url`; v1 posts `{service_key, incident_key, event_type, description, client,
//! client_url, details}` (client fields only on trigger) to PagerDuty's fixed v1
//! endpoint. Field order and `omitempty`s are those of Alertmanager's Go struct, which
//! it shares between both versions (so a v1 event carries `"event_action": ""` and
//! `"payload": null`). The summary/description is cut to 1024 characters; an event
//! over 512000 bytes (as Go encodes JSON) loses its details for an `error` note.
//! Keys come from the entry or its `*_file` (read at each send, trimmed) and are
//! templates; empty after expansion is a permanent error. Retries: 5xx, and 403 (v1)
//! or 429 (v2), as Alertmanager's retriers.
//!
//! Config: `send_resolved` true; `url` from the entry, else `global.pagerduty_url`,
//! else `https://events.pagerduty.com/v2/enqueue`; `details` default to
//! `firing`, `resolved`, `num_firing` and `num_resolved` (entries override them one
//! by one); `source` defaults to `client`; `severity` to `error`.
//!
//! Extension: a v1 entry that sets its own `url` is sent there (Alertmanager 0.25
//! ignores `url` for v1), so tests and proxies can redirect it.

use super::ReceiverKind;
use super::{group_key_hash, truncate_runes, Call, Delivery, Expander, KeySource, RequestError};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{
    insert_nonempty, insert_text, notifier_head, sorted_map, string, url_of, SECRET,
};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::collections::BTreeMap;
use std::path::Path;

/// Alertmanager 0.25's default `global.pagerduty_url` (Events API v2).
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The Events API v1 endpoint Alertmanager 0.25 always uses for `service_key`.
pub const V1_URL: &str = "https://events.pagerduty.com/generic/2010-04-15/create_event.json";

const MAX_SUMMARY_RUNES: usize = 1024;
const MAX_EVENT_BYTES: usize = 512_000;
const TRUNCATED_DETAILS: &str =
    "Custom details have been removed because the original event exceeds the maximum size of 512KB";

/// The event for `data` in group `group_key`.
pub fn request(
    c: &PagerdutyConfig,
    templates: &Templates,
    data: &Data,
    group_key: &str,
) -> Result<Delivery, RequestError> {
    let mut t = Expander::new(templates, data);
    let firing = data.status != "resolved";
    let value = data.to_value();
    let mut details = BTreeMap::new();
    for (k, v) in &c.details {
        let detail = templates
            .expand(v, &value)
            .map_err(|source| RequestError::TemplateField {
                field: k.clone(),
                text: v.clone(),
                source: Box::new(source),
            })?;
        details.insert(k.clone(), detail);
    }
    let details_value = |d: &BTreeMap<String, String>| {
        if d.is_empty() {
            None
        } else {
            Some(json!(d))
        }
    };
    let summary = truncate_runes(t.expand(&c.description), MAX_SUMMARY_RUNES);
    let (mut event, details_path, url, retry_codes): (Map<String, Value>, _, _, &'static [u16]) =
        match &c.key {
            Key::Service(key) => {
                let key = t.expand(&key.read()?);
                let mut m = Map::new();
                m.insert("service_key".into(), json!(key));
                m.insert("incident_key".into(), json!(group_key_hash(group_key)));
                m.insert(
                    "event_type".into(),
                    json!(if firing { "trigger" } else { "resolve" }),
                );
                put_nonempty(&mut m, "description", summary);
                m.insert("event_action".into(), json!(""));
                m.insert("payload".into(), Value::Null);
                if firing {
                    put_nonempty(&mut m, "client", t.expand(&c.client));
                    put_nonempty(&mut m, "client_url", t.expand(&c.client_url));
                }
                if let Some(d) = details_value(&details) {
                    m.insert("details".into(), d);
                }
                t.finish()
                    .map_err(|e| e.context("failed to template PagerDuty v1 message"))?;
                if key.is_empty() {
                    return Err(RequestError::Invalid("service key cannot be empty".into()));
                }
                let url = c.v1_url.clone().unwrap_or_else(|| V1_URL.to_string());
                (m, vec!["details"], url, &[403])
            }
            Key::Routing(key) => {
                let key = t.expand(&key.read()?);
                let mut payload = Map::new();
                payload.insert("summary".into(), json!(summary));
                payload.insert("source".into(), json!(t.expand(&c.source)));
                payload.insert("severity".into(), json!(t.expand(&c.severity)));
                put_nonempty(&mut payload, "class", t.expand(&c.class));
                put_nonempty(&mut payload, "component", t.expand(&c.component));
                put_nonempty(&mut payload, "group", t.expand(&c.group));
                if let Some(d) = details_value(&details) {
                    payload.insert("custom_details".into(), d);
                }
                let mut m = Map::new();
                m.insert("routing_key".into(), json!(key));
                m.insert("dedup_key".into(), json!(group_key_hash(group_key)));
                m.insert(
                    "event_action".into(),
                    json!(if firing { "trigger" } else { "resolve" }),
                );
                m.insert("payload".into(), Value::Object(payload));
                put_nonempty(&mut m, "client", t.expand(&c.client));
                put_nonempty(&mut m, "client_url", t.expand(&c.client_url));
                let images: Vec<Value> = c
                    .images
                    .iter()
                    .map(|i| [t.expand(&i.src), t.expand(&i.alt), t.expand(&i.href)])
                    .filter(|[src, ..]| !src.is_empty())
                    .map(|[src, alt, href]| json!({"src": src, "alt": alt, "href": href}))
                    .collect();
                if !images.is_empty() {
                    m.insert("images".into(), Value::Array(images));
                }
                let links: Vec<Value> = c
                    .links
                    .iter()
                    .map(|l| [t.expand(&l.href), t.expand(&l.text)])
                    .filter(|[href, _]| !href.is_empty())
                    .map(|[href, text]| json!({"href": href, "text": text}))
                    .collect();
                if !links.is_empty() {
                    m.insert("links".into(), Value::Array(links));
                }
                t.finish()
                    .map_err(|e| e.context("failed to template PagerDuty v2 message"))?;
                if key.is_empty() {
                    return Err(RequestError::Invalid("routing key cannot be empty".into()));
                }
                (m, vec!["payload", "custom_details"], c.url.clone(), &[429])
            }
        };
    let mut body = serde_json::to_vec(&event).unwrap_or_default();
    if go_json_len(&body) > MAX_EVENT_BYTES {
        let note = json!({"error": TRUNCATED_DETAILS});
        match details_path.as_slice() {
            [k] => {
                event.insert((*k).into(), note);
            }
            [k, d] => {
                if let Some(Value::Object(p)) = event.get_mut(*k) {
                    p.insert((*d).into(), note);
                }
            }
            _ => {}
        }
        tracing::warn!("PagerDuty: details truncated, the event exceeds 512000 bytes");
        body = serde_json::to_vec(&event).unwrap_or_default();
    }
    Ok(Delivery::Calls(vec![Call::post_json(
        url,
        body,
        retry_codes,
    )]))
}

fn put_nonempty(m: &mut Map<String, Value>, k: &str, v: String) {
    if !v.is_empty() {
        m.insert(k.into(), json!(v));
    }
}

/// The length of `json` as Go's `encoding/json` writes it: `<`, `>` and `&` escaped
/// as `\u003c`…, U+2028 and U+2029 as `\u2028`, plus its trailing newline.
fn go_json_len(json: &[u8]) -> usize {
    let text = String::from_utf8_lossy(json);
    let extra: usize = text
        .chars()
        .map(|c| match c {
            '<' | '>' | '&' => 5,
            '\u{2028}' | '\u{2029}' => 3,
            _ => 0,
        })
        .sum();
    json.len() + extra + 1
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of a PagerDuty config (`DefaultPagerdutyConfig`,
/// `DefaultPagerdutyDetails`).
pub mod defaults {
    /// `description`.
    pub const DESCRIPTION: &str = r#"{{ template "pagerduty.default.description" .}}"#;
    /// `client`.
    pub const CLIENT: &str = r#"{{ template "pagerduty.default.client" . }}"#;
    /// `client_url`.
    pub const CLIENT_URL: &str = r#"{{ template "pagerduty.default.clientURL" . }}"#;
    /// `severity` when not set.
    pub const SEVERITY: &str = "error";
    /// `details` entries that are not set.
    pub const DETAILS: [(&str, &str); 4] = [
        (
            "firing",
            r#"{{ template "pagerduty.default.instances" .Alerts.Firing }}"#,
        ),
        (
            "resolved",
            r#"{{ template "pagerduty.default.instances" .Alerts.Resolved }}"#,
        ),
        ("num_firing", r#"{{ .Alerts.Firing | len }}"#),
        ("num_resolved", r#"{{ .Alerts.Resolved | len }}"#),
    ];
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPagerduty {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
    pub(crate) service_key: Option<String>,
    pub(crate) service_key_file: Option<String>,
    pub(crate) routing_key: Option<String>,
    pub(crate) routing_key_file: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) client: Option<String>,
    pub(crate) client_url: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) details: Option<BTreeMap<String, String>>,
    pub(crate) images: Option<Vec<RawImage>>,
    pub(crate) links: Option<Vec<RawLink>>,
    pub(crate) source: Option<String>,
    pub(crate) severity: Option<String>,
    pub(crate) class: Option<String>,
    pub(crate) component: Option<String>,
    pub(crate) group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawImage {
    pub(crate) src: Option<String>,
    pub(crate) alt: Option<String>,
    pub(crate) href: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLink {
    pub(crate) href: Option<String>,
    pub(crate) text: Option<String>,
}

/// Which Events API an entry uses.
#[derive(Clone, Debug)]
pub enum Key {
    /// v1, `service_key`.
    Service(KeySource),
    /// v2, `routing_key`.
    Routing(KeySource),
}

/// `pagerduty_configs` entry; text fields are templates.
#[derive(Clone, Debug)]
pub struct PagerdutyConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// The key, and so the API version.
    pub key: Key,
    /// v2 endpoint.
    pub url: String,
    /// v1 endpoint when the entry sets `url` (promflow extension).
    pub v1_url: Option<String>,
    /// Template.
    pub client: String,
    /// Template.
    pub client_url: String,
    /// Template.
    pub description: String,
    /// Templates, defaults merged in.
    pub details: BTreeMap<String, String>,
    /// `images` (templates).
    pub images: Vec<Image>,
    /// `links` (templates).
    pub links: Vec<Link>,
    /// Template.
    pub source: String,
    /// Template.
    pub severity: String,
    /// Template.
    pub class: String,
    /// Template.
    pub component: String,
    /// Template.
    pub group: String,
}

/// A v2 image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Template.
    pub src: String,
    /// Template.
    pub alt: String,
    /// Template.
    pub href: String,
}

/// A v2 link.
#[derive(Clone, Debug)]
pub struct Link {
    /// Template.
    pub href: String,
    /// Template.
    pub text: String,
}

/// Resolves one `pagerduty_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawPagerduty,
    globals: &Globals,
    global_url: Option<&str>,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> PagerdutyConfig {
    fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    let (service, service_file) = (set(&c.service_key), set(&c.service_key_file));
    let (routing, routing_file) = (set(&c.routing_key), set(&c.routing_key_file));
    if service.is_none() && service_file.is_none() && routing.is_none() && routing_file.is_none() {
        p.push(
            path.clone(),
            "missing service or routing key in PagerDuty config",
        );
    }
    if routing.is_some() && routing_file.is_some() {
        p.push(
            path.key("routing_key"),
            "at most one of routing_key & routing_key_file must be configured",
        );
    }
    if service.is_some() && service_file.is_some() {
        p.push(
            path.key("service_key"),
            "at most one of service_key & service_key_file must be configured",
        );
    }
    let source = |inline: Option<&str>, file: Option<&str>| KeySource::of(inline, file, base);
    let key = if service.is_some() || service_file.is_some() {
        Key::Service(source(service, service_file))
    } else {
        Key::Routing(source(routing, routing_file))
    };
    let url = c
        .url
        .clone()
        .or_else(|| global_url.map(str::to_string))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    if c.url.is_some() {
        if let Err(e) = check_http_url(&url) {
            p.push(path.key("url"), e.to_string());
        }
    }
    let mut details = c.details.clone().unwrap_or_default();
    for (k, v) in defaults::DETAILS {
        details
            .entry(k.to_string())
            .or_insert_with(|| v.to_string());
    }
    let client = template_or(&c.client, defaults::CLIENT);
    PagerdutyConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
        key,
        v1_url: c.url.clone(),
        url,
        client_url: template_or(&c.client_url, defaults::CLIENT_URL),
        description: template_or(&c.description, defaults::DESCRIPTION),
        details,
        images: c
            .images
            .iter()
            .flatten()
            .map(|i| Image {
                src: i.src.clone().unwrap_or_default(),
                alt: i.alt.clone().unwrap_or_default(),
                href: i.href.clone().unwrap_or_default(),
            })
            .collect(),
        links: c
            .links
            .iter()
            .flatten()
            .map(|l| Link {
                href: l.href.clone().unwrap_or_default(),
                text: l.text.clone().unwrap_or_default(),
            })
            .collect(),
        source: set(&c.source).map_or_else(|| client.clone(), str::to_string),
        severity: set(&c.severity).unwrap_or(defaults::SEVERITY).to_string(),
        client,
        class: c.class.clone().unwrap_or_default(),
        component: c.component.clone().unwrap_or_default(),
        group: c.group.clone().unwrap_or_default(),
    }
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults and the URL filled in, keys as `<secret>`. As loaded: once a v2 entry
/// without `severity` has sent, Alertmanager shows `severity: error` (it writes the
/// default into its config then); promflow does not.
pub(crate) fn show(c: &YamlValue, global: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    for (key, file) in [
        ("service_key", "service_key_file"),
        ("routing_key", "routing_key_file"),
    ] {
        if c.get(key).and_then(string).is_some_and(|s| !s.is_empty()) {
            m.insert(key.into(), SECRET.into());
        }
        insert_nonempty(&mut m, c, &[file]);
    }
    let url = url_of(c, "url", global, "pagerduty_url", DEFAULT_URL, false);
    m.insert("url".into(), url.into());
    insert_text(&mut m, c, "client", defaults::CLIENT);
    insert_text(&mut m, c, "client_url", defaults::CLIENT_URL);
    insert_text(&mut m, c, "description", defaults::DESCRIPTION);
    let mut details = c.get("details").cloned().unwrap_or(YamlValue::Null);
    if !details.is_mapping() {
        details = YamlValue::Mapping(Mapping::new());
    }
    if let YamlValue::Mapping(d) = &mut details {
        for (k, v) in defaults::DETAILS {
            if !d.contains_key(k) {
                d.insert(k.into(), v.into());
            }
        }
    }
    if let Some(d) = sorted_map(&details) {
        m.insert("details".into(), d);
    }
    for (key, fields) in [
        ("images", &["src", "alt", "href"][..]),
        ("links", &["href", "text"]),
    ] {
        let items: Vec<YamlValue> = c
            .get(key)
            .and_then(YamlValue::as_sequence)
            .into_iter()
            .flatten()
            .map(|item| {
                let mut i = Mapping::new();
                insert_nonempty(&mut i, item, fields);
                YamlValue::Mapping(i)
            })
            .collect();
        if !items.is_empty() {
            m.insert(key.into(), YamlValue::Sequence(items));
        }
    }
    let client = c.get("client").and_then(string);
    let source = c.get("source").and_then(string).filter(|s| !s.is_empty());
    let source = source.or(client).unwrap_or(defaults::CLIENT.to_string());
    if !source.is_empty() {
        m.insert("source".into(), source.into());
    }
    insert_nonempty(&mut m, c, &["severity", "class", "component", "group"]);
    m
}

impl ReceiverKind for PagerdutyConfig {
    type Raw = RawPagerduty;
    const NAME: &'static str = "pagerduty";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawPagerduty,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> PagerdutyConfig {
        resolve(
            raw,
            global,
            global.raw.pagerduty_url.as_deref(),
            base,
            path,
            p,
        )
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
