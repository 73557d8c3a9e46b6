//! Rule groups registered over HTTP (`PUT /api/v1/rules/{namespace}/{group}`).
//!
//! Owns: validating one group body — the group object of a rule file (`name`,
//! `interval`, `limit`, `query_offset`, `rules`), in YAML or JSON — with the rule-file
//! validator ([`crate::rules::file::load_str`], so the problems and their wording are
//! those of `promtool check rules`), plus promtool's duplicate-recording-rule lint;
//! the registered set, by namespace then group name; and its persistence in
//! `<storage>/rule_groups.yml`, a map namespace → list of groups (the shape
//! `GET` answers, like Mimir's ruler API), rewritten atomically on every change and
//! validated again when read at start.
//!
//! A registered group's `file` (its key in the rule manager, and the `file` field of
//! `/api/v1/rules`) is its namespace. The registry does not evaluate anything: the
//! service hands [`RuleRegistry::groups`] to the rule manager with the config's groups.

use crate::rules::file::{load_str, RuleGroup, RuleKind};
use crate::state_file::{read_optional, write_atomically};
use parking_lot::Mutex;
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The state file's name in the storage directory.
pub const STATE_FILE: &str = "rule_groups.yml";

/// What problems in a body are attributed to (`rule group body:5: …`).
const BODY_NAME: &str = "rule group body";

/// One registered group: its definition as accepted, and the validated group.
#[derive(Clone, Debug)]
pub struct RegisteredGroup {
    /// The group object as the client sent it (JSON bodies become the same value).
    pub definition: Value,
    /// The validated group; `file` is the namespace.
    pub group: RuleGroup,
}

type Namespaces = BTreeMap<String, BTreeMap<String, RegisteredGroup>>;

/// Why the registered groups cannot be read or persisted.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The state file cannot be read (`state_file`'s wording).
    #[error(transparent)]
    Read(crate::state_file::ReadError),
    /// The state file is not YAML of namespaces and groups.
    #[error("{path}: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// A persisted group no longer validates.
    #[error("{path}: namespace {namespace:?}, group {group:?}: {}", .problems.join("; "))]
    Invalid {
        /// The state file.
        path: PathBuf,
        /// Its namespace.
        namespace: String,
        /// Its name.
        group: String,
        /// Its problems.
        problems: Vec<String>,
    },
    /// The groups cannot be written as YAML.
    #[error(transparent)]
    Encode(serde_yaml_ng::Error),
    /// The state file cannot be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The registered groups and their state file; see the module doc.
pub struct RuleRegistry {
    path: PathBuf,
    namespaces: Mutex<Namespaces>,
}

impl RuleRegistry {
    /// Reads `<dir>/rule_groups.yml` (none yet: empty). A persisted group that no
    /// longer validates is an error naming its namespace, group and problems.
    pub fn open(dir: &Path) -> Result<RuleRegistry, RegistryError> {
        let path = dir.join(STATE_FILE);
        let mut namespaces = Namespaces::new();
        if let Some(text) = read_optional(&path).map_err(RegistryError::Read)? {
            let stored: BTreeMap<String, Vec<Value>> =
                serde_yaml_ng::from_str(&text).map_err(|source| RegistryError::Parse {
                    path: path.clone(),
                    source,
                })?;
            for (namespace, definitions) in stored {
                for definition in definitions {
                    let name = definition
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let body = serde_yaml_ng::to_string(&definition).unwrap_or_default();
                    let registered =
                        validate_group(&namespace, &name, &body).map_err(|problems| {
                            RegistryError::Invalid {
                                path: path.clone(),
                                namespace: namespace.clone(),
                                group: name.clone(),
                                problems,
                            }
                        })?;
                    namespaces
                        .entry(namespace.clone())
                        .or_default()
                        .insert(name, registered);
                }
            }
        }
        Ok(RuleRegistry {
            path,
            namespaces: Mutex::new(namespaces),
        })
    }

    /// Every registered group, by namespace then group name.
    pub fn groups(&self) -> Vec<RuleGroup> {
        self.namespaces
            .lock()
            .values()
            .flat_map(|groups| groups.values().map(|r| r.group.clone()))
            .collect()
    }

    /// Whether the rule manager's group `(file, name)` is a registered one.
    pub fn is_registered(&self, file: &Path, name: &str) -> bool {
        let namespaces = self.namespaces.lock();
        file.to_str()
            .and_then(|ns| namespaces.get(ns))
            .is_some_and(|groups| groups.contains_key(name))
    }

