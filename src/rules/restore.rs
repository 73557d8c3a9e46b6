//! Alert state across a restart.
//!
//! Owns two things:
//! - [`restore_for_state`]: the `for` restore. Each alert that the first evaluation
//!   after startup made pending (in a cluster too: every process seeds the rule
//!   windows from its own storage, so that evaluation sees every process's series,
//!   `dataflows::render::seed`) gets its `activeAt` from the last sample of its
//!   `ALERTS_FOR_STATE` series written before startup, within the outage tolerance
//!   (none or a stale marker: nothing to restore). By default
//!   ([`ForRestore::Keep`]) that `activeAt` is kept as it was: an alert pending when
//!   promflow stopped fires when it would have, and a firing one fires again at once.
//!   With [`ForRestore::Prometheus`] it is Prometheus's restore (`rules/manager.go`,
//!   `Group.RestoreForState`, 2.42): only rules whose `for` is at least the grace
//!   period; with `downAt` that sample's time (whole seconds), `pending = downAt −
//!   activeAt`, `remaining = for − pending`: if `remaining <= 0` (it was firing) the old
//!   `activeAt` is kept; if `remaining < grace` it fires `grace` after the restore
//!   (`activeAt = t + grace − for`); otherwise the downtime does not count (`activeAt =
//!   old + (t − downAt)`; the arithmetic is the alert kernel's,
//!   `dataflows::render::alert_state::restored_active_at`). Prometheus restores
//!   after its second evaluation and suppresses `ALERTS` until then; promflow's rule
//!   windows are seeded from storage, so it restores at the first one, reading only
//!   samples written before startup.
//! - [`KeepFiringFile`]: what Prometheus loses, firing alerts of rules with
//!   `keep_firing_for`. They are saved (labels, annotations, `activeAt`, fired and
//!   keep-firing times) in `rules-keep-firing.json` in the storage directory, written
//!   atomically (temporary file, fsync, rename) when they change and every
//!   [`HEARTBEAT`] while any exist. At startup, a file younger than the outage
//!   tolerance restores them as firing into the unchanged rules they came from; an
//!   alert whose condition no longer holds then keeps firing for `keep_firing_for`
//!   (counted from the saved time it left the result, else from the first evaluation
//!   after startup) and resolves, and Alertmanager is told both.

use crate::ingest::now_ms;
use crate::rules::alert::{for_state_series, Alert, AlertCore, AlertState};
use crate::rules::file::Rule;
use crate::rules::group::GroupState;
use crate::rules::options::{ForRestore, ManagerOptions};
use dataflows::labels::METRIC_NAME;
use dataflows::promql::eval::SeriesSource;
use dataflows::render::alert_state::{RestorePolicy, ALERT_NAME};
use dataflows::render::alerting::ForRestoreSeed;
use dataflows::{LabelMatcher, Labels, Selector};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How often the keep-firing file is rewritten while it holds alerts.
pub const HEARTBEAT_MS: i64 = 5_000;
/// Same, as a duration.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(HEARTBEAT_MS as u64);

/// The file name in the storage directory.
pub const KEEP_FIRING_FILE: &str = "rules-keep-firing.json";

/// Prometheus's restore for rules of `state` evaluated (first since startup) at
/// `t_ms`; `started_ms` is when the process started (samples from then on are ours).
pub fn restore_for_state(
    state: &mut GroupState,
    rule_index: usize,
    t_ms: i64,
    started_ms: i64,
    source: &dyn SeriesSource,
    options: &ManagerOptions,
) {
    let mint = t_ms - options.for_outage_tolerance.as_millis() as i64;
    let Some(alerts) = state.rules[rule_index].alerts.as_mut() else {
        return;
    };
    let last_before_start = |alert: &Arc<Labels>| {
        let series = for_state_series(alert);
        let selector = Selector {
            matchers: series
                .iter()
                .filter_map(|(k, v)| LabelMatcher::new(k, "=", v).ok())
                .collect(),
        };
        let found = source
            .select(&selector, mint, started_ms - 1)
            .into_iter()
            .find(|(l, _)| **l == *series);
        found.and_then(|(_, points)| points.last().copied())
    };
    for (labels, restored) in alerts.restore_for(t_ms, restore_policy(options), last_before_start) {
        tracing::info!(alert = %labels, active_at_ms = restored, "restored alert 'for' state");
    }
}

/// The `for` restore `options` ask for.
pub fn restore_policy(options: &ManagerOptions) -> RestorePolicy {
    match options.for_restore {
        ForRestore::Keep => RestorePolicy::Keep,
        ForRestore::Prometheus => RestorePolicy::Prometheus {
            grace_ms: options.for_grace_period.as_millis() as i64,
        },
    }
}

