//! `GET /federate?match[]=…`: the latest sample of every matching live series, in the
//! text format with timestamps, as Prometheus serves it; in the protobuf format, with
//! native histograms, when the client's `Accept` asks for it
//! ([`super::federate_proto`]), for `match[]` and `?view=` alike.
//!
//! Reads the dataflow's maintained latest-sample table (not storage), through its label
//! index (`LatestTable::for_each_live_matching`): a series is
//! included if its newest sample lies within the lookback delta of now and is not a
//! stale marker, "now" being read as the table is read (never before: see
//! `LatestTable::for_each_live`), so every live series is in every answer, also while
//! its target's scrape is being applied. Output is grouped by metric name with
//! `# TYPE <name> untyped` lines, sorted by metric name then label set, external labels
//! (and an empty `instance`, as Prometheus adds it) are added where the series lacks
//! them, gzip when asked.
//!
//! `?view=name` (instead of `match[]`) serves a registered federation view's maintained
//! output ([`crate::api::federation_views`]), with no per-request filtering; the same
//! answer as its `match[]` would give.
//!
//! In a cluster (`--cluster.*`), the other processes' live series for the same
//! `match[]` or view are merged in ([`peer_series`]: their own `/federate` for the
//! request's `match[]` or `view`, asked in the protobuf form through
//! `api::cluster_face`, which also carries native histograms; a view is every
//! process's, see `federation_views`); of a series more than one process holds, the
//! newest sample is served. A process that does not answer (or lacks the view) is left
//! out and logged.
//!
//! Owns [`EncodedLines`]: every series' line up to its value (`name{labels} `), encoded
//! once, the first time a read includes the series, and kept in the output's order, so
//! a read costs a lookup per selected series and writing its value and timestamp; no
//! per-read label formatting, escaping or sort (series new since the last read are
//! sorted and merged in; a read that selects a small part of the kept lines orders
//! just those by their kept rank instead of walking every kept line). Lines no read included for 10 minutes are dropped; a change
//! of external labels re-encodes everything.

use crate::api::cluster_face;
use crate::api::federation_views::FederationView;
use crate::api::TEXT_FORMAT_CONTENT_TYPE;
use crate::exposition::escape_label_value;
use crate::ingest::now_ms;
use crate::scrape::exposition::{
    parse_with, Format, HistogramRef, NativeHistograms, SampleRef, SampleSink,
};
use crate::service::Service;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::go_float::format_g;
use dataflows::histogram::FloatHistogram;
use dataflows::promql::depth;
use dataflows::{LabelMatcher, Labels, LatestEntry, MatcherError, Selector};
use parking_lot::Mutex;
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

/// Why a `match[]` value is not a series selector.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// It does not parse, or nests too deep.
    #[error(transparent)]
    Parse(#[from] depth::AstError),
    /// It parses to something else than a vector selector.
    #[error("{0:?} is not a series selector")]
    NotASelector(String),
    /// It uses `or` between matcher sets.
    #[error("{0:?}: 'or' in series selectors is not supported")]
    OrMatchers(String),
    /// It carries `offset` or `@`.
    #[error("{0:?}: offset and @ are not allowed in a series selector")]
    Modifier(String),
    /// A matcher is refused (a regex that does not compile).
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Parses one `match[]` value, a series selector like `{job="node"}` or `up{job=~"a|b"}`.
pub fn parse_selector(text: &str) -> Result<Selector, SelectorError> {
    depth::parse_ast(text, |expr| selector(text, expr))
}

fn selector(text: &str, expr: Expr) -> Result<Selector, SelectorError> {
    let Expr::VectorSelector(vs) = expr else {
        return Err(SelectorError::NotASelector(text.to_string()));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(SelectorError::OrMatchers(text.to_string()));
    }
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(SelectorError::Modifier(text.to_string()));
    }
    let mut matchers = Vec::new();
    if let Some(name) = &vs.name {
        matchers.push(LabelMatcher::new("__name__", "=", name)?);
    }
    for m in &vs.matchers.matchers {
        let op = match &m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        matchers.push(LabelMatcher::new(&m.name, op, &m.value)?);
    }
    Ok(Selector { matchers })
}

