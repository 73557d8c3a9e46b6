//! `dns_sd_configs`: targets from A, AAAA, SRV and MX records.
//!
//! Contract (Prometheus 2.42's `discovery/dns`): every `refresh_interval` each name
//! is looked up; each answer record of the asked type is one target with the labels
//! `__address__`, `__meta_dns_name` (the name as configured),
//! `__meta_dns_srv_record_target` and `__meta_dns_srv_record_port` (SRV only, the
//! target as the record has it, trailing dot included), `__meta_dns_mx_record_target`
//! (MX only); the labels that do not apply are empty (so absent from a target's
//! discovered labels, as in Prometheus). A and AAAA targets use `port`;
//! SRV targets use the record's host (trailing dot removed) and port; MX targets the
//! exchange host and `port`. A name that does not exist (or has no record of the
//! type) is an empty group; any other failure fails the whole refresh, so the last
//! good targets are kept. The Docker Swarm case is `tasks.<service>` of type A.
//!
//! Resolver: the system's (`/etc/resolv.conf`, search domains and ndots included),
//! or one name server given by `--discovery.dns.nameserver`. Caching is off: each
//! refresh asks the server, as Prometheus does.
//!
//! Counted as Prometheus counts them: every name looked up in
//! `prometheus_sd_dns_lookups_total`, every lookup that failed (not a missing name) in
//! `prometheus_sd_dns_lookup_failures_total`.

use super::manager::Refresh;
use super::{join_host_port, DiscoveryError, LabelMap, TargetGroup, ADDRESS_LABEL};
use crate::config::{DnsRecordType, DnsSdConfig};
use crate::selfmetrics::SelfMetrics;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// `__meta_dns_name`.
pub const NAME_LABEL: &str = "__meta_dns_name";
/// `__meta_dns_srv_record_target`.
pub const SRV_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
/// `__meta_dns_srv_record_port`.
pub const SRV_PORT_LABEL: &str = "__meta_dns_srv_record_port";
/// `__meta_dns_mx_record_target`.
pub const MX_TARGET_LABEL: &str = "__meta_dns_mx_record_target";

/// The provider of one `dns_sd_configs` entry.
pub struct DnsDiscovery {
    config: DnsSdConfig,
    nameserver: Option<SocketAddr>,
    resolver: Option<TokioResolver>,
    metrics: Arc<SelfMetrics>,
}

impl DnsDiscovery {
    /// A provider for `config`, asking `nameserver` if given, else the system's;
    /// lookups are counted in `metrics`.
    pub fn new(
        config: DnsSdConfig,
        nameserver: Option<SocketAddr>,
        metrics: Arc<SelfMetrics>,
    ) -> DnsDiscovery {
        DnsDiscovery {
            config,
            nameserver,
            resolver: None,
            metrics,
        }
    }

    fn resolver(&mut self) -> Result<&TokioResolver, DiscoveryError> {
        if self.resolver.is_none() {
            self.resolver = Some(build_resolver(self.nameserver)?);
        }
        Ok(self.resolver.as_ref().expect("resolver just built"))
    }

    /// Looks every name up; see the module contract.
    pub async fn lookup_all(&mut self) -> Result<Vec<TargetGroup>, DiscoveryError> {
        let record_type = self.config.record_type;
        let port = self.config.port;
        let names = self.config.names.clone();
        let resolver = self.resolver()?.clone();
        let metrics = &self.metrics;
        let lookups = names.iter().map(|name| {
            let resolver = resolver.clone();
            async move {
                let result = lookup_one(&resolver, name, record_type, port).await;
                metrics.sd_dns_lookups.inc();
                if result.is_err() {
                    metrics.sd_dns_lookup_failures.inc();
                }
                result
            }
        });
        futures_util::future::join_all(lookups)
            .await
            .into_iter()
            .collect()
    }
}

impl Refresh for DnsDiscovery {
    const MECHANISM: &'static str = "dns";

    fn interval(&self) -> Duration {
        self.config.refresh_interval
    }

    async fn refresh(&mut self) -> Result<Vec<TargetGroup>, DiscoveryError> {
        self.lookup_all().await
    }
}

fn build_resolver(nameserver: Option<SocketAddr>) -> Result<TokioResolver, DiscoveryError> {
    let mut builder = match nameserver {
        Some(addr) => {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => {
            TokioResolver::builder_tokio().map_err(|e| DiscoveryError::Resolver(e.to_string()))?
        }
    };
    let options = builder.options_mut();
    // Prometheus asks the server every time and never reads /etc/hosts.
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = Duration::from_secs(5);
    builder
        .build()
        .map_err(|e| DiscoveryError::Resolver(e.to_string()))
}

fn hickory_type(record_type: DnsRecordType) -> RecordType {
    match record_type {
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Mx => RecordType::MX,
    }
}

async fn lookup_one(
    resolver: &TokioResolver,
    name: &str,
    record_type: DnsRecordType,
    port: u16,
) -> Result<TargetGroup, DiscoveryError> {
    let mut group = TargetGroup {
        source: name.to_string(),
        ..TargetGroup::default()
    };
    let lookup = match resolver.lookup(name, hickory_type(record_type)).await {
        Ok(lookup) => lookup,
        Err(error) if error.is_no_records_found() => return Ok(group),
        Err(error) => {
            return Err(DiscoveryError::Dns {
                name: name.to_string(),
                message: error.to_string(),
            })
        }
    };
    for record in lookup.answers() {
        let target = match &record.data {
            RData::A(a) => labels(name, join_host_port(&a.0.to_string(), port), "", "", ""),
            RData::AAAA(aaaa) => {
                labels(name, join_host_port(&aaaa.0.to_string(), port), "", "", "")
            }
            RData::SRV(srv) => {
                let host = srv.target.to_string();
                let address = join_host_port(host.trim_end_matches('.'), srv.port);
                labels(name, address, &host, &srv.port.to_string(), "")
            }
            RData::MX(mx) => {
                let host = mx.exchange.to_string();
                let address = join_host_port(host.trim_end_matches('.'), port);
                labels(name, address, "", "", &host)
            }
            // CNAMEs come with A queries; other records are not targets.
            _ => continue,
        };
        group.targets.push(target);
    }
    Ok(group)
}

fn labels(
    name: &str,
    address: String,
    srv_target: &str,
    srv_port: &str,
    mx_target: &str,
) -> LabelMap {
    LabelMap::from([
        (ADDRESS_LABEL.to_string(), address),
        (NAME_LABEL.to_string(), name.to_string()),
        (SRV_TARGET_LABEL.to_string(), srv_target.to_string()),
        (SRV_PORT_LABEL.to_string(), srv_port.to_string()),
        (MX_TARGET_LABEL.to_string(), mx_target.to_string()),
    ])
}
