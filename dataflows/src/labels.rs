//! Label sets: the identity of a series.
//!
//! A [`Labels`] value is a list of `(name, value)` pairs sorted by name, with the
//! metric name stored under `__name__` like Prometheus. Its [`Labels::hash`] is the
//! series id used to exchange samples between workers; it is stable across processes.
//!
//! Representation: one string holding every pair as `len:name len:value` (lengths in
//! decimal), as Prometheus's `stringlabels` build keeps them (with varint lengths,
//! which would need unchecked UTF-8 slicing here, and this crate has no unsafe). A
//! label set lives as long as its series (in the head, the series catalog, the
//! latest-sample table and the scrape cache, shared through one `Arc`), so its size is
//! most of what a series costs: a `Vec<(String, String)>` of five pairs took about
//! 650 bytes in 11 allocations (glibc rounds each up), this about 100 in one.
//! Comparison, hashing and serialization are those of the sorted pairs.
//!
//! Symbol table: a label name of [`SYMBOLS`] (the names most series carry:
//! `__name__`, `instance`, `job`, node_exporter's and Kubernetes's common ones) is
//! stored as one letter (`A` + its index) instead of `len:name`; a string written with
//! its length always starts with a digit, so a letter there is a symbol. Every name of
//! the table is always written as its symbol, so one label set has one encoding.
//! A node_exporter-like series (`__name__`, `cpu`, `device`, `instance`, `job`, `mode`)
//! takes 72 bytes instead of 110: 80 instead of 128 with malloc's rounding.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::Hasher;
use xxhash_rust::xxh3::Xxh3;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// A sorted set of labels identifying one series.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<str>);

/// Label names stored as one letter, `A` + the index (see the module docs). Encodings
/// live in memory only (the WAL, blocks and the wire carry the pairs), so the table
/// may change freely; at most 26 names (`A`..=`Z`), sorted for the binary search.
const SYMBOLS: [&str; 26] = [
    "__name__",
    "alertname",
    "code",
    "container",
    "cpu",
    "device",
    "fstype",
    "handler",
    "id",
    "image",
    "instance",
    "interface",
    "job",
    "le",
    "method",
    "mode",
    "mountpoint",
    "name",
    "namespace",
    "node",
    "path",
    "pod",
    "quantile",
    "service",
    "severity",
    "status",
];

/// The symbol letter of label name `name`, if the table has it.
fn symbol_of(name: &str) -> Option<char> {
    SYMBOLS
        .binary_search(&name)
        .ok()
        .map(|i| char::from(b'A' + i as u8))
}

/// The pairs of an encoded label set, in order.
#[derive(Clone)]
struct Pairs<'a> {
    rest: &'a str,
}

