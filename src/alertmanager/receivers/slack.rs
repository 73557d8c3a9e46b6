//! Slack incoming webhooks: one message with one attachment per notification, as
//! Alertmanager 0.25's `notify/slack` builds it (field order and `omitempty`s of its
//! JSON structs kept, so the bodies are byte-comparable).

use super::{truncate_runes, Expander, Request};
use crate::alertmanager::config::SlackConfig;
use crate::alertmanager::template::{Data, Templates};
use serde_json::{json, Map, Value};

/// Slack shows at most this many characters of a title.
const MAX_TITLE_RUNES: usize = 1024;

/// The incoming-webhook request for `data`.
pub fn request(c: &SlackConfig, templates: &Templates, data: &Data) -> Result<Request, String> {
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
