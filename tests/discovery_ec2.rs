//! EC2 service discovery against a real EC2 API: moto's server.
//!
//! Real peer: `moto_server` (PyPI `moto[server]`, installed in a venv by `.ci/run`;
//! see `tests/common/moto.rs` for how it is found). Instances are created with the
//! AWS SDK in a 127.0.0.0/24 subnet, so the targets promflow scrapes are loopback
//! exporters (`tests/common/exporter.rs`). The label names and formats are checked
//! against `../shared/oracle-samples/ec2_sd_targets_prometheus-2.42_vs_moto.json`,
//! what Prometheus 2.42 discovered from moto. The EC2 API client's `tls_config` and
//! proxy settings are checked with moto behind an https front (a test CA made by
//! `openssl`) and a forward proxy (`tests/common/proxy.rs`).

mod common;

use common::exporter::{Exporter, Reply};
use common::moto::{self, Moto};
use common::proxy::Proxy;
use common::tls::{TestPki, TlsFront};
use common::{wait_until, Peer, Promflow};
use promflow::config::Ec2SdConfig;
use promflow::discovery::ec2_sd::Ec2Discovery;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Prometheus's discovered labels against moto (shared data; `None`: absent, skipped).
fn oracle_targets() -> Option<Vec<BTreeMap<String, String>>> {
    let path = dataflows::shared_data::locate(
        "oracle-samples/ec2_sd_targets_prometheus-2.42_vs_moto.json",
        "EC2 labels compared with Prometheus's",
    )?;
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("oracle sample {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let targets = json["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::from_value(t["discoveredLabels"].clone()).unwrap())
        .collect();
    Some(targets)
}

fn sd_config(moto: &Moto, port: u16) -> Ec2SdConfig {
    Ec2SdConfig {
        region: moto::REGION.into(),
        endpoint: moto.endpoint(),
        access_key: "test".into(),
        secret_key: Some(promflow::config::Secret::new("test")),
        port,
        ..Ec2SdConfig::default()
    }
}

/// Lists moto's instances through promflow's provider, with small pages.
fn discover(config: Ec2SdConfig, page_size: i32) -> Vec<BTreeMap<String, String>> {
    try_discover(config, page_size).expect("DescribeInstances")
}

/// [`discover`], or the provider's error.
fn try_discover(
    config: Ec2SdConfig,
    page_size: i32,
) -> Result<Vec<BTreeMap<String, String>>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut provider = Ec2Discovery::new(config).with_page_size(page_size);
    let groups = runtime
        .block_on(provider.list())
        .map_err(|e| e.to_string())?;
    Ok(groups.into_iter().flat_map(|g| g.targets).collect())
}

/// The instance ids among `targets`.
fn instance_ids(targets: &[BTreeMap<String, String>]) -> BTreeSet<String> {
    targets
        .iter()
        .map(|t| t["__meta_ec2_instance_id"].clone())
        .collect()
}

