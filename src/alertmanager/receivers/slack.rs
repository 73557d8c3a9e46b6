//! Slack incoming webhooks: one message with one attachment per notification, as
//! Alertmanager 0.25's `notify/slack` builds it (field order and `omitempty`s of its
//! JSON structs kept, so the bodies are byte-comparable).

use super::{truncate_runes, Expander, Request, RequestError};
use super::{Delivery, ReceiverKind};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{
    flag, insert_nonempty, notifier_head, string, strings, text_or, SECRET,
};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::Path;

/// Slack shows at most this many characters of a title.
const MAX_TITLE_RUNES: usize = 1024;

/// The incoming-webhook request for `data`.
pub fn request(
    c: &SlackConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Request, RequestError> {
    let mut t = Expander::new(templates, data);
    let mut attachment = Map::new();
    let put_nonempty = |m: &mut Map<String, Value>, k: &str, v: String| {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    };
    let title = truncate_runes(t.expand(&c.title), MAX_TITLE_RUNES);
    put_nonempty(&mut attachment, "title", title);
    put_nonempty(&mut attachment, "title_link", t.expand(&c.title_link));
    put_nonempty(&mut attachment, "pretext", t.expand(&c.pretext));
    attachment.insert("text".into(), json!(t.expand(&c.text)));
    attachment.insert("fallback".into(), json!(t.expand(&c.fallback)));
    attachment.insert("callback_id".into(), json!(t.expand(&c.callback_id)));
    if !c.fields.is_empty() {
        let fields: Vec<Value> = c
            .fields
            .iter()
            .map(|f| {
                let mut field = Map::new();
                put_nonempty(&mut field, "title", t.expand(&f.title));
                put_nonempty(&mut field, "value", t.expand(&f.value));
                field.insert("short".into(), json!(f.short.unwrap_or(c.short_fields)));
                Value::Object(field)
            })
            .collect();
        attachment.insert("fields".into(), Value::Array(fields));
    }
    put_nonempty(&mut attachment, "image_url", t.expand(&c.image_url));
    put_nonempty(&mut attachment, "thumb_url", t.expand(&c.thumb_url));
    attachment.insert("footer".into(), json!(t.expand(&c.footer)));
    put_nonempty(&mut attachment, "color", t.expand(&c.color));
    if !c.mrkdwn_in.is_empty() {
        attachment.insert("mrkdwn_in".into(), json!(c.mrkdwn_in));
    }
    let mut message = Map::new();
    put_nonempty(&mut message, "channel", t.expand(&c.channel));
    put_nonempty(&mut message, "username", t.expand(&c.username));
    put_nonempty(&mut message, "icon_emoji", t.expand(&c.icon_emoji));
    put_nonempty(&mut message, "icon_url", t.expand(&c.icon_url));
    if c.link_names {
        message.insert("link_names".into(), json!(true));
    }
    message.insert("attachments".into(), json!([Value::Object(attachment)]));
    t.finish()?;
    Ok(Request {
        url: c.api_url.expose().to_string(),
        content_type: "application/json",
        body: serde_json::to_vec(&Value::Object(message)).unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of a Slack config (`DefaultSlackConfig`): the
/// templates of `default.tmpl` they name. Used where the config is resolved and where
/// it is shown.
pub mod defaults {
    /// `username`.
    pub const USERNAME: &str = r#"{{ template "slack.default.username" . }}"#;
    /// `color`.
    pub const COLOR: &str = r#"{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}"#;
    /// `title`.
    pub const TITLE: &str = r#"{{ template "slack.default.title" . }}"#;
    /// `title_link`.
    pub const TITLE_LINK: &str = r#"{{ template "slack.default.titlelink" . }}"#;
    /// `pretext`.
    pub const PRETEXT: &str = r#"{{ template "slack.default.pretext" . }}"#;
    /// `text`.
    pub const TEXT: &str = r#"{{ template "slack.default.text" . }}"#;
    /// `footer`.
    pub const FOOTER: &str = r#"{{ template "slack.default.footer" . }}"#;
    /// `fallback`.
    pub const FALLBACK: &str = r#"{{ template "slack.default.fallback" . }}"#;
    /// `callback_id`.
    pub const CALLBACK_ID: &str = r#"{{ template "slack.default.callbackid" . }}"#;
    /// `icon_emoji`.
    pub const ICON_EMOJI: &str = r#"{{ template "slack.default.iconemoji" . }}"#;
    /// `icon_url`.
    pub const ICON_URL: &str = r#"{{ template "slack.default.iconurl" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSlack {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) api_url: Option<String>,
    pub(crate) api_url_file: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) color: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) title_link: Option<String>,
    pub(crate) pretext: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) fields: Option<Vec<RawSlackField>>,
    pub(crate) short_fields: Option<bool>,
    pub(crate) footer: Option<String>,
    pub(crate) fallback: Option<String>,
    pub(crate) callback_id: Option<String>,
    pub(crate) icon_emoji: Option<String>,
    pub(crate) icon_url: Option<String>,
    pub(crate) image_url: Option<String>,
    pub(crate) thumb_url: Option<String>,
    pub(crate) link_names: Option<bool>,
    pub(crate) mrkdwn_in: Option<Vec<String>>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSlackField {
    pub(crate) title: Option<String>,
    pub(crate) value: Option<String>,
    pub(crate) short: Option<bool>,
}

/// `slack_configs` entry; text fields are templates.
#[derive(Clone, Debug)]
pub struct SlackConfig {
    /// Defaults to false.
    pub send_resolved: bool,
    /// Incoming-webhook URL (from the entry, or `global.slack_api_url`).
    pub api_url: Secret,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// Templates.
    pub channel: String,
    /// Template.
    pub username: String,
    /// Template.
    pub color: String,
    /// Template.
    pub title: String,
    /// Template.
    pub title_link: String,
    /// Template.
    pub pretext: String,
    /// Template.
    pub text: String,
    /// `fields` (title and value are templates).
    pub fields: Vec<SlackField>,
    /// Default for fields without `short`.
    pub short_fields: bool,
    /// Template.
    pub footer: String,
    /// Template.
    pub fallback: String,
    /// Template.
    pub callback_id: String,
    /// Template.
    pub icon_emoji: String,
    /// Template.
    pub icon_url: String,
    /// Template.
    pub image_url: String,
    /// Template.
    pub thumb_url: String,
    /// `link_names`.
    pub link_names: bool,
    /// `mrkdwn_in`.
    pub mrkdwn_in: Vec<String>,
}

/// A Slack attachment field.
#[derive(Clone, Debug)]
pub struct SlackField {
    /// Template.
    pub title: String,
    /// Template.
    pub value: String,
    /// `short`, if set.
    pub short: Option<bool>,
}

/// Resolves one `slack_configs` entry, adding its problems.
pub(crate) fn resolve(
    s: &RawSlack,
    globals: &Globals,
    global_url: Option<&str>,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> SlackConfig {
    let api_url = match (&s.api_url, &s.api_url_file) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(f)) => match std::fs::read_to_string(base.join(f)) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                p.push(path.key("api_url_file"), format!("cannot read {f}: {e}"));
                None
            }
        },
        _ => global_url.map(str::to_string),
    };
    let api_url = api_url.unwrap_or_else(|| {
        p.push(path.key("api_url"), "no global Slack API URL set");
        String::new()
    });
    if !api_url.is_empty() {
        if let Err(e) = check_http_url(&api_url) {
            p.push(path.key("api_url"), e.to_string());
        }
    }
    let fields = s
        .fields
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, f)| {
            let (title, value) = (
                f.title.clone().unwrap_or_default(),
                f.value.clone().unwrap_or_default(),
            );
            if title.is_empty() || value.is_empty() {
                p.push(
                    path.key("fields").index(i),
                    "missing title or value in Slack field config",
                );
            }
            SlackField {
                title,
                value,
                short: f.short,
            }
        })
        .collect();
    SlackConfig {
        send_resolved: s.send_resolved.unwrap_or(false),
        api_url: Secret::new(api_url),
        http_config: receiver_http_config(&s.http_config, globals, base, path, p),
        channel: s.channel.clone().unwrap_or_default(),
        username: template_or(&s.username, defaults::USERNAME),
        color: template_or(&s.color, defaults::COLOR),
        title: template_or(&s.title, defaults::TITLE),
        title_link: template_or(&s.title_link, defaults::TITLE_LINK),
        pretext: template_or(&s.pretext, defaults::PRETEXT),
        text: template_or(&s.text, defaults::TEXT),
        fields,
        short_fields: s.short_fields.unwrap_or(false),
        footer: template_or(&s.footer, defaults::FOOTER),
        fallback: template_or(&s.fallback, defaults::FALLBACK),
        callback_id: template_or(&s.callback_id, defaults::CALLBACK_ID),
        icon_emoji: template_or(&s.icon_emoji, defaults::ICON_EMOJI),
        icon_url: template_or(&s.icon_url, defaults::ICON_URL),
        image_url: s.image_url.clone().unwrap_or_default(),
        thumb_url: s.thumb_url.clone().unwrap_or_default(),
        link_names: s.link_names.unwrap_or(false),
        mrkdwn_in: s
            .mrkdwn_in
            .clone()
            .unwrap_or_else(|| vec!["fallback".into(), "pretext".into(), "text".into()]),
    }
}

