//! Spread rules: an aggregation's per-series work on the workers owning the series,
//! partial aggregates combined on the rule's owner.
//!
//! PromQL (the spread shape; every other rule runs on its one owner worker):
//! ```promql
//! sum by (job) (rate(http_requests_total[5m]))   # sum min max count group,
//! max without (cpu) (node_load1)                 # by/without, over one named selector
//!                                                # or a range function of it
//! ```
//! Contract: [`spread_of`] says whether a rule is spread. A spread rule's selector
//! window is kept on every worker, each holding the series whose id (modulo the
//! workers) is that worker's (`Sample::series_id` for streamed samples,
//! [`Labels::hash`], which it is by contract, for seeds), so each series' samples and
//! range function are computed once, where the series lives. Each worker evaluates the rule's [`Spread::local`]
//! plans over its own series (the aggregation itself, or `sum` and `count` for `avg`)
//! with the same incremental machinery as an owned rule, at the same evaluation times
//! on every worker (times follow from the schedule and the logical times of the rule's
//! changes, never from when a worker happened to see the frontier), and sends one
//! [`PartialRecord`] per evaluation: a value per group and local plan. The records of
//! an evaluation at `t` travel at logical time `ready(t)`, the last time it reads (a
//! worker makes it once its frontier passes that time, and holds its output there
//! until then), so the owner ([`combine_partials`]) knows it has every worker's once
//! its own frontier passes that time, with no extra delay, and combines them per group: sums and counts add (a compensated sum, so equal
//! to the reference within float rounding), minima and maxima fold, `avg` is the total
//! sum over the total count, `group` is 1. A worker's evaluation error makes the
//! result that error.
//!
//! Native histograms: a worker whose windows hold them evaluates its local plan
//! whole-plan, and its `sum` partial of a group of histograms is a histogram, carried
//! detached in the record ([`Partials`]); the owner combines a group in which any
//! partial is a histogram with the reference's own aggregation
//! ([`native::aggregate`]) over the partials (so a mix of histogram and float partials
//! yields nothing, as a mix of series does). `count`, `min`, `max` and `group` partials
//! are floats whatever their series hold (the local evaluation counts histograms and
//! ignores them in `min`/`max`, as the reference does). A worker's group whose local
//! `sum` yields nothing though it has members (they mix histograms and floats, or
//! exponential and custom buckets) sends [`VOID`] (found with [`members_plan`]), and
//! the group yields nothing: as Prometheus, which sums all the members at once.
//!
//! Partials go to the owner rather than by group key: the per-worker record is one
//! value per group, and the owner must gather the groups into one result anyway.
//!
//! Not spread (stays on one owner, see [`crate::render`]): `avg` (the reference's mean
//! of values whose sum overflows is not the total sum over the count; the combine
//! step for it is kept for when partials carry that case), on-arrival rules (their
//! evaluation times depend on each worker's arrivals), whole-plan rules, parameters
//! (`topk`, `quantile`, …), `stddev`/`stdvar`, `by (__name__)`, selectors without a
//! `__name__="…"` matcher under a range function (two metrics' series would become
//! equal label sets, which the reference refuses and a worker could not see), nested
//! aggregations, joins, operations after the aggregation, and every rule when the
//! engine has one worker. A rule that is spread and a rule that is not keep separate
//! windows of a selector they both read.

use crate::histogram::FloatHistogram;
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::eval::native::{self, detach, handle, parse_handle, Detached, SOURCE};
use crate::promql::eval::{math, Element, EvalError, EvalResult, Evaluator, Value};
use crate::promql::plan::{AggOp, Grouping, Plan, VectorSel};
use crate::render::extent::SelectorUse;
use crate::render::maintain::Evaluated;
use crate::render::rule::{
    Evaluation, LocalRules, Registry, RuleChange, RuleId, RuleOutput, RuleSchedule,
};
use crate::render::shape::constant;
use crate::render::shape::per_series_range_function;
use crate::selector::MatchKind;
use crossbeam_channel::Sender;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

/// How a spread rule is evaluated.
#[derive(Clone, Debug)]
pub struct Spread {
    /// The rule's aggregation.
    pub op: AggOp,
    /// What each worker evaluates over its series: the aggregation itself, or for
    /// `avg` its `sum` and its `count`.
    pub local: Vec<Plan>,
}

