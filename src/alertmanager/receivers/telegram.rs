//! Telegram's Bot API: the `sendMessage` call Alertmanager 0.25's
//! `notify/telegram` makes through its client library (telebot v3).
//!
//! `POST <api_url>/bot<bot_token>/sendMessage` with a JSON object of strings:
//! `chat_id`, `text` (the expanded `message`, as HTML-escaping `html/template` when
//! `parse_mode` is `HTML`, cut to 4096 characters), `parse_mode` when set,
//! `disable_web_page_preview: "true"` always and `disable_notification: "true"` when
//! `disable_notifications`. The answer is judged as telebot does: delivered only when
//! its body is JSON with `"ok": true` and a message as `result`, whatever the
//! status; any other answer, like any transport error, may be retried.
//!
//! Config: `send_resolved` true; `api_url` from the entry, else
//! `global.telegram_api_url`, else `https://api.telegram.org`; `bot_token` and a
//! non-zero `chat_id` required; `parse_mode` `HTML` by default, else `Markdown`,
//! `MarkdownV2` or empty.

use super::ReceiverKind;
use super::{truncate_runes, Call, Delivery, Expander, RequestError, Retrier};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{insert_text, notifier_head, string, url_of, SECRET};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::collections::BTreeMap;
use std::path::Path;

/// Alertmanager 0.25's default `global.telegram_api_url`.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

const MAX_MESSAGE_RUNES: usize = 4096;

/// The `sendMessage` call for `data`.
pub fn request(
    c: &TelegramConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Delivery, RequestError> {
    let text = if c.parse_mode == "HTML" {
        templates
            .expand_html(&c.message, &data.to_value())
            .map_err(|e| RequestError::Template(Box::new(e)))?
    } else {
        let mut t = Expander::new(templates, data);
        let text = t.expand(&c.message);
        t.finish()?;
        text
    };
    let mut params = BTreeMap::new();
    params.insert("chat_id", c.chat_id.to_string());
    params.insert("text", truncate_runes(text, MAX_MESSAGE_RUNES));
    if !c.parse_mode.is_empty() {
        params.insert("parse_mode", c.parse_mode.clone());
    }
    params.insert("disable_web_page_preview", "true".into());
    if c.disable_notifications {
        params.insert("disable_notification", "true".into());
    }
    let mut call = Call::post_json(
        format!("{}/bot{}/sendMessage", c.api_url, c.bot_token.expose()),
        serde_json::to_vec(&params).unwrap_or_default(),
        &[],
    );
    call.retrier = Retrier::TelegramOk;
    Ok(Delivery::Calls(vec![call]))
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's defaults of a Telegram config (`DefaultTelegramConfig`).
pub mod defaults {
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "telegram.default.message" . }}"#;
    /// `parse_mode`.
    pub const PARSE_MODE: &str = "HTML";
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTelegram {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
    pub(crate) api_url: Option<String>,
    pub(crate) bot_token: Option<String>,
    pub(crate) chat_id: Option<i64>,
    pub(crate) message: Option<String>,
    pub(crate) disable_notifications: Option<bool>,
    pub(crate) parse_mode: Option<String>,
}

/// `telegram_configs` entry.
#[derive(Clone, Debug)]
pub struct TelegramConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// The Bot API's base URL, as written.
    pub api_url: String,
    /// `bot_token`.
    pub bot_token: Secret,
    /// `chat_id`.
    pub chat_id: i64,
    /// Template.
    pub message: String,
    /// `disable_notifications`.
    pub disable_notifications: bool,
    /// `HTML`, `Markdown`, `MarkdownV2` or empty.
    pub parse_mode: String,
}

/// Resolves one `telegram_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawTelegram,
    globals: &Globals,
    global_api_url: Option<&str>,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> TelegramConfig {
    let bot_token = c.bot_token.clone().unwrap_or_default();
    if bot_token.is_empty() {
        p.push(
            path.key("bot_token"),
            "missing bot_token on telegram_config",
        );
    }
    let chat_id = c.chat_id.unwrap_or(0);
    if chat_id == 0 {
        p.push(path.key("chat_id"), "missing chat_id on telegram_config");
    }
    let parse_mode = template_or(&c.parse_mode, defaults::PARSE_MODE);
    if !["", "Markdown", "MarkdownV2", "HTML"].contains(&parse_mode.as_str()) {
        p.push(
            path.key("parse_mode"),
            "unknown parse_mode on telegram_config, must be Markdown, MarkdownV2, HTML or empty string",
        );
    }
    let api_url = c
        .api_url
        .clone()
        .or_else(|| global_api_url.map(str::to_string))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    if c.api_url.is_some() {
        if let Err(e) = check_http_url(&api_url) {
            p.push(path.key("api_url"), e.to_string());
        }
    }
    TelegramConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
        api_url,
        bot_token: Secret::new(bot_token),
        chat_id,
        message: template_or(&c.message, defaults::MESSAGE),
        disable_notifications: c.disable_notifications.unwrap_or(false),
        parse_mode,
    }
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults and the URL filled in, the token as `<secret>`.
pub(crate) fn show(c: &YamlValue, global: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    let url = url_of(
        c,
        "api_url",
        global,
        "telegram_api_url",
        DEFAULT_API_URL,
        false,
    );
    m.insert("api_url".into(), url.into());
    if c.get("bot_token")
        .and_then(string)
        .is_some_and(|s| !s.is_empty())
    {
        m.insert("bot_token".into(), SECRET.into());
    }
    if let Some(id) = c
        .get("chat_id")
        .and_then(YamlValue::as_i64)
        .filter(|i| *i != 0)
    {
        m.insert("chat_id".into(), id.into());
    }
    insert_text(&mut m, c, "message", defaults::MESSAGE);
    if c.get("disable_notifications").and_then(YamlValue::as_bool) == Some(true) {
        m.insert("disable_notifications".into(), true.into());
    }
    insert_text(&mut m, c, "parse_mode", defaults::PARSE_MODE);
    m
}

impl ReceiverKind for TelegramConfig {
    type Raw = RawTelegram;
    const NAME: &'static str = "telegram";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawTelegram,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> TelegramConfig {
        resolve(
            raw,
            global,
            global.raw.telegram_api_url.as_deref(),
            base,
            path,
            p,
        )
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

    fn show(entry: &YamlValue, global: &YamlValue) -> Mapping {
        show(entry, global)
    }
}
