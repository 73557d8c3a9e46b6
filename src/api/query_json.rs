//! The JSON of query results (`/api/v1/query`, `/api/v1/query_range`), serialized
//! straight from the evaluator's values into the response body, without building a
//! `serde_json::Value` tree first.
//!
//! Contract: the output is what Prometheus writes: `{"resultType":…,"result":…}` with
//! `metric` objects in label order, points as `[seconds, "value"]`; seconds a JSON
//! number with millisecond precision and no trailing zeros (`1435781451.781`,
//! `1435781451`). A scalar's value is Go's `strconv.FormatFloat(v, 'f', -1, 64)`
//! (`NaN`, `+Inf`, `-Inf`, `-0`, `0.1`, `1000000000000000000000`), as Prometheus's
//! `Scalar.MarshalJSON`; the points of vectors and matrices are written as its
//! `jsonutil.MarshalFloat` writes them: the same, but with an exponent below 1e-6 and
//! from 1e21 on (`1e-07`, `1e+21`).
//!
//! Native-histogram samples (the evaluator's handles, resolved through
//! [`Histograms`]) are written as Prometheus writes them: a vector element's
//! `"histogram": [t, {…}]` instead of `"value"`, a matrix series' `"histograms":
//! [[t, {…}], …]` after its `"values"` (each key left out when it has no point, except
//! `values` of a series without any histogram, kept as before); a histogram is
//! `{"count":"…","sum":"…","buckets":[[boundaries,"lower","upper","count"],…]}` with
//! the buckets of non-zero count from the lowest, `boundaries` 0 for `(lower,upper]`
//! (positive buckets), 1 for `[lower,upper)` (negative), 3 for the zero bucket
//! `[lower,upper]`, and no `buckets` key when none has a count (Prometheus's
//! `marshalHistogram`).

use dataflows::go_float::{GoFloat, JsonSampleFloat};
use dataflows::histogram::FloatHistogram;
use dataflows::promql::eval::native::{parse_handle, MADE, SOURCE};
use dataflows::promql::eval::{Series, Value};
use dataflows::Labels;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use std::sync::Arc;

/// The `data` of a query answer.
pub enum QueryData {
    /// An instant query's value at its evaluation time (ms).
    Instant(Value, i64),
    /// A range query's matrix.
    Range(Vec<Series>),
}

/// The histograms a result's handles name: those the source returned ([`SOURCE`])
/// and those the evaluation made ([`MADE`]).
#[derive(Default)]
pub struct Histograms {
    pub source: Vec<Arc<FloatHistogram>>,
    pub made: Vec<Arc<FloatHistogram>>,
}

impl Histograms {
    fn is_empty(&self) -> bool {
        self.source.is_empty() && self.made.is_empty()
    }

    fn get(&self, v: f64) -> Option<&FloatHistogram> {
        let table = match parse_handle(v)? {
            (SOURCE, _) => &self.source,
            (MADE, _) => &self.made,
            _ => return None,
        };
        table.get(parse_handle(v)?.1 as usize).map(|h| h.as_ref())
    }
}

/// A query's `data` with the histograms its result names.
pub struct QueryAnswer {
    pub data: QueryData,
    pub histograms: Histograms,
}

impl Serialize for QueryData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_data(self, &Histograms::default(), s)
    }
}

impl Serialize for QueryAnswer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_data(&self.data, &self.histograms, s)
    }
}

fn write_data<S: Serializer>(data: &QueryData, h: &Histograms, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(2))?;
    match data {
        QueryData::Instant(Value::Scalar(v), t) => {
            map.serialize_entry("resultType", "scalar")?;
            map.serialize_entry("result", &(Timestamp(*t), GoFloat(*v).to_string()))?;
        }
        QueryData::Instant(Value::String(text), t) => {
            map.serialize_entry("resultType", "string")?;
            map.serialize_entry("result", &(Timestamp(*t), text))?;
        }
        QueryData::Instant(Value::Vector(elements), t) => {
            map.serialize_entry("resultType", "vector")?;
            map.serialize_entry("result", &Elements(elements, *t, h))?;
        }
        QueryData::Instant(Value::Matrix(series), _) => {
            map.serialize_entry("resultType", "matrix")?;
            map.serialize_entry("result", &Matrix(series, h))?;
        }
        QueryData::Range(series) => {
            map.serialize_entry("resultType", "matrix")?;
            map.serialize_entry("result", &Matrix(series, h))?;
        }
    }
    map.end()
}

