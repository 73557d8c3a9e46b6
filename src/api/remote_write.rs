//! `POST /api/v1/write`: the remote write receiver, behind
//! `--web.enable-remote-write-receiver` like Prometheus. Remote write 1.0
//! (`prometheus.WriteRequest`) and 2.0 (`io.prometheus.write.v2.Request`), told apart
//! by `Content-Type` as Prometheus 3.x does: `application/x-protobuf` alone or with
//! `proto=prometheus.WriteRequest` is 1.0, `proto=io.prometheus.write.v2.Request` is
//! 2.0; a message not in `--web.remote-write-receiver.accepted-protobuf-messages`, any
//! other content type, or a `Content-Encoding` other than `snappy` is answered 415 (the
//! 2.0 sender then falls back to 1.0).
//!
//! Received samples take the same write path as scraped ones (`Ingester::commit`):
//! storage first, then the dataflow (samples older than the watermark are stored and
//! counted late). 1.0 native histograms (`TimeSeries.histograms`, integer or float)
//! take the scraped histograms' path (`Ingester::commit_histograms`: storage and the
//! remote write queues, the dataflow), as Prometheus 3.x stores them, in 1.0 and 2.0
//! alike. Answers 204 on success, 400 for a body that does not decode (or, in 2.0,
//! refers to symbols it lacks), 400 for a 1.0 request with a sample the head refuses
//! (out of bounds, out of order, or at a series' newest timestamp with another value;
//! judged against what the head held before the request, nothing of it stored, as
//! Prometheus rolls the request back; an exact duplicate, a retry's, is no refusal:
//! it is dropped silently), 400 for a request with a native histogram Prometheus's
//! head refuses (`Validate`: spans against buckets, negative offsets or counts, the
//! count rules, schemas, custom bounds; a reserved schema 9..=52 is reduced to 8
//! first; see [`proto::Histogram::to_valid_float`]), as Prometheus 3.7 on answers
//! (storage/remote/write_handler.go; 2.42 to 3.6 answer 500): in 1.0 the request is
//! rolled back, nothing of it stored, the answer Prometheus's error alone (the series
//! is logged); in 2.0 the rest of the request is stored and the answer lists each
//! refused histogram's error with its series, as `appendV2` does.
//! 500 when storage refuses the batch (the sender
//! retries; floats stored before the histograms failed are refused as duplicates
//! then). Exemplars (1.0 and 2.0) are kept once their series' samples are stored
//! (`Ingester::commit_exemplars`: the exemplar storage, with
//! `--enable-feature=exemplar-storage`, its WAL records and the remote write queues),
//! as Prometheus does: a timestamp of 0 counts as none, an out-of-order one is
//! refused without failing the request. 2.0 answers carry
//! `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written` (exemplars: those
//! not refused as out of order). 2.0 metadata is read and not kept. With
//! `--enable-feature=created-timestamp-zero-ingestion` a 2.0 sample's or histogram's
//! `start_timestamp` (spec 2.0-rc.4, Prometheus 3.9 on) puts the zero sample of that
//! start before it, each time (storage drops the repeats; as Prometheus 3.9's
//! handler, `appendV2` in storage/remote/write_handler.go; see `ingest`); a sample
//! without one takes, as before 3.9, its series' `created_timestamp` (older senders'
//! field 6, which 3.9 reserves): before the series' first float sample and before
//! each histogram. The zero samples are not counted as written.
//! The message types are in [`crate::remote::proto`].

use crate::config::ProtobufMessage;
use crate::remote::proto::{self, v2, DecodeError, WriteRequest};
use crate::service::Service;
use crate::storage::exemplars::Exemplar;
use crate::storage::HistogramSample;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::histogram::InvalidHistogram;
use dataflows::{Labels, Sample};
use std::sync::Arc;

