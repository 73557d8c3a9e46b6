//! `/federate` in the protobuf exposition format (length-delimited
//! `io.prometheus.client.MetricFamily` messages), the one format that carries native
//! histograms: served when the client's `Accept` asks for it, as Prometheus's
//! `expfmt.Negotiate` reads the header (a Prometheus scraping with native histograms
//! enabled puts it first). The text form ([`super::federate`]) leaves histograms out,
//! as Prometheus's does.
//!
//! Owns: the negotiation ([`wants_protobuf`]), which native histograms a federation
//! answer holds ([`latest_histograms`]) and the encoding ([`render`]).
//!
//! Contract: the float samples are the text form's (the live entries of the
//! latest-sample table), as `untyped` metrics; beside them, per series matching a
//! `match[]` selector, its newest native histogram within the lookback delta, unless
//! a float sample (a stale marker included) is newer, as an instant selector would
//! see it. Families are one per metric name and kind (untyped, histogram), in order of
//! metric name then label set; each metric's labels are the series' (without
//! `__name__`, sorted) followed by the external labels it lacks (the caller's: with an
//! empty `instance`, see `super::federate`), and carry its
//! timestamp. A histogram goes as an integer histogram (counts as deltas) when every
//! count is whole, as client libraries expose them (a Prometheus 2.42 scraper reads
//! float histograms as zero), else as a float histogram. A histogram with custom bucket
//! bounds (NHCB, schema -53, from `convert_classic_histograms_to_nhcb`) goes as the
//! classic histogram it stands for (one bucket per custom bound, cumulative counts,
//! no `+Inf` bucket: the scraper adds it from the count), as Prometheus 3.7 federates
//! NHCB (`makeClassicHistogram`, web/federate.go); its counts are integers when whole
//! (Prometheus 3.7 writes the float fields, which a 3.x scraper reads alike and a
//! 2.42 scraper reads as zero), else floats. (Prometheus 3.7 also serves NHCB in the
//! text form, as classic histograms; promflow's text form does not yet.)

use crate::scrape::exposition::metrics_proto as pb;
use crate::storage::Storage;
use axum::http::{header, HeaderMap};
use dataflows::histogram::{deltas_from_counts, FloatHistogram, Span};
use dataflows::{LabelMatcher, Labels, LatestEntry, Selector};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The content type of the answer.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Whether the request's `Accept` prefers the delimited protobuf format to the text
/// format (the acceptable entry of highest `q`, the first among equals; neither
/// acceptable: text), as `expfmt.Negotiate` decides.
pub fn wants_protobuf(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut best: Option<(f64, bool)> = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (mut q, mut proto, mut encoding, mut version) = (1.0, "", "", None);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim() {
                "q" => q = value.parse().unwrap_or(0.0),
                "proto" => proto = value,
                "encoding" => encoding = value,
                "version" => version = Some(value),
                _ => {}
            }
        }
        let protobuf = match media.as_str() {
            "application/vnd.google.protobuf"
                if proto == "io.prometheus.client.MetricFamily" && encoding == "delimited" =>
            {
                true
            }
            "text/plain" if version.is_none_or(|v| v == "0.0.4") => false,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, protobuf));
        }
    }
    best.is_some_and(|(_, protobuf)| protobuf)
}

/// Per series matching any of `selectors`, its newest native histogram in
/// `[now - lookback, now]`, unless a float sample of it is newer (see the module
/// contract). Reads nothing while storage holds no histogram.
pub fn latest_histograms(
    storage: &Storage,
    selectors: &[Selector],
    now_ms: i64,
    lookback_ms: i64,
) -> Vec<(Arc<Labels>, i64, FloatHistogram)> {
    let mut newest: BTreeMap<Arc<Labels>, (i64, FloatHistogram)> = BTreeMap::new();
    for selector in selectors {
        for (labels, mut samples) in
            storage.select_histograms(selector, now_ms - lookback_ms, now_ms)
        {
            if let Some((ts, h)) = samples.pop() {
                newest.insert(labels, (ts, h));
            }
        }
    }
    newest
        .into_iter()
        .filter(|(labels, (ts, _))| {
            let exactly = Selector {
                matchers: labels
                    .iter()
                    .filter_map(|(name, value)| LabelMatcher::new(name, "=", value).ok())
                    .collect(),
            };
            // (The matchers also select series with more labels: only this one counts.)
            !storage
                .select(&exactly, ts + 1, now_ms)
                .iter()
                .any(|(other, _)| other == labels)
        })
        .map(|(labels, (ts, h))| (labels, ts, h))
        .collect()
}

