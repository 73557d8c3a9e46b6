//! Native histograms as PromQL computes with them: [`FloatHistogram`], the model of
//! Prometheus's `model/histogram.FloatHistogram`.
//!
//! Owns the value type and its arithmetic: bucket layout (exponential schemas -4..=8
//! with a zero bucket, or custom bounds with schema -53), bucket bounds and iteration
//! in Prometheus's order, compaction, scaling by a scalar, adding and subtracting
//! (reducing the finer schema, widening the narrower zero bucket, intersecting
//! mismatched custom bounds), and counter-reset detection between two samples; and
//! Prometheus's `Validate`, the rules a histogram must meet to be stored
//! ([`FloatHistogram::validate`], used by scraping and the remote write receiver).
//!
//! Contract: buckets are kept as Prometheus keeps them, spans of consecutive bucket
//! indexes plus one count per bucket (zero counts allowed until [`FloatHistogram::compact`]).
//! Results of [`FloatHistogram::add`] are compacted (Prometheus's engine compacts
//! every sum before it is returned); equality for tests is [`FloatHistogram::same`].

use serde::{Deserialize, Serialize};

/// Prometheus's schema of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// What a sample says about a counter reset since the previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterResetHint {
    /// Not known (the default).
    #[default]
    Unknown,
    /// A counter reset happened.
    Reset,
    /// No counter reset happened.
    NotReset,
    /// A gauge histogram: resets do not apply.
    Gauge,
}

/// A run of consecutive bucket indexes: `offset` from the end of the previous span
/// (from 0 for the first), `length` buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Gap to the previous span's end (or the first index).
    pub offset: i32,
    /// Buckets in the span.
    pub length: u32,
}

/// One bucket with its bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Observations in it.
    pub count: f64,
    /// Its index in the schema (0 for the zero bucket).
    pub index: i32,
}

impl Bucket {
    /// The fraction of the bucket below `v`, linearly or (exponential buckets) on a
    /// logarithmic scale, mirrored for negative buckets (Prometheus's `FractionBelow`).
    pub fn fraction_below(&self, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let (lo, up, lv) = (
            self.lower.abs().log2(),
            self.upper.abs().log2(),
            v.abs().log2(),
        );
        if v > 0.0 {
            (lv - lo) / (up - lo)
        } else {
            1.0 - (lv - up) / (lo - up)
        }
    }
}

/// Why two histograms cannot be combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CombineError {
    /// One has exponential buckets, the other custom bounds.
    MixedSchemas,
}

/// What combining two histograms noticed (Prometheus raises annotations for these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Combined {
    /// One said "reset", the other "not reset".
    pub counter_reset_collision: bool,
    /// Custom bounds differed and were reduced to those both have.
    pub custom_bounds_reconciled: bool,
}

/// A native histogram with float counts. Serializable: histogram samples are
/// exchanged between the dataflow's workers ([`crate::sample::HistogramPoint`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloatHistogram {
    /// Counter-reset hint.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: bucket `i` of schema `s` ends at `2^(i·2^-s)`; -53 is custom bounds.
    pub schema: i32,
    /// Observations with `|v| <= zero_threshold` land in the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Observations in total (NaN observations count here but in no bucket).
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Counts of the positive buckets, in span order.
    pub positive_buckets: Vec<f64>,
    /// Counts of the negative buckets, in span order.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53), ascending, without +Inf.
    pub custom_values: Vec<f64>,
}

/// `(index, count)` of each bucket described by `spans` and `counts` (indexes wrap
/// around as Go's `int32` do: offsets arrive unchecked from senders).
pub fn indexed(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(counts.len());
    let mut idx = 0i32;
    let mut counts = counts.iter();
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 {
            s.offset
        } else {
            idx.wrapping_add(s.offset)
        };
        for _ in 0..s.length {
            match counts.next() {
                Some(&c) => out.push((idx, c)),
                None => return out,
            }
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// Spans and counts of `(index, count)` pairs sorted by index (kept as given,
/// zero counts included).
pub fn spans_of(buckets: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut next = 0i32;
    for (n, &(idx, _)) in buckets.iter().enumerate() {
        match spans.last_mut() {
            Some(s) if idx == next => s.length += 1,
            _ => spans.push(Span {
                offset: if n == 0 { idx } else { idx.wrapping_sub(next) },
                length: 1,
            }),
        }
        next = idx.wrapping_add(1);
    }
    (spans, buckets.iter().map(|b| b.1).collect())
}

/// Prometheus's `convertnhcb.TempHistogram.Convert`: a classic histogram's cumulative
/// `(le, count)` buckets, its count and sum, as a native histogram with custom buckets
/// (a +Inf bucket added with the count if missing; the count defaults to the last
/// bucket's). `None` where Prometheus fails the conversion: a negative or NaN bound, a
/// negative count, counts that are not cumulative, a count other than the +Inf bucket's.
/// Used by `load_with_nhcb` and by scraping with `convert_classic_histograms_to_nhcb`.
pub fn from_classic(
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
) -> Option<FloatHistogram> {
    let mut at = ClassicParts {
        buckets,
        count,
        sum,
    };
    if at.count.is_some_and(|c| c < 0.0) || at.buckets.iter().any(|b| b.0.is_nan()) {
        return None;
    }
    at.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    at.buckets.dedup_by(|b, a| a.0 == b.0);
    if at.buckets.iter().any(|b| b.1 < 0.0) || at.buckets.windows(2).any(|w| w[1].1 < w[0].1) {
        return None;
    }
    let count = match (at.count, at.buckets.last()) {
        (Some(c), _) => c,
        (None, Some(b)) => b.1,
        (None, None) => 0.0,
    };
    if at.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        at.buckets.push((f64::INFINITY, count));
    }
    if at.buckets.last().map(|b| b.1) != Some(count) {
        return None;
    }
    let mut prev = 0.0;
    let buckets: Vec<(i32, f64)> = at
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let c = b.1 - prev;
            prev = b.1;
            (i as i32, c)
        })
        .filter(|b| b.1 != 0.0)
        .collect();
    let (positive_spans, positive_buckets) = spans_of(&buckets);
    Some(FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count,
        sum: at.sum,
        positive_spans,
        positive_buckets,
        custom_values: at.buckets[..at.buckets.len() - 1]
            .iter()
            .map(|b| b.0)
            .collect(),
        ..FloatHistogram::default()
    })
}

struct ClassicParts {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
}

/// Absolute bucket counts from the deltas an integer histogram is exchanged in (the
/// protobuf exposition, remote write): each count is the previous one plus its delta.
pub fn counts_from_deltas(deltas: &[i64]) -> Vec<f64> {
    let mut current = 0i64;
    deltas
        .iter()
        .map(|d| {
            current = current.wrapping_add(*d);
            current as f64
        })
        .collect()
}

/// The deltas of integer bucket counts, the inverse of [`counts_from_deltas`].
pub fn deltas_from_counts(counts: &[f64]) -> Vec<i64> {
    let mut previous = 0i64;
    counts
        .iter()
        .map(|&c| {
            let c = c as i64;
            let d = c.wrapping_sub(previous);
            previous = c;
            d
        })
        .collect()
}

