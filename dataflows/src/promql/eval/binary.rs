//! Binary operators: arithmetic, comparison (with and without `bool`), set operators,
//! between scalars and vectors, with `on`/`ignoring` and `group_left`/`group_right`.
//!
//! ```promql
//! a / on (job) group_left (team) b   # many-to-one: b is the "one" side, copies `team`
//! a > bool 3                         # 0/1 per element, __name__ dropped
//! a unless ignoring (x) b            # elements of a with no match in b
//! ```
//!
//! Mirrors `VectorBinop`, `VectorAnd/Or/Unless`, `VectorscalarBinop` and
//! `resultMetric` of Prometheus's engine.go, including its many-to-many errors.

use super::{drop_name, is_name_label, Element, EvalError, EvalResult, Evaluator, Value};
use crate::labels::Labels;
use crate::promql::plan::{BinOp, Card, Matching, Plan};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Evaluates `lhs op rhs` at `t`.
pub fn eval(
    ev: &Evaluator<'_>,
    op: BinOp,
    lhs: &Plan,
    rhs: &Plan,
    matching: Option<&Matching>,
    return_bool: bool,
    t: i64,
) -> EvalResult<Value> {
    let l = ev.eval(lhs, t)?;
    let r = ev.eval(rhs, t)?;
    Ok(match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            let (v, keep) = elem(op, a, b);
            Value::Scalar(if op.is_comparison() {
                f64::from(u8::from(keep))
            } else {
                v
            })
        }
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(ev, op, v, s, false, return_bool),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(ev, op, v, s, true, return_bool),
        (Value::Vector(a), Value::Vector(b)) => {
            Value::Vector(vectors(ev, op, a, b, matching, return_bool)?)
        }
        _ => {
            return Err(EvalError::Unsupported(
                "binary operation on non-numeric operands".into(),
            ))
        }
    })
}

/// `a op b` of two vectors (any operator, `matching` or the default one-to-one), their
/// elements as the reference holds them (names pending removal stay pending in the
/// result): what [`eval`] does once both operands are vectors, for a spread join's
/// joiner ([`crate::render::spread::joined`]), whose sides arrive unfinished.
pub fn vectors(
    ev: &Evaluator<'_>,
    op: BinOp,
    a: Vec<Element>,
    b: Vec<Element>,
    matching: Option<&Matching>,
    return_bool: bool,
) -> EvalResult<Vec<Element>> {
    let default = Matching {
        on: false,
        labels: Vec::new(),
        card: Card::OneToOne,
        fill_lhs: None,
        fill_rhs: None,
    };
    let m = matching.unwrap_or(&default);
    if op.is_set() {
        Ok(set_op(op, a, b, m))
    } else {
        vector_vector(ev, op, a, b, m, return_bool)
    }
}

/// The value and "keep" flag of one element-wise operation.
fn elem(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
        // Defined for histograms only (`native::binop`); floats yield nothing.
        BinOp::TrimUpper | BinOp::TrimLower => (l, false),
    }
}

