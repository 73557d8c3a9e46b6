//! Issue 14, item 3: is a differential-dataflow arrangement the right home for the
//! slowly changing part of the data path — which series a selector's rules read, by
//! series id — or the hand-written map promflow keeps (`render::route`'s cache of
//! destinations by series id, `render::window`'s maps by series)?
//!
//! One worker, `ARR_SERIES` (100,000) series ids (label hashes), each reading one of
//! 20 selectors. Three costs, each side by side:
//! 1. *build*: every series enters. Differential: `(series id, selector)` inserted
//!    into an input collection arranged by key (`arrange_by_key`), the worker stepped
//!    until the arrangement holds them. By hand: a map by series id with the identity
//!    hasher promflow's maps use ([`dataflows::render::window::KeyMap`]).
//! 2. *lookups*: per scrape round (`ARR_ROUNDS`, 20), every series' sample finds its
//!    selector. Differential: the samples of the round sorted by series id, then one
//!    cursor over the arrangement's batches seeking each (the cheapest way to read an
//!    arrangement from a timely stream of samples). By hand: one map lookup each, in
//!    arrival order.
//! 3. *churn*: per round, `ARR_CHURN_PERMILLE` (10 ‰) of the series leave and as many
//!    new ones enter. Differential: removals and inserts, the input advanced, the
//!    worker stepped until the arrangement holds the round (its compaction frontier
//!    kept up). By hand: map removals and inserts.
//!
//! Both sides find the same selectors (checked). Run: `cargo bench -p dataflows
//! --bench arrangements`.

use differential_dataflow::input::Input;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
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

fn main() {
    let series = env_or("ARR_SERIES", 100_000);
    let rounds = env_or("ARR_ROUNDS", 20);
    let churn = series * env_or("ARR_CHURN_PERMILLE", 10) / 1000;
    timely::execute_directly(move |worker| {
        let probe = Handle::new();
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, members) = scope.new_collection::<(u64, u32), isize>();
            let arranged = members.arrange_by_key();
            arranged.stream.probe_with(&probe);
            (input, arranged.trace)
        });
        let mut hand: dataflows::render::window::KeyMap<u64, u32> = Default::default();

        // 1. Build.
        let at = Instant::now();
        for i in 0..series {
            input.insert((id(i), selector(i)));
        }
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(input.time()));
        let build_dd = at.elapsed();
        let at = Instant::now();
        for i in 0..series {
            hand.insert(id(i), selector(i));
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
                        found_dd += u64::from(*v) + 1;
                        cursor.step_val(&storage);
                    }
                }
            }
            lookup_dd += at.elapsed();
            let at = Instant::now();
            let mut found_hand = 0u64;
            for key in &samples {
                if let Some(v) = hand.get(key) {
                    found_hand += u64::from(*v) + 1;
                }
            }
            lookup_hand += at.elapsed();
            assert_eq!(found_dd, found_hand, "both find every series' selector");

            let leaving: Vec<u64> = live.drain(..churn as usize).collect();
            let entering: Vec<u64> = (next..next + churn).collect();
            next += churn;
            let at = Instant::now();
            for &i in &leaving {
                input.remove((id(i), selector(i)));
            }
            for &i in &entering {
                input.insert((id(i), selector(i)));
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
                hand.insert(id(i), selector(i));
            }
            churn_hand += at.elapsed();
            live.extend(entering);
        }
        let lookups = series * rounds;
        let changes = 2 * churn * rounds;
        println!("arrangements: {series} series, {rounds} rounds, {churn} series replaced a round");
        println!("| cost | differential (ns) | by hand (ns) | ratio |");
        println!("| --- | --- | --- | --- |");
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
            println!("| {what} | {dd:.0} | {by_hand:.0} | {:.1}× |", dd / by_hand);
        }
    });
}
