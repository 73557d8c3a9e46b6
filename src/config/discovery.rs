//! Service discovery configs of a scrape job: `file_sd_configs`, `dns_sd_configs`,
//! `ec2_sd_configs` (Prometheus 2.42's fields, defaults and load-time checks).
//!
//! This file owns the resolved types and their validation; it never resolves a name,
//! reads a target file or calls an API (that is `crate::discovery`). Messages are
//! Prometheus's where it has one (checked with `promtool check config` 2.42).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;

use super::duration::parse_duration;
use super::http_client::{resolve_unchecked_http_client, HttpClientConfig, WithHttpClient};
use super::locate::FieldPath;
use super::raw::{RawDnsSdConfig, RawEc2SdConfig, RawFileSdConfig, ScalarText};
use super::resolved::serialize_duration;
use super::secret::Secret;
use super::validate::Problems;

/// Default `file_sd_configs[].refresh_interval`.
pub const DEFAULT_FILE_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Default `dns_sd_configs[].refresh_interval`.
pub const DEFAULT_DNS_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default `ec2_sd_configs[].refresh_interval`.
pub const DEFAULT_EC2_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Default `ec2_sd_configs[].port`.
pub const DEFAULT_EC2_SD_PORT: u16 = 80;

/// `file_sd_configs[]`: target groups read from JSON or YAML files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSdConfig {
    /// File paths, resolved against the config file's directory; the last path
    /// component may hold one `*` glob.
    pub files: Vec<PathBuf>,
    /// How often the files are re-read even without a change (default `5m`).
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
}

/// The record type asked for by a `dns_sd_configs[]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DnsRecordType {
    /// Service records: each gives a host and a port (the default).
    #[serde(rename = "SRV")]
    Srv,
    /// IPv4 addresses, scraped on `port`.
    A,
    /// IPv6 addresses, scraped on `port`.
    #[serde(rename = "AAAA")]
    Aaaa,
    /// Mail exchangers, scraped on `port`.
    #[serde(rename = "MX")]
    Mx,
}

impl DnsRecordType {
    /// The type as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Mx => "MX",
        }
    }
}

/// `dns_sd_configs[]`: targets from DNS records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsSdConfig {
    /// Names to query.
    pub names: Vec<String>,
    /// Record type (default SRV).
    #[serde(rename = "type")]
    pub record_type: DnsRecordType,
    /// Port of A, AAAA and MX targets (unused for SRV).
    pub port: u16,
    /// How often the names are resolved again (default `30s`).
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
}

/// One `ec2_sd_configs[].filters[]` entry (a DescribeInstances filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ec2Filter {
    /// Filter name, e.g. `instance-state-name` or `tag:Name`.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

/// `ec2_sd_configs[]`: targets from EC2 DescribeInstances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ec2SdConfig {
    /// AWS region; empty means the SDK's default region chain (environment,
    /// profile, instance metadata), resolved when discovery starts.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// API endpoint overriding the region's (e.g. a test server).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// Static access key id; empty means the default credential chain.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access_key: String,
    /// Static secret access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// Named profile of the shared AWS config files.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub profile: String,
    /// Role assumed through STS before calling EC2.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
    /// Port put in `__address__` next to the private IP (default 80).
    pub port: u16,
    /// How often instances are listed again (default `1m`).
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
    /// DescribeInstances filters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Ec2Filter>,
    /// prometheus/common's HTTP client, inlined as in Prometheus 2.42 (never validated
    /// there: any combination is accepted), also for STS and the credential providers.
    /// The SDK signs every request (SigV4), which sets `Authorization` first, so
    /// `basic_auth` and `authorization` (bearer tokens included) change nothing, as
    /// prometheus/common's round trippers leave a request that has one alone; `oauth2`
    /// replaces it, as golang.org/x/oauth2 does.
    #[serde(flatten)]
    pub http: HttpClientConfig,
}

impl Default for Ec2SdConfig {
    /// Prometheus's defaults: port 80, refreshed every minute, region and
    /// credentials from the SDK's chains.
    fn default() -> Ec2SdConfig {
        Ec2SdConfig {
            region: String::new(),
            endpoint: String::new(),
            access_key: String::new(),
            secret_key: None,
            profile: String::new(),
            role_arn: String::new(),
            port: DEFAULT_EC2_SD_PORT,
            refresh_interval: DEFAULT_EC2_SD_REFRESH_INTERVAL,
            filters: Vec::new(),
            http: HttpClientConfig::default(),
        }
    }
}

