//! Scraping real exporters: promflow scrapes node_exporter and a Prometheus's own
//! `/metrics`, and what it reports about those scrapes (via `/federate` and its own
//! `/metrics`) is consistent with what the exporters serve.
//!
//! Real peers: node_exporter (`prometheus-node-exporter`) and Prometheus 2.42
//! (`prometheus`). `.ci/run` installs them.
//!
//! `reference_prometheus_passes_the_scrape_checks` runs the same checks with a real
//! Prometheus in promflow's place, so the checks are known to hold for the reference.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::exposition::{self, Exposition};
use common::{wait_for, NodeExporter, Peer, Prometheus, Promflow};

/// The series every scrape adds besides the target's own samples.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn scraper_config(node: &str, prometheus: &str) -> String {
    format!(
        r#"# One node_exporter and one Prometheus, scraped every second.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['{node}']
  - job_name: prometheus
    static_configs:
      - targets: ['{prometheus}']
"#
    )
}

/// A Prometheus that only serves its own `/metrics` (it scrapes nothing).
const TARGET_PROMETHEUS_CONFIG: &str =
    "# Scrapes nothing: only a scrape target.\nglobal:\n  scrape_interval: 1m\n";

/// The checks shared by promflow and the reference; `server` is the scraper.
fn check_scrapes(server: &Peer, node: &NodeExporter) {
    // 1. A few scrapes: `up == 1` for both jobs at three different timestamps.
    let mut seen: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let enough = wait_for(Duration::from_secs(30), || {
        let fed = server.federate(&[r#"{__name__="up"}"#]);
        for job in ["node", "prometheus"] {
            if let Some(up) = fed.find("up", &[("job", job)]) {
                assert_eq!(up.value, 1.0, "up for job {job} is not 1: {up:?}");
                assert!(
                    up.label("instance").is_some(),
                    "up without instance: {up:?}"
                );
                seen.entry(job.to_string())
                    .or_default()
                    .insert(up.timestamp_ms.expect("federated up has a timestamp"));
            }
        }
        (seen.len() == 2 && seen.values().all(|ts| ts.len() >= 3)).then_some(())
    });
    assert!(
        enough.is_some(),
        "no 3 scrapes with up == 1 per job within 30s: {seen:?}"
    );

    // 2. Both scrapes returned samples, and nothing was dropped by relabeling.
    let fed = server.federate(&[r#"{__name__=~"scrape_.+"}"#]);
    for job in ["node", "prometheus"] {
        let scraped = fed
            .find("scrape_samples_scraped", &[("job", job)])
            .unwrap_or_else(|| panic!("no scrape_samples_scraped for job {job}"));
        assert!(
            scraped.value > 0.0,
            "scrape_samples_scraped for {job}: {scraped:?}"
        );
        for name in SYNTHETIC.iter().filter(|n| **n != "up") {
            assert!(
                fed.find(name, &[("job", job)]).is_some(),
                "no {name} for job {job}"
            );
        }
    }

    // 3. The node series promflow holds are one whole scrape of node_exporter.
    //    node_exporter's series set can change a little between scrapes, so the exact
    //    comparison is internal (one scrape's federated samples vs the
    //    scrape_samples_scraped of that same scrape), and the comparison with a body
    //    we fetch ourselves is by metric names (stable) and a loose sample count.
    let snapshot = wait_for(Duration::from_secs(15), || {
        consistent_snapshot(&server.federate(&[r#"{job="node"}"#]))
    })
    .expect("no /federate answer within 15s where all job=node samples share one timestamp");
    let scraped = snapshot.find("scrape_samples_scraped", &[]).unwrap().value;
    let post = snapshot
        .find("scrape_samples_post_metric_relabeling", &[])
        .unwrap()
        .value;
    assert_eq!(
        scraped, post,
        "no metric_relabel_configs, yet samples were dropped"
    );
    let own: Vec<_> = snapshot
        .samples
        .iter()
        .filter(|s| !SYNTHETIC.contains(&s.name.as_str()))
        .collect();
    assert_eq!(
        own.len() as f64,
        scraped,
        "federated node series of one scrape vs its scrape_samples_scraped"
    );

    let body = exposition::parse(&node.metrics_body());
    let body_names: BTreeSet<&str> = body.samples.iter().map(|s| s.name.as_str()).collect();
    let fed_names: BTreeSet<&str> = own.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        fed_names, body_names,
        "metric names federated for job=node vs node_exporter's /metrics"
    );
    let diff = (body.samples.len() as f64 - scraped).abs();
    assert!(
        diff <= (body.samples.len() as f64 * 0.02).max(5.0),
        "node_exporter served {} samples, the scrape reported {scraped}",
        body.samples.len()
    );
}

/// The body if every sample in it carries the same timestamp (one scrape, no torn read).
fn consistent_snapshot(fed: &Exposition) -> Option<Exposition> {
    let stamps: BTreeSet<Option<i64>> = fed.samples.iter().map(|s| s.timestamp_ms).collect();
    (stamps.len() == 1 && fed.samples.len() > SYNTHETIC.len()).then(|| fed.clone())
}

#[test]
fn promflow_scrapes_node_exporter_and_prometheus() {
    let node = NodeExporter::start();
    let target = Prometheus::start(TARGET_PROMETHEUS_CONFIG);
    let promflow = Promflow::start(&scraper_config(
        &node.addr().to_string(),
        &target.addr().to_string(),
    ));
    check_scrapes(&promflow, &node);

    // No parse errors on either exporter's body.
    let metrics = promflow.metrics();
    let errors = metrics
        .sum("promflow_scrape_parse_errors_total")
        .expect("promflow's /metrics has no promflow_scrape_parse_errors_total");
    assert_eq!(errors, 0.0, "promflow_scrape_parse_errors_total");
    assert!(
        metrics
            .sum("promflow_samples_ingested_total")
            .unwrap_or(0.0)
            > 0.0,
        "promflow_samples_ingested_total is missing or 0"
    );
    assert!(
        metrics.sum("promflow_active_series").unwrap_or(0.0) > 0.0,
        "promflow_active_series is missing or 0"
    );
}

#[test]
fn reference_prometheus_passes_the_scrape_checks() {
    let node = NodeExporter::start();
    let target = Prometheus::start(TARGET_PROMETHEUS_CONFIG);
    let scraper = Prometheus::start(&scraper_config(
        &node.addr().to_string(),
        &target.addr().to_string(),
    ));
    check_scrapes(&scraper, &node);
}
