//! `static_configs`: fixed target groups written in the config file.
//!
//! Contract: [`groups`] turns a job's `static_configs` into target groups, one per
//! entry, in order, with no `__meta_*` labels (as Prometheus). Nothing runs in the
//! background: the groups are known as soon as the config is.

use super::TargetGroup;
use crate::config::StaticConfig;

/// The target groups of `static_configs` (`source` is the entry's index).
pub fn groups(configs: &[StaticConfig]) -> Vec<TargetGroup> {
    configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            TargetGroup::from_addresses(index.to_string(), &config.targets, config.labels.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn one_group_per_entry_with_its_labels() {
        let configs = vec![StaticConfig {
            targets: vec!["a:1".into(), "b:2".into()],
            labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        }];
        let groups = groups(&configs);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets.len(), 2);
        assert_eq!(groups[0].targets[1]["__address__"], "b:2");
        assert_eq!(groups[0].labels["env"], "prod");
    }
}
