//! The same dataflow in two timely processes: two engines in this test binary form a
//! timely cluster on 127.0.0.1 (processes 0 and 1, two workers each), each fed half of
//! the series of a synthetic workload, with rules registered on either process. The
//! union of what the two deliver must be what a one-worker engine delivers for the same
//! rules over all the series (every rule owned there; the maintained-rule tests hold
//! that to the reference evaluator): spread over the four workers of both processes,
//! an interval `sum by (job) (rate(x[5m]))` and `max by (job) (g)`, the per-series
//! `g > 0.5`, comparisons of a rate, a `label_replace` of a comparison, and one-to-one
//! joins (their sides exchanged by match key between the processes), a ratio of two
//! aggregations, shares of a total (an aggregation beside a per-series plan, `rate`'s
//! elements crossing with their names pending removal), a pick (`topk`) and a gather (`quantile`), sorts of per-series plans
//! (the owner sorts the union), every label set of their records crossing whole about
//! once per sender, receiver and period (the labels dictionary, counted and checked);
//! owned (reading series of both processes, placed on the workers of both: their
//! results cross back to the process that registered them), `g > 0.5` on arrival,
//! `absent` and a `group_left` join; and rules registered halfway
//! through with their windows seeded (spread per-series `max_over_time(…[1h])` and
//! `min_over_time`, a spread aggregation), each process's from a store of the samples
//! it was fed (the registering one's given at registration, the other's read by the
//! dataflow: `Engine::set_seed_source`), equal from their first evaluation; alerting
//! rules with an alert stage (`Engine::register_alerting_to`), registered on either
//! process and placed on workers of both, whose steps (`RuleOutput::alerts`) reach the
//! registering process with their outputs, labels decoded, equal to the one-worker
//! engine's; removed through the process that registered them,
//! every rule's channel closes.

use dataflows::promql::eval::Value;
use dataflows::promql::eval::{Selected, SeriesSource};
use dataflows::promql::plan::parse;
use dataflows::promql::testscript::store::MemStorage;
use dataflows::render::alerting::{AlertSeed, AlertSpec};
use dataflows::Selector;
use dataflows::{
    ClusterConfig, Delivery, Engine, EngineConfig, Labels, RuleHandle, RuleOutput, RuleSchedule,
    Sample,
};
use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const SCRAPE_MS: i64 = 15_000;
const SCRAPES: i64 = 60;
const EVERY_MS: i64 = 60_000;

/// What one process has stored so far, shared with its engine (its seed source).
#[derive(Clone, Default)]
struct Stored(Arc<RwLock<MemStorage>>);

impl SeriesSource for Stored {
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        self.0.read().unwrap().select(matchers, start_ms, end_ms)
    }
}

/// `(rule text, schedule, registering process)`.
fn rules() -> Vec<(&'static str, RuleSchedule, usize)> {
    let every = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: EVERY_MS,
    };
    vec![
        ("sum by (job) (rate(x[5m]))", every, 0),
        ("g > 0.5", every, 0),
        ("max by (job) (g)", every, 1),
        ("g > 0.5", RuleSchedule::OnArrival, 1),
        ("sort_desc(g{job=\"j1\"})", every, 0),
        ("g{job=\"j2\"} * on (instance, job) x{job=\"j2\"}", every, 0),
        ("rate(x{instance=~\"i[0-3]\"}[5m]) > 0.6", every, 0),
        ("rate(x{instance=~\"i[4-7]\"}[5m]) > 0.6", every, 0),
        ("rate(x[5m]) / on (instance, job) (g + 1)", every, 1),
        // A join under an aggregation of partials: its joiners' partials cross.
        (
            "sum by (job) (rate(x[5m]) / on (instance, job) (g + 1))",
            every,
            0,
        ),
        (
            "label_replace(g < 0.5, \"host\", \"$1\", \"instance\", \"i(.*)\")",
            every,
            1,
        ),
        (
            "sum by (job) (rate(x[5m])) / sum by (job) (g) > 0.05",
            every,
            0,
        ),
        ("topk by (job) (2, g)", every, 1),
        ("g / on (job) group_left sum by (job) (g)", every, 1),
        (
            "rate(x[5m]) / ignoring (instance) group_left sum without (instance) (rate(x[5m]))",
            every,
            0,
        ),
        ("quantile by (job) (0.5, rate(x[5m]))", every, 0),
        ("sort(x{job=\"j0\"})", every, 1),
        ("absent(g{job=\"j7\"})", every, 0),
        (
            "x{job=\"j1\"} * on (instance) group_left g{job=\"j1\"}",
            every,
            1,
        ),
    ]
}

