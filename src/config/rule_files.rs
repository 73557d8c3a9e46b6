//! Expanding `rule_files` globs into the list of rule files, like Go's `filepath.Glob`.
//!
//! Patterns are relative to the config file's directory. Matching is done one
//! path component at a time (`*` never crosses a `/`), directories are listed
//! in sorted order, and a pattern matching nothing is not an error — only a
//! syntactically bad pattern is, as in Prometheus.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// Whether a path component contains glob syntax (otherwise it is taken literally).
fn has_glob_syntax(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// A `rule_files` pattern component that is not a glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid rule file pattern {component:?}: {source}")]
pub(crate) struct PatternError {
    /// The path component.
    component: String,
    /// What globset said.
    source: globset::Error,
}

fn component_matcher(component: &str) -> Result<GlobMatcher, PatternError> {
    GlobBuilder::new(component)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|source| PatternError {
            component: component.to_string(),
            source,
        })
}

/// The pattern as Prometheus stores it: joined to `base_dir` and cleaned unless
/// absolute (`config.JoinDir`).
pub(crate) fn pattern_path(pattern: &str, base_dir: &Path) -> PathBuf {
    super::paths::join_dir(base_dir, pattern)
}

/// Checks a pattern's syntax without touching the file system.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    for component in Path::new(pattern).components() {
        if let Component::Normal(name) = component {
            let name = name.to_string_lossy();
            if has_glob_syntax(&name) {
                component_matcher(&name)?;
            }
        }
    }
    Ok(())
}

/// The existing files matching `pattern` (already joined to the base directory), sorted.
pub(crate) fn expand(pattern: &Path) -> Result<Vec<PathBuf>, PatternError> {
    let mut candidates = vec![PathBuf::new()];
    for component in pattern.components() {
        let name = match component {
            Component::Normal(name) => name.to_string_lossy().into_owned(),
            other => {
                for candidate in &mut candidates {
                    candidate.push(other.as_os_str());
                }
                continue;
            }
        };
        if !has_glob_syntax(&name) {
            for candidate in &mut candidates {
                candidate.push(&name);
            }
            continue;
        }
        let matcher = component_matcher(&name)?;
        let mut next = Vec::new();
        for directory in &candidates {
            let listing = if directory.as_os_str().is_empty() {
                Path::new(".")
            } else {
                directory
            };
            let Ok(entries) = std::fs::read_dir(listing) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|entry_name| matcher.is_match(entry_name))
                .collect();
            names.sort();
            next.extend(
                names
                    .into_iter()
                    .map(|entry_name| directory.join(entry_name)),
            );
        }
        candidates = next;
    }
    Ok(candidates
        .into_iter()
        .filter(|path| path.exists())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_per_component_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "rules/b.yml",
            "rules/a.yml",
            "rules/c.txt",
            "rules/sub/d.yml",
            "other/e.yml",
        ] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "groups: []\n").unwrap();
        }
        let found = expand(&dir.path().join("rules/*.yml")).unwrap();
        assert_eq!(
            found,
            vec![
                dir.path().join("rules/a.yml"),
                dir.path().join("rules/b.yml")
            ]
        );
        let found = expand(&dir.path().join("*/*.yml")).unwrap();
        assert_eq!(
            found,
            vec![
                dir.path().join("other/e.yml"),
                dir.path().join("rules/a.yml"),
                dir.path().join("rules/b.yml"),
            ]
        );
        assert_eq!(
            expand(&dir.path().join("rules/a.yml")).unwrap(),
            vec![dir.path().join("rules/a.yml")]
        );
        assert!(expand(&dir.path().join("missing/*.yml"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rejects_bad_patterns() {
        // promtool 2.42: `rule_files: ['[a']` fails with "syntax error in pattern".
        assert!(check_pattern("[a").is_err());
        assert!(check_pattern("rules/*.yml").is_ok());
    }
}
