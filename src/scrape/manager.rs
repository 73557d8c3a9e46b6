//! The scrape manager: keeps one running loop per wanted target.
//!
//! Contract of [`ScrapeManager::apply`]: given the full set of wanted targets, loops for
//! targets no longer wanted stop and write stale markers; new targets start; a target
//! with the same identity and settings keeps its loop (and its staleness state); one
//! whose settings changed is restarted without stale markers. Identical targets from
//! several groups are scraped once. A loop scrapes with its job's client (see
//! [`ScrapeManager::set_job_clients`]); a job's `tls_config` is part of its targets'
//! settings, so changing it restarts them with the new client.

use crate::scrape::scrape_loop::{self, LoopContext, StopSignal, TargetHealth};
use crate::scrape::target::TargetSpec;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

struct RunningTarget {
    spec: Arc<TargetSpec>,
    health: Arc<Mutex<TargetHealth>>,
    stop: StopSignal,
}

/// A snapshot of one target, for the API.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    /// What is scraped.
    pub spec: Arc<TargetSpec>,
    /// How the last scrape went.
    pub health: TargetHealth,
}

/// Owns the scrape loops.
pub struct ScrapeManager {
    /// `client` is the fallback for a job without an entry in `job_clients`.
    ctx: LoopContext,
    /// Each job's HTTP client (its `tls_config`), by job name.
    job_clients: Mutex<HashMap<String, reqwest::Client>>,
    running: Mutex<HashMap<u64, RunningTarget>>,
}

impl ScrapeManager {
    /// A manager with no targets.
    pub fn new(ctx: LoopContext) -> ScrapeManager {
        ScrapeManager {
            ctx,
            job_clients: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the jobs' HTTP clients (on every config load); loops started from now
    /// on use them.
    pub fn set_job_clients(&self, clients: HashMap<String, reqwest::Client>) {
        *self.job_clients.lock() = clients;
    }

    /// Reconciles the running loops with `wanted`; see the module contract. Must be
    /// called from within a tokio runtime.
    pub fn apply(&self, wanted: Vec<TargetSpec>) {
        let mut wanted_by_id: HashMap<u64, TargetSpec> = HashMap::new();
        for spec in wanted {
            wanted_by_id.entry(spec.identity()).or_insert(spec);
        }
        let mut running = self.running.lock();
        running.retain(|id, target| {
            let keep = wanted_by_id
                .get(id)
                .is_some_and(|spec| spec.same_settings(&target.spec));
            if !keep {
                // Stale markers only if the target is gone, not when it is restarted.
                let _ = target.stop.send(Some(!wanted_by_id.contains_key(id)));
            }
            keep
        });
        for (id, spec) in wanted_by_id {
            if running.contains_key(&id) {
                continue;
            }
            let spec = Arc::new(spec);
            let health = Arc::new(Mutex::new(TargetHealth {
                health: "unknown",
                ..TargetHealth::default()
            }));
            let (stop, stop_rx) = watch::channel(None);
            let client = self.job_clients.lock().get(&spec.job).cloned();
            let ctx = LoopContext {
                client: client.unwrap_or_else(|| self.ctx.client.clone()),
                ..self.ctx.clone()
            };
            tokio::spawn(scrape_loop::run(spec.clone(), ctx, health.clone(), stop_rx));
            running.insert(id, RunningTarget { spec, health, stop });
        }
    }

    /// Stops every loop, writing stale markers.
    pub fn stop_all(&self) {
        self.apply(Vec::new());
    }

    /// The targets being scraped, sorted by job then URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let running = self.running.lock();
        let mut out: Vec<TargetStatus> = running
            .values()
            .map(|t| TargetStatus {
                spec: t.spec.clone(),
                health: t.health.lock().clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.spec.job, &a.spec.url).cmp(&(&b.spec.job, &b.spec.url)));
        out
    }
}
