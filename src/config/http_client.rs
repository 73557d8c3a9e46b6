//! prometheus/common's `HTTPClientConfig`: the HTTP client settings that scrape jobs,
//! `ec2_sd_configs`, `remote_write` and `alerting.alertmanagers` entries hold inline
//! (Go's `yaml:",inline"`) and the built-in Alertmanager's receivers hold as
//! `http_config`.
//!
//! Owns: the settings as written ([`RawHttpClientConfig`], read out of any section's
//! mapping by [`WithHttpClient`]), resolved ([`HttpClientConfig`], printed where and
//! as Prometheus 2.42 prints them), and their checks (prometheus/common 0.39's
//! `Validate`, with its words). Every section's defaults are prometheus/common's
//! `DefaultHTTPClientConfig` (`follow_redirects` and `enable_http2` true), as in
//! Prometheus 2.42's scrape, Alertmanager, remote write and EC2 SD defaults and in
//! Alertmanager 0.25. The client itself is built from an [`HttpClientConfig`] by
//! `crate::http_client`; secret files are read there, at each request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::inline::{impl_inline_fields, Inline};
use super::locate::FieldPath;
use super::paths::join_dir;
use super::raw::ScalarText;
use super::secret::Secret;
use super::tls::{resolve_tls_config, RawTlsConfig, TlsConfig};
use super::validate::Problems;

/// Default `authorization.type`.
pub const DEFAULT_AUTHORIZATION_TYPE: &str = "Bearer";

// ---------------------------------------------------------------------------
// As written

/// Declares [`RawHttpClientConfig`] and the reading of one of its fields by name, from
/// one list of its fields.
macro_rules! raw_http_client_config {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        /// prometheus/common's `HTTPClientConfig` as written: every field optional.
        #[derive(Debug, Default)]
        pub(crate) struct RawHttpClientConfig {
            $($(#[$doc])* pub $field: Option<$ty>,)*
        }

        impl_inline_fields!(RawHttpClientConfig { $($field),* });
    };
}

raw_http_client_config! {
    basic_auth: RawBasicAuth,
    authorization: RawAuthorization,
    oauth2: RawOAuth2,
    /// Deprecated: becomes `authorization` credentials.
    bearer_token: ScalarText,
    /// Deprecated: becomes `authorization.credentials_file`.
    bearer_token_file: ScalarText,
    proxy_url: ScalarText,
    proxy_connect_header: BTreeMap<String, Vec<ScalarText>>,
    follow_redirects: bool,
    enable_http2: bool,
    tls_config: RawTlsConfig,
}

/// `basic_auth:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBasicAuth {
    pub username: Option<ScalarText>,
    pub password: Option<ScalarText>,
    pub password_file: Option<ScalarText>,
}

/// `authorization:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAuthorization {
    #[serde(rename = "type")]
    pub kind: Option<ScalarText>,
    pub credentials: Option<ScalarText>,
    pub credentials_file: Option<ScalarText>,
}

/// `oauth2:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOAuth2 {
    pub client_id: Option<ScalarText>,
    pub client_secret: Option<ScalarText>,
    pub client_secret_file: Option<ScalarText>,
    pub scopes: Option<Vec<ScalarText>>,
    pub token_url: Option<ScalarText>,
    pub endpoint_params: Option<BTreeMap<String, ScalarText>>,
    pub tls_config: Option<RawTlsConfig>,
    pub proxy_url: Option<ScalarText>,
}

/// A section of the file (`T`, serde-derived) whose mapping also holds the HTTP client
/// settings (read as `config/inline.rs` says).
pub(crate) type WithHttpClient<T> = Inline<T, RawHttpClientConfig>;

impl<T> WithHttpClient<T> {
    /// The section's HTTP client settings.
    pub(crate) fn http(&self) -> &RawHttpClientConfig {
        &self.inline
    }
}

impl<'de> Deserialize<'de> for RawHttpClientConfig {
    /// An `http_config:` of its own: a mapping of the settings and nothing else.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// No fields besides the settings; named for the message on a value that is
        /// not a mapping (`expected struct HttpConfig`, as before).
        #[derive(Default, Deserialize)]
        struct RawHttpConfig {}
        WithHttpClient::<RawHttpConfig>::deserialize(deserializer).map(|with| with.inline)
    }
}

