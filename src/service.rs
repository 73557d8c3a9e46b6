//! The service runtime: owns the dataflow engine, storage, ingester and scrape loops,
//! and applies configurations (at start, on `/-/reload`, on SIGHUP).
//!
//! Contract of [`Service::reload`]: the new configuration is loaded and validated
//! completely before anything changes; a bad one is refused with every problem listed,
//! the old one keeps running, and `prometheus_config_last_reload_successful` drops to 0.
//!
//! Targets: the [`DiscoveryManager`] keeps each job's target groups; whenever they (or
//! the config) change, every job's groups are resolved (relabeled) and the union of
//! all jobs' targets is handed to [`ScrapeManager::apply`]. Discovery of scrape
//! configs that a reload leaves unchanged keeps running.

use crate::alertmanager::config::NotifyConfig;
use crate::alertmanager::sink::AlertFanOut;
use crate::alertmanager::BuiltinNotifier;
use crate::cluster::Cluster;
use crate::config::{Config, ConfigError, Problem, RemoteReadConfig, DEFAULT_CONFIG_YAML};
use crate::discovery::{DiscoveryContext, DiscoveryManager};
use crate::ingest::{now_ms, Ingester};
use crate::notifier::{Notifier, NotifierConfig};
use crate::remote::read::{fetch, selections, Fetched};
use crate::rules::file::RuleGroup;
use crate::rules::manager::RuleManager;
use crate::rules::options::{EvaluationPolicy, ForRestore, ManagerOptions};
use crate::rules::registry::RuleRegistry;
use crate::rules::runner::Maintained;
use crate::rules::sinks::{HeadEvaluator, RemoteSeries, RemoteSlot};
use crate::scrape::scrape_loop::LoopContext;
use crate::scrape::target::resolve;
use crate::scrape::ScrapeManager;
use crate::selfmetrics::SelfMetrics;
use crate::storage::{Storage, StorageOptions, WalFsync};
use dataflows::promql::plan::Plan;
use dataflows::{Engine, EngineConfig};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an in-memory-only head keeps samples. With a data directory, the head
/// keeps what is not yet in a block, and `--storage.tsdb.retention.time` bounds history.
pub const HEAD_RETENTION: Duration = crate::storage::MEMORY_ONLY_RETENTION;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// `--config.file`; `None` runs the embedded default config.
    pub config_file: Option<PathBuf>,
    /// `--web.listen-address`.
    pub listen_address: SocketAddr,
    /// `--storage.tsdb.path`.
    pub storage_path: PathBuf,
    /// `--storage.tsdb.wal-fsync`.
    pub wal_fsync: WalFsync,
    /// `--storage.tsdb.min-block-duration`.
    pub min_block_duration: Duration,
    /// `--storage.tsdb.retention.time`.
    pub retention: Duration,
    /// `--storage.tsdb.retention.size` in bytes (0: no limit).
    pub retention_size: u64,
    /// `--query.lookback-delta`.
    pub lookback_delta: Duration,
    /// `--workers`.
    pub workers: usize,
    /// `--cluster.*`: this process's place in the cluster (one process by default).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// `--cluster.http-config`: how this process's requests to the others
    /// authenticate and connect (their `--web.config.file` may ask for credentials or
    /// TLS); plain HTTP by default.
    pub cluster_http: crate::config::HttpClientConfig,
    /// `--query.timeout`: the longest an ad-hoc query may run.
    pub query_timeout: Duration,
    /// Every flag as given or defaulted, for `/api/v1/status/flags`.
    pub flags: Vec<(String, String)>,
    /// `--web.enable-remote-write-receiver`: accept `POST /api/v1/write`.
    pub enable_remote_write_receiver: bool,
    /// `--web.remote-write-receiver.accepted-protobuf-messages`.
    pub remote_write_messages: Vec<crate::config::ProtobufMessage>,
    /// `--web.enable-otlp-receiver`: accept `POST /api/v1/otlp/v1/metrics`.
    pub enable_otlp_receiver: bool,
    /// `--enable-feature=exemplar-storage`: keep scraped exemplars (as many as the
    /// config's `storage.exemplars.max_exemplars`).
    pub exemplar_storage: bool,
    /// `--enable-feature=created-timestamp-zero-ingestion`: write the zero sample of
    /// each start timestamp scraped or received (see `ingest`).
    pub start_zero_ingestion: bool,
    /// `--web.enable-admin-api`: serve `/api/v1/admin/tsdb/*`.
    pub enable_admin_api: bool,
    /// `--web.enable-lifecycle`: serve `POST /-/reload` and `POST /-/quit`.
    pub enable_lifecycle: bool,
    /// `--web.cors.origin`, anchored: `Origin`s that `/api/v1` answers allow.
    pub cors_origin: regex::Regex,
    /// `--query.max-concurrency`: ad-hoc queries evaluated at once (0: no limit).
    pub query_max_concurrency: usize,
    /// `--query.max-samples`: samples one ad-hoc query may hold at once.
    pub query_max_samples: u64,
    /// `--web.stream.max-consumers`: `/api/v1/stream` consumers at once (0: no limit).
    pub stream_max_consumers: usize,
    /// `--storage.remote.read-sample-limit`: samples one remote read may return (0: no limit).
    pub remote_read_sample_limit: u64,
    /// `--storage.remote.read-concurrent-limit`: remote reads served at once (0: no limit).
    pub remote_read_concurrent_limit: usize,
    /// `--alertmanager.notification-queue-capacity`.
    pub notification_queue_capacity: usize,
    /// `--discovery.dns.nameserver`: the DNS server for `dns_sd_configs` instead of
    /// the system's resolver configuration.
    pub dns_nameserver: Option<SocketAddr>,
    /// `--alertmanager.config.file`: run the built-in notifier with this Alertmanager
    /// config (routes, receivers); without it alerts only go to `alerting.alertmanagers`.
    pub alertmanager_config_file: Option<PathBuf>,
    /// Rule evaluation and alerting flags.
    pub alerting: AlertingFlags,
    /// `--web.enable-rules-api`: accept rule group changes (`PUT`/`DELETE
    /// /api/v1/rules/…`).
    pub enable_rules_api: bool,
    /// `--web.dashboards-dir`: the wall-display dashboards' YAML files.
    pub dashboards_dir: Option<PathBuf>,
    /// `--web.enable-federation-views-api`: accept federation view changes (`PUT`/`DELETE
    /// /api/v1/federation/…`).
    pub enable_federation_views_api: bool,
    /// `--web.config.file`: basic authentication for every endpoint.
    pub web_config_file: Option<PathBuf>,
}