fn text(value: &Option<ScalarText>) -> String {
    value.as_ref().map(|v| v.0.clone()).unwrap_or_default()
}

/// A refresh interval: absent or zero means the default (a zero interval cannot tick).
fn refresh_interval(
    raw: &Option<ScalarText>,
    default: Duration,
    path: &FieldPath,
    problems: &mut Problems,
) -> Duration {
    let Some(raw) = raw else { return default };
    match parse_duration(&raw.0) {
        Ok(duration) if duration.is_zero() => default,
        Ok(duration) => duration,
        Err(message) => {
            problems.push(path.clone(), message);
            default
        }
    }
}

/// A port number; Prometheus reads any integer, promflow says up front that
/// values outside 0..=65535 cannot be reached.
fn port(raw: &Option<ScalarText>, default: u16, path: &FieldPath, problems: &mut Problems) -> u16 {
    let Some(raw) = raw else { return default };
    match raw.0.parse::<i64>() {
        Ok(port) if (0..=65535).contains(&port) => port as u16,
        Ok(port) => {
            problems.push(path.clone(), format!("port {port} is not in 0..65535"));
            default
        }
        Err(_) => {
            problems.push(
                path.clone(),
                format!("cannot unmarshal {:?} into a port number", raw.0),
            );
            default
        }
    }
}

/// Prometheus's `patFileSDName`: what a file_sd path may look like.
fn is_valid_file_sd_path(path: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            Regex::new(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$").expect("static regex")
        })
        .is_match(path)
}

/// One service discovery config of a scrape job or an `alerting.alertmanagers[]`
/// entry: the mechanisms promflow supports, one arm each. The discovery manager starts
/// one provider per value (and keeps it across reloads while the value is equal), the
/// Alertmanager resolver gets its targets the same way. A job's `static_configs` are
/// one value together.
#[derive(Clone, Debug, PartialEq)]
pub enum SdConfig {
    /// `static_configs`.
    Static(Vec<super::StaticConfig>),
    /// One `file_sd_configs` entry.
    File(FileSdConfig),
    /// One `dns_sd_configs` entry.
    Dns(DnsSdConfig),
    /// One `ec2_sd_configs` entry.
    Ec2(Box<Ec2SdConfig>),
}

impl SdConfig {
    /// The configs of one scrape job or Alertmanager entry, in Prometheus's order:
    /// static, then file, DNS and EC2 entries as listed.
    pub(crate) fn all(
        static_configs: &[super::StaticConfig],
        file: &[FileSdConfig],
        dns: &[DnsSdConfig],
        ec2: &[Ec2SdConfig],
    ) -> Vec<SdConfig> {
        let mut out = Vec::new();
        if !static_configs.is_empty() {
            out.push(SdConfig::Static(static_configs.to_vec()));
        }
        out.extend(file.iter().cloned().map(SdConfig::File));
        out.extend(dns.iter().cloned().map(SdConfig::Dns));
        out.extend(ec2.iter().map(|c| SdConfig::Ec2(Box::new(c.clone()))));
        out
    }
}

/// The `file_sd_configs`, `dns_sd_configs` and `ec2_sd_configs` of one scrape job or
/// `alerting.alertmanagers[]` entry.
pub(crate) struct SdConfigLists {
    pub file: Vec<FileSdConfig>,
    pub dns: Vec<DnsSdConfig>,
    pub ec2: Vec<Ec2SdConfig>,
}

