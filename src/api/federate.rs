//! `GET /federate?match[]=…`: the latest sample of every matching live series, in the
//! text format with timestamps, as Prometheus serves it.
//!
//! Reads the dataflow's maintained latest-sample table (not storage): a series is
//! included if its newest sample lies within the lookback delta of now and is not a
//! stale marker, "now" being read as the table is read (never before: see
//! `LatestTable::for_each_live`), so every live series is in every answer, also while
//! its target's scrape is being applied. Output is grouped by metric name with `# TYPE <name> untyped` lines,
//! external labels are added where the series lacks them, gzip when asked.
//!
//! `?view=name` (instead of `match[]`) serves a registered federation view's maintained
//! output ([`crate::api::federation_views`]), with no per-request filtering.

use crate::api::TEXT_FORMAT_CONTENT_TYPE;
use crate::exposition::{write_sample, write_type};
use crate::ingest::now_ms;
use crate::service::Service;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dataflows::promql::depth;
use dataflows::{LabelMatcher, Labels, Selector};
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

/// Parses one `match[]` value, a series selector like `{job="node"}` or `up{job=~"a|b"}`.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    depth::parse_ast(text, |expr| selector(text, expr))
}

fn selector(text: &str, expr: Expr) -> Result<Selector, String> {
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{text:?} is not a series selector"));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!(
            "{text:?}: 'or' in series selectors is not supported"
        ));
    }
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(format!(
            "{text:?}: offset and @ are not allowed in a series selector"
        ));
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
    let external_labels = service.config.read().global.external_labels.clone();
    let lookback_ms = service.options.lookback_delta.as_millis() as i64;
    let mut rows: HashMap<u64, (Arc<Labels>, i64, f64)> = HashMap::new();
    let mut add = |entry: &dataflows::LatestEntry| {
        rows.entry(entry.labels.hash())
            .or_insert_with(|| (entry.labels.clone(), entry.timestamp_ms, entry.value));
    };
    match params.iter().find(|(name, _)| name == "view") {
        Some(_) if !selectors.is_empty() => {
            return (
                StatusCode::BAD_REQUEST,
                "give either view or match[], not both\n",
            )
                .into_response()
        }
        Some((_, name)) => match service.federation_views.get(name) {
            Some(view) => view.for_each_live(now_ms, add),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no federation view {name:?}\n"),
                )
                    .into_response()
            }
        },
        None => service
            .ingester
            .engine()
            .latest()
            .for_each_live(now_ms, lookback_ms, |entry| {
                if selectors.iter().any(|s| s.matches(&entry.labels)) {
                    add(entry);
                }
            }),
    }
    let mut rows: Vec<(Arc<Labels>, i64, f64)> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        a.0.metric_name()
            .cmp(b.0.metric_name())
            .then_with(|| a.0.cmp(&b.0))
    });

    let mut body = String::new();
    let mut current_name: Option<&str> = None;
    for (labels, ts, value) in &rows {
        let name = labels.metric_name();
        if current_name != Some(name) {
            write_type(&mut body, name, "untyped");
            current_name = Some(name);
        }
        let mut pairs: Vec<(&str, &str)> =
            labels.iter().filter(|(n, _)| *n != "__name__").collect();
        for (n, v) in &external_labels {
            if labels.get(n).is_none() {
                pairs.push((n.as_str(), v.as_str()));
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        write_sample(&mut body, name, pairs, *value, Some(*ts));
    }

    let wants_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if wants_gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if encoder.write_all(body.as_bytes()).is_ok() {
            if let Ok(compressed) = encoder.finish() {
                return (
                    [
                        (header::CONTENT_TYPE, TEXT_FORMAT_CONTENT_TYPE),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    compressed,
                )
                    .into_response();
            }
        }
    }
    ([(header::CONTENT_TYPE, TEXT_FORMAT_CONTENT_TYPE)], body).into_response()
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
}
