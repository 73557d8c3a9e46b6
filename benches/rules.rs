//! Maintained rule cost: CPU per ingested sample with 10 and 100 alert rules, and rule
//! CPU on arrival vs Prometheus on a 100k-series fleet.
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
//! 3. **Fleet, on arrival.** The issue-19 workload: `RULES_FLEET_TARGETS` (50) targets
//!    of `RULES_FLEET_SERIES` (2,000) series each (the node series plus `node_bench_*`
//!    series no rule reads) scraped every 5s; the 100 alert rules plus 5 node-mixin
//!    recording rules at `evaluation_interval: 5s`. Rule CPU (cores, minus the same
//!    server without rules, over `RULES_FLEET_SECONDS` after `RULES_WARMUP`) of promflow
//!    with `--rules.evaluation=on-arrival` and at the interval (`RULES_FLEET_INTERVAL=0`
//!    skips that run), vs Prometheus 2.42.
//!
//! 4. **recording_bulk, over workers.** One heavy recording rule,
//!    `sum by (job) (rate(x[5m]))` over `RULES_BULK_SERIES` (50,000) series in 10 jobs,
//!    scraped and evaluated every 10s in simulated time, fed as the server feeds: 100
//!    batches a scrape (like 100 targets) of series ids and values, a series' labels
//!    announced with its first sample only (as the scrape cache does), from
//!    `RULES_BULK_FEEDERS` (1) threads at once (scrape loops feed from the runtime's
//!    threads); on the engine with 1 and then 2 workers: after 5 simulated
//!    minutes (full windows), wall time and CPU of this process per evaluation (a
//!    scrape fed, the evaluation received) over `RULES_BULK_EVALUATIONS` (30). With 2
//!    workers the rule is spread (`dataflows::render::spread`). `RULES_BULK_RULE`
//!    measures another rule over `x` instead (e.g. the join
//!    `rate(x[5m]) / on (instance) rate(x[1m])`); two workers must give the result
//!    sizes one gives. `RULES_BULK_LE` (0) = n makes every n consecutive series one
//!    instance's classic histogram buckets (`le` 0.005, 0.01, … and `+Inf`), for
//!    `histogram_quantile(0.99, sum by (le, job) (rate(x[5m])))`. With
//!    `RULES_SPREAD_OWNER_BOUND` set, a rule whose owner would evaluate every element
//!    (`Spread::owner_bound`), which promflow keeps owned, is spread on 2 workers too.
//!
//! 5. **histogram_rate, incremental vs whole-plan.** `sum by (job) (rate(h[5m]))` over
//!    `RULES_HIST_SERIES` (1,000) native-histogram series of 16 buckets in 10 jobs,
//!    on 1 worker in simulated time, registered with `Evaluation::Incremental` and then
//!    `Evaluation::WholePlan`: (a) at an interval of 15s, every series scraped every
//!    15s (a rate depends on `t`: every series is recomputed at every evaluation
//!    either way); (b) on arrival, the series scraped every 15s by 10 targets at
//!    staggered times (an evaluation at each target's scrape: incremental recomputes
//!    that target's series and the groups they are in, whole-plan every series). After
//!    5m20s (full windows), CPU of this process per scrape cycle over
//!    `RULES_HIST_CYCLES` (20) cycles, and the whole-plan / incremental ratio.
//!
//! Run: `cargo bench --bench rules` (env `RULES_TARGETS`, `RULES_SECONDS`,
//! `RULES_WARMUP`, `RULES_SIM_SECONDS` override; `RULES_PART=1` to `5` runs one
//! part).
//! All traffic stays on 127.0.0.1.

mod side_by_side;

use dataflows::histogram::{FloatHistogram, Span};
use dataflows::promql::plan::parse;
use dataflows::{Engine, EngineConfig, Evaluation, Labels, RuleSchedule, Sample, SampleBatch};
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
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
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
        start_ms: 0,
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

