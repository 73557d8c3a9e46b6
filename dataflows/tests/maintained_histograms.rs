//! Native histograms through the engine: histogram samples fed beside floats
//! (`SampleBatch::histograms`), kept in the rule windows, and rules reading them
//! evaluated whole-plan, checked against the reference evaluator over the full sample
//! history (the oracle) at every evaluation: `histogram_quantile(0.9, rate(h[1m]))`,
//! `sum(h)` (spread over the workers: histogram partials combined on the owner),
//! `avg`, `limitk`, `stddev` and `quantile` of `h` (spread: members gathered),
//! `sum by (job) (rate(h[1m]))`, `histogram_count(h)`, operations after a spread
//! aggregation of a per-series plan (`histogram_quantile(0.9, sum by (job) (…))`,
//! `sum(h * 2)`, a `topk` of sums), and a float rule beside them,
//! which stays incremental (the float path is untouched by histograms); a rule seeded
//! with histograms from a history; on-arrival rules over histograms and over a series
//! that turns from floats to histograms, through to their expiry.

use dataflows::histogram::{FloatHistogram, Span};
use dataflows::promql::eval::native::{handle, SOURCE};
use dataflows::promql::eval::{Evaluator, Value};
use dataflows::promql::plan::parse;
use dataflows::promql::testscript::compare::float_eq;
use dataflows::promql::testscript::store::MemStorage;
use dataflows::{
    Engine, EngineConfig, Labels, RuleHandle, RuleOutput, RuleSchedule, SampleBatch, STALE_MARKER,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEP_MS: i64 = 15_000;

fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(Labels::from_strs(pairs))
}

/// A counter histogram of schema 0 with four positive buckets: step `k` of instance
/// `i`, bucket `b` holding `k * (i + 1) * (b + 1)` observations.
fn histogram(k: i64, i: i64) -> FloatHistogram {
    let buckets: Vec<f64> = (0..4).map(|b| (k * (i + 1) * (b + 1)) as f64).collect();
    FloatHistogram {
        schema: 0,
        zero_threshold: 1e-128,
        count: buckets.iter().sum(),
        sum: (k * (i + 1)) as f64 * 2.5,
        positive_spans: vec![Span {
            offset: 0,
            length: 4,
        }],
        positive_buckets: buckets,
        ..FloatHistogram::default()
    }
}

/// Evaluation interval of [`interval_rules_fed`]'s rules (ms).
const EVERY_MS: i64 = 30_000;

