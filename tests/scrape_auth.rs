//! `basic_auth` and `authorization` on scrape jobs, against the oracle: a real
//! Prometheus 2.42 scrapes the same recording exporters with the same job settings,
//! and the `Authorization` headers both send are compared; a rotated password file
//! applies at the next scrape, as in Prometheus.
//!
//! Peers: Prometheus 2.42, the controllable exporter (records request headers).

mod common;

use common::exporter::{Exporter, Reply};
use common::{wait_until, Prometheus, Promflow};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The `Authorization` values of the requests whose User-Agent starts with `agent`.
fn authorizations(exporter: &Exporter, agent: &str) -> BTreeSet<String> {
    exporter
        .requests()
        .iter()
        .filter(|headers| {
            headers
                .iter()
                .any(|(k, v)| k == "user-agent" && v.starts_with(agent))
        })
        .map(|headers| {
            headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn scrape_credentials_are_sent_as_prometheus_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "from-a-file\n").unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken\n").unwrap();
    let exporters: Vec<Exporter> = (0..4)
        .map(|_| Exporter::start(Reply::text("m 1\n")))
        .collect();
    let jobs = [
        "basic_auth:\n      username: alice\n      password: s3cret".to_string(),
        format!(
            "basic_auth:\n      username: bob\n      password_file: {}",
            password_file.display()
        ),
        "authorization:\n      credentials: abc".to_string(),
        format!(
            "authorization:\n      type: Token\n      credentials_file: {}",
            token_file.display()
        ),
    ];
    let mut config = String::from(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n",
    );
    for (i, (job, exporter)) in jobs.iter().zip(&exporters).enumerate() {
        config.push_str(&format!(
            "  - job_name: job{i}\n    {job}\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr()
        ));
    }
    let _promflow = Promflow::start(&config);
    let _prometheus = Prometheus::start(&config);
    for exporter in &exporters {
        assert!(
            wait_until(WAIT, || !authorizations(exporter, "promflow/").is_empty()
                && !authorizations(exporter, "Prometheus/").is_empty()),
            "not scraped by both: {:?}",
            exporter.requests()
        );
        let ours = authorizations(exporter, "promflow/");
        let theirs = authorizations(exporter, "Prometheus/");
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(!ours.contains(""), "no Authorization header sent");
    }
    // The password file is read at each scrape.
    std::fs::write(&password_file, "rotated").unwrap();
    let rotated = |agent: &str| authorizations(&exporters[1], agent).len() == 2;
    assert!(wait_until(WAIT, || rotated("promflow/") && rotated("Prometheus/")));
    assert_eq!(
        authorizations(&exporters[1], "promflow/"),
        authorizations(&exporters[1], "Prometheus/")
    );
}
