//! The dispatcher: alert store, aggregation groups and notification log, as a pure
//! state machine driven by explicit times (Alertmanager 0.25's `provider/mem`,
//! `dispatch` and the `notify` pipeline's inhibit, silence and dedup stages).
//!
//! Owns:
//! - the alert store: alerts by fingerprint; a re-sent alert whose interval overlaps
//!   the stored one is merged into it (the same alert from several Prometheus or
//!   promflow servers is one alert);
//! - aggregation groups, one per (route, group labels): the first flush comes
//!   `group_wait` after the group is created (at once if the alert started longer
//!   ago than that), the next ones every `group_interval`; a group whose alerts are
//!   all resolved and notified is emptied and dropped at the next cleanup (30s);
//! - per flush and integration, the dedup decision of Alertmanager's `DedupStage`
//!   against the notification log (what was last notified as firing/resolved, and
//!   when): notify on new firing alerts, on newly resolved ones (`send_resolved`),
//!   when everything resolved, or when `repeat_interval` passed — never otherwise;
//! - inhibited and silenced alerts are left out of notifications.
//!
//! Contract: [`Dispatcher::take_due`] hands out [`Flush`]es to deliver; the caller
//! reports each with [`Dispatcher::complete`]. Only delivered integrations are
//! logged, so a failed delivery is tried again at the next `group_interval`.
//! Nothing here does I/O or reads the clock.

use crate::alertmanager::alert::{Alert, Nanos};
use crate::alertmanager::config::{Integration, NotifyConfig};
use crate::alertmanager::inhibit::inhibited_by;
use crate::alertmanager::route::{label_set_string, Route};
use crate::alertmanager::silence::Silences;
use crate::alertmanager::template::Data;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How often empty aggregation groups are dropped.
const CLEANUP_INTERVAL: Nanos = 30_000_000_000;
/// Resolved alerts stay in the store this long (Alertmanager's GC interval).
const RESOLVED_RETENTION: Nanos = 30 * 60 * 1_000_000_000;
/// Shortest time a delivery (with retries) may take (Alertmanager's `MinTimeout`).
const MIN_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

fn nanos(d: Duration) -> Nanos {
    d.as_nanos().min(i64::MAX as u128) as Nanos
}

struct Group {
    route: usize,
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<u64, Alert>,
    next_flush: Nanos,
    has_flushed: bool,
    in_flight: bool,
}

/// What was last notified for a (group, receiver, integration).
#[derive(Clone, Debug, PartialEq)]
struct LogEntry {
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    at: Nanos,
}

/// A notification log entry's key, as Alertmanager's `nflogpb.Receiver` with the
/// group: group key, receiver name, integration kind (`slack`) and its position among
/// the receiver's integrations of that kind — so reordering a receiver's
/// `*_configs` lists does not hand one integration's log to another.
type LogKey = (String, String, &'static str, usize);

/// One integration's delivery in a flush.
#[derive(Clone, Debug)]
pub struct Job {
    /// The integration's position among its receiver's integrations of the same
    /// kind (Alertmanager's `Idx`).
    pub index: usize,
    /// The integration.
    pub integration: Integration,
    /// The notification's data (only the alerts to send).
    pub data: Data,
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
}

/// One aggregation group's notification, to deliver.
#[derive(Clone, Debug)]
pub struct Flush {
    /// Group key (`route key:group labels`), as in webhook's `groupKey`.
    pub group_key: String,
    /// Receiver name.
    pub receiver: String,
    /// Deliveries, one per integration that needs one.
    pub jobs: Vec<Job>,
    /// How long deliveries (with retries) may take.
    pub timeout: Duration,
    at: Nanos,
    snapshot: Vec<(u64, Nanos, bool)>,
}

/// An alert as the API lists it.
#[derive(Clone, Debug)]
pub struct AlertStatus {
    /// The alert.
    pub alert: Alert,
    /// Receivers it routes to.
    pub receivers: Vec<String>,
    /// Inhibiting alerts' fingerprints.
    pub inhibited_by: Vec<u64>,
    /// Silences muting it.
    pub silenced_by: Vec<String>,
}

/// An aggregation group as the API lists it.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    /// The group's labels.
    pub labels: BTreeMap<String, String>,
    /// Its route's receiver.
    pub receiver: String,
    /// Its unresolved alerts.
    pub alerts: Vec<AlertStatus>,
}

