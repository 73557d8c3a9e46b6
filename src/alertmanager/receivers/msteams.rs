//! Microsoft Teams incoming webhooks: the legacy MessageCard of Alertmanager
//! 0.26/0.27's `notify/msteams` (not in 0.25) — JSON `@context`
//! (`http://schema.org/extensions`), `type` (`MessageCard`), `title`, `summary`,
//! `text` and `themeColor` (`8C1A1A` while any alert fires, `2DC72D` when all are
//! resolved), POSTed to `webhook_url` or the URL read from `webhook_url_file` at each
//! send.
//!
//! Config checks as Alertmanager 0.28's (0.27 refuses `webhook_url_file` without
//! `webhook_url`, a bug fixed later): exactly one of `webhook_url` and
//! `webhook_url_file`; `send_resolved` defaults to true; `title`, `summary` and `text`
//! default to `msteams.default.*`.

use super::{Delivery, ReceiverKind, RequestError};
use super::{Expander, Request};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{insert_nonempty, insert_text, notifier_head, SECRET};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use serde::Deserialize;
use serde_json::json;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::{Path, PathBuf};

/// `themeColor` while alerts fire.
const COLOR_FIRING: &str = "8C1A1A";
/// `themeColor` once all are resolved.
const COLOR_RESOLVED: &str = "2DC72D";

/// The MessageCard POST for `data`.
pub fn request(
    c: &MsteamsConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Request, RequestError> {
    let mut t = Expander::new(templates, data);
    let title = t.expand(&c.title);
    let text = t.expand(&c.text);
    let summary = t.expand(&c.summary);
    t.finish()?;
    let url = match &c.webhook_url {
        WebhookUrl::Inline(u) => u.expose().to_string(),
        WebhookUrl::File(f) => std::fs::read_to_string(f)
            .map_err(|source| RequestError::Read {
                context: "read webhook_url_file",
                source,
            })?
            .trim()
            .to_string(),
    };
    let color = if data.status == "firing" {
        COLOR_FIRING
    } else {
        COLOR_RESOLVED
    };
    let card = json!({
        "@context": "http://schema.org/extensions",
        "type": "MessageCard",
        "title": title,
        "summary": summary,
        "text": text,
        "themeColor": color,
    });
    Ok(Request {
        url,
        content_type: "application/json",
        body: serde_json::to_vec(&card).unwrap_or_default(),
    })
}

/// An entry as Alertmanager 0.27 shows it (0.25 has no Teams;
/// `crate::alertmanager::config_show`): defaults filled in, the URL as `<secret>`.
pub(crate) fn show(c: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    if c.get("webhook_url").is_some() {
        m.insert("webhook_url".into(), SECRET.into());
    }
    insert_nonempty(&mut m, c, &["webhook_url_file"]);
    insert_text(&mut m, c, "title", defaults::TITLE);
    insert_text(&mut m, c, "summary", defaults::SUMMARY);
    insert_text(&mut m, c, "text", defaults::TEXT);
    m
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.27's default texts of a Teams config (`DefaultMSTeamsConfig`).
pub mod defaults {
    /// `title`.
    pub const TITLE: &str = r#"{{ template "msteams.default.title" . }}"#;
    /// `summary`.
    pub const SUMMARY: &str = r#"{{ template "msteams.default.summary" . }}"#;
    /// `text`.
    pub const TEXT: &str = r#"{{ template "msteams.default.text" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMsteams {
    send_resolved: Option<bool>,
    webhook_url: Option<String>,
    webhook_url_file: Option<String>,
    title: Option<String>,
    summary: Option<String>,
    text: Option<String>,
    http_config: Option<RawHttpClientConfig>,
}

/// Where the card goes.
#[derive(Clone, Debug)]
pub enum WebhookUrl {
    /// `webhook_url`.
    Inline(Secret),
    /// `webhook_url_file`, read at each send.
    File(PathBuf),
}

/// `msteams_configs` entry.
#[derive(Clone, Debug)]
pub struct MsteamsConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// `webhook_url` or `webhook_url_file`.
    pub webhook_url: WebhookUrl,
    /// Template.
    pub title: String,
    /// Template.
    pub summary: String,
    /// Template.
    pub text: String,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
}

/// Resolves one `msteams_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawMsteams,
    globals: &Globals,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> MsteamsConfig {
    let webhook_url = match (&c.webhook_url, &c.webhook_url_file) {
        (Some(_), Some(_)) => {
            p.push(
                path.clone(),
                "at most one of webhook_url & webhook_url_file must be configured",
            );
            WebhookUrl::Inline(Secret::new(""))
        }
        (Some(u), None) => {
            if let Err(e) = check_http_url(u) {
                p.push(path.key("webhook_url"), e.to_string());
            }
            WebhookUrl::Inline(Secret::new(u.clone()))
        }
        (None, Some(f)) => WebhookUrl::File(base.join(f)),
        (None, None) => {
            p.push(
                path.clone(),
                "one of webhook_url or webhook_url_file must be configured",
            );
            WebhookUrl::Inline(Secret::new(""))
        }
    };
    MsteamsConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        webhook_url,
        title: template_or(&c.title, defaults::TITLE),
        summary: template_or(&c.summary, defaults::SUMMARY),
        text: template_or(&c.text, defaults::TEXT),
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
    }
}

impl ReceiverKind for MsteamsConfig {
    type Raw = RawMsteams;
    const NAME: &'static str = "msteams";
    const COUNTED_FROM_START: bool = false;

    fn resolve(
        raw: &RawMsteams,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> MsteamsConfig {
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
