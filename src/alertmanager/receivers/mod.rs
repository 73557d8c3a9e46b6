//! Receivers: each kind's config and its request, and sending it.
//!
//! One file per integration, holding its config (as written, resolved with
//! Alertmanager's defaults and checks, its default texts and how `amtool config
//! show` prints it) and its request: [`slack`], [`pushover`] and [`webhook`] each
//! build the request body from the integration's config, the template set and the
//! notification's [`Data`], the way Alertmanager 0.25's `notify/<kind>` packages do;
//! [`email`] builds a message for an SMTP smarthost instead. [`send`] POSTs it and
//! classifies the outcome like Alertmanager's `Retrier`: 2xx is delivered, 5xx and
//! transport errors may be retried, anything else is a permanent failure.
//!
//! Integrations that need more than one POST with a content type — a method,
//! headers, several requests in turn, or their own notion of a retryable answer
//! ([`pagerduty`], [`opsgenie`], [`victorops`], [`telegram`], [`discord`]) — build
//! [`Call`]s with a [`Retrier`] instead of a [`Request`]; [`webex`] is such a call
//! (its `Authorization` header), [`msteams`] a plain POST, while [`wechat`] (a token
//! request, then a POST) and [`sns`] (an AWS SDK `Publish` call) send their own.
//!
//! **Adding an integration** is one file and one line: the file (`pub mod` it below)
//! implements [`ReceiverKind`] for its resolved config — its raw type, integration
//! name, `resolve`, `request`, `http_config`, `send_resolved` and `show` — and one
//! line in the `receivers!` list below names its `*_configs` key, its
//! [`Integration`] variant and that config type. The list generates the
//! `Integration` enum and its dispatch, the `*_configs` fields of a receiver as
//! written (plain fields, so unknown ones are still reported), the resolve loop, the
//! `amtool config show` order and the integrations whose counters start at 0. Only
//! `global.*` defaults of a new kind are added to
//! [`crate::alertmanager::config`]'s `RawGlobal` besides.

pub mod email;
pub mod pushover;
pub mod slack;
pub mod webhook;
// Added for issue 12 (append-only, so parallel additions merge).
pub mod discord;
pub mod msteams;
pub mod opsgenie;
pub mod pagerduty;
pub mod sns;
pub mod telegram;
pub mod victorops;
pub mod webex;
pub mod wechat;

use crate::alertmanager::config::Globals;
use crate::alertmanager::template::{Data, TemplateError, Templates};
use crate::config::{FieldPath, HttpClientConfig, Problems, Secret};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::{Path, PathBuf};
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
    /// HTTP requests sent in turn; the first failure stops the rest.
    Calls(Vec<Call>),
    /// WeChat's token request, then its message POST.
    Wechat(Box<wechat::Message>),
    /// An SNS `Publish` call.
    Sns(Box<sns::Publish>),
}

/// An HTTP request with its method and headers, and how its answer is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// `POST`, `PUT`.
    pub method: reqwest::Method,
    /// Where to.
    pub url: String,
    /// Headers besides `Content-Type` (e.g. OpsGenie's `Authorization: GenieKey …`).
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// How the answer is judged.
    pub retrier: Retrier,
}

impl Call {
    /// A JSON POST judged by status, retrying 5xx and `retry_codes`.
    pub fn post_json(url: String, body: Vec<u8>, retry_codes: &'static [u16]) -> Call {
        Call {
            method: reqwest::Method::POST,
            url,
            headers: Vec::new(),
            content_type: "application/json",
            body,
            retrier: Retrier::Status(retry_codes),
        }
    }
}

impl From<&Request> for Call {
    fn from(r: &Request) -> Call {
        Call {
            method: reqwest::Method::POST,
            url: r.url.clone(),
            headers: Vec::new(),
            content_type: r.content_type,
            body: r.body.clone(),
            retrier: Retrier::Status(&[]),
        }
    }
}

/// When a failed call may be retried (Alertmanager's per-integration `Retrier`).
#[derive(Clone, Debug, PartialEq)]
pub enum Retrier {
    /// 2xx is delivered; 5xx, these codes and transport errors may be retried.
    Status(&'static [u16]),
    /// Telegram's Bot API as Alertmanager's client (telebot) reads it: delivered when
    /// the body is JSON with `"ok": true`, whatever the status; anything else may be
    /// retried.
    TelegramOk,
}

/// A key written inline or in a file read at each send. A relative file is taken
/// from the config file's directory, as promflow does for every `*_file` (Alertmanager
/// 0.25 reads these from its working directory).
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Inline.
    Inline(Secret),
    /// `*_file`.
    File(PathBuf),
}