/// Rule evaluation and alerting flags.
#[derive(Clone, Debug)]
pub struct AlertingFlags {
    /// `--web.external-url`: the URL promflow is reached at (alerts' `generatorURL`,
    /// templates' `$externalURL`); `None`: `http://<hostname>:<listen port>`.
    pub external_url: Option<String>,
    /// `--rules.evaluation` (`interval` like Prometheus, or `on-arrival`) and
    /// `--rules.on-arrival-groups`.
    pub evaluation: EvaluationPolicy,
    /// `--rules.alert.for-outage-tolerance`.
    pub for_outage_tolerance: Duration,
    /// `--rules.alert.for-grace-period`.
    pub for_grace_period: Duration,
    /// `--rules.alert.for-restore`.
    pub for_restore: ForRestore,
    /// `--rules.alert.resend-delay`.
    pub resend_delay: Duration,
}

impl Default for AlertingFlags {
    fn default() -> Self {
        let defaults = ManagerOptions::default();
        AlertingFlags {
            external_url: None,
            evaluation: defaults.evaluation,
            for_outage_tolerance: defaults.for_outage_tolerance,
            for_grace_period: defaults.for_grace_period,
            for_restore: defaults.for_restore,
            resend_delay: defaults.resend_delay,
        }
    }
}

impl AlertingFlags {
    /// The external URL: the flag, or `http://<hostname>:<port>` like Prometheus.
    pub fn external_url(&self, listen_address: SocketAddr) -> String {
        match &self.external_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!(
                "http://{}:{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
                listen_address.port()
            ),
        }
    }
}

/// A target that relabeling dropped, for `/api/v1/targets`.
#[derive(Clone, Debug)]
pub struct DroppedTarget {
    /// The job (scrape pool) it was discovered for.
    pub job: String,
    /// Its labels before relabeling.
    pub discovered_labels: BTreeMap<String, String>,
}

/// How long target updates settle before the scrape loops are reconciled, so a burst
/// of provider updates costs one reconciliation.
const TARGET_UPDATE_SETTLE: Duration = Duration::from_millis(100);