/// Resolves the sd configs of the mapping at `path` (a scrape job or an Alertmanager
/// entry: both take them alike).
pub(crate) fn resolve_sd_configs(
    file: Option<&[Option<RawFileSdConfig>]>,
    dns: Option<&[Option<RawDnsSdConfig>]>,
    ec2: Option<&[Option<WithHttpClient<RawEc2SdConfig>>]>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> SdConfigLists {
    SdConfigLists {
        file: resolve_file_sd_configs(file, base_dir, &path.key("file_sd_configs"), problems),
        dns: resolve_dns_sd_configs(dns, &path.key("dns_sd_configs"), problems),
        ec2: resolve_ec2_sd_configs(ec2, base_dir, &path.key("ec2_sd_configs"), problems),
    }
}

fn resolve_file_sd_configs(
    raw: Option<&[Option<RawFileSdConfig>]>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<FileSdConfig> {
    let mut out = Vec::new();
    for (index, entry) in raw.unwrap_or(&[]).iter().enumerate() {
        let entry_path = path.index(index);
        let Some(entry) = entry else {
            problems.push(entry_path, "empty or null section in file_sd_configs");
            continue;
        };
        let files: Vec<&ScalarText> = entry.files.iter().flatten().collect();
        if files.is_empty() {
            problems.push(
                entry_path.key("files"),
                "file service discovery config must contain at least one path name",
            );
        }
        let mut resolved = Vec::new();
        for (file_index, file) in files.into_iter().enumerate() {
            if !is_valid_file_sd_path(&file.0) {
                problems.push(
                    entry_path.key("files").index(file_index),
                    format!("path name {:?} is not valid for file discovery", file.0),
                );
                continue;
            }
            resolved.push(base_dir.join(&file.0));
        }
        out.push(FileSdConfig {
            files: resolved,
            refresh_interval: refresh_interval(
                &entry.refresh_interval,
                DEFAULT_FILE_SD_REFRESH_INTERVAL,
                &entry_path.key("refresh_interval"),
                problems,
            ),
        });
    }
    out
}

fn resolve_dns_sd_configs(
    raw: Option<&[Option<RawDnsSdConfig>]>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<DnsSdConfig> {
    let mut out = Vec::new();
    for (index, entry) in raw.unwrap_or(&[]).iter().enumerate() {
        let entry_path = path.index(index);
        let Some(entry) = entry else {
            problems.push(entry_path, "empty or null section in dns_sd_configs");
            continue;
        };
        let names: Vec<String> = entry.names.iter().flatten().map(|n| n.0.clone()).collect();
        if names.is_empty() {
            problems.push(
                entry_path.key("names"),
                "DNS-SD config must contain at least one SRV record name",
            );
        }
        let port_value = port(&entry.port, 0, &entry_path.key("port"), problems);
        let kind = text(&entry.kind);
        let record_type = match kind.to_ascii_uppercase().as_str() {
            "" | "SRV" => DnsRecordType::Srv,
            "A" => DnsRecordType::A,
            "AAAA" => DnsRecordType::Aaaa,
            "MX" => DnsRecordType::Mx,
            _ => {
                problems.push(
                    entry_path.key("type"),
                    format!("invalid DNS-SD records type {kind}"),
                );
                DnsRecordType::Srv
            }
        };
        if record_type != DnsRecordType::Srv && port_value == 0 {
            problems.push(
                entry_path.clone(),
                "a port is required in DNS-SD configs for all record types except SRV",
            );
        }
        out.push(DnsSdConfig {
            names,
            record_type,
            port: port_value,
            refresh_interval: refresh_interval(
                &entry.refresh_interval,
                DEFAULT_DNS_SD_REFRESH_INTERVAL,
                &entry_path.key("refresh_interval"),
                problems,
            ),
        });
    }
    out
}

fn resolve_ec2_sd_configs(
    raw: Option<&[Option<WithHttpClient<RawEc2SdConfig>>]>,
    base_dir: &Path,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<Ec2SdConfig> {
    let mut out = Vec::new();
    for (index, entry) in raw.unwrap_or(&[]).iter().enumerate() {
        let entry_path = path.index(index);
        let Some(entry) = entry else {
            problems.push(entry_path, "empty or null section in ec2_sd_configs");
            continue;
        };
        let mut filters = Vec::new();
        for (filter_index, filter) in entry.filters.iter().flatten().enumerate() {
            let filter_path = entry_path.key("filters").index(filter_index);
            let Some(filter) = filter else {
                problems.push(filter_path, "empty or null section in filters");
                continue;
            };
            let values: Vec<String> = filter
                .values
                .iter()
                .flatten()
                .map(|v| v.0.clone())
                .collect();
            if values.is_empty() {
                problems.push(
                    filter_path.key("values"),
                    "EC2 SD configuration filter values cannot be empty",
                );
            }
            filters.push(Ec2Filter {
                name: text(&filter.name),
                values,
            });
        }
        let secret_key = Some(text(&entry.secret_key))
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        let http = resolve_unchecked_http_client(&entry.http, base_dir, &entry_path, problems);
        out.push(Ec2SdConfig {
            region: text(&entry.region),
            endpoint: text(&entry.endpoint),
            access_key: text(&entry.access_key),
            secret_key,
            profile: text(&entry.profile),
            role_arn: text(&entry.role_arn),
            port: port(
                &entry.port,
                DEFAULT_EC2_SD_PORT,
                &entry_path.key("port"),
                problems,
            ),
            refresh_interval: refresh_interval(
                &entry.refresh_interval,
                DEFAULT_EC2_SD_REFRESH_INTERVAL,
                &entry_path.key("refresh_interval"),
                problems,
            ),
            filters,
            http,
        });
    }
    out
}
