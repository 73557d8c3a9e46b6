//! The reference setup of deploy/README.md, end to end on loopback, with the shipped
//! files: `deploy/services.yml`, `deploy/main.yml`, the rule files of `queries/` they
//! name and `deploy/alertmanager.yml` with its templates. Three times: promflow on
//! both sides; Prometheus 2.42 as the services instance; Prometheus 2.42 as the main
//! instance (`Side`).
//!
//! What the test changes in the copies it runs: addresses (targets, the DNS port,
//! exporter ports in `__address__` replacements, the EC2 endpoint with moto's region
//! and test keys, the Alertmanager target, the Slack URL, a proxy and CA for Pushover,
//! whose endpoint is fixed in Alertmanager 0.25, the templates' absolute path), and
//! timers: scrape and evaluation intervals 1s, discovery refreshes 1s/5s,
//! Alertmanager's group_wait 1s and group_interval 2s, and in the rule files every
//! `for:` and range `[…]` divided by 60 (20m -> 20s). The services instance's own
//! target is added by a reload once its port is known.
//!
//! Real peers: dnsmasq serving `tasks.myservice` (on port 53 of a 127.53.x.y address,
//! resolved through a private /etc/resolv.conf, when Prometheus is the services
//! instance: it reads no other resolver; needs root), moto_server with three EC2
//! instances tagged `swarm-1`, `swarm-2` and `db-1` whose private IPs are 127.0.0.21-23,
//! a real node_exporter on swarm-1 and db-1, Alertmanager 0.25, Prometheus 2.42.
//! Synthetic (tests/common/fleet.rs): the three tasks of `myservice` (Go-style
//! request counters and latency histograms by function, an `online_devices` gauge),
//! cAdvisor on every host (only the `swarm-` ones may be scraped), and the node
//! exporter of swarm-2, the host whose CPU the test drives over 90% (its counters are
//! the test's, so the load is exact). Slack and Pushover are capture servers checking
//! the documented payloads (tests/common/receiver.rs): one pair for Alertmanager, one
//! for promflow's built-in notifier when main is promflow (same file, run with
//! `--alertmanager.config.file`).

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::alertmanager::Alertmanager;
use common::receiver::check_slack_request;
use common::reference::{
    instances_of, main_config, pushover_pki, targets, tasks_hosts_file, write_scaled_rules,
    Ec2Hosts, MainAddrs, Receivers, Server, ServicesSide, Side, TASKS, WAIT,
};
use common::{wait_for, wait_until, Peer};
use serde_json::Value as Json;

const CPU_RUNBOOK: &str = "https://runbooks.example.com/promflow/hosthighcpuusage";

/// One stack at a time: they share the loopback addresses above.
static SERIAL: Mutex<()> = Mutex::new(());

/// promflow as main: its rules over federated series (OnlineDevicesLow, ServiceDown of
/// a task) fire through the watermark's hold-back for exposed timestamps
/// (`src/holdback.rs`). The same holds for the next test.
#[test]
fn promflow_as_services_and_main() {
    run(Side::Promflow, Side::Promflow);
}

#[test]
fn prometheus_as_services_promflow_as_main() {
    run(Side::Prometheus, Side::Promflow);
}

#[test]
fn promflow_as_services_prometheus_as_main() {
    run(Side::Promflow, Side::Prometheus);
}

