//! Alerting rules whose alert state is stepped in the dataflow (design S3,
//! S4, `docs/design/alert-state-stage.md` §6.3): an interval rule registered with an
//! [`AlertSpec`] carries its alert stage's step in each output
//! ([`RuleOutput::alerts`]); applied in order to an [`AlertMirror`], the steps hold,
//! at every evaluation time, exactly the alerts that [`AlertMachine::step`] holds when
//! stepped with the reference evaluator's `instant(plan, t)` over the full sample
//! history at the same times (duplicate final labels, limit breaches, `for` and
//! `keep_firing_for` included), whole results or changes delivered, on 1, 2 and 4
//! workers (on more than one, every rule but one is spread: their stage is in the
//! owner's combiner).

use dataflows::promql::eval::Evaluator;
use dataflows::promql::plan::parse;
use dataflows::promql::testscript::compare::float_eq;
use dataflows::promql::testscript::store::MemStorage;
use dataflows::render::alert_state::{final_labels, AlertCore, AlertMachine, Candidate};
use dataflows::render::alerting::{AlertMirror, AlertSeed, AlertSpec, StepKind};
use dataflows::render::rule::{instant_vector, Arrival};
use dataflows::{Delivery, Engine, EngineConfig, Labels, RuleOutput, RuleSchedule, Sample};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(Labels::from_strs(pairs))
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

