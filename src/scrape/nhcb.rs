//! `convert_classic_histograms_to_nhcb` (Prometheus 3.x): a scraped classic histogram
//! also becomes one native histogram with custom buckets (schema -53) of the series
//! named without suffix, as Prometheus's `NHCBParser` (text, OpenMetrics) and
//! protobuf parser make it.
//!
//! Contract: the scrape loop hands every sample whose name ends in `_bucket`, `_count`
//! or `_sum` to [`Collector::push`] (and the native histograms it reads to
//! [`Collector::native`]); after the body is parsed, [`Collector::finish`] with the
//! body's metadata groups them by family and labels (less `le`) and returns
//! - the native histograms of the groups whose family is a `histogram` (or, in the
//!   protobuf format only, a gauge histogram, with the gauge hint: Prometheus's text
//!   parsers convert `histogram` families only) and that no native histogram of the same
//!   series inhibits, converted by [`from_classic`] (a +Inf bucket added with the
//!   count if missing, the count defaulting to the last bucket's; a group that does
//!   not convert, e.g. buckets that are not cumulative, gives none), stamped with
//!   the exposed timestamp and the start timestamp of its first series (Prometheus's
//!   `NHCBParser` keeps the first series' `StartTimestamp`);
//! - the samples that are not part of such a group, for the loop to ingest as plain
//!   floats, when they were held back ([`Collector::holds_back`]: without
//!   `always_scrape_classic_histograms` the classic series of a converted histogram
//!   are not kept, as in Prometheus).
//!
//! Start timestamps ([`Collector::start`]) and exemplars ([`Collector::exemplar`])
//! stay with their samples: a held-back sample given back as a float keeps its
//! exemplars, and a converted histogram carries the exemplars of every series of its
//! group that have a timestamp, ordered by timestamp, value and labels (Prometheus
//! 3.x's `NHCBParser` collects them as it collects the series, and its scrape loop
//! drops a native histogram's exemplars without a timestamp, then sorts them with
//! `exemplar.Compare`). A kept classic series keeps its own exemplars too.

use crate::exposition::{MetricMetadata, MetricType};
use crate::scrape::exposition::{ExemplarRef, SampleRef};
use dataflows::histogram::{from_classic, CounterResetHint, FloatHistogram};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Labels as the sample sinks take them, borrowed from owned ones.
pub(crate) fn borrowed(labels: &[(String, String)]) -> Vec<(&str, Cow<'_, str>)> {
    labels
        .iter()
        .map(|(n, v)| (n.as_str(), Cow::Borrowed(v.as_str())))
        .collect()
}

