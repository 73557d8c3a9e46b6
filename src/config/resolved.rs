//! The resolved config: defaults applied, everything validated, ready to use.
//!
//! These are the types the rest of promflow reads. They serialize back to YAML
//! in Prometheus's field names and formats (durations as `1m30s`, sizes as
//! `10MiB`, secrets as `<secret>`) for `/api/v1/status/config`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::discovery::ServiceDiscoveryConfigs;
use super::duration::format_duration;
use super::http_client::HttpClientConfig;
use super::size::format_base2_bytes;

pub(crate) fn serialize_duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*value))
}

fn serialize_size<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_base2_bytes(*value))
}

fn is_zero_float(value: &f64) -> bool {
    *value == 0.0
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// `global:` with Prometheus's defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalConfig {
    /// How often to scrape targets by default (default `1m`).
    #[serde(serialize_with = "serialize_duration")]
    pub scrape_interval: Duration,
    /// How long a scrape may take by default (default `10s`, capped at the interval).
    #[serde(serialize_with = "serialize_duration")]
    pub scrape_timeout: Duration,
    /// How often to evaluate rules by default (default `1m`).
    #[serde(serialize_with = "serialize_duration")]
    pub evaluation_interval: Duration,
    /// Labels added to every series and alert leaving this instance.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// `scrape_protocols` as written (`None`: not set; jobs then pick the default
    /// from their `scrape_native_histograms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// Default of the jobs' `scrape_native_histograms` (Prometheus 3.8).
    #[serde(skip_serializing_if = "is_false")]
    pub scrape_native_histograms: bool,
    /// Default of the jobs' `convert_classic_histograms_to_nhcb` (Prometheus 3.x).
    #[serde(skip_serializing_if = "is_false")]
    pub convert_classic_histograms_to_nhcb: bool,
}

/// A scrape protocol of `scrape_protocols`, named as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScrapeProtocol {
    /// `PrometheusProto`: the protobuf format.
    PrometheusProto,
    /// `PrometheusText0.0.4`.
    PrometheusText0_0_4,
    /// `OpenMetricsText0.0.1`.
    OpenMetricsText0_0_1,
    /// `OpenMetricsText1.0.0`.
    OpenMetricsText1_0_0,
}

impl ScrapeProtocol {
    /// Every protocol, in the order of their names (Prometheus's "supported" list).
    pub const ALL: [ScrapeProtocol; 4] = [
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::PrometheusProto,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// Prometheus's `DefaultScrapeProtocols`.
    pub const DEFAULT: [ScrapeProtocol; 3] = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// Prometheus's `DefaultProtoFirstScrapeProtocols`, the default of jobs that
    /// scrape native histograms.
    pub const PROTO_FIRST: [ScrapeProtocol; 4] = [
        ScrapeProtocol::PrometheusProto,
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
        }
    }

    /// The protocol of a name (case-sensitive, as in Prometheus).
    pub fn from_name(name: &str) -> Option<ScrapeProtocol> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The media type offered for it in `Accept` (Prometheus's
    /// `ScrapeProtocolsHeaders`).
    pub fn media_type(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
        }
    }

    /// The `Accept` header offering `protocols` in order, as Prometheus's
    /// `acceptHeader` builds it: q-values falling by 0.1 from 0.(n+1), where n is
    /// the number of known protocols, then `*/*` at the next one down.
    ///
    /// ```
    /// use promflow::config::ScrapeProtocol;
    /// assert_eq!(
    ///     ScrapeProtocol::accept_header(&ScrapeProtocol::DEFAULT),
    ///     "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    /// );
    /// ```
    pub fn accept_header(protocols: &[ScrapeProtocol]) -> String {
        let mut weight = Self::ALL.len() + 1;
        let mut values = Vec::with_capacity(protocols.len() + 1);
        for protocol in protocols {
            values.push(format!("{};q=0.{weight}", protocol.media_type()));
            weight = weight.saturating_sub(1);
        }
        values.push(format!("*/*;q=0.{weight}"));
        values.join(",")
    }
}

impl Serialize for ScrapeProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

