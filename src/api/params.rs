//! Request parameters of the API v1: from the query string and, for POST, from an
//! `application/x-www-form-urlencoded` body (Grafana sends both), plus Prometheus's
//! time and duration parameter syntaxes.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use axum::response::Response;

use crate::api::federate::SelectorError;
use crate::api::response::{api_error, ErrorType};
use dataflows::promql::plan::PlanError;

/// All parameters of a request, in order; repeated names (like `match[]`) kept.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The optional `start` and `end` of the series, labels and exemplars APIs
    /// (milliseconds; all time when absent); `end` before `start` is an error.
    pub fn optional_range(&self) -> Result<(i64, i64), RequestError> {
        let time = |name: &str, default: i64| -> Result<i64, RequestError> {
            self.get(name).map_or(Ok(default), |t| {
                parse_time_param(t).map_err(|source| RequestError::Value {
                    name: name.to_string(),
                    source,
                })
            })
        };
        let start_ms = time("start", i64::MIN)?;
        let end_ms = time("end", i64::MAX)?;
        if end_ms < start_ms {
            return Err(RequestError::EndBeforeStart);
        }
        Ok((start_ms, end_ms))
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Params, Response> {
        let mut pairs: Vec<(String, String)> = request
            .uri()
            .query()
            .map(|q| form_urlencoded(q.as_bytes()))
            .unwrap_or_default();
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        // Like Go's `Request.ParseForm`: a form body counts for POST and PUT.
        let has_body = matches!(*request.method(), Method::POST | Method::PUT);
        if has_body && is_form {
            let body = Bytes::from_request(request, state).await.map_err(|e| {
                api_error(
                    ErrorType::BadData,
                    &format!("reading the request body: {e}"),
                )
            })?;
            pairs.extend(form_urlencoded(&body));
        }
        Ok(Params(pairs))
    }
}

fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

/// A time or duration parameter's value that does not parse, in Prometheus's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// Neither Unix seconds nor RFC 3339.
    #[error("cannot parse {0:?} to a valid timestamp")]
    Timestamp(String),
    /// Neither seconds nor a Prometheus duration.
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
}

/// A request of the Prometheus API refused for its parameters: `bad_data` (the
/// status is decided in `api/response.rs`), with Prometheus's texts.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A time or duration parameter does not parse.
    #[error("invalid parameter \"{name}\": {source}")]
    Value {
        /// The parameter.
        name: String,
        /// Why.
        source: ParamError,
    },
    /// A `match[]`-like parameter is no series selector.
    #[error("invalid parameter \"{name}\": {source}")]
    Selector {
        /// The parameter.
        name: &'static str,
        /// Why.
        source: SelectorError,
    },
    /// The query does not plan.
    #[error("invalid parameter \"query\": {0}")]
    Query(#[source] PlanError),
    /// No `query`.
    #[error("invalid parameter \"query\": query is required")]
    NoQuery,
    /// A required parameter is absent.
    #[error("invalid parameter \"{0}\": missing")]
    Missing(&'static str),
    /// A range query's `start` or `end` does not parse (Prometheus says no more).
    #[error("invalid parameter \"{0}\"")]
    Unparsable(&'static str),
    /// `end` before `start`.
    #[error("invalid parameter \"end\": end timestamp must not be before start time")]
    EndBeforeStart,
    /// `step` of zero or below.
    #[error("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer")]
    NonPositiveStep,
    /// More than 11,000 steps.
    #[error("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")]
    TooManyPoints,
    /// `limit` is no count.
    #[error("invalid parameter \"limit\": cannot parse {0:?} to a valid limit")]
    Limit(String),
    /// A metadata limit is no integer.
    #[error("invalid parameter \"{name}\": {value:?}")]
    Integer {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// A time of the TSDB admin API does not parse (Prometheus's wording there).
    #[error("invalid parameter \"{name}\": Invalid time value for '{name}': {source}")]
    AdminTime {
        /// The parameter.
        name: &'static str,
        /// Why.
        source: ParamError,
    },
}

/// Prometheus's time parameter: Unix seconds (fractions allowed) or RFC 3339.
/// Returns milliseconds.
pub fn parse_time_param(s: &str) -> Result<i64, ParamError> {
    if let Ok(seconds) = s.parse::<f64>() {
        if seconds.is_finite() {
            return Ok((seconds * 1000.0).round() as i64);
        }
    }
    match s {
        // Prometheus's spellings of the extremes.
        "-292273086-05-16T16:47:06Z" => return Ok(i64::MIN / 1000),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(i64::MAX / 1000),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| ParamError::Timestamp(s.to_string()))
}

/// Prometheus's duration parameter: seconds (fractions allowed) or a duration like
/// `1m30s`. Returns milliseconds.
pub fn parse_duration_param(s: &str) -> Result<i64, ParamError> {
    if let Ok(seconds) = s.parse::<f64>() {
        if seconds.is_finite() {
            return Ok((seconds * 1000.0).round() as i64);
        }
        return Err(ParamError::Duration(s.to_string()));
    }
    crate::config::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| ParamError::Duration(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time_param("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(
            parse_time_param("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert!(parse_time_param("yesterday").is_err());
        assert_eq!(parse_duration_param("15"), Ok(15_000));
        assert_eq!(parse_duration_param("1m30s"), Ok(90_000));
        assert!(parse_duration_param("fast").is_err());
    }
}
