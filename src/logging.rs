//! The server's log lines, as Prometheus writes them (`--log.level`, `--log.format`).
//!
//! Contract: one line per event on stderr; `logfmt` (the default) is
//! `ts=<RFC 3339, ms, UTC> caller=<module> level=<debug|info|warn|error> msg="…" key=value …`
//! with values quoted when they hold a space, `=` or `"`; `json` is the same keys in
//! one JSON object per line. Events below `--log.level` are dropped; the HTTP and TLS
//! client crates log at `warn` and above only.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Why the log output cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `--log.format` is neither `logfmt` nor `json`.
    #[error("unrecognized log format {0:?} (one of: logfmt, json)")]
    Format(String),
    /// `--log.level` is no level.
    #[error("invalid --log.level {level:?}: {source}")]
    Level {
        /// The flag's value.
        level: String,
        /// What tracing said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A subscriber is installed already.
    #[error(transparent)]
    Init(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl std::str::FromStr for LogFormat {
    type Err = LogError;
    fn from_str(s: &str) -> Result<LogFormat, LogError> {
        match s {
            "logfmt" => Ok(LogFormat::Logfmt),
            "json" => Ok(LogFormat::Json),
            other => Err(LogError::Format(other.to_string())),
        }
    }
}

/// Installs the process-wide subscriber; see the module contract.
pub fn init(level: &str, format: LogFormat) -> Result<(), LogError> {
    // rustls-platform-verifier logs every refused certificate at ERROR; the scrape
    // or send that failed reports it already (target lastError, notifier logs).
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},hyper=warn,reqwest=warn,rustls_platform_verifier=off"
    ))
    .map_err(|source| LogError::Level {
        level: level.to_string(),
        source,
    })?;
    Ok(tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Lines(format))
        .try_init()?)
}

/// The event formatter.
struct Lines(LogFormat);

/// An event's fields as text, the message apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            name => self.others.push((name, value)),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut pairs: Vec<(&str, String)> = vec![
            (
                "ts",
                chrono::Utc::now()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string(),
            ),
            ("caller", meta.target().to_string()),
            ("level", meta.level().as_str().to_ascii_lowercase()),
        ];
        if let Some(message) = fields.message {
            pairs.push(("msg", message));
        }
        pairs.extend(fields.others);
        match self.0 {
            LogFormat::Json => {
                let object: serde_json::Map<String, serde_json::Value> = pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                writeln!(writer, "{}", serde_json::Value::Object(object))
            }
            LogFormat::Logfmt => {
                let line: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", logfmt_value(v)))
                    .collect();
                writeln!(writer, "{}", line.join(" "))
            }
        }
    }
}

/// A logfmt value: bare when it can be, else quoted with `"` and `\` escaped.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control())
    {
        return v.to_string();
    }
    serde_json::Value::String(v.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_when_needed() {
        assert_eq!(logfmt_value("ready"), "ready");
        assert_eq!(logfmt_value("promflow is ready"), "\"promflow is ready\"");
        assert_eq!(logfmt_value("a=\"b\""), "\"a=\\\"b\\\"\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }
}
