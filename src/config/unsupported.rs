//! Fields Prometheus 2.42 accepts that promflow does not support yet.
//!
//! A field that serde did not consume is either one of these (reported as "not
//! supported by promflow yet") or a typo (reported as "unknown field"); both are
//! errors, never silently ignored. The lists were checked field by field with
//! `promtool check config` 2.42, plus the service discoveries that Debian's
//! promtool build leaves out but upstream Prometheus 2.42 has (consul,
//! kubernetes, kuma, linode, nomad).

/// Service discovery mechanisms of Prometheus 2.42 that promflow does not have (the
/// ones it has are the `sd_configs!` list of `discovery/mod.rs`, read before a key can
/// reach this list).
const SERVICE_DISCOVERY_FIELDS: &[&str] = &[
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "eureka_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "http_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

/// Whether `field`, found under the mapping whose keys (indices left out) are
/// `parent_keys`, is a Prometheus 2.42 field that promflow does not support yet.
pub(crate) fn is_unsupported_prometheus_field(parent_keys: &[&str], field: &str) -> bool {
    match parent_keys {
        [] => field == "tracing",
        ["storage"] => field == "tsdb",
        ["global"] => field == "query_log_file",
        ["scrape_configs"] | ["alerting", "alertmanagers"] => {
            SERVICE_DISCOVERY_FIELDS.contains(&field)
        }
        ["remote_write"] => {
            matches!(field, "sigv4" | "azuread")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_unsupported_from_unknown() {
        assert!(is_unsupported_prometheus_field(&[], "tracing"));
        assert!(is_unsupported_prometheus_field(&["remote_write"], "sigv4"));
        assert!(is_unsupported_prometheus_field(
            &["scrape_configs"],
            "consul_sd_configs"
        ));
        // Supported now: consumed by serde, never reaches this list.
        assert!(!is_unsupported_prometheus_field(
            &["scrape_configs"],
            "tls_config"
        ));
        // `sigv4` on alertmanagers came after 2.42: unknown, like a typo.
        assert!(!is_unsupported_prometheus_field(
            &["alerting", "alertmanagers"],
            "sigv4"
        ));
        // `scrape_config_files` came in 2.43.
        assert!(!is_unsupported_prometheus_field(&[], "scrape_config_files"));
        assert!(!is_unsupported_prometheus_field(
            &["scrape_configs"],
            "scrape_intervall"
        ));
        // Global sample limits came after 2.42.
        assert!(!is_unsupported_prometheus_field(
            &["global"],
            "sample_limit"
        ));
    }
}
