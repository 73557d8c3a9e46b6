//! `file_sd_configs`: target groups read from JSON or YAML files.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{refresh_interval, SdConfig, SdEntry, SdSection};
use crate::config::locate::FieldPath;
use crate::config::paths::join_dir;
use crate::config::raw::ScalarText;
use crate::config::resolved::serialize_duration;
use crate::config::validate::Problems;

/// Default `file_sd_configs[].refresh_interval`.
pub const DEFAULT_FILE_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// One entry of `file_sd_configs:` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawFileSdConfig {
    pub files: Option<Vec<ScalarText>>,
    pub refresh_interval: Option<ScalarText>,
}

/// `file_sd_configs[]`: target groups read from JSON or YAML files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSdConfig {
    /// File paths, resolved against the config file's directory; the last path
    /// component may hold one `*` glob.
    pub files: Vec<PathBuf>,
    /// How often the files are re-read even without a change (default `5m`).
    #[serde(serialize_with = "serialize_duration")]
    pub refresh_interval: Duration,
}

/// Prometheus's `patFileSDName`: what a file_sd path may look like.
fn is_valid_file_sd_path(path: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            Regex::new(r"^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$").expect("static regex")
        })
        .is_match(path)
}

impl SdEntry for FileSdConfig {
    type Raw = RawFileSdConfig;

    fn resolve(
        raw: &RawFileSdConfig,
        section: &SdSection<'_>,
        path: &FieldPath,
        problems: &mut Problems,
    ) -> FileSdConfig {
        let files: Vec<&ScalarText> = raw.files.iter().flatten().collect();
        if files.is_empty() {
            problems.push(
                path.key("files"),
                "file service discovery config must contain at least one path name",
            );
        }
        let mut resolved = Vec::new();
        for (file_index, file) in files.into_iter().enumerate() {
            if !is_valid_file_sd_path(&file.0) {
                problems.push(
                    path.key("files").index(file_index),
                    format!("path name {:?} is not valid for file discovery", file.0),
                );
                continue;
            }
            resolved.push(join_dir(section.base_dir, &file.0));
        }
        FileSdConfig {
            files: resolved,
            refresh_interval: refresh_interval(
                &raw.refresh_interval,
                DEFAULT_FILE_SD_REFRESH_INTERVAL,
                &path.key("refresh_interval"),
                problems,
            ),
        }
    }

    fn providers(entries: &[FileSdConfig]) -> Vec<SdConfig> {
        entries.iter().cloned().map(SdConfig::File).collect()
    }
}
