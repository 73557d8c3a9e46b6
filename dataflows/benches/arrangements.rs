//! Issue 14, item 3: is a differential-dataflow arrangement the right home for the
//! slowly changing part of the data path — which series a selector's rules read, by
//! series id — or the hand-written map promflow keeps (`render::route`'s cache of
//! destinations by series id, `render::window`'s maps by series)?
//!
//! One worker, `ARR_SERIES` (100,000) series ids (label hashes), in two cases: each
//! series reading one of 20 selectors (a small value by series id: also the shape of an
//! aggregation's group membership and a join's match groups), and each series' labels
//! (six pairs: the series catalog; the same `Arc<Labels>` values on both sides). Three
//! costs, each side by side:
//! 1. *build*: every series enters. Differential: `(series id, value)` inserted
//!    into an input collection arranged by key (`arrange_by_key`), the worker stepped
//!    until the arrangement holds them. By hand: a map by series id with the identity
//!    hasher promflow's maps use ([`dataflows::render::window::KeyMap`]).
//! 2. *lookups*: per scrape round (`ARR_ROUNDS`, 20), every series' sample finds its
//!    value. Differential: the samples of the round sorted by series id, then one
//!    cursor over the arrangement's batches seeking each (the cheapest way to read an
//!    arrangement from a timely stream of samples). By hand: one map lookup each, in
//!    arrival order.
//! 3. *churn*: per round, `ARR_CHURN_PERMILLE` (10 ‰) of the series leave and as many
//!    new ones enter. Differential: removals and inserts, the input advanced, the
//!    worker stepped until the arrangement holds the round (its compaction frontier
//!    kept up). By hand: map removals and inserts.
//!
//! Both sides find the same values (checked). Run: `cargo bench -p dataflows
//! --bench arrangements`.

use differential_dataflow::input::Input;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::Probe;
use timely::progress::frontier::AntichainRef;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Series `i`'s id: a label hash in promflow, spread like one here.
fn id(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 7)
}

fn selector(i: u64) -> u32 {
    (i % 20) as u32
}

fn per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e9 / n.max(1) as f64
}

/// Series `i`'s labels: six pairs, as a typical exporter's series has.
fn labels(i: u64) -> Arc<dataflows::Labels> {
    Arc::new(dataflows::Labels::from_pairs(vec![
        ("__name__".into(), format!("metric_{}", i % 20)),
        (
            "instance".into(),
            format!("10.0.{}.{}:9100", i / 65_536 % 256, i / 256 % 256),
        ),
        ("job".into(), format!("job_{}", i % 10)),
        ("le".into(), format!("{}", i % 12)),
        ("path".into(), format!("/api/v1/{}", i % 50)),
        ("series".into(), format!("{i}")),
    ]))
}

fn main() {
    let series = env_or("ARR_SERIES", 100_000);
    let rounds = env_or("ARR_ROUNDS", 20);
    let churn = series * env_or("ARR_CHURN_PERMILLE", 10) / 1000;
    println!("arrangements: {series} series, {rounds} rounds, {churn} series replaced a round");
    println!("| case | cost | differential (ns) | by hand (ns) | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    // Which selector (or aggregation group, or join match group) reads a series: a
    // small value by series id (`render::route`'s cache, `render::incremental`'s
    // group membership and match groups).
    compare("selector by series", series, rounds, churn, selector, |v| {
        u64::from(*v)
    });
    // The series catalog: series id → its labels, the same `Arc<Labels>` on both sides
    // (made before the clock starts: a producer announces labels it has made).
    let made: Vec<Arc<dataflows::Labels>> = (0..series + churn * rounds).map(labels).collect();
    compare(
        "catalog (labels by series)",
        series,
        rounds,
        churn,
        move |i| made[i as usize].clone(),
        // Reads the value's header once, as a reader of the labels would start.
        |v| (Arc::strong_count(v) as u64).min(1),
    );
}

/// Measures one case (series `i` maps to `value(i)`): build, lookups and churn, each
/// on both sides.
fn compare<V: differential_dataflow::ExchangeData>(
    name: &'static str,
    series: u64,
    rounds: u64,
    churn: u64,
    value: impl Fn(u64) -> V + Send + Sync + 'static,
    found: fn(&V) -> u64,
) {
    timely::execute_directly(move |worker| {
        let probe = Handle::new();
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, members) = scope.new_collection::<(u64, V), isize>();
            let arranged = members.arrange_by_key();
            arranged.stream.probe_with(&probe);
            (input, arranged.trace)
        });
        let mut hand: dataflows::render::window::KeyMap<u64, V> = Default::default();

        // 1. Build.
        let at = Instant::now();
        for i in 0..series {
            input.insert((id(i), value(i)));
        }
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(input.time()));
        let build_dd = at.elapsed();
        let at = Instant::now();
        for i in 0..series {
            hand.insert(id(i), value(i));
        }
        let build_hand = at.elapsed();

        // 2. Lookups and 3. churn, round by round.
        let (mut lookup_dd, mut lookup_hand) = (Duration::ZERO, Duration::ZERO);
        let (mut churn_dd, mut churn_hand) = (Duration::ZERO, Duration::ZERO);
        let mut live: Vec<u64> = (0..series).collect();
        let mut next = series;
        for round in 1..=rounds {
            // Samples arrive in scrape order, not by id.
            let samples: Vec<u64> = live.iter().map(|&i| id(i)).collect();
            let at = Instant::now();
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let batches = trace
                .batches_through(AntichainRef::new(&[round]))
                .expect("the arrangement holds the round");
            let (mut cursor, storage) = cursor_list(batches);
            let mut found_dd = 0u64;
            for key in &sorted {
                cursor.seek_key(&storage, key);
                if cursor.get_key(&storage) == Some(key) {
                    while let Some(v) = cursor.get_val(&storage) {
                        found_dd += found(v) + 1;
                        cursor.step_val(&storage);
                    }
                }
            }
            lookup_dd += at.elapsed();
            let at = Instant::now();
            let mut found_hand = 0u64;
            for key in &samples {
                if let Some(v) = hand.get(key) {
                    found_hand += found(v) + 1;
                }
            }
            lookup_hand += at.elapsed();
            assert_eq!(found_dd, found_hand, "both find every series' value");

            let leaving: Vec<u64> = live.drain(..churn as usize).collect();
            let entering: Vec<u64> = (next..next + churn).collect();
            next += churn;
            let at = Instant::now();
            for &i in &leaving {
                input.remove((id(i), value(i)));
            }
            for &i in &entering {
                input.insert((id(i), value(i)));
            }
            input.advance_to(round + 1);
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
            trace.set_logical_compaction(AntichainRef::new(&[round + 1]));
            trace.set_physical_compaction(AntichainRef::new(&[round + 1]));
            churn_dd += at.elapsed();
            let at = Instant::now();
            for &i in &leaving {
                hand.remove(&id(i));
            }
            for &i in &entering {
                hand.insert(id(i), value(i));
            }
            churn_hand += at.elapsed();
            live.extend(entering);
        }
        let lookups = series * rounds;
        let changes = 2 * churn * rounds;
        for (what, dd, by_hand) in [
            (
                "build, per series",
                per(build_dd, series),
                per(build_hand, series),
            ),
            (
                "lookup, per sample",
                per(lookup_dd, lookups),
                per(lookup_hand, lookups),
            ),
            (
                "churn, per change",
                per(churn_dd, changes),
                per(churn_hand, changes),
            ),
        ] {
            println!(
                "| {name} | {what} | {dd:.0} | {by_hand:.0} | {:.1}× |",
                dd / by_hand
            );
        }
    });
}
