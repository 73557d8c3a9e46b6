//! Loading and validating promflow's config file: Prometheus 2.42's format.
//!
//! Two stages, as in ripgrep's flags: `raw.rs` holds the file as written (serde
//! structs, everything optional), `validate.rs` resolves it into the ready-to-use
//! types of `resolved.rs`, applying Prometheus's defaults and collecting *every*
//! problem. Unknown fields are gathered in the same serde pass by
//! `serde_ignored`; fields Prometheus has but promflow does not support yet are
//! told apart from typos by `unsupported.rs`. Every problem is located (file,
//! line, field path) by `locate.rs`. The HTTP client settings that several sections
//! hold inline (and the built-in Alertmanager's `http_config`) are one set of types,
//! read, checked and resolved in `http_client.rs`; the service discovery configs of
//! scrape jobs and Alertmanager entries are one list of mechanisms in `discovery/`,
//! one file each; both are read out of their section's mapping by `inline.rs`.
//!
//! Boundary: this module reads and checks configuration. It never opens network
//! connections, applies relabelling, or reads rule files, secrets files or
//! file_sd target files; it only expands `rule_files` globs into paths, and has
//! `crate::http_client` load each `tls_config`'s files once so a bad one is a
//! located problem.
//!
//! ```
//! # use promflow::config::Config;
//! # use std::path::Path;
//! let yaml = "scrape_configs:\n- job_name: node\n  static_configs:\n  - targets: ['localhost:9100']\n";
//! let config = Config::load_str(yaml, "prometheus.yml", Path::new(".")).unwrap();
//! assert_eq!(config.scrape_configs[0].metrics_path, "/metrics");
//! ```

mod discovery;
mod duration;
mod error;
mod go_quoting;
mod http_client;
mod inline;
pub(crate) mod locate;
mod otlp;
mod paths;
mod raw;
mod relabel;
mod remote_read;
mod remote_write;
mod resolved;
pub(crate) mod rule_files;
mod secret;
mod size;
mod tls;
mod unsupported;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// `--enable-feature=native-histograms`: the default of `global.scrape_native_histograms`
/// becomes true (as the feature flag does in Prometheus 3.x; in 2.42 it turned native
/// histogram ingestion and protobuf negotiation on for every job). Set once by the
/// server at start, before it loads the config file; a config that sets
/// `scrape_native_histograms` itself (globally or per job) still wins.
static NATIVE_HISTOGRAMS_FEATURE: AtomicBool = AtomicBool::new(false);

/// Sets what `--enable-feature=native-histograms` says (see [`NATIVE_HISTOGRAMS_FEATURE`]).
pub fn set_native_histograms_feature(on: bool) {
    NATIVE_HISTOGRAMS_FEATURE.store(on, Ordering::Relaxed);
}

/// Whether `--enable-feature=native-histograms` was given.
pub fn native_histograms_feature() -> bool {
    NATIVE_HISTOGRAMS_FEATURE.load(Ordering::Relaxed)
}

/// `--enable-feature=created-timestamp-zero-ingestion`: `scrape_protocols` defaults to
/// protobuf first (Prometheus 3.x sets `DefaultProtoFirstScrapeProtocols` as the
/// global default then: cmd/prometheus/main.go), the format that carries created
/// timestamps for every counter, summary and histogram. Set once by the server at
/// start, before it loads the config file; a list in the config file still wins.
static CREATED_TIMESTAMP_FEATURE: AtomicBool = AtomicBool::new(false);

/// Sets what `--enable-feature=created-timestamp-zero-ingestion` says (see
/// [`CREATED_TIMESTAMP_FEATURE`]).
pub fn set_created_timestamp_feature(on: bool) {
    CREATED_TIMESTAMP_FEATURE.store(on, Ordering::Relaxed);
}

/// Whether `--enable-feature=created-timestamp-zero-ingestion` was given.
pub fn created_timestamp_feature() -> bool {
    CREATED_TIMESTAMP_FEATURE.load(Ordering::Relaxed)
}

use serde::Serialize;

pub use discovery::{
    DnsRecordType, DnsSdConfig, Ec2Filter, Ec2SdConfig, FileSdConfig, SdConfig,
    ServiceDiscoveryConfigs, StaticConfig, DEFAULT_DNS_SD_REFRESH_INTERVAL, DEFAULT_EC2_SD_PORT,
    DEFAULT_EC2_SD_REFRESH_INTERVAL, DEFAULT_FILE_SD_REFRESH_INTERVAL,
};
pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{ConfigError, Problem};
pub(crate) use http_client::{resolve_http_client, RawHttpClientConfig};
pub use http_client::{Authorization, BasicAuth, HttpClientConfig, OAuth2, SecretFileError};
pub use otlp::{OtlpConfig, TranslationStrategy};
pub use relabel::compile_anchored_regex;
pub use remote_read::RemoteReadConfig;
pub use remote_write::{MetadataConfig, ProtobufMessage, QueueConfig, RemoteWriteConfig};
pub use resolved::{
    AlertingConfig, AlertmanagerApiVersion, AlertmanagerConfig, GlobalConfig, RelabelAction,
    RelabelConfig, Scheme, ScrapeConfig, ScrapeProtocol,
};
pub use secret::Secret;
pub use size::{format_base2_bytes, parse_base2_bytes, SizeError};
pub(crate) use tls::{resolve_tls_config, RawTlsConfig};
pub use tls::{TlsConfig, TlsVersion};
pub use validate::{
    is_valid_label_name, DEFAULT_ALERTMANAGER_TIMEOUT, DEFAULT_EVALUATION_INTERVAL,
    DEFAULT_METRICS_PATH, DEFAULT_SCRAPE_INTERVAL, DEFAULT_SCRAPE_TIMEOUT,
};

