//! A reader for one range query (`/api/v1/query_range`): each selector's samples are
//! read from storage once for the whole query, and every step's window is cut from
//! them, instead of one storage `select` (head scan, block file reads, chunk
//! decoding) per selector per step.
//!
//! Contract: [`RangeQueryReader::select`] returns exactly what
//! [`Storage::select_with_histograms`] would (native histograms as handles, resolved
//! by [`SeriesSource::histogram`]) for the same arguments, as long as storage does not change meanwhile
//! (samples arriving during the query may be left out, as if the query had started a
//! moment earlier). The first read of a selector covers `[start, until]` (`until`: the
//! query's last evaluation time); a window outside what was read (an `offset` or `@`
//! reaching elsewhere) reads again, widened to cover both.

use super::Storage;
use dataflows::histogram::FloatHistogram;
use dataflows::promql::eval::{EachSeries, Selected, SeriesSource};
use dataflows::Selector;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// What was read for one selector: the covered range, the samples, and per series
/// where the last window started (the next step's window starts at or after it, so it
/// is found by galloping forward from there instead of a binary search over the whole
/// range, which showed in profiles as cache misses).
struct Read {
    from: i64,
    to: i64,
    series: Selected,
    cursors: Vec<usize>,
}

/// See the module docs.
pub struct RangeQueryReader<'a> {
    storage: &'a Storage,
    until_ms: i64,
    read: RefCell<HashMap<usize, Read>>,
    /// The native histograms the selections returned, by handle index
    /// ([`Storage::select_with_histograms`]).
    histograms: RefCell<Vec<Arc<FloatHistogram>>>,
}

impl<'a> RangeQueryReader<'a> {
    /// A reader over `storage` for a query whose last evaluation time is `until_ms`.
    pub fn new(storage: &'a Storage, until_ms: i64) -> RangeQueryReader<'a> {
        RangeQueryReader {
            storage,
            until_ms,
            read: RefCell::new(HashMap::new()),
            histograms: RefCell::new(Vec::new()),
        }
    }

    /// The histograms the selections returned so far, by handle index.
    pub fn histograms(&self) -> Vec<Arc<FloatHistogram>> {
        self.histograms.borrow().clone()
    }
}

impl SeriesSource for RangeQueryReader<'_> {
    fn select(&self, selector: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        let mut out = Vec::new();
        self.select_each(selector, start_ms, end_ms, &mut |labels, samples| {
            out.push((labels.clone(), samples.to_vec()))
        });
        out
    }

    fn select_each(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
        each: &mut EachSeries<'_>,
    ) {
        // The evaluator asks with the same selector (of its plan) at every step: its
        // address names it for the query's lifetime, cheaper than hashing matchers.
        let key = selector as *const Selector as usize;
        let mut read = self.read.borrow_mut();
        let covered = read
            .get(&key)
            .is_some_and(|r| r.from <= start_ms && r.to >= end_ms);
        if !covered {
            let (from, to) = match read.get(&key) {
                Some(r) => (r.from.min(start_ms), r.to.max(end_ms)),
                None => (start_ms, end_ms.max(self.until_ms)),
            };
            let series = self
                .storage
                .select_with_histograms(selector, from, to, &self.histograms);
            let cursors = vec![0; series.len()];
            read.insert(
                key,
                Read {
                    from,
                    to,
                    series,
                    cursors,
                },
            );
        }
        let Some(r) = read.get_mut(&key) else {
            return;
        };
        for ((labels, samples), cursor) in r.series.iter().zip(&mut r.cursors) {
            let a = partition_from(samples, *cursor, |s| s.0 < start_ms);
            let b = partition_from(samples, a, |s| s.0 <= end_ms);
            *cursor = a;
            if a < b {
                each(labels, &samples[a..b]);
            }
        }
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.histograms.borrow().get(index as usize).cloned()
    }
}

/// `samples.partition_point(pred)` for a `pred` true on a prefix, searched from `hint`:
/// galloping forward when the answer is at or after it (one or two probes for the
/// next step of a range query), a binary search below it otherwise.
fn partition_from(
    samples: &[(i64, f64)],
    hint: usize,
    pred: impl Fn(&(i64, f64)) -> bool,
) -> usize {
    let hint = hint.min(samples.len());
    if hint > 0 && !pred(&samples[hint - 1]) {
        return samples[..hint].partition_point(pred);
    }
    // Everything before `lo` satisfies `pred`.
    let (mut lo, mut step) = (hint, 1);
    while lo + step <= samples.len() && pred(&samples[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step - 1).min(samples.len());
    lo + samples[lo..hi].partition_point(pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_from_any_hint_is_partition_point() {
        let samples: Vec<(i64, f64)> = (0..40).map(|i| (i * 10, 0.0)).collect();
        for len in [0, 1, 2, 7, 40] {
            let s = &samples[..len];
            for bound in -5..405 {
                let want = s.partition_point(|p| p.0 < bound);
                for hint in 0..=len + 2 {
                    assert_eq!(
                        partition_from(s, hint, |p| p.0 < bound),
                        want,
                        "len {len} bound {bound} hint {hint}"
                    );
                }
            }
        }
    }
    use crate::storage::head::tests::sample;

    #[test]
    fn answers_every_window_as_storage_does() {
        let storage = Storage::new();
        for t in (0..10_000).step_by(250) {
            storage
                .append(&[sample("a", t, t as f64), sample("b", t + 100, 1.0)])
                .unwrap();
        }
        let reader = RangeQueryReader::new(&storage, 8_000);
        let all = Selector { matchers: vec![] };
        let b = Selector {
            matchers: vec![dataflows::LabelMatcher::new("job", "=", "b").unwrap()],
        };
        let mut windows: Vec<(i64, i64)> =
            (0..=8_000).step_by(500).map(|t| (t - 1_000, t)).collect();
        // Reaching outside what was read first (like an offset): read again.
        windows.extend([(-5_000, -4_000), (9_000, 12_000), (2_000, 2_000)]);
        for (start, end) in windows {
            for sel in [&all, &b] {
                let mut want = storage.select(sel, start, end);
                let mut got = reader.select(sel, start, end);
                want.sort_by(|x, y| x.0.cmp(&y.0));
                got.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(got, want, "[{start}, {end}]");
            }
        }
    }
}
