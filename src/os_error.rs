//! Go's wording of a failed file read, as Prometheus and Alertmanager print it in
//! errors users compare and grep for: an `*os.PathError` reads
//! `open /etc/token: no such file or directory` — the operation, the path and the
//! system's message in lower case — where Rust's `io::Error` says
//! `No such file or directory (os error 2)`.
//!
//! Contract: [`read_file`] reads a whole file as Go's `os.ReadFile` does (bytes, no
//! UTF-8 check) and words its failure as Go; [`path_error`] words an error of an
//! operation on a path.

use std::io;
use std::path::Path;

/// `path`'s bytes, or Go's wording of why they cannot be read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        // Opening a directory succeeds in Go and Rust alike; reading it fails.
        let op = if e.raw_os_error() == Some(21) {
            "read"
        } else {
            "open"
        };
        path_error(op, path, &e)
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
            read_file(&missing).unwrap_err(),
            format!("open {}: no such file or directory", missing.display())
        );
        assert_eq!(
            read_file(&dir).unwrap_err(),
            format!("read {}: is a directory", dir.display())
        );
        let present = dir.join("token");
        std::fs::write(&present, b"\xff secret\n").unwrap();
        assert_eq!(read_file(&present).unwrap(), b"\xff secret\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
