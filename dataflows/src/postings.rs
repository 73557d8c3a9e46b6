//! A label index: for every label `name=value`, the sorted refs of the series that
//! carry it (Prometheus's `MemPostings`), and the matchers of a selector resolved over
//! it (Prometheus's `PostingsForMatchers`). The storage head and blocks index their
//! series with it, and the latest-sample table ([`crate::latest`]) its entries.
//!
//! Contract: [`Postings::select`] returns, sorted, exactly the refs of the indexed
//! series that [`Selector::matches`] accepts, at a cost that follows what it selects
//! (and, for a regex, the number of values of its label), not the number of series:
//! - `name="v"` is one list; a regex whose language is a small finite set (`a|b|c`,
//!   `(?i)get`, `api-(1|2)`) is the union of the lists of those values; any other regex
//!   is the union of the lists of the label's values that it matches;
//! - a matcher that matches the empty string also selects series without the label
//!   (`{foo=""}`, `{foo!="x"}`, `{foo=~"x|"}`): it is resolved as "every series minus
//!   those whose value it rejects", like Prometheus;
//! - the positive lists are intersected smallest first, then the negative ones are
//!   subtracted;
//! - a matcher that accepts every value of a label every series carries
//!   (`{__name__=~".+"}`) constrains nothing and is skipped.
//!
//! Refs are the indexing side's (the head's series refs, the table's slots).
//! [`Postings::add`] keeps each list sorted (new refs
//! usually come in increasing order, so this is an append); [`Postings::remove`]
//! takes a batch, touching each affected list once.

use crate::labels::Labels;
use crate::selector::{LabelMatcher, MatchKind, Selector};
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The largest set of values a regex is expanded into; past it, the label's values are
/// matched one by one. Prometheus's `maxSetMatches` is also 256.
const MAX_SET: usize = 256;

/// Above this many lists, the negative lists of a matcher are merged before they are
/// subtracted, instead of being subtracted one by one.
const MERGE_NEGATIVES_OVER: usize = 8;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Postings {
    /// Label name → value → sorted series refs.
    lists: HashMap<String, HashMap<String, Vec<u32>>>,
    /// Every indexed ref, sorted.
    all: Vec<u32>,
}

impl Postings {
    /// An empty index.
    pub fn new() -> Postings {
        Postings::default()
    }

    /// Indexes series `r` under each of its labels.
    pub fn add(&mut self, r: u32, labels: &Labels) {
        insert_sorted(&mut self.all, r);
        for (name, value) in labels.iter() {
            let values = match self.lists.get_mut(name) {
                Some(values) => values,
                None => self.lists.entry(name.to_string()).or_default(),
            };
            match values.get_mut(value) {
                Some(list) => insert_sorted(list, r),
                None => {
                    values.insert(value.to_string(), vec![r]);
                }
            }
        }
    }