/// The handler.
pub async fn federate(
    State(service): State<Arc<Service>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let mut selectors = Vec::new();
    for (name, value) in &params {
        if name == "match[]" {
            match parse_selector(value) {
                Ok(s) => selectors.push(s),
                Err(e) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("error parsing match[] {value:?}: {e}\n"),
                    )
                        .into_response()
                }
            }
        }
    }
    let selection = match params.iter().find(|(name, _)| name == "view") {
        Some(_) if !selectors.is_empty() => {
            return (
                StatusCode::BAD_REQUEST,
                "give either view or match[], not both\n",
            )
                .into_response()
        }
        Some((_, name)) => match service.federation_views.get(name) {
            Some(view) => Selection::View(view),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no federation view {name:?}\n"),
                )
                    .into_response()
            }
        },
        None => Selection::Matchers(selectors),
    };
    let wants_gzip = super::response::accepts_gzip(&headers);
    let peers = if cluster_face::local_only(&service, &headers) {
        None
    } else {
        Some(peer_series(&service, &params).await)
    };
    if super::federate_proto::wants_protobuf(&headers) {
        return federate_protobuf(service, selection, wants_gzip, peers).await;
    }
    // Rendered off the async workers, sent as it is written; with gzip, compressed on
    // a second thread as the pieces come.
    let (chunks, receiver) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let emit: Box<dyn FnMut(Vec<u8>) + Send> = if wants_gzip {
        let (plain, pieces) = crossbeam_channel::unbounded::<Vec<u8>>();
        tokio::task::spawn_blocking(move || gzip_pieces(pieces, chunks));
        Box::new(move |piece| {
            let _ = plain.send(piece);
        })
    } else {
        Box::new(move |piece| {
            let _ = chunks.send(piece);
        })
    };
    tokio::task::spawn_blocking(move || {
        let external_labels = added_labels(&service);
        service.federation_views.lines.render(
            &external_labels,
            |add| {
                let Some(peers) = peers else {
                    return selection.for_each_live(&service, add);
                };
                let mut all = peers.floats;
                selection.for_each_live(&service, |e| all.push(e.clone()));
                newest(all, |e| (&e.labels, e.timestamp_ms))
                    .iter()
                    .for_each(add);
            },
            emit,
        )
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let piece = receiver.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(piece), receiver))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TEXT_FORMAT_CONTENT_TYPE),
    );
    if wants_gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// What a request selects: the series of its `match[]`, or a registered view's.
enum Selection {
    Matchers(Vec<Selector>),
    View(Arc<FederationView>),
}

impl Selection {
    /// Calls `visit` with every live series selected in this process's latest-sample
    /// table (through the view's maintained output for a view).
    fn for_each_live(&self, service: &Service, visit: impl FnMut(&LatestEntry)) {
        match self {
            Selection::Matchers(selectors) => {
                let lookback_ms = service.options.lookback_delta.as_millis() as i64;
                service.ingester.engine().latest().for_each_live_matching(
                    now_ms,
                    lookback_ms,
                    selectors,
                    visit,
                )
            }
            Selection::View(view) => view.for_each_live(now_ms, visit),
        }
    }

    /// The selectors (a view's as registered).
    fn selectors(&self) -> &[Selector] {
        match self {
            Selection::Matchers(selectors) => selectors,
            Selection::View(view) => view.selectors(),
        }
    }
}

/// The answer in the protobuf format, with native histograms
/// ([`super::federate_proto`]).
async fn federate_protobuf(
    service: Arc<Service>,
    selection: Selection,
    wants_gzip: bool,
    peers: Option<PeerSeries>,
) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let external_labels = added_labels(&service);
        let lookback_ms = service.options.lookback_delta.as_millis() as i64;
        let peers = peers.unwrap_or_default();
        let mut floats: Vec<LatestEntry> = peers.floats;
        // Histograms are read from storage below (rule outputs are not in the table).
        selection.for_each_live(&service, |entry| {
            if entry.histogram.is_none() {
                floats.push(entry.clone())
            }
        });
        let mut histograms = super::federate_proto::latest_histograms(
            service.ingester.storage(),
            selection.selectors(),
            now_ms(),
            lookback_ms,
        );
        if !peers.histograms.is_empty() {
            histograms.extend(peers.histograms);
            histograms = newest(histograms, |(labels, ts, _)| (labels, *ts));
        }
        let floats = newest(floats, |e| (&e.labels, e.timestamp_ms));
        let body = super::federate_proto::render(&floats, &histograms, &external_labels);
        if !wants_gzip {
            return body;
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = encoder.write_all(&body);
        encoder.finish().unwrap_or_default()
    })
    .await;
    let Ok(body) = rendered else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(super::federate_proto::PROTOBUF_CONTENT_TYPE),
    );
    if wants_gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The labels a `/federate` series is given where it lacks them: the external labels,