/// The upper bound of exponential bucket `idx` of `schema` (Prometheus's
/// `getBoundExponential`, the last finite bucket ending at `f64::MAX`).
pub fn exponential_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = i64::from(idx) << -schema;
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = (f64::from(frac_idx) / f64::from(1 << schema)).exp2() / 2.0;
    let exp = i64::from(idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

fn ldexp(frac: f64, exp: i64) -> f64 {
    // Two steps keep 2^exp finite where frac·2^exp is.
    let half = (exp / 2) as i32;
    frac * 2f64.powi(half) * 2f64.powi((exp - i64::from(half)) as i32)
}

/// The index of exponential bucket `idx` of `from` in the coarser schema `to`, as
/// Go computes Prometheus's `targetIdx` on `int32`s (wrapping; a shift by 32 or more
/// leaves the sign, as remote write's reserved schemas up to 52 may need).
pub fn target_index(idx: i32, from: i32, to: i32) -> i32 {
    let below = idx.wrapping_sub(1);
    let shift = u32::try_from(from.wrapping_sub(to)).unwrap_or(0);
    below
        .checked_shr(shift)
        .unwrap_or(below >> 31)
        .wrapping_add(1)
}

/// Adds `(index, count)` lists sorted by index (`sign` scales `b`), keeping every
/// index of either.
fn merge(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + sign * y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push((y.0, sign * y.1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Buckets of `from` merged into the coarser schema `to`.
fn reduce(buckets: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(buckets.len());
    for &(idx, c) in buckets {
        let t = target_index(idx, from, to);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

impl FloatHistogram {
    /// Whether every count (the count, the zero count, each bucket) is a whole number
    /// from 0 to 2^53: such a histogram can be exchanged as an integer histogram (the
    /// protobuf exposition, remote write), as client libraries expose them.
    pub fn has_whole_counts(&self) -> bool {
        let whole = |v: f64| (0.0..9_007_199_254_740_992.0).contains(&v) && v.fract() == 0.0;
        whole(self.count)
            && whole(self.zero_count)
            && self
                .positive_buckets
                .iter()
                .chain(&self.negative_buckets)
                .all(|&v| whole(v))
    }

    /// Whether the buckets have custom bounds (schema -53).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// `(index, count)` of the positive buckets.
    pub fn positive(&self) -> Vec<(i32, f64)> {
        indexed(&self.positive_spans, &self.positive_buckets)
    }

    /// `(index, count)` of the negative buckets.
    pub fn negative(&self) -> Vec<(i32, f64)> {
        indexed(&self.negative_spans, &self.negative_buckets)
    }

    fn set_positive(&mut self, buckets: &[(i32, f64)]) {
        (self.positive_spans, self.positive_buckets) = spans_of(buckets);
    }

    fn set_negative(&mut self, buckets: &[(i32, f64)]) {
        (self.negative_spans, self.negative_buckets) = spans_of(buckets);
    }

    /// The upper bound of bucket `idx` (custom: `custom_values[idx]`, +Inf past the
    /// last, -Inf at -1).
    pub fn bound(&self, idx: i32) -> f64 {
        if self.uses_custom_buckets() {
            return match idx {
                -1 => f64::NEG_INFINITY,
                i if i as usize >= self.custom_values.len() => f64::INFINITY,
                i if i < -1 => f64::NEG_INFINITY,
                i => self.custom_values[i as usize],
            };
        }
        exponential_bound(idx, self.schema)
    }

    /// Lowers an exponential histogram's resolution to schema `to` (no-op unless `to`
    /// is below the current schema): neighbouring buckets merge as Prometheus's
    /// `ReduceResolution` merges them.
    pub fn reduce_resolution(&mut self, to: i32) {
        if self.uses_custom_buckets() || to >= self.schema {
            return;
        }
        let p = reduce(&self.positive(), self.schema, to);
        let n = reduce(&self.negative(), self.schema, to);
        self.set_positive(&p);
        self.set_negative(&n);
        self.schema = to;
    }

    /// Drops the buckets whose count is zero (Prometheus's `Compact(0)`).
    pub fn compact(&mut self) {
        let keep = |b: &Vec<(i32, f64)>| -> Vec<(i32, f64)> {
            b.iter().copied().filter(|b| b.1 != 0.0).collect()
        };
        let (p, n) = (keep(&self.positive()), keep(&self.negative()));
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Every bucket with its bounds, from the lowest: negative buckets, the zero
    /// bucket if it has observations, positive buckets (Prometheus's
    /// `AllBucketIterator`, bounds clamped to the zero threshold).
    pub fn all_buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        let zt = self.zero_threshold;
        for (idx, count) in self.negative().into_iter().rev() {
            let mut b = Bucket {
                lower: -self.bound(idx),
                upper: -self.bound(idx.wrapping_sub(1)),
                count,
                index: idx,
            };
            if b.upper < 0.0 && b.upper > -zt {
                b.upper = -zt;
            }
            out.push(b);
        }
        if !self.uses_custom_buckets() && self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -zt,
                upper: zt,
                count: self.zero_count,
                index: 0,
            });
        }
        for (idx, count) in self.positive() {
            let mut b = Bucket {
                lower: self.bound(idx.wrapping_sub(1)),
                upper: self.bound(idx),
                count,
                index: idx,
            };
            if b.lower > 0.0 && b.lower < zt {
                b.lower = zt;
            }
            out.push(b);
        }
        out
    }

    /// Scales counts, sum and buckets by `factor` (a negative factor makes it a gauge).
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|c| *c *= factor);
        self.negative_buckets.iter_mut().for_each(|c| *c *= factor);
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Divides like [`FloatHistogram::mul`]; dividing by 0 removes every bucket.
    pub fn div(&mut self, scalar: f64) {
        self.zero_count /= scalar;
        self.count /= scalar;
        self.sum /= scalar;
        if scalar == 0.0 {
            self.positive_spans.clear();
            self.negative_spans.clear();
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|c| *c /= scalar);
        self.negative_buckets.iter_mut().for_each(|c| *c /= scalar);
        if scalar < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Removes the observations above `bound` (`keep_below`, PromQL's `h </ bound`) or
    /// below it (`h >/ bound`), as Prometheus's `TrimBuckets` does: a bucket wholly on
    /// the kept side stays, one wholly on the other side empties, and one the bound
    /// cuts keeps the share on the kept side (linear within a custom bucket, on a log
    /// scale within an exponential one; see [`trimmed_bucket`] for buckets reaching
    /// ±Inf). The zero bucket is cut linearly, over its half on the only side that
    /// has buckets, if one side has none. When anything was removed, the count and
    /// sum are recomputed from the kept buckets (each bucket's observations taken at
    /// the middle of its kept part: arithmetic for custom buckets and the zero
    /// bucket, geometric for exponential ones) and the result is compacted;
    /// otherwise it is left as it was.
    pub fn trim(&mut self, bound: f64, keep_below: bool) {
        let linear = self.uses_custom_buckets();
        let (mut count, mut sum, mut changed) = (0.0, 0.0, false);
        let (mut has_positive, mut has_negative) = (false, false);
        for positive in [true, false] {
            let indexes: Vec<i32> = if positive {
                self.positive()
            } else {
                self.negative()
            }
            .into_iter()
            .map(|(idx, _)| idx)
            .collect();
            for (i, idx) in indexes.into_iter().enumerate() {
                let c = if positive {
                    self.positive_buckets[i]
                } else {
                    self.negative_buckets[i]
                };
                if c == 0.0 {
                    continue;
                }
                let (lower, upper) = if positive {
                    has_positive = true;
                    (self.bound(idx.wrapping_sub(1)), self.bound(idx))
                } else {
                    has_negative = true;
                    (-self.bound(idx), -self.bound(idx.wrapping_sub(1)))
                };
                let b = Bucket {
                    lower,
                    upper,
                    count: c,
                    index: idx,
                };
                let wholly_kept = if keep_below {
                    upper <= bound
                } else {
                    lower >= bound
                };
                let cut = if keep_below {
                    lower < bound
                } else {
                    upper > bound
                };
                let (kept, middle) = if wholly_kept {
                    (c, kept_middle(lower, upper, positive, linear))
                } else if cut {
                    trimmed_bucket(&b, bound, keep_below, positive, linear)
                } else {
                    (0.0, 0.0)
                };
                count += kept;
                sum += kept * middle;
                if kept != c {
                    changed = true;
                    if positive {
                        self.positive_buckets[i] = kept;
                    } else {
                        self.negative_buckets[i] = kept;
                    }
                }
            }
        }
        if self.zero_count > 0.0 {
            let mut lower = -self.zero_threshold;
            let mut upper = self.zero_threshold;
            if has_negative && !has_positive {
                upper = 0.0;
            }
            if has_positive && !has_negative {
                lower = 0.0;
            }
            let c = self.zero_count;
            let (kept, middle) = match keep_below {
                true if bound <= lower => (0.0, 0.0),
                true if bound >= upper => (c, (lower + upper) / 2.0),
                true => (c * (bound - lower) / (upper - lower), (lower + bound) / 2.0),
                false if bound <= lower => (c, (lower + upper) / 2.0),
                false if bound >= upper => (0.0, 0.0),
                false => (c * (upper - bound) / (upper - lower), (bound + upper) / 2.0),
            };
            if kept != c {
                self.zero_count = kept;
                changed = true;
            }
            sum += middle * kept;
            count += kept;
        }
        if changed {
            self.count = count;
            self.sum = sum;
            self.compact();
        }
    }

    /// Adds `other` (Prometheus's `Add`), compacted.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<Combined, CombineError> {
        self.combine(other, 1.0)
    }

    /// Subtracts `other` (Prometheus's `Sub`), compacted.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<Combined, CombineError> {
        self.combine(other, -1.0)
    }

    fn combine(&mut self, other: &FloatHistogram, sign: f64) -> Result<Combined, CombineError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(CombineError::MixedSchemas);
        }
        let mut done = Combined {
            counter_reset_collision: self.adjust_counter_reset(other),
            ..Combined::default()
        };
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        if self.uses_custom_buckets() {
            let mut theirs = other.positive();
            if self.custom_values != other.custom_values {
                done.custom_bounds_reconciled = true;
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|b| other.custom_values.contains(b))
                    .collect();
                let mine = Self::rebucket_custom(&self.positive(), &self.custom_values, &common);
                self.set_positive(&mine);
                theirs = Self::rebucket_custom(&theirs, &other.custom_values, &common);
                self.custom_values = common;
            }
            let p = merge(&self.positive(), &theirs, sign);
            self.set_positive(&p);
            self.compact();
            return Ok(done);
        }
        let mut other = other.clone();
        self.reconcile_zero_buckets(&mut other);
        self.zero_count += sign * other.zero_count;
        let schema = self.schema.min(other.schema);
        let (mut mp, mut mn) = (self.positive(), self.negative());
        let (mut tp, mut tn) = (other.positive(), other.negative());
        if self.schema > schema {
            mp = reduce(&mp, self.schema, schema);
            mn = reduce(&mn, self.schema, schema);
        }
        if other.schema > schema {
            tp = reduce(&tp, other.schema, schema);
            tn = reduce(&tn, other.schema, schema);
        }
        self.schema = schema;
        self.set_positive(&merge(&mp, &tp, sign));
        self.set_negative(&merge(&mn, &tn, sign));
        self.compact();
        Ok(done)
    }

    /// Custom buckets moved to the bounds `to` (a subset of `from`): each bucket goes to
    /// the first bound of `to` at or above its own upper bound.
    fn rebucket_custom(buckets: &[(i32, f64)], from: &[f64], to: &[f64]) -> Vec<(i32, f64)> {
        let mut out: Vec<(i32, f64)> = Vec::new();
        for &(idx, c) in buckets {
            let upper = from.get(idx as usize).copied().unwrap_or(f64::INFINITY);
            let t = to.iter().position(|b| *b >= upper).unwrap_or(to.len()) as i32;
            match out.last_mut() {
                Some(last) if last.0 == t => last.1 += c,
                _ => out.push((t, c)),
            }
        }
        out
    }

    /// Prometheus's `adjustCounterReset`: the hint of a sum; `true` on a collision.
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        match (self.counter_reset_hint, other.counter_reset_hint) {
            (a, b) if a == b => false,
            (Gauge, _) => false,
            (_, Gauge) => {
                self.counter_reset_hint = Gauge;
                false
            }
            (Unknown, _) => false,
            (_, Unknown) => {
                self.counter_reset_hint = Unknown;
                false
            }
            _ => {
                self.counter_reset_hint = Unknown;
                true
            }
        }
    }

    /// The zero count this histogram would have with a zero threshold of at least
    /// `threshold`, and the threshold actually needed (moved up to the end of a
    /// populated bucket it falls in). Prometheus's `zeroCountForLargerThreshold`.
    fn zero_count_for_larger_threshold(&self, mut threshold: f64) -> (f64, f64) {
        if threshold == self.zero_threshold {
            return (self.zero_count, threshold);
        }
        'outer: loop {
            let mut zero = self.zero_count;
            for (idx, c) in self.positive() {
                let (lower, upper) = (self.bound(idx.wrapping_sub(1)), self.bound(idx));
                if lower >= threshold {
                    break;
                }
                zero += c;
                if upper > threshold {
                    if c != 0.0 {
                        threshold = upper;
                    }
                    break;
                }
            }
            for (idx, c) in self.negative() {
                let (lower, upper) = (-self.bound(idx), -self.bound(idx.wrapping_sub(1)));
                if upper <= -threshold {
                    break;
                }
                zero += c;
                if lower < -threshold {
                    if c != 0.0 {
                        threshold = -lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zero, threshold);
        }
    }

    /// Widens the zero bucket to `threshold` (a bucket boundary), moving the buckets
    /// inside it into the zero count.
    fn widen_zero_bucket(&mut self, threshold: f64) {
        let (zero, threshold) = self.zero_count_for_larger_threshold(threshold);
        self.zero_count = zero;
        self.zero_threshold = threshold;
        let p: Vec<(i32, f64)> = self
            .positive()
            .into_iter()
            .filter(|(idx, _)| self.bound(idx.wrapping_sub(1)) >= threshold)
            .collect();
        let n: Vec<(i32, f64)> = self
            .negative()
            .into_iter()
            .filter(|(idx, _)| self.bound(idx.wrapping_sub(1)) >= threshold)
            .collect();
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Gives both histograms the same zero bucket, the wider one (Prometheus's
    /// `reconcileZeroBuckets`).
    fn reconcile_zero_buckets(&mut self, other: &mut FloatHistogram) {
        while self.zero_threshold != other.zero_threshold {
            if self.zero_threshold > other.zero_threshold {
                other.widen_zero_bucket(self.zero_threshold);
            }
            if other.zero_threshold > self.zero_threshold {
                self.widen_zero_bucket(other.zero_threshold);
            }
        }
    }

    /// Whether this sample, following `previous`, is a counter reset (Prometheus's
    /// `DetectReset`: the hint if it says, else any count or bucket that went down).
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if self.custom_values != previous.custom_values {
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|b| previous.custom_values.contains(b))
                    .collect();
                let cur = Self::rebucket_custom(&self.positive(), &self.custom_values, &common);
                let prev =
                    Self::rebucket_custom(&previous.positive(), &previous.custom_values, &common);
                return buckets_went_down(&cur, &prev);
            }
        } else if previous.uses_custom_buckets() {
            return true;
        }
        if self.schema > previous.schema || self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zero, threshold) = previous.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold || self.zero_count < prev_zero {
            return true;
        }
        let above = |h: &FloatHistogram, b: Vec<(i32, f64)>| -> Vec<(i32, f64)> {
            let b = if h.schema > self.schema && !h.uses_custom_buckets() {
                reduce(&b, h.schema, self.schema)
            } else {
                b
            };
            b.into_iter()
                .filter(|(idx, _)| {
                    self.uses_custom_buckets()
                        || exponential_bound(*idx, self.schema) > self.zero_threshold
                })
                .collect()
        };
        buckets_went_down(
            &above(self, self.positive()),
            &above(previous, previous.positive()),
        ) || buckets_went_down(
            &above(self, self.negative()),
            &above(previous, previous.negative()),
        )
    }

    /// Recomputes counts, sum, zero count and buckets as the Kahan-compensated sum of
    /// `hs` taken to this histogram's layout (its schema, zero threshold and custom
    /// bounds, which [`FloatHistogram::add`]ing them produced), as Prometheus's
    /// `KahanAdd` sums them; compacted.
    pub fn kahan_recount(&mut self, hs: &[&FloatHistogram]) {
        use crate::promql::eval::math::kahan_inc;
        use std::collections::BTreeMap;
        type Acc = (f64, f64);
        let inc = |acc: &mut Acc, v: f64| *acc = kahan_inc(v, acc.0, acc.1);
        let (mut count, mut sum, mut zero): (Acc, Acc, Acc) = Default::default();
        let mut pos: BTreeMap<i32, Acc> = BTreeMap::new();
        let mut neg: BTreeMap<i32, Acc> = BTreeMap::new();
        for h in hs {
            let h = self.in_layout(h);
            inc(&mut count, h.count);
            inc(&mut sum, h.sum);
            inc(&mut zero, h.zero_count);
            for (i, c) in h.positive() {
                inc(pos.entry(i).or_default(), c);
            }
            for (i, c) in h.negative() {
                inc(neg.entry(i).or_default(), c);
            }
        }
        let total = |a: Acc| a.0 + a.1;
        self.count = total(count);
        self.sum = total(sum);
        self.zero_count = total(zero);
        let p: Vec<(i32, f64)> = pos.into_iter().map(|(i, a)| (i, total(a))).collect();
        let n: Vec<(i32, f64)> = neg.into_iter().map(|(i, a)| (i, total(a))).collect();
        self.set_positive(&p);
        self.set_negative(&n);
        self.compact();
    }

    /// `h` taken to this histogram's layout: its zero threshold (if wider), schema (if
    /// lower) or custom bounds (a subset of `h`'s).
    fn in_layout(&self, h: &FloatHistogram) -> FloatHistogram {
        let mut h = h.clone();
        if !self.uses_custom_buckets() {
            if h.zero_threshold < self.zero_threshold {
                h.widen_zero_bucket(self.zero_threshold);
            }
            if h.schema > self.schema {
                let (p, n) = (h.positive(), h.negative());
                h.set_positive(&reduce(&p, h.schema, self.schema));
                h.set_negative(&reduce(&n, h.schema, self.schema));
            }
        } else if h.custom_values != self.custom_values {
            let p = Self::rebucket_custom(&h.positive(), &h.custom_values, &self.custom_values);
            h.set_positive(&p);
        }
        h
    }

    /// Recomputes counts, sum, zero count and buckets as the mean of `hs` taken to this
    /// histogram's layout (which [`FloatHistogram::add`]ing them produced), as
    /// Prometheus's `avg` and `avg_over_time` compute it: a Kahan-compensated sum
    /// divided by their number, switching to a compensated incremental mean once the
    /// running sum overflows (any of its counts becomes infinite); compacted.
    pub fn kahan_mean(&mut self, hs: &[&FloatHistogram]) {
        use std::collections::{BTreeMap, BTreeSet};
        let laid: Vec<FloatHistogram> = hs.iter().map(|h| self.in_layout(h)).collect();
        let indices = |side: fn(&FloatHistogram) -> Vec<(i32, f64)>| -> Vec<i32> {
            let set: BTreeSet<i32> = laid.iter().flat_map(side).map(|b| b.0).collect();
            set.into_iter().collect()
        };
        let (pos, neg) = (
            indices(FloatHistogram::positive),
            indices(FloatHistogram::negative),
        );
        // Each histogram as one vector: count, sum, zero count, then its buckets.
        let vectors: Vec<Vec<f64>> = laid
            .iter()
            .map(|h| {
                let (p, n): (BTreeMap<i32, f64>, BTreeMap<i32, f64>) = (
                    h.positive().into_iter().collect(),
                    h.negative().into_iter().collect(),
                );
                let mut v = vec![h.count, h.sum, h.zero_count];
                v.extend(pos.iter().map(|i| p.get(i).copied().unwrap_or(0.0)));
                v.extend(neg.iter().map(|i| n.get(i).copied().unwrap_or(0.0)));
                v
            })
            .collect();
        let mean = kahan_mean_of(&vectors);
        self.count = mean[0];
        self.sum = mean[1];
        if !self.uses_custom_buckets() {
            self.zero_count = mean[2];
        }
        let (p, n) = mean[3..].split_at(pos.len());
        let p: Vec<(i32, f64)> = pos.iter().copied().zip(p.iter().copied()).collect();
        let n: Vec<(i32, f64)> = neg.iter().copied().zip(n.iter().copied()).collect();
        self.set_positive(&p);
        self.set_negative(&n);
        self.compact();
    }

    /// Prometheus's `FloatHistogram.String()`: count, sum and every bucket with
    /// observations, lowest first, as `[lower,upper):count` with the bounds'
    /// inclusiveness (`{count:20, sum:10, [-2,-1):2, [-0.001,0.001]:2, (1,2]:2}`);
    /// the label value `count_values` gives a histogram.
    pub fn go_string(&self) -> String {
        use crate::go_float::format_g as g;
        use std::fmt::Write;
        let mut out = format!("{{count:{}, sum:{}", g(self.count), g(self.sum));
        let mut bucket = |lower: f64, upper: f64, count: f64, closed: (bool, bool)| {
            let (open, close) = (
                if closed.0 { '[' } else { '(' },
                if closed.1 { ']' } else { ')' },
            );
            let _ = write!(out, ", {open}{},{}{close}:{}", g(lower), g(upper), g(count));
        };
        for (idx, count) in self.negative().into_iter().rev() {
            let (lower, upper) = (-self.bound(idx), -self.bound(idx.wrapping_sub(1)));
            if count != 0.0 {
                bucket(lower, upper, count, (lower < 0.0, upper > 0.0));
            }
        }
        if self.zero_count != 0.0 && !self.uses_custom_buckets() {
            let zt = self.zero_threshold;
            bucket(-zt, zt, self.zero_count, (true, true));
        }
        for (idx, count) in self.positive() {
            let (lower, upper) = (self.bound(idx.wrapping_sub(1)), self.bound(idx));
            let closed = if self.uses_custom_buckets() {
                (idx == 0, true)
            } else {
                (lower < 0.0, upper > 0.0)
            };
            if count != 0.0 {
                bucket(lower, upper, count, closed);
            }
        }
        out.push('}');
        out
    }

    /// Equality as Prometheus's test runner judges it: compacted, counts within a
    /// relative `eps`, schema, zero threshold and bucket layout exact, custom bounds
    /// equal; the counter-reset hint only if `hint` (the expectation named one).
    pub fn same(&self, other: &FloatHistogram, hint: bool, eq: impl Fn(f64, f64) -> bool) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.compact();
        b.compact();
        let buckets_eq = |x: &[(i32, f64)], y: &[(i32, f64)]| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.0 == q.0 && eq(p.1, q.1))
        };
        a.schema == b.schema
            && eq(a.count, b.count)
            && eq(a.sum, b.sum)
            && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
            && a.zero_threshold == b.zero_threshold
            && eq(a.zero_count, b.zero_count)
            && buckets_eq(&a.positive(), &b.positive())
            && buckets_eq(&a.negative(), &b.negative())
            && (!hint || a.counter_reset_hint == b.counter_reset_hint)
    }
}