impl RawHttpClientConfig {
    /// The deprecated `bearer_token` and `bearer_token_file`, where set (not empty).
    fn bearer(&self) -> (Option<&ScalarText>, Option<&ScalarText>) {
        fn set(text: &Option<ScalarText>) -> Option<&ScalarText> {
            text.as_ref().filter(|t| !t.0.is_empty())
        }
        (set(&self.bearer_token), set(&self.bearer_token_file))
    }
}

// ---------------------------------------------------------------------------
// Resolved

/// An HTTP client's settings, resolved: how its requests authenticate and how its
/// connections are made. Printed inline in its section, in Prometheus 2.42's order
/// (`follow_redirects` and `enable_http2` always). promflow speaks HTTP/1.1 only:
/// `enable_http2: true` (the default) is accepted and HTTP/1.1 is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HttpClientConfig {
    /// HTTP basic authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization` header credentials (also from `bearer_token[_file]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// OAuth 2.0 client credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2>,
    /// An `http://` or `https://` proxy every request goes through (no proxy from the
    /// environment, as in Prometheus 2.42).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Headers sent to the proxy with each CONNECT (https destinations only, as Go's
    /// `Transport.ProxyConnectHeader`); values are secrets. Needs `proxy_url`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_connect_header: BTreeMap<String, Vec<Secret>>,
    /// How to speak TLS (`https` URLs).
    #[serde(skip_serializing_if = "TlsConfig::is_default")]
    pub tls_config: TlsConfig,
    /// Follow redirects (default true; Go's limit of 10).
    pub follow_redirects: bool,
    /// Accepted, not used (HTTP/1.1 only).
    pub enable_http2: bool,
}

impl Default for HttpClientConfig {
    /// prometheus/common's `DefaultHTTPClientConfig`.
    fn default() -> HttpClientConfig {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            oauth2: None,
            proxy_url: None,
            proxy_connect_header: BTreeMap::new(),
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// `oauth2:` (client credentials grant). At most one of `client_secret` and
/// `client_secret_file` is set. Printed as prometheus/common 0.39 marshals it: both
/// secret fields always (`client_secret: null`, `client_secret_file: ""` when
/// unset), `proxy_url` before `tls_config`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OAuth2 {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Resolved against the config file's directory; read at each token fetch.
    #[serde(serialize_with = "serialize_path_or_empty")]
    pub client_secret_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    pub token_url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_params: BTreeMap<String, String>,
    /// A proxy for the token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// How to speak TLS to the token endpoint.
    #[serde(skip_serializing_if = "TlsConfig::is_default")]
    pub tls_config: TlsConfig,
}

/// An optional file name as Go prints a `string` field without `omitempty`: `""`
/// when unset.
fn serialize_path_or_empty<S: serde::Serializer>(
    value: &Option<PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(path) => path.serialize(s),
        None => s.serialize_str(""),
    }
}

impl OAuth2 {
    /// The client secret: inline, or read from `client_secret_file` now (trimmed).
    pub fn secret_text(&self) -> Result<String, SecretFileError> {
        let (inline, file) = (&self.client_secret, &self.client_secret_file);
        read_secret(inline, file, "oauth2 client secret").map(Option::unwrap_or_default)
    }
}

/// `basic_auth:`. At most one of `password` and `password_file` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password, written inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A file holding the password, resolved against the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl BasicAuth {
    /// The password: inline, or read from `password_file` now (trimmed), as
    /// prometheus/common reads it at each request; `Ok(None)` if neither is set, an
    /// error naming the file if it cannot be read (the request then fails).
    pub fn password_text(&self) -> Result<Option<String>, SecretFileError> {
        read_secret(&self.password, &self.password_file, "basic auth password")
    }
}

/// `authorization:`. At most one of `credentials` and `credentials_file` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Authorization {
    /// Header scheme (default `Bearer`; `Basic` is rejected in favour of `basic_auth`;
    /// empty only in `ec2_sd_configs`, where it is never used).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The credentials, written inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Secret>,
    /// A file holding the credentials, resolved against the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

impl Authorization {
    /// The `Authorization` header value (`<type> <credentials>`), credentials inline or
    /// read from `credentials_file` now (trimmed); `Ok(None)` if there are none, an
    /// error naming the file if it cannot be read (the request then fails, as in
    /// prometheus/common, instead of going out without the header).
    pub fn header_value(&self) -> Result<Option<String>, SecretFileError> {
        let (inline, file) = (&self.credentials, &self.credentials_file);
        let credentials = read_secret(inline, file, "authorization credentials")?;
        Ok(credentials.map(|credentials| format!("{} {credentials}", self.kind)))
    }
}

