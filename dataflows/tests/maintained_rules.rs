//! Maintained rules through the engine's API, checked against the reference evaluator
//! over the full sample history (the oracle): interval rules while samples stream in
//! and the frontier advances, on-arrival rules (including the evaluation when a
//! sample expires with no new data), registration after data has flowed (seeded),
//! unregistering, unsupported shapes, and window retirement; incremental evaluation
//! recomputing only changed series and groups (counted in the engine's stats) and
//! equal to whole-plan evaluation and the reference on randomized streams.

use dataflows::promql::eval::{Evaluator, Value};
use dataflows::promql::plan::parse;
use dataflows::promql::testscript::compare::float_eq;
use dataflows::promql::testscript::store::MemStorage;
use dataflows::{
    Delivery, Engine, EngineConfig, Evaluation, Labels, RenderError, RuleHandle, RuleOutput,
    RuleSchedule, Sample,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEP_MS: i64 = 15_000;

fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(Labels::from_strs(pairs))
}

/// Counters `x` on 4 instances in 2 jobs (one resets) and a gauge `y`, every 15s.
fn workload(until_ms: i64) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut t = 0;
    while t <= until_ms {
        let k = t / STEP_MS;
        for i in 0..4 {
            let job = if i % 2 == 0 { "a" } else { "b" };
            let l = labels(&[
                ("__name__", "x"),
                ("instance", &format!("h{i}")),
                ("job", job),
            ]);
            let mut v = (k * (i + 1)) as f64;
            if i == 3 {
                v = (k % 17) as f64 * 3.0; // resets every 17 steps
            }
            if i == 2 && (40..60).contains(&k) {
                continue; // a gap longer than the lookback delta
            }
            out.push(sample(l, t, v));
        }
        let l = labels(&[("__name__", "y"), ("instance", "h0")]);
        out.push(sample(l, t, ((k * 7) % 13) as f64));
        t += STEP_MS;
    }
    out
}

fn sample(labels: Arc<Labels>, t: i64, v: f64) -> Sample {
    Sample {
        series_id: labels.hash(),
        labels,
        timestamp_ms: t,
        value: v,
        start_ms: 0,
    }
}

fn store_of(samples: &[Sample]) -> MemStorage {
    let mut store = MemStorage::default();
    for s in samples {
        store
            .series
            .entry(s.labels.clone())
            .or_default()
            .insert(s.timestamp_ms, s.value);
    }
    store
}

fn engine() -> Engine {
    engine_of(3)
}

/// An engine of `workers` workers with the default lookback delta.
fn engine_of(workers: usize) -> Engine {
    engine_with(workers, false, false)
}

/// [`engine_of`], spreading joins of per-series plans with `spread_joins`, and rules
/// whose owner evaluates every element with `spread_owner_bound`.
fn engine_with(workers: usize, spread_joins: bool, spread_owner_bound: bool) -> Engine {
    Engine::start(EngineConfig {
        workers,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins,
        spread_owner_bound,
    })
    .expect("engine starts")
}

