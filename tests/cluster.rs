//! A promflow cluster of three processes on 127.0.0.1 (`--cluster.processes`,
//! `--cluster.process-id`, `--cluster.hostfile`), beside a real Prometheus 2.42 that
//! scrapes the same targets alone.
//!
//! Each target is scraped by exactly one process (rendezvous placement: the targets
//! each process scrapes itself are disjoint sets whose union is every target), and any
//! of the processes answers for the whole cluster: `/api/v1/targets` lists every
//! target, queries read the others' storage and give the single Prometheus's answers.

mod common;

use common::exporter::{Exporter, Reply};
use common::{api_seconds, free_port, now_ms, wait_until, Prometheus, Promflow, PromflowLaunch};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

const TARGETS: usize = 9;

fn sorted(mut data: Value) -> Value {
    if let Some(result) = data["result"].as_array_mut() {
        result.sort_by_key(|r| r["metric"].to_string());
    }
    data
}

/// The `instance` of every active target in a process's `/api/v1/targets`: of the
/// whole cluster, or (`local`: as another process asks it) of its own share.
fn targets_of(process: &Promflow, local: bool) -> BTreeSet<String> {
    let headers: &[(&str, &str)] = if local {
        &[("x-promflow-cluster-local", "1")]
    } else {
        &[]
    };
    let url = process.url("/api/v1/targets");
    let resp = common::http::send("GET", &url, headers, None, b"").unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body: Value = serde_json::from_str(&resp.body).unwrap();
    body["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["labels"]["instance"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_processes_scrape_each_target_once_and_answer_for_the_cluster() {
    let exporters: Vec<Exporter> = (0..TARGETS)
        .map(|k| {
            Exporter::start(Reply::text(&format!(
                "# TYPE demo_value gauge\ndemo_value{{k=\"{k}\"}} {k}\n"
            )))
        })
        .collect();
    let targets: Vec<String> = exporters
        .iter()
        .map(|e| format!("'{}'", e.addr()))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    let webs: Vec<SocketAddr> = (0..3)
        .map(|_| ([127, 0, 0, 1], free_port()).into())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts");
    let lines: Vec<String> = webs
        .iter()
        .map(|web| format!("127.0.0.1:{} http://{web}", free_port()))
        .collect();
    std::fs::write(&hostfile, lines.join("\n") + "\n").unwrap();
    let processes: Vec<Promflow> = (0..3)
        .map(|i| {
            let args = [
                "--cluster.processes=3".to_string(),
                format!("--cluster.process-id={i}"),
                format!("--cluster.hostfile={}", hostfile.display()),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Promflow::launch(PromflowLaunch {
                config_yaml: &config,
                extra_args: &args,
                listen: Some(webs[i]),
                ..PromflowLaunch::default()
            })
        })
        .collect();
    let oracle = Prometheus::start(&config);

    // Placement: disjoint shares covering every target.
    let all: BTreeSet<String> = exporters.iter().map(|e| e.addr().to_string()).collect();
    let shares: Vec<BTreeSet<String>> = processes.iter().map(|p| targets_of(p, true)).collect();
    let mut union = BTreeSet::new();
    for share in &shares {
        assert!(union.is_disjoint(share), "{shares:?}");
        union.extend(share.iter().cloned());
    }
    assert_eq!(union, all);
    assert!(
        shares.iter().filter(|s| !s.is_empty()).count() >= 2,
        "{shares:?}"
    );
    // One face: each process lists every target of the cluster.
    for p in &processes {
        assert_eq!(targets_of(p, false), all);
    }

    // One face: once every target has been scraped, each process answers for all.
    let count = |p: &Promflow| p.query("count(up)")["result"][0]["value"][1].clone();
    let every = Value::String(TARGETS.to_string());
    for p in &processes {
        assert!(
            wait_until(Duration::from_secs(30), || count(p) == every),
            "count(up) = {}",
            count(p)
        );
    }
    assert!(wait_until(Duration::from_secs(30), || oracle
        .query("count(up)")["result"][0]["value"][1]
        == every));
    // Every target scraped a few times by each side since.
    std::thread::sleep(Duration::from_secs(3));
    let at = now_ms() - 500;
    for expr in [
        "demo_value",
        "sum(demo_value)",
        "count by (job) (up)",
        "max_over_time(demo_value[10s])",
        "demo_value > 4",
    ] {
        let theirs = sorted(oracle.query_at(expr, at));
        assert!(!theirs["result"].as_array().unwrap().is_empty(), "{expr}");
        for (i, p) in processes.iter().enumerate() {
            let ours = sorted(p.query_at(expr, at));
            assert_eq!(ours, theirs, "process {i}: {expr}");
        }
    }
    // A range query too.
    let range = common::http::with_query(
        "/api/v1/query_range",
        &[
            ("query", "sum(demo_value)"),
            ("start", &api_seconds(at - 2_000)),
            ("end", &api_seconds(at)),
            ("step", "1"),
        ],
    );
    let ours: Value = serde_json::from_str(&processes[1].get_ok(&range)).unwrap();
    let theirs: Value = serde_json::from_str(&oracle.get_ok(&range)).unwrap();
    assert_eq!(ours["data"], theirs["data"]);
}
