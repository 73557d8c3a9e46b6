//! Settings of the rule manager shared by every group: the evaluation mode per
//! group, the restore of `for` state after a restart, resend delay, external labels.

use std::collections::BTreeMap;
use std::time::Duration;

/// Which times rules are evaluated at (with a [`Maintained`] runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvaluationMode {
    /// At the group interval, like Prometheus.
    #[default]
    Interval,
    /// Whenever a sample the rule reads arrives or expires, with exact `for` timers.
    OnArrival,
}

/// A rule manager flag's value that is refused.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    /// `--rules.evaluation` is neither `interval` nor `on-arrival`.
    #[error("unknown rule evaluation mode {0:?} (expected \"interval\" or \"on-arrival\")")]
    EvaluationMode(String),
    /// `--rules.alert.for-restore` is neither `keep` nor `prometheus`.
    #[error("unknown for-restore mode {0:?} (expected \"keep\" or \"prometheus\")")]
    ForRestore(String),
    /// `--rules.on-arrival-groups` is no regex.
    #[error("invalid group name regex: {0}")]
    GroupsRegex(#[source] regex::Error),
}

impl std::str::FromStr for EvaluationMode {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, OptionError> {
        match s {
            "interval" => Ok(EvaluationMode::Interval),
            "on-arrival" => Ok(EvaluationMode::OnArrival),
            other => Err(OptionError::EvaluationMode(other.to_string())),
        }
    }
}

/// The evaluation mode of every group: `--rules.evaluation` for all groups, except
/// groups whose name matches `--rules.on-arrival-groups`, which are evaluated on
/// arrival. (A flag rather than a rule-file field keeps rule files valid for promtool.)
#[derive(Clone, Debug, Default)]
pub struct EvaluationPolicy {
    /// `--rules.evaluation`.
    pub default: EvaluationMode,
    /// `--rules.on-arrival-groups`, anchored at both ends like Prometheus's regexes.
    pub on_arrival_groups: Option<regex::Regex>,
}

impl EvaluationPolicy {
    /// The mode of the group named `group`.
    pub fn mode_for(&self, group: &str) -> EvaluationMode {
        match &self.on_arrival_groups {
            Some(re) if re.is_match(group) => EvaluationMode::OnArrival,
            _ => self.default,
        }
    }

    /// The `--rules.on-arrival-groups` pattern as given (without the anchors).
    pub fn groups_pattern(&self) -> Option<&str> {
        let anchored = self.on_arrival_groups.as_ref()?.as_str();
        anchored.strip_prefix("^(?:")?.strip_suffix(")$")
    }

    /// Parses a `--rules.on-arrival-groups` value into an anchored regex.
    pub fn parse_groups(pattern: &str) -> Result<regex::Regex, OptionError> {
        // Compiled unanchored first so an error points into the pattern as written.
        regex::Regex::new(pattern)
            .and_then(|_| regex::Regex::new(&format!("^(?:{pattern})$")))
            .map_err(OptionError::GroupsRegex)
    }
}

impl PartialEq for EvaluationPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.default == other.default
            && self.on_arrival_groups.as_ref().map(|r| r.as_str())
                == other.on_arrival_groups.as_ref().map(|r| r.as_str())
    }
}

/// How a pending alert's `activeAt` comes back after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForRestore {
    /// The alert keeps its `activeAt` (the downtime counts towards `for`), whatever
    /// its `for`: an alert pending when promflow stopped fires when it would have.
    #[default]
    Keep,
    /// Prometheus 2.42's algorithm: only for `for` >= the grace period, the downtime
    /// does not count, and a restored alert fires no sooner than the grace period.
    Prometheus,
}

impl std::str::FromStr for ForRestore {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, OptionError> {
        match s {
            "keep" => Ok(ForRestore::Keep),
            "prometheus" => Ok(ForRestore::Prometheus),
            other => Err(OptionError::ForRestore(other.to_string())),
        }
    }
}

/// Settings shared by all groups.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerOptions {
    /// `global.evaluation_interval`.
    pub default_interval: Duration,
    /// `global.external_labels` (for templates; the notifier adds them to alerts).
    pub external_labels: BTreeMap<String, String>,
    /// `--web.external-url`.
    pub external_url: String,
    /// How often a firing alert is re-sent (Prometheus's `--rules.alert.resend-delay`, 1m).
    pub resend_delay: Duration,
    /// `--rules.evaluation` and `--rules.on-arrival-groups`.
    pub evaluation: EvaluationPolicy,
    /// `--rules.alert.for-outage-tolerance`: the longest downtime after which alert
    /// state is still restored (1h).
    pub for_outage_tolerance: Duration,
    /// `--rules.alert.for-grace-period`: the least time between restore and firing of
    /// a restored pending alert whose `for` is at least this long (10m).
    pub for_grace_period: Duration,
    /// `--rules.alert.for-restore`.
    pub for_restore: ForRestore,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            default_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay: Duration::from_secs(60),
            evaluation: EvaluationPolicy::default(),
            for_outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
            for_restore: ForRestore::Keep,
        }
    }
}
