//! The routing tree of Alertmanager 0.25 (`dispatch/route.go`).
//!
//! Owns: matching an alert's labels against the tree (depth first; a matching child
//! stops the search unless it has `continue: true`; a node none of whose children
//! match is itself the match), the labels an alert is grouped by (`group_by`, or all
//! labels for `...`), and the route key (`{}` for the root, then
//! `parent/{matchers}`) that, with the group labels, names an aggregation group.

use crate::alertmanager::matcher::Matchers;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Which labels alerts are grouped by.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupBy {
    /// These labels.
    Labels(BTreeSet<String>),
    /// `...`: every label (no aggregation).
    All,
}

/// One node of the tree, with inherited settings already applied.
#[derive(Clone, Debug)]
pub struct Route {
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Matchers (`matchers`, `match`, `match_re` together), sorted.
    pub matchers: Matchers,
    /// `continue`.
    pub continue_matching: bool,
    /// `group_wait`.
    pub group_wait: Duration,
    /// `group_interval`.
    pub group_interval: Duration,
    /// `repeat_interval`.
    pub repeat_interval: Duration,
    /// Child routes in order.
    pub routes: Vec<Route>,
    /// Route key (see the module doc).
    pub key: String,
}

impl Route {
    /// Sets the keys of this node and its children (`parent_key` is `None` at the root).
    pub fn assign_keys(&mut self, parent_key: Option<&str>) {
        self.key = match parent_key {
            None => self.matchers.to_string(),
            Some(p) => format!("{p}/{}", self.matchers),
        };
        let key = self.key.clone();
        for child in &mut self.routes {
            child.assign_keys(Some(&key));
        }
    }

    /// The routes that match `labels`, in tree order.
    pub fn matching<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Route> {
        if !self.matchers.matches(labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let matches = child.matching(labels);
            let matched = !matches.is_empty();
            all.extend(matches);
            if matched && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// The labels of `labels` this route groups by.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => labels
                .iter()
                .filter(|(k, _)| names.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Every node of the tree, depth first.
    pub fn walk<'a>(&'a self, out: &mut Vec<&'a Route>) {
        out.push(self);
        for child in &self.routes {
            child.walk(out);
        }
    }
}

/// A label set as Prometheus's `LabelSet.String()`: `{a="1", b="2"}`.
pub fn label_set_string(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::alertmanager::matcher::go_quote(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alertmanager::matcher::parse_matchers;

    fn node(matchers: &str, receiver: &str, cont: bool, routes: Vec<Route>) -> Route {
        Route {
            receiver: receiver.into(),
            group_by: GroupBy::Labels(BTreeSet::from(["alertname".to_string()])),
            matchers: Matchers::sorted(parse_matchers(matchers).unwrap()),
            continue_matching: cont,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(14400),
            routes,
            key: String::new(),
        }
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let mut root = node(
            "",
            "default",
            false,
            vec![
                node("team=ops", "ops", true, vec![]),
                node("severity=page", "pager", false, vec![]),
                node("severity=~.+", "other", false, vec![]),
            ],
        );
        root.assign_keys(None);
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let names = |l: &BTreeMap<String, String>| -> Vec<String> {
            root.matching(l)
                .iter()
                .map(|r| r.receiver.clone())
                .collect()
        };
        assert_eq!(
            names(&labels(&[("team", "ops"), ("severity", "page")])),
            ["ops", "pager"]
        );
        assert_eq!(names(&labels(&[("severity", "warn")])), ["other"]);
        assert_eq!(names(&labels(&[("x", "y")])), ["default"]);
        assert_eq!(root.routes[1].key, "{}/{severity=\"page\"}");
    }
}