/// Rules registered halfway through, seeded: `(rule text, registering process)`.
fn late_rules() -> Vec<(&'static str, usize)> {
    vec![
        ("max_over_time(g{job=\"j0\"}[1h])", 0),
        ("min_over_time(g{instance=\"i3\"}[1h])", 0),
        ("max by (job) (max_over_time(g[1h]))", 0),
    ]
}

/// Of `rules()` and `late_rules()`, the owned ones (not spread).
const OWNED_RULES: u64 = 3;

/// Alerting rules whose alert state is stepped in the dataflow: owned ones (a label
/// function inside an aggregation) reading distinct selectors, so they are placed over
/// every worker of both processes (an owner in the other process sends its steps home
/// in `HostRecord::Alerting`), then spread ones (their stage in the combiner):
/// `(rule text, registering process)`.
fn alerting_rules() -> Vec<(&'static str, usize)> {
    vec![
        (
            "max by (instance) (label_replace(g{job=\"j0\"}, \"f\", \"x\", \"\", \"\")) > 0.5",
            0,
        ),
        (
            "max by (instance) (label_replace(g{job=\"j1\"}, \"f\", \"x\", \"\", \"\")) > 0.5",
            0,
        ),
        (
            "max by (instance) (label_replace(g{job=\"j2\"}, \"f\", \"x\", \"\", \"\")) > 0.4",
            1,
        ),
        (
            "min by (job) (label_replace(g{instance=~\"i[0-3]\"}, \"f\", \"x\", \"\", \"\")) < 0.3",
            1,
        ),
        ("g{job=\"j1\"} > 0.5", 1),
        (
            "x{job=\"j0\"} > 0 and g{job=\"j0\", instance=~\"i[0-3]\"} < 0.6",
            0,
        ),
        ("avg by (job) (g) > 0.5", 1),
    ]
}

/// Of `alerting_rules()`, the owned ones.
const OWNED_ALERTING_RULES: u64 = 4;

