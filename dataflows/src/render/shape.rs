//! Which plans are maintained incrementally, and the tree of nodes they become.
//!
//! PromQL (incremental shapes; every other plan is evaluated whole at each time):
//! ```promql
//! up == 0                                   # per series: one selector, element-wise ops
//! rate(x[5m]) * 100 > 5                     #   with constant operands, range functions
//! label_replace(x, "a", "$1", "b", "(.*)")  #   of that selector
//! histogram_count(rate(h[5m]))              #   (native histograms too)
//! 100 - avg by (instance) (rate(cpu{mode="idle"}[1m])) * 100 > 90   # groups, then a map
//! max(sum by (a) (x))                       # groups of groups
//! a / b < 0.1                               # one-to-one matches of two nodes
//! ```
//! A [`Shape`] is one of four nodes: [`Shape::PerSeries`] (a sub-plan whose element
//! for a series of its one selector depends only on that series' samples in the
//! selector's extent, and on `t` for `rate`/`increase`/`delta`/`predict_linear`/
//! `timestamp` of a non-selector), [`Shape::Map`] (element-wise ops with constant
//! operands over another node), [`Shape::Aggregate`] (`sum avg min max count group
//! stddev stdvar quantile` with a constant parameter, `by`/`without`), [`Shape::Join`]
//! (arithmetic or comparison of two nodes, one-to-one, `on`/`ignoring` allowed).
//! Selectors with `@`, subqueries, set operators, `group_left`/`group_right`,
//! `fill`, `absent`, `sort`, `topk` and friends, `histogram_quantile`, `scalar`,
//! `time()` operands are not incremental.
//!
//! Nodes keep the sub-plan they stand for, with their input replaced by [`hole`], an
//! empty selector: evaluating it with the reference evaluator over a source holding
//! one series, one element or one group's elements gives exactly the reference's
//! answer for that series, element or group (no second implementation of PromQL).

use crate::promql::eval::math;
use crate::promql::eval::over_time::is_over_time;
use crate::promql::plan::{AggOp, BinOp, Card, Grouping, Matching, Plan, VectorSel};
use crate::render::extent::{selector_key, selector_uses, Extent, QueryRange};
use crate::selector::Selector;

/// A node of an incrementally maintained plan.
#[derive(Clone, Debug)]
pub enum Shape {
    /// One element per series of a selector, from that series alone.
    PerSeries {
        /// The sub-plan, evaluated over one series at a time.
        plan: Plan,
        /// The window (selector key) it reads.
        key: String,
        /// What it reads at `t`: `[t - back, t + fwd]`.
        back: i64,
        /// See `back`.
        fwd: i64,
        /// Only the newest sample at or before `t + fwd` matters (an instant selector).
        latest_only: bool,
        /// The element depends on `t` itself, not only on the samples.
        time_dependent: bool,
    },
    /// Element-wise operations with constant operands over `input`'s elements.
    Map {
        /// The input node.
        input: Box<Shape>,
        /// The operations, reading the input through [`hole`].
        plan: Plan,
        /// It writes `__name__` (`label_replace`/`label_join` into it), which cancels a
        /// pending name removal of its input.
        writes_name: bool,
    },
    /// One element per group of `input`'s elements.
    Aggregate {
        /// The input node.
        input: Box<Shape>,
        /// The aggregation over [`hole`].
        plan: Plan,
        /// Its grouping.
        grouping: Grouping,
    },
    /// One element per match group of a one-to-one vector/vector arithmetic or
    /// comparison.
    Join {
        /// The left operand's node.
        lhs: Box<Shape>,
        /// The right operand's node.
        rhs: Box<Shape>,
        /// The operator (not a set operator).
        op: BinOp,
        /// `on`/`ignoring` (one-to-one, no `fill`).
        matching: Matching,
        /// The `bool` modifier.
        return_bool: bool,
    },
}

/// The selector that stands for a node's input in its plan: no matchers.
pub fn hole() -> Plan {
    Plan::Vector(VectorSel {
        selector: Selector {
            matchers: Vec::new(),
        },
        offset_ms: 0,
        at: None,
        modifier: None,
    })
}

