//! Discovery back ends that go away: the DNS server (dnsmasq, killed by its PID) and
//! the EC2 API (moto_server, killed by its PID). The last discovered targets are kept
//! and still scraped, and the failures are counted under Prometheus 2.42's names:
//! `prometheus_sd_refresh_failures_total{mechanism}` for both,
//! `prometheus_sd_dns_lookups_total` / `prometheus_sd_dns_lookup_failures_total` for
//! DNS. For EC2 a real Prometheus 2.42 scrapes the same config beside promflow and is
//! the oracle: it too keeps its targets and counts the failures under that name.
//! (Prometheus's DNS discovery reads /etc/resolv.conf only, so it cannot be pointed at
//! dnsmasq's port: DNS has no side-by-side run.)
//!
//! Real peers: dnsmasq, moto_server (see tests/common), Prometheus 2.42; the targets
//! are exporters of this test on 127.0.0.2–127.0.0.3.

mod common;

use common::dnsmasq::Dnsmasq;
use common::exporter::{Exporter, Reply};
use common::moto::{self, Moto};
use common::{wait_until, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);
const HOSTS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

/// The `instance`s of active targets that are up, from `/api/v1/targets`.
fn up_targets(targets_json: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(targets_json).unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["health"] == "up")
        .map(|t| t["labels"]["instance"].as_str().unwrap().to_string())
        .collect()
}

fn counter(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn dns_server_down_keeps_targets_and_counts_failures() {
    let (port, _exporters) = Exporter::on_one_port(&HOSTS, |_| Reply::text("fleet_metric 1\n"));
    let hosts: String = HOSTS
        .iter()
        .map(|ip| format!("{ip} tasks.fleet\n"))
        .collect();
    let dns = Dnsmasq::start(&hosts, &[]);
    let promflow = Promflow::start_with_args(
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: fleet\n  dns_sd_configs:\n  - names: [tasks.fleet]\n    type: A\n    \
             port: {port}\n    refresh_interval: 1s\n"
        ),
        &[&format!("--discovery.dns.nameserver={}", dns.addr())],
    );
    let want: BTreeSet<String> = HOSTS.iter().map(|ip| format!("{ip}:{port}")).collect();
    assert!(
        wait_until(WAIT, || up_targets(&promflow.get_ok("/api/v1/targets"))
            == want),
        "targets: {:?}",
        up_targets(&promflow.get_ok("/api/v1/targets"))
    );
    let metrics = promflow.get_ok("/metrics");
    assert!(counter(&metrics, "prometheus_sd_dns_lookups_total") >= 1.0);
    assert_eq!(
        counter(&metrics, "prometheus_sd_dns_lookup_failures_total"),
        0.0
    );

    drop(dns); // SIGKILL through its child handle (its PID)
    assert!(
        wait_until(WAIT, || {
            let metrics = promflow.get_ok("/metrics");
            counter(&metrics, "prometheus_sd_dns_lookup_failures_total") >= 2.0
                && counter(
                    &metrics,
                    "prometheus_sd_refresh_failures_total{mechanism=\"dns\"}",
                ) >= 2.0
        }),
        "failed lookups not counted:\n{}",
        promflow.get_ok("/metrics")
    );
    // Several failed refreshes later, the last targets are still there and scraped.
    assert_eq!(up_targets(&promflow.get_ok("/api/v1/targets")), want);
    let v: Value = serde_json::from_str(&promflow.get_ok(&common::http::with_query(
        "/api/v1/query",
        &[("query", "count_over_time(fleet_metric[3s])")],
    )))
    .unwrap();
    assert_eq!(
        v["data"]["result"].as_array().unwrap().len(),
        HOSTS.len(),
        "both targets scraped in the last 3s: {v}"
    );
}

#[test]
fn ec2_api_down_keeps_targets_and_counts_failures_like_prometheus() {
    let moto = Moto::start();
    let (port, _exporters) = Exporter::on_one_port(&HOSTS, |_| Reply::text("fleet_metric 1\n"));
    for (i, ip) in HOSTS.iter().enumerate() {
        moto.run_instance(ip, &[("Name", &format!("fleet-{i}"))]);
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: fleet\n  ec2_sd_configs:\n  - region: {region}\n    endpoint: {endpoint}\n    \
         access_key: test\n    secret_key: test\n    port: {port}\n    refresh_interval: 1s\n  \
         relabel_configs:\n  - source_labels: [__meta_ec2_private_ip]\n    regex: '(.+)'\n    \
         replacement: '${{1}}:{port}'\n    target_label: __address__\n",
        region = moto::REGION,
        endpoint = moto.endpoint(),
    );
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let want: BTreeSet<String> = HOSTS.iter().map(|ip| format!("{ip}:{port}")).collect();
    for (name, get) in [
        (
            "promflow",
            Box::new(|| promflow.get_ok("/api/v1/targets")) as Box<dyn Fn() -> String>,
        ),
        (
            "prometheus",
            Box::new(|| prometheus.get_ok("/api/v1/targets")),
        ),
    ] {
        assert!(
            wait_until(WAIT, || up_targets(&get()) == want),
            "{name} targets: {:?}",
            up_targets(&get())
        );
    }

    moto.signal("KILL");
    let failures = "prometheus_sd_refresh_failures_total{mechanism=\"ec2\"}";
    for (name, get) in [
        (
            "prometheus",
            Box::new(|| prometheus.get_ok("/metrics")) as Box<dyn Fn() -> String>,
        ),
        ("promflow", Box::new(|| promflow.get_ok("/metrics"))),
    ] {
        assert!(
            wait_until(WAIT, || counter(&get(), failures) >= 2.0),
            "{name}: {failures} = {}",
            counter(&get(), failures)
        );
    }
    // Both keep the last targets, up.
    assert_eq!(up_targets(&prometheus.get_ok("/api/v1/targets")), want);
    assert_eq!(up_targets(&promflow.get_ok("/api/v1/targets")), want);
    assert!(
        promflow
            .log()
            .contains("keeping the last discovered targets"),
        "the failure should be logged"
    );
}
