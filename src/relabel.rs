//! Relabeling with Prometheus semantics (`relabel_configs`, `metric_relabel_configs`,
//! later `alert_relabel_configs` and `write_relabel_configs`).
//!
//! Contract: [`process`] runs the steps in order over a label set and returns the
//! result, or `None` if a step dropped it; [`steps`] returns what each step left
//! (`/api/v1/targets/relabel_steps`, the web UI's "why was it dropped"). Regexes are already fully anchored by the
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
    let mut set = to_map(labels);
    for step in steps {
        if !apply(step, &mut set) {
            return None;
        }
    }
    Some(Labels::from_pairs(set.into_iter().collect()))
}

/// What each of `steps` leaves of `labels`, in order: the label set after it and
/// whether it is still kept. The step that drops the set keeps the labels it saw and
/// says `false`; the steps after it run no more and say `false` too (as Prometheus's
/// `relabel_steps` answers: each step's output is the process up to it).
pub fn steps(steps: &[RelabelConfig], labels: &Labels) -> Vec<(BTreeMap<String, String>, bool)> {
    let mut set = to_map(labels);
    let mut kept = true;
    steps
        .iter()
        .map(|step| {
            kept = kept && apply(step, &mut set);
            (set.clone(), kept)
        })
        .collect()
}

fn to_map(labels: &Labels) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
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