/// Labels as the sample sinks give them, owned.
fn owned(labels: &[(&str, Cow<'_, str>)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A classic-histogram candidate sample, owned.
pub(crate) struct Part {
    pub name: String,
    /// As exposed (order kept).
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    /// Its series text.
    pub series: Vec<u8>,
    /// Its start timestamp (0: none).
    pub start_ms: i64,
    /// Its exemplars, as exposed.
    pub exemplars: Vec<HeldExemplar>,
}

/// An exemplar of a candidate sample, owned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HeldExemplar {
    /// As exposed.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl HeldExemplar {
    /// The exemplar, borrowed for the loop's exemplar path.
    pub fn with_ref<R>(&self, f: impl FnOnce(ExemplarRef<'_>) -> R) -> R {
        let labels = borrowed(&self.labels);
        f(ExemplarRef {
            labels: &labels,
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        })
    }

    /// Prometheus's `exemplar.Compare`: timestamp, then value, then labels (sorted).
    fn order(&self, other: &HeldExemplar) -> std::cmp::Ordering {
        let sorted = |e: &HeldExemplar| {
            let mut labels = e.labels.clone();
            labels.sort();
            labels
        };
        self.timestamp_ms
            .cmp(&other.timestamp_ms)
            .then(self.value.total_cmp(&other.value))
            .then_with(|| sorted(self).cmp(&sorted(other)))
    }
}

impl Part {
    /// The sample, borrowed for the loop's sample path.
    pub fn with_ref<R>(&self, f: impl FnOnce(SampleRef<'_>) -> R) -> R {
        let labels = borrowed(&self.labels);
        f(SampleRef {
            series: &self.series,
            name: &self.name,
            labels: &labels,
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        })
    }
}

/// A converted histogram.
pub(crate) struct Converted {
    /// A series text made up for it (`name{l="v",…}`), unique among the body's.
    pub series: Vec<u8>,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub histogram: FloatHistogram,
    pub timestamp_ms: Option<i64>,
    /// The start timestamp of its first series (0: none).
    pub start_ms: i64,
    /// Its group's exemplars that have a timestamp, in `exemplar.Compare` order.
    pub exemplars: Vec<HeldExemplar>,
}

enum Role {
    Bucket(f64),
    Count,
    Sum,
}

/// The family name and role of a classic histogram's series name.
fn role(name: &str) -> Option<(&str, Option<Role>)> {
    if let Some(base) = name.strip_suffix("_bucket") {
        return Some((base, None));
    }
    if let Some(base) = name.strip_suffix("_count") {
        return Some((base, Some(Role::Count)));
    }
    name.strip_suffix("_sum")
        .map(|base| (base, Some(Role::Sum)))
}

/// Labels sorted, without `le`: a histogram's identity.
fn key(base: &str, labels: &[(String, String)]) -> (String, Vec<(String, String)>) {
    let mut l: Vec<(String, String)> = labels.iter().filter(|(n, _)| n != "le").cloned().collect();
    l.sort();
    (base.to_string(), l)
}

/// One scrape's classic-histogram candidates.
pub(crate) struct Collector {
    keep_classic: bool,
    parts: Vec<Part>,
    /// Native histograms read, by [`key`].
    native: HashSet<(String, Vec<(String, String)>)>,
}

impl Collector {
    pub fn new(keep_classic: bool) -> Collector {
        Collector {
            keep_classic,
            parts: Vec::new(),
            native: HashSet::new(),
        }
    }

    /// Whether a sample of this name is a candidate.
    pub fn wants(&self, name: &str) -> bool {
        role(name).is_some()
    }

    /// Whether candidates are held back until [`Collector::finish`] (the classic
    /// series are not kept) rather than also ingested at once.
    pub fn holds_back(&self) -> bool {
        !self.keep_classic
    }

    pub fn push(&mut self, sample: &SampleRef<'_>) {
        self.parts.push(Part {
            name: sample.name.to_string(),
            labels: owned(sample.labels),
            value: sample.value,
            timestamp_ms: sample.timestamp_ms,
            series: sample.series.to_vec(),
            start_ms: 0,
            exemplars: Vec::new(),
        });
    }

    /// An exemplar of the sample [`Collector::push`]ed last.
    pub fn exemplar(&mut self, exemplar: &ExemplarRef<'_>) {
        if let Some(part) = self.parts.last_mut() {
            part.exemplars.push(HeldExemplar {
                labels: owned(exemplar.labels),
                value: exemplar.value,
                timestamp_ms: exemplar.timestamp_ms,
            });
        }
    }

    /// The start timestamp of the sample [`Collector::push`]ed last.
    pub fn start(&mut self, start_ms: i64) {
        if let Some(part) = self.parts.last_mut() {
            part.start_ms = start_ms;
        }
    }

    /// A native histogram of the body: a classic one of the same series is not
    /// converted (Prometheus's "inhibiting" state).
    pub fn native(&mut self, name: &str, labels: &[(&str, std::borrow::Cow<'_, str>)]) {
        self.native.insert(key(name, &owned(labels)));
    }

    /// See the module contract: `(converted, samples to ingest as floats)`; the
    /// latter empty unless [`Collector::holds_back`].
    pub fn finish(
        self,
        metadata: &[MetricMetadata],
        gauge_histograms: bool,
    ) -> (Vec<Converted>, Vec<Part>) {
        let kinds: HashMap<&str, MetricType> = metadata
            .iter()
            .map(|m| (m.family.as_str(), m.kind))
            .collect();
        struct Group {
            first: usize,
            buckets: Vec<(f64, f64)>,
            count: Option<f64>,
            sum: f64,
            members: Vec<usize>,
            gauge: bool,
        }
        let mut order: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut groups: HashMap<(String, Vec<(String, String)>), Group> = HashMap::new();
        let mut floats: Vec<usize> = Vec::new();
        for (i, part) in self.parts.iter().enumerate() {
            let Some((base, r)) = role(&part.name) else {
                floats.push(i);
                continue;
            };
            let kind = kinds.get(base).copied();
            let gauge = gauge_histograms && kind == Some(MetricType::GaugeHistogram);
            if kind != Some(MetricType::Histogram) && !gauge {
                floats.push(i);
                continue;
            }
            let r = match r {
                Some(r) => r,
                None => match part
                    .labels
                    .iter()
                    .find(|(n, _)| n == "le")
                    .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                {
                    Some(le) if !le.is_nan() => Role::Bucket(le),
                    _ => {
                        floats.push(i);
                        continue;
                    }
                },
            };
            let k = key(base, &part.labels);
            if self.native.contains(&k) {
                floats.push(i);
                continue;
            }
            let group = groups.entry(k.clone()).or_insert_with(|| {
                order.push(k);
                Group {
                    first: i,
                    buckets: Vec::new(),
                    count: None,
                    sum: 0.0,
                    members: Vec::new(),
                    gauge,
                }
            });
            group.members.push(i);
            match r {
                Role::Bucket(le) => group.buckets.push((le, part.value)),
                Role::Count => group.count = Some(part.value),
                Role::Sum => group.sum = part.value,
            }
        }
        let mut converted = Vec::new();
        for k in order {
            let group = groups.remove(&k).expect("grouped");
            let Some(mut histogram) = from_classic(group.buckets, group.count, group.sum) else {
                continue;
            };
            if group.gauge {
                histogram.counter_reset_hint = CounterResetHint::Gauge;
            }
            let first = &self.parts[group.first];
            let base = k.0;
            let labels: Vec<(String, String)> = first
                .labels
                .iter()
                .filter(|(n, _)| n != "le")
                .cloned()
                .collect();
            let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
            let mut exemplars: Vec<HeldExemplar> = group
                .members
                .iter()
                .flat_map(|&i| &self.parts[i].exemplars)
                .filter(|e| e.timestamp_ms.is_some())
                .cloned()
                .collect();
            exemplars.sort_by(HeldExemplar::order);
            converted.push(Converted {
                series: format!("{base}{{{}}}", inner.join(",")).into_bytes(),
                name: base,
                labels,
                histogram,
                timestamp_ms: first.timestamp_ms,
                start_ms: first.start_ms,
                exemplars,
            });
        }
        if !self.holds_back() {
            return (converted, Vec::new());
        }
        let mut parts: Vec<Option<Part>> = self.parts.into_iter().map(Some).collect();
        let floats = floats.into_iter().filter_map(|i| parts[i].take()).collect();
        (converted, floats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(family: &str, kind: MetricType) -> MetricMetadata {
        MetricMetadata {
            family: family.into(),
            kind,
            help: String::new(),
            unit: String::new(),
        }
    }

    fn push(c: &mut Collector, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<(&str, Cow<'_, str>)> = labels
            .iter()
            .map(|(n, v)| (*n, Cow::Borrowed(*v)))
            .collect();
        c.push(&SampleRef {
            series: name.as_bytes(),
            name,
            labels: &labels,
            value,
            timestamp_ms: None,
        });
    }

    #[test]
    fn groups_convert_unless_not_histograms_not_cumulative_or_inhibited() {
        let mut c = Collector::new(false);
        // h: a histogram; g: a gauge histogram; x: not cumulative; n: has a native
        // histogram; c_count: a counter's family.
        for (name, labels, v) in [
            ("h_bucket", vec![("a", "1"), ("le", "1")], 2.0),
            ("h_bucket", vec![("a", "1"), ("le", "+Inf")], 5.0),
            ("h_count", vec![("a", "1")], 5.0),
            ("h_sum", vec![("a", "1")], 7.0),
            ("g_bucket", vec![("le", "2")], 1.0),
            ("x_bucket", vec![("le", "1")], 3.0),
            ("x_bucket", vec![("le", "2")], 1.0),
            ("n_bucket", vec![("le", "1")], 1.0),
            ("c_count", vec![], 9.0),
        ] {
            push(&mut c, name, &labels, v);
        }
        c.native("n", &[]);
        let metadata = [
            meta("h", MetricType::Histogram),
            meta("g", MetricType::GaugeHistogram),
            meta("x", MetricType::Histogram),
            meta("n", MetricType::Histogram),
            meta("c_count", MetricType::Counter),
        ];
        let (converted, floats) = c.finish(&metadata, true);
        let names: Vec<&str> = converted.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["h", "g"]);
        let h = &converted[0].histogram;
        assert_eq!(
            (h.count, h.sum, h.custom_values.clone()),
            (5.0, 7.0, vec![1.0])
        );
        assert_eq!(h.positive(), [(0, 2.0), (1, 3.0)]);
        assert_eq!(converted[0].labels, [("a".to_string(), "1".to_string())]);
        assert_eq!(
            converted[1].histogram.counter_reset_hint,
            CounterResetHint::Gauge
        );
        // The inhibited and the counter's series are ingested as floats; the
        // non-cumulative group is dropped, as Prometheus's text parsers drop it.
        let floats: Vec<&str> = floats.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(floats, ["n_bucket", "c_count"]);

        // The text formats convert `histogram` families only.
        let mut c = Collector::new(false);
        push(&mut c, "g_bucket", &[("le", "2")], 1.0);
        let (converted, floats) = c.finish(&metadata, false);
        assert!(converted.is_empty());
        assert_eq!(floats.len(), 1);
    }
}
