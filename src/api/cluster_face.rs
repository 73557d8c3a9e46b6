//! One face for a cluster of processes (`--cluster.*`): endpoints whose answer is
//! per process gather the other processes' answers, so any process answers for the
//! whole cluster.
//!
//! Contract: [`gather`] GETs a path from every other process (the hostfile's HTTP
//! URLs) with the [`LOCAL_ONLY`] header, which makes a process answer for itself
//! alone (no gathering again), and returns the JSON bodies of those that answered;
//! a process that does not answer within [`PEER_TIMEOUT`] is left out and named in
//! the returned warnings. [`from_rule_host`] passes `/api/v1/rules` and
//! `/api/v1/alerts` on to the process that evaluates the rules (the first). Queries
//! do not come here: they read the other processes' storage through remote read
//! (`remote::read`).

use crate::service::Service;
use axum::http::{HeaderMap, StatusCode};
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
    let client = match service.http_clients.client(&Default::default()) {
        Ok(client) => client,
        Err(e) => return (Vec::new(), vec![format!("cluster: no HTTP client: {e}")]),
    };
    let asks = service.options.cluster.peer_urls().into_iter().map(|url| {
        let request = client
            .get(format!("{url}{path_and_query}"))
            .header(LOCAL_ONLY, "1")
            .timeout(PEER_TIMEOUT)
            .send();
        async move {
            let answer = async {
                let response = request.await.map_err(|e| e.to_string())?;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("HTTP status {status}"));
                }
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<Value>(&body).map_err(|e| e.to_string())
            };
            answer
                .await
                .map_err(|e| format!("cluster process {url} did not answer: {e}"))
        }
    });
    let mut bodies = Vec::new();
    let mut warnings = Vec::new();
    for answer in futures_util::future::join_all(asks).await {
        match answer {
            Ok(body) => bodies.push(body),
            Err(warning) => warnings.push(warning),
        }
    }
    (bodies, warnings)
}

/// The rule-hosting process's answer to `uri` (`/api/v1/rules`, `/api/v1/alerts`),
/// when this process is another of its cluster (`None`: answer here). Its status
/// and body are passed on; a host that does not answer is a 503 in Prometheus's
/// error shape.
pub async fn from_rule_host(service: &Service, uri: &axum::http::Uri) -> Option<Response> {
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
    let client = match service.http_clients.client(&Default::default()) {
        Ok(client) => client,
        Err(e) => return Some(unavailable(format!("no HTTP client: {e}"))),
    };
    let asked = client
        .get(format!("{host}{path}"))
        .header(LOCAL_ONLY, "1")
        .timeout(PEER_TIMEOUT)
        .send()
        .await;
    let response = match asked {
        Ok(r) => r,
        Err(e) => return Some(unavailable(e.to_string())),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
    match response.bytes().await {
        Ok(body) => Some(
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
        ),
        Err(e) => Some(unavailable(e.to_string())),
    }
}
