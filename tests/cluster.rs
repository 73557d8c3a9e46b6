//! A promflow cluster of three processes on 127.0.0.1 (`--cluster.processes`,
//! `--cluster.process-id`, `--cluster.hostfile`), beside a real Prometheus 2.42 that
//! scrapes the same targets alone.
//!
//! Each target is scraped by exactly one process (rendezvous placement: the targets
//! each process scrapes itself are disjoint sets whose union is every target), and any
//! of the processes answers for the whole cluster: `/api/v1/targets` lists every
//! target, queries read the others' storage and give the single Prometheus's answers,
//! `/federate` (text and protobuf), `/api/v1/series`, the label APIs and the metadata
//! APIs hold every process's series and targets as the single Prometheus's do, a push
//! stream on one process carries the others' series, a federation view registered on
//! one process is every process's (its `/federate?view=` and stream are the cluster's
//! `match[]` answers), and a rule group registered over the rules API on any process
//! is evaluated by the first.
//! Losing a process ends the others with one clear line; a cluster restarted after
//! that on the same storage answers for the time before as it did and keeps its
//! alerts' `activeAt` (beside a real Prometheus 2.42 killed and restarted).

mod common;

use common::exporter::{Exporter, Reply};
use common::exposition::Exposition;
use common::remote_write;
use common::stream_client::StreamClient;
use common::{api_seconds, free_port, now_ms, wait_until, Prometheus, Promflow, PromflowLaunch};
use promflow::scrape::exposition::metrics_proto::MetricFamily;
use prost::Message;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

const TARGETS: usize = 9;

/// A recording rule over every target, one reading it beside the scraped series
/// (evaluated over storage: every process's, as queries read it) and an alert on some
/// of them: evaluated by the first process over the whole cluster's samples.
const RULES: &str = "groups:
  - name: demo
    rules:
      - record: job:demo_value:sum
        expr: sum by (job) (demo_value)
      - record: demo_value:share
        expr: demo_value / on (job) group_left job:demo_value:sum
      - alert: DemoHigh
        expr: demo_value > 6
";

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

/// The gauge `demo_value{k}` of exporter `k`, at `value`.
fn demo_reply(k: usize, value: usize) -> Reply {
    Reply::text(&format!(
        "# TYPE demo_value gauge\ndemo_value{{k=\"{k}\"}} {value}\n"
    ))
}

/// `n` exporters, exporter `k` serving [`demo_reply`]`(k, value(k))`, and a config
/// scraping them every second as job `demo` (`rules`: a rule file for it, in `dir`).
fn demo_fleet(
    n: usize,
    value: impl Fn(usize) -> usize,
    rules: Option<&str>,
    dir: &std::path::Path,
) -> (Vec<Exporter>, String) {
    let exporters: Vec<Exporter> = (0..n)
        .map(|k| Exporter::start(demo_reply(k, value(k))))
        .collect();
    let targets: Vec<String> = exporters
        .iter()
        .map(|e| format!("'{}'", e.addr()))
        .collect();
    let rule_files = rules.map_or_else(String::new, |rules| {
        let path = dir.join("rules.yml");
        std::fs::write(&path, rules).unwrap();
        format!("rule_files: ['{}']\n", path.display())
    });
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    (exporters, config)
}

#[test]
fn three_processes_scrape_each_target_once_and_answer_for_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (exporters, config) = demo_fleet(TARGETS, |k| k, Some(RULES), dir.path());
    let processes = start_cluster(3, &config, dir.path());
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
    std::thread::sleep(Duration::from_secs(5));
    let at = now_ms() - 1_500;
    // The rules have evaluated over every process's samples.
    let recorded = |p: &Promflow| p.query("job:demo_value:sum")["result"][0]["value"][1].clone();
    for p in &processes {
        assert!(
            wait_until(Duration::from_secs(30), || recorded(p) == "36"),
            "job:demo_value:sum = {}",
            recorded(p)
        );
    }
    assert!(wait_until(Duration::from_secs(30), || recorded_oracle(
        &oracle
    ) == "36"));
    // The spread rules' records crossed between the processes, their label sets whole
    // once, then as indices of the labels dictionary (`/metrics`).
    let exchanged = |name: &str| -> f64 {
        processes
            .iter()
            .map(|p| p.metrics().sum(name).unwrap())
            .sum()
    };
    assert!(wait_until(Duration::from_secs(30), || exchanged(
        "promflow_engine_exchange_label_refs_total"
    ) > 0.0));
    assert!(exchanged("promflow_engine_exchange_labels_sent_total") > 0.0);
    for expr in [
        "demo_value",
        "job:demo_value:sum",
        "demo_value:share",
        "ALERTS",
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
    // Every process shows the rule host's alerts: the two firing ones.
    for (i, p) in processes.iter().enumerate() {
        let alerts: Value = serde_json::from_str(&p.get_ok("/api/v1/alerts")).unwrap();
        let names: BTreeSet<String> = alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}/{}", a["labels"]["k"], a["state"]))
            .collect();
        let want: BTreeSet<String> = ["\"7\"/\"firing\"", "\"8\"/\"firing\""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, want, "process {i}");
    }

    federate_series_and_labels_as_the_oracle(&processes, &oracle);
    stream_carries_the_other_processes_series(&processes[2], &shares[2]);
    rules_registered_anywhere_are_evaluated_by_the_first(&processes, &oracle);
}

/// A `/federate` body as series key -> value.
fn federated(body: &Exposition) -> BTreeMap<String, f64> {
    body.samples.iter().map(|s| (s.series(), s.value)).collect()
}

/// A process's `/federate` for `params` in the protobuf format, as series key -> value.
fn federated_protobuf(process: &Promflow, params: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let protobuf = common::http::send(
        "GET",
        &process.url(&common::http::with_query("/federate", params)),
        &[("Accept", common::protobuf::PROTOBUF)],
        None,
        b"",
    )
    .unwrap();
    assert_eq!(protobuf.status, 200, "{}", protobuf.body);
    let mut body: &[u8] = &protobuf.body_bytes;
    let mut series = BTreeMap::new();
    while !body.is_empty() {
        let family = MetricFamily::decode_length_delimited(&mut body).unwrap();
        for m in &family.metric {
            let labels = m
                .label
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            let key = common::exposition::series_key(family.name(), &labels);
            series.insert(key, m.untyped.as_ref().and_then(|u| u.value).unwrap());
        }
    }
    series
}

/// Series whose values the two sides agree on (not durations or times).
fn same_values(series: &str) -> bool {
    !series.starts_with("scrape_duration_seconds") && !series.starts_with("ALERTS_FOR_STATE")
}

