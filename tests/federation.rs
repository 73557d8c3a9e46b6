//! Federation against a real Prometheus: what promflow serves on `/federate` is what a
//! Prometheus federating it stores, and promtool accepts the bodies.
//!
//! Real peers: node_exporter (`prometheus-node-exporter`), Prometheus 2.42 and
//! promtool (`prometheus`). `.ci/run` installs them.
//!
//! The same check also runs with a real Prometheus in promflow's place
//! (`reference_prometheus_passes_the_federation_check`): that proves the check itself
//! holds for the reference implementation, so a failure with promflow is promflow's.
//!
//! promflow as the federating (main) instance: an alert over a federated series fires
//! and, after the first scrape, none of the federated samples is late for its
//! dataflow (`promflow_federating_*`), with promflow and with Prometheus as source.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::exposition::{self, same_value, series_key, Exposition};
use common::{promtool_check_metrics, wait_for, NodeExporter, Prometheus, Promflow};

/// The source scrapes every 3s and the oracle scrapes `/federate` every 1s, so every
/// sample the source holds stays the newest one for ~3 oracle scrapes: the oracle sees
/// (and stores, at the source's timestamp) every sample we fetch.
fn source_config(node: &str) -> String {
    format!(
        r#"# Scrapes one node_exporter; the external label must reach /federate.
global:
  scrape_interval: 3s
  scrape_timeout: 2s
  external_labels:
    federated_from: source
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['{node}']
"#
    )
}

/// A Prometheus federating `source` like the main instance in DESIGN.md does.
fn oracle_config(source: &str) -> String {
    format!(
        r#"# Federates {{job="node"}} from the source, keeping its labels and timestamps.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{{job="node"}}']
    static_configs:
      - targets: ['{source}']
"#
    )
}

const NODE_MATCHER: &str = r#"{job="node"}"#;

/// Waits until the source federates a full node_exporter scrape, then checks that for
/// every federated series the oracle stored exactly the federated sample: same labels,
/// a sample at the same timestamp, with the same value.
///
/// Values change between scrapes, so the comparison is per (series, timestamp): the
/// oracle is asked for its raw samples (`{job="node"}[1m]` returns them with their own
/// timestamps) and must hold the federated one among them. A missing sample is waited
/// for (bounded); a different value at the same timestamp fails at once.
fn check_oracle_stores_federated_samples(fetch_federate: impl Fn() -> String, oracle: &Prometheus) {
    // 0. The oracle must already be scraping the source: a body captured before its
    //    first scrape may hold samples the source replaced before the oracle saw them.
    wait_for(Duration::from_secs(30), || {
        let data = oracle.query(&format!("count({NODE_MATCHER})"));
        (!data["result"].as_array()?.is_empty()).then_some(())
    })
    .expect("oracle stored no node series from the source within 30s");

    // 1. A body with a full scrape in it.
    let body = wait_for(Duration::from_secs(30), || {
        let body = fetch_federate();
        let exp = exposition::parse(&body);
        (exp.samples.len() >= 100 && exp.named("up").count() == 1).then_some(body)
    })
    .expect("source never federated >= 100 node series within 30s");
    let fed = exposition::parse(&body);

    // 2. Shape of the body: timestamps, external label, a TYPE line for every family,
    //    no series twice.
    let mut federated: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for s in &fed.samples {
        let ts = s
            .timestamp_ms
            .unwrap_or_else(|| panic!("federated sample without timestamp: {s:?}"));
        assert_eq!(
            s.label("federated_from"),
            Some("source"),
            "external label missing: {s:?}"
        );
        assert_eq!(
            s.label("job"),
            Some("node"),
            "matcher leaked another job: {s:?}"
        );
        assert!(
            has_type_line(&fed, &s.name),
            "no # TYPE line for {}",
            s.name
        );
        let dup = federated.insert(s.series(), (ts, s.value));
        assert!(dup.is_none(), "series federated twice: {}", s.series());
    }
    let newest = federated.values().map(|(ts, _)| *ts).max().unwrap();

    // 3. The oracle must hold each (series, ts, value).
    let mut problems = Vec::new();
    let mut missing_examples = Vec::new();
    let all_stored = wait_for(Duration::from_secs(30), || {
        let data = oracle.query_at(&format!("{NODE_MATCHER}[1m]"), newest);
        let stored = stored_samples(&data);
        problems.clear();
        missing_examples.clear();
        let mut missing = 0;
        for (series, (ts, value)) in &federated {
            match stored.get(series).and_then(|samples| samples.get(ts)) {
                Some(v) if same_value(*v, *value) => {}
                Some(v) => problems.push(format!("{series} @{ts}: federated {value}, stored {v}")),
                None => {
                    missing += 1;
                    if missing_examples.len() < 5 {
                        let near = stored
                            .get(series)
                            .map(|s| s.keys().copied().collect::<Vec<_>>());
                        missing_examples
                            .push(format!("{series} @{ts} (oracle has timestamps {near:?})"));
                    }
                }
            }
        }
        // A wrong value will not heal: stop waiting.
        (missing == 0 || !problems.is_empty()).then_some(missing)
    });
    assert!(
        problems.is_empty(),
        "oracle stored different values:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        all_stored,
        Some(0),
        "oracle did not store all {} federated samples within 30s (newest ts {newest}); e.g.\n{}",
        federated.len(),
        missing_examples.join("\n")
    );
}

