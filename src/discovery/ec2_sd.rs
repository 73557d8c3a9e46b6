//! `ec2_sd_configs`: targets from the EC2 API (DescribeInstances).
//!
//! Contract (Prometheus 2.42's `discovery/aws/ec2.go`): every `refresh_interval` all
//! pages of DescribeInstances (with the configured `filters`) are listed; every
//! instance with a private IP is one target at `<private ip>:<port>` with the labels
//! `__meta_ec2_ami`, `_architecture`, `_availability_zone`, `_availability_zone_id`,
//! `_instance_id`, `_instance_lifecycle`, `_instance_state`, `_instance_type`,
//! `_ipv6_addresses`, `_owner_id`, `_platform`, `_primary_subnet_id`,
//! `_private_dns_name`, `_private_ip`, `_public_dns_name`, `_public_ip`, `_region`,
//! `_subnet_id`, `_tag_<key>` and `_vpc_id`, each set exactly where Prometheus sets it
//! (e.g. `_availability_zone_id` always, empty — so absent — if unknown; `_public_*`
//! only with a public IP); the subnet and IPv6 lists are comma-wrapped: `,subnet-1,subnet-2,`. Instances are not
//! filtered by state: a stopped instance is a target unless a filter says otherwise,
//! a terminated one has no private IP and is not. An API error fails the refresh, so
//! the last good targets are kept.
//!
//! Client: credentials from `access_key`/`secret_key`, else the SDK's default chain
//! (environment, `profile` in the shared files, web identity, ECS, instance
//! metadata); `role_arn` is assumed through STS; `endpoint` overrides the API
//! endpoint (EC2 and STS, as in Prometheus). Every request (EC2, STS, the credential
//! providers) goes through a client of `crate::http_client` built from the entry's
//! `tls_config`, `proxy_url`, `proxy_connect_header` and `follow_redirects`, as
//! Prometheus 2.42 hands the AWS SDK its HTTP client; `oauth2` replaces the SigV4
//! `Authorization` with a token, `basic_auth` and `authorization` change nothing (see
//! `Ec2SdConfig`). HTTP/1.1 only (`enable_http2` is accepted).

use super::manager::Refresh;
use super::{
    join_host_port, sanitize_label_name, DiscoveryError, LabelMap, TargetGroup, ADDRESS_LABEL,
};
use crate::config::Ec2SdConfig;
use crate::http_client::{self, aws_config_loader, aws_http_client, error_chain};
use aws_sdk_ec2::types::{Filter, Instance, Reservation};
use aws_sdk_ec2::Client;
use std::collections::HashMap;
use std::time::Duration;

const LABEL_PREFIX: &str = "__meta_ec2_";
/// Separator of the list-valued labels (`__meta_ec2_subnet_id`, `__meta_ec2_ipv6_addresses`).
const LIST_SEPARATOR: &str = ",";
/// How long one API call may take before the refresh fails.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The provider of one `ec2_sd_configs` entry.
pub struct Ec2Discovery {
    config: Ec2SdConfig,
    /// DescribeInstances page size; `None` lets EC2 choose (as Prometheus does).
    page_size: Option<i32>,
    client: Option<(Client, String)>,
    /// Availability zone name → zone id, fetched once.
    zone_ids: Option<HashMap<String, String>>,
}

impl Ec2Discovery {
    /// A provider for `config`; the client is built on the first refresh.
    pub fn new(config: Ec2SdConfig) -> Ec2Discovery {
        Ec2Discovery {
            config,
            page_size: None,
            client: None,
            zone_ids: None,
        }
    }

    /// Asks for pages of at most `size` reservations (5..=1000), to exercise paging.
    pub fn with_page_size(mut self, size: i32) -> Ec2Discovery {
        self.page_size = Some(size);
        self
    }

