//! The HTTP surface: routes and the handlers of the endpoints promflow serves.
//!
//! - `/federate` ([`federate`]; its protobuf form with native histograms
//!   [`federate_proto`]), `/api/v1/query` and `/api/v1/query_range` ([`query`]),
//!   series, labels, metadata and status ([`series`], [`status`]), the push stream
//!   ([`stream`]), `/api/v1/rules` and `/api/v1/alerts` ([`rules`]), rule groups
//!   registered over HTTP ([`rules_admin`]), an alerting rule simulated over stored
//!   history ([`rules_simulate`]), wall-display dashboards ([`dashboards`]), registered
//!   federation views ([`federation_views`]), `/api/v1/targets` ([`targets`]), the TSDB admin endpoints
//!   ([`admin`]), Alertmanager's v2 alerts and silences for the built-in notifier
//!   ([`alertmanager`]), the remote write and OTLP receivers ([`remote_write`],
//!   [`otlp`]), the Alertmanagers alerts go to ([`alertmanager_targets`]), `/metrics`, `/-/healthy`, `/-/ready`, the lifecycle endpoints
//!   `/-/reload` and `/-/quit` (only with `--web.enable-lifecycle`, answered like
//!   Prometheus otherwise), and the web UI at `/` and Prometheus's page paths ([`ui`]).
//! - [`response`] is the API envelope and the one place errors map to HTTP statuses;
//!   [`params`] reads query-string and form parameters.
//!
//! - In a cluster (`--cluster.*`), [`cluster_face`] asks the other processes, so that
//!   any process answers for the whole cluster (see the README's *Clusters*).
//!
//! [`body_limit`] bounds request bodies per endpoint.
//! [`server`] is the accept loop (`--web.max-connections`, `--web.read-timeout`).
//! `/api/v1` answers browsers' CORS requests as `--web.cors.origin` says ([`cors`]).
//! Every route passes [`auth`] first (basic authentication when `--web.config.file`
//! configures users). Handlers only translate HTTP to calls on the [`Service`] and back.

pub mod admin;
pub mod alertmanager;
pub mod alertmanager_targets;
pub mod auth;
pub mod body_limit;
pub mod cluster_face;
pub mod cors;
pub mod dashboards;
pub mod exemplars;
pub mod federate;
pub mod federate_proto;
pub mod federation_views;
pub mod otlp;
pub mod params;
pub mod query;
pub mod query_json;
pub mod remote_read;
pub mod remote_write;
pub mod response;
pub mod rules;
pub mod rules_admin;
pub mod rules_simulate;
pub mod series;
pub mod server;
pub mod status;
pub mod stream;
pub mod targets;
pub mod tls_server;
pub mod ui;