/// Whether some bucket of `prev` lost observations in `cur` (sorted by index; a bucket
/// missing from `cur` counts as empty).
fn buckets_went_down(cur: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    prev.iter().any(|&(idx, p)| {
        let c = cur
            .binary_search_by_key(&idx, |b| b.0)
            .map_or(0.0, |i| cur[i].1);
        c < p
    })
}

/// Where [`FloatHistogram::trim`] takes the observations of a bucket's kept part
/// `lower..upper` to be: an infinite end gives the finite one (half of it for a
/// positive upper end reached from -Inf), both infinite give 0.
fn kept_middle(lower: f64, upper: f64, positive: bool, linear: bool) -> f64 {
    match (lower.is_infinite(), upper.is_infinite()) {
        (true, true) => 0.0,
        (true, false) if upper > 0.0 => upper / 2.0,
        (true, false) => upper,
        (false, true) => lower,
        _ if linear => (lower + upper) / 2.0,
        _ => {
            let g = (lower * upper).abs().sqrt();
            if positive {
                g
            } else {
                -g
            }
        }
    }
}

/// The kept count and the middle of the kept part of bucket `b`, which `bound` cuts
/// (see [`FloatHistogram::trim`]).
fn trimmed_bucket(
    b: &Bucket,
    bound: f64,
    keep_below: bool,
    positive: bool,
    linear: bool,
) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket(b, bound, keep_below);
    }
    let below = if bound <= b.lower {
        0.0
    } else if bound >= b.upper {
        b.count
    } else {
        b.count * b.fraction_below(bound, linear)
    };
    if keep_below {
        (below, kept_middle(b.lower, bound, positive, linear))
    } else {
        (
            b.count - below,
            kept_middle(bound, b.upper, positive, linear),
        )
    }
}