/// One table per action. Expectations follow Prometheus 2.42's documentation of
/// `relabel_config` and its `model/relabel` code (the hashmod values are Go's
/// `sum64(md5(value)) % modulus`, computed independently with Python's hashlib).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// The validated steps of `relabel_configs` written as YAML list items.
    fn steps(yaml: &str) -> Vec<RelabelConfig> {
        let text = format!(
            "scrape_configs:\n- job_name: t\n  relabel_configs:\n{}",
            yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let config = Config::load_str(&text, "t.yml", Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        config.scrape_configs[0].relabel_configs.clone()
    }

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    /// Runs each `(yaml, input, expected)` row; `None` = dropped.
    fn check(rows: &[(&str, Pairs, Option<Pairs>)]) {
        for (yaml, input, expected) in rows {
            let got = process(&steps(yaml), &Labels::from_strs(input));
            let want = expected.map(Labels::from_strs);
            assert_eq!(got, want, "step:\n{yaml}\ninput: {input:?}");
        }
    }

    #[test]
    fn replace() {
        check(&[
            // The docs' address rewrite: ${1} and a literal suffix.
            (
                "- source_labels: [__meta_ec2_private_ip]\n  regex: '(.+)'\n  replacement: '${1}:9100'\n  target_label: __address__",
                &[("__meta_ec2_private_ip", "10.0.0.1"), ("__address__", "x:1")],
                Some(&[("__meta_ec2_private_ip", "10.0.0.1"), ("__address__", "10.0.0.1:9100")]),
            ),
            // Defaults: regex (.*), replacement $1, separator ';' joins sources.
            (
                "- source_labels: [a, b]\n  target_label: c",
                &[("a", "x"), ("b", "y")],
                Some(&[("a", "x"), ("b", "y"), ("c", "x;y")]),
            ),
            // The regex is anchored: a partial match does nothing.
            (
                "- source_labels: [a]\n  regex: 'b'\n  target_label: c\n  replacement: hit",
                &[("a", "abc")],
                Some(&[("a", "abc")]),
            ),
            // An empty result deletes the target label.
            (
                "- source_labels: [missing]\n  target_label: a",
                &[("a", "x")],
                Some(&[]),
            ),
            // $1x is the (missing) group named "1x", as in Go: empty.
            (
                "- source_labels: [a]\n  regex: '(.*)'\n  replacement: '$1x'\n  target_label: b",
                &[("a", "v")],
                Some(&[("a", "v")]),
            ),
            // Named groups and a templated target label.
            (
                "- source_labels: [a]\n  regex: '(?P<k>[a-z]+)=(?P<v>.*)'\n  replacement: '${v}'\n  target_label: 'tag_${k}'",
                &[("a", "env=prod")],
                Some(&[("a", "env=prod"), ("tag_env", "prod")]),
            ),
            // A target label that expands to an invalid name is left alone.
            (
                "- source_labels: [a]\n  regex: '(.*)'\n  target_label: '${1}'",
                &[("a", "1bad")],
                Some(&[("a", "1bad")]),
            ),
        ]);
    }

    #[test]
    fn keep_and_drop() {
        let keep = "- source_labels: [__meta_ec2_tag_Name]\n  regex: 'prod-.+'\n  action: keep";
        let drop = "- source_labels: [__meta_ec2_tag_Name]\n  regex: 'prod-.+'\n  action: drop";
        let prod: &[(&str, &str)] = &[("__meta_ec2_tag_Name", "prod-web-1")];
        let dev: &[(&str, &str)] = &[("__meta_ec2_tag_Name", "dev-web-1")];
        check(&[
            (keep, prod, Some(prod)),
            (keep, dev, None),
            // A missing label is the empty string, which 'prod-.+' does not match.
            (keep, &[], None),
            (drop, prod, None),
            (drop, dev, Some(dev)),
            // Anchoring: "xprod-1" does not match 'prod-.+'.
            (keep, &[("__meta_ec2_tag_Name", "xprod-1")], None),
        ]);
    }

    #[test]
    fn keepequal_and_dropequal() {
        let keep = "- source_labels: [a]\n  target_label: b\n  action: keepequal";
        let drop = "- source_labels: [a]\n  target_label: b\n  action: dropequal";
        let same: &[(&str, &str)] = &[("a", "1"), ("b", "1")];
        let differ: &[(&str, &str)] = &[("a", "1"), ("b", "2")];
        check(&[
            (keep, same, Some(same)),
            (keep, differ, None),
            // Both missing: "" == "".
            (keep, &[], Some(&[])),
            (drop, same, None),
            (drop, differ, Some(differ)),
        ]);
    }

    #[test]
    fn hashmod() {
        check(&[
            (
                "- source_labels: [__address__]\n  modulus: 8\n  target_label: __tmp_hash\n  action: hashmod",
                &[("__address__", "10.0.0.1:9100")],
                Some(&[("__address__", "10.0.0.1:9100"), ("__tmp_hash", "5")]),
            ),
            (
                "- source_labels: [a, b]\n  modulus: 3\n  target_label: h\n  action: hashmod",
                &[("a", "a"), ("b", "b")],
                Some(&[("a", "a"), ("b", "b"), ("h", "2")]),
            ),
            (
                "- source_labels: [missing]\n  modulus: 5\n  target_label: h\n  action: hashmod",
                &[],
                Some(&[("h", "3")]),
            ),
            (
                "- source_labels: [n]\n  modulus: 1000\n  target_label: h\n  action: hashmod",
                &[("n", "node-1")],
                Some(&[("n", "node-1"), ("h", "462")]),
            ),
        ]);
    }

    #[test]
    fn labelmap() {
        check(&[
            // The docs' Kubernetes example: copy node labels under their own names.
            (
                "- regex: '__meta_kubernetes_node_label_(.+)'\n  action: labelmap",
                &[
                    ("__meta_kubernetes_node_label_zone", "a"),
                    ("__meta_kubernetes_node_label_arch", "amd64"),
                    ("job", "k"),
                ],
                Some(&[
                    ("__meta_kubernetes_node_label_zone", "a"),
                    ("__meta_kubernetes_node_label_arch", "amd64"),
                    ("job", "k"),
                    ("zone", "a"),
                    ("arch", "amd64"),
                ]),
            ),
            (
                "- regex: '__meta_ec2_tag_(.+)'\n  replacement: 'tag_$1'\n  action: labelmap",
                &[("__meta_ec2_tag_Name", "web")],
                Some(&[("__meta_ec2_tag_Name", "web"), ("tag_Name", "web")]),
            ),
        ]);
    }

    #[test]
    fn labeldrop_and_labelkeep() {
        let input: &[(&str, &str)] = &[
            ("job", "j"),
            ("instance", "i"),
            ("tmp_a", "1"),
            ("tmp_b", "2"),
        ];
        check(&[
            (
                "- regex: 'tmp_.*'\n  action: labeldrop",
                input,
                Some(&[("job", "j"), ("instance", "i")]),
            ),
            (
                "- regex: 'job|instance'\n  action: labelkeep",
                input,
                Some(&[("job", "j"), ("instance", "i")]),
            ),
            // Anchored on the name: 'tmp' alone matches nothing.
            ("- regex: 'tmp'\n  action: labeldrop", input, Some(input)),
        ]);
    }

    #[test]
    fn lowercase_and_uppercase() {
        check(&[
            (
                "- source_labels: [a, b]\n  target_label: l\n  action: lowercase",
                &[("a", "MiXeD"), ("b", "Ä")],
                Some(&[("a", "MiXeD"), ("b", "Ä"), ("l", "mixed;ä")]),
            ),
            (
                "- source_labels: [a]\n  target_label: u\n  action: uppercase",
                &[("a", "web-1")],
                Some(&[("a", "web-1"), ("u", "WEB-1")]),
            ),
        ]);
    }

    #[test]
    fn steps_run_in_order_and_stop_at_a_drop() {
        check(&[(
            "- source_labels: [a]\n  target_label: b\n- source_labels: [b]\n  regex: x\n  action: drop\n- target_label: never\n  replacement: set",
            &[("a", "x")],
            None,
        )]);
    }
}
