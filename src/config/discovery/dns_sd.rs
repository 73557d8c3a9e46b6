//! `dns_sd_configs`: targets from DNS records.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{port, refresh_interval, text, SdConfig, SdEntry, SdSection};
use crate::config::locate::FieldPath;
use crate::config::raw::ScalarText;
use crate::config::resolved::serialize_duration;
use crate::config::validate::Problems;

/// Default `dns_sd_configs[].refresh_interval`.
pub const DEFAULT_DNS_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// One entry of `dns_sd_configs:` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawDnsSdConfig {
    pub names: Option<Vec<ScalarText>>,
    #[serde(rename = "type")]
    pub kind: Option<ScalarText>,
    pub port: Option<ScalarText>,
    pub refresh_interval: Option<ScalarText>,
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

/// `dns_sd_configs[]`: targets from DNS records. Fields in Prometheus 2.42's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsSdConfig {
    /// Names to query.
    pub names: Vec<String>,
    /// How often the names are resolved again (default `30s`).
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
    /// Record type (default SRV).
    #[serde(rename = "type")]
    pub record_type: DnsRecordType,
    /// Port of A, AAAA and MX targets (unused for SRV).
    pub port: u16,
}

impl SdEntry for DnsSdConfig {
    type Raw = RawDnsSdConfig;

    fn resolve(
        raw: &RawDnsSdConfig,
        _section: &SdSection<'_>,
        path: &FieldPath,
        problems: &mut Problems,
    ) -> DnsSdConfig {
        let names: Vec<String> = raw.names.iter().flatten().map(|n| n.0.clone()).collect();
        if names.is_empty() {
            problems.push(
                path.key("names"),
                "DNS-SD config must contain at least one SRV record name",
            );
        }
        let port_value = port(&raw.port, 0, &path.key("port"), problems);
        let kind = text(&raw.kind);
        let record_type = match kind.to_ascii_uppercase().as_str() {
            "" | "SRV" => DnsRecordType::Srv,
            "A" => DnsRecordType::A,
            "AAAA" => DnsRecordType::Aaaa,
            "MX" => DnsRecordType::Mx,
            _ => {
                problems.push(
                    path.key("type"),
                    format!("invalid DNS-SD records type {kind}"),
                );
                DnsRecordType::Srv
            }
        };
        if record_type != DnsRecordType::Srv && port_value == 0 {
            problems.push(
                path.clone(),
                "a port is required in DNS-SD configs for all record types except SRV",
            );
        }
        DnsSdConfig {
            names,
            record_type,
            port: port_value,
            refresh_interval: refresh_interval(
                &raw.refresh_interval,
                DEFAULT_DNS_SD_REFRESH_INTERVAL,
                &path.key("refresh_interval"),
                problems,
            ),
        }
    }

    fn providers(entries: &[DnsSdConfig]) -> Vec<SdConfig> {
        entries.iter().cloned().map(SdConfig::Dns).collect()
    }
}