/// [`trimmed_bucket`] for a bucket reaching -Inf or +Inf (custom buckets: the first
/// and the last), whose observations may lie anywhere on that side. Prometheus's
/// cases: from -Inf to a positive finite upper bound, the bucket is cut linearly as
/// if it started at 0; from -Inf to an upper bound at or below 0, `</` keeps it
/// whole (its observations taken at the bound); up to +Inf, `>/` keeps it whole
/// when the bound is at or above its lower bound (taken at the bound); every other
/// cut removes the bucket.
fn infinite_bucket(b: &Bucket, bound: f64, keep_below: bool) -> (f64, f64) {
    let finite = |v: f64| if v.is_infinite() { 0.0 } else { v };
    if b.lower == f64::NEG_INFINITY {
        let finite_positive_upper = b.upper > 0.0 && b.upper.is_finite();
        return if keep_below {
            if bound >= b.upper {
                (b.count, 0.0)
            } else if bound > 0.0 && finite_positive_upper {
                (b.count * bound / b.upper, bound / 2.0)
            } else if b.upper <= 0.0 {
                (b.count, bound)
            } else {
                (0.0, finite(b.upper))
            }
        } else if bound <= b.lower {
            (b.count, 0.0)
        } else if bound >= 0.0 && b.upper > bound && finite_positive_upper {
            (b.count * (1.0 - bound / b.upper), (bound + b.upper) / 2.0)
        } else {
            (0.0, finite(b.upper))
        };
    }
    if !keep_below && bound >= b.lower {
        (b.count, bound)
    } else {
        (0.0, finite(b.lower))
    }
}

