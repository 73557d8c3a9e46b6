//! The discovery manager: one provider per sd config of every scrape job.
//!
//! Contract:
//! - [`DiscoveryManager::apply`] takes the scrape configs of a (re)loaded config.
//!   A provider whose job and sd config are unchanged keeps running, with its
//!   groups; new ones start; ones no longer configured stop. Static configs are
//!   one provider per job whose groups are known at once.
//! - A provider refreshes on its own interval. A refresh that fails keeps the
//!   provider's last good groups (never empties them), is logged and counted in
//!   `promflow_sd_refresh_failures_total{mechanism}`.
//! - Every change of any provider's groups, and every `apply`, bumps the
//!   generation watched through [`DiscoveryManager::subscribe`]; readers take a
//!   [`DiscoveryManager::snapshot`] of every job's config and groups.

use super::{dns_sd, ec2_sd, file_sd, static_sd, DiscoveryError, TargetGroup};
use crate::config::{DnsSdConfig, Ec2SdConfig, FileSdConfig, ScrapeConfig, StaticConfig};
use crate::selfmetrics::SelfMetrics;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What providers need from the rest of the service.
#[derive(Clone)]
pub struct DiscoveryContext {
    /// Where refreshes and failures are counted.
    pub metrics: Arc<SelfMetrics>,
    /// `--discovery.dns.nameserver`: ask this server instead of the system's.
    pub dns_nameserver: Option<SocketAddr>,
}

/// One sd config, the identity of a provider across reloads.
#[derive(Clone, Debug, PartialEq)]
enum ProviderConfig {
    Static(Vec<StaticConfig>),
    File(FileSdConfig),
    Dns(DnsSdConfig),
    Ec2(Ec2SdConfig),
}

impl ProviderConfig {
    fn of(config: &ScrapeConfig) -> Vec<ProviderConfig> {
        let mut out = Vec::new();
        if !config.static_configs.is_empty() {
            out.push(ProviderConfig::Static(config.static_configs.clone()));
        }
        out.extend(
            config
                .file_sd_configs
                .iter()
                .cloned()
                .map(ProviderConfig::File),
        );
        out.extend(
            config
                .dns_sd_configs
                .iter()
                .cloned()
                .map(ProviderConfig::Dns),
        );
        out.extend(
            config
                .ec2_sd_configs
                .iter()
                .cloned()
                .map(ProviderConfig::Ec2),
        );
        out
    }
}

/// A running provider: its config, its last good groups, its task.
struct Provider {
    config: ProviderConfig,
    groups: Arc<Mutex<Vec<TargetGroup>>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Job {
    config: Arc<ScrapeConfig>,
    providers: Vec<Provider>,
}

/// Owns the providers of every scrape job.
pub struct DiscoveryManager {
    ctx: DiscoveryContext,
    jobs: Mutex<BTreeMap<String, Job>>,
    generation: watch::Sender<u64>,
}

/// A mechanism that lists target groups when asked.
pub(crate) trait Refresh: Send + 'static {
    /// The `mechanism` label of its metrics.
    const MECHANISM: &'static str;
    /// How long to wait between refreshes.
    fn interval(&self) -> Duration;
    /// Lists the groups now; an error keeps the previous groups.
    fn refresh(&mut self) -> impl Future<Output = Result<Vec<TargetGroup>, DiscoveryError>> + Send;
}

impl DiscoveryManager {
    /// A manager with no jobs.
    pub fn new(ctx: DiscoveryContext) -> DiscoveryManager {
        DiscoveryManager {
            ctx,
            jobs: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
        }
    }