/// Why a remote write request is refused, in Prometheus's words.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The `Content-Type` is not protobuf (415).
    #[error("expected application/x-protobuf as the first (media) part, got {0} content-type")]
    NotProtobuf(String),
    /// The `proto` parameter names no known message (415).
    #[error("got {content_type} content type; unknown type for remote write protobuf message {message}, supported: prometheus.WriteRequest, io.prometheus.write.v2.Request")]
    UnknownMessage {
        /// The `Content-Type`.
        content_type: String,
        /// The `proto` parameter.
        message: String,
    },
    /// The body does not decode (400).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A 2.0 label reference beyond the symbols (400).
    #[error("symbol reference {index} out of range ({symbols} symbols)")]
    SymbolOutOfRange {
        /// The reference.
        index: u32,
        /// How many symbols there are.
        symbols: usize,
    },
    /// A 2.0 series with an odd number of label references (400).
    #[error("odd number of label references: {0}")]
    OddLabelRefs(usize),
    /// A series without `__name__` (400).
    #[error("series without a metric name: {0}")]
    NoMetricName(Labels),
    /// A native histogram Prometheus's head refuses (400), in its words: alone in a
    /// 1.0 answer, as Prometheus's; the series named in 2.0's, as Prometheus's.
    #[error("{error}")]
    InvalidHistogram {
        /// What is wrong.
        error: InvalidHistogram,
        /// Its series.
        labels: Arc<Labels>,
    },
}

/// Go's `labels.Labels.String()`, as Prometheus names a series in its errors:
/// `{__name__="m", a="1"}`.
fn go_labels(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Which message a request's `Content-Type` names, or why it is refused (415).
pub fn message_of(content_type: Option<&str>) -> Result<ProtobufMessage, WriteError> {
    let Some(content_type) = content_type else {
        return Ok(ProtobufMessage::V1);
    };
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(WriteError::NotProtobuf(content_type.to_string()));
    }
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim() == "proto" {
                let value = value.trim();
                return ProtobufMessage::from_name(value).ok_or_else(|| {
                    WriteError::UnknownMessage {
                        content_type: content_type.to_string(),
                        message: value.to_string(),
                    }
                });
            }
        }
    }
    Ok(ProtobufMessage::V1)
}

fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// The handler.
pub async fn write(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !service.options.enable_remote_write_receiver {
        return text(
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver"
                .into(),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let message = match message_of(content_type) {
        Ok(m) if service.options.remote_write_messages.contains(&m) => m,
        Ok(m) => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{} protobuf message is not accepted by this server; accepted {:?}",
                    m.name(),
                    service
                        .options
                        .remote_write_messages
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                ),
            )
        }
        Err(e) => return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("snappy");
    if !encoding.trim().eq_ignore_ascii_case("snappy") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{encoding} encoding (compression) is not accepted by this server; only snappy is acceptable"),
        );
    }
    match message {
        ProtobufMessage::V1 => write_v1(&service, &body),
        ProtobufMessage::V2 => write_v2(&service, &body),
    }
}

fn refuse(e: impl Into<WriteError>) -> Response {
    let e = e.into();
    match &e {
        WriteError::InvalidHistogram { labels, .. } => {
            tracing::warn!(error = %e, series = %labels, "remote write request refused: invalid histogram")
        }
        _ => tracing::warn!(error = %e, "remote write request refused"),
    }
    text(StatusCode::BAD_REQUEST, e.to_string())
}

/// A series' labels as sent, refused without a metric name.
fn series_labels(pairs: Vec<(String, String)>) -> Result<Arc<Labels>, WriteError> {
    let labels = Labels::from_pairs(pairs);
    if labels.metric_name().is_empty() {
        return Err(WriteError::NoMetricName(labels));
    }
    Ok(Arc::new(labels))
}

