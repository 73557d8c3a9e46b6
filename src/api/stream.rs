//! `GET /api/v1/stream?match[]=…`: the federation output as a push stream.
//!
//! The answer is long-lived: first a snapshot of the matching live series (as
//! `/federate` would serve them: every one of them), closed by one
//! `{"type":"snapshot_end","series":N}` event, then every change as the dataflow
//! applies it — a new sample, a series marked stale, a series expired past the
//! lookback delta. Events are newline-delimited JSON, or Server-Sent Events when the
//! client asks for `text/event-stream`. Each change and snapshot event carries `type`,
//! `labels` (with `__name__` and the external labels), `timestamp` (ms) and, for
//! samples, `value` (a float, as the query API spells it) or, for a native histogram
//! (scraped or received), `histogram` (`{"count","sum","buckets"}`, the query API's
//! form).
//!
//! Slow consumers are bounded: each stream has a queue of [`QUEUE_EVENTS`] events; a
//! consumer whose queue is full is dropped, after a final `{"type":"dropped"}` event,
//! instead of growing the server's memory. The stream reads the same maintained table
//! that serves `/federate` (`dataflows::LatestTable`), through its change feed.
//! At most `--web.stream.max-consumers` streams are open at once; one more is refused
//! with 503 (`promflow_stream_consumers_refused_total`).
//!
//! In a cluster (`--cluster.*`), a stream (of `match[]` or of a view) holds the whole
//! cluster's series: each other process's own stream for the same `match[]` or `view`
//! is opened (through
//! `api::cluster_face`, answering for that process alone), its snapshot joins this
//! one's before the one `snapshot_end`, and its changes are passed on as they come
//! ([`PeerLines`], [`forward`]); a peer stream that drops its consumer drops this one.
//! A process that does not answer is left out and logged.
//!
//! `?view=name` (instead of `match[]`) streams a registered federation view
//! ([`crate::api::federation_views`]): its snapshot and changes come already filtered,
//! and the stream ends when the view is deleted (in a cluster: deleted on this
//! process, which a DELETE on any process brings about; the other processes' streams
//! of it are let go then).

use crate::api::cluster_face;
use crate::api::federate::parse_selector;
use crate::api::federation_views::FederationView;
use crate::api::params::Params;
use crate::api::query_json::HistogramJson;
use crate::api::response::{api_error, ErrorType};
use crate::ingest::now_ms;
use crate::service::Service;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use dataflows::go_float::JsonSampleFloat;
use dataflows::histogram::FloatHistogram;
use dataflows::{ChangeListener, Labels, LatestChange, LatestEntry, LatestTable, Selector};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events one consumer may have queued before it is dropped.
pub const QUEUE_EVENTS: usize = 10_000;