/// and an empty `instance` unless they have one, as Prometheus's federation handler
/// adds them (`web/federate.go`).
fn added_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.config.read().global.external_labels.clone();
    labels.entry("instance".to_string()).or_default();
    labels
}

/// The live series the other processes of a cluster serve on `/federate` for the
/// request's `match[]` or view (see the module doc).
#[derive(Default)]
struct PeerSeries {
    floats: Vec<LatestEntry>,
    histograms: Vec<(Arc<Labels>, i64, FloatHistogram)>,
}

/// Asks the other processes for their `/federate` (protobuf, for this request's
/// `match[]` or `view` parameters) and reads their series back as stored: the
/// external labels they added (those equal to this process's, the same config) taken off again,
/// which renders the same.
async fn peer_series(service: &Service, params: &[(String, String)]) -> PeerSeries {
    let path = cluster_face::same_selection("/federate", params);
    let accept = super::federate_proto::PROTOBUF_CONTENT_TYPE;
    let (bodies, unanswered) = cluster_face::gather_bytes(service, &path, Some(accept)).await;
    for warning in unanswered {
        tracing::warn!(
            warning,
            "/federate answered without a process of the cluster"
        );
    }
    let external = added_labels(service);
    let mut sink = PeerSink {
        external: &external,
        series: PeerSeries::default(),
    };
    for (url, body) in bodies {
        if let Err(e) = parse_with(&body, Format::Protobuf, &mut sink) {
            tracing::warn!(process = url, error = %e, "/federate of a process of the cluster does not parse");
        }
    }
    sink.series
}

/// Reads a peer's `/federate` body into [`PeerSeries`].
struct PeerSink<'a> {
    external: &'a BTreeMap<String, String>,
    series: PeerSeries,
}

