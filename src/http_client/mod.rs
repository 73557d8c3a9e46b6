//! Outgoing HTTP clients: the one place promflow builds a [`reqwest::Client`].
//!
//! Owns: the process-wide rustls crypto provider (`ring`, installed once by
//! [`install_crypto_provider`], safe to call from `main`, tests and every builder),
//! turning a [`TlsConfig`] into a rustls client configuration (CA file or the
//! system's roots through rustls-platform-verifier, client certificate, server name,
//! `insecure_skip_verify`, protocol versions), and wording TLS failures the way
//! Prometheus (Go's `crypto/tls` and `x509`) does, so `lastError` in
//! `/api/v1/targets` reads the same.
//!
//! Contract: [`build_client`] turns a section's [`HttpClientConfig`] into a client
//! (every section's, in this one function) that enforces every field of its
//! `TlsConfig`, or a [`TlsSetupError`] naming the field at fault; [`authorize`] adds
//! its credentials to each request;
//! [`check_tls_config`] is the same work without the client, for config validation.
//! Files are read when a client is built (Prometheus re-reads them on change; promflow
//! reads them again on the next reload, see [`tls_files_fingerprint`]).
//!
//! Also the AWS SDK's side (`aws.rs`: [`aws_config_loader`], [`aws_http_client`]): the
//! SDK sends through a client built here, so EC2 discovery's `tls_config`, proxy and
//! redirect settings hold as everywhere else (the SNS receiver uses the defaults).
//!
//! Limit: `server_name` changes which name the server certificate must be valid for;
//! the SNI sent is still the URL's host (reqwest derives it from the URL).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Once};

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::config::{
    Authorization, HttpClientConfig, OAuth2, SecretFileError, TlsConfig, TlsVersion,
};

mod aws;
pub use aws::{aws_config_loader, aws_http_client};

/// The User-Agent of every outgoing request.
pub const USER_AGENT: &str = concat!("promflow/", env!("CARGO_PKG_VERSION"));

/// A `tls_config` that cannot be turned into a client: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError {
    /// The `tls_config` field at fault (`ca_file`, `cert_file`, …).
    pub field: &'static str,
    /// What is wrong, with the file name.
    pub message: String,
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls_config.{}: {}", self.field, self.message)
    }
}

impl std::error::Error for TlsSetupError {}