/// See the module doc.
pub struct Dispatcher {
    config: Arc<NotifyConfig>,
    external_url: String,
    routes: Vec<Route>,
    alerts: HashMap<u64, Alert>,
    groups: BTreeMap<String, Group>,
    log: HashMap<LogKey, LogEntry>,
    /// Silences.
    pub silences: Silences,
    last_cleanup: Nanos,
}

impl Dispatcher {
    /// An empty dispatcher for `config`.
    pub fn new(config: Arc<NotifyConfig>, external_url: &str) -> Dispatcher {
        let mut routes = Vec::new();
        config.route.walk(&mut routes);
        let routes = routes.into_iter().cloned().collect();
        Dispatcher {
            config,
            external_url: external_url.trim_end_matches('/').to_string(),
            routes,
            alerts: HashMap::new(),
            groups: BTreeMap::new(),
            log: HashMap::new(),
            silences: Silences::default(),
            last_cleanup: 0,
        }
    }

    /// A dispatcher for a new config that keeps this one's alerts, notification log
    /// and silences (a reload): groups are rebuilt from the stored alerts.
    pub fn reconfigure(
        self,
        config: Arc<NotifyConfig>,
        external_url: &str,
        now: Nanos,
    ) -> Dispatcher {
        let mut next = Dispatcher::new(config, external_url);
        next.log = self.log;
        next.silences = self.silences;
        let mut alerts: Vec<Alert> = self.alerts.into_values().collect();
        alerts.sort_by_key(|a| a.updated_at);
        for a in alerts {
            next.put(a, now);
        }
        next
    }

    /// The template set.
    pub fn templates(&self) -> crate::alertmanager::template::Templates {
        self.config.templates.clone()
    }

    /// `global.resolve_timeout`.
    pub fn resolve_timeout(&self) -> Duration {
        self.config.resolve_timeout
    }

    /// Stores an alert received at `now` and adds it to its groups.
    pub fn put(&mut self, alert: Alert, now: Nanos) {
        let fp = alert.fingerprint();
        let alert = match self.alerts.get(&fp) {
            Some(old) if old.overlaps(&alert) => old.merge(&alert, now),
            _ => alert,
        };
        self.alerts.insert(fp, alert.clone());
        let matched: Vec<usize> = self
            .config
            .route
            .matching(&alert.labels)
            .into_iter()
            .map(|r| self.route_index(r))
            .collect();
        for index in matched {
            let route = &self.routes[index];
            let labels = route.group_labels(&alert.labels);
            let key = format!("{}:{}", route.key, label_set_string(&labels));
            let wait = nanos(route.group_wait);
            let group = self.groups.entry(key).or_insert_with(|| Group {
                route: index,
                labels,
                alerts: BTreeMap::new(),
                next_flush: now + wait,
                has_flushed: false,
                in_flight: false,
            });
            group.alerts.insert(fp, alert.clone());
            if !group.has_flushed && alert.starts_at + wait < now {
                group.next_flush = group.next_flush.min(now);
            }
        }
    }

    fn route_index(&self, route: &Route) -> usize {
        let mut all = Vec::new();
        self.config.route.walk(&mut all);
        all.iter()
            .position(|r| std::ptr::eq(*r, route))
            .unwrap_or(0)
    }

    /// When the next group is due (for the caller's timer).
    pub fn next_due(&self) -> Option<Nanos> {
        self.groups
            .values()
            .filter(|g| !g.in_flight && !g.alerts.is_empty())
            .map(|g| g.next_flush)
            .min()
    }

    /// Whether an alert is muted at `now`, and by what.
    fn mutes(&self, alert: &Alert, now: Nanos) -> (Vec<u64>, Vec<String>) {
        (
            inhibited_by(&self.config.inhibit_rules, &self.alerts, alert, now),
            self.silences.silenced_by(&alert.labels, now),
        )
    }

