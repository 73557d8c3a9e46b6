//! `POST /api/v1/rules/simulate`: what an alerting rule would have done over stored
//! history — the web UI's alert composer asks it.
//!
//! The body is JSON: `{"rule": {...}, "start": t, "end": t, "interval": d}` where
//! `rule` is one alerting rule as a rule file writes it (`alert`, `expr`, `for`,
//! `keep_firing_for`, `labels`, `annotations`), `start`/`end` are Prometheus times
//! (Unix seconds or RFC 3339) and `interval` (optional; default the config's
//! `evaluation_interval`) is the evaluation interval. The rule is validated as a rule
//! file's rule (problems answer 400 `bad_data`), then evaluated at `start`,
//! `start + interval`, … up to `end` (at most [`MAX_EVALUATIONS`]) over storage by the
//! rule manager's own code: [`GroupState::evaluate`] with the [`HeadEvaluator`] the
//! manager uses, which steps the same alert state machine
//! ([`crate::rules::alert::AlertRuleState`]) and expands the same templates. Nothing
//! is written: the rule's `ALERTS` output goes to a sink that drops it, and no alert
//! is sent.
//!
//! The answer lists each alert series (its final labels) with the runs of evaluations
//! in which it was `pending` or `firing` — `start` and `end` are the first and last
//! evaluation times (seconds) of the run, `activeAt` the alert's — and the annotations
//! of its last active evaluation; `errors` holds the evaluations that failed (at most
//! [`MAX_ERRORS`]). State starts empty at `start`: an alert already active before
//! `start` is first pending at `start` (`activeAt` = `start`), unlike in a rule manager
//! that has been running all along, so choose a range that begins before the episode.