/// A secret's file that cannot be read, in prometheus/common's words
/// (`unable to read <what> file <path>: <reason>`).
#[derive(Debug, thiserror::Error)]
#[error("unable to read {what} file {}: {source}", path.display())]
pub struct SecretFileError {
    /// Which secret (`basic auth password`, …).
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why it cannot be read.
    pub source: crate::os_error::PathError,
}

/// A secret written `inline`, else read from `file` now (trimmed); `Ok(None)` when
/// neither is set.
fn read_secret(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    what: &'static str,
) -> Result<Option<String>, SecretFileError> {
    match (inline, file) {
        (Some(secret), _) => Ok(Some(secret.expose().to_string())),
        (None, Some(path)) => crate::os_error::read_file(path)
            .map(|bytes| Some(String::from_utf8_lossy(&bytes).trim().to_string()))
            .map_err(|source| SecretFileError {
                what,
                path: path.clone(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

// ---------------------------------------------------------------------------
// Resolution

/// A set, non-empty text field (Prometheus treats empty as unset).
fn set_text(value: &Option<ScalarText>) -> Option<&str> {
    value
        .as_ref()
        .map(|v| v.0.as_str())
        .filter(|v| !v.is_empty())
}

/// The HTTP client settings of the section at `path`, checked as prometheus/common
/// 0.39's `HTTPClientConfig.Validate` (Prometheus 2.42) does, reporting its first
/// conflict between the ways to authenticate with its words. The deprecated
/// `bearer_token` / `bearer_token_file` become `authorization` credentials of type
/// `Bearer`, as there (and are shown so in the loaded config).
pub(crate) fn resolve_http_client(
    raw: &RawHttpClientConfig,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> HttpClientConfig {
    let (bearer, bearer_file) = raw.bearer();
    let has_bearer = bearer.is_some() || bearer_file.is_some();
    let (basic_auth, authorization, oauth2) = (
        raw.basic_auth.is_some(),
        raw.authorization.is_some(),
        raw.oauth2.is_some(),
    );
    let conflict = if bearer.is_some() && bearer_file.is_some() {
        Some("at most one of bearer_token & bearer_token_file must be configured")
    } else if (basic_auth || oauth2) && has_bearer {
        Some("at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured")
    } else if authorization && has_bearer {
        Some("authorization is not compatible with bearer_token & bearer_token_file")
    } else if (authorization && (basic_auth || oauth2)) || (oauth2 && basic_auth) {
        Some("at most one of basic_auth, oauth2 & authorization must be configured")
    } else if raw
        .proxy_connect_header
        .as_ref()
        .is_some_and(|h| !h.is_empty())
        && set_text(&raw.proxy_url).is_none()
    {
        Some("if proxy_connect_header is configured proxy_url must also be configured")
    } else {
        None
    };
    if let Some(message) = conflict {
        problems.push(path.clone(), message);
    }
    resolve_unchecked_http_client(raw, base_dir, path, problems)
}

/// The HTTP client settings of the section at `path` without `Validate`'s checks of
/// how they combine: Prometheus 2.42 never validates the client of `ec2_sd_configs`
/// (promtool accepts both `basic_auth` and `authorization` there).
pub(crate) fn resolve_unchecked_http_client(
    raw: &RawHttpClientConfig,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> HttpClientConfig {
    let (bearer, bearer_file) = raw.bearer();
    let basic_auth = raw
        .basic_auth
        .as_ref()
        .map(|auth| resolve_basic_auth(auth, base_dir, &path.key("basic_auth"), problems));
    let authorization = match &raw.authorization {
        Some(auth) => Some(resolve_authorization(
            auth,
            base_dir,
            &path.key("authorization"),
            problems,
        )),
        None if bearer.is_some() || bearer_file.is_some() => Some(Authorization {
            kind: DEFAULT_AUTHORIZATION_TYPE.to_string(),
            credentials: bearer.map(|t| Secret::new(t.0.as_str())),
            credentials_file: bearer_file.map(|file| join_dir(base_dir, &file.0)),
        }),
        None => None,
    };
    let defaults = HttpClientConfig::default();
    HttpClientConfig {
        basic_auth,
        authorization,
        oauth2: raw
            .oauth2
            .as_ref()
            .map(|oauth2| resolve_oauth2(oauth2, base_dir, path, problems)),
        proxy_url: resolve_proxy_url(&raw.proxy_url, path, problems),
        proxy_connect_header: raw
            .proxy_connect_header
            .iter()
            .flatten()
            .map(|(name, values)| {
                let values = values.iter().map(|v| Secret::new(v.0.as_str())).collect();
                (name.clone(), values)
            })
            .collect(),
        tls_config: resolve_tls_config(
            raw.tls_config.as_ref(),
            base_dir,
            &path.key("tls_config"),
            problems,
        ),
        follow_redirects: raw.follow_redirects.unwrap_or(defaults.follow_redirects),
        enable_http2: raw.enable_http2.unwrap_or(defaults.enable_http2),
    }
}

/// A `proxy_url` of the mapping at `path`: an `http://` or `https://` URL with a host.
fn resolve_proxy_url(
    raw: &Option<ScalarText>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<String> {
    let url = set_text(raw)?;
    match reqwest::Url::parse(url) {
        Err(e) => problems.push(path.key("proxy_url"), format!("parse {url:?}: {e}")),
        Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => problems.push(
            path.key("proxy_url"),
            format!(
                "proxy_url scheme {:?} is not supported by promflow (http and https proxies only)",
                parsed.scheme()
            ),
        ),
        Ok(_) => {}
    }
    Some(url.to_string())
}

/// An HTTP client's `oauth2`, with prometheus/common's checks.
fn resolve_oauth2(
    raw: &RawOAuth2,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> OAuth2 {
    let at = path.key("oauth2");
    let client_id = set_text(&raw.client_id).unwrap_or_default().to_string();
    let client_secret = set_text(&raw.client_secret).map(Secret::new);
    let client_secret_file = set_text(&raw.client_secret_file).map(|file| join_dir(base_dir, file));
    let token_url = set_text(&raw.token_url).unwrap_or_default().to_string();
    if client_id.is_empty() {
        problems.push(at.clone(), "oauth2 client_id must be configured");
    } else if client_secret.is_none() && client_secret_file.is_none() {
        problems.push(
            at.clone(),
            "either oauth2 client_secret or client_secret_file must be configured",
        );
    } else if token_url.is_empty() {
        problems.push(at.clone(), "oauth2 token_url must be configured");
    } else if client_secret.is_some() && client_secret_file.is_some() {
        problems.push(
            at.clone(),
            "at most one of oauth2 client_secret & client_secret_file must be configured",
        );
    }
    let proxy_url = resolve_proxy_url(&raw.proxy_url, &at, problems);
    OAuth2 {
        client_id,
        client_secret,
        client_secret_file,
        scopes: raw.scopes.iter().flatten().map(|s| s.0.clone()).collect(),
        token_url,
        endpoint_params: raw
            .endpoint_params
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        tls_config: resolve_tls_config(
            raw.tls_config.as_ref(),
            base_dir,
            &at.key("tls_config"),
            problems,
        ),
        proxy_url,
    }
}

fn resolve_basic_auth(
    raw: &RawBasicAuth,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> BasicAuth {
    let password = set_text(&raw.password).map(Secret::new);
    let password_file = set_text(&raw.password_file).map(|file| join_dir(base_dir, file));
    if password.is_some() && password_file.is_some() {
        problems.push(
            path.clone(),
            "at most one of basic_auth password & password_file must be configured",
        );
    }
    BasicAuth {
        username: raw
            .username
            .as_ref()
            .map(|u| u.0.clone())
            .unwrap_or_default(),
        password,
        password_file,
    }
}

fn resolve_authorization(
    raw: &RawAuthorization,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> Authorization {
    let kind = set_text(&raw.kind)
        .unwrap_or(DEFAULT_AUTHORIZATION_TYPE)
        .to_string();
    if kind.eq_ignore_ascii_case("basic") {
        problems.push(
            path.key("type"),
            "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
        );
    }
    let credentials = set_text(&raw.credentials).map(Secret::new);
    let credentials_file = set_text(&raw.credentials_file).map(|file| join_dir(base_dir, file));
    if credentials.is_some() && credentials_file.is_some() {
        problems.push(
            path.clone(),
            "at most one of authorization credentials & credentials_file must be configured",
        );
    }
    Authorization {
        kind,
        credentials,
        credentials_file,
    }
}