    /// The flushes due at `now`; see the module doc.
    pub fn take_due(&mut self, now: Nanos) -> Vec<Flush> {
        if now - self.last_cleanup >= CLEANUP_INTERVAL {
            self.last_cleanup = now;
            self.groups
                .retain(|_, g| g.in_flight || !g.alerts.is_empty());
            self.alerts
                .retain(|_, a| !(a.resolved_at(now) && now - a.ends_at > RESOLVED_RETENTION));
        }
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.in_flight && !g.alerts.is_empty() && g.next_flush <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut flushes = Vec::new();
        for key in due {
            let (route, labels, alerts) = {
                let g = self.groups.get_mut(&key).expect("due group exists");
                let route = &self.routes[g.route];
                g.next_flush = now + nanos(route.group_interval);
                g.has_flushed = true;
                let mut alerts: Vec<Alert> = g.alerts.values().cloned().collect();
                alerts.sort_by(notification_order);
                (g.route, g.labels.clone(), alerts)
            };
            let route = self.routes[route].clone();
            let snapshot = alerts
                .iter()
                .map(|a| (a.fingerprint(), a.updated_at, a.resolved_at(now)))
                .collect();
            let unmuted: Vec<Alert> = alerts
                .into_iter()
                .filter(|a| {
                    let (inhibited, silenced) = self.mutes(a, now);
                    inhibited.is_empty() && silenced.is_empty()
                })
                .collect();
            let mut flush = Flush {
                group_key: key.clone(),
                receiver: route.receiver.clone(),
                jobs: Vec::new(),
                timeout: route.group_interval.max(MIN_DELIVERY_TIMEOUT),
                at: now,
                snapshot,
            };
            let receiver = self
                .config
                .receivers
                .iter()
                .find(|r| r.name == route.receiver)
                .cloned();
            if !unmuted.is_empty() {
                let mut of_kind: HashMap<&'static str, usize> = HashMap::new();
                for integration in receiver.iter().flat_map(|r| r.integrations.iter()) {
                    let kind = integration.kind();
                    let index = *of_kind.entry(kind).and_modify(|n| *n += 1).or_insert(0);
                    let firing: BTreeSet<u64> = unmuted
                        .iter()
                        .filter(|a| !a.resolved_at(now))
                        .map(Alert::fingerprint)
                        .collect();
                    let resolved: BTreeSet<u64> = unmuted
                        .iter()
                        .filter(|a| a.resolved_at(now))
                        .map(Alert::fingerprint)
                        .collect();
                    let log_key = (key.clone(), route.receiver.clone(), kind, index);
                    let entry = self.log.get(&log_key);
                    let send_resolved = integration.send_resolved();
                    if !needs_update(
                        entry,
                        &firing,
                        &resolved,
                        send_resolved,
                        route.repeat_interval,
                        now,
                    ) {
                        continue;
                    }
                    let to_send: Vec<Alert> = unmuted
                        .iter()
                        .filter(|a| send_resolved || !a.resolved_at(now))
                        .cloned()
                        .collect();
                    if to_send.is_empty() {
                        // Only resolved alerts and no send_resolved: logged, not sent.
                        self.log.insert(
                            log_key,
                            LogEntry {
                                firing,
                                resolved,
                                at: now,
                            },
                        );
                        continue;
                    }
                    flush.jobs.push(Job {
                        index,
                        integration: integration.clone(),
                        data: Data::new(
                            &route.receiver,
                            &labels,
                            &to_send,
                            &self.external_url,
                            now,
                        ),
                        firing,
                        resolved,
                    });
                }
            }
            if flush.jobs.is_empty() {
                self.complete(&flush, &[]);
            } else {
                self.groups
                    .get_mut(&key)
                    .expect("due group exists")
                    .in_flight = true;
                flushes.push(flush);
            }
        }
        flushes
    }

    /// Records the outcome of a flush: `delivered[i]` for `flush.jobs[i]`.
    pub fn complete(&mut self, flush: &Flush, delivered: &[bool]) {
        for (job, ok) in flush.jobs.iter().zip(delivered) {
            if *ok {
                self.log.insert(
                    (
                        flush.group_key.clone(),
                        flush.receiver.clone(),
                        job.integration.kind(),
                        job.index,
                    ),
                    LogEntry {
                        firing: job.firing.clone(),
                        resolved: job.resolved.clone(),
                        at: flush.at,
                    },
                );
            }
        }
        let all_ok = delivered.iter().all(|ok| *ok);
        if let Some(g) = self.groups.get_mut(&flush.group_key) {
            g.in_flight = false;
            if all_ok {
                for (fp, updated_at, resolved) in &flush.snapshot {
                    if *resolved
                        && g.alerts
                            .get(fp)
                            .is_some_and(|a| a.updated_at == *updated_at)
                    {
                        g.alerts.remove(fp);
                    }
                }
            }
        }
    }

    /// The notification log and silences, as saved in the state file: log entries
    /// and expired silences older than `retention` are left out.
    pub fn snapshot(&self, now: Nanos, retention: Duration) -> serde_json::Value {
        let retention = nanos(retention);
        let log: Vec<serde_json::Value> = self
            .log
            .iter()
            .filter(|(_, e)| e.at > now - retention)
            .map(|((group_key, receiver, kind, index), e)| {
                serde_json::json!({
                    "groupKey": group_key,
                    "receiver": receiver,
                    "integration": kind,
                    "idx": index,
                    "firing": e.firing,
                    "resolved": e.resolved,
                    "at": e.at,
                })
            })
            .collect();
        serde_json::json!({
            "log": log,
            "silences": self.silences.snapshot(now, retention),
        })
    }