/// The component-wise mean of equally long vectors `vs` (at least one) as Prometheus
/// averages histograms: Kahan-compensated direct mean while no component of the
/// running sum overflows, from then on a compensated incremental mean.
fn kahan_mean_of(vs: &[Vec<f64>]) -> Vec<f64> {
    use crate::promql::eval::math::kahan_inc;
    let mut sum = vs[0].clone();
    let mut c = vec![0.0; sum.len()];
    let mut mean: Option<Vec<f64>> = None;
    for (i, h) in vs.iter().enumerate().skip(1) {
        let count = (i + 1) as f64;
        let mean = match mean.as_mut() {
            Some(mean) => mean,
            None => {
                let (mut s2, mut c2) = (sum.clone(), c.clone());
                for k in 0..h.len() {
                    (s2[k], c2[k]) = kahan_inc(h[k], s2[k], c2[k]);
                }
                if !s2.iter().any(|v| v.is_infinite()) {
                    (sum, c) = (s2, c2);
                    continue;
                }
                c.iter_mut().for_each(|v| *v /= count - 1.0);
                mean.insert(sum.iter().map(|v| v / (count - 1.0)).collect())
            }
        };
        let q = (count - 1.0) / count;
        for k in 0..h.len() {
            c[k] *= q;
            mean[k] *= q;
            (mean[k], c[k]) = kahan_inc(h[k] / count, mean[k], c[k]);
        }
    }
    let n = vs.len() as f64;
    match mean {
        Some(mean) => mean.iter().zip(&c).map(|(m, c)| m + c).collect(),
        None => sum.iter().zip(&c).map(|(s, c)| s / n + c / n).collect(),
    }
}

impl std::fmt::Display for FloatHistogram {
    /// The test-script notation (`{{schema:0 count:4 sum:5 buckets:[1 2 1]}}`), spans
    /// written as an offset and zero-filled gaps.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{{{schema:{} count:{} sum:{}",
            self.schema, self.count, self.sum
        )?;
        if self.zero_threshold != 0.0 || self.zero_count != 0.0 {
            write!(
                f,
                " z_bucket:{} z_bucket_w:{}",
                self.zero_count, self.zero_threshold
            )?;
        }
        for (name, off, b) in [
            ("", "offset", self.positive()),
            ("n_", "n_offset", self.negative()),
        ] {
            if let (Some(first), Some(last)) = (b.first(), b.last()) {
                let mut dense = vec![0.0; (last.0 - first.0 + 1) as usize];
                b.iter()
                    .for_each(|(i, c)| dense[(i - first.0) as usize] = *c);
                let items: Vec<String> = dense.iter().map(f64::to_string).collect();
                write!(f, " {off}:{} {name}buckets:[{}]", first.0, items.join(" "))?;
            }
        }
        if self.uses_custom_buckets() {
            let v: Vec<String> = self.custom_values.iter().map(f64::to_string).collect();
            write!(f, " custom_values:[{}]", v.join(" "))?;
        }
        write!(f, "}}}}")
    }
}

/// Which part of a histogram an [`InvalidHistogram`] is about, as Prometheus prefixes
/// its validation errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramPart {
    /// `positive side: `.
    Positive,
    /// `negative side: `.
    Negative,
    /// `custom buckets: ` (the bounds and spans of schema -53).
    Custom,
}

impl HistogramPart {
    fn prefix(self) -> &'static str {
        match self {
            HistogramPart::Positive => "positive side: ",
            HistogramPart::Negative => "negative side: ",
            HistogramPart::Custom => "custom buckets: ",
        }
    }
}

/// Why Prometheus's `Validate` (model/histogram: `Histogram.Validate`,
/// `FloatHistogram.Validate`, called by the TSDB head on every appended histogram)
/// refuses a histogram. Displayed as Prometheus words it (its wrapped error texts),
/// counts in Go's `%v` (an integer histogram's as integers).
#[derive(Clone, Debug, PartialEq)]
pub enum InvalidHistogram {
    /// A span after the first (any span with custom buckets) has a negative offset.
    SpanNegativeOffset {
        /// Where.
        part: HistogramPart,
        /// 1-based.
        span: usize,
        /// The offset.
        offset: i32,
    },
    /// The spans' lengths do not add up to the number of bucket counts.
    SpansBucketsMismatch {
        /// Where.
        part: HistogramPart,
        /// The spans' lengths summed.
        needed: u64,
        /// Bucket counts given.
        have: usize,
    },
    /// A bucket count below zero (`bucket` 1-based; 0: the zero bucket).
    NegativeBucket {
        /// Where (`None`: the zero bucket).
        part: Option<HistogramPart>,
        /// 1-based; 0 for the zero bucket.
        bucket: usize,
        /// The count as Prometheus prints it.
        count: String,
    },
    /// A float histogram's count below zero.
    NegativeCount(String),
    /// An integer histogram's count below the buckets' sum (sum NaN).
    CountNotBigEnough {
        /// Zero bucket and buckets summed.
        in_buckets: u64,
        /// The count.
        count: u64,
    },
    /// An integer histogram's count other than the buckets' sum (sum not NaN).
    CountMismatch {
        /// Zero bucket and buckets summed.
        in_buckets: u64,
        /// The count.
        count: u64,
    },
    /// A schema neither exponential (-4..=8) nor custom (-53).
    InvalidSchema(i32),
    /// A NaN custom bound.
    CustomBoundNaN,
    /// Custom bounds not strictly increasing (Go's `%f` of both).
    CustomBoundsNotIncreasing {
        /// The bound before.
        previous: f64,
        /// The bound not above it.
        current: f64,
    },
    /// A custom bound of +Inf (implied, never given).
    CustomBoundInfinite,
    /// Fewer custom bounds than the spans reach.
    CustomBoundsTooFew {
        /// Bounds given.
        bounds: usize,
        /// Offsets and lengths summed.
        span_length: i64,
    },
    /// Custom buckets with a zero count.
    CustomZeroCount,
    /// Custom buckets with a zero threshold.
    CustomZeroThreshold,
    /// Custom buckets with negative spans.
    CustomNegativeSpans,
    /// Custom buckets with negative buckets.
    CustomNegativeBuckets,
    /// Custom bounds on an exponential schema.
    ExponentialCustomBounds,
}