/// Each process's `/federate`, `/api/v1/series`, `/api/v1/labels` and label values
/// hold the whole cluster's series, as the single Prometheus's do.
fn federate_series_and_labels_as_the_oracle(processes: &[Promflow], oracle: &common::Peer) {
    let matchers = ["{job=\"demo\"}"];
    let theirs = federated(&oracle.federate(&matchers));
    assert!(
        theirs.keys().any(|k| k.starts_with("demo_value")),
        "{theirs:?}"
    );
    assert!(
        theirs.keys().any(|k| k.starts_with("ALERTS{")),
        "{theirs:?}"
    );
    for (i, p) in processes.iter().enumerate() {
        let ours = federated(&p.federate(&matchers));
        let keys = |m: &BTreeMap<String, f64>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&ours), keys(&theirs), "process {i}: /federate series");
        for (series, value) in &theirs {
            if same_values(series) {
                assert_eq!(ours[series], *value, "process {i}: /federate {series}");
            }
        }
    }
    // The protobuf form: the same series.
    let ours = federated_protobuf(&processes[2], &[("match[]", matchers[0])]);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "process 2: /federate in protobuf"
    );

    // Series, label names and values, asked with GET and with POST.
    let series = "/api/v1/series?match[]=%7Bjob%3D%22demo%22%7D";
    let series_post = |p: &common::Peer| {
        let resp = common::http::send(
            "POST",
            &p.url("/api/v1/series"),
            &[],
            Some("application/x-www-form-urlencoded"),
            b"match[]=%7B__name__%3D~%22demo_value%7Cup%22%7D",
        )
        .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body);
        serde_json::from_str::<Value>(&resp.body).unwrap()["data"].clone()
    };
    let data = |p: &common::Peer, path: &str| {
        serde_json::from_str::<Value>(&p.get_ok(path)).unwrap()["data"].clone()
    };
    let paths = [
        series,
        "/api/v1/labels",
        "/api/v1/labels?match[]=demo_value",
        "/api/v1/label/__name__/values",
        "/api/v1/label/instance/values",
        "/api/v1/label/k/values?match[]=demo_value",
    ];
    for path in paths {
        let theirs = data(oracle, path);
        assert!(!theirs.as_array().unwrap().is_empty(), "{path}");
        for (i, p) in processes.iter().enumerate() {
            assert_eq!(data(p, path), theirs, "process {i}: {path}");
        }
    }
    let theirs = series_post(oracle);
    for (i, p) in processes.iter().enumerate() {
        assert_eq!(series_post(p), theirs, "process {i}: POST /api/v1/series");
    }
    // Metadata: of every process's targets.
    let by_target = |mut data: Value| {
        let list = data.as_array_mut().unwrap();
        list.sort_by_key(|e| e["target"]["instance"].to_string());
        data
    };
    let metadata = "/api/v1/targets/metadata?metric=demo_value";
    let theirs = by_target(data(oracle, metadata));
    assert_eq!(theirs.as_array().unwrap().len(), TARGETS, "{theirs}");
    for (i, p) in processes.iter().enumerate() {
        assert_eq!(
            by_target(data(p, metadata)),
            theirs,
            "process {i}: {metadata}"
        );
        assert_eq!(
            data(p, "/api/v1/metadata"),
            data(oracle, "/api/v1/metadata"),
            "process {i}: /api/v1/metadata"
        );
    }
}

/// A stream client on one process sees the series of every process: all of them in
/// its snapshot, and then samples scraped by the others.
fn stream_carries_the_other_processes_series(process: &Promflow, own: &BTreeSet<String>) {
    let mut client = StreamClient::open(process, "demo_value", "application/x-ndjson");
    let mut snapshot = BTreeSet::new();
    loop {
        let e = client.next_event().expect("stream ended in its snapshot");
        if e["type"] == "snapshot_end" {
            assert_eq!(e["series"], TARGETS, "{e}");
            break;
        }
        snapshot.insert(e["labels"]["k"].as_str().unwrap().to_string());
    }
    assert_eq!(snapshot.len(), TARGETS, "{snapshot:?}");
    // Within a few scrapes, a sample of a target another process scrapes.
    let from_another = (0..200).any(|_| {
        let e = client.next_event().expect("stream ended");
        e["type"] == "sample" && !own.contains(e["labels"]["instance"].as_str().unwrap())
    });
    assert!(from_another, "no sample of another process's target");
}

/// A group registered over the rules API on the last process is evaluated by the
/// first: every process lists it and serves its output, equal to the oracle's query.
fn rules_registered_anywhere_are_evaluated_by_the_first(
    processes: &[Promflow],
    oracle: &common::Peer,
) {
    let group = "name: registered\nrules:\n  - record: job:demo_value:count\n    expr: count by (job) (demo_value)\n";
    let resp = common::http::put(
        &processes[2].url("/api/v1/rules/team/registered"),
        Some("application/yaml"),
        group.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    for (i, p) in processes.iter().enumerate() {
        let definition = p.get("/api/v1/rules/team/registered");
        assert_eq!(definition.status, 200, "process {i}: {}", definition.body);
        assert!(
            definition.body.contains("job:demo_value:count"),
            "{}",
            definition.body
        );
        let rules: Value = serde_json::from_str(&p.get_ok("/api/v1/rules")).unwrap();
        let groups: Vec<&str> = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(groups.contains(&"registered"), "process {i}: {groups:?}");
    }
    let want = oracle.query("count by (job) (demo_value)")["result"][0]["value"][1].clone();
    assert_eq!(want, Value::String(TARGETS.to_string()));
    let count = |p: &Promflow| p.query("job:demo_value:count")["result"][0]["value"][1].clone();
    for (i, p) in processes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(30), || count(p) == want),
            "process {i}: job:demo_value:count = {}",
            count(p)
        );
    }
    let resp = common::http::delete(&processes[1].url("/api/v1/rules/team/registered")).unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(
        processes[0].get("/api/v1/rules/team/registered").status,
        404
    );
}

fn recorded_oracle(oracle: &common::Peer) -> Value {
    oracle.query("job:demo_value:sum")["result"][0]["value"][1].clone()
}

/// `n` promflow processes of one cluster on `config`, the hostfile in `dir`. The
/// dataflow connects them all before any is ready: they are started at once.
fn start_cluster(n: usize, config: &str, dir: &std::path::Path) -> Vec<Promflow> {
    let layout = ClusterLayout::new(n, dir);
    layout.launch(config, &[], &vec![None; n])
}

/// Where the processes of a cluster listen: the hostfile (one line per process: the
/// exchange address and the HTTP base URL) and each process's web address.
struct ClusterLayout {
    hostfile: std::path::PathBuf,
    webs: Vec<SocketAddr>,
}