/// The running service.
pub struct Service {
    /// Command-line settings.
    pub options: ServiceOptions,
    /// The configuration in force.
    pub config: RwLock<Arc<Config>>,
    /// Self-monitoring.
    pub metrics: Arc<SelfMetrics>,
    /// The write path (head + dataflow).
    pub ingester: Arc<Ingester>,
    /// The scrape loops.
    pub scrapes: ScrapeManager,
    /// Rule evaluation (recording and alerting rules).
    pub rules: Arc<RuleManager>,
    /// The web config file's authentication, when `--web.config.file` is given.
    pub web_auth: Option<Arc<crate::api::auth::WebAuth>>,
    /// Federation views registered over HTTP, maintained from the latest-sample table.
    pub federation_views: crate::api::federation_views::FederationViews,
    /// Rule groups registered over HTTP; evaluated with the config's groups.
    pub rule_registry: RuleRegistry,
    /// The rule groups of the config's rule files, as last loaded.
    config_rule_groups: RwLock<Vec<RuleGroup>>,
    /// Sends alerts to Alertmanagers.
    pub notifier: Arc<Notifier>,
    /// The built-in notifier (`--alertmanager.config.file`).
    pub builtin_notifier: Arc<BuiltinNotifier>,
    /// Where rule alerts go: both notifiers.
    alert_sink: Arc<AlertFanOut>,
    /// Service discovery for every scrape job.
    pub discovery: DiscoveryManager,
    /// Targets dropped by relabeling at the last reconciliation.
    pub dropped_targets: RwLock<Vec<DroppedTarget>>,
    /// Serialises reconciliations; holds the jobs over their `target_limit` (with the
    /// error), so a job is counted when it goes over, not at every reconciliation.
    reconcile_lock: Mutex<HashMap<String, String>>,
    ready: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
    /// Signalled by `POST /-/quit`; the server then shuts down as on SIGTERM.
    quit: tokio::sync::Notify,
    /// Admits ad-hoc queries (`--query.max-concurrency`).
    pub query_gate: tokio::sync::Semaphore,
    /// Admits remote reads (`--storage.remote.read-concurrent-limit`).
    pub remote_read_gate: tokio::sync::Semaphore,
    /// HTTP clients by settings: the config's `remote_read` endpoints' and the one
    /// the processes of a cluster ask each other with.
    pub http_clients: crate::remote::read::Clients,
    /// One permit per open `/api/v1/stream` (`--web.stream.max-consumers`).
    pub stream_gate: Arc<tokio::sync::Semaphore>,
}

