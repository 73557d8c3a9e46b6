//! Label sets: the identity of a series.
//!
//! A [`Labels`] value is a list of `(name, value)` pairs sorted by name, with the
//! metric name stored under `__name__` like Prometheus. Its [`Labels::hash`] is the
//! series id used to exchange samples between workers; it is stable across processes.

use serde::{Deserialize, Serialize};
use std::fmt;
use xxhash_rust::xxh3::Xxh3;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// A sorted set of labels identifying one series.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// [`Labels::from_pairs`] over borrowed `(name, value)` pairs.
    pub fn from_strs(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Builds a label set from pairs in any order; empty values are dropped, as in
    /// Prometheus where an empty label value means the label is absent. If a name
    /// repeats, the last value wins.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        // Stable sort keeps the insertion order of duplicates; keep the last one.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == name => last.1 = value,
                _ => out.push((name, value)),
            }
        }
        Labels(out)
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The metric name (`__name__`), or `""` if the series has none.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Prometheus's `labels.Hash()`: xxHash64 (seed 0) of `name 0xff value 0xff` for
    /// each label in order. Used where Prometheus's answer depends on the hash itself
    /// (`limit_ratio` picks series by it); [`Labels::hash`] is the faster series id.
    pub fn prometheus_hash(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        for (name, value) in &self.0 {
            hasher.update(name.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(value.as_bytes());
            hasher.update(&[0xff]);
        }
        hasher.digest()
    }

    /// The series id: a 64-bit hash of names and values, separated so that
    /// `{a="bc"}` and `{ab="c"}` differ.
    pub fn hash(&self) -> u64 {
        let mut hasher = Xxh3::new();
        for (name, value) in &self.0 {
            hasher.update(name.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(value.as_bytes());
            hasher.update(&[0xff]);
        }
        hasher.digest()
    }

    /// Consumes the set, returning its sorted pairs.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

impl fmt::Display for Labels {
    /// Formats like Prometheus: `name{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.metric_name())?;
        let mut first = true;
        for (name, value) in self.iter().filter(|(n, _)| *n != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{name}={value:?}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_deduplicated_last_wins() {
        let l = Labels::from_strs(&[("b", "1"), ("a", "x"), ("b", "2"), ("c", "")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "x"), ("b", "2")]);
        assert_eq!(l.get("b"), Some("2"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn prometheus_hash_is_xxhash64_of_the_label_encoding() {
        // xxHash64's published value for empty input (seed 0).
        assert_eq!(Labels::default().prometheus_hash(), 0xef46_db37_51d8_e999);
        let l = Labels::from_strs(&[("a", "b")]);
        assert_eq!(
            l.prometheus_hash(),
            xxhash_rust::xxh64::xxh64(b"a\xffb\xff", 0)
        );
    }

    #[test]
    fn hash_separates_names_from_values() {
        assert_ne!(
            Labels::from_strs(&[("a", "bc")]).hash(),
            Labels::from_strs(&[("ab", "c")]).hash()
        );
        assert_eq!(
            Labels::from_strs(&[("a", "1"), ("b", "2")]).hash(),
            Labels::from_strs(&[("b", "2"), ("a", "1")]).hash()
        );
    }

    #[test]
    fn displays_like_prometheus() {
        let l = Labels::from_strs(&[("__name__", "up"), ("job", "node"), ("instance", "h:1")]);
        assert_eq!(l.to_string(), r#"up{instance="h:1", job="node"}"#);
    }
}
