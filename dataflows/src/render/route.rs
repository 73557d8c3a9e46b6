//! Routing: each sample goes to the workers keeping a window that reads its series.
//!
//! PromQL: the selectors of every registered expression, as a filter on the input
//! ```promql
//! {__name__="node_cpu_seconds_total", mode!="idle"}    # → worker owning rules reading it
//! sum by (job) (rate(x[5m]))                           # spread: → the series' worker
//! ```
//! Runs on every worker where samples enter (no exchange on the way in). It builds its
//! own [`Registry`] from the rule changes of the control stream, applied in time
//! order: the samples of logical time `t` are routed once every change up to `t` is
//! in (the control frontier passed `t`), with the rules those changes leave. It sends
//! each sample once per destination `(worker, spread)` ([`crate::render::rule::Routing`]):
//! the owner of rules reading the series, and for spread rules the worker owning the
//! series; the samples of one time for one destination travel packed as one [`Routed`]
//! record (columns: [`crate::sample::PackedPoints`]), which the downstream exchange on
//! the worker delivers. In a timely cluster, two operators follow the router on the
//! packs going to workers of other processes (those to workers of this process are
//! handed over as values, never serialized, and stay as they are):
//! [`announce_to_peers`] sends the series' labels, and [`code_for_peers`] codes the
//! float packs' series ids by a dictionary per (this worker, destination worker), so an
//! id the destination has had from this worker in the current [`ANNOUNCE_PERIOD_MS`]
//! period ([`id_epoch`]) crosses as an index (about a byte: consecutive indices in
//! the order a target's series came first) instead of 8 bytes. It relies on logical
//! time only, not on the order messages arrive in: a pack brings the entries (index,
//! id) it is the first, by time, to use, and the rule host learns every entry of a
//! time's packs before it decodes them, times in order
//! ([`crate::sample::ReceivedIds`]). One operator per kind
//! of sample ([`Routable`]): the float [`Point`]s and the native histograms
//! ([`crate::sample::HistogramPoint`]) are routed by two instances of the same code,
//! each with its own registry and cache (the histogram one idle without histograms). Samples no rule reads
//! are dropped here, so a worker's rule state only ever sees the series it evaluates.
//! A series' labels, which the selectors match, are read from the [`SeriesCatalog`]
//! once: its destinations are kept by series id ([`RouteCache`]) until the rules
//! change, so a scrape's samples cost a cache entry each (found in arrival order),
//! not a catalog lookup and a match against every selector (on the compare bench at
//! 100k series, those were the largest part of the workers' CPU with rules
//! registered).
//!
//! Why a map by hand and not a differential-dataflow arrangement of (series id →
//! what reads it), shared by the rules: `dataflows/benches/arrangements.rs`
//! ("selector by series": release, one worker, 100k series; runs of 2026-12-07 on a
//! quiet and on a loaded 2-core machine) measures the arrangement at 4.4–5.0× the
//! map's cost to build (15× once under load), 2.7–11.5× per sample to look up (sorted
//! batch, one cursor) and 14–26× per series entering or leaving. The destinations change only when rules or
//! series do, so the map is kept here and each worker's copy is rebuilt from the
//! control stream, with no arrangement to share.

use crate::arrival::ArrivalIndex;
use crate::catalog::SeriesCatalog;
use crate::labels::Labels;
use crate::render::rule::{hold_by_time, Destination, Registry, Routing, RuleChange, RuleCounters};
use crate::render::window::DistinctLists;
#[cfg(doc)]
use crate::sample::Point;
use crate::sample::{Pack, PackedPoints, Routable, SentIds};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

/// The samples of one logical time bound for one destination: one record of the
/// exchange, however many samples it packs ([`Pack`]; for floats
/// [`crate::sample::PackedPoints`], a few bytes a sample where `((worker, spread),
/// Point)` records took 41 and timely's framing). A time's samples for one
/// destination may come in several records (one per activation that routes them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Routed<P> {
    /// Where they go: `(worker, spread)`.
    pub to: Destination,
    /// The samples.
    pub samples: P,
}