    /// Drops series from the index, given with the labels they were added with. Each
    /// list is rewritten once, however many of its refs go.
    pub fn remove<'a>(&mut self, removed: impl IntoIterator<Item = (u32, &'a Labels)>) {
        let mut by_pair: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        let mut gone = Vec::new();
        for (r, labels) in removed {
            gone.push(r);
            for pair in labels.iter() {
                by_pair.entry(pair).or_default().push(r);
            }
        }
        if gone.is_empty() {
            return;
        }
        gone.sort_unstable();
        self.all = subtract(&self.all, &gone);
        for ((name, value), mut refs) in by_pair {
            let Some(values) = self.lists.get_mut(name) else {
                continue;
            };
            let Some(list) = values.get_mut(value) else {
                continue;
            };
            refs.sort_unstable();
            *list = subtract(list, &refs);
            if list.is_empty() {
                values.remove(value);
                if values.is_empty() {
                    self.lists.remove(name);
                }
            }
        }
    }

    /// The number of series indexed.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no series is indexed.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Every label name of some indexed series, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lists.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Every value of label `name` among the indexed series, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .lists
            .get(name)
            .map(|values| values.keys().cloned().collect())
            .unwrap_or_default();
        values.sort_unstable();
        values
    }

    /// The refs of the series `selector` selects, sorted; see the module contract.
    pub fn select(&self, selector: &Selector) -> Vec<u32> {
        let matchers = &selector.matchers;
        // A label some matcher rejects the empty string for must be set, so every
        // matcher on it can be resolved over its values alone.
        let must_be_set: HashSet<&str> = matchers
            .iter()
            .filter(|m| !m.matches_value(""))
            .map(|m| m.name.as_str())
            .collect();
        let mut positive: Vec<Cow<'_, [u32]>> = Vec::new();
        let mut negative: Vec<Vec<&[u32]>> = Vec::new();
        for m in matchers {
            let is_not = matches!(m.kind, MatchKind::NotEqual(_) | MatchKind::NotRegex(_));
            if must_be_set.contains(m.name.as_str()) && !(is_not && m.matches_value("")) {
                // `l="a"`, `l=~"a.*"`, `l!=""`: the series whose value it accepts.
                let lists = self.lists_where(m, false);
                if lists.is_empty() {
                    return Vec::new();
                }
                if self.every_series_in(&m.name, &lists) {
                    continue;
                }
                positive.push(union(lists));
            } else {
                // `l!="a"` (l set by another matcher), `l=""`, `l!~"a"`: every series but
                // those whose value it rejects.
                negative.push(self.lists_where(m, true));
            }
        }
        positive.sort_by_key(|list| list.len());
        let mut lists = positive.into_iter();
        let mut out: Vec<u32> = match lists.next() {
            Some(first) => first.into_owned(),
            None => self.all.clone(),
        };
        for list in lists {
            if out.is_empty() {
                return out;
            }
            out = intersect(&out, &list);
        }
        for lists in negative {
            if lists.len() > MERGE_NEGATIVES_OVER {
                out = subtract(&out, &union(lists));
            } else {
                for list in lists {
                    out = subtract(&out, list);
                }
            }
        }
        out
    }

    /// Whether `lists`, some of the lists of label `name`, hold every indexed series:
    /// all of the label's lists, and every series carries the label (a series has one
    /// value per label, so the lists' lengths add up to the number of series).
    fn every_series_in(&self, name: &str, lists: &[&[u32]]) -> bool {
        self.lists
            .get(name)
            .is_some_and(|values| values.len() == lists.len())
            && lists.iter().map(|l| l.len()).sum::<usize>() == self.all.len()
    }

    /// The lists of the values of `m`'s label that `m` accepts (or, if `rejected`,
    /// rejects). Values absent from the index have no list.
    fn lists_where(&self, m: &LabelMatcher, rejected: bool) -> Vec<&[u32]> {
        let Some(values) = self.lists.get(&m.name) else {
            return Vec::new();
        };
        let set = match (&m.kind, rejected) {
            (MatchKind::Equal(v), false) | (MatchKind::NotEqual(v), true) => Some(vec![v.clone()]),
            (MatchKind::Regex(r), false) | (MatchKind::NotRegex(r), true) => {
                finite_language(r.as_str())
            }
            _ => None,
        };
        match set {
            Some(set) => set
                .iter()
                .filter_map(|v| values.get(v).map(Vec::as_slice))
                .collect(),
            None => values
                .iter()
                .filter(|(v, _)| m.matches_value(v) != rejected)
                .map(|(_, list)| list.as_slice())
                .collect(),
        }
    }
}

/// Inserts `r` into sorted `list` (an append when it is the largest, as new refs are).
fn insert_sorted(list: &mut Vec<u32>, r: u32) {
    match list.last() {
        None => list.push(r),
        Some(&last) if last < r => list.push(r),
        Some(_) => {
            if let Err(at) = list.binary_search(&r) {
                list.insert(at, r);
            }
        }
    }
}

/// The first index in `list[from..]` whose value is at least `target`, found by
/// galloping from `from` (cheap when it is near, logarithmic when it is far).
fn gallop(list: &[u32], from: usize, target: u32) -> usize {
    let mut step = 1;
    let mut lo = from;
    let mut hi = from;
    while hi < list.len() && list[hi] < target {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(list.len());
    lo + list[lo..hi].partition_point(|&x| x < target)
}

/// The refs in both sorted lists; walks the shorter one and gallops in the longer.
fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(short.len());
    let mut at = 0;
    for &r in short {
        at = gallop(long, at, r);
        if at == long.len() {
            break;
        }
        if long[at] == r {
            out.push(r);
        }
    }
    out
}

/// The refs of sorted `a` that are not in sorted `b`.
fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut at = 0;
    for &r in a {
        at = gallop(b, at, r);
        if b.get(at) != Some(&r) {
            out.push(r);
        }
    }
    out
}

/// The sorted union of sorted lists (borrowed when there is one).
fn union(mut lists: Vec<&[u32]>) -> Cow<'_, [u32]> {
    match lists.len() {
        0 => Cow::Borrowed(&[]),
        1 => Cow::Borrowed(lists.swap_remove(0)),
        _ => {
            let mut out: Vec<u32> = lists.concat();
            out.sort_unstable();
            out.dedup();
            Cow::Owned(out)
        }
    }
}

