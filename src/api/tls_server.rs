//! `tls_server_config` of `--web.config.file`: promflow's own server speaking https,
//! with exporter-toolkit's settings and meanings (the version Prometheus 2.42 ships).
//!
//! Owns: validating the section ([`TlsServerSettings::parse`]) with exporter-toolkit's
//! rules and messages (`missing cert_file`, `unknown cipher: …`, `Invalid ClientAuth:
//! …`, …; a section naming none of `cert_file`, `key_file`, `client_auth_type`,
//! `client_ca_file` means plain HTTP, as there); turning it into a rustls server
//! configuration ([`TlsServerSettings::build`], which reads the files, so a bad file is
//! refused when the web config is loaded, as `promtool check web-config` does); and the
//! handshake ([`handshake`]) the server loop ([`super::server`]) runs on each new
//! connection's task with the configuration in force at that moment
//! ([`crate::api::auth::WebAuth::server_tls`], which re-reads the web config and the
//! certificate files when they change and keeps the previous configuration when they
//! no longer load).
//!
//! `client_auth_type` as in Go: `NoClientCert` (default), `RequestClientCert` (asked
//! for, not required, not verified), `RequireAnyClientCert` (alias
//! `RequireClientCert`; required, not verified), `VerifyClientCertIfGiven`,
//! `RequireAndVerifyClientCert` (verified against `client_ca_file`, or the system's
//! roots without one). Where rustls differs: TLS 1.0/1.1 do not exist (as a minimum
//! they mean 1.2; as a maximum they are refused), `cipher_suites` applies to TLS 1.2
//! (TLS 1.3 suites are not configurable, as in Go) and Go's CBC and RSA-key-exchange
//! suites are refused by name, `curve_preferences` has no `CurveP521` (refused).
//! `prefer_server_cipher_suites` (default true) makes the server's order win. A plain
//! HTTP request to the https port gets Go's `400 Client sent an HTTP request to an
//! HTTPS server.` answer.

use crate::config::TlsVersion;
use crate::http_client::{
    install_crypto_provider, protocol_versions_between, read_certificates, read_private_key,
    TlsSetupError,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, NamedGroup, SignatureScheme};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a client has to send its first byte and finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Go's answer to plain HTTP on a TLS port (net/http, written raw before closing).
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// `tls_server_config:` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsServerConfig {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
}

/// `client_auth_type`, with Go's `tls.ClientAuthType` meanings (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// A validated `tls_server_config` that asks for TLS; paths are absolute or relative
/// to the web config file's directory, as exporter-toolkit resolves them.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsServerSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// TLS 1.2 suites in preference order; empty: rustls's defaults.
    pub cipher_suites: Vec<CipherSuite>,
    /// Key exchange groups in preference order; empty: rustls's defaults.
    pub curve_preferences: Vec<NamedGroup>,
    pub prefer_server_cipher_suites: bool,
}