/// Routes `samples` to the workers keeping their windows, with the rules `control`
/// has installed by each sample's time: per logical time and activation, one
/// [`Routed`] pack per destination.
pub fn route_to_owners<'scope, S: Routable>(
    samples: Stream<'scope, u64, Vec<S>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    catalog: Arc<SeriesCatalog>,
    peers: usize,
) -> Stream<'scope, u64, Vec<Routed<S::Packed>>> {
    samples.binary_frontier::<_, CapacityContainerBuilder<Vec<Routed<S::Packed>>>, _, _, _, _>(
        control,
        Pipeline,
        Pipeline,
        "RouteToRuleOwners",
        move |cap, _info| {
            let mut cap = Some(cap);
            let mut registry = Registry::new(peers);
            let mut routing = registry.routing();
            let mut cache = RouteCache::default();
            let mut pending: BTreeMap<u64, Vec<S>> = BTreeMap::new();
            let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
            // The packs being filled, by `2 * worker + spread`.
            let mut packs: Vec<Option<S::Packed>> = vec![None; 2 * peers.max(1)];
            move |(input, frontier), (ctl, ctl_frontier), output| {
                input.for_each(hold_by_time(&mut pending));
                ctl.for_each(hold_by_time(&mut changes));
                let ctl_front = ctl_frontier.frontier().first().copied().unwrap_or(u64::MAX);
                while let Some((&t, _)) = pending.first_key_value().filter(|(t, _)| **t < ctl_front)
                {
                    while let Some(entry) = changes.first_entry().filter(|e| *e.key() <= t) {
                        for change in entry.remove() {
                            registry.apply(&change);
                        }
                        routing = registry.routing();
                        cache.clear();
                    }
                    let batch = pending.remove(&t).unwrap_or_default();
                    if routing.is_empty() {
                        continue;
                    }
                    let Some(cap) = &cap else { continue };
                    let at = cap.delayed(&t);
                    let mut session = output.session(&at);
                    cache.forget_churned(&catalog);
                    for point in &batch {
                        if let Some(to) = cache.destinations(&routing, &catalog, point.series_id())
                        {
                            for &(worker, spread) in to {
                                packs[2 * worker as usize + spread as usize]
                                    .get_or_insert_with(Default::default)
                                    .push(point);
                            }
                        }
                    }
                    for (slot, pack) in packs.iter_mut().enumerate() {
                        if let Some(samples) = pack.take() {
                            let to = ((slot / 2) as u64, slot % 2 == 1);
                            session.give(Routed { to, samples });
                        }
                    }
                }
                while let Some(entry) = changes.first_entry().filter(|e| *e.key() < ctl_front) {
                    for change in entry.remove() {
                        registry.apply(&change);
                    }
                    routing = registry.routing();
                    cache.clear();
                }
                let front = frontier
                    .frontier()
                    .first()
                    .copied()
                    .unwrap_or(u64::MAX)
                    .min(ctl_front)
                    .min(pending.keys().next().copied().unwrap_or(u64::MAX));
                if front == u64::MAX {
                    cap = None;
                } else if let Some(c) = &mut cap {
                    c.downgrade(&front);
                }
            }
        },
    )
}

/// Each series' destinations under the current routing, by series id, found in the
/// order the series came ([`ArrivalIndex`]). The distinct destination lists are few
/// (most series go nowhere), so a series costs one entry (an id and a list index).
/// Cleared when the rules change; rebuilt once as many series have left the catalog
/// as it holds, so churned ids do not pile up.
#[derive(Default)]
struct RouteCache {
    /// Per series: its index in `lists`.
    ids: ArrivalIndex<u32>,
    /// The distinct destination lists.
    lists: DistinctLists<Destination>,
    /// [`SeriesCatalog::retired`] when the cache was last emptied.
    retired_at_clear: u64,
}

impl RouteCache {
    fn clear(&mut self) {
        self.ids.clear();
        self.lists.clear();
    }

    /// Empties the cache once the catalog has retired as many series as it holds.
    fn forget_churned(&mut self, catalog: &SeriesCatalog) {
        let retired = catalog.retired();
        if retired.saturating_sub(self.retired_at_clear) > self.ids.len() as u64 {
            self.clear();
            self.retired_at_clear = retired;
        }
    }

    /// Where the samples of series `id` go (`None`: the catalog does not know it).
    fn destinations(
        &mut self,
        routing: &Routing,
        catalog: &SeriesCatalog,
        id: u64,
    ) -> Option<&[Destination]> {
        let at = match self.ids.find(id) {
            Some(at) => at,
            None => {
                let mut to = Vec::new();
                catalog.with(id, |labels| {
                    routing.destinations(labels, id, |d| to.push(d))
                })?;
                let list = self.lists.intern(to);
                self.ids.push(id, list)
            }
        };
        Some(self.lists.get(*self.ids.value(at)))
    }
}

