//! `histogram_quantile(φ, b)` and `histogram_fraction(lower, upper, b)` over classic
//! buckets (`le` label), as Prometheus's `BucketQuantile` and `BucketFraction`
//! (promql/quantile.go): buckets grouped by their labels without `le`; for the
//! quantile made monotonic, then linear interpolation within a bucket.

use super::{Derivation, Element, Evaluator};
use crate::labels::Labels;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One output element per bucket group; elements without a parsable `le` are ignored
/// (with a warning), buckets made monotonic are reported (an info).
pub fn quantile(ev: &Evaluator<'_>, phi: f64, v: Vec<Element>) -> Vec<Element> {
    bucket_groups(ev, v)
        .into_iter()
        .map(|(labels, buckets)| {
            let (value, forced_monotonic) = bucket_quantile(phi, buckets);
            if forced_monotonic {
                ev.info(format!(
                    "input to histogram_quantile needed to be fixed for monotonicity (see \
                     https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) \
                     for metric name {:?}",
                    labels.metric_name()
                ));
            }
            Element::new(ev.derived(&labels, Derivation::DropName), value)
        })
        .collect()
}

/// `histogram_fraction(lower, upper, v)` of each bucket group.
pub fn fraction(ev: &Evaluator<'_>, lower: f64, upper: f64, v: Vec<Element>) -> Vec<Element> {
    bucket_groups(ev, v)
        .into_iter()
        .map(|(labels, buckets)| {
            let value = bucket_fraction(lower, upper, buckets);
            Element::new(ev.derived(&labels, Derivation::DropName), value)
        })
        .collect()
}

/// Prometheus's `BucketFraction` over buckets `(upper_bound, cumulative_count)`.
pub fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let buckets = coalesce(buckets);
    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, &(upper_bound, c)) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].0;
        }
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                return c;
            }
            rank + (c - rank) * (v - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = c;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// Buckets with equal upper bounds merged (sorted input).
fn coalesce(buckets: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (ub, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    merged
}

/// The elements' buckets `(upper_bound, count)` grouped by their labels without `le`;
/// elements without a parsable `le` are ignored (with a warning).
fn bucket_groups(ev: &Evaluator<'_>, v: Vec<Element>) -> BTreeMap<Arc<Labels>, Vec<(f64, f64)>> {
    let mut groups: BTreeMap<Arc<Labels>, Vec<(f64, f64)>> = BTreeMap::new();
    for e in v {
        let le = e.labels.get("le");
        let Some(upper) = le.and_then(parse_le) else {
            ev.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                le.unwrap_or(""),
                e.labels.metric_name()
            ));
            continue;
        };
        // Grouped with the metric name, dropped afterwards: two histograms that differ
        // only by name collide, which the caller reports as duplicate label sets.
        let key = ev.derived(&e.labels, Derivation::WithoutLe);
        groups.entry(key).or_default().push((upper, e.value));
    }
    groups
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

/// The φ-quantile of buckets `(upper_bound, cumulative_count)`, and whether a count
/// had to be raised to make the buckets monotonic.
pub fn bucket_quantile(phi: f64, mut buckets: Vec<(f64, f64)>) -> (f64, bool) {
    if phi.is_nan() {
        return (f64::NAN, false);
    }
    if phi < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if phi > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return (f64::NAN, false);
    }
    let mut buckets = coalesce(buckets);
    // Monotonic, ignoring tiny deltas.
    let mut forced = false;
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if ((curr - prev) / (curr.abs() + prev.abs())).abs() < 1e-12 || curr < prev {
            forced |= curr < prev;
            b.1 = prev;
            continue;
        }
        prev = curr;
    }
    (quantile_of_monotonic(phi, &buckets), forced)
}

fn quantile_of_monotonic(phi: f64, buckets: &[(f64, f64)]) -> f64 {
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = phi * observations;
    let n = buckets.len() - 1;
    let b = (0..n).find(|&i| buckets[i].1 >= rank).unwrap_or(n);
    if b == n {
        return buckets[n - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut start = 0.0;
    let end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}
