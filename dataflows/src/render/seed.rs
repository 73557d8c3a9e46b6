//! Seeds: a newly registered rule's windows, filled from storage, sent to the workers
//! that keep them.
//!
//! PromQL: a rule registered after data exists, e.g.
//! ```promql
//! max_over_time(x[1h])     # its first evaluation reads the last hour
//! ```
//! Contract: the registering engine reads what the rule's first evaluation reads
//! ([`crate::render::rule::RuleSpec::seed`]) from its own storage and puts it on its
//! first worker's seed input at the logical time `t` of the rule's
//! [`RuleChange::Install`] (the control input's time). [`place_seeds`], on that worker,
//! keeps its own [`Registry`] from the control stream and, when it applies the
//! installation, sends each seed series to the worker keeping its window: an owned
//! rule's owner (on any process), for a spread rule the worker owning the series (its
//! labels' hash modulo the workers, as the samples are routed). In a timely cluster
//! every other process's storage holds series the registering one does not: the first
//! worker of each other process reads the same extent from its own storage
//! ([`OwnSeeds`], set once the process's storage is open: [`crate::Engine::set_seed_source`])
//! when it applies the installation, and sends those series alike, at `t`. It
//! applies it once the frontier passes `t`, so that process's inputs have passed `t`:
//! every sample it fed at an earlier time is in its storage (the service stores a
//! batch before it feeds it) and reaches the windows as seed, every later one is
//! routed to them, and one that is both (stored, fed at `t` or later) is kept once
//! (windows keep one sample per timestamp). No sample of a process is missed however
//! its clock and the registering process's differ, which a read of the other
//! processes' storage over HTTP at registration could not promise. The records travel
//! at `t`, so the rule host ([`crate::render::maintain`]) has every seed series of a
//! rule (its frontier covers the seed stream) when it installs the rule, in every
//! process. Seeds are data like samples: nothing of them stays in the process that
//! read them.

use crate::promql::eval::SeriesSource;
use crate::render::rule::{frontier_of, Registry, RuleChange, RuleId, SeedRecord, SeedSeries};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// A process's own storage, read for the seeds of rules other processes register
/// (unset until the process's storage is open; a process without storage seeds
/// nothing).
pub type SeedSlot = Arc<Mutex<Option<Arc<dyn SeriesSource + Send + Sync>>>>;

/// What the first worker of a process in a cluster needs to seed other processes'
/// rules from its own storage.
#[derive(Clone)]
pub struct OwnSeeds {
    /// This process.
    pub process: usize,
    /// Its storage.
    pub source: SeedSlot,
}

/// Sends the seed series of each rule installed by `control` to the workers keeping
/// their windows (the records to exchange by their first field): those `seeds` brings
/// (the registering process's), and with `own` (the first worker of each process of a
/// cluster) those of this process's storage for a seeded rule registered by another.
pub fn place_seeds<'scope>(
    seeds: Stream<'scope, u64, Vec<(RuleId, SeedSeries)>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    peers: usize,
    own: Option<OwnSeeds>,
) -> Stream<'scope, u64, Vec<SeedRecord>> {
    seeds.binary_frontier::<_, CapacityContainerBuilder<Vec<SeedRecord>>, _, _, _, _>(
        control,
        Pipeline,
        Pipeline,
        "PlaceSeeds",
        move |cap, _info| {
            drop(cap);
            let peers = peers.max(1);
            let mut registry = Registry::new(peers);
            // Seeds by time and rule: sent at their change's time, with its capability.
            let mut held: BTreeMap<u64, HashMap<RuleId, Vec<SeedSeries>>> = BTreeMap::new();
            // Changes by time, with the capability to send their seeds at it.
            type Changes = (Capability<u64>, Vec<RuleChange>);
            let mut changes: BTreeMap<u64, Changes> = BTreeMap::new();
            move |(input, frontier), (ctl, ctl_frontier), output| {
                input.for_each(|cap, batch| {
                    let Some(&t) = cap.least() else { return };
                    let by_rule = held.entry(t).or_default();
                    for (id, series) in batch.drain(..) {
                        by_rule.entry(id).or_default().push(series);
                    }
                });
                ctl.for_each(|cap, batch| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    let entry = changes
                        .entry(t)
                        .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                    entry.1.append(batch);
                });
                let front = frontier_of(frontier, ctl_frontier);
                while let Some(time) = changes.keys().next().copied().filter(|t| *t < front) {
                    let mut seeds = held.remove(&time).unwrap_or_default();
                    let (cap, time_changes) = changes.remove(&time).expect("a held time");
                    for change in time_changes {
                        let Some((spec, owner)) = registry.apply(&change) else {
                            continue;
                        };
                        let series = match (&change, &own) {
                            // Another process's seeded rule: this process's storage.
                            (RuleChange::Install(def), Some(own))
                                if def.seeded && def.home_process != own.process =>
                            {
                                let source = own.source.lock().clone();
                                source.map(|source| spec.seed(&*source))
                            }
                            _ => seeds.remove(&spec.id),
                        };
                        let Some(series) = series else {
                            continue;
                        };
                        let mut session = output.session(&cap);
                        for s in series {
                            let to = match spec.spread {
                                Some(_) => s.1.hash() % peers as u64,
                                None => owner as u64,
                            };
                            session.give((to, spec.id, s));
                        }
                    }
                }
                // Seeds of a time with no change (none is sent without one).
                held.retain(|t, _| *t >= front);
            }
        },
    )
}
