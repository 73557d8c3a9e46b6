//! The `promflow` command: with no subcommand it runs the server; `check config`
//! validates configuration files (and, with `--cluster.hostfile`, the cluster flags
//! and hostfile), `check rules` rule files, `test rules` runs
//! promtool-format rule unit tests, `test promql` runs PromQL test scripts. Flags are spelled like Prometheus's so existing
//! service definitions work unchanged: promflow's own are here, the rest of
//! Prometheus's command line (implemented, no-op or refused) is `promflow::flags`, and
//! booleans take kingpin's `--no-flag` too.

// No unsafe code anywhere in promflow: the compiler holds us to it.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Subcommand};
use promflow::config::{
    format_base2_bytes, format_duration, parse_base2_bytes, parse_duration, Config, DurationError,
    SizeError,
};
use promflow::rules::options::{EvaluationMode, EvaluationPolicy, ForRestore};
use promflow::service::{AlertingFlags, Service, ServiceOptions};
use promflow::storage::WalFsync;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Parser, Debug)]
#[command(
    name = "promflow",
    version,
    about = "A Prometheus-compatible monitoring engine on timely dataflow"
)]
struct Cli {
    /// Prometheus configuration file. Without it, promflow runs its built-in default
    /// config (scrapes itself and node_exporter on localhost:9100).
    #[arg(long = "config.file", global = true)]
    config_file: Option<PathBuf>,
    /// Address to listen on for the API, UI and federation: HOST:PORT, or :PORT for
    /// every interface, as Prometheus takes it.
    #[arg(
        long = "web.listen-address",
        default_value = "0.0.0.0:9090",
        value_parser = listen_address_arg,
        global = true
    )]
    listen_address: SocketAddr,
    /// Base path for storage.
    #[arg(long = "storage.tsdb.path", default_value = "data/", global = true)]
    storage_path: PathBuf,
    /// When the write-ahead log is fsynced: `batch` (after every scrape's batch, before
    /// it is acknowledged) or a duration (by a background thread at that interval).
    /// Either way a batch is written to the log before it is acknowledged, which
    /// survives a killed process; fsync is what survives a power loss.
    #[arg(long = "storage.tsdb.wal-fsync", default_value = "1s", value_parser = wal_fsync_arg, global = true)]
    wal_fsync: WalFsync,
    /// The time range of a block cut from the in-memory head.
    #[arg(long = "storage.tsdb.min-block-duration", default_value = "2h", value_parser = duration_arg, global = true)]
    min_block_duration: Duration,
    /// How long to keep blocks, counted back from the newest sample.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d", value_parser = duration_arg, global = true)]
    retention: Duration,
    /// The most bytes storage may use (WAL and blocks; units as in Prometheus: 512MB,
    /// 10GB, powers of 1024). The oldest blocks go first. 0 means no limit.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0B", value_parser = bytes_arg, global = true)]
    retention_size: u64,
    /// How far back PromQL and federation look for a series' latest sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = duration_arg, global = true)]
    lookback_delta: Duration,
    /// Accept samples pushed with remote write on /api/v1/write.
    #[arg(long = "web.enable-remote-write-receiver", global = true)]
    enable_remote_write_receiver: bool,
    /// Web configuration file (Prometheus exporter-toolkit format): `basic_auth_users`
    /// with bcrypt hashes protect every endpoint; `tls_server_config` serves https
    /// (optionally requiring client certificates). Re-read when it changes.
    #[arg(long = "web.config.file", global = true)]
    web_config_file: Option<PathBuf>,
    /// Accept rule group changes over HTTP (PUT/DELETE /api/v1/rules/{namespace}/{group}).
    #[arg(long = "web.enable-rules-api", global = true)]
    enable_rules_api: bool,
    /// Directory of wall-display dashboards (`*.yml`), shown at /dashboard/<name>.
    #[arg(long = "web.dashboards-dir", global = true)]
    dashboards_dir: Option<PathBuf>,
    /// Accept federation view changes over HTTP (PUT/DELETE /api/v1/federation/{name}).
    #[arg(long = "web.enable-federation-views-api", global = true)]
    enable_federation_views_api: bool,
    /// Enable the admin endpoints (/api/v1/admin/tsdb/{delete_series,clean_tombstones,snapshot}).
    #[arg(long = "web.enable-admin-api", global = true)]
    enable_admin_api: bool,
    /// Enable shutdown and reload via HTTP request (POST or PUT /-/quit, /-/reload);
    /// without it both answer 403 like Prometheus. SIGHUP reloads either way.
    #[arg(long = "web.enable-lifecycle", global = true)]
    enable_lifecycle: bool,
    /// Maximum time a query may take before it is aborted.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = duration_arg, global = true)]
    query_timeout: Duration,
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    /// Most consumers of /api/v1/stream connected at once; one more is refused with
    /// 503 (0: no limit).
    #[arg(
        long = "web.stream.max-consumers",
        default_value = "1000",
        global = true
    )]
    stream_max_consumers: usize,
    /// DNS server (IP:PORT) for `dns_sd_configs`, instead of the system's resolver
    /// configuration (/etc/resolv.conf).
    #[arg(long = "discovery.dns.nameserver", global = true)]
    dns_nameserver: Option<SocketAddr>,
    /// Alertmanager configuration file (Alertmanager 0.25 format: `route`,
    /// `receivers` with Slack, Pushover and webhook configs, `inhibit_rules`,
    /// `templates`). With it, promflow notifies receivers itself and accepts alerts
    /// from other servers on /api/v2/alerts.
    #[arg(long = "alertmanager.config.file", global = true)]
    alertmanager_config_file: Option<PathBuf>,
    /// Timely worker threads (default: the number of cores).
    #[arg(long = "workers", global = true)]
    workers: Option<usize>,
    /// Processes of the promflow cluster (see README, "Clusters").
    #[arg(long = "cluster.processes", default_value_t = 1, global = true)]
    cluster_processes: usize,
    /// This process's index in the cluster, from 0.
    #[arg(long = "cluster.process-id", default_value_t = 0, global = true)]
    cluster_process_id: usize,
    /// The cluster's hostfile: timely's, one `host:port` line per process (its
    /// dataflow exchange), each optionally followed by the process's HTTP base URL.
    #[arg(long = "cluster.hostfile", global = true)]
    cluster_hostfile: Option<PathBuf>,
    /// HTTP client settings for the requests the processes make to each other (a
    /// file holding what a Prometheus `http_config` holds: `basic_auth`,
    /// `authorization`, `tls_config`, ...), for processes whose `--web.config.file`
    /// asks for credentials or serves TLS.
    #[arg(long = "cluster.http-config", global = true)]
    cluster_http_config: Option<PathBuf>,
    /// The URL under which promflow is reached (alerts' generatorURL, templates'
    /// $externalURL). Default: http://<hostname>:<listen port>.
    #[arg(long = "web.external-url", global = true)]
    external_url: Option<String>,
    /// When rules are evaluated: `interval` (at each group's interval, like
    /// Prometheus) or `on-arrival` (whenever a sample a rule reads arrives or expires,
    /// with exact `for` timers).
    #[arg(long = "rules.evaluation", default_value = "interval", global = true)]
    rules_evaluation: EvaluationMode,
    /// Groups whose name matches this regex (anchored) are evaluated on arrival, the
    /// others as `--rules.evaluation` says.
    #[arg(long = "rules.on-arrival-groups", value_parser = EvaluationPolicy::parse_groups, global = true)]
    on_arrival_groups: Option<regex::Regex>,
    /// Longest downtime after which alerts' `for` (and keep_firing_for) state is still restored.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h", value_parser = duration_arg, global = true)]
    for_outage_tolerance: Duration,
    /// Least time between a restart and the firing of a restored alert whose `for` is
    /// at least this long.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m", value_parser = duration_arg, global = true)]
    for_grace_period: Duration,
    /// How a pending alert's activeAt comes back after a restart: `keep` (as it was;
    /// the downtime counts towards `for`) or `prometheus` (Prometheus's restore: the
    /// downtime does not count, only for `for` >= the grace period).
    #[arg(
        long = "rules.alert.for-restore",
        default_value = "keep",
        global = true
    )]
    for_restore: ForRestore,
    /// The rest of Prometheus's flags.
    #[command(flatten)]
    prometheus: promflow::flags::PrometheusFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate configuration.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
    /// Run unit tests.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
}

