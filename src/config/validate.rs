//! Resolution: raw config → [`Config`], applying Prometheus 2.42 defaults and
//! collecting every problem instead of stopping at the first.
//!
//! Each check reports against a [`FieldPath`]; turning paths into lines is the
//! caller's job (`locate.rs`), so this file stays about semantics. Messages use
//! Prometheus's wording where Prometheus has one, so users can search for them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::discovery::{RawSdConfigs, SdSection, ServiceDiscoveryConfigs, WithSdConfigs};
use super::duration::{format_duration, parse_duration};
use super::http_client::{resolve_http_client, WithHttpClient};
use super::locate::FieldPath;
use super::raw::{
    RawAlertingConfig, RawAlertmanagerConfig, RawConfig, RawGlobalConfig, RawRelabelConfig,
    RawScrapeConfig, ScalarText,
};
use super::relabel::resolve_relabel_config;
use super::resolved::{
    AlertingConfig, AlertmanagerApiVersion, AlertmanagerConfig, GlobalConfig, RelabelConfig,
    Scheme, ScrapeConfig, ScrapeProtocol,
};
use super::rule_files;
use super::size::parse_base2_bytes;
use super::Config;

/// Default `global.scrape_interval`.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
/// Default `global.scrape_timeout` (lowered to the interval when that is shorter).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `global.evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);
/// Default `scrape_configs[].metrics_path`.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";
/// Default `alerting.alertmanagers[].timeout`.
pub const DEFAULT_ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `alerting.alertmanagers[].path_prefix` (none: the API at the root).
pub const DEFAULT_PATH_PREFIX: &str = "";

/// Problems found so far, each with the field it is about.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    entries: Vec<(FieldPath, String)>,
}

