//! Routing: each sample goes to the workers owning a rule that reads its series.
//!
//! PromQL: the selectors of every registered expression, as a filter on the input
//! ```promql
//! {__name__="node_cpu_seconds_total", mode!="idle"}    # → worker owning rules reading it
//! ```
//! Runs on every worker where samples enter (no exchange on the way in), consults the
//! shared routing table, and emits `(owner, sample)` once per owning worker; the
//! downstream exchange on `owner` delivers it. Samples no rule reads are dropped here,
//! so a worker's rule state only ever sees the series it evaluates.

use crate::render::rule::SharedRegistry;
use crate::sample::Sample;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

/// Routes `samples` to rule owners: `(owner worker index, sample)`.
pub fn route_to_owners<'scope>(
    samples: Stream<'scope, u64, Vec<Sample>>,
    registry: SharedRegistry,
) -> Stream<'scope, u64, Vec<(u64, Sample)>> {
    samples.unary(Pipeline, "RouteToRuleOwners", move |_cap, _info| {
        move |input, output| {
            let routing = registry.lock().routing();
            input.for_each(|cap, batch| {
                if routing.is_empty() {
                    batch.clear();
                    return;
                }
                let mut session = output.session(&cap);
                for sample in batch.drain(..) {
                    routing.owners(&sample.labels, |owner| {
                        session.give((owner as u64, sample.clone()));
                    });
                }
            });
        }
    })
}
