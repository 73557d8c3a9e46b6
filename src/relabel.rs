//! Relabeling with Prometheus semantics (`relabel_configs`, `metric_relabel_configs`,
//! later `alert_relabel_configs` and `write_relabel_configs`).
//!
//! Contract: [`process`] runs the steps in order over a label set and returns the
//! result, or `None` if a step dropped it. Regexes are already fully anchored by the
//! config loader. Mirrors Prometheus 2.42's `model/relabel`.

use crate::config::{RelabelAction, RelabelConfig};
use dataflows::Labels;
use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// Applies `steps` to `labels`; `None` means dropped.
pub fn process(steps: &[RelabelConfig], labels: &Labels) -> Option<Labels> {
    if steps.is_empty() {
        return Some(labels.clone());
    }
    let mut set: BTreeMap<String, String> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for step in steps {
        if !apply(step, &mut set) {
            return None;
        }
    }
    Some(Labels::from_pairs(set.into_iter().collect()))
}

/// Applies one step; `false` means the label set is dropped.
fn apply(step: &RelabelConfig, set: &mut BTreeMap<String, String>) -> bool {
    let value = step
        .source_labels
        .iter()
        .map(|n| set.get(n).map(String::as_str).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&step.separator);
    let regex = &step.regex;
    match step.action {
        RelabelAction::Drop => return !regex.is_match(&value),
        RelabelAction::Keep => return regex.is_match(&value),
        RelabelAction::DropEqual => {
            return set
                .get(&step.target_label)
                .map(String::as_str)
                .unwrap_or("")
                != value
        }
        RelabelAction::KeepEqual => {
            return set
                .get(&step.target_label)
                .map(String::as_str)
                .unwrap_or("")
                == value
        }
        RelabelAction::Replace => {
            let Some(captures) = regex.captures(&value) else {
                return true;
            };
            let mut target = String::new();
            captures.expand(&step.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut replaced = String::new();
            captures.expand(&step.replacement, &mut replaced);
            if replaced.is_empty() {
                set.remove(&target);
            } else {
                set.insert(target, replaced);
            }
        }
        RelabelAction::Lowercase => {
            set.insert(step.target_label.clone(), value.to_lowercase());
        }
        RelabelAction::Uppercase => {
            set.insert(step.target_label.clone(), value.to_uppercase());
        }
        RelabelAction::HashMod => {
            let modulus = step.modulus.max(1);
            set.insert(
                step.target_label.clone(),
                (hash_md5_64(&value) % modulus).to_string(),
            );
        }
        RelabelAction::LabelMap => {
            let renamed: Vec<(String, String)> = set
                .iter()
                .filter(|(name, _)| regex.is_match(name))
                .map(|(name, v)| {
                    (
                        regex
                            .replace_all(name, step.replacement.as_str())
                            .into_owned(),
                        v.clone(),
                    )
                })
                .collect();
            for (name, v) in renamed {
                set.insert(name, v);
            }
        }
        RelabelAction::LabelDrop => set.retain(|name, _| !regex.is_match(name)),
        RelabelAction::LabelKeep => set.retain(|name, _| regex.is_match(name)),
    }
    true
}

/// Prometheus's `sum64(md5(value))`: the last 8 bytes of the MD5 digest, big-endian.
fn hash_md5_64(value: &str) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut last8 = [0u8; 8];
    last8.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(last8)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
