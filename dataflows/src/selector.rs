//! Series selectors: a conjunction of label matchers, as in `{job="node", mode!~"idle|iowait"}`.
//!
//! Regexes are fully anchored like Prometheus's. A matcher on a label the series does
//! not have sees the empty string, so `{foo=""}` matches series without `foo`.

use crate::labels::Labels;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How one matcher compares a label value.
#[derive(Clone, Debug)]
pub enum MatchKind {
    /// `=`
    Equal(String),
    /// `!=`
    NotEqual(String),
    /// `=~`, the regex already anchored.
    Regex(Regex),
    /// `!~`, the regex already anchored.
    NotRegex(Regex),
}

/// Why [`LabelMatcher::new`] refused a matcher.
#[derive(Clone, Debug, PartialEq)]
pub enum MatcherError {
    /// The value of `=~` / `!~` is not a regex.
    InvalidRegex {
        /// The label name.
        name: String,
        /// The regex as written.
        value: String,
        /// What the regex crate said.
        source: regex::Error,
    },
    /// The operator is none of `=`, `!=`, `=~`, `!~`.
    UnknownOperator(String),
}

impl std::fmt::Display for MatcherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatcherError::InvalidRegex {
                name,
                value,
                source,
            } => write!(f, "invalid regex {value:?} for label {name}: {source}"),
            MatcherError::UnknownOperator(op) => write!(f, "unknown match operator {op:?}"),
        }
    }
}

impl std::error::Error for MatcherError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MatcherError::InvalidRegex { source, .. } => Some(source),
            MatcherError::UnknownOperator(_) => None,
        }
    }
}

/// One label matcher.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub kind: MatchKind,
}

impl LabelMatcher {
    /// Builds a matcher; `op` is one of `=`, `!=`, `=~`, `!~`. Regexes are anchored here.
    pub fn new(name: &str, op: &str, value: &str) -> Result<LabelMatcher, MatcherError> {
        let anchored = || {
            Regex::new(&format!("^(?:{value})$")).map_err(|source| MatcherError::InvalidRegex {
                name: name.to_string(),
                value: value.to_string(),
                source,
            })
        };
        let kind = match op {
            "=" => MatchKind::Equal(value.to_string()),
            "!=" => MatchKind::NotEqual(value.to_string()),
            "=~" => MatchKind::Regex(anchored()?),
            "!~" => MatchKind::NotRegex(anchored()?),
            other => return Err(MatcherError::UnknownOperator(other.to_string())),
        };
        Ok(LabelMatcher {
            name: name.to_string(),
            kind,
        })
    }

    /// The operator and the value as held: a regex already anchored.
    fn op_and_value(&self) -> (&'static str, &str) {
        match &self.kind {
            MatchKind::Equal(v) => ("=", v),
            MatchKind::NotEqual(v) => ("!=", v),
            MatchKind::Regex(r) => ("=~", r.as_str()),
            MatchKind::NotRegex(r) => ("!~", r.as_str()),
        }
    }

    /// Whether a label value (empty when absent) satisfies this matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match &self.kind {
            MatchKind::Equal(v) => v == value,
            MatchKind::NotEqual(v) => v != value,
            MatchKind::Regex(r) => r.is_match(value),
            MatchKind::NotRegex(r) => !r.is_match(value),
        }
    }
}

/// A conjunction of matchers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Selector {
    /// All must match.
    pub matchers: Vec<LabelMatcher>,
}

impl Selector {
    /// Whether the series with `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches_value(labels.get(&m.name).unwrap_or("")))
    }
}

/// Written as `(name, operator, value)`, a regex as held (anchored), so reading it
/// back compiles the same regex (a plan crosses processes in a rule change).
impl Serialize for LabelMatcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (op, value) = self.op_and_value();
        (&self.name, op, value).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LabelMatcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, op, value) = <(String, String, String)>::deserialize(deserializer)?;
        let regex = || Regex::new(&value).map_err(serde::de::Error::custom);
        let kind = match op.as_str() {
            "=" => MatchKind::Equal(value.clone()),
            "!=" => MatchKind::NotEqual(value.clone()),
            "=~" => MatchKind::Regex(regex()?),
            "!~" => MatchKind::NotRegex(regex()?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown match operator {other:?}"
                )))
            }
        };
        Ok(LabelMatcher { name, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_matcher_kinds() {
        let l = Labels::from_strs(&[("__name__", "up"), ("job", "node")]);
        let sel = |ms: &[(&str, &str, &str)]| Selector {
            matchers: ms
                .iter()
                .map(|(n, o, v)| LabelMatcher::new(n, o, v).unwrap())
                .collect(),
        };
        assert!(sel(&[("job", "=", "node")]).matches(&l));
        assert!(!sel(&[("job", "!=", "node")]).matches(&l));
        assert!(sel(&[("job", "=~", "no.*")]).matches(&l));
        // Anchored: a partial match is no match.
        assert!(!sel(&[("job", "=~", "no")]).matches(&l));
        assert!(sel(&[("job", "!~", "no")]).matches(&l));
        // Absent label is the empty string.
        assert!(sel(&[("missing", "=", "")]).matches(&l));
        assert!(!sel(&[("missing", "=~", ".+")]).matches(&l));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(LabelMatcher::new("a", "=~", "(").is_err());
    }
}
