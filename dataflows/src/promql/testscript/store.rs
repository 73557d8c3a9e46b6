//! The samples a script has loaded, kept like upstream's test storage.
//!
//! Owns the in-memory [`MemStorage`] that both conformance runners read: mode (a)
//! evaluates over it directly, mode (b) streams its samples into the engine in time
//! order (with their start timestamps, `@st` lines). Native-histogram points are
//! stored as a placeholder NaN so that a runner can tell when an evaluation touched
//! one (those evals are skipped, not failed).

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
    /// Start timestamps of the samples that have one (`@st` lines), by series and
    /// sample timestamp.
    pub start_times: BTreeMap<Arc<Labels>, BTreeMap<i64, i64>>,
    /// Set when a selection returned a native-histogram placeholder sample.
    pub touched_histogram: Cell<bool>,
}

impl MemStorage {
    /// Adds a `load` block: point `i` lands at `i * interval`.
    /// Adds a `load` block: point `i` lands at `i * interval`, with its start timestamp
    /// if the block gives one.
    pub fn load(&mut self, load: Load) {
        for (labels, points) in load.series {
            let labels = Arc::new(labels);
            let offsets = load
                .start_offsets
                .iter()
                .find(|(l, _)| *l == *labels)
                .map_or(&[][..], |(_, o)| o.as_slice());
            let entry = self.series.entry(labels.clone()).or_default();
            for (i, p) in points.into_iter().enumerate() {
                let v = match p {
                    Some(Point::Float(v)) => v,
                    Some(Point::Histogram) => f64::from_bits(HISTOGRAM_BITS),
                    None => continue,
                };
                let t = i as i64 * load.interval_ms;
                entry.insert(t, v);
                if let Some(Some(offset)) = offsets.get(i) {
                    let starts = self.start_times.entry(labels.clone()).or_default();
                    starts.insert(t, t + offset);
                }
            }
        }
    }

    /// Every sample as `(timestamp, labels, value, start timestamp or 0)`, sorted by
    /// timestamp.
    pub fn samples_in_time_order(&self) -> Vec<(i64, Arc<Labels>, f64, i64)> {
        let mut out: Vec<(i64, Arc<Labels>, f64, i64)> = self
            .series
            .iter()
            .flat_map(|(l, pts)| {
                let starts = self.start_times.get(l);
                pts.iter().map(move |(t, v)| {
                    let st = starts.and_then(|s| s.get(t)).copied().unwrap_or(0);
                    (*t, l.clone(), *v, st)
                })
            })
            .collect();
        out.sort_by_key(|s| s.0);
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

    fn start_times(
        &self,
        _matchers: &Selector,
        labels: &Labels,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(i64, i64)> {
        match self.start_times.get(labels) {
            Some(starts) if start_ms <= end_ms => starts
                .range(start_ms..=end_ms)
                .map(|(t, st)| (*t, *st))
                .collect(),
            _ => Vec::new(),
        }
    }
}
