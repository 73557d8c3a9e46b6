//! Targets: what one scrape loop scrapes, resolved from a scrape config.
//!
//! Follows Prometheus: a target starts as its discovered labels plus `__address__`,
//! `__scheme__`, `__metrics_path__`, `__scrape_interval__`, `__scrape_timeout__`,
//! `__param_<name>` and `job`; `relabel_configs` run over that set (a target may be
//! dropped); `instance` defaults to `__address__`; labels starting with `__` are then
//! removed, and the URL is built from the reserved labels.
//!
//! A target whose relabeled labels cannot make a target (no `__address__`, an address
//! that is not `host:port` such as a URL, an interval or timeout that does not parse
//! or a timeout above the interval) is neither active nor dropped: it is a failure,
//! with Prometheus 2.42's message (`instance 0 in group 0: "http://…" is not a valid
//! hostname`), which the caller logs as Prometheus does ("Creating target failed").

pub use crate::discovery::TargetGroup;

use crate::config::{format_duration, DurationError, ScrapeConfig};
use crate::relabel;
use dataflows::Labels;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Limits applied to each scrape of a target (0 = no limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeLimits {
    /// Uncompressed body size in bytes.
    pub body_size: u64,
    /// Samples after metric relabeling.
    pub samples: u64,
    /// Labels per sample.
    pub labels: u64,
    /// Length of a label name.
    pub label_name_length: u64,
    /// Length of a label value.
    pub label_value_length: u64,
}

/// One target, ready to scrape.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// The job (scrape pool) it belongs to.
    pub job: String,
    /// The URL scraped.
    pub url: String,
    /// Labels before relabeling (for `/api/v1/targets`' `discoveredLabels`).
    pub discovered_labels: BTreeMap<String, String>,
    /// Labels attached to every sample of the target (`job`, `instance`, …).
    pub labels: Labels,
    /// How often to scrape.
    pub interval: Duration,
    /// How long one scrape may take.
    pub timeout: Duration,
    /// Scraped labels win over target labels on conflict.
    pub honor_labels: bool,
    /// Use timestamps the target exposes.
    pub honor_timestamps: bool,
    /// Per-scrape limits.
    pub limits: ScrapeLimits,
    /// The scrape config it came from (for metric relabeling).
    pub config: Arc<ScrapeConfig>,
    /// Set when the job has more targets than its `target_limit`: the target is listed
    /// but not scraped, and every scrape interval reports this error with `up` 0
    /// (Prometheus's forced error).
    pub forced_error: Option<String>,
}

impl TargetSpec {
    /// The identity of the target: same URL and labels means the same target, even if
    /// it came from several groups or configs.
    pub fn identity(&self) -> u64 {
        let mut pairs: Vec<(String, String)> = self
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        pairs.push(("__url__".into(), self.url.clone()));
        Labels::from_pairs(pairs).hash()
    }

    /// Whether two specs of the same identity scrape the same way (else the loop
    /// restarts). The protocols asked for and the native-histogram settings count: a
    /// reload that turns `scrape_native_histograms` on changes both the `Accept` header
    /// and what a histogram's series text becomes (the new loop starts a new cache).
    pub fn same_settings(&self, other: &TargetSpec) -> bool {
        let (a, b) = (&self.config, &other.config);
        let same_native = a.scrape_protocols == b.scrape_protocols
            && a.scrape_native_histograms == b.scrape_native_histograms
            && a.always_scrape_classic_histograms == b.always_scrape_classic_histograms
            && a.convert_classic_histograms_to_nhcb == b.convert_classic_histograms_to_nhcb
            && a.native_histogram_bucket_limit == b.native_histogram_bucket_limit
            && a.native_histogram_min_bucket_factor.to_bits()
                == b.native_histogram_min_bucket_factor.to_bits();
        same_native
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.honor_labels == other.honor_labels
            && self.honor_timestamps == other.honor_timestamps
            && self.limits == other.limits
            && self.forced_error == other.forced_error
            && self.config.http == other.config.http
            && self.config.metric_relabel_configs.len() == other.config.metric_relabel_configs.len()
            && format!("{:?}", self.config.metric_relabel_configs)
                == format!("{:?}", other.config.metric_relabel_configs)
    }
}

/// Targets of one scrape config, the ones relabeling dropped (with their labels), and
/// the ones that failed (see the module docs).
#[derive(Default)]
pub struct ResolvedTargets {
    /// Targets to scrape.
    pub active: Vec<TargetSpec>,
    /// Discovered labels of targets dropped by relabeling.
    pub dropped: Vec<BTreeMap<String, String>>,
    /// Why targets could not be created, in Prometheus's words.
    pub failures: Vec<String>,
}

