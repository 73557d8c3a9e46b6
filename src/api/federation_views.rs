//! Registered federation views: named `match[]` sets whose filtered output is
//! maintained ahead of time, so `/federate?view=name` and `/api/v1/stream?view=name`
//! read it with no per-request filtering.
//!
//! Owns: [`FederationView`], one view's maintained series set (the latest sample of
//! every series its selectors match), kept from the dataflow's latest-sample table
//! through its change feed (`LatestTable::subscribe`): the selectors run once per
//! change, when it is applied, never per request. A view also fans its (already
//! filtered) changes out to its own subscribers, the streams reading it.
//! [`FederationViews`] is the registry by name, persisted in
//! `<storage>/federation_views.yml` (name → list of selectors), rewritten atomically
//! on every change and read at start. And the HTTP handlers:
//!
//! - `PUT /api/v1/federation/{name}`: the body is the `match[]` list, form-encoded
//!   (`match[]=up&match[]={job="node"}`, as `/federate` takes it) or JSON
//!   (`{"match[]": ["up", "{job=\"node\"}"]}`). Every selector is checked first (400
//!   `bad_data` naming the bad one; nothing changes); then 202.
//! - `GET /api/v1/federation/{name}` (JSON: name, `match[]`, live series count),
//!   `GET /api/v1/federation` (all views), `DELETE /api/v1/federation/{name}` (202 or
//!   404). Streams reading a deleted view end.
//!
//! Changes are refused with 403 `unavailable` unless `--web.enable-federation-views-api`.
//!
//! In a cluster (`--cluster.*`) the views are the cluster's:
//!
//! - A PUT or DELETE on any process is made there, then passed on to every other
//!   process (`api::cluster_face::ask`: with its `LOCAL_ONLY` header, so it goes no
//!   further, and `--cluster.http-config`'s credentials). The answer is 202 once this
//!   process made the change, with a `warnings` entry (also logged) for each process
//!   that did not answer or refused it; that process keeps what it had. A DELETE is
//!   404 only when no process had the view.
//! - After it starts, a process takes the views it lacks from the others
//!   ([`spawn_adopting`]): it asks each for `GET /api/v1/federation` once a second
//!   until each has answered (for at most [`ADOPT_FOR`]) and registers the views it has
//!   no view of that name for. So a process added to the cluster, or one that missed a
//!   PUT, has the views once it (re)starts. A missed DELETE is not repaired that way:
//!   the view stays on the process that missed it (and comes back to the others at
//!   their next start); delete it again, which any process accepts.
//! - The GET answers are the cluster's: every view some process holds (this
//!   process's selectors where it has the view), `series` the sum of the processes'
//!   live series counts (a series two processes hold counts twice), with warnings for
//!   the processes that did not answer.
//! - `/federate?view=` and `/api/v1/stream?view=` merge every process's answer for the
//!   view as they merge `match[]` answers (`api::federate`, `api::stream`).