fn is_default_protocols(protocols: &[ScrapeProtocol]) -> bool {
    protocols == ScrapeProtocol::DEFAULT
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (the default).
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as it appears in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One scrape job (`scrape_configs[]`) with defaults from `global` applied.
#[derive(Debug, Clone, Serialize)]
pub struct ScrapeConfig {
    /// The job name; unique across the file; becomes the `job` label.
    pub job_name: String,
    /// Keep the target's own labels when they clash with server-side ones (default false).
    #[serde(skip_serializing_if = "is_false")]
    pub honor_labels: bool,
    /// Use timestamps exposed by the target (default true).
    pub honor_timestamps: bool,
    /// URL parameters added to each scrape request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    /// How often to scrape this job's targets.
    #[serde(serialize_with = "serialize_duration")]
    pub scrape_interval: Duration,
    /// How long one scrape may take; never more than `scrape_interval`.
    #[serde(serialize_with = "serialize_duration")]
    pub scrape_timeout: Duration,
    /// HTTP path of the metrics endpoint (default `/metrics`).
    pub metrics_path: String,
    /// `http` (default) or `https`.
    pub scheme: Scheme,
    /// Largest uncompressed response body accepted, in bytes; 0 means no limit.
    #[serde(serialize_with = "serialize_size", skip_serializing_if = "is_zero")]
    pub body_size_limit: u64,
    /// Most samples accepted per scrape after relabelling; 0 means no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub sample_limit: u64,
    /// Most targets after relabeling; over it, none of the job's targets is scraped
    /// (each reports Prometheus's `target_limit exceeded` error); 0 means no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub target_limit: u64,
    /// Most labels per sample; 0 means no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub label_limit: u64,
    /// Longest label name; 0 means no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub label_name_length_limit: u64,
    /// Longest label value; 0 means no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub label_value_length_limit: u64,
    /// The formats offered to targets, preferred first (`Accept`).
    #[serde(skip_serializing_if = "is_default_protocols")]
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Whether native histograms are wanted (Prometheus 3.8's per-job switch): it
    /// makes the protobuf format the default first choice, and a native histogram is
    /// stored as one histogram sample.
    #[serde(skip_serializing_if = "is_false")]
    pub scrape_native_histograms: bool,
    /// Keep the classic buckets of histograms also exposed as native ones.
    #[serde(skip_serializing_if = "is_false")]
    pub always_scrape_classic_histograms: bool,
    /// Store each scraped classic histogram (without a native part) also as a native
    /// histogram with custom buckets (schema -53) of the series named without suffix;
    /// its classic series are then kept only with `always_scrape_classic_histograms`
    /// (Prometheus 3.x's `NHCBParser`).
    #[serde(skip_serializing_if = "is_false")]
    pub convert_classic_histograms_to_nhcb: bool,
    /// Most buckets of a native histogram before they are merged (a scrape over it
    /// fails at the lowest schema); 0 means no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub native_histogram_bucket_limit: u64,
    /// Smallest growth factor between native buckets before they are merged; 0
    /// means none.
    #[serde(skip_serializing_if = "is_zero_float")]
    pub native_histogram_min_bucket_factor: f64,
    /// How every scrape authenticates and connects (`tls_config` for `scheme: https`).
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// Relabelling applied to targets before scraping.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Relabelling applied to scraped samples before ingestion.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Where the targets come from; printed last, by key, as Prometheus prints them.
    #[serde(flatten)]
    pub sd_configs: ServiceDiscoveryConfigs,
}

/// What a relabelling step does (Prometheus 2.42's set of actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Set `target_label` to `replacement` with regex groups expanded (default).
    Replace,
    /// Drop the target/sample unless the joined source labels match `regex`.
    Keep,
    /// Drop the target/sample if the joined source labels match `regex`.
    Drop,
    /// Drop unless the joined source labels equal the value of `target_label`.
    KeepEqual,
    /// Drop if the joined source labels equal the value of `target_label`.
    DropEqual,
    /// Set `target_label` to a hash of the joined source labels modulo `modulus`.
    HashMod,
    /// Copy labels whose names match `regex` to names built from `replacement`.
    LabelMap,
    /// Remove labels whose names match `regex`.
    LabelDrop,
    /// Remove labels whose names do not match `regex`.
    LabelKeep,
    /// Set `target_label` to the lowercased joined source labels.
    Lowercase,
    /// Set `target_label` to the uppercased joined source labels.
    Uppercase,
}

impl RelabelAction {
    /// Parses an action name case-insensitively, as Prometheus does.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "replace" => RelabelAction::Replace,
            "keep" => RelabelAction::Keep,
            "drop" => RelabelAction::Drop,
            "keepequal" => RelabelAction::KeepEqual,
            "dropequal" => RelabelAction::DropEqual,
            "hashmod" => RelabelAction::HashMod,
            "labelmap" => RelabelAction::LabelMap,
            "labeldrop" => RelabelAction::LabelDrop,
            "labelkeep" => RelabelAction::LabelKeep,
            "lowercase" => RelabelAction::Lowercase,
            "uppercase" => RelabelAction::Uppercase,
            _ => return None,
        })
    }

    /// The action's name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            RelabelAction::Replace => "replace",
            RelabelAction::Keep => "keep",
            RelabelAction::Drop => "drop",
            RelabelAction::KeepEqual => "keepequal",
            RelabelAction::DropEqual => "dropequal",
            RelabelAction::HashMod => "hashmod",
            RelabelAction::LabelMap => "labelmap",
            RelabelAction::LabelDrop => "labeldrop",
            RelabelAction::LabelKeep => "labelkeep",
            RelabelAction::Lowercase => "lowercase",
            RelabelAction::Uppercase => "uppercase",
        }
    }
}

