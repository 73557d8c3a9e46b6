//! The HTTP server loop: accepts connections on the listening socket and serves the
//! [`router`](super::router) on each, with Prometheus's connection flags.
//!
//! Contract: at most `max_connections` connections are open at once (0: no limit);
//! beyond that new ones wait to be accepted, like Go's `netutil.LimitListener` behind
//! `--web.max-connections`. A connection must deliver each request's headers within
//! `read_timeout` of being ready for it, so an idle keep-alive connection is closed
//! after `read_timeout` (`--web.read-timeout`); a response being written (a long
//! `/api/v1/stream`) is not cut. When `shutdown` completes, no new connection is
//! accepted and the open ones finish their requests before [`serve`] returns.
//! With a TLS configuration source (`tls_server_config`), each connection first
//! handshakes on its own task with the configuration in force at that moment
//! ([`super::tls_server::handshake`]).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The rustls configuration in force, asked for at each new connection.
pub type TlsConfigSource = Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>;

/// `--web.max-connections` and `--web.read-timeout`.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most; 0: no limit.
    pub max_connections: usize,
    /// The longest wait for a request's headers (idle connections included).
    pub read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes; see the module contract.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsConfigSource>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(match limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    }));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls_config = tls.as_ref().map(|source| source());
        tokio::spawn(async move {
            let result = match tls_config {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(config) => match super::tls_server::handshake(stream, config).await {
                    Ok(Some(tls)) => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(tls), service))
                            .await
                    }
                    Ok(None) => Ok(()),
                    Err(e) => {
                        tracing::debug!(error = %e, "TLS handshake error");
                        Ok(())
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// `--web.external-url` is not a URL.
#[derive(Debug, thiserror::Error)]
#[error("invalid --web.external-url {url:?}: {source}")]
pub struct ExternalUrlError {
    url: String,
    source: <reqwest::Url as std::str::FromStr>::Err,
}

/// The prefix every route is served under, as Prometheus derives it: `--web.route-prefix`,
/// else the path of `--web.external-url`; always `/` followed by the path without
/// surrounding slashes.
pub fn route_prefix(
    flag: Option<&str>,
    external_url: Option<&str>,
) -> Result<String, ExternalUrlError> {
    let path = match (flag, external_url) {
        (Some(prefix), _) if !prefix.is_empty() => prefix.to_string(),
        (_, Some(url)) if !url.is_empty() => reqwest::Url::parse(url)
            .map_err(|source| ExternalUrlError {
                url: url.to_string(),
                source,
            })?
            .path()
            .to_string(),
        _ => String::new(),
    };
    Ok(format!("/{}", path.trim_matches('/')))
}

/// `app` served under `prefix` (see [`route_prefix`]); `/` then redirects to it (302),
/// as in Prometheus, and `<prefix>/` to the web UI's home page `<prefix>/graph`.
pub fn with_route_prefix(app: Router, prefix: &str) -> Router {
    if prefix == "/" {
        return app;
    }
    let redirect = |target: String| {
        axum::routing::get(move || async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, target)],
            )
        })
    };
    Router::new()
        .route("/", redirect(prefix.to_string()))
        // A nested router's `/` answers `<prefix>` only.
        .route(&format!("{prefix}/"), redirect(format!("{prefix}/graph")))
        .nest(prefix, app)
}

#[cfg(test)]
mod tests {
    use super::route_prefix;

    #[test]
    fn prefix_from_flag_or_external_url() {
        assert_eq!(route_prefix(None, None).unwrap(), "/");
        assert_eq!(
            route_prefix(None, Some("http://example.com/prom/")).unwrap(),
            "/prom"
        );
        assert_eq!(
            route_prefix(Some("/a/b/"), Some("http://example.com/prom")).unwrap(),
            "/a/b"
        );
        assert_eq!(route_prefix(None, Some("http://example.com")).unwrap(), "/");
    }
}
