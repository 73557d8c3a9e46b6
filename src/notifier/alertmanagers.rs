//! Which Alertmanagers alerts go to: every `alerting.alertmanagers[]` entry is a set
//! whose targets come from the providers of [`crate::discovery`] (the entry's
//! `static_configs` and `*_sd_configs`, started for it as for a scrape job), resolved
//! into URLs like Prometheus 2.42's `notifier.AlertmanagerFromGroup`.
//!
//! Contract of [`resolve`]: each discovered target starts as its own labels,
//! `__scheme__` (the entry's `scheme`), `__alerts_path__` (`path_prefix` joined with
//! `/api/v2/alerts` like Go's `path.Join`) and the group's labels it does not have
//! itself; the entry's `relabel_configs` run over that set. A target they drop is a
//! dropped Alertmanager, shown by the URL of its labels before relabeling; a kept one
//! is sent to at `__scheme__://__address__` + `__alerts_path__`. A kept address
//! containing `/` is an error that skips its whole group (logged), as in Prometheus.
//! Identical URLs of one set are kept once (the first); dropped ones are all listed.

use crate::config::{AlertmanagerConfig, SdConfig};
use crate::discovery::{DiscoverySet, TargetGroup, ADDRESS_LABEL};
use dataflows::Labels;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The label holding the URL scheme of an Alertmanager.
pub const SCHEME_LABEL: &str = "__scheme__";
/// The label holding the path alerts are POSTed to.
pub const ALERTS_PATH_LABEL: &str = "__alerts_path__";

/// One `alerting.alertmanagers[]` entry with its position in the list (its identity
/// across reloads, as Prometheus's `config-<index>`).
#[derive(Clone, Debug)]
pub struct AlertmanagerSet {
    /// Position in `alerting.alertmanagers`.
    pub index: usize,
    /// The entry.
    pub config: AlertmanagerConfig,
}

impl AlertmanagerSet {
    /// The sets of `alerting.alertmanagers`, in order.
    pub fn of(configs: &[AlertmanagerConfig]) -> Vec<AlertmanagerSet> {
        configs
            .iter()
            .enumerate()
            .map(|(index, config)| AlertmanagerSet {
                index,
                config: config.clone(),
            })
            .collect()
    }
}

/// An Alertmanager set's key: its index, shown as Prometheus names it (`config-0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlertmanagerSetKey(pub usize);

impl std::fmt::Display for AlertmanagerSetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config-{}", self.0)
    }
}

impl DiscoverySet for AlertmanagerSet {
    type Key = AlertmanagerSetKey;
    fn key(&self) -> AlertmanagerSetKey {
        AlertmanagerSetKey(self.index)
    }
    fn providers(&self) -> Vec<SdConfig> {
        self.config.sd_configs.providers()
    }
}

/// The Alertmanagers of one set.
#[derive(Clone, Debug)]
pub struct ResolvedAlertmanagers {
    /// The set they came from (its timeout, credentials and TLS settings apply).
    pub set: Arc<AlertmanagerSet>,
    /// URLs alerts are POSTed to, without duplicates, in discovery order.
    pub active: Vec<String>,
    /// URLs of the targets relabeling dropped.
    pub dropped: Vec<String>,
}

/// Resolves a set's discovered groups; see the module contract.
pub fn resolve(set: &Arc<AlertmanagerSet>, groups: &[TargetGroup]) -> ResolvedAlertmanagers {
    let mut resolved = ResolvedAlertmanagers {
        set: set.clone(),
        active: Vec::new(),
        dropped: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for group in groups {
        match from_group(group, &set.config) {
            Ok((active, dropped)) => {
                resolved
                    .active
                    .extend(active.into_iter().filter(|url| seen.insert(url.clone())));
                resolved.dropped.extend(dropped);
            }
            Err(error) => tracing::error!(
                set = %set.key(),
                source = %group.source,
                %error,
                "creating discovered Alertmanagers failed"
            ),
        }
    }
    resolved
}

/// Why a discovered group gives no Alertmanagers (Prometheus's wording).
#[derive(Debug, thiserror::Error)]
#[error("{address:?} is not a valid hostname")]
struct InvalidHostname {
    /// `__address__` after relabeling.
    address: String,
}

/// Prometheus's `AlertmanagerFromGroup`: the kept and the dropped Alertmanagers of
/// one group, or why the group is unusable.
fn from_group(
    group: &TargetGroup,
    config: &AlertmanagerConfig,
) -> Result<(Vec<String>, Vec<String>), InvalidHostname> {
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    for target in &group.targets {
        let mut labels: BTreeMap<String, String> = group.labels.clone();
        labels.insert(SCHEME_LABEL.into(), config.scheme.as_str().into());
        labels.insert(ALERTS_PATH_LABEL.into(), alerts_path(&config.path_prefix));
        labels.extend(target.iter().map(|(k, v)| (k.clone(), v.clone())));
        let discovered = Labels::from_pairs(labels.into_iter().collect());
        match crate::relabel::process(&config.relabel_configs, &discovered) {
            None => dropped.push(url_of(&discovered)),
            Some(kept) => {
                let address = kept.get(ADDRESS_LABEL).unwrap_or("");
                if address.contains('/') {
                    return Err(InvalidHostname {
                        address: address.to_string(),
                    });
                }
                active.push(url_of(&kept));
            }
        }
    }
    Ok((active, dropped))
}

/// The URL of an Alertmanager's labels, as Go's `url.URL{Scheme, Host, Path}` prints
/// it.
fn url_of(labels: &Labels) -> String {
    let scheme = labels.get(SCHEME_LABEL).unwrap_or("");
    let host = labels.get(ADDRESS_LABEL).unwrap_or("");
    let path = labels.get(ALERTS_PATH_LABEL).unwrap_or("");
    let mut url = String::new();
    if !scheme.is_empty() {
        url.push_str(scheme);
        url.push(':');
    }
    if !host.is_empty() || !path.is_empty() {
        url.push_str("//");
    }
    url.push_str(host);
    if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
        url.push('/');
    }
    url.push_str(path);
    url
}