impl PeerSink<'_> {
    fn labels(&self, name: &str, labels: &[(&str, std::borrow::Cow<'_, str>)]) -> Arc<Labels> {
        let mut pairs = vec![("__name__".to_string(), name.to_string())];
        pairs.extend(
            labels
                .iter()
                .filter(|(n, v)| self.external.get(*n).is_none_or(|e| e.as_str() != &**v))
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        Arc::new(Labels::from_pairs(pairs))
    }
}

impl SampleSink for PeerSink<'_> {
    fn sample(&mut self, sample: SampleRef<'_>) {
        let entry = LatestEntry {
            labels: self.labels(sample.name, sample.labels),
            timestamp_ms: sample.timestamp_ms.unwrap_or_default(),
            value: sample.value,
            histogram: None,
        };
        self.series.floats.push(entry);
    }

    fn native_histograms(&self) -> NativeHistograms {
        NativeHistograms::On {
            keep_classic: false,
        }
    }

    fn histogram(&mut self, h: HistogramRef<'_>) {
        let labels = self.labels(h.name, h.labels);
        let ts = h.timestamp_ms.unwrap_or_default();
        self.series.histograms.push((labels, ts, h.histogram));
    }
}

/// Of the items of one label set, the one with the newest timestamp (by `key`: labels
/// and timestamp); in no particular order.
fn newest<T>(items: Vec<T>, key: impl Fn(&T) -> (&Arc<Labels>, i64)) -> Vec<T> {
    let mut kept: HashMap<Arc<Labels>, T> = HashMap::with_capacity(items.len());
    for item in items {
        let (labels, ts) = key(&item);
        match kept.get(labels) {
            Some(old) if key(old).1 >= ts => {}
            _ => {
                kept.insert(labels.clone(), item);
            }
        }
    }
    kept.into_values().collect()
}

/// Compresses the body's `pieces` as they come and sends what is compressed on.
fn gzip_pieces(
    pieces: crossbeam_channel::Receiver<Vec<u8>>,
    out: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for piece in pieces {
        if encoder.write_all(&piece).is_err() {
            return;
        }
        let compressed = std::mem::take(encoder.get_mut());
        if !compressed.is_empty() && out.send(compressed).is_err() {
            return;
        }
    }
    if let Ok(rest) = encoder.finish() {
        let _ = out.send(rest);
    }
}

/// Every series' `/federate` line up to its value, encoded once (escaped, external
/// labels merged, labels sorted by name) and kept in Prometheus's order, so a read
/// only looks up the live entries and writes value and timestamp. See the module doc.
#[derive(Default)]
pub struct EncodedLines {
    inner: Mutex<Encoded>,
}

#[derive(Default)]
struct Encoded {
    /// The external labels every line was encoded with; other ones empty the cache.
    external: BTreeMap<String, String>,
    /// Labels hash → index into `slots`.
    index: HashMap<u64, u32>,
    slots: Vec<Slot>,
    /// Every slot's index, sorted like Prometheus sorts the output: by metric name,
    /// then by label set. A slot's `rank` is its position here.
    order: Vec<u32>,
    /// Slots added since `order` was last sorted.
    fresh: Vec<u32>,
    /// Counts reads: a slot whose `read` equals it is in the current read.
    reads: u64,
    /// When slots not read for longer than [`FORGET_AFTER_MS`] were last dropped.
    forgotten_ms: i64,
}

struct Slot {
    labels: Arc<Labels>,
    /// `name{label="value",…} ` (or `name `).
    prefix: Box<str>,
    /// The metric name's length: `prefix[..name_len]` is the name.
    name_len: usize,
    /// Its position in `order` (once sorted in).
    rank: u32,
    read: u64,
    timestamp_ms: i64,
    value: f64,
    /// Wall-clock time of the last read that included it.
    seen_ms: i64,
}

/// About how much of a body is handed on at once.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// A series no read has included for this long is forgotten (encoded again if it
/// comes back).
const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;

impl EncodedLines {
    /// The `/federate` body of the series `collect` passes to its callback (the first
    /// of several with one label set wins), with `external` labels added where the
    /// series lacks them: `# TYPE <name> untyped` before each metric name's group.
    /// Handed to `emit` in pieces of about [`CHUNK_BYTES`], as it is written.
    pub fn render(
        &self,
        external: &BTreeMap<String, String>,
        collect: impl FnOnce(&mut dyn FnMut(&LatestEntry)),
        mut emit: impl FnMut(Vec<u8>),
    ) {
        let mut guard = self.inner.lock();
        let encoded = &mut *guard;
        if encoded.external != *external {
            *encoded = Encoded {
                external: external.clone(),
                ..Encoded::default()
            };
        }
        encoded.reads += 1;
        let read = encoded.reads;
        let now = now_ms();
        let mut picked: Vec<u32> = Vec::new();
        collect(&mut |entry: &LatestEntry| {
            // The text format has no native histograms (as Prometheus's).
            if entry.histogram.is_some() {
                return;
            }
            let key = entry.labels.hash();
            let i = match encoded.index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = encoded.slots.len() as u32;
                    encoded
                        .slots
                        .push(Slot::encode(entry.labels.clone(), external));
                    encoded.index.insert(key, i);
                    encoded.fresh.push(i);
                    i
                }
            };
            let slot = &mut encoded.slots[i as usize];
            if slot.read != read {
                slot.read = read;
                slot.timestamp_ms = entry.timestamp_ms;
                slot.value = entry.value;
                slot.seen_ms = now;
                picked.push(i);
            }
        });
        encoded.sort_fresh();
        // A small selection is put in order by rank; a large one read off the kept
        // order (sorting it would cost more than walking everything).
        let walk: &[u32] = if picked.len() * 8 < encoded.order.len() {
            picked.sort_unstable_by_key(|&i| encoded.slots[i as usize].rank);
            &picked
        } else {
            &encoded.order
        };
        let mut body = Vec::with_capacity(CHUNK_BYTES.min(picked.len() * 128) + 512);
        let mut group: Option<&str> = None;
        for &i in walk {
            let slot = &encoded.slots[i as usize];
            if slot.read != read {
                continue;
            }
            if body.len() >= CHUNK_BYTES {
                emit(std::mem::replace(
                    &mut body,
                    Vec::with_capacity(CHUNK_BYTES + 512),
                ));
            }
            let name = &slot.prefix[..slot.name_len];
            if group != Some(name) {
                body.extend_from_slice(b"# TYPE ");
                body.extend_from_slice(name.as_bytes());
                body.extend_from_slice(b" untyped\n");
                group = Some(name);
            }
            body.extend_from_slice(slot.prefix.as_bytes());
            push_float(&mut body, slot.value);
            body.push(b' ');
            let _ = write!(body, "{}", slot.timestamp_ms);
            body.push(b'\n');
        }
        if now - encoded.forgotten_ms > FORGET_AFTER_MS / 10 {
            encoded.forget(now - FORGET_AFTER_MS);
            encoded.forgotten_ms = now;
        }
        if !body.is_empty() {
            emit(body);
        }
    }

    /// How many series have an encoded line.
    pub fn len(&self) -> usize {
        self.inner.lock().slots.len()
    }

    /// Whether no series has an encoded line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Encoded {
    /// Merges the slots added since the last read into `order`.
    fn sort_fresh(&mut self) {
        if self.fresh.is_empty() {
            return;
        }
        let slots = &self.slots;
        let before = |a: &u32, b: &u32| {
            let (a, b) = (&slots[*a as usize], &slots[*b as usize]);
            a.prefix[..a.name_len]
                .cmp(&b.prefix[..b.name_len])
                .then_with(|| a.labels.cmp(&b.labels))
        };
        self.fresh.sort_unstable_by(before);
        let mut merged = Vec::with_capacity(self.order.len() + self.fresh.len());
        let (mut old, mut new) = (self.order.iter().peekable(), self.fresh.iter().peekable());
        while let (Some(a), Some(b)) = (old.peek(), new.peek()) {
            if before(a, b).is_le() {
                merged.push(**a);
                old.next();
            } else {
                merged.push(**b);
                new.next();
            }
        }
        merged.extend(old);
        merged.extend(new);
        self.order = merged;
        self.fresh.clear();
        self.rank();
    }

    /// Sets every slot's `rank` to its position in `order`.
    fn rank(&mut self) {
        for (rank, &i) in self.order.iter().enumerate() {
            self.slots[i as usize].rank = rank as u32;
        }
    }

    /// Drops the slots no read included since `horizon_ms`.
    fn forget(&mut self, horizon_ms: i64) {
        if self.slots.iter().all(|s| s.seen_ms >= horizon_ms) {
            return;
        }
        let mut renumbered = vec![u32::MAX; self.slots.len()];
        let mut kept = Vec::new();
        for (i, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if slot.seen_ms >= horizon_ms {
                renumbered[i] = kept.len() as u32;
                kept.push(slot);
            }
        }
        self.slots = kept;
        self.order = self
            .order
            .iter()
            .map(|&i| renumbered[i as usize])
            .filter(|&i| i != u32::MAX)
            .collect();
        self.index.retain(|_, i| {
            *i = renumbered[*i as usize];
            *i != u32::MAX
        });
        self.rank();
    }
}

