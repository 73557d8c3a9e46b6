//! `--enable-feature=created-timestamp-zero-ingestion`: the zero sample of each start
//! (created) timestamp a scrape brings.
//!
//! Peers: two controllable exporters per server (`tests/common/exporter.rs`), one
//! serving OpenMetrics text with `_created` lines, one protobuf with
//! `created_timestamp` (a counter and a native histogram); every sample carries an
//! explicit timestamp, so what is stored does not depend on when the scrapes run.
//! A real Prometheus 2.42 (`--enable-feature=native-histograms`, so it reads protobuf;
//! it predates created-timestamp ingestion) scrapes the same bodies as a promflow
//! without the feature: both must store the same. What promflow stores with the
//! feature is derived from Prometheus 3.x's source, as no 3.x binary is at hand:
//! scrape/scrape.go (`scrapeLoop.append`: `AppendSTZeroSample` /
//! `AppendHistogramSTZeroSample` before each sample whose start timestamp is set),
//! tsdb/head_append.go (`AppendSTZeroSample`: refused when the start is not before
//! the sample, or not after the series' newest sample — the scrape loop ignores
//! those refusals), model/textparse/openmetricsparse.go (`StartTimestamp` and
//! `WithOMParserSTSeriesSkipped`: `_created` lines are starts, not series). Then the
//! stored samples are written into the oracle by remote write, and `rate` and
//! `increase` over promflow's series must equal the oracle's over those samples.

mod common;

use std::time::Duration;

use common::exporter::{Exporter, Reply};
use common::protobuf::{self, family, label};
use common::{now_ms, remote_write, wait_until, Peer, Prometheus, Promflow};
use promflow::scrape::exposition::metrics_proto::{
    Counter, Histogram, Metric, MetricType, Timestamp,
};

const WAIT: Duration = Duration::from_secs(30);

/// What the targets expose in one step: the counters' value, the samples'
/// timestamp and the start timestamp, ms.
#[derive(Clone, Copy)]
struct Step {
    value: f64,
    at: i64,
    start: i64,
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// OpenMetrics: the counter `c` with its `_created` line after it (at the sample's
/// time, so the 2.42 oracle stores it at a time that does not depend on the scrape).
fn open_metrics(step: Step) -> Reply {
    let at = seconds(step.at);
    Reply {
        status: 200,
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        gzip: false,
        body: format!(
            "# TYPE c counter\nc_total {} {at}\nc_created {} {at}\n# EOF\n",
            step.value,
            seconds(step.start)
        )
        .into_bytes(),
    }
}

/// OpenMetrics: the classic histogram `lat` (every count `value`), its `_created`
/// line last; converted to a native histogram with custom buckets by the job.
fn classic_histogram(step: Step) -> Reply {
    let (at, v) = (seconds(step.at), step.value);
    Reply {
        body: format!(
            "# TYPE lat histogram\nlat_bucket{{le=\"1\"}} {v} {at}\nlat_bucket{{le=\"+Inf\"}} {v} {at}\nlat_count {v} {at}\nlat_sum {v} {at}\nlat_created {} {at}\n# EOF\n",
            seconds(step.start)
        )
        .into_bytes(),
        ..open_metrics(step)
    }
}

/// Protobuf: the counter `pc` and the native histogram `ph` (count and zero bucket
/// `value`), both with `created_timestamp`.
fn proto(step: Step) -> Reply {
    let created = Some(Timestamp {
        seconds: step.start.div_euclid(1000),
        nanos: (step.start.rem_euclid(1000) * 1_000_000) as i32,
    });
    let n = step.value as u64;
    protobuf::reply(&[
        family(
            "pc_total",
            MetricType::Counter,
            None,
            vec![Metric {
                label: vec![label("kind", "proto")],
                counter: Some(Counter {
                    value: Some(step.value),
                    exemplar: None,
                    created_timestamp: created,
                }),
                timestamp_ms: Some(step.at),
                ..Default::default()
            }],
        ),
        family(
            "ph",
            MetricType::Histogram,
            None,
            vec![Metric {
                histogram: Some(Histogram {
                    sample_count: Some(n),
                    sample_sum: Some(step.value),
                    schema: Some(0),
                    zero_threshold: Some(0.001),
                    zero_count: Some(n),
                    created_timestamp: created,
                    ..Default::default()
                }),
                timestamp_ms: Some(step.at),
                ..Default::default()
            }],
        ),
    ])
}

/// Jobs `om` and `pb` scraping the two exporters; `pb_extra` goes into `pb`.
fn config(om: &Exporter, pb: &Exporter, pb_extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: om\n    static_configs:\n      - targets: ['{}']\n  - job_name: pb\n{pb_extra}    static_configs:\n      - targets: ['{}']\n",
        om.addr(),
        pb.addr()
    )
}