/// Resolves the targets of `config` from its target groups.
pub fn resolve(config: &Arc<ScrapeConfig>, groups: &[TargetGroup]) -> ResolvedTargets {
    let mut out = ResolvedTargets::default();
    for group in groups {
        for (index, target) in group.targets.iter().enumerate() {
            // Earlier entries win (see `dedup_keep_first`), in Prometheus's precedence:
            // params, then the target's own labels, then group labels, then the
            // defaults that apply only where discovery set nothing (or set "").
            let mut pairs: Vec<(String, String)> = Vec::new();
            for (name, values) in &config.params {
                if let Some(first) = values.first() {
                    pairs.push((format!("__param_{name}"), first.clone()));
                }
            }
            let defaults = [
                ("job", config.job_name.clone()),
                ("__scheme__", config.scheme.as_str().to_string()),
                ("__metrics_path__", config.metrics_path.clone()),
                (
                    "__scrape_interval__",
                    format_duration(config.scrape_interval),
                ),
                ("__scrape_timeout__", format_duration(config.scrape_timeout)),
            ];
            let is_defaulted = |name: &str, value: &str| {
                value.is_empty() && defaults.iter().any(|(d, _)| *d == name)
            };
            pairs.extend(
                target
                    .iter()
                    .chain(
                        group
                            .labels
                            .iter()
                            .filter(|(n, _)| !target.contains_key(*n)),
                    )
                    .filter(|(n, v)| !is_defaulted(n, v))
                    .map(|(n, v)| (n.clone(), v.clone())),
            );
            pairs.extend(defaults.iter().map(|(n, v)| (n.to_string(), v.clone())));
            // Empty values are no labels: Prometheus 2.42 shows none in discoveredLabels
            // (checked against it in tests/targets_api.rs).
            let discovered: BTreeMap<String, String> = dedup_keep_first(pairs)
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect();
            let input = Labels::from_pairs(discovered.clone().into_iter().collect());
            match relabel::process(&config.relabel_configs, &input) {
                Some(labels) => match finish_target(config, labels, discovered) {
                    Ok(spec) => out.active.push(spec),
                    Err(e) => out
                        .failures
                        .push(format!("instance {index} in group {}: {e}", group.source)),
                },
                None => out.dropped.push(discovered),
            }
        }
    }
    enforce_target_limit(config.target_limit, &mut out);
    out
}

/// `target_limit`, as Prometheus 2.42 applies it to a scrape pool: when the distinct
/// targets after relabeling are more than the limit, none is scraped and each reports
/// `target_limit exceeded (number of targets: N, limit: M)`.
fn enforce_target_limit(limit: u64, out: &mut ResolvedTargets) {
    if limit == 0 {
        return;
    }
    let distinct: std::collections::HashSet<u64> =
        out.active.iter().map(TargetSpec::identity).collect();
    if distinct.len() as u64 <= limit {
        return;
    }
    let error = format!(
        "target_limit exceeded (number of targets: {}, limit: {limit})",
        distinct.len()
    );
    for spec in &mut out.active {
        spec.forced_error = Some(error.clone());
    }
}

/// Keeps the first value of each label name (group labels come first and win).
fn dedup_keep_first(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .filter(|(n, _)| seen.insert(n.clone()))
        .collect()
}

