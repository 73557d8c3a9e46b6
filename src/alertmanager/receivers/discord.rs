//! Discord webhooks: the message of Alertmanager 0.25's `notify/discord`.
//!
//! `POST <webhook_url>` with `{"content": "", "embeds": [{title, description,
//! color}]}`: the expanded `title` and `message` (Alertmanager 0.25 does not cut
//! them), red (`0x992D22`) while firing, green (`0x2ECC71`) once resolved. Only 5xx
//! and transport errors may be retried.
//!
//! Config: `send_resolved` true; `webhook_url` required.

use super::ReceiverKind;
use super::{Call, Delivery, Expander, RequestError};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{insert_text, notifier_head, SECRET};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::json;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::Path;

const COLOR_RED: u32 = 0x992D22;
const COLOR_GREEN: u32 = 0x2ECC71;

/// The webhook POST for `data`.
pub fn request(
    c: &DiscordConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Delivery, RequestError> {
    let mut t = Expander::new(templates, data);
    let title = t.expand(&c.title);
    let description = t.expand(&c.message);
    t.finish()?;
    let color = if data.status == "resolved" {
        COLOR_GREEN
    } else {
        COLOR_RED
    };
    let body = json!({
        "content": "",
        "embeds": [{"title": title, "description": description, "color": color}],
    });
    Ok(Delivery::Calls(vec![Call::post_json(
        c.webhook_url.expose().to_string(),
        serde_json::to_vec(&body).unwrap_or_default(),
        &[],
    )]))
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of a Discord config (`DefaultDiscordConfig`).
pub mod defaults {
    /// `title`.
    pub const TITLE: &str = r#"{{ template "discord.default.title" . }}"#;
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "discord.default.message" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDiscord {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) message: Option<String>,
}

/// `discord_configs` entry; text fields are templates.
#[derive(Clone, Debug)]
pub struct DiscordConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// Where to POST.
    pub webhook_url: Secret,
    /// Template.
    pub title: String,
    /// Template.
    pub message: String,
}

/// Resolves one `discord_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawDiscord,
    globals: &Globals,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> DiscordConfig {
    let webhook_url = c.webhook_url.clone().unwrap_or_default();
    if c.webhook_url.is_none() {
        p.push(path.key("webhook_url"), "no discord webhook URL provided");
    } else if let Err(e) = check_http_url(&webhook_url) {
        p.push(path.key("webhook_url"), e.to_string());
    }
    DiscordConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
        webhook_url: Secret::new(webhook_url),
        title: template_or(&c.title, defaults::TITLE),
        message: template_or(&c.message, defaults::MESSAGE),
    }
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults filled in, the webhook URL as `<secret>`.
pub(crate) fn show(c: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    if c.get("webhook_url").is_some() {
        m.insert("webhook_url".into(), SECRET.into());
    }
    insert_text(&mut m, c, "title", defaults::TITLE);
    insert_text(&mut m, c, "message", defaults::MESSAGE);
    m
}

impl ReceiverKind for DiscordConfig {
    type Raw = RawDiscord;
    const NAME: &'static str = "discord";
    const COUNTED_FROM_START: bool = false;

    fn resolve(
        raw: &RawDiscord,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> DiscordConfig {
        resolve(raw, global, base, path, p)
    }

    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        _group_key: &str,
    ) -> Result<Delivery, RequestError> {
        request(self, templates, data)
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