fn write_v1(service: &Service, body: &[u8]) -> Response {
    let request = match proto::decode::<WriteRequest>(body) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    tracing::debug!(series = request.timeseries.len(), "remote write request");
    let mut batch = Vec::new();
    let mut histograms = Vec::new();
    let mut exemplars = Vec::new();
    for series in request.timeseries {
        let labels = match series_labels(
            series
                .labels
                .into_iter()
                .map(|l| (l.name, l.value))
                .collect(),
        ) {
            Ok(l) => l,
            Err(e) => return refuse(e),
        };
        // Prometheus 3.7 on answers 400 and rolls the request back (2.42 to 3.6:
        // 500, rolled back alike): nothing of it is stored.
        if let Some(invalid) = push_histograms(&mut histograms, &labels, &series.histograms, |_| 0)
            .into_iter()
            .next()
        {
            return refuse(invalid);
        }
        push_exemplars(
            &mut exemplars,
            &labels,
            series.exemplars.into_iter().map(|e| {
                let pairs = e.labels.into_iter().map(|l| (l.name, l.value)).collect();
                (pairs, e.value, e.timestamp)
            }),
        );
        push_samples(
            &mut batch,
            labels,
            series
                .samples
                .into_iter()
                .map(|s| (s.timestamp, s.value, 0)),
        );
    }
    // Prometheus appends a 1.0 request in one appender and rolls it back whole on the
    // first sample its head refuses (judged against what the head held before the
    // request), answering 400 so the sender does not retry; an exact duplicate is
    // no refusal (storage/remote/write_handler.go, 2.42).
    if let Some(refusal) = service
        .ingester
        .storage()
        .head()
        .first_refusal(&batch, &histograms)
    {
        tracing::error!(err = %refusal, "Out of order sample from remote write");
        return text(StatusCode::BAD_REQUEST, refusal.to_string());
    }
    match commit(service, batch, histograms, exemplars) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        // Not acknowledged: the sender keeps the samples and retries.
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A series' received native histograms (1.0 and 2.0 share the message), as the
/// scraped ones are stored, each with its start `start(h)` (0: none) when it has a
/// timestamp, as Prometheus 3.x's handler calls `AppendHistogramSTZeroSample` before
/// each (storage/remote/write_handler.go; see `Ingester::start_zero_histograms`).
/// Those Prometheus's head refuses ([`proto::Histogram::to_valid_float`]) are left
/// out and returned, in order.
fn push_histograms(
    out: &mut Vec<HistogramSample>,
    labels: &Arc<Labels>,
    histograms: &[proto::Histogram],
    start: impl Fn(&proto::Histogram) -> i64,
) -> Vec<WriteError> {
    let series_id = labels.hash();
    let mut invalid = Vec::new();
    for h in histograms {
        match h.to_valid_float() {
            Ok(histogram) => out.push(HistogramSample {
                series_id,
                labels: labels.clone(),
                timestamp_ms: h.timestamp,
                histogram,
                start_ms: if h.timestamp != 0 { start(h) } else { 0 },
            }),
            Err(error) => invalid.push(WriteError::InvalidHistogram {
                error,
                labels: labels.clone(),
            }),
        }
    }
    invalid
}

/// A series' received exemplars (`(labels, value, timestamp)`), as Prometheus reads
/// them: a timestamp of 0 is none.
fn push_exemplars(
    out: &mut Vec<(u64, Exemplar)>,
    labels: &Labels,
    exemplars: impl Iterator<Item = (Vec<(String, String)>, f64, i64)>,
) {
    let series_id = labels.hash();
    out.extend(exemplars.map(|(pairs, value, timestamp_ms)| {
        (
            series_id,
            Exemplar {
                labels: Labels::from_pairs(pairs),
                value,
                timestamp_ms,
                has_timestamp: timestamp_ms != 0,
            },
        )
    }));
}

/// Stores a request's samples, then its histograms, then keeps its exemplars; returns
/// how many exemplars were refused as out of order.
fn commit(
    service: &Service,
    batch: Vec<Sample>,
    histograms: Vec<HistogramSample>,
    exemplars: Vec<(u64, Exemplar)>,
) -> Result<usize, crate::storage::AppendError> {
    let ingester = &service.ingester;
    ingester.commit(ingester.start_zeros(batch))?;
    ingester.commit_histograms(ingester.start_zero_histograms(histograms))?;
    let count = exemplars.len();
    let out_of_order = ingester.commit_exemplars(exemplars);
    if out_of_order > 0 {
        tracing::debug!(
            out_of_order,
            count,
            "remote write: out-of-order exemplars refused"
        );
    }
    Ok(out_of_order)
}

/// A series' received float samples `(ms, value, start ms)`, each start (0: none)
/// kept when the sample has a timestamp, as Prometheus 3.x's handler calls
/// `AppendSTZeroSample` before such a sample (write_handler.go; see
/// `Ingester::start_zeros`).
fn push_samples(
    batch: &mut Vec<Sample>,
    labels: Arc<Labels>,
    samples: impl Iterator<Item = (i64, f64, i64)>,
) {
    let series_id = labels.hash();
    batch.extend(samples.map(|(timestamp_ms, value, start_ms)| Sample {
        series_id,
        labels: labels.clone(),
        timestamp_ms,
        value,
        start_ms: if timestamp_ms != 0 { start_ms } else { 0 },
    }));
}

/// The start of a 2.0 series' sample: its own `start_timestamp` (Prometheus 3.9 on),
/// else for the series' first float sample (`first`) or any histogram its series'
/// `created_timestamp` (older senders: Prometheus 3.5–3.8's handler appended that
/// start before the first float sample and before each histogram).
fn v2_start(own: i64, series: &v2::TimeSeries, first: bool) -> i64 {
    match own {
        0 if first => series.created_timestamp,
        own => own,
    }
}

/// 2.0 label references (name, value, name, value, …) resolved by `symbol`.
fn label_pairs<'a>(
    refs: &[u32],
    symbol: &impl Fn(u32) -> Result<&'a String, WriteError>,
) -> Result<Vec<(String, String)>, WriteError> {
    if !refs.len().is_multiple_of(2) {
        return Err(WriteError::OddLabelRefs(refs.len()));
    }
    refs.chunks(2)
        .map(|pair| Ok((symbol(pair[0])?.clone(), symbol(pair[1])?.clone())))
        .collect()
}