impl Slot {
    /// Encodes the line prefix of `labels` with `external` labels it lacks, in label
    /// name order, escaped like the text format.
    fn encode(labels: Arc<Labels>, external: &BTreeMap<String, String>) -> Slot {
        let name = labels.metric_name();
        let mut pairs: Vec<(&str, &str)> =
            labels.iter().filter(|(n, _)| *n != "__name__").collect();
        for (n, v) in external {
            if labels.get(n).is_none() {
                pairs.push((n.as_str(), v.as_str()));
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut prefix = String::with_capacity(name.len() + 16 * pairs.len() + 2);
        prefix.push_str(name);
        for (i, (label, value)) in pairs.iter().enumerate() {
            prefix.push(if i == 0 { '{' } else { ',' });
            prefix.push_str(label);
            prefix.push_str("=\"");
            escape_label_value(&mut prefix, value);
            prefix.push('"');
        }
        if !pairs.is_empty() {
            prefix.push('}');
        }
        prefix.push(' ');
        let name_len = name.len();
        Slot {
            labels,
            prefix: prefix.into_boxed_str(),
            name_len,
            rank: 0,
            read: 0,
            timestamp_ms: 0,
            value: 0.0,
            seen_ms: 0,
        }
    }
}

/// Appends `v` as [`format_g`] writes it, without its detours through `String`s
/// where the layout is plain: integers below 1e6 (most counters and gauges) as
/// integers, and other magnitudes in `[1e-4, 1e6)` in Rust's shortest round-trip
/// decimal form, which is what `format_g` (Go's `'g'`) prints there.
fn push_float(out: &mut Vec<u8>, v: f64) {
    let magnitude = v.abs();
    if v.fract() == 0.0 && v != 0.0 && magnitude < 1e6 {
        let _ = write!(out, "{}", v as i64);
    } else if (1e-4..1e6).contains(&magnitude) {
        let _ = write!(out, "{v}");
    } else {
        out.extend_from_slice(format_g(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors_with_every_matcher_type() {
        let s = parse_selector(r#"up{job="a", instance!="b", mode=~"x|y", cpu!~"1.*"}"#).unwrap();
        assert_eq!(s.matchers.len(), 5);
        let l = Labels::from_pairs(vec![
            ("__name__".into(), "up".into()),
            ("job".into(), "a".into()),
            ("mode".into(), "x".into()),
            ("cpu".into(), "2".into()),
        ]);
        assert!(s.matches(&l));
    }

    #[test]
    fn refuses_non_selectors() {
        assert!(parse_selector("sum(up)").is_err());
        assert!(parse_selector("up{").is_err());
        assert!(parse_selector("up offset 5m").is_err());
    }

    /// The body as written before lines were kept encoded (and as the federation test
    /// against a real Prometheus checks it): every line formatted and sorted per read.
    fn reference(entries: &[LatestEntry], external: &BTreeMap<String, String>) -> String {
        use crate::exposition::{write_sample, write_type};
        let mut rows: Vec<&LatestEntry> = entries.iter().collect();
        rows.sort_by(|a, b| {
            a.labels
                .metric_name()
                .cmp(b.labels.metric_name())
                .then_with(|| a.labels.cmp(&b.labels))
        });
        let mut body = String::new();
        let mut current: Option<&str> = None;
        for e in rows {
            let name = e.labels.metric_name();
            if current != Some(name) {
                write_type(&mut body, name, "untyped");
                current = Some(name);
            }
            let mut pairs: Vec<(&str, &str)> =
                e.labels.iter().filter(|(n, _)| *n != "__name__").collect();
            for (n, v) in external {
                if e.labels.get(n).is_none() {
                    pairs.push((n.as_str(), v.as_str()));
                }
            }
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            write_sample(&mut body, name, pairs, e.value, Some(e.timestamp_ms));
        }
        body
    }

    /// A peer's protobuf answer reads back as the series it holds: the labels its
    /// answer added (external ones, the empty `instance`) taken off, its own kept.
    #[test]
    fn a_peers_answer_reads_back_as_its_series() {
        let external: BTreeMap<String, String> = [
            ("zone".to_string(), "eu".to_string()),
            ("instance".to_string(), String::new()),
        ]
        .into();
        let stored = vec![
            entry(
                &[("__name__", "a"), ("instance", "i:1"), ("x", "1")],
                5,
                1.5,
            ),
            entry(&[("__name__", "a:sum")], 6, 3.0),
            entry(&[("__name__", "b"), ("zone", "us")], 7, -1.0),
        ];
        let body = super::super::federate_proto::render(&stored, &[], &external);
        let mut sink = PeerSink {
            external: &external,
            series: PeerSeries::default(),
        };
        parse_with(&body, Format::Protobuf, &mut sink).unwrap();
        let read: Vec<(Labels, i64, f64)> = sink
            .series
            .floats
            .iter()
            .map(|e| ((*e.labels).clone(), e.timestamp_ms, e.value))
            .collect();
        let want: Vec<(Labels, i64, f64)> = stored
            .iter()
            .map(|e| ((*e.labels).clone(), e.timestamp_ms, e.value))
            .collect();
        assert_eq!(read, want);
    }

    /// Of one label set, the newest sample is kept; other series are untouched.
    #[test]
    fn newest_sample_of_a_series_wins() {
        let entries = vec![
            entry(&[("__name__", "a")], 5, 1.0),
            entry(&[("__name__", "a")], 7, 2.0),
            entry(&[("__name__", "a")], 6, 3.0),
            entry(&[("__name__", "b")], 1, 4.0),
        ];
        let mut kept: Vec<(String, i64, f64)> = newest(entries, |e| (&e.labels, e.timestamp_ms))
            .into_iter()
            .map(|e| (e.labels.metric_name().to_string(), e.timestamp_ms, e.value))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(kept, vec![("a".into(), 7, 2.0), ("b".into(), 1, 4.0)]);
    }

    fn entry(pairs: &[(&str, &str)], timestamp_ms: i64, value: f64) -> LatestEntry {
        LatestEntry {
            labels: Arc::new(Labels::from_strs(pairs)),
            timestamp_ms,
            value,
            histogram: None,
        }
    }

    /// Names that sort differently as names and as encoded lines (`a` < `a_b` <
    /// `a{`), escaping, external labels (added, sorted in, not overriding), values
    /// the integer shortcut must leave to `format_g`; and series coming and going
    /// between reads, which are merged into the kept order.
    #[test]
    fn encoded_lines_render_what_formatting_every_read_renders() {
        let external: BTreeMap<String, String> = [
            ("zone".to_string(), "eu".to_string()),
            ("job".to_string(), "ext".to_string()),
        ]
        .into();
        let mut entries = vec![
            entry(&[("__name__", "a_b"), ("job", "x")], 5, 1.0),
            entry(
                &[("__name__", "a"), ("job", "x"), ("path", "q\"\\\n")],
                5,
                0.5,
            ),
            entry(&[("__name__", "a"), ("A", "1"), ("job", "y")], 6, -0.0),
            entry(&[("__name__", "a:b"), ("instance", "i")], 7, 1e6),
            entry(&[("__name__", "up")], 8, 999999.0),
            entry(&[("__name__", "up"), ("zone", "us")], 8, f64::NAN),
            entry(&[("__name__", "b")], 9, -3.0),
            entry(&[("__name__", "b"), ("le", "+Inf")], 9, 2.5e-7),
            entry(&[("__name__", "c"), ("i", "1")], 9, 0.0001),
            entry(&[("__name__", "c"), ("i", "2")], 9, -0.00009999),
            entry(&[("__name__", "c"), ("i", "3")], 9, 999999.9999),
            entry(&[("__name__", "c"), ("i", "4")], 9, -123456.789),
            entry(&[("__name__", "c"), ("i", "5")], 9, f64::INFINITY),
            entry(&[("__name__", "c"), ("i", "6")], 9, 0.0),
            entry(&[("__name__", "c"), ("i", "7")], 9, 1e-300),
            entry(&[("__name__", "c"), ("i", "8")], 9, 0.1 + 0.2),
        ];
        let lines = EncodedLines::default();
        let render = |entries: &[LatestEntry]| {
            let mut body = Vec::new();
            lines.render(
                &external,
                |add| entries.iter().for_each(add),
                |chunk| body.extend(chunk),
            );
            String::from_utf8(body).unwrap()
        };
        assert_eq!(render(&entries), reference(&entries, &external));
        entries.remove(3);
        entries.push(entry(&[("__name__", "a"), ("job", "w")], 10, 7.0));
        entries.push(entry(&[("__name__", "a_")], 10, 1.5));
        entries[0].value = 2.0;
        assert_eq!(render(&entries), reference(&entries, &external));
        assert_eq!(render(&entries[..2]), reference(&entries[..2], &external));
        assert_eq!(render(&[]), "");
        // More than one piece: groups and lines must not care where pieces end.
        let long = "v".repeat(200);
        let many: Vec<LatestEntry> = (0..3_000)
            .map(|i| {
                let name = format!("m{}", i % 7);
                let id = i.to_string();
                entry(
                    &[("__name__", &name), ("id", &id), ("long", &long)],
                    i,
                    0.25,
                )
            })
            .collect();
        let mut pieces = 0;
        lines.render(&external, |add| many.iter().for_each(add), |_| pieces += 1);
        assert!(pieces > 1, "{pieces} pieces");
        assert_eq!(render(&many), reference(&many, &external));
    }
}
