//! Prometheus's command line, as far as promflow's own flags (in `main.rs`) do not
//! cover it: every other flag of `prometheus --help` (2.42) and the common 3.x ones,
//! so a unit file or container command written for Prometheus starts promflow.
//!
//! Contract: each flag here is one of three kinds, listed in [`NO_OPS`] and
//! [`REFUSED`] (every other one is implemented with Prometheus's meaning):
//! - *implemented*: read by the server like Prometheus reads it;
//! - *no-op*: accepted with any valid value because promflow has no such thing (e.g.
//!   console templates); its `--help` text says so and the server logs it once at
//!   startup when it is given;
//! - *refused*: given on the command line, the server does not start and names the
//!   flag and why (e.g. agent mode). `check`/`test` subcommands ignore them.
//!
//! `--enable-feature` values are sorted the same way ([`feature`]); unknown values are
//! logged and ignored, as Prometheus does. Booleans take kingpin's syntax: `--flag`
//! and `--no-flag` ([`kingpin_negations`] rewrites the latter before clap parses).

use crate::config::{parse_duration, DurationError, SizeError};
use std::ffi::OsString;
use std::time::Duration;

fn duration_arg(s: &str) -> Result<Duration, DurationError> {
    parse_duration(s)
}

/// A count flag's value that is no count.
#[derive(Debug, thiserror::Error)]
#[error("invalid count {0:?}")]
pub struct CountError(String);

/// Kingpin's float-or-integer counts (`5e7`).
fn count_arg(s: &str) -> Result<u64, CountError> {
    s.parse::<u64>().or_else(|_| match s.parse::<f64>() {
        Ok(f) if f >= 0.0 && f.is_finite() => Ok(f as u64),
        _ => Err(CountError(s.to_string())),
    })
}

fn bytes_arg(s: &str) -> Result<u64, SizeError> {
    s.parse::<u64>()
        .or_else(|_| crate::config::parse_base2_bytes(s).map(|b| b.max(0) as u64))
}