/// Go's `path.Join("/", prefix, "/api/v2/alerts")`: rooted, `.`, `..` and empty
/// segments cleaned away.
pub fn alerts_path(prefix: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in prefix.split('/').chain(["api", "v2", "alerts"]) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::discovery::LabelMap;
    use std::path::Path;

    fn set(alerting_entry: &str) -> Arc<AlertmanagerSet> {
        let text = format!("alerting:\n  alertmanagers:\n  - {alerting_entry}");
        let config = Config::load_str(&text, "t.yml", Path::new("/")).unwrap();
        Arc::new(AlertmanagerSet::of(&config.alerting.alertmanagers).remove(0))
    }

    fn group(addresses: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            source: "0".into(),
            targets: addresses
                .iter()
                .map(|a| LabelMap::from([(ADDRESS_LABEL.to_string(), a.to_string())]))
                .collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn urls(targets: &[String]) -> Vec<&str> {
        targets.iter().map(String::as_str).collect()
    }

    #[test]
    fn alerts_path_is_joined_like_go_path_join() {
        assert_eq!(alerts_path("/"), "/api/v2/alerts");
        assert_eq!(alerts_path(""), "/api/v2/alerts");
        assert_eq!(alerts_path("am"), "/am/api/v2/alerts");
        assert_eq!(alerts_path("//am//x/"), "/am/x/api/v2/alerts");
        assert_eq!(alerts_path("/a/../b/./c"), "/b/c/api/v2/alerts");
        assert_eq!(alerts_path("/../.."), "/api/v2/alerts");
    }

    #[test]
    fn relabeling_sees_scheme_path_and_group_labels_and_may_drop() {
        let set = set("scheme: https\n    path_prefix: /pre\n    relabel_configs:\n    - source_labels: [role]\n      regex: spare\n      action: drop\n    - source_labels: [__address__]\n      regex: '(.*):9093'\n      target_label: __alerts_path__\n      replacement: /$1/alerts\n");
        let resolved = resolve(
            &set,
            &[
                group(&["a:9093", "b:9094"], &[("role", "main")]),
                group(&["c:9093"], &[("role", "spare")]),
            ],
        );
        assert_eq!(
            urls(&resolved.active),
            [
                "https://a:9093/a/alerts",
                "https://b:9094/pre/api/v2/alerts"
            ]
        );
        // Dropped ones show their URL before relabeling.
        assert_eq!(
            urls(&resolved.dropped),
            ["https://c:9093/pre/api/v2/alerts"]
        );
    }

    #[test]
    fn duplicates_are_kept_once_and_a_bad_address_skips_its_group() {
        let set = set("relabel_configs:\n    - source_labels: [__address__]\n      regex: 'bad'\n      target_label: __address__\n      replacement: x/y\n");
        let resolved = resolve(
            &set,
            &[
                group(&["a:1", "a:1"], &[]),
                group(&["ok:2", "bad"], &[]),
                group(&["a:1", "b:1"], &[]),
            ],
        );
        assert_eq!(
            urls(&resolved.active),
            ["http://a:1/api/v2/alerts", "http://b:1/api/v2/alerts"]
        );
        assert!(resolved.dropped.is_empty());
    }

    #[test]
    fn a_target_label_wins_over_the_group_and_the_defaults() {
        let set = set("static_configs: []\n");
        let mut g = group(&["a:1"], &[("__scheme__", "https")]);
        g.targets[0].insert(SCHEME_LABEL.into(), "https".into());
        let resolved = resolve(&set, &[g]);
        assert_eq!(urls(&resolved.active), ["https://a:1/api/v2/alerts"]);
    }
}
