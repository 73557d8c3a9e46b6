//! Maintained rule cost: CPU per ingested sample with 10 and 100 alert rules.
//!
//! Isolates what evaluating alert rules adds to ingest, over a node_exporter-like
//! workload (CPU, filesystem, memory, load, network, disk series on `RULES_TARGETS`
//! targets, scraped every second). Two parts:
//!
//! 1. **Side by side.** A synthetic exporter in this process serves the targets on
//!    loopback; promflow and then a real Prometheus 2.42 (`/usr/bin/prometheus`) scrape
//!    them with the same config and the same rule file at `evaluation_interval: 1s`,
//!    with 0, 10 and 100 rules. After `RULES_WARMUP` seconds (so the 1m windows are
//!    full) we read each server's CPU time from `/proc/<pid>/stat` and its
//!    ingested-sample counter over `RULES_SECONDS`, and print CPU µs per ingested
//!    sample, the rules' share (minus the 0-rule run) and the promflow/Prometheus
//!    ratio. This measures the rule path the service runs.
//! 2. **Engine, incremental vs whole-plan.** The same series and rules on the
//!    dataflow engine in this process, in simulated time (`RULES_SIM_SECONDS`, the
//!    first 60 s not measured), each rule registered with `Evaluation::Incremental`
//!    and then `Evaluation::WholePlan`, evaluated every 1s; CPU of this process per
//!    ingested sample, minus a run with no rules. Two workloads: the targets scraped
//!    every 1s (every series changes at every evaluation), and every 15s (a typical
//!    scrape interval under `evaluation_interval: 1s`: most series do not change
//!    between two evaluations; simulated 4x as long).
//!
//! Run: `cargo bench --bench rules` (env `RULES_TARGETS`, `RULES_SECONDS`,
//! `RULES_WARMUP`, `RULES_SIM_SECONDS` override; `RULES_PART=1` or `2` runs one part).
//! All traffic stays on 127.0.0.1.

mod side_by_side;

