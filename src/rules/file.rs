//! Rule files in Prometheus's format (`groups:` of alerting and recording rules).
//!
//! Owns: reading a rule file into [`RuleGroup`]s, and validating it the way
//! `promtool check rules` does (rulefmt in Prometheus 2.42), collecting *every*
//! problem with file, line, group and rule before reporting. PromQL is checked by
//! planning it (`dataflows::promql::plan::parse`), templates by parsing them.
//!
//! Accepted beyond promtool 2.42: `query_offset` (Prometheus 2.53+).
//! Unknown fields are rejected (promtool rejects them too).

use crate::config::locate::{FieldPath, YamlLocator};
use crate::config::parse_duration;
use crate::rules::template;
use dataflows::promql::plan::{format_query, parse, Plan};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProblem {
    /// The file as given.
    pub file: String,
    /// 1-based line, when located.
    pub line: Option<usize>,
    /// `group "g", rule 2, "Name"` or `group "g"`; empty for whole-file problems.
    pub context: String,
    /// What is wrong, in promtool's words where it has them.
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.context.is_empty() {
            write!(f, ": {}", self.context)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Whether a rule alerts or records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// `alert:`.
    Alerting,
    /// `record:`.
    Recording,
}

/// One validated rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Alert name or recorded metric name.
    pub name: String,
    /// Alerting or recording.
    pub kind: RuleKind,
    /// The PromQL text as written.
    pub expr: String,
    /// The expression as Prometheus prints it (`/api/v1/rules`' `query`, `generatorURL`).
    pub query: String,
    /// The planned expression.
    pub plan: Arc<Plan>,
    /// `for` (alerting only; zero by default).
    pub for_: Duration,
    /// `keep_firing_for` (alerting only; zero by default).
    pub keep_firing_for: Duration,
    /// `labels` (values are templates for alerting rules).
    pub labels: BTreeMap<String, String>,
    /// `annotations` (templates; alerting only).
    pub annotations: BTreeMap<String, String>,
}

impl RuleGroup {
    /// Everything that defines how the group evaluates (not where it came from): two
    /// groups with the same definition evaluate the same way.
    pub fn definition(&self) -> String {
        let rules: Vec<String> = self.rules.iter().map(Rule::identity).collect();
        format!(
            "{:?}|{}|{:?}|{}",
            self.interval,
            self.limit,
            self.query_offset,
            rules.join("\u{1f}")
        )
    }
}

impl Rule {
    /// Identity for keeping state across reloads: everything that defines the rule.
    pub fn identity(&self) -> String {
        format!(
            "{:?}|{}|{}|{:?}|{:?}|{:?}|{:?}",
            self.kind,
            self.name,
            self.expr,
            self.for_,
            self.keep_firing_for,
            self.labels,
            self.annotations
        )
    }
}

/// One validated group.
#[derive(Clone, Debug)]
pub struct RuleGroup {
    /// The file it came from.
    pub file: PathBuf,
    /// `name`.
    pub name: String,
    /// `interval`; `None` means the global `evaluation_interval`.
    pub interval: Option<Duration>,
    /// `limit` (0: none).
    pub limit: usize,
    /// `query_offset`: rules evaluate at `t - query_offset`.
    pub query_offset: Duration,
    /// The rules in order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize, Default)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize, Default)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<String>,
    limit: Option<i64>,
    query_offset: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    #[serde(default)]
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads and validates one rule file.
pub fn load_file(path: &Path) -> Result<Vec<RuleGroup>, Vec<RuleProblem>> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &name, path),
        Err(e) => Err(vec![RuleProblem {
            file: name,
            line: None,
            context: String::new(),
            message: format!("error reading file: {e}"),
        }]),
    }
}

/// Reads and validates several files, collecting problems of all of them.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<RuleGroup>, Vec<RuleProblem>> {
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match load_file(path) {
            Ok(g) => groups.extend(g),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(groups)
    } else {
        Err(problems)
    }
}