impl ClusterLayout {
    /// Free loopback ports for `n` processes, written as the hostfile in `dir`.
    fn new(n: usize, dir: &std::path::Path) -> ClusterLayout {
        let webs: Vec<SocketAddr> = (0..n)
            .map(|_| ([127, 0, 0, 1], free_port()).into())
            .collect();
        let hostfile = dir.join("hosts");
        let lines: Vec<String> = webs
            .iter()
            .map(|web| format!("127.0.0.1:{} http://{web}", free_port()))
            .collect();
        std::fs::write(&hostfile, lines.join("\n") + "\n").unwrap();
        ClusterLayout { hostfile, webs }
    }

    /// Starts every process at once (the dataflow connects them all before any is
    /// ready), process `i` with `extra` flags and its storage in `data[i]` (`None`: a
    /// directory of its own that goes with it).
    fn launch(
        &self,
        config: &str,
        extra: &[&str],
        data: &[Option<std::path::PathBuf>],
    ) -> Vec<Promflow> {
        let n = self.webs.len();
        std::thread::scope(|s| {
            let started: Vec<_> = (0..n)
                .map(|i| {
                    let (hostfile, web, data_dir) = (&self.hostfile, self.webs[i], data[i].clone());
                    s.spawn(move || {
                        let mut args = vec![
                            format!("--cluster.processes={n}"),
                            format!("--cluster.process-id={i}"),
                            format!("--cluster.hostfile={}", hostfile.display()),
                            "--web.enable-rules-api".to_string(),
                        ];
                        args.extend(extra.iter().map(|a| a.to_string()));
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        Promflow::launch(PromflowLaunch {
                            config_yaml: config,
                            extra_args: &args,
                            listen: Some(web),
                            data_dir,
                            ..PromflowLaunch::default()
                        })
                    })
                })
                .collect();
            started.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }
}

/// timely does not survive losing a process: when one is killed, the others end with
/// one clear error line and status 1, for a supervisor to restart the cluster.
#[test]
fn losing_a_process_ends_the_others_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let mut processes = start_cluster(3, "scrape_configs: []\n", dir.path());
    processes[1].signal("KILL");
    for i in [0, 2] {
        assert_ended_plainly(&mut processes[i], i);
    }
}

/// Process `i` has exited with status 1 and the line that says why.
fn assert_ended_plainly(process: &mut Promflow, i: usize) {
    let status = process.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "process {i}: {}",
        process.log()
    );
    assert!(
        process.log().contains(
            "Lost a process of the cluster; exiting so that the cluster can be restarted"
        ),
        "process {i}: {}",
        process.log()
    );
}

/// The rules of the restart test: a recording rule, an alert that fires 2s after it
/// holds (on the targets whose value is over 4) and one that stays pending for an hour
/// (over 6).
const RESTART_RULES: &str = "groups:
  - name: demo
    rules:
      - record: job:demo_value:sum
        expr: sum by (job) (demo_value)
      - record: job:demo_value:samples_1h
        expr: sum by (job) (count_over_time(demo_value[1h]))
      - alert: DemoFiring
        expr: demo_value > 4
        for: 2s
      - alert: DemoPending
        expr: demo_value > 6
        for: 1h
";

/// A rule of [`RESTART_RULES`] reading an hour of every process's samples, and its
/// expression.
const HOUR_SAMPLES: &str = "job:demo_value:samples_1h";
const HOUR_SAMPLES_EXPR: &str = "sum by (job) (count_over_time(demo_value[1h]))";

/// What the restart test asks over the span before the kill: scraped series, rule
/// outputs (recorded, `ALERTS`, `ALERTS_FOR_STATE`) and remote-written series.
const RESTART_QUERIES: [&str; 6] = [
    "demo_value",
    "up",
    "job:demo_value:sum",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "pushed_value",
];

/// Each alert of `/api/v1/alerts` as `alertname/k` -> (state, activeAt to the whole
/// second: `ALERTS_FOR_STATE` holds whole seconds, and that is what Prometheus
/// restores).
type AlertStates = std::collections::BTreeMap<String, (String, String)>;

fn alert_states(peer: &common::Peer) -> AlertStates {
    let alerts: Value = serde_json::from_str(&peer.get_ok("/api/v1/alerts")).unwrap();
    alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["labels"]["k"].as_str().unwrap()
                ),
                (
                    a["state"].as_str().unwrap().to_string(),
                    whole_seconds(a["activeAt"].as_str().unwrap()),
                ),
            )
        })
        .collect()
}

/// An RFC 3339 time without its fraction of a second (`2026-12-07T01:42:42`).
fn whole_seconds(rfc3339: &str) -> String {
    rfc3339.split(['.', 'Z']).next().unwrap().to_string()
}

/// The alerts the rules give over the targets `k` = 0..8 once `DemoFiring`'s `for`
/// has passed: names and states, without `activeAt`.
fn settled_alerts() -> BTreeSet<String> {
    let firing = (5..TARGETS).map(|k| format!("DemoFiring/{k}/firing"));
    let pending = (7..TARGETS).map(|k| format!("DemoPending/{k}/pending"));
    firing.chain(pending).collect()
}

fn states_only(states: &AlertStates) -> BTreeSet<String> {
    states
        .iter()
        .map(|(alert, (state, _))| format!("{alert}/{state}"))
        .collect()
}

/// `query_range` of each of [`RESTART_QUERIES`] over `start..=end` (ms), step 1s.
fn range_answers(peer: &common::Peer, start: i64, end: i64) -> Vec<Value> {
    RESTART_QUERIES
        .iter()
        .map(|expr| {
            let path = common::http::with_query(
                "/api/v1/query_range",
                &[
                    ("query", expr),
                    ("start", &api_seconds(start)),
                    ("end", &api_seconds(end)),
                    ("step", "1"),
                ],
            );
            let body: Value = serde_json::from_str(&peer.get_ok(&path)).unwrap();
            sorted(body["data"].clone())
        })
        .collect()
}

