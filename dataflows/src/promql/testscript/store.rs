//! The samples a script has loaded, kept like upstream's test storage.
//!
//! Owns the in-memory [`MemStorage`] that both conformance runners read: mode (a)
//! evaluates over it directly, mode (b) streams its samples into the engine in time
//! order. Native-histogram points are stored as a placeholder NaN so that a runner can
//! tell when an evaluation touched one (those evals are skipped, not failed).

use super::{Load, Point};
use crate::labels::Labels;
use crate::promql::eval::{Selected, SeriesSource};
use crate::selector::Selector;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Stored in place of a native-histogram sample: a NaN no computation produces.
pub const HISTOGRAM_BITS: u64 = 0x7ff0_0000_0000_0bad;

/// Samples loaded by a script.
#[derive(Default)]
pub struct MemStorage {
    /// Series and their samples by timestamp (ms).
    pub series: BTreeMap<Arc<Labels>, BTreeMap<i64, f64>>,
    /// Set when a selection returned a native-histogram placeholder sample.
    pub touched_histogram: Cell<bool>,
}

impl MemStorage {
    /// Adds a `load` block: point `i` lands at `i * interval`.
    pub fn load(&mut self, load: Load) {
        for (labels, points) in load.series {
            let entry = self.series.entry(Arc::new(labels)).or_default();
            for (i, p) in points.into_iter().enumerate() {
                let v = match p {
                    Some(Point::Float(v)) => v,
                    Some(Point::Histogram) => f64::from_bits(HISTOGRAM_BITS),
                    None => continue,
                };
                entry.insert(i as i64 * load.interval_ms, v);
            }
        }
    }

    /// Every sample as `(timestamp, labels, value)`, sorted by timestamp.
    pub fn samples_in_time_order(&self) -> Vec<(i64, Arc<Labels>, f64)> {
        let mut out: Vec<(i64, Arc<Labels>, f64)> = self
            .series
            .iter()
            .flat_map(|(l, pts)| pts.iter().map(move |(t, v)| (*t, l.clone(), *v)))
            .collect();
        out.sort_by_key(|(t, _, _)| *t);
        out
    }
}

impl SeriesSource for MemStorage {
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        if start_ms > end_ms {
            return Vec::new();
        }
        self.series
            .iter()
            .filter(|(l, _)| matchers.matches(l))
            .map(|(l, pts)| {
                (
                    l.clone(),
                    pts.range(start_ms..=end_ms)
                        .map(|(t, v)| (*t, *v))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, pts)| !pts.is_empty())
            .inspect(|(_, pts)| {
                if pts.iter().any(|p| p.1.to_bits() == HISTOGRAM_BITS) {
                    self.touched_histogram.set(true);
                }
            })
            .collect()
    }
}
