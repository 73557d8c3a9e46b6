//! Receivers: turning one notification into the HTTP request of an integration, and
//! sending it.
//!
//! One file per integration, holding its config (as written, resolved with
//! Alertmanager's defaults and checks, and its default texts) and its request:
//! [`slack`], [`pushover`] and [`webhook`] each build the request body from the
//! integration's config, the template set and the notification's [`Data`], the way
//! Alertmanager 0.25's `notify/<kind>` packages do; [`email`] builds a message for
//! an SMTP smarthost instead. [`webex`] and [`msteams`] are POSTs too (Webex with an
//! `Authorization` header); [`wechat`] (a token request, then a POST) and [`sns`] (an
//! AWS SDK `Publish` call) send their own. Adding an integration is a file
//! here and an arm of [`crate::alertmanager::config::Integration`]. [`send`] POSTs it and classifies
//! the outcome like Alertmanager's `Retrier`: 2xx is delivered, 5xx and transport
//! errors may be retried, anything else is a permanent failure.

pub mod email;
pub mod msteams;
pub mod pushover;
pub mod slack;
pub mod sns;
pub mod webex;
pub mod webhook;
pub mod wechat;

use crate::alertmanager::config::Integration;
use crate::alertmanager::template::{Data, Templates};
use crate::config::Secret;
use std::time::Duration;

/// An HTTP request ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Where to POST.
    pub url: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// What one integration sends for one notification.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// An HTTP POST.
    Http(Request),
    /// A message for an SMTP smarthost.
    Email(Box<email::Email>),
    /// An HTTP POST with an `Authorization` header (`http_config.authorization`).
    AuthorizedHttp(Request, Secret),
    /// WeChat's token request, then its message POST.
    Wechat(Box<wechat::Message>),
    /// An SNS `Publish` call.
    Sns(Box<sns::Publish>),
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq)]
pub enum SendError {
    /// Worth retrying (5xx, network).
    Retryable(String),
    /// Not (4xx, template errors).
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retryable(m) | SendError::Permanent(m) => f.write_str(m),
        }
    }
}

/// The request `integration` sends for `data`; a template error is returned as `Err`.
pub fn build_request(
    integration: &Integration,
    templates: &Templates,
    data: &Data,
    group_key: &str,
) -> Result<Delivery, String> {
    match integration {
        Integration::Slack(c) => slack::request(c, templates, data).map(Delivery::Http),
        Integration::Pushover(c) => pushover::request(c, templates, data).map(Delivery::Http),
        Integration::Webhook(c) => Ok(Delivery::Http(webhook::request(c, data, group_key))),
        Integration::Email(c) => {
            email::request(c, templates, data).map(|e| Delivery::Email(Box::new(e)))
        }
        Integration::Webex(c) => webex::request(c, templates, data),
        Integration::Wechat(c) => wechat::request(c, templates, data).map(Delivery::Wechat),
        Integration::Sns(c) => sns::request(c, templates, data, group_key).map(Delivery::Sns),
        Integration::Msteams(c) => msteams::request(c, templates, data).map(Delivery::Http),
    }
}

/// Sends `delivery` once (`client` carries HTTP requests).
pub async fn send(
    client: &reqwest::Client,
    delivery: &Delivery,
    timeout: Duration,
) -> Result<(), SendError> {
    match delivery {
        Delivery::Http(request) => post(client, request, None, timeout).await,
        Delivery::Email(e) => email::send(e, timeout).await,
        Delivery::AuthorizedHttp(request, authorization) => {
            post(client, request, Some(authorization), timeout).await
        }
        Delivery::Wechat(m) => wechat::send(client, m, timeout).await,
        Delivery::Sns(p) => sns::send(p, timeout).await,
    }
}

/// POSTs `request` once, with `authorization` as its `Authorization` header if set.
async fn post(
    client: &reqwest::Client,
    request: &Request,
    authorization: Option<&Secret>,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut builder = client
        .post(&request.url)
        .timeout(timeout)
        .header("Content-Type", request.content_type);
    if let Some(a) = authorization {
        builder = builder.header("Authorization", a.expose());
    }
    let response = builder
        .body(request.body.clone())
        .send()
        .await
        .map_err(|e| {
            // A failed handshake says why (`x509: certificate signed by unknown authority`).
            let reason =
                crate::http_client::describe_tls_failure(&e).unwrap_or_else(|| e.to_string());
            SendError::Retryable(format!("POST {}: {reason}", redact(&request.url)))
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(status_error(status.as_u16(), &request.url, &body))
}

/// The URL without its path and query, which hold secrets for Slack and Pushover.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => "<url>".into(),
    }
}

/// How a failed HTTP exchange is classified from its status (Alertmanager's
/// `Retrier.Check`): 5xx may be retried, anything else may not; `body` says why.
pub(crate) fn status_error(status: u16, url: &str, body: &str) -> SendError {
    let message = format!(
        "unexpected status code {status} from {}: {}",
        redact(url),
        body.chars().take(200).collect::<String>()
    );
    if (500..600).contains(&status) {
        SendError::Retryable(message)
    } else {
        SendError::Permanent(message)
    }
}

/// Alertmanager's `TruncateInRunes`: at most `n` characters, the last one `…`.
pub fn truncate_runes(s: String, n: usize) -> String {
    if s.chars().count() <= n {
        return s;
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Alertmanager's `TruncateInBytes`: at most `n` bytes, the last three `…`, cut at a
/// character boundary.
pub fn truncate_bytes(s: String, n: usize) -> String {
    if s.len() <= n {
        return s;
    }
    if n <= 3 {
        return if n == 3 { "…".into() } else { ".".repeat(n) };
    }
    let mut end = n - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Expands templates, keeping the first error (Alertmanager's `tmplText`).
pub(crate) struct Expander<'a> {
    templates: &'a Templates,
    data: gotmpl::Value,
    error: Option<String>,
}

impl<'a> Expander<'a> {
    pub(crate) fn new(templates: &'a Templates, data: &Data) -> Expander<'a> {
        Expander {
            templates,
            data: data.to_value(),
            error: None,
        }
    }

    pub(crate) fn expand(&mut self, text: &str) -> String {
        match self.templates.expand(text, &self.data) {
            Ok(s) => s,
            Err(e) => {
                self.error.get_or_insert(e);
                String::new()
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), String> {
        match self.error {
            Some(e) => Err(format!("template error: {e}")),
            None => Ok(()),
        }
    }
}
