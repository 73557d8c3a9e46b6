//! Protobuf exposition bodies (`io.prometheus.client.MetricFamily`, length-delimited)
//! for tests that serve them: the content type, label pairs, and a reply of families.

use super::exporter::Reply;
use promflow::scrape::exposition::metrics_proto::{
    Counter, LabelPair, Metric, MetricFamily, MetricType,
};
use prost::Message;

/// The content type of a delimited protobuf body, as client libraries send it.
pub const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// A label pair.
pub fn label(name: &str, value: &str) -> LabelPair {
    LabelPair {
        name: Some(name.into()),
        value: Some(value.into()),
    }
}

/// A family of `kind` holding `metric`, with HELP text when `help` is given.
pub fn family(
    name: &str,
    kind: MetricType,
    help: Option<&str>,
    metric: Vec<Metric>,
) -> MetricFamily {
    MetricFamily {
        name: Some(name.into()),
        help: help.map(Into::into),
        r#type: Some(kind as i32),
        metric,
        unit: None,
    }
}

/// A counter's metric of `value`, with an exposed timestamp when given.
pub fn counter(value: f64, timestamp_ms: Option<i64>) -> Metric {
    Metric {
        counter: Some(Counter {
            value: Some(value),
            ..Default::default()
        }),
        timestamp_ms,
        ..Default::default()
    }
}

/// A 200 reply serving `families`, length-delimited.
pub fn reply(families: &[MetricFamily]) -> Reply {
    let mut body = Vec::new();
    for family in families {
        family.encode_length_delimited(&mut body).unwrap();
    }
    Reply {
        status: 200,
        content_type: PROTOBUF.into(),
        gzip: false,
        body,
    }
}