/// A cluster that lost a process and was restarted on the same storage (as a
/// supervisor does: every process again, with the same hostfile) answers for the
/// time before the loss as it did before it: every sample that was acknowledged
/// (scraped and answered by a query, or remote-written with a 2xx) is still there,
/// recorded series and `ALERTS` included; the rule host (process 0, the one killed)
/// restores its alerts' `for` state from `ALERTS_FOR_STATE`, so a firing alert keeps
/// its `activeAt`, as it does in Prometheus 2.42 killed and restarted on its TSDB
/// (checked beside it), and a pending one keeps it too (promflow's default
/// `--rules.alert.for-restore=keep`; Prometheus does not count the downtime, also
/// checked).
#[test]
fn a_restarted_cluster_answers_for_before_and_keeps_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (_exporters, config) = demo_fleet(TARGETS, |k| k, Some(RESTART_RULES), dir.path());
    let layout = ClusterLayout::new(3, dir.path());
    let data: Vec<Option<std::path::PathBuf>> = (0..3)
        .map(|i| Some(dir.path().join(format!("data-{i}"))))
        .collect();
    let flags = ["--web.enable-remote-write-receiver"];
    let mut processes = layout.launch(&config, &flags, &data);
    // The oracle for the `for` restore: Prometheus restores rules whose `for` is at
    // least the grace period, here 1s (both alerts).
    let mut oracle = Prometheus::start_with_args(&config, &["--rules.alert.for-grace-period=1s"]);

    // Remote-written to each process: 20 samples up to now, acknowledged with a 2xx.
    let started = now_ms();
    let first = started - 20_000;
    for (i, p) in processes.iter().enumerate() {
        let samples: Vec<(i64, f64)> = (0..20)
            .map(|s| (first + s * 1_000, (i * 100 + s as usize) as f64))
            .collect();
        let series = vec![(
            vec![
                ("__name__".to_string(), "pushed_value".to_string()),
                ("via".to_string(), i.to_string()),
            ],
            samples,
        )];
        let resp = remote_write::send(&p.url(""), &remote_write::body(&series));
        assert!(
            (200..300).contains(&resp.status),
            "process {i}: {} {}",
            resp.status,
            resp.body
        );
    }

    // Every target scraped, the rules evaluated over all of them, the alerts settled.
    let every = Value::String(TARGETS.to_string());
    let count = |p: &common::Peer| p.query("count(up)")["result"][0]["value"][1].clone();
    for (i, p) in processes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(30), || count(p) == every),
            "process {i}: count(up) = {}",
            count(p)
        );
    }
    for (i, p) in processes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(30), || states_only(&alert_states(p))
                == settled_alerts()),
            "process {i}: {:?}",
            alert_states(p)
        );
    }
    assert!(
        wait_until(Duration::from_secs(30), || states_only(&alert_states(
            &oracle
        )) == settled_alerts()),
        "Prometheus: {:?}",
        alert_states(&oracle)
    );
    let alerts_before = alert_states(&processes[1]);
    let oracle_before = alert_states(&oracle);

    // The span before the kill, answered alike twice a few seconds apart (nothing of
    // it is still arriving) and by every process.
    let end = (now_ms() - 3_000) / 1_000 * 1_000;
    let start = first / 1_000 * 1_000;
    let before = range_answers(&processes[1], start, end);
    std::thread::sleep(Duration::from_secs(3));
    for (i, p) in processes.iter().enumerate() {
        assert_eq!(range_answers(p, start, end), before, "process {i}");
    }
    for (expr, answer) in RESTART_QUERIES.iter().zip(&before) {
        assert!(
            !answer["result"].as_array().unwrap().is_empty(),
            "{expr}: {answer}"
        );
    }
    let pushed = before[RESTART_QUERIES.len() - 1]["result"]
        .as_array()
        .unwrap();
    assert_eq!(pushed.len(), 3, "{pushed:?}");

    // The rule host is killed; the others end plainly.
    let killed = now_ms();
    processes[0].signal("KILL");
    assert!(processes[0].wait_exit(Duration::from_secs(30)).is_some());
    for i in [1, 2] {
        assert_ended_plainly(&mut processes[i], i);
    }
    drop(processes);
    // Prometheus killed too, and restarted on its TSDB.
    oracle.kill_and_restart();

    // A supervisor restarts every process on its storage, with the same hostfile.
    let processes = layout.launch(&config, &flags, &data);
    for (i, p) in processes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(30), || count(p) == every),
            "process {i} after the restart: count(up) = {}",
            count(p)
        );
    }
    // Prometheus keeps a firing alert's `activeAt` (its `for` is over, the outage is
    // within the tolerance); a pending one's moves on by the time it was down.
    assert!(
        wait_until(Duration::from_secs(30), || states_only(&alert_states(
            &oracle
        )) == settled_alerts()),
        "Prometheus after the restart: {:?}",
        alert_states(&oracle)
    );
    let oracle_after = alert_states(&oracle);
    for (alert, (state, active_at)) in &oracle_before {
        let (_, after) = &oracle_after[alert];
        if state == "firing" {
            assert_eq!(after, active_at, "Prometheus: {alert}");
        } else {
            assert_ne!(after, active_at, "Prometheus: {alert}");
        }
    }
    // promflow: every alert back in its state with its `activeAt`, on every process.
    for (i, p) in processes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(30), || alert_states(p) == alerts_before),
            "process {i} after the restart: {:?}, before: {alerts_before:?}",
            alert_states(p)
        );
    }
    // From its first evaluation after the restart, the rule host's windows hold every
    // process's samples (each process seeded them from its own storage, in the
    // dataflow, and routes what it scrapes since): what it recorded at each
    // evaluation since is what a query over every process's storage answers at that
    // time, the hour before the kill included.
    assert_recorded_as_queried(&processes[1], HOUR_SAMPLES, HOUR_SAMPLES_EXPR, killed);
    // Every answer over the span before the kill, as before it.
    for (i, p) in processes.iter().enumerate() {
        let after = range_answers(p, start, end);
        for ((expr, before), after) in RESTART_QUERIES.iter().zip(&before).zip(&after) {
            assert_eq!(after, before, "process {i} after the restart: {expr}");
        }
    }
}