/// Prometheus's flags beyond promflow's own; see the module contract.
#[derive(clap::Args, Debug, Clone)]
pub struct PrometheusFlags {
    /// Maximum duration before timing out the read of a request's headers, and closing
    /// idle connections (a connection waiting for its next request).
    #[arg(long = "web.read-timeout", default_value = "5m", value_parser = duration_arg, global = true)]
    pub web_read_timeout: Duration,
    /// Maximum number of simultaneous connections; more wait to be accepted. 0: no limit.
    #[arg(long = "web.max-connections", default_value = "512", global = true)]
    pub web_max_connections: usize,
    /// Prefix for the internal routes of web endpoints. Defaults to the path of
    /// --web.external-url.
    #[arg(long = "web.route-prefix", global = true)]
    pub web_route_prefix: Option<String>,
    /// Regex for CORS origin of /api/v1 responses. It is fully anchored. Example:
    /// 'https?://(domain1|domain2)\.com'
    #[arg(long = "web.cors.origin", default_value = ".*", global = true)]
    pub web_cors_origin: String,
    /// No-op: promflow embeds its web UI; there is no asset directory to read.
    #[arg(
        long = "web.local-assets",
        default_value = "/usr/share/prometheus/web/",
        global = true
    )]
    pub web_local_assets: String,
    /// No-op: promflow serves no user asset directory (/user).
    #[arg(long = "web.user-assets", global = true)]
    pub web_user_assets: Option<String>,
    /// No-op: promflow has no console templates (/consoles).
    #[arg(
        long = "web.console.templates",
        default_value = "consoles",
        global = true
    )]
    pub web_console_templates: String,
    /// No-op: promflow has no console templates, so no console libraries.
    #[arg(
        long = "web.console.libraries",
        default_value = "console_libraries",
        global = true
    )]
    pub web_console_libraries: String,
    /// No-op: promflow's pages carry their own title.
    #[arg(
        long = "web.page-title",
        default_value = "Prometheus Time Series Collection and Processing Server",
        global = true
    )]
    pub web_page_title: String,
    /// The remote write messages `/api/v1/write` accepts (repeat the flag for several):
    /// prometheus.WriteRequest (1.0), io.prometheus.write.v2.Request (2.0). Others are
    /// answered 415.
    #[arg(
        long = "web.remote-write-receiver.accepted-protobuf-messages",
        default_values = ["prometheus.WriteRequest", "io.prometheus.write.v2.Request"],
        value_parser = ["prometheus.WriteRequest", "io.prometheus.write.v2.Request"],
        global = true
    )]
    pub web_remote_write_messages: Vec<String>,
    /// No-op: promflow has no notifications endpoint to subscribe to.
    #[arg(
        long = "web.max-notifications-subscribers",
        default_value = "16",
        global = true
    )]
    pub web_max_notifications_subscribers: usize,
    /// Accept OTLP metrics on /api/v1/otlp/v1/metrics (translated as the config's
    /// `otlp:` says).
    #[arg(long = "web.enable-otlp-receiver", global = true)]
    pub web_enable_otlp_receiver: bool,
    /// [DEPRECATED] How long to retain samples in storage; --storage.tsdb.retention.time
    /// overrides it.
    #[arg(long = "storage.tsdb.retention", value_parser = duration_arg, global = true)]
    pub storage_tsdb_retention: Option<Duration>,
    /// No-op: promflow creates no lock file in its data directory.
    #[arg(long = "storage.tsdb.use-lockfile", global = true)]
    pub storage_tsdb_use_lockfile: bool,
    /// No-op: promflow creates no lock file in its data directory.
    #[arg(long = "storage.tsdb.no-lockfile", global = true)]
    pub storage_tsdb_no_lockfile: bool,
    /// No-op: promflow's head has no memory-mapped chunk queue.
    #[arg(
        long = "storage.tsdb.head-chunks-write-queue-size",
        default_value = "0",
        global = true
    )]
    pub storage_tsdb_head_chunks_write_queue_size: i64,
    /// No-op: promflow does not compact blocks into longer ones.
    #[arg(long = "storage.tsdb.max-block-duration", value_parser = duration_arg, global = true)]
    pub storage_tsdb_max_block_duration: Option<Duration>,
    /// No-op: promflow writes Arrow IPC blocks, not Prometheus's chunk segments.
    #[arg(long = "storage.tsdb.max-block-chunk-segment-size", value_parser = bytes_arg, global = true)]
    pub storage_tsdb_max_block_chunk_segment_size: Option<u64>,
    /// No-op: promflow's WAL segments have their own size.
    #[arg(long = "storage.tsdb.wal-segment-size", value_parser = bytes_arg, global = true)]
    pub storage_tsdb_wal_segment_size: Option<u64>,
    /// No-op: promflow's WAL records have their own encoding.
    #[arg(long = "storage.tsdb.wal-compression", global = true)]
    pub storage_tsdb_wal_compression: bool,
    /// No-op: promflow's WAL records have their own encoding.
    #[arg(long = "storage.tsdb.wal-compression-type", global = true)]
    pub storage_tsdb_wal_compression_type: Option<String>,
    /// No-op: promflow never creates overlapping blocks.
    #[arg(long = "storage.tsdb.allow-overlapping-blocks", global = true)]
    pub storage_tsdb_allow_overlapping_blocks: bool,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(
        long = "storage.agent.path",
        default_value = "data-agent/",
        global = true
    )]
    pub storage_agent_path: String,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.wal-compression", global = true)]
    pub storage_agent_wal_compression: bool,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.retention.min-time", value_parser = duration_arg, global = true)]
    pub storage_agent_retention_min_time: Option<Duration>,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.retention.max-time", value_parser = duration_arg, global = true)]
    pub storage_agent_retention_max_time: Option<Duration>,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.use-lockfile", global = true)]
    pub storage_agent_use_lockfile: bool,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.no-lockfile", global = true)]
    pub storage_agent_no_lockfile: bool,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.wal-truncate-frequency", value_parser = duration_arg, global = true)]
    pub storage_agent_wal_truncate_frequency: Option<Duration>,
    /// Refused: agent mode only; promflow has no agent mode.
    #[arg(long = "storage.agent.wal-segment-size", value_parser = bytes_arg, global = true)]
    pub storage_agent_wal_segment_size: Option<u64>,
    /// Refused: promflow has no agent mode (Prometheus 3's --agent).
    #[arg(long = "agent", global = true)]
    pub agent: bool,
    /// No-op: promflow does not wait for remote-write queues to drain at shutdown or
    /// reload; what is still queued is dropped.
    #[arg(long = "storage.remote.flush-deadline", default_value = "1m", value_parser = duration_arg, global = true)]
    pub storage_remote_flush_deadline: Duration,
    /// Maximum overall number of samples to return via the remote read interface, in a
    /// single query. 0 means no limit.
    #[arg(long = "storage.remote.read-sample-limit", default_value = "5e7", value_parser = count_arg, global = true)]
    pub storage_remote_read_sample_limit: u64,
    /// Maximum number of concurrent remote read calls. 0 means no limit.
    #[arg(
        long = "storage.remote.read-concurrent-limit",
        default_value = "10",
        global = true
    )]
    pub storage_remote_read_concurrent_limit: usize,
    /// No-op: promflow answers remote read with SAMPLES only, never streamed frames.
    #[arg(
        long = "storage.remote.read-max-bytes-in-frame",
        default_value = "1048576",
        global = true
    )]
    pub storage_remote_read_max_bytes_in_frame: u64,
    /// Minimum amount of time to wait before resending an alert to Alertmanager.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = duration_arg, global = true)]
    pub rules_alert_resend_delay: Duration,
    /// No-op: promflow evaluates each group on its own; there is no concurrent rule
    /// evaluation to limit.
    #[arg(
        long = "rules.max-concurrent-evals",
        default_value = "4",
        global = true
    )]
    pub rules_max_concurrent_evals: usize,
    /// The capacity of the queue for pending Alertmanager notifications.
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        default_value = "10000",
        global = true
    )]
    pub alertmanager_notification_queue_capacity: usize,
    /// No-op: deprecated in Prometheus; each alertmanagers entry's `timeout` applies.
    #[arg(long = "alertmanager.timeout", value_parser = duration_arg, global = true)]
    pub alertmanager_timeout: Option<Duration>,
    /// No-op: promflow does not drain the notification queue at shutdown.
    #[arg(
        long = "alertmanager.drain-notification-queue-on-shutdown",
        global = true
    )]
    pub alertmanager_drain_notification_queue_on_shutdown: bool,
    /// Maximum number of queries (/api/v1/query, /api/v1/query_range) executed
    /// concurrently; more wait. 0: no limit.
    #[arg(long = "query.max-concurrency", default_value = "20", global = true)]
    pub query_max_concurrency: usize,
    /// Maximum number of samples a single query can load into memory. Note that
    /// queries will fail if they try to load more samples than this into memory, so
    /// this also limits the number of samples a query can return.
    #[arg(long = "query.max-samples", default_value = "50000000", global = true)]
    pub query_max_samples: u64,
    /// No-op: promflow keeps the timestamps a scrape gives its samples as they are.
    #[arg(long = "scrape.adjust-timestamps", global = true)]
    pub scrape_adjust_timestamps: bool,
    /// No-op: promflow keeps the timestamps a scrape gives its samples as they are.
    #[arg(long = "scrape.timestamp-tolerance", value_parser = duration_arg, global = true)]
    pub scrape_timestamp_tolerance: Option<Duration>,
    /// No-op: promflow applies discovered targets after 100 ms of quiet.
    #[arg(long = "scrape.discovery-reload-interval", value_parser = duration_arg, global = true)]
    pub scrape_discovery_reload_interval: Option<Duration>,
    /// No-op: promflow accepts only legacy (non-UTF-8) metric names, so nothing is escaped.
    #[arg(long = "scrape.name-escaping-scheme", global = true)]
    pub scrape_name_escaping_scheme: Option<String>,
    /// No-op: a Go runtime setting; promflow is not a Go program.
    #[arg(long = "auto-gomemlimit.ratio", global = true)]
    pub auto_gomemlimit_ratio: Option<f64>,
    /// How often the config file is checked for changes and reloaded, with
    /// --enable-feature=auto-reload-config (Prometheus 3).
    #[arg(long = "config.auto-reload-interval", default_value = "30s", value_parser = duration_arg, global = true)]
    pub config_auto_reload_interval: Duration,
    /// Output format of log messages. One of: [logfmt, json]
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"], global = true)]
    pub log_format: String,
    /// Comma separated feature names to enable (Prometheus's list; see README for what
    /// each does in promflow): remote-write-receiver, otlp-write-receiver,
    /// native-histograms, exemplar-storage, created-timestamp-zero-ingestion and
    /// auto-reload-config are implemented; promql-at-modifier,
    /// promql-negative-offset and promql-experimental-functions are always on; agent,
    /// otlp-deltatocumulative, otlp-native-delta-ingestion, expand-external-labels, no-default-scrape-port,
    /// type-and-unit-labels and promql-delayed-name-removal are refused; the others
    /// are no-ops.
    #[arg(long = "enable-feature", value_delimiter = ',', global = true)]
    pub enable_feature: Vec<String>,
}