    /// Restores what [`Dispatcher::snapshot`] saved; returns what could not be read.
    pub fn restore(&mut self, saved: &serde_json::Value) -> Vec<String> {
        let mut problems = Vec::new();
        let empty = Vec::new();
        for e in saved["log"].as_array().unwrap_or(&empty) {
            let set = |k: &str| -> Option<BTreeSet<u64>> {
                e[k].as_array()?
                    .iter()
                    .map(serde_json::Value::as_u64)
                    .collect()
            };
            let entry = (|| {
                // Entries of builds that keyed by position alone (no `idx`) are
                // not read: the position may now name another integration.
                let kind = e["integration"].as_str()?;
                let key = (
                    e["groupKey"].as_str()?.to_string(),
                    e["receiver"].as_str()?.to_string(),
                    crate::alertmanager::receivers::INTEGRATIONS
                        .iter()
                        .map(|(name, _)| *name)
                        .find(|name| *name == kind)?,
                    e["idx"].as_u64()? as usize,
                );
                let entry = LogEntry {
                    firing: set("firing")?,
                    resolved: set("resolved")?,
                    at: e["at"].as_i64()?,
                };
                Some((key, entry))
            })();
            match entry {
                Some((key, entry)) => {
                    self.log.insert(key, entry);
                }
                None if e["integration"].is_u64() => problems.push(format!(
                    "notification log entry of an older promflow (keyed by position), not restored: {e}"
                )),
                None => problems.push(format!("unreadable notification log entry {e}")),
            }
        }
        problems.extend(
            self.silences
                .restore(saved["silences"].as_array().unwrap_or(&empty)),
        );
        problems
    }

    /// One stored alert with its routing and muting at `now`.
    fn status_of(&self, a: &Alert, now: Nanos) -> AlertStatus {
        let (inhibited_by, silenced_by) = self.mutes(a, now);
        let mut receivers: Vec<String> = self
            .config
            .route
            .matching(&a.labels)
            .into_iter()
            .map(|r| r.receiver.clone())
            .collect();
        receivers.dedup();
        AlertStatus {
            alert: a.clone(),
            receivers,
            inhibited_by,
            silenced_by,
        }
    }

    /// Every stored alert with its routing and muting, for `GET /api/v2/alerts`.
    pub fn list(&self, now: Nanos) -> Vec<AlertStatus> {
        let mut out: Vec<AlertStatus> = self
            .alerts
            .values()
            .map(|a| self.status_of(a, now))
            .collect();
        out.sort_by(|a, b| a.alert.labels.cmp(&b.alert.labels));
        out
    }

