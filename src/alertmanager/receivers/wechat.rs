//! WeChat Work: the two requests of Alertmanager 0.25's `notify/wechat`.
//!
//! First, when the integration holds no access token or got it more than two hours
//! ago, `GET <api_url>gettoken?corpid=<corp_id>&corpsecret=<api_secret>` (both
//! expanded as templates); the answer's `access_token` is kept by the integration
//! (a reload starts afresh, as Alertmanager's notifiers do). Then
//! `POST <api_url>message/send?access_token=<token>` with the JSON message:
//! `text` and `markdown` (`{"content": …}`, the one not chosen by `message_type`
//! empty — Go's `omitempty` keeps structs), `touser`, `toparty`, `totag`, `agentid`
//! (left out when empty), `safe` (`"0"`), `msgtype`.
//!
//! Outcome as Alertmanager 0.25's: a token answer that is not JSON, or without a
//! token, fails for good; the POST fails and may be retried unless it answers 200
//! with a JSON body whose `code` is 0; code 42001 (token expired) drops the token
//! and may be retried, any other code fails for good with the body's `error`.
//! Alertmanager 0.25 reads `code`/`error`, not WeChat's documented
//! `errcode`/`errmsg`, so a WeChat error answer counts as delivered; promflow does
//! the same.
//!
//! Config: `api_url`, `api_secret` and `corp_id` default to `global.wechat_api_url`
//! (`https://qyapi.weixin.qq.com/cgi-bin/`), `global.wechat_api_secret` and
//! `global.wechat_api_corp_id`, with Alertmanager's errors when neither is set;
//! `api_url` gets a trailing `/`; `message_type` is `text` (default) or `markdown`;
//! `send_resolved` defaults to false.

use super::{authorized, Expander, Failure, RequestError, SendError};
use super::{Delivery, ReceiverKind};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config::{check_http_url, receiver_http_config, template_or};
use crate::alertmanager::config_show::{insert_text, notifier_head, string, url_of, SECRET};
use crate::alertmanager::template::{Data, Templates};
use crate::config::{FieldPath, Problems, Secret};
use crate::config::{HttpClientConfig, RawHttpClientConfig};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a token is used before asking for a new one.
const TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// WeChat's "access token expired" code.
const CODE_TOKEN_EXPIRED: i64 = 42001;

/// One notification: what the token request and the message POST need.
#[derive(Clone, Debug)]
pub struct Message {
    /// `<api_url>gettoken?…`.
    pub token_url: String,
    /// `<api_url>message/send` with `api_url`'s own query.
    pub send_url: String,
    /// The JSON message.
    pub body: Vec<u8>,
    /// `corp_id` as written (for the error message).
    pub corp_id: String,
    /// The integration's token cache.
    pub token: TokenCache,
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        (&self.token_url, &self.send_url, &self.body)
            == (&other.token_url, &other.send_url, &other.body)
    }
}

/// An access token and when it was obtained, shared by the copies of one
/// integration's config.
#[derive(Clone, Debug, Default)]
pub struct TokenCache(Arc<Mutex<Option<(String, Instant)>>>);

impl TokenCache {
    fn get(&self) -> Option<String> {
        let cached = self.0.lock();
        cached
            .as_ref()
            .filter(|(_, at)| at.elapsed() <= TOKEN_LIFETIME)
            .map(|(t, _)| t.clone())
    }

    fn set(&self, token: Option<String>) {
        *self.0.lock() = token.map(|t| (t, Instant::now()));
    }
}

/// The requests for `data`.
pub fn request(
    c: &WechatConfig,
    templates: &Templates,
    data: &Data,
) -> Result<Box<Message>, RequestError> {
    let mut t = Expander::new(templates, data);
    let secret = t.expand(c.api_secret.expose());
    let corp_id = t.expand(&c.corp_id);
    let mut message = Map::new();
    let content = t.expand(&c.message);
    let (text, markdown) = if c.message_type == "markdown" {
        (String::new(), content)
    } else {
        (content, String::new())
    };
    message.insert("text".into(), json!({ "content": text }));
    for (key, template) in [
        ("touser", &c.to_user),
        ("toparty", &c.to_party),
        ("totag", &c.to_tag),
        ("agentid", &c.agent_id),
    ] {
        let v = t.expand(template);
        if !v.is_empty() {
            message.insert(key.into(), json!(v));
        }
    }
    message.insert("safe".into(), json!("0"));
    message.insert("msgtype".into(), json!(c.message_type));
    message.insert("markdown".into(), json!({ "content": markdown }));
    t.finish()?;

    let base = reqwest::Url::parse(&c.api_url).map_err(|e| RequestError::Invalid(e.to_string()))?;
    let mut token_url = base.clone();
    token_url.set_path(&format!("{}gettoken", base.path()));
    token_url.set_query(Some(
        &serde_urlencoded::to_string([("corpid", &corp_id), ("corpsecret", &secret)])
            .unwrap_or_default(),
    ));
    let mut send_url = base.clone();
    send_url.set_path(&format!("{}message/send", base.path()));
    Ok(Box::new(Message {
        token_url: token_url.to_string(),
        send_url: send_url.to_string(),
        body: serde_json::to_vec(&Value::Object(message)).unwrap_or_default(),
        corp_id: c.corp_id.clone(),
        token: c.token.clone(),
    }))
}