/// Go's `tls.CipherSuites()` names (what exporter-toolkit accepts) and the rustls
/// suite of each: `Some` for TLS 1.2 suites rustls has, `None` for TLS 1.3 suites
/// (accepted, not configurable, as in Go).
const GO_CIPHER_SUITES: &[(&str, Result<Option<CipherSuite>, ()>)] = &[
    ("TLS_RSA_WITH_AES_128_CBC_SHA", Err(())),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", Err(())),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", Err(())),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", Err(())),
    ("TLS_AES_128_GCM_SHA256", Ok(None)),
    ("TLS_AES_256_GCM_SHA384", Ok(None)),
    ("TLS_CHACHA20_POLY1305_SHA256", Ok(None)),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", Err(())),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", Err(())),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", Err(())),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", Err(())),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Ok(Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Ok(Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Ok(Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Ok(Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Ok(Some(
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        )),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Ok(Some(
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        )),
    ),
];

/// exporter-toolkit's curve names and the rustls group of each (`None`: not in ring).
const GO_CURVES: &[(&str, Option<NamedGroup>)] = &[
    ("CurveP256", Some(NamedGroup::secp256r1)),
    ("CurveP384", Some(NamedGroup::secp384r1)),
    ("CurveP521", None),
    ("X25519", Some(NamedGroup::X25519)),
];

/// Why [`TlsServerSettings::parse`] refused the section: exporter-toolkit's messages.
#[derive(Debug, thiserror::Error)]
pub enum TlsSettingsError {
    #[error("unknown TLS version: {0}")]
    UnknownVersion(String),
    #[error("unknown cipher: {0}")]
    UnknownCipher(String),
    /// A Go cipher suite rustls does not implement (CBC, RSA key exchange).
    #[error("cipher suite {0} is not supported by promflow's TLS stack (rustls)")]
    UnsupportedCipher(String),
    #[error("unknown curve: {0}")]
    UnknownCurve(String),
    /// A Go curve ring does not implement (`CurveP521`).
    #[error("curve {0} is not supported by promflow's TLS stack (rustls on ring)")]
    UnsupportedCurve(String),
    #[error("missing cert_file")]
    MissingCertFile,
    #[error("missing key_file")]
    MissingKeyFile,
    #[error("Invalid ClientAuth: {0}")]
    InvalidClientAuth(String),
    #[error("Client CA's have been configured without a Client Auth Policy")]
    CaWithoutClientAuth,
}

/// Why [`TlsServerSettings::build`] could not make a rustls configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsBuildError {
    /// `min_version` above `max_version`, or a maximum rustls lacks.
    #[error("{}", .0.message)]
    Versions(TlsSetupError),
    #[error("cipher_suites/min_version/max_version: {0}")]
    Protocol(rustls::Error),
    /// The client CA file cannot be read or holds no certificate.
    #[error("{}", .0.message)]
    ClientCaFile(TlsSetupError),
    #[error("client_ca_file {}: {source}", file.display())]
    ClientCa {
        file: PathBuf,
        source: rustls::Error,
    },
    #[error("client_auth_type verifies client certificates but there is no client_ca_file and no system CA certificate")]
    NoClientRoots,
    #[error("client_ca_file: {0}")]
    ClientVerifier(rustls::server::VerifierBuilderError),
    /// The certificate or key file cannot be read or holds nothing usable.
    #[error("failed to load X509KeyPair: {}", .0.message)]
    KeyPairFile(TlsSetupError),
    /// The key does not go with the certificate.
    #[error("failed to load X509KeyPair: {} and {}: {source}", cert_file.display(), key_file.display())]
    KeyPair {
        cert_file: PathBuf,
        key_file: PathBuf,
        source: rustls::Error,
    },
}

fn parse_version(
    text: &Option<String>,
    default: TlsVersion,
) -> Result<TlsVersion, TlsSettingsError> {
    match text {
        None => Ok(default),
        Some(text) => {
            TlsVersion::parse(text).ok_or_else(|| TlsSettingsError::UnknownVersion(text.clone()))
        }
    }
}

impl TlsServerSettings {
    /// Validates `raw` as exporter-toolkit does, in its order; `Ok(None)` when the
    /// section does not ask for TLS. `dir` resolves relative paths. Does not read
    /// files (see [`TlsServerSettings::build`]).
    pub(crate) fn parse(
        raw: RawTlsServerConfig,
        dir: &Path,
    ) -> Result<Option<TlsServerSettings>, TlsSettingsError> {
        // Field types first (YAML unmarshalling), then the TLS config.
        let min_version = parse_version(&raw.min_version, TlsVersion::Tls12)?;
        let max_version = parse_version(&raw.max_version, TlsVersion::Tls13)?;
        let mut cipher_suites = Vec::new();
        for name in raw.cipher_suites.iter().flatten() {
            match GO_CIPHER_SUITES.iter().find(|(go, _)| go == name) {
                None => return Err(TlsSettingsError::UnknownCipher(name.clone())),
                Some((_, Err(()))) => {
                    return Err(TlsSettingsError::UnsupportedCipher(name.clone()))
                }
                Some((_, Ok(Some(suite)))) => cipher_suites.push(*suite),
                Some((_, Ok(None))) => {}
            }
        }
        let mut curve_preferences = Vec::new();
        for name in raw.curve_preferences.iter().flatten() {
            match GO_CURVES.iter().find(|(go, _)| go == name) {
                None => return Err(TlsSettingsError::UnknownCurve(name.clone())),
                Some((_, None)) => return Err(TlsSettingsError::UnsupportedCurve(name.clone())),
                Some((_, Some(group))) => curve_preferences.push(*group),
            }
        }
        let empty = |s: &Option<String>| s.as_deref().unwrap_or("").is_empty();
        if empty(&raw.cert_file)
            && empty(&raw.key_file)
            && empty(&raw.client_auth_type)
            && empty(&raw.client_ca_file)
        {
            return Ok(None);
        }
        let resolve = |s: &Option<String>| -> Option<PathBuf> {
            s.as_deref().filter(|s| !s.is_empty()).map(|s| dir.join(s))
        };
        let cert_file = resolve(&raw.cert_file).ok_or(TlsSettingsError::MissingCertFile)?;
        let key_file = resolve(&raw.key_file).ok_or(TlsSettingsError::MissingKeyFile)?;
        let client_auth = match raw.client_auth_type.as_deref().unwrap_or("") {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => return Err(TlsSettingsError::InvalidClientAuth(other.to_string())),
        };
        let client_ca_file = resolve(&raw.client_ca_file);
        if client_ca_file.is_some() && client_auth == ClientAuth::NoClientCert {
            return Err(TlsSettingsError::CaWithoutClientAuth);
        }
        Ok(Some(TlsServerSettings {
            cert_file,
            key_file,
            client_ca_file,
            client_auth,
            min_version,
            max_version,
            cipher_suites,
            curve_preferences,
            prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        }))
    }

    /// The rustls configuration: reads the certificate, key and client CA files.
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, TlsBuildError> {
        install_crypto_provider();
        let mut provider = rustls::crypto::ring::default_provider();
        if !self.cipher_suites.is_empty() {
            let all = std::mem::take(&mut provider.cipher_suites);
            provider.cipher_suites = all
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .chain(
                    self.cipher_suites
                        .iter()
                        .filter_map(|want| all.iter().find(|s| s.suite() == *want)),
                )
                .copied()
                .collect();
        }
        if !self.curve_preferences.is_empty() {
            let all = std::mem::take(&mut provider.kx_groups);
            provider.kx_groups = self
                .curve_preferences
                .iter()
                .filter_map(|want| all.iter().find(|g| g.name() == *want))
                .copied()
                .collect();
        }
        let provider = Arc::new(provider);
        let versions = protocol_versions_between(Some(self.min_version), Some(self.max_version))
            .map_err(TlsBuildError::Versions)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(TlsBuildError::Protocol)?;
        let verifier: Option<Arc<dyn ClientCertVerifier>> = match self.client_auth {
            ClientAuth::NoClientCert => None,
            ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
                Some(Arc::new(AnyClientCert {
                    provider: provider.clone(),
                    mandatory: self.client_auth == ClientAuth::RequireAnyClientCert,
                }))
            }
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
                let roots = self.client_roots()?;
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let builder = if self.client_auth == ClientAuth::VerifyClientCertIfGiven {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                Some(builder.build().map_err(TlsBuildError::ClientVerifier)?)
            }
        };
        let builder = match verifier {
            None => builder.with_no_client_auth(),
            Some(verifier) => builder.with_client_cert_verifier(verifier),
        };
        let chain = read_certificates(&self.cert_file, "cert_file", "certificate")
            .map_err(TlsBuildError::KeyPairFile)?;
        let key = read_private_key(&self.key_file, "key").map_err(TlsBuildError::KeyPairFile)?;
        let mut config =
            builder
                .with_single_cert(chain, key)
                .map_err(|source| TlsBuildError::KeyPair {
                    cert_file: self.cert_file.clone(),
                    key_file: self.key_file.clone(),
                    source,
                })?;
        config.ignore_client_order = self.prefer_server_cipher_suites;
        // axum serves HTTP/1.1 here.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The files whose change reloads the configuration.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert_file.as_path(), self.key_file.as_path()];
        files.extend(self.client_ca_file.as_deref());
        files
    }

    fn client_roots(&self) -> Result<rustls::RootCertStore, TlsBuildError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.client_ca_file {
            Some(file) => {
                let certs = read_certificates(file, "client_ca_file", "client CA")
                    .map_err(TlsBuildError::ClientCaFile)?;
                for cert in certs {
                    roots.add(cert).map_err(|source| TlsBuildError::ClientCa {
                        file: file.clone(),
                        source,
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(TlsBuildError::NoClientRoots);
                }
            }
        }
        Ok(roots)
    }
}

/// `RequestClientCert` / `RequireAnyClientCert`: any certificate is accepted (the
/// handshake signature is still checked, so the client holds its key).
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS handshake on `stream` with `config`, bounded by [`HANDSHAKE_TIMEOUT`];
/// `None` when the client spoke plain HTTP (answered as Go does).
pub async fn handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake_unbounded(stream, config))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