/// Flags accepted and ignored (the help text says why).
pub const NO_OPS: &[&str] = &[
    "web.local-assets",
    "web.user-assets",
    "web.console.templates",
    "web.console.libraries",
    "web.page-title",
    "web.max-notifications-subscribers",
    "storage.tsdb.use-lockfile",
    "storage.tsdb.no-lockfile",
    "storage.tsdb.head-chunks-write-queue-size",
    "storage.tsdb.max-block-duration",
    "storage.tsdb.max-block-chunk-segment-size",
    "storage.tsdb.wal-segment-size",
    "storage.tsdb.wal-compression",
    "storage.tsdb.wal-compression-type",
    "storage.tsdb.allow-overlapping-blocks",
    "storage.remote.flush-deadline",
    "storage.remote.read-max-bytes-in-frame",
    "rules.max-concurrent-evals",
    "alertmanager.timeout",
    "alertmanager.drain-notification-queue-on-shutdown",
    "scrape.adjust-timestamps",
    "scrape.timestamp-tolerance",
    "scrape.discovery-reload-interval",
    "scrape.name-escaping-scheme",
    "auto-gomemlimit.ratio",
];

/// Flags the server refuses to start with (the help text says why).
pub const REFUSED: &[&str] = &[
    "storage.agent.path",
    "storage.agent.wal-compression",
    "storage.agent.retention.min-time",
    "storage.agent.retention.max-time",
    "storage.agent.use-lockfile",
    "storage.agent.no-lockfile",
    "storage.agent.wal-truncate-frequency",
    "storage.agent.wal-segment-size",
    "agent",
];