    /// Definitions of one namespace (or all), as namespace → list of groups; empty
    /// when there are none.
    pub fn definitions(&self, namespace: Option<&str>) -> Mapping {
        let namespaces = self.namespaces.lock();
        let mut out = Mapping::new();
        for (ns, groups) in namespaces.iter() {
            if namespace.is_some_and(|wanted| wanted != ns) {
                continue;
            }
            let list = groups.values().map(|r| r.definition.clone()).collect();
            out.insert(Value::String(ns.clone()), Value::Sequence(list));
        }
        out
    }

    /// One group's definition.
    pub fn definition(&self, namespace: &str, group: &str) -> Option<Value> {
        let namespaces = self.namespaces.lock();
        Some(namespaces.get(namespace)?.get(group)?.definition.clone())
    }

    /// Installs or replaces a (validated) group; persisted before it takes effect.
    pub fn put(&self, namespace: &str, registered: RegisteredGroup) -> Result<(), RegistryError> {
        self.change(|namespaces| {
            namespaces
                .entry(namespace.to_string())
                .or_default()
                .insert(registered.group.name.clone(), registered);
            true
        })
        .map(|_| ())
    }

    /// Removes one group; `Ok(false)` when it was not registered.
    pub fn delete_group(&self, namespace: &str, group: &str) -> Result<bool, RegistryError> {
        self.change(|namespaces| {
            let Some(groups) = namespaces.get_mut(namespace) else {
                return false;
            };
            let removed = groups.remove(group).is_some();
            if groups.is_empty() {
                namespaces.remove(namespace);
            }
            removed
        })
    }

    /// Removes a namespace's groups; `Ok(false)` when it had none.
    pub fn delete_namespace(&self, namespace: &str) -> Result<bool, RegistryError> {
        self.change(|namespaces| namespaces.remove(namespace).is_some())
    }

    /// Applies `edit` to a copy; if it changed something, persists the copy and only
    /// then makes it current.
    fn change(&self, edit: impl FnOnce(&mut Namespaces) -> bool) -> Result<bool, RegistryError> {
        let mut current = self.namespaces.lock();
        let mut next = current.clone();
        if !edit(&mut next) {
            return Ok(false);
        }
        let stored: BTreeMap<&String, Vec<&Value>> = next
            .iter()
            .map(|(ns, groups)| (ns, groups.values().map(|r| &r.definition).collect()))
            .collect();
        let text = serde_yaml_ng::to_string(&stored).map_err(RegistryError::Encode)?;
        write_atomically(&self.path, text.as_bytes()).map_err(|source| RegistryError::Write {
            path: self.path.clone(),
            source,
        })?;
        *current = next;
        Ok(true)
    }
}

/// Validates a group body for `namespace`/`group`: every problem, each with the line
/// of the body it is on. The body's `name` must be the URL's group name.
pub fn validate_group(
    namespace: &str,
    group: &str,
    body: &str,
) -> Result<RegisteredGroup, Vec<String>> {
    if body.trim().is_empty() {
        return Err(vec!["the request body is empty: send one rule group".into()]);
    }
    let definition: Value = serde_yaml_ng::from_str(body).map_err(|e| match e.location() {
        Some(at) => vec![format!("{BODY_NAME}:{}: {e}", at.line())],
        None => vec![format!("{BODY_NAME}: {e}")],
    })?;
    let Value::Mapping(fields) = &definition else {
        return Err(vec![
            "the body must be one rule group: a mapping with `name` and `rules`".into(),
        ]);
    };
    if fields.contains_key("groups") {
        return Err(vec![
            "the body must be one rule group, not a rule file: PUT each group of `groups:` to its own URL".into(),
        ]);
    }
    match fields.get("name").and_then(Value::as_str) {
        Some(name) if name == group => {}
        Some(name) => {
            return Err(vec![format!(
                "the group's name {name:?} differs from the group {group:?} in the URL"
            )])
        }
        None => return Err(vec![format!("field `name` must be set (to {group:?})")]),
    }
    let groups =
        load_str(&as_rule_file(body), BODY_NAME, Path::new(namespace)).map_err(|problems| {
            problems
                .into_iter()
                .map(|mut p| {
                    // `as_rule_file` put the body one line down, inside `groups[0]`.
                    p.line = p.line.map(|l| l.saturating_sub(1).max(1));
                    p.message = p.message.replace("groups[0].", "");
                    p.to_string()
                })
                .collect::<Vec<_>>()
        })?;
    let Some(validated) = groups.into_iter().next() else {
        return Err(vec!["the body holds no rule group".into()]);
    };
    duplicate_recording_rules(&validated)?;
    Ok(RegisteredGroup {
        definition,
        group: validated,
    })
}

