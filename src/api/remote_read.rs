//! `POST /api/v1/read`: remote read with sampled responses, as Prometheus 2.42 serves it
//! (`storage/remote/read_handler.go`) to a Prometheus whose `remote_read` points here.
//!
//! The body is a snappy-compressed protobuf `ReadRequest`; each query's matchers select
//! series from storage in the closed range `[start_timestamp_ms, end_timestamp_ms]`,
//! and the answer is a snappy-compressed `ReadResponse` with one result per query, in
//! order. As in Prometheus, the configured `external_labels` are added to every series
//! returned (labels the series has win), and an equality matcher on an external label
//! with its external value selects the series without that label of their own. A
//! series' native histograms are in its `histograms` (integer histograms when every
//! count is whole), as later Prometheus versions serve them; the sample limit counts
//! them too. Only the `SAMPLES` response
//! type is served: a request that accepts only streamed chunks gets a 400. Errors are
//! plain text: 400 for a body or matcher that cannot be read.

use crate::remote::proto::{self, ReadRequest, ReadResponse, RESPONSE_TYPE_SAMPLES};
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::{LabelMatcher, Labels, MatcherError, Selector};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The handler.
pub async fn read(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    let request = match proto::decode::<ReadRequest>(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    if !request.accepted_response_types.is_empty()
        && !request
            .accepted_response_types
            .contains(&RESPONSE_TYPE_SAMPLES)
    {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "server does not support any of the requested response types: {:?}; supported: [SAMPLES]\n",
                request.accepted_response_types
            ),
        )
            .into_response();
    }
    // `--storage.remote.read-concurrent-limit`: wait for a turn.
    let Ok(_turn) = service.remote_read_gate.acquire().await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "remote read gate closed\n",
        )
            .into_response();
    };
    let sample_limit = service.options.remote_read_sample_limit;
    let external_labels = service.config.read().global.external_labels.clone();
    let storage = service.ingester.storage().clone();
    let answered = tokio::task::spawn_blocking(move || {
        let mut samples_left = sample_limit;
        let mut results = Vec::with_capacity(request.queries.len());
        for query in &request.queries {
            let selector = selector(query, &external_labels)?;
            let (start, end) = (query.start_timestamp_ms, query.end_timestamp_ms);
            // Per series: its float samples and its histograms.
            let mut found: BTreeMap<Arc<Labels>, (Vec<proto::Sample>, Vec<proto::Histogram>)> =
                BTreeMap::new();
            for (labels, samples) in storage.select(&selector, start, end) {
                found.entry(labels).or_default().0.extend(
                    samples
                        .into_iter()
                        .map(|(timestamp, value)| proto::Sample { value, timestamp }),
                );
            }
            for (labels, samples) in storage.select_histograms(&selector, start, end) {
                found.entry(labels).or_default().1.extend(
                    samples
                        .iter()
                        .map(|(timestamp, h)| proto::Histogram::from_float(*timestamp, h)),
                );
            }
            let timeseries: Vec<proto::TimeSeries> = found
                .into_iter()
                .map(|(labels, (samples, histograms))| {
                    let mut pairs: BTreeMap<&str, &str> = external_labels
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    pairs.extend(labels.iter());
                    proto::TimeSeries {
                        labels: pairs
                            .into_iter()
                            .map(|(name, value)| proto::Label {
                                name: name.to_string(),
                                value: value.to_string(),
                            })
                            .collect(),
                        samples,
                        exemplars: Vec::new(),
                        histograms,
                    }
                })
                .collect();
            // `--storage.remote.read-sample-limit`, over all queries, in Prometheus's words.
            if sample_limit > 0 {
                let n: u64 = timeseries
                    .iter()
                    .map(|t| (t.samples.len() + t.histograms.len()) as u64)
                    .sum();
                samples_left = samples_left
                    .checked_sub(n)
                    .ok_or(ReadError::SampleLimit(sample_limit))?;
            }
            results.push(proto::QueryResult { timeseries });
        }
        Ok::<_, ReadError>(ReadResponse { results })
    })
    .await;
    match answered {
        Ok(Ok(response)) => (
            [
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
            ],
            proto::encode(&response),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Why a read request is answered 400.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// A matcher type beyond `EQ`, `NEQ`, `RE`, `NRE`.
    #[error("unknown label matcher type {0}")]
    MatcherType(i32),
    /// A matcher is refused (a regex that does not compile).
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    /// `--storage.remote.read-sample-limit`, in Prometheus's words.
    #[error("exceeded sample limit ({0})")]
    SampleLimit(u64),
}

/// The query's matchers as a selector, less those an external label satisfies.
fn selector(
    query: &proto::Query,
    external_labels: &BTreeMap<String, String>,
) -> Result<Selector, ReadError> {
    let mut matchers = Vec::new();
    for m in &query.matchers {
        let op = match m.r#type {
            0 => "=",
            1 => "!=",
            2 => "=~",
            3 => "!~",
            other => return Err(ReadError::MatcherType(other)),
        };
        // Prometheus's filterExtLabelsFromMatchers: `name="v"` where `v` is the
        // external value selects series that do not have the label themselves.
        let value = match external_labels.get(&m.name) {
            Some(v) if op == "=" && *v == m.value => "",
            _ => m.value.as_str(),
        };
        matchers.push(LabelMatcher::new(&m.name, op, value)?);
    }
    Ok(Selector { matchers })
}