/// One saved alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedAlert {
    /// The group's file.
    pub file: PathBuf,
    /// The group's name.
    pub group: String,
    /// The rule's identity ([`crate::rules::file::Rule::identity`]).
    pub rule: String,
    /// Final labels.
    pub labels: BTreeMap<String, String>,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// The result's value.
    pub value: f64,
    /// `activeAt` (ms).
    pub active_at_ms: i64,
    /// When it started firing (ms).
    pub fired_at_ms: Option<i64>,
    /// Since when it has been kept firing without being in the result (ms).
    pub keep_firing_since_ms: Option<i64>,
}

#[derive(Default, Serialize, Deserialize)]
struct FileContents {
    saved_at_ms: i64,
    alerts: Vec<SavedAlert>,
}

/// Saved alerts per group (file, name).
type SavedByGroup = BTreeMap<(PathBuf, String), Vec<SavedAlert>>;

/// The keep-firing state file; see the module doc.
pub struct KeepFiringFile {
    path: PathBuf,
    /// The saved alerts, and the last write time.
    saved: Mutex<(SavedByGroup, i64)>,
}

impl KeepFiringFile {
    /// The file at `path` (not read yet).
    pub fn new(path: PathBuf) -> KeepFiringFile {
        KeepFiringFile {
            path,
            saved: Mutex::new((BTreeMap::new(), 0)),
        }
    }

    /// The saved alerts, if the file was written within `tolerance`; they also become
    /// the current contents, so groups not yet evaluated keep them.
    pub fn load(&self, tolerance: std::time::Duration) -> Vec<SavedAlert> {
        let contents: FileContents = match std::fs::read(&self.path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "ignoring unreadable alert state file");
                    return Vec::new();
                }
            },
            Err(_) => return Vec::new(),
        };
        if now_ms() - contents.saved_at_ms > tolerance.as_millis() as i64 {
            tracing::info!(path = %self.path.display(), "alert state file older than the outage tolerance; not restored");
            return Vec::new();
        }
        let mut saved = self.saved.lock();
        for a in &contents.alerts {
            saved
                .0
                .entry((a.file.clone(), a.group.clone()))
                .or_default()
                .push(a.clone());
        }
        contents.alerts
    }

    /// Forgets the saved alerts of groups not in `groups` (file, name).
    pub fn retain_groups(&self, groups: &std::collections::HashSet<(PathBuf, String)>) {
        self.saved.lock().0.retain(|key, _| groups.contains(key));
    }

    /// Records `state`'s firing keep-firing alerts; rewrites the file if they changed
    /// or the heartbeat is due.
    pub fn update(&self, state: &GroupState) {
        let mut current = Vec::new();
        for rs in &state.rules {
            let Some(alerts) = &rs.alerts else { continue };
            if alerts.keep_firing_for_ms() == 0 {
                continue;
            }
            for a in alerts.alerts().filter(|a| a.state == AlertState::Firing) {
                current.push(SavedAlert {
                    file: state.group.file.clone(),
                    group: state.group.name.clone(),
                    rule: rs.rule.identity(),
                    labels: a
                        .labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    annotations: a.payload.clone(),
                    value: a.value,
                    active_at_ms: a.active_at_ms,
                    fired_at_ms: a.fired_at_ms,
                    keep_firing_since_ms: a.keep_firing_since_ms,
                });
            }
        }
        let key = (state.group.file.clone(), state.group.name.clone());
        let now = now_ms();
        let mut saved = self.saved.lock();
        let previous = saved.0.get(&key).cloned().unwrap_or_default();
        let same = previous.len() == current.len()
            && previous.iter().zip(&current).all(|(a, b)| {
                a.labels == b.labels
                    && a.active_at_ms == b.active_at_ms
                    && a.keep_firing_since_ms == b.keep_firing_since_ms
            });
        let any = !current.is_empty() || saved.0.values().any(|v| !v.is_empty());
        if same && !(any && now - saved.1 >= HEARTBEAT_MS) {
            return;
        }
        if current.is_empty() {
            saved.0.remove(&key);
        } else {
            saved.0.insert(key, current);
        }
        saved.1 = now;
        let contents = FileContents {
            saved_at_ms: now,
            alerts: saved.0.values().flatten().cloned().collect(),
        };
        if let Err(e) = write_atomically(&self.path, &contents) {
            tracing::warn!(path = %self.path.display(), error = %e, "writing the alert state file failed");
        }
    }
}

