//! `static_configs`: fixed target groups written in the config file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SdConfig, SdEntry, SdSection};
use crate::config::locate::FieldPath;
use crate::config::raw::ScalarText;
use crate::config::validate::{resolve_labels, Problems};

/// One entry of `static_configs:` (a Prometheus target group) as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawStaticConfig {
    pub targets: Option<Vec<ScalarText>>,
    pub labels: Option<BTreeMap<String, ScalarText>>,
}

/// A fixed list of targets sharing a set of labels (`static_configs[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticConfig {
    /// `host:port` addresses (the port may be left out; the scheme's default applies).
    pub targets: Vec<String>,
    /// Labels attached to every target of the group.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl SdEntry for StaticConfig {
    type Raw = RawStaticConfig;

    /// In a section without `relabel_configs` (as Prometheus decides) a target that is
    /// not a `host:port` is a problem; with relabeling, addresses are checked after
    /// it, when targets are created.
    fn resolve(
        raw: &RawStaticConfig,
        section: &SdSection<'_>,
        path: &FieldPath,
        problems: &mut Problems,
    ) -> StaticConfig {
        let mut targets = Vec::new();
        for (target_index, target) in raw.targets.iter().flatten().enumerate() {
            let target_path = path.key("targets").index(target_index);
            let address = target.0.clone();
            // promtool 2.42 rejects exactly these two; ports are checked at scrape time.
            if address.is_empty() {
                problems.push(target_path, "target has no address");
            } else if !section.relabeled && address.contains('/') {
                problems.push(target_path, format!("{address:?} is not a valid hostname"));
            }
            targets.push(address);
        }
        let labels = resolve_labels(raw.labels.as_ref(), &path.key("labels"), problems);
        StaticConfig { targets, labels }
    }

    /// One provider for all of a section's groups, whose groups are known at once.
    fn providers(entries: &[StaticConfig]) -> Vec<SdConfig> {
        if entries.is_empty() {
            Vec::new()
        } else {
            vec![SdConfig::Static(entries.to_vec())]
        }
    }
}
