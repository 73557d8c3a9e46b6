//! DNS service discovery against a real DNS server: the Docker Swarm case
//! (`tasks.<service>` A records, one per task) and SRV records.
//!
//! Real peers: `dnsmasq` (Debian package `dnsmasq`, installed by `.ci/run`) on a free
//! high port of 127.0.0.1, pointed at by `--discovery.dns.nameserver`. The "tasks" are
//! small exporters (`tests/common/exporter.rs`) listening on 127.0.0.2–127.0.0.5, all on
//! one port, as Swarm tasks do on their overlay IPs.

mod common;

use common::dnsmasq::Dnsmasq;
use common::exporter::{Exporter, Reply};
use common::{wait_for, wait_until, Peer, Promflow};
use std::collections::BTreeSet;
use std::time::Duration;

/// Longer than any refresh interval used here plus a scrape interval.
const WAIT: Duration = Duration::from_secs(30);

fn hosts(name: &str, ips: &[&str]) -> String {
    ips.iter().map(|ip| format!("{ip} {name}\n")).collect()
}

/// The instances of `job` whose `up` is federated with value 1.
fn up_instances(promflow: &Peer, job: &str) -> BTreeSet<String> {
    promflow
        .federate(&[&format!(r#"up{{job="{job}"}}"#)])
        .samples
        .iter()
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.label("instance").map(str::to_string))
        .collect()
}

/// The `ip` labels of the `task_info` series federated for `job` (stale ones are absent).
fn task_series(promflow: &Peer, job: &str) -> BTreeSet<String> {
    promflow
        .federate(&[&format!(r#"task_info{{job="{job}"}}"#)])
        .samples
        .iter()
        .filter_map(|s| s.label("ip").map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn sd_counter(promflow: &Peer, name: &str, mechanism: &str) -> f64 {
    promflow
        .metrics()
        .find(name, &[("mechanism", mechanism)])
        .unwrap_or_else(|| panic!("{name}{{mechanism={mechanism}}} missing from /metrics"))
        .value
}

#[test]
fn swarm_tasks_are_followed_through_a_records() {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let (port, _tasks) = Exporter::on_one_port(&ips, |ip| {
        Reply::text(&format!("task_info{{ip=\"{ip}\"}} 1\n"))
    });
    let dns = Dnsmasq::start(&hosts("tasks.myservice", &ips[..3]), &[]);
    let promflow = Promflow::start_with_args(
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: swarm\n  dns_sd_configs:\n  - names: [tasks.myservice]\n    type: A\n    \
             port: {port}\n    refresh_interval: 2s\n"
        ),
        &[&format!("--discovery.dns.nameserver={}", dns.addr())],
    );
    let first: BTreeSet<String> = ips[..3].iter().map(|ip| format!("{ip}:{port}")).collect();
    assert!(
        wait_until(WAIT, || up_instances(&promflow, "swarm") == first),
        "expected the three tasks up, got {:?}\ndnsmasq:\n{}",
        up_instances(&promflow, "swarm"),
        dns.log()
    );
    assert!(wait_until(WAIT, || task_series(&promflow, "swarm") == set(&ips[..3])));

    // A task is destroyed (.4) and a new one created (.5).
    dns.set_hosts(&hosts(
        "tasks.myservice",
        &["127.0.0.2", "127.0.0.3", "127.0.0.5"],
    ));
    let second: BTreeSet<String> = ["127.0.0.2", "127.0.0.3", "127.0.0.5"]
        .iter()
        .map(|ip| format!("{ip}:{port}"))
        .collect();
    assert!(
        wait_until(WAIT, || up_instances(&promflow, "swarm") == second),
        "expected {second:?}, got {:?}",
        up_instances(&promflow, "swarm")
    );
    // The destroyed task's series got stale markers: federation no longer has them.
    assert!(
        wait_until(WAIT, || task_series(&promflow, "swarm")
            == set(&["127.0.0.2", "127.0.0.3", "127.0.0.5"])),
        "task_info series: {:?}",
        task_series(&promflow, "swarm")
    );
    assert_eq!(
        sd_counter(&promflow, "promflow_sd_refresh_failures_total", "dns"),
        0.0
    );

    // The DNS server goes away: refreshes fail, are counted, and the targets stay.
    drop(dns);
    assert!(
        wait_until(WAIT, || sd_counter(
            &promflow,
            "promflow_sd_refresh_failures_total",
            "dns"
        ) >= 1.0),
        "a failed refresh should be counted"
    );
    assert_eq!(up_instances(&promflow, "swarm"), second);
    assert!(
        promflow
            .log()
            .contains("keeping the last discovered targets"),
        "the failure should be logged"
    );
}

#[test]
fn srv_records_give_host_port_and_meta_labels() {
    let first = Exporter::start(Reply::text("srv_info 1\n"));
    let second = Exporter::start(Reply::text("srv_info 2\n"));
    // SRV targets are host names the scraper resolves with the system resolver:
    // `localhost` is in every /etc/hosts.
    let dns = Dnsmasq::start(
        "",
        &[
            format!(
                "--srv-host=_metrics._tcp.example.test,localhost,{}",
                first.addr().port()
            ),
            format!(
                "--srv-host=_metrics._tcp.example.test,localhost,{}",
                second.addr().port()
            ),
        ],
    );
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: srv\n  dns_sd_configs:\n  - names: [_metrics._tcp.example.test]\n    \
         refresh_interval: 2s\n  relabel_configs:\n  - source_labels: [__meta_dns_srv_record_target, __meta_dns_srv_record_port]\n    \
         target_label: srv\n  - source_labels: [__meta_dns_name]\n    target_label: dns_name\n",
        &[&format!("--discovery.dns.nameserver={}", dns.addr())],
    );
    let expected: BTreeSet<String> = [first.addr().port(), second.addr().port()]
        .iter()
        .map(|p| format!("localhost:{p}"))
        .collect();
    assert!(
        wait_until(WAIT, || up_instances(&promflow, "srv") == expected),
        "expected {expected:?}, got {:?}\ndnsmasq:\n{}",
        up_instances(&promflow, "srv"),
        dns.log()
    );
    let fed = wait_for(WAIT, || {
        let fed = promflow.federate(&[r#"srv_info{job="srv"}"#]);
        (fed.samples.len() == 2).then_some(fed)
    })
    .expect("both SRV targets scraped");
    for sample in &fed.samples {
        let instance = sample.label("instance").unwrap();
        let port = instance.rsplit(':').next().unwrap();
        // The SRV target keeps its trailing dot, as in Prometheus.
        assert_eq!(
            sample.label("srv"),
            Some(format!("localhost.;{port}").as_str())
        );
        assert_eq!(sample.label("dns_name"), Some("_metrics._tcp.example.test"));
    }
}