fn wait_for_frontier(engine: &Engine, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.stats().frontier_ms < at_least {
        assert!(
            Instant::now() < deadline,
            "frontier stuck at {:?}",
            engine.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the rule operators are idle: the probe's frontier can pass a time
/// before the rule operator downstream of the router has run for it (it runs at the
/// worker's next step), so the evaluation counters must also stop moving (unchanged
/// over 5 polls 50 ms apart; at most 20 s).
fn settle(engine: &Engine) {
    let evaluations = || {
        let s = engine.stats();
        (
            s.rule_evaluations_incremental,
            s.rule_evaluations_whole_plan,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut unchanged) = (evaluations(), 0);
    while unchanged < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = evaluations();
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
}

/// Asserts that a maintained output equals the reference at its evaluation time.
fn assert_matches_reference(query: &str, out: &RuleOutput, store: &MemStorage, every_ms: i64) {
    let plan = parse(query).expect("parses");
    let mut ev = Evaluator::new(store, out.eval_ms);
    ev.subquery_step_ms = every_ms;
    let want = ev.instant(&plan, out.eval_ms);
    let sorted = |v: &Value| -> Vec<(String, f64)> {
        match v {
            Value::Vector(v) => {
                let mut v: Vec<(String, f64)> =
                    v.iter().map(|e| (e.labels.to_string(), e.value)).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
            Value::Scalar(s) => vec![(String::new(), *s)],
            other => vec![(format!("{other:?}"), 0.0)],
        }
    };
    match (&out.value, &want) {
        (Ok(got), Ok(want)) => {
            let (g, w) = (sorted(got), sorted(want));
            assert!(
                g.len() == w.len()
                    && g.iter()
                        .zip(&w)
                        .all(|(a, b)| a.0 == b.0 && float_eq(a.1, b.1)),
                "{query} at {}: maintained {g:?}, reference {w:?}",
                out.eval_ms
            );
        }
        (got, want) => assert_eq!(got.is_err(), want.is_err(), "{query} at {}", out.eval_ms),
    }
}

fn stream(engine: &Engine, samples: &[Sample], mut after_step: impl FnMut(i64)) {
    let mut i = 0;
    while i < samples.len() {
        let ts = samples[i].timestamp_ms;
        let mut batch = Vec::new();
        while i < samples.len() && samples[i].timestamp_ms == ts {
            batch.push(samples[i].clone());
            i += 1;
        }
        engine.feed(batch);
        engine.advance_watermark(ts + 1);
        after_step(ts + 1);
    }
}

const QUERIES: &[&str] = &[
    "sum by (job) (rate(x[1m]))",
    "max_over_time(y[2m] offset 1m)",
    "x > 100",
    "avg_over_time(rate(x[1m])[3m:30s])",
    "absent(x{instance=\"h2\"})",
    "y @ 300",
    "x offset -30s",
    "timestamp(y) - time()",
    "count(x) + on() group_left sum(y)",
];

#[test]
fn interval_rules_match_the_reference_while_streaming() {
    let until = 3_600_000;
    let samples = workload(until);
    let store = store_of(&samples);
    let engine = engine();
    let every = 30_000;
    let rules: Vec<RuleHandle> = QUERIES
        .iter()
        .map(|q| {
            engine
                .register(
                    parse(q).expect("parses"),
                    RuleSchedule::Interval {
                        start_ms: 0,
                        every_ms: every,
                    },
                )
                .expect("registers")
        })
        .collect();
    let mut seen = vec![0usize; rules.len()];
    stream(&engine, &samples, |front| {
        if front % 300_000 != 1 {
            return;
        }
        wait_for_frontier(&engine, front);
        // Everything received so far must equal the reference over the full history:
        // an evaluation made before its inputs were complete would differ.
        for (r, rule) in rules.iter().enumerate() {
            for out in rule.output.try_iter() {
                assert_eq!(out.eval_ms, seen[r] as i64 * every, "{}", QUERIES[r]);
                assert_matches_reference(QUERIES[r], &out, &store, every);
                seen[r] += 1;
            }
        }
    });
    wait_for_frontier(&engine, until + 1);
    let retained = engine.stats().rule_samples_retained;
    settle(&engine);
    engine.shutdown();
    for (r, rule) in rules.iter().enumerate() {
        for out in rule.output.try_iter() {
            assert_eq!(out.eval_ms, seen[r] as i64 * every, "{}", QUERIES[r]);
            assert_matches_reference(QUERIES[r], &out, &store, every);
            seen[r] += 1;
        }
        // Every evaluation whose reads are complete was made (`x offset -30s` reads
        // 30s ahead, so it trails by one interval).
        assert!(
            seen[r] as i64 >= until / every,
            "{}: {} evaluations",
            QUERIES[r],
            seen[r]
        );
    }
    // Windows hold the active window, not the hour of history.
    assert!(
        retained > 0 && retained < samples.len() as u64 / 3,
        "retained {retained} of {}",
        samples.len()
    );
}

#[test]
fn on_arrival_fires_on_the_sample_and_resolves_when_it_expires() {
    let engine = engine();
    let rule = engine
        .register(parse("x > 5").expect("parses"), RuleSchedule::OnArrival)
        .expect("registers");
    let l = labels(&[("__name__", "x")]);
    engine.feed(vec![sample(l.clone(), 1_000, 10.0)]);
    engine.advance_watermark(1_001);
    let first = rule
        .output
        .recv_timeout(Duration::from_secs(20))
        .expect("output");
    assert_eq!(first.eval_ms, 1_000);
    assert_eq!(first.samples().expect("vector").len(), 1);
    // No new data: the sample leaves the lookback window at 1s + 5m.
    engine.advance_watermark(301_001);
    let second = rule
        .output
        .recv_timeout(Duration::from_secs(20))
        .expect("output");
    assert_eq!(second.eval_ms, 301_000);
    assert!(second.samples().expect("vector").is_empty());
}

#[test]
fn registered_after_data_flowed_with_a_seed_is_exact_from_the_start() {
    let samples = workload(1_800_000);
    let store = store_of(&samples);
    let (before, after): (Vec<Sample>, Vec<Sample>) =
        samples.into_iter().partition(|s| s.timestamp_ms < 900_000);
    let engine = engine();
    stream(&engine, &before, |_| {});
    let query = "sum by (job) (rate(x[5m]))";
    let history = store_of(&before);
    let every = 60_000;
    let rule = engine
        .register_seeded(
            parse(query).expect("parses"),
            RuleSchedule::Interval {
                start_ms: 0,
                every_ms: every,
            },
            &history,
        )
        .expect("registers");
    stream(&engine, &after, |_| {});
    wait_for_frontier(&engine, 1_800_001);
    settle(&engine);
    engine.shutdown();
    let outs: Vec<RuleOutput> = rule.output.try_iter().collect();
    assert_eq!(outs.first().map(|o| o.eval_ms), Some(900_000));
    assert_eq!(outs.len(), 16);
    for out in &outs {
        assert_matches_reference(query, out, &store, every);
    }
}

#[test]
fn unregistering_closes_the_channel() {
    let engine = engine();
    let rule = engine
        .register(
            parse("x").expect("parses"),
            RuleSchedule::Interval {
                start_ms: 0,
                every_ms: 1_000,
            },
        )
        .expect("registers");
    assert!(engine.unregister(rule.id));
    assert!(!engine.unregister(rule.id));
    engine.advance_watermark(10_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rule.output.recv_timeout(Duration::from_millis(50)) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            _ => assert!(Instant::now() < deadline, "channel still open"),
        }
    }
}

#[test]
fn unsupported_shapes_and_bad_schedules_are_refused() {
    let engine = engine();
    let err = engine
        .register(parse("time()").expect("parses"), RuleSchedule::OnArrival)
        .err()
        .expect("refused");
    assert!(matches!(err, RenderError::NotSupported(_)));
    assert!(err
        .to_string()
        .starts_with("not supported in maintained mode: "));
    let err = engine
        .register(
            parse("x").expect("parses"),
            RuleSchedule::Interval {
                start_ms: 0,
                every_ms: 0,
            },
        )
        .err()
        .expect("refused");
    assert!(matches!(err, RenderError::BadSchedule(_)));
}

#[test]
fn instant_selectors_retain_about_one_sample_per_series() {
    let samples: Vec<Sample> = workload(3_600_000)
        .into_iter()
        .filter(|s| s.labels.metric_name() == "x")
        .collect();
    let store = store_of(&samples);
    let engine = engine();
    let every = 30_000;
    let rule = engine
        .register(
            parse("x").expect("parses"),
            RuleSchedule::Interval {
                start_ms: 0,
                every_ms: every,
            },
        )
        .expect("registers");
    stream(&engine, &samples, |_| {});
    wait_for_frontier(&engine, 3_600_001);
    // Retirement runs on the next activation after the frontier moved.
    engine.advance_watermark(3_610_000);
    wait_for_frontier(&engine, 3_610_000);
    let retained = engine.stats().rule_samples_retained;
    settle(&engine);
    engine.shutdown();
    // 4 series at 15s, a 5m lookback: 20 samples each if the lookback were kept.
    assert!(retained > 0 && retained <= 4 * 3, "retained {retained}");
    let outs: Vec<RuleOutput> = rule.output.try_iter().collect();
    assert!(outs.len() >= 120);
    for out in &outs {
        assert_matches_reference("x", out, &store, every);
    }
}

/// Drains a rule's outputs received so far.
fn drain(rule: &RuleHandle) -> Vec<RuleOutput> {
    rule.output.try_iter().collect()
}

/// `query` registered as an interval rule evaluated every second from 1s on.
fn every_second_from_1s(engine: &Engine, query: &str) -> RuleHandle {
    engine
        .register(
            parse(query).expect("parses"),
            RuleSchedule::Interval {
                start_ms: 1_000,
                every_ms: 1_000,
            },
        )
        .expect("registers")
}

/// On one worker: with more, `sum by (g) (x)` is spread and each worker recomputes
/// its own series and its part of each group (see `spread_rules_*`).
#[test]
fn only_changed_series_and_groups_are_recomputed() {
    let engine = engine_of(1);
    let query = "sum by (g) (x)";
    let rule = every_second_from_1s(&engine, query);
    let series: Vec<Arc<Labels>> = (0..100)
        .map(|i| {
            labels(&[
                ("__name__", "x"),
                ("i", &i.to_string()),
                ("g", &(i % 10).to_string()),
            ])
        })
        .collect();
    let mut all = Vec::new();
    let mut feed = |batch: Vec<Sample>, until: i64| {
        all.extend(batch.iter().cloned());
        engine.feed(batch);
        engine.advance_watermark(until);
        wait_for_frontier(&engine, until);
    };
    let recomputations = |engine: &Engine| engine.stats().rule_recomputations;

    // First evaluation: every series and group is computed.
    feed(
        series
            .iter()
            .map(|l| sample(l.clone(), 1_000, 1.0))
            .collect(),
        1_001,
    );
    let first = drain(&rule);
    assert_eq!(first.len(), 1);
    assert_eq!(recomputations(&engine), 100 + 10);

    // Three series of two groups change: three elements and two groups recomputed.
    let before = recomputations(&engine);
    let changed = [0usize, 10, 11];
    feed(
        changed
            .iter()
            .map(|&i| sample(series[i].clone(), 2_000, 5.0))
            .collect(),
        2_001,
    );
    let second = drain(&rule);
    assert_eq!(second.len(), 1);
    assert_eq!(recomputations(&engine) - before, 3 + 2);

    // No data for five minutes: nothing is recomputed until the lookback expires, a
    // time event with no sample; then the 97 series last seen at 1s leave (all 10
    // groups), and at 302s the other three (groups 0 and 1).
    let before = recomputations(&engine);
    engine.advance_watermark(300_001);
    wait_for_frontier(&engine, 300_001);
    assert_eq!(recomputations(&engine) - before, 0);
    engine.advance_watermark(301_001);
    wait_for_frontier(&engine, 301_001);
    assert_eq!(recomputations(&engine) - before, 97 + 10);
    engine.advance_watermark(302_001);
    wait_for_frontier(&engine, 302_001);
    assert_eq!(recomputations(&engine) - before, 97 + 10 + 3 + 2);

    // After shutdown: the frontier can pass before the rule operator has run.
    settle(&engine);
    engine.shutdown();
    let stats = engine.stats();
    assert_eq!(stats.rule_evaluations_whole_plan, 0);
    let outs: Vec<RuleOutput> = first
        .into_iter()
        .chain(second)
        .chain(drain(&rule))
        .collect();
    assert_eq!(outs.len(), 302);
    assert_eq!(stats.rule_evaluations_incremental, 302);
    let store = store_of(&all);
    for out in &outs {
        assert_matches_reference(query, out, &store, 1_000);
    }
    let last = outs.last().expect("outputs");
    assert_eq!(last.eval_ms, 302_000);
    assert!(last.samples().expect("vector").is_empty());
}

/// On one worker: with more, `a / b > 0.5` is spread (each worker recomputes its own
/// series; the match groups are joined where their signatures hash to).
#[test]
fn one_to_one_matches_recompute_only_changed_pairs() {
    let engine = engine_of(1);
    let query = "a / b > 0.5";
    let rule = every_second_from_1s(&engine, query);
    let series = |name: &str, i: usize| labels(&[("__name__", name), ("i", &i.to_string())]);
    let mut all = Vec::new();
    // The output at `t` is sent after its evaluation is counted: wait for it, not for
    // the frontier.
    let mut step = |batch: Vec<Sample>, t: i64| {
        all.extend(batch.iter().cloned());
        engine.feed(batch);
        engine.advance_watermark(t + 1);
        let out = rule
            .output
            .recv_timeout(Duration::from_secs(20))
            .expect("an evaluation");
        assert_eq!(out.eval_ms, t);
        (out, engine.stats().rule_recomputations)
    };
    let first: Vec<Sample> = (0..10)
        .flat_map(|i| {
            [
                sample(series("a", i), 1_000, i as f64),
                sample(series("b", i), 1_000, 10.0),
            ]
        })
        .collect();
    // Every series, pair and comparison is computed: 10 + 10, 10, 10.
    let (out1, after1) = step(first, 1_000);
    assert_eq!(after1, 40);
    // One left series changes: it, its pair and its comparison.
    let (out2, after2) = step(vec![sample(series("a", 3), 2_000, 9.0)], 2_000);
    assert_eq!(after2 - after1, 3);
    assert_eq!(out1.samples().expect("vector").len(), 4);
    assert_eq!(out2.samples().expect("vector").len(), 5);
    let store = store_of(&all);
    for out in [&out1, &out2] {
        assert_matches_reference(query, out, &store, 1_000);
    }
    settle(&engine);
    engine.shutdown();
    let stats = engine.stats();
    assert_eq!(stats.rule_evaluations_whole_plan, 0);
}

/// A small deterministic generator (xorshift64*), so the streams are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Counters and gauges on 8 instances in 2 jobs with jittered scrape times, gaps,
/// counter resets and stale markers.
fn random_stream(seed: u64, until_ms: i64) -> Vec<Sample> {
    let mut rng = Rng(seed);
    let mut counters = [0.0f64; 8];
    let mut out = Vec::new();
    let mut scrape = 0;
    while scrape <= until_ms {
        for (i, counter) in counters.iter_mut().enumerate() {
            let skip = rng.below(10) == 0;
            if skip {
                continue;
            }
            let ts = scrape + rng.below(3_000) as i64;
            let job = if i % 2 == 0 { "a" } else { "b" };
            let instance = format!("h{i}");
            let x = labels(&[("__name__", "x"), ("instance", &instance), ("job", job)]);
            let y = labels(&[("__name__", "y"), ("instance", &instance), ("job", job)]);
            if rng.below(40) == 0 {
                out.push(sample(x, ts, dataflows::STALE_MARKER));
                continue;
            }
            *counter = if rng.below(30) == 0 {
                rng.below(3) as f64
            } else {
                *counter + rng.below(20) as f64
            };
            out.push(sample(x, ts, *counter));
            out.push(sample(y, ts, rng.below(10) as f64 - 2.0));
        }
        // Sometimes a long silence (past the lookback delta).
        scrape += if rng.below(60) == 0 { 400_000 } else { 10_000 };
    }
    out.sort_by_key(|s| s.timestamp_ms);
    out
}

const INCREMENTAL_QUERIES: &[&str] = &[
    "x == 0",
    "y > 0.5 * 2",
    "x * 100",
    r#"label_replace(x, "host", "$1", "instance", "h(.*)")"#,
    "rate(x[1m])",
    "increase(x[2m] offset 30s)",
    "max_over_time(y[1m])",
    "sum by (job) (rate(x[1m]))",
    "100 - avg by (job) (y) * 2 > 3",
    "count without (instance) (y > 3)",
    "max(sum by (job) (x))",
    "deriv(y[1m])",
    "changes(y[1m]) + resets(x[1m])",
    "-y",
    "abs(y - 5)",
    "quantile by (job) (0.5, y)",
    "stddev(rate(x[1m]))",
    "timestamp(y)",
    "y offset -20s",
    "sum by (__name__) (rate(x[1m]))",
    r#"{__name__=~"x|y"} * 2"#,
    "x / y < 2",
    "rate(x[1m]) > bool on (instance, job) y",
    "sum by (job) (y) / count by (job) (y) - 1",
    "x / ignoring (instance) y",
];

/// The output in force at each of `times`: the latest of `outputs` at or before it,
/// relabelled with that time.
fn in_force(outputs: &[RuleOutput], times: &[i64]) -> Vec<RuleOutput> {
    let mut i = 0;
    let mut out = Vec::new();
    for &t in times {
        while i + 1 < outputs.len() && outputs[i + 1].eval_ms <= t {
            i += 1;
        }
        if let Some(o) = outputs.get(i).filter(|o| o.eval_ms <= t) {
            out.push(RuleOutput {
                eval_ms: t,
                ..o.clone()
            });
        }
    }
    out
}

#[test]
fn incremental_equals_whole_plan_on_random_streams() {
    let until = 1_800_000;
    for seed in [1u64, 7, 42] {
        let samples = random_stream(seed, until);
        let store = store_of(&samples);
        let engine = engine();
        let every = 5_000;
        let mut pairs = Vec::new();
        for (q, query) in INCREMENTAL_QUERIES.iter().enumerate() {
            // Interval rules, and every third query also on arrival (irregular times).
            let schedule = if q % 3 == 0 {
                RuleSchedule::OnArrival
            } else {
                RuleSchedule::Interval {
                    start_ms: 0,
                    every_ms: every,
                }
            };
            let register = |evaluation| {
                engine
                    .register_with(parse(query).expect("parses"), schedule, evaluation)
                    .expect("registers")
            };
            pairs.push((
                *query,
                register(Evaluation::Incremental),
                register(Evaluation::WholePlan),
            ));
        }
        stream(&engine, &samples, |_| {});
        engine.advance_watermark(until + 20_000);
        wait_for_frontier(&engine, until + 20_000);
        // After shutdown: the frontier can pass before the rule operator has run.
        settle(&engine);
        engine.shutdown();
        let stats = engine.stats();
        for (q, (query, incremental, whole)) in pairs.iter().enumerate() {
            let (inc, whole) = (drain(incremental), drain(whole));
            assert!(inc.len() > 50, "{query}: {} evaluations", inc.len());
            let on_arrival = q % 3 == 0;
            let times = |v: &[RuleOutput]| v.iter().map(|o| o.eval_ms).collect::<Vec<_>>();
            // On arrival, the incremental rule is evaluated only when an element can
            // change (a subset of the whole plan's times); between two of its times its
            // last result holds.
            let inc = if on_arrival {
                let at: Vec<i64> = times(&whole);
                assert!(
                    inc.iter().all(|o| at.binary_search(&o.eval_ms).is_ok()),
                    "{query}: incremental times not a subset"
                );
                in_force(&inc, &at)
            } else {
                inc
            };
            assert_eq!(times(&inc), times(&whole), "{query}: evaluation times");
            for (i, w) in inc.iter().zip(&whole) {
                assert_eq!(
                    i.value.is_err(),
                    w.value.is_err(),
                    "{query} at {}: {:?} vs {:?}",
                    i.eval_ms,
                    i.value,
                    w.value
                );
                assert_matches_reference(query, i, &store, every);
            }
        }
        assert!(
            stats.rule_evaluations_incremental > stats.rule_evaluations_whole_plan / 2,
            "seed {seed}: {stats:?}"
        );
    }
}

/// Rules delivering changes ([`Delivery::Changes`]), their outputs applied one after
/// another (elements gone, then elements set; a whole result replaces everything),
/// hold at every time exactly what the same rule delivering whole results gives.
#[test]
fn changes_add_up_to_the_whole_results_on_random_streams() {
    let until = 1_800_000;
    let empty = MemStorage::default();
    for seed in [3u64, 42] {
        let samples = random_stream(seed, until);
        let engine = engine();
        let mut rules = Vec::new();
        for query in INCREMENTAL_QUERIES {
            let plan = parse(query).expect("parses");
            let whole = engine
                .register(plan.clone(), RuleSchedule::OnArrival)
                .expect("registers");
            let (tx, changes) = crossbeam_channel::unbounded();
            engine
                .register_seeded_to(plan, RuleSchedule::OnArrival, &empty, tx, Delivery::Changes)
                .expect("registers");
            rules.push((*query, whole, changes));
        }
        stream(&engine, &samples, |_| {});
        engine.advance_watermark(until + 20_000);
        wait_for_frontier(&engine, until + 20_000);
        settle(&engine);
        engine.shutdown();
        // Elements sent by the rules delivering changes, and by those delivering whole results.
        let mut sent = (0, 0);
        for (query, whole, changes) in &rules {
            let whole = drain(whole);
            let changes: Vec<RuleOutput> = changes.try_iter().collect();
            assert!(whole.len() > 50, "{query}: {} evaluations", whole.len());
            let size = |o: &RuleOutput| match &o.value {
                Ok(Value::Vector(v)) => v.len() + o.gone.as_ref().map_or(0, Vec::len),
                _ => 0,
            };
            sent.0 += changes.iter().map(size).sum::<usize>();
            sent.1 += whole.iter().map(size).sum::<usize>();
            let elements = |value: &Value| match value {
                Value::Vector(v) => v
                    .iter()
                    .map(|e| ((*e.labels).clone(), e.value.to_bits()))
                    .collect::<Vec<_>>(),
                other => panic!("{query}: not a vector: {other:?}"),
            };
            // The result the changes add up to: labels -> value bits, or an error.
            let mut held: Result<BTreeMap<Labels, u64>, ()> = Ok(BTreeMap::new());
            let mut next = changes.iter().peekable();
            for w in &whole {
                while let Some(c) = next.next_if(|c| c.eval_ms <= w.eval_ms) {
                    held = match (&c.gone, &c.value) {
                        (None, Ok(value)) => Ok(elements(value).into_iter().collect()),
                        (None, Err(_)) => Err(()),
                        (Some(gone), Ok(value)) => {
                            let mut now = held.clone().expect("changes follow a result");
                            for labels in gone {
                                assert!(
                                    now.remove(labels).is_some(),
                                    "{query}: {labels:?} was not held"
                                );
                            }
                            now.extend(elements(value));
                            Ok(now)
                        }
                        (Some(_), Err(e)) => panic!("{query}: changes with an error {e:?}"),
                    };
                }
                let expected = match &w.value {
                    Ok(value) => Ok(elements(value).into_iter().collect()),
                    Err(_) => Err(()),
                };
                assert_eq!(held, expected, "{query} at {}", w.eval_ms);
            }
        }
        assert!(sent.0 * 3 < sent.1, "seed {seed}: elements sent {sent:?}");
    }
}

#[test]
fn rules_reading_one_selector_share_its_window_whatever_their_first_selector() {
    use dataflows::render::extent::selector_key;
    let workers = 4u64;
    let worker_of = |name: &str| {
        let sel = match parse(name).expect("parses") {
            dataflows::promql::plan::Plan::Vector(v) => v.selector,
            other => panic!("{other:?}"),
        };
        xxhash_rust::xxh3::xxh3_64(selector_key(&sel).as_bytes()) % workers
    };
    // A metric name sorting before `b` whose own hash picks another worker than `b`:
    // without sharing, the second rule would keep a second copy of `b`.
    let a = (0..100)
        .map(|i| format!("a{i}"))
        .find(|a| worker_of(a) != worker_of("b"))
        .expect("a name on another worker");
    let engine = engine_of(workers as usize);
    let every = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: 1_000,
    };
    // Owned (`b` alone, `sort(b)`, or `count(a) + count(b)`, would be spread, keeping
    // windows by series; a label function under the sort keeps it owned).
    let first = engine
        .register(
            parse(r#"sort(label_replace(b, "j", "$1", "i", "(.*)"))"#).expect("parses"),
            every,
        )
        .expect("registers");
    let second = engine
        .register(
            parse(&format!("sort(count({a}) + count(b))")).expect("parses"),
            every,
        )
        .expect("registers");
    let mut batch: Vec<Sample> = (0..10)
        .map(|i| {
            sample(
                labels(&[("__name__", "b"), ("i", &i.to_string())]),
                500,
                1.0,
            )
        })
        .collect();
    batch.push(sample(labels(&[("__name__", &a)]), 500, 1.0));
    engine.feed(batch);
    for front in [1_001, 3_001, 5_001] {
        engine.advance_watermark(front);
        wait_for_frontier(&engine, front);
    }
    let retained = engine.stats().rule_samples_retained;
    settle(&engine);
    engine.shutdown();
    // One copy of each of the 11 series, not 10 more for the second rule's `b`.
    assert_eq!(retained, 11);
    let last = |h: &RuleHandle| drain(h).last().and_then(|o| o.samples());
    assert_eq!(last(&first).map(|s| s.len()), Some(10));
    assert_eq!(last(&second).map(|s| s[0].1), Some(11.0));
}

/// Counters `x` and gauges `y` on 6 instances in 2 jobs, all scraped at the same
/// times every 10s (one counter resets), for `until_ms`.
fn aligned_stream(until_ms: i64) -> Vec<Sample> {
    let mut rng = Rng(3);
    let mut counters = [0.0f64; 6];
    let mut out = Vec::new();
    let mut ts = 0;
    while ts <= until_ms {
        for (i, counter) in counters.iter_mut().enumerate() {
            let job = if i % 2 == 0 { "a" } else { "b" };
            let instance = format!("h{i}");
            let x = labels(&[("__name__", "x"), ("instance", &instance), ("job", job)]);
            let y = labels(&[("__name__", "y"), ("instance", &instance), ("job", job)]);
            *counter = if i == 1 && ts % 400_000 == 200_000 {
                1.0
            } else {
                *counter + rng.below(50) as f64
            };
            out.push(sample(x, ts, *counter));
            out.push(sample(y, ts, rng.below(100) as f64 / 7.0));
        }
        ts += 10_000;
    }
    out
}

/// `t`-dependent per-series queries: on arrival, each series at its newest sample.
const AT_NEWEST_QUERIES: &[&str] = &[
    "rate(x[1m])",
    "increase(x[1m] offset 15s)",
    "delta(y[2m])",
    "predict_linear(y[1m], 30) > 3",
];

/// On arrival, a `t`-dependent function (`rate`, `increase`, `delta`,
/// `predict_linear`) gives each series the reference's element at the time its newest
/// sample entered the window, while that sample is in the window; everything else is
/// the reference at `t`. When all series are scraped at the same times, that is the
/// reference at each arrival: aggregations and joins over them included.
#[test]
fn on_arrival_time_dependent_functions_are_each_series_at_its_newest_sample() {
    // Aligned scrapes: every on-arrival result is the interval (reference) result.
    let until = 1_200_000;
    let samples = aligned_stream(until);
    let store = store_of(&samples);
    let engine = engine();
    let aligned = [
        "rate(x[1m])",
        "irate(x[1m])",
        "increase(x[2m])",
        "delta(y[1m])",
        "increase(x[1m] offset 20s)",
        "sum by (job) (rate(x[1m]))",
        "100 * avg(irate(x[1m])) > 1",
        "max by (job) (delta(y[1m])) / 2",
        "rate(x[1m]) / on (instance, job) increase(x[2m])",
        "sum by (job) (rate(x[1m])) > bool on (job) count by (job) (delta(y[1m]))",
    ];
    let rules: Vec<RuleHandle> = aligned
        .iter()
        .map(|q| {
            engine
                .register(parse(q).expect("parses"), RuleSchedule::OnArrival)
                .expect("registers")
        })
        .collect();
    stream(&engine, &samples, |_| {});
    engine.advance_watermark(until + 400_000);
    wait_for_frontier(&engine, until + 400_000);
    settle(&engine);
    engine.shutdown();
    for (query, rule) in aligned.iter().zip(&rules) {
        let outs = drain(rule);
        // One evaluation per scrape (plus, once the data stops, one per sample
        // leaving a 2m window at most), not one per sample leaving a window.
        let scrapes = (until / 10_000 + 1) as usize;
        assert!(
            outs.len() >= scrapes - 1 && outs.len() <= scrapes + 13,
            "{query}: {} evaluations for {scrapes} scrapes",
            outs.len()
        );
        for out in &outs {
            assert_matches_reference(query, out, &store, 10_000);
        }
    }

    // Jittered scrapes with gaps, resets and staleness markers: each series'
    // element is the reference's for that series alone at its newest sample's time.
    let until = 1_800_000;
    let samples = random_stream(11, until);
    let store = store_of(&samples);
    let engine = self::engine();
    let rules: Vec<RuleHandle> = AT_NEWEST_QUERIES
        .iter()
        .map(|q| {
            engine
                .register(parse(q).expect("parses"), RuleSchedule::OnArrival)
                .expect("registers")
        })
        .collect();
    stream(&engine, &samples, |_| {});
    engine.advance_watermark(until + 400_000);
    wait_for_frontier(&engine, until + 400_000);
    settle(&engine);
    let recomputed = engine.stats().rule_recomputations;
    engine.shutdown();
    for (query, rule) in AT_NEWEST_QUERIES.iter().zip(&rules) {
        let plan = parse(query).expect("parses");
        let (range, offset) = match query {
            q if q.contains("offset 15s") => (60_000, 15_000),
            q if q.contains("[2m]") => (120_000, 0),
            _ => (60_000, 0),
        };
        let outs = drain(rule);
        assert!(outs.len() > 100, "{query}: {} evaluations", outs.len());
        for out in &outs {
            let t = out.eval_ms;
            let mut want = Vec::new();
            for (labels, points) in &store.series {
                // The newest sample (not a marker) in what `t` reads: (t-o-r, t-o].
                let newest = points
                    .range(t - offset - range + 1..=t - offset)
                    .rev()
                    .find(|(_, v)| !dataflows::is_stale_marker(**v));
                let Some((&n, _)) = newest else { continue };
                let mut one = MemStorage::default();
                one.series.insert(labels.clone(), points.clone());
                let at = n + offset;
                if let Ok(Value::Vector(v)) = Evaluator::new(&one, at).instant(&plan, at) {
                    want.extend(v.iter().map(|e| (e.labels.to_string(), e.value)));
                }
            }
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let Ok(Value::Vector(got)) = &out.value else {
                panic!("{query} at {t}: {:?}", out.value)
            };
            let mut got: Vec<(String, f64)> = got
                .iter()
                .map(|e| (e.labels.to_string(), e.value))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert!(
                got.len() == want.len()
                    && got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.0 == b.0 && float_eq(a.1, b.1)),
                "{query} at {t}: maintained {got:?}, expected {want:?}"
            );
        }
    }
    // Proportional to what arrived: each sample recomputes its series once per rule
    // reading it (twice under `> 3`), plus an expiry after each silence; not every
    // series at every evaluation.
    let count = |name: &str| {
        samples
            .iter()
            .filter(|s| s.labels.get("__name__") == Some(name))
            .count() as u64
    };
    let bound = 2 * count("x") + 3 * count("y") + 500;
    assert!(
        recomputed <= bound,
        "{recomputed} recomputations, at most {bound} expected"
    );
}

/// A staleness marker after a series' newest sample leaves that sample the newest: on
/// arrival its element stays the one at that sample's time, though what that reads
/// begins before the marker's window and the frontier has moved on (retiring what no
/// evaluation at a later time reads). No evaluation is made at a time nothing is due.
#[test]
fn a_marker_keeps_the_element_of_the_newest_sample_before_it() {
    let engine = engine_of(1);
    let rule = engine
        .register(
            parse("rate(x[1m])").expect("parses"),
            RuleSchedule::OnArrival,
        )
        .expect("registers");
    let x = labels(&[("__name__", "x"), ("instance", "h0")]);
    let other = labels(&[("__name__", "z"), ("instance", "h0")]);
    let mut history = Vec::new();
    let mut step = |s: Sample| {
        let front = s.timestamp_ms + 1;
        history.push(s.clone());
        engine.feed(vec![s]);
        engine.advance_watermark(front);
        wait_for_frontier(&engine, front);
        settle(&engine);
    };
    for k in 0..=6 {
        step(sample(x.clone(), k * 10_000, (k * k) as f64));
    }
    // The frontier passes the newest sample by more than a retirement step, then the
    // marker arrives 55s after the newest sample.
    for t in (61_000..115_000).step_by(3_000) {
        step(sample(other.clone(), t, 1.0));
    }
    step(sample(x.clone(), 115_000, dataflows::STALE_MARKER));
    engine.advance_watermark(200_000);
    wait_for_frontier(&engine, 200_000);
    settle(&engine);
    engine.shutdown();

    let store = store_of(&history);
    let at_newest = Evaluator::new(&store, 60_000)
        .instant(&parse("rate(x[1m])").expect("parses"), 60_000)
        .expect("evaluates");
    let Value::Vector(want) = at_newest else {
        panic!("{at_newest:?}")
    };
    let outs = drain(&rule);
    let times: Vec<i64> = outs.iter().map(|o| o.eval_ms).collect();
    // One evaluation per sample of x, and one when the newest leaves the window.
    let expected_times: Vec<i64> = (0..=6)
        .map(|k| k * 10_000)
        .chain([115_000, 120_000])
        .collect();
    assert_eq!(times, expected_times);
    let at_marker = outs
        .iter()
        .find(|o| o.eval_ms == 115_000)
        .expect("evaluated");
    let Ok(Value::Vector(got)) = &at_marker.value else {
        panic!("{:?}", at_marker.value)
    };
    assert_eq!(got.len(), 1);
    assert_eq!(want.len(), 1);
    assert!(
        float_eq(got[0].value, want[0].value),
        "at the marker: {} for the rate at the newest sample {}",
        got[0].value,
        want[0].value
    );
}

/// Spread shapes (see `dataflows::render::spread`) and, beside them, rules on one owner
/// reading the same selectors.
const SPREAD_QUERIES: &[&str] = &[
    "sum by (job) (rate(x[1m]))",
    "avg by (job) (y)",
    "count(x)",
    "min without (instance) (rate(x[1m]))",
    "max by (job) (irate(x[1m]))",
    "group by (job) (y)",
    "sum(max_over_time(y[1m]))",
    "sum by (job) (rate(x[1m])) > 0",
    "avg by (job) (rate(x[1m])) * 100",
    "stddev by (job) (rate(x[1m]))",
    "stdvar(y)",
    "topk by (job) (2, y)",
    "bottomk(3, rate(x[1m]))",
    "limitk(2, y)",
    "quantile by (job) (0.7, y)",
    "count_values(\"v\", y)",
    "-max(y) + 1 > 0",
    "y",
    "rate(x[1m]) * 100 > 5",
    r#"label_replace(y, "host", "$1", "instance", "h(.*)")"#,
    "rate(x[1m]) / on (instance, job) y",
    "y > bool x",
    "x - ignoring (job) y > 1",
    "sum(rate(x[1m])) / sum(max_over_time(y[1m]))",
    "sum by (job) (rate(x[1m])) / on (job) count by (job) (y) > 0.05",
    // Operations after the combine, aggregations of per-series plans.
    "topk(2, sum by (instance) (y))",
    "bottomk(1, avg by (instance) (rate(x[1m])))",
    "sort_desc(sum by (job) (rate(x[1m])))",
    "count(sum by (job) (y))",
    "scalar(sum(y))",
    r#"label_replace(sum by (job) (y), "j", "$1", "job", "(.*)")"#,
    "time() - max(timestamp(y))",
    "sum by (job) (rate(x[1m]) > 0)",
    "count(y == 0)",
    "sum(x * 8)",
    "max(abs(delta(y[1m])))",
    "sort_desc(rate(x[1m]))",
    "topk(3, sort(y))",
];

/// What replaces `SPREAD_QUERIES[0]` mid-stream (seeded from what flowed before).
const SPREAD_REPLACEMENT: &str = "sum without (instance) (rate(x[1m]))";

/// The rules of `SPREAD_QUERIES` on `workers` workers over `samples`: halfway, rule 0
/// is replaced by `SPREAD_REPLACEMENT` and rule 1 removed. The evaluations of each
/// rule (the replacement last), checked against the reference as they come; the
/// removed rules' channels must close.
fn spread_run(workers: usize, samples: &[Sample], half: i64) -> Vec<Vec<RuleOutput>> {
    let store = store_of(samples);
    let every_ms = 30_000;
    let every = RuleSchedule::Interval {
        start_ms: 0,
        every_ms,
    };
    let engine = engine_with(workers, true, true);
    let mut rules: Vec<RuleHandle> = SPREAD_QUERIES
        .iter()
        .map(|q| {
            engine
                .register(parse(q).expect("parses"), every)
                .expect("registers")
        })
        .collect();
    let (before, after): (Vec<Sample>, Vec<Sample>) =
        samples.iter().cloned().partition(|s| s.timestamp_ms < half);
    stream(&engine, &before, |_| {});
    assert!(engine.unregister(rules[0].id));
    assert!(engine.unregister(rules[1].id));
    let history = store_of(&before);
    rules.push(
        engine
            .register_seeded(parse(SPREAD_REPLACEMENT).expect("parses"), every, &history)
            .expect("registers"),
    );
    stream(&engine, &after, |_| {});
    let end = samples.last().map_or(0, |s| s.timestamp_ms) + 1;
    wait_for_frontier(&engine, end);
    settle(&engine);
    let queries: Vec<&str> = SPREAD_QUERIES
        .iter()
        .copied()
        .chain([SPREAD_REPLACEMENT])
        .collect();
    let mut outputs = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        let outs = drain(rule);
        for out in &outs {
            assert_matches_reference(queries[r], out, &store, every_ms);
        }
        assert!(
            outs.len() > 10,
            "{}: {} evaluations",
            queries[r],
            outs.len()
        );
        outputs.push(outs);
    }
    // The removed rules stopped before the removal and their channels closed; the
    // replacement starts after it.
    for removed in &rules[..2] {
        assert!(matches!(
            removed.output.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        ));
    }
    assert!(outputs[0]
        .iter()
        .chain(&outputs[1])
        .all(|o| o.eval_ms < half));
    assert!(outputs[SPREAD_QUERIES.len()][0].eval_ms >= half);
    // Every evaluation the frontier released came out, none held back for a later
    // advance.
    let last_ready = (end - 1) / every_ms * every_ms;
    for (r, outs) in outputs.iter().enumerate().skip(2) {
        assert_eq!(
            outs.last().map(|o| o.eval_ms),
            Some(last_ready),
            "{}",
            queries[r]
        );
    }
    engine.shutdown();
    outputs
}

#[test]
fn spread_rules_give_the_same_evaluations_on_1_2_and_3_workers() {
    let until = 1_800_000;
    let samples = random_stream(11, until);
    let one = spread_run(1, &samples, until / 2);
    for workers in [2, 3] {
        let many = spread_run(workers, &samples, until / 2);
        for (r, (a, b)) in one.iter().zip(&many).enumerate() {
            let times = |o: &[RuleOutput]| o.iter().map(|o| o.eval_ms).collect::<Vec<_>>();
            assert_eq!(times(a), times(b), "rule {r} on {workers} workers");
            for (a, b) in a.iter().zip(b) {
                let sorted = |o: &RuleOutput| {
                    let mut s: Vec<(String, f64)> = o
                        .samples()
                        .unwrap_or_default()
                        .iter()
                        .map(|(l, v)| (l.to_string(), *v))
                        .collect();
                    s.sort_by(|x, y| x.0.cmp(&y.0));
                    s
                };
                let (sa, sb) = (sorted(a), sorted(b));
                assert!(
                    sa.len() == sb.len()
                        && sa
                            .iter()
                            .zip(&sb)
                            .all(|(x, y)| x.0 == y.0 && float_eq(x.1, y.1)),
                    "rule {r} at {} on {workers} workers: {sb:?}, on one: {sa:?}",
                    a.eval_ms
                );
            }
        }
    }
}

/// Per-series plans, one-to-one joins of two (with `spread_joins`; without, the five
/// joins are owned), operations of two aggregations or of an aggregation and a
/// per-series plan, and operations after an
/// aggregation of a per-series plan or after a join (see `dataflows::render::spread`)
/// are spread over the workers: no worker owns them (`rules_owned` stays at the one
/// rule that is not spread), and every evaluation is the reference's, errors word for
/// word (duplicate label sets made by a label function, many-to-many matches found on
/// different workers or on the owner).
#[test]
fn per_series_rules_joins_and_pairs_are_spread_and_exact() {
    let until = 1_200_000;
    let samples = random_stream(7, until);
    let store = store_of(&samples);
    let every_ms = 30_000;
    let every = RuleSchedule::Interval {
        start_ms: 0,
        every_ms,
    };
    let queries = [
        "x == 0",
        "rate(x[1m]) * 100 > 5",
        r#"label_replace(rate(x[1m]) > 1, "host", "$1", "instance", "h(.*)")"#,
        r#"label_replace(x, "instance", "", "instance", ".*")"#,
        "rate(x[1m]) / on (instance, job) y",
        "x > bool y",
        "y - ignoring (job) x > 1",
        "x / ignoring (instance) y",
        "y / on (job) group_left x",
        "sum by (job) (rate(x[1m])) / sum by (job) (y) > 0.05",
        "avg by (job) (y) - on (job) max by (job) (y)",
        "sum by (job, instance) (x) / on (job) sum by (job) (y)",
        // An aggregation beside a per-series plan: shares of a total, a per-series
        // "one" side with two series of a match group (the error names them).
        "y / on (job) group_left sum by (job) (y)",
        "rate(x[1m]) / ignoring (instance) group_left sum without (instance) (rate(x[1m]))",
        "sum by (job) (x) / on (job) group_left y",
        "sum by (job) (x) / on (job) group_left rate(y[1m])",
        "abs(y) > on (job) group_left avg by (job) (y)",
        "max by (job) (y) < on (job) group_right x",
        "x - ignoring (instance) group_left count without (instance) (y > 0)",
        // Operations after the combine, aggregations of per-series plans: a
        // duplicate label set made after the aggregation, ties of picks and sorts
        // (`y` is a small integer), a join under an aggregation.
        r#"label_replace(sum by (job) (y), "job", "", "job", ".*")"#,
        "topk(3, count by (instance) (y > 0))",
        "limitk(2, sort(max by (instance) (y)))",
        "histogram_quantile(0.9, sum by (job) (rate(x[1m])))",
        "count(y == 0) > bool 1",
        "sum by (job) (rate(x[1m]) / on (instance, job) y)",
        "avg without (instance) (x / on (instance, job) y)",
        "scalar(y == 3)",
        "limitk(2, sort_desc(y))",
        // Set operators of two per-series plans, by match group.
        "x > 1 and on (instance, job) y == 0",
        "rate(x[1m]) unless on (instance) y > 2",
        "x or ignoring (job) y",
        // Joins inside joins, by the labels all their matchings match on.
        "rate(x[1m]) / on (instance, job) y < 0.5 and on (instance) y == 0",
        "x unless ignoring (job) (y - on (instance, job) x)",
        // Per-series elements, picked and gathered members crossing unfinished (names
        // pending removal or dropped at once), the name labels read after them.
        "rate(y[1m]) * 2 / on (job) group_left sum by (job) (x)",
        r#"label_replace(rate(y[1m]) > on (job) group_left max by (job) (x), "n", "$1", "__name__", "(.*)")"#,
        r#"label_replace(sort(rate(x[1m])), "n", "$1", "__name__", "(.*)")"#,
        r#"label_replace(topk(2, rate(x[1m])), "n", "$1", "__name__", "(.*)")"#,
        "limit_ratio(0.5, rate(x[1m]))",
        "quantile by (job) (0.5, abs(y))",
    ];
    // Everything spread; as promflow spreads (not the rules whose owner evaluates
    // every element); without spread joins either.
    for (workers, joins, bound) in [
        (2, true, true),
        (3, true, true),
        (3, true, false),
        (3, false, false),
    ] {
        let engine = engine_with(workers, joins, bound);
        let rules: Vec<RuleHandle> = queries
            .iter()
            .map(|q| engine.register(parse(q).unwrap(), every).unwrap())
            .collect();
        stream(&engine, &samples, |_| {});
        wait_for_frontier(&engine, until + 1);
        settle(&engine);
        // All but the `group_left` join and the two picks of aggregations (the order
        // of their groups is the reference's first-seen order, which combined
        // partials lose), which stay on one owner, and without `spread_joins` the six
        // one-to-one joins, the three set operators of per-series plans and the two
        // joins inside joins; without `spread_owner_bound` the fifteen whose owner
        // would evaluate every element (nine pairs with a per-series side,
        // `scalar`/`limitk`/`label_replace` over a union or a sort of one, a
        // `quantile`) and the two joins under an aggregation of partials (their
        // joiners make the partials, but that is not yet measured faster than owned),
        // those two among the six above.
        let owned = match (joins, bound) {
            (true, true) => 3,
            (true, false) => 18,
            (false, true) => 14,
            (false, false) => 27,
        };
        assert_eq!(engine.stats().rules_owned, owned, "{workers} workers");
        let mut errors = 0;
        for (q, rule) in queries.iter().zip(&rules) {
            let outs = drain(rule);
            assert!(outs.len() > 10, "{q}: {} evaluations", outs.len());
            for out in &outs {
                let plan = parse(q).unwrap();
                let want = Evaluator::new(&store, out.eval_ms).instant(&plan, out.eval_ms);
                match (&out.value, &want) {
                    (Err(got), Err(want)) => {
                        errors += 1;
                        assert_eq!(got, want, "{q} at {}", out.eval_ms);
                    }
                    _ => assert_matches_reference(q, out, &store, every_ms),
                }
            }
        }
        assert!(errors > 20, "{errors} errors");
        engine.shutdown();
    }
}

/// Routing remembers where each series goes; a rule registered later must still get
/// the series routed nowhere before it (here `x`, seen while only a rule on `y` was
/// registered).
#[test]
fn routing_follows_rules_registered_after_their_series_were_seen() {
    // One worker: every batch enters where the earlier ones did, so its routing
    // remembers them.
    let engine = engine_of(1);
    let every = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: 1_000,
    };
    let on_y = engine
        .register(parse("count(y)").expect("parses"), every)
        .expect("registers");
    let x = labels(&[("__name__", "x"), ("instance", "h0")]);
    let y = labels(&[("__name__", "y"), ("instance", "h0")]);
    engine.feed(vec![
        sample(x.clone(), 500, 1.0),
        sample(y.clone(), 500, 1.0),
    ]);
    engine.advance_watermark(1_001);
    wait_for_frontier(&engine, 1_001);
    let on_x = engine
        .register(parse("count(x)").expect("parses"), every)
        .expect("registers");
    engine.feed(vec![
        sample(x.clone(), 1_500, 2.0),
        sample(y.clone(), 1_500, 2.0),
    ]);
    engine.advance_watermark(2_001);
    wait_for_frontier(&engine, 2_001);
    assert!(engine.unregister(on_y.id));
    engine.feed(vec![sample(x, 2_500, 3.0), sample(y, 2_500, 3.0)]);
    engine.advance_watermark(3_001);
    wait_for_frontier(&engine, 3_001);
    settle(&engine);
    engine.shutdown();
    let (y_outs, x_outs) = (drain(&on_y), drain(&on_x));
    let at = |outs: &[RuleOutput], t: i64| {
        outs.iter()
            .find(|o| o.eval_ms == t)
            .and_then(|o| o.samples())
            .map(|s| s.iter().map(|e| e.1).sum::<f64>())
    };
    assert_eq!(at(&y_outs, 1_000), Some(1.0));
    assert_eq!(
        at(&x_outs, 2_000),
        Some(1.0),
        "x routed to the rule registered later"
    );
    assert_eq!(at(&x_outs, 3_000), Some(1.0));
}

/// The zero samples of starts (Prometheus 3.x's `created-timestamp-zero-ingestion`)
/// usually lie behind the watermark when the sample that brought them arrives:
/// `Engine::feed_with_start_zeros` lets them into the windows with that sample, not
/// counted late, so every evaluation from then on equals the reference over what
/// storage holds (the zero samples included). A counter `x` starts at 3s (first
/// sample at 10s) and restarts at 25s (next sample at 30s); `y` has no start. The
/// evaluations between a start and its sample were made before the sample brought
/// the start (as Prometheus made them before it was appended), so they are not
/// compared; all others are, interval and on arrival, incremental and whole plan,
/// owned and spread.
#[test]
fn zero_samples_of_starts_behind_the_watermark_reach_the_windows() {
    let queries = [
        "increase(x[5m])",
        "rate(x[1m])",
        "sum(rate({__name__=~\"x|y\"}[1m]))",
        "x",
    ];
    let engine = engine_of(2);
    let mut rules = Vec::new();
    for q in queries {
        let plan = parse(q).expect("parses");
        for evaluation in [Evaluation::Incremental, Evaluation::WholePlan] {
            let interval = RuleSchedule::Interval {
                start_ms: 0,
                every_ms: 1_000,
            };
            for schedule in [interval, RuleSchedule::OnArrival] {
                let rule = engine
                    .register_with(plan.clone(), schedule, evaluation)
                    .expect("registers");
                rules.push((q, rule));
            }
        }
    }
    let x = labels(&[("__name__", "x"), ("instance", "h0")]);
    let y = labels(&[("__name__", "y"), ("instance", "h0")]);
    let zero = |at: i64| Sample {
        start_ms: at,
        ..sample(x.clone(), at, 0.0)
    };
    let batches = [
        vec![
            zero(3_000),
            sample(x.clone(), 10_000, 5.0),
            sample(y.clone(), 10_000, 1.0),
        ],
        vec![
            sample(x.clone(), 20_000, 9.0),
            sample(y.clone(), 20_000, 2.0),
        ],
        vec![
            zero(25_000),
            sample(x.clone(), 30_000, 2.0),
            sample(y.clone(), 30_000, 3.0),
        ],
        vec![
            sample(x.clone(), 40_000, 4.0),
            sample(y.clone(), 40_000, 4.0),
        ],
    ];
    let mut history = Vec::new();
    for batch in batches {
        let at = batch.last().expect("a sample").timestamp_ms;
        // The watermark is at the batch's time when it arrives (its scrape started
        // then): the zero samples are behind it.
        engine.advance_watermark(at);
        wait_for_frontier(&engine, at);
        history.extend(batch.iter().cloned());
        engine.feed_with_start_zeros(batch);
        engine.advance_watermark(at + 1);
        wait_for_frontier(&engine, at + 1);
    }
    engine.advance_watermark(400_000);
    wait_for_frontier(&engine, 400_000);
    settle(&engine);
    let stats = engine.stats();
    engine.shutdown();
    assert_eq!(
        (stats.samples_late, stats.samples_fed),
        (0, 10),
        "{stats:?}"
    );

    let store = store_of(&history);
    for (query, rule) in &rules {
        let outputs = drain(rule);
        assert!(
            outputs
                .iter()
                .any(|o| o.eval_ms >= 10_000 && o.eval_ms < 20_000),
            "{query}: {:?}",
            outputs.iter().map(|o| o.eval_ms).collect::<Vec<_>>()
        );
        let before_their_sample =
            |t: i64| (3_000..10_000).contains(&t) || (25_000..30_000).contains(&t);
        for out in outputs.iter().filter(|o| !before_their_sample(o.eval_ms)) {
            assert_matches_reference(query, out, &store, 1_000);
        }
    }
}