fn write_v2(service: &Service, body: &[u8]) -> Response {
    let request = match proto::decode::<v2::Request>(body) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    tracing::debug!(
        series = request.timeseries.len(),
        "remote write 2.0 request"
    );
    let symbol = |i: u32| {
        request
            .symbols
            .get(i as usize)
            .ok_or(WriteError::SymbolOutOfRange {
                index: i,
                symbols: request.symbols.len(),
            })
    };
    let mut batch = Vec::new();
    let mut histograms = Vec::new();
    let mut exemplars = Vec::new();
    let mut invalid = Vec::new();
    for series in &request.timeseries {
        let pairs = match label_pairs(&series.labels_refs, &symbol) {
            Ok(pairs) => pairs,
            Err(e) => return refuse(e),
        };
        let labels = match series_labels(pairs) {
            Ok(l) => l,
            Err(e) => return refuse(e),
        };
        invalid.extend(push_histograms(
            &mut histograms,
            &labels,
            &series.histograms,
            |h| v2_start(h.start_timestamp, series, true),
        ));
        let mut received = Vec::with_capacity(series.exemplars.len());
        for e in &series.exemplars {
            match label_pairs(&e.labels_refs, &symbol) {
                Ok(pairs) => received.push((pairs, e.value, e.timestamp)),
                Err(e) => return refuse(e),
            }
        }
        push_exemplars(&mut exemplars, &labels, received.into_iter());
        push_samples(
            &mut batch,
            labels,
            series.samples.iter().enumerate().map(|(i, s)| {
                let start = v2_start(s.start_timestamp, series, i == 0);
                (s.timestamp, s.value, start)
            }),
        );
    }
    let (samples, histogram_count) = (batch.len(), histograms.len());
    let exemplar_count = exemplars.len();
    let exemplars_written = match commit(service, batch, histograms, exemplars) {
        Ok(out_of_order) => exemplar_count - out_of_order,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let written = [
        (
            "X-Prometheus-Remote-Write-Samples-Written",
            samples.to_string(),
        ),
        (
            "X-Prometheus-Remote-Write-Histograms-Written",
            histogram_count.to_string(),
        ),
        (
            "X-Prometheus-Remote-Write-Exemplars-Written",
            exemplars_written.to_string(),
        ),
    ];
    if invalid.is_empty() {
        return (StatusCode::NO_CONTENT, written).into_response();
    }
    // Prometheus 3.7 on (`appendV2`): a histogram its head refuses is a bad request
    // that does not stop the rest of the request from being stored; the errors, each
    // naming its series, joined by newlines (Go's `errors.Join`).
    let errors: Vec<String> = invalid
        .iter()
        .map(|e| match e {
            WriteError::InvalidHistogram { error, labels } => {
                tracing::error!(err = %error, series = %labels, "Invalid histogram received");
                format!("{error} for series {}", go_labels(labels))
            }
            other => other.to_string(),
        })
        .collect();
    (
        StatusCode::BAD_REQUEST,
        written,
        format!("{}\n", errors.join("\n")),
    )
        .into_response()
}
