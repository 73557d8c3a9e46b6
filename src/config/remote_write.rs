//! `remote_write:`: where promflow forwards the samples it stores, resolved with
//! Prometheus 2.42's defaults and checks (`config/config.go`, `RemoteWriteConfig`).
//!
//! Supported: `url`, `name`, `remote_timeout`, `headers` (reserved ones refused as in
//! Prometheus), `write_relabel_configs`, `basic_auth`, `authorization`, `tls_config`, `queue_config`,
//! `metadata_config`, `send_exemplars` and `send_native_histograms`. promflow sends no metadata: `metadata_config.send: true` is a
//! problem (the default here is `false`), never silently ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::http_client::{resolve_http_client, HttpClientConfig, WithHttpClient};
use super::locate::FieldPath;
use super::raw::{RawMetadataConfig, RawQueueConfig, RawRemoteWriteConfig};
use super::resolved::{serialize_duration, RelabelConfig};
use super::validate::{duration_field, resolve_relabel_configs, Problems};

/// One `remote_write[]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteWriteConfig {
    /// Where to POST (`http` or `https`).
    pub url: String,
    /// Timeout of one request (default `30s`).
    #[serde(serialize_with = "serialize_duration")]
    pub remote_timeout: Duration,
    /// Extra request headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The queue's name in metrics (`remote_name`); empty means a hash of the config.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Relabelling applied to each series (after external labels) before sending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// How requests authenticate and connect (`tls_config` for an `https://` URL).
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// Queueing, batching and retries.
    pub queue_config: QueueConfig,
    /// Metadata sending (not done by promflow).
    pub metadata_config: MetadataConfig,
    /// The message sent: remote write 1.0 (default) or 2.0. Left out of the JSON form
    /// when 1.0, so that `remote_name` hashes stay what they were.
    #[serde(skip_serializing_if = "ProtobufMessage::is_v1")]
    pub protobuf_message: ProtobufMessage,
    /// Whether exemplars are sent with the samples (default `false`, as in
    /// Prometheus; there are exemplars only with exemplar storage on). Left out of the
    /// JSON form when `false`, like Prometheus's `omitempty`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub send_exemplars: bool,
    /// Whether native histograms are sent (default `false`, as in Prometheus). Left
    /// out of the JSON form when `false`, like Prometheus's `omitempty`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub send_native_histograms: bool,
}

/// `remote_write[].protobuf_message` (Prometheus 3.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ProtobufMessage {
    /// Remote write 1.0.
    #[default]
    #[serde(rename = "prometheus.WriteRequest")]
    V1,
    /// Remote write 2.0.
    #[serde(rename = "io.prometheus.write.v2.Request")]
    V2,
}

impl ProtobufMessage {
    /// The message's full name, as in `Content-Type: ...;proto=NAME`.
    pub fn name(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => "prometheus.WriteRequest",
            ProtobufMessage::V2 => "io.prometheus.write.v2.Request",
        }
    }

    fn is_v1(&self) -> bool {
        *self == ProtobufMessage::V1
    }

    /// The message named `name`, if it is one of the two.
    pub fn from_name(name: &str) -> Option<ProtobufMessage> {
        [ProtobufMessage::V1, ProtobufMessage::V2]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// `remote_write[].queue_config`, Prometheus 2.42's defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueConfig {
    /// Samples buffered per shard (default 2500).
    pub capacity: usize,
    /// Most shards (default 200).
    pub max_shards: usize,
    /// Fewest shards (default 1).
    pub min_shards: usize,
    /// Most samples in one request (default 500).
    pub max_samples_per_send: usize,
    /// Longest a sample waits in a shard before a partial batch is sent (default `5s`).
    #[serde(serialize_with = "serialize_duration")]
    pub batch_send_deadline: Duration,
    /// First retry delay (default `30ms`), doubled per attempt.
    #[serde(serialize_with = "serialize_duration")]
    pub min_backoff: Duration,
    /// Longest retry delay (default `5s`).
    #[serde(serialize_with = "serialize_duration")]
    pub max_backoff: Duration,
    /// Retry on HTTP 429 (default `false`, as in Prometheus 2.42).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            capacity: 2500,
            max_shards: 200,
            min_shards: 1,
            max_samples_per_send: 500,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
        }
    }
}

/// `remote_write[].metadata_config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetadataConfig {
    /// Whether metadata is sent (always `false` in promflow).
    pub send: bool,
    /// How often it would be sent (default `1m`).
    #[serde(serialize_with = "serialize_duration")]
    pub send_interval: Duration,
    /// Most metadata entries in one request (default 500).
    pub max_samples_per_send: usize,
}

/// Headers Prometheus 2.42 does not let `headers` set (lower-cased).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// The `headers:` of a `remote_write` or `remote_read` entry at `path`: reserved
/// ones are problems, as in Prometheus.
pub(super) fn resolve_headers(
    raw: Option<&BTreeMap<String, super::raw::ScalarText>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for (name, value) in raw.into_iter().flatten() {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            problems.push(
                path.key("headers").key(name),
                format!("{name} is a reserved header. It must not be changed"),
            );
        }
        headers.insert(name.clone(), value.0.clone());
    }
    headers
}