use crate::api::cluster_face;
use crate::api::federate::{parse_selector, SelectorError};
use crate::api::params::Params;
use crate::api::response::{api_disabled, api_error, api_success_annotated, ApiError, ErrorType};
use crate::ingest::now_ms;
use crate::service::Service;
use crate::state_file::{read_optional, write_atomically, ReadError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::{
    is_stale_marker, ChangeListener, LatestChange, LatestEntry, LatestTable, Selector, STALE_MARKER,
};
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The state file's name in the storage directory.
pub const STATE_FILE: &str = "federation_views.yml";

/// How often (in sample time) stale entries older than the lookback delta are pruned.
const PRUNE_EVERY_MS: i64 = 1_000;

/// One view's maintained output; see the module doc.
pub struct FederationView {
    /// The selectors as registered.
    pub matchers: Vec<String>,
    selectors: Vec<Selector>,
    lookback_ms: i64,
    /// Series hash → newest sample; a stale marker keeps its place until pruned, so
    /// the initial snapshot cannot bring back a series that went stale meanwhile.
    series: Mutex<ViewSeries>,
    listeners: RwLock<Vec<(u64, ChangeListener)>>,
    next_listener: AtomicU64,
    table: LatestTable,
    subscription: AtomicU64,
    /// Whether the view was stopped (deleted or replaced).
    stopped: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct ViewSeries {
    entries: HashMap<u64, LatestEntry>,
    newest_ms: i64,
    pruned_ms: i64,
}

impl FederationView {
    /// Parses `matchers` and starts maintaining the view from `table`.
    pub fn start(
        matchers: Vec<String>,
        table: &LatestTable,
        lookback_ms: i64,
    ) -> Result<Arc<FederationView>, ViewError> {
        if matchers.is_empty() {
            return Err(ViewError::NoMatchers);
        }
        let selectors = matchers
            .iter()
            .map(|m| {
                parse_selector(m).map_err(|source| ViewError::Selector {
                    matcher: m.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let view = Arc::new(FederationView {
            matchers,
            selectors,
            lookback_ms,
            series: Mutex::new(ViewSeries::default()),
            listeners: RwLock::new(Vec::new()),
            next_listener: AtomicU64::new(0),
            table: table.clone(),
            subscription: AtomicU64::new(0),
            stopped: tokio::sync::watch::Sender::new(false),
        });
        // Subscribe before the snapshot: a change racing it is applied, not lost.
        let weak = Arc::downgrade(&view);
        let id = table.subscribe(Arc::new(move |changes: &[LatestChange]| {
            if let Some(view) = weak.upgrade() {
                view.apply(changes);
            }
        }));
        view.subscription.store(id, Ordering::SeqCst);
        {
            let mut series = view.series.lock();
            table.for_each_live_matching(now_ms, lookback_ms, &view.selectors, |e| {
                series
                    .entries
                    .entry(e.labels.hash())
                    .or_insert_with(|| e.clone());
            });
        }
        Ok(view)
    }

    /// Applies a batch of table changes: keeps the matching ones and passes them on.
    fn apply(&self, changes: &[LatestChange]) {
        let mut matching = Vec::new();
        {
            let mut series = self.series.lock();
            for change in changes {
                let labels = match change {
                    LatestChange::Sample(e) => &e.labels,
                    LatestChange::Stale { labels, .. } | LatestChange::Expired { labels, .. } => {
                        labels
                    }
                };
                if !self.selectors.iter().any(|s| s.matches(labels)) {
                    continue;
                }
                let key = labels.hash();
                match change {
                    LatestChange::Sample(e) => series.upsert(key, e.clone()),
                    LatestChange::Stale {
                        labels,
                        timestamp_ms,
                    } => series.upsert(
                        key,
                        LatestEntry {
                            labels: labels.clone(),
                            timestamp_ms: *timestamp_ms,
                            value: STALE_MARKER,
                            histogram: None,
                        },
                    ),
                    LatestChange::Expired { .. } => {
                        series.entries.remove(&key);
                    }
                }
                matching.push(change.clone());
            }
            series.prune(self.lookback_ms);
        }
        if !matching.is_empty() {
            for (_, listener) in self.listeners.read().iter() {
                listener(&matching);
            }
        }
    }

    /// Registers `listener` for the view's later changes (already filtered).
    pub fn subscribe(&self, listener: ChangeListener) -> u64 {
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        self.listeners.write().push((id, listener));
        id
    }

    /// Removes a subscriber.
    pub fn unsubscribe(&self, id: u64) {
        self.listeners.write().retain(|(i, _)| *i != id);
    }

    /// Calls `visit` with every series of the view that is live: newest sample not a
    /// stale marker and within the lookback delta of `clock()`, as `/federate` selects.
    /// The clock is read once the view is locked, for the reason
    /// [`LatestTable::for_each_live`] gives: a sample applied while the reader waited
    /// must not be newer than the time it is selected at.
    pub fn for_each_live(&self, clock: impl Fn() -> i64, mut visit: impl FnMut(&LatestEntry)) {
        let series = self.series.lock();
        let at_ms = clock();
        for e in series.entries.values() {
            if e.is_live(at_ms, self.lookback_ms) {
                visit(e);
            }
        }
    }

    /// The parsed selectors.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// Stops maintaining the view; its subscribers' streams end.
    fn stop(&self) {
        self.table
            .unsubscribe(self.subscription.load(Ordering::SeqCst));
        self.listeners.write().clear();
        self.stopped.send_replace(true);
    }

    /// Completes once the view is stopped (deleted or replaced): what else feeds a
    /// stream of it (the other processes' streams) ends then too.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.subscribe();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }
}

impl ViewSeries {
    fn upsert(&mut self, key: u64, entry: LatestEntry) {
        self.newest_ms = self.newest_ms.max(entry.timestamp_ms);
        match self.entries.get_mut(&key) {
            Some(old) if old.timestamp_ms > entry.timestamp_ms => {}
            Some(old) => *old = entry,
            None => {
                self.entries.insert(key, entry);
            }
        }
    }

    /// Drops stale markers once they are older than the lookback delta.
    fn prune(&mut self, lookback_ms: i64) {
        if self.newest_ms - self.pruned_ms < PRUNE_EVERY_MS {
            return;
        }
        self.pruned_ms = self.newest_ms;
        let horizon = self.newest_ms - lookback_ms;
        self.entries
            .retain(|_, e| !(is_stale_marker(e.value) && e.timestamp_ms < horizon));
    }
}

/// The registered views; see the module doc.
pub struct FederationViews {
    path: std::path::PathBuf,
    table: LatestTable,
    lookback_ms: i64,
    views: Mutex<BTreeMap<String, Arc<FederationView>>>,
    /// The encoded `/federate` lines every read (of a view or of `match[]`) shares.
    pub lines: crate::api::federate::EncodedLines,
}

impl FederationViews {
    /// Reads `<dir>/federation_views.yml` and starts every view in it.
    pub fn open(
        dir: &std::path::Path,
        table: LatestTable,
        lookback_ms: i64,
    ) -> Result<FederationViews, ViewError> {
        let path = dir.join(STATE_FILE);
        let mut views = BTreeMap::new();
        if let Some(text) = read_optional(&path)? {
            let stored: BTreeMap<String, Vec<String>> =
                serde_yaml_ng::from_str(&text).map_err(|source| ViewError::Parse {
                    path: path.clone(),
                    source,
                })?;
            for (name, matchers) in stored {
                let view = FederationView::start(matchers, &table, lookback_ms).map_err(|e| {
                    ViewError::Stored {
                        path: path.clone(),
                        name: name.clone(),
                        source: Box::new(e),
                    }
                })?;
                views.insert(name, view);
            }
        }
        Ok(FederationViews {
            path,
            table,
            lookback_ms,
            views: Mutex::new(views),
            lines: Default::default(),
        })
    }

    /// The view named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<FederationView>> {
        self.views.lock().get(name).cloned()
    }

    /// Registers or replaces a view; `Err` says what is wrong with `matchers` (nothing
    /// changed) or that it could not be persisted.
    pub fn put(&self, name: &str, matchers: Vec<String>) -> Result<(), ViewError> {
        self.insert(name, matchers, true).map(|_| ())
    }

    /// Registers a view unless one of that name exists: `Ok(true)` when it did not.
    pub fn adopt(&self, name: &str, matchers: Vec<String>) -> Result<bool, ViewError> {
        if self.get(name).is_some() {
            return Ok(false);
        }
        self.insert(name, matchers, false)
    }

    /// Starts a view and registers it (replacing one of the same name if `replace`):
    /// `Ok(false)` when there was one and it was kept.
    fn insert(&self, name: &str, matchers: Vec<String>, replace: bool) -> Result<bool, ViewError> {
        let view = FederationView::start(matchers, &self.table, self.lookback_ms)?;
        let mut views = self.views.lock();
        if !replace && views.contains_key(name) {
            view.stop();
            return Ok(false);
        }
        let mut next = views.clone();
        let previous = next.insert(name.to_string(), view.clone());
        if let Err(e) = self.persist(&next) {
            view.stop();
            return Err(e);
        }
        *views = next;
        if let Some(previous) = previous {
            previous.stop();
        }
        Ok(true)
    }

    /// Removes a view; `Ok(false)` when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, ViewError> {
        let mut views = self.views.lock();
        let mut next = views.clone();
        let Some(removed) = next.remove(name) else {
            return Ok(false);
        };
        self.persist(&next)?;
        *views = next;
        removed.stop();
        Ok(true)
    }

    /// Every view by name.
    pub fn all(&self) -> Vec<(String, Arc<FederationView>)> {
        self.views
            .lock()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    fn persist(&self, views: &BTreeMap<String, Arc<FederationView>>) -> Result<(), ViewError> {
        let stored: BTreeMap<&String, &Vec<String>> =
            views.iter().map(|(n, v)| (n, &v.matchers)).collect();
        let text = serde_yaml_ng::to_string(&stored).map_err(ViewError::Encode)?;
        write_atomically(&self.path, text.as_bytes()).map_err(|source| ViewError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Why a federation view cannot be registered, removed or read back.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// No selector (`bad_data`).
    #[error("no match[] selector given")]
    NoMatchers,
    /// A selector does not parse (`bad_data`).
    #[error("invalid match[] {matcher:?}: {source}")]
    Selector {
        /// The selector as given.
        matcher: String,
        /// Why.
        source: SelectorError,
    },
    /// The state file cannot be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The state file is not YAML of views.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The state file.
        path: std::path::PathBuf,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// A stored view no longer starts.
    #[error("{}: view {name:?}: {source}", path.display())]
    Stored {
        /// The state file.
        path: std::path::PathBuf,
        /// The view.
        name: String,
        /// Why.
        source: Box<ViewError>,
    },
    /// The views cannot be encoded (`internal`).
    #[error(transparent)]
    Encode(serde_yaml_ng::Error),
    /// The state file cannot be written (`internal`).
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The state file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// `PUT /api/v1/federation/{name}`.
pub async fn put_view(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refused) = refuse_unless_enabled(&service) {
        return refused;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let matchers = if is_json {
        match serde_json::from_str::<BTreeMap<String, Vec<String>>>(&body) {
            Ok(mut fields) if fields.len() == 1 && fields.contains_key("match[]") => {
                fields.remove("match[]").unwrap_or_default()
            }
            Ok(_) => {
                return api_error(
                    ErrorType::BadData,
                    "the JSON body must be {\"match[]\": [selectors…]} and nothing else",
                )
            }
            Err(e) => return api_error(ErrorType::BadData, &format!("invalid JSON body: {e}")),
        }
    } else {
        match serde_urlencoded::from_str::<Vec<(String, String)>>(&body) {
            Ok(pairs) => {
                if let Some((other, _)) = pairs.iter().find(|(k, _)| k != "match[]") {
                    return api_error(
                        ErrorType::BadData,
                        &format!("unknown parameter {other:?}: only match[] is accepted"),
                    );
                }
                pairs.into_iter().map(|(_, v)| v).collect()
            }
            Err(e) => return api_error(ErrorType::BadData, &format!("invalid form body: {e}")),
        }
    };
    let forwarded = json!({ "match[]": &matchers }).to_string();
    if let Err(e) = service.federation_views.put(&name, matchers) {
        return ApiError::from(e).into_response();
    }
    let change = Change::Put(forwarded);
    let told = tell_peers(&service, &headers, &name, &change).await;
    accepted(&told.warnings)
}

/// `DELETE /api/v1/federation/{name}`: 404 when no process of the cluster had it.
pub async fn delete_view(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse_unless_enabled(&service) {
        return refused;
    }
    let deleted_here = match service.federation_views.delete(&name) {
        Ok(deleted) => deleted,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let told = tell_peers(&service, &headers, &name, &Change::Delete).await;
    if deleted_here || told.changed > 0 {
        accepted(&told.warnings)
    } else {
        api_error(ErrorType::NotFound, &format!("no federation view {name:?}"))
    }
}

/// A change of one view, as passed on to the other processes of a cluster.
enum Change {
    /// Registered or replaced with this JSON body (`{"match[]": […]}`).
    Put(String),
    Delete,
}

/// What the other processes did with a change.
struct Told {
    /// How many made it (a DELETE: how many had the view).
    changed: usize,
    /// One for each process that did not answer or refused the change.
    warnings: Vec<String>,
}

/// Makes `change` of view `name` on every other process of the cluster (with
/// `LOCAL_ONLY`, so that it goes no further; nothing when this request is itself one
/// passed on, or there is no other process). A process that does not answer or
/// refuses is named in a warning (logged, and returned to the client) and keeps what
/// it had until it takes the views of the others at its next start (see the module
/// doc).
async fn tell_peers(service: &Service, headers: &HeaderMap, name: &str, change: &Change) -> Told {
    let mut told = Told {
        changed: 0,
        warnings: Vec::new(),
    };
    if cluster_face::local_only(service, headers) {
        return told;
    }
    let path = cluster_face::path_of(&["api", "v1", "federation", name]);
    let (method, body) = match change {
        Change::Put(body) => (Method::PUT, Bytes::from(body.clone())),
        Change::Delete => (Method::DELETE, Bytes::new()),
    };
    let json_body = [(header::CONTENT_TYPE, "application/json")];
    let (answers, mut warnings) = cluster_face::ask(service, method, &path, &json_body, body).await;
    for (url, response) in answers {
        let status = response.status();
        if status.is_success() {
            told.changed += 1;
        } else if !(matches!(change, Change::Delete) && status == StatusCode::NOT_FOUND) {
            let why = tokio::time::timeout(cluster_face::PEER_TIMEOUT, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            warnings.push(format!(
                "cluster process {url} did not take the change of federation view {name:?}: HTTP status {status}: {}",
                why.trim()
            ));
        }
    }
    for warning in &warnings {
        tracing::warn!(
            warning,
            "federation view changed without a process of the cluster"
        );
    }
    told.warnings = warnings;
    told
}

/// The 202 of a change, with the warnings of the processes that did not take it.
fn accepted(warnings: &[String]) -> Response {
    let answer = api_success_annotated(&serde_json::Value::Null, warnings, &[]);
    (StatusCode::ACCEPTED, answer).into_response()
}

/// `GET /api/v1/federation/{name}`.
pub async fn get_view(
    State(service): State<Arc<Service>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (mut views, warnings) = cluster_views(&service, &headers).await;
    match views.remove(&name) {
        Some(view) => api_success_annotated(&view, &warnings, &[]),
        None => api_error(ErrorType::NotFound, &format!("no federation view {name:?}")),
    }
}

/// `GET /api/v1/federation`.
pub async fn list_views(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let (views, warnings) = cluster_views(&service, &headers).await;
    let views: Vec<_> = views.into_values().collect();
    api_success_annotated(&views, &warnings, &[])
}

/// Every view of the cluster by name, as the GET handlers answer it: this process's,
/// then those only other processes hold; `series` summed over the processes (see the
/// module doc). And a warning for each process that did not answer.
async fn cluster_views(
    service: &Service,
    headers: &HeaderMap,
) -> (BTreeMap<String, serde_json::Value>, Vec<String>) {
    let mut views: BTreeMap<String, serde_json::Value> = service
        .federation_views
        .all()
        .iter()
        .map(|(name, view)| (name.clone(), view_json(name, view)))
        .collect();
    let (peers, warnings) = cluster_face::peer_data(
        service,
        headers,
        "/api/v1/federation",
        &Params::default(),
        &[],
    )
    .await;
    for view in peers.iter().filter_map(|data| data.as_array()).flatten() {
        let Some(name) = view["name"].as_str() else {
            continue;
        };
        match views.get_mut(name) {
            Some(known) => {
                let sum =
                    known["series"].as_u64().unwrap_or(0) + view["series"].as_u64().unwrap_or(0);
                known["series"] = json!(sum);
            }
            None => {
                views.insert(name.to_string(), view.clone());
            }
        }
    }
    (views, warnings)
}

fn view_json(name: &str, view: &FederationView) -> serde_json::Value {
    let mut live = 0;
    view.for_each_live(now_ms, |_| live += 1);
    json!({ "name": name, "match[]": view.matchers, "series": live })
}

/// How long a process of a cluster keeps asking the others for their views after it
/// started (once a second, until each answered).
const ADOPT_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// In a cluster, takes the views this process lacks from the other processes once
/// each answers after the start (see the module doc); nothing in one process.
pub fn spawn_adopting(service: &Arc<Service>) {
    if !service.options.cluster.is_multi() {
        return;
    }
    let weak = Arc::downgrade(service);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut heard = std::collections::BTreeSet::new();
        while started.elapsed() < ADOPT_FOR {
            let Some(service) = weak.upgrade() else {
                return;
            };
            let (bodies, _) =
                cluster_face::gather_bytes(&service, "/api/v1/federation", None).await;
            for (url, body) in bodies {
                if heard.contains(&url) {
                    continue;
                }
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(answer) => adopt(&service, &url, &answer["data"]),
                    Err(e) => {
                        tracing::warn!(process = url, error = %e, "federation views of a process of the cluster do not parse");
                    }
                }
                heard.insert(url);
            }
            if heard.len() == service.options.cluster.peer_urls().len() {
                return;
            }
            drop(service);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        tracing::warn!(
            "federation views: not every process of the cluster answered within {ADOPT_FOR:?} of the start; views registered only there are not served here"
        );
    });
}

/// Registers here the views of `listed` (a process's `GET /api/v1/federation` data)
/// this process does not have.
fn adopt(service: &Service, url: &str, listed: &serde_json::Value) {
    for view in listed.as_array().into_iter().flatten() {
        let (Some(name), Ok(matchers)) = (
            view["name"].as_str(),
            serde_json::from_value::<Vec<String>>(view["match[]"].clone()),
        ) else {
            continue;
        };
        match service.federation_views.adopt(name, matchers) {
            Ok(true) => tracing::info!(
                view = name,
                process = url,
                "federation view taken from a process of the cluster"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(view = name, process = url, error = %e, "federation view of a process of the cluster not taken")
            }
        }
    }
}

fn refuse_unless_enabled(service: &Service) -> Option<Response> {
    (!service.options.enable_federation_views_api).then(|| {
        api_disabled("federation views API disabled: start promflow with --web.enable-federation-views-api to change views")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataflows::Labels;

    fn labels(name: &str, x: &str) -> Arc<Labels> {
        Arc::new(Labels::from_pairs(vec![
            ("__name__".into(), name.into()),
            ("x".into(), x.into()),
        ]))
    }

    fn sample(name: &str, x: &str, t: i64, v: f64) -> LatestChange {
        LatestChange::Sample(LatestEntry {
            labels: labels(name, x),
            timestamp_ms: t,
            value: v,
            histogram: None,
        })
    }

    #[test]
    fn keeps_the_matching_series_and_forwards_only_their_changes() {
        let table = LatestTable::new(1);
        let view = FederationView::start(vec!["a".into()], &table, 300_000).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        view.subscribe(Arc::new(move |changes: &[LatestChange]| {
            sink.lock().extend(changes.iter().cloned())
        }));
        view.apply(&[
            sample("a", "1", 1_000, 1.0),
            sample("a", "2", 1_000, 2.0),
            sample("b", "1", 1_000, 3.0),
        ]);
        // An older sample (e.g. from the start-up snapshot) does not replace a newer one.
        view.apply(&[sample("a", "1", 2_000, 5.0), sample("a", "1", 1_500, 4.0)]);
        view.apply(&[LatestChange::Stale {
            labels: labels("a", "2"),
            timestamp_ms: 2_000,
        }]);
        let live = |at| {
            let mut out = Vec::new();
            view.for_each_live(
                || at,
                |e| out.push((e.labels.get("x").unwrap().to_string(), e.value)),
            );
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        };
        assert_eq!(live(2_000), vec![("1".to_string(), 5.0)]);
        // Past the lookback delta nothing is live, even before an Expired change.
        assert!(live(2_000 + 300_000).is_empty());
        view.apply(&[LatestChange::Expired {
            labels: labels("a", "1"),
            timestamp_ms: 2_000,
        }]);
        assert!(live(2_000).is_empty());
        let forwarded = seen.lock();
        assert_eq!(forwarded.len(), 6, "{forwarded:?}");
        assert!(forwarded.iter().all(|c| match c {
            LatestChange::Sample(e) => e.labels.metric_name() == "a",
            LatestChange::Stale { labels, .. } | LatestChange::Expired { labels, .. } =>
                labels.metric_name() == "a",
        }));
    }

    #[test]
    fn a_stale_series_does_not_come_back_from_an_older_sample() {
        let table = LatestTable::new(1);
        let view = FederationView::start(vec!["a".into()], &table, 300_000).unwrap();
        view.apply(&[LatestChange::Stale {
            labels: labels("a", "1"),
            timestamp_ms: 2_000,
        }]);
        view.apply(&[sample("a", "1", 1_000, 1.0)]);
        let mut n = 0;
        view.for_each_live(|| 2_000, |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn refuses_bad_selectors() {
        let table = LatestTable::new(1);
        assert!(FederationView::start(vec![], &table, 1).is_err());
        let e = FederationView::start(vec!["a".into(), "rate(a[1m])".into()], &table, 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"rate(a[1m])\""), "{e}");
    }
}
