//! Federation under load (issue 19): while many targets are scraped, every read of the
//! federation output holds every live series — `/federate` plain and gzip, a registered
//! view (`/federate?view=`), and the snapshot of `/api/v1/stream` (by `match[]` and by
//! view). A read that lacks a series of a target being scraped at that moment is what
//! a federating Prometheus sees as that series flapping stale.
//!
//! Peers: synthetic exporters (`common::exporter`), each serving a fixed body, so every
//! series of every target is live throughout and the expected set is known from the
//! bodies: each exposed series with its `job` and `instance`, and the five series a
//! scrape reports about itself (`up`, `scrape_duration_seconds`, …).

mod common;

use common::exporter::{Exporter, Reply};
use common::exposition::{self, series_key};
use common::http;
use common::stream_client::StreamClient;
use common::{wait_until, Promflow};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Targets scraped, each every [`INTERVAL`].
const TARGETS: usize = 30;
/// Series each target exposes (three metric families).
const SERIES_PER_TARGET: usize = 300;
const INTERVAL: &str = "1s";
/// How long the reads go on.
const READ_FOR: Duration = Duration::from_secs(15);
/// Every series, as the selector of the reads.
const EVERYTHING: &str = r#"{__name__=~".+"}"#;
const VIEW: &str = "everything";

/// The series a scrape reports about itself, live as long as the target is scraped.
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// One target's body: `SERIES_PER_TARGET` series over three families, like a small
/// node_exporter (`name{label="…"} value`).
fn body(target: usize) -> String {
    (0..SERIES_PER_TARGET)
        .map(|i| {
            let family = ["load_cpu_seconds_total", "load_bytes", "load_info"][i % 3];
            format!("{family}{{series=\"{i}\",t=\"{target}\"}} {i}\n")
        })
        .collect()
}

/// The keys (`name{labels}`, sorted labels) of every series promflow federates for
/// these exporters, which it scrapes as job `load`.
fn expected_series(exporters: &[Exporter]) -> BTreeSet<String> {
    let mut expected = BTreeSet::new();
    for (target, exporter) in exporters.iter().enumerate() {
        let instance = exporter.addr().to_string();
        let target_labels = |mut labels: BTreeMap<String, String>| {
            labels.insert("job".into(), "load".into());
            labels.insert("instance".into(), instance.clone());
            labels
        };
        for s in exposition::parse(&body(target)).samples {
            expected.insert(series_key(&s.name, &target_labels(s.labels)));
        }
        for name in REPORT_SERIES {
            expected.insert(series_key(name, &target_labels(BTreeMap::new())));
        }
    }
    expected
}

/// Compares one read with the expected set: `None` when it holds every expected
/// series, else what it lacked (how many, per instance, and one example).
fn check(read: String, got: &BTreeSet<String>, expected: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<&String> = expected.difference(got).collect();
    let example = missing.first()?;
    let mut by_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for key in &missing {
        let instance = key
            .split("instance=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?");
        *by_instance.entry(instance).or_insert(0) += 1;
    }
    Some(format!(
        "{read}: {} of {} series, missing per instance {by_instance:?}, e.g. {example}",
        expected.len() - missing.len(),
        expected.len()
    ))
}

/// The series of one `/federate` read (`?match[]=` or `?view=`), gzip or not.
fn federate_read(promflow: &Promflow, query: (&str, &str), gzip: bool) -> BTreeSet<String> {
    let headers: &[(&str, &str)] = if gzip {
        &[("Accept-Encoding", "gzip")]
    } else {
        &[]
    };
    let url = promflow.url(&http::with_query("/federate", &[query]));
    let resp = http::send("GET", &url, headers, None, b"").expect("GET /federate");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-encoding"),
        gzip.then_some("gzip"),
        "Content-Encoding of /federate"
    );
    exposition::parse(&resp.body)
        .samples
        .iter()
        .map(|s| s.series())
        .collect()
}