impl KeySource {
    /// The inline key if set, else the file (relative to `base`), else an empty key.
    pub(crate) fn of(inline: Option<&str>, file: Option<&str>, base: &Path) -> KeySource {
        match (inline, file) {
            (Some(k), _) => KeySource::Inline(Secret::new(k)),
            (None, Some(f)) => KeySource::File(base.join(f)),
            (None, None) => KeySource::Inline(Secret::new("")),
        }
    }

    /// The key as written (a file's whole content; OpsGenie does not trim it).
    pub fn read_raw(&self) -> Result<String, KeyFileError> {
        match self {
            KeySource::Inline(s) => Ok(s.expose().to_string()),
            KeySource::File(f) => std::fs::read_to_string(f).map_err(|source| KeyFileError {
                path: f.clone(),
                source,
            }),
        }
    }

    /// The key (a file's content trimmed).
    pub fn read(&self) -> Result<String, KeyFileError> {
        self.read_raw().map(|s| s.trim().to_string())
    }
}

/// An API's `*_api_url`, `*_api_key` and `*_api_key_file` settings in `global`
/// (OpsGenie's, VictorOps').
#[derive(Debug, Default)]
pub(crate) struct RawGlobalApi {
    pub(crate) api_url: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) api_key_file: Option<String>,
}

impl RawGlobalApi {
    /// The key of an entry at `path` (`api_key`, `api_key_file`), else the global
    /// one; adds Alertmanager's problems: both set in the entry, or no key anywhere
    /// (`missing`).
    pub(crate) fn key_for(
        &self,
        api_key: &Option<String>,
        api_key_file: &Option<String>,
        missing: &str,
        base: &Path,
        path: &crate::config::FieldPath,
        p: &mut crate::config::Problems,
    ) -> KeySource {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        let (key, file) = (set(api_key), set(api_key_file));
        if key.is_some() && file.is_some() {
            p.push(
                path.key("api_key"),
                "at most one of api_key & api_key_file must be configured",
            );
        }
        if key.is_some() || file.is_some() {
            return KeySource::of(key, file, base);
        }
        let (key, file) = (set(&self.api_key), set(&self.api_key_file));
        if key.is_none() && file.is_none() {
            p.push(path.clone(), missing);
        }
        KeySource::of(key, file, base)
    }
}

