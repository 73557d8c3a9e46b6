//! Which samples a plan can read at an evaluation time: one [`Extent`] per selector.
//!
//! PromQL (the reads of each selector at evaluation time `t`, 3.x left-open windows):
//! ```promql
//! x offset o                 # [t - o - lookback + 1, t - o]
//! x[r] offset o              # [t - o - r + 1,        t - o]
//! x @ a                      # [a - lookback + 1, a]   (absolute: independent of t)
//! f(x[r])[s:st] offset o     # inner evaluated at times in [t - o - s + 1, t - o]
//! x[r] anchored              # [t - r - lookback + 1, t]
//! x[r] smoothed              # [t - r - lookback + 1, t + lookback]
//! x smoothed                 # [t - lookback + 1,     t + lookback]
//! ```
//! The extents drive three things in maintained evaluation: how long a window of
//! samples is retained (retirement as the frontier passes), when an evaluation at `t`
//! is ready (every sample it can read is older than the frontier), and, for on-arrival
//! rules, at which times a sample enters or leaves what the rule reads.

use crate::promql::plan::{At, Plan, VectorSel};
use crate::selector::{MatchKind, Selector};

/// The samples one selector reads, as an inclusive timestamp interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// `[t - back, t + fwd]` for evaluation time `t`.
    Relative {
        /// How far before `t` (ms).
        back: i64,
        /// How far after `t` (ms; negative when every read is offset into the past).
        fwd: i64,
    },
    /// `[lo, hi]` whatever `t` is (an `@` modifier with a fixed time).
    Absolute {
        /// First timestamp read.
        lo: i64,
        /// Last timestamp read.
        hi: i64,
    },
}

impl Extent {
    /// The union of two extents of the same kind; `None` when one is relative and the
    /// other absolute (kept apart then).
    pub fn union(self, other: Extent) -> Option<Extent> {
        match (self, other) {
            (Extent::Relative { back: b1, fwd: f1 }, Extent::Relative { back: b2, fwd: f2 }) => {
                Some(Extent::Relative {
                    back: b1.max(b2),
                    fwd: f1.max(f2),
                })
            }
            (Extent::Absolute { lo: l1, hi: h1 }, Extent::Absolute { lo: l2, hi: h2 }) => {
                Some(Extent::Absolute {
                    lo: l1.min(l2),
                    hi: h1.max(h2),
                })
            }
            _ => None,
        }
    }

    /// The last timestamp read by an evaluation at `t`.
    pub fn last_read(self, t: i64) -> i64 {
        match self {
            Extent::Relative { fwd, .. } => t.saturating_add(fwd),
            Extent::Absolute { hi, .. } => hi,
        }
    }
}

/// One selector of a plan with everything the plan reads through it.
#[derive(Clone, Debug)]
pub struct SelectorUse {
    /// Canonical text of the matchers ([`selector_key`]): the sharing key.
    pub key: String,
    /// The matchers.
    pub selector: Selector,
    /// Reads relative to the evaluation time, if any.
    pub relative: Option<Extent>,
    /// Reads at fixed times, if any.
    pub absolute: Option<Extent>,
    /// Whether every relative read is an instant selector at the evaluation time
    /// itself (not inside a subquery or a range): such a read only ever needs the
    /// newest sample at or before its window's end, not the whole lookback.
    pub latest_only: bool,
}