fn write_atomically(path: &std::path::Path, contents: &FileContents) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(contents).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Puts the saved alerts of `state`'s unchanged rules back, as firing.
pub fn restore_keep_firing(state: &mut GroupState, saved: &[SavedAlert]) {
    for a in saved {
        if a.file != state.group.file || a.group != state.group.name {
            continue;
        }
        let Some(rs) = state.rules.iter_mut().find(|r| r.rule.identity() == a.rule) else {
            continue;
        };
        let Some(alerts) = rs.alerts.as_mut() else {
            continue;
        };
        let core = saved_core(a);
        tracing::info!(alert = %core.labels, "restored firing alert (keep_firing_for)");
        alerts.insert_if_absent(Alert::new(core, a.annotations.clone()));
    }
}

/// A saved alert's state: firing, as it was saved.
pub fn saved_core(a: &SavedAlert) -> AlertCore {
    let labels = a.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
    AlertCore {
        labels: Arc::new(Labels::from_pairs(labels.collect())),
        state: AlertState::Firing,
        value: a.value,
        active_at_ms: a.active_at_ms,
        fired_at_ms: a.fired_at_ms,
        resolved_at_ms: None,
        keep_firing_since_ms: a.keep_firing_since_ms,
    }
}

/// What the `for` restore of `rule` (labels not templates) reads, for an alert stage
/// that restores at its first step ([`ForRestoreSeed`]): the last sample in `source`
/// from `from_ms` to before `started_ms` of each of the rule's `ALERTS_FOR_STATE`
/// series, and `options`' restore. The stage takes what [`restore_for_state`] would
/// read at the first evaluation `t`, from `from_ms <= t − outage tolerance` on.
pub fn for_restore_seed(
    rule: &Rule,
    from_ms: i64,
    started_ms: i64,
    source: &dyn SeriesSource,
    options: &ManagerOptions,
) -> ForRestoreSeed {
    let name = [
        (METRIC_NAME, "ALERTS_FOR_STATE"),
        (ALERT_NAME, rule.name.as_str()),
    ];
    let labels = rule.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let selector = Selector {
        matchers: name
            .into_iter()
            .chain(labels)
            .filter_map(|(k, v)| LabelMatcher::new(k, "=", v).ok())
            .collect(),
    };
    let last = source
        .select(&selector, from_ms, started_ms - 1)
        .into_iter()
        .filter_map(|(series, points)| {
            let &(t_down, value) = points.last()?;
            let alert = series
                .iter()
                .filter(|(k, _)| *k != METRIC_NAME)
                .map(|(k, v)| (k.to_string(), v.to_string()));
            Some((Arc::new(Labels::from_pairs(alert.collect())), t_down, value))
        })
        .collect();
    ForRestoreSeed {
        policy: restore_policy(options),
        tolerance_ms: options.for_outage_tolerance.as_millis() as i64,
        last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(for_: &str) -> GroupState {
        let text = format!(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 1\n        for: {for_}\n        keep_firing_for: 5m\n"
        );
        let groups =
            crate::rules::file::load_str(&text, "r.yml", std::path::Path::new("r.yml")).unwrap();
        GroupState::new(
            groups.into_iter().next().unwrap(),
            std::time::Duration::from_secs(60),
        )
    }

    struct Stored(Vec<(i64, f64)>);
    impl SeriesSource for Stored {
        fn select(
            &self,
            sel: &Selector,
            start: i64,
            end: i64,
        ) -> dataflows::promql::eval::Selected {
            let labels = Labels::from_pairs(vec![
                ("__name__".into(), "ALERTS_FOR_STATE".into()),
                ("alertname".into(), "A".into()),
            ]);
            if !sel.matches(&labels) {
                return Vec::new();
            }
            let points = self
                .0
                .iter()
                .copied()
                .filter(|(t, _)| *t >= start && *t <= end)
                .collect();
            vec![(Arc::new(labels), points)]
        }
    }

    fn first_eval(state: &mut GroupState, t: i64) {
        let alerts = state.rules[0].alerts.as_mut().unwrap();
        let c = crate::rules::alert::Candidate {
            labels: Arc::new(Labels::from_pairs(vec![("alertname".into(), "A".into())])),
            value: 2.0,
            payload: BTreeMap::new(),
        };
        alerts.step(t, vec![c], 0).unwrap();
    }

    fn active_at(state: &GroupState) -> i64 {
        state.rules[0]
            .alerts
            .as_ref()
            .unwrap()
            .alerts()
            .next()
            .unwrap()
            .active_at_ms
    }

    const M: i64 = 60_000;

    #[test]
    fn for_restore_keeps_active_at_by_default() {
        let options = ManagerOptions::default(); // keep; tolerance 1h
                                                 // Down 2m after becoming active, 20m `for`: activeAt as it was.
        let mut s = group("20m");
        first_eval(&mut s, 105 * M);
        let stored = Stored(vec![(100 * M, 100.0 * 60.0), (102 * M + 500, 100.0 * 60.0)]);
        restore_for_state(&mut s, 0, 105 * M, 104 * M, &stored, &options);
        assert_eq!(active_at(&s), 100 * M);
        // A `for` shorter than the grace period is restored too.
        let mut s = group("5m");
        first_eval(&mut s, 103 * M);
        restore_for_state(&mut s, 0, 103 * M, 103 * M - 1, &stored, &options);
        assert_eq!(active_at(&s), 100 * M);
        // Older than the outage tolerance: not restored.
        let mut s = group("20m");
        first_eval(&mut s, 200 * M);
        restore_for_state(&mut s, 0, 200 * M, 190 * M, &stored, &options);
        assert_eq!(active_at(&s), 200 * M);
    }

    #[test]
    fn for_restore_follows_prometheus_cases() {
        let options = ManagerOptions {
            for_restore: ForRestore::Prometheus,
            ..ManagerOptions::default()
        }; // tolerance 1h, grace 10m
           // Down 2m after becoming active, 20m `for`: downtime (3m) does not count.
        let mut s = group("20m");
        first_eval(&mut s, 105 * M);
        let stored = Stored(vec![(100 * M, 100.0 * 60.0), (102 * M + 500, 100.0 * 60.0)]);
        restore_for_state(&mut s, 0, 105 * M, 104 * M, &stored, &options);
        assert_eq!(active_at(&s), 100 * M + 3 * M);
        // Already firing when it went down: activeAt kept.
        let mut s = group("20m");
        first_eval(&mut s, 140 * M);
        let stored = Stored(vec![(130 * M, 100.0 * 60.0)]);
        restore_for_state(&mut s, 0, 140 * M, 139 * M, &stored, &options);
        assert_eq!(active_at(&s), 100 * M);
        // Less than the grace period left: fires grace after the restore.
        let mut s = group("20m");
        first_eval(&mut s, 120 * M);
        let stored = Stored(vec![(115 * M, 100.0 * 60.0)]);
        restore_for_state(&mut s, 0, 120 * M, 119 * M, &stored, &options);
        assert_eq!(active_at(&s), 120 * M + 10 * M - 20 * M);
        // `for` shorter than the grace period: not restored.
        let mut s = group("5m");
        first_eval(&mut s, 120 * M);
        restore_for_state(&mut s, 0, 120 * M, 119 * M, &stored, &options);
        assert_eq!(active_at(&s), 120 * M);
        // Last sample older than the outage tolerance, or written after startup: none.
        let mut s = group("20m");
        first_eval(&mut s, 200 * M);
        let stored = Stored(vec![(130 * M, 100.0 * 60.0), (199 * M, 199.0 * 60.0)]);
        restore_for_state(&mut s, 0, 200 * M, 190 * M, &stored, &options);
        assert_eq!(active_at(&s), 200 * M);
        // A stale marker last: the alert was not active.
        let mut s = group("20m");
        first_eval(&mut s, 120 * M);
        let stored = Stored(vec![
            (110 * M, 100.0 * 60.0),
            (111 * M, dataflows::STALE_MARKER),
        ]);
        restore_for_state(&mut s, 0, 120 * M, 119 * M, &stored, &options);
        assert_eq!(active_at(&s), 120 * M);
    }

    #[test]
    fn keep_firing_alerts_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEEP_FIRING_FILE);
        let mut s = group("0s");
        first_eval(&mut s, 100 * M);
        assert_eq!(
            s.rules[0].alerts.as_ref().unwrap().rule_state(),
            AlertState::Firing
        );
        KeepFiringFile::new(path.clone()).update(&s);

        let restarted = KeepFiringFile::new(path);
        let saved = restarted.load(std::time::Duration::from_secs(3600));
        assert_eq!(saved.len(), 1);
        let mut fresh = group("0s");
        restore_keep_firing(&mut fresh, &saved);
        let alerts = fresh.rules[0].alerts.as_mut().unwrap();
        assert_eq!(alerts.rule_state(), AlertState::Firing);
        // Not in the result after the restart: kept firing for 5m, then resolved.
        alerts.step(101 * M, vec![], 0).unwrap();
        assert_eq!(alerts.rule_state(), AlertState::Firing);
        alerts.step(106 * M, vec![], 0).unwrap();
        assert_eq!(alerts.rule_state(), AlertState::Inactive);
        // A file older than the tolerance is ignored.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(restarted
            .load(std::time::Duration::from_millis(1))
            .is_empty());
    }
}
