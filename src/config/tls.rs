//! `tls_config`: how an outgoing HTTP client speaks TLS (prometheus/common's
//! `TLSConfig` as Prometheus 2.42 has it: `ca_file`, `cert_file`, `key_file`,
//! `server_name`, `insecure_skip_verify`, `min_version`, `max_version`).
//!
//! This file owns the raw and resolved types and the load-time checks. The files it
//! names are read and parsed by [`crate::http_client`], which builds clients from a
//! [`TlsConfig`]; at load time it is asked to do exactly that once, so an unreadable
//! file, a file without PEM data or a key that does not match its certificate is a
//! located config problem instead of a failing scrape. Relative paths are resolved
//! against the config file's directory, as Prometheus does. Prometheus re-reads the
//! files when they change; promflow reads them at each (re)load.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use super::locate::FieldPath;
use super::paths::join_dir;
use super::raw::ScalarText;
use super::validate::Problems;

/// `tls_config:` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTlsConfig {
    pub ca_file: Option<ScalarText>,
    pub cert_file: Option<ScalarText>,
    pub key_file: Option<ScalarText>,
    pub server_name: Option<ScalarText>,
    pub insecure_skip_verify: Option<bool>,
    pub min_version: Option<ScalarText>,
    pub max_version: Option<ScalarText>,
}

/// A TLS protocol version as written in `min_version` / `max_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// `TLS10` (promflow's TLS stack speaks 1.2 and 1.3 only, so this is 1.2).
    Tls10,
    /// `TLS11` (as `TLS10`).
    Tls11,
    /// `TLS12`.
    Tls12,
    /// `TLS13`.
    Tls13,
}

impl TlsVersion {
    /// Parses `TLS10` … `TLS13`, as Prometheus does (case-sensitive).
    pub fn parse(text: &str) -> Option<TlsVersion> {
        Some(match text {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            _ => return None,
        })
    }

    /// The version as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TlsVersion {
    /// As written (`TLS12`). Prometheus 2.42 prints the Go constant (`771`), which
    /// it cannot load back; later versions print the name, as here.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A resolved `tls_config`. The default (nothing set) verifies servers against the
/// system's CA roots and sends no client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct TlsConfig {
    /// CA certificates (PEM) that server certificates must chain to, instead of the
    /// system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) sent when the server asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the server certificate must be valid for, instead of the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate (the connection is still encrypted).
    pub insecure_skip_verify: bool,
    /// Lowest TLS version offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_version: Option<TlsVersion>,
    /// A hash of the files' contents when the config was loaded (0 without files):
    /// after a reload, rotated certificates at the same paths make a different
    /// `TlsConfig`, so the clients (and the scrape loops using them) are rebuilt.
    #[serde(skip)]
    pub files_fingerprint: u64,
}

impl TlsConfig {
    /// Whether nothing is set (not printed in `/api/v1/status/config`, like the
    /// other HTTP client defaults promflow leaves out).
    pub fn is_default(&self) -> bool {
        *self == TlsConfig::default()
    }
}

/// Resolves an optional `tls_config` at `path`, adding every problem: Prometheus's
/// load-time checks, then whatever [`crate::http_client`] finds reading the files.
pub(crate) fn resolve_tls_config(
    raw: Option<&RawTlsConfig>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> TlsConfig {
    let Some(raw) = raw else {
        return TlsConfig::default();
    };
    let text = |value: &Option<ScalarText>| {
        value
            .as_ref()
            .map(|v| v.0.clone())
            .filter(|v| !v.is_empty())
    };
    let file = |value: &Option<ScalarText>| text(value).map(|f| join_dir(base_dir, &f));
    let mut version = |value: &Option<ScalarText>, field: &str| {
        let written = text(value)?;
        let parsed = TlsVersion::parse(&written);
        if parsed.is_none() {
            problems.push(path.key(field), format!("unknown TLS version: {written}"));
        }
        parsed
    };
    let min_version = version(&raw.min_version, "min_version");
    let max_version = version(&raw.max_version, "max_version");
    let tls = TlsConfig {
        ca_file: file(&raw.ca_file),
        cert_file: file(&raw.cert_file),
        key_file: file(&raw.key_file),
        server_name: text(&raw.server_name),
        insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
        min_version,
        max_version,
        files_fingerprint: 0,
    };
    // What the file check below is given: the fields already reported are left out,
    // so it reports only problems of its own.
    let mut checked = tls.clone();
    // promtool 2.42's wording.
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), None) => {
            problems.push(
                path.key("cert_file"),
                format!(
                    "client cert file {:?} specified without client key file",
                    cert.display().to_string()
                ),
            );
            checked.cert_file = None;
        }
        (None, Some(key)) => {
            problems.push(
                path.key("key_file"),
                format!(
                    "client key file {:?} specified without client cert file",
                    key.display().to_string()
                ),
            );
            checked.key_file = None;
        }
        _ => {}
    }
    if let (Some(min), Some(max)) = (min_version, max_version) {
        if min.max(TlsVersion::Tls12) > max.max(TlsVersion::Tls12) {
            problems.push(
                path.key("min_version"),
                format!("min_version {min} is higher than max_version {max}"),
            );
            checked.min_version = None;
        }
    }
    if let Err(error) = crate::http_client::check_tls_config(&checked) {
        problems.push(path.key(error.field), error.message);
    }
    TlsConfig {
        files_fingerprint: crate::http_client::tls_files_fingerprint(&tls),
        ..tls
    }
}