/// `{series key: {timestamp_ms: value}}` from a matrix answer.
fn stored_samples(data: &serde_json::Value) -> BTreeMap<String, BTreeMap<i64, f64>> {
    assert_eq!(data["resultType"], "matrix", "{data}");
    let mut out = BTreeMap::new();
    for series in data["result"].as_array().expect("result array") {
        let mut labels: BTreeMap<String, String> = series["metric"]
            .as_object()
            .expect("metric object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let name = labels.remove("__name__").unwrap_or_default();
        let samples = series["values"]
            .as_array()
            .expect("values array")
            .iter()
            .map(|pair| {
                let ts = (pair[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
                let v = exposition::parse_value(pair[1].as_str().expect("value")).unwrap();
                (ts, v)
            })
            .collect();
        out.insert(series_key(&name, &labels), samples);
    }
    out
}

/// Whether `name` or the family it belongs to (`_bucket`, `_sum`, `_count`) has a TYPE.
fn has_type_line(exp: &Exposition, name: &str) -> bool {
    exp.types.contains_key(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .any(|family| exp.types.contains_key(family))
}

/// promtool's lint problems (`<metric> <problem>` lines) for a body that must parse.
fn lint_lines(what: &str, body: &str) -> BTreeSet<String> {
    let (_, out) = promtool_check_metrics(body);
    assert!(
        !out.contains("error while linting"),
        "promtool cannot parse {what}:\n{out}"
    );
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// promtool must parse the federated body; the only lint problems tolerated are
/// "no help text" and those promtool reports for node_exporter's own body.
///
/// Why: promtool 2.42 on a real Prometheus 2.42's `/federate` of node_exporter exits
/// 3 with exactly two kinds of lines: `<metric> no help text` for every family
/// (federation emits `# TYPE` but no `# HELP`), and node_exporter's own naming lints
/// (`node_memory_MemFree_bytes … 'snake_case' not 'camelCase'`, `node_entropy_* use base
/// unit "bytes" instead of "bits"`), which promtool also prints for node_exporter's
/// `/metrics`. Anything else (a parse error, a suffix lint caused by a wrong `# TYPE`)
/// is promflow's doing.
fn check_promtool_on_federate(federate_body: &str, node_body: &str) {
    let allowed = lint_lines("node_exporter's /metrics", node_body);
    let unexpected: Vec<String> = lint_lines("/federate", federate_body)
        .into_iter()
        .filter(|l| !l.ends_with(" no help text") && !allowed.contains(l))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool lint problems on /federate not explained by node_exporter's own body:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn prometheus_stores_exactly_what_promflow_federates() {
    let node = NodeExporter::start();
    let promflow = Promflow::start(&source_config(&node.addr().to_string()));
    let oracle = Prometheus::start(&oracle_config(&promflow.addr().to_string()));
    check_oracle_stores_federated_samples(|| promflow.federate_body(&[NODE_MATCHER]), &oracle);
}

#[test]
fn promtool_accepts_promflow_federate_and_metrics() {
    let node = NodeExporter::start();
    let promflow = Promflow::start(&source_config(&node.addr().to_string()));
    let body = wait_for(Duration::from_secs(30), || {
        let body = promflow.federate_body(&[NODE_MATCHER]);
        (exposition::parse(&body).samples.len() >= 100).then_some(body)
    })
    .expect("promflow never federated >= 100 node series within 30s");
    check_promtool_on_federate(&body, &node.metrics_body());

    // promflow's own metrics have HELP and TYPE and follow the naming rules, like
    // Prometheus's own /metrics, which promtool 2.42 passes with no output.
    let (ok, out) = promtool_check_metrics(&promflow.get_ok("/metrics"));
    assert!(ok, "promtool check metrics on promflow's /metrics:\n{out}");
}

#[test]
fn reference_prometheus_passes_the_federation_check() {
    let node = NodeExporter::start();
    let source = Prometheus::start(&source_config(&node.addr().to_string()));
    let oracle = Prometheus::start(&oracle_config(&source.addr().to_string()));
    let fetch = || {
        source.get_ok(&common::http::with_query(
            "/federate",
            &[("match[]", NODE_MATCHER)],
        ))
    };
    check_oracle_stores_federated_samples(fetch, &oracle);
    check_promtool_on_federate(&fetch(), &node.metrics_body());
    let (ok, out) = promtool_check_metrics(&source.get_ok("/metrics"));
    assert!(
        ok,
        "promtool check metrics on Prometheus's /metrics:\n{out}"
    );
}

/// A promflow main federating `source` (1s, like the reference stack's main) with an
/// alert over a federated series; `rules` is the rule file's path.
fn main_config(source: &str, rules: &std::path::Path) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {}
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{{job="node"}}']
    static_configs:
      - targets: ['{source}']
"#,
        rules.display()
    )
}

/// Fires as long as the federated `up` of the node job is current: `for: 3s` needs
/// the federated samples at consecutive evaluations.
const FEDERATED_RULES: &str = r#"groups:
  - name: federated
    rules:
      - alert: NodeFederated
        expr: up{job="node", federated_from="source"} == 1
        for: 3s
"#;

fn samples_late(main: &Promflow) -> f64 {
    main.metrics()
        .sum("promflow_samples_late_total")
        .expect("promflow_samples_late_total on /metrics")
}

/// The federated samples carry the source's scrape timestamps, behind the main's
/// scrape: the main's watermark is held back by their lag (README "Late samples"), so
/// the alert over them fires and, once the first scrape measured the lag, no sample is
/// late any more.
fn check_alert_over_federated_series_fires(source: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, FEDERATED_RULES).unwrap();
    let main = Promflow::start(&main_config(source, &rules));
    let firing = wait_for(Duration::from_secs(40), || {
        let alerts: serde_json::Value =
            serde_json::from_str(&main.get_ok("/api/v1/alerts")).unwrap();
        alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "NodeFederated" && a["state"] == "firing")
            .then_some(())
    });
    assert!(
        firing.is_some(),
        "NodeFederated never fired; late samples: {}; {}",
        samples_late(&main),
        main.get_ok("/api/v1/alerts")
    );
    let late = samples_late(&main);
    // Source scrapes every 3s: several new federated samples per series meanwhile.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        samples_late(&main),
        late,
        "federated samples late after the first scrapes"
    );
    let rule_up = main.query(r#"ALERTS{alertname="NodeFederated",alertstate="firing"}"#);
    assert_eq!(
        rule_up["result"].as_array().map(Vec::len),
        Some(1),
        "{rule_up}"
    );
}

#[test]
fn promflow_federating_promflow_fires_alerts_over_federated_series() {
    let node = NodeExporter::start();
    let source = Promflow::start(&source_config(&node.addr().to_string()));
    check_alert_over_federated_series_fires(&source.addr().to_string());
}

#[test]
fn promflow_federating_prometheus_fires_alerts_over_federated_series() {
    let node = NodeExporter::start();
    let source = Prometheus::start(&source_config(&node.addr().to_string()));
    check_alert_over_federated_series_fires(&source.addr().to_string());
}
