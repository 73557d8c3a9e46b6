//! `ec2_sd_configs`: targets from EC2 DescribeInstances.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{port, refresh_interval, text, SdConfig, SdEntry, SdSection};
use crate::config::http_client::{resolve_unchecked_http_client, HttpClientConfig, WithHttpClient};
use crate::config::locate::FieldPath;
use crate::config::raw::ScalarText;
use crate::config::resolved::serialize_duration;
use crate::config::secret::Secret;
use crate::config::validate::Problems;

/// Default `ec2_sd_configs[].refresh_interval`.
pub const DEFAULT_EC2_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Default `ec2_sd_configs[].port`.
pub const DEFAULT_EC2_SD_PORT: u16 = 80;

/// One entry of `ec2_sd_configs:` as written, besides its HTTP client settings.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEc2SdConfig {
    pub region: Option<ScalarText>,
    pub endpoint: Option<ScalarText>,
    pub access_key: Option<ScalarText>,
    pub secret_key: Option<ScalarText>,
    pub profile: Option<ScalarText>,
    pub role_arn: Option<ScalarText>,
    pub port: Option<ScalarText>,
    pub refresh_interval: Option<ScalarText>,
    pub filters: Option<Vec<Option<RawEc2Filter>>>,
}

/// One entry of `ec2_sd_configs[].filters:` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEc2Filter {
    pub name: Option<ScalarText>,
    pub values: Option<Vec<ScalarText>>,
}

/// One `ec2_sd_configs[].filters[]` entry (a DescribeInstances filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ec2Filter {
    /// Filter name, e.g. `instance-state-name` or `tag:Name`.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}

/// `ec2_sd_configs[]`: targets from EC2 DescribeInstances. Fields in Prometheus
/// 2.42's order; `endpoint`, `region`, `port` and `filters` (`[]` when none) are
/// always printed, as there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ec2SdConfig {
    /// API endpoint overriding the region's (e.g. a test server).
    pub endpoint: String,
    /// AWS region; empty means the SDK's default region chain (environment,
    /// profile, instance metadata), resolved when discovery starts.
    pub region: String,
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
    /// How often instances are listed again (default `1m`).
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
    /// Port put in `__address__` next to the private IP (default 80).
    pub port: u16,
    /// DescribeInstances filters.
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

impl SdEntry for Ec2SdConfig {
    type Raw = WithHttpClient<RawEc2SdConfig>;

    fn resolve(
        raw: &WithHttpClient<RawEc2SdConfig>,
        _section: &SdSection<'_>,
        path: &FieldPath,
        problems: &mut Problems,
    ) -> Ec2SdConfig {
        let mut filters = Vec::new();
        for (filter_index, filter) in raw.filters.iter().flatten().enumerate() {
            let filter_path = path.key("filters").index(filter_index);
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
        let secret_key = Some(text(&raw.secret_key))
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        // Prometheus 2.42 neither resolves this client's file names against the config
        // file's directory (they are opened from the working directory, as written)
        // nor defaults its `authorization.type` (both happen only in the
        // `SetDirectory` and `Validate` it never calls here); it prints them so.
        let mut http = resolve_unchecked_http_client(raw.http(), Path::new(""), path, problems);
        let written_type = raw.http().authorization.as_ref().map(|a| text(&a.kind));
        if let (Some(auth), Some(written)) = (http.authorization.as_mut(), written_type) {
            auth.kind = written;
        }
        Ec2SdConfig {
            region: text(&raw.region),
            endpoint: text(&raw.endpoint),
            access_key: text(&raw.access_key),
            secret_key,
            profile: text(&raw.profile),
            role_arn: text(&raw.role_arn),
            port: port(&raw.port, DEFAULT_EC2_SD_PORT, &path.key("port"), problems),
            refresh_interval: refresh_interval(
                &raw.refresh_interval,
                DEFAULT_EC2_SD_REFRESH_INTERVAL,
                &path.key("refresh_interval"),
                problems,
            ),
            filters,
            http,
        }
    }

    fn providers(entries: &[Ec2SdConfig]) -> Vec<SdConfig> {
        entries
            .iter()
            .map(|entry| SdConfig::Ec2(Box::new(entry.clone())))
            .collect()
    }
}