/// A series' labels sent to a worker of another process: `(worker, series id,
/// labels)`. Each process has its own [`SeriesCatalog`]; the worker keeping a window of
/// a series fed into another process learns its labels from this, once per
/// [`ANNOUNCE_PERIOD_MS`] of the samples' time (see [`announce_to_peers`]).
pub type Announcement = (u64, u64, Arc<Labels>);

/// How long an announcement holds (ms of logical time): a router announces a series to
/// a process with the first sample of each period it sends there, and the receiving
/// worker keeps the labels it was told through the period after (see
/// [`crate::render::maintain`]), so a series whose samples keep coming is known there
/// whatever the catalog's sweeps retire, at one label set per series, process and
/// period on the wire.
pub const ANNOUNCE_PERIOD_MS: u64 = 600_000;

/// In a timely cluster: for the routed samples going to a worker of another process,
/// the [`Announcement`]s that process needs (its catalog does not have the labels of
/// series fed elsewhere). `process` is this worker's process, `process_workers` the
/// workers per process. Not built in one process (nothing is remote).
pub fn announce_to_peers<'scope, S: Routable>(
    routed: Stream<'scope, u64, Vec<Routed<S::Packed>>>,
    catalog: Arc<SeriesCatalog>,
    process: usize,
    process_workers: usize,
) -> Stream<'scope, u64, Vec<Announcement>> {
    let per = process_workers.max(1) as u64;
    routed.unary::<CapacityContainerBuilder<Vec<Announcement>>, _, _, _>(
        Pipeline,
        "AnnounceToPeers",
        move |_cap, _info| {
            let mut period = u64::MAX;
            let mut sent: HashSet<(u64, u64)> = HashSet::new();
            move |input, output| {
                input.for_each(|time, batch| {
                    let Some(&t) = time.least() else { return };
                    if t / ANNOUNCE_PERIOD_MS != period {
                        period = t / ANNOUNCE_PERIOD_MS;
                        sent.clear();
                    }
                    let mut session = output.session(&time);
                    for routed in batch.iter() {
                        let worker = routed.to.0;
                        let to = worker / per;
                        if to == process as u64 {
                            continue;
                        }
                        for id in routed.samples.series_ids() {
                            if !sent.insert((to, id)) {
                                continue;
                            }
                            if let Some(labels) = catalog.get(id) {
                                session.give((worker, id, labels));
                            }
                        }
                    }
                });
            }
        },
    )
}

/// The epoch of the series-id dictionaries ([`SentIds`]) a pack of logical time `t`
/// is coded in: its [`ANNOUNCE_PERIOD_MS`] period, so every dictionary starts empty
/// each period (the ids of series gone leave with it) and a receiver drops the
/// dictionaries of the periods its frontier has passed.
pub fn id_epoch(t: u64) -> u64 {
    t / ANNOUNCE_PERIOD_MS
}

