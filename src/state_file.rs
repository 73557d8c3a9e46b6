//! Small state files in the storage directory: what was registered over the HTTP API
//! (rule groups, federation views) and must survive a restart.
//!
//! Contract: [`write_atomically`] leaves either the old or the new content on disk,
//! never a torn file — the content goes to a temporary file in the same directory,
//! which is fsynced and renamed over the target, then the directory is fsynced.
//! [`read_optional`] treats a missing file as "nothing registered yet".

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `contents` atomically (temp file + fsync + rename + dir fsync).
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the directory entry is.
    std::fs::File::open(dir)?.sync_all()
}

/// A state file that exists but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub struct ReadError {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The file's text, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, ReadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReadError {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yml");
        assert_eq!(read_optional(&path).unwrap(), None);
        write_atomically(&path, b"a: 1\n").unwrap();
        write_atomically(&path, b"a: 2\n").unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("a: 2\n"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.yml")]);
    }
}