    async fn client(&mut self) -> Result<(Client, String), DiscoveryError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = build_client(&self.config).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Lists the instances once; see the module contract.
    pub async fn list(&mut self) -> Result<Vec<TargetGroup>, DiscoveryError> {
        let (client, region) = self.client().await?;
        if self.zone_ids.is_none() {
            // Like Prometheus: without zone ids, targets lack only that label.
            match zone_ids(&client).await {
                Ok(ids) => self.zone_ids = Some(ids),
                Err(error) => tracing::debug!(%error, "ec2_sd: cannot list availability zone ids"),
            }
        }
        let filters: Vec<Filter> = self
            .config
            .filters
            .iter()
            .map(|f| {
                Filter::builder()
                    .name(&f.name)
                    .set_values(Some(f.values.clone()))
                    .build()
            })
            .collect();
        let empty = HashMap::new();
        let zone_ids = self.zone_ids.as_ref().unwrap_or(&empty);
        let mut group = TargetGroup {
            source: region.clone(),
            ..TargetGroup::default()
        };
        let mut next_token: Option<String> = None;
        loop {
            let page = client
                .describe_instances()
                .set_filters((!filters.is_empty()).then(|| filters.clone()))
                .set_max_results(self.page_size)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| DiscoveryError::Ec2 {
                    operation: "DescribeInstances",
                    message: error_chain(&e),
                })?;
            for reservation in page.reservations() {
                for instance in reservation.instances() {
                    if let Some(target) =
                        instance_labels(reservation, instance, &region, self.config.port, zone_ids)
                    {
                        group.targets.push(target);
                    }
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        Ok(vec![group])
    }
}

impl Refresh for Ec2Discovery {
    const MECHANISM: &'static str = "ec2";

    fn interval(&self) -> Duration {
        self.config.refresh_interval
    }

    async fn refresh(&mut self) -> Result<Vec<TargetGroup>, DiscoveryError> {
        self.list().await
    }
}

async fn build_client(config: &Ec2SdConfig) -> Result<(Client, String), DiscoveryError> {
    let credentials = match (config.access_key.as_str(), &config.secret_key) {
        ("", _) | (_, None) => None,
        (key, Some(secret)) => Some((key, secret.expose())),
    };
    let http = http_client::build_client(&config.http).map_err(|e| DiscoveryError::Ec2 {
        operation: "configuration",
        message: e.to_string(),
    })?;
    let mut loader = aws_config_loader(
        aws_http_client(http, config.http.oauth2.clone()),
        &config.region,
        &config.profile,
        credentials,
        OPERATION_TIMEOUT,
        "ec2_sd_configs",
    );
    if !config.endpoint.is_empty() {
        loader = loader.endpoint_url(&config.endpoint);
    }
    let mut sdk_config = loader.load().await;
    let region = sdk_config
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| DiscoveryError::Ec2 {
            operation: "configuration",
            message:
                "EC2 SD configuration requires a region (none configured or found by the AWS SDK)"
                    .into(),
        })?;
    if !config.role_arn.is_empty() {
        let provider = aws_config::sts::AssumeRoleProvider::builder(&config.role_arn)
            .session_name("promflow")
            .configure(&sdk_config)
            .build()
            .await;
        sdk_config = sdk_config
            .into_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
    }
    Ok((Client::new(&sdk_config), region))
}

async fn zone_ids(client: &Client) -> Result<HashMap<String, String>, DiscoveryError> {
    let zones = client
        .describe_availability_zones()
        .send()
        .await
        .map_err(|e| DiscoveryError::Ec2 {
            operation: "DescribeAvailabilityZones",
            message: error_chain(&e),
        })?;
    Ok(zones
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_name()?.to_string(), z.zone_id()?.to_string())))
        .collect())
}

/// The labels of one instance, or `None` if it has no private IP (terminated).
fn instance_labels(
    reservation: &Reservation,
    instance: &Instance,
    region: &str,
    port: u16,
    zone_ids: &HashMap<String, String>,
) -> Option<LabelMap> {
    let private_ip = instance.private_ip_address()?;
    let mut labels = LabelMap::new();
    let mut set = |name: &str, value: &str| {
        labels.insert(format!("{LABEL_PREFIX}{name}"), value.to_string());
    };
    set("instance_id", instance.instance_id().unwrap_or_default());
    set("region", region);
    if let Some(owner) = reservation.owner_id() {
        set("owner_id", owner);
    }
    set("private_ip", private_ip);
    if let Some(dns) = instance.private_dns_name() {
        set("private_dns_name", dns);
    }
    if let Some(platform) = instance.platform() {
        set("platform", platform.as_str());
    }
    if let Some(public_ip) = instance.public_ip_address() {
        set("public_ip", public_ip);
        set(
            "public_dns_name",
            instance.public_dns_name().unwrap_or_default(),
        );
    }
    set("ami", instance.image_id().unwrap_or_default());
    let zone = instance
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap_or_default();
    set("availability_zone", zone);
    set(
        "availability_zone_id",
        zone_ids.get(zone).map(String::as_str).unwrap_or_default(),
    );
    if let Some(state) = instance.state().and_then(|s| s.name()) {
        set("instance_state", state.as_str());
    }
    if let Some(kind) = instance.instance_type() {
        set("instance_type", kind.as_str());
    }
    if let Some(lifecycle) = instance.instance_lifecycle() {
        set("instance_lifecycle", lifecycle.as_str());
    }
    if let Some(architecture) = instance.architecture() {
        set("architecture", architecture.as_str());
    }
    if let Some(vpc) = instance.vpc_id() {
        set("vpc_id", vpc);
        set(
            "primary_subnet_id",
            instance.subnet_id().unwrap_or_default(),
        );
        let mut subnets: Vec<&str> = Vec::new();
        let mut ipv6: Vec<&str> = Vec::new();
        for interface in instance.network_interfaces() {
            let Some(subnet) = interface.subnet_id() else {
                continue;
            };
            if !subnets.contains(&subnet) {
                subnets.push(subnet);
            }
            ipv6.extend(
                interface
                    .ipv6_addresses()
                    .iter()
                    .filter_map(|a| a.ipv6_address()),
            );
        }
        set("subnet_id", &comma_wrapped(&subnets));
        if !ipv6.is_empty() {
            set("ipv6_addresses", &comma_wrapped(&ipv6));
        }
    }
    for tag in instance.tags() {
        if let (Some(key), Some(value)) = (tag.key(), tag.value()) {
            set(&format!("tag_{}", sanitize_label_name(key)), value);
        }
    }
    labels.insert(ADDRESS_LABEL.to_string(), join_host_port(private_ip, port));
    Some(labels)
}

/// `,a,b,` as Prometheus writes list-valued labels.
fn comma_wrapped(items: &[&str]) -> String {
    format!(
        "{LIST_SEPARATOR}{}{LIST_SEPARATOR}",
        items.join(LIST_SEPARATOR)
    )
}
