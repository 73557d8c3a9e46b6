//! One face for a cluster of processes (`--cluster.*`): endpoints whose answer is
//! per process gather the other processes' answers, so any process answers for the
//! whole cluster.
//!
//! Contract: [`gather`] GETs a path from every other process (the hostfile's HTTP
//! URLs) with the [`LOCAL_ONLY`] header, which makes a process answer for itself
//! alone (no gathering again), and returns the JSON bodies of those that answered;
//! a process that does not answer within [`PEER_TIMEOUT`] is left out and named in
//! the returned warnings. Queries do not come here: they read the other processes'
//! storage through remote read (`remote::read`).

use crate::service::Service;
use axum::http::HeaderMap;
use serde_json::Value;
use std::sync::OnceLock;
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
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    let Some(client) = CLIENT
        .get_or_init(|| crate::http_client::build_client(&Default::default()).ok())
        .as_ref()
    else {
        return (Vec::new(), vec!["cluster: no HTTP client".to_string()]);
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
