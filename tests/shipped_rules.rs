//! The shipped rule files in `queries/` against the oracle: `promtool check rules`
//! accepts every one of them, and `promtool test rules` proves that the CPU alert
//! (`for: 20m`) and the service-down alert fire when, and only when, they should.
//! (The configs in `deploy/` that load them: tests/deploy_files.rs.)
//!
//! Real peers: promtool 2.42 (`prometheus`). `.ci/run` installs it.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{promtool, repo_root};

/// Every `queries/*.yml`, sorted.
fn shipped_rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo_root().join("queries"))
        .expect("read queries/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn promtool_accepts_every_shipped_rule_file() {
    let files = shipped_rule_files();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "container.yml",
        "devices.yml",
        "federation.yml",
        "host.yml",
        "service.yml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "queries/{expected} missing"
        );
    }
    let mut args = vec!["check".to_string(), "rules".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = promtool(&args, &repo_root());
    assert!(ok, "promtool check rules failed:\n{out}");
    assert_eq!(
        out.matches("SUCCESS").count(),
        files.len(),
        "one SUCCESS per file expected:\n{out}"
    );
}

#[test]
fn shipped_alerts_fire_as_intended_under_promtool() {
    let (ok, out) = promtool(
        &["test", "rules", "queries/tests/host_test.yml"],
        &repo_root(),
    );
    assert!(
        ok,
        "promtool test rules queries/tests/host_test.yml failed:\n{out}"
    );
    assert!(out.contains("SUCCESS"), "{out}");
}