/// The strings an anchored regex (`^(?:…)$`, as [`LabelMatcher`] builds
/// them) matches, if they are at most [`MAX_SET`]: `a|b|c`, `api-(1|2)`, `(?i)get`.
/// `None` for anything else, whose label values are then matched one by one.
pub fn finite_language(anchored: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::Parser::new().parse(anchored).ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let (first, rest) = parts.split_first()?;
    let (last, middle) = rest.split_last()?;
    if first.kind() != &HirKind::Look(Look::Start) || last.kind() != &HirKind::Look(Look::End) {
        return None;
    }
    let mut out = concat_language(middle)?;
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn concat_language(parts: &[Hir]) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    for part in parts {
        let tails = language(part)?;
        if out.len() * tails.len() > MAX_SET {
            return None;
        }
        out = out
            .iter()
            .flat_map(|head| tails.iter().map(move |tail| format!("{head}{tail}")))
            .collect();
    }
    Some(out)
}

fn language(hir: &Hir) -> Option<Vec<String>> {
    match hir.kind() {
        HirKind::Empty => Some(vec![String::new()]),
        HirKind::Literal(literal) => Some(vec![String::from_utf8(literal.0.to_vec()).ok()?]),
        HirKind::Class(Class::Unicode(class)) => {
            let mut out = Vec::new();
            for range in class.ranges() {
                let (start, end) = (u32::from(range.start()), u32::from(range.end()));
                if out.len() + (end - start) as usize >= MAX_SET {
                    return None;
                }
                out.extend((start..=end).filter_map(char::from_u32).map(String::from));
            }
            Some(out)
        }
        HirKind::Capture(capture) => language(&capture.sub),
        HirKind::Concat(parts) => concat_language(parts),
        HirKind::Alternation(alternatives) => {
            let mut out = Vec::new();
            for alternative in alternatives {
                out.extend(language(alternative)?);
                if out.len() > MAX_SET {
                    return None;
                }
            }
            Some(out)
        }
        HirKind::Repetition(rep) => {
            let max = rep.max?;
            let sub = language(&rep.sub)?;
            let mut out = Vec::new();
            let mut power = vec![String::new()];
            for n in 0..=max {
                if n >= rep.min {
                    out.extend(power.iter().cloned());
                }
                if n == max {
                    break;
                }
                if power.len() * sub.len() > MAX_SET || out.len() > MAX_SET {
                    return None;
                }
                power = power
                    .iter()
                    .flat_map(|head| sub.iter().map(move |tail| format!("{head}{tail}")))
                    .collect();
            }
            (out.len() <= MAX_SET).then_some(out)
        }
        HirKind::Class(Class::Bytes(_)) | HirKind::Look(_) => None,
    }
}