impl ReceiverKind for SlackConfig {
    type Raw = RawSlack;
    const NAME: &'static str = "slack";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawSlack,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> SlackConfig {
        resolve(raw, global, global.slack_api_url.as_deref(), base, path, p)
    }

    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        _group_key: &str,
    ) -> Result<Delivery, RequestError> {
        request(self, templates, data).map(Delivery::Http)
    }

    fn http_config(&self) -> Option<&HttpClientConfig> {
        Some(&self.http_config)
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn show(entry: &YamlValue, global: &YamlValue) -> Mapping {
        show(entry, global.get("slack_api_url_file"))
    }
}

/// Slack's texts and their defaults, in `SlackConfig` order (after `channel`).
const SLACK_TEXTS: [(&str, &str); 6] = [
    ("username", defaults::USERNAME),
    ("color", defaults::COLOR),
    ("title", defaults::TITLE),
    ("title_link", defaults::TITLE_LINK),
    ("pretext", defaults::PRETEXT),
    ("text", defaults::TEXT),
];

/// Slack's texts after `fields` and `short_fields`.
const SLACK_TEXTS_AFTER_FIELDS: [(&str, &str); 5] = [
    ("footer", defaults::FOOTER),
    ("fallback", defaults::FALLBACK),
    ("callback_id", defaults::CALLBACK_ID),
    ("icon_emoji", defaults::ICON_EMOJI),
    ("icon_url", defaults::ICON_URL),
];

