//! The web UI: the app built from `web/ui/` (its `dist/`, embedded in the binary at
//! compile time) served at Prometheus's page paths.
//!
//! Contract: `/` redirects (302) to `graph` under the UI's prefix, as Prometheus does
//! (`<prefix>` to `<prefix>/` first);
//! every page path of the app ([`PAGES`]: `/graph`, `/query`, `/alerts`, `/targets`, …,
//! and `/dashboard/<name>`) answers the app's `index.html`, whose client-side router
//! shows the page, so links such as an alert's `generatorURL` (`/graph?g0.expr=…&g0.tab=1`) open in it;
//! `/assets/<file>` answers the built file with its content type. Asset names carry a
//! content hash, so they are cached for a year (`immutable`); `index.html` is
//! revalidated on each load (`no-cache` with an `ETag`). Text files are sent
//! gzip-compressed to clients that accept it (compressed once, then kept). Asset URLs in `index.html` are
//! relative and the app derives the API's prefix from its own path, so the UI works
//! under `--web.route-prefix` / `--web.external-url` with nothing rewritten.

use crate::service::Service;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// `web/ui/dist`, built by `npm run build` in `web/ui` (checked by `.ci/web-ui`).
static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web/ui/dist");

/// The app's pages, at Prometheus's paths (2.x and 3.x), and the alert composer's;
/// each answers `index.html`.
pub const PAGES: &[&str] = &[
    "/graph",
    "/query",
    "/alerts",
    "/targets",
    "/rules",
    "/service-discovery",
    "/status",
    "/flags",
    "/config",
    "/tsdb-status",
    "/alert-composer",
    "/dashboards",
];

/// The UI's routes, to merge into the API router.
pub fn routes() -> Router<Arc<Service>> {
    let mut router = Router::new()
        .route("/", get(root_redirect))
        .route("/assets/{*file}", get(asset));
    for page in PAGES {
        router = router.route(page, get(index_html));
    }
    // A wall-display dashboard: its relative asset URLs resolve under `/dashboard/`.
    router
        .route("/dashboard/{name}", get(index_html))
        .route("/dashboard/assets/{*file}", get(asset))
}

/// `/` -> `<prefix>/graph`: the external URL's path when `--web.external-url` is set
/// (where a reverse proxy serves promflow), else the path this request came in on.
/// Under a route prefix, `<prefix>` (no slash) first goes to `<prefix>/` (301), as
/// Prometheus's router answers; `<prefix>/` itself is routed by
/// [`super::server::with_route_prefix`].
async fn root_redirect(
    State(service): State<Arc<Service>>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    if !uri.path().ends_with('/') {
        let location = format!("{}/", uri.path());
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let external_path = service
        .options
        .alerting
        .external_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .map(|u| u.path().to_string());
    let base = external_path.unwrap_or_else(|| uri.path().to_string());
    let location = format!("{}/graph", base.trim_end_matches('/'));
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn index_html(headers: HeaderMap) -> Response {
    file_response("index.html", &headers, "no-cache")
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    file_response(
        &format!("assets/{file}"),
        &headers,
        "public, max-age=31536000, immutable",
    )
}

/// The embedded file at `path` with its content type, `cache_control` and an `ETag`
/// (304 when the request's `If-None-Match` has it), gzip-compressed when the client
/// accepts it; 404 when there is none.
fn file_response(path: &str, headers: &HeaderMap, cache_control: &'static str) -> Response {
    let Some(file) = DIST.get_file(path) else {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    };
    let plain = file.contents();
    let hash = xxhash_rust::xxh3::xxh3_64(plain);
    let gzipped = super::response::accepts_gzip(headers)
        .then(|| gzipped(path))
        .flatten();
    let (body, etag, encoding) = match gzipped {
        Some(body) => (body, format!("\"{hash:016x}-gzip\""), Some("gzip")),
        None => (plain, format!("\"{hash:016x}\""), None),
    };
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is a valid header value"),
        ),
        (header::VARY, HeaderValue::from_static("Accept-Encoding")),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mut response = (
        common,
        [(header::CONTENT_TYPE, content_type(path))],
        [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        body,
    )
        .into_response();
    if let Some(encoding) = encoding {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

/// The gzip encoding of the embedded text file at `path` (compressed once, on first
/// use); `None` for files that do not compress (images, fonts).
fn gzipped(path: &str) -> Option<&'static [u8]> {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static [u8]>>> = OnceLock::new();
    let compressible = ["html", "js", "css", "json", "map", "svg", "txt"];
    if !compressible.contains(&path.rsplit('.').next().unwrap_or_default()) {
        return None;
    }
    let mut cache = CACHE.get_or_init(Default::default).lock();
    if let Some(body) = cache.get(path) {
        return Some(body);
    }
    let file = DIST.get_file(path)?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(file.contents()).ok()?;
    // Leaked once per embedded file: the set is fixed at compile time.
    let body: &'static [u8] = Vec::leak(encoder.finish().ok()?);
    cache.insert(path.to_string(), body);
    Some(body)
}

/// The content type of a built file, by its extension (the kinds vite writes).
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::{content_type, DIST, PAGES};

    #[test]
    fn the_build_is_embedded_and_its_files_have_types() {
        let index = DIST.get_file("index.html").expect("web/ui/dist/index.html");
        let html = index.contents_utf8().unwrap();
        let assets = DIST.get_dir("assets").expect("web/ui/dist/assets");
        for file in assets.files() {
            let name = file.path().to_str().unwrap();
            // index.html refers to each asset relatively, so any route prefix works.
            assert!(
                html.contains(&format!("./{name}")),
                "{name} not in index.html"
            );
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
        }
        assert!(PAGES.contains(&"/graph") && PAGES.contains(&"/query"));
    }
}