use crate::ingest::now_ms;
use crate::selfmetrics::RenderInputs;
use crate::service::Service;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The content type of the text exposition format 0.0.4.
pub const TEXT_FORMAT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// All routes, bound to `service`.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .merge(ui::routes())
        .route("/federate", get(federate::federate))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route(
            "/-/reload",
            post(reload).put(reload).get(lifecycle_method_not_allowed),
        )
        .route(
            "/-/quit",
            post(quit).put(quit).get(lifecycle_method_not_allowed),
        )
        .route(
            "/api/v1/query",
            get(query::instant_query).post(query::instant_query),
        )
        .route(
            "/api/v1/query_range",
            get(query::range_query).post(query::range_query),
        )
        .route(
            "/api/v1/series",
            get(series::series_api).post(series::series_api),
        )
        .route(
            "/api/v1/labels",
            get(series::label_names).post(series::label_names),
        )
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/federation", get(federation_views::list_views))
        .route(
            "/api/v1/federation/{name}",
            get(federation_views::get_view)
                .put(federation_views::put_view)
                .delete(federation_views::delete_view),
        )
        .route("/api/v1/metadata", get(status::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(exemplars::query_exemplars).post(exemplars::query_exemplars),
        )
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/rules", get(rules::rules))
        .route("/api/v1/rules/simulate", post(rules_simulate::simulate))
        .route("/api/v1/dashboards", get(dashboards::list))
        .route("/api/v1/dashboards/{name}", get(dashboards::get))
        .route(
            "/api/v1/rules/{namespace}",
            get(rules_admin::get_namespace).delete(rules_admin::delete_namespace),
        )
        .route(
            "/api/v1/rules/{namespace}/{group}",
            get(rules_admin::get_group)
                .put(rules_admin::put_group)
                .delete(rules_admin::delete_group),
        )
        .route("/api/v1/alerts", get(rules::alerts))
        .route(
            "/api/v1/alertmanagers",
            get(alertmanager_targets::alertmanagers),
        )
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/targets/relabel_steps", get(targets::relabel_steps))
        .route("/api/v1/write", post(remote_write::write))
        .route("/api/v1/otlp/v1/metrics", post(otlp::metrics))
        .route("/api/v1/read", post(remote_read::read))
        .route("/api/v1/targets/metadata", get(status::targets_metadata))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(admin::clean_tombstones).put(admin::clean_tombstones),
        )
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(admin::snapshot).put(admin::snapshot),
        )
        .route(
            "/api/v2/alerts",
            get(alertmanager::get_alerts).post(alertmanager::post_alerts),
        )
        .route("/api/v2/alerts/groups", get(alertmanager::get_alert_groups))
        .route("/api/v2/status", get(alertmanager::get_status))
        .route("/api/v2/receivers", get(alertmanager::get_receivers))
        .route(
            "/api/v2/silences",
            get(alertmanager::get_silences).post(alertmanager::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(alertmanager::get_silence).delete(alertmanager::delete_silence),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            service.clone(),
            cors::cors,
        ))
        // Request bodies are bounded per endpoint there, not by axum's default.
        .route_layer(axum::middleware::from_fn_with_state(
            service.clone(),
            body_limit::enforce,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        // Before the auth layer, so unknown paths require authentication too.
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            auth::require_basic_auth,
        ))
        .with_state(service)
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    // An idle dataflow's watermark follows the clock only when asked: bring it to now,
    // so the frontier and its lag are current.
    service.ingester.advance_watermark();
    let head = service.ingester.storage();
    let mut body = service.metrics.render(&RenderInputs {
        active_series: head.series_count(),
        head_samples: head.sample_count(),
        engine: service.ingester.engine().stats(),
        now_ms: now_ms(),
        active_targets: service.scrapes.targets().len(),
    });
    body.push_str(&head.render_metrics());
    let groups = service
        .rules
        .with_groups(crate::rules::metrics::GroupFigures::of);
    crate::rules::metrics::render(&mut body, &groups);
    body.push_str(&service.ingester.exemplars().render_metrics());
    if service.builtin_notifier.is_enabled() {
        body.push_str(&service.builtin_notifier.metrics.render());
    }
    body.push_str(&service.ingester.remote_write().render_metrics());
    otlp::render_metrics(&mut body);
    ([(header::CONTENT_TYPE, TEXT_FORMAT_CONTENT_TYPE)], body).into_response()
}

/// Go's `http.NotFound`, as Prometheus answers an unknown path.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn healthy() -> &'static str {
    "promflow is Healthy.\n"
}

async fn ready(State(service): State<Arc<Service>>) -> Response {
    if service.is_ready() {
        "promflow is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

/// Prometheus's answer to a lifecycle request without `--web.enable-lifecycle`.
fn lifecycle_disabled() -> Response {
    (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response()
}

/// Prometheus's answer to `GET /-/reload` and `GET /-/quit`.
async fn lifecycle_method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "Only POST or PUT requests allowed",
    )
        .into_response()
}

/// `POST /-/quit`: answers, then the server shuts down as on SIGTERM.
async fn quit(State(service): State<Arc<Service>>) -> Response {
    if !service.options.enable_lifecycle {
        return lifecycle_disabled();
    }
    service.request_quit();
    "Requesting termination... Goodbye!".into_response()
}

async fn reload(State(service): State<Arc<Service>>) -> Response {
    if !service.options.enable_lifecycle {
        return lifecycle_disabled();
    }
    match service.reload().await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}