/// One sample of the answer.
enum Value<'a> {
    Float(f64),
    Histogram(&'a FloatHistogram),
}

/// The answer's body: `floats` (live latest-table entries) and `histograms` (from
/// [`latest_histograms`]; a float entry of a series older than its histogram is left
/// out), with `external` labels; see the module contract.
pub fn render(
    floats: &[LatestEntry],
    histograms: &[(Arc<Labels>, i64, FloatHistogram)],
    external: &BTreeMap<String, String>,
) -> Vec<u8> {
    let histogram_at: HashMap<&Labels, i64> = histograms
        .iter()
        .map(|(labels, ts, _)| (labels.as_ref(), *ts))
        .collect();
    let mut samples: Vec<(&Labels, i64, Value<'_>)> = floats
        .iter()
        .filter(|e| {
            histogram_at
                .get(e.labels.as_ref())
                .is_none_or(|&ts| e.timestamp_ms > ts)
        })
        .map(|e| (e.labels.as_ref(), e.timestamp_ms, Value::Float(e.value)))
        .collect();
    samples.extend(
        histograms
            .iter()
            .map(|(labels, ts, h)| (labels.as_ref(), *ts, Value::Histogram(h))),
    );
    samples.sort_by(|a, b| {
        a.0.metric_name()
            .cmp(b.0.metric_name())
            .then_with(|| a.0.cmp(b.0))
    });
    let mut body = Vec::new();
    let mut family: Option<pb::MetricFamily> = None;
    for (labels, ts, value) in samples {
        let kind = match value {
            Value::Float(_) => pb::MetricType::Untyped,
            Value::Histogram(_) => pb::MetricType::Histogram,
        };
        let name = labels.metric_name();
        let same_family = family
            .as_ref()
            .is_some_and(|f| f.name.as_deref() == Some(name) && f.r#type == Some(kind as i32));
        if !same_family {
            if let Some(done) = family.take() {
                done.encode_length_delimited(&mut body)
                    .expect("a Vec grows as needed");
            }
            family = Some(pb::MetricFamily {
                name: Some(name.to_string()),
                r#type: Some(kind as i32),
                ..pb::MetricFamily::default()
            });
        }
        let mut label: Vec<pb::LabelPair> = labels
            .iter()
            .filter(|(n, _)| *n != "__name__")
            .map(|(n, v)| pb::LabelPair {
                name: Some(n.to_string()),
                value: Some(v.to_string()),
            })
            .collect();
        for (n, v) in external {
            if labels.get(n).is_none() {
                label.push(pb::LabelPair {
                    name: Some(n.clone()),
                    value: Some(v.clone()),
                });
            }
        }
        let mut metric = pb::Metric {
            label,
            timestamp_ms: Some(ts),
            ..pb::Metric::default()
        };
        match value {
            Value::Float(v) => metric.untyped = Some(pb::Untyped { value: Some(v) }),
            Value::Histogram(h) => metric.histogram = Some(histogram(h)),
        }
        if let Some(f) = family.as_mut() {
            f.metric.push(metric);
        }
    }
    if let Some(done) = family {
        done.encode_length_delimited(&mut body)
            .expect("a Vec grows as needed");
    }
    body
}

/// An NHCB (schema -53) as the classic histogram it stands for: per custom bound
/// (ascending, `+Inf` not among them) the cumulative count of the buckets up to it,
/// integer when every count is whole.
fn classic_histogram(h: &FloatHistogram) -> pb::Histogram {
    let whole = h.has_whole_counts();
    let mut buckets = h.positive().into_iter().peekable();
    let mut cumulative = 0.0;
    let bucket = h
        .custom_values
        .iter()
        .enumerate()
        .map(|(i, &le)| {
            while let Some((_, count)) = buckets.next_if(|&(index, _)| index <= i as i32) {
                cumulative += count;
            }
            pb::Bucket {
                upper_bound: Some(le),
                cumulative_count: whole.then_some(cumulative as u64),
                cumulative_count_float: (!whole).then_some(cumulative),
                ..pb::Bucket::default()
            }
        })
        .collect();
    pb::Histogram {
        sample_count: whole.then_some(h.count as u64),
        sample_count_float: (!whole).then_some(h.count),
        sample_sum: Some(h.sum),
        bucket,
        ..pb::Histogram::default()
    }
}

/// `h` in the exposition's form: integer when every count is whole; an NHCB as its
/// classic histogram.
fn histogram(h: &FloatHistogram) -> pb::Histogram {
    if h.uses_custom_buckets() {
        return classic_histogram(h);
    }
    let spans = |spans: &[Span]| -> Vec<pb::BucketSpan> {
        spans
            .iter()
            .map(|s| pb::BucketSpan {
                offset: Some(s.offset),
                length: Some(s.length),
            })
            .collect()
    };
    let mut out = pb::Histogram {
        sample_sum: Some(h.sum),
        schema: Some(h.schema),
        zero_threshold: Some(h.zero_threshold),
        positive_span: spans(&h.positive_spans),
        negative_span: spans(&h.negative_spans),
        ..pb::Histogram::default()
    };
    if h.has_whole_counts() {
        out.sample_count = Some(h.count as u64);
        out.zero_count = Some(h.zero_count as u64);
        out.positive_delta = deltas_from_counts(&h.positive_buckets);
        out.negative_delta = deltas_from_counts(&h.negative_buckets);
    } else {
        out.sample_count_float = Some(h.count);
        out.zero_count_float = Some(h.zero_count);
        out.positive_count = h.positive_buckets.clone();
        out.negative_count = h.negative_buckets.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        wants_protobuf(&headers)
    }

    /// Prometheus 3.7's `TestFederationWithNativeHistograms` NHCB (web/federate_test.go):
    /// buckets 3, 2 and 1 at indices 0, 1 and 4 of bounds 0.1, 0.2, 0.5, 1, 2 federate
    /// as cumulative counts 3, 5, 5, 5, 6 and a count of 6.
    #[test]
    fn an_nhcb_federates_as_its_classic_histogram() {
        let h = FloatHistogram {
            schema: -53,
            count: 6.0,
            sum: 1.234,
            positive_spans: vec![
                Span {
                    offset: 0,
                    length: 2,
                },
                Span {
                    offset: 2,
                    length: 1,
                },
            ],
            positive_buckets: vec![3.0, 2.0, 1.0],
            custom_values: vec![0.1, 0.2, 0.5, 1.0, 2.0],
            ..FloatHistogram::default()
        };
        let out = histogram(&h);
        let buckets: Vec<(f64, u64)> = out
            .bucket
            .iter()
            .map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap()))
            .collect();
        assert_eq!(buckets, [(0.1, 3), (0.2, 5), (0.5, 5), (1.0, 5), (2.0, 6)]);
        assert_eq!((out.sample_count, out.sample_sum), (Some(6), Some(1.234)));
        assert_eq!(out.schema, None, "a classic histogram, for any scraper");
        let halves = FloatHistogram {
            positive_buckets: vec![1.5, 2.0, 1.0],
            count: 4.5,
            ..h
        };
        let out = histogram(&halves);
        assert_eq!(out.sample_count_float, Some(4.5));
        assert_eq!(out.bucket[1].cumulative_count_float, Some(3.5));
    }

    #[test]
    fn negotiates_like_expfmt() {
        // What Prometheus 2.42 sends with native histograms enabled, and without.
        assert!(accept("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"));
        assert!(!accept("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(!accept("text/plain;version=0.0.4;q=0.8,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5"));
        assert!(!accept(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
        ));
        assert!(!accept("*/*"));
        assert!(!wants_protobuf(&HeaderMap::new()));
    }
}