    /// The aggregation groups with their unresolved alerts at `now`, for `GET
    /// /api/v2/alerts/groups`: ordered by group labels, then receiver (Alertmanager's
    /// `AlertGroups`), alerts in notification order; groups with no unresolved alert
    /// are left out.
    pub fn group_list(&self, now: Nanos) -> Vec<GroupStatus> {
        let mut out: Vec<GroupStatus> = self
            .groups
            .values()
            .filter_map(|g| {
                let mut alerts: Vec<&Alert> = g
                    .alerts
                    .keys()
                    .filter_map(|fp| self.alerts.get(fp))
                    .filter(|a| !a.resolved_at(now))
                    .collect();
                if alerts.is_empty() {
                    return None;
                }
                alerts.sort_by(|a, b| notification_order(a, b));
                Some(GroupStatus {
                    labels: g.labels.clone(),
                    receiver: self.routes[g.route].receiver.clone(),
                    alerts: alerts.into_iter().map(|a| self.status_of(a, now)).collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            label_set_before(&a.labels, &b.labels).then_with(|| a.receiver.cmp(&b.receiver))
        });
        out
    }

    /// Receiver names in config order.
    pub fn receiver_names(&self) -> Vec<String> {
        self.config
            .receivers
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// The configuration in force.
    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }
}

/// Prometheus's `LabelSet.Before`: fewer labels first; then, over all label names
/// in order, the first name only one set has puts that set first, else the first
/// differing value decides.
fn label_set_before(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if a.len() != b.len() {
        return a.len().cmp(&b.len());
    }
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        match (a.get(name), b.get(name)) {
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    Ordering::Equal
}

/// The order of alerts in a notification (Alertmanager's `AlertSlice`): by `job`,
/// then `instance` (alerts without the label last), then by label set (fewer labels
/// first, then pairwise by name and value).
fn notification_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for key in ["job", "instance"] {
        match (a.labels.get(key), b.labels.get(key)) {
            (None, None) => continue,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    a.labels
        .len()
        .cmp(&b.labels.len())
        .then_with(|| a.labels.iter().cmp(b.labels.iter()))
}

/// Alertmanager 0.25's `DedupStage.needsUpdate`.
fn needs_update(
    entry: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: Nanos,
) -> bool {
    let Some(entry) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&entry.firing) {
        return true;
    }
    if firing.is_empty() {
        return !entry.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&entry.resolved) {
        return true;
    }
    entry.at < now - nanos(repeat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(receiver: &str) -> Arc<NotifyConfig> {
        let text = format!(
            "route: {{receiver: r, group_wait: 0s, group_interval: 1m, repeat_interval: 4h}}\n\
             receivers:\n- name: r\n{receiver}"
        );
        Arc::new(NotifyConfig::load_str(&text, "am.yml", Path::new(".")).unwrap())
    }

    fn kinds(flushes: &[Flush]) -> Vec<(&'static str, usize)> {
        flushes
            .iter()
            .flat_map(|f| f.jobs.iter().map(|j| (j.integration.kind(), j.index)))
            .collect()
    }

    /// Adding an integration of an earlier kind to a receiver (a reload) notifies
    /// through the new one only: the log is kept per kind and position within the
    /// kind, as Alertmanager keys it, so the webhook's entry stays the webhook's.
    #[test]
    fn the_log_follows_each_integration_across_a_reload() {
        let webhook = "  webhook_configs: [{url: 'http://127.0.0.1:1/hook'}]\n";
        let email = "  email_configs: [{to: a@b.c, from: x@b.c, smarthost: '127.0.0.1:1'}]\n";
        let mut d = Dispatcher::new(config(webhook), "http://am");
        let minute = 60 * 1_000_000_000;
        let alert = Alert {
            labels: [("alertname".to_string(), "A".to_string())].into(),
            annotations: Default::default(),
            starts_at: 0,
            ends_at: 100 * minute,
            generator_url: String::new(),
            updated_at: 0,
            timeout: false,
        };
        d.put(alert, 0);
        let flushes = d.take_due(1);
        assert_eq!(kinds(&flushes), [("webhook", 0)]);
        d.complete(&flushes[0], &[true]);
        let mut d = d.reconfigure(config(&format!("{email}{webhook}")), "http://am", minute);
        let flushes = d.take_due(2 * minute);
        assert_eq!(kinds(&flushes), [("email", 0)]);
        d.complete(&flushes[0], &[true]);
        let saved = d.snapshot(2 * minute, Duration::from_secs(3600));
        let mut restored = Dispatcher::new(config(&format!("{email}{webhook}")), "http://am");
        assert!(restored.restore(&saved).is_empty());
        let mut old = saved.clone();
        old["log"][0]["integration"] = serde_json::json!(0);
        assert_eq!(
            restored.restore(&old).len(),
            1,
            "an entry keyed by position is not read"
        );
    }

    #[test]
    fn dedup_follows_alertmanager() {
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let hour = Duration::from_secs(3600);
        let entry = LogEntry {
            firing: set(&[1, 2]),
            resolved: set(&[]),
            at: 0,
        };
        assert!(needs_update(None, &set(&[1]), &set(&[]), true, hour, 0));
        assert!(!needs_update(None, &set(&[]), &set(&[1]), true, hour, 0));
        assert!(!needs_update(
            Some(&entry),
            &set(&[1]),
            &set(&[]),
            false,
            hour,
            10
        ));
        assert!(needs_update(
            Some(&entry),
            &set(&[1, 3]),
            &set(&[]),
            false,
            hour,
            10
        ));
        assert!(needs_update(
            Some(&entry),
            &set(&[1]),
            &set(&[2]),
            true,
            hour,
            10
        ));
        assert!(needs_update(
            Some(&entry),
            &set(&[]),
            &set(&[1, 2]),
            false,
            hour,
            10
        ));
        assert!(needs_update(
            Some(&entry),
            &set(&[1]),
            &set(&[]),
            false,
            hour,
            nanos(hour) + 1
        ));
    }
}