/// Growing from one process to two (README, "Sizing a cluster"): the one process
/// becomes process 0 on its storage, both start with the new hostfile, the targets
/// the new process wins move to it, and the samples of before the move, stored only
/// by the first process, are still answered by both, each moved target as one series
/// across the move.
#[test]
fn growing_from_one_process_keeps_the_samples_of_before_answered() {
    const GROWN: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let (_exporters, config) = demo_fleet(GROWN, |k| k, None, dir.path());
    let data: Vec<Option<std::path::PathBuf>> = (0..2)
        .map(|i| Some(dir.path().join(format!("data-{i}"))))
        .collect();
    let mut alone = Promflow::launch(PromflowLaunch {
        config_yaml: &config,
        data_dir: data[0].clone(),
        extra_args: &["--web.enable-federation-views-api"],
        ..PromflowLaunch::default()
    });
    let every = Value::String(GROWN.to_string());
    let count = |p: &common::Peer| p.query("count(up)")["result"][0]["value"][1].clone();
    assert!(wait_until(Duration::from_secs(30), || count(&alone) == every));
    // A federation view of before: the new process takes it from the first.
    let put = common::http::put(
        &alone.url("/api/v1/federation/grown"),
        Some("application/x-www-form-urlencoded"),
        b"match[]=demo_value",
    )
    .unwrap();
    assert_eq!(put.status, 202, "{}", put.body);
    let start = now_ms() / 1_000 * 1_000;
    std::thread::sleep(Duration::from_secs(4));
    let end = (now_ms() - 2_000) / 1_000 * 1_000;
    let range = |p: &common::Peer, start: i64, end: i64| -> Value {
        let path = common::http::with_query(
            "/api/v1/query_range",
            &[
                ("query", "demo_value"),
                ("start", &api_seconds(start)),
                ("end", &api_seconds(end)),
                ("step", "1"),
            ],
        );
        let body: Value = serde_json::from_str(&p.get_ok(&path)).unwrap();
        sorted(body["data"].clone())
    };
    let before = range(&alone, start, end);
    assert_eq!(
        before["result"].as_array().unwrap().len(),
        GROWN,
        "{before}"
    );
    alone.terminate();
    drop(alone);

    let layout = ClusterLayout::new(2, dir.path());
    let processes = layout.launch(&config, &[], &data);
    for p in &processes {
        assert!(wait_until(Duration::from_secs(30), || count(p) == every));
    }
    let moved = targets_of(&processes[1], true);
    assert!(!moved.is_empty(), "no target moved to the new process");
    assert_eq!(
        moved.len() + targets_of(&processes[0], true).len(),
        GROWN,
        "{moved:?}"
    );
    let view_series = |p: &Promflow| {
        let body = p.get("/federate?view=grown").body;
        body.lines()
            .filter(|l| l.starts_with("demo_value{"))
            .count()
    };
    for (i, p) in processes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(30), || view_series(p) == GROWN),
            "process {i}: {} series in view grown",
            view_series(p)
        );
    }
    // A few scrapes by the new owners, then the span before and across the move.
    std::thread::sleep(Duration::from_secs(3));
    let after_start = now_ms();
    for (i, p) in processes.iter().enumerate() {
        assert_eq!(range(p, start, end), before, "process {i}");
        // Across the move: one series per target.
        let across = range(p, start, after_start);
        assert_eq!(
            across["result"].as_array().unwrap().len(),
            GROWN,
            "process {i}: {across}"
        );
    }
}

/// A target set change moves only the targets it adds or removes: every other target
/// stays with the process that scraped it (rendezvous placement), and the new one is
/// scraped by exactly one process.
#[test]
fn a_target_set_change_moves_only_the_affected_targets() {
    let exporters: Vec<Exporter> = (0..TARGETS + 1)
        .map(|k| Exporter::start(Reply::text(&format!("demo_value{{k=\"{k}\"}} {k}\n"))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("targets.json");
    let write_targets = |exporters: &[Exporter]| {
        let targets: Vec<String> = exporters.iter().map(|e| e.addr().to_string()).collect();
        let tmp = dir.path().join("targets.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::json!([{ "targets": targets }]).to_string(),
        )
        .unwrap();
        std::fs::rename(&tmp, &sd).unwrap();
    };
    // The first TARGETS exporters, then one more, then one fewer of the first.
    write_targets(&exporters[..TARGETS]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: demo\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
        sd.display()
    );
    let processes = start_cluster(3, &config, dir.path());
    let shares = |expected: usize| -> Vec<BTreeSet<String>> {
        let mut shares = Vec::new();
        assert!(
            wait_until(Duration::from_secs(30), || {
                shares = processes.iter().map(|p| targets_of(p, true)).collect();
                shares.iter().map(BTreeSet::len).sum::<usize>() == expected
            }),
            "{shares:?}"
        );
        shares
    };
    let owner = |shares: &[BTreeSet<String>], target: &str| -> Vec<usize> {
        (0..shares.len())
            .filter(|&i| shares[i].contains(target))
            .collect()
    };
    let before = shares(TARGETS);
    for e in &exporters[..TARGETS] {
        assert_eq!(owner(&before, &e.addr().to_string()).len(), 1, "{before:?}");
    }

    // One target added: it goes to one process, nothing else moves.
    write_targets(&exporters);
    let added = shares(TARGETS + 1);
    assert_eq!(
        owner(&added, &exporters[TARGETS].addr().to_string()).len(),
        1,
        "{added:?}"
    );
    for e in &exporters[..TARGETS] {
        let target = e.addr().to_string();
        assert_eq!(owner(&added, &target), owner(&before, &target), "{target}");
    }

    // One target removed: the others stay where they were.
    write_targets(&exporters[1..]);
    let removed = shares(TARGETS);
    assert!(owner(&removed, &exporters[0].addr().to_string()).is_empty());
    for e in &exporters[1..] {
        let target = e.addr().to_string();
        assert_eq!(owner(&removed, &target), owner(&added, &target), "{target}");
    }
}

/// Each sample the recording rule `record` (of expression `expr`) wrote after
/// `since_ms` (up to 1.5 s ago: the evaluations the rule has written whole) equals
/// the answer of a query of `expr` at its time, over every process's storage; once
/// each series has at least two.
fn assert_recorded_as_queried(peer: &common::Peer, record: &str, expr: &str, since_ms: i64) {
    let written = || {
        let upto = now_ms() - 1_500;
        if upto <= since_ms {
            return Vec::new();
        }
        let recorded = peer.query_at(&format!("{record}[{}ms]", upto - since_ms), upto);
        recorded["result"].as_array().unwrap().clone()
    };
    let mut series = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            series = written();
            !series.is_empty()
                && series
                    .iter()
                    .all(|s| s["values"].as_array().unwrap().len() >= 2)
        }),
        "{record}: fewer than two evaluations: {series:?}"
    );
    for series in series {
        let mut labels = series["metric"].clone();
        labels.as_object_mut().unwrap().remove("__name__");
        let points = series["values"].as_array().unwrap();
        assert!(points.len() >= 2, "{series}");
        for point in points {
            let at = (point[0].as_f64().unwrap() * 1000.0).round() as i64;
            let answer = peer.query_at(expr, at);
            let answer = answer["result"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["metric"] == labels)
                .map(|r| r["value"][1].clone());
            assert_eq!(
                answer,
                Some(point[1].clone()),
                "{record} {labels} recorded at {at}: {points:?}"
            );
        }
    }
}