/// Gets a token if needed, then POSTs the message once.
pub(crate) async fn send(
    client: &reqwest::Client,
    http: &HttpClientConfig,
    m: &Message,
    timeout: Duration,
) -> Result<(), SendError> {
    let token = match m.token.get() {
        Some(t) => t,
        None => {
            let token = fetch_token(client, http, m, timeout).await?;
            m.token.set(Some(token.clone()));
            token
        }
    };
    let mut url = reqwest::Url::parse(&m.send_url)
        .map_err(|e| SendError::Permanent(Failure::WeChatUrl(e)))?;
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "access_token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    query.push(("access_token".into(), token));
    query.sort();
    url.set_query(Some(
        &serde_urlencoded::to_string(&query).unwrap_or_default(),
    ));
    let request = client
        .post(url.clone())
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .body(m.body.clone());
    let response = authorized(request, http)
        .await?
        .send()
        .await
        .map_err(|error| {
            SendError::Retryable(Failure::WeChatRequest {
                method: "POST",
                url: redacted(&url),
                error,
            })
        })?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| SendError::Retryable(Failure::WeChatBody(e)))?;
    if status != 200 {
        return Err(SendError::Retryable(Failure::WeChatStatus {
            status,
            url: redacted(&url),
        }));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        error: String,
    }
    let answer: Answer =
        serde_json::from_str(&body).map_err(|e| SendError::Retryable(Failure::WeChatAnswer(e)))?;
    match answer.code {
        0 => Ok(()),
        CODE_TOKEN_EXPIRED => {
            m.token.set(None);
            Err(SendError::Retryable(Failure::WeChat(answer.error)))
        }
        _ => Err(SendError::Permanent(Failure::WeChat(answer.error))),
    }
}

async fn fetch_token(
    client: &reqwest::Client,
    http: &HttpClientConfig,
    m: &Message,
    timeout: Duration,
) -> Result<String, SendError> {
    let url = reqwest::Url::parse(&m.token_url)
        .map_err(|e| SendError::Permanent(Failure::WeChatUrl(e)))?;
    let response = authorized(client.get(url.clone()).timeout(timeout), http)
        .await?
        .send()
        .await
        .map_err(|error| {
            SendError::Retryable(Failure::WeChatRequest {
                method: "GET",
                url: redacted(&url),
                error,
            })
        })?;
    let body = response
        .bytes()
        .await
        .map_err(|e| SendError::Retryable(Failure::WeChatBody(e)))?;
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        access_token: String,
    }
    let token: Token =
        serde_json::from_slice(&body).map_err(|e| SendError::Permanent(Failure::WeChatToken(e)))?;
    if token.access_token.is_empty() {
        return Err(SendError::Permanent(Failure::WeChatSecret(
            m.corp_id.clone(),
        )));
    }
    Ok(token.access_token)
}

/// The URL without its query (which holds the secret or the token).
fn redacted(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults filled in, the secret as `<secret>`, the global settings where the entry
/// has none.
pub(crate) fn show(c: &YamlValue, global: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, false);
    m.insert("api_secret".into(), SECRET.into());
    let corp_id = c.get("corp_id").or(global.get("wechat_api_corp_id"));
    m.insert(
        "corp_id".into(),
        corp_id.and_then(string).unwrap_or_default().into(),
    );
    insert_text(&mut m, c, "message", defaults::MESSAGE);
    let url = url_of(
        c,
        "api_url",
        global,
        "wechat_api_url",
        DEFAULT_API_URL,
        true,
    );
    m.insert("api_url".into(), url.into());
    for (key, default) in [
        ("to_user", defaults::TO_USER),
        ("to_party", defaults::TO_PARTY),
        ("to_tag", defaults::TO_TAG),
        ("agent_id", defaults::AGENT_ID),
    ] {
        insert_text(&mut m, c, key, default);
    }
    let kind = c.get("message_type").and_then(string);
    let kind = kind
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "text".into());
    m.insert("message_type".into(), kind.into());
    m
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's `global.wechat_api_url`.
pub const DEFAULT_API_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/";