impl std::fmt::Display for InvalidHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use InvalidHistogram::*;
        match self {
            SpanNegativeOffset { part, span, offset } => write!(
                f,
                "{}span number {span} with offset {offset}: histogram has a span whose offset is negative",
                part.prefix()
            ),
            SpansBucketsMismatch { part, needed, have } => write!(
                f,
                "{}spans need {needed} buckets, have {have} buckets: histogram spans specify different number of buckets than provided",
                part.prefix()
            ),
            NegativeBucket { part, bucket, count } => {
                let part = part.map_or("", HistogramPart::prefix);
                let bucket = match bucket {
                    0 => "zero bucket".to_string(),
                    n => format!("bucket number {n}"),
                };
                write!(f, "{part}{bucket} has observation count of {count}: histogram has a bucket whose observation count is negative")
            }
            NegativeCount(count) => write!(
                f,
                "observation count is  {count}: histogram's observation count is negative"
            ),
            CountNotBigEnough { in_buckets, count } => write!(
                f,
                "{in_buckets} observations found in buckets, but the Count field is {count}: histogram's observation count should be at least the number of observations found in the buckets"
            ),
            CountMismatch { in_buckets, count } => write!(
                f,
                "{in_buckets} observations found in buckets, but the Count field is {count}: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
            ),
            InvalidSchema(schema) => write!(
                f,
                "histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema {schema}"
            ),
            CustomBoundNaN => f.write_str("custom buckets: histogram custom bounds must not be NaN"),
            CustomBoundsNotIncreasing { previous, current } => write!(
                f,
                "custom buckets: previous bound is {} and current is {}: histogram custom bounds must be in strictly increasing order",
                go_f(*previous),
                go_f(*current)
            ),
            CustomBoundInfinite => f.write_str(
                "custom buckets: last +Inf bound must not be explicitly defined: histogram custom bounds must be finite",
            ),
            CustomBoundsTooFew { bounds, span_length } => write!(
                f,
                "custom buckets: only {bounds} custom bounds defined which is insufficient to cover total span length of {span_length}: histogram custom bounds are too few"
            ),
            CustomZeroCount => f.write_str("custom buckets: must have zero count of 0"),
            CustomZeroThreshold => f.write_str("custom buckets: must have zero threshold of 0"),
            CustomNegativeSpans => f.write_str("custom buckets: must not have negative spans"),
            CustomNegativeBuckets => f.write_str("custom buckets: must not have negative buckets"),
            ExponentialCustomBounds => {
                f.write_str("histogram with exponential schema must not have custom bounds")
            }
        }
    }
}

impl std::error::Error for InvalidHistogram {}

/// Go's `%f`: six decimals, `+Inf`, `-Inf`, `NaN`.
fn go_f(v: f64) -> String {
    crate::go_float::special(v).map_or_else(|| format!("{v:.6}"), str::to_string)
}

/// Prometheus's `checkHistogramSpans`: no negative offset after the first span (with
/// `custom`, none at all), lengths adding up to `buckets`; returns the offsets and
/// lengths summed (for the custom bounds' check).
fn check_spans(
    part: HistogramPart,
    spans: &[Span],
    buckets: usize,
    custom: bool,
) -> Result<i64, InvalidHistogram> {
    let (mut needed, mut reach) = (0u64, 0i64);
    for (n, s) in spans.iter().enumerate() {
        if (n > 0 || custom) && s.offset < 0 {
            return Err(InvalidHistogram::SpanNegativeOffset {
                part,
                span: n + 1,
                offset: s.offset,
            });
        }
        needed += u64::from(s.length);
        reach += i64::from(s.length) + i64::from(s.offset);
    }
    if needed != buckets as u64 {
        return Err(InvalidHistogram::SpansBucketsMismatch {
            part,
            needed,
            have: buckets,
        });
    }
    Ok(reach)
}

/// Prometheus's `checkHistogramBuckets`: no negative count; returns the counts summed
/// as Go's `uint64` (wrapping; used for integer histograms only).
fn check_buckets(
    part: HistogramPart,
    buckets: &[f64],
    integer: bool,
) -> Result<u64, InvalidHistogram> {
    let mut whole = 0u64;
    for (i, &c) in buckets.iter().enumerate() {
        if c < 0.0 {
            return Err(InvalidHistogram::NegativeBucket {
                part: Some(part),
                bucket: i + 1,
                count: go_v(c, integer),
            });
        }
        whole = whole.wrapping_add(c as u64);
    }
    Ok(whole)
}

/// Go's `%v` of a count: an `int64`'s digits or a `float64`'s shortest `%g`.
fn go_v(v: f64, integer: bool) -> String {
    if integer {
        (v as i64).to_string()
    } else {
        crate::go_float::format_g(v)
    }
}

impl FloatHistogram {
    /// The part of [`FloatHistogram::validate`] an exponential histogram's buckets
    /// must pass before they can be merged into a coarser schema (Prometheus's
    /// `checkHistogramSpans`, positive side then negative): the spans describe exactly
    /// the bucket counts given, none after the first with a negative offset.
    pub fn validate_spans(&self) -> Result<(), InvalidHistogram> {
        use HistogramPart::{Negative, Positive};
        check_spans(
            Positive,
            &self.positive_spans,
            self.positive_buckets.len(),
            false,
        )?;
        check_spans(
            Negative,
            &self.negative_spans,
            self.negative_buckets.len(),
            false,
        )?;
        Ok(())
    }