/// `tls_config`, `proxy_url` and `proxy_connect_header` of an `ec2_sd_configs` entry
/// hold for the EC2 API client, as in Prometheus 2.42 (which hands the AWS SDK its
/// prometheus/common client): moto behind an https front whose certificate a test CA
/// signed, and moto through a forward proxy (plain, and CONNECT to the https front).
#[test]
fn tls_config_and_proxy_settings_reach_the_ec2_api() {
    let moto = Moto::start();
    let id = moto.run_instance("127.0.0.30", &[("Name", "tls")]);
    let pki = TestPki::generate();
    let front = TlsFront::start(&pki, moto.addr());
    let with_ca = |mut config: Ec2SdConfig| {
        config.endpoint = front.url();
        config.http.tls_config.ca_file = Some(pki.path("ca.crt"));
        config
    };

    // https with the test CA: discovered; without it, the refresh fails on the
    // certificate (the system's roots do not know the test CA).
    let targets = discover(with_ca(sd_config(&moto, 9100)), 5);
    assert_eq!(instance_ids(&targets), BTreeSet::from([id.clone()]));
    let mut no_ca = sd_config(&moto, 9100);
    no_ca.endpoint = front.url();
    let error = try_discover(no_ca, 5).expect_err("an unknown CA is refused");
    assert!(error.contains("certificate"), "{error}");
    let mut wrong_ca = with_ca(sd_config(&moto, 9100));
    wrong_ca.http.tls_config.ca_file = Some(pki.path("other-ca.crt"));
    let error = try_discover(wrong_ca, 5).expect_err("the wrong CA is refused");
    assert!(error.contains("certificate"), "{error}");

    // Through a proxy, with a CONNECT header: the plain-HTTP endpoint's requests are
    // forwarded in absolute form without the header (Go's Transport sends
    // ProxyConnectHeader with CONNECT only) ...
    let proxy = Proxy::start();
    let proxied = |mut config: Ec2SdConfig| {
        config.http.proxy_url = Some(proxy.url());
        config.http.proxy_connect_header = BTreeMap::from([(
            "X-Proxy-Token".to_string(),
            vec![promflow::config::Secret::new("s3cret")],
        )]);
        config
    };
    let targets = discover(proxied(sd_config(&moto, 9100)), 5);
    assert_eq!(instance_ids(&targets), BTreeSet::from([id.clone()]));
    let forwarded = format!("POST {}/ HTTP/1.1", moto.endpoint());
    let heads = proxy.heads();
    let posts: Vec<&String> = heads.iter().filter(|h| h.starts_with(&forwarded)).collect();
    assert!(
        !posts.is_empty(),
        "no {forwarded:?} at the proxy: {heads:?}"
    );
    assert!(
        posts
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("x-proxy-token")),
        "{posts:?}"
    );

    // ... and the https endpoint is reached through a CONNECT tunnel that carries it.
    let targets = discover(proxied(with_ca(sd_config(&moto, 9100))), 5);
    assert_eq!(instance_ids(&targets), BTreeSet::from([id]));
    let connect = format!(
        "CONNECT {} HTTP/1.1",
        front.url().trim_start_matches("https://")
    );
    let heads = proxy.heads();
    let tunnel = heads
        .iter()
        .find(|h| h.starts_with(&connect))
        .unwrap_or_else(|| panic!("no {connect:?} at the proxy: {heads:?}"));
    assert!(
        tunnel
            .to_ascii_lowercase()
            .contains("x-proxy-token: s3cret\r\n"),
        "{tunnel:?}"
    );
}

#[test]
fn labels_match_prometheus_and_all_pages_are_read() {
    let moto = Moto::start();
    let mut ids = Vec::new();
    // Six reservations: two pages of at most five.
    for i in 0..6 {
        let name = format!("web-{i}");
        ids.push(moto.run_instance(
            &format!("127.0.0.{}", 10 + i),
            &[("Name", &name), ("role", "web")],
        ));
    }
    let untagged = moto.run_instance("127.0.0.20", &[]);
    let targets = discover(sd_config(&moto, 9100), 5);
    assert_eq!(targets.len(), 7, "every page read: {targets:#?}");

    let web0 = targets
        .iter()
        .find(|t| t.get("__meta_ec2_instance_id") == Some(&ids[0]))
        .expect("web-0 discovered");
    if let Some(oracle) = oracle_targets() {
        let oracle_names: BTreeSet<&str> = oracle[0]
            .keys()
            .map(String::as_str)
            // Added by the scrape pool, not by discovery.
            .filter(|n| n.starts_with("__meta_") || *n == "__address__")
            .collect();
        let names: BTreeSet<&str> = web0.keys().map(String::as_str).collect();
        assert_eq!(names, oracle_names, "label names differ from Prometheus's");

        // Values that do not depend on moto's random ids, as Prometheus has them.
        for label in [
            "__meta_ec2_ami",
            "__meta_ec2_architecture",
            "__meta_ec2_availability_zone",
            "__meta_ec2_availability_zone_id",
            "__meta_ec2_instance_state",
            "__meta_ec2_instance_type",
            "__meta_ec2_owner_id",
            "__meta_ec2_platform",
            "__meta_ec2_region",
        ] {
            assert_eq!(web0[label], oracle[0][label], "{label}");
        }
    }
    assert_eq!(web0["__address__"], "127.0.0.10:9100");
    assert_eq!(web0["__meta_ec2_private_ip"], "127.0.0.10");
    assert_eq!(
        web0["__meta_ec2_private_dns_name"],
        "ip-127-0-0-10.ec2.internal"
    );
    assert_eq!(web0["__meta_ec2_vpc_id"], moto.vpc_id);
    assert_eq!(web0["__meta_ec2_primary_subnet_id"], moto.subnet_id);
    assert_eq!(
        web0["__meta_ec2_subnet_id"],
        format!(",{},", moto.subnet_id)
    );
    assert_eq!(web0["__meta_ec2_tag_Name"], "web-0");
    assert_eq!(web0["__meta_ec2_tag_role"], "web");
    assert!(web0["__meta_ec2_public_ip"]
        .parse::<std::net::IpAddr>()
        .is_ok());
    let bare = targets
        .iter()
        .find(|t| t.get("__meta_ec2_instance_id") == Some(&untagged))
        .unwrap();
    assert!(
        !bare.keys().any(|k| k.starts_with("__meta_ec2_tag_")),
        "{bare:?}"
    );

    // A filter is passed to DescribeInstances.
    let mut filtered = sd_config(&moto, 9100);
    filtered.filters = vec![promflow::config::Ec2Filter {
        name: "tag:Name".into(),
        values: vec!["web-1".into(), "web-2".into()],
    }];
    let names: BTreeSet<String> = discover(filtered, 5)
        .into_iter()
        .map(|t| t["__meta_ec2_tag_Name"].clone())
        .collect();
    assert_eq!(names, BTreeSet::from(["web-1".into(), "web-2".into()]));
}

