//! One face for a cluster of processes (`--cluster.*`): endpoints whose answer is
//! per process gather the other processes' answers, so any process answers for the
//! whole cluster.
//!
//! Contract: [`gather`] GETs a path from every other process (the hostfile's HTTP
//! URLs) with the [`LOCAL_ONLY`] header, which makes a process answer for itself
//! alone (no gathering again), and returns the JSON bodies of those that answered;
//! a process that does not answer within [`PEER_TIMEOUT`] is left out and named in
//! the returned warnings ([`gather_bytes`]: any body; [`open`]: the responses, for
//! streams; [`peer_data`]: the `data` of API answers, for the endpoints that merge
//! them). [`ask`] sends any request to every other process the same way and returns
//! the responses whatever their status: federation views, registered and removed on
//! every process, go through it (`api::federation_views`). [`to_rule_host`] passes the rules API (`/api/v1/rules`, `/api/v1/alerts`,
//! rule groups registered over HTTP) on to the process that evaluates the rules (the
//! first; [`from_rule_host`] for a GET). Queries
//! do not come here: they read the other processes' storage through remote read
//! (`remote::read`).

use crate::api::params::Params;
use crate::service::Service;
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::time::Duration;

/// The header of a request from another process of the cluster: answer for this
/// process only.
pub const LOCAL_ONLY: &str = "x-promflow-cluster-local";

/// How long a peer may take to answer.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the request asks for this process's own answer only (or there is no
/// other process to ask).
pub fn local_only(service: &Service, headers: &HeaderMap) -> bool {
    !service.options.cluster.is_multi() || headers.contains_key(LOCAL_ONLY)
}

/// The other processes' JSON answers to `GET path_and_query`, and a warning for each
/// one that gave none.
pub async fn gather(service: &Service, path_and_query: &str) -> (Vec<Value>, Vec<String>) {
    let (bodies, mut warnings) = gather_bytes(service, path_and_query, None).await;
    let mut values = Vec::new();
    for (url, body) in bodies {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => values.push(value),
            Err(e) => warnings.push(format!("cluster process {url} did not answer: {e}")),
        }
    }
    (values, warnings)
}

/// The `data` of the other processes' answers to this request (`path` with `params`,
/// but those named in `leave_out`: limits applied to the merged answer), and a
/// warning for each one that did not answer; nothing when this process answers for
/// itself only ([`local_only`]).
pub async fn peer_data(
    service: &Service,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
    leave_out: &[&str],
) -> (Vec<Value>, Vec<String>) {
    if local_only(service, headers) {
        return (Vec::new(), Vec::new());
    }
    let asked: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(name, _)| !leave_out.contains(&name.as_str()))
        .cloned()
        .collect();
    let (bodies, warnings) = gather(service, &with_params(path, &asked)).await;
    let data = bodies
        .into_iter()
        .map(|mut body| body["data"].take())
        .collect();
    (data, warnings)
}

/// `path` with `params` as its query string (as a request's parameters are passed on
/// to the other processes, a POST's form too).
pub fn with_params(path: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    format!(
        "{path}?{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

/// `path` asking another process for the same series as a `/federate` or stream
/// request with `params` selects: its `match[]` selectors, or its `view` (a
/// federation view, the cluster's, see `federation_views`).
pub fn same_selection(path: &str, params: &[(String, String)]) -> String {
    let asked: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name == "match[]" || name == "view")
        .cloned()
        .collect();
    with_params(path, &asked)
}

/// The other processes' bodies (with their URL) in answer to `GET path_and_query`
/// (with `accept`, if given), and a warning for each one that gave none within
/// [`PEER_TIMEOUT`].
pub async fn gather_bytes(
    service: &Service,
    path_and_query: &str,
    accept: Option<&str>,
) -> (Vec<(String, Bytes)>, Vec<String>) {
    let (responses, mut warnings) = open(service, path_and_query, accept).await;
    let reads = responses.into_iter().map(|(url, response)| async move {
        match tokio::time::timeout(PEER_TIMEOUT, response.bytes()).await {
            Ok(Ok(body)) => Ok((url, body)),
            Ok(Err(e)) => Err(format!("cluster process {url} did not answer: {e}")),
            Err(_) => Err(format!("cluster process {url} did not answer: timed out")),
        }
    });
    let mut bodies = Vec::new();
    for read in futures_util::future::join_all(reads).await {
        match read {
            Ok(body) => bodies.push(body),
            Err(warning) => warnings.push(warning),
        }
    }
    (bodies, warnings)
}

/// The other processes' responses (their heads, with a successful status; the body
/// still to read, as long as it lasts: a stream's too) to `GET path_and_query` with
/// [`LOCAL_ONLY`] (and `accept`, if given), with their URL; a warning for each one
/// that did not answer within [`PEER_TIMEOUT`].
pub async fn open(
    service: &Service,
    path_and_query: &str,
    accept: Option<&str>,
) -> (Vec<(String, reqwest::Response)>, Vec<String>) {
    let headers: Vec<(header::HeaderName, &str)> =
        accept.map(|a| (header::ACCEPT, a)).into_iter().collect();
    let (answers, mut warnings) =
        ask(service, Method::GET, path_and_query, &headers, Bytes::new()).await;
    let mut responses = Vec::new();
    for (url, response) in answers {
        let status = response.status();
        if status.is_success() {
            responses.push((url, response));
        } else {
            warnings.push(format!(
                "cluster process {url} did not answer: HTTP status {status}"
            ));
        }
    }
    (responses, warnings)
}

/// The other processes' responses (any status; the body still to read) to `method
/// path_and_query` with [`LOCAL_ONLY`], `headers` and `body`, with their URL; a
/// warning for each one that did not answer within [`PEER_TIMEOUT`]. Changes made on
/// one process that every process must make (federation views) go through here.
pub async fn ask(
    service: &Service,
    method: Method,
    path_and_query: &str,
    headers: &[(header::HeaderName, &str)],
    body: Bytes,
) -> (Vec<(String, reqwest::Response)>, Vec<String>) {
    let client = match peer_client(service) {
        Ok(client) => client,
        Err(e) => return (Vec::new(), vec![format!("cluster: no HTTP client: {e}")]),
    };
    let asks = service.options.cluster.peer_urls().into_iter().map(|url| {
        let mut request = client
            .request(method.clone(), format!("{url}{path_and_query}"))
            .header(LOCAL_ONLY, "1")
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        async move {
            let answer = async {
                let request = authorized(service, request).await?;
                tokio::time::timeout(PEER_TIMEOUT, request.send())
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())
            };
            match answer.await {
                Ok(response) => Ok((url.to_string(), response)),
                Err(e) => Err(format!("cluster process {url} did not answer: {e}")),
            }
        }
    });
    let mut responses = Vec::new();
    let mut warnings = Vec::new();
    for answer in futures_util::future::join_all(asks).await {
        match answer {
            Ok(response) => responses.push(response),
            Err(warning) => warnings.push(warning),
        }
    }
    (responses, warnings)
}

