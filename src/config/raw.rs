//! The config file as written: serde structs with every field optional.
//!
//! These structs mirror Prometheus 2.42's YAML field names for what promflow
//! supports. Nothing here applies defaults or validates: "was this field set?"
//! must stay answerable (some relabel actions forbid fields that are set even to
//! their default). Unknown and unsupported fields are not rejected here either;
//! `serde_ignored` reports them during the same pass (see `validate.rs`).
//! Scalars that Prometheus parses from text (durations, sizes, label values)
//! are read as [`ScalarText`] so `scrape_interval: 30` reaches validation as the
//! text `30` (and a located problem) instead of stopping the parse. Sections with
//! HTTP client settings are read as `WithHttpClient<RawSection>` (`http_client.rs`),
//! sections with service discovery configs as `WithSdConfigs<RawSection>`; each
//! discovery mechanism's entry as written is in its file under `discovery/`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::discovery::WithSdConfigs;
use super::http_client::WithHttpClient;

/// Any YAML scalar kept as its text: strings, numbers and booleans are all
/// accepted, as Go's YAML decoder does for string fields; null becomes "".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ScalarText, E> {
                Ok(ScalarText(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<ScalarText, E> {
                Ok(ScalarText(String::new()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// The whole file. Top-level keys of Prometheus 2.42 that promflow does not
/// support (`tracing`, `storage: tsdb`) are reported as unsupported.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    pub global: Option<RawGlobalConfig>,
    pub scrape_configs: Option<Vec<Option<WithHttpClient<WithSdConfigs<RawScrapeConfig>>>>>,
    pub rule_files: Option<Vec<ScalarText>>,
    pub alerting: Option<RawAlertingConfig>,
    pub remote_write: Option<Vec<Option<WithHttpClient<RawRemoteWriteConfig>>>>,
    pub remote_read: Option<Vec<Option<WithHttpClient<RawRemoteReadConfig>>>>,
    pub otlp: Option<RawOtlpConfig>,
    pub storage: Option<RawStorageConfig>,
}

/// `storage:` (only `exemplars:`; `tsdb:` is reported as unsupported).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawStorageConfig {
    pub exemplars: Option<RawExemplarsConfig>,
}

/// `storage: exemplars:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawExemplarsConfig {
    pub max_exemplars: Option<i64>,
}

/// `otlp:` (Prometheus 3.x).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOtlpConfig {
    pub promote_resource_attributes: Option<Vec<ScalarText>>,
    pub promote_all_resource_attributes: Option<bool>,
    pub ignore_resource_attributes: Option<Vec<ScalarText>>,
    pub translation_strategy: Option<ScalarText>,
    pub keep_identifying_resource_attributes: Option<bool>,
    pub convert_histograms_to_nhcb: Option<bool>,
}

/// `global:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGlobalConfig {
    pub scrape_interval: Option<ScalarText>,
    pub scrape_timeout: Option<ScalarText>,
    pub evaluation_interval: Option<ScalarText>,
    pub external_labels: Option<BTreeMap<String, ScalarText>>,
    pub scrape_protocols: Option<Vec<ScalarText>>,
    pub scrape_native_histograms: Option<bool>,
    pub convert_classic_histograms_to_nhcb: Option<bool>,
}

/// One entry of `scrape_configs:`, besides its HTTP client settings and service
/// discovery configs (read with them by [`WithHttpClient`] and [`WithSdConfigs`]).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawScrapeConfig {
    pub job_name: Option<ScalarText>,
    pub scrape_interval: Option<ScalarText>,
    pub scrape_timeout: Option<ScalarText>,
    pub metrics_path: Option<ScalarText>,
    pub scheme: Option<ScalarText>,
    pub params: Option<BTreeMap<String, Vec<ScalarText>>>,
    pub honor_labels: Option<bool>,
    pub honor_timestamps: Option<bool>,
    pub body_size_limit: Option<ScalarText>,
    pub sample_limit: Option<u64>,
    pub target_limit: Option<u64>,
    pub label_limit: Option<u64>,
    pub label_name_length_limit: Option<u64>,
    pub label_value_length_limit: Option<u64>,
    pub scrape_protocols: Option<Vec<ScalarText>>,
    pub scrape_native_histograms: Option<bool>,
    pub always_scrape_classic_histograms: Option<bool>,
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    pub native_histogram_bucket_limit: Option<u64>,
    pub native_histogram_min_bucket_factor: Option<f64>,
    pub relabel_configs: Option<Vec<RawRelabelConfig>>,
    pub metric_relabel_configs: Option<Vec<RawRelabelConfig>>,
}

/// One relabelling step, as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRelabelConfig {
    pub source_labels: Option<Vec<ScalarText>>,
    pub separator: Option<ScalarText>,
    pub regex: Option<ScalarText>,
    pub modulus: Option<u64>,
    pub target_label: Option<ScalarText>,
    pub replacement: Option<ScalarText>,
    pub action: Option<ScalarText>,
}

/// `alerting:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAlertingConfig {
    pub alert_relabel_configs: Option<Vec<RawRelabelConfig>>,
    pub alertmanagers: Option<Vec<Option<WithHttpClient<WithSdConfigs<RawAlertmanagerConfig>>>>>,
}

/// One entry of `alerting.alertmanagers:`, besides its HTTP client settings and service
/// discovery configs.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAlertmanagerConfig {
    pub scheme: Option<ScalarText>,
    pub path_prefix: Option<ScalarText>,
    pub timeout: Option<ScalarText>,
    pub api_version: Option<ScalarText>,
    pub relabel_configs: Option<Vec<RawRelabelConfig>>,
}

/// One entry of `remote_write:`, besides its HTTP client settings.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRemoteWriteConfig {
    pub url: Option<ScalarText>,
    pub name: Option<ScalarText>,
    pub remote_timeout: Option<ScalarText>,
    pub headers: Option<BTreeMap<String, ScalarText>>,
    pub write_relabel_configs: Option<Vec<RawRelabelConfig>>,
    pub queue_config: Option<RawQueueConfig>,
    pub metadata_config: Option<RawMetadataConfig>,
    pub protobuf_message: Option<ScalarText>,
    pub send_exemplars: Option<bool>,
    pub send_native_histograms: Option<bool>,
}

/// One entry of `remote_read:`, besides its HTTP client settings.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRemoteReadConfig {
    pub url: Option<ScalarText>,
    pub name: Option<ScalarText>,
    pub remote_timeout: Option<ScalarText>,
    pub headers: Option<BTreeMap<String, ScalarText>>,
    pub read_recent: Option<bool>,
    pub required_matchers: Option<BTreeMap<String, ScalarText>>,
    pub filter_external_labels: Option<bool>,
}

/// `remote_write[].queue_config:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawQueueConfig {
    pub capacity: Option<u64>,
    pub max_shards: Option<u64>,
    pub min_shards: Option<u64>,
    pub max_samples_per_send: Option<u64>,
    pub batch_send_deadline: Option<ScalarText>,
    pub min_backoff: Option<ScalarText>,
    pub max_backoff: Option<ScalarText>,
    pub retry_on_http_429: Option<bool>,
}

/// `remote_write[].metadata_config:`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMetadataConfig {
    pub send: Option<bool>,
    pub send_interval: Option<ScalarText>,
    pub max_samples_per_send: Option<u64>,
}
