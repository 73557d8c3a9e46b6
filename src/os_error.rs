//! Go's wording of a failed file read, as Prometheus and Alertmanager print it in
//! errors users compare and grep for: an `*os.PathError` reads
//! `open /etc/token: no such file or directory` — the operation, the path and the
//! system's message in lower case — where Rust's `io::Error` says
//! `No such file or directory (os error 2)`.
//!
//! Contract: [`read_file`] reads a whole file as Go's `os.ReadFile` does (bytes, no
//! UTF-8 check) and fails with a [`PathError`] worded as Go; [`path_error`] words an
//! error of an operation on a path.

use std::io;
use std::path::{Path, PathBuf};

/// A failed operation on a path; displayed as Go's `*os.PathError`
/// (`open /etc/token: no such file or directory`).
#[derive(Debug)]
pub struct PathError {
    /// The operation (`open`, `read`).
    pub op: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The system's error.
    pub source: io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&path_error(self.op, &self.path, &self.source))
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `path`'s bytes, or why they cannot be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, PathError> {
    std::fs::read(path).map_err(|source| {
        // Opening a directory succeeds in Go and Rust alike; reading it fails.
        let op = if source.raw_os_error() == Some(21) {
            "read"
        } else {
            "open"
        };
        PathError {
            op,
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Go's text of an `*os.PathError`: `<op> <path>: <message>`.
pub fn path_error(op: &str, path: &Path, error: &io::Error) -> String {
    format!("{op} {}: {}", path.display(), message(error))
}

/// The system's message as Go's `syscall.Errno` writes it (lower case, no code);
/// other errors as Rust writes them.
fn message(error: &io::Error) -> String {
    let Some(code) = error.raw_os_error() else {
        return error.to_string();
    };
    let text = error.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_failures_as_go_does() {
        // The texts are what Prometheus 2.42 printed for the same files, e.g. a
        // target's lastError `... unable to read authorization credentials file
        // /tmp/authtest/missing-token: open /tmp/authtest/missing-token: no such file
        // or directory`.
        let dir = std::env::temp_dir().join(format!("os-error-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing-token");
        assert_eq!(
            read_file(&missing).unwrap_err().to_string(),
            format!("open {}: no such file or directory", missing.display())
        );
        assert_eq!(
            read_file(&dir).unwrap_err().to_string(),
            format!("read {}: is a directory", dir.display())
        );
        let present = dir.join("token");
        std::fs::write(&present, b"\xff secret\n").unwrap();
        assert_eq!(read_file(&present).unwrap(), b"\xff secret\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