pub(crate) use locate::{FieldPath, PathSegment, YamlLocator};
use raw::RawConfig;
pub(crate) use validate::Problems;

/// The config used when promflow runs without `--config.file`: scrape promflow
/// itself and a local node_exporter every 15s, load the shipped rules. The same
/// text, with comments, is the example config `deploy/promflow.yml`.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../deploy/promflow.yml");

/// A loaded, validated config file.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `global:` settings, defaults applied.
    pub global: GlobalConfig,
    /// `alerting:` settings.
    #[serde(skip_serializing_if = "AlertingConfig::is_empty")]
    pub alerting: AlertingConfig,
    /// `rule_files` patterns as written, joined to the config file's directory;
    /// kept so a reload can expand them again.
    #[serde(rename = "rule_files", skip_serializing_if = "Vec::is_empty")]
    pub rule_file_patterns: Vec<PathBuf>,
    /// The rule files matched by `rule_file_patterns` at load time, in order.
    #[serde(skip)]
    pub rule_files: Vec<PathBuf>,
    /// `scrape_configs:`, defaults from `global` applied.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// `remote_write:`, defaults applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<RemoteWriteConfig>,
    /// `remote_read:`, defaults applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_read: Vec<RemoteReadConfig>,
    /// `otlp:`: the OTLP receiver's translation settings.
    #[serde(skip_serializing_if = "OtlpConfig::is_default")]
    pub otlp: OtlpConfig,
    /// `storage:` (its `exemplars:`).
    #[serde(skip_serializing_if = "StorageConfig::is_default")]
    pub storage: StorageConfig,
}

/// Prometheus's default `storage.exemplars.max_exemplars`.
pub const DEFAULT_MAX_EXEMPLARS: i64 = 100_000;

/// `storage:`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StorageConfig {
    pub exemplars: ExemplarsConfig,
}

/// `storage: exemplars:`: how many exemplars are kept when exemplar storage is on
/// (`--enable-feature=exemplar-storage`); negative counts as 0.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExemplarsConfig {
    pub max_exemplars: i64,
}

impl StorageConfig {
    fn is_default(&self) -> bool {
        *self == StorageConfig::default()
    }
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            exemplars: ExemplarsConfig {
                max_exemplars: DEFAULT_MAX_EXEMPLARS,
            },
        }
    }
}

impl HttpClientConfig {
    /// Reads and validates a file holding one set of HTTP client settings (what a
    /// section's `http_config` holds: `basic_auth`, `authorization`, `oauth2`,
    /// `tls_config`, ...), as prometheus/common's `LoadHTTPConfigFile`; relative paths
    /// in it are resolved against the file's directory. Used for the requests a
    /// cluster's processes make to each other (`--cluster.http-config`).
    pub fn load_file(path: &Path) -> Result<HttpClientConfig, ConfigError> {
        let (text, file_name, base_dir) = read_config_file(path, "HTTP client config file")?;
        load_located(
            &text,
            &file_name,
            ignored_field_message,
            |raw: &RawHttpClientConfig, problems| {
                resolve_http_client(raw, base_dir, &FieldPath::root(), problems)
            },
        )
    }
}

impl AlertingConfig {
    fn is_empty(&self) -> bool {
        self.alert_relabel_configs.is_empty() && self.alertmanagers.is_empty()
    }
}

impl Config {
    /// Reads and validates a config file; relative paths in it (rule files,
    /// password files) are resolved against the file's directory.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let (text, file_name, base_dir) = read_config_file(path, "config file")?;
        Config::load_str(&text, &file_name, base_dir)
    }

    /// Validates config text. `file_name` only labels problems; relative paths
    /// are resolved against `base_dir`.
    pub fn load_str(text: &str, file_name: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        load_located(
            text,
            file_name,
            ignored_field_message,
            |raw: &RawConfig, problems| validate::resolve_config(raw, base_dir, problems),
        )
    }

    /// The resolved config as Prometheus-style YAML, secrets shown as `<secret>`
    /// (for `/api/v1/status/config`).
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .map(|yaml| go_quoting::quote_like_go(&flow_label_names(&yaml)))
            .unwrap_or_else(|error| format!("# cannot serialize config: {error}\n"))
    }
}

