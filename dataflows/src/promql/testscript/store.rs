//! The samples a script has loaded, kept like upstream's test storage.
//!
//! Owns the in-memory [`MemStorage`] that both conformance runners read: mode (a)
//! evaluates over it directly, mode (b) streams its samples into the engine in time
//! order (with their start timestamps, `@st` lines). Native-histogram points are
//! kept aside and stored as their handle ([`native`]), which the reference evaluator
//! resolves through [`SeriesSource::histogram`] (mode (b) feeds them to the engine
//! from [`MemStorage::histograms`]).
//!
//! [`native`]: crate::promql::eval::native

use super::{Load, Point};
use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::labels::Labels;
use crate::promql::eval::native::{handle, parse_handle, SOURCE};
use crate::promql::eval::{Selected, SeriesSource};
use crate::selector::Selector;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Samples loaded by a script.
#[derive(Default)]
pub struct MemStorage {
    /// Series and their samples by timestamp (ms).
    pub series: BTreeMap<Arc<Labels>, BTreeMap<i64, f64>>,
    /// Start timestamps of the samples that have one (`@st` lines), by series and
    /// sample timestamp.
    pub start_times: BTreeMap<Arc<Labels>, BTreeMap<i64, i64>>,
    /// The native-histogram samples, by the index of their handle.
    pub histograms: Vec<Arc<FloatHistogram>>,
}

impl MemStorage {
    /// Adds a `load` block: point `i` lands at `i * interval`, with its start timestamp
    /// if the block gives one. `load_with_nhcb` also stores the classic histograms'
    /// series (`_bucket`, `_count`, `_sum`) as native histograms with custom buckets
    /// under the base name ([`classic_to_nhcb`]).
    pub fn load(&mut self, load: Load) {
        let converted = if load.with_nhcb {
            classic_to_nhcb(&load)
        } else {
            Vec::new()
        };
        for (labels, points) in converted {
            let entry = self.series.entry(Arc::new(labels)).or_default();
            for (t, h) in points {
                self.histograms.push(Arc::new(h));
                entry.insert(t, handle(SOURCE, (self.histograms.len() - 1) as u32));
            }
        }
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
                    Some(Point::Histogram { h, .. }) => {
                        self.histograms.push(Arc::new(*h));
                        handle(SOURCE, (self.histograms.len() - 1) as u32)
                    }
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
        let series: Vec<Arc<Labels>> = self.series.keys().cloned().collect();
        for labels in series {
            self.read_back_hints(&labels);
        }
    }

    /// Gives the histograms of a series the counter-reset hints Prometheus's head
    /// chunks give them when read back: a gauge stays a gauge; the first histogram of
    /// a chunk (after a float, a gauge, a counter reset, or a change of schema, zero
    /// threshold or custom bounds) reads as unknown (even after a reset, Prometheus
    /// issue 15346); the next ones as not reset.
    fn read_back_hints(&mut self, labels: &Arc<Labels>) {
        let Some(points) = self.series.get(labels) else {
            return;
        };
        let mut prev: Option<Arc<FloatHistogram>> = None;
        for v in points.values() {
            let Some((SOURCE, i)) = parse_handle(*v) else {
                prev = None;
                continue;
            };
            let cur = self.histograms[i as usize].clone();
            let hint = match (&prev, cur.counter_reset_hint) {
                (_, CounterResetHint::Gauge) => CounterResetHint::Gauge,
                (_, CounterResetHint::Reset) | (None, _) => CounterResetHint::Unknown,
                (Some(p), _) if p.counter_reset_hint == CounterResetHint::Gauge => {
                    CounterResetHint::Unknown
                }
                (Some(p), _)
                    if cur.detect_reset(p)
                        || p.schema != cur.schema
                        || p.zero_threshold != cur.zero_threshold
                        || p.custom_values != cur.custom_values =>
                {
                    CounterResetHint::Unknown
                }
                (Some(_), _) => CounterResetHint::NotReset,
            };
            if hint != cur.counter_reset_hint {
                let mut h = cur.as_ref().clone();
                h.counter_reset_hint = hint;
                self.histograms[i as usize] = Arc::new(h);
            }
            prev = Some(cur);
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

/// One classic histogram at one timestamp, as upstream's `convertnhcb.TempHistogram`
/// collects it.
#[derive(Default)]
struct ClassicAt {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
}

/// Which part of a classic histogram a series is.
#[derive(Clone, Copy)]
enum Part {
    Bucket(f64),
    Count,
    Sum,
}

/// The native histograms with custom buckets that upstream's `load_with_nhcb` makes
/// from a block's float series named `…_bucket` (with a numeric `le`), `…_count` and
/// `…_sum`: one per base label set (name without the suffix, no `le`) and timestamp.
/// A set of buckets that is not cumulative is left out (upstream fails the load).
pub fn classic_to_nhcb(load: &Load) -> Vec<(Labels, Vec<(i64, FloatHistogram)>)> {
    let mut by_base: BTreeMap<Labels, BTreeMap<i64, ClassicAt>> = BTreeMap::new();
    for (labels, points) in &load.series {
        let name = labels.metric_name();
        let (base, part) = if let Some(b) = name.strip_suffix("_bucket") {
            let Some(le) = labels
                .get("le")
                .and_then(|le| le.trim().parse::<f64>().ok())
            else {
                continue;
            };
            if le.is_nan() {
                continue;
            }
            (b, Part::Bucket(le))
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, Part::Count)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, Part::Sum)
        } else {
            continue;
        };
        let base_labels = Labels::from_pairs(
            labels
                .iter()
                .filter(|(n, _)| *n != "le")
                .map(|(n, v)| {
                    let v = if n == crate::labels::METRIC_NAME {
                        base
                    } else {
                        v
                    };
                    (n.to_string(), v.to_string())
                })
                .collect(),
        );
        let series = by_base.entry(base_labels).or_default();
        for (i, p) in points.iter().enumerate() {
            let Some(Point::Float(v)) = p else { continue };
            let at = series.entry(i as i64 * load.interval_ms).or_default();
            match part {
                Part::Sum => at.sum = *v,
                Part::Bucket(le) => at.buckets.push((le, *v)),
                Part::Count => at.count = Some(*v),
            }
        }
    }
    by_base
        .into_iter()
        .map(|(labels, points)| {
            let hs = points
                .into_iter()
                .filter_map(|(t, at)| {
                    crate::histogram::from_classic(at.buckets, at.count, at.sum).map(|h| (t, h))
                })
                .collect();
            (labels, hs)
        })
        .collect()
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
            .collect()
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.histograms.get(index as usize).cloned()
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