/// Why relabeled labels make no target, in Prometheus's words (`PopulateLabels`).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `__address__` is missing or empty.
    #[error("no address")]
    NoAddress,
    /// `__address__` has a path.
    #[error("{0:?} is not a valid hostname")]
    InvalidHostname(String),
    /// `__scrape_interval__` is no duration.
    #[error("error parsing scrape interval: {0}")]
    Interval(#[source] DurationError),
    /// `__scrape_timeout__` is no duration.
    #[error("error parsing scrape timeout: {0}")]
    Timeout(#[source] DurationError),
    /// The interval is 0.
    #[error("scrape interval cannot be 0")]
    ZeroInterval,
    /// The timeout is 0.
    #[error("scrape timeout cannot be 0")]
    ZeroTimeout,
    /// The timeout is longer than the interval.
    #[error("scrape timeout cannot be greater than scrape interval ({:?} > {:?})", format_duration(*.timeout), format_duration(*.interval))]
    TimeoutOverInterval {
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
}

/// The target of relabeled `labels`, or Prometheus's reason why there is none
/// (`PopulateLabels` in Prometheus 2.42).
fn finish_target(
    config: &Arc<ScrapeConfig>,
    labels: Labels,
    discovered: BTreeMap<String, String>,
) -> Result<TargetSpec, TargetError> {
    let scheme = labels.get("__scheme__").unwrap_or("http").to_string();
    let address = match labels.get("__address__") {
        None | Some("") => return Err(TargetError::NoAddress),
        Some(address) => with_default_port(address, &scheme),
    };
    if address.contains('/') {
        return Err(TargetError::InvalidHostname(address));
    }
    let interval = match labels.get("__scrape_interval__") {
        None => config.scrape_interval,
        Some(text) => crate::config::parse_duration(text).map_err(TargetError::Interval)?,
    };
    let timeout = match labels.get("__scrape_timeout__") {
        None => config.scrape_timeout,
        Some(text) => crate::config::parse_duration(text).map_err(TargetError::Timeout)?,
    };
    if interval.is_zero() {
        return Err(TargetError::ZeroInterval);
    }
    if timeout.is_zero() {
        return Err(TargetError::ZeroTimeout);
    }
    if timeout > interval {
        return Err(TargetError::TimeoutOverInterval { timeout, interval });
    }
    let path = labels
        .get("__metrics_path__")
        .unwrap_or("/metrics")
        .to_string();
    let mut query: Vec<(String, String)> = Vec::new();
    for (name, values) in &config.params {
        // A relabeled __param_<name> replaces the first value; the rest stay.
        let first = labels
            .get(&format!("__param_{name}"))
            .map(str::to_string)
            .or_else(|| values.first().cloned());
        for (i, value) in values.iter().enumerate() {
            let value = if i == 0 {
                first.clone().unwrap_or_default()
            } else {
                value.clone()
            };
            query.push((name.clone(), value));
        }
    }
    for (name, value) in labels.iter() {
        if let Some(param) = name.strip_prefix("__param_") {
            if !config.params.contains_key(param) {
                query.push((param.to_string(), value.to_string()));
            }
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    if !query.is_empty() {
        let encoded: Vec<String> = query
            .iter()
            .map(|(n, v)| format!("{}={}", url_encode(n), url_encode(v)))
            .collect();
        url.push(if path.contains('?') { '&' } else { '?' });
        url.push_str(&encoded.join("&"));
    }
    let mut final_pairs: Vec<(String, String)> = labels
        .iter()
        .filter(|(n, _)| !n.starts_with("__"))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if labels.get("instance").is_none() {
        final_pairs.push(("instance".into(), address.clone()));
    }
    Ok(TargetSpec {
        job: config.job_name.clone(),
        url,
        discovered_labels: discovered,
        labels: Labels::from_pairs(final_pairs),
        interval,
        timeout,
        honor_labels: config.honor_labels,
        honor_timestamps: config.honor_timestamps,
        limits: ScrapeLimits {
            body_size: config.body_size_limit,
            samples: config.sample_limit,
            labels: config.label_limit,
            label_name_length: config.label_name_length_limit,
            label_value_length: config.label_value_length_limit,
        },
        config: config.clone(),
        forced_error: None,
    })
}

/// Prometheus 2.42 gives an address without a port the scheme's default one (`:80`
/// for http, `:443` for https); an address that is not valid either way is kept.
fn with_default_port(address: &str, scheme: &str) -> String {
    let (has_port, can_add) = match address.strip_prefix('[') {
        Some(_) => (address.contains("]:"), address.ends_with(']')),
        None => match address.matches(':').count() {
            0 => (false, !address.is_empty()),
            1 => (true, false),
            _ => (false, false),
        },
    };
    match (has_port, can_add, scheme) {
        (false, true, "https") => format!("{address}:443"),
        (false, true, _) => format!("{address}:80"),
        _ => address.to_string(),
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod default_port_tests {
    use super::with_default_port;

    #[test]
    fn adds_the_scheme_port_only_where_prometheus_does() {
        assert_eq!(with_default_port("host", "http"), "host:80");
        assert_eq!(with_default_port("host", "https"), "host:443");
        assert_eq!(with_default_port("host:9100", "http"), "host:9100");
        assert_eq!(with_default_port("[::1]", "http"), "[::1]:80");
        assert_eq!(with_default_port("[::1]:9100", "https"), "[::1]:9100");
        assert_eq!(with_default_port("a:b:c", "http"), "a:b:c");
        assert_eq!(with_default_port("", "http"), "");
    }
}