/// In a timely cluster: codes the series ids of the float packs going to workers of
/// other processes by a dictionary per destination worker
/// ([`PackedPoints::code_ids`]; epochs by [`id_epoch`]), so an id that destination has
/// had from this worker crosses as an index of about 1 byte, not 8. Packs to workers
/// of this process pass as they are (timely hands them over unserialized). `worker`
/// is this worker's index in the cluster, `process` its process, `process_workers` the
/// workers per process, `peers` all workers. The receiving end is
/// [`crate::sample::ReceivedIds`], in [`crate::render::maintain`].
pub fn code_for_peers<'scope>(
    routed: Stream<'scope, u64, Vec<Routed<PackedPoints>>>,
    worker: usize,
    process: usize,
    process_workers: usize,
    peers: usize,
    counters: Arc<RuleCounters>,
) -> Stream<'scope, u64, Vec<Routed<PackedPoints>>> {
    let per = process_workers.max(1) as u64;
    routed.unary::<CapacityContainerBuilder<Vec<Routed<PackedPoints>>>, _, _, _>(
        Pipeline,
        "CodeSeriesIds",
        move |_cap, _info| {
            let mut sent: Vec<SentIds> = (0..peers).map(|_| SentIds::default()).collect();
            let mut epoch = 0;
            move |input, output| {
                input.for_each(|time, batch| {
                    let Some(&t) = time.least() else { return };
                    // A new period empties every dictionary, also those of the
                    // workers this one no longer sends to.
                    if id_epoch(t) > epoch {
                        epoch = id_epoch(t);
                        sent.iter_mut().for_each(|s| s.advance_to(epoch));
                    }
                    let (mut indexed, mut entries) = (0, 0);
                    for routed in batch.iter_mut() {
                        let to = routed.to.0;
                        if to / per != process as u64 {
                            let (i, e) = routed.samples.code_ids(
                                worker as u32,
                                id_epoch(t),
                                t,
                                &mut sent[to as usize],
                            );
                            (indexed, entries) = (indexed + i as u64, entries + e as u64);
                        }
                    }
                    counters.ids_indexed.fetch_add(indexed, Ordering::Relaxed);
                    counters.id_entries.fetch_add(entries, Ordering::Relaxed);
                    output.session(&time).give_container(batch);
                });
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Point, ReceivedIds};
    use timely::dataflow::operators::capture::Event;
    use timely::dataflow::operators::{Capture, Input};

    /// A pack of the series `ids` at time `t`.
    fn pack(t: u64, ids: std::ops::Range<u64>) -> PackedPoints {
        let mut pack = PackedPoints::default();
        for id in ids {
            pack.push(&Point {
                series_id: id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                timestamp_ms: t as i64,
                value: id as f64,
                start_ms: 0,
            });
        }
        pack
    }

    /// Three processes of one worker each, seen from worker 0: its packs to worker 0
    /// leave as they are, those to workers 1 and 2 coded (the entries in the packs of
    /// the first time, two records of one time sharing them, a new period bringing
    /// them again), and decoded by time they give back every id.
    #[test]
    fn packs_to_other_processes_leave_coded_and_come_back_by_time() {
        let sends: Vec<(u64, u64, std::ops::Range<u64>)> = vec![
            (1_000, 0, 0..40),
            (1_000, 1, 0..40),
            (1_000, 2, 0..20),
            (1_000, 2, 10..40),
            (16_000, 0, 0..40),
            (16_000, 1, 0..40),
            (16_000, 2, 0..40),
            (700_000, 1, 0..40),
        ];
        let fed = sends.clone();
        let events = timely::execute_directly(move |worker| {
            let (mut input, captured) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, routed) = scope.new_input::<Vec<Routed<PackedPoints>>>();
                (
                    input,
                    code_for_peers(routed, 0, 0, 1, 3, Default::default()).capture(),
                )
            });
            for (t, to, ids) in fed {
                input.advance_to(t);
                input.send(Routed {
                    to: (to, false),
                    samples: pack(t, ids),
                });
            }
            drop(input);
            while worker.step() {}
            captured
        });
        let mut by_time: BTreeMap<u64, Vec<Routed<PackedPoints>>> = BTreeMap::new();
        for event in events.try_iter() {
            if let Event::Messages(stamp, batch) = event {
                by_time
                    .entry(*stamp.least().unwrap())
                    .or_default()
                    .extend(batch);
            }
        }
        let mut received: Vec<ReceivedIds> = (0..3).map(|_| ReceivedIds::default()).collect();
        let mut back: Vec<(u64, u64, Vec<u64>)> = Vec::new();
        for (t, mut packs) in by_time {
            // Whatever order they crossed in.
            packs.reverse();
            for routed in &packs {
                let whole = pack(t, 0..40).encoded_bytes();
                let bytes = routed.samples.encoded_bytes();
                match (routed.to.0, t) {
                    (0, _) => assert_eq!(bytes, whole),
                    // Ids of 8 bytes each as a byte each, and the sender and epoch.
                    (_, 16_000) => assert_eq!(bytes, whole - 8 * 40 + 40 + 12),
                    _ => {}
                }
                received[routed.to.0 as usize].learn(&routed.samples);
            }
            for mut routed in packs {
                let to = routed.to.0;
                received[to as usize].decode(&mut routed.samples);
                let mut ids = Vec::new();
                routed.samples.unpack(|p| ids.push(p.series_id));
                back.push((t, to, ids));
            }
        }
        let mut want: Vec<(u64, u64, Vec<u64>)> = sends
            .into_iter()
            .map(|(t, to, ids)| {
                let ids = ids
                    .map(|id| id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    .collect();
                (t, to, ids)
            })
            .collect();
        back.sort();
        want.sort();
        assert_eq!(back, want);
    }
}