    /// Reconciles the providers with `configs`; see the module contract. Must be
    /// called within a tokio runtime.
    pub fn apply(&self, configs: &[ScrapeConfig]) {
        let mut jobs = self.jobs.lock();
        let mut old = std::mem::take(&mut *jobs);
        for config in configs {
            let mut previous = old
                .remove(&config.job_name)
                .map(|job| job.providers)
                .unwrap_or_default();
            let providers = ProviderConfig::of(config)
                .into_iter()
                .map(
                    |wanted| match previous.iter().position(|p| p.config == wanted) {
                        Some(index) => previous.swap_remove(index),
                        None => self.start(&config.job_name, wanted),
                    },
                )
                .collect();
            // `previous` now holds only providers no longer wanted: dropping stops them.
            jobs.insert(
                config.job_name.clone(),
                Job {
                    config: Arc::new(config.clone()),
                    providers,
                },
            );
        }
        drop(jobs);
        drop(old);
        self.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that changes whenever some job's groups (or the configs) change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Every job's config and current groups, in job-name order.
    pub fn snapshot(&self) -> Vec<(Arc<ScrapeConfig>, Vec<TargetGroup>)> {
        self.jobs
            .lock()
            .values()
            .map(|job| {
                let groups = job
                    .providers
                    .iter()
                    .flat_map(|p| p.groups.lock().clone())
                    .collect();
                (job.config.clone(), groups)
            })
            .collect()
    }

    /// Stops every provider.
    pub fn stop_all(&self) {
        self.jobs.lock().clear();
    }

    fn start(&self, job: &str, config: ProviderConfig) -> Provider {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let task = match &config {
            ProviderConfig::Static(statics) => {
                *groups.lock() = static_sd::groups(statics);
                None
            }
            ProviderConfig::File(file) => Some(self.spawn(
                job,
                file_sd::FileDiscovery::new(file.clone(), self.ctx.metrics.clone()),
                &groups,
            )),
            ProviderConfig::Dns(dns) => Some(self.spawn(
                job,
                dns_sd::DnsDiscovery::new(dns.clone(), self.ctx.dns_nameserver),
                &groups,
            )),
            ProviderConfig::Ec2(ec2) => {
                Some(self.spawn(job, ec2_sd::Ec2Discovery::new(ec2.clone()), &groups))
            }
        };
        Provider {
            config,
            groups,
            task,
        }
    }

    fn spawn<R: Refresh>(
        &self,
        job: &str,
        provider: R,
        groups: &Arc<Mutex<Vec<TargetGroup>>>,
    ) -> JoinHandle<()> {
        tokio::spawn(run(
            job.to_string(),
            provider,
            groups.clone(),
            self.generation.clone(),
            self.ctx.metrics.clone(),
        ))
    }
}

/// The refresh loop shared by every mechanism.
async fn run<R: Refresh>(
    job: String,
    mut provider: R,
    groups: Arc<Mutex<Vec<TargetGroup>>>,
    generation: watch::Sender<u64>,
    metrics: Arc<SelfMetrics>,
) {
    loop {
        let result = provider.refresh().await;
        metrics.record_sd_refresh(R::MECHANISM, result.is_err());
        match result {
            Ok(new_groups) => {
                let changed = {
                    let mut current = groups.lock();
                    let changed = *current != new_groups;
                    *current = new_groups;
                    changed
                };
                if changed {
                    tracing::debug!(job, mechanism = R::MECHANISM, "discovered targets changed");
                    generation.send_modify(|g| *g += 1);
                }
            }
            Err(error) => tracing::warn!(
                job,
                mechanism = R::MECHANISM,
                %error,
                "service discovery refresh failed; keeping the last discovered targets"
            ),
        }
        tokio::time::sleep(provider.interval()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn scrape_configs(dir: &Path, interval: &str, files: &str) -> Vec<ScrapeConfig> {
        let text = format!(
            "scrape_configs:\n- job_name: files\n  scrape_interval: {interval}\n  file_sd_configs:\n  - files: ['{files}']\n"
        );
        Config::load_str(&text, "t.yml", dir)
            .unwrap()
            .scrape_configs
    }

    fn addresses(manager: &DiscoveryManager) -> Vec<String> {
        manager
            .snapshot()
            .iter()
            .flat_map(|(_, groups)| groups.iter().flat_map(|g| g.targets.clone()))
            .map(|t| t["__address__"].clone())
            .collect()
    }

    #[test]
    fn unchanged_providers_keep_running_across_reloads() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("a.json"), r#"[{"targets": ["a:1"]}]"#).unwrap();
            std::fs::write(dir.path().join("b.json"), r#"[{"targets": ["b:1"]}]"#).unwrap();
            let manager = DiscoveryManager::new(DiscoveryContext {
                metrics: Arc::new(SelfMetrics::default()),
                dns_nameserver: None,
            });
            let mut updates = manager.subscribe();
            manager.apply(&scrape_configs(dir.path(), "1m", "a.json"));
            while addresses(&manager).is_empty() {
                tokio::time::timeout(Duration::from_secs(10), updates.changed())
                    .await
                    .expect("the file provider reports its groups")
                    .unwrap();
            }
            assert_eq!(addresses(&manager), ["a:1"]);

            // Same sd config, another scrape interval: the provider (and its groups)
            // carry over at once; the job's config is the new one.
            manager.apply(&scrape_configs(dir.path(), "5s", "a.json"));
            assert_eq!(addresses(&manager), ["a:1"]);
            assert_eq!(
                manager.snapshot()[0].0.scrape_interval,
                Duration::from_secs(5)
            );

            // A changed sd config starts a new provider: nothing until it has read.
            manager.apply(&scrape_configs(dir.path(), "5s", "b.json"));
            assert!(addresses(&manager).is_empty());
            while addresses(&manager).is_empty() {
                tokio::time::timeout(Duration::from_secs(10), updates.changed())
                    .await
                    .expect("the new provider reports its groups")
                    .unwrap();
            }
            assert_eq!(addresses(&manager), ["b:1"]);
        });
    }
}