/// An instant vector at `t`: `[{"metric":…,"value":[t,"v"]},…]`.
struct Elements<'a>(&'a [dataflows::promql::eval::Element], i64, &'a Histograms);

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            let points = match self.2.get(e.value) {
                Some(h) => PointOrPoints::Histogram(self.1, h),
                None => PointOrPoints::One(Point(self.1, e.value)),
            };
            seq.serialize_element(&Sample {
                labels: &e.labels,
                key: "value",
                points,
                histograms: self.2,
            })?;
        }
        seq.end()
    }
}

/// A matrix: `[{"metric":…,"values":[[t,"v"],…]},…]`.
struct Matrix<'a>(&'a [Series], &'a Histograms);

impl Serialize for Matrix<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for series in self.0 {
            seq.serialize_element(&Sample {
                labels: &series.labels,
                key: "values",
                points: PointOrPoints::Many(&series.points),
                histograms: self.1,
            })?;
        }
        seq.end()
    }
}

/// One element of a vector or series of a matrix.
struct Sample<'a> {
    labels: &'a Labels,
    key: &'static str,
    points: PointOrPoints<'a>,
    histograms: &'a Histograms,
}

enum PointOrPoints<'a> {
    One(Point),
    Histogram(i64, &'a FloatHistogram),
    Many(&'a [(i64, f64)]),
}

impl Serialize for Sample<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("metric", &LabelsJson(self.labels))?;
        match &self.points {
            PointOrPoints::One(point) => map.serialize_entry(self.key, point)?,
            PointOrPoints::Histogram(t, h) => {
                map.serialize_entry("histogram", &(Timestamp(*t), HistogramJson(h)))?
            }
            PointOrPoints::Many(points) => {
                let histograms = self.histograms;
                let is_histogram = |v: f64| histograms.get(v).is_some();
                // A result without histograms (the float path) is not scanned.
                let any_histogram =
                    !histograms.is_empty() && points.iter().any(|p| is_histogram(p.1));
                if !any_histogram {
                    map.serialize_entry(self.key, &Points(points))?;
                } else {
                    let floats: Vec<(i64, f64)> = points
                        .iter()
                        .copied()
                        .filter(|p| !is_histogram(p.1))
                        .collect();
                    if !floats.is_empty() {
                        map.serialize_entry(self.key, &Points(&floats))?;
                    }
                    let hs: Vec<(Timestamp, HistogramJson<'_>)> = points
                        .iter()
                        .filter_map(|&(t, v)| {
                            Some((Timestamp(t), HistogramJson(histograms.get(v)?)))
                        })
                        .collect();
                    map.serialize_entry("histograms", &hs)?;
                }
            }
        }
        map.end()
    }
}

/// A native histogram as Prometheus's `marshalHistogram` writes it (module docs); the
/// push stream writes a histogram sample's so too.
pub struct HistogramJson<'a>(pub &'a FloatHistogram);

impl Serialize for HistogramJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let zt = h.zero_threshold;
        let buckets: Vec<(u8, SampleValue, SampleValue, SampleValue)> = h
            .all_buckets()
            .into_iter()
            .filter(|b| b.count != 0.0)
            .map(|b| {
                let boundaries = if !h.uses_custom_buckets() && b.lower == -zt && b.upper == zt {
                    3
                } else if b.upper <= 0.0 && !h.uses_custom_buckets() {
                    1
                } else {
                    0
                };
                (
                    boundaries,
                    SampleValue(b.lower),
                    SampleValue(b.upper),
                    SampleValue(b.count),
                )
            })
            .collect();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("count", &SampleValue(h.count))?;
        map.serialize_entry("sum", &SampleValue(h.sum))?;
        if !buckets.is_empty() {
            map.serialize_entry("buckets", &buckets)?;
        }
        map.end()
    }
}

struct Points<'a>(&'a [(i64, f64)]);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(t, v)| Point(t, v)))
    }
}

/// Labels as a JSON object, as Prometheus writes `metric`.
pub struct LabelsJson<'a>(pub &'a Labels);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

/// `[seconds, "value"]`.
pub struct Point(pub i64, pub f64);

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&Timestamp(self.0))?;
        seq.serialize_element(&SampleValue(self.1))?;
        seq.end()
    }
}