/// The groups of one worker's evaluation of a spread rule: each group's labels and
/// one value per local plan (NaN where a local plan has no element for it), and, from
/// a worker whose windows hold native histograms, the histograms those values name
/// (detached: `(SOURCE, i)` is the `i`th; values may be [`VOID`]); or the
/// evaluation's error.
pub type Partials = Result<
    (
        Vec<(Arc<Labels>, Vec<f64>)>,
        Option<Vec<Arc<FloatHistogram>>>,
    ),
    EvalError,
>;

/// A group's partial `sum` where the worker's members of the group yield none (see the
/// module doc): a handle of no kind (`native::parse_handle` gives kind `0xfffe`).
pub const VOID: f64 = f64::from_bits(0x7ff4_fffe_0000_0000);

/// For a worker whose windows hold histograms: the plan counting the members of each
/// group of a `sum` local plan, so groups whose sum yields nothing are known (`None`
/// for other local plans, whose partials are floats).
pub fn members_plan(local: &Plan) -> Option<Plan> {
    match local {
        Plan::Aggregate {
            op: AggOp::Sum,
            expr,
            param: None,
            grouping,
        } => Some(Plan::Aggregate {
            op: AggOp::Count,
            expr: expr.clone(),
            param: None,
            grouping: grouping.clone(),
        }),
        _ => None,
    }
}

/// One worker's part of one evaluation: `(owner worker, rule, evaluation time,
/// partials)`.
pub type PartialRecord = (u64, RuleId, i64, Partials);

/// Whether (and how) a rule is spread over the workers; see the module doc.
pub fn spread_of(
    plan: &Plan,
    schedule: RuleSchedule,
    evaluation: Evaluation,
    uses: &[SelectorUse],
) -> Option<Spread> {
    if evaluation != Evaluation::Incremental || schedule == RuleSchedule::OnArrival {
        return None;
    }
    let Plan::Aggregate {
        op,
        expr,
        param: None,
        grouping,
    } = plan
    else {
        return None;
    };
    // Not `avg`: Prometheus's mean switches to an incremental mean where the sum
    // overflows, which partial sums cannot reproduce (conformance aggregators.test,
    // `avg(data{test="big"})`). Its local plans (`sum`, `count`) are below.
    if !matches!(
        op,
        AggOp::Sum | AggOp::Min | AggOp::Max | AggOp::Count | AggOp::Group
    ) {
        return None;
    }
    if matches!(grouping, Grouping::By(labels) if labels.iter().any(|l| l == METRIC_NAME)) {
        return None;
    }
    let plain = |sel: &VectorSel| sel.at.is_none() && sel.modifier.is_none();
    let sel = match &**expr {
        Plan::Vector(sel) if plain(sel) => sel,
        Plan::Call { func, args } if per_series_range_function(func) => {
            let mut matrix = None;
            for a in args {
                match a {
                    Plan::Matrix { sel, .. } if plain(sel) && matrix.is_none() => {
                        matrix = Some(sel)
                    }
                    a if constant(a) => {}
                    _ => return None,
                }
            }
            matrix?
        }
        _ => return None,
    };
    let named = sel
        .selector
        .matchers
        .iter()
        .any(|m| m.name == METRIC_NAME && matches!(m.kind, MatchKind::Equal(_)));
    let [u] = uses else { return None };
    if !named || u.absolute.is_some() {
        return None;
    }
    let local = match op {
        AggOp::Avg => [AggOp::Sum, AggOp::Count]
            .into_iter()
            .map(|op| Plan::Aggregate {
                op,
                expr: expr.clone(),
                param: None,
                grouping: grouping.clone(),
            })
            .collect(),
        _ => vec![plan.clone()],
    };
    Some(Spread { op: *op, local })
}

/// One worker's partials from its evaluations of the local plans (in order), and, on
/// a worker whose windows hold histograms, the members of each group of a `sum`
/// ([`members_plan`]).
pub fn partials(values: Vec<Evaluated>, members: Option<EvalResult<Value>>) -> Partials {
    let count = values.len();
    let mut groups: BTreeMap<Arc<Labels>, Vec<f64>> = BTreeMap::new();
    let mut histograms: Vec<Arc<FloatHistogram>> = Vec::new();
    for (i, (value, mut held)) in values.into_iter().enumerate() {
        let renumbered = histograms.len() as u32;
        histograms.append(&mut held);
        match value {
            Ok(Value::Vector(elements)) => {
                for e in elements {
                    let v = match parse_handle(e.value) {
                        Some((SOURCE, h)) => handle(SOURCE, h + renumbered),
                        _ => e.value,
                    };
                    groups
                        .entry(e.labels)
                        .or_insert_with(|| vec![f64::NAN; count])[i] = v;
                }
            }
            Ok(other) => {
                return Err(EvalError::Unsupported(format!(
                    "unexpected partial result {other:?}"
                )))
            }
            Err(e) => return Err(e),
        }
    }
    let Some(members) = members else {
        let histograms = (!histograms.is_empty()).then_some(histograms);
        return Ok((groups.into_iter().collect(), histograms));
    };
    if let Ok(Value::Vector(members)) = members {
        for e in members {
            groups.entry(e.labels).or_insert_with(|| vec![VOID; count]);
        }
    }
    Ok((groups.into_iter().collect(), Some(histograms)))
}