/// The raw float samples of `selector` over the hour before `at_ms`: `(ms, value)`.
fn raw(server: &Peer, selector: &str, at_ms: i64) -> Vec<(i64, String)> {
    raw_of(server, selector, at_ms, "values", |v| v.as_str())
}

/// The raw native-histogram samples of `selector` over the hour before `at_ms`:
/// `(ms, count)`.
fn raw_histograms(server: &Peer, selector: &str, at_ms: i64) -> Vec<(i64, String)> {
    raw_of(server, selector, at_ms, "histograms", |h| {
        h["count"].as_str()
    })
}

/// The `(ms, text)` pairs of the first series' `field` in `selector[1h]` at `at_ms`,
/// `text` taken from each pair's value by `value`.
fn raw_of(
    server: &Peer,
    selector: &str,
    at_ms: i64,
    field: &str,
    value: impl Fn(&serde_json::Value) -> Option<&str>,
) -> Vec<(i64, String)> {
    let data = server.query_at(&format!("{selector}[1h]"), at_ms);
    let Some(series) = data["result"].as_array().and_then(|r| r.first()) else {
        return Vec::new();
    };
    series[field]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, value(&p[1]).unwrap().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Raw samples as `(ms, value text)`.
type Samples = Vec<(i64, String)>;

fn expected(samples: &[(i64, f64)]) -> Vec<(i64, String)> {
    samples.iter().map(|&(t, v)| (t, format!("{v}"))).collect()
}

#[test]
fn start_timestamps_become_zero_samples_once_where_newest() {
    // Whole seconds ten minutes ago: every step's samples are in the past, in order.
    let base = (now_ms() - 600_000) / 1000 * 1000;
    let s = |k: i64| base + k * 1000;
    let steps = [
        // A new series: its start is before it.
        Step {
            value: 5.0,
            at: s(10),
            start: s(0),
        },
        // The same start again: nothing more.
        Step {
            value: 6.0,
            at: s(20),
            start: s(0),
        },
        // A start at the series' newest sample, then one before its newest: refused.
        Step {
            value: 7.0,
            at: s(30),
            start: s(20),
        },
        Step {
            value: 8.0,
            at: s(40),
            start: s(25),
        },
        // A restart: the new start is after the newest sample.
        Step {
            value: 2.0,
            at: s(60),
            start: s(50),
        },
    ];
    let (om_on, pb_on) = (
        Exporter::start(open_metrics(steps[0])),
        Exporter::start(proto(steps[0])),
    );
    let (om_off, pb_off) = (
        Exporter::start(open_metrics(steps[0])),
        Exporter::start(proto(steps[0])),
    );
    let native = "--enable-feature=native-histograms";
    // Native histograms for the protobuf job only: the OpenMetrics job's
    // scrape_protocols stay at their default, which the feature changes.
    // And a classic histogram converted to NHCB (a 3.x setting 2.42 refuses).
    let nhcb = Exporter::start(classic_histogram(steps[0]));
    let on = Promflow::start_with_args(
        &format!(
            "{}  - job_name: nhcb\n    convert_classic_histograms_to_nhcb: true\n    static_configs:\n      - targets: ['{}']\n",
            config(&om_on, &pb_on, "    scrape_native_histograms: true\n"),
            nhcb.addr()
        ),
        &["--enable-feature=created-timestamp-zero-ingestion"],
    );
    let off = Promflow::start_with_args(&config(&om_off, &pb_off, ""), &[native]);
    let oracle = Prometheus::start_with_args(
        &config(&om_off, &pb_off, ""),
        &[native, "--web.enable-remote-write-receiver"],
    );
    for step in steps {
        for exporter in [&om_on, &om_off] {
            exporter.set(open_metrics(step));
        }
        for exporter in [&pb_on, &pb_off] {
            exporter.set(proto(step));
        }
        nhcb.set(classic_histogram(step));
        for server in [&*on, &*off, &*oracle] {
            for metric in ["c_total", "pc_total"] {
                assert!(
                    wait_until(WAIT, || server.stored_at(metric, step.at)),
                    "{metric} at {}: {:?}",
                    step.at,
                    raw(server, metric, step.at + 1000)
                );
            }
        }
        assert!(
            wait_until(WAIT, || on.stored_at("lat", step.at)),
            "lat at {}",
            step.at
        );
        // Two more scrapes of the step: repeated starts must not add anything.
        std::thread::sleep(Duration::from_millis(2_100));
    }
    let end = s(61);

    // Without the feature: what Prometheus 2.42 stores (`_created` a plain series).
    for selector in ["c_total", "c_created", "pc_total"] {
        let theirs = raw(&oracle, selector, end);
        assert_eq!(raw(&off, selector, end), theirs, "{selector}");
        assert_eq!(theirs.len(), steps.len(), "{selector}: {theirs:?}");
    }

    // With it: one zero sample at the first start, none for a start at or before the
    // newest sample, one at the restart's start; `_created` is no series.
    let counter = [
        (s(0), 0.0),
        (s(10), 5.0),
        (s(20), 6.0),
        (s(30), 7.0),
        (s(40), 8.0),
        (s(50), 0.0),
        (s(60), 2.0),
    ];
    assert_eq!(raw(&on, "c_total", end), expected(&counter));
    assert_eq!(raw(&on, "pc_total", end), expected(&counter));
    assert_eq!(raw(&on, "c_created", end), []);
    // The native histogram: an empty histogram at each start written.
    assert_eq!(raw_histograms(&on, "ph", end), expected(&counter));
    // The converted histogram: the start of its first series (Prometheus's
    // `NHCBParser.StartTimestamp`, model/textparse/nhcbparse.go).
    assert_eq!(raw_histograms(&on, "lat", end), expected(&counter));

    // rate and increase over promflow's series equal the oracle's over the same
    // samples, written into it by remote write.
    let copy: Vec<(i64, f64)> = counter.to_vec();
    let labels = vec![
        ("__name__".to_string(), "copied_total".to_string()),
        ("job".to_string(), "copy".to_string()),
    ];
    let response = remote_write::send(
        &oracle.url(""),
        &remote_write::body(&[(labels, copy.clone())]),
    );
    assert!(response.status < 300, "{response:?}");
    assert_eq!(raw(&oracle, "copied_total", end), expected(&copy));
    for (function, range, at) in [
        ("increase", "1m", s(15)),
        ("increase", "90s", s(61)),
        ("rate", "30s", s(45)),
        ("rate", "25s", s(62)),
        ("increase", "12s", s(11)),
    ] {
        let value = |server: &Peer, metric: &str| {
            server.query_at(&format!("{function}({metric}[{range}])"), at)["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        };
        let theirs = value(&oracle, "copied_total");
        assert!(theirs.is_some(), "{function}[{range}] at {at}");
        for metric in ["c_total", "pc_total"] {
            assert_eq!(
                value(&on, metric),
                theirs,
                "{function}({metric}[{range}]) at {at}"
            );
        }
    }

    // Protobuf first: Prometheus 3.x's default scrape_protocols with the feature.
    let accepts: Vec<String> = om_on
        .requests()
        .iter()
        .filter_map(|r| {
            r.iter()
                .find(|(k, _)| k == "accept")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(
        !accepts.is_empty()
            && accepts
                .iter()
                .all(|a| a.starts_with("application/vnd.google.protobuf;")),
        "{accepts:?}"
    );
}

/// OpenMetrics: the counter `c` at `value` with its `_created` line, and no sample
/// timestamp: the samples are stamped with their scrapes' start, so a start before
/// the scrape lies behind promflow's watermark when the scrape lands.
fn scraped_counter(value: f64, start_ms: i64) -> Reply {
    Reply {
        body: format!(
            "# TYPE c counter\nc_total {value}\nc_created {}\n# EOF\n",
            seconds(start_ms)
        )
        .into_bytes(),
        ..open_metrics(Step {
            value,
            at: 0,
            start: 0,
        })
    }
}

/// A maintained recording rule (`--rules.evaluation` `interval` or `on-arrival`)
/// whose window holds a series' start: its zero sample, written at the start before
/// the scrape that brought it (so behind the watermark), reaches the rule, and every
/// recorded value equals the same expression evaluated ad hoc over storage, and the
/// oracle's (Prometheus 2.42) over the stored samples, copied into it by remote write
/// — as a Prometheus 3.x rule over its storage, which holds the zero sample, gives.
/// The counter starts 3s before the first scrape, then restarts between two
/// scrapes. An evaluation between a start and the scrape that brought it was made
/// before the zero sample was stored (as Prometheus's was), so it is not compared.
/// On arrival, a recorded `rate`/`increase` is the value at the counter's newest
/// sample (see the README, *Rules and alerts*), so that is the time evaluated ad hoc.
fn maintained_rules_read_the_zero_samples_of_starts(mode: &str) {
    let first_start = now_ms() - 3_000;
    let exporter = Exporter::start(scraped_counter(5.0, first_start));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: starts\n    interval: 1s\n    rules:\n\
         \x20     - record: c:increase\n        expr: increase(c_total[5m])\n\
         \x20     - record: c:rate\n        expr: rate(c_total[1m])\n",
    )
    .unwrap();
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: om\n    static_configs:\n      - targets: ['{}']\n",
        rules.display(),
        exporter.addr()
    );
    let evaluation = format!("--rules.evaluation={mode}");
    let on = Promflow::start_with_args(
        &yaml,
        &[
            "--enable-feature=created-timestamp-zero-ingestion",
            &evaluation,
        ],
    );
    let oracle = Prometheus::start_with_args(
        "global:\n  scrape_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    );
    let stored = |metric: &str| raw(&on, metric, now_ms() + 1_000);
    let samples_after = |from: i64| stored("c_total").iter().filter(|s| s.0 > from).count();
    assert!(
        wait_until(WAIT, || samples_after(first_start) >= 4),
        "{:?}\n{}",
        stored("c_total"),
        on.log()
    );
    exporter.set(scraped_counter(9.0, first_start));
    let newest = |samples: &[(i64, String)]| samples.last().map_or(0, |s| s.0);
    let before = newest(&stored("c_total"));
    assert!(wait_until(WAIT, || samples_after(before) >= 3));
    // The restart: its start just after the newest stored sample.
    let restart = newest(&stored("c_total")) + 1;
    exporter.set(scraped_counter(2.0, restart));
    assert!(wait_until(WAIT, || samples_after(restart) >= 4));
    exporter.set(scraped_counter(4.0, restart));
    let before = newest(&stored("c_total"));
    assert!(wait_until(WAIT, || samples_after(before) >= 3));

    // What the rules recorded so far; every sample they read is stored by then.
    let recorded: Vec<(&str, &str, Samples)> = [
        ("c:increase", "increase(c_total[5m])"),
        ("c:rate", "rate(c_total[1m])"),
    ]
    .into_iter()
    .map(|(record, expr)| (record, expr, stored(record)))
    .collect();
    std::thread::sleep(Duration::from_millis(1_500));
    let counter = stored("c_total");
    // As Prometheus 3.x stores them: a zero sample at each start, before the first
    // scrape after it.
    let zeros: Vec<i64> = counter.iter().filter(|s| s.1 == "0").map(|s| s.0).collect();
    assert_eq!(zeros, [first_start, restart], "{counter:?}");
    assert_eq!(counter[0].0, first_start);
    // An evaluation time between a start and the sample after it.
    let before_its_sample = |t: i64| {
        zeros.iter().any(|&z| {
            let next = counter.iter().find(|s| s.0 > z).map_or(i64::MAX, |s| s.0);
            t >= z && t < next
        })
    };

    let copy: Vec<(i64, f64)> = counter
        .iter()
        .map(|(t, v)| (*t, v.parse().unwrap()))
        .collect();
    let labels = vec![("__name__".to_string(), "copied_total".to_string())];
    let response = remote_write::send(&oracle.url(""), &remote_write::body(&[(labels, copy)]));
    assert!(response.status < 300, "{response:?}");
    assert_eq!(raw(&oracle, "copied_total", now_ms()), counter);
    for (record, expr, values) in recorded {
        // Recorded over the first start's zero sample and the restart's.
        assert!(
            values.iter().any(|v| v.0 > counter[1].0 && v.0 < restart),
            "{record}: {values:?}"
        );
        assert!(values.iter().any(|v| v.0 > restart), "{record}: {values:?}");
        for (t, value) in values.iter().filter(|v| !before_its_sample(v.0)) {
            // On arrival, `rate` and `increase` are evaluated at the newest sample
            // (see the README, *Rules and alerts*).
            let newest = counter.iter().rev().find(|s| s.0 <= *t).map(|s| s.0);
            let eval_at = match mode {
                "on-arrival" => newest.unwrap(),
                _ => *t,
            };
            let at = |server: &Peer, expr: &str| {
                server.query_at(expr, eval_at)["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            };
            assert_eq!(
                Some(value.clone()),
                at(&on, expr),
                "{record} at {t}: the maintained rule and {expr} over storage at {eval_at}\n{counter:?}"
            );
            let theirs = expr.replace("c_total", "copied_total");
            assert_eq!(
                Some(value.clone()),
                at(&oracle, &theirs),
                "{record} at {t}: the maintained rule and the oracle's {theirs} at {eval_at}\n{counter:?}"
            );
        }
    }
}

#[test]
fn interval_rules_read_the_zero_samples_of_starts() {
    maintained_rules_read_the_zero_samples_of_starts("interval");
}

#[test]
fn on_arrival_rules_read_the_zero_samples_of_starts() {
    maintained_rules_read_the_zero_samples_of_starts("on-arrival");
}