/// Why a request's credentials could not be had ([`authorize`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A `password_file` / `credentials_file` cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    /// The OAuth 2.0 token endpoint's client cannot be built.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// No OAuth 2.0 token.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Why no OAuth 2.0 token could be had, worded like golang.org/x/oauth2.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `client_secret_file` cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    /// The token request's form cannot be encoded.
    #[error(transparent)]
    Form(#[from] serde_urlencoded::ser::Error),
    /// The token endpoint cannot be reached.
    #[error("oauth2: cannot fetch token: {0}")]
    Fetch(#[source] reqwest::Error),
    /// The token endpoint answers with an error status.
    #[error("oauth2: cannot fetch token: {status}\nResponse: {body}")]
    Status {
        /// The status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
    },
    /// The answer is not the JSON of a token.
    #[error("oauth2: cannot parse json: {0}")]
    Json(#[source] serde_json::Error),
    /// The answer has no token.
    #[error("oauth2: server response missing access_token")]
    MissingToken,
}

/// Installs `ring` as rustls's process-wide crypto provider; later calls do nothing.
/// reqwest is built without a provider of its own (no aws-lc), so this must run
/// before any client is built; every builder here calls it.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider is already the default: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The client of `config` with promflow's User-Agent: its `tls_config`, `proxy_url`,
/// `proxy_connect_header` and `follow_redirects` (credentials are added to each request
/// by [`authorize`]). No proxy from the environment, as in Prometheus 2.42 (it has no
/// `proxy_from_environment`).
pub fn build_client(config: &HttpClientConfig) -> Result<reqwest::Client, TlsSetupError> {
    let rustls_config = rustls_client_config(&config.tls_config)?;
    let builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .tls_backend_preconfigured(rustls_config)
        .redirect(if config.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    let builder = match &config.proxy_url {
        None => builder.no_proxy(),
        Some(url) => {
            let proxy_error = |e: reqwest::Error| TlsSetupError {
                field: "",
                message: format!("proxy_url {url:?}: {e}"),
            };
            // Go sends `proxy_connect_header` with CONNECT only (https destinations);
            // reqwest would add a proxy's headers to forwarded http requests too, so
            // http destinations get a proxy without them.
            builder
                .proxy(reqwest::Proxy::http(url).map_err(proxy_error)?)
                .proxy(
                    reqwest::Proxy::https(url)
                        .map_err(proxy_error)?
                        .headers(proxy_connect_headers(&config.proxy_connect_header)?),
                )
        }
    };
    builder.build().map_err(|e| TlsSetupError {
        field: "",
        message: format!("building the HTTP client: {e}"),
    })
}

/// `proxy_connect_header` as header fields, each value once per entry.
fn proxy_connect_headers(
    headers: &std::collections::BTreeMap<String, Vec<crate::config::Secret>>,
) -> Result<reqwest::header::HeaderMap, TlsSetupError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, values) in headers {
        let invalid = |e: &dyn std::fmt::Display| TlsSetupError {
            field: "",
            message: format!("proxy_connect_header {name:?}: {e}"),
        };
        let header =
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&e))?;
        for value in values {
            let mut value =
                reqwest::header::HeaderValue::from_str(value.expose()).map_err(|e| invalid(&e))?;
            value.set_sensitive(true);
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

/// A client with the default settings (system roots, no client certificate, no proxy).
pub fn default_client() -> Result<reqwest::Client, TlsSetupError> {
    build_client(&HttpClientConfig::default())
}

/// Checks that `tls` can be turned into a client: its files are readable, hold PEM
/// data, and the key matches the certificate.
pub fn check_tls_config(tls: &TlsConfig) -> Result<(), TlsSetupError> {
    rustls_client_config(tls).map(drop)
}

/// A hash of the contents of `tls`'s files (0 when it names none; unreadable files
/// hash as empty), so a config loaded after the files changed differs from the one
/// before.
pub fn tls_files_fingerprint(tls: &TlsConfig) -> u64 {
    let files = [&tls.ca_file, &tls.cert_file, &tls.key_file];
    if files.iter().all(|file| file.is_none()) {
        return 0;
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for file in files {
        let bytes = file
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .unwrap_or_default();
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    hasher.digest()
}

/// `request` with the `Authorization` header of `config`'s `basic_auth`,
/// `authorization` or `oauth2` (at most one is configured), as prometheus/common's
/// round trippers add it: files are read at each request, as there, so rotated secrets
/// apply without a reload; an OAuth 2.0 token is fetched when none is cached. Errs
/// (with the reason) when a secret file cannot be read or a token cannot be had.
pub async fn authorize(
    mut request: reqwest::RequestBuilder,
    config: &HttpClientConfig,
) -> Result<reqwest::RequestBuilder, AuthError> {
    if let Some(auth) = &config.basic_auth {
        request = request.basic_auth(&auth.username, auth.password_text()?);
    }
    if let Some(header) = config
        .authorization
        .as_ref()
        .map(Authorization::header_value)
        .transpose()?
        .flatten()
    {
        request = request.header(reqwest::header::AUTHORIZATION, header);
    }
    if let Some(oauth2) = &config.oauth2 {
        let tokens = OAuth2Tokens::shared(oauth2)?;
        request = request.header(reqwest::header::AUTHORIZATION, tokens.header().await?);
    }
    Ok(request)
}

/// How much earlier than its expiry a token is fetched again (golang.org/x/oauth2's
/// `expiryDelta`).
const OAUTH2_EXPIRY_DELTA: std::time::Duration = std::time::Duration::from_secs(10);

/// `oauth2:` tokens of one configuration: fetched with the client credentials grant
/// as golang.org/x/oauth2's `clientcredentials` does (client id and secret in a Basic
/// header, `grant_type`, `scope` space-separated, `endpoint_params` in the form) and
/// cached until shortly before `expires_in` runs out (forever without one). Shared by
/// every request of the same configuration ([`OAuth2Tokens::shared`]).
pub struct OAuth2Tokens {
    config: OAuth2,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(String, Option<std::time::Instant>)>>,
}

impl OAuth2Tokens {
    /// The token source of `config`, one per distinct configuration in the process.
    pub fn shared(config: &OAuth2) -> Result<Arc<OAuth2Tokens>, TlsSetupError> {
        static SOURCES: std::sync::LazyLock<Mutex<HashMap<String, Arc<OAuth2Tokens>>>> =
            std::sync::LazyLock::new(Default::default);
        let key = format!(
            "{:?}\u{0}{}",
            config,
            config
                .client_secret
                .as_ref()
                .map_or("", |secret| secret.expose())
        );
        if let Some(source) = SOURCES.lock().get(&key) {
            return Ok(source.clone());
        }
        let client = build_client(&HttpClientConfig {
            tls_config: config.tls_config.clone(),
            proxy_url: config.proxy_url.clone(),
            ..HttpClientConfig::default()
        })?;
        let source = Arc::new(OAuth2Tokens {
            config: config.clone(),
            client,
            cached: tokio::sync::Mutex::new(None),
        });
        SOURCES.lock().insert(key, source.clone());
        Ok(source)
    }

    /// The `Authorization` header value (`Bearer <token>`), fetching a token if none
    /// is cached or it is about to expire; errors worded like golang.org/x/oauth2's.
    pub async fn header(&self) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some((header, expiry)) = &*cached {
            if expiry.is_none_or(|e| std::time::Instant::now() + OAUTH2_EXPIRY_DELTA < e) {
                return Ok(header.clone());
            }
        }
        let c = &self.config;
        let secret = c.secret_text()?;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        let scope = c.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        for (k, v) in &c.endpoint_params {
            form.push((k, v));
        }
        let body = serde_urlencoded::to_string(&form)?;
        let encode =
            |s: &str| serde_urlencoded::to_string([("", s)]).unwrap_or_default()[1..].to_string();
        let response = self
            .client
            .post(&c.token_url)
            .basic_auth(encode(&c.client_id), Some(encode(&secret)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(TokenError::Fetch)?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(TokenError::Status { status, body: text });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            token_type: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let token: TokenResponse = serde_json::from_str(&text).map_err(TokenError::Json)?;
        if token.access_token.is_empty() {
            return Err(TokenError::MissingToken);
        }
        let kind = match token.token_type.to_ascii_lowercase().as_str() {
            "" | "bearer" => "Bearer".to_string(),
            "mac" => "MAC".to_string(),
            "basic" => "Basic".to_string(),
            _ => token.token_type.clone(),
        };
        let header = format!("{kind} {}", token.access_token);
        let expiry = token
            .expires_in
            .filter(|s| *s > 0)
            .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
        *cached = Some((header.clone(), expiry));
        Ok(header)
    }
}

/// Clients by settings, built on first use: for senders whose targets each carry their
/// own (Alertmanagers, notifier receivers). A failed build is not cached.
#[derive(Default)]
pub struct ClientCache {
    clients: Mutex<HashMap<HttpClientConfig, reqwest::Client>>,
}

impl ClientCache {
    /// The client of `config` (a cheap handle to a shared connection pool).
    pub fn get(&self, config: &HttpClientConfig) -> Result<reqwest::Client, TlsSetupError> {
        if let Some(client) = self.clients.lock().get(config) {
            return Ok(client.clone());
        }
        let client = build_client(config)?;
        self.clients.lock().insert(config.clone(), client.clone());
        Ok(client)
    }
}

fn rustls_client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, TlsSetupError> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = protocol_versions(tls)?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(AcceptAnyServerCert(provider.clone()))
    } else if let Some(ca_file) = &tls.ca_file {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certificates(ca_file, "ca_file", "CA cert")? {
            roots.add(cert).map_err(|e| TlsSetupError {
                field: "ca_file",
                message: format!("unable to use specified CA cert {}: {e}", ca_file.display()),
            })?;
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsSetupError {
            field: "ca_file",
            message: format!("unable to use specified CA cert {}: {e}", ca_file.display()),
        })?
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| {
                TlsSetupError {
                    field: "ca_file",
                    message: format!("unable to load the system's CA certificates: {e}"),
                }
            })?,
        )
    };
    let verifier = match &tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| TlsSetupError {
                field: "server_name",
                message: format!("invalid server name {name:?}: {e}"),
            })?;
            Arc::new(VerifyAsServerName {
                inner: verifier,
                name,
            }) as Arc<dyn ServerCertVerifier>
        }
        None => verifier,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsSetupError {
            field: "min_version",
            message: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certificates(cert_file, "cert_file", "client cert")?;
            let key = read_private_key(key_file, "client key")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsSetupError {
                    field: "key_file",
                    message: format!(
                        "unable to use specified client cert ({}) & key ({}): {e}",
                        cert_file.display(),
                        key_file.display()
                    ),
                })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(TlsSetupError {
            field: "cert_file",
            message: "client cert file specified without client key file".into(),
        }),
        (None, Some(_)) => Err(TlsSetupError {
            field: "key_file",
            message: "client key file specified without client cert file".into(),
        }),
    }
}

