//! OTLP metrics → Prometheus samples and native histograms, translated as Prometheus
//! 3.x's OTLP receiver does (`storage/remote/otlptranslator/prometheusremotewrite`,
//! names by `github.com/prometheus/otlptranslator`).
//!
//! Contract, per resource of an [`ExportMetricsServiceRequest`]:
//! - Metric names follow `otlp.translation_strategy`; with the default
//!   `UnderscoreEscapingWithSuffixes` the name is split at characters outside
//!   `[a-zA-Z0-9:]`, the unit's suffix is added (`s` → `seconds`, `By/s` →
//!   `bytes_per_second`, `{...}` units and `1` add none) unless already a word of the
//!   name, monotonic sums end in `_total`, gauges of unit `1` in `_ratio`, and a
//!   leading digit gets a `_`.
//! - Labels: the point's attributes, names escaped (invalid characters → `_`, a leading
//!   digit → `key_`, a leading single `_` → `key_`), values colliding after escaping
//!   joined with `;` in name order; then the promoted resource attributes where the
//!   point has no such label; then `job` (`service.namespace/service.name`) and
//!   `instance` (`service.instance.id`) from the resource.
//! - Gauges and non-monotonic sums are gauges; monotonic sums counters; explicit-bucket
//!   histograms classic `_bucket{le}`/`_sum`/`_count` series (`le` as Go's
//!   `FormatFloat(b, 'f', -1)`, `+Inf` = count), or with `otlp.convert_histograms_to_nhcb`
//!   instead one native histogram with custom buckets (schema -53) per point, of the
//!   series named without suffix; summaries `{quantile}`/`_sum`/`_count`.
//!   Exponential histograms are native histograms of the series named without suffix
//!   (see [`exponential_histogram`]: scale → schema, above 8 merged down to 8, below -4
//!   refused). A point flagged "no recorded value" becomes a stale marker (for a
//!   histogram series, the float one promflow's storage keeps).
//! - Sums and histograms (either kind) must be cumulative: delta (or unspecified)
//!   temporality is refused per metric, as Prometheus does without
//!   `otlp-deltatocumulative` / `otlp-native-delta-ingestion`.
//! - Exemplars are returned by series id, as Prometheus 3.x makes them (see
//!   [`exemplar`]; otlptranslator/prometheusremotewrite, v3.9): a sum point's go to its
//!   series (`addSumNumberDataPoints`; a gauge's are dropped), a native histogram's
//!   (exponential, and NHCB) to its series, a classic histogram's to its `_bucket`
//!   series (`addHistogramDataPoints`: taken in the order sent, each bucket from the
//!   lowest takes the next exemplars whose value is at most its bound, `+Inf` the
//!   rest; none to `_sum` or `_count`). Not read: min and max.
//! - Start times: every point's (`start_time_unix_nano`, ms) is its samples'
//!   `start_ms`, which the receiver hands to `Ingester::start_zeros`: with
//!   `created-timestamp-zero-ingestion` the zero sample of the start goes before each
//!   sample (of every kind, as Prometheus 3.x's OTLP appender,
//!   otlptranslator/prometheusremotewrite/combined_appender.go, does when the start
//!   is before the point); `target_info` has none.
//! - `target_info{job, instance, <other resource attributes>} 1` when the resource has
//!   attributes besides the three identifying ones and has a `job` or `instance`: one
//!   sample every half lookback delta from the resource's earliest to its latest point,
//!   and one at the latest (at most 1000 steps back from the latest, where Prometheus
//!   has no bound).
//! - A refused metric does not stop the others; its reason is returned and the caller
//!   logs it, as Prometheus logs translation errors and stores the rest.

use super::otlp_proto::{
    self, AnyValue, Data, ExponentialBuckets, ExponentialHistogramDataPoint,
    ExportMetricsServiceRequest, HistogramDataPoint, KeyValue, Metric, NumberValue, Resource,
};
use crate::config::{OtlpConfig, TranslationStrategy};
use crate::storage::exemplars::Exemplar;
use crate::storage::HistogramSample;
use dataflows::histogram::{spans_of, CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA};
use dataflows::{Labels, Sample, STALE_MARKER};
use std::cmp::Ordering::Greater;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a request translated to.
#[derive(Default)]
pub struct Translated {
    /// The samples, in the order of the request (stale markers of native-histogram
    /// series among them: a histogram series' stale marker is a float sample).
    pub samples: Vec<Sample>,
    /// The native histograms (exponential histograms; explicit-bucket ones with
    /// `convert_histograms_to_nhcb`), in the order of the request.
    pub histograms: Vec<HistogramSample>,
    /// The exemplars (of sums, classic and native histograms), by series id (kept
    /// when exemplar storage is on).
    pub exemplars: Vec<(u64, Exemplar)>,
    /// Why metrics were refused, one line each.
    pub refused: Vec<String>,
    /// Points of refused metrics (delta, bad names, exponential histograms of a
    /// scale below -4).
    pub refused_points: usize,
}

/// The kind of a metric, as the name translation sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    MonotonicCounter,
    NonMonotonicCounter,
    Histogram,
    Summary,
}

/// The most `target_info` samples one resource of a request makes, but the last.
const MAX_TARGET_INFO_STEPS: i64 = 1000;

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// Translates `request`; `lookback_ms` spaces the `target_info` samples.
pub fn translate(
    request: &ExportMetricsServiceRequest,
    config: &OtlpConfig,
    lookback_ms: i64,
) -> Translated {
    let mut out = Translated::default();
    for rm in &request.resource_metrics {
        let empty = Resource::default();
        let resource = rm.resource.as_ref().unwrap_or(&empty);
        let ctx = ResourceContext::new(resource, config);
        let mut earliest = i64::MAX;
        let mut latest = i64::MIN;
        for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            for t in point_times(metric) {
                earliest = earliest.min(t);
                latest = latest.max(t);
            }
            if let Err(reason) = ctx.metric(metric, config, &mut out) {
                out.refused_points += point_times(metric).count();
                out.refused.push(reason.to_string());
            }
        }
        if earliest <= latest {
            ctx.target_info(earliest, latest, lookback_ms, &mut out.samples);
        }
    }
    out
}