/// Why [`Service::start`] failed; each variant's text is what `promflow` prints.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file (or the rule files, or an Alertmanager config) is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--web.config.file` is refused.
    #[error(transparent)]
    WebConfig(#[from] crate::api::auth::WebConfigError),
    /// The storage directory cannot be created.
    #[error("creating storage directory {}: {source}", path.display())]
    StorageDirectory {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The timely workers do not start.
    #[error(transparent)]
    Engine(#[from] dataflows::EngineError),
    /// Storage does not open.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The registered rule groups cannot be read.
    #[error(transparent)]
    Registry(#[from] crate::rules::registry::RegistryError),
    /// The registered federation views cannot be read.
    #[error(transparent)]
    FederationViews(#[from] crate::api::federation_views::ViewError),
    /// The default HTTP client cannot be built.
    #[error(transparent)]
    Client(#[from] crate::http_client::TlsSetupError),
}

impl Service {
    /// The series the config's `remote_read` endpoints and the cluster's other
    /// processes hold for what `plan` reads over `[start, end]`, and a warning per
    /// endpoint that failed (`remote::read`); asked within `timeout`. Without endpoints
    /// nothing is asked. Queries and the rules evaluated over storage read these.
    pub async fn remote_series(
        &self,
        plan: &Plan,
        start: i64,
        end: i64,
        timeout: Duration,
    ) -> (Fetched, Vec<String>) {
        self.remote_series_of(plan, (start, end), timeout, true)
            .await
    }

    /// [`Service::remote_series`], the cluster's other processes asked only with
    /// `peers`.
    async fn remote_series_of(
        &self,
        plan: &Plan,
        (start, end): (i64, i64),
        timeout: Duration,
        peers: bool,
    ) -> (Fetched, Vec<String>) {
        let config = self.config.read().clone();
        let peers = match peers {
            true => cluster_peers(&self.options.cluster, &self.options.cluster_http, timeout),
            false => Vec::new(),
        };
        if config.remote_read.is_empty() && peers.is_empty() {
            return (Fetched::default(), Vec::new());
        }
        let endpoints: Vec<RemoteReadConfig> =
            config.remote_read.iter().cloned().chain(peers).collect();
        let lookback = self.options.lookback_delta.as_millis() as i64;
        let wanted = selections(plan, lookback, start, end);
        // Prometheus's local start time: the oldest block's, else now; plus a margin of
        // two block durations (`readyStorage.StartTime`).
        let oldest_block = self.ingester.storage().blocks().first().map(|b| b.min_t);
        let margin = 2 * self.options.min_block_duration.as_millis() as i64;
        let local_start = oldest_block.unwrap_or_else(now_ms).saturating_add(margin);
        let asked = fetch(
            &endpoints,
            &self.http_clients,
            &config.global.external_labels,
            &wanted,
            Some(local_start),
        );
        match tokio::time::timeout(timeout, asked).await {
            Ok(answer) => answer,
            Err(_) => (
                Fetched::default(),
                vec!["remote read: the query timed out before the endpoints answered".into()],
            ),
        }
    }

    /// Starts the engine and the scrape loops for the initial configuration.
    /// Must be called within a tokio runtime.
    pub fn start(options: ServiceOptions) -> Result<Arc<Service>, StartError> {
        let (config, rule_groups) = load_config(&options)?;
        let scrape_clients = build_scrape_clients(&config, &options)?;
        let notify_config = load_notify_config(&options)?;
        let web_auth = match &options.web_config_file {
            Some(path) => Some(Arc::new(
                crate::api::auth::WebAuth::load(path).map_err(StartError::WebConfig)?,
            )),
            None => None,
        };
        std::fs::create_dir_all(&options.storage_path).map_err(|source| {
            StartError::StorageDirectory {
                path: options.storage_path.clone(),
                source,
            }
        })?;
        let engine = Arc::new(Engine::start(EngineConfig {
            workers: options.workers,
            lookback_ms: options.lookback_delta.as_millis() as i64,
            cluster: options.cluster.engine_config(),
            spread_joins: true,
            spread_owner_bound: false,
        })?);
        let metrics = Arc::new(SelfMetrics::default());
        metrics
            .limits
            .queries_concurrent_max
            .set(options.query_max_concurrency as f64);
        let head = Arc::new(Storage::open(&StorageOptions {
            path: options.storage_path.clone(),
            wal_fsync: options.wal_fsync,
            min_block_duration: options.min_block_duration,
            retention: options.retention,
            retention_size: options.retention_size,
        })?);
        head.housekeeping(now_ms());
        // Open, and the watermark not yet advanced: the rules other processes of a
        // cluster register are seeded from here too.
        engine.set_seed_source(head.clone());
        let rule_registry = RuleRegistry::open(&options.storage_path)?;
        let federation_views = crate::api::federation_views::FederationViews::open(
            &options.storage_path,
            engine.latest().clone(),
            options.lookback_delta.as_millis() as i64,
        )?;
        let ingester = Ingester::new(head, engine, metrics.clone());
        ingester.set_start_zero_ingestion(options.start_zero_ingestion);
        let client = crate::http_client::default_client()?;
        let scrapes = ScrapeManager::new(LoopContext {
            client,
            ingester: ingester.clone(),
            metrics: metrics.clone(),
        });
        let notifier = Notifier::new(DiscoveryContext {
            metrics: metrics.clone(),
            dns_nameserver: options.dns_nameserver,
        });
        notifier.set_queue_capacity(options.notification_queue_capacity);
        tokio::spawn(notifier.clone().run());
        let builtin_notifier = BuiltinNotifier::new();
        builtin_notifier.set_state_file(options.storage_path.join("notifier.json"));
        tokio::spawn(builtin_notifier.clone().run());
        let alert_sink = Arc::new(AlertFanOut {
            alertmanagers: notifier.clone(),
            builtin: builtin_notifier.clone(),
            config: Mutex::new(NotifierConfig::default()),
        });
        let lookback_ms = options.lookback_delta.as_millis() as i64;
        // What rules read beside storage, set once the service exists (below).
        let remote = RemoteSlot::default();
        let head_evaluator = Arc::new(HeadEvaluator {
            head: ingester.storage().clone(),
            lookback_ms,
            remote: remote.clone(),
        });
        let rules = RuleManager::maintained(
            head_evaluator.clone(),
            ingester.clone(),
            alert_sink.clone(),
            Maintained {
                engine: ingester.engine().clone(),
                history: ingester.storage().clone(),
                lookback_ms,
                state_file: Some(
                    options
                        .storage_path
                        .join(crate::rules::restore::KEEP_FIRING_FILE),
                ),
                remote: remote.clone(),
            },
        );
        let discovery = DiscoveryManager::new(DiscoveryContext {
            metrics: metrics.clone(),
            dns_nameserver: options.dns_nameserver,
        });
        let service = Arc::new(Service {
            config: RwLock::new(Arc::new(config.clone())),
            metrics,
            ingester,
            scrapes,
            rules,
            web_auth,
            federation_views,
            rule_registry,
            config_rule_groups: RwLock::new(Vec::new()),
            notifier,
            builtin_notifier,
            alert_sink,
            discovery,
            dropped_targets: RwLock::new(Vec::new()),
            reconcile_lock: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            quit: tokio::sync::Notify::new(),
            query_gate: gate(options.query_max_concurrency),
            remote_read_gate: gate(options.remote_read_concurrent_limit),
            http_clients: Default::default(),
            stream_gate: Arc::new(gate(options.stream_max_consumers)),
            options,
        });
        // Rules evaluated over storage, and the seeds of maintained rules, read what
        // queries read: remote read endpoints and the cluster's other processes.
        let _ = remote.set(Arc::new(RulesRemote {
            service: Arc::downgrade(&service),
            runtime: tokio::runtime::Handle::current(),
        }));
        // Remote write 2.0 sends the scraped targets' metric metadata with each series.
        let weak = Arc::downgrade(&service);
        service
            .ingester
            .remote_write()
            .set_metadata_source(Arc::new(move || {
                weak.upgrade().map_or_else(Vec::new, |s| {
                    s.scrapes
                        .targets()
                        .iter()
                        .flat_map(|t| t.health.metadata.iter().cloned())
                        .collect()
                })
            }));
        service.apply(config, rule_groups, notify_config, scrape_clients);
        service.spawn_target_updates();
        service.spawn_housekeeping();
        crate::api::federation_views::spawn_adopting(&service);
        service.ready.store(true, Ordering::SeqCst);
        Ok(service)
    }

    /// Asks the server to shut down (`POST /-/quit`); [`Service::quit_requested`]
    /// completes, also when it is awaited only later.
    pub fn request_quit(&self) {
        self.quit.notify_one();
    }

    /// Completes once [`Service::request_quit`] has been called.
    pub async fn quit_requested(&self) {
        self.quit.notified().await
    }

    /// Whether startup has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Reloads the configuration file; see the module contract.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        let _serialised = self.reload_lock.lock().await;
        match load_config(&self.options).and_then(|(config, rule_groups)| {
            let scrape_clients = build_scrape_clients(&config, &self.options)?;
            let notify_config = load_notify_config(&self.options)?;
            Ok((config, rule_groups, notify_config, scrape_clients))
        }) {
            Ok((config, rule_groups, notify_config, scrape_clients)) => {
                self.apply(config, rule_groups, notify_config, scrape_clients);
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.config_last_reload_successful.set(0.0);
                self.metrics.config_reload_failures.inc();
                tracing::error!(error = %e, "configuration reload failed; keeping the old configuration");
                Err(e)
            }
        }
    }

    fn apply(
        &self,
        config: Config,
        rule_groups: Vec<RuleGroup>,
        notify_config: Option<NotifyConfig>,
        scrape_clients: HashMap<String, reqwest::Client>,
    ) {
        self.scrapes.set_job_clients(scrape_clients);
        self.ingester
            .remote_write()
            .apply(&config.remote_write, &config.global.external_labels);
        let max_exemplars = match self.options.exemplar_storage {
            true => config.storage.exemplars.max_exemplars.max(0) as usize,
            false => 0,
        };
        self.ingester.size_exemplars(max_exemplars);
        self.discovery.apply(&config.scrape_configs);
        self.reconcile_targets();
        self.apply_rules(&config, rule_groups, notify_config);
        *self.config.write() = Arc::new(config);
        self.metrics.config_last_reload_successful.set(1.0);
        self.metrics
            .config_last_reload_success_timestamp_seconds
            .set(now_ms() as f64 / 1000.0);
    }

    /// Hands the (already validated) rule groups of the config's files, with the
    /// groups registered over HTTP, to the rule manager, and the alerting settings to
    /// the notifiers.
    fn apply_rules(
        &self,
        config: &Config,
        groups: Vec<RuleGroup>,
        notify_config: Option<NotifyConfig>,
    ) {
        *self.config_rule_groups.write() = groups;
        let external_url = self.external_url();
        let notifier_config = NotifierConfig {
            external_labels: config.global.external_labels.clone(),
            relabel: config.alerting.alert_relabel_configs.clone(),
            alertmanagers: config.alerting.alertmanagers.clone(),
            external_url: external_url.clone(),
        };
        *self.alert_sink.config.lock() = notifier_config.clone();
        self.notifier.apply(notifier_config);
        self.builtin_notifier.apply(notify_config, &external_url);
        self.apply_rule_groups(config, external_url);
    }

    /// Re-applies the config's groups and the registered ones after the registry
    /// changed; serialised with reloads. Groups that did not change keep their state
    /// (the rule manager keeps alert state per file and group name).
    pub async fn apply_registered_rules(&self) {
        let _serialised = self.reload_lock.lock().await;
        let config = self.config.read().clone();
        let external_url = self.external_url();
        self.apply_rule_groups(&config, external_url);
    }

    fn apply_rule_groups(&self, config: &Config, external_url: String) {
        // Rules registered in the dataflow start at its watermark, their windows seeded
        // from storage up to there: bring it to now (as far as scrapes in flight allow),
        // not the epoch of a fresh engine.
        self.ingester.advance_watermark();
        let flags = &self.options.alerting;
        let mut groups = self.config_rule_groups.read().clone();
        groups.extend(self.rule_registry.groups());
        // In a cluster, the first process evaluates the rules over every process's
        // samples; the others show its rules and alerts (`api::cluster_face`).
        if !self.options.cluster.hosts_rules() {
            groups.clear();
        }
        self.rules.apply(
            groups,
            ManagerOptions {
                default_interval: config.global.evaluation_interval,
                external_labels: config.global.external_labels.clone(),
                external_url,
                evaluation: flags.evaluation.clone(),
                for_outage_tolerance: flags.for_outage_tolerance,
                for_grace_period: flags.for_grace_period,
                for_restore: flags.for_restore,
                resend_delay: flags.resend_delay,
            },
        );
    }

    /// The config's rule files (a registered namespace may not be one of them).
    pub fn config_rule_files(&self) -> Vec<PathBuf> {
        self.config.read().rule_files.clone()
    }

    /// `--web.external-url`, or `http://<hostname>:<port>` like Prometheus.
    fn external_url(&self) -> String {
        self.options
            .alerting
            .external_url(self.options.listen_address)
    }

    /// Resolves every job's discovered groups into targets and reconciles the scrape
    /// loops with their union.
    pub fn reconcile_targets(&self) {
        let mut over_target_limit = self.reconcile_lock.lock();
        let mut still_over = HashMap::new();
        let mut wanted = Vec::new();
        let mut dropped = Vec::new();
        for (scrape_config, groups) in self.discovery.snapshot() {
            let resolved = resolve(&scrape_config, &groups);
            if let Some(error) = resolved.active.first().and_then(|t| t.forced_error.clone()) {
                if over_target_limit.get(&scrape_config.job_name) != Some(&error) {
                    self.metrics.limits.targets.inc();
                }
                still_over.insert(scrape_config.job_name.clone(), error);
            }
            for failure in &resolved.failures {
                tracing::error!(scrape_pool = %scrape_config.job_name, err = %failure, "Creating target failed");
            }
            wanted.extend(resolved.active);
            dropped.extend(resolved.dropped.into_iter().map(|labels| DroppedTarget {
                job: scrape_config.job_name.clone(),
                discovered_labels: labels,
            }));
        }
        // In a cluster, each target is scraped by the one process that owns it.
        let cluster = &self.options.cluster;
        wanted.retain(|target| cluster.owns(target.identity()));
        self.scrapes.apply(wanted);
        *self.dropped_targets.write() = dropped;
        *over_target_limit = still_over;
    }

    /// Reconciles the scrape loops whenever discovery reports a change.
    fn spawn_target_updates(self: &Arc<Self>) {
        let service = Arc::downgrade(self);
        let mut updates = self.discovery.subscribe();
        // A provider may have reported before this subscription existed (its first
        // refresh races with startup): reconcile once right away so that is not lost.
        updates.mark_changed();
        tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                tokio::time::sleep(TARGET_UPDATE_SETTLE).await;
                updates.borrow_and_update();
                let Some(service) = service.upgrade() else {
                    return;
                };
                service.reconcile_targets();
            }
        });
    }

    /// Advances the watermark when nothing is scraped, every 250 ms while the dataflow
    /// has something time releases now (on-arrival rules, batches in flight;
    /// [`Engine::time_needed_from`]), and runs storage housekeeping (block cuts, WAL
    /// truncation, retention) every minute. Otherwise the loop sleeps until the
    /// dataflow next needs time (an interval rule's next evaluation, the latest-sample
    /// table's next retirement), housekeeping is due, or the dataflow gets work
    /// ([`Engine::on_busy`]); a server with a few targets and interval rules wakes
    /// here only after its scrapes and at its evaluations.
    ///
    /// [`Engine::time_needed_from`]: dataflows::Engine::time_needed_from
    /// [`Engine::on_busy`]: dataflows::Engine::on_busy
    fn spawn_housekeeping(self: &Arc<Self>) {
        const TICK: Duration = Duration::from_millis(250);
        const HOUSEKEEPING_MS: i64 = 60_000;
        let service = self.clone();
        let busy = Arc::new(tokio::sync::Notify::new());
        let notify = busy.clone();
        self.ingester
            .engine()
            .on_busy(Arc::new(move || notify.notify_one()));
        tokio::spawn(async move {
            let mut last_trim = now_ms();
            loop {
                let now = now_ms();
                let housekeeping = last_trim + HOUSEKEEPING_MS - now;
                let wait_ms = match service.ingester.engine().time_needed_from() {
                    Some(from) if from <= now => None,
                    Some(from) => Some((from - now).min(housekeeping)),
                    None => Some(housekeeping),
                };
                match wait_ms {
                    None => tokio::time::sleep(TICK).await,
                    Some(ms) => {
                        let ms = ms.max(1) as u64;
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                            _ = busy.notified() => {}
                        }
                    }
                }
                service.ingester.advance_watermark();
                let now = now_ms();
                if now - last_trim >= HOUSEKEEPING_MS {
                    last_trim = now;
                    let storage = service.ingester.storage().clone();
                    // Block writes are file I/O: off the async workers, and not awaited so
                    // the watermark keeps advancing meanwhile (storage serialises them).
                    drop(tokio::task::spawn_blocking(move || {
                        storage.housekeeping(now)
                    }));
                }
            }
        });
    }

    /// Stops scraping (writing stale markers) and the dataflow.
    pub fn shutdown(&self) {
        self.discovery.stop_all();
        self.notifier.stop_discovery();
        self.scrapes.stop_all();
        self.rules.stop();
        self.ingester.remote_write().stop_all();
        self.ingester.engine().shutdown();
        if let Err(e) = self.ingester.storage().sync_wal() {
            tracing::error!(error = %e, "fsync of the WAL at shutdown failed");
        }
    }
}

