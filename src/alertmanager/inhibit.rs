//! Inhibition (Alertmanager 0.25's `inhibit` package): a firing source alert mutes
//! target alerts that have the same values for the rule's `equal` labels.
//!
//! Contract: an alert matching both a rule's source and target matchers is never
//! muted by itself (Alertmanager's "two-sided match" exclusion); resolved sources do
//! not inhibit; a label missing on both sides counts as equal.

use crate::alertmanager::alert::{Alert, Nanos};
use crate::alertmanager::config::InhibitRule;
use std::collections::HashMap;

/// The fingerprints of the alerts that inhibit `target` at `now` (empty: not muted).
pub fn inhibited_by(
    rules: &[InhibitRule],
    alerts: &HashMap<u64, Alert>,
    target: &Alert,
    now: Nanos,
) -> Vec<u64> {
    let target_fp = target.fingerprint();
    let mut by = Vec::new();
    for rule in rules {
        if !rule.target.matches(&target.labels) {
            continue;
        }
        for (fp, source) in alerts {
            if *fp == target_fp || source.resolved_at(now) || !rule.source.matches(&source.labels) {
                continue;
            }
            let equal = rule
                .equal
                .iter()
                .all(|l| source.labels.get(l) == target.labels.get(l));
            if equal {
                by.push(*fp);
            }
        }
    }
    by.sort_unstable();
    by.dedup();
    by
}