/// The group's value from every worker's partial values.
fn combine(op: AggOp, parts: &[Vec<f64>]) -> f64 {
    let first = || parts.iter().map(|p| p[0]);
    match op {
        AggOp::Sum => math::sum(first()),
        AggOp::Count => first().sum(),
        AggOp::Min => math::min(first()),
        AggOp::Max => math::max(first()),
        AggOp::Avg => math::sum(first()) / parts.iter().map(|p| p[1]).sum::<f64>(),
        _ => 1.0,
    }
}

/// Combines every worker's partials of one evaluation into the rule's result, with
/// the native histograms it names (detached).
fn combined(op: AggOp, records: Vec<Partials>) -> Evaluated {
    let mut groups: BTreeMap<Arc<Labels>, Vec<Vec<f64>>> = BTreeMap::new();
    let mut histograms: Vec<Arc<FloatHistogram>> = Vec::new();
    let mut floats_only = true;
    for record in records {
        let (record, held) = match record {
            Ok(record) => record,
            Err(e) => return (Err(e), Vec::new()),
        };
        let renumbered = histograms.len() as u32;
        if let Some(mut held) = held {
            floats_only = false;
            histograms.append(&mut held);
        }
        for (labels, mut values) in record {
            if renumbered > 0 {
                for v in values.iter_mut() {
                    if let Some((SOURCE, h)) = parse_handle(*v) {
                        *v = handle(SOURCE, h + renumbered);
                    }
                }
            }
            groups.entry(labels).or_default().push(values);
        }
    }
    if floats_only {
        let elements = groups
            .into_iter()
            .map(|(labels, parts)| Element::new(labels, combine(op, &parts)))
            .collect();
        return (Ok(Value::Vector(elements)), Vec::new());
    }
    // Groups with a histogram partial: the reference's aggregation over the partials.
    let source = Detached(&histograms);
    let ev = Evaluator::new(&source, 0);
    let mut elements = Vec::new();
    for (labels, parts) in groups {
        if parts.iter().any(|p| p[0].to_bits() == VOID.to_bits()) {
            continue;
        }
        let firsts: Vec<Element> = parts
            .iter()
            .map(|p| Element::new(labels.clone(), p[0]))
            .collect();
        let mut floats: Vec<f64> = firsts.iter().map(|e| e.value).collect();
        match native::aggregate(&ev, op, &firsts, &mut floats) {
            None => elements.push(Element::new(labels, combine(op, &parts))),
            Some(Some(v)) => elements.push(Element::new(labels, v)),
            Some(None) => {}
        }
    }
    let mut value = Value::Vector(elements);
    let histograms = detach(&ev, &mut value);
    (Ok(value), histograms)
}