fn alert_spec(i: usize) -> AlertSpec {
    AlertSpec {
        name: format!("A{i}"),
        labels: vec![("severity".into(), "page".into())],
        for_ms: EVERY_MS,
        keep_firing_for_ms: EVERY_MS,
        limit: 0,
        seed: AlertSeed::default(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binds a free port")
        .local_addr()
        .expect("has an address")
        .port()
}

/// The series: `x` (a counter) and `g` (a gauge in [0, 1)) for 3 jobs × 8 instances;
/// even instances are fed to process 0, odd ones to process 1.
fn series() -> Vec<(Arc<Labels>, usize)> {
    let mut out = Vec::new();
    for name in ["x", "g"] {
        for job in 0..3 {
            for instance in 0..8 {
                let labels = Labels::from_pairs(vec![
                    ("__name__".into(), name.into()),
                    ("instance".into(), format!("i{instance}")),
                    ("job".into(), format!("j{job}")),
                ]);
                out.push((Arc::new(labels), instance % 2));
            }
        }
    }
    out
}

fn value(labels: &Labels, k: i64) -> f64 {
    let seed = labels
        .hash()
        .wrapping_add(k as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let unit = (seed >> 11) as f64 / (1u64 << 53) as f64;
    match labels.metric_name() {
        "x" => (k as f64) * 10.0 + (labels.hash() % 7) as f64,
        _ => unit,
    }
}

/// Each evaluation's result, as sorted `(labels, value)` rows, by evaluation time.
type Results = BTreeMap<i64, Vec<(String, f64)>>;

fn rows(out: &RuleOutput) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = match &out.value {
        Ok(Value::Vector(v)) => v.iter().map(|e| (e.labels.to_string(), e.value)).collect(),
        other => panic!("rule {:?} at {}: {other:?}", out.rule, out.eval_ms),
    };
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn wait_for_frontier(engines: &[&Engine], at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for engine in engines {
        while engine.frontier_ms() < at_least {
            assert!(
                Instant::now() < deadline,
                "frontier stuck at {:?}",
                engine.stats()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn drain(handle: &RuleHandle, into: &mut Results) {
    while let Ok(out) = handle.output.try_recv() {
        assert!(
            into.insert(out.eval_ms, rows(&out)).is_none(),
            "two results at {}",
            out.eval_ms
        );
    }
}

fn same(rule: &str, cluster: &Results, single: &Results) {
    assert_eq!(
        cluster.keys().collect::<Vec<_>>(),
        single.keys().collect::<Vec<_>>(),
        "{rule}: evaluation times"
    );
    for (t, want) in single {
        let got = &cluster[t];
        let close = got.len() == want.len()
            && got.iter().zip(want).all(|(a, b)| {
                a.0 == b.0 && (a.1 == b.1 || (a.1 - b.1).abs() <= 1e-9 * b.1.abs().max(1.0))
            });
        assert!(close, "{rule} at {t}:\n cluster {got:?}\n single  {want:?}");
    }
}

#[test]
fn two_processes_deliver_what_one_does() {
    let addresses = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    // Both processes connect to each other before either start returns.
    let (zero, one) = std::thread::scope(|s| {
        let start = |process_id| {
            let cluster = ClusterConfig {
                processes: 2,
                process_id,
                addresses: addresses.to_vec(),
            };
            s.spawn(move || {
                Engine::start(EngineConfig {
                    workers: 2,
                    lookback_ms: 300_000,
                    cluster: Some(cluster),
                    spread_joins: true,
                    spread_owner_bound: true,
                })
                .expect("cluster engine starts")
            })
        };
        let (zero, one) = (start(0), start(1));
        (zero.join().unwrap(), one.join().unwrap())
    });
    // Not dropped when an assertion fails: dropping one process's engine waits for the
    // other's workers, which wait for it (the test would hang instead of failing).
    let (zero, one) = (ManuallyDrop::new(zero), ManuallyDrop::new(one));
    let (zero, one): (&Engine, &Engine) = (&zero, &one);
    let single = Engine::start(EngineConfig {
        workers: 1,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let processes = [zero, one];

    let mut handles = Vec::new();
    let mut homes = Vec::new();
    for (text, schedule, process) in rules() {
        homes.push(process);
        let in_cluster = processes[process]
            .register(parse(text).unwrap(), schedule)
            .expect("registers in the cluster");
        let alone = single
            .register(parse(text).unwrap(), schedule)
            .expect("registers");
        handles.push((text, in_cluster, alone));
    }

    // Alerting rules: each output carries its alert stage's step.
    let every = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: EVERY_MS,
    };
    let mut alerting = Vec::new();
    for (i, (text, process)) in alerting_rules().into_iter().enumerate() {
        let register = |engine: &Engine| {
            let (tx, rx) = crossbeam_channel::unbounded();
            let spec = alert_spec(i);
            let history = MemStorage::default();
            let id = engine.register_alerting_to(
                parse(text).unwrap(),
                every,
                &history,
                tx,
                Delivery::Whole,
                spec,
            );
            (id.expect("registers"), rx)
        };
        let (id, in_cluster) = register(processes[process]);
        let (_, alone) = register(&single);
        alerting.push((text, process, id, in_cluster, alone));
    }
    let mut alert_outputs: Vec<[Vec<RuleOutput>; 2]> = vec![Default::default(); alerting.len()];

    let series = series();
    let late = late_rules().len();
    let mut cluster_results: Vec<Results> = vec![Results::new(); handles.len() + late];
    let mut single_results: Vec<Results> = vec![Results::new(); handles.len() + late];
    // What each process has stored (it stores a batch before it feeds it), and every
    // sample (the one-worker engine's storage).
    let stored = [Stored::default(), Stored::default()];
    for (engine, stored) in processes.iter().zip(&stored) {
        engine.set_seed_source(Arc::new(stored.clone()));
    }
    let mut stored_all = MemStorage::default();
    for k in 0..SCRAPES {
        let t = k * SCRAPE_MS + 1_000;
        if k == SCRAPES / 2 {
            let every = RuleSchedule::Interval {
                start_ms: 0,
                every_ms: EVERY_MS,
            };
            for (text, process) in late_rules() {
                homes.push(process);
                let in_cluster = processes[process]
                    .register_seeded(parse(text).unwrap(), every, &stored[process])
                    .expect("registers in the cluster");
                let alone = single
                    .register_seeded(parse(text).unwrap(), every, &stored_all)
                    .expect("registers");
                handles.push((text, in_cluster, alone));
            }
        }
        let mut halves: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        let mut all = Vec::new();
        for (labels, process) in &series {
            let sample = Sample {
                series_id: labels.hash(),
                labels: labels.clone(),
                timestamp_ms: t,
                value: value(labels, k),
                start_ms: t,
            };
            halves[*process].push(sample.clone());
            for store in [&mut *stored[*process].0.write().unwrap(), &mut stored_all] {
                store
                    .series
                    .entry(labels.clone())
                    .or_default()
                    .insert(t, sample.value);
            }
            all.push(sample);
        }
        let [zero_half, one_half] = halves;
        zero.feed(zero_half);
        one.feed(one_half);
        single.feed(all);
        for engine in [zero, one, &single] {
            engine.advance_watermark(t + 1);
        }
        for (i, (_, in_cluster, alone)) in handles.iter().enumerate() {
            drain(in_cluster, &mut cluster_results[i]);
            drain(alone, &mut single_results[i]);
        }
        for ((.., in_cluster, alone), outputs) in alerting.iter().zip(&mut alert_outputs) {
            outputs[0].extend(in_cluster.try_iter());
            outputs[1].extend(alone.try_iter());
        }
    }
    // Past the last interval evaluation and every window the last samples are in.
    let end = SCRAPES * SCRAPE_MS + 400_000;
    for engine in [zero, one, &single] {
        engine.advance_watermark(end);
    }
    wait_for_frontier(&[zero, one, &single], end);
    for (i, (text, in_cluster, alone)) in handles.iter().enumerate() {
        drain(in_cluster, &mut cluster_results[i]);
        drain(alone, &mut single_results[i]);
        assert!(
            single_results[i].len() > 5,
            "{text}: only {} evaluations",
            single_results[i].len()
        );
        assert!(
            single_results[i].values().any(|rows| !rows.is_empty()),
            "{text}: every result empty"
        );
        same(text, &cluster_results[i], &single_results[i]);
    }
    // The alert stages step alike wherever their rule is owned, and every step
    // reaches the registering process with its output.
    let mut upserts = 0;
    for ((text, _, _, in_cluster_rx, alone_rx), outputs) in alerting.iter().zip(&mut alert_outputs)
    {
        let [in_cluster, alone] = outputs;
        in_cluster.extend(in_cluster_rx.try_iter());
        alone.extend(alone_rx.try_iter());
        assert!(alone.len() > 5, "{text}: only {} evaluations", alone.len());
        assert_eq!(in_cluster.len(), alone.len(), "{text}: evaluations");
        for (got, want) in in_cluster.iter().zip(alone.iter()) {
            assert_eq!(got.eval_ms, want.eval_ms, "{text}");
            let t = want.eval_ms;
            same(
                text,
                &Results::from([(t, rows(got))]),
                &Results::from([(t, rows(want))]),
            );
            // Values as the results' (a spread rule's combined within rounding).
            let (mut got, mut want) = (got.alerts.clone(), want.alerts.clone());
            let (got, want) = (got.as_deref_mut(), want.as_deref_mut());
            let (got, want) = (got.expect("a step"), want.expect("a step"));
            for (g, w) in got.upserts.iter_mut().zip(&mut want.upserts) {
                let close = (g.value - w.value).abs() <= 1e-9 * w.value.abs().max(1.0);
                assert!(close, "{text} at {t}: {g:?} vs {w:?}");
                (g.value, w.value) = (0.0, 0.0);
            }
            assert_eq!(got, want, "{text} at {t}");
            upserts += got.upserts.len();
        }
    }
    assert!(upserts > 0, "no alert came");
    // Every window knew its series' labels, and labels did cross: each process's
    // catalog holds series fed into the other (announced with their samples).
    let half = series.len() as u64 / 2;
    for engine in [zero, one] {
        let stats = engine.stats();
        assert_eq!(stats.samples_unknown_series, 0, "{stats:?}");
        assert!(stats.catalog_series > half, "{stats:?}");
        // Series ids crossed as dictionary indices, each id whole about once per
        // sender, receiver and 10-minute period.
        assert!(
            stats.exchange_id_entries > 0
                && stats.exchange_ids_indexed > 10 * stats.exchange_id_entries,
            "{stats:?}"
        );
        // The label sets of spread rules' records (join sides, joined elements,
        // unions, picks, group labels) and of remote outputs crossed whole about once
        // per sender, receiver and period, then as indices: not at every evaluation.
        eprintln!(
            "labels: {} sent whole, {} as indices",
            stats.exchange_labels_sent, stats.exchange_label_refs
        );
        assert!(
            stats.exchange_labels_sent > 0
                && stats.exchange_label_refs > 5 * stats.exchange_labels_sent,
            "{stats:?}"
        );
    }
    // The owned rules are placed on both processes' workers, whichever registered
    // them; the spread ones are owned by none.
    let owned = [zero.stats().rules_owned, one.stats().rules_owned];
    eprintln!("owned rules per process: {owned:?}");
    assert_eq!(
        owned.iter().sum::<u64>(),
        OWNED_RULES + OWNED_ALERTING_RULES,
        "{owned:?}"
    );
    assert!(owned[0] > 0 && owned[1] > 0, "{owned:?}");

    // Removed through the process that registered it, each rule's channel closes,
    // wherever the rule ran.
    for ((_, in_cluster, _), home) in handles.iter().zip(&homes) {
        assert!(processes[*home].unregister(in_cluster.id));
    }
    for (_, home, id, ..) in &alerting {
        assert!(processes[*home].unregister(*id));
    }
    for engine in [zero, one] {
        engine.advance_watermark(end + 1_000);
    }
    for (text, in_cluster, _) in &handles {
        let closed = loop {
            match in_cluster.output.recv_timeout(Duration::from_secs(30)) {
                Ok(_) => continue,
                Err(e) => break e.is_disconnected(),
            }
        };
        assert!(closed, "{text}: channel still open");
    }
    for (text, _, _, in_cluster, _) in &alerting {
        let closed = loop {
            match in_cluster.recv_timeout(Duration::from_secs(30)) {
                Ok(_) => continue,
                Err(e) => break e.is_disconnected(),
            }
        };
        assert!(closed, "{text}: channel still open");
    }
    // Each owner applies the removal at the same logical time as the deliverer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while zero.stats().rules_owned + one.stats().rules_owned > 0 {
        assert!(Instant::now() < deadline, "owned rules left");
        std::thread::sleep(Duration::from_millis(2));
    }

    // Each process's workers wait for the other's before they stop.
    std::thread::scope(|s| {
        s.spawn(|| zero.shutdown());
        s.spawn(|| one.shutdown());
    });
}