/// The versions between `min_version` and `max_version`; rustls speaks 1.2 and 1.3,
/// so `TLS10`/`TLS11` as a minimum mean 1.2, and as a maximum cannot be honoured.
fn protocol_versions(
    tls: &TlsConfig,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsSetupError> {
    protocol_versions_between(tls.min_version, tls.max_version)
}

/// The versions between `min` (default TLS 1.2) and `max` (default TLS 1.3); see
/// [`protocol_versions`]. Shared with promflow's own https server.
pub(crate) fn protocol_versions_between(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsSetupError> {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    static ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let min = min.unwrap_or(TlsVersion::Tls12);
    let max = max.unwrap_or(TlsVersion::Tls13);
    if max < TlsVersion::Tls12 {
        return Err(TlsSetupError {
            field: "max_version",
            message: format!(
                "max_version {max} is not supported: promflow speaks TLS 1.2 and 1.3 only"
            ),
        });
    }
    Ok(match (min >= TlsVersion::Tls13, max >= TlsVersion::Tls13) {
        (true, true) => ONLY_13,
        (false, true) => BOTH,
        (false, false) => ONLY_12,
        (true, false) => {
            return Err(TlsSetupError {
                field: "min_version",
                message: format!("min_version {min} is higher than max_version {max}"),
            })
        }
    })
}

/// Every certificate in the PEM file `path` (at least one).
pub(crate) fn read_certificates(
    path: &Path,
    field: &'static str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = crate::os_error::read_file(path).map_err(|e| TlsSetupError {
        field,
        message: format!("unable to load specified {what} {}: {e}", path.display()),
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError {
            field,
            message: format!("unable to use specified {what} {}: {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError {
            field,
            message: format!(
                "unable to use specified {what} {}: no PEM CERTIFICATE block in it",
                path.display()
            ),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file `path`; `what`
/// names it in errors (`client key`).
pub(crate) fn read_private_key(
    path: &Path,
    what: &str,
) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = crate::os_error::read_file(path).map_err(|e| TlsSetupError {
        field: "key_file",
        message: format!("unable to load specified {what} {}: {e}", path.display()),
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsSetupError {
        field: "key_file",
        message: format!(
            "unable to use specified {what} {}: {}",
            path.display(),
            match e {
                rustls::pki_types::pem::Error::NoItemsFound =>
                    "no PEM private key block in it".to_string(),
                other => other.to_string(),
            }
        ),
    })
}

/// `insecure_skip_verify`: any certificate is accepted; handshake signatures are
/// still checked, so the session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `server_name`: verifies the server certificate for a fixed name instead of the
/// URL's host.
#[derive(Debug)]
struct VerifyAsServerName {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAsServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// The TLS failure in `error`'s source chain, worded like Go's `crypto/tls` / `x509`
/// errors in Prometheus (`x509: certificate signed by unknown authority`); `None`
/// when the failure is not about TLS.
pub fn describe_tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_rustls_error(error).map(go_wording)
}

/// The rustls error in `error`'s source chain. The TLS stack wraps it in
/// `io::Error`s (sometimes two), whose `source()` skips the wrapped error, so
/// those are opened with `get_ref`.
fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(found) = find_rustls_error(inner) {
            return Some(found);
        }
    }
    find_rustls_error(error.source()?)
}

fn go_wording(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "x509: certificate signed by unknown authority".into()
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => name_mismatch(expected, presented),
            CertificateError::NotValidForName => {
                "x509: certificate is not valid for the requested name".into()
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                format!("x509: certificate has expired or is not yet valid: {cert:?}")
            }
            other => format!("x509: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("remote error: tls: {}", alert_text(*alert))
        }
        other => format!("tls: {other}"),
    }
}

/// Go's `x509.HostnameError`: the certificate's names of the kind asked for (DNS
/// names for a host name, IP addresses for an IP). rustls presents them as
/// `DnsName("localhost")` / `IpAddress(127.0.0.1)`.
fn name_mismatch(expected: &ServerName<'_>, presented: &[String]) -> String {
    let (prefix, kind) = match expected {
        ServerName::IpAddress(_) => ("IpAddress(", "IP SANs"),
        _ => ("DnsName(\"", "names"),
    };
    let names: Vec<&str> = presented
        .iter()
        .filter_map(|p| p.strip_prefix(prefix)?.strip_suffix(')'))
        .map(|name| name.trim_end_matches('"'))
        .collect();
    let expected = expected.to_str();
    if names.is_empty() {
        format!("x509: cannot validate certificate for {expected} because it doesn't contain any {kind}")
    } else {
        format!(
            "x509: certificate is valid for {}, not {expected}",
            names.join(", ")
        )
    }
}

/// Go's names for TLS alerts (`crypto/tls/alert.go`), lower-case words otherwise.
fn alert_text(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match alert {
        A::UnknownCA => "unknown certificate authority".into(),
        A::ProtocolVersion => "protocol version not supported".into(),
        A::DecryptError => "error decrypting message".into(),
        other => {
            let name = format!("{other:?}");
            let mut words = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    words.push(' ');
                }
                words.push(c.to_ascii_lowercase());
            }
            words
        }
    }
}