use crate::api::params::{parse_duration_param, parse_time_param, ParamError};
use crate::api::query::labels_json;
use crate::api::response::{api_error, api_success, ApiError, ErrorType};
use crate::rules::alert::AlertState;
use crate::rules::file::RuleKind;
use crate::rules::group::GroupState;
use crate::rules::options::ManagerOptions;
use crate::rules::registry::validate_group;
use crate::rules::sinks::{HeadEvaluator, RuleEvaluator, RuleWrites, SampleSink};
use crate::service::Service;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use dataflows::Labels;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Evaluations one simulation may run (as many as a range query's points).
pub const MAX_EVALUATIONS: i64 = 11_000;
/// Failed evaluations listed in an answer.
pub const MAX_ERRORS: usize = 10;

/// The handler.
pub async fn simulate(State(service): State<Arc<Service>>, body: String) -> Response {
    let request = match Request::parse(&service, &body) {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let evaluator: Arc<dyn RuleEvaluator> = Arc::new(HeadEvaluator::new(
        service.ingester.storage().clone(),
        service.options.lookback_delta.as_millis() as i64,
    ));
    match tokio::task::spawn_blocking(move || request.run(evaluator)).await {
        Ok(answer) => api_success(answer),
        Err(e) => api_error(ErrorType::Internal, &format!("simulation failed: {e}")),
    }
}

/// A validated simulation.
struct Request {
    group: GroupState,
    options: ManagerOptions,
    start_ms: i64,
    end_ms: i64,
    interval_ms: i64,
}

/// Why a simulation request is refused (`bad_data`).
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// `start`, `end` or `interval` does not parse.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// `start` or `end` is neither a string nor a number.
    #[error("field {0:?} must be a time")]
    NotATime(String),
    /// `end` before `start`.
    #[error("end timestamp must not be before start time")]
    EndBeforeStart,
    /// `interval` is neither a string nor a number.
    #[error("field \"interval\" must be a duration")]
    NotADuration,
    /// `interval` of zero or below.
    #[error("the interval must be positive")]
    NonPositiveInterval,
    /// Too many evaluations.
    #[error("exceeded maximum resolution of {MAX_EVALUATIONS} evaluations per simulation: try a longer interval or a shorter range")]
    TooManyEvaluations,
    /// No `rule` object.
    #[error("field \"rule\" must be one alerting rule")]
    NoRule,
    /// The rule is refused as the rules API refuses it: its problems.
    #[error("{}", .0.join("; "))]
    Rule(Vec<String>),
    /// A recording rule.
    #[error("the rule must be an alerting rule (`alert:`)")]
    NotAlerting,
}

impl Request {
    fn parse(service: &Service, body: &str) -> Result<Request, SimulateError> {
        let body: Json = serde_json::from_str(body).map_err(SimulateError::NotJson)?;
        let time = |name: &str| -> Result<i64, SimulateError> {
            match &body[name] {
                Json::String(s) => Ok(parse_time_param(s)?),
                Json::Number(n) => Ok(parse_time_param(&n.to_string())?),
                _ => Err(SimulateError::NotATime(name.to_string())),
            }
        };
        let (start_ms, end_ms) = (time("start")?, time("end")?);
        if end_ms < start_ms {
            return Err(SimulateError::EndBeforeStart);
        }
        let config = service.config.read().clone();
        let interval_ms = match &body["interval"] {
            Json::Null => config.global.evaluation_interval.as_millis() as i64,
            Json::String(s) => parse_duration_param(s)?,
            Json::Number(n) => parse_duration_param(&n.to_string())?,
            _ => return Err(SimulateError::NotADuration),
        };
        if interval_ms <= 0 {
            return Err(SimulateError::NonPositiveInterval);
        }
        if (end_ms - start_ms) / interval_ms >= MAX_EVALUATIONS {
            return Err(SimulateError::TooManyEvaluations);
        }
        let rule = match &body["rule"] {
            Json::Object(rule) => rule.clone(),
            _ => return Err(SimulateError::NoRule),
        };
        // Validated exactly as a rule group sent to the rules API.
        let group = json!({
            "name": "simulate",
            "interval": format!("{interval_ms}ms"),
            "rules": [rule],
        });
        let registered = validate_group("simulate", "simulate", &group.to_string())
            .map_err(SimulateError::Rule)?;
        if !registered
            .group
            .rules
            .first()
            .is_some_and(|r| r.kind == RuleKind::Alerting)
        {
            return Err(SimulateError::NotAlerting);
        }
        let options = ManagerOptions {
            default_interval: config.global.evaluation_interval,
            external_labels: config.global.external_labels.clone(),
            external_url: service
                .options
                .alerting
                .external_url(service.options.listen_address),
            resend_delay: service.options.alerting.resend_delay,
            ..ManagerOptions::default()
        };
        Ok(Request {
            group: GroupState::new(registered.group, config.global.evaluation_interval),
            options,
            start_ms,
            end_ms,
            interval_ms,
        })
    }

    /// Evaluates the rule at each time of the range; the answer's `data`.
    fn run(mut self, evaluator: Arc<dyn RuleEvaluator>) -> Json {
        let mut series: BTreeMap<Arc<Labels>, Episodes> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut evaluations = 0;
        let mut t = self.start_ms;
        while t <= self.end_ms {
            self.group.evaluate(t, &evaluator, &Discard, &self.options);
            evaluations += 1;
            let rule = &self.group.rules[0];
            if !rule.last_error.is_empty() && errors.len() < MAX_ERRORS {
                errors.push(json!({"time": seconds(t), "error": rule.last_error}));
            }
            let alerts = rule.alerts.as_ref().expect("an alerting rule");
            for a in alerts.alerts() {
                if a.state == AlertState::Inactive {
                    continue;
                }
                let e = series.entry(a.labels.clone()).or_default();
                e.annotations = a.payload.clone();
                match e.runs.last_mut() {
                    Some(run)
                        if run.state == a.state
                            && run.end_ms == t - self.interval_ms
                            && run.active_at_ms == a.active_at_ms =>
                    {
                        run.end_ms = t
                    }
                    _ => e.runs.push(Run {
                        state: a.state,
                        start_ms: t,
                        end_ms: t,
                        active_at_ms: a.active_at_ms,
                    }),
                }
            }
            t += self.interval_ms;
        }
        let rule = &self.group.rules[0].rule;
        json!({
            "rule": {
                "name": rule.name,
                "query": rule.query,
                "duration": rule.for_.as_secs_f64(),
                "keepFiringFor": rule.keep_firing_for.as_secs_f64(),
            },
            "interval": seconds(self.interval_ms),
            "evaluations": evaluations,
            "alerts": series.iter().map(|(labels, e)| json!({
                "labels": labels_json(labels),
                "annotations": e.annotations,
                "intervals": e.runs.iter().map(|r| json!({
                    "state": r.state.as_str(),
                    "start": seconds(r.start_ms),
                    "end": seconds(r.end_ms),
                    "activeAt": seconds(r.active_at_ms),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "errors": errors,
        })
    }
}

/// One alert series' runs of pending or firing evaluations.
#[derive(Default)]
struct Episodes {
    runs: Vec<Run>,
    annotations: BTreeMap<String, String>,
}

struct Run {
    state: AlertState,
    start_ms: i64,
    end_ms: i64,
    active_at_ms: i64,
}

/// Where the simulated rule's `ALERTS` samples go: nowhere.
struct Discard;

impl SampleSink for Discard {
    fn commit(&self, _writes: RuleWrites) {}
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}
