//! The discovery manager: one provider per sd config of every set of targets.
//!
//! A set is a scrape job or an `alerting.alertmanagers[]` entry ([`DiscoverySet`]);
//! the service runs one manager for scrape jobs and the Alertmanager notifier one for
//! its Alertmanagers, both with the providers and refresh loop of this file.
//!
//! Contract:
//! - [`DiscoveryManager::apply`] takes the sets of a (re)loaded config. A provider
//!   whose set (by [`DiscoverySet::key`]) and sd config are unchanged keeps running,
//!   with its groups; new ones start; ones no longer configured stop. Static configs
//!   are one provider per set whose groups are known at once.
//! - A provider refreshes on its own interval. A refresh that fails keeps the
//!   provider's last good groups (never empties them), is logged and counted in
//!   `promflow_sd_refresh_failures_total{mechanism}`.
//! - Every change of any provider's groups, and every `apply`, bumps the
//!   generation watched through [`DiscoveryManager::subscribe`]; readers take a
//!   [`DiscoveryManager::snapshot`] of every set's config and groups.

use super::{dns_sd, ec2_sd, file_sd, static_sd, DiscoveryError, TargetGroup};
use crate::config::{ScrapeConfig, SdConfig};
use crate::selfmetrics::SelfMetrics;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A set of targets discovered together: its identity and its sd configs.
pub trait DiscoverySet: Clone + Send + Sync + 'static {
    /// Identifies the set across reloads (and in logs); snapshots list sets in key order.
    type Key: Ord + Clone + Display + Send + Sync + 'static;
    /// This set's key; unique among the sets applied together.
    fn key(&self) -> Self::Key;
    /// The sd configs to run for it, one provider each.
    fn providers(&self) -> Vec<SdConfig>;
}

/// A scrape job is a set keyed by its job name.
impl DiscoverySet for ScrapeConfig {
    type Key = String;
    fn key(&self) -> String {
        self.job_name.clone()
    }
    fn providers(&self) -> Vec<SdConfig> {
        self.sd_configs.providers()
    }
}

/// What providers need from the rest of the service.
#[derive(Clone)]
pub struct DiscoveryContext {
    /// Where refreshes and failures are counted.
    pub metrics: Arc<SelfMetrics>,
    /// `--discovery.dns.nameserver`: ask this server instead of the system's.
    pub dns_nameserver: Option<SocketAddr>,
}

/// A running provider: its config, its last good groups, its task.
struct Provider {
    config: SdConfig,
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

struct Set<S> {
    config: Arc<S>,
    providers: Vec<Provider>,
}

/// Owns the providers of every set (by default: of every scrape job).
pub struct DiscoveryManager<S: DiscoverySet = ScrapeConfig> {
    ctx: DiscoveryContext,
    sets: Mutex<BTreeMap<S::Key, Set<S>>>,
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

impl<S: DiscoverySet> DiscoveryManager<S> {
    /// A manager with no sets.
    pub fn new(ctx: DiscoveryContext) -> DiscoveryManager<S> {
        DiscoveryManager {
            ctx,
            sets: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
        }
    }

    /// Reconciles the providers with `configs`; see the module contract. Must be
    /// called within a tokio runtime.
    pub fn apply(&self, configs: &[S]) {
        let mut sets = self.sets.lock();
        let mut old = std::mem::take(&mut *sets);
        for config in configs {
            let key = config.key();
            let mut previous = old
                .remove(&key)
                .map(|set| set.providers)
                .unwrap_or_default();
            let providers = config
                .providers()
                .into_iter()
                .map(
                    |wanted| match previous.iter().position(|p| p.config == wanted) {
                        Some(index) => previous.swap_remove(index),
                        None => self.start(&key, wanted),
                    },
                )
                .collect();
            // `previous` now holds only providers no longer wanted: dropping stops them.
            sets.insert(
                key,
                Set {
                    config: Arc::new(config.clone()),
                    providers,
                },
            );
        }
        drop(sets);
        drop(old);
        self.generation.send_modify(|g| *g += 1);
    }

    /// A receiver that changes whenever some set's groups (or the configs) change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Every set's config and current groups, in key order.
    pub fn snapshot(&self) -> Vec<(Arc<S>, Vec<TargetGroup>)> {
        self.sets
            .lock()
            .values()
            .map(|set| {
                let groups = set
                    .providers
                    .iter()
                    .flat_map(|p| p.groups.lock().clone())
                    .collect();
                (set.config.clone(), groups)
            })
            .collect()
    }

    /// Stops every provider.
    pub fn stop_all(&self) {
        self.sets.lock().clear();
    }

    fn start(&self, set: &S::Key, config: SdConfig) -> Provider {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let task = match &config {
            SdConfig::Static(statics) => {
                *groups.lock() = static_sd::groups(statics);
                None
            }
            SdConfig::File(file) => Some(self.spawn(
                set,
                file_sd::FileDiscovery::new(file.clone(), self.ctx.metrics.clone()),
                &groups,
            )),
            SdConfig::Dns(dns) => Some(self.spawn(
                set,
                dns_sd::DnsDiscovery::new(
                    dns.clone(),
                    self.ctx.dns_nameserver,
                    self.ctx.metrics.clone(),
                ),
                &groups,
            )),
            SdConfig::Ec2(ec2) => {
                Some(self.spawn(set, ec2_sd::Ec2Discovery::new((**ec2).clone()), &groups))
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
        set: &S::Key,
        provider: R,
        groups: &Arc<Mutex<Vec<TargetGroup>>>,
    ) -> JoinHandle<()> {
        tokio::spawn(run(
            set.to_string(),
            provider,
            groups.clone(),
            self.generation.clone(),
            self.ctx.metrics.clone(),
        ))
    }
}

/// The refresh loop shared by every mechanism.
async fn run<R: Refresh>(
    set: String,
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
                    tracing::debug!(set, mechanism = R::MECHANISM, "discovered targets changed");
                    generation.send_modify(|g| *g += 1);
                }
            }
            Err(error) => tracing::warn!(
                set,
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

    fn addresses(manager: &DiscoveryManager<ScrapeConfig>) -> Vec<String> {
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
