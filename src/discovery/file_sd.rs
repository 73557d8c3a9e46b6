//! `file_sd_configs`: target groups read from JSON or YAML files.
//!
//! Contract (Prometheus 2.42's `discovery/file`): each path may end in one `*` glob
//! in its last component; a `.json` file holds a JSON list of
//! `{"targets": [...], "labels": {...}}`, a `.yml`/`.yaml` file the same in YAML.
//! Every group gets `__meta_filepath` (the file's path). Files are watched: their
//! metadata is checked every [`WATCH_INTERVAL`] and a changed, new or removed file
//! is read again at once; every file is re-read each `refresh_interval` regardless.
//! A file that cannot be read or parsed keeps its previous groups; the error is
//! logged and counted as a failure of mechanism `file`.

use super::manager::Refresh;
use super::{DiscoveryError, LabelMap, TargetGroup};
use crate::config::{is_valid_label_name, FileSdConfig};
use crate::selfmetrics::SelfMetrics;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Why a target file (or the directory of a pattern) could not be read; its previous
/// targets are kept.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    /// The directory of a `*` pattern could not be listed.
    #[error("listing {dir}: {source}")]
    List {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// A `.json` file is not a list of target groups.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A YAML file is not a list of target groups.
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A group's label name is not valid.
    #[error("{0:?} is not a valid label name")]
    LabelName(String),
    /// A target is not a `host:port`.
    #[error("{0:?} is not a valid hostname")]
    Hostname(String),
}

/// How often file metadata is checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The label naming the file a group came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// One group as written in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What was read from one file, and the metadata it was read at.
struct FileState {
    stamp: (Option<SystemTime>, u64),
    groups: Vec<TargetGroup>,
}

/// The provider of one `file_sd_configs` entry.
pub struct FileDiscovery {
    config: FileSdConfig,
    metrics: Arc<SelfMetrics>,
    files: BTreeMap<PathBuf, FileState>,
    last_full_read: Option<Instant>,
}

impl FileDiscovery {
    /// A provider for `config`; failures are counted in `metrics`.
    pub fn new(config: FileSdConfig, metrics: Arc<SelfMetrics>) -> FileDiscovery {
        FileDiscovery {
            config,
            metrics,
            files: BTreeMap::new(),
            last_full_read: None,
        }
    }

    /// Checks the files and returns every group; reads only changed files unless a
    /// full refresh is due.
    pub fn read(&mut self) -> Vec<TargetGroup> {
        let full = self
            .last_full_read
            .is_none_or(|at| at.elapsed() >= self.config.refresh_interval);
        if full {
            self.last_full_read = Some(Instant::now());
        }
        let mut present = Vec::new();
        for pattern in &self.config.files {
            match expand(pattern) {
                Ok(paths) => present.extend(paths),
                Err(error) => self.fail(pattern, &error.to_string()),
            }
        }
        // Files that disappeared take their groups with them, as in Prometheus.
        self.files.retain(|path, _| present.contains(path));
        for path in present {
            let stamp = match std::fs::metadata(&path) {
                Ok(meta) => (meta.modified().ok(), meta.len()),
                Err(error) => {
                    self.fail(&path, &error.to_string());
                    continue;
                }
            };
            let unchanged = self.files.get(&path).is_some_and(|f| f.stamp == stamp);
            if unchanged && !full {
                continue;
            }
            match read_file(&path) {
                Ok(groups) => {
                    self.files.insert(path, FileState { stamp, groups });
                }
                Err(error) => self.fail(&path, &error.to_string()),
            }
        }
        self.files.values().flat_map(|f| f.groups.clone()).collect()
    }

    fn fail(&self, path: &Path, error: &str) {
        self.metrics.record_sd_failure("file");
        tracing::error!(file = %path.display(), %error, "file_sd: cannot read target file; keeping its previous targets");
    }
}

impl Refresh for FileDiscovery {
    const MECHANISM: &'static str = "file";

    fn interval(&self) -> Duration {
        WATCH_INTERVAL.min(self.config.refresh_interval)
    }

    async fn refresh(&mut self) -> Result<Vec<TargetGroup>, DiscoveryError> {
        Ok(self.read())
    }
}

