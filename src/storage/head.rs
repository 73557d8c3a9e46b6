//! The in-memory head: the recent samples of every series, appended in time order.
//!
//! Contract: [`Head::append`] keeps samples per series in timestamp order, refusing
//! (and counting) samples older than the newest one already held for that series, and
//! duplicates of the newest timestamp, as Prometheus's head does. [`Head::select`] returns
//! the samples of matching series in a closed time range. [`Head::truncate_before`] drops
//! what has left the retention window, and series with nothing left.

use dataflows::{Labels, Sample, Selector};
use parking_lot::RwLock;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

struct SeriesSamples {
    labels: Arc<Labels>,
    samples: VecDeque<(i64, f64)>,
}

/// What one append did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples stored.
    pub appended: usize,
    /// Series seen for the first time.
    pub new_series: usize,
    /// Samples refused: older than (or at the same time as) the series' newest sample.
    pub out_of_order: usize,
}

/// The samples of one series in a time range, as [`Head::select`] returns them.
pub type SeriesSamplesInRange = (Arc<Labels>, Vec<(i64, f64)>);

/// The in-memory head.
#[derive(Default)]
pub struct Head {
    series: RwLock<HashMap<u64, SeriesSamples>>,
}

impl Head {
    /// An empty head.
    pub fn new() -> Head {
        Head::default()
    }

    /// Appends a batch; see the module contract.
    pub fn append(&self, batch: &[Sample]) -> AppendOutcome {
        let mut outcome = AppendOutcome::default();
        let mut series = self.series.write();
        for sample in batch {
            let entry = series.entry(sample.series_id).or_insert_with(|| {
                outcome.new_series += 1;
                SeriesSamples {
                    labels: sample.labels.clone(),
                    samples: VecDeque::new(),
                }
            });
            match entry.samples.back() {
                Some(&(last_ts, _)) if last_ts >= sample.timestamp_ms => outcome.out_of_order += 1,
                _ => {
                    entry.samples.push_back((sample.timestamp_ms, sample.value));
                    outcome.appended += 1;
                }
            }
        }
        outcome
    }

    /// The samples of every series matching `selector` with timestamps in `[start, end]`.
    /// Series with no sample in the range are left out.
    pub fn select(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesSamplesInRange> {
        let series = self.series.read();
        let mut out = Vec::new();
        for s in series.values() {
            if !selector.matches(&s.labels) {
                continue;
            }
            let from = s.samples.partition_point(|&(ts, _)| ts < start_ms);
            let to = s.samples.partition_point(|&(ts, _)| ts <= end_ms);
            if from < to {
                out.push((
                    s.labels.clone(),
                    s.samples.range(from..to).copied().collect(),
                ));
            }
        }
        out
    }

    /// Labels of every series matching any of `selectors` (all series if there are
    /// none) with at least one sample in `[start, end]`, sorted.
    pub fn series_in_range(
        &self,
        selectors: &[Selector],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        let series = self.series.read();
        let mut out: Vec<Arc<Labels>> = series
            .values()
            .filter(|s| selectors.is_empty() || selectors.iter().any(|sel| sel.matches(&s.labels)))
            .filter(|s| {
                let first = s.samples.partition_point(|&(ts, _)| ts < start_ms);
                s.samples.get(first).is_some_and(|&(ts, _)| ts <= end_ms)
            })
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    /// Drops samples older than `cutoff_ms`, and series left empty.
    pub fn truncate_before(&self, cutoff_ms: i64) {
        let mut series = self.series.write();
        series.retain(|_, s| {
            while s.samples.front().is_some_and(|&(ts, _)| ts < cutoff_ms) {
                s.samples.pop_front();
            }
            !s.samples.is_empty()
        });
    }

    /// The oldest and newest sample timestamps held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let series = self.series.read();
        let min = series
            .values()
            .filter_map(|s| s.samples.front().map(|p| p.0))
            .min()?;
        let max = series
            .values()
            .filter_map(|s| s.samples.back().map(|p| p.0))
            .max()?;
        Some((min, max))
    }

    /// The number of series held.
    pub fn series_count(&self) -> usize {
        self.series.read().len()
    }

    /// The number of samples held.
    pub fn sample_count(&self) -> usize {
        self.series.read().values().map(|s| s.samples.len()).sum()
    }
}

impl dataflows::promql::eval::SeriesSource for Head {
    fn select(
        &self,
        matchers: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> dataflows::promql::eval::Selected {
        Head::select(self, matchers, start_ms, end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflows::LabelMatcher;

    fn sample(job: &str, ts: i64, value: f64) -> Sample {
        let labels = Labels::from_pairs(vec![
            ("__name__".into(), "m".into()),
            ("job".into(), job.into()),
        ]);
        Sample {
            series_id: labels.hash(),
            labels: Arc::new(labels),
            timestamp_ms: ts,
            value,
        }
    }

    #[test]
    fn appends_in_order_and_refuses_out_of_order() {
        let head = Head::new();
        let out = head.append(&[
            sample("a", 10, 1.0),
            sample("a", 20, 2.0),
            sample("b", 10, 1.0),
        ]);
        assert_eq!(
            out,
            AppendOutcome {
                appended: 3,
                new_series: 2,
                out_of_order: 0
            }
        );
        let out = head.append(&[
            sample("a", 20, 9.0),
            sample("a", 15, 9.0),
            sample("a", 30, 3.0),
        ]);
        assert_eq!(
            out,
            AppendOutcome {
                appended: 1,
                new_series: 0,
                out_of_order: 2
            }
        );
        assert_eq!(head.sample_count(), 4);
    }

    #[test]
    fn selects_by_matchers_and_closed_range() {
        let head = Head::new();
        head.append(&[
            sample("a", 10, 1.0),
            sample("a", 20, 2.0),
            sample("a", 30, 3.0),
            sample("b", 20, 5.0),
        ]);
        let sel = Selector {
            matchers: vec![LabelMatcher::new("job", "=", "a").unwrap()],
        };
        let got = head.select(&sel, 20, 30);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, vec![(20, 2.0), (30, 3.0)]);
    }

    #[test]
    fn truncation_drops_old_samples_and_empty_series() {
        let head = Head::new();
        head.append(&[
            sample("a", 10, 1.0),
            sample("a", 20, 2.0),
            sample("b", 5, 5.0),
        ]);
        head.truncate_before(15);
        assert_eq!((head.series_count(), head.sample_count()), (1, 1));
    }
}