/// One validated relabelling step. Applying it is the discovery module's job.
#[derive(Debug, Clone, Serialize)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` to form the input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    /// Separator for joining source label values (default `;`). Prometheus 2.42
    /// leaves an empty one out (`omitempty`), as it does an empty `replacement`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub separator: String,
    /// `regex_source` compiled fully anchored: `^(?:<regex_source>)$`.
    #[serde(skip)]
    pub regex: regex::Regex,
    /// The regex as written (default `(.*)`); an empty one prints `null`, as
    /// Prometheus 2.42's `Regexp.MarshalYAML` writes it.
    #[serde(rename = "regex", serialize_with = "serialize_regex_source")]
    pub regex_source: String,
    /// Modulus for `hashmod` (0 when unused).
    #[serde(skip_serializing_if = "is_zero")]
    pub modulus: u64,
    /// Label written by `replace`, `hashmod`, `lowercase`, `uppercase`, or
    /// compared by `keepequal`/`dropequal`; may contain `$1`-style references
    /// for `replace`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_label: String,
    /// Replacement with `$1`/`${name}` references (default `$1`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub replacement: String,
    /// What this step does (default `replace`).
    pub action: RelabelAction,
}

fn serialize_regex_source<S: Serializer>(source: &str, s: S) -> Result<S::Ok, S::Error> {
    if source.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(source)
    }
}

/// `alerting:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertingConfig {
    /// Relabelling applied to alerts before they are sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// Alertmanagers to notify.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// Alertmanager API version. Only v2 is supported by promflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertmanagerApiVersion {
    /// `/api/v2/alerts` (the default).
    V2,
}

/// One `alerting.alertmanagers[]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct AlertmanagerConfig {
    /// How alerts are sent (`tls_config` for `scheme: https`); first, as Prometheus
    /// prints it inline before `scheme`.
    #[serde(flatten)]
    pub http: HttpClientConfig,
    /// `http` (default) or `https`.
    pub scheme: Scheme,
    /// Prefix of the Alertmanager API path, as written (default none; printed only
    /// when set, as Prometheus prints it).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Timeout of one push of alerts (default `10s`).
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// API version (always v2).
    pub api_version: AlertmanagerApiVersion,
    /// Relabelling applied to discovered Alertmanagers (static ones too).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Where the Alertmanagers come from; printed last, by key, as Prometheus prints
    /// them.
    #[serde(flatten)]
    pub sd_configs: ServiceDiscoveryConfigs,
}