/// The series of one `/api/v1/stream` snapshot: the sample events before
/// `snapshot_end`, whose count must be theirs.
fn stream_snapshot(promflow: &Promflow, path: &str) -> BTreeSet<String> {
    let mut client = StreamClient::open_path(promflow, path, "application/x-ndjson");
    let mut series = BTreeSet::new();
    let mut events = 0;
    loop {
        let e = client
            .next_event()
            .expect("stream ended within its snapshot");
        match e["type"].as_str() {
            Some("snapshot_end") => {
                assert_eq!(e["series"], events, "snapshot_end count: {e}");
                return series;
            }
            Some("sample") => {
                events += 1;
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(e["labels"].clone()).expect("labels");
                let mut labels = labels;
                let name = labels.remove("__name__").expect("__name__");
                assert!(
                    series.insert(series_key(&name, &labels)),
                    "series twice in a snapshot of {path} (event {events}): {e}"
                );
            }
            _ => panic!("unexpected event in a snapshot: {e}"),
        }
    }
}

#[test]
fn every_read_holds_every_live_series_while_targets_are_scraped() {
    let exporters: Vec<Exporter> = (0..TARGETS)
        .map(|t| Exporter::start(Reply::text(&body(t))))
        .collect();
    let targets: Vec<String> = exporters
        .iter()
        .map(|e| format!("'{}'", e.addr()))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\nscrape_configs:\n  - job_name: load\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    let promflow = Promflow::start_with_args(&config, &["--web.enable-federation-views-api"]);
    let resp = http::send(
        "PUT",
        &promflow.url(&format!("/api/v1/federation/{VIEW}")),
        &[],
        Some("application/x-www-form-urlencoded"),
        format!("match[]={}", http::encode(EVERYTHING)).as_bytes(),
    )
    .expect("PUT view");
    assert_eq!(resp.status, 202, "{}", resp.body);

    let expected = expected_series(&exporters);
    assert_eq!(expected.len(), TARGETS * (SERIES_PER_TARGET + 5));
    let all_in = |got: &BTreeSet<String>| expected.is_subset(got);
    assert!(
        wait_until(Duration::from_secs(30), || all_in(&federate_read(
            &promflow,
            ("match[]", EVERYTHING),
            false
        ))),
        "not every target was scraped within 30s"
    );

    // Two readers at once for READ_FOR: /federate in its three forms, and stream
    // snapshots by match[] and by view.
    let stream_by_match = http::with_query("/api/v1/stream", &[("match[]", EVERYTHING)]);
    let stream_by_view = format!("/api/v1/stream?view={VIEW}");
    let until = Instant::now() + READ_FOR;
    let (federate_reads, stream_reads) = std::thread::scope(|scope| {
        let federate = scope.spawn(|| {
            let mut reads = Vec::new();
            for n in 0.. {
                if Instant::now() >= until {
                    break;
                }
                let (what, got) = match n % 3 {
                    0 => (
                        "/federate",
                        federate_read(&promflow, ("match[]", EVERYTHING), false),
                    ),
                    1 => (
                        "/federate gzip",
                        federate_read(&promflow, ("match[]", EVERYTHING), true),
                    ),
                    _ => (
                        "/federate?view=",
                        federate_read(&promflow, ("view", VIEW), false),
                    ),
                };
                reads.push(check(format!("{what} #{n}"), &got, &expected));
            }
            reads
        });
        let stream = scope.spawn(|| {
            let mut reads = Vec::new();
            for n in 0.. {
                if Instant::now() >= until {
                    break;
                }
                let (what, path) = if n % 2 == 0 {
                    ("stream snapshot", &stream_by_match)
                } else {
                    ("stream snapshot ?view=", &stream_by_view)
                };
                let got = stream_snapshot(&promflow, path);
                reads.push(check(format!("{what} #{n}"), &got, &expected));
            }
            reads
        });
        (federate.join().unwrap(), stream.join().unwrap())
    });

    // Enough reads happened for the check to mean something (dozens of scrapes each).
    assert!(
        federate_reads.len() >= 6 && stream_reads.len() >= 4,
        "too few reads: {} /federate, {} stream snapshots",
        federate_reads.len(),
        stream_reads.len()
    );
    let reads = federate_reads.len() + stream_reads.len();
    let incomplete: Vec<String> = federate_reads
        .into_iter()
        .chain(stream_reads)
        .flatten()
        .collect();
    assert!(
        incomplete.is_empty(),
        "{} of {reads} reads lacked live series:\n{}",
        incomplete.len(),
        incomplete.join("\n")
    );
}
