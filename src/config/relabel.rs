//! Resolving one `relabel_configs[]` entry: defaults, regex compilation and the
//! per-action rules of Prometheus 2.42 (`relabel.Config.UnmarshalYAML`).
//!
//! Every rule broken is reported, not just the first; the messages are
//! Prometheus's. Applying relabel configs to labels is not done here.

use std::sync::OnceLock;

use regex::Regex;

use super::locate::FieldPath;
use super::raw::RawRelabelConfig;
use super::resolved::{RelabelAction, RelabelConfig};
use super::validate::{is_valid_label_name, Problems};

/// Default `separator`.
pub(crate) const DEFAULT_SEPARATOR: &str = ";";
/// Default `regex`.
pub(crate) const DEFAULT_REGEX: &str = "(.*)";
/// Default `replacement`.
pub(crate) const DEFAULT_REPLACEMENT: &str = "$1";

/// Compiles a relabel regex the way Prometheus does: fully anchored.
pub fn compile_anchored_regex(source: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{source})$"))
}

/// Prometheus's `relabelTarget`: label names that may contain `$1`/`${name}` references.
fn is_valid_templated_label(text: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").expect("static regex")
        })
        .is_match(text)
}

/// Resolves one relabel config at `path`, reporting every problem; `None` when
/// the entry cannot be turned into a usable step.
pub(crate) fn resolve_relabel_config(
    raw: &RawRelabelConfig,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<RelabelConfig> {
    let problems_before = problems.len();
    let action_text = raw
        .action
        .as_ref()
        .map(|a| a.0.as_str())
        .unwrap_or("replace");
    let action = RelabelAction::parse(action_text);
    if action.is_none() {
        problems.push(
            path.key("action"),
            format!("unknown relabel action {action_text:?}"),
        );
    }

    let source_labels: Vec<String> = raw
        .source_labels
        .iter()
        .flatten()
        .map(|label| label.0.clone())
        .collect();
    for (index, label) in source_labels.iter().enumerate() {
        if !is_valid_label_name(label) {
            problems.push(
                path.key("source_labels").index(index),
                format!("{label:?} is not a valid label name"),
            );
        }
    }

    let separator = raw
        .separator
        .as_ref()
        .map_or(DEFAULT_SEPARATOR, |s| &s.0)
        .to_string();
    let regex_source = raw
        .regex
        .as_ref()
        .map_or(DEFAULT_REGEX, |r| &r.0)
        .to_string();
    let regex = match compile_anchored_regex(&regex_source) {
        Ok(regex) => Some(regex),
        Err(error) => {
            problems.push(
                path.key("regex"),
                format!("invalid regex {regex_source:?}: {error}"),
            );
            None
        }
    };
    let modulus = raw.modulus.unwrap_or(0);
    let target_label = raw
        .target_label
        .as_ref()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let replacement = raw
        .replacement
        .as_ref()
        .map_or(DEFAULT_REPLACEMENT, |r| &r.0)
        .to_string();

    if let Some(action) = action {
        check_action_fields(raw, action, &target_label, &replacement, path, problems);
    }

    if problems.len() > problems_before {
        return None;
    }
    Some(RelabelConfig {
        source_labels,
        separator,
        regex: regex?,
        regex_source,
        modulus,
        target_label,
        replacement,
        action: action?,
    })
}

/// The per-action rules of Prometheus 2.42, in its order and words.
fn check_action_fields(
    raw: &RawRelabelConfig,
    action: RelabelAction,
    target_label: &str,
    replacement: &str,
    path: &FieldPath,
    problems: &mut Problems,
) {
    use RelabelAction::*;
    let name = action.as_str();
    let target_path = path.key("target_label");

    if action == HashMod && raw.modulus.unwrap_or(0) == 0 {
        problems.push(
            path.key("modulus"),
            "relabel configuration for hashmod requires non-zero modulus",
        );
    }
    let needs_target = matches!(
        action,
        Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    );
    if needs_target && target_label.is_empty() {
        problems.push(
            target_path.clone(),
            format!("relabel configuration for {name} action requires 'target_label' value"),
        );
        // The remaining target_label checks would only repeat this problem.
    } else if action == Replace && !is_valid_templated_label(target_label) {
        // Without `$`, the templated form accepts exactly the valid label names.
        problems.push(
            target_path.clone(),
            format!("{target_label:?} is invalid 'target_label' for {name} action"),
        );
    } else if matches!(
        action,
        HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    ) && !is_valid_label_name(target_label)
    {
        problems.push(
            target_path.clone(),
            format!("{target_label:?} is invalid 'target_label' for {name} action"),
        );
    }
    if matches!(action, Lowercase | Uppercase) && replacement != DEFAULT_REPLACEMENT {
        problems.push(
            path.key("replacement"),
            format!("'replacement' can not be set for {name} action"),
        );
    }
    if action == LabelMap && !is_valid_templated_label(replacement) {
        problems.push(
            path.key("replacement"),
            format!("{replacement:?} is invalid 'replacement' for {name} action"),
        );
    }
    if matches!(action, KeepEqual | DropEqual) {
        // promtool 2.42 rejects even an explicit default `regex: (.*)`, but
        // accepts an explicit default separator: it compares values, and a
        // parsed regex never equals the default one.
        let separator_changed = raw
            .separator
            .as_ref()
            .is_some_and(|s| s.0 != DEFAULT_SEPARATOR);
        let replacement_changed = replacement != DEFAULT_REPLACEMENT;
        if raw.regex.is_some()
            || raw.modulus.unwrap_or(0) != 0
            || separator_changed
            || replacement_changed
        {
            problems.push(
                path.clone(),
                format!("{name} action requires only 'source_labels' and `target_label`, and no other fields"),
            );
        }
    }
    if matches!(action, LabelDrop | LabelKeep) {
        let separator_changed = raw
            .separator
            .as_ref()
            .is_some_and(|s| s.0 != DEFAULT_SEPARATOR);
        if raw.source_labels.is_some()
            || !target_label.is_empty()
            || raw.modulus.unwrap_or(0) != 0
            || separator_changed
            || replacement != DEFAULT_REPLACEMENT
        {
            problems.push(
                path.clone(),
                format!("{name} action requires only 'regex', and no other fields"),
            );
        }
    }
}