/// An error and its sources on one line (the AWS SDK's top level alone says only
/// "service error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_install_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
        default_client().expect("a default client builds");
    }

    #[test]
    fn missing_files_name_the_field() {
        let tls = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let error = check_tls_config(&tls).unwrap_err();
        assert_eq!(error.field, "ca_file");
        assert!(
            error
                .message
                .starts_with("unable to load specified CA cert /nonexistent/ca.pem: "),
            "{error}"
        );
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let tls = TlsConfig {
            ca_file: Some(ca.clone()),
            ..TlsConfig::default()
        };
        let error = check_tls_config(&tls).unwrap_err();
        assert_eq!(error.field, "ca_file");
        assert!(
            error.message.contains("no PEM CERTIFICATE block"),
            "{error}"
        );
    }

    #[test]
    fn the_fingerprint_follows_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let tls = TlsConfig {
            ca_file: Some(ca.clone()),
            ..TlsConfig::default()
        };
        std::fs::write(&ca, "first").unwrap();
        let first = tls_files_fingerprint(&tls);
        std::fs::write(&ca, "second").unwrap();
        assert_ne!(tls_files_fingerprint(&tls), first);
        assert_eq!(tls_files_fingerprint(&TlsConfig::default()), 0);
    }

    #[test]
    fn versions_follow_min_and_max() {
        let with = |min, max| TlsConfig {
            min_version: min,
            max_version: max,
            ..TlsConfig::default()
        };
        assert_eq!(protocol_versions(&with(None, None)).unwrap().len(), 2);
        assert_eq!(
            protocol_versions(&with(Some(TlsVersion::Tls13), None)).unwrap(),
            &[&rustls::version::TLS13]
        );
        assert_eq!(
            protocol_versions(&with(Some(TlsVersion::Tls10), Some(TlsVersion::Tls12))).unwrap(),
            &[&rustls::version::TLS12]
        );
        assert_eq!(
            protocol_versions(&with(None, Some(TlsVersion::Tls11)))
                .unwrap_err()
                .field,
            "max_version"
        );
    }

    #[test]
    fn name_mismatches_use_go_wording() {
        let presented = vec![
            "DnsName(\"localhost\")".to_string(),
            "IpAddress(127.0.0.1)".to_string(),
        ];
        let host = ServerName::try_from("wrong.example").unwrap();
        assert_eq!(
            name_mismatch(&host, &presented),
            "x509: certificate is valid for localhost, not wrong.example"
        );
        let ip = ServerName::try_from("10.0.0.1").unwrap();
        assert_eq!(
            name_mismatch(&ip, &presented),
            "x509: certificate is valid for 127.0.0.1, not 10.0.0.1"
        );
        assert_eq!(
            name_mismatch(&ip, &presented[..1]),
            "x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs"
        );
    }

    #[test]
    fn alerts_use_go_names() {
        assert_eq!(
            alert_text(rustls::AlertDescription::BadCertificate),
            "bad certificate"
        );
        assert_eq!(
            alert_text(rustls::AlertDescription::CertificateRequired),
            "certificate required"
        );
    }
}
