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
//! in (the control frontier passed `t`), with the rules those changes leave. It emits
//! `((worker, spread), sample)` once per destination ([`crate::render::rule::Routing`]):
//! the owner of rules reading the series, and for spread rules the worker owning the
//! series; the downstream exchange on the worker delivers it. Samples no rule reads
//! are dropped here, so a worker's rule state only ever sees the series it evaluates.
//! A series' labels, which the selectors match, are read from the [`SeriesCatalog`].

use crate::catalog::SeriesCatalog;
use crate::render::rule::{Destination, Registry, RuleChange};
use crate::sample::Point;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

/// Routes `samples` to the workers keeping their windows, with the rules `control`
/// has installed by each sample's time.
pub fn route_to_owners<'scope>(
    samples: Stream<'scope, u64, Vec<Point>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    catalog: Arc<SeriesCatalog>,
    peers: usize,
) -> Stream<'scope, u64, Vec<(Destination, Point)>> {
    samples.binary_frontier::<_, CapacityContainerBuilder<Vec<(Destination, Point)>>, _, _, _, _>(
        control,
        Pipeline,
        Pipeline,
        "RouteToRuleOwners",
        move |cap, _info| {
            let mut cap = Some(cap);
            let mut registry = Registry::new(peers);
            let mut routing = registry.routing();
            let mut pending: BTreeMap<u64, Vec<Point>> = BTreeMap::new();
            let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
            move |(input, frontier), (ctl, ctl_frontier), output| {
                input.for_each(|time, batch| {
                    if let Some(t) = time.least() {
                        pending.entry(*t).or_default().append(batch);
                    }
                });
                ctl.for_each(|time, batch| {
                    if let Some(t) = time.least() {
                        changes.entry(*t).or_default().append(batch);
                    }
                });
                let ctl_front = ctl_frontier.frontier().first().copied().unwrap_or(u64::MAX);
                while let Some((&t, _)) = pending.first_key_value().filter(|(t, _)| **t < ctl_front)
                {
                    while let Some(entry) = changes.first_entry().filter(|e| *e.key() <= t) {
                        for change in entry.remove() {
                            registry.apply(&change);
                        }
                        routing = registry.routing();
                    }
                    let batch = pending.remove(&t).unwrap_or_default();
                    if routing.is_empty() {
                        continue;
                    }
                    let Some(cap) = &cap else { continue };
                    let at = cap.delayed(&t);
                    let mut session = output.session(&at);
                    for point in batch {
                        catalog.with(point.series_id, |labels| {
                            routing.destinations(labels, point.series_id, |to| {
                                session.give((to, point))
                            })
                        });
                    }
                }
                while let Some(entry) = changes.first_entry().filter(|e| *e.key() < ctl_front) {
                    for change in entry.remove() {
                        registry.apply(&change);
                    }
                    routing = registry.routing();
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