#[derive(Subcommand, Debug)]
enum TestCommand {
    /// Run promtool-format rule unit tests.
    Rules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run Prometheus's PromQL test scripts (`*.test`) in both modes: ad hoc, and as
    /// maintained rules fed the samples (native histograms included) as a stream.
    Promql {
        /// Print every failing eval with its reason.
        #[arg(long)]
        verbose: bool,
        /// Script files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CheckCommand {
    /// Validate Prometheus configuration files; lists every problem with file and line.
    Config {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate rule files like `promtool check rules`; lists every problem.
    Rules {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Go's listen address: `:9090` is every interface; a host name is resolved.
// A String error: clap prints it as the flag's message at the binary's edge.
fn listen_address_arg(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let address = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    address
        .to_socket_addrs()
        .map_err(|e| format!("invalid listen address {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn duration_arg(s: &str) -> Result<Duration, DurationError> {
    parse_duration(s)
}

fn bytes_arg(s: &str) -> Result<u64, SizeError> {
    parse_base2_bytes(s).map(|b| b.max(0) as u64)
}

fn wal_fsync_arg(s: &str) -> Result<WalFsync, DurationError> {
    match s {
        "batch" => Ok(WalFsync::Batch),
        _ => match parse_duration(s)? {
            d if d.is_zero() => Ok(WalFsync::Batch),
            d => Ok(WalFsync::Every(d)),
        },
    }
}

fn main() -> ExitCode {
    let command = Cli::command();
    let args = promflow::flags::kingpin_negations(std::env::args_os().collect(), &command);
    let matches = command.clone().get_matches_from(args);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command.take() {
        Some(Command::Check {
            what: CheckCommand::Config { files },
        }) => check_config(
            &files,
            cli.alertmanager_config_file.as_deref(),
            ClusterFlags {
                processes: cli.cluster_processes,
                process_id: cli.cluster_process_id,
                hostfile: cli.cluster_hostfile.as_deref(),
                http_config: cli.cluster_http_config.as_deref(),
            },
        ),
        Some(Command::Check {
            what: CheckCommand::Rules { files },
        }) => check_rules(&files),
        Some(Command::Test {
            what: TestCommand::Rules { files },
        }) => test_rules(&files),
        Some(Command::Test {
            what: TestCommand::Promql { verbose, files },
        }) => test_promql(&files, verbose),
        None => match run_server(cli, &command, &matches) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("promflow: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The `--cluster.*` flags as given.
struct ClusterFlags<'a> {
    processes: usize,
    process_id: usize,
    hostfile: Option<&'a std::path::Path>,
    http_config: Option<&'a std::path::Path>,
}

/// Checks Prometheus config files and, with `--alertmanager.config.file`, the
/// built-in notifier's Alertmanager config; with `--cluster.hostfile`, the cluster
/// flags together (the hostfile read by the server's own parser); with
/// `--cluster.http-config`, that file.
fn check_config(
    files: &[PathBuf],
    alertmanager_config: Option<&std::path::Path>,
    cluster: ClusterFlags,
) -> ExitCode {
    let mut failed = false;
    if let Some(hostfile) = cluster.hostfile {
        println!("Checking {}", hostfile.display());
        match promflow::cluster::Cluster::from_flags(
            cluster.processes,
            cluster.process_id,
            Some(hostfile),
        ) {
            Ok(c) => println!(
                "  SUCCESS: {} processes, this is process {} (exchange {})",
                c.processes.len(),
                c.process_id,
                c.processes[c.process_id].exchange
            ),
            Err(e) => {
                println!("  FAILED: {e}");
                failed = true;
            }
        }
    }
    if let Some(file) = cluster.http_config {
        failed |= !report_check(
            file,
            promflow::config::HttpClientConfig::load_file(file)
                .map(|_| "HTTP client settings for the cluster's processes".to_string()),
        );
    }
    if let Some(file) = alertmanager_config {
        failed |= !report_check(
            file,
            promflow::alertmanager::config::NotifyConfig::load_file(file).map(|config| {
                format!(
                    "{} receivers, {} inhibit rules found",
                    config.receivers.len(),
                    config.inhibit_rules.len()
                )
            }),
        );
    }
    for file in files {
        failed |= !report_check(
            file,
            Config::load_file(file)
                .and_then(|config| static_targets_check(config, file))
                .and_then(promflow::service::with_rule_files)
                .map(|(config, _rules)| {
                    format!(
                        "{} scrape configs, {} rule files found",
                        config.scrape_configs.len(),
                        config.rule_files.len()
                    )
                }),
        );
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Creates the targets of every job's `static_configs` as the server would (after
/// `relabel_configs`), like `promtool check config`: each target that cannot be
/// created is a problem, in Prometheus's words.
fn static_targets_check(
    config: Config,
    file: &std::path::Path,
) -> Result<Config, promflow::config::ConfigError> {
    let mut problems = Vec::new();
    for (index, scrape_config) in config.scrape_configs.iter().enumerate() {
        let groups =
            promflow::discovery::static_sd::groups(&scrape_config.sd_configs.static_configs);
        let resolved =
            promflow::scrape::target::resolve(&std::sync::Arc::new(scrape_config.clone()), &groups);
        problems.extend(
            resolved
                .failures
                .into_iter()
                .map(|message| promflow::config::Problem {
                    file: file.display().to_string(),
                    line: None,
                    field: format!("scrape_configs[{index}]"),
                    message,
                }),
        );
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(promflow::config::ConfigError { problems })
    }
}

/// Prints one file's check result like promtool; returns whether it passed.
fn report_check(
    file: &std::path::Path,
    result: Result<String, promflow::config::ConfigError>,
) -> bool {
    println!("Checking {}", file.display());
    match result {
        Ok(summary) => {
            println!("  SUCCESS: {summary}");
            true
        }
        Err(e) => {
            println!("  FAILED: {} problem(s):", e.problems.len());
            for problem in &e.problems {
                println!("    {problem}");
            }
            false
        }
    }
}

fn check_rules(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        println!("Checking {}", file.display());
        match promflow::rules::file::load_file(file) {
            Ok(groups) => {
                let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {rules} rules found\n");
            }
            Err(problems) => {
                failed = true;
                eprintln!("  FAILED:");
                for problem in &problems {
                    eprintln!("{problem}");
                }
                eprintln!();
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test_rules(files: &[PathBuf]) -> ExitCode {
    use promflow::rules::unittest::{run_file, Outcome};
    let mut failed = false;
    for file in files {
        println!("Unit Testing:  {}", file.display());
        match run_file(file) {
            Ok(outcomes) => {
                let bad: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
                if bad.is_empty() {
                    println!("  SUCCESS\n");
                } else {
                    failed = true;
                    eprintln!("  FAILED:");
                    for o in bad {
                        eprintln!("    {o:?}");
                    }
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("  FAILED:\n    {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test_promql(files: &[PathBuf], verbose: bool) -> ExitCode {
    use dataflows::promql::conformance::{run_script, Verdict};
    let mut failed = false;
    println!(
        "{:<32} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "file", "pass(a)", "fail(a)", "pass(b)", "fail(b)", "skip(b)"
    );
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let report = match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                // Every eval in both modes (native histograms included).
                run_script(&text, &Default::default()).map_err(|e| e.to_string())
            }) {
            Ok(report) => report,
            Err(e) => {
                println!("{}: {e}", file.display());
                failed = true;
                continue;
            }
        };
        let (a, b) = (report.adhoc(), report.maintained());
        println!(
            "{name:<32} {:>7} {:>7} {:>7} {:>7} {:>7}",
            a.pass, a.fail, b.pass, b.fail, b.skipped
        );
        failed |= a.fail + b.fail > 0;
        if verbose {
            for o in &report.outcomes {
                for (mode, verdict) in [("ad hoc", &o.adhoc), ("maintained", &o.maintained)] {
                    if let Verdict::Fail(reason) = verdict {
                        println!("  FAIL ({mode}) line {}: {}\n    {reason}", o.line, o.expr);
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_server(cli: Cli, command: &clap::Command, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let log_format = cli
        .prometheus
        .log_format
        .parse()
        .map_err(anyhow::Error::msg)?;
    promflow::logging::init(&cli.log_level, log_format).map_err(anyhow::Error::msg)?;
    let review = cli
        .prometheus
        .review(command, matches)
        .map_err(anyhow::Error::msg)?;
    promflow::config::set_native_histograms_feature(review.native_histograms);
    promflow::config::set_created_timestamp_feature(review.created_timestamp_zero_ingestion);
    for note in &review.notes {
        tracing::info!("{note}");
    }
    for option in &review.unknown_features {
        tracing::warn!(option = %option, "Unknown option for --enable-feature");
    }
    // The deprecated --storage.tsdb.retention counts unless retention.time is given.
    let retention = match (
        cli.prometheus.storage_tsdb_retention,
        matches.value_source("retention"),
    ) {
        (Some(old), Some(clap::parser::ValueSource::DefaultValue)) => {
            tracing::warn!(
                "--storage.tsdb.retention is deprecated; use --storage.tsdb.retention.time"
            );
            old
        }
        _ => cli.retention,
    };
    let cors_origin = promflow::api::cors::origin_regex(&cli.prometheus.web_cors_origin)
        .with_context(|| {
            format!(
                "invalid --web.cors.origin {:?}",
                cli.prometheus.web_cors_origin
            )
        })?;
    let route_prefix = promflow::api::server::route_prefix(
        cli.prometheus.web_route_prefix.as_deref(),
        cli.external_url.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let enable_remote_write_receiver =
        cli.enable_remote_write_receiver || review.remote_write_receiver;
    let enable_otlp_receiver =
        cli.prometheus.web_enable_otlp_receiver || review.otlp_write_receiver;
    let remote_write_messages: Vec<promflow::config::ProtobufMessage> = cli
        .prometheus
        .web_remote_write_messages
        .iter()
        .filter_map(|name| promflow::config::ProtobufMessage::from_name(name))
        .collect();
    let cluster = promflow::cluster::Cluster::from_flags(
        cli.cluster_processes,
        cli.cluster_process_id,
        cli.cluster_hostfile.as_deref(),
    )?;
    let cluster_http = match &cli.cluster_http_config {
        Some(path) => promflow::config::HttpClientConfig::load_file(path)
            .map_err(|e| anyhow::anyhow!("--cluster.http-config: {e}"))?,
        None => Default::default(),
    };
    if cluster.is_multi() {
        promflow::cluster::exit_when_a_process_is_lost();
    }
    let workers = cli.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let evaluation = EvaluationPolicy {
        default: cli.rules_evaluation,
        on_arrival_groups: cli.on_arrival_groups.clone(),
    };
    let flags: Vec<(String, String)> = vec![
        (
            "config.file".to_string(),
            cli.config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "web.listen-address".to_string(),
            cli.listen_address.to_string(),
        ),
        (
            "storage.tsdb.path".to_string(),
            cli.storage_path.display().to_string(),
        ),
        (
            "storage.tsdb.wal-fsync".to_string(),
            cli.wal_fsync.to_string(),
        ),
        (
            "storage.tsdb.min-block-duration".to_string(),
            format_duration(cli.min_block_duration),
        ),
        (
            "storage.tsdb.retention.time".to_string(),
            format_duration(retention),
        ),
        (
            "storage.tsdb.retention.size".to_string(),
            format_base2_bytes(cli.retention_size),
        ),
        (
            "query.lookback-delta".to_string(),
            format_duration(cli.lookback_delta),
        ),
        (
            "query.timeout".to_string(),
            format_duration(cli.query_timeout),
        ),
        ("log.level".to_string(), cli.log_level.clone()),
        ("workers".to_string(), workers.to_string()),
        (
            "cluster.processes".to_string(),
            cli.cluster_processes.to_string(),
        ),
        (
            "cluster.process-id".to_string(),
            cli.cluster_process_id.to_string(),
        ),
        (
            "cluster.hostfile".to_string(),
            cli.cluster_hostfile
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "cluster.http-config".to_string(),
            cli.cluster_http_config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "web.enable-remote-write-receiver".to_string(),
            enable_remote_write_receiver.to_string(),
        ),
        (
            "web.enable-otlp-receiver".to_string(),
            enable_otlp_receiver.to_string(),
        ),
        (
            "web.remote-write-receiver.accepted-protobuf-messages".to_string(),
            cli.prometheus.web_remote_write_messages.join(","),
        ),
        (
            "alertmanager.config.file".to_string(),
            cli.alertmanager_config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "web.config.file".to_string(),
            cli.web_config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "web.external-url".to_string(),
            cli.external_url.clone().unwrap_or_default(),
        ),
        (
            "rules.evaluation".to_string(),
            match cli.rules_evaluation {
                EvaluationMode::Interval => "interval",
                EvaluationMode::OnArrival => "on-arrival",
            }
            .to_string(),
        ),
        (
            "rules.on-arrival-groups".to_string(),
            evaluation.groups_pattern().unwrap_or_default().to_string(),
        ),
        (
            "rules.alert.for-outage-tolerance".to_string(),
            format_duration(cli.for_outage_tolerance),
        ),
        (
            "rules.alert.for-grace-period".to_string(),
            format_duration(cli.for_grace_period),
        ),
        (
            "rules.alert.for-restore".to_string(),
            match cli.for_restore {
                ForRestore::Keep => "keep",
                ForRestore::Prometheus => "prometheus",
            }
            .to_string(),
        ),
        (
            "web.enable-rules-api".to_string(),
            cli.enable_rules_api.to_string(),
        ),
        (
            "web.dashboards-dir".to_string(),
            cli.dashboards_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "web.enable-federation-views-api".to_string(),
            cli.enable_federation_views_api.to_string(),
        ),
        (
            "web.enable-admin-api".to_string(),
            cli.enable_admin_api.to_string(),
        ),
        (
            "web.enable-lifecycle".to_string(),
            cli.enable_lifecycle.to_string(),
        ),
    ]
    .into_iter()
    .chain(promflow::flags::PrometheusFlags::status_entries(
        command, matches,
    ))
    .collect();
    let options = ServiceOptions {
        flags,
        config_file: cli.config_file,
        listen_address: cli.listen_address,
        storage_path: cli.storage_path,
        wal_fsync: cli.wal_fsync,
        min_block_duration: cli.min_block_duration,
        retention,
        retention_size: cli.retention_size,
        lookback_delta: cli.lookback_delta,
        workers,
        cluster: std::sync::Arc::new(cluster),
        cluster_http,
        query_timeout: cli.query_timeout,
        enable_remote_write_receiver,
        remote_write_messages,
        enable_otlp_receiver,
        exemplar_storage: review.exemplar_storage,
        start_zero_ingestion: review.created_timestamp_zero_ingestion,
        enable_admin_api: cli.enable_admin_api,
        enable_lifecycle: cli.enable_lifecycle,
        cors_origin,
        query_max_concurrency: cli.prometheus.query_max_concurrency,
        query_max_samples: cli.prometheus.query_max_samples,
        remote_read_sample_limit: cli.prometheus.storage_remote_read_sample_limit,
        remote_read_concurrent_limit: cli.prometheus.storage_remote_read_concurrent_limit,
        notification_queue_capacity: cli.prometheus.alertmanager_notification_queue_capacity,
        dns_nameserver: cli.dns_nameserver,
        stream_max_consumers: cli.stream_max_consumers,
        alertmanager_config_file: cli.alertmanager_config_file,
        alerting: AlertingFlags {
            external_url: cli.external_url,
            evaluation,
            for_outage_tolerance: cli.for_outage_tolerance,
            for_grace_period: cli.for_grace_period,
            for_restore: cli.for_restore,
            resend_delay: cli.prometheus.rules_alert_resend_delay,
        },
        enable_rules_api: cli.enable_rules_api,
        dashboards_dir: cli.dashboards_dir,
        enable_federation_views_api: cli.enable_federation_views_api,
        web_config_file: cli.web_config_file,
    };
    let limits = promflow::api::server::ConnectionLimits {
        max_connections: cli.prometheus.web_max_connections,
        read_timeout: cli.prometheus.web_read_timeout,
    };
    let auto_reload_interval = cli.prometheus.config_auto_reload_interval;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen_address)
            .await
            .with_context(|| format!("listening on {}", options.listen_address))?;
        let service = Service::start(options).map_err(anyhow::Error::msg)?;
        tracing::info!(address = %service.options.listen_address, workers, "promflow is ready");
        spawn_sighup_reloader(service.clone());
        if review.auto_reload_config {
            spawn_config_watcher(service.clone(), auto_reload_interval);
        }
        let app = promflow::api::server::with_route_prefix(
            promflow::api::router(service.clone()),
            &route_prefix,
        );
        let quit = service.clone();
        // `tls_server_config` in `--web.config.file`: https, with the configuration in
        // force at each handshake (it follows changes of the files).
        let tls: Option<promflow::api::server::TlsConfigSource> = service
            .web_auth
            .clone()
            .filter(|auth| auth.server_tls().is_some())
            .map(|auth| {
                std::sync::Arc::new(move || auth.server_tls().expect("TLS stays on once started"))
                    as promflow::api::server::TlsConfigSource
            });
        promflow::api::server::serve(listener, app, limits, tls, async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = quit.quit_requested() => tracing::info!("termination requested over HTTP (/-/quit)"),
            }
        })
        .await;
        tracing::info!("shutting down");
        service.shutdown();
        Ok(())
    })
}

fn spawn_sighup_reloader(service: std::sync::Arc<Service>) {
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!(
                "cannot listen for SIGHUP; reload with POST /-/reload (--web.enable-lifecycle)"
            );
            return;
        };
        while hangups.recv().await.is_some() {
            let _ = service.reload().await;
        }
    });
}

/// `--enable-feature=auto-reload-config`: reloads when the config file's content
/// changed since the last look, every `every` (`--config.auto-reload-interval`).
fn spawn_config_watcher(service: std::sync::Arc<Service>, every: Duration) {
    let Some(path) = service.options.config_file.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        loop {
            tokio::time::sleep(every).await;
            let now = std::fs::read(&path).ok();
            if now != last {
                last = now;
                tracing::info!("the config file changed; reloading");
                let _ = service.reload().await;
            }
        }
    });
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