/// An entry as Alertmanager 0.25 marshals it (`global_url_file`: `global.slack_api_url_file`).
pub(crate) fn show(c: &YamlValue, global_url_file: Option<&YamlValue>) -> Mapping {
    let mut m = notifier_head(c, false);
    match (c.get("api_url"), c.get("api_url_file").or(global_url_file)) {
        (None, Some(file)) => {
            m.insert("api_url_file".into(), file.clone());
        }
        _ => {
            m.insert("api_url".into(), SECRET.into());
        }
    }
    if let Some(channel) = c.get("channel").and_then(string) {
        m.insert("channel".into(), channel.into());
    }
    for (key, default) in SLACK_TEXTS {
        m.insert(key.into(), text_or(c, key, default));
    }
    let fields: Vec<YamlValue> = c
        .get("fields")
        .and_then(YamlValue::as_sequence)
        .into_iter()
        .flatten()
        .map(|f| {
            let mut field = Mapping::new();
            field.insert("title".into(), text_or(f, "title", ""));
            field.insert("value".into(), text_or(f, "value", ""));
            if let Some(short) = f.get("short").and_then(YamlValue::as_bool) {
                field.insert("short".into(), short.into());
            }
            YamlValue::Mapping(field)
        })
        .collect();
    if !fields.is_empty() {
        m.insert("fields".into(), YamlValue::Sequence(fields));
    }
    m.insert("short_fields".into(), flag(c, "short_fields", false));
    for (key, default) in SLACK_TEXTS_AFTER_FIELDS {
        m.insert(key.into(), text_or(c, key, default));
    }
    insert_nonempty(&mut m, c, &["image_url", "thumb_url"]);
    m.insert("link_names".into(), flag(c, "link_names", false));
    if let Some(mrkdwn_in) = c.get("mrkdwn_in").and_then(strings) {
        m.insert("mrkdwn_in".into(), mrkdwn_in);
    }
    m
}
