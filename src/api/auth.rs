//! `--web.config.file`: the web configuration file in the format of Prometheus's
//! exporter-toolkit, and the HTTP basic authentication it asks for.
//!
//! Owns: reading and validating the file ([`WebConfig::parse`]): `basic_auth_users`
//! (user → bcrypt hash) is supported; `tls_server_config` is validated and built by
//! [`crate::api::tls_server`] (the files it names are read when the web config is);
//! `http_server_config` accepts `http2` only (promflow serves HTTP/1.1 either way);
//! unknown fields are errors, as in exporter-toolkit. A promflow extension (not in
//! exporter-toolkit, so `promtool check web-config` refuses it): `bearer_tokens`, a
//! list of bcrypt hashes of tokens accepted as `Authorization: Bearer <token>` (for
//! machine clients that cannot do basic auth). And the middleware
//! ([`require_basic_auth`]): when users or tokens are configured, every endpoint
//! requires valid credentials, as in Prometheus — otherwise `401 Unauthorized` with
//! `WWW-Authenticate: Basic` (`Bearer` when only tokens are configured), the body and
//! headers Prometheus answers.
//!
//! Like exporter-toolkit, the file is re-read when it changes (checked on each request
//! and each TLS handshake by its modification time, and those of the certificate, key
//! and client CA files), so passwords and certificates rotate without a restart; a
//! changed file that no longer validates is logged and the previous one stays in
//! force. Whether promflow serves https is decided at startup: a change that adds or
//! removes `tls_server_config` is refused the same way (restart for that). bcrypt is
//! slow on purpose: a verified (user, password, hash) is cached, and an unknown user
//! still costs one bcrypt verification, so timing does not tell which users exist.

use crate::api::tls_server::{
    RawTlsServerConfig, TlsBuildError, TlsServerSettings, TlsSettingsError,
};
use crate::service::Service;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Verified credentials kept at most; the cache is emptied when full.
const CACHE_ENTRIES: usize = 1024;

/// A hash checked against when the user does not exist (`bcrypt("", 10)`).
const DUMMY_HASH: &str = "$2b$10$QoXgAgf31f4qr9oulmtuZOFQLF6HLy/1HXYvjVLdYJIiM/iBmdG52";

/// The validated file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebConfig {
    /// User → bcrypt hash.
    pub basic_auth_users: BTreeMap<String, String>,
    /// bcrypt hashes of accepted bearer tokens (promflow extension). Both empty: no
    /// authentication.
    pub bearer_tokens: Vec<String>,
    /// `tls_server_config`, when it asks for TLS.
    pub tls: Option<TlsServerSettings>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<RawHttpServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    bearer_tokens: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttpServerConfig {
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
}

/// Why a web config file was refused; each text names the file.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading web config file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// Not YAML, or a field unknown or of the wrong type.
    #[error("{file}: {source}")]
    Yaml {
        file: String,
        source: serde_yaml_ng::Error,
    },
    #[error("{file}: tls_server_config: {source}")]
    TlsSettings {
        file: String,
        source: TlsSettingsError,
    },
    /// The TLS files named do not load.
    #[error("{file}: tls_server_config: {source}")]
    TlsBuild {
        file: String,
        source: Box<TlsBuildError>,
    },
    #[error("{file}: basic_auth_users: {user:?}: not a bcrypt hash ({source})")]
    UserHash {
        file: String,
        user: String,
        source: bcrypt::BcryptError,
    },
    #[error("{file}: bearer_tokens[{index}]: not a bcrypt hash ({source})")]
    TokenHash {
        file: String,
        index: usize,
        source: bcrypt::BcryptError,
    },
    /// A re-read file turns https on or off.
    #[error("{file}: adding or removing tls_server_config takes a restart")]
    TlsToggled { file: String },
}

impl WebConfig {
    /// Parses and validates the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<WebConfig, WebConfigError> {
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|source| WebConfigError::Yaml {
                file: file.to_string(),
                source,
            })?
        };
        let _ = raw.http_server_config;
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        let tls = TlsServerSettings::parse(raw.tls_server_config.unwrap_or_default(), dir)
            .map_err(|source| WebConfigError::TlsSettings {
                file: file.to_string(),
                source,
            })?;
        for (user, hash) in &raw.basic_auth_users {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|source| WebConfigError::UserHash {
                    file: file.to_string(),
                    user: user.clone(),
                    source,
                })?;
        }
        for (index, hash) in raw.bearer_tokens.iter().enumerate() {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|source| WebConfigError::TokenHash {
                    file: file.to_string(),
                    index,
                    source,
                })?;
        }
        Ok(WebConfig {
            basic_auth_users: raw.basic_auth_users,
            bearer_tokens: raw.bearer_tokens,
            tls,
        })
    }
}

/// A loaded web config: the modification times it was read at (the file's, then its
/// TLS files'), the config, and its rustls configuration when it asks for TLS.
struct Loaded {
    stamps: Vec<Option<SystemTime>>,
    config: Arc<WebConfig>,
    server_tls: Option<Arc<rustls::ServerConfig>>,
}

/// The web config file in force, re-read when it changes; see the module doc.
pub struct WebAuth {
    path: PathBuf,
    state: Mutex<Loaded>,
    verified: Mutex<HashSet<String>>,
}