/// `yaml` with each `source_labels` list in flow style (`[__address__, job]`), as
/// Prometheus marshals its `LabelNames` (`yaml:",flow"`); serde's emitter writes
/// block style only. Label names need no quoting.
fn flow_label_names(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(head) = line.strip_suffix("source_labels:") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        // The list's items sit at the key's column.
        let item_prefix = format!("{}- ", " ".repeat(head.len()));
        let mut items = Vec::new();
        while let Some(item) = lines.peek().and_then(|l| l.strip_prefix(&item_prefix)) {
            items.push(item);
            lines.next();
        }
        out.push_str(&format!("{line} [{}]\n", items.join(", ")));
    }
    out
}

/// Whether the text has no content at all (Prometheus accepts an empty file).
fn is_empty_document(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---"
    })
}

/// Reads a config file: its text, its name for problems, and the directory its
/// relative paths are resolved against. `what` names the file in the error.
pub(crate) fn read_config_file<'a>(
    path: &'a Path,
    what: &str,
) -> Result<(String, String, &'a Path), ConfigError> {
    let file_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        problems: vec![Problem {
            file: file_name.clone(),
            line: None,
            field: String::new(),
            message: format!("cannot read {what}: {error}"),
        }],
    })?;
    let base_dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((text, file_name, base_dir))
}

/// Parses YAML `text` into the raw struct `R` and resolves it, collecting every
/// problem: unknown fields (reported by `serde_ignored` during the same pass, worded
/// by `unknown_field`), the parser's error, and what `resolve` adds; each is located
/// (file, line, field path). An empty document is `R::default()`. Shared by every
/// config file promflow reads (Prometheus's, Alertmanager's).
pub(crate) fn load_located<R, T>(
    text: &str,
    file_name: &str,
    unknown_field: impl Fn(&FieldPath) -> String,
    resolve: impl FnOnce(&R, &mut Problems) -> T,
) -> Result<T, ConfigError>
where
    R: serde::de::DeserializeOwned + Default,
{
    let locator = YamlLocator::new(text);
    let mut ignored_fields = Vec::new();
    let parsed: Result<R, serde_yaml_ng::Error> = if is_empty_document(text) {
        Ok(R::default())
    } else {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_ignored::deserialize(deserializer, |path| {
            ignored_fields.push(field_path_from_ignored(&path))
        })
    };

    let mut problems = Problems::default();
    for path in ignored_fields {
        let message = unknown_field(&path);
        problems.push(path, message);
    }
    let mut located: Vec<Problem> = Vec::new();
    let resolved = match parsed {
        Ok(raw) => Some(resolve(&raw, &mut problems)),
        Err(error) => {
            located.push(problem_from_yaml_error(&error, file_name));
            None
        }
    };
    located.extend(
        problems
            .into_entries()
            .into_iter()
            .map(|(path, message)| Problem {
                file: file_name.to_string(),
                line: locator.line_of(&path),
                field: path.to_string(),
                message,
            }),
    );
    match resolved {
        Some(resolved) if located.is_empty() => Ok(resolved),
        _ => {
            // File order; problems that could not be located go last.
            located.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
            Err(ConfigError { problems: located })
        }
    }
}

fn field_path_from_ignored(path: &serde_ignored::Path<'_>) -> FieldPath {
    match path {
        serde_ignored::Path::Root => FieldPath::root(),
        serde_ignored::Path::Seq { parent, index } => field_path_from_ignored(parent).index(*index),
        serde_ignored::Path::Map { parent, key } => field_path_from_ignored(parent).key(key),
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => field_path_from_ignored(parent),
    }
}

/// "not supported by promflow yet" for Prometheus fields, "unknown field" otherwise.
fn ignored_field_message(path: &FieldPath) -> String {
    let Some((PathSegment::Key(field), parent)) = path.segments().split_last() else {
        return "unknown field".to_string();
    };
    let parent_keys: Vec<&str> = parent
        .iter()
        .filter_map(|segment| match segment {
            PathSegment::Key(key) => Some(key.as_str()),
            PathSegment::Index(_) => None,
        })
        .collect();
    if unsupported::is_unsupported_prometheus_field(&parent_keys, field) {
        format!("field {field} is not supported by promflow yet")
    } else {
        format!("unknown field {field}")
    }
}

/// A syntax or type error from the YAML parser, with its line and, when serde
/// named one, its field path.
fn problem_from_yaml_error(error: &serde_yaml_ng::Error, file_name: &str) -> Problem {
    let line = error.location().map(|location| location.line());
    // Raw struct names are internal: "expected struct RawGlobalConfig" → "GlobalConfig".
    let mut message = error.to_string().replace("struct Raw", "struct ");
    // The location is reported separately.
    if let Some(at) = message.rfind(" at line ") {
        if message[at..].contains(" column ") && !message[at..].contains(',') {
            message.truncate(at);
        }
    }
    let mut field = String::new();
    if let Some((prefix, rest)) = message.split_once(": ") {
        let looks_like_path = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
        if looks_like_path {
            field = prefix.to_string();
            message = rest.to_string();
        }
    }
    Problem {
        file: file_name.to_string(),
        line,
        field,
        message,
    }
}