use dataflows::promql::plan::parse;
use dataflows::{Engine, EngineConfig, Evaluation, Labels, RuleSchedule, Sample};
use side_by_side::{
    cpu_seconds, env_or, exporters_and_config, measure_after, node_body, node_series, rule_expr,
    rule_file, Body, Server, PROMETHEUS, PROMETHEUS_COUNTER, PROMFLOW, PROMFLOW_COUNTER,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Part 1: promflow and Prometheus with 0, 10 and 100 rules.
fn side_by_side(targets: usize, warmup: u64, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let body: Body = Arc::new(node_body);
    let mut configs = Vec::new();
    for n in [0usize, 10, 100] {
        let rules = dir.path().join(format!("rules{n}.yml"));
        std::fs::write(&rules, rule_file(n)).unwrap();
        let extra = if n == 0 {
            String::new()
        } else {
            format!("rule_files: [\"{}\"]\n", rules.display())
        };
        configs.push((
            n,
            exporters_and_config(
                targets,
                body.clone(),
                dir.path(),
                &format!("bench{n}.yml"),
                &extra,
            ),
        ));
    }
    let mut servers = vec![("promflow", PROMFLOW, PROMFLOW_COUNTER)];
    if std::path::Path::new(PROMETHEUS).exists() {
        servers.push(("prometheus", PROMETHEUS, PROMETHEUS_COUNTER));
    } else {
        println!("{PROMETHEUS} not found: promflow only (apt-get install prometheus)");
    }
    println!(
        "part 1: {targets} node-like targets ({} series each) scraped every 1s, rules every 1s, \
         {warmup}s warm-up, measured over {seconds}s",
        node_series(0).len() + 5
    );
    // (server, rules) -> CPU µs per sample.
    let mut per_sample = Vec::new();
    for (name, binary, counter) in &servers {
        for (n, config) in &configs {
            let data = dir.path().join(format!("{name}-{n}"));
            let server = Server::start(name, binary, config, &data, &[]);
            let (samples, cpu) = measure_after(&server, counter, warmup, seconds);
            drop(server);
            let us = cpu * 1e6 / samples.max(1.0);
            println!(
                "{name:>10} {n:>3} rules: {samples:>8.0} samples, {cpu:>6.2} CPU-s, {us:>6.2} µs/sample"
            );
            per_sample.push((*name, *n, us));
        }
    }
    let get = |name: &str, n: usize| {
        per_sample
            .iter()
            .find(|(s, r, _)| *s == name && *r == n)
            .map(|x| x.2)
    };
    for n in [10, 100] {
        let line = |name: &str| {
            let (with, without) = (get(name, n)?, get(name, 0)?);
            Some((with, with - without))
        };
        if let (Some((pf, pf_rules)), Some((pq, pq_rules))) = (line("promflow"), line("prometheus"))
        {
            println!(
                "{n:>3} rules: total µs/sample promflow/prometheus {:.2}; rules' share {pf_rules:.2} vs {pq_rules:.2} µs/sample",
                pf / pq
            );
        }
    }
}

fn labels_of(name: &str, pairs: &[(&str, String)], instance: usize) -> Arc<Labels> {
    let mut all: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    all.push(("__name__".into(), name.into()));
    all.push(("instance".into(), format!("target-{instance}")));
    all.push(("job".into(), "node".into()));
    Arc::new(Labels::from_pairs(all))
}

/// Part 2, one run: CPU seconds of this process over the measured simulated seconds,
/// and the samples fed then.
fn engine_run(
    targets: usize,
    sim_seconds: u64,
    scrape_every: u64,
    rules: usize,
    evaluation: Evaluation,
) -> (f64, u64) {
    let engine = Engine::start(EngineConfig {
        workers: 1,
        lookback_ms: 300_000,
    })
    .expect("engine starts");
    let handles: Vec<_> = (0..rules)
        .map(|i| {
            engine
                .register_with(
                    parse(&rule_expr(i)).expect("rule parses"),
                    RuleSchedule::Interval {
                        start_ms: 1_000,
                        every_ms: 1_000,
                    },
                    evaluation,
                )
                .expect("registers")
        })
        .collect();
    // Label sets are built once, as the scrape cache does.
    let series: Vec<Vec<Arc<Labels>>> = (0..targets)
        .map(|i| {
            node_series(0)
                .iter()
                .map(|(name, l, _)| labels_of(name, l, i))
                .collect()
        })
        .collect();
    let up: Vec<Arc<Labels>> = (0..targets).map(|i| labels_of("up", &[], i)).collect();
    let warmup = 60;
    let (mut cpu0, mut fed) = (0.0, 0u64);
    for tick in 1..=sim_seconds {
        if tick == warmup {
            cpu0 = cpu_seconds(std::process::id());
        }
        let ts = tick as i64 * 1_000;
        if tick % scrape_every == 0 {
            let values = node_series(tick);
            let mut batch = Vec::with_capacity(targets * (values.len() + 1));
            for (t, labels) in series.iter().enumerate() {
                for (l, (_, _, v)) in labels.iter().zip(&values) {
                    batch.push(sample(l, ts, *v));
                }
                batch.push(sample(&up[t], ts, 1.0));
            }
            if tick >= warmup {
                fed += batch.len() as u64;
            }
            engine.feed(batch);
        }
        engine.advance_watermark(ts + 1);
        // Bounded queue: wait for the engine every 10 simulated seconds.
        if tick % 10 == 0 || tick == sim_seconds {
            let deadline = Instant::now() + Duration::from_secs(600);
            while engine.stats().frontier_ms < ts + 1 {
                assert!(Instant::now() < deadline, "engine stuck");
                std::thread::sleep(Duration::from_millis(1));
            }
            for h in &handles {
                for out in h.output.try_iter() {
                    assert!(out.value.is_ok(), "{:?}", out.value);
                }
            }
        }
    }
    let cpu = cpu_seconds(std::process::id()) - cpu0;
    engine.shutdown();
    let stats = engine.stats();
    if rules > 0 {
        println!(
            "    ({evaluation:?}, {rules} rules: {} incremental / {} whole-plan evaluations, {} recomputations)",
            stats.rule_evaluations_incremental,
            stats.rule_evaluations_whole_plan,
            stats.rule_recomputations
        );
    }
    (cpu, fed)
}

fn sample(labels: &Arc<Labels>, ts: i64, value: f64) -> Sample {
    Sample {
        series_id: labels.hash(),
        labels: labels.clone(),
        timestamp_ms: ts,
        value,
    }
}

/// Part 2: the engine alone, incremental vs whole-plan, for one scrape interval.
fn engine_part(targets: usize, sim_seconds: u64, scrape_every: u64) {
    println!(
        "part 2: dataflow engine in-process, {targets} targets scraped every {scrape_every}s, \
         {sim_seconds} simulated seconds (first 60 not measured), rules every 1s"
    );
    let run = |rules, evaluation| engine_run(targets, sim_seconds, scrape_every, rules, evaluation);
    let (base_cpu, base_fed) = run(0, Evaluation::Incremental);
    let base = base_cpu * 1e6 / base_fed as f64;
    println!("  no rules: {base:.2} µs/sample (ingest into the engine)");
    for n in [10, 100] {
        let mut share = Vec::new();
        for evaluation in [Evaluation::WholePlan, Evaluation::Incremental] {
            let (cpu, fed) = run(n, evaluation);
            let us = cpu * 1e6 / fed as f64;
            println!(
                "  {n:>3} rules {evaluation:?}: {us:.2} µs/sample, rules' share {:.2} µs/sample",
                us - base
            );
            share.push(us - base);
        }
        println!(
            "  {n:>3} rules: whole-plan / incremental (rules' share) = {:.1}x",
            share[0] / share[1].max(1e-9)
        );
    }
}

fn main() {
    let targets = env_or("RULES_TARGETS", 20);
    let seconds = env_or("RULES_SECONDS", 20) as u64;
    let warmup = env_or("RULES_WARMUP", 65) as u64;
    let sim_seconds = env_or("RULES_SIM_SECONDS", 180) as u64;
    let part = env_or("RULES_PART", 0);
    if part != 2 {
        side_by_side(targets, warmup, seconds);
    }
    if part != 1 {
        engine_part(targets, sim_seconds, 1);
        engine_part(targets, sim_seconds * 4, 15);
    }
}
