//! `/api/v1/query` and `/api/v1/query_range`: ad-hoc PromQL over stored samples, with
//! Prometheus's parameters, JSON shapes and errors.
//!
//! Queries are planned by `dataflows::promql::plan` and evaluated by its reference
//! evaluator over the in-memory head (the same semantics the maintained operators are
//! checked against). Errors: `bad_data` (400) for unparsable parameters or PromQL,
//! `execution` (422) for runtime errors (`--query.max-samples` among them), `timeout`
//! (503) past `timeout`/`--query.timeout`. A query whose plan is shallow (every real
//! one, `QueryPlan::is_shallow`) is evaluated on the async thread that serves it, in
//! `block_in_place` (no hand-off between threads: each costs a wake-up, milliseconds
//! on a loaded machine); a deeper one on a thread of its own (the stack of
//! `dataflows::promql::depth::QUERY_STACK_BYTES`). Each holds its turn of
//! `--query.max-concurrency` until it ends, and stops at its deadline.
//! Warnings and infos the evaluation raises (e.g. `rate` over a name that does not
//! look like a counter) are returned as `warnings` / `infos`, as in Prometheus 3.x.
//! With `remote_read` endpoints in the config, what the query reads is asked of them
//! first and merged with local storage (`remote::read`); a failed endpoint is a warning.

use crate::api::params::{parse_duration_param, parse_time_param, Params, RequestError};
use crate::api::query_json::{Histograms, QueryAnswer, QueryData};
use crate::api::response::{api_error, api_success_annotated, ApiError, ErrorType};
use crate::ingest::now_ms;
use crate::remote::read::WithRemote;
use crate::service::Service;
use crate::storage::range_reader::RangeQueryReader;
use crate::storage::HistogramSource;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use dataflows::promql::depth::{QueryPlan, QUERY_STACK_BYTES};
use dataflows::promql::durations::QueryTimes;
use dataflows::promql::eval::{Annotations, EvalError, Evaluator, SampleBudget};
use dataflows::promql::plan;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prometheus refuses range queries with more points than this per series.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// `GET|POST /api/v1/query`
pub async fn instant_query(State(service): State<Arc<Service>>, params: Params) -> Response {
    let Some(query) = params.get("query") else {
        return ApiError::from(RequestError::NoQuery).into_response();
    };
    let t = match params.get("time") {
        Some(t) => match parse_time_param(t) {
            Ok(t) => t,
            Err(source) => {
                return ApiError::from(RequestError::Value {
                    name: "time".into(),
                    source,
                })
                .into_response()
            }
        },
        None => now_ms(),
    };
    let (plan, timeout) = match plan_and_timeout(&service, &params, query, QueryTimes::default()) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let shallow = plan.is_shallow();
    let (fetched, remote_warnings) = service.remote_series(plan.plan(), t, t, timeout).await;
    run(service, timeout, shallow, move |service, deadline| {
        let storage = service.ingester.storage().clone();
        let local = HistogramSource::new(storage.as_ref());
        let source = WithRemote {
            local: &local,
            fetched: &fetched,
        };
        let mut evaluator = Evaluator::new(&source, t);
        configure(&mut evaluator, &service, deadline);
        remote_warnings.into_iter().for_each(|w| evaluator.warn(w));
        let value = evaluator.instant(plan.plan(), t)?;
        let answer = QueryAnswer {
            data: QueryData::Instant(value, t),
            histograms: Histograms {
                source: local.histograms(),
                made: evaluator.made_histograms(),
            },
        };
        Ok((answer, evaluator.take_annotations()))
    })
    .await
}