/// What promflow does with an `--enable-feature` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Implemented with Prometheus's meaning.
    Implemented,
    /// Always on in promflow; the value changes nothing.
    AlwaysOn,
    /// Accepted and ignored, with the reason.
    NoOp(&'static str),
    /// The server does not start, with the reason.
    Refused(&'static str),
    /// Not a feature Prometheus knows: logged and ignored, as Prometheus does.
    Unknown,
}

/// Sorts an `--enable-feature` value (Prometheus 2.42's and 3.x's names).
pub fn feature(name: &str) -> Feature {
    use Feature::*;
    match name {
        "remote-write-receiver"
        | "auto-reload-config"
        | "otlp-write-receiver"
        | "native-histograms"
        | "exemplar-storage"
        | "created-timestamp-zero-ingestion" => Implemented,
        "promql-at-modifier" | "promql-negative-offset" | "promql-experimental-functions" => {
            AlwaysOn
        }
        "agent" => Refused("promflow has no agent mode"),
        "otlp-deltatocumulative" | "otlp-native-delta-ingestion" => Refused(
            "promflow refuses OTLP delta temporality, as Prometheus does without this feature",
        ),
        "expand-external-labels" => {
            Refused("promflow does not expand environment variables in external_labels")
        }
        "no-default-scrape-port" => Refused(
            "promflow always adds the scheme's default port to a target address without one",
        ),
        "type-and-unit-labels" => Refused("promflow adds no __type__ or __unit__ labels"),
        "promql-delayed-name-removal" => Refused("promflow drops __name__ where Prometheus 2 does"),
        "memory-snapshot-on-shutdown" => NoOp("promflow replays its WAL at startup"),
        "promql-per-step-stats" => NoOp("promflow returns no query statistics"),
        "extra-scrape-metrics" => NoOp("promflow writes the five standard scrape series only"),
        "new-service-discovery-manager"
        | "concurrent-rule-eval"
        | "delayed-compaction"
        | "old-ui"
        | "metadata-wal-records"
        | "use-uncached-io" => NoOp("promflow has no such mechanism"),
        "auto-gomaxprocs" | "auto-gomemlimit" => {
            NoOp("a Go runtime setting; promflow is not a Go program")
        }
        _ => Unknown,
    }
}

/// What the server start learnt from the command line: log lines for no-ops and
/// unknown features, or the refusal.
pub struct Review {
    /// One line per no-op flag or feature given, to log at startup.
    pub notes: Vec<String>,
    /// Whether `--enable-feature=remote-write-receiver` was given.
    pub remote_write_receiver: bool,
    /// Whether `--enable-feature=auto-reload-config` was given.
    pub auto_reload_config: bool,
    /// Whether `--enable-feature=otlp-write-receiver` was given.
    pub otlp_write_receiver: bool,
    /// Whether `--enable-feature=exemplar-storage` was given.
    pub exemplar_storage: bool,
    /// Whether `--enable-feature=native-histograms` was given: `scrape_native_histograms`
    /// defaults to true (see `config::set_native_histograms_feature`).
    pub native_histograms: bool,
    /// Whether `--enable-feature=created-timestamp-zero-ingestion` was given: scrapes
    /// (and the remote write and OTLP receivers) write the zero sample of each start
    /// timestamp (see `ingest`), and `scrape_protocols` defaults to protobuf first
    /// (see `config::set_created_timestamp_feature`), as in Prometheus 3.x.
    pub created_timestamp_zero_ingestion: bool,
    /// `--enable-feature` values Prometheus does not know either; logged as a warning
    /// in Prometheus's words and ignored.
    pub unknown_features: Vec<String>,
}

/// The server does not start: flags or features given that promflow cannot honour.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to start, promflow cannot do what these flags ask:\n  {}",
    refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
)]
pub struct RefusedFlags {
    /// In the order they are checked: flags, then features.
    pub refused: Vec<Refused>,
}