/// Resolves `remote_write:`.
pub(crate) fn resolve_remote_write(
    raw: &[Option<WithHttpClient<RawRemoteWriteConfig>>],
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<RemoteWriteConfig> {
    resolve_entries(
        raw,
        "write",
        path,
        problems,
        |entry, path, problems| resolve_one(entry, base_dir, path, problems),
        |config| &config.name,
    )
}

/// The entries of `remote_write:` or `remote_read:` (`kind`: `write` or `read`),
/// each resolved by `resolve`; a null entry and a name given twice are problems, in
/// Prometheus's words.
pub(super) fn resolve_entries<R, C>(
    raw: &[Option<R>],
    kind: &str,
    path: &FieldPath,
    problems: &mut Problems,
    resolve: impl Fn(&R, &FieldPath, &mut Problems) -> C,
    name: impl Fn(&C) -> &String,
) -> Vec<C> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let path = path.index(index);
        let Some(entry) = entry else {
            problems.push(path, format!("empty or null remote {kind} config section"));
            continue;
        };
        let config = resolve(entry, &path, problems);
        let given = name(&config);
        if !given.is_empty() && !names.insert(given.clone()) {
            problems.push(
                path.key("name"),
                format!("found multiple remote {kind} configs with job name {given:?}"),
            );
        }
        out.push(config);
    }
    out
}

fn resolve_one(
    raw: &WithHttpClient<RawRemoteWriteConfig>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> RemoteWriteConfig {
    let url = raw.url.as_ref().map(|u| u.0.clone()).unwrap_or_default();
    if url.is_empty() {
        problems.push(path.key("url"), "url for remote_write is empty");
    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(
            path.key("url"),
            format!("unsupported scheme in remote_write url {url:?}: use http or https"),
        );
    }
    let headers = resolve_headers(raw.headers.as_ref(), path, problems);
    let http = resolve_http_client(raw.http(), base_dir, path, problems);
    RemoteWriteConfig {
        url,
        remote_timeout: duration_field(
            raw.remote_timeout.as_ref(),
            &path.key("remote_timeout"),
            problems,
        )
        .unwrap_or(Duration::from_secs(30)),
        headers,
        name: raw.name.as_ref().map(|n| n.0.clone()).unwrap_or_default(),
        write_relabel_configs: resolve_relabel_configs(
            raw.write_relabel_configs.as_deref(),
            &path.key("write_relabel_configs"),
            problems,
        ),
        http,
        queue_config: resolve_queue(
            raw.queue_config.as_ref(),
            &path.key("queue_config"),
            problems,
        ),
        metadata_config: resolve_metadata(
            raw.metadata_config.as_ref(),
            &path.key("metadata_config"),
            problems,
        ),
        send_exemplars: raw.send_exemplars.unwrap_or(false),
        send_native_histograms: raw.send_native_histograms.unwrap_or(false),
        protobuf_message: match raw.protobuf_message.as_ref().map(|m| m.0.as_str()) {
            None | Some("") => ProtobufMessage::V1,
            Some(name) => ProtobufMessage::from_name(name).unwrap_or_else(|| {
                problems.push(
                    path.key("protobuf_message"),
                    format!("unknown remote write protobuf message {name:?}, supported: prometheus.WriteRequest, io.prometheus.write.v2.Request"),
                );
                ProtobufMessage::V1
            }),
        },
    }
}

fn resolve_queue(
    raw: Option<&RawQueueConfig>,
    path: &FieldPath,
    problems: &mut Problems,
) -> QueueConfig {
    let default = QueueConfig::default();
    let Some(raw) = raw else { return default };
    let count = |v: Option<u64>, d: usize| v.map_or(d, |v| v as usize);
    let duration = |name: &str,
                    value: Option<&super::raw::ScalarText>,
                    d: Duration,
                    problems: &mut Problems| {
        duration_field(value, &path.key(name), problems).unwrap_or(d)
    };
    // Zero counts load as in Prometheus 2.42; the sender treats them as 1.
    QueueConfig {
        capacity: count(raw.capacity, default.capacity),
        max_shards: count(raw.max_shards, default.max_shards),
        min_shards: count(raw.min_shards, default.min_shards),
        max_samples_per_send: count(raw.max_samples_per_send, default.max_samples_per_send),
        batch_send_deadline: duration(
            "batch_send_deadline",
            raw.batch_send_deadline.as_ref(),
            default.batch_send_deadline,
            problems,
        ),
        min_backoff: duration(
            "min_backoff",
            raw.min_backoff.as_ref(),
            default.min_backoff,
            problems,
        ),
        max_backoff: duration(
            "max_backoff",
            raw.max_backoff.as_ref(),
            default.max_backoff,
            problems,
        ),
        retry_on_http_429: raw.retry_on_http_429.unwrap_or(false),
    }
}

fn resolve_metadata(
    raw: Option<&RawMetadataConfig>,
    path: &FieldPath,
    problems: &mut Problems,
) -> MetadataConfig {
    let send = raw.and_then(|r| r.send).unwrap_or(false);
    if send {
        problems.push(
            path.key("send"),
            "sending metadata over remote write is not supported by promflow yet (set send: false)",
        );
    }
    MetadataConfig {
        send,
        send_interval: raw
            .and_then(|r| {
                duration_field(
                    r.send_interval.as_ref(),
                    &path.key("send_interval"),
                    problems,
                )
            })
            .unwrap_or(Duration::from_secs(60)),
        max_samples_per_send: raw
            .and_then(|r| r.max_samples_per_send)
            .map_or(500, |v| v as usize),
    }
}