/// A rule registered while the cluster already holds samples starts with windows
/// seeded from every process's storage, not the first's alone: `max_over_time` over
/// an hour sees the values every target had before the registration, as Prometheus's
/// query over its own storage does; and `count_over_time` over an hour counts every
/// sample from its first evaluation, none of those the other processes scraped
/// while the registration reached them missed or counted twice.
#[test]
fn rule_windows_are_seeded_from_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let (exporters, config) = demo_fleet(TARGETS, |k| 100 + k, None, dir.path());
    let processes = start_cluster(3, &config, dir.path());
    let oracle = Prometheus::start(&config);
    let count = |p: &common::Peer, q: &str| p.query(q)["result"].as_array().map_or(0, Vec::len);
    // Every target's high value stored (by the process that scrapes it)…
    for p in [&*processes[0], &*oracle] {
        assert!(wait_until(Duration::from_secs(30), || count(
            p,
            "demo_value > 99"
        ) == TARGETS));
    }
    // …then low values only, on both sides.
    for (k, e) in exporters.iter().enumerate() {
        e.set(demo_reply(k, k));
    }
    for p in [&*processes[0], &*oracle] {
        assert!(wait_until(Duration::from_secs(30), || count(
            p,
            "demo_value < 99"
        ) == TARGETS));
    }
    let group = "name: seeded\nrules:\n  - record: demo_value:max1h\n    expr: max_over_time(demo_value[1h])\n  - record: demo_value:count1h\n    expr: count_over_time(demo_value[1h])\n";
    let registered = now_ms();
    let resp = common::http::put(
        &processes[0].url("/api/v1/rules/team/seeded"),
        Some("application/yaml"),
        group.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    let values = |data: Value| -> BTreeSet<(String, String)> {
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let k = r["metric"]["k"].as_str().unwrap().to_string();
                (k, r["value"][1].as_str().unwrap().to_string())
            })
            .collect()
    };
    let theirs = values(oracle.query("max_over_time(demo_value[1h])"));
    assert_eq!(theirs.len(), TARGETS);
    let mut ours = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            ours = values(processes[0].query("demo_value:max1h"));
            ours.len() == TARGETS
        }),
        "{ours:?}"
    );
    assert_eq!(ours, theirs);
    assert_recorded_as_queried(
        &processes[0],
        "demo_value:count1h",
        "count_over_time(demo_value[1h])",
        registered,
    );
}

