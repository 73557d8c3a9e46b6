//! `otlp:`: how the OTLP receiver (`/api/v1/otlp/v1/metrics`) translates OpenTelemetry
//! metrics, with Prometheus 3.x's fields, defaults and checks (`config/config.go`,
//! `OTLPConfig`).
//!
//! Supported: `translation_strategy` (the four strategies), `promote_resource_attributes`,
//! `promote_all_resource_attributes` with `ignore_resource_attributes`, and
//! `keep_identifying_resource_attributes` and `convert_histograms_to_nhcb` (explicit-bucket
//! histograms stored as native histograms with custom buckets instead of classic series).

use std::collections::BTreeSet;

use serde::Serialize;

use super::locate::FieldPath;
use super::raw::{RawOtlpConfig, ScalarText};
use super::validate::Problems;

/// How OTLP metric and attribute names become Prometheus names (`otlp.translation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TranslationStrategy {
    /// Escape to `[a-zA-Z0-9_:]` and add unit and type suffixes (the default).
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Escape, without unit or type suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// Keep UTF-8 names, add suffixes.
    NoUTF8EscapingWithSuffixes,
    /// Names as sent.
    NoTranslation,
}

impl TranslationStrategy {
    /// Whether names are escaped to the legacy character set.
    pub fn escapes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::UnderscoreEscapingWithoutSuffixes
        )
    }

    /// Whether unit and type suffixes are added.
    pub fn adds_suffixes(self) -> bool {
        matches!(
            self,
            TranslationStrategy::UnderscoreEscapingWithSuffixes
                | TranslationStrategy::NoUTF8EscapingWithSuffixes
        )
    }
}

/// `otlp:` resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OtlpConfig {
    /// Resource attributes copied onto every series of the resource.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub promote_resource_attributes: Vec<String>,
    /// Copy every resource attribute but `ignore_resource_attributes`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub promote_all_resource_attributes: bool,
    /// Not promoted by `promote_all_resource_attributes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore_resource_attributes: Vec<String>,
    /// Name translation.
    pub translation_strategy: TranslationStrategy,
    /// Keep `service.name`, `service.namespace`, `service.instance.id` on `target_info`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_identifying_resource_attributes: bool,
    /// Explicit-bucket histograms as native histograms with custom buckets (schema -53)
    /// instead of classic `_bucket`/`_sum`/`_count` series.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub convert_histograms_to_nhcb: bool,
}

impl OtlpConfig {
    /// Whether nothing differs from the defaults.
    pub fn is_default(&self) -> bool {
        *self == OtlpConfig::default()
    }
}

/// Resolves `otlp:`.
pub(crate) fn resolve_otlp(
    raw: Option<&RawOtlpConfig>,
    path: &FieldPath,
    problems: &mut Problems,
) -> OtlpConfig {
    let Some(raw) = raw else {
        return OtlpConfig::default();
    };
    let translation_strategy = match raw.translation_strategy.as_ref().map(|s| s.0.as_str()) {
        None | Some("") | Some("UnderscoreEscapingWithSuffixes") => {
            TranslationStrategy::UnderscoreEscapingWithSuffixes
        }
        Some("UnderscoreEscapingWithoutSuffixes") => {
            TranslationStrategy::UnderscoreEscapingWithoutSuffixes
        }
        Some("NoUTF8EscapingWithSuffixes") => TranslationStrategy::NoUTF8EscapingWithSuffixes,
        Some("NoTranslation") => TranslationStrategy::NoTranslation,
        Some(other) => {
            problems.push(
                path.key("translation_strategy"),
                format!("unsupported OTLP translation strategy {other:?}"),
            );
            TranslationStrategy::default()
        }
    };
    let promote_all = raw.promote_all_resource_attributes.unwrap_or(false);
    let promote = attribute_list(
        raw.promote_resource_attributes.as_deref(),
        "promoted",
        &path.key("promote_resource_attributes"),
        problems,
    );
    let ignore = attribute_list(
        raw.ignore_resource_attributes.as_deref(),
        "ignored",
        &path.key("ignore_resource_attributes"),
        problems,
    );
    if promote_all && !promote.is_empty() {
        problems.push(
            path.key("promote_resource_attributes"),
            "'promote_all_resource_attributes' and 'promote_resource_attributes' cannot be configured simultaneously",
        );
    }
    if !ignore.is_empty() && !promote_all {
        problems.push(
            path.key("ignore_resource_attributes"),
            "'ignore_resource_attributes' cannot be configured unless 'promote_all_resource_attributes' is true",
        );
    }
    OtlpConfig {
        promote_resource_attributes: promote,
        promote_all_resource_attributes: promote_all,
        ignore_resource_attributes: ignore,
        translation_strategy,
        keep_identifying_resource_attributes: raw
            .keep_identifying_resource_attributes
            .unwrap_or(false),
        convert_histograms_to_nhcb: raw.convert_histograms_to_nhcb.unwrap_or(false),
    }
}

/// Trimmed attribute names; empty and duplicated ones are problems (Prometheus's messages).
fn attribute_list(
    raw: Option<&[ScalarText]>,
    kind: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, name) in raw.unwrap_or(&[]).iter().enumerate() {
        let name = name.0.trim();
        if name.is_empty() {
            problems.push(
                path.index(i),
                format!("empty {kind} OTel resource attribute"),
            );
            continue;
        }
        if !seen.insert(name.to_string()) {
            problems.push(
                path.index(i),
                format!("duplicated {kind} OTel resource attribute {name:?}"),
            );
            continue;
        }
        out.push(name.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, TranslationStrategy};
    use std::path::Path;

    fn load(yaml: &str) -> Result<Config, String> {
        Config::load_str(yaml, "p.yml", Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn resolves_and_checks_like_prometheus() {
        let c = load("otlp:\n  promote_resource_attributes: [' host.name ', k8s.pod.name]\n  translation_strategy: NoTranslation\n").unwrap();
        assert_eq!(
            c.otlp.promote_resource_attributes,
            ["host.name", "k8s.pod.name"]
        );
        assert_eq!(
            c.otlp.translation_strategy,
            TranslationStrategy::NoTranslation
        );
        assert!(load("").unwrap().otlp.is_default());
        assert!(
            load("otlp:\n  convert_histograms_to_nhcb: true\n")
                .unwrap()
                .otlp
                .convert_histograms_to_nhcb
        );
        for (yaml, message) in [
            ("otlp:\n  promote_resource_attributes: [a, a]\n", "duplicated promoted OTel resource attribute \"a\""),
            ("otlp:\n  promote_resource_attributes: ['  ']\n", "empty promoted OTel resource attribute"),
            ("otlp:\n  translation_strategy: Bogus\n", "unsupported OTLP translation strategy \"Bogus\""),
            ("otlp:\n  promote_all_resource_attributes: true\n  promote_resource_attributes: [a]\n", "cannot be configured simultaneously"),
            ("otlp:\n  ignore_resource_attributes: [a]\n", "cannot be configured unless 'promote_all_resource_attributes' is true"),
            ("remote_write:\n- url: http://x/w\n  protobuf_message: foo\n", "unknown remote write protobuf message \"foo\""),
        ] {
            let err = load(yaml).unwrap_err();
            assert!(err.contains(message), "{yaml}: {err}");
        }
    }
}
