//! Pushover's message API: a form POST with the fields Alertmanager 0.25's
//! `notify/pushover` sends (`token`, `user`, `title`, `message`, `url`, `url_title`,
//! `priority`, `retry`, `expire`, `sound`, and `html=1` when enabled), with its limits
//! (title 250, message 1024, URL 512 characters) and `(no details)` for an empty
//! message.

use super::{truncate_runes, Expander, Request};
use crate::alertmanager::config::PushoverConfig;
use crate::alertmanager::template::{Data, Templates};

const MAX_TITLE_RUNES: usize = 250;
const MAX_MESSAGE_RUNES: usize = 1024;
const MAX_URL_RUNES: usize = 512;

/// The form POST for `data`.
pub fn request(c: &PushoverConfig, templates: &Templates, data: &Data) -> Result<Request, String> {
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