fn key_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    match path {
        serde_ignored::Path::Root => FieldPath::root(),
        serde_ignored::Path::Seq { parent, index } => key_path(parent).index(*index),
        serde_ignored::Path::Map { parent, key } => key_path(parent).key(key),
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// Validates rule-file text; `file` names it in problems and in the groups.
pub fn load_str(text: &str, file: &str, path: &Path) -> Result<Vec<RuleGroup>, Vec<RuleProblem>> {
    let locator = YamlLocator::new(text);
    let mut problems = Vec::new();
    let problem = |line: Option<usize>, context: String, message: String| RuleProblem {
        file: file.to_string(),
        line,
        context,
        message,
    };
    let mut unknown = Vec::new();
    let raw: RawFile = if text.trim().is_empty() {
        RawFile::default()
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        match serde_ignored::deserialize(de, |p| unknown.push(key_path(&p))) {
            Ok(raw) => raw,
            Err(e) => {
                let e: serde_yaml_ng::Error = e;
                let line = e.location().map(|l| l.line());
                return Err(vec![problem(line, String::new(), e.to_string())]);
            }
        }
    };
    for path in unknown {
        let field = path.to_string();
        problems.push(problem(
            locator.line_of(&path),
            String::new(),
            format!("field {field} not found"),
        ));
    }
    let mut groups = Vec::new();
    let mut seen = HashSet::new();
    for (gi, g) in raw.groups.iter().enumerate() {
        let gpath = FieldPath::root().key("groups").index(gi);
        let gctx = format!("group {:?}", g.name);
        let at = |p: &FieldPath| locator.line_of(p);
        if g.name.is_empty() {
            problems.push(problem(
                at(&gpath),
                String::new(),
                "Groupname must not be empty".into(),
            ));
        } else if !seen.insert(g.name.clone()) {
            problems.push(problem(
                at(&gpath.key("name")),
                String::new(),
                format!("groupname: {:?} is repeated in the same file", g.name),
            ));
        }
        let mut duration = |field: &str, value: &Option<String>, ctx: &str| -> Option<Duration> {
            let text = value.as_ref()?;
            match parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(problem(
                        at(&gpath.key(field)),
                        ctx.to_string(),
                        e.to_string(),
                    ));
                    None
                }
            }
        };
        let interval = duration("interval", &g.interval, &gctx);
        let query_offset = duration("query_offset", &g.query_offset, &gctx).unwrap_or_default();
        if interval == Some(Duration::ZERO) {
            problems.push(problem(
                at(&gpath.key("interval")),
                gctx.clone(),
                "interval must be positive".into(),
            ));
        }
        let limit = match g.limit {
            Some(l) if l < 0 => {
                problems.push(problem(
                    at(&gpath.key("limit")),
                    gctx.clone(),
                    "limit must not be negative".into(),
                ));
                0
            }
            Some(l) => l as usize,
            None => 0,
        };
        let mut rules = Vec::new();
        for (ri, r) in g.rules.iter().enumerate() {
            let rpath = gpath.key("rules").index(ri);
            let name = r
                .alert
                .clone()
                .or_else(|| r.record.clone())
                .unwrap_or_default();
            let ctx = format!("group {:?}, rule {}, {:?}", g.name, ri + 1, name);
            let before = problems.len();
            let mut push = |field: &str, message: String| {
                let p = if field.is_empty() {
                    rpath.clone()
                } else {
                    rpath.key(field)
                };
                problems.push(problem(locator.line_of(&p), ctx.clone(), message));
            };
            let kind = match (&r.alert, &r.record) {
                (Some(_), Some(_)) => {
                    push(
                        "record",
                        "only one of 'record' and 'alert' must be set".into(),
                    );
                    None
                }
                (None, None) => {
                    push("", "one of 'record' or 'alert' must be set".into());
                    None
                }
                (Some(a), None) => {
                    if a.is_empty() {
                        push("alert", "one of 'record' or 'alert' must be set".into());
                    }
                    Some(RuleKind::Alerting)
                }
                (None, Some(rec)) => {
                    if !is_metric_name(rec) {
                        push("record", format!("invalid recording rule name: {rec}"));
                    }
                    if r.for_.is_some() {
                        push("for", "invalid field 'for' in recording rule".into());
                    }
                    if r.keep_firing_for.is_some() {
                        push(
                            "keep_firing_for",
                            "invalid field 'keep_firing_for' in recording rule".into(),
                        );
                    }
                    if !r.annotations.is_empty() {
                        push(
                            "annotations",
                            "invalid field 'annotations' in recording rule".into(),
                        );
                    }
                    Some(RuleKind::Recording)
                }
            };
            let plan = if r.expr.trim().is_empty() {
                push("expr", "field 'expr' must be set in rule".into());
                None
            } else {
                match parse(&r.expr) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        push("expr", format!("could not parse expression: {e}"));
                        None
                    }
                }
            };
            let mut dur = |field: &str, v: &Option<String>| -> Duration {
                match v.as_deref().map(parse_duration) {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        push(field, e.to_string());
                        Duration::ZERO
                    }
                    None => Duration::ZERO,
                }
            };
            let for_ = dur("for", &r.for_);
            let keep_firing_for = dur("keep_firing_for", &r.keep_firing_for);
            for (k, v) in &r.labels {
                if !crate::relabel::is_valid_label_name(k) {
                    push("labels", format!("invalid label name: {k}"));
                }
                if kind == Some(RuleKind::Alerting) {
                    if let Err(e) = template::check(&format!("__alert_{name}"), v) {
                        push("labels", format!("label {k:?}: {e}"));
                    }
                }
            }
            for (k, v) in &r.annotations {
                if !crate::relabel::is_valid_label_name(k) {
                    push("annotations", format!("invalid annotation name: {k}"));
                }
                if let Err(e) = template::check(&format!("__alert_{name}"), v) {
                    push("annotations", format!("annotation {k:?}: {e}"));
                }
            }
            if problems.len() == before {
                if let (Some(kind), Some(plan)) = (kind, plan) {
                    rules.push(Rule {
                        name,
                        kind,
                        expr: r.expr.clone(),
                        query: format_query(&r.expr),
                        plan: Arc::new(plan),
                        for_,
                        keep_firing_for,
                        labels: r.labels.clone(),
                        annotations: r.annotations.clone(),
                    });
                }
            }
        }
        groups.push(RuleGroup {
            file: path.to_path_buf(),
            name: g.name.clone(),
            interval,
            limit,
            query_offset,
            rules,
        });
    }
    if problems.is_empty() {
        Ok(groups)
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(problems)
    }
}