    /// Prometheus's `Validate` (model/histogram/histogram.go and float_histogram.go),
    /// which the TSDB head runs on every appended histogram: `integer` for one
    /// received with integer counts (`Histogram`: its count must equal the zero bucket's
    /// and the buckets' counts summed, or be at least that when the sum is NaN), else a
    /// `FloatHistogram` (no negative count or zero count). Both: the schema is -4..=8
    /// or -53; spans describe exactly the bucket counts given, none after the first
    /// with a negative offset; no negative bucket count; custom buckets (-53) have
    /// finite, strictly increasing bounds enough for their spans (no negative offset
    /// at all), no zero bucket and no negative side; exponential ones no custom bounds.
    /// Integer counts are checked as the `f64`s they were read into (exact up to 2^53).
    pub fn validate(&self, integer: bool) -> Result<(), InvalidHistogram> {
        use HistogramPart::{Custom, Negative, Positive};
        let mut negative = 0u64;
        if self.uses_custom_buckets() {
            let mut previous = f64::NEG_INFINITY;
            for (i, &bound) in self.custom_values.iter().enumerate() {
                if bound.is_nan() {
                    return Err(InvalidHistogram::CustomBoundNaN);
                }
                if i > 0 && bound <= previous {
                    return Err(InvalidHistogram::CustomBoundsNotIncreasing {
                        previous,
                        current: bound,
                    });
                }
                previous = bound;
            }
            if previous == f64::INFINITY {
                return Err(InvalidHistogram::CustomBoundInfinite);
            }
            let reach = check_spans(
                Custom,
                &self.positive_spans,
                self.positive_buckets.len(),
                true,
            )?;
            if self.custom_values.len() as i64 + 1 < reach {
                return Err(InvalidHistogram::CustomBoundsTooFew {
                    bounds: self.custom_values.len(),
                    span_length: reach,
                });
            }
            if self.zero_count != 0.0 {
                return Err(InvalidHistogram::CustomZeroCount);
            }
            if self.zero_threshold != 0.0 {
                return Err(InvalidHistogram::CustomZeroThreshold);
            }
            if !self.negative_spans.is_empty() {
                return Err(InvalidHistogram::CustomNegativeSpans);
            }
            if !self.negative_buckets.is_empty() {
                return Err(InvalidHistogram::CustomNegativeBuckets);
            }
        } else if (-4..=8).contains(&self.schema) {
            self.validate_spans()?;
            negative = check_buckets(Negative, &self.negative_buckets, integer)?;
            if !integer && self.zero_count < 0.0 {
                return Err(InvalidHistogram::NegativeBucket {
                    part: None,
                    bucket: 0,
                    count: go_v(self.zero_count, false),
                });
            }
            if !self.custom_values.is_empty() {
                return Err(InvalidHistogram::ExponentialCustomBounds);
            }
        } else {
            return Err(InvalidHistogram::InvalidSchema(self.schema));
        }
        if !integer {
            if self.count < 0.0 {
                return Err(InvalidHistogram::NegativeCount(go_v(self.count, false)));
            }
            check_buckets(Positive, &self.positive_buckets, false)?;
            return Ok(());
        }
        let positive = check_buckets(Positive, &self.positive_buckets, true)?;
        let in_buckets = negative
            .wrapping_add(positive)
            .wrapping_add(self.zero_count as u64);
        let count = self.count as u64;
        if self.sum.is_nan() {
            if in_buckets > count {
                return Err(InvalidHistogram::CountNotBigEnough { in_buckets, count });
            }
        } else if in_buckets != count {
            return Err(InvalidHistogram::CountMismatch { in_buckets, count });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An integer-style histogram: `pos`/`neg` as (offset, length) spans and counts.
    fn raw(
        schema: i32,
        count: f64,
        sum: f64,
        pos: (&[(i32, u32)], &[f64]),
        neg: (&[(i32, u32)], &[f64]),
    ) -> FloatHistogram {
        let spans = |s: &[(i32, u32)]| {
            s.iter()
                .map(|&(offset, length)| Span { offset, length })
                .collect()
        };
        FloatHistogram {
            schema,
            count,
            sum,
            positive_spans: spans(pos.0),
            positive_buckets: pos.1.to_vec(),
            negative_spans: spans(neg.0),
            negative_buckets: neg.1.to_vec(),
            ..FloatHistogram::default()
        }
    }

    /// Prometheus's `Validate` cases, worded as Prometheus 2.42 answered them to a
    /// remote write request (the texts 3.x kept) and as model/histogram 3.x words
    /// the rules 2.42 did not have.
    #[test]
    fn validate_refuses_what_prometheus_refuses() {
        let none: (&[(i32, u32)], &[f64]) = (&[], &[]);
        let err = |h: &FloatHistogram, integer: bool| h.validate(integer).unwrap_err().to_string();
        let valid = raw(0, 3.0, 2.0, (&[(0, 2)], &[1.0, 2.0]), none);
        assert_eq!(valid.validate(true), Ok(()));
        assert_eq!(valid.validate(false), Ok(()));
        // A first span's offset may be negative.
        assert_eq!(
            raw(0, 3.0, 2.0, (&[(-3, 1), (2, 1)], &[1.0, 2.0]), none).validate(true),
            Ok(())
        );
        assert_eq!(
            err(&raw(0, 3.0, 2.0, (&[(0, 3)], &[1.0, 2.0]), none), true),
            "positive side: spans need 3 buckets, have 2 buckets: histogram spans specify different number of buckets than provided"
        );
        assert_eq!(
            err(&raw(0, 3.0, 2.0, none, (&[(0, 1)], &[1.0, 2.0])), true),
            "negative side: spans need 1 buckets, have 2 buckets: histogram spans specify different number of buckets than provided"
        );
        assert_eq!(
            err(&raw(0, 3.0, 2.0, (&[(0, 1), (-2, 1)], &[1.0, 2.0]), none), true),
            "positive side: span number 2 with offset -2: histogram has a span whose offset is negative"
        );
        assert_eq!(
            err(&raw(0, 0.0, 2.0, (&[(0, 2)], &[1.0, -1.0]), none), true),
            "positive side: bucket number 2 has observation count of -1: histogram has a bucket whose observation count is negative"
        );
        assert_eq!(
            err(&raw(0, 3.0, 2.0, (&[(0, 2)], &[1.0, -2.5]), none), false),
            "positive side: bucket number 2 has observation count of -2.5: histogram has a bucket whose observation count is negative"
        );
        assert_eq!(
            err(&raw(0, 1.0, f64::NAN, (&[(0, 2)], &[1.0, 2.0]), none), true),
            "3 observations found in buckets, but the Count field is 1: histogram's observation count should be at least the number of observations found in the buckets"
        );
        // NaN observations are counted in no bucket: a larger count is fine then.
        assert_eq!(
            raw(0, 5.0, f64::NAN, (&[(0, 2)], &[1.0, 2.0]), none).validate(true),
            Ok(())
        );
        assert_eq!(
            err(&raw(0, 5.0, 2.0, (&[(0, 2)], &[1.0, 2.0]), none), true),
            "3 observations found in buckets, but the Count field is 5: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
        );
        // Float histograms have no count rule but no negative count.
        assert_eq!(
            raw(0, 10.0, 2.0, (&[(0, 2)], &[1.0, 2.0]), none).validate(false),
            Ok(())
        );
        assert_eq!(
            err(&raw(0, -1.0, 2.0, none, none), false),
            "observation count is  -1: histogram's observation count is negative"
        );
        let mut zero = raw(0, 1.0, 2.0, none, none);
        zero.zero_count = -0.5;
        assert_eq!(
            err(&zero, false),
            "zero bucket has observation count of -0.5: histogram has a bucket whose observation count is negative"
        );
        for schema in [9, -5, 52, i32::MIN] {
            assert_eq!(
                err(&raw(schema, 0.0, 0.0, none, none), true),
                format!("histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema {schema}")
            );
        }
        let mut exp_bounds = raw(0, 0.0, 0.0, none, none);
        exp_bounds.custom_values = vec![1.0];
        assert_eq!(
            err(&exp_bounds, true),
            "histogram with exponential schema must not have custom bounds"
        );
    }

    #[test]
    fn validate_custom_buckets() {
        let none: (&[(i32, u32)], &[f64]) = (&[], &[]);
        let custom = |bounds: &[f64], spans: &[(i32, u32)], counts: &[f64]| {
            let mut h = raw(
                CUSTOM_BUCKETS_SCHEMA,
                counts.iter().sum(),
                1.0,
                (spans, counts),
                none,
            );
            h.custom_values = bounds.to_vec();
            h
        };
        let err = |h: &FloatHistogram| h.validate(true).unwrap_err().to_string();
        // Two bounds, three buckets (the last up to +Inf).
        assert_eq!(
            custom(&[1.0, 2.0], &[(0, 3)], &[1.0, 0.0, 2.0]).validate(true),
            Ok(())
        );
        assert_eq!(
            err(&custom(&[1.0, 1.0], &[(0, 1)], &[1.0])),
            "custom buckets: previous bound is 1.000000 and current is 1.000000: histogram custom bounds must be in strictly increasing order"
        );
        assert_eq!(
            err(&custom(&[1.0, f64::NAN], &[(0, 1)], &[1.0])),
            "custom buckets: histogram custom bounds must not be NaN"
        );
        assert_eq!(
            err(&custom(&[1.0, f64::INFINITY], &[(0, 1)], &[1.0])),
            "custom buckets: last +Inf bound must not be explicitly defined: histogram custom bounds must be finite"
        );
        assert_eq!(
            err(&custom(&[1.0], &[(-1, 1)], &[1.0])),
            "custom buckets: span number 1 with offset -1: histogram has a span whose offset is negative"
        );
        assert_eq!(
            err(&custom(&[1.0], &[(1, 2)], &[1.0, 1.0])),
            "custom buckets: only 1 custom bounds defined which is insufficient to cover total span length of 3: histogram custom bounds are too few"
        );
        assert_eq!(
            err(&custom(&[1.0], &[(0, 2)], &[1.0])),
            "custom buckets: spans need 2 buckets, have 1 buckets: histogram spans specify different number of buckets than provided"
        );
        let mut h = custom(&[1.0], &[(0, 1)], &[1.0]);
        h.zero_count = 1.0;
        assert_eq!(err(&h), "custom buckets: must have zero count of 0");
        let mut h = custom(&[1.0], &[(0, 1)], &[1.0]);
        h.zero_threshold = 0.1;
        assert_eq!(err(&h), "custom buckets: must have zero threshold of 0");
        let mut h = custom(&[1.0], &[(0, 1)], &[1.0]);
        h.negative_spans = vec![Span {
            offset: 0,
            length: 1,
        }];
        assert_eq!(err(&h), "custom buckets: must not have negative spans");
        let mut h = custom(&[1.0], &[(0, 1)], &[1.0]);
        h.negative_buckets = vec![1.0];
        assert_eq!(err(&h), "custom buckets: must not have negative buckets");
        // Extreme spans neither overflow nor panic.
        let wide = custom(&[1.0], &[(i32::MAX, u32::MAX), (i32::MAX, u32::MAX)], &[]);
        assert!(wide.validate(true).is_err());
        let wide = raw(
            0,
            0.0,
            0.0,
            (&[(i32::MIN, u32::MAX), (i32::MAX, u32::MAX)], &[]),
            none,
        );
        assert!(wide.validate(false).is_err());
        // A first span may start anywhere; the buckets' bounds wrap as Go's do.
        let far = raw(
            0,
            2.0,
            1.0,
            (&[(i32::MIN, 1), (i32::MAX, 1)], &[1.0, 1.0]),
            none,
        );
        assert_eq!(far.validate(true), Ok(()));
        assert_eq!(far.all_buckets().len(), 2);
    }

    fn h(schema: i32, zt: f64, zc: f64, pos: &[(i32, f64)], neg: &[(i32, f64)]) -> FloatHistogram {
        let mut out = FloatHistogram {
            schema,
            zero_threshold: zt,
            zero_count: zc,
            ..FloatHistogram::default()
        };
        out.set_positive(pos);
        out.set_negative(neg);
        out.count = zc + pos.iter().chain(neg).map(|b| b.1).sum::<f64>();
        out
    }

    /// Prometheus's aggregators.test (count_values): the label value of
    /// {{schema:0 sum:10 count:20 z_bucket_w:0.001 z_bucket:2 buckets:[1 2] n_buckets:[1 2]}}.
    #[test]
    fn go_string_lists_buckets_with_their_bounds() {
        let mut x = h(0, 0.001, 2.0, &[(0, 1.0), (1, 2.0)], &[(0, 1.0), (1, 2.0)]);
        x.count = 20.0;
        x.sum = 10.0;
        assert_eq!(
            x.go_string(),
            "{count:20, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}"
        );
    }

    /// Cases of Prometheus's native_histograms.test (trim operators).
    #[test]
    fn trim_cuts_custom_and_exponential_buckets() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // cbh {{schema:-53 sum:172.5 count:15 custom_values:[5 10 15 20] buckets:[1 6 4 3 1]}}
        let mut cbh = h(
            CUSTOM_BUCKETS_SCHEMA,
            0.0,
            0.0,
            &[(0, 1.0), (1, 6.0), (2, 4.0), (3, 3.0), (4, 1.0)],
            &[],
        );
        cbh.custom_values = vec![5.0, 10.0, 15.0, 20.0];
        cbh.sum = 172.5;
        let mut below = cbh.clone();
        below.trim(13.0, true);
        assert!(close(below.count, 9.4) && close(below.sum, 75.1), "{below}");
        assert_eq!(below.positive_buckets.len(), 3);
        assert!(close(below.positive_buckets[2], 2.4));
        let mut above = cbh.clone();
        above.trim(13.0, false);
        assert!(close(above.count, 5.6) && close(above.sum, 94.9), "{above}");
        assert_eq!(above.positive(), [(2, 1.6), (3, 3.0), (4, 1.0)]);
        // Nothing removed: left as it was.
        let mut all = cbh.clone();
        all.trim(f64::INFINITY, true);
        assert_eq!(all, cbh);
        // h_test {{schema:0 sum:123.75 count:34 z_bucket:1 z_bucket_w:0.001
        //          buckets:[2 4 8 16] n_buckets:[1 2]}} </ 2: no interpolation at a bound.
        let mut exp = h(
            0,
            0.001,
            1.0,
            &[(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0)],
            &[(0, 1.0), (1, 2.0)],
        );
        exp.sum = 123.75;
        exp.trim(2.0, true);
        assert!(close(exp.count, 10.0), "{exp}");
        assert!(close(exp.sum, 3.5355339059327373), "{exp}");
        assert_eq!(exp.positive(), [(0, 2.0), (1, 4.0)]);
    }

    #[test]
    fn spans_round_trip_through_indexes() {
        let b = [(-2, 1.0), (-1, 0.0), (3, 2.0), (4, 5.0), (9, 1.0)];
        let (spans, counts) = spans_of(&b);
        assert_eq!(
            spans,
            vec![
                Span {
                    offset: -2,
                    length: 2
                },
                Span {
                    offset: 3,
                    length: 2
                },
                Span {
                    offset: 4,
                    length: 1
                }
            ]
        );
        assert_eq!(indexed(&spans, &counts), b.to_vec());
    }

    #[test]
    fn bounds_follow_the_schema() {
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(-1, 0), 0.5);
        assert_eq!(exponential_bound(1, -1), 4.0);
        assert!((exponential_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(exponential_bound(4, 1), 4.0);
        assert_eq!(exponential_bound(1024, 0), f64::MAX);
        assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
    }

    #[test]
    fn adding_reduces_the_finer_schema() {
        // Schema 1 buckets 1..=4 are (1,√2], (√2,2], (2,2√2], (2√2,4]: schema 0
        // buckets 1 (1,2] and 2 (2,4].
        let mut a = h(1, 0.0, 0.0, &[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)], &[]);
        let b = h(0, 0.0, 0.0, &[(1, 10.0)], &[]);
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        assert_eq!(a.positive(), vec![(1, 13.0), (2, 7.0)]);
        assert_eq!(a.count, 20.0);
    }

    #[test]
    fn adding_widens_the_zero_bucket() {
        // Threshold 0.5 (schema 0: bucket 0 is (0.5, 1]); the other's bucket -1
        // (0.25, 0.5] falls in it, bucket 0 stays.
        let mut a = h(0, 0.5, 1.0, &[(0, 1.0)], &[]);
        let b = h(0, 0.0, 2.0, &[(-1, 3.0), (0, 4.0)], &[(-1, 1.0)]);
        a.add(&b).unwrap();
        assert_eq!(a.zero_threshold, 0.5);
        assert_eq!(a.zero_count, 1.0 + 2.0 + 3.0 + 1.0);
        assert_eq!(a.positive(), vec![(0, 5.0)]);
        assert!(a.negative().is_empty());
    }

    #[test]
    fn mixed_schemas_do_not_add() {
        let mut a = h(0, 0.0, 0.0, &[], &[]);
        let b = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            ..FloatHistogram::default()
        };
        assert_eq!(a.add(&b), Err(CombineError::MixedSchemas));
    }

    #[test]
    fn resets_are_buckets_going_down() {
        let a = h(0, 0.0, 0.0, &[(1, 2.0), (2, 2.0)], &[]);
        let b = h(0, 0.0, 0.0, &[(1, 3.0), (2, 2.0)], &[]);
        let c = h(0, 0.0, 0.0, &[(1, 5.0)], &[]);
        assert!(!b.detect_reset(&a));
        assert!(c.detect_reset(&b), "bucket 2 vanished");
        let mut hinted = c.clone();
        hinted.counter_reset_hint = CounterResetHint::NotReset;
        assert!(!hinted.detect_reset(&b));
    }

    #[test]
    fn all_buckets_run_from_negative_to_positive() {
        let x = h(0, 0.001, 1.0, &[(0, 1.0), (1, 2.0)], &[(0, 4.0)]);
        let b = x.all_buckets();
        let bounds: Vec<(f64, f64, f64)> = b.iter().map(|b| (b.lower, b.upper, b.count)).collect();
        assert_eq!(
            bounds,
            vec![
                (-1.0, -0.5, 4.0),
                (-0.001, 0.001, 1.0),
                (0.5, 1.0, 1.0),
                (1.0, 2.0, 2.0)
            ]
        );
    }
}