/// A semaphore admitting `limit` at once; 0 means no limit, as in Prometheus.
fn gate(limit: usize) -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new(match limit {
        0 => tokio::sync::Semaphore::MAX_PERMITS,
        n => n,
    })
}

/// Loads the configuration named by the options, or the embedded default, in which
/// the self-scrape target follows `--web.listen-address`, and the rule files it names.
/// As in Prometheus, a rule file with problems fails the whole load (so a reload with
/// a broken rule file keeps the running configuration), with every problem listed.
pub fn load_config(options: &ServiceOptions) -> Result<(Config, Vec<RuleGroup>), ConfigError> {
    let config = match &options.config_file {
        Some(path) => Config::load_file(path)?,
        None => {
            let own = format!("localhost:{}", options.listen_address.port());
            let text = DEFAULT_CONFIG_YAML.replace("localhost:9090", &own);
            let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            Config::load_str(&text, "<default config>", &base)?
        }
    };
    with_rule_files(config)
}

/// Each scrape job's HTTP client, from its `tls_config` (whose files were checked at
/// load; one that became unreadable since fails the load the same way).
pub fn build_scrape_clients(
    config: &Config,
    options: &ServiceOptions,
) -> Result<HashMap<String, reqwest::Client>, ConfigError> {
    let mut clients = HashMap::new();
    let mut problems = Vec::new();
    for scrape in &config.scrape_configs {
        match crate::http_client::build_client(&scrape.http) {
            Ok(client) => {
                clients.insert(scrape.job_name.clone(), client);
            }
            Err(e) => problems.push(Problem {
                file: options.config_file.as_ref().map_or_else(
                    || "<default config>".to_string(),
                    |path| path.display().to_string(),
                ),
                line: None,
                field: format!("scrape_configs[job_name={}]", scrape.job_name),
                message: e.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(clients)
    } else {
        Err(ConfigError { problems })
    }
}

/// Loads `--alertmanager.config.file`, if given.
pub fn load_notify_config(options: &ServiceOptions) -> Result<Option<NotifyConfig>, ConfigError> {
    options
        .alertmanager_config_file
        .as_deref()
        .map(NotifyConfig::load_file)
        .transpose()
}

/// Loads the rule files `config` names; their problems become config problems.
pub fn with_rule_files(config: Config) -> Result<(Config, Vec<RuleGroup>), ConfigError> {
    let groups =
        crate::rules::file::load_files(&config.rule_files).map_err(|problems| ConfigError {
            problems: problems
                .into_iter()
                .map(|p| Problem {
                    file: p.file,
                    line: p.line,
                    field: p.context,
                    message: p.message,
                })
                .collect(),
        })?;
    Ok((config, groups))
}

/// What the rules evaluated over storage read beside it ([`Service::remote_series`]).
struct RulesRemote {
    service: std::sync::Weak<Service>,
    runtime: tokio::runtime::Handle,
}

impl RemoteSeries for RulesRemote {
    fn fetch(&self, plan: &Plan, t_ms: i64) -> Fetched {
        self.fetch_from(plan, t_ms, true)
    }

    fn fetch_seeds(&self, plan: &Plan, t_ms: i64) -> Fetched {
        self.fetch_from(plan, t_ms, false)
    }
}

impl RulesRemote {
    /// What the `remote_read` endpoints (and with `peers` the cluster's other
    /// processes) hold for `plan` at `t_ms`.
    fn fetch_from(&self, plan: &Plan, t_ms: i64, peers: bool) -> Fetched {
        let Some(service) = self.service.upgrade() else {
            return Fetched::default();
        };
        let peers = peers && service.options.cluster.is_multi();
        if service.config.read().remote_read.is_empty() && !peers {
            return Fetched::default();
        }
        // Rule groups run on threads of their own, which wait here while the runtime
        // drives the fetch. Registrations over the rules API come from one of the
        // runtime's threads: that one hands the wait to a thread of its own (a task
        // spawned from it could sit in its slot, unrun, while it waits).
        let timeout = service.options.query_timeout;
        let fetch = async {
            let (fetched, warnings) = service
                .remote_series_of(plan, (t_ms, t_ms), timeout, peers)
                .await;
            for warning in warnings {
                tracing::debug!(%warning, "rule evaluation over remote storage");
            }
            fetched
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return self.runtime.block_on(fetch);
        }
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(fetch))
                .join()
                .unwrap_or_default()
        })
    }
}

/// The other processes of the cluster as remote read endpoints: every query reads
/// their storage too (each holds what its own targets and receivers brought), all of
/// it (`read_recent`); the external labels, the same in every process's config, are
/// sent as matchers and taken off (their read endpoint adds them). Each request
/// carries `--cluster.http-config`'s credentials and TLS settings.
fn cluster_peers(
    cluster: &Cluster,
    http: &crate::config::HttpClientConfig,
    timeout: Duration,
) -> Vec<RemoteReadConfig> {
    cluster
        .peer_urls()
        .into_iter()
        .map(|url| RemoteReadConfig {
            url: format!("{url}/api/v1/read"),
            remote_timeout: timeout,
            headers: Default::default(),
            read_recent: true,
            name: format!("cluster peer {url}"),
            http: http.clone(),
            required_matchers: Default::default(),
            filter_external_labels: true,
        })
        .collect()
}