/// Prometheus's metric-name syntax: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<RuleGroup>, Vec<RuleProblem>> {
        load_str(text, "r.yml", Path::new("r.yml"))
    }

    #[test]
    fn good_file_loads() {
        let groups = load(
            "groups:\n  - name: g\n    interval: 30s\n    limit: 3\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5m\n        keep_firing_for: 1m\n        labels: {severity: page}\n        annotations:\n          summary: \"{{ $labels.instance }}\"\n      - record: job:up:sum\n        expr: sum by (job) (up)\n",
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.limit, 3);
        assert_eq!(g.rules.len(), 2);
        assert_eq!(g.rules[0].for_, Duration::from_secs(300));
        assert_eq!(g.rules[1].kind, RuleKind::Recording);
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let text = "groups:\n  - name: g1\n    rules:\n      - alert: A\n        expr: up ==\n      - record: bad name\n        expr: up\n        for: 1m\n      - record: ok\n        expr: up\n        bogus: 1\n  - name: g1\n    rules: []\n";
        let problems = load(text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = shown.join("\n");
        assert!(
            all.contains("r.yml:5: group \"g1\", rule 1, \"A\": could not parse expression"),
            "{all}"
        );
        assert!(all.contains("r.yml:8: group \"g1\", rule 2, \"bad name\": invalid field 'for' in recording rule"), "{all}");
        assert!(
            all.contains("invalid recording rule name: bad name"),
            "{all}"
        );
        assert!(
            all.contains("r.yml:11: field groups[0].rules[2].bogus not found"),
            "{all}"
        );
        assert!(
            all.contains("r.yml:12: groupname: \"g1\" is repeated in the same file"),
            "{all}"
        );
    }
}