impl Problems {
    pub(crate) fn push(&mut self, path: FieldPath, message: impl Into<String>) {
        self.entries.push((path, message.into()));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn into_entries(self) -> Vec<(FieldPath, String)> {
        self.entries
    }
}

/// Prometheus's `model.LabelName.IsValid`: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves the whole file. Always returns a config; it is only meaningful
/// when no problem was added.
pub(crate) fn resolve_config(raw: &RawConfig, base_dir: &Path, problems: &mut Problems) -> Config {
    let root = FieldPath::root();
    let global = resolve_global(raw.global.as_ref(), &root.key("global"), problems);

    let mut scrape_configs = Vec::new();
    let mut job_names = BTreeSet::new();
    let scrape_path = root.key("scrape_configs");
    for (index, entry) in raw.scrape_configs.iter().flatten().enumerate() {
        let path = scrape_path.index(index);
        let Some(entry) = entry else {
            problems.push(path, "empty or null scrape config section");
            continue;
        };
        let scrape = resolve_scrape_config(entry, &global, base_dir, &path, problems);
        if !scrape.job_name.is_empty() && !job_names.insert(scrape.job_name.clone()) {
            problems.push(
                path.key("job_name"),
                format!(
                    "found multiple scrape configs with job name {:?}",
                    scrape.job_name
                ),
            );
        }
        scrape_configs.push(scrape);
    }

    let (rule_file_patterns, rule_files) = resolve_rule_files(
        raw.rule_files.as_deref().unwrap_or(&[]),
        base_dir,
        &root.key("rule_files"),
        problems,
    );
    let alerting = resolve_alerting(
        raw.alerting.as_ref(),
        base_dir,
        &root.key("alerting"),
        problems,
    );

    let remote_write = super::remote_write::resolve_remote_write(
        raw.remote_write.as_deref().unwrap_or(&[]),
        base_dir,
        &root.key("remote_write"),
        problems,
    );

    let remote_read = super::remote_read::resolve_remote_read(
        raw.remote_read.as_deref().unwrap_or(&[]),
        base_dir,
        &root.key("remote_read"),
        problems,
    );

    let otlp = super::otlp::resolve_otlp(raw.otlp.as_ref(), &root.key("otlp"), problems);
    let mut storage = super::StorageConfig::default();
    if let Some(max) = raw
        .storage
        .as_ref()
        .and_then(|s| s.exemplars.as_ref())
        .and_then(|e| e.max_exemplars)
    {
        storage.exemplars.max_exemplars = max;
    }

    Config {
        global,
        alerting,
        rule_file_patterns,
        rule_files,
        scrape_configs,
        remote_write,
        remote_read,
        otlp,
        storage,
    }
}

/// Parses an optional duration field; `None` when absent or invalid (reported).
pub(crate) fn duration_field(
    value: Option<&ScalarText>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Duration> {
    let text = value?;
    match parse_duration(&text.0) {
        Ok(duration) => Some(duration),
        Err(message) => {
            problems.push(path.clone(), message.to_string());
            None
        }
    }
}

/// A duration where Prometheus treats zero as "not set".
fn nonzero(duration: Option<Duration>) -> Option<Duration> {
    duration.filter(|d| !d.is_zero())
}

fn resolve_global(
    raw: Option<&RawGlobalConfig>,
    path: &FieldPath,
    problems: &mut Problems,
) -> GlobalConfig {
    let empty = RawGlobalConfig::default();
    let raw = raw.unwrap_or(&empty);
    let scrape_interval = nonzero(duration_field(
        raw.scrape_interval.as_ref(),
        &path.key("scrape_interval"),
        problems,
    ))
    .unwrap_or(DEFAULT_SCRAPE_INTERVAL);
    let timeout_path = path.key("scrape_timeout");
    let scrape_timeout = match nonzero(duration_field(
        raw.scrape_timeout.as_ref(),
        &timeout_path,
        problems,
    )) {
        Some(timeout) => {
            if timeout > scrape_interval {
                problems.push(
                    timeout_path,
                    format!(
                        "global scrape timeout {} greater than scrape interval {}",
                        format_duration(timeout),
                        format_duration(scrape_interval)
                    ),
                );
            }
            timeout
        }
        None => DEFAULT_SCRAPE_TIMEOUT.min(scrape_interval),
    };
    let evaluation_interval = nonzero(duration_field(
        raw.evaluation_interval.as_ref(),
        &path.key("evaluation_interval"),
        problems,
    ))
    .unwrap_or(DEFAULT_EVALUATION_INTERVAL);
    let external_labels = resolve_labels(
        raw.external_labels.as_ref(),
        &path.key("external_labels"),
        problems,
    );
    let scrape_protocols = resolve_scrape_protocols(
        raw.scrape_protocols.as_deref(),
        &path.key("scrape_protocols"),
        problems,
    );
    GlobalConfig {
        scrape_interval,
        scrape_timeout,
        evaluation_interval,
        external_labels,
        scrape_protocols,
        scrape_native_histograms: raw
            .scrape_native_histograms
            .unwrap_or_else(super::native_histograms_feature),
        convert_classic_histograms_to_nhcb: raw.convert_classic_histograms_to_nhcb.unwrap_or(false),
    }
}

/// `scrape_protocols` as Prometheus's `validateAcceptScrapeProtocols` checks it:
/// not empty, known names only, no name twice (ignoring case).
fn resolve_scrape_protocols(
    raw: Option<&[ScalarText]>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Vec<ScrapeProtocol>> {
    let raw = raw?;
    if raw.is_empty() {
        problems.push(path.clone(), "scrape_protocols cannot be empty");
        return None;
    }
    let mut protocols = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for name in raw {
        if !seen.insert(name.0.to_lowercase()) {
            let all: Vec<&str> = raw.iter().map(|n| n.0.as_str()).collect();
            problems.push(
                path.clone(),
                format!(
                    "duplicated protocol in scrape_protocols, got [{}]",
                    all.join(" ")
                ),
            );
            return None;
        }
        match ScrapeProtocol::from_name(&name.0) {
            Some(protocol) => protocols.push(protocol),
            None => {
                let supported: Vec<&str> = ScrapeProtocol::ALL.iter().map(|p| p.name()).collect();
                problems.push(
                    path.clone(),
                    format!(
                        "unknown scrape protocol {}, supported: [{}]",
                        name.0,
                        supported.join(" ")
                    ),
                );
                return None;
            }
        }
    }
    Some(protocols)
}

pub(crate) fn resolve_labels(
    raw: Option<&BTreeMap<String, ScalarText>>,
    path: &FieldPath,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (name, value) in raw.into_iter().flatten() {
        if !is_valid_label_name(name) {
            problems.push(
                path.key(name),
                format!("{name:?} is not a valid label name"),
            );
        }
        labels.insert(name.clone(), value.0.clone());
    }
    labels
}

fn resolve_scheme(
    raw: Option<&ScalarText>,
    kind: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Scheme {
    let text = raw.map_or("", |s| s.0.as_str());
    match text.to_ascii_lowercase().as_str() {
        "" | "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => {
            // promtool 2.42 accepts any scheme here and fails at request time;
            // promflow can only speak http and https, so it says so up front.
            problems.push(
                path.clone(),
                format!("unknown {kind} scheme {text:?} (promflow supports http and https)"),
            );
            Scheme::Http
        }
    }
}

fn resolve_scrape_config(
    raw: &WithHttpClient<WithSdConfigs<RawScrapeConfig>>,
    global: &GlobalConfig,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> ScrapeConfig {
    let job_name = raw
        .job_name
        .as_ref()
        .map(|j| j.0.clone())
        .unwrap_or_default();
    if job_name.is_empty() {
        problems.push(path.key("job_name"), "job_name is empty");
    }
    let scrape_interval = nonzero(duration_field(
        raw.scrape_interval.as_ref(),
        &path.key("scrape_interval"),
        problems,
    ))
    .unwrap_or(global.scrape_interval);
    let timeout_path = path.key("scrape_timeout");
    let scrape_timeout = match nonzero(duration_field(
        raw.scrape_timeout.as_ref(),
        &timeout_path,
        problems,
    )) {
        Some(timeout) => {
            if timeout > scrape_interval {
                problems.push(
                    timeout_path,
                    format!(
                        "scrape timeout {} greater than scrape interval {}",
                        format_duration(timeout),
                        format_duration(scrape_interval)
                    ),
                );
            }
            timeout
        }
        // As Prometheus: a job that only shortens its interval below the global
        // timeout gets a timeout equal to its interval.
        None => global.scrape_timeout.min(scrape_interval),
    };
    let metrics_path = raw
        .metrics_path
        .as_ref()
        .map_or(DEFAULT_METRICS_PATH, |p| &p.0)
        .to_string();
    let scheme = resolve_scheme(
        raw.scheme.as_ref(),
        "scrape config",
        &path.key("scheme"),
        problems,
    );
    let params = raw
        .params
        .iter()
        .flatten()
        .map(|(name, values)| (name.clone(), values.iter().map(|v| v.0.clone()).collect()))
        .collect();
    let sd_configs = resolve_sd_configs(
        raw.sd_configs(),
        raw.relabel_configs.as_deref(),
        base_dir,
        path,
        problems,
    );
    let body_size_limit = match &raw.body_size_limit {
        None => 0,
        Some(text) => match parse_base2_bytes(&text.0) {
            // Zero or negative means "no limit" in Prometheus.
            Ok(bytes) => bytes.max(0) as u64,
            Err(message) => {
                problems.push(path.key("body_size_limit"), message.to_string());
                0
            }
        },
    };
    let http = resolve_http_client(raw.http(), base_dir, path, problems);
    let scrape_native_histograms = raw
        .scrape_native_histograms
        .unwrap_or(global.scrape_native_histograms);
    // As Prometheus 3.8: the job's list, else the global one, else the default
    // that fits whether native histograms (or created timestamps) are wanted.
    let scrape_protocols = resolve_scrape_protocols(
        raw.scrape_protocols.as_deref(),
        &path.key("scrape_protocols"),
        problems,
    )
    .or_else(|| global.scrape_protocols.clone())
    .unwrap_or_else(|| {
        if scrape_native_histograms || super::created_timestamp_feature() {
            ScrapeProtocol::PROTO_FIRST.to_vec()
        } else {
            ScrapeProtocol::DEFAULT.to_vec()
        }
    });
    ScrapeConfig {
        job_name,
        honor_labels: raw.honor_labels.unwrap_or(false),
        honor_timestamps: raw.honor_timestamps.unwrap_or(true),
        params,
        scrape_interval,
        scrape_timeout,
        metrics_path,
        scheme,
        body_size_limit,
        sample_limit: raw.sample_limit.unwrap_or(0),
        target_limit: raw.target_limit.unwrap_or(0),
        label_limit: raw.label_limit.unwrap_or(0),
        label_name_length_limit: raw.label_name_length_limit.unwrap_or(0),
        label_value_length_limit: raw.label_value_length_limit.unwrap_or(0),
        scrape_protocols,
        scrape_native_histograms,
        always_scrape_classic_histograms: raw.always_scrape_classic_histograms.unwrap_or(false),
        convert_classic_histograms_to_nhcb: raw
            .convert_classic_histograms_to_nhcb
            .unwrap_or(global.convert_classic_histograms_to_nhcb),
        native_histogram_bucket_limit: raw.native_histogram_bucket_limit.unwrap_or(0),
        native_histogram_min_bucket_factor: raw.native_histogram_min_bucket_factor.unwrap_or(0.0),
        http,
        sd_configs,
        relabel_configs: resolve_relabel_configs(
            raw.relabel_configs.as_deref(),
            &path.key("relabel_configs"),
            problems,
        ),
        metric_relabel_configs: resolve_relabel_configs(
            raw.metric_relabel_configs.as_deref(),
            &path.key("metric_relabel_configs"),
            problems,
        ),
    }
}

/// The service discovery configs of the section at `path` (a scrape job or an
/// Alertmanager entry: both take them alike) with these `relabel_configs`.
fn resolve_sd_configs(
    raw: &RawSdConfigs,
    relabel_configs: Option<&[RawRelabelConfig]>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> ServiceDiscoveryConfigs {
    let section = SdSection {
        base_dir,
        relabeled: relabel_configs.is_some_and(|r| !r.is_empty()),
    };
    raw.resolve(&section, path, problems)
}

pub(crate) fn resolve_relabel_configs(
    raw: Option<&[RawRelabelConfig]>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<RelabelConfig> {
    raw.unwrap_or(&[])
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| resolve_relabel_config(entry, &path.index(index), problems))
        .collect()
}

fn resolve_rule_files(
    raw: &[ScalarText],
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    let mut patterns = Vec::new();
    let mut files = Vec::new();
    for (index, pattern) in raw.iter().enumerate() {
        let entry_path = path.index(index);
        if let Err(message) = rule_files::check_pattern(&pattern.0) {
            problems.push(
                entry_path,
                format!("invalid rule file path {:?}: {message}", pattern.0),
            );
            continue;
        }
        let joined = rule_files::pattern_path(&pattern.0, base_dir);
        match rule_files::expand(&joined) {
            Ok(found) => files.extend(found),
            Err(error) => problems.push(entry_path, error.to_string()),
        }
        patterns.push(joined);
    }
    (patterns, files)
}

fn resolve_alerting(
    raw: Option<&RawAlertingConfig>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> AlertingConfig {
    let Some(raw) = raw else {
        return AlertingConfig::default();
    };
    let alert_relabel_configs = resolve_relabel_configs(
        raw.alert_relabel_configs.as_deref(),
        &path.key("alert_relabel_configs"),
        problems,
    );
    let mut alertmanagers = Vec::new();
    for (index, entry) in raw.alertmanagers.iter().flatten().enumerate() {
        let entry_path = path.key("alertmanagers").index(index);
        match entry {
            // promtool 2.42 crashes on this one; Prometheus's scrape config wording.
            None => problems.push(entry_path, "empty or null alertmanager config section"),
            Some(entry) => {
                alertmanagers.push(resolve_alertmanager(entry, base_dir, &entry_path, problems))
            }
        }
    }
    AlertingConfig {
        alert_relabel_configs,
        alertmanagers,
    }
}

fn resolve_alertmanager(
    raw: &WithHttpClient<WithSdConfigs<RawAlertmanagerConfig>>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> AlertmanagerConfig {
    let scheme = resolve_scheme(
        raw.scheme.as_ref(),
        "alertmanager",
        &path.key("scheme"),
        problems,
    );
    let timeout = duration_field(raw.timeout.as_ref(), &path.key("timeout"), problems)
        .unwrap_or(DEFAULT_ALERTMANAGER_TIMEOUT);
    let api_version = match raw.api_version.as_ref().map(|v| v.0.as_str()) {
        None | Some("v2") => AlertmanagerApiVersion::V2,
        Some("v1") => {
            // Prometheus 2.42 still accepts v1 (deprecated); promflow speaks only v2.
            problems.push(
                path.key("api_version"),
                "Alertmanager api_version v1 is not supported by promflow yet (use v2)",
            );
            AlertmanagerApiVersion::V2
        }
        Some(other) => {
            problems.push(
                path.key("api_version"),
                format!("expected Alertmanager api version to be one of [v1 v2] but got {other}"),
            );
            AlertmanagerApiVersion::V2
        }
    };
    let http = resolve_http_client(raw.http(), base_dir, path, problems);
    let sd_configs = resolve_sd_configs(
        raw.sd_configs(),
        raw.relabel_configs.as_deref(),
        base_dir,
        path,
        problems,
    );
    AlertmanagerConfig {
        scheme,
        path_prefix: raw
            .path_prefix
            .as_ref()
            .map_or(DEFAULT_PATH_PREFIX, |p| &p.0)
            .to_string(),
        timeout,
        api_version,
        http,
        sd_configs,
        relabel_configs: resolve_relabel_configs(
            raw.relabel_configs.as_deref(),
            &path.key("relabel_configs"),
            problems,
        ),
    }
}
