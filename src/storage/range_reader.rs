//! A reader for one range query (`/api/v1/query_range`): each selector's samples are
//! read from storage once for the whole query, and every step's window is cut from
//! them, instead of one storage `select` (head scan, block file reads, chunk
//! decoding) per selector per step.
//!
//! Contract: [`RangeQueryReader::select`] returns exactly what [`Storage::select`]
//! would for the same arguments, as long as storage does not change meanwhile
//! (samples arriving during the query may be left out, as if the query had started a
//! moment earlier). The first read of a selector covers `[start, until]` (`until`: the
//! query's last evaluation time); a window outside what was read (an `offset` or `@`
//! reaching elsewhere) reads again, widened to cover both.

use super::Storage;
use dataflows::promql::eval::{Selected, SeriesSource};
use dataflows::Selector;
use std::cell::RefCell;
use std::collections::HashMap;

/// What was read for one selector: the covered range and the samples.
struct Read {
    from: i64,
    to: i64,
    series: Selected,
}

/// See the module docs.
pub struct RangeQueryReader<'a> {
    storage: &'a Storage,
    until_ms: i64,
    read: RefCell<HashMap<usize, Read>>,
}

impl<'a> RangeQueryReader<'a> {
    /// A reader over `storage` for a query whose last evaluation time is `until_ms`.
    pub fn new(storage: &'a Storage, until_ms: i64) -> RangeQueryReader<'a> {
        RangeQueryReader {
            storage,
            until_ms,
            read: RefCell::new(HashMap::new()),
        }
    }
}

impl SeriesSource for RangeQueryReader<'_> {
    fn select(&self, selector: &Selector, start_ms: i64, end_ms: i64) -> Selected {
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
            let series = self.storage.select(selector, from, to);
            read.insert(key, Read { from, to, series });
        }
        let Some(r) = read.get(&key) else {
            return Vec::new();
        };
        r.series
            .iter()
            .filter_map(|(labels, samples)| {
                let a = samples.partition_point(|s| s.0 < start_ms);
                let b = samples.partition_point(|s| s.0 <= end_ms);
                (a < b).then(|| (labels.clone(), samples[a..b].to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