/// The five node-mixin-style recording rules of part 3 (`record`, `expr`).
const RECORDING_RULES: [(&str, &str); 5] = [
    (
        "instance:node_num_cpu:sum",
        r#"count without (cpu, mode) (node_cpu_seconds_total{mode="idle"})"#,
    ),
    (
        "instance:node_cpu_utilisation:rate1m",
        r#"1 - avg without (cpu) (sum without (mode) (rate(node_cpu_seconds_total{mode=~"idle|iowait|steal"}[1m])))"#,
    ),
    (
        "instance:node_memory_utilisation:ratio",
        "1 - (node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    ),
    (
        "instance:node_network_receive_bytes_excluding_lo:rate1m",
        r#"sum without (device) (rate(node_network_receive_bytes_total{device!="lo"}[1m]))"#,
    ),
    (
        "instance_device:node_disk_io_time_seconds:rate1m",
        "rate(node_disk_io_time_seconds_total[1m])",
    ),
];

/// Part 3's rule file: the 100 alert rules and, in a second group, the 5 recording
/// rules.
fn fleet_rule_file() -> String {
    let mut out = rule_file(100);
    out.push_str("  - name: records\n    rules:\n");
    for (record, expr) in RECORDING_RULES {
        out.push_str(&format!(
            "      - record: {record}\n        expr: '{expr}'\n"
        ));
    }
    out
}

/// One target of part 3: the node series plus `node_bench_*` series no rule reads, up
/// to `series` in all (with `up`).
fn fleet_body(series: usize) -> Body {
    let filler = series.saturating_sub(node_series(0).len() + 1);
    Arc::new(move |tick| {
        let mut out = node_body(tick);
        for k in 0..filler {
            out.push_str(&format!(
                "node_bench_{}{{k=\"{k}\"}} {}\n",
                k % 100,
                (tick + k as u64) % 1000
            ));
        }
        out
    })
}

/// Part 3: rule CPU of the 100 alert + 5 recording rules at `evaluation_interval: 5s`
/// over `targets` targets of `series` series scraped every 5s: promflow on arrival
/// (and at the interval) vs Prometheus, each minus the same server without rules.
fn fleet(targets: usize, series: usize, warmup: u64, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("fleet.yml");
    std::fs::write(&rules, fleet_rule_file()).unwrap();
    // The exporters serve both configs (one set of targets for every run).
    let plain = exporters_and_config(targets, fleet_body(series), dir.path(), "plain.yml", "");
    let text = std::fs::read_to_string(&plain)
        .unwrap()
        .replace("scrape_interval: 1s", "scrape_interval: 5s")
        .replace("scrape_timeout: 1s", "scrape_timeout: 5s")
        .replace("evaluation_interval: 1s", "evaluation_interval: 5s");
    std::fs::write(&plain, &text).unwrap();
    let with_rules = dir.path().join("rules.yml");
    let text = text.replace(
        "scrape_configs:",
        &format!("rule_files: [\"{}\"]\nscrape_configs:", rules.display()),
    );
    std::fs::write(&with_rules, text).unwrap();
    println!(
        "part 3: {targets} targets x {series} series scraped every 5s, 100 alert + 5 \
         recording rules at evaluation_interval 5s, {warmup}s warm-up, CPU over {seconds}s; \
         load average before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut runs: Vec<(&str, &str, &str, &std::path::Path, Vec<&str>)> = vec![
        ("promflow", PROMFLOW, PROMFLOW_COUNTER, &plain, vec![]),
        (
            "promflow on-arrival",
            PROMFLOW,
            PROMFLOW_COUNTER,
            &with_rules,
            vec!["--rules.evaluation=on-arrival"],
        ),
    ];
    if env_or("RULES_FLEET_INTERVAL", 1) == 1 {
        runs.push((
            "promflow interval",
            PROMFLOW,
            PROMFLOW_COUNTER,
            &with_rules,
            vec![],
        ));
    }
    if std::path::Path::new(PROMETHEUS).exists() {
        runs.push(("prometheus", PROMETHEUS, PROMETHEUS_COUNTER, &plain, vec![]));
        runs.push((
            "prometheus rules",
            PROMETHEUS,
            PROMETHEUS_COUNTER,
            &with_rules,
            vec![],
        ));
    }
    let mut cores = Vec::new();
    for (i, (name, binary, counter, config, extra)) in runs.iter().enumerate() {
        let data = dir.path().join(format!("data{i}"));
        let server = Server::start("server", binary, config, &data, extra);
        let (samples, cpu) = measure_after(&server, counter, warmup, seconds);
        drop(server);
        let _ = std::fs::remove_dir_all(&data);
        let c = cpu / seconds as f64;
        println!(
            "  {name:>20}: {c:.3} cores, {:.0} samples/s, load {}",
            samples / seconds as f64,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        cores.push((*name, c));
    }
    let get = |n: &str| cores.iter().find(|c| c.0 == n).map(|c| c.1);
    let share = |with: &str, without: &str| Some(get(with)? - get(without)?);
    let prometheus = share("prometheus rules", "prometheus");
    for mode in ["promflow on-arrival", "promflow interval"] {
        if let Some(ours) = share(mode, "promflow") {
            match prometheus {
                Some(p) => println!(
                    "  rule CPU {mode}: {ours:.3} cores vs Prometheus {p:.3} cores: {:.2}x",
                    ours / p
                ),
                None => println!("  rule CPU {mode}: {ours:.3} cores"),
            }
        }
    }
}

/// Part 4's rule unless `RULES_BULK_RULE` names another over `x`.
const BULK_RULE: &str = "sum by (job) (rate(x[5m]))";

/// Part 4: one heavy rule on 1 and 2 workers, wall and CPU per evaluation.
fn recording_bulk(rule_expr: &str, series: usize, evaluations: u64, feeders: usize) {
    println!(
        "part 4: recording_bulk, {rule_expr} over {series} series, \
         scraped and evaluated every 10s, {evaluations} evaluations measured, \
         {feeders} feeding threads"
    );
    // The size of each evaluation's result on one worker, which two must give too.
    let mut sizes: Vec<Option<usize>> = Vec::new();
    // With `RULES_BULK_LE` = n > 0: n consecutive series are one instance's buckets
    // of a classic histogram, `le` from 0.005 up to `+Inf` (for `histogram_quantile`).
    let buckets = env_or("RULES_BULK_LE", 0);
    let le = |b: usize| match b + 1 == buckets {
        true => "+Inf".to_string(),
        false => format!("{}", 0.005 * 2f64.powi(b as i32)),
    };
    let labels: Vec<Arc<Labels>> = (0..series)
        .map(|i| {
            let (host, mut pairs) = match buckets {
                0 => (i, Vec::new()),
                n => (i / n, vec![("le".to_string(), le(i % n))]),
            };
            pairs.extend([
                ("__name__".into(), "x".into()),
                ("instance".into(), format!("host-{host}")),
                ("job".into(), format!("job-{}", host % 10)),
            ]);
            Arc::new(Labels::from_pairs(pairs))
        })
        .collect();
    let ids: Vec<u64> = labels.iter().map(|l| l.hash()).collect();
    let per_batch = series.div_ceil(100).max(1);
    let warmup = 30;
    for workers in [1, 2] {
        let engine = Engine::start(EngineConfig {
            workers,
            lookback_ms: 300_000,
            cluster: None,
            // As promflow: a join of two per-series plans is spread too.
            spread_joins: true,
            spread_owner_bound: std::env::var_os("RULES_SPREAD_OWNER_BOUND").is_some(),
        })
        .expect("engine starts");
        let rule = engine
            .register(
                parse(rule_expr).expect("rule parses"),
                RuleSchedule::Interval {
                    start_ms: 0,
                    every_ms: 10_000,
                },
            )
            .expect("registers");
        let (mut wall, mut cpu) = (Duration::ZERO, 0.0);
        for k in 0..warmup + evaluations {
            let ts = k as i64 * 10_000;
            // A scrape's batches, a target's each: ids and values, labels announced
            // on the first scrape only (the scrape cache's new series).
            let mut batches: Vec<SampleBatch> = ids
                .chunks(per_batch)
                .zip(labels.chunks(per_batch))
                .enumerate()
                .map(|(c, (ids, labels))| {
                    let mut batch = SampleBatch::with_capacity(ids.len());
                    for (&id, l) in ids.iter().zip(labels) {
                        batch.push(id, ts, (k * (c as u64 % 7 + 1)) as f64, 0);
                        if k == 0 {
                            batch.new_series.push((id, l.clone()));
                        }
                    }
                    batch
                })
                .collect();
            let (at, cpu0) = (Instant::now(), cpu_seconds(std::process::id()));
            let share = batches.len().div_ceil(feeders.max(1));
            std::thread::scope(|scope| {
                let engine = &engine;
                while !batches.is_empty() {
                    let mine: Vec<SampleBatch> =
                        batches.drain(..share.min(batches.len())).collect();
                    scope.spawn(move || {
                        for batch in mine {
                            engine.feed(batch);
                        }
                    });
                }
            });
            engine.advance_watermark(ts + 1);
            loop {
                let out = rule
                    .output
                    .recv_timeout(Duration::from_secs(600))
                    .expect("the evaluation comes out");
                if out.eval_ms >= ts {
                    let size = out.samples().map(|s| s.len());
                    if rule_expr == BULK_RULE {
                        // A rate needs two samples: every job from the second scrape on.
                        assert_eq!(size, Some(if k == 0 { 0 } else { 10 }));
                    }
                    match sizes.get(k as usize) {
                        Some(one_worker) => assert_eq!(size, *one_worker, "evaluation {k}"),
                        None => sizes.push(size),
                    }
                    break;
                }
            }
            if k >= warmup {
                wall += at.elapsed();
                cpu += cpu_seconds(std::process::id()) - cpu0;
            }
        }
        let owned = engine.stats().rules_owned;
        engine.shutdown();
        let n = evaluations.max(1) as f64;
        println!(
            "  {workers} worker(s): {:.1} ms wall, {:.1} ms CPU per evaluation \
             ({}, {} elements at the last)",
            wall.as_secs_f64() * 1e3 / n,
            cpu * 1e3 / n,
            if owned == 0 { "spread" } else { "owned" },
            sizes.last().copied().flatten().unwrap_or(0),
        );
    }
}

/// Part 5, one run: CPU seconds of this process per scrape cycle (15 simulated
/// seconds) after the windows have filled, and the evaluations made then.
fn histogram_rate_run(
    series: usize,
    cycles: u64,
    schedule: RuleSchedule,
    evaluation: Evaluation,
) -> (f64, u64) {
    let targets = 10;
    let labels: Vec<Arc<Labels>> = (0..series)
        .map(|i| {
            Arc::new(Labels::from_pairs(vec![
                ("__name__".into(), "h".into()),
                ("instance".into(), format!("host-{i}")),
                ("job".into(), format!("job-{}", i % 10)),
            ]))
        })
        .collect();
    // A counter histogram of 16 buckets after `k` scrapes of series `i`.
    let histogram = |k: u64, i: usize| {
        let buckets: Vec<f64> = (0..16)
            .map(|b| (k * (1 + (i as u64 + b) % 5)) as f64)
            .collect();
        FloatHistogram {
            schema: 3,
            zero_threshold: 1e-128,
            count: buckets.iter().sum(),
            sum: k as f64 * 1.5,
            positive_spans: vec![Span {
                offset: -8,
                length: 16,
            }],
            positive_buckets: buckets,
            ..FloatHistogram::default()
        }
    };
    let engine = Engine::start(EngineConfig {
        workers: 1,
        lookback_ms: 300_000,
        cluster: None,
        spread_joins: false,
        spread_owner_bound: false,
    })
    .expect("engine starts");
    let rule = engine
        .register_with(
            parse("sum by (job) (rate(h[5m]))").expect("rule parses"),
            schedule,
            evaluation,
        )
        .expect("registers");
    let warmup = 22;
    let (mut cpu, mut evaluations) = (0.0, 0);
    for k in 0..warmup + cycles {
        let cpu0 = cpu_seconds(std::process::id());
        for target in 0..targets {
            // Target `target` scrapes at `target * 1.5s` into each 15s cycle.
            let ts = k as i64 * 15_000 + target as i64 * 1_500;
            let mut batch = SampleBatch::default();
            for (i, l) in labels.iter().enumerate().skip(target).step_by(targets) {
                if k == 0 {
                    batch.new_series.push((l.hash(), l.clone()));
                }
                batch.push_histogram(l.hash(), ts, Arc::new(histogram(k, i)), 0);
            }
            engine.feed(batch);
            engine.advance_watermark(ts + 1);
        }
        let end = k as i64 * 15_000 + 15_000;
        engine.advance_watermark(end);
        let deadline = Instant::now() + Duration::from_secs(600);
        while engine.stats().frontier_ms < end {
            assert!(Instant::now() < deadline, "engine stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
        let outputs = rule.output.try_iter().count() as u64;
        if k >= warmup {
            cpu += cpu_seconds(std::process::id()) - cpu0;
            evaluations += outputs;
        }
    }
    engine.shutdown();
    let stats = engine.stats();
    println!(
        "    ({evaluation:?}: {} incremental / {} whole-plan evaluations, {} recomputations)",
        stats.rule_evaluations_incremental,
        stats.rule_evaluations_whole_plan,
        stats.rule_recomputations
    );
    (cpu / cycles.max(1) as f64, evaluations)
}

/// Part 5: `sum by (job) (rate(h[5m]))` over native histograms, incremental vs
/// whole-plan, at an interval and on arrival.
fn histogram_rate(series: usize, cycles: u64) {
    println!(
        "part 5: histogram_rate, sum by (job) (rate(h[5m])) over {series} native-histogram \
         series (16 buckets) scraped every 15s by 10 staggered targets, {cycles} cycles measured"
    );
    let interval = RuleSchedule::Interval {
        start_ms: 0,
        every_ms: 15_000,
    };
    for (name, schedule) in [
        ("interval 15s", interval),
        ("on arrival", RuleSchedule::OnArrival),
    ] {
        let mut per_cycle = Vec::new();
        for evaluation in [Evaluation::WholePlan, Evaluation::Incremental] {
            let (cpu, evaluations) = histogram_rate_run(series, cycles, schedule, evaluation);
            println!(
                "  {name}, {evaluation:?}: {:.2} ms CPU per 15s cycle ({evaluations} evaluations)",
                cpu * 1e3
            );
            per_cycle.push(cpu);
        }
        println!(
            "  {name}: whole-plan / incremental = {:.1}x",
            per_cycle[0] / per_cycle[1].max(1e-9)
        );
    }
}

fn main() {
    let targets = env_or("RULES_TARGETS", 20);
    let seconds = env_or("RULES_SECONDS", 20) as u64;
    let warmup = env_or("RULES_WARMUP", 65) as u64;
    let sim_seconds = env_or("RULES_SIM_SECONDS", 180) as u64;
    let part = env_or("RULES_PART", 0);
    if part == 0 || part == 1 {
        side_by_side(targets, warmup, seconds);
    }
    if part == 0 || part == 2 {
        engine_part(targets, sim_seconds, 1);
        engine_part(targets, sim_seconds * 4, 15);
    }
    if part == 0 || part == 4 {
        let rule_expr = std::env::var("RULES_BULK_RULE").unwrap_or_else(|_| BULK_RULE.into());
        recording_bulk(
            &rule_expr,
            env_or("RULES_BULK_SERIES", 50_000),
            env_or("RULES_BULK_EVALUATIONS", 30) as u64,
            env_or("RULES_BULK_FEEDERS", 1),
        );
    }
    if part == 0 || part == 5 {
        histogram_rate(
            env_or("RULES_HIST_SERIES", 1_000),
            env_or("RULES_HIST_CYCLES", 20) as u64,
        );
    }
    if part == 0 || part == 3 {
        fleet(
            env_or("RULES_FLEET_TARGETS", 50),
            env_or("RULES_FLEET_SERIES", 2000),
            warmup,
            env_or("RULES_FLEET_SECONDS", 60) as u64,
        );
    }
}