impl WebAuth {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<WebAuth, WebConfigError> {
        Ok(WebAuth {
            path: path.to_path_buf(),
            state: Mutex::new(read(path)?),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The configuration in force, re-read first if the file changed.
    fn current(&self) -> Arc<WebConfig> {
        self.refreshed().0
    }

    /// The rustls configuration in force (re-read first if a file changed); `None`
    /// when the web config does not ask for TLS.
    pub fn server_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.refreshed().1
    }

    /// The state in force, re-read first if the file or its TLS files changed.
    fn refreshed(&self) -> (Arc<WebConfig>, Option<Arc<rustls::ServerConfig>>) {
        let mut state = self.state.lock();
        let stamps = stamps(&self.path, &state.config);
        if stamps != state.stamps {
            let reread = read(&self.path).and_then(|loaded| {
                if loaded.server_tls.is_some() == state.server_tls.is_some() {
                    Ok(loaded)
                } else {
                    Err(WebConfigError::TlsToggled {
                        file: self.path.display().to_string(),
                    })
                }
            });
            match reread {
                Ok(loaded) => {
                    *state = loaded;
                    self.verified.lock().clear();
                }
                Err(e) => {
                    // Logged once per change of the files; the old config stays.
                    state.stamps = stamps;
                    tracing::error!(error = %e, "web config file or its TLS files changed but are invalid; keeping the previous ones");
                }
            }
        }
        (state.config.clone(), state.server_tls.clone())
    }

    /// Whether `user`/`password` are valid under `config` (slow: bcrypt).
    fn verify(&self, config: &WebConfig, user: &str, password: &str) -> bool {
        let hash = config.basic_auth_users.get(user);
        let key = format!(
            "{user}\u{0}{password}\u{0}{}",
            hash.map(String::as_str).unwrap_or("")
        );
        if hash.is_some() && self.verified.lock().contains(&key) {
            return true;
        }
        let ok = bcrypt::verify(password, hash.map(String::as_str).unwrap_or(DUMMY_HASH))
            .unwrap_or(false)
            && hash.is_some();
        if ok {
            let mut verified = self.verified.lock();
            if verified.len() >= CACHE_ENTRIES {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }

    /// Whether `token` matches one of `config`'s bearer token hashes (slow: bcrypt).
    fn verify_token(&self, config: &WebConfig, token: &str) -> bool {
        let key = format!("\u{0}bearer\u{0}{token}");
        if self.verified.lock().contains(&key) {
            return true;
        }
        let ok = config
            .bearer_tokens
            .iter()
            .any(|hash| bcrypt::verify(token, hash).unwrap_or(false));
        if ok {
            let mut verified = self.verified.lock();
            if verified.len() >= CACHE_ENTRIES {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }
}

/// The modification times of `path` and of the TLS files `config` names.
fn stamps(path: &Path, config: &WebConfig) -> Vec<Option<SystemTime>> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    std::iter::once(modified(path))
        .chain(config.tls.iter().flat_map(|t| t.files()).map(modified))
        .collect()
}

fn read(path: &Path) -> Result<Loaded, WebConfigError> {
    let file = path.display().to_string();
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => return Err(WebConfigError::Read { file, source }),
    };
    let config = WebConfig::parse(&text, &file)?;
    let mut stamps = stamps(path, &config);
    // The file as read, even if it changed since: the next check re-reads it.
    stamps[0] = modified;
    let server_tls = config
        .tls
        .as_ref()
        .map(|tls| tls.build())
        .transpose()
        .map_err(|source| WebConfigError::TlsBuild {
            file,
            source: Box::new(source),
        })?;
    Ok(Loaded {
        stamps,
        config: Arc::new(config),
        server_tls,
    })
}

/// The token of a `Bearer` Authorization header.
fn bearer_token(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The user and password of a `Basic` Authorization header.
fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The middleware: passes the request on when no users are configured or the
/// credentials are valid; answers 401 like Prometheus otherwise.
pub async fn require_basic_auth(
    State(service): State<Arc<Service>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(auth) = service.web_auth.clone() else {
        return next.run(request).await;
    };
    let config = auth.current();
    if config.basic_auth_users.is_empty() && config.bearer_tokens.is_empty() {
        return next.run(request).await;
    }
    let challenge = if config.basic_auth_users.is_empty() {
        "Bearer"
    } else {
        "Basic"
    };
    let valid = match (basic_credentials(&request), bearer_token(&request)) {
        (Some((user, password)), _) => {
            tokio::task::spawn_blocking(move || auth.verify(&config, &user, &password))
                .await
                .unwrap_or(false)
        }
        (None, Some(token)) if !config.bearer_tokens.is_empty() => {
            tokio::task::spawn_blocking(move || auth.verify_token(&config, &token))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    if valid {
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_valid_bcrypt_hash() {
        assert!(DUMMY_HASH.parse::<bcrypt::HashParts>().is_ok());
    }

    #[test]
    fn parses_the_exporter_toolkit_format() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!("tls_server_config: {{}}\nhttp_server_config:\n  http2: false\nbasic_auth_users:\n  alice: {hash}\n");
        let config = WebConfig::parse(&text, "web.yml").unwrap();
        assert_eq!(config.basic_auth_users["alice"], hash);
        assert_eq!(
            WebConfig::parse("", "web.yml").unwrap(),
            WebConfig::default()
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        // Hashes, unknown fields and TLS files: tests/web_auth.rs, beside promtool.
        let e = WebConfig::parse(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            "web.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("web.yml: "), "{e}");
        assert!(e.contains("unknown field `headers`"), "{e}");
    }
}
