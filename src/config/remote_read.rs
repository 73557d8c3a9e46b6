//! `remote_read:`: other servers whose samples ad-hoc queries read beside local
//! storage, resolved with Prometheus 2.42's defaults and checks (`config/config.go`,
//! `RemoteReadConfig`).
//!
//! Supported: `url`, `name`, `remote_timeout` (default `1m`), `headers` (reserved ones
//! refused as in Prometheus), `read_recent` (default `false`), `required_matchers`,
//! `filter_external_labels` (default `true`) and the HTTP client settings
//! (`basic_auth`, `authorization`, `tls_config`, `proxy_url`, …). What they do is
//! `remote::read`'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::http_client::{resolve_http_client, HttpClientConfig, WithHttpClient};
use super::locate::FieldPath;
use super::raw::RawRemoteReadConfig;
use super::remote_write::{resolve_entries, resolve_headers};
use super::resolved::serialize_duration;
use super::validate::{duration_field, resolve_labels, Problems};

/// One `remote_read[]` entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RemoteReadConfig {
    /// Where to POST read requests (`http` or `https`).
    pub url: String,
    /// Timeout of one request (default `1m`).
    #[serde(serialize_with = "serialize_duration")]
    pub remote_timeout: Duration,
    /// Extra request headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Also read the time range local storage covers (default `false`: only what is
    /// older than the oldest local sample).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_recent: bool,
    /// Its name (unique among the entries when set).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// How requests authenticate and connect.
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// Label pairs a selector must hold as equality matchers for this endpoint to be
    /// asked.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub required_matchers: BTreeMap<String, String>,
    /// Whether the external labels are sent as matchers (and taken off the answers).
    pub filter_external_labels: bool,
}

/// Resolves `remote_read:`.
pub(crate) fn resolve_remote_read(
    raw: &[Option<WithHttpClient<RawRemoteReadConfig>>],
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<RemoteReadConfig> {
    resolve_entries(
        raw,
        "read",
        path,
        problems,
        |entry, path, problems| resolve_one(entry, base_dir, path, problems),
        |config| &config.name,
    )
}

fn resolve_one(
    raw: &WithHttpClient<RawRemoteReadConfig>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> RemoteReadConfig {
    let url = raw.url.as_ref().map(|u| u.0.clone()).unwrap_or_default();
    // Any scheme passes, as in Prometheus 2.42 (a read over one that is not http or
    // https fails, as a warning of the queries).
    if url.is_empty() {
        problems.push(path.key("url"), "url for remote_read is empty");
    }
    RemoteReadConfig {
        url,
        remote_timeout: duration_field(
            raw.remote_timeout.as_ref(),
            &path.key("remote_timeout"),
            problems,
        )
        .unwrap_or(Duration::from_secs(60)),
        headers: resolve_headers(raw.headers.as_ref(), path, problems),
        read_recent: raw.read_recent.unwrap_or(false),
        name: raw.name.as_ref().map(|n| n.0.clone()).unwrap_or_default(),
        http: resolve_http_client(raw.http(), base_dir, path, problems),
        required_matchers: resolve_labels(
            raw.required_matchers.as_ref(),
            &path.key("required_matchers"),
            problems,
        ),
        filter_external_labels: raw.filter_external_labels.unwrap_or(true),
    }
}
