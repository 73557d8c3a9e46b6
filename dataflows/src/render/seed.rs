//! Seeds: a newly registered rule's windows, filled from storage, sent to the workers
//! that keep them.
//!
//! PromQL: a rule registered after data exists, e.g.
//! ```promql
//! max_over_time(x[1h])     # its first evaluation reads the last hour
//! ```
//! Contract: the registering engine reads what the rule's first evaluation reads
//! ([`crate::render::rule::RuleSpec::seed`]) and puts it on its first worker's seed
//! input at the logical time of the rule's [`RuleChange::Install`] (the control
//! input's time). [`place_seeds`], on that worker, keeps its own [`Registry`] from the
//! control stream and, when it applies the installation, sends each seed series to
//! the worker keeping its window: an owned rule's owner (on any process), for a spread
//! rule the worker owning the series (its labels' hash modulo the workers, as the
//! samples are routed). The records travel at the installation's time, so the rule
//! host ([`crate::render::maintain`]) has every seed series of a rule (its frontier
//! covers the seed stream) when it installs the rule, in every process. Seeds are
//! data like samples: nothing of them stays in the registering process.

use crate::render::rule::{
    frontier_of, hold_by_time, Registry, RuleChange, RuleId, SeedRecord, SeedSeries,
};
use std::collections::{BTreeMap, HashMap};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// Sends the seed series of each rule installed by `control` to the workers keeping
/// their windows (the records to exchange by their first field).
pub fn place_seeds<'scope>(
    seeds: Stream<'scope, u64, Vec<(RuleId, SeedSeries)>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    peers: usize,
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
            // Seeds by time (with the capability to send them at it) and rule.
            type Held = (Capability<u64>, HashMap<RuleId, Vec<SeedSeries>>);
            let mut held: BTreeMap<u64, Held> = BTreeMap::new();
            let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
            move |(input, frontier), (ctl, ctl_frontier), output| {
                input.for_each(|cap, batch| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    let entry = held
                        .entry(t)
                        .or_insert_with(|| (cap.delayed(&t, 0), HashMap::new()));
                    for (id, series) in batch.drain(..) {
                        entry.1.entry(id).or_default().push(series);
                    }
                });
                ctl.for_each(hold_by_time(&mut changes));
                let front = frontier_of(frontier, ctl_frontier);
                while let Some(time) = changes.keys().next().copied().filter(|t| *t < front) {
                    let mut seeds = held.remove(&time);
                    for change in changes.remove(&time).unwrap_or_default() {
                        let Some((spec, owner)) = registry.apply(&change) else {
                            continue;
                        };
                        let Some((cap, by_rule)) = seeds.as_mut() else {
                            continue;
                        };
                        let Some(series) = by_rule.remove(&spec.id) else {
                            continue;
                        };
                        let mut session = output.session(&*cap);
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