/// A URL path of `segments`, each percent-encoded as a path segment (a name given by
/// a client, e.g. a federation view's, passed on to the other processes).
pub fn path_of(segments: &[&str]) -> String {
    let mut url = reqwest::Url::parse("http://peer/").expect("a valid URL");
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    url.path().to_string()
}

/// The rule-hosting process's answer to `GET uri` (`/api/v1/rules`, `/api/v1/alerts`),
/// when this process is another of its cluster (`None`: answer here); see
/// [`to_rule_host`].
pub async fn from_rule_host(service: &Service, uri: &Uri) -> Option<Response> {
    to_rule_host(service, Method::GET, uri, &HeaderMap::new(), Bytes::new()).await
}

/// The rule-hosting process's answer to `method uri` with `body` (the rules API:
/// `/api/v1/rules`, `/api/v1/alerts`, rule groups registered, read and removed), when
/// this process is another of its cluster (`None`: answer here). The request's
/// `Accept` and `Content-Type` go with it; the host's status, content type and body
/// are passed on; a host that does not answer is a 503 in Prometheus's error shape.
pub async fn to_rule_host(
    service: &Service,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Response> {
    let cluster = &service.options.cluster;
    if !cluster.is_multi() || cluster.hosts_rules() {
        return None;
    }
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let unavailable = |why: String| {
        let body = serde_json::json!({
            "status": "error",
            "errorType": "unavailable",
            "error": format!("the cluster's rule host (process 0) did not answer: {why}"),
        });
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    };
    let Some(host) = cluster.processes.first().and_then(|p| p.web.as_deref()) else {
        return Some(unavailable("the hostfile gives no URL for it".into()));
    };
    let client = match peer_client(service) {
        Ok(client) => client,
        Err(e) => return Some(unavailable(format!("no HTTP client: {e}"))),
    };
    let mut request = client
        .request(method, format!("{host}{path}"))
        .header(LOCAL_ONLY, "1")
        .timeout(PEER_TIMEOUT)
        .body(body);
    for name in [header::ACCEPT, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = match authorized(service, request).await {
        Ok(request) => request,
        Err(e) => return Some(unavailable(e)),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Some(unavailable(e.to_string())),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/json"));
    match response.bytes().await {
        Ok(body) => Some((status, [(header::CONTENT_TYPE, content_type)], body).into_response()),
        Err(e) => Some(unavailable(e.to_string())),
    }
}

/// The client for requests to the other processes: `--cluster.http-config`'s TLS
/// settings (plain HTTP by default).
fn peer_client(service: &Service) -> Result<reqwest::Client, String> {
    service
        .http_clients
        .client(&service.options.cluster_http)
        .map_err(|e| e.to_string())
}

/// `request` to another process with `--cluster.http-config`'s credentials (none by
/// default), read as every configured client reads them.
async fn authorized(
    service: &Service,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::RequestBuilder, String> {
    crate::http_client::authorize(request, &service.options.cluster_http)
        .await
        .map_err(|e| format!("credentials: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            path_of(&["api", "v1", "federation", "a b/c?d%"]),
            "/api/v1/federation/a%20b%2Fc%3Fd%25"
        );
        assert_eq!(
            path_of(&["api", "v1", "federation", "demo"]),
            "/api/v1/federation/demo"
        );
    }
}