/// Alertmanager's `Key.Hash`: the hex SHA-256 of a group key (PagerDuty's dedup
/// key, OpsGenie's alias, VictorOps' entity id).
pub fn group_key_hash(group_key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(group_key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `*_file` key that cannot be read at send time.
#[derive(Debug, thiserror::Error)]
#[error("failed to read key from file {path}: {source}")]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Why an integration cannot build what it sends for a notification (the
/// notification fails, without retries: [`SendError::Permanent`]). Each text is the
/// one Alertmanager 0.25 logs for it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A text failed to expand (Alertmanager's `tmplText`: the first error).
    #[error("template error: {0}")]
    Template(#[source] Box<TemplateError>),
    /// A PagerDuty `details` value failed to expand.
    #[error("{field:?}: failed to template {text:?}: {source}")]
    TemplateField {
        /// The `details` key.
        field: String,
        /// Its text.
        text: String,
        /// Why (boxed: a template error is large, and this is returned by value).
        source: Box<TemplateError>,
    },
    /// A key file cannot be read.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// Another file read at each send cannot be read (`webhook_url_file`).
    #[error("{context}: {source}")]
    Read {
        /// The integration's wording (`read webhook_url_file`).
        context: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The `authorization` credentials file cannot be read (`config`'s wording).
    #[error(transparent)]
    Credentials(crate::config::SecretFileError),
    /// An address list of an email does not parse (`field` is `from` or `to`).
    #[error("parse '{field}' addresses: {source}")]
    Addresses {
        /// `from` or `to`.
        field: &'static str,
        /// Why.
        source: email::AddressError,
    },
    /// A value the integration needs is not usable after templating (an empty
    /// routing key, more than one `from` address, an invalid URL), in its words.
    #[error("{0}")]
    Invalid(String),
    /// An error with the integration's wording before it (`templating error: …`).
    #[error("{context}: {source}")]
    Context {
        /// The integration's wording.
        context: &'static str,
        /// The error.
        source: Box<RequestError>,
    },
}

impl RequestError {
    /// This error, worded by the integration as `context: error`.
    pub(crate) fn context(self, context: &'static str) -> RequestError {
        RequestError::Context {
            context,
            source: Box::new(self),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (5xx, network).
    #[error("{0}")]
    Retryable(Failure),
    /// Not (4xx, template errors).
    #[error("{0}")]
    Permanent(Failure),
}

/// What cannot be built is not worth retrying.
impl From<RequestError> for SendError {
    fn from(e: RequestError) -> SendError {
        SendError::Permanent(Failure::Request(e))
    }
}

/// What went wrong with one notification; its text is the one logged (no source,
/// so the log line reads as Alertmanager's).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request could not be made from the alerts (templates, limits).
    #[error("{0}")]
    Request(RequestError),
    /// The built-in Alertmanager has no configuration yet.
    #[error("notifier is not configured")]
    NotConfigured,
    /// The receiver's HTTP client cannot be built (its TLS settings).
    #[error("{0}")]
    Client(crate::http_client::TlsSetupError),
    /// Its credentials cannot be had (a secret file, an OAuth 2.0 token).
    #[error("{0}")]
    Authorize(crate::http_client::AuthError),
    /// No answer; a failed handshake in Go's words.
    #[error("{method} {url}: {}", crate::http_client::describe_tls_failure(error).unwrap_or_else(|| error.to_string()))]
    Send {
        method: reqwest::Method,
        /// Without path and query (see `redact`).
        url: String,
        error: reqwest::Error,
    },
    /// An answer with a status that fails the receiver's retrier.
    #[error("unexpected status code {status} from {url}: {body}")]
    Status {
        status: u16,
        /// Without path and query.
        url: String,
        /// The answer's first 200 characters.
        body: String,
    },
    /// Retried until the notification's timeout.
    #[error("{0} (gave up retrying)")]
    GaveUp(Box<Failure>),
    /// Email: a `from` or `to` that is not an address.
    #[error("invalid address {address:?}: {error}")]
    EmailAddress {
        address: String,
        error: lettre::address::AddressError,
    },
    /// Email: no envelope for these addresses.
    #[error("{0}")]
    EmailEnvelope(lettre::error::Error),
    /// Email: the smarthost's `tls_config` does not load.
    #[error("invalid tls_config for {smarthost}: {error}")]
    SmtpTls {
        smarthost: String,
        error: email::SmtpTlsError,
    },
    /// Email: `auth_password_file` cannot be read.
    #[error("cannot read {}: {error}", file.display())]
    PasswordFile {
        file: PathBuf,
        error: std::io::Error,
    },
    /// Email: the SMTP exchange failed.
    #[error("SMTP {smarthost}: {error}")]
    Smtp {
        smarthost: String,
        error: lettre::transport::smtp::Error,
    },
    /// SNS: a message attribute the SDK refuses.
    #[error("{0}")]
    SnsAttribute(aws_sdk_sns::error::BuildError),
    /// SNS: an answer with a status other than 5xx (`reason`: the SDK error chain).
    #[error("SNS Publish: unexpected status code {status}: {reason}")]
    SnsStatus { status: u16, reason: String },
    /// SNS: no answer, or a 5xx (`reason`: the SDK error chain).
    #[error("SNS Publish: {reason}")]
    SnsPublish { reason: String },
    /// SNS: no region in the config or the environment.
    #[error("region not configured in sns.sigv4.region or in default credentials chain")]
    SnsRegion,
    /// WeChat: `api_url` does not make a URL.
    #[error("{0}")]
    WeChatUrl(<reqwest::Url as std::str::FromStr>::Err),
    /// WeChat: no answer (`url` without its query, which holds the token).
    #[error("{method} {url}: {error}")]
    WeChatRequest {
        method: &'static str,
        url: String,
        error: reqwest::Error,
    },
    /// WeChat: the answer's body could not be read.
    #[error("{0}")]
    WeChatBody(reqwest::Error),
    /// WeChat: an answer other than 200.
    #[error("unexpected status code {status} from {url}")]
    WeChatStatus { status: u16, url: String },
    #[error("WeChat answer is not JSON: {0}")]
    WeChatAnswer(serde_json::Error),
    /// WeChat: the API's own error text.
    #[error("{0}")]
    WeChat(String),
    #[error("WeChat token answer: {0}")]
    WeChatToken(serde_json::Error),
    #[error("invalid APISecret for CorpID: {0}")]
    WeChatSecret(String),
}

/// What each receiver kind's resolved config (one `*_configs` entry) provides.
pub(crate) trait ReceiverKind: Sized {
    /// An entry as written (every field optional; unknown fields are reported).
    type Raw: for<'de> Deserialize<'de> + std::fmt::Debug;
    /// The `integration` label of Alertmanager's metrics (`email`, `slack`, …).
    const NAME: &'static str;
    /// Whether Alertmanager 0.25 renders its notification counters at 0 before the
    /// first notification (all but Discord, Webex and Microsoft Teams).
    const COUNTED_FROM_START: bool;
    /// The entry at `path` with `global`'s defaults and Alertmanager's checks;
    /// `base` is the config file's directory.
    fn resolve(
        raw: &Self::Raw,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> Self;
    /// What it sends for `data`; a template error is returned as `Err`.
    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        group_key: &str,
    ) -> Result<Delivery, RequestError>;
    /// `http_config` (else `global.http_config`): how its endpoint is reached and
    /// requests are authorized; `None` for kinds that send without HTTP (email) or
    /// with their own client (SNS).
    fn http_config(&self) -> Option<&HttpClientConfig>;
    /// `send_resolved`.
    fn send_resolved(&self) -> bool;
    /// The entry as written (`entry`) as Alertmanager 0.25 marshals it, with the
    /// file's `global` section applied (`amtool config show`, `/api/v2/status`).
    fn show(entry: &YamlValue, global: &YamlValue) -> Mapping;
}

/// Generates everything that lists the receiver kinds from one list, one line per
/// kind: `<key>_configs: Variant(module::Config),`, in Alertmanager's `Receiver`
/// struct order (the order `amtool config show` prints and integrations are built).
macro_rules! receivers {
    ($($key:ident: $variant:ident($module:ident::$config:ident),)*) => {
        /// One `*_configs` entry.
        #[derive(Clone, Debug)]
        pub enum Integration {
            $(
                #[doc = concat!("`", stringify!($key), "`.")]
                $variant($module::$config),
            )*
        }

        impl Integration {
            /// The integration label of Alertmanager's metrics.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Integration::$variant(_) => <$module::$config as ReceiverKind>::NAME,)*
                }
            }

            /// `http_config`, else `global.http_config`; `None` for email and SNS.
            pub(crate) fn http_config(&self) -> Option<&HttpClientConfig> {
                match self {
                    $(Integration::$variant(c) => c.http_config(),)*
                }
            }

            /// `send_resolved`.
            pub fn send_resolved(&self) -> bool {
                match self {
                    $(Integration::$variant(c) => c.send_resolved(),)*
                }
            }

            /// The request it sends for `data`; a template error is returned as `Err`.
            pub fn request(
                &self,
                templates: &Templates,
                data: &Data,
                group_key: &str,
            ) -> Result<Delivery, RequestError> {
                match self {
                    $(Integration::$variant(c) => c.request(templates, data, group_key),)*
                }
            }
        }

        /// A `receivers` entry as written.
        #[derive(Debug, Default, Deserialize)]
        pub(crate) struct RawReceiver {
            pub(crate) name: Option<String>,
            $(pub(crate) $key: Option<Vec<<$module::$config as ReceiverKind>::Raw>>,)*
        }

        impl RawReceiver {
            /// Its integrations, resolved: by kind, then as listed. `path` is the
            /// receiver's.
            pub(crate) fn integrations(
                &self,
                global: &Globals,
                base: &Path,
                path: &FieldPath,
                p: &mut Problems,
            ) -> Vec<Integration> {
                let mut out = Vec::new();
                $(
                    for (j, c) in self.$key.iter().flatten().enumerate() {
                        let cpath = path.key(stringify!($key)).index(j);
                        out.push(Integration::$variant(
                            <$module::$config as ReceiverKind>::resolve(c, global, base, &cpath, p),
                        ));
                    }
                )*
                out
            }
        }

        /// Each kind's `*_configs` key and how an entry is shown, in struct order.
        pub(crate) const SHOWN: &[(&str, fn(&YamlValue, &YamlValue) -> Mapping)] = &[
            $((stringify!($key), <$module::$config as ReceiverKind>::show),)*
        ];

        /// Each integration name, and whether its counters are rendered from the start.
        pub const INTEGRATIONS: &[(&str, bool)] = &[
            $((
                <$module::$config as ReceiverKind>::NAME,
                <$module::$config as ReceiverKind>::COUNTED_FROM_START,
            ),)*
        ];
    };
}

receivers! {
    discord_configs: Discord(discord::DiscordConfig),
    email_configs: Email(email::EmailConfig),
    pagerduty_configs: Pagerduty(pagerduty::PagerdutyConfig),
    slack_configs: Slack(slack::SlackConfig),
    webhook_configs: Webhook(webhook::WebhookConfig),
    opsgenie_configs: Opsgenie(opsgenie::OpsgenieConfig),
    wechat_configs: Wechat(wechat::WechatConfig),
    pushover_configs: Pushover(pushover::PushoverConfig),
    victorops_configs: Victorops(victorops::VictoropsConfig),
    sns_configs: Sns(sns::SnsConfig),
    telegram_configs: Telegram(telegram::TelegramConfig),
    webex_configs: Webex(webex::WebexConfig),
    msteams_configs: Msteams(msteams::MsteamsConfig),
}

/// Sends `delivery` once (`client` carries HTTP requests, authorized as `http` says).
pub(crate) async fn send(
    client: &reqwest::Client,
    http: &HttpClientConfig,
    delivery: &Delivery,
    timeout: Duration,
) -> Result<(), SendError> {
    match delivery {
        Delivery::Http(request) => call(client, http, &Call::from(request), timeout).await,
        Delivery::Email(e) => email::send(e, timeout).await,
        Delivery::Calls(calls) => {
            for c in calls {
                call(client, http, c, timeout).await?;
            }
            Ok(())
        }
        Delivery::Wechat(m) => wechat::send(client, http, m, timeout).await,
        Delivery::Sns(p) => sns::send(p, timeout).await,
    }
}

/// `builder` with the credentials of `http` (`basic_auth`, `authorization`, an
/// `oauth2` token); failing to get them may be retried.
pub(crate) async fn authorized(
    builder: reqwest::RequestBuilder,
    http: &HttpClientConfig,
) -> Result<reqwest::RequestBuilder, SendError> {
    crate::http_client::authorize(builder, http)
        .await
        .map_err(|e| SendError::Retryable(Failure::Authorize(e)))
}

/// Sends `request` once.
async fn call(
    client: &reqwest::Client,
    http: &HttpClientConfig,
    request: &Call,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut builder = client
        .request(request.method.clone(), &request.url)
        .timeout(timeout)
        .header("Content-Type", request.content_type);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let builder = authorized(builder, http).await?;
    let response = builder
        .body(request.body.clone())
        .send()
        .await
        .map_err(|error| {
            // A failed handshake says why (`x509: certificate signed by unknown authority`).
            SendError::Retryable(Failure::Send {
                method: request.method.clone(),
                url: redact(&request.url),
                error,
            })
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = || Failure::Status {
        status: status.as_u16(),
        url: redact(&request.url),
        body: body.chars().take(200).collect::<String>(),
    };
    match request.retrier {
        Retrier::Status(_) if status.is_success() => Ok(()),
        Retrier::Status(codes) if status.is_server_error() || codes.contains(&status.as_u16()) => {
            Err(SendError::Retryable(message()))
        }
        Retrier::Status(_) => Err(SendError::Permanent(message())),
        Retrier::TelegramOk => {
            let ok = serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|v| v["ok"] == true && v["result"].is_object());
            if ok {
                Ok(())
            } else {
                Err(SendError::Retryable(message()))
            }
        }
    }
}

/// The URL without its path and query, which hold secrets for Slack and Pushover.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => "<url>".into(),
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
    error: Option<TemplateError>,
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

    pub(crate) fn finish(self) -> Result<(), RequestError> {
        match self.error {
            Some(e) => Err(RequestError::Template(Box::new(e))),
            None => Ok(()),
        }
    }
}