impl<'a> Pairs<'a> {
    /// The next string: a symbol letter, or its length in decimal digits, `:`, and the
    /// string.
    fn next_str(&mut self) -> &'a str {
        let bytes = self.rest.as_bytes();
        if !bytes[0].is_ascii_digit() {
            self.rest = &self.rest[1..];
            return SYMBOLS[usize::from(bytes[0] - b'A')];
        }
        let mut len = 0usize;
        let mut i = 0;
        while bytes[i] != b':' {
            len = len * 10 + usize::from(bytes[i] - b'0');
            i += 1;
        }
        let (text, rest) = self.rest[i + 1..].split_at(len);
        self.rest = rest;
        text
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.rest.is_empty() {
            return None;
        }
        let name = self.next_str();
        let value = self.next_str();
        Some((name, value))
    }
}

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
        Labels::encode(out.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// Encodes pairs already sorted by name, without duplicates or empty values.
    fn encode<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Labels {
        use std::fmt::Write;
        let size: usize = pairs.clone().map(|(n, v)| n.len() + v.len() + 6).sum();
        let mut out = String::with_capacity(size);
        for (name, value) in pairs {
            match symbol_of(name) {
                Some(symbol) => out.push(symbol),
                None => {
                    let _ = write!(out, "{}:{name}", name.len());
                }
            }
            let _ = write!(out, "{}:{value}", value.len());
        }
        Labels(out.into_boxed_str())
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        for (n, v) in self.iter() {
            match n.cmp(name) {
                Ordering::Less => continue,
                Ordering::Equal => return Some(v),
                Ordering::Greater => return None,
            }
        }
        None
    }

    /// The metric name (`__name__`), or `""` if the series has none.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        Pairs { rest: &self.0 }
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.iter().count()
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
        for (name, value) in self.iter() {
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
        Labels::hash_pairs(self.iter())
    }

    /// [`Labels::hash`] of the set `pairs` make (sorted by name, each name once, no
    /// empty value), without making it.
    pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
        let mut hasher = Xxh3::new();
        for (name, value) in pairs {
            hasher.update(name.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(value.as_bytes());
            hasher.update(&[0xff]);
        }
        hasher.digest()
    }

    /// Consumes the set, returning its sorted pairs.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

/// Ordered as the sorted pairs are (name, then value, pair by pair; a prefix first).
impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equal sets have equal encodings, so the bytes are hashed.
impl std::hash::Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

impl fmt::Debug for Labels {
    /// As the pairs: `Labels([("a", "1"), ("b", "2")])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Labels")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// Serialized as the sorted pairs (a sequence of `[name, value]`), its length given
/// first (bincode, which timely uses between processes, needs it).
impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.iter().count()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

/// Read from a sequence of `[name, value]` pairs, sorted and deduplicated as by
/// [`Labels::from_pairs`].
impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        Vec::<(String, String)>::deserialize(deserializer).map(Labels::from_pairs)
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
    fn encodes_long_strings_and_orders_as_the_pairs() {
        let long = "v".repeat(300);
        let l = Labels::from_strs(&[("b", &long), ("a", "é"), ("c", "")]);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            vec![("a", "é"), ("b", long.as_str())]
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("b"), Some(long.as_str()));
        assert_eq!(l.get("aa"), None);
        let pairs = |l: &Labels| l.clone().into_pairs();
        let mut sets = [
            Labels::from_strs(&[("a", "1"), ("b", "2")]),
            Labels::from_strs(&[("a", "1")]),
            Labels::from_strs(&[("a", "10")]),
            Labels::from_strs(&[("a", "2")]),
            Labels::from_strs(&[("b", "0")]),
            Labels::default(),
        ];
        let mut by_pairs = sets.clone();
        by_pairs.sort_by_key(pairs);
        sets.sort();
        assert_eq!(sets, by_pairs);
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, format!(r#"[["a","é"],["b","{long}"]]"#));
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), l);
        assert_eq!(
            format!("{:?}", Labels::from_strs(&[("a", "1")])),
            r#"Labels([("a", "1")])"#
        );
    }

    /// Names of the symbol table and others mix, in order, in one encoding; a value
    /// equal to a symbol's name stays a value.
    #[test]
    fn symbols_and_written_names_decode_alike() {
        let pairs = [
            ("__name__", "job"),
            ("a", "1"),
            ("instance", "h:1"),
            ("job", "A"),
            ("jobs", ""),
            ("zz", "le"),
        ];
        let l = Labels::from_strs(&pairs);
        let want: Vec<(&str, &str)> = pairs.iter().copied().filter(|p| !p.1.is_empty()).collect();
        assert_eq!(l.iter().collect::<Vec<_>>(), want);
        assert_eq!(l.get("job"), Some("A"));
        assert_eq!(l.metric_name(), "job");
        assert!(l.0.len() < 40, "{:?}", l.0);
        assert!(SYMBOLS.windows(2).all(|w| w[0] < w[1]), "sorted");
        for (i, name) in SYMBOLS.iter().enumerate() {
            let one = Labels::from_strs(&[(name, "v")]);
            assert_eq!(one.iter().collect::<Vec<_>>(), vec![(*name, "v")], "{i}");
        }
    }

    #[test]
    fn displays_like_prometheus() {
        let l = Labels::from_strs(&[("__name__", "up"), ("job", "node"), ("instance", "h:1")]);
        assert_eq!(l.to_string(), r#"up{instance="h:1", job="node"}"#);
    }
}