/// The handler.
pub async fn stream(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let mut selectors = Vec::new();
    for m in params.all("match[]") {
        match parse_selector(m) {
            Ok(s) => selectors.push(s),
            Err(e) => {
                return api_error(
                    ErrorType::BadData,
                    &format!("invalid parameter \"match[]\": {e}"),
                )
            }
        }
    }
    let source = match (params.get("view"), selectors.is_empty()) {
        (Some(_), false) => {
            return api_error(ErrorType::BadData, "give either view or match[], not both")
        }
        (Some(name), true) => match service.federation_views.get(name) {
            Some(view) => Source::View(view),
            None => return api_error(ErrorType::NotFound, &format!("no federation view {name:?}")),
        },
        (None, true) => return api_error(ErrorType::BadData, "no match[] parameter provided"),
        (None, false) => Source::Table {
            table: service.ingester.engine().latest().clone(),
            selectors,
        },
    };
    // `--web.stream.max-consumers`: the permit lives as long as the stream.
    let Ok(permit) = service.stream_gate.clone().try_acquire_owned() else {
        service.metrics.limits.stream_consumers_refused.inc();
        let mut refused = api_error(
            ErrorType::Unavailable,
            &format!(
                "too many stream consumers: {} are connected (--web.stream.max-consumers)",
                service.options.stream_max_consumers
            ),
        );
        *refused.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        return refused;
    };
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let peers = if cluster_face::local_only(&service, &headers) {
        Vec::new()
    } else {
        let path = cluster_face::same_selection("/api/v1/stream", &params.0);
        let (opened, unanswered) = cluster_face::open(&service, &path, None).await;
        for warning in unanswered {
            tracing::warn!(warning, "stream opened without a process of the cluster");
        }
        opened
    };
    let external = service.config.read().global.external_labels.clone();
    let (events, receiver) = mpsc::channel::<Value>(QUEUE_EVENTS);
    let overflowed = Arc::new(AtomicBool::new(false));

    // Subscribe before taking the snapshot: a change racing the snapshot is then sent
    // twice rather than lost.
    let subscription = {
        let (events, overflowed, selectors, external) = (
            events.clone(),
            overflowed.clone(),
            source.selectors().to_vec(),
            external.clone(),
        );
        source.subscribe(Arc::new(move |changes: &[LatestChange]| {
            if overflowed.load(Ordering::Relaxed) {
                return;
            }
            for change in changes {
                let (kind, labels, ts, value) = match change {
                    LatestChange::Sample(e) => {
                        ("sample", &e.labels, e.timestamp_ms, Some(sampled(e)))
                    }
                    LatestChange::Stale {
                        labels,
                        timestamp_ms,
                    } => ("stale", labels, *timestamp_ms, None),
                    LatestChange::Expired {
                        labels,
                        timestamp_ms,
                    } => ("expired", labels, *timestamp_ms, None),
                };
                // A view's changes come filtered already (`selectors` is empty).
                if !selectors.is_empty() && !selectors.iter().any(|s| s.matches(labels)) {
                    continue;
                }
                if events
                    .try_send(event(kind, labels, &external, ts, value))
                    .is_err()
                {
                    overflowed.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }))
    };
    let lookback_ms = service.options.lookback_delta.as_millis() as i64;
    let mut snapshot = Vec::new();
    source.for_each_live(now_ms, lookback_ms, |e| {
        snapshot.push(event(
            "sample",
            &e.labels,
            &external,
            e.timestamp_ms,
            Some(sampled(e)),
        ));
    });
    // The other processes' snapshots, then their changes as they come.
    for (url, response) in peers {
        let mut lines = PeerLines {
            response,
            pending: Vec::new(),
        };
        let mut peer_snapshot = Vec::new();
        let read = tokio::time::timeout(cluster_face::PEER_TIMEOUT, async {
            while let Some(e) = lines.next().await {
                if e["type"] == "snapshot_end" {
                    return true;
                }
                peer_snapshot.push(e);
            }
            false
        });
        if read.await != Ok(true) {
            tracing::warn!(
                process = url,
                "stream opened without a process of the cluster: its snapshot did not come"
            );
            continue;
        }
        snapshot.extend(peer_snapshot);
        let ended = source.ended();
        tokio::spawn(forward(lines, events.clone(), overflowed.clone(), ended));
    }
    // Says where the snapshot ends: a client knows it holds every live series from here.
    snapshot.push(json!({"type": "snapshot_end", "series": snapshot.len()}));
    drop(events);

    let state = StreamState {
        snapshot: snapshot.into_iter(),
        receiver,
        overflowed,
        done: false,
        _subscription: Subscription {
            source,
            id: subscription,
        },
        _consumer: Consumer::enter(service.metrics.clone(), permit),
        sse,
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        let line = state.next_event().await?;
        Some((Ok::<_, std::convert::Infallible>(line), state))
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Where a stream's events come from: the latest-sample table filtered by the
/// request's selectors, or a registered view's maintained output.
enum Source {
    Table {
        table: LatestTable,
        selectors: Vec<Selector>,
    },
    View(Arc<FederationView>),
}

impl Source {
    /// The selectors the stream must apply itself (none for a view).
    fn selectors(&self) -> &[Selector] {
        match self {
            Source::Table { selectors, .. } => selectors,
            Source::View(_) => &[],
        }
    }

    fn subscribe(&self, listener: ChangeListener) -> u64 {
        match self {
            Source::Table { table, .. } => table.subscribe(listener),
            Source::View(view) => view.subscribe(listener),
        }
    }

    fn unsubscribe(&self, id: u64) {
        match self {
            Source::Table { table, .. } => table.unsubscribe(id),
            Source::View(view) => view.unsubscribe(id),
        }
    }

    /// Completes when the source ends: a view when it is deleted here (never for the
    /// table).
    fn ended(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        match self {
            Source::Table { .. } => Box::pin(std::future::pending()),
            Source::View(view) => Box::pin(view.stopped()),
        }
    }

    /// The live series the stream starts with (as of `clock()`, read when the source
    /// is locked: see [`LatestTable::for_each_live`]).
    fn for_each_live(
        &self,
        clock: impl Fn() -> i64,
        lookback_ms: i64,
        visit: impl FnMut(&LatestEntry),
    ) {
        match self {
            Source::Table { table, selectors } => {
                table.for_each_live_matching(clock, lookback_ms, selectors, visit)
            }
            Source::View(view) => view.for_each_live(clock, visit),
        }
    }
}

/// Unsubscribes when the stream is dropped (client gone or consumer dropped).
struct Subscription {
    source: Source,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.source.unsubscribe(self.id);
    }
}

struct StreamState {
    snapshot: std::vec::IntoIter<Value>,
    receiver: mpsc::Receiver<Value>,
    overflowed: Arc<AtomicBool>,
    done: bool,
    _subscription: Subscription,
    _consumer: Consumer,
    sse: bool,
}

/// An open stream: counted in `promflow_stream_consumers` and holding its place under
/// `--web.stream.max-consumers` until the stream ends.
struct Consumer {
    metrics: Arc<crate::selfmetrics::SelfMetrics>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Consumer {
    fn enter(
        metrics: Arc<crate::selfmetrics::SelfMetrics>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Consumer {
        metrics.limits.stream_consumers.add(1.0);
        Consumer {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.metrics.limits.stream_consumers.add(-1.0);
    }
}

impl StreamState {
    /// The next encoded event, or `None` when the stream ends.
    async fn next_event(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if let Some(e) = self.snapshot.next() {
            return Some(self.encode(&e));
        }
        // Events queued before an overflow are still delivered; then the final one.
        match self.receiver.try_recv() {
            Ok(e) => return Some(self.encode(&e)),
            Err(_) if self.overflowed.load(Ordering::Relaxed) => {
                self.done = true;
                let e = json!({"type": "dropped", "reason": format!("consumer too slow: more than {QUEUE_EVENTS} events queued")});
                return Some(self.encode(&e));
            }
            Err(_) => {}
        }
        loop {
            tokio::select! {
                e = self.receiver.recv() => return e.map(|e| self.encode(&e)),
                // Wake up to notice an overflow even when nothing more is queued.
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                    if self.overflowed.load(Ordering::Relaxed) && self.receiver.is_empty() {
                        self.done = true;
                        let e = json!({"type": "dropped", "reason": format!("consumer too slow: more than {QUEUE_EVENTS} events queued")});
                        return Some(self.encode(&e));
                    }
                }
            }
        }
    }

    fn encode(&self, e: &Value) -> String {
        if self.sse {
            let kind = e["type"].as_str().unwrap_or("message");
            format!("event: {kind}\ndata: {e}\n\n")
        } else {
            format!("{e}\n")
        }
    }
}

/// The events of another process's stream (newline-delimited JSON), read as they come.
struct PeerLines {
    response: reqwest::Response,
    pending: Vec<u8>,
}

impl PeerLines {
    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                match serde_json::from_slice(&line[..end]) {
                    Ok(e) => return Some(e),
                    Err(_) => continue,
                }
            }
            let chunk = self.response.chunk().await.ok()??;
            self.pending.extend_from_slice(&chunk);
        }
    }
}

/// Passes another process's events on to this stream's queue until this stream ends
/// (its queue closed, or `ended`: its view deleted here), that stream ends, or one of
/// them drops its consumer.
async fn forward(
    mut lines: PeerLines,
    events: mpsc::Sender<Value>,
    overflowed: Arc<AtomicBool>,
    ended: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(ended);
    loop {
        let next = tokio::select! {
            e = lines.next() => e,
            _ = events.closed() => return,
            _ = &mut ended => return,
        };
        let Some(e) = next else { return };
        if e["type"] == "dropped" || events.try_send(e).is_err() {
            overflowed.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// A sample's value as an event carries it: a float, or a native histogram.
#[derive(Clone, Copy)]
enum Sampled<'a> {
    Float(f64),
    Histogram(&'a FloatHistogram),
}

fn sampled(e: &LatestEntry) -> Sampled<'_> {
    match &e.histogram {
        Some(h) => Sampled::Histogram(h),
        None => Sampled::Float(e.value),
    }
}

fn event(
    kind: &str,
    labels: &Labels,
    external: &BTreeMap<String, String>,
    ts: i64,
    value: Option<Sampled<'_>>,
) -> Value {
    let mut map: Map<String, Value> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), Value::String(v.to_string())))
        .collect();
    for (n, v) in external {
        map.entry(n.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    let mut e = json!({ "type": kind, "labels": Value::Object(map), "timestamp": ts });
    match value {
        Some(Sampled::Float(v)) => e["value"] = Value::String(JsonSampleFloat(v).to_string()),
        Some(Sampled::Histogram(h)) => {
            e["histogram"] = serde_json::to_value(HistogramJson(h)).unwrap_or(Value::Null)
        }
        None => {}
    }
    e
}