/// `v op s` (`s op v` when `swap`) of a vector and a scalar, element by element (names
/// pending removal stay pending): what [`eval`] does for such operands, for a spread
/// join's joiner over a join inside a join ([`crate::render::spread`]).
pub fn vector_scalar(
    ev: &Evaluator<'_>,
    op: BinOp,
    v: Vec<Element>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Value {
    Value::Vector(
        v.into_iter()
            .filter_map(|e| {
                let (l, r) = if swap { (s, e.value) } else { (e.value, s) };
                match super::native::binop(ev, op, l, r, return_bool) {
                    Some(value) => Some(Element {
                        labels: if op.keeps_name(return_bool) {
                            e.labels
                        } else {
                            drop_name(&e.labels)
                        },
                        value: value?,
                        drop_name: e.drop_name,
                    }),
                    None => scalar_element(op, e, s, swap, return_bool),
                }
            })
            .collect(),
    )
}

/// `e op s` (`s op e` when `swap`) for one element of a vector/scalar operation;
/// `None` when a comparison without `bool` filters it out.
pub fn scalar_element(
    op: BinOp,
    e: Element,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Option<Element> {
    let (l, r) = if swap { (s, e.value) } else { (e.value, s) };
    let (mut value, keep) = elem(op, l, r);
    if op.is_comparison() && swap {
        value = e.value;
    }
    if return_bool {
        value = f64::from(u8::from(keep));
    } else if !keep {
        return None;
    }
    let labels = if op.keeps_name(return_bool) {
        e.labels
    } else {
        drop_name(&e.labels)
    };
    Some(Element {
        labels,
        value,
        drop_name: e.drop_name,
    })
}

/// The matching signature of `labels`. Set operators also ignore the `__type__` and
/// `__unit__` metadata labels; arithmetic and comparisons match on them.
pub fn signature(labels: &Labels, m: &Matching) -> Vec<(String, String)> {
    signature_with(labels, m, false)
}

/// The matching signature of `labels` for a set operator (`and`, `or`, `unless`):
/// [`signature`] without the `__type__` and `__unit__` metadata labels.
pub fn set_signature(labels: &Labels, m: &Matching) -> Vec<(String, String)> {
    signature_with(labels, m, true)
}

/// [`Labels::hash`] of the labels of [`signature`] (`Labels::from_pairs(signature(…))`),
/// without making them: a spread join's joiner of an element
/// ([`crate::render::spread::joiner`]).
pub fn signature_hash(labels: &Labels, m: &Matching) -> u64 {
    signature_hash_with(labels, m, false)
}

/// [`signature_hash`] of a set operator's signature (without the `__type__` and
/// `__unit__` metadata labels): the joiner of an element of `and`/`or`/`unless`.
pub fn set_signature_hash(labels: &Labels, m: &Matching) -> u64 {
    signature_hash_with(labels, m, true)
}

fn signature_hash_with(labels: &Labels, m: &Matching, set_op: bool) -> u64 {
    Labels::hash_pairs(
        labels
            .iter()
            .filter(|(n, v)| !v.is_empty() && in_signature(n, m, set_op)),
    )
}

fn signature_with(labels: &Labels, m: &Matching, set_op: bool) -> Vec<(String, String)> {
    labels
        .iter()
        .filter(|(n, _)| in_signature(n, m, set_op))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Whether label `n` is part of a matching signature.
fn in_signature(n: &str, m: &Matching, set_op: bool) -> bool {
    if m.on {
        m.labels.iter().any(|l| l == n)
    } else {
        let meta = if set_op {
            is_name_label(n)
        } else {
            n == crate::labels::METRIC_NAME
        };
        !meta && !m.labels.iter().any(|l| l == n)
    }
}

fn set_op(op: BinOp, a: Vec<Element>, b: Vec<Element>, m: &Matching) -> Vec<Element> {
    match op {
        BinOp::And => {
            let right: HashSet<_> = b.iter().map(|e| set_signature(&e.labels, m)).collect();
            a.into_iter()
                .filter(|e| right.contains(&set_signature(&e.labels, m)))
                .collect()
        }
        BinOp::Unless => {
            let right: HashSet<_> = b.iter().map(|e| set_signature(&e.labels, m)).collect();
            a.into_iter()
                .filter(|e| !right.contains(&set_signature(&e.labels, m)))
                .collect()
        }
        _ => {
            let left: HashSet<_> = a.iter().map(|e| set_signature(&e.labels, m)).collect();
            let mut out = a;
            out.extend(
                b.into_iter()
                    .filter(|e| !left.contains(&set_signature(&e.labels, m))),
            );
            out
        }
    }
}

/// All labels, `__name__` included, as `{a="1", b="2"}`.
fn fmt_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn fmt_sig(sig: &[(String, String)]) -> String {
    let inner: Vec<String> = sig.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// `fill(v)`, `fill_left(v)`, `fill_right(v)`: for each match group present on one side
/// only, adds an element with the group's signature labels and the fill value to the
/// other side.
fn add_fill(a: &mut Vec<Element>, b: &mut Vec<Element>, m: &Matching) {
    let sigs = |v: &[Element]| -> HashSet<Vec<(String, String)>> {
        v.iter().map(|e| signature(&e.labels, m)).collect()
    };
    let fills = |from: &[Element], present: &HashSet<_>, value: f64| {
        let mut added = HashSet::new();
        let mut out = Vec::new();
        for e in from {
            let sig = signature(&e.labels, m);
            if !present.contains(&sig) && added.insert(sig.clone()) {
                out.push(Element::new(Arc::new(Labels::from_pairs(sig)), value));
            }
        }
        out
    };
    let (sa, sb) = (sigs(a), sigs(b));
    // Upstream applies the fill values after swapping sides for group_right, so
    // there `fill_left` fills the right operand and vice versa.
    let (fill_a, fill_b) = match m.card {
        Card::OneToMany(_) => (m.fill_rhs, m.fill_lhs),
        _ => (m.fill_lhs, m.fill_rhs),
    };
    let new_a = fill_a.map(|v| fills(b, &sa, v)).unwrap_or_default();
    let new_b = fill_b.map(|v| fills(a, &sb, v)).unwrap_or_default();
    a.extend(new_a);
    b.extend(new_b);
}

fn vector_vector(
    ev: &Evaluator<'_>,
    op: BinOp,
    mut a: Vec<Element>,
    mut b: Vec<Element>,
    m: &Matching,
    return_bool: bool,
) -> EvalResult<Vec<Element>> {
    if m.fill_lhs.is_some() || m.fill_rhs.is_some() {
        add_fill(&mut a, &mut b, m);
    }
    let one_to_many = matches!(m.card, Card::OneToMany(_));
    let (many, one) = if one_to_many { (b, a) } else { (a, b) };
    let mut one_by_sig: HashMap<Vec<(String, String)>, Element> = HashMap::new();
    for e in one {
        let sig = signature(&e.labels, m);
        if let Some(prev) = one_by_sig.get(&sig) {
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                fmt_sig(&sig),
                if one_to_many { "left" } else { "right" },
                fmt_labels(&prev.labels),
                fmt_labels(&e.labels)
            )));
        }
        one_by_sig.insert(sig, e);
    }
    let include: &[String] = match &m.card {
        Card::ManyToOne(l) | Card::OneToMany(l) => l,
        _ => &[],
    };
    let mut matched: HashMap<Vec<(String, String)>, HashSet<Arc<Labels>>> = HashMap::new();
    let mut out = Vec::new();
    for e in many {
        let sig = signature(&e.labels, m);
        let Some(o) = one_by_sig.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (o.value, e.value)
        } else {
            (e.value, o.value)
        };
        // Matching errors are raised before comparison filtering, like upstream.
        let labels = result_labels(&e.labels, &o.labels, op, m, include, return_bool);
        let seen = matched.entry(sig).or_default();
        if m.card == Card::OneToOne {
            if !seen.is_empty() {
                return Err(EvalError::Execution("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()));
            }
        } else if seen.contains(&labels) {
            return Err(EvalError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        seen.insert(labels.clone());
        if let Some(value) = super::native::binop(ev, op, vl, vr, return_bool) {
            out.extend(value.map(|value| Element {
                labels,
                value,
                drop_name: e.drop_name,
            }));
            continue;
        }
        out.extend(matched_element(
            op,
            (vl, vr),
            labels,
            e.drop_name,
            return_bool,
        ));
    }
    Ok(out)
}

/// The element of one matched pair of a vector/vector arithmetic or comparison:
/// `values` are (left, right), `labels` its [`result_labels`], `drop_name` the "many"
/// side's; `None` when a comparison without `bool` filters it out.
pub fn matched_element(
    op: BinOp,
    (vl, vr): (f64, f64),
    labels: Arc<Labels>,
    drop_name: bool,
    return_bool: bool,
) -> Option<Element> {
    let (mut value, keep) = elem(op, vl, vr);
    if return_bool {
        value = f64::from(u8::from(keep));
    } else if !keep {
        return None;
    }
    Some(Element {
        labels,
        value,
        drop_name,
    })
}

/// The labels of a matched pair's result: the "many" side's, less the name for
/// arithmetic and `bool`, less (one-to-one) the labels `on`/`ignoring` exclude, plus
/// the `include`d labels of the "one" side.
pub fn result_labels(
    many: &Arc<Labels>,
    one: &Labels,
    op: BinOp,
    m: &Matching,
    include: &[String],
    return_bool: bool,
) -> Arc<Labels> {
    let drop = !op.keeps_name(return_bool);
    let mut pairs: Vec<(String, String)> = many
        .iter()
        .filter(|(n, _)| !(drop && is_name_label(n)))
        .filter(|(n, _)| {
            if m.card != Card::OneToOne {
                return true;
            }
            let listed = m.labels.iter().any(|l| l == n);
            if m.on {
                listed
            } else {
                !listed
            }
        })
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for name in include {
        pairs.retain(|(n, _)| n != name);
        if let Some(v) = one.get(name) {
            pairs.push((name.clone(), v.to_string()));
        }
    }
    Arc::new(Labels::from_pairs(pairs))
}