/// `GET|POST /api/v1/query_range`
pub async fn range_query(State(service): State<Arc<Service>>, params: Params) -> Response {
    let parsed = (|| -> Result<(String, i64, i64, i64), RequestError> {
        let query = params.get("query").ok_or(RequestError::NoQuery)?;
        let time = |name: &'static str| {
            let text = params.get(name).ok_or(RequestError::Missing(name))?;
            parse_time_param(text).map_err(|_| RequestError::Unparsable(name))
        };
        let start = time("start")?;
        let end = time("end")?;
        if end < start {
            return Err(RequestError::EndBeforeStart);
        }
        let step = params.get("step").ok_or(RequestError::Missing("step"))?;
        let step = parse_duration_param(step).map_err(|source| RequestError::Value {
            name: "step".into(),
            source,
        })?;
        if step <= 0 {
            return Err(RequestError::NonPositiveStep);
        }
        if (end - start) / step > MAX_POINTS_PER_SERIES {
            return Err(RequestError::TooManyPoints);
        }
        Ok((query.to_string(), start, end, step))
    })();
    let (query, start, end, step) = match parsed {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let times = QueryTimes {
        step_ms: step,
        range_ms: end - start,
    };
    let (plan, timeout) = match plan_and_timeout(&service, &params, &query, times) {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let shallow = plan.is_shallow();
    let (fetched, remote_warnings) = service
        .remote_series(plan.plan(), start, end, timeout)
        .await;
    run(service, timeout, shallow, move |service, deadline| {
        let storage = service.ingester.storage().clone();
        // Each selector is read from storage once for the whole range.
        let reader = RangeQueryReader::new(storage.as_ref(), end);
        let source = WithRemote {
            local: &reader,
            fetched: &fetched,
        };
        let mut evaluator = Evaluator::new(&source, start);
        configure(&mut evaluator, &service, deadline);
        remote_warnings.into_iter().for_each(|w| evaluator.warn(w));
        evaluator.start_ms = start;
        evaluator.end_ms = end;
        evaluator.step_ms = step;
        let series = evaluator.range(plan.plan(), start, end, step)?;
        let answer = QueryAnswer {
            data: QueryData::Range(series),
            histograms: Histograms {
                source: reader.histograms(),
                made: evaluator.made_histograms(),
            },
        };
        Ok((answer, evaluator.take_annotations()))
    })
    .await
}

fn configure(evaluator: &mut Evaluator<'_>, service: &Service, deadline: Instant) {
    evaluator.deadline = Some(deadline);
    evaluator.samples =
        SampleBudget::new(usize::try_from(service.options.query_max_samples).unwrap_or(usize::MAX));
    evaluator.lookback_ms = service.options.lookback_delta.as_millis() as i64;
    evaluator.subquery_step_ms = service
        .config
        .read()
        .global
        .evaluation_interval
        .as_millis()
        .max(1) as i64;
}

/// Plans the query and reads its timeout; every error here is `bad_data`. The plan
/// may nest as deep as the text (`dataflows::promql::depth`): it is evaluated by
/// [`run`] on a thread with the stack for it.
fn plan_and_timeout(
    service: &Service,
    params: &Params,
    query: &str,
    times: QueryTimes,
) -> Result<(QueryPlan, Duration), RequestError> {
    let timeout = query_timeout(service, params)?;
    let plan = plan::parse_query_with(query, times).map_err(RequestError::Query)?;
    Ok((plan, timeout))
}

/// The `timeout` parameter, capped by `--query.timeout`.
fn query_timeout(service: &Service, params: &Params) -> Result<Duration, RequestError> {
    match params.get("timeout") {
        None => Ok(service.options.query_timeout),
        Some(t) => parse_duration_param(t)
            .map(|ms| Duration::from_millis(ms.max(0) as u64).min(service.options.query_timeout))
            .map_err(|source| RequestError::Value {
                name: "timeout".into(),
                source,
            }),
    }
}

/// Runs an evaluation bounded by `timeout`, in `block_in_place` when its plan is
/// `shallow` (and the runtime has the threads for it), else on a thread of its own; the
/// answer carries the evaluation's annotations as `warnings` / `infos`. The JSON body
/// is written there too.
async fn run(
    service: Arc<Service>,
    timeout: Duration,
    shallow: bool,
    evaluate: impl FnOnce(Arc<Service>, Instant) -> Result<(QueryAnswer, Annotations), EvalError>
        + Send
        + 'static,
) -> Response {
    // `--query.max-concurrency`: wait for a turn, as Prometheus's query gate does.
    let gate = service.clone();
    let _in_flight = InFlight::enter(&gate);
    let Ok(turn) = gate.query_gate.acquire().await else {
        return api_error(ErrorType::Internal, "query gate closed");
    };
    // The turn is held by the evaluation, which may outlive a timed-out request (until
    // its next step sees the deadline): evaluations at once stay within the limit.
    turn.forget();
    let turn = Turn(service.clone());
    let deadline = Instant::now() + timeout;
    let metrics = service.metrics.clone();
    let answer = move || {
        let _turn = turn;
        evaluate(service, deadline).map(|(data, annotations)| {
            let warnings: Vec<String> = annotations.warnings.into_iter().collect();
            let infos: Vec<String> = annotations.infos.into_iter().collect();
            api_success_annotated(&data, &warnings, &infos)
        })
    };
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    // Ok(None): the evaluation panicked; Err: `timeout` passed first.
    let outcome = if shallow && multi_thread {
        // The evaluator stops itself at `deadline` (`EvalError::TimedOut`).
        let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::task::block_in_place(answer)
        }));
        Ok(evaluated.ok())
    } else {
        // A thread of its own, with the stack a plan as deep as the text needs.
        let (send, task) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("promql-query".into())
            .stack_size(QUERY_STACK_BYTES)
            .spawn(move || {
                let _ = send.send(answer());
            });
        if let Err(e) = spawned {
            return api_error(
                ErrorType::Internal,
                &format!("cannot start the query thread: {e}"),
            );
        }
        tokio::time::timeout(timeout, task).await.map(Result::ok)
    };
    match outcome {
        Err(_) => ApiError::from(EvalError::TimedOut).into_response(),
        Ok(None) => api_error(ErrorType::Internal, "query evaluation failed (panicked)"),
        Ok(Some(Err(e))) => {
            if e == EvalError::TooManySamples {
                metrics.limits.query_samples.inc();
            }
            ApiError::from(e).into_response()
        }
        Ok(Some(Ok(answer))) => answer,
    }
}

/// A turn of `--query.max-concurrency`, given back when dropped.
struct Turn(Arc<Service>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.query_gate.add_permits(1);
    }
}

/// Counts a query in `prometheus_engine_queries` from arrival (waiting for a turn
/// included, as Prometheus counts) until its answer.
struct InFlight<'a>(&'a Service);

impl<'a> InFlight<'a> {
    fn enter(service: &'a Service) -> InFlight<'a> {
        service.metrics.limits.queries_in_flight.add(1.0);
        InFlight(service)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.limits.queries_in_flight.add(-1.0);
    }
}

/// Labels as a JSON object, as Prometheus writes `metric`.
pub fn labels_json(labels: &dataflows::Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(n, v)| (n.to_string(), Json::String(v.to_string())))
            .collect(),
    )
}