/// Alertmanager 0.25's default texts of a WeChat config (`DefaultWechatConfig`).
pub mod defaults {
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "wechat.default.message" . }}"#;
    /// `to_user`.
    pub const TO_USER: &str = r#"{{ template "wechat.default.to_user" . }}"#;
    /// `to_party`.
    pub const TO_PARTY: &str = r#"{{ template "wechat.default.to_party" . }}"#;
    /// `to_tag`.
    pub const TO_TAG: &str = r#"{{ template "wechat.default.to_tag" . }}"#;
    /// `agent_id`.
    pub const AGENT_ID: &str = r#"{{ template "wechat.default.agent_id" . }}"#;
}

/// The `global.wechat_*` defaults.
#[derive(Debug, Default)]
pub(crate) struct RawGlobalWechat {
    pub(crate) api_url: Option<String>,
    pub(crate) api_secret: Option<String>,
    pub(crate) corp_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWechat {
    send_resolved: Option<bool>,
    api_secret: Option<String>,
    corp_id: Option<String>,
    message: Option<String>,
    api_url: Option<String>,
    to_user: Option<String>,
    to_party: Option<String>,
    to_tag: Option<String>,
    agent_id: Option<String>,
    message_type: Option<String>,
    http_config: Option<RawHttpClientConfig>,
}

/// `wechat_configs` entry.
#[derive(Clone, Debug)]
pub struct WechatConfig {
    /// Defaults to false.
    pub send_resolved: bool,
    /// Ends with `/`.
    pub api_url: String,
    /// Template.
    pub api_secret: Secret,
    /// Template.
    pub corp_id: String,
    /// Template.
    pub message: String,
    /// Template.
    pub to_user: String,
    /// Template.
    pub to_party: String,
    /// Template.
    pub to_tag: String,
    /// Template.
    pub agent_id: String,
    /// `text` or `markdown`.
    pub message_type: String,
    /// `http_config`, else `global.http_config`.
    pub(crate) http_config: HttpClientConfig,
    /// The access token of this integration.
    pub token: TokenCache,
}

/// Resolves one `wechat_configs` entry, adding its problems.
pub(crate) fn resolve(
    c: &RawWechat,
    globals: &Globals,
    global: &RawGlobalWechat,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> WechatConfig {
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let mut api_url = match (&c.api_url, &global.api_url) {
        (Some(u), _) => {
            if let Err(e) = check_http_url(u) {
                p.push(path.key("api_url"), e.to_string());
            }
            u.clone()
        }
        (None, Some(u)) => u.clone(),
        (None, None) => DEFAULT_API_URL.to_string(),
    };
    if let Ok(mut u) = reqwest::Url::parse(&api_url) {
        if !u.path().ends_with('/') {
            u.set_path(&format!("{}/", u.path()));
            api_url = u.to_string();
        }
    }
    let api_secret = nonempty(&c.api_secret)
        .or_else(|| nonempty(&global.api_secret))
        .unwrap_or_else(|| {
            p.push(path.key("api_secret"), "no global Wechat ApiSecret set");
            String::new()
        });
    let corp_id = nonempty(&c.corp_id)
        .or_else(|| nonempty(&global.corp_id))
        .unwrap_or_else(|| {
            p.push(path.key("corp_id"), "no global Wechat CorpID set");
            String::new()
        });
    let message_type = nonempty(&c.message_type).unwrap_or_else(|| "text".into());
    if message_type != "text" && message_type != "markdown" {
        p.push(
            path.key("message_type"),
            format!(
                "weChat message type {message_type:?} does not match valid options ^(text|markdown)$"
            ),
        );
    }
    WechatConfig {
        send_resolved: c.send_resolved.unwrap_or(false),
        api_url,
        api_secret: Secret::new(api_secret),
        corp_id,
        message: template_or(&c.message, defaults::MESSAGE),
        to_user: template_or(&c.to_user, defaults::TO_USER),
        to_party: template_or(&c.to_party, defaults::TO_PARTY),
        to_tag: template_or(&c.to_tag, defaults::TO_TAG),
        agent_id: template_or(&c.agent_id, defaults::AGENT_ID),
        message_type,
        http_config: receiver_http_config(&c.http_config, globals, base, path, p),
        token: TokenCache::default(),
    }
}

impl ReceiverKind for WechatConfig {
    type Raw = RawWechat;
    const NAME: &'static str = "wechat";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawWechat,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> WechatConfig {
        resolve(raw, global, &global.raw.wechat(), base, path, p)
    }

    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        _group_key: &str,
    ) -> Result<Delivery, RequestError> {
        request(self, templates, data).map(Delivery::Wechat)
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
