//! Where a relative file name in the config file points: Prometheus 2.42's
//! `config.JoinDir`, which is Go's `filepath.Join` (and so `filepath.Clean`) of the
//! config file's directory and the name. The joined, cleaned path is what Prometheus
//! opens and what `/api/v1/status/config` prints (`./pw` next to `prometheus.yml`
//! prints as `pw`; `/etc/prometheus/sub/../pw` as `/etc/prometheus/pw`).

use std::path::{Path, PathBuf};

/// `file` resolved against `dir` as Prometheus does: an absolute name is kept as
/// written (not cleaned); a relative one is joined to `dir` and cleaned lexically.
/// An empty `dir` keeps every name as written, for the sections Prometheus 2.42
/// never resolves (the HTTP client of `ec2_sd_configs`).
pub(crate) fn join_dir(dir: &Path, file: &str) -> PathBuf {
    if file.is_empty() || Path::new(file).is_absolute() || dir.as_os_str().is_empty() {
        return PathBuf::from(file);
    }
    PathBuf::from(clean(&format!("{}/{file}", dir.display())))
}

/// Go's `filepath.Clean` on Unix: one slash between names, no `.` names, each `..`
/// removes the name before it (at the root it is dropped), no trailing slash, and
/// `.` for nothing.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut names: Vec<&str> = Vec::new();
    for name in path.split('/') {
        match name {
            "" | "." => {}
            ".." => match names.last() {
                Some(&last) if last != ".." => {
                    names.pop();
                }
                _ if rooted => {}
                _ => names.push(".."),
            },
            name => names.push(name),
        }
    }
    let joined = names.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expectations from Go's `filepath.Clean` documentation and tests (path_test.go).
    #[test]
    fn clean_is_gos() {
        for (path, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/./..", "a/b"),
            ("./abc", "abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("../../abc", "../../abc"),
            ("abc/../../..", "../.."),
            ("/../abc", "/abc"),
            ("/", "/"),
            ("//abc", "/abc"),
            ("abc/./../def", "def"),
            (".", "."),
            ("..", ".."),
        ] {
            assert_eq!(clean(path), want, "{path:?}");
        }
    }

    #[test]
    fn joins_like_config_join_dir() {
        assert_eq!(join_dir(Path::new("."), "./pw"), PathBuf::from("pw"));
        assert_eq!(
            join_dir(Path::new("/etc/p"), "sub/../pw"),
            PathBuf::from("/etc/p/pw")
        );
        assert_eq!(
            join_dir(Path::new("/etc/p"), "/x/./y"),
            PathBuf::from("/x/./y")
        );
        assert_eq!(join_dir(Path::new("cfg"), "../pw"), PathBuf::from("pw"));
        assert_eq!(join_dir(Path::new(""), "./pw"), PathBuf::from("./pw"));
    }
}