/// Random series and selectors over a few names and values, to check an index against
/// a scan (the storage head's tests use them too, through the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use crate::labels::Labels;
    use crate::selector::{LabelMatcher, Selector};

    const NAMES: [&str; 4] = ["__name__", "job", "mode", "env"];
    const VALUES: [&str; 6] = ["a", "b", "ab", "idle", "Idle", "x-1"];
    const PATTERNS: [&str; 14] = [
        "", "a", "b", "a|b", "a|", ".*", ".+", "a.*", "(?i)idle", "x-(1|2)", "[ab]", "ab?", "i.*e",
        "a)|(b",
    ];

    /// A label set over a few names and values, some left out.
    pub fn random_labels(rng: &mut fastrand::Rng) -> Labels {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for name in NAMES {
            if rng.u8(0..3) > 0 {
                let value = VALUES[rng.usize(0..VALUES.len())];
                pairs.push((name.to_string(), value.to_string()));
            }
        }
        Labels::from_pairs(pairs)
    }

    /// Up to three matchers of any kind over the names of [`random_labels`].
    pub fn random_selector(rng: &mut fastrand::Rng) -> Selector {
        let matchers = (0..rng.usize(0..4))
            .filter_map(|_| {
                let name = NAMES[rng.usize(0..NAMES.len())];
                let op = ["=", "!=", "=~", "!~"][rng.usize(0..4)];
                let value = if op.ends_with('~') {
                    PATTERNS[rng.usize(0..PATTERNS.len())]
                } else {
                    ["", "a", "b", "idle", "nope"][rng.usize(0..5)]
                };
                // "a)|(b" anchored is `^(?:a)|(b)$`: two half-anchored alternatives.
                LabelMatcher::new(name, op, value).ok()
            })
            .collect();
        Selector { matchers }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{random_labels, random_selector};
    use super::*;

    fn brute_force(series: &HashMap<u32, Labels>, selector: &Selector) -> Vec<u32> {
        let mut out: Vec<u32> = series
            .iter()
            .filter(|(_, l)| selector.matches(l))
            .map(|(&r, _)| r)
            .collect();
        out.sort_unstable();
        out
    }

    /// Random series and selectors, with removals and re-additions in between: the
    /// index selects exactly what checking each series against the matchers does.
    #[test]
    fn selects_what_a_scan_selects_through_adds_and_removals() {
        let mut rng = fastrand::Rng::with_seed(19);
        let mut postings = Postings::new();
        let mut series: HashMap<u32, Labels> = HashMap::new();
        let mut next = 0u32;
        for round in 0..40 {
            for _ in 0..rng.usize(0..60) {
                let labels = random_labels(&mut rng);
                postings.add(next, &labels);
                series.insert(next, labels);
                next += 1;
            }
            // A ref out of order now and then, as a replayed series may bring.
            if round % 7 == 3 {
                let r = next + 1000;
                let labels = random_labels(&mut rng);
                postings.add(r, &labels);
                series.insert(r, labels);
            }
            let doomed: Vec<u32> = series
                .keys()
                .copied()
                .filter(|_| rng.u8(0..4) == 0)
                .collect();
            let removed: Vec<(u32, Labels)> = doomed
                .iter()
                .map(|r| (*r, series.remove(r).unwrap()))
                .collect();
            postings.remove(removed.iter().map(|(r, l)| (*r, l)));
            assert_eq!(postings.len(), series.len());
            for _ in 0..50 {
                let selector = random_selector(&mut rng);
                assert_eq!(
                    postings.select(&selector),
                    brute_force(&series, &selector),
                    "round {round}, {selector:?}"
                );
            }
        }
    }

    /// `{__name__=~".+"}` over series that all have a name is every series; with a
    /// nameless one, every series but that one.
    #[test]
    fn a_matcher_of_every_value_of_a_label_on_every_series_selects_all() {
        let mut postings = Postings::new();
        for i in 0..5u32 {
            let name = format!("m{}", i % 3);
            postings.add(i, &Labels::from_strs(&[("__name__", &name), ("i", "x")]));
        }
        let every = Selector {
            matchers: vec![LabelMatcher::new("__name__", "=~", ".+").unwrap()],
        };
        assert_eq!(postings.select(&every), [0, 1, 2, 3, 4]);
        postings.add(5, &Labels::from_strs(&[("i", "y")]));
        assert_eq!(postings.select(&every), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn names_and_values_come_from_the_index_and_leave_with_their_series() {
        let mut postings = Postings::new();
        let a = Labels::from_strs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_strs(&[("__name__", "up"), ("job", "b"), ("zone", "z")]);
        postings.add(0, &a);
        postings.add(1, &b);
        assert_eq!(postings.label_names(), ["__name__", "job", "zone"]);
        assert_eq!(postings.label_values("job"), ["a", "b"]);
        postings.remove([(1, &b)]);
        assert_eq!(postings.label_names(), ["__name__", "job"]);
        assert_eq!(postings.label_values("job"), ["a"]);
        assert!(postings.label_values("zone").is_empty());
    }

    #[test]
    fn finite_regexes_expand_to_their_strings() {
        let set = |p: &str| finite_language(&format!("^(?:{p})$"));
        let strings = |s: &[&str]| Some(s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(set("a|b|c"), strings(&["a", "b", "c"]));
        assert_eq!(set("foobar|foobaz"), strings(&["foobar", "foobaz"]));
        assert_eq!(set("api-(1|2)"), strings(&["api-1", "api-2"]));
        assert_eq!(set("(?i)ab"), strings(&["AB", "Ab", "aB", "ab"]));
        assert_eq!(set("a|"), strings(&["", "a"]));
        assert_eq!(set(r"a\.b"), strings(&["a.b"]));
        assert_eq!(set("a.*"), None);
        assert_eq!(set(".+"), None);
        assert_eq!(set("[0-9]{1,3}"), None, "1110 strings: too many");
        // Not anchored as a whole: `^(?:a)|(?:b)$` is two half-anchored alternatives.
        assert_eq!(finite_language("^(?:a)|(?:b)$"), None);
    }
}