/// Processes whose `--web.config.file` asks for basic authentication read each other
/// with the credentials of `--cluster.http-config` (an `http_config` file, its
/// `password_file` relative to it): every process still answers queries, `/federate`
/// and the rules API for the whole cluster, as the single Prometheus (same web config)
/// answers for the targets it scrapes alone.
#[test]
fn processes_behind_basic_auth_read_each_other_with_the_cluster_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (_exporters, config) = demo_fleet(TARGETS, |k| k, Some(RULES), dir.path());
    let web = common::write_web_config(dir.path(), &[("ops", "ops-pw"), ("peer", "peer-pw")]);
    std::fs::create_dir(dir.path().join("peer")).unwrap();
    std::fs::write(dir.path().join("peer/password"), "peer-pw\n").unwrap();
    let peer = dir.path().join("peer/http.yml");
    std::fs::write(
        &peer,
        "basic_auth:\n  username: peer\n  password_file: password\n",
    )
    .unwrap();
    let web_flag = format!("--web.config.file={web}");
    let peer_flag = format!("--cluster.http-config={}", peer.display());
    let processes = ClusterLayout::new(3, dir.path()).launch(
        &config,
        &[&web_flag, &peer_flag, "--web.enable-federation-views-api"],
        &[None, None, None],
    );
    let oracle = Prometheus::start_with_args(&config, &[&web_flag]);

    let authorization = common::basic_auth("ops", "ops-pw");
    let get = |base: SocketAddr, path: &str| -> Value {
        let url = format!("http://{base}{path}");
        let response =
            common::http::send("GET", &url, &[("Authorization", &authorization)], None, b"")
                .unwrap();
        assert_eq!(response.status, 200, "{url}: {}", response.body);
        serde_json::from_str(&response.body).unwrap_or(Value::Null)
    };
    let count = |base: SocketAddr| -> (Value, Value) {
        let answer = get(base, "/api/v1/query?query=count(demo_value)");
        (
            answer["data"]["result"][0]["value"][1].clone(),
            answer["warnings"].clone(),
        )
    };
    let mut theirs = (Value::Null, Value::Null);
    assert!(wait_until(Duration::from_secs(30), || {
        theirs = count(oracle.addr());
        theirs.0 == Value::String(TARGETS.to_string())
    }));
    for p in &processes {
        let mut ours = (Value::Null, Value::Null);
        assert!(
            wait_until(Duration::from_secs(30), || {
                ours = count(p.addr());
                ours == theirs
            }),
            "process at {}: {ours:?}, Prometheus: {theirs:?}",
            p.addr()
        );
    }
    // `/federate` merges the others' answers.
    let federated_by = |base: SocketAddr, query: &str| -> usize {
        let url = format!("http://{base}/federate?{query}");
        let response =
            common::http::send("GET", &url, &[("Authorization", &authorization)], None, b"")
                .unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
        response
            .body
            .lines()
            .filter(|l| l.starts_with("demo_value{"))
            .count()
    };
    let federated = |base: SocketAddr| federated_by(base, "match[]=demo_value");
    let oracle_federated = federated(oracle.addr());
    assert_eq!(oracle_federated, TARGETS);
    for p in &processes {
        assert_eq!(
            federated(p.addr()),
            oracle_federated,
            "process at {}",
            p.addr()
        );
    }
    // A federation view registered on the last process reaches the others with the
    // cluster's credentials, and serves every process's series on the first.
    let put = common::http::send(
        "PUT",
        &format!("http://{}/api/v1/federation/auth", processes[2].addr()),
        &[("Authorization", &authorization)],
        Some("application/x-www-form-urlencoded"),
        b"match[]=demo_value",
    )
    .unwrap();
    assert_eq!(put.status, 202, "{}", put.body);
    assert!(!put.body.contains("warnings"), "{}", put.body);
    for p in &processes {
        let listed = get(p.addr(), "/api/v1/federation");
        assert_eq!(listed["data"][0]["name"], "auth", "{listed}");
    }
    assert_eq!(
        federated_by(processes[0].addr(), "view=auth"),
        oracle_federated
    );
    // The rules API of the last process is the first's (the rule host's).
    let groups = |base: SocketAddr| -> Vec<Value> {
        get(base, "/api/v1/rules")["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let names =
        |groups: Vec<Value>| -> Vec<Value> { groups.iter().map(|g| g["name"].clone()).collect() };
    assert_eq!(
        names(groups(processes[2].addr())),
        names(groups(oracle.addr()))
    );
}

/// Owned rules (neither spread nor read from storage): each needs all of its input in
/// one place, and reads its own selectors, so they land on different workers. (A
/// per-series plan, a one-to-one join of two, an aggregation of a per-series plan,
/// with operations after any of them, would be spread: a selector without a
/// `__name__="…"` matcher keeps those here whole; `sort` keeps the join whole.)
const OWNED_RULES: &str = "groups:
  - name: owned
    rules:
      - record: demo:latency:p90
        expr: histogram_quantile(0.9, sum by (le) ({__name__=~\"demo_latency_seconds_bucket\"}))
      - record: demo:free:top3
        expr: topk(3, abs({__name__=~\"demo_free\"}))
      - record: demo:ratio
        expr: sort(demo_used / on (k) demo_size)
      - record: demo:low
        expr: sort({__name__=~\"demo_value\",k=~\"[0-4]\"} > 102)
      - record: demo:spare:sorted
        expr: sort_desc({__name__=~\"demo_spare\"} - 1)
      - record: demo:missing
        expr: absent(demo_missing)
";

/// How many rules of [`OWNED_RULES`] are owned (the join shares its owner's windows
/// with no other rule here; every rule counts once).
const OWNED_RULE_COUNT: f64 = 6.0;

/// Target `k`'s families: `demo_value` at `value`, a classic histogram, gauges.
fn fleet_reply(k: usize, value: usize) -> Reply {
    let b = |i: usize| (k + 1) * i;
    Reply::text(&format!(
        "# TYPE demo_value gauge\ndemo_value{{k=\"{k}\"}} {value}\n\
         # TYPE demo_latency_seconds histogram\n\
         demo_latency_seconds_bucket{{k=\"{k}\",le=\"0.1\"}} {}\n\
         demo_latency_seconds_bucket{{k=\"{k}\",le=\"1\"}} {}\n\
         demo_latency_seconds_bucket{{k=\"{k}\",le=\"+Inf\"}} {}\n\
         demo_latency_seconds_sum{{k=\"{k}\"}} {}\n\
         demo_latency_seconds_count{{k=\"{k}\"}} {}\n\
         # TYPE demo_free gauge\ndemo_free{{k=\"{k}\"}} {}\n\
         # TYPE demo_used gauge\ndemo_used{{k=\"{k}\"}} {}\n\
         # TYPE demo_size gauge\ndemo_size{{k=\"{k}\"}} {}\n\
         # TYPE demo_spare gauge\ndemo_spare{{k=\"{k}\"}} {}\n",
        b(1),
        b(3) + k % 4,
        b(4),
        b(2),
        b(4),
        (k as f64 - 4.3) * 1.5,
        k * 3 + 1,
        40 + k,
        (k * 7) % 5,
    ))
}

/// Each process's `promflow_engine_rules_owned`.
fn rules_owned(processes: &[Promflow]) -> Vec<f64> {
    processes
        .iter()
        .map(|p| p.metrics().sum("promflow_engine_rules_owned").unwrap())
        .collect()
}

/// A query's result as `(labels, value)` rows, sorted.
fn rows_of(data: &Value) -> BTreeSet<(String, String)> {
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"].to_string(), r["value"][1].to_string()))
        .collect()
}

/// Owned rules are placed on the workers of every process, not only the first's: their
/// results cross back to the first process (which records them) and equal Prometheus's
/// for the same rule file, and rules registered after data exists (`max_over_time` over
/// an hour, one per target so they land on several processes) answer from their first
/// evaluation as Prometheus's query over its storage does, whichever process owns them.
#[test]
fn owned_rules_run_on_every_process_and_answer_as_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let exporters: Vec<Exporter> = (0..TARGETS)
        .map(|k| Exporter::start(fleet_reply(k, 100 + k)))
        .collect();
    let targets: Vec<String> = exporters
        .iter()
        .map(|e| format!("'{}'", e.addr()))
        .collect();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, OWNED_RULES).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets.join(", ")
    );
    // Two workers each, whatever the machine: six workers to place rules on.
    let processes =
        ClusterLayout::new(3, dir.path()).launch(&config, &["--workers=2"], &[None, None, None]);
    let oracle = Prometheus::start(&config);

    // Placement: every owned rule on exactly one worker, and not all in one process.
    let mut owned = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            owned = rules_owned(&processes);
            owned.iter().sum::<f64>() == OWNED_RULE_COUNT
        }),
        "{owned:?}"
    );
    assert!(owned.iter().filter(|n| **n > 0.0).count() >= 2, "{owned:?}");

    // Every recorded series equals the oracle's (the targets' values are constant),
    // once both have scraped every target and evaluated the rules since.
    let up = |p: &common::Peer| p.query("count(up)")["result"][0]["value"][1].clone();
    let every = Value::String(TARGETS.to_string());
    for p in [&*processes[0], &*oracle] {
        assert!(wait_until(Duration::from_secs(30), || up(p) == every));
    }
    std::thread::sleep(Duration::from_secs(3));
    for record in [
        "demo:latency:p90",
        "demo:free:top3",
        "demo:ratio",
        "demo:low",
        "demo:spare:sorted",
        "demo:missing",
    ] {
        for (i, p) in processes.iter().enumerate() {
            let (mut ours, mut theirs) = (BTreeSet::new(), BTreeSet::new());
            assert!(
                wait_until(Duration::from_secs(30), || {
                    theirs = rows_of(&oracle.query(record));
                    ours = rows_of(&p.query(record));
                    theirs.len() == oracle_len(record) && ours == theirs
                }),
                "process {i}: {record}:\n ours   {ours:?}\n theirs {theirs:?}"
            );
        }
    }

    // Every target's high value stored, then low values only, on both sides.
    let count = |p: &common::Peer, q: &str| p.query(q)["result"].as_array().map_or(0, Vec::len);
    for p in [&*processes[0], &*oracle] {
        assert!(wait_until(Duration::from_secs(30), || count(
            p,
            "demo_value > 99"
        ) == TARGETS));
    }
    for (k, e) in exporters.iter().enumerate() {
        e.set(fleet_reply(k, k));
    }
    for p in [&*processes[0], &*oracle] {
        assert!(wait_until(Duration::from_secs(30), || count(
            p,
            "demo_value < 99"
        ) == TARGETS));
    }
    // One rule per target, each reading its own selector: placed over the processes
    // (owned: a selector with `__name__="demo_value"` would be spread).
    let mut group = "name: late\nrules:\n".to_string();
    for k in 0..TARGETS {
        group.push_str(&format!(
            "  - record: demo_value_k{k}:max1h\n    expr: 'sort(max_over_time({{__name__=~\"demo_value\",k=\"{k}\"}}[1h]))'\n"
        ));
    }
    let recorded = "{__name__=~\"demo_value_k[0-9]:max1h\"}";
    let resp = common::http::put(
        &processes[1].url("/api/v1/rules/team/late"),
        Some("application/yaml"),
        group.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    let theirs = rows_of(&oracle.query("max_over_time(demo_value[1h])"));
    assert_eq!(theirs.len(), TARGETS);
    assert!(
        wait_until(Duration::from_secs(30), || count(&processes[0], recorded)
            == TARGETS),
        "{recorded} not recorded"
    );
    let mut late_owned = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            late_owned = rules_owned(&processes)
                .iter()
                .zip(&owned)
                .map(|(after, before)| after - before)
                .collect();
            late_owned.iter().sum::<f64>() == TARGETS as f64
        }),
        "{late_owned:?}"
    );
    assert!(
        late_owned.iter().filter(|n| **n > 0.0).count() >= 2,
        "{late_owned:?}"
    );
    // Every sample recorded, the first evaluation's included, saw the hour before the
    // registration: the least of them is Prometheus's answer (unseeded, a first
    // evaluation would have seen the low values only).
    let first = rows_of(&processes[2].query(&format!("min_over_time({recorded}[1h])")));
    assert_eq!(first, theirs);
}

/// How many series the oracle records for a rule of [`OWNED_RULES`].
fn oracle_len(record: &str) -> usize {
    match record {
        "demo:latency:p90" | "demo:missing" => 1,
        "demo:free:top3" => 3,
        "demo:low" => 2,
        _ => TARGETS,
    }
}

/// A federation view registered on one process is the cluster's: another process
/// lists it with the whole cluster's series count, and its `/federate?view=` (text and
/// protobuf) and `?view=` stream serve every process's series, as `match[]` with the
/// same selectors does there; a stream of the view ends when its process deletes it;
/// deleted on that other process, the view is gone from the first too.
#[test]
fn federation_views_are_the_whole_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (_exporters, config) = demo_fleet(TARGETS, |k| k, None, dir.path());
    let processes = ClusterLayout::new(2, dir.path()).launch(
        &config,
        &["--web.enable-federation-views-api"],
        &[None, None],
    );
    let shares: Vec<BTreeSet<String>> = processes.iter().map(|p| targets_of(p, true)).collect();
    assert!(shares.iter().all(|s| !s.is_empty()), "{shares:?}");
    let selectors = ["demo_value", "up{job=\"demo\"}"];
    let matched: Vec<(&str, &str)> = selectors.iter().map(|s| ("match[]", *s)).collect();
    let every_series = 2 * TARGETS;
    for p in &processes {
        assert!(wait_until(Duration::from_secs(30), || federated(
            &p.federate(&selectors)
        )
        .len()
            == every_series));
    }
    // Series of both processes' targets.
    let of_both = |keys: Vec<&String>| {
        shares.iter().all(|share| {
            share
                .iter()
                .all(|target| keys.iter().any(|k| k.contains(&format!("\"{target}\""))))
        })
    };

    let view = serde_json::json!({ "match[]": selectors }).to_string();
    let put = common::http::put(
        &processes[0].url("/api/v1/federation/demo"),
        Some("application/json"),
        view.as_bytes(),
    )
    .unwrap();
    assert_eq!(put.status, 202, "{}", put.body);
    assert!(!put.body.contains("warnings"), "{}", put.body);

    // Process 1 knows it, with the cluster's live series.
    let listed = |p: &Promflow| -> Value {
        serde_json::from_str::<Value>(&p.get_ok("/api/v1/federation")).unwrap()["data"].clone()
    };
    let mut list = Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            list = listed(&processes[1]);
            list[0]["series"] == every_series
        }),
        "{list}"
    );
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "demo");
    assert_eq!(list[0]["match[]"], serde_json::json!(selectors));
    let one: Value = serde_json::from_str(&processes[1].get_ok("/api/v1/federation/demo")).unwrap();
    assert_eq!(one["data"], list[0]);

    // `/federate?view=` on process 1: the cluster's `match[]` answer.
    let by_view = federated(&common::exposition::parse(
        &processes[1].get_ok("/federate?view=demo"),
    ));
    let by_match = federated(&processes[1].federate(&selectors));
    assert_eq!(by_view, by_match);
    assert!(of_both(by_view.keys().collect()), "{by_view:?}");
    let by_view = federated_protobuf(&processes[1], &[("view", "demo")]);
    assert_eq!(by_view, federated_protobuf(&processes[1], &matched));
    assert_eq!(by_view, by_match);

    // The stream of the view on process 1: the `match[]` stream's snapshot, then the
    // changes of both processes' targets.
    let snapshot = |client: &mut StreamClient| -> BTreeSet<String> {
        let mut series = BTreeSet::new();
        loop {
            let e = client.next_event().expect("stream ended in its snapshot");
            if e["type"] == "snapshot_end" {
                assert_eq!(e["series"], series.len(), "{e}");
                return series;
            }
            assert_eq!(e["type"], "sample", "{e}");
            series.insert(format!("{}={}", e["labels"], e["value"]));
        }
    };
    let ndjson = "application/x-ndjson";
    let mut by_view = StreamClient::open_path(&processes[1], "/api/v1/stream?view=demo", ndjson);
    let mut by_match = StreamClient::open_path(
        &processes[1],
        &common::http::with_query("/api/v1/stream", &matched),
        ndjson,
    );
    let view_snapshot = snapshot(&mut by_view);
    assert_eq!(view_snapshot, snapshot(&mut by_match));
    assert_eq!(view_snapshot.len(), every_series, "{view_snapshot:?}");
    drop(by_match);
    let mut changed = BTreeSet::new();
    for _ in 0..1_000 {
        let e = by_view.next_event().expect("view stream ended");
        if e["type"] == "sample" {
            changed.insert(e["labels"]["instance"].as_str().unwrap().to_string());
        }
        if shares.iter().all(|share| !share.is_disjoint(&changed)) {
            break;
        }
    }
    assert!(
        shares.iter().all(|share| !share.is_disjoint(&changed)),
        "changes only of {changed:?}"
    );

    // A stream of the view ends when the view is deleted on its process, even while
    // another process still has it (as when that one missed the DELETE).
    let ends = |client: &mut StreamClient| {
        let asked = std::time::Instant::now();
        while client.next_event().is_some() {
            assert!(
                asked.elapsed() < Duration::from_secs(15),
                "the view's stream goes on"
            );
        }
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "the view's stream ended only by the client's read timeout"
        );
    };
    let mut on_0 = StreamClient::open_path(&processes[0], "/api/v1/stream?view=demo", ndjson);
    assert_eq!(snapshot(&mut on_0), view_snapshot);
    let here_only = common::http::send(
        "DELETE",
        &processes[1].url("/api/v1/federation/demo"),
        &[("x-promflow-cluster-local", "1")],
        None,
        b"",
    )
    .unwrap();
    assert_eq!(here_only.status, 202, "{}", here_only.body);
    ends(&mut by_view);
    assert_eq!(listed(&processes[1])[0]["name"], "demo");
    // Deleted on process 1 (which no longer has it): gone from process 0, whose
    // stream ends.
    let deleted = common::http::delete(&processes[1].url("/api/v1/federation/demo")).unwrap();
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert!(!deleted.body.contains("warnings"), "{}", deleted.body);
    assert_eq!(processes[0].get("/api/v1/federation/demo").status, 404);
    assert_eq!(processes[0].get("/federate?view=demo").status, 404);
    for p in &processes {
        assert_eq!(listed(p), serde_json::json!([]));
    }
    ends(&mut on_0);
    assert_eq!(
        common::http::delete(&processes[0].url("/api/v1/federation/demo"))
            .unwrap()
            .status,
        404
    );
}