/// The incremental shape of `plan`, or `None` when it is evaluated whole.
pub fn shape(plan: &Plan, lookback_ms: i64) -> Option<Shape> {
    if let Some((sel, time_dependent)) = per_series(plan) {
        let no_range = QueryRange {
            start_ms: None,
            end_ms: None,
        };
        let uses = selector_uses(plan, lookback_ms, no_range);
        let [u] = uses.as_slice() else { return None };
        let Some(Extent::Relative { back, fwd }) = u.relative else {
            return None;
        };
        return Some(Shape::PerSeries {
            plan: plan.clone(),
            key: selector_key(&sel.selector),
            back,
            fwd,
            latest_only: u.latest_only,
            time_dependent,
        });
    }
    if let Plan::Aggregate {
        op,
        expr,
        param,
        grouping,
    } = plan
    {
        let one_per_group = matches!(
            op,
            AggOp::Sum
                | AggOp::Avg
                | AggOp::Min
                | AggOp::Max
                | AggOp::Count
                | AggOp::Group
                | AggOp::Stddev
                | AggOp::Stdvar
                | AggOp::Quantile
        );
        if !one_per_group || !param.as_deref().is_none_or(constant) {
            return None;
        }
        return Some(Shape::Aggregate {
            input: Box::new(shape(expr, lookback_ms)?),
            plan: Plan::Aggregate {
                op: *op,
                expr: Box::new(hole()),
                param: param.clone(),
                grouping: grouping.clone(),
            },
            grouping: grouping.clone(),
        });
    }
    if let Plan::Binary {
        op,
        lhs,
        rhs,
        matching,
        return_bool,
    } = plan
    {
        if !op.is_set() && !constant(lhs) && !constant(rhs) {
            let matching = one_to_one(matching.as_ref())?;
            return Some(Shape::Join {
                lhs: Box::new(shape(lhs, lookback_ms)?),
                rhs: Box::new(shape(rhs, lookback_ms)?),
                op: *op,
                matching,
                return_bool: *return_bool,
            });
        }
    }
    let (operand, time_dependent) = element_wise(plan)?;
    if time_dependent {
        return None;
    }
    let writes_name = matches!(
        plan,
        Plan::Call { func: "label_replace" | "label_join", args }
            if matches!(args.get(1), Some(Plan::String(dst)) if dst == crate::labels::METRIC_NAME)
    );
    Some(Shape::Map {
        input: Box::new(shape(operand, lookback_ms)?),
        plan: with_hole(plan),
        writes_name,
    })
}

/// The matching of a vector/vector operation (the default when it has none) when it is
/// one-to-one without `fill`.
pub(crate) fn one_to_one(matching: Option<&Matching>) -> Option<Matching> {
    let matching = matching.cloned().unwrap_or(Matching {
        on: false,
        labels: Vec::new(),
        card: Card::OneToOne,
        fill_lhs: None,
        fill_rhs: None,
    });
    let one_to_one = matching.card == Card::OneToOne
        && matching.fill_lhs.is_none()
        && matching.fill_rhs.is_none();
    one_to_one.then_some(matching)
}

/// The node tree in one line, e.g. `map(groups(per-series(__name__="x")))`.
pub fn describe(shape: &Shape) -> String {
    match shape {
        Shape::PerSeries { key, .. } => format!("per-series({key})"),
        Shape::Map { input, .. } => format!("map({})", describe(input)),
        Shape::Aggregate { input, .. } => format!("groups({})", describe(input)),
        Shape::Join { lhs, rhs, .. } => format!("join({}, {})", describe(lhs), describe(rhs)),
    }
}

/// A number, or arithmetic on numbers.
pub(crate) fn constant(plan: &Plan) -> bool {
    match plan {
        Plan::Number(_) => true,
        Plan::Neg(p) => constant(p),
        Plan::Binary { lhs, rhs, .. } => constant(lhs) && constant(rhs),
        _ => false,
    }
}

/// Range functions whose value for a series depends only on that series' window.
pub(crate) fn per_series_range_function(func: &str) -> bool {
    is_over_time(func)
        || matches!(
            func,
            "rate"
                | "increase"
                | "delta"
                | "irate"
                | "idelta"
                | "deriv"
                | "predict_linear"
                | "resets"
                | "changes"
                | "double_exponential_smoothing"
        )
}

/// Range functions whose value also depends on the evaluation time.
fn time_dependent_range_function(func: &str) -> bool {
    matches!(func, "rate" | "increase" | "delta" | "predict_linear")
}

/// Element-wise functions of an instant vector (other arguments constant).
fn element_wise_function(func: &str) -> bool {
    math::unary(func).is_some()
        || matches!(
            func,
            "clamp"
                | "clamp_min"
                | "clamp_max"
                | "round"
                | "timestamp"
                | "label_replace"
                | "label_join"
                | "day_of_month"
                | "day_of_week"
                | "day_of_year"
                | "days_in_month"
                | "hour"
                | "minute"
                | "month"
                | "year"
                // Of each native histogram alone (floats yield nothing).
                | "histogram_count"
                | "histogram_sum"
                | "histogram_avg"
                | "histogram_stddev"
                | "histogram_stdvar"
        )
}