/// The label sets of an instant query's result.
fn series(server: &Peer, expr: &str) -> Vec<serde_json::Map<String, Json>> {
    server.query(expr)["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_object().unwrap().clone())
        .collect()
}

fn label_values(server: &Peer, expr: &str, label: &str) -> BTreeSet<String> {
    series(server, expr)
        .iter()
        .filter_map(|m| m.get(label)?.as_str().map(str::to_string))
        .collect()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

// ---------------------------------------------------------------------------

fn run(services_side: Side, main_side: Side) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let hosts = Ec2Hosts::start(&[]);
    let cpu = &hosts.cpu;
    let ServicesSide {
        tasks,
        task_addrs,
        dns,
        server: services,
    } = ServicesSide::start(services_side, "1s");

    // Alertmanager, and the built-in notifier's copy of the same file.
    let pki = pushover_pki();
    let via_am = Receivers::start(&pki);
    let am = Alertmanager::start_with_config(&via_am.config(&pki));
    let builtin = Receivers::start(&pki);
    let files = tempfile::tempdir().unwrap();
    let builtin_config = files.path().join("alertmanager.yml");
    std::fs::write(&builtin_config, builtin.config(&pki)).unwrap();
    let rules_dir = files.path().join("queries");
    std::fs::create_dir(&rules_dir).unwrap();
    write_scaled_rules(&rules_dir);

    let addrs = MainAddrs {
        rules_dir: &rules_dir,
        services: services.addr().to_string(),
        alertmanagers: vec![am.addr().to_string()],
        moto: &hosts.moto,
        node_port: hosts.node_port,
        cadvisor_port: hosts.cadvisor_port,
    };
    let builtin_flag = format!("--alertmanager.config.file={}", builtin_config.display());
    let main = Server::start(
        main_side,
        |own| main_config(own, &addrs),
        &[&builtin_flag],
        None,
    );
    eprintln!("stack up after {:?}", started.elapsed());

    // 1. The tasks are found through DNS and federated to main with their own job
    //    and instance (honor_labels), plus the services' external label.
    let all_tasks = set(&task_addrs);
    assert!(
        wait_until(WAIT, || label_values(
            &main,
            r#"up{job="myservice"} == 1"#,
            "instance"
        ) == all_tasks),
        "main has no up == 1 of the three tasks: {:?}\nservices targets: {:?}",
        series(&main, r#"up{job="myservice"}"#),
        targets(&services)
    );
    let requests = wait_for(WAIT, || {
        let got = series(&main, r#"http_requests_total{job="myservice"}"#);
        (got.len() == 12).then_some(got)
    })
    .unwrap_or_else(|| {
        panic!(
            "federated requests: {:?}",
            series(&main, "http_requests_total")
        )
    });
    for m in &requests {
        assert!(all_tasks.contains(m["instance"].as_str().unwrap()), "{m:?}");
        assert_eq!(m["promflow"], "services", "{m:?}");
        assert!(
            !m.contains_key("exported_job") && !m.contains_key("exported_instance"),
            "{m:?}"
        );
    }
    let buckets = series(
        &main,
        r#"http_request_duration_seconds_bucket{job="myservice",function="login"}"#,
    );
    assert_eq!(buckets.len(), 3 * 6, "{buckets:?}");

    // 2. EC2: node_exporter on every host, cAdvisor on the swarm- hosts, named after
    //    their Name tag; cgroups without a container name dropped.
    let names = |n: &[&str]| -> BTreeSet<String> { n.iter().map(|s| s.to_string()).collect() };
    assert!(
        wait_until(WAIT, || instances_of(&main, "node")
            == names(&["swarm-1", "swarm-2", "db-1"])
            && instances_of(&main, "cadvisor")
                == names(&["swarm-1", "swarm-2"])),
        "main's EC2 targets: {:?}",
        targets(&main)
    );
    assert!(wait_until(WAIT, || !series(
        &main,
        r#"container_last_seen{job="cadvisor"}"#
    )
    .is_empty()));
    assert_eq!(
        series(&main, r#"container_last_seen{name=""}"#),
        Vec::<serde_json::Map<String, Json>>::new()
    );

    // 3. swarm-2's CPU goes over 90%; the alert is pending for `for` (20s here).
    cpu.set_busy(true);
    let busy_at = Instant::now();

    // 4. While it is pending: a task removed from DNS loses its target on the
    //    services instance; on main its federated series stop being updated (they
    //    carry timestamps, so no staleness marks them: they leave queries after the
    //    lookback delta, 5m, as in Prometheus). It is not a down service.
    dns.set_hosts(&tasks_hosts_file(&TASKS[..2]));
    let two_tasks = set(&task_addrs[..2]);
    let age = |cmp: &str| {
        label_values(
            &main,
            &format!(r#"time() - timestamp(up{{job="myservice"}}) {cmp} 4"#),
            "instance",
        )
    };
    assert!(
        wait_until(WAIT, || instances_of(&services, "myservice") == two_tasks
            && age(">") == set(&task_addrs[2..])
            && age("<") == two_tasks),
        "task 3 still there: services {:?}, main {:?}",
        targets(&services),
        main.query(r#"time() - timestamp(up{job="myservice"})"#)
    );
    assert_eq!(
        series(&main, r#"ALERTS{alertname="ServiceDown",job="myservice"}"#),
        Vec::<serde_json::Map<String, Json>>::new(),
        "a task removed from DNS is not down"
    );

    // 5. The CPU alert fires on main, not before `for`, and reaches Alertmanager and
    //    the built-in notifier, then Slack and Pushover.
    // (The real node_exporters report this machine's CPU, which may be busy too: only
    // swarm-2's alert is looked at.)
    let cpu_firing =
        r#"ALERTS{alertname="HostHighCpuUsage",alertstate="firing",instance="swarm-2"}"#;
    assert!(
        wait_until(WAIT, || !series(&main, cpu_firing).is_empty()),
        "HostHighCpuUsage did not fire: {:?}",
        main.query(r#"1 - avg by (job, instance) (rate(node_cpu_seconds_total{mode="idle"}[5s]))"#)
    );
    let fired_after = busy_at.elapsed();
    assert!(
        fired_after >= Duration::from_secs(20),
        "fired {fired_after:?} after the load began"
    );
    assert_eq!(
        label_values(&main, cpu_firing, "instance"),
        names(&["swarm-2"])
    );
    let in_alertmanager = |alerts: Json| {
        alerts.as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == "HostHighCpuUsage" && a["labels"]["instance"] == "swarm-2"
        })
    };
    assert!(
        wait_until(WAIT, || in_alertmanager(am.alerts())),
        "not in Alertmanager: {}",
        am.alerts()
    );
    let receivers: Vec<&Receivers> = match main_side {
        Side::Promflow => {
            let alerts = || serde_json::from_str(&main.get_ok("/api/v2/alerts")).unwrap();
            assert!(
                wait_until(WAIT, || in_alertmanager(alerts())),
                "not in the built-in notifier"
            );
            vec![&via_am, &builtin]
        }
        Side::Prometheus => vec![&via_am],
    };
    let title = "HostHighCpuUsage on swarm-2 (node) is";
    for r in &receivers {
        assert!(
            wait_until(WAIT, || !r.slack_titled(title).is_empty()
                && !r.pushover_titled(title).is_empty()),
            "no Slack and Pushover message for the CPU alert: {:?}",
            r.slack
                .requests()
                .iter()
                .map(check_slack_request)
                .collect::<Vec<_>>()
        );
    }

    // 6. The load ends: the alert resolves, and each receiver got one firing and one
    //    resolved message.
    cpu.set_busy(false);
    assert!(
        wait_until(WAIT, || series(
            &main,
            r#"ALERTS{alertname="HostHighCpuUsage",instance="swarm-2"}"#
        )
        .is_empty()),
        "HostHighCpuUsage did not resolve"
    );
    for r in &receivers {
        assert!(
            wait_until(WAIT, || r.slack_titled(title).len() >= 2
                && r.pushover_titled(title).len() >= 2),
            "no resolved message: {:?}",
            r.slack_titled(title)
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    for r in &receivers {
        let slack = r.slack_titled(title);
        assert_eq!(
            slack.len(),
            2,
            "Slack: once firing, once resolved: {slack:#?}"
        );
        for (message, state, color, mark) in [
            (&slack[0], "firing", "danger", ":fire:"),
            (&slack[1], "resolved", "good", ":white_check_mark:"),
        ] {
            let a = &message["attachments"][0];
            assert_eq!(message["channel"], "#alerts");
            assert_eq!(a["title"], format!("{title} {state}"));
            assert_eq!(a["fallback"], format!("{title} {state}"));
            assert_eq!(a["title_link"], CPU_RUNBOOK);
            assert_eq!(a["color"], color);
            assert_eq!(
                a["text"],
                format!("{mark} CPU over 90% on swarm-2 (<{CPU_RUNBOOK}|runbook>)\n")
            );
        }
        let pushover = r.pushover_titled(title);
        assert_eq!(
            pushover.len(),
            2,
            "Pushover: once firing, once resolved: {pushover:#?}"
        );
        for (form, state, priority) in [
            (&pushover[0], "firing", "1"),
            (&pushover[1], "resolved", "0"),
        ] {
            assert_eq!(form["title"], format!("{title} {state}"));
            assert_eq!(form["url"], CPU_RUNBOOK);
            assert_eq!(form["url_title"], "Runbook");
            assert_eq!(form["priority"], priority);
            assert!(
                form["message"]
                    .starts_with("CPU over 90% on swarm-2\nCPU of swarm-2 (job node) has been "),
                "{form:?}"
            );
            assert_eq!(form["user"], "uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
        }
    }
    if receivers.len() == 2 {
        // The built-in notifier says what Alertmanager says.
        assert_eq!(builtin.slack_titled(title), via_am.slack_titled(title));
        assert_eq!(
            builtin.pushover_titled(title),
            via_am.pushover_titled(title)
        );
    }

    // 7. Online devices: 3 x 60 (the removed task's last value still counts on
    //    main), then 10 + 10 + 60 < 100.
    tasks[0].set_devices(10);
    tasks[1].set_devices(10);
    assert!(
        wait_until(WAIT, || !series(
            &main,
            r#"ALERTS{alertname="OnlineDevicesLow",alertstate="firing",job="myservice"}"#
        )
        .is_empty()),
        "OnlineDevicesLow did not fire: {:?}\nALERTS: {:?}\nlate samples: {:?}",
        main.query(r#"sum by (job) (online_devices)"#),
        series(&main, "ALERTS"),
        main.get_ok("/metrics")
            .lines()
            .filter(|l| l.starts_with("promflow_samples_late_total"))
            .collect::<Vec<_>>()
    );
    assert!(
        wait_until(WAIT, || !via_am
            .slack_titled("OnlineDevicesLow (myservice) is firing")
            .is_empty()),
        "no Slack message for OnlineDevicesLow: {:?}",
        via_am
            .slack
            .requests()
            .iter()
            .map(check_slack_request)
            .collect::<Vec<_>>()
    );
    tasks[0].set_devices(60);
    tasks[1].set_devices(60);

    // 8. A task that is in DNS but does not answer is down.
    tasks[1].set_down(true);
    let down = format!(
        r#"ALERTS{{alertname="ServiceDown",alertstate="firing",job="myservice",instance="{}"}}"#,
        task_addrs[1]
    );
    assert!(
        wait_until(WAIT, || !series(&main, &down).is_empty()),
        "ServiceDown did not fire for the hung task: {:?}",
        series(&main, r#"up{job="myservice"}"#)
    );
    assert!(wait_until(WAIT, || !via_am
        .slack_titled(&format!(
            "ServiceDown on {} (myservice) is firing",
            task_addrs[1]
        ))
        .is_empty()));
    eprintln!(
        "{services_side:?} services, {main_side:?} main: done in {:?}",
        started.elapsed()
    );
}