/// Canonical text of a selector: its matchers sorted, so that `{a="1",b="2"}` and
/// `{b="2",a="1"}` share state.
pub fn selector_key(sel: &Selector) -> String {
    let mut parts: Vec<String> = sel
        .matchers
        .iter()
        .map(|m| {
            let (op, v) = match &m.kind {
                MatchKind::Equal(v) => ("=", v.as_str()),
                MatchKind::NotEqual(v) => ("!=", v.as_str()),
                MatchKind::Regex(r) => ("=~", r.as_str()),
                MatchKind::NotRegex(r) => ("!~", r.as_str()),
            };
            format!("{}{op}{v:?}", m.name)
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// The evaluation times of a sub-expression, relative to the rule's evaluation time
/// `t` or absolute.
#[derive(Clone, Copy, Debug)]
enum Times {
    /// `[t + lo, t + hi]`.
    Relative { lo: i64, hi: i64 },
    /// `[lo, hi]`.
    Absolute { lo: i64, hi: i64 },
}

/// What `@ start()` / `@ end()` resolve to: the schedule's fixed range, or `t` itself
/// for rules (an instant query at `t` has start = end = `t`).
#[derive(Clone, Copy, Debug)]
pub struct QueryRange {
    /// `start()`, if fixed.
    pub start_ms: Option<i64>,
    /// `end()`, if fixed.
    pub end_ms: Option<i64>,
}

/// Every selector the plan reads, merged by key.
pub fn selector_uses(plan: &Plan, lookback_ms: i64, range: QueryRange) -> Vec<SelectorUse> {
    let mut out = Vec::new();
    walk(
        plan,
        Times::Relative { lo: 0, hi: 0 },
        lookback_ms,
        range,
        &mut out,
    );
    out
}

/// The times at which `at`/`offset` make a selector or subquery read, given the times
/// `times` its parent is evaluated at: `(lo, hi)` of the read's end, relative or not.
fn shifted(times: Times, at: Option<At>, offset_ms: i64, range: QueryRange) -> Times {
    let fixed = match at {
        None => None,
        Some(At::Ms(ms)) => Some(ms),
        Some(At::Start) => range.start_ms,
        Some(At::End) => range.end_ms,
    };
    match (fixed, times) {
        (Some(base), _) => Times::Absolute {
            lo: base.saturating_sub(offset_ms),
            hi: base.saturating_sub(offset_ms),
        },
        (None, Times::Relative { lo, hi }) => Times::Relative {
            lo: lo.saturating_sub(offset_ms),
            hi: hi.saturating_sub(offset_ms),
        },
        (None, Times::Absolute { lo, hi }) => Times::Absolute {
            lo: lo.saturating_sub(offset_ms),
            hi: hi.saturating_sub(offset_ms),
        },
    }
}

fn add_use(out: &mut Vec<SelectorUse>, sel: &VectorSel, ends: Times, width_ms: i64, instant: bool) {
    let latest_only = instant && matches!(ends, Times::Relative { lo, hi } if lo == hi);
    // A window of `width` ending at `e` reads `[e - width + 1, e]`.
    let extent = match ends {
        Times::Relative { lo, hi } => Extent::Relative {
            back: (width_ms - 1).saturating_sub(lo),
            fwd: hi,
        },
        Times::Absolute { lo, hi } => Extent::Absolute {
            lo: lo.saturating_sub(width_ms - 1),
            hi,
        },
    };
    let key = selector_key(&sel.selector);
    let slot = match out.iter().position(|u| u.key == key) {
        Some(i) => &mut out[i],
        None => {
            out.push(SelectorUse {
                key,
                selector: sel.selector.clone(),
                relative: None,
                absolute: None,
                latest_only: true,
            });
            let last = out.len() - 1;
            &mut out[last]
        }
    };
    if matches!(extent, Extent::Relative { .. }) && !latest_only {
        slot.latest_only = false;
    }
    let target = match extent {
        Extent::Relative { .. } => &mut slot.relative,
        Extent::Absolute { .. } => &mut slot.absolute,
    };
    *target = Some(match *target {
        Some(old) => old.union(extent).unwrap_or(extent),
        None => extent,
    });
}

fn walk(
    plan: &Plan,
    times: Times,
    lookback_ms: i64,
    range: QueryRange,
    out: &mut Vec<SelectorUse>,
) {
    match plan {
        Plan::Number(_) | Plan::String(_) => {}
        Plan::Vector(sel) => {
            let (_, after) = sel.extra_reads(lookback_ms, false);
            let ends = shifted(times, sel.at, sel.offset_ms - after, range);
            add_use(out, sel, ends, lookback_ms + after, after == 0);
        }
        Plan::Matrix { sel, range_ms } => {
            let (before, after) = sel.extra_reads(lookback_ms, true);
            let ends = shifted(times, sel.at, sel.offset_ms - after, range);
            add_use(out, sel, ends, (*range_ms).max(1) + before + after, false);
        }
        Plan::Subquery {
            expr,
            range_ms,
            offset_ms,
            at,
            ..
        } => {
            let inner = match shifted(times, *at, *offset_ms, range) {
                Times::Relative { lo, hi } => Times::Relative {
                    lo: lo.saturating_sub(range_ms.saturating_sub(1)),
                    hi,
                },
                Times::Absolute { lo, hi } => Times::Absolute {
                    lo: lo.saturating_sub(range_ms.saturating_sub(1)),
                    hi,
                },
            };
            walk(expr, inner, lookback_ms, range, out);
        }
        Plan::Call { args, .. } => {
            for a in args {
                walk(a, times, lookback_ms, range, out);
            }
        }
        Plan::Aggregate { expr, param, .. } => {
            walk(expr, times, lookback_ms, range, out);
            if let Some(p) = param {
                walk(p, times, lookback_ms, range, out);
            }
        }
        Plan::Binary { lhs, rhs, .. } => {
            walk(lhs, times, lookback_ms, range, out);
            walk(rhs, times, lookback_ms, range, out);
        }
        Plan::Neg(inner) => walk(inner, times, lookback_ms, range, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::plan::parse;

    const RULE: QueryRange = QueryRange {
        start_ms: None,
        end_ms: None,
    };

    #[test]
    fn windows_offsets_and_subqueries() {
        let uses = selector_uses(
            &parse("rate(x[5m] offset 1m) + x + max_over_time(y[1m:10s] offset -30s)").unwrap(),
            300_000,
            RULE,
        );
        assert_eq!(uses.len(), 2);
        // x: union of [t-1m-5m+1, t-1m] and [t-5m+1, t].
        assert_eq!(
            uses[0].relative,
            Some(Extent::Relative {
                back: 360_000 - 1,
                fwd: 0
            })
        );
        // y: subquery ends at t+30s, inner times from t+30s-1m+1, each reading 5m back.
        assert_eq!(
            uses[1].relative,
            Some(Extent::Relative {
                back: 300_000 - 1 + 30_000 - 1,
                fwd: 30_000
            })
        );
    }

    #[test]
    fn at_is_absolute_and_keys_are_canonical() {
        let uses = selector_uses(
            &parse(r#"x{b="2",a="1"} @ 100 + x{a="1",b="2"}"#).unwrap(),
            300_000,
            RULE,
        );
        assert_eq!(uses.len(), 1);
        assert_eq!(
            uses[0].absolute,
            Some(Extent::Absolute {
                lo: 100_000 - 300_000 + 1,
                hi: 100_000
            })
        );
        assert!(uses[0].relative.is_some());
    }
}