/// An engine of `workers` with each of `queries` registered at [`EVERY_MS`], fed
/// `scrape(k)` for `k` in `0..=steps` (kept in a [`MemStorage`] too, for the reference)
/// and waited on until its frontier passes the last; returns the last time fed too.
fn interval_rules_fed(
    workers: usize,
    queries: &[&str],
    steps: i64,
    scrape: fn(i64, &mut MemStorage) -> SampleBatch,
) -> (Engine, Vec<RuleHandle>, MemStorage, i64) {
    let engine = Engine::start(EngineConfig {
        workers,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let rules: Vec<_> = queries
        .iter()
        .map(|q| {
            let schedule = RuleSchedule::Interval {
                start_ms: 0,
                every_ms: EVERY_MS,
            };
            engine.register(parse(q).unwrap(), schedule).unwrap()
        })
        .collect();
    let mut store = MemStorage::default();
    for k in 0..=steps {
        engine.feed(scrape(k, &mut store));
        engine.advance_watermark(k * STEP_MS + 1);
    }
    let end = steps * STEP_MS + 1;
    wait_for_frontier(&engine, end);
    (engine, rules, store, end)
}

/// One scrape: histograms `h` on 4 instances in 2 jobs (instance 3 resets every 11
/// steps, instance 2 is absent for a while) and a float counter `x`; every series
/// announced, as the engine's contract allows.
fn scrape(k: i64, store: &mut MemStorage) -> SampleBatch {
    let t = k * STEP_MS;
    let mut batch = SampleBatch::default();
    for i in 0..4 {
        if i == 2 && (20..30).contains(&k) {
            continue;
        }
        let job = if i % 2 == 0 { "a" } else { "b" };
        let l = labels(&[
            ("__name__", "h"),
            ("instance", &format!("h{i}")),
            ("job", job),
        ]);
        let step = if i == 3 { k % 11 } else { k };
        let h = Arc::new(histogram(step, i));
        store.histograms.push(h.clone());
        let at = (store.histograms.len() - 1) as u32;
        store
            .series
            .entry(l.clone())
            .or_default()
            .insert(t, handle(SOURCE, at));
        batch.new_series.push((l.hash(), l.clone()));
        batch.push_histogram(l.hash(), t, h, 0);
        let x = labels(&[
            ("__name__", "x"),
            ("instance", &format!("h{i}")),
            ("job", job),
        ]);
        let v = (k * (i + 1)) as f64;
        store.series.entry(x.clone()).or_default().insert(t, v);
        batch.new_series.push((x.hash(), x.clone()));
        batch.push(x.hash(), t, v, 0);
    }
    batch
}

/// A value's elements as `(labels, float, histogram)`, sorted by labels.
fn elements(
    value: &Value,
    resolve: &dyn Fn(f64) -> Option<Arc<FloatHistogram>>,
) -> Vec<(String, f64, Option<Arc<FloatHistogram>>)> {
    let Value::Vector(v) = value else {
        panic!("not a vector: {value:?}")
    };
    let mut out: Vec<_> = v
        .iter()
        .map(|e| (e.labels.to_string(), e.value, resolve(e.value)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts that a maintained output equals the reference at its evaluation time,
/// histograms compared as Prometheus's test runner compares them.
fn assert_matches_reference(query: &str, out: &RuleOutput, store: &MemStorage) -> usize {
    let plan = parse(query).expect("parses");
    let ev = Evaluator::new(store, out.eval_ms);
    let want = ev.instant(&plan, out.eval_ms).expect("reference evaluates");
    let got = out.value.as_ref().expect("maintained evaluates");
    let want = elements(&want, &|v| ev.histogram(v));
    let got = elements(got, &|v| out.histogram(v).cloned());
    let same = got.len() == want.len()
        && got.iter().zip(&want).all(|(g, w)| {
            g.0 == w.0
                && match (&g.2, &w.2) {
                    (Some(gh), Some(wh)) => gh.same(wh, false, float_eq),
                    (None, None) => float_eq(g.1, w.1),
                    _ => false,
                }
        });
    assert!(
        same,
        "{query} at {}: maintained {got:?}, reference {want:?}",
        out.eval_ms
    );
    got.iter().filter(|e| e.2.is_some()).count()
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

/// Interval rules over histograms (and one over floats) on 1 and 3 workers: every
/// evaluation equals the reference's, the histogram results carry their histograms,
/// and the float rule is still answered incrementally.
#[test]
fn histogram_rules_match_the_reference_while_streaming() {
    let queries = [
        "histogram_quantile(0.9, rate(h[1m]))",
        "sum(h)",
        "sum by (job) (rate(h[1m]))",
        "histogram_count(h)",
        "sum by (job) (x)",
        "avg by (job) (h)",
        "limitk(2, h)",
        "stddev(h)",
        "quantile by (job) (0.5, h)",
        // Operations after the combine, aggregations of per-series plans.
        "histogram_quantile(0.9, sum by (job) (rate(h[1m])))",
        "sum(h * 2)",
        "histogram_count(sum(h * 2)) > 1",
        "topk(1, sum by (job) (rate(x[1m])))",
    ];
    for workers in [1, 3] {
        let (engine, rules, store, end) = interval_rules_fed(workers, &queries, 60, scrape);
        for (q, rule) in queries.iter().zip(&rules) {
            let outputs: Vec<RuleOutput> = rule.output.try_iter().collect();
            assert_eq!(
                outputs.len() as i64,
                (end - 1) / EVERY_MS + 1,
                "{q} on {workers} workers: every evaluation"
            );
            let histograms: usize = outputs
                .iter()
                .map(|o| assert_matches_reference(q, o, &store))
                .sum();
            match *q {
                "sum(h)"
                | "sum by (job) (rate(h[1m]))"
                | "avg by (job) (h)"
                | "limitk(2, h)"
                | "sum(h * 2)" => {
                    assert!(histograms > 0, "{q}: histogram results")
                }
                _ => assert_eq!(histograms, 0, "{q}: float results"),
            }
        }
        let stats = engine.stats();
        assert!(
            stats.rule_evaluations_incremental > 0,
            "the float rule stays incremental on {workers} workers: {stats:?}"
        );
        engine.shutdown();
    }
}

/// A rule registered after histograms have flowed, seeded from the history (a source
/// whose histogram samples are handles of its own): exact from its first evaluation.
#[test]
fn seeded_with_histograms_is_exact_from_the_start() {
    let engine = Engine::start(EngineConfig {
        workers: 2,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let (mut store, mut history) = (MemStorage::default(), MemStorage::default());
    let (split, steps) = (30, 60);
    for k in 0..split {
        scrape(k, &mut history);
        engine.feed(scrape(k, &mut store));
        engine.advance_watermark(k * STEP_MS + 1);
    }
    let query = "sum by (job) (rate(h[1m]))";
    let every = 60_000;
    let schedule = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: every,
    };
    let rule = engine
        .register_seeded(parse(query).unwrap(), schedule, &history)
        .expect("registers");
    for k in split..=steps {
        engine.feed(scrape(k, &mut store));
        engine.advance_watermark(k * STEP_MS + 1);
    }
    wait_for_frontier(&engine, steps * STEP_MS + 1);
    engine.shutdown();
    let outputs: Vec<RuleOutput> = rule.output.try_iter().collect();
    // Registered at the watermark 29 * 15s + 1 ms: evaluations from 8m to 15m.
    let times: Vec<i64> = outputs.iter().map(|o| o.eval_ms).collect();
    assert_eq!(times, (8..=15).map(|m| m * 60_000).collect::<Vec<_>>());
    for o in &outputs {
        assert!(
            assert_matches_reference(query, o, &store) > 0,
            "at {}",
            o.eval_ms
        );
    }
}

/// On arrival: rules over a series that turns from floats to histograms (the plain
/// selector drops its incremental state then) and over histograms only are evaluated
/// when a sample arrives and when one leaves, each output the reference's at its
/// time, and the results empty once the last sample passed the lookback delta.
#[test]
fn on_arrival_over_histograms_matches_the_reference_and_expires() {
    let engine = Engine::start(EngineConfig {
        workers: 2,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let queries = ["m", "histogram_count(h)", "sum(h)"];
    let rules: Vec<_> = queries
        .iter()
        .map(|q| {
            engine
                .register(parse(q).unwrap(), RuleSchedule::OnArrival)
                .unwrap()
        })
        .collect();
    let mut store = MemStorage::default();
    let m = labels(&[("__name__", "m")]);
    let steps = 20;
    for k in 0..=steps {
        let t = k * STEP_MS;
        let mut batch = scrape(k, &mut store);
        batch.new_series.push((m.hash(), m.clone()));
        if k < 10 {
            batch.push(m.hash(), t, k as f64, 0);
            store
                .series
                .entry(m.clone())
                .or_default()
                .insert(t, k as f64);
        } else {
            let h = Arc::new(histogram(k, 0));
            store.histograms.push(h.clone());
            let at = (store.histograms.len() - 1) as u32;
            let handle = handle(SOURCE, at);
            store.series.entry(m.clone()).or_default().insert(t, handle);
            batch.push_histogram(m.hash(), t, h, 0);
        }
        engine.feed(batch);
        engine.advance_watermark(t + 1);
    }
    let end = steps * STEP_MS + 300_000 + 2;
    engine.advance_watermark(end);
    wait_for_frontier(&engine, end);
    engine.shutdown();
    for (q, rule) in queries.iter().zip(&rules) {
        let outputs: Vec<RuleOutput> = rule.output.try_iter().collect();
        let times: Vec<i64> = outputs.iter().map(|o| o.eval_ms).collect();
        for k in 0..=steps {
            assert!(
                times.contains(&(k * STEP_MS)),
                "{q}: evaluated at arrival {k}"
            );
        }
        for o in &outputs {
            assert_matches_reference(q, o, &store);
        }
        let last = outputs.last().expect("outputs");
        // The last sample leaves `(t - 5m, t]` at its time + 5m.
        assert_eq!(last.eval_ms, steps * STEP_MS + 300_000, "{q}: expiry");
        assert!(
            matches!(&last.value, Ok(Value::Vector(v)) if v.is_empty()),
            "{q}: empty once expired"
        );
    }
}

/// An exponential counter histogram of `schema` with positive buckets from index
/// `offset` on.
fn exponential(schema: i32, offset: i32, buckets: Vec<f64>, sum: f64) -> FloatHistogram {
    FloatHistogram {
        schema,
        zero_threshold: 1e-128,
        count: buckets.iter().sum(),
        sum,
        positive_spans: vec![Span {
            offset,
            length: buckets.len() as u32,
        }],
        positive_buckets: buckets,
        ..FloatHistogram::default()
    }
}

/// One scrape of `h` on four instances in two jobs, through every case the rate of a
/// native histogram has: instance 0 changes schema (1 to 0, the same observations
/// merged pairwise: not a reset) at step 20; instance 1 carries start timestamps
/// (from 1 ms: inside the first windows, so it counts from zero there) and restarts
/// at step 30 (a counter reset, its start after the previous sample); instance 2 gets
/// a stale marker at step 40 and is back at step 50; instance 3 exposes floats for
/// steps 55 to 57 (windows mixing floats and histograms).
fn scrape_cases(k: i64, store: &mut MemStorage) -> SampleBatch {
    let t = k * STEP_MS;
    let mut batch = SampleBatch::default();
    for i in 0..4i64 {
        let l = labels(&[
            ("__name__", "h"),
            ("instance", &format!("h{i}")),
            ("job", if i % 2 == 0 { "a" } else { "b" }),
        ]);
        batch.new_series.push((l.hash(), l.clone()));
        let n = (k + 1) as f64;
        let (h, start) = match i {
            0 if k < 20 => (
                exponential(1, 1, (1..=4).map(|b| n * b as f64).collect(), n),
                0,
            ),
            0 => (exponential(0, 1, vec![n * 3.0, n * 7.0], n), 0),
            1 if k < 30 => (histogram(k, 1), 1),
            1 => (histogram(k - 29, 1), 30 * STEP_MS - 5_000),
            2 if (40..50).contains(&k) => {
                if k == 40 {
                    batch.push(l.hash(), t, STALE_MARKER, 0);
                    store.series.entry(l).or_default().insert(t, STALE_MARKER);
                }
                continue;
            }
            3 if (55..58).contains(&k) => {
                batch.push(l.hash(), t, n, 0);
                store.series.entry(l).or_default().insert(t, n);
                continue;
            }
            _ => (histogram(k, i), 0),
        };
        let h = Arc::new(h);
        store.histograms.push(h.clone());
        let at = (store.histograms.len() - 1) as u32;
        store
            .series
            .entry(l.clone())
            .or_default()
            .insert(t, handle(SOURCE, at));
        if start != 0 {
            store
                .start_times
                .entry(l.clone())
                .or_default()
                .insert(t, start);
        }
        batch.push_histogram(l.hash(), t, h, start);
    }
    batch
}

/// `rate`, `increase`, `irate` of native histograms, `sum`/`count` over them and
/// `histogram_avg`/`histogram_count` of those are maintained incrementally (no evaluation of the whole plan), owned on one worker and
/// spread over four (partial sums per worker), through a schema change, counter resets
/// (by the histograms and by start timestamps), a stale marker and windows mixing
/// floats and histograms; every evaluation is the reference evaluator's (on one worker
/// exactly, histograms bit for bit; spread, within the rounding of summing the
/// workers' partial sums), the reference being what the conformance suite holds to
/// Prometheus's own expected results.
#[test]
fn rate_and_sum_of_histograms_are_maintained_incrementally() {
    let queries = [
        "sum(rate(h[5m]))",
        "sum by (job) (increase(h[5m]))",
        "count by (job) (rate(h[5m]))",
        "rate(h[5m])",
        "sum(irate(h[5m]))",
        "histogram_avg(sum by (job) (rate(h[5m])))",
        "histogram_count(rate(h[5m])) > 0",
        "sum by (job) (rate(h[5m]) * 2)",
        "max(histogram_count(rate(h[5m])))",
    ];
    for workers in [1, 4] {
        let (engine, rules, store, end) = interval_rules_fed(workers, &queries, 70, scrape_cases);
        let stats = engine.stats();
        engine.shutdown();
        for (q, rule) in queries.iter().zip(&rules) {
            let outputs: Vec<RuleOutput> = rule.output.try_iter().collect();
            assert_eq!(
                outputs.len() as i64,
                (end - 1) / EVERY_MS + 1,
                "{q}: every evaluation"
            );
            let plan = parse(q).unwrap();
            let mut histograms = 0;
            for out in &outputs {
                let ev = Evaluator::new(&store, out.eval_ms);
                let want = ev.instant(&plan, out.eval_ms).expect("reference evaluates");
                let want = elements(&want, &|v| ev.histogram(v));
                let got = elements(out.value.as_ref().expect("evaluates"), &|v| {
                    out.histogram(v).cloned()
                });
                let exact = |a: f64, b: f64| a.to_bits() == b.to_bits();
                let same = got.len() == want.len()
                    && got.iter().zip(&want).all(|(g, w)| {
                        g.0 == w.0
                            && match (&g.2, &w.2) {
                                (Some(gh), Some(wh)) if workers == 1 => gh.same(wh, true, exact),
                                (Some(gh), Some(wh)) => gh.same(wh, true, float_eq),
                                (None, None) => exact(g.1, w.1),
                                _ => false,
                            }
                    });
                assert!(
                    same,
                    "{q} on {workers} workers at {}: maintained {got:?}, reference {want:?}",
                    out.eval_ms
                );
                histograms += got.iter().filter(|e| e.2.is_some()).count();
            }
            if !q.starts_with("count") && !q.starts_with("histogram_") && !q.starts_with("max") {
                assert!(histograms > 0, "{q}: histogram results");
            }
        }
        assert_eq!(
            stats.rule_evaluations_whole_plan, 0,
            "no whole-plan evaluation on {workers} workers: {stats:?}"
        );
        assert!(stats.rule_evaluations_incremental > 0, "{stats:?}");
    }
}

/// The zero sample of a native histogram's start (an empty histogram at the start,
/// `created-timestamp-zero-ingestion`), behind the watermark when its histogram
/// arrives, reaches the windows through `Engine::feed_with_start_zeros` as a float's
/// does (`maintained_rules.rs`, `zero_samples_of_starts_*`): from then on every
/// evaluation equals the reference over what storage holds, the zero sample included;
/// those between the start and its histogram were made before it came and are not
/// compared.
#[test]
fn zero_histograms_of_starts_behind_the_watermark_reach_the_windows() {
    let queries = [
        "histogram_count(increase(h[5m]))",
        "rate(h[1m])",
        "count_over_time(h[5m])",
    ];
    let engine = Engine::start(EngineConfig {
        workers: 2,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let rules: Vec<_> = queries
        .iter()
        .flat_map(|q| {
            let interval = RuleSchedule::Interval {
                start_ms: 0,
                every_ms: 1_000,
            };
            [interval, RuleSchedule::OnArrival]
                .map(|schedule| (q, engine.register(parse(q).unwrap(), schedule).unwrap()))
        })
        .collect();
    let l = labels(&[("__name__", "h"), ("instance", "h0")]);
    let mut store = MemStorage::default();
    let mut fed = 0;
    // (start of a zero sample before it, time, step of `histogram`)
    for (start, t, k) in [
        (Some(3_000), 10_000, 1),
        (None, 20_000, 2),
        (None, 30_000, 3),
    ] {
        engine.advance_watermark(t);
        wait_for_frontier(&engine, t);
        let mut batch = SampleBatch::default();
        batch.new_series.push((l.hash(), l.clone()));
        let zero = start.map(|s| {
            (
                s,
                FloatHistogram {
                    schema: 0,
                    zero_threshold: 1e-128,
                    ..FloatHistogram::default()
                },
            )
        });
        for (at, h, mark) in
            zero.map(|(s, h)| (s, h, s))
                .into_iter()
                .chain([(t, histogram(k, 0), 0)])
        {
            let h = Arc::new(h);
            store.histograms.push(h.clone());
            let slot = (store.histograms.len() - 1) as u32;
            store
                .series
                .entry(l.clone())
                .or_default()
                .insert(at, handle(SOURCE, slot));
            batch.push_histogram(l.hash(), at, h, mark);
            fed += 1;
        }
        engine.feed_with_start_zeros(batch);
        engine.advance_watermark(t + 1);
        wait_for_frontier(&engine, t + 1);
    }
    engine.advance_watermark(400_000);
    wait_for_frontier(&engine, 400_000);
    std::thread::sleep(Duration::from_millis(300));
    let stats = engine.stats();
    engine.shutdown();
    assert_eq!(
        (stats.samples_late, stats.samples_fed),
        (0, fed),
        "{stats:?}"
    );
    for (query, rule) in &rules {
        let outputs: Vec<RuleOutput> = rule.output.try_iter().collect();
        assert!(
            outputs
                .iter()
                .any(|o| (10_000..20_000).contains(&o.eval_ms)),
            "{query}"
        );
        for out in outputs
            .iter()
            .filter(|o| !(3_000..10_000).contains(&o.eval_ms))
        {
            assert_matches_reference(query, out, &store);
        }
    }
}