async fn handshake_unbounded(
    mut stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    // 0x16: a TLS handshake record.
    if first[0] != 0x16 {
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        stream.shutdown().await?;
        return Ok(None);
    }
    let _ = stream.set_nodelay(true);
    tokio_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Option<TlsServerSettings>, String> {
        let raw: RawTlsServerConfig = serde_yaml_ng::from_str(yaml).unwrap();
        TlsServerSettings::parse(raw, Path::new("/etc/promflow")).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_follow_exporter_toolkit() {
        // Wording and acceptance against promtool: tests/web_tls.rs.
        assert_eq!(parse("min_version: TLS13").unwrap(), None);
        let s = parse("cert_file: a.crt\nkey_file: /k\ncipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\ncurve_preferences: [X25519]\nclient_auth_type: RequireClientCert\n")
            .unwrap()
            .unwrap();
        assert_eq!(s.cert_file, Path::new("/etc/promflow/a.crt"));
        assert_eq!(s.key_file, Path::new("/k"));
        assert_eq!(s.client_auth, ClientAuth::RequireAnyClientCert);
        assert_eq!(
            s.cipher_suites,
            [CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        assert_eq!(s.curve_preferences, [NamedGroup::X25519]);
        assert!(s.prefer_server_cipher_suites);
        let e = parse("cert_file: a\nkey_file: b\ncipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]")
            .unwrap_err();
        assert!(
            e.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
            "{e}"
        );
    }
}