/// The body as a rule file whose only group it is: `groups:` then the body as the
/// first item, so body line `n` is line `n + 1` (columns shift by two).
fn as_rule_file(body: &str) -> String {
    let mut out = String::from("groups:\n");
    let mut lines = body.lines();
    let first = lines.next().unwrap_or_default();
    // A document start marker cannot follow `- `.
    let first = if first.trim_end() == "---" { "" } else { first };
    out.push_str("- ");
    out.push_str(first);
    out.push('\n');
    for line in lines {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// promtool's `--lint=duplicate-rules`: two recording rules writing the same metric
/// with the same labels in one group. (Alerting rules may share a name.)
fn duplicate_recording_rules(group: &RuleGroup) -> Result<(), Vec<String>> {
    let mut first_of: HashMap<(&str, &BTreeMap<String, String>), usize> = HashMap::new();
    let mut problems = Vec::new();
    for (i, rule) in group.rules.iter().enumerate() {
        if rule.kind != RuleKind::Recording {
            continue;
        }
        if let Some(first) = first_of.insert((rule.name.as_str(), &rule.labels), i) {
            problems.push(format!(
                "{BODY_NAME}: group {:?}: rules {} and {} both record {:?} with labels {:?} (duplicate rule, as `promtool check rules --lint=duplicate-rules` reports)",
                group.name,
                first + 1,
                i + 1,
                rule.name,
                rule.labels
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: g\ninterval: 30s\nrules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n  - alert: Down\n    expr: up == 0\n    for: 1m\n";

    #[test]
    fn yaml_and_json_bodies_are_the_same_group() {
        let yaml = validate_group("team", "g", GOOD).unwrap();
        let json = r#"{"name": "g", "interval": "30s", "rules": [
            {"record": "job:up:sum", "expr": "sum by (job) (up)"},
            {"alert": "Down", "expr": "up == 0", "for": "1m"}]}"#;
        let json = validate_group("team", "g", json).unwrap();
        assert_eq!(yaml.definition, json.definition);
        assert_eq!(yaml.group.file, PathBuf::from("team"));
        assert_eq!(json.group.rules.len(), 2);
        assert_eq!(
            json.group.interval,
            Some(std::time::Duration::from_secs(30))
        );
    }

    #[test]
    fn problems_name_the_body_line() {
        let body = "name: g\nrules:\n  - record: x\n    expr: sum(rate(up[5m])\n  - record: y\n    expr: up\n    bogus: 1\n";
        let problems = validate_group("ns", "g", body).unwrap_err().join("\n");
        assert!(
            problems.contains(
                "rule group body:4: group \"g\", rule 1, \"x\": could not parse expression"
            ),
            "{problems}"
        );
        assert!(
            problems.contains("rule group body:7: field rules[1].bogus not found"),
            "{problems}"
        );
    }

    #[test]
    fn refuses_what_is_not_one_matching_group() {
        for (body, expected) in [
            ("", "empty"),
            ("name: [", "did not find expected"),
            ("- name: g\n", "a mapping"),
            ("groups:\n  - name: g\n", "not a rule file"),
            ("name: other\nrules: []\n", "differs"),
            ("rules: []\n", "`name` must be set"),
            (
                "name: g\nrules:\n  - record: a\n    expr: up\n  - record: a\n    expr: up * 2\n",
                "rules 1 and 2 both record \"a\"",
            ),
        ] {
            let problems = validate_group("ns", "g", body).unwrap_err().join("\n");
            assert!(problems.contains(expected), "{body:?}: {problems}");
        }
    }

    #[test]
    fn changes_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let registry = RuleRegistry::open(dir.path()).unwrap();
        registry
            .put("team", validate_group("team", "g", GOOD).unwrap())
            .unwrap();
        registry
            .put("other", validate_group("other", "g", GOOD).unwrap())
            .unwrap();
        assert!(registry.is_registered(Path::new("team"), "g"));
        assert!(!registry.is_registered(Path::new("team"), "h"));

        let reopened = RuleRegistry::open(dir.path()).unwrap();
        assert_eq!(reopened.groups().len(), 2);
        assert_eq!(
            reopened.definition("team", "g"),
            registry.definition("team", "g")
        );
        assert!(reopened.delete_group("team", "g").unwrap());
        assert!(!reopened.delete_group("team", "g").unwrap());
        assert!(!reopened.delete_namespace("team").unwrap());
        let again = RuleRegistry::open(dir.path()).unwrap();
        assert_eq!(again.definitions(None).len(), 1);
        assert!(again.definitions(Some("team")).is_empty());
    }
}