/// The one vector operand of an element-wise operation whose other operands are
/// constants, and whether the result depends on `t` beyond that operand.
pub(crate) fn element_wise(plan: &Plan) -> Option<(&Plan, bool)> {
    match plan {
        Plan::Neg(inner) => Some((inner, false)),
        Plan::Binary { op, lhs, rhs, .. } if !op.is_set() => match (constant(lhs), constant(rhs)) {
            (false, true) => Some((lhs, false)),
            (true, false) => Some((rhs, false)),
            _ => None,
        },
        Plan::Call { func, args } if element_wise_function(func) => {
            let (first, rest) = args.split_first()?;
            let constant_rest = rest
                .iter()
                .all(|a| constant(a) || matches!(a, Plan::String(_)));
            if !constant_rest || constant(first) {
                return None;
            }
            // `timestamp(expr)` of anything but a selector is the evaluation time.
            let time = *func == "timestamp" && !matches!(first, Plan::Vector(_));
            Some((first, time))
        }
        _ => None,
    }
}

/// The selector a per-series plan reads, and whether it depends on `t`.
pub(crate) fn per_series(plan: &Plan) -> Option<(&VectorSel, bool)> {
    match plan {
        // `anchored`/`smoothed` read past the window and interpolate at `t`: whole plan.
        Plan::Vector(sel) => (sel.at.is_none() && sel.modifier.is_none()).then_some((sel, false)),
        Plan::Call { func, args } if per_series_range_function(func) => {
            let mut matrix = None;
            for a in args {
                match a {
                    Plan::Matrix { sel, .. }
                        if sel.at.is_none() && sel.modifier.is_none() && matrix.is_none() =>
                    {
                        matrix = Some(sel)
                    }
                    a if constant(a) => {}
                    _ => return None,
                }
            }
            Some((matrix?, time_dependent_range_function(func)))
        }
        _ => {
            let (operand, time) = element_wise(plan)?;
            let (sel, inner_time) = per_series(operand)?;
            Some((sel, time || inner_time))
        }
    }
}

/// `plan` with its element-wise operand replaced by [`hole`].
pub(crate) fn with_hole(plan: &Plan) -> Plan {
    let mut out = plan.clone();
    if let Some(operand) = operand_mut(&mut out) {
        *operand = hole();
    }
    out
}

/// The element-wise operand of `plan` (see [`element_wise`]), to replace it.
pub(crate) fn operand_mut(plan: &mut Plan) -> Option<&mut Plan> {
    match plan {
        Plan::Neg(inner) => Some(&mut **inner),
        Plan::Binary { lhs, rhs, .. } => Some(if constant(rhs) {
            &mut **lhs
        } else {
            &mut **rhs
        }),
        Plan::Call { args, .. } => args.first_mut(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::parse;

    fn described(q: &str) -> Option<String> {
        shape(&parse(q).unwrap(), 300_000).map(|s| describe(&s))
    }

    #[test]
    fn common_rule_shapes_are_incremental() {
        assert_eq!(
            described("up == 0").as_deref(),
            Some(r#"per-series(__name__="up")"#)
        );
        assert_eq!(
            described(r#"100 - avg by (instance) (rate(cpu{mode="idle"}[1m])) * 100 > 90"#)
                .as_deref(),
            Some(r#"map(map(map(groups(per-series(__name__="cpu",mode="idle")))))"#)
        );
        assert_eq!(
            described(r#"label_replace(x, "a", "$1", "b", "(.*)") * 2"#).as_deref(),
            Some(r#"per-series(__name__="x")"#)
        );
        assert_eq!(
            described("max(sum by (a) (x))").as_deref(),
            Some(r#"groups(groups(per-series(__name__="x")))"#)
        );
        assert_eq!(
            described("a / ignoring (d) b < 0.1").as_deref(),
            Some(r#"map(join(per-series(__name__="a"), per-series(__name__="b")))"#)
        );
        assert_eq!(
            described("quantile_over_time(0.9, x[5m] offset 1m)").as_deref(),
            Some(r#"per-series(__name__="x")"#)
        );
    }

    #[test]
    fn other_shapes_are_evaluated_whole() {
        for q in [
            "x / on (a) group_left y",
            "x and y",
            "x @ 100",
            "absent(x)",
            "topk(3, x)",
            "rate(x[5m:1m])",
            "sort(x)",
            "x > scalar(y)",
            "time() - x",
            "timestamp(sum(x))",
            "histogram_quantile(0.9, rate(b[5m]))",
        ] {
            assert!(described(q).is_none(), "{q}");
        }
    }
}