/// The files matching `pattern` (a `*` may stand in the last component), sorted.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, FileSdError> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return Ok(if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    };
    let dir = match pattern.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A missing directory is no files, as for Go's filepath.Glob.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileSdError::List {
                dir: dir.display().to_string(),
                source,
            })
        }
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            file_name.len() >= prefix.len() + suffix.len()
                && file_name.starts_with(prefix)
                && file_name.ends_with(suffix)
        })
        .map(|entry| entry.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Reads one target file into groups (`source` is `path:index`).
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, FileSdError> {
    let text = std::fs::read_to_string(path)?;
    let is_json = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed: Option<Vec<FileGroup>> = if is_json {
        serde_json::from_str(&text)?
    } else if text.trim().is_empty() {
        None
    } else {
        serde_yaml_ng::from_str(&text)?
    };
    let file = path.display().to_string();
    let mut groups = Vec::new();
    for (index, group) in parsed.unwrap_or_default().into_iter().enumerate() {
        for name in group.labels.keys() {
            if !is_valid_label_name(name) {
                return Err(FileSdError::LabelName(name.clone()));
            }
        }
        let mut targets = Vec::new();
        // A URL as target is fine here: relabeling may move it (the blackbox exporter's
        // pattern); the address is checked when the target is created, as Prometheus does.
        for target in &group.targets {
            targets.push(LabelMap::from([(
                super::ADDRESS_LABEL.to_string(),
                target.clone(),
            )]));
        }
        let mut labels = group.labels;
        labels.insert(FILEPATH_LABEL.to_string(), file.clone());
        groups.push(TargetGroup {
            source: format!("{file}:{index}"),
            targets,
            labels,
        });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(dir: &Path, pattern: &str) -> FileDiscovery {
        FileDiscovery::new(
            FileSdConfig {
                files: vec![dir.join(pattern)],
                refresh_interval: Duration::from_secs(300),
            },
            Arc::new(SelfMetrics::default()),
        )
    }

    fn addresses(groups: &[TargetGroup]) -> Vec<String> {
        groups
            .iter()
            .flat_map(|g| g.targets.iter().map(|t| t["__address__"].clone()))
            .collect()
    }

    #[test]
    fn reads_json_and_yaml_with_filepath_label() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod"}}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "- targets: ['h3:9100']\n  labels:\n    env: dev\n- targets: []\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("c.txt"), "not a target file").unwrap();
        let mut json = provider(dir.path(), "*.json");
        let groups = json.read();
        assert_eq!(addresses(&groups), ["h1:9100", "h2:9100"]);
        let path = dir.path().join("a.json").display().to_string();
        assert_eq!(groups[0].labels[FILEPATH_LABEL], path);
        assert_eq!(groups[0].labels["env"], "prod");
        let mut yaml = provider(dir.path(), "b.yml");
        let groups = yaml.read();
        assert_eq!(groups.len(), 2);
        assert_eq!(addresses(&groups), ["h3:9100"]);
    }

    #[test]
    fn changed_files_are_reread_and_broken_ones_keep_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.json");
        std::fs::write(&file, r#"[{"targets": ["h1:1"]}]"#).unwrap();
        let metrics = Arc::new(SelfMetrics::default());
        let mut sd = FileDiscovery::new(
            FileSdConfig {
                files: vec![dir.path().join("*.json")],
                refresh_interval: Duration::from_secs(300),
            },
            metrics.clone(),
        );
        assert_eq!(addresses(&sd.read()), ["h1:1"]);
        // A different size is a different stamp even within the mtime resolution.
        std::fs::write(&file, r#"[{"targets": ["h1:1", "h2:2"]}]"#).unwrap();
        assert_eq!(addresses(&sd.read()), ["h1:1", "h2:2"]);
        std::fs::write(&file, r#"[{"targets": "#).unwrap();
        assert_eq!(addresses(&sd.read()), ["h1:1", "h2:2"]);
        assert_eq!(metrics.sd_failures("file"), 1);
        std::fs::remove_file(&file).unwrap();
        assert!(sd.read().is_empty());
    }

    #[test]
    fn invalid_label_names_are_rejected_urls_kept_for_relabeling() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, "- targets: [a:1]\n  labels: {'a-b': x}\n").unwrap();
        assert!(read_file(&file)
            .unwrap_err()
            .to_string()
            .contains("not a valid label name"));
        std::fs::write(&file, "- targets: ['http://a:1']\n").unwrap();
        assert_eq!(addresses(&read_file(&file).unwrap()), ["http://a:1"]);
    }
}