/// Nanoseconds → milliseconds, as Prometheus (truncated).
fn ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn point_times(metric: &Metric) -> Box<dyn Iterator<Item = i64> + '_> {
    match &metric.data {
        Some(Data::Gauge(g)) => Box::new(g.data_points.iter().map(|p| ms(p.time_unix_nano))),
        Some(Data::Sum(s)) => Box::new(s.data_points.iter().map(|p| ms(p.time_unix_nano))),
        Some(Data::Histogram(h)) => Box::new(h.data_points.iter().map(|p| ms(p.time_unix_nano))),
        Some(Data::ExponentialHistogram(h)) => {
            Box::new(h.data_points.iter().map(|p| ms(p.time_unix_nano)))
        }
        Some(Data::Summary(s)) => Box::new(s.data_points.iter().map(|p| ms(p.time_unix_nano))),
        None => Box::new(std::iter::empty()),
    }
}

/// One resource's settings for its series.
struct ResourceContext<'a> {
    resource: &'a Resource,
    strategy: TranslationStrategy,
    keep_identifying: bool,
    /// Promoted resource attributes, escaped names, name order.
    promoted: Vec<(String, String)>,
    job: Option<String>,
    instance: Option<String>,
}

impl<'a> ResourceContext<'a> {
    fn new(resource: &'a Resource, config: &OtlpConfig) -> ResourceContext<'a> {
        let get = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_string(kv.value.as_ref()))
        };
        let job = get(SERVICE_NAME).map(|name| match get(SERVICE_NAMESPACE) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        });
        let mut promoted: Vec<(String, String)> = resource
            .attributes
            .iter()
            .filter(|kv| {
                if config.promote_all_resource_attributes {
                    !config.ignore_resource_attributes.contains(&kv.key)
                } else {
                    config.promote_resource_attributes.contains(&kv.key)
                }
            })
            .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref())))
            .collect();
        promoted.sort_by(|a, b| a.0.cmp(&b.0));
        let escapes = config.translation_strategy.escapes();
        for (name, _) in &mut promoted {
            *name = label_name(name, escapes);
        }
        ResourceContext {
            resource,
            strategy: config.translation_strategy,
            keep_identifying: config.keep_identifying_resource_attributes,
            promoted,
            job,
            instance: get(SERVICE_INSTANCE_ID),
        }
    }

    /// The labels of a series: see the module contract. `extras` are `(name, value)`
    /// set last (`__name__`, `le`, `quantile`).
    fn labels(
        &self,
        attributes: &[KeyValue],
        ignore: &[&str],
        promote: bool,
        extras: &[(&str, &str)],
    ) -> Arc<Labels> {
        let escapes = self.strategy.escapes();
        let mut sorted: Vec<&KeyValue> = attributes
            .iter()
            .filter(|kv| !ignore.contains(&kv.key.as_str()))
            .collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for kv in sorted {
            let value = value_string(kv.value.as_ref());
            map.entry(label_name(&kv.key, escapes))
                .and_modify(|v| {
                    v.push(';');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        if promote {
            for (name, value) in &self.promoted {
                map.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        if let Some(job) = &self.job {
            map.insert("job".into(), job.clone());
        }
        if let Some(instance) = &self.instance {
            map.insert("instance".into(), instance.clone());
        }
        for (name, value) in extras {
            let reserved = name.len() > 4 && name.starts_with("__") && name.ends_with("__");
            let name = if reserved {
                name.to_string()
            } else {
                label_name(name, escapes)
            };
            map.insert(name, value.to_string());
        }
        Arc::new(Labels::from_pairs(map.into_iter().collect()))
    }

    /// A float sample of series `labels` at the point's `(time, start time)` (ns).
    fn push(&self, out: &mut Vec<Sample>, labels: Arc<Labels>, times: (u64, u64), value: f64) {
        out.push(Sample {
            series_id: labels.hash(),
            labels,
            timestamp_ms: ms(times.0),
            value,
            start_ms: ms(times.1),
        });
    }

    /// A native histogram of the series `name` (with the point's `attributes`), at the
    /// point's time with its flags and exemplars: a stale marker for a point with no
    /// recorded value.
    fn push_histogram(
        &self,
        out: &mut Translated,
        name: &str,
        attributes: &[KeyValue],
        (time_nanos, start_nanos, flags, exemplars): (u64, u64, u32, &[otlp_proto::Exemplar]),
        histogram: FloatHistogram,
    ) {
        let labels = self.labels(attributes, &[], true, &[("__name__", name)]);
        if flags & otlp_proto::FLAG_NO_RECORDED_VALUE != 0 {
            // Prometheus appends a histogram whose sum is the stale NaN; promflow's
            // stale marker of a histogram series is the float one.
            self.push(&mut out.samples, labels, (time_nanos, 0), STALE_MARKER);
            return;
        }
        let series_id = labels.hash();
        out.exemplars.extend(
            exemplars
                .iter()
                .map(|e| (series_id, exemplar(e, ms(time_nanos)))),
        );
        out.histograms.push(HistogramSample {
            series_id,
            labels,
            timestamp_ms: ms(time_nanos),
            histogram,
            start_ms: ms(start_nanos),
        });
    }

    /// Appends one metric's samples, or says why it is refused. An exponential
    /// histogram's point that cannot be converted refuses it and the metric's later
    /// points (its earlier ones are kept), as Prometheus returns at the first error.
    fn metric(
        &self,
        metric: &Metric,
        config: &OtlpConfig,
        translated: &mut Translated,
    ) -> Result<(), MetricError> {
        let kind = match &metric.data {
            None => return Err(MetricError::NoType(metric.name.clone())),
            Some(Data::ExponentialHistogram(_)) => Kind::Histogram,
            Some(Data::Gauge(_)) => Kind::Gauge,
            Some(Data::Sum(s)) if s.is_monotonic => Kind::MonotonicCounter,
            Some(Data::Sum(_)) => Kind::NonMonotonicCounter,
            Some(Data::Histogram(_)) => Kind::Histogram,
            Some(Data::Summary(_)) => Kind::Summary,
        };
        let temporality = match &metric.data {
            Some(Data::Sum(s)) => Some(s.aggregation_temporality),
            Some(Data::Histogram(h)) => Some(h.aggregation_temporality),
            Some(Data::ExponentialHistogram(h)) => Some(h.aggregation_temporality),
            _ => None,
        };
        if let Some(t) = temporality {
            if t != otlp_proto::TEMPORALITY_CUMULATIVE {
                return Err(MetricError::Temporality {
                    name: metric.name.clone(),
                    delta: t == otlp_proto::TEMPORALITY_DELTA,
                });
            }
        }
        let name = metric_name(&metric.name, &metric.unit, kind, self.strategy)?;
        let out = &mut translated.samples;
        let stale = |flags: u32, v: f64| {
            if flags & otlp_proto::FLAG_NO_RECORDED_VALUE != 0 {
                STALE_MARKER
            } else {
                v
            }
        };
        let exemplars = &mut translated.exemplars;
        match &metric.data {
            Some(Data::Gauge(otlp_proto::Gauge { data_points }))
            | Some(Data::Sum(otlp_proto::Sum { data_points, .. })) => {
                let sum = matches!(metric.data, Some(Data::Sum(_)));
                for p in data_points {
                    let value = match p.value {
                        Some(NumberValue::AsDouble(d)) => d,
                        Some(NumberValue::AsInt(i)) => i as f64,
                        None => 0.0,
                    };
                    let labels = self.labels(&p.attributes, &[], true, &[("__name__", &name)]);
                    if sum {
                        let (id, point_ms) = (labels.hash(), ms(p.time_unix_nano));
                        exemplars.extend(p.exemplars.iter().map(|e| (id, exemplar(e, point_ms))));
                    }
                    let times = (p.time_unix_nano, p.start_time_unix_nano);
                    self.push(out, labels, times, stale(p.flags, value));
                }
            }
            Some(Data::Histogram(h)) if config.convert_histograms_to_nhcb => {
                for p in &h.data_points {
                    let histogram = custom_buckets_histogram(p);
                    let point = (
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        p.flags,
                        &p.exemplars[..],
                    );
                    self.push_histogram(translated, &name, &p.attributes, point, histogram);
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                for p in &h.data_points {
                    let histogram = exponential_histogram(p).map_err(|reason| {
                        MetricError::ExponentialHistogram {
                            name: metric.name.clone(),
                            reason,
                        }
                    })?;
                    let point = (
                        p.time_unix_nano,
                        p.start_time_unix_nano,
                        p.flags,
                        &p.exemplars[..],
                    );
                    self.push_histogram(translated, &name, &p.attributes, point, histogram);
                }
            }
            Some(Data::Histogram(h)) => {
                let (bucket, sum, count) = (
                    format!("{name}_bucket"),
                    format!("{name}_sum"),
                    format!("{name}_count"),
                );
                for p in &h.data_points {
                    let times = (p.time_unix_nano, p.start_time_unix_nano);
                    let point_ms = ms(p.time_unix_nano);
                    let mut sampled = p.exemplars.iter().map(|e| exemplar(e, point_ms)).peekable();
                    if let Some(s) = p.sum {
                        let labels = self.labels(&p.attributes, &[], true, &[("__name__", &sum)]);
                        self.push(out, labels, times, stale(p.flags, s));
                    }
                    let labels = self.labels(&p.attributes, &[], true, &[("__name__", &count)]);
                    self.push(out, labels, times, stale(p.flags, p.count as f64));
                    let mut cumulative = 0u64;
                    for (bound, n) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
                        // Go's uint64 arithmetic: wraps, never panics.
                        cumulative = cumulative.wrapping_add(*n);
                        let le = format_float(*bound);
                        let labels = self.labels(
                            &p.attributes,
                            &[],
                            true,
                            &[("__name__", &bucket), ("le", &le)],
                        );
                        let id = labels.hash();
                        // Up to the first above the bound (a NaN is not).
                        let above = |e: &Exemplar| e.value.partial_cmp(bound) == Some(Greater);
                        while let Some(e) = sampled.next_if(|e| !above(e)) {
                            exemplars.push((id, e));
                        }
                        self.push(out, labels, times, stale(p.flags, cumulative as f64));
                    }
                    let labels = self.labels(
                        &p.attributes,
                        &[],
                        true,
                        &[("__name__", &bucket), ("le", "+Inf")],
                    );
                    let id = labels.hash();
                    exemplars.extend(sampled.map(|e| (id, e)));
                    self.push(out, labels, times, stale(p.flags, p.count as f64));
                }
            }
            Some(Data::Summary(s)) => {
                let (sum, count) = (format!("{name}_sum"), format!("{name}_count"));
                for p in &s.data_points {
                    let times = (p.time_unix_nano, p.start_time_unix_nano);
                    let labels = self.labels(&p.attributes, &[], true, &[("__name__", &sum)]);
                    self.push(out, labels, times, stale(p.flags, p.sum));
                    let labels = self.labels(&p.attributes, &[], true, &[("__name__", &count)]);
                    self.push(out, labels, times, stale(p.flags, p.count as f64));
                    for q in &p.quantile_values {
                        let quantile = format_float(q.quantile);
                        let labels = self.labels(
                            &p.attributes,
                            &[],
                            true,
                            &[("__name__", &name), ("quantile", &quantile)],
                        );
                        self.push(out, labels, times, stale(p.flags, q.value));
                    }
                }
            }
            None => unreachable!("refused above"),
        }
        Ok(())
    }

    /// Appends the resource's `target_info` samples (see the module contract).
    fn target_info(
        &self,
        earliest_ms: i64,
        latest_ms: i64,
        lookback_ms: i64,
        out: &mut Vec<Sample>,
    ) {
        let identifying = [SERVICE_NAMESPACE, SERVICE_NAME, SERVICE_INSTANCE_ID];
        let others = self
            .resource
            .attributes
            .iter()
            .filter(|kv| !identifying.contains(&kv.key.as_str()))
            .count();
        if others == 0 || (self.job.is_none() && self.instance.is_none()) {
            return;
        }
        let ignore: &[&str] = if self.keep_identifying {
            &[]
        } else {
            &identifying
        };
        let labels = self.labels(
            &self.resource.attributes,
            ignore,
            false,
            &[("__name__", "target_info")],
        );
        let interval = (lookback_ms / 2).max(1);
        // At most MAX_TARGET_INFO_STEPS samples, the latest ones: points far apart in
        // one request (bogus timestamps) must not make millions of samples.
        let mut t = earliest_ms
            .max(latest_ms.saturating_sub(interval.saturating_mul(MAX_TARGET_INFO_STEPS)));
        while t < latest_ms {
            out.push(Sample {
                series_id: labels.hash(),
                labels: labels.clone(),
                timestamp_ms: t,
                value: 1.0,
                start_ms: 0,
            });
            t += interval;
        }
        out.push(Sample {
            series_id: labels.hash(),
            labels,
            timestamp_ms: latest_ms,
            value: 1.0,
            start_ms: 0,
        });
    }
}

/// An attribute value as text (pdata's `AsString`): strings as they are, numbers and
/// booleans as Go prints them, lists and maps as JSON, bytes as base64.
fn value_string(value: Option<&AnyValue>) -> String {
    use otlp_proto::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => es6_number(*d),
        Some(Value::BytesValue(b)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b)
        }
        Some(other) => serde_json::to_string(&json_value(Some(&AnyValue {
            value: Some(other.clone()),
        })))
        .unwrap_or_default(),
    }
}

fn json_value(value: Option<&AnyValue>) -> serde_json::Value {
    use otlp_proto::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => serde_json::Value::Null,
        Some(Value::StringValue(s)) => s.clone().into(),
        Some(Value::BoolValue(b)) => (*b).into(),
        Some(Value::IntValue(i)) => (*i).into(),
        Some(Value::DoubleValue(d)) => (*d).into(),
        Some(Value::BytesValue(_)) => value_string(value).into(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(|v| json_value(Some(v))).collect(),
        Some(Value::KvlistValue(kv)) => kv
            .values
            .iter()
            .map(|kv| (kv.key.clone(), json_value(kv.value.as_ref())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// A double as ES6 prints it (what pdata uses): plain between 1e-6 and 1e21, else
/// with an exponent (`1e+21`).
fn es6_number(d: f64) -> String {
    let abs = d.abs();
    if d.is_nan() || d.is_infinite() {
        return format!("json: unsupported value: {}", format_float(d));
    }
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{d}");
    }
    let e = format!("{d:e}");
    match e.split_once('e') {
        Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
        _ => e,
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, no exponent.
fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// A label name under the strategy: escaped (see the module contract) or as sent.
fn label_name(name: &str, escapes: bool) -> String {
    if !escapes || name.is_empty() {
        return name.to_string();
    }
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

fn unit_suffixes(unit: &str) -> (String, String) {
    let main_map = |u: &str| -> String {
        match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "TiBy" => "tibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "TBy" => "terabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "1" => "",
            "%" => "percent",
            other => other,
        }
        .to_string()
    };
    let per_map = |u: &str| -> String {
        match u {
            "s" => "second",
            "m" => "minute",
            "h" => "hour",
            "d" => "day",
            "w" => "week",
            "mo" => "month",
            "y" => "year",
            other => other,
        }
        .to_string()
    };
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let main = if !main.is_empty() && !main.contains(['{', '}']) {
        main_map(main)
    } else {
        String::new()
    };
    let per = match parts.next() {
        Some(p) if !p.is_empty() => {
            let p = p.trim();
            if !p.is_empty() && !p.contains(['{', '}']) {
                format!("per_{}", per_map(p))
            } else {
                String::new()
            }
        }
        _ => String::new(),
    };
    (main, per)
}

fn valid_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// A unit suffix cleaned to metric-name characters, underscores collapsed, no leading `_`.
fn clean_unit(unit: &str) -> String {
    let mut out = String::new();
    for c in unit.chars() {
        let c = if valid_metric_char(c) { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_start_matches('_').to_string()
}

/// Prometheus's `maxExemplarRunes`: the filtered attributes are left out of an
/// exemplar's labels when they and the ids would exceed it.
const MAX_EXEMPLAR_RUNES: usize = 128;

/// An OTLP exemplar as Prometheus 3.x keeps it (`getPromExemplars`): its value, its
/// time (`point_ms`, the point's, when it has none), labels `trace_id` and `span_id`
/// (hex) when set and its filtered attributes (names as sent) unless they would make
/// the labels longer than [`MAX_EXEMPLAR_RUNES`] characters.
fn exemplar(e: &otlp_proto::Exemplar, point_ms: i64) -> Exemplar {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut runes = 0;
    for (key, id) in [("trace_id", &e.trace_id), ("span_id", &e.span_id)] {
        if !id.is_empty() && id.iter().any(|&b| b != 0) {
            let value = hex(id);
            runes += key.chars().count() + value.chars().count();
            labels.push((key.to_string(), value));
        }
    }
    let attributes: Vec<(String, String)> = e
        .filtered_attributes
        .iter()
        .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref())))
        .collect();
    runes += attributes
        .iter()
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum::<usize>();
    if runes <= MAX_EXEMPLAR_RUNES {
        labels.extend(attributes);
    }
    labels.sort();
    let ts = ms(e.time_unix_nano);
    Exemplar {
        labels: Labels::from_pairs(labels),
        value: match e.value {
            Some(otlp_proto::ExemplarValue::AsDouble(d)) => d,
            Some(otlp_proto::ExemplarValue::AsInt(i)) => i as f64,
            None => 0.0,
        },
        timestamp_ms: if ts != 0 { ts } else { point_ms },
        has_timestamp: ts != 0,
    }
}

/// Prometheus's schemas of exponential histograms: -4 ..= 8.
const MIN_SCHEMA: i32 = -4;
const MAX_SCHEMA: i32 = 8;

/// The zero threshold Prometheus 3.x gives every converted exponential histogram (it
/// does not read the point's `zero_threshold` yet).
const OTLP_ZERO_THRESHOLD: f64 = 1e-128;

/// An exponential-histogram point as Prometheus 3.x converts it
/// (`exponentialToNativeHistogram`): schema = scale, a scale above 8 reduced to 8 by
/// merging `2^(scale-8)` neighbouring buckets, a scale below -4 refused; OTel's bucket
/// `i` (`(base^i, base^(i+1)]`) is Prometheus's bucket `i+1` (`(base^i, base^(i+1)]`
/// under Prometheus's "upper bound `base^idx`" numbering); zero count, count and sum
/// as sent (a missing sum is 0); the zero threshold [`OTLP_ZERO_THRESHOLD`]; hint
/// unknown (cumulative). Empty buckets are left out, which Prometheus's queries do not
/// tell apart.
fn exponential_histogram(p: &ExponentialHistogramDataPoint) -> Result<FloatHistogram, String> {
    if p.scale < MIN_SCHEMA {
        return Err(format!(
            "cannot convert exponential to native histogram. Scale must be >= {MIN_SCHEMA}, was {}",
            p.scale
        ));
    }
    // Go's shift of a signed integer by its width or more gives 0 or -1 (the sign);
    // Rust's would overflow, so a scale past 8 + 63 shifts by 63, the same result.
    let scale_down = (p.scale - MAX_SCHEMA).clamp(0, 63) as u32;
    let buckets = |b: &Option<ExponentialBuckets>| {
        let mut merged: Vec<(i32, f64)> = Vec::new();
        let Some(b) = b else { return merged };
        for (i, &n) in b.bucket_counts.iter().enumerate() {
            // Go's `(i + offset) >> scaleDown + 1`: an arithmetic shift, floor for
            // negative indexes.
            let otel = b.offset as i64 + i as i64;
            let idx = ((otel >> scale_down) + 1) as i32;
            match merged.last_mut() {
                Some(last) if last.0 == idx => last.1 += n as f64,
                _ => merged.push((idx, n as f64)),
            }
        }
        merged.retain(|b| b.1 != 0.0);
        merged
    };
    let (positive_spans, positive_buckets) = spans_of(&buckets(&p.positive));
    let (negative_spans, negative_buckets) = spans_of(&buckets(&p.negative));
    Ok(FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: p.scale.min(MAX_SCHEMA),
        zero_threshold: OTLP_ZERO_THRESHOLD,
        zero_count: p.zero_count as f64,
        count: p.count as f64,
        sum: p.sum.unwrap_or(0.0),
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: Vec::new(),
    })
}

/// An explicit-bucket point as a native histogram with custom buckets, as Prometheus
/// 3.x converts it with `convert_histograms_to_nhcb` (`explicitHistogramToCustomBucketsHistogram`):
/// schema -53, the explicit bounds as the custom values (the last bucket is the
/// implicit `+Inf` one), bucket `i` = `bucket_counts[i]` (empty ones left out), count
/// and sum as sent, hint unknown.
fn custom_buckets_histogram(p: &HistogramDataPoint) -> FloatHistogram {
    let buckets: Vec<(i32, f64)> = p
        .bucket_counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n != 0)
        .map(|(i, &n)| (i as i32, n as f64))
        .collect();
    let (positive_spans, positive_buckets) = spans_of(&buckets);
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: p.count as f64,
        sum: p.sum.unwrap_or(0.0),
        positive_spans,
        positive_buckets,
        custom_values: p.explicit_bounds.clone(),
        ..FloatHistogram::default()
    }
}

/// Why an OTLP metric is refused (each refused metric's text is logged).
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// The metric has no data.
    #[error("unsupported metric type (none) for metric {0:?}")]
    NoType(String),
    /// An exponential histogram point that has no native histogram.
    #[error("exponential histogram {name:?}: {reason}")]
    ExponentialHistogram {
        /// The metric.
        name: String,
        /// Prometheus's wording.
        reason: String,
    },
    /// A temporality other than cumulative.
    #[error("invalid temporality and type combination for metric {name:?}{}", if *.delta { " (delta temporality is refused, as Prometheus does without otlp-deltatocumulative)" } else { "" })]
    Temporality {
        /// The metric.
        name: String,
        /// Whether it is delta.
        delta: bool,
    },
    /// Nothing of the name is left after translation.
    #[error("normalization for metric {name:?} resulted in an invalid name {built:?}")]
    InvalidName {
        /// The OTLP name.
        name: String,
        /// What translation made of it.
        built: String,
    },
}

/// The Prometheus name of a metric (see the module contract); an error when nothing of
/// the name is left.
fn metric_name(
    name: &str,
    unit: &str,
    kind: Kind,
    strategy: TranslationStrategy,
) -> Result<String, MetricError> {
    let built = match strategy {
        TranslationStrategy::NoTranslation => name.to_string(),
        TranslationStrategy::UnderscoreEscapingWithoutSuffixes => {
            let joined = name
                .split(|c: char| !valid_metric_char(c) && c != '_')
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            digit_prefixed(joined)
        }
        TranslationStrategy::UnderscoreEscapingWithSuffixes => {
            let mut tokens: Vec<String> = name
                .split(|c: char| !valid_metric_char(c))
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            let (main, per) = unit_suffixes(unit);
            let mut main = clean_unit(&main);
            let mut per = clean_unit(&per);
            if tokens.contains(&main) {
                main.clear();
            }
            if per == "per_" {
                per.clear();
            } else {
                per = per.trim_end_matches('_').to_string();
                if tokens.contains(&per) {
                    per.clear();
                }
            }
            if !per.is_empty() {
                main = main.trim_end_matches('_').to_string();
            }
            if !main.is_empty() {
                tokens.push(main);
            }
            if !per.is_empty() {
                tokens.push(per);
            }
            if kind == Kind::MonotonicCounter {
                tokens.retain(|t| t != "total");
                tokens.push("total".into());
            }
            if unit == "1" && kind == Kind::Gauge {
                tokens.retain(|t| t != "ratio");
                tokens.push("ratio".into());
            }
            digit_prefixed(tokens.join("_"))
        }
        TranslationStrategy::NoUTF8EscapingWithSuffixes => {
            let mut name = name.to_string();
            let mut suffixes: Vec<&str> = Vec::new();
            let trim = |name: &mut String, suffix: &str| {
                if name.ends_with(suffix) && name.len() > suffix.len() + 1 {
                    name.truncate(name.len() - suffix.len() - 1);
                }
            };
            if unit == "1" && kind == Kind::Gauge {
                trim(&mut name, "ratio");
                suffixes.push("ratio");
            }
            if kind == Kind::MonotonicCounter {
                trim(&mut name, "total");
                suffixes.push("total");
            }
            let (main, per) = unit_suffixes(unit);
            if !per.is_empty() {
                trim(&mut name, &per);
                suffixes.push(&per);
            }
            if !main.is_empty() && !name.ends_with(&main) {
                name = format!("{name}_{main}");
            }
            for suffix in suffixes.iter().rev() {
                name = format!("{name}_{suffix}");
            }
            name
        }
    };
    let escapes = strategy.escapes();
    if built.is_empty() || (escapes && built != name && built.chars().all(|c| c == '_')) {
        return Err(MetricError::InvalidName {
            name: name.to_string(),
            built,
        });
    }
    Ok(built)
}

fn digit_prefixed(name: String) -> String {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Examples from otlptranslator's documentation and the OpenTelemetry
    /// "Prometheus and OpenMetrics compatibility" specification.
    #[test]
    fn names_follow_the_default_strategy() {
        let s = TranslationStrategy::UnderscoreEscapingWithSuffixes;
        let n = |name: &str, unit: &str, kind| metric_name(name, unit, kind, s).unwrap();
        assert_eq!(
            n("http.server.request.duration", "s", Kind::Histogram),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            n("requests.count", "1", Kind::MonotonicCounter),
            "requests_count_total"
        );
        assert_eq!(n("memory.usage", "By", Kind::Gauge), "memory_usage_bytes");
        assert_eq!(
            n("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(n("net.io", "By/s", Kind::Gauge), "net_io_bytes_per_second");
        assert_eq!(
            n("queue.items", "{item}", Kind::NonMonotonicCounter),
            "queue_items"
        );
        assert_eq!(n("latency_seconds", "s", Kind::Gauge), "latency_seconds");
        assert_eq!(
            n("jobs.total.done", "", Kind::MonotonicCounter),
            "jobs_done_total"
        );
        assert_eq!(n("2xx.responses", "", Kind::Gauge), "_2xx_responses");
        assert_eq!(
            metric_name(
                "a.b",
                "s",
                Kind::MonotonicCounter,
                TranslationStrategy::NoUTF8EscapingWithSuffixes
            )
            .unwrap(),
            "a.b_seconds_total"
        );
        assert_eq!(
            metric_name(
                "a.b__c",
                "s",
                Kind::Gauge,
                TranslationStrategy::UnderscoreEscapingWithoutSuffixes
            )
            .unwrap(),
            "a_b__c"
        );
        assert!(metric_name("...", "", Kind::Gauge, s).is_err());
    }

    #[test]
    fn label_names_are_escaped_like_prometheus() {
        assert_eq!(label_name("http.method", true), "http_method");
        assert_eq!(label_name("123abc", true), "key_123abc");
        assert_eq!(label_name("_private", true), "key_private");
        assert_eq!(label_name("__reserved__", true), "__reserved__");
        assert_eq!(label_name("http.method", false), "http.method");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(1000.0), "1000");
        assert_eq!(format_float(1e-9), "0.000000001");
        assert_eq!(es6_number(1.5), "1.5");
        assert_eq!(es6_number(1e21), "1e+21");
    }

    fn kv(key: &str, value: otlp_proto::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    fn text(key: &str, value: &str) -> KeyValue {
        kv(key, otlp_proto::Value::StringValue(value.into()))
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![otlp_proto::ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                }),
                scope_metrics: vec![otlp_proto::ScopeMetrics { metrics }],
            }],
        }
    }

    fn lines(t: &Translated) -> Vec<String> {
        let mut out: Vec<String> = t
            .samples
            .iter()
            .map(|s| {
                let v = if s.value.to_bits() == STALE_MARKER.to_bits() {
                    "stale".to_string()
                } else {
                    s.value.to_string()
                };
                format!("{} @{} {v}", s.labels, s.timestamp_ms)
            })
            .collect();
        out.sort();
        out
    }

    fn point(
        attributes: Vec<KeyValue>,
        ms: u64,
        value: f64,
        flags: u32,
    ) -> otlp_proto::NumberDataPoint {
        otlp_proto::NumberDataPoint {
            attributes,
            time_unix_nano: ms * 1_000_000,
            value: Some(NumberValue::AsDouble(value)),
            flags,
            ..Default::default()
        }
    }

    /// A sum point's exemplars go to its series, a gauge's nowhere, a classic
    /// histogram's to its buckets as Prometheus 3.x's `addHistogramDataPoints` walks
    /// them: in the order sent, a bucket takes the next ones up to the first above its
    /// bound (a NaN is not above), `+Inf` the rest.
    #[test]
    fn exemplars_of_sums_and_classic_histograms_go_to_their_series() {
        let sampled = |values: &[f64]| -> Vec<otlp_proto::Exemplar> {
            values
                .iter()
                .map(|&v| otlp_proto::Exemplar {
                    value: Some(otlp_proto::ExemplarValue::AsDouble(v)),
                    ..Default::default()
                })
                .collect()
        };
        let with_exemplars = otlp_proto::NumberDataPoint {
            exemplars: sampled(&[4.0]),
            ..point(vec![], 5000, 4.0, 0)
        };
        let metrics = vec![
            Metric {
                name: "requests".into(),
                data: Some(Data::Sum(otlp_proto::Sum {
                    data_points: vec![with_exemplars.clone()],
                    aggregation_temporality: otlp_proto::TEMPORALITY_CUMULATIVE,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "level".into(),
                data: Some(Data::Gauge(otlp_proto::Gauge {
                    data_points: vec![with_exemplars],
                })),
                ..Default::default()
            },
            Metric {
                name: "latency".into(),
                data: Some(Data::Histogram(otlp_proto::Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: 5_000_000_000,
                        count: 4,
                        sum: Some(3.0),
                        bucket_counts: vec![0, 3, 0, 1],
                        explicit_bounds: vec![0.005, 0.1, 1.0],
                        exemplars: sampled(&[0.05, 0.003, f64::NAN, 2.0, 0.5]),
                        ..Default::default()
                    }],
                    aggregation_temporality: otlp_proto::TEMPORALITY_CUMULATIVE,
                })),
                ..Default::default()
            },
        ];
        let t = translate(&request(vec![], metrics), &OtlpConfig::default(), 300_000);
        let name_of = |id: u64| {
            let s = t.samples.iter().find(|s| s.series_id == id).unwrap();
            s.labels.to_string()
        };
        let got: Vec<(String, String)> = t
            .exemplars
            .iter()
            .map(|(id, e)| (name_of(*id), e.value.to_string()))
            .collect();
        let want = [
            ("requests_total{}", "4"),
            (r#"latency_bucket{le="0.1"}"#, "0.05"),
            (r#"latency_bucket{le="0.1"}"#, "0.003"),
            (r#"latency_bucket{le="0.1"}"#, "NaN"),
            (r#"latency_bucket{le="+Inf"}"#, "2"),
            (r#"latency_bucket{le="+Inf"}"#, "0.5"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(s, v)| (s.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        // Without a time of their own, they take the point's.
        assert!(t.exemplars.iter().all(|(_, e)| e.timestamp_ms == 5000));
    }

    /// Start times become the samples' `start_ms` (ms, truncated), every series of a
    /// point alike; the receiver turns them into zero samples
    /// (`Ingester::start_zeros`) or drops them.
    #[test]
    fn start_times_are_the_samples_starts() {
        let started = |start_ms: u64| otlp_proto::NumberDataPoint {
            start_time_unix_nano: start_ms * 1_000_000 + 999_999,
            ..point(vec![], 5000, 1.0, 0)
        };
        let metrics = vec![
            Metric {
                name: "requests".into(),
                data: Some(Data::Sum(otlp_proto::Sum {
                    data_points: vec![started(1000)],
                    aggregation_temporality: otlp_proto::TEMPORALITY_CUMULATIVE,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "latency".into(),
                data: Some(Data::Summary(otlp_proto::Summary {
                    data_points: vec![otlp_proto::SummaryDataPoint {
                        time_unix_nano: 5_000_000_000,
                        start_time_unix_nano: 2_000_000_000,
                        count: 1,
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        ];
        let t = translate(&request(vec![], metrics), &OtlpConfig::default(), 300_000);
        let starts: Vec<(String, i64)> = t
            .samples
            .iter()
            .map(|s| (s.labels.metric_name().to_string(), s.start_ms))
            .collect();
        assert_eq!(
            starts,
            [
                ("requests_total".to_string(), 1000),
                ("latency_sum".to_string(), 2000),
                ("latency_count".to_string(), 2000),
            ]
        );
    }

    #[test]
    fn translates_summaries_sums_collisions_stale_points_and_resource_settings() {
        let metrics = vec![
            Metric {
                name: "temp".into(),
                unit: "Cel".into(),
                data: Some(Data::Sum(otlp_proto::Sum {
                    data_points: vec![
                        point(vec![text("a.b", "1"), text("a_b", "2")], 1000, 20.5, 0),
                        point(
                            vec![kv("n", otlp_proto::Value::IntValue(7))],
                            2000,
                            0.0,
                            otlp_proto::FLAG_NO_RECORDED_VALUE,
                        ),
                    ],
                    aggregation_temporality: otlp_proto::TEMPORALITY_CUMULATIVE,
                    is_monotonic: false,
                })),
                ..Default::default()
            },
            Metric {
                name: "rpc.duration".into(),
                unit: "s".into(),
                data: Some(Data::Summary(otlp_proto::Summary {
                    data_points: vec![otlp_proto::SummaryDataPoint {
                        time_unix_nano: 3_000_000_000,
                        count: 4,
                        sum: 1.5,
                        quantile_values: vec![otlp_proto::ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.9,
                        }],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        ];
        let resource = vec![
            text("service.name", "api"),
            text("service.instance.id", "i-1"),
            text("region", "eu"),
            text("zone", "b"),
        ];
        let config = OtlpConfig {
            promote_all_resource_attributes: true,
            ignore_resource_attributes: vec!["zone".into()],
            keep_identifying_resource_attributes: true,
            ..Default::default()
        };
        let t = translate(&request(resource.clone(), metrics.clone()), &config, 4000);
        assert!(t.refused.is_empty(), "{:?}", t.refused);
        assert_eq!(
            lines(&t),
            [
                r#"rpc_duration_seconds_count{instance="i-1", job="api", region="eu", service_instance_id="i-1", service_name="api"} @3000 4"#,
                r#"rpc_duration_seconds_sum{instance="i-1", job="api", region="eu", service_instance_id="i-1", service_name="api"} @3000 1.5"#,
                r#"rpc_duration_seconds{instance="i-1", job="api", quantile="0.99", region="eu", service_instance_id="i-1", service_name="api"} @3000 0.9"#,
                r#"target_info{instance="i-1", job="api", region="eu", service_instance_id="i-1", service_name="api", zone="b"} @1000 1"#,
                r#"target_info{instance="i-1", job="api", region="eu", service_instance_id="i-1", service_name="api", zone="b"} @3000 1"#,
                r#"temp_celsius{a_b="1;2", instance="i-1", job="api", region="eu", service_instance_id="i-1", service_name="api"} @1000 20.5"#,
                r#"temp_celsius{instance="i-1", job="api", n="7", region="eu", service_instance_id="i-1", service_name="api"} @2000 stale"#,
            ]
        );

        // NoTranslation keeps names; deltas and unspecified temporality are refused.
        let mut delta = metrics[0].clone();
        if let Some(Data::Sum(s)) = &mut delta.data {
            s.aggregation_temporality = otlp_proto::TEMPORALITY_DELTA;
        }
        let config = OtlpConfig {
            translation_strategy: TranslationStrategy::NoTranslation,
            ..Default::default()
        };
        let t = translate(
            &request(resource, vec![delta, metrics[1].clone()]),
            &config,
            4000,
        );
        assert_eq!(t.refused_points, 2);
        assert_eq!(t.refused.len(), 1);
        assert!(
            t.refused[0].contains("invalid temporality and type combination for metric \"temp\"")
        );
        let names: std::collections::BTreeSet<&str> =
            t.samples.iter().map(|s| s.labels.metric_name()).collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "rpc.duration",
                "rpc.duration_count",
                "rpc.duration_sum",
                "target_info"
            ]
        );
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;
    use dataflows::histogram::exponential_bound;

    fn point(scale: i32, offset: i32, counts: &[u64]) -> ExponentialHistogramDataPoint {
        ExponentialHistogramDataPoint {
            scale,
            count: counts.iter().sum::<u64>() + 2,
            zero_count: 2,
            sum: Some(12.5),
            positive: Some(ExponentialBuckets {
                offset,
                bucket_counts: counts.to_vec(),
            }),
            ..Default::default()
        }
    }

    /// `(lower, upper, count)` of the positive buckets, bounds from the OTel spec:
    /// bucket `i` of scale `s` is `(2^(i·2^-s), 2^((i+1)·2^-s)]`.
    fn otel_bucket(i: i64, scale: i32) -> (f64, f64) {
        let base = |i: i64| 2f64.powf(i as f64 * 2f64.powi(-scale));
        (base(i), base(i + 1))
    }

    #[test]
    fn exponential_buckets_keep_their_bounds() {
        // Scale 3: each OTel bucket is one Prometheus bucket with the same bounds.
        let h = exponential_histogram(&point(3, -2, &[1, 0, 4, 2])).unwrap();
        assert_eq!(
            (h.schema, h.zero_count, h.count, h.sum),
            (3, 2.0, 9.0, 12.5)
        );
        assert_eq!(h.zero_threshold, 1e-128);
        let got: Vec<(f64, f64, f64)> = h
            .positive()
            .into_iter()
            .map(|(idx, n)| (exponential_bound(idx - 1, 3), exponential_bound(idx, 3), n))
            .collect();
        let want: Vec<(f64, f64, f64)> = [(-2, 1.0), (0, 4.0), (1, 2.0)]
            .into_iter()
            .map(|(i, n)| {
                let (lo, up) = otel_bucket(i, 3);
                (lo, up, n)
            })
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.0 - w.0).abs() < 1e-12 && (g.1 - w.1).abs() < 1e-12 && g.2 == w.2,
                "{got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn scales_above_8_merge_and_below_minus_4_are_refused() {
        // Scale 10 → schema 8: four OTel buckets per Prometheus bucket. OTel -3..=1:
        // -3, -2, -1 lie in (2^(-4/1024), 1] = schema-8 bucket 0; 0, 1 in (1, 2^(1/256)]
        // = bucket 1.
        let h = exponential_histogram(&point(10, -3, &[1, 1, 1, 1, 1])).unwrap();
        assert_eq!(h.schema, 8);
        assert_eq!(h.positive(), [(0, 3.0), (1, 2.0)]);
        assert!((exponential_bound(0, 8) - 1.0).abs() < 1e-12);
        // Scale 20 → 8: 4096 OTel buckets per bucket; 4095 and 4096 straddle a bound.
        let h = exponential_histogram(&point(20, 4095, &[5, 7])).unwrap();
        assert_eq!(h.positive(), [(1, 5.0), (2, 7.0)]);
        // A scale past what a shift can take (the OTel spec stops at 20, a client need
        // not): every bucket merges into schema-8 bucket 1 (0 and up) or 0 (below), as
        // Go's shift of a signed index by 64 or more does.
        let h = exponential_histogram(&point(80, -2, &[1, 1, 3])).unwrap();
        assert_eq!((h.schema, h.positive()), (8, vec![(0, 2.0), (1, 3.0)]));
        let err = exponential_histogram(&point(-5, 0, &[1])).unwrap_err();
        assert_eq!(
            err,
            "cannot convert exponential to native histogram. Scale must be >= -4, was -5"
        );
        // Negative buckets mirror the positive ones.
        let mut p = point(0, 0, &[]);
        p.negative = Some(ExponentialBuckets {
            offset: 1,
            bucket_counts: vec![3],
        });
        let h = exponential_histogram(&p).unwrap();
        assert_eq!(h.negative(), [(2, 3.0)]);
        assert!(h.positive().is_empty());
    }

    #[test]
    fn exemplars_carry_ids_in_hex_and_short_attributes() {
        let e = otlp_proto::Exemplar {
            filtered_attributes: vec![KeyValue {
                key: "user.id".into(),
                value: Some(AnyValue {
                    value: Some(otlp_proto::Value::IntValue(7)),
                }),
            }],
            time_unix_nano: 0,
            value: Some(otlp_proto::ExemplarValue::AsInt(3)),
            span_id: vec![0, 1, 2, 3, 4, 5, 6, 0xab],
            trace_id: vec![0; 16],
        };
        let x = exemplar(&e, 1234);
        assert_eq!(
            x.labels.to_string(),
            r#"{span_id="00010203040506ab", user.id="7"}"#
        );
        assert_eq!(
            (x.value, x.timestamp_ms, x.has_timestamp),
            (3.0, 1234, false)
        );
        // Attributes that would pass 128 characters are left out.
        let mut long = e.clone();
        long.filtered_attributes[0].key = "k".repeat(120);
        assert_eq!(
            exemplar(&long, 0).labels.to_string(),
            r#"{span_id="00010203040506ab"}"#
        );
    }

    #[test]
    fn exponential_points_with_exemplars_decode_from_protobuf() {
        use prost::Message;
        let mut p = point(2, 1, &[1, 2]);
        p.exemplars = vec![otlp_proto::Exemplar {
            value: Some(otlp_proto::ExemplarValue::AsDouble(1.5)),
            time_unix_nano: 5_000_000,
            trace_id: vec![1; 16],
            ..Default::default()
        }];
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![otlp_proto::ResourceMetrics {
                resource: None,
                scope_metrics: vec![otlp_proto::ScopeMetrics {
                    metrics: vec![Metric {
                        name: "h".into(),
                        data: Some(Data::ExponentialHistogram(
                            otlp_proto::ExponentialHistogram {
                                data_points: vec![p],
                                aggregation_temporality: otlp_proto::TEMPORALITY_CUMULATIVE,
                            },
                        )),
                        ..Default::default()
                    }],
                }],
            }],
        };
        let decoded = otlp_proto::decode_request(&request.encode_to_vec(), false).unwrap();
        assert!(decoded == request);
        let t = translate(&decoded, &OtlpConfig::default(), 300_000);
        assert_eq!((t.histograms.len(), t.exemplars.len()), (1, 1));
        assert_eq!(t.exemplars[0].1.value, 1.5);
        assert_eq!(t.exemplars[0].1.timestamp_ms, 5);
        // "No recorded value": the float stale marker of the histogram series.
        let mut stale = request;
        if let Some(Data::ExponentialHistogram(h)) =
            &mut stale.resource_metrics[0].scope_metrics[0].metrics[0].data
        {
            h.data_points[0].flags = otlp_proto::FLAG_NO_RECORDED_VALUE;
        }
        let t = translate(&stale, &OtlpConfig::default(), 300_000);
        assert!(t.histograms.is_empty() && t.exemplars.is_empty());
        assert_eq!(t.samples.len(), 1);
        assert_eq!(t.samples[0].labels.metric_name(), "h");
        assert_eq!(t.samples[0].value.to_bits(), STALE_MARKER.to_bits());
    }

    #[test]
    fn explicit_buckets_become_custom_buckets() {
        let p = HistogramDataPoint {
            count: 3,
            sum: Some(2.053),
            bucket_counts: vec![1, 0, 1, 0, 1],
            explicit_bounds: vec![0.005, 0.01, 0.1, 1.0],
            ..Default::default()
        };
        let h = custom_buckets_histogram(&p);
        assert_eq!(h.schema, -53);
        assert_eq!(h.custom_values, [0.005, 0.01, 0.1, 1.0]);
        assert_eq!(h.positive(), [(0, 1.0), (2, 1.0), (4, 1.0)]);
        assert_eq!((h.count, h.sum), (3.0, 2.053));
    }
}