/// Instance names whose `up` is federated with value 1 for `job`.
fn up_instances(promflow: &Peer, job: &str) -> BTreeSet<String> {
    promflow
        .federate(&[&format!(r#"up{{job="{job}"}}"#)])
        .samples
        .iter()
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.label("instance").map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The reference setup (DESIGN.md, deploy/main.yml): node_exporter on every running
/// fleet host, cAdvisor only on the hosts that run containers.
fn reference_config(moto: &Moto, node_port: u16, cadvisor_port: u16) -> String {
    let job = |name: &str, port: u16, keep: &str| {
        format!(
            "- job_name: {name}\n  ec2_sd_configs:\n  - region: {region}\n    endpoint: {endpoint}\n    \
             access_key: test\n    secret_key: test\n    port: {port}\n    refresh_interval: 2s\n    \
             filters:\n    - name: instance-state-name\n      values: [running]\n  relabel_configs:\n  \
             - source_labels: [__meta_ec2_tag_Name]\n    regex: '{keep}'\n    action: keep\n  \
             - source_labels: [__meta_ec2_private_ip]\n    regex: '(.+)'\n    replacement: '${{1}}:{port}'\n    \
             target_label: __address__\n  - source_labels: [__meta_ec2_tag_Name]\n    target_label: instance\n",
            region = moto::REGION,
            endpoint = moto.endpoint(),
        )
    };
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        job("node", node_port, "prod-.+"),
        job("cadvisor", cadvisor_port, "prod-web-.+"),
    )
}

#[test]
fn reference_relabeling_and_terminated_instances_go_away() {
    let moto = Moto::start();
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let (node_port, _nodes) = Exporter::on_one_port(&hosts, |_| Reply::text("node_load1 0.5\n"));
    let (cadvisor_port, _cadvisors) = Exporter::on_one_port(&hosts, |_| {
        Reply::text("container_last_seen{name=\"app\"} 1\n")
    });
    let web = moto.run_instance("127.0.0.2", &[("Name", "prod-web-1")]);
    moto.run_instance("127.0.0.3", &[("Name", "prod-db-1")]);
    let old = moto.run_instance("127.0.0.4", &[("Name", "prod-web-old")]);
    moto.stop_instance(&old);
    moto.run_instance("127.0.0.5", &[("team", "no-name-tag")]);

    let promflow = Promflow::start(&reference_config(&moto, node_port, cadvisor_port));
    assert!(
        wait_until(WAIT, || up_instances(&promflow, "node")
            == set(&["prod-web-1", "prod-db-1"])),
        "node job: {:?}",
        up_instances(&promflow, "node")
    );
    assert!(
        wait_until(WAIT, || up_instances(&promflow, "cadvisor")
            == set(&["prod-web-1"])),
        "cadvisor job: {:?}",
        up_instances(&promflow, "cadvisor")
    );
    let node_series = promflow.federate(&[r#"node_load1{job="node"}"#]);
    assert_eq!(node_series.samples.len(), 2, "{node_series:?}");

    moto.terminate_instance(&web);
    assert!(
        wait_until(WAIT, || up_instances(&promflow, "node")
            == set(&["prod-db-1"])),
        "after termination, node job: {:?}",
        up_instances(&promflow, "node")
    );
    assert!(
        wait_until(WAIT, || promflow
            .federate(&[r#"{instance="prod-web-1"}"#])
            .samples
            .is_empty()),
        "the terminated host's series should be stale: {:?}",
        promflow.federate(&[r#"{instance="prod-web-1"}"#])
    );
    let failures = promflow
        .metrics()
        .find(
            "promflow_sd_refresh_failures_total",
            &[("mechanism", "ec2")],
        )
        .map(|s| s.value);
    assert_eq!(failures, Some(0.0));
}