/// Seconds since the epoch as a JSON number with millisecond precision and no
/// trailing zeros.
pub(crate) struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            // Exact in decimal: serde_json prints the shortest round-trip form.
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// A vector's or matrix's sample value as a JSON string ([`JsonSampleFloat`]).
pub(crate) struct SampleValue(pub f64);

impl Serialize for SampleValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&JsonSampleFloat(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflows::promql::eval::Element;

    fn json(data: &QueryData) -> String {
        serde_json::to_string(data).unwrap()
    }

    fn labels() -> Arc<Labels> {
        Arc::new(Labels::from_pairs(vec![
            ("__name__".into(), "up".into()),
            ("job".into(), "a\"b\\c\n".into()),
            ("instance".into(), "h:1".into()),
        ]))
    }

    #[test]
    fn points_like_prometheus() {
        let point = |t, v| serde_json::to_string(&Point(t, v)).unwrap();
        assert_eq!(point(1_435_781_451_781, 1.0), r#"[1435781451.781,"1"]"#);
        assert_eq!(point(1_435_781_451_000, 2.5), r#"[1435781451,"2.5"]"#);
        assert_eq!(point(1_435_781_451_780, 0.1), r#"[1435781451.78,"0.1"]"#);
        assert_eq!(point(-1_500, -0.0), r#"[-1.5,"-0"]"#);
        assert_eq!(point(0, f64::NAN), r#"[0,"NaN"]"#);
        assert_eq!(point(0, f64::INFINITY), r#"[0,"+Inf"]"#);
        assert_eq!(point(0, f64::NEG_INFINITY), r#"[0,"-Inf"]"#);
        // Prometheus 2.42 (`vector(1e21)`, `vector(1e-7)`): an exponent outside
        // [1e-6, 1e21); a scalar answer has none (below).
        assert_eq!(point(0, 1e21), r#"[0,"1e+21"]"#);
        assert_eq!(point(0, 1e-7), r#"[0,"1e-07"]"#);
        assert_eq!(
            point(0, 123_456.789_012_345_67),
            r#"[0,"123456.78901234567"]"#
        );
    }

    /// The same bytes as the `serde_json::Value` tree the handlers built before.
    #[test]
    fn every_result_type_as_a_json_tree_would_write_it() {
        let tree_point = |t: i64, v: f64| serde_json::json!([Timestamp(t), GoFloat(v).to_string()]);
        let tree_labels = |l: &Labels| {
            serde_json::Value::Object(
                l.iter()
                    .map(|(n, v)| (n.to_string(), serde_json::Value::String(v.to_string())))
                    .collect(),
            )
        };
        let l = labels();
        let matrix = vec![
            Series {
                labels: l.clone(),
                points: vec![(1_000, 1.5), (16_500, f64::NAN)],
            },
            Series {
                labels: Arc::default(),
                points: vec![],
            },
        ];
        let want = serde_json::json!({"resultType": "matrix", "result": [
            {"metric": tree_labels(&l), "values": [tree_point(1_000, 1.5), tree_point(16_500, f64::NAN)]},
            {"metric": {}, "values": []},
        ]});
        assert_eq!(json(&QueryData::Range(matrix.clone())), want.to_string());
        assert_eq!(
            json(&QueryData::Instant(Value::Matrix(matrix), 5)),
            want.to_string()
        );
        let vector = vec![Element::new(l.clone(), -2.0)];
        assert_eq!(
            json(&QueryData::Instant(Value::Vector(vector), 2_250)),
            serde_json::json!({"resultType": "vector", "result": [
                {"metric": tree_labels(&l), "value": tree_point(2_250, -2.0)}
            ]})
            .to_string()
        );
        assert_eq!(
            json(&QueryData::Instant(Value::Scalar(0.25), 7_000)),
            r#"{"resultType":"scalar","result":[7,"0.25"]}"#
        );
        // Prometheus 2.42 answers the query `1e-7` with `[0,"0.0000001"]`.
        assert_eq!(
            json(&QueryData::Instant(Value::Scalar(1e-7), 0)),
            r#"{"resultType":"scalar","result":[0,"0.0000001"]}"#
        );
        assert_eq!(
            json(&QueryData::Instant(Value::String("a\"b".into()), 7_001)),
            r#"{"resultType":"string","result":[7.001,"a\"b"]}"#
        );
    }
}
