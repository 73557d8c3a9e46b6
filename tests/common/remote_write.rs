//! Remote write 1.0 requests for tests: builds the snappy-compressed protobuf body
//! (with promflow's `prompb` messages) and posts it to a receiver, promflow's or a real
//! Prometheus's (`--web.enable-remote-write-receiver`).

use super::http::{post, HttpResponse};
use promflow::remote::proto::{self, Label, Sample, TimeSeries, WriteRequest};

/// One series: its labels (including `__name__`) and its samples `(ms, value)`.
pub type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

/// The request body for `series`.
pub fn body(series: &[Series]) -> Vec<u8> {
    let timeseries = series
        .iter()
        .map(|(labels, samples)| TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        })
        .collect();
    proto::encode(&WriteRequest { timeseries })
}

/// `POST <base_url>/api/v1/write` with `body`, with the headers remote write 1.0 sends.
pub fn send(base_url: &str, body: &[u8]) -> HttpResponse {
    post(
        &format!("{base_url}/api/v1/write"),
        Some("application/x-protobuf"),
        body,
    )
    .expect("POST /api/v1/write")
}