/// The owners' side: gathers the partial records of each spread rule's evaluations
/// (exchanged to the rule's owner) and, once the frontier passes their time, sends
/// the combined result on the rule's channel. `control` carries the rule changes, in
/// time order and before the partials of the same time (an evaluation's time is never
/// before its rule's installation, and always before its removal: one made before a
/// removal is still delivered). The returned stream carries nothing; its frontier is
/// how far results have been sent.
pub fn combine_partials<'scope>(
    partials: Stream<'scope, u64, Vec<PartialRecord>>,
    control: Stream<'scope, u64, Vec<RuleChange>>,
    worker: usize,
    peers: usize,
    local: Arc<LocalRules>,
) -> Stream<'scope, u64, Vec<()>> {
    partials.binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
        control,
        Exchange::new(|record: &PartialRecord| record.0),
        Pipeline,
        "CombinePartials",
        move |cap, _info| {
            drop(cap);
            let mut registry = Registry::new(peers);
            // The output channels of the spread rules this worker owns.
            let mut outputs: BTreeMap<RuleId, Sender<RuleOutput>> = BTreeMap::new();
            let mut records: BTreeMap<u64, Vec<PartialRecord>> = BTreeMap::new();
            let mut changes: BTreeMap<u64, Vec<RuleChange>> = BTreeMap::new();
            move |(input, frontier), (ctl, ctl_frontier), _output| {
                input.for_each(|cap, batch| {
                    if let Some(t) = cap.least() {
                        records.entry(*t).or_default().append(batch);
                    }
                });
                ctl.for_each(|cap, batch| {
                    if let Some(t) = cap.least() {
                        changes.entry(*t).or_default().append(batch);
                    }
                });
                let front = frontier
                    .frontier()
                    .iter()
                    .chain(ctl_frontier.frontier().iter())
                    .min()
                    .copied()
                    .unwrap_or(u64::MAX);
                let times: Vec<u64> = records
                    .keys()
                    .chain(changes.keys())
                    .copied()
                    .filter(|t| *t < front)
                    .collect::<std::collections::BTreeSet<u64>>()
                    .into_iter()
                    .collect();
                for time in times {
                    for change in changes.remove(&time).unwrap_or_default() {
                        match registry.apply(&change) {
                            Some((spec, owner)) if spec.spread.is_some() && owner == worker => {
                                if let Some(output) = local.take_output(spec.id) {
                                    outputs.insert(spec.id, output);
                                }
                            }
                            _ => {}
                        }
                        if let RuleChange::Remove(id) = change {
                            outputs.remove(&id);
                        }
                    }
                    let mut evaluations: BTreeMap<(RuleId, i64), Vec<Partials>> = BTreeMap::new();
                    for (_, rule, t, parts) in records.remove(&time).unwrap_or_default() {
                        evaluations.entry((rule, t)).or_default().push(parts);
                    }
                    for ((rule, t), parts) in evaluations {
                        let Some((spec, _)) = registry.get(rule) else {
                            continue;
                        };
                        let Some(spread) = &spec.spread else { continue };
                        let (value, histograms) = combined(spread.op, parts);
                        let Some(output) = outputs.get(&rule) else {
                            continue;
                        };
                        let _ = output.send(RuleOutput {
                            rule,
                            eval_ms: t,
                            value,
                            gone: None,
                            histograms,
                        });
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::parse;
    use crate::render::extent::{selector_uses, QueryRange};

    fn spread(q: &str) -> Option<Vec<AggOp>> {
        let plan = parse(q).unwrap();
        let range = QueryRange {
            start_ms: None,
            end_ms: None,
        };
        let uses = selector_uses(&plan, 300_000, range);
        let every = RuleSchedule::Interval {
            start_ms: 0,
            every_ms: 1_000,
        };
        spread_of(&plan, every, Evaluation::Incremental, &uses).map(|s| {
            s.local
                .iter()
                .map(|p| match p {
                    Plan::Aggregate { op, .. } => *op,
                    other => panic!("{other:?}"),
                })
                .collect()
        })
    }

    #[test]
    fn aggregations_of_one_named_series_function_are_spread() {
        assert_eq!(spread("sum by (job) (rate(x[5m]))"), Some(vec![AggOp::Sum]));
        assert_eq!(spread("max without (cpu) (x)"), Some(vec![AggOp::Max]));
        for q in [
            "avg(irate(x[1m]))",
            "sum by (job) (rate({job=\"a\"}[5m]))",
            "sum by (__name__) (x)",
            "topk(2, x)",
            "stddev(x)",
            "sum(x) > 1",
            "sum(x @ 100)",
            "sum(sum by (a) (x))",
            "rate(x[5m])",
        ] {
            assert_eq!(spread(q), None, "{q}");
        }
    }

    #[test]
    fn partials_combine_per_group() {
        let l = |v: &str| Arc::new(Labels::from_strs(&[("job", v)]));
        let a: Partials = Ok((
            vec![(l("a"), vec![1.0, 1.0]), (l("b"), vec![4.0, 2.0])],
            None,
        ));
        let b: Partials = Ok((vec![(l("a"), vec![2.0, 3.0])], None));
        let got = combined(AggOp::Avg, vec![a.clone(), b.clone()]).0.unwrap();
        let Value::Vector(got) = got else { panic!() };
        let got: Vec<(String, f64)> = got
            .iter()
            .map(|e| (e.labels.to_string(), e.value))
            .collect();
        assert_eq!(
            got,
            vec![("{job=\"a\"}".into(), 0.75), ("{job=\"b\"}".into(), 2.0)]
        );
        let err: Partials = Err(EvalError::Execution("boom".into()));
        assert!(combined(AggOp::Sum, vec![a, err, b]).0.is_err());
    }
}
