//! Pushover's message API: a form POST with the fields Alertmanager 0.25's
//! `notify/pushover` sends (`token`, `user`, `title`, `message`, `url`, `url_title`,
//! `priority`, `retry`, `expire`, `sound`, and `html=1` when enabled), with its limits
//! (title 250, message 1024, URL 512 characters) and `(no details)` for an empty
//! message.

use super::{truncate_runes, Expander, Request, RequestError};
use super::{Delivery, ReceiverKind};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, duration, receiver_http_config, template_or};
use crate::alertmanager::config_show::{
    flag, insert_nonempty, notifier_head, string, text_or, SECRET,
};
use crate::alertmanager::go_time::duration_string;
use crate::alertmanager::template::{Data, Templates};
use crate::config::parse_duration;
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::Path;
use std::time::Duration;

const MAX_TITLE_RUNES: usize = 250;
const MAX_MESSAGE_RUNES: usize = 1024;
const MAX_URL_RUNES: usize = 512;

/// The form POST for `data`.
pub fn request(
    c: &PushoverConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Request, RequestError> {
    let mut t = Expander::new(templates, data);
    let mut form: Vec<(&str, String)> = vec![
        ("token", t.expand(c.token.expose())),
        ("user", t.expand(c.user_key.expose())),
        ("title", truncate_runes(t.expand(&c.title), MAX_TITLE_RUNES)),
    ];
    if c.html {
        form.push(("html", "1".into()));
    }
    let message = truncate_runes(t.expand(&c.message), MAX_MESSAGE_RUNES);
    let message = message.trim();
    form.push((
        "message",
        if message.is_empty() {
            "(no details)".into()
        } else {
            message.to_string()
        },
    ));
    form.push(("url", truncate_runes(t.expand(&c.url), MAX_URL_RUNES)));
    form.push(("url_title", t.expand(&c.url_title)));
    form.push(("priority", t.expand(&c.priority)));
    form.push(("retry", c.retry.as_secs().to_string()));
    form.push(("expire", c.expire.as_secs().to_string()));
    form.push(("sound", t.expand(&c.sound)));
    t.finish()?;
    Ok(Request {
        url: c.api_url.clone(),
        content_type: "application/x-www-form-urlencoded",
        body: serde_urlencoded::to_string(&form)
            .unwrap_or_default()
            .into_bytes(),
    })
}

// ---------------------------------------------------------------------------
// Config

/// Pushover's message API (Alertmanager 0.25's fixed endpoint).
pub const PUSHOVER_API_URL: &str = "https://api.pushover.net/1/messages.json";

/// Alertmanager 0.25's default texts of a Pushover config (`DefaultPushoverConfig`).
pub mod defaults {
    /// `title`.
    pub const TITLE: &str = r#"{{ template "pushover.default.title" . }}"#;
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "pushover.default.message" . }}"#;
    /// `url`.
    pub const URL: &str = r#"{{ template "pushover.default.url" . }}"#;
    /// `priority`.
    pub const PRIORITY: &str = r#"{{ if eq .Status "firing" }}2{{ else }}0{{ end }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPushover {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) user_key: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) url_title: Option<String>,
    pub(crate) sound: Option<String>,
    pub(crate) priority: Option<String>,
    pub(crate) retry: Option<String>,
    pub(crate) expire: Option<String>,
    pub(crate) html: Option<bool>,
    pub(crate) api_url: Option<String>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
}

/// `pushover_configs` entry.
#[derive(Clone, Debug)]
pub struct PushoverConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// Template.
    pub user_key: Secret,
    /// Template.
    pub token: Secret,
    /// Template.
    pub title: String,
    /// Template.
    pub message: String,
    /// Template.
    pub url: String,
    /// Template.
    pub url_title: String,
    /// Template.
    pub sound: String,
    /// Template.
    pub priority: String,
    /// Emergency retry interval.
    pub retry: Duration,
    /// Emergency expiry.
    pub expire: Duration,
    /// `html`.
    pub html: bool,
    /// Where to POST (promflow extension; Pushover's API by default).
    pub api_url: String,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
}

/// Resolves one `pushover_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawPushover,
    globals: &Globals,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> PushoverConfig {
    let user_key = c.user_key.clone().unwrap_or_default();
    if user_key.is_empty() {
        p.push(path.key("user_key"), "missing user key in Pushover config");
    }
    let token = c.token.clone().unwrap_or_default();
    if token.is_empty() {
        p.push(path.key("token"), "missing token in Pushover config");
    }
    let api_url = c
        .api_url
        .clone()
        .unwrap_or_else(|| PUSHOVER_API_URL.to_string());
    if let Err(e) = check_http_url(&api_url) {
        p.push(path.key("api_url"), e.to_string());
    }
    PushoverConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        user_key: Secret::new(user_key),
        token: Secret::new(token),
        title: template_or(&c.title, defaults::TITLE),
        message: template_or(&c.message, defaults::MESSAGE),
        url: template_or(&c.url, defaults::URL),
        url_title: c.url_title.clone().unwrap_or_default(),
        sound: c.sound.clone().unwrap_or_default(),
        priority: template_or(&c.priority, defaults::PRIORITY),
        retry: duration(&c.retry, Duration::from_secs(60), path.key("retry"), p),
        expire: duration(&c.expire, Duration::from_secs(3600), path.key("expire"), p),
        html: c.html.unwrap_or(false),
        api_url,
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
    }
}

impl ReceiverKind for PushoverConfig {
    type Raw = RawPushover;
    const NAME: &'static str = "pushover";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawPushover,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> PushoverConfig {
        resolve(raw, global, base, path, p)
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

    fn show(entry: &YamlValue, _global: &YamlValue) -> Mapping {
        show(entry)
    }
}

/// Pushover's texts and their defaults, in `PushoverConfig` order.
const PUSHOVER_TEXTS: [(&str, &str); 3] = [
    ("title", defaults::TITLE),
    ("message", defaults::MESSAGE),
    ("url", defaults::URL),
];

/// An entry as Alertmanager 0.25 marshals it.
pub(crate) fn show(c: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    m.insert("user_key".into(), SECRET.into());
    m.insert("token".into(), SECRET.into());
    for (key, default) in PUSHOVER_TEXTS {
        m.insert(key.into(), text_or(c, key, default));
    }
    insert_nonempty(&mut m, c, &["url_title", "sound"]);
    m.insert(
        "priority".into(),
        text_or(c, "priority", defaults::PRIORITY),
    );
    for (key, default) in [("retry", 60), ("expire", 3600)] {
        let d = c
            .get(key)
            .and_then(string)
            .and_then(|t| parse_duration(&t).ok())
            .unwrap_or(Duration::from_secs(default));
        m.insert(
            key.into(),
            duration_string(d.as_nanos().min(i64::MAX as u128) as i64).into(),
        );
    }
    m.insert("html".into(), flag(c, "html", false));
    m
}
