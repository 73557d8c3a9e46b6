//! Service discovery: turning the `*_sd_configs` of a scrape job or of an
//! `alerting.alertmanagers[]` entry into target groups.
//!
//! One module per mechanism, each producing [`TargetGroup`]s with `__meta_*` labels
//! named exactly as Prometheus 2.42 names them:
//! - [`static_sd`]: `static_configs` (fixed, no task).
//! - [`file_sd`]: `file_sd_configs` (JSON/YAML files, watched and re-read).
//! - [`dns_sd`]: `dns_sd_configs` (A, AAAA, SRV, MX through `hickory-resolver`).
//! - [`ec2_sd`]: `ec2_sd_configs` (DescribeInstances through `aws-sdk-ec2`).
//!
//! A mechanism's config (the arm of [`crate::config::SdConfig`] it runs) is in
//! `config/discovery/`; its provider here implements `manager::Refresh`, and the arm of
//! `DiscoveryManager::start` for it starts the provider.
//!
//! [`manager`] runs one provider per sd config, keeps each provider's last good
//! groups when a refresh fails (logged and counted on `/metrics`), keeps providers
//! whose config did not change across reloads, and signals every change. Turning
//! groups into targets (relabeling) is `crate::scrape::target`'s job (scrape targets)
//! and `crate::notifier::alertmanagers`' (Alertmanagers), not this one's.

pub mod dns_sd;
pub mod ec2_sd;
pub mod file_sd;
pub mod manager;
pub mod static_sd;

pub use manager::{DiscoveryContext, DiscoveryManager, DiscoverySet};

use std::collections::BTreeMap;

/// Labels of one target as discovery hands it over (`__address__`, `__meta_*`, …).
pub type LabelMap = BTreeMap<String, String>;

/// A group of targets sharing labels, as Prometheus's `targetgroup.Group`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Where the group came from (a file and index, a DNS name, a region), for logs.
    pub source: String,
    /// Each target's own labels; `__address__` is always set. They win over
    /// `labels` on conflict.
    pub targets: Vec<LabelMap>,
    /// Labels common to the group.
    pub labels: LabelMap,
}

impl TargetGroup {
    /// A group of plain `host:port` addresses sharing `labels`.
    pub fn from_addresses(source: String, addresses: &[String], labels: LabelMap) -> TargetGroup {
        TargetGroup {
            source,
            targets: addresses
                .iter()
                .map(|address| LabelMap::from([(ADDRESS_LABEL.to_string(), address.clone())]))
                .collect(),
            labels,
        }
    }
}

/// The label holding a target's `host:port`.
pub const ADDRESS_LABEL: &str = "__address__";

/// Why a refresh failed; the provider keeps its last good groups.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A DNS lookup failed (not "no such name", which is an empty answer).
    #[error("DNS lookup of {name} failed: {message}")]
    Dns {
        /// The name looked up.
        name: String,
        /// The resolver's error.
        message: String,
    },
    /// The resolver could not be set up (e.g. unreadable `/etc/resolv.conf`).
    #[error("DNS resolver setup failed: {0}")]
    Resolver(String),
    /// An EC2 API call failed.
    #[error("EC2 {operation} failed: {message}")]
    Ec2 {
        /// The API operation.
        operation: &'static str,
        /// The SDK's error, with its source chain.
        message: String,
    },
}

/// `host:port`, with brackets around IPv6 hosts (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Prometheus's `strutil.SanitizeLabelName`: every character outside
/// `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(join_host_port("127.0.0.2", 9100), "127.0.0.2:9100");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("host.example", 1), "host.example:1");
    }

    #[test]
    fn label_names_are_sanitized_like_prometheus() {
        assert_eq!(
            sanitize_label_name("aws:cloudformation:stack-name"),
            "aws_cloudformation_stack_name"
        );
        assert_eq!(sanitize_label_name("Name"), "Name");
        assert_eq!(sanitize_label_name("ключ"), "____");
    }
}