/// Gauges `y` and counters `x` on 6 instances in 2 jobs, jittered scrapes every 10s,
/// missed scrapes, stale markers and silences past the lookback delta: alerts come,
/// go, flap and come back.
fn random_stream(seed: u64, until_ms: i64) -> Vec<Sample> {
    let mut rng = Rng(seed);
    let mut counters = [0.0f64; 6];
    let mut out = Vec::new();
    let mut scrape = 0;
    while scrape <= until_ms {
        for (i, counter) in counters.iter_mut().enumerate() {
            if rng.below(10) == 0 {
                continue;
            }
            let ts = scrape + rng.below(3_000) as i64;
            let job = if i % 2 == 0 { "a" } else { "b" };
            let instance = format!("h{i}");
            let x = labels(&[("__name__", "x"), ("instance", &instance), ("job", job)]);
            let y = labels(&[("__name__", "y"), ("instance", &instance), ("job", job)]);
            if rng.below(40) == 0 {
                out.push(sample(y, ts, dataflows::STALE_MARKER));
                continue;
            }
            *counter += rng.below(20) as f64;
            out.push(sample(x, ts, *counter));
            // Mostly low, sometimes high for a while.
            let high = (scrape / 60_000 + i as i64) % 4 == 0;
            let v = rng.below(5) as f64 + if high { 4.0 } else { 0.0 };
            out.push(sample(y, ts, v));
        }
        scrape += if rng.below(80) == 0 { 400_000 } else { 10_000 };
    }
    out.sort_by_key(|s| s.timestamp_ms);
    out
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

/// An alerting rule: its expression, rule labels, `for`, `keep_firing_for`, limit.
struct Case {
    expr: &'static str,
    labels: &'static [(&'static str, &'static str)],
    for_ms: i64,
    keep_firing_for_ms: i64,
    limit: usize,
}

const CASES: &[Case] = &[
    Case {
        expr: "y > 4",
        labels: &[("severity", "page")],
        for_ms: 30_000,
        keep_firing_for_ms: 0,
        limit: 0,
    },
    Case {
        expr: "y > 5",
        labels: &[],
        for_ms: 0,
        keep_firing_for_ms: 60_000,
        limit: 0,
    },
    // A limit that some evaluations breach.
    Case {
        expr: "y >= 4",
        labels: &[],
        for_ms: 20_000,
        keep_firing_for_ms: 0,
        limit: 3,
    },
    // Every element's final labels are one alert's: duplicates whenever two fire.
    Case {
        expr: "y > 6",
        labels: &[("instance", "any")],
        for_ms: 0,
        keep_firing_for_ms: 0,
        limit: 0,
    },
    Case {
        expr: "sum by (job) (rate(x[1m])) > 0.9",
        labels: &[("team", "t")],
        for_ms: 120_000,
        keep_firing_for_ms: 30_000,
        limit: 0,
    },
    // Owned on any number of workers (a label function inside an aggregation).
    Case {
        expr: r#"max by (instance, job) (label_replace(y, "f", "x", "", "")) > 4"#,
        labels: &[("severity", "page")],
        for_ms: 20_000,
        keep_firing_for_ms: 10_000,
        limit: 0,
    },
    // A scalar result is one element without labels.
    Case {
        expr: "scalar(sum(y)) > bool 12",
        labels: &[],
        for_ms: 10_000,
        keep_firing_for_ms: 0,
        limit: 0,
    },
];

fn spec(case: &Case) -> AlertSpec {
    AlertSpec {
        name: "A".into(),
        labels: case
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        for_ms: case.for_ms,
        keep_firing_for_ms: case.keep_firing_for_ms,
        limit: case.limit,
        seed: AlertSeed::default(),
    }
}

fn wait_for_frontier(engine: &Engine, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.stats().frontier_ms < at_least {
        assert!(Instant::now() < deadline, "frontier stuck");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The stepped fields and the value of each alert, in label order.
fn cores<'a>(alerts: impl Iterator<Item = &'a AlertCore>) -> Vec<AlertCore> {
    let mut out: Vec<AlertCore> = alerts.cloned().collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn assert_same_alerts(what: &str, got: Vec<AlertCore>, want: Vec<AlertCore>) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(&want) {
        let value = |a: &AlertCore| AlertCore {
            value: 0.0,
            ..a.clone()
        };
        assert_eq!(value(g), value(w), "{what}");
        assert!(float_eq(g.value, w.value), "{what}: {g:?} vs {w:?}");
    }
}

/// Runs every case on `workers` workers over `samples`, each output's step applied to
/// a mirror, and checks the mirror against the kernel stepped with the reference at
/// every evaluation time.
fn run(workers: usize, seed: u64, delivery: Delivery) {
    let until = 1_500_000;
    let every = 10_000;
    let samples = random_stream(seed, until);
    let store = store_of(&samples);
    let engine = Engine::start(EngineConfig {
        workers,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let empty = MemStorage::default();
    let schedule = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: every,
    };
    let rules: Vec<_> = CASES
        .iter()
        .map(|case| {
            let (tx, rx) = crossbeam_channel::unbounded();
            let plan = parse(case.expr).expect("parses");
            engine
                .register_alerting_to(plan, schedule, &empty, tx, delivery, spec(case))
                .expect("registers");
            rx
        })
        .collect();
    // A rule without a spec carries no step.
    let (tx, plain) = crossbeam_channel::unbounded();
    engine
        .register_seeded_to(parse("y > 4").unwrap(), schedule, &empty, tx, delivery)
        .unwrap();
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
    }
    engine.advance_watermark(until + 10_000);
    wait_for_frontier(&engine, until + 10_000);
    let owned = engine.stats().rules_owned;
    engine.shutdown();
    if workers > 1 {
        // The label function's rule is owned, every other spread (their stages in
        // the combiner).
        assert_eq!(owned, 1, "alerting rules are spread");
    }
    assert!(plain.try_iter().all(|o| o.alerts.is_none()));
    let mut changes = 0;
    for (case, rx) in CASES.iter().zip(&rules) {
        let what = format!(
            "{} ({workers} workers, seed {seed}, {delivery:?})",
            case.expr
        );
        let outputs: Vec<RuleOutput> = rx.try_iter().collect();
        let plan = parse(case.expr).unwrap();
        let static_labels = spec(case).labels;
        let mut reference = AlertMachine::<()>::new(case.for_ms, case.keep_firing_for_ms);
        let mut mirror = AlertMirror::new(AlertMachine::<()>::new(
            case.for_ms,
            case.keep_firing_for_ms,
        ));
        let candidates = |elements: Vec<(Arc<Labels>, f64)>| -> Vec<Candidate<()>> {
            elements
                .into_iter()
                .map(|(l, value)| Candidate {
                    labels: final_labels(&l, &static_labels, "A"),
                    value,
                    payload: (),
                })
                .collect()
        };
        let (mut fired, mut errors) = (0, 0);
        let mut current: HashMap<Arc<Labels>, f64> = HashMap::new();
        for (k, out) in outputs.iter().enumerate() {
            let t = out.eval_ms;
            assert_eq!(t, k as i64 * every, "{what}: every tick, in order");
            let step = out
                .alerts
                .as_ref()
                .expect("an alerting rule's output has a step");
            assert_eq!(step.t_ms, t, "{what}");
            // The mirror, given the candidates the step was made of: the changed
            // elements' for changes, else every element's (the result the host keeps).
            let changed = match out.arrival::<f64>() {
                Arrival::Whole(Ok(elements)) => {
                    current = elements.iter().cloned().collect();
                    elements
                }
                Arrival::Whole(Err(_)) => Vec::new(),
                Arrival::Changes { set, gone } => {
                    for l in &gone {
                        current.remove(l);
                    }
                    current.extend(set.iter().cloned());
                    set
                }
            };
            let given = match step.kind {
                StepKind::Changes => candidates(changed),
                StepKind::Whole => {
                    candidates(current.iter().map(|(l, v)| (l.clone(), *v)).collect())
                }
                StepKind::Skipped => Vec::new(),
            };
            if step.kind == StepKind::Changes {
                changes += 1;
            }
            let got = mirror.apply(step, given);
            // The kernel over the reference at `t`.
            let mut ev = Evaluator::new(&store, t);
            ev.subquery_step_ms = every;
            let value = ev.instant(&plan, t);
            let want = match value
                .as_ref()
                .ok()
                .map(|v| instant_vector(Cow::Borrowed(v), |_| None))
            {
                Some(Ok(elements)) => Some(reference.step(t, candidates(elements), case.limit)),
                _ => None,
            };
            match (&got, &want) {
                (Ok(_), None) => errors += 1,
                (Ok(_), Some(Ok(_))) => {}
                (Err(g), Some(Err(w))) => {
                    assert_eq!(g, w, "{what} at {t}");
                    errors += 1;
                }
                _ => panic!("{what} at {t}: stage {got:?}, reference {want:?}"),
            }
            assert_same_alerts(
                &format!("{what} at {t}"),
                cores(mirror.machine().alerts().map(|a| &a.core)),
                cores(reference.alerts().map(|a| &a.core)),
            );
            fired += reference
                .alerts()
                .filter(|a| a.state == dataflows::render::alert_state::AlertState::Firing)
                .count();
        }
        assert!(
            outputs.len() as i64 >= until / every,
            "{what}: {} outputs",
            outputs.len()
        );
        assert!(fired > 0, "{what}: something fired");
        if case.limit > 0 || case.labels.iter().any(|(k, _)| *k == "instance") {
            assert!(errors > 0, "{what}: the case failed somewhere");
        }
    }
    if delivery == Delivery::Changes {
        assert!(changes > 0, "some steps took the changes alone");
    }
}

#[test]
fn an_alert_stage_steps_as_the_kernel_over_the_reference_on_1_worker() {
    for seed in [1u64, 42] {
        run(1, seed, Delivery::Whole);
        run(1, seed, Delivery::Changes);
    }
}

#[test]
fn an_alert_stage_steps_as_the_kernel_over_the_reference_on_2_workers() {
    for seed in [7u64, 42] {
        run(2, seed, Delivery::Whole);
        run(2, seed, Delivery::Changes);
    }
}

#[test]
fn an_alert_stage_steps_as_the_kernel_over_the_reference_on_4_workers() {
    run(4, 3, Delivery::Whole);
    run(4, 3, Delivery::Changes);
}
