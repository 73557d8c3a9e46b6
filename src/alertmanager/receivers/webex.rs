//! Webex: the message POST of Alertmanager 0.25's `notify/webex` — JSON
//! `{"markdown": <message>, "roomId": <room_id>}` to `api_url` (by default
//! `global.webex_api_url`, `https://webexapis.com/v1/messages`), the message cut to
//! Webex's 7439 bytes (`TruncateInBytes`: the last three `…`, cut at a character
//! boundary; Alertmanager 0.25 panics instead when such a text has fewer than 7436
//! characters), the bot token sent as the
//! `Authorization` header of `http_config.authorization`, which is required.
//!
//! Config checks as Alertmanager's: `room_id` and `http_config.authorization` are
//! required; `room_id` is sent as written (not a template); `send_resolved` defaults
//! to true.

use super::ReceiverKind;
use super::{truncate_bytes, Call, Delivery, Expander, RequestError};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{insert_text, notifier_head, url_of};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{Authorization, FieldPath, Problems};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::{json, Map};
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::Path;

/// The most Webex accepts in a message, in bytes.
const MAX_MESSAGE_BYTES: usize = 7439;

/// Alertmanager 0.25's `global.webex_api_url`.
pub const DEFAULT_API_URL: &str = "https://webexapis.com/v1/messages";

/// The authorized POST for `data`.
pub fn request(
    c: &WebexConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Delivery, RequestError> {
    let mut t = Expander::new(templates, data);
    let message = truncate_bytes(t.expand(&c.message), MAX_MESSAGE_BYTES);
    t.finish()?;
    let mut body = Map::new();
    body.insert("markdown".into(), json!(message));
    if !c.room_id.is_empty() {
        body.insert("roomId".into(), json!(c.room_id));
    }
    // Without credentials prometheus/common still sends the type (`Bearer `).
    let a = &c.authorization;
    let authorization = match (&a.credentials, &a.credentials_file) {
        (None, None) => format!("{} ", a.kind),
        _ => a
            .header_value()
            .map_err(RequestError::Credentials)?
            .unwrap_or_default(),
    };
    let mut call = Call::post_json(
        c.api_url.clone(),
        serde_json::to_vec(&body).unwrap_or_default(),
        &[],
    );
    call.headers.push(("Authorization", authorization));
    Ok(Delivery::Calls(vec![call]))
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults filled in, `global.webex_api_url` as its URL when it has none.
pub(crate) fn show(c: &YamlValue, global: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    let url = url_of(
        c,
        "api_url",
        global,
        "webex_api_url",
        DEFAULT_API_URL,
        false,
    );
    m.insert("api_url".into(), url.into());
    insert_text(&mut m, c, "message", defaults::MESSAGE);
    let room_id = c.get("room_id").and_then(YamlValue::as_str).unwrap_or("");
    m.insert("room_id".into(), room_id.into());
    m
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of a Webex config (`DefaultWebexConfig`).
pub mod defaults {
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "webex.default.message" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWebex {
    send_resolved: Option<bool>,
    api_url: Option<String>,
    message: Option<String>,
    room_id: Option<String>,
    http_config: Option<RawHttpClientConfig>,
}

/// `webex_configs` entry.
#[derive(Clone, Debug)]
pub struct WebexConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// Where to POST.
    pub api_url: String,
    /// Template.
    pub message: String,
    /// `room_id`, as written.
    pub room_id: String,
    /// `http_config.authorization`, sent by [`request`].
    pub authorization: Authorization,
    /// The rest of `http_config`.
    pub(crate) http_config: HttpClientConfig,
}

/// Resolves one `webex_configs` entry (`global_url`: `global.webex_api_url`), adding
/// its problems.
pub(crate) fn resolve(
    c: &RawWebex,
    globals: &Globals,
    global_url: Option<&str>,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> WebexConfig {
    let room_id = c.room_id.clone().unwrap_or_default();
    if room_id.is_empty() {
        p.push(path.key("room_id"), "missing room_id on webex_config");
    }
    // Alertmanager requires the entry's own `authorization` (or `bearer_token`),
    // checked before `global.http_config` applies.
    let mut http_config = receiver_http_config(&c.http_config, globals, base, path, p);
    let own = c.http_config.is_some();
    let authorization = match http_config.authorization.take().filter(|_| own) {
        Some(a) => a,
        None => {
            p.push(
                path.key("http_config"),
                "missing webex_configs.http_config.authorization",
            );
            Authorization {
                kind: "Bearer".into(),
                credentials: None,
                credentials_file: None,
            }
        }
    };
    let api_url = match &c.api_url {
        Some(u) => {
            if let Err(e) = check_http_url(u) {
                p.push(path.key("api_url"), e.to_string());
            }
            u.clone()
        }
        None => global_url.unwrap_or(DEFAULT_API_URL).to_string(),
    };
    WebexConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        api_url,
        message: template_or(&c.message, defaults::MESSAGE),
        room_id,
        authorization,
        http_config,
    }
}

impl ReceiverKind for WebexConfig {
    type Raw = RawWebex;
    const NAME: &'static str = "webex";
    const COUNTED_FROM_START: bool = false;

    fn resolve(
        raw: &RawWebex,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> WebexConfig {
        resolve(
            raw,
            global,
            global.raw.webex_api_url.as_deref(),
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