/// One refused flag or feature.
#[derive(Debug)]
pub enum Refused {
    /// A flag (its long name) and its help text, which says why.
    Flag { long: &'static str, help: String },
    /// An `--enable-feature` value and why.
    Feature { name: String, why: &'static str },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Flag { long, help } => write!(f, "--{long}: {help}"),
            Refused::Feature { name, why } => write!(f, "--enable-feature={name}: {why}"),
        }
    }
}

impl PrometheusFlags {
    /// Checks the flags given on the command line (`matches`) for the server: the
    /// refused ones are an error naming each; no-ops become notes.
    pub fn review(
        &self,
        command: &clap::Command,
        matches: &clap::ArgMatches,
    ) -> Result<Review, RefusedFlags> {
        let given = |long: &str| -> bool {
            command
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .is_some_and(|a| {
                    matches.value_source(a.get_id().as_str())
                        == Some(clap::parser::ValueSource::CommandLine)
                })
        };
        let help = |long: &str| -> String {
            command
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        let mut refused = Vec::new();
        let mut notes = Vec::new();
        for long in REFUSED.iter().filter(|l| given(l)) {
            refused.push(Refused::Flag {
                long,
                help: help(long),
            });
        }
        for long in NO_OPS.iter().filter(|l| given(l)) {
            notes.push(format!(
                "--{long} is accepted for Prometheus compatibility and ignored. {}",
                help(long)
            ));
        }
        let mut review = Review {
            notes: Vec::new(),
            remote_write_receiver: false,
            auto_reload_config: false,
            otlp_write_receiver: false,
            native_histograms: false,
            exemplar_storage: false,
            created_timestamp_zero_ingestion: false,
            unknown_features: Vec::new(),
        };
        for name in self
            .enable_feature
            .iter()
            .map(|f| f.trim())
            .filter(|f| !f.is_empty())
        {
            match feature(name) {
                Feature::Implemented => match name {
                    "remote-write-receiver" => review.remote_write_receiver = true,
                    "otlp-write-receiver" => review.otlp_write_receiver = true,
                    "native-histograms" => review.native_histograms = true,
                    "exemplar-storage" => review.exemplar_storage = true,
                    "created-timestamp-zero-ingestion" => {
                        review.created_timestamp_zero_ingestion = true
                    }
                    _ => review.auto_reload_config = true,
                },
                Feature::AlwaysOn => {
                    notes.push(format!("--enable-feature={name}: always on in promflow"))
                }
                Feature::NoOp(why) => notes.push(format!(
                    "--enable-feature={name} is accepted and ignored: {why}"
                )),
                Feature::Refused(why) => refused.push(Refused::Feature {
                    name: name.to_string(),
                    why,
                }),
                Feature::Unknown => review.unknown_features.push(name.to_string()),
            }
        }
        if !refused.is_empty() {
            return Err(RefusedFlags { refused });
        }
        review.notes = notes;
        Ok(review)
    }

    /// Every flag of this struct with its value as given or defaulted (raw text), for
    /// `/api/v1/status/flags`.
    pub fn status_entries(
        command: &clap::Command,
        matches: &clap::ArgMatches,
    ) -> Vec<(String, String)> {
        let mine = <PrometheusFlags as clap::Args>::augment_args(clap::Command::new("flags"));
        mine.get_arguments()
            .filter_map(|a| {
                let long = a.get_long()?;
                let id = command
                    .get_arguments()
                    .find(|c| c.get_long() == Some(long))?
                    .get_id();
                let value = match matches.get_raw(id.as_str()) {
                    Some(values) => values
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(","),
                    None => match a.get_action() {
                        clap::ArgAction::SetTrue => "false".to_string(),
                        _ => String::new(),
                    },
                };
                Some((long.to_string(), value))
            })
            .collect()
    }
}

/// Kingpin's `--no-flag` for a boolean `--flag`: returns the arguments with every
/// `--no-NAME` (where `--NAME` is a boolean of `command`) applied — the last of
/// `--NAME` / `--no-NAME` wins — so clap sees `--NAME` once or not at all.
pub fn kingpin_negations(args: Vec<OsString>, command: &clap::Command) -> Vec<OsString> {
    let is_bool = |name: &str| {
        command.get_arguments().any(|a| {
            a.get_long() == Some(name) && matches!(a.get_action(), clap::ArgAction::SetTrue)
        })
    };
    // The boolean each argument sets: (name, value).
    let setting = |arg: &OsString| -> Option<(String, bool)> {
        let text = arg.to_str()?;
        let name = text.strip_prefix("--")?;
        if let Some(negated) = name.strip_prefix("no-") {
            if is_bool(negated) {
                return Some((negated.to_string(), false));
            }
        }
        is_bool(name).then(|| (name.to_string(), true))
    };
    let mut last: std::collections::HashMap<String, (usize, bool)> = Default::default();
    let mut end = args.len();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            end = i;
            break;
        }
        if let Some((name, value)) = setting(arg) {
            last.insert(name, (i, value));
        }
    }
    args.into_iter()
        .enumerate()
        .filter_map(|(i, arg)| {
            if i >= end {
                return Some(arg);
            }
            match setting(&arg) {
                Some((name, _)) => match last.get(&name) {
                    Some(&(at, true)) if at == i => Some(OsString::from(format!("--{name}"))),
                    _ => None,
                },
                None => Some(arg),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: PrometheusFlags,
        #[arg(long = "web.enable-lifecycle")]
        lifecycle: bool,
    }

    fn parse(args: &[&str]) -> (Cli, clap::ArgMatches) {
        let args = kingpin_negations(
            std::iter::once("promflow")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect(),
            &Cli::command(),
        );
        let matches = Cli::command().try_get_matches_from(args).expect("parses");
        (
            <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap(),
            matches,
        )
    }

    #[test]
    fn the_last_of_flag_and_no_flag_wins() {
        assert!(parse(&["--web.enable-lifecycle"]).0.lifecycle);
        assert!(
            !parse(&["--web.enable-lifecycle", "--no-web.enable-lifecycle"])
                .0
                .lifecycle
        );
        assert!(
            parse(&["--no-web.enable-lifecycle", "--web.enable-lifecycle"])
                .0
                .lifecycle
        );
        assert!(!parse(&["--no-web.enable-lifecycle"]).0.lifecycle);
    }

    #[test]
    fn both_value_syntaxes_and_feature_lists() {
        let (cli, _) = parse(&[
            "--web.read-timeout",
            "30s",
            "--enable-feature=exemplar-storage,remote-write-receiver",
        ]);
        assert_eq!(cli.flags.web_read_timeout, Duration::from_secs(30));
        assert_eq!(
            cli.flags.enable_feature,
            ["exemplar-storage", "remote-write-receiver"]
        );
        assert_eq!(cli.flags.storage_remote_read_sample_limit, 50_000_000);
    }

    #[test]
    fn refused_flags_and_features_are_named() {
        let (cli, m) = parse(&[
            "--storage.agent.path=/x",
            "--enable-feature=agent,exemplar-storage,bogus",
        ]);
        let err = cli
            .flags
            .review(&Cli::command(), &m)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("--storage.agent.path"), "{err}");
        assert!(err.contains("--enable-feature=agent"), "{err}");
        let (cli, m) = parse(&[
            "--web.console.templates=/c",
            "--enable-feature=bogus,remote-write-receiver",
        ]);
        let review = cli.flags.review(&Cli::command(), &m).expect("accepted");
        assert!(review.remote_write_receiver);
        assert_eq!(review.notes.len(), 1, "{:?}", review.notes);
        assert!(review.notes[0].contains("--web.console.templates"));
        assert_eq!(review.unknown_features, ["bogus"]);
    }

    #[test]
    fn every_listed_flag_exists() {
        let command = Cli::command();
        for long in NO_OPS.iter().chain(REFUSED) {
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(long)),
                "{long}"
            );
        }
    }
}
