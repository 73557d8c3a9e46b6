//! `promflow check rules` against `promtool check rules` (Prometheus 2.42): the same
//! files are accepted or rejected by both, and promflow lists every problem with file
//! and line. Files live in `tests/rules_data/` plus the shipped `queries/*.yml`.
//!
//! Real peers: promtool 2.42 (`prometheus`). `.ci/run` installs it.

mod common;

use common::{combined_output, promflow_bin, promtool, repo_root, run_command, COMMAND_TIMEOUT};
use std::path::PathBuf;
use std::process::Command;

fn rule_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["tests/rules_data", "queries"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn promflow_check(file: &PathBuf) -> (bool, String) {
    let mut cmd = Command::new(promflow_bin());
    cmd.args(["check", "rules"]).arg(file);
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    (out.status.success(), combined_output(&out))
}

#[test]
fn accepts_and_rejects_the_same_files_as_promtool() {
    let files = rule_files();
    assert!(files.len() >= 10, "{files:?}");
    let mut disagreements = Vec::new();
    for file in &files {
        let (want, promtool_out) = promtool(
            &["check", "rules", &file.display().to_string()],
            &repo_root(),
        );
        let (got, promflow_out) = promflow_check(file);
        if want != got {
            disagreements.push(format!(
                "{}: promtool ok={want}, promflow ok={got}\n--- promtool\n{promtool_out}\n--- promflow\n{promflow_out}",
                file.display()
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn lists_every_problem_with_file_group_rule_and_line() {
    let file = repo_root().join("tests/rules_data/bad_many.yml");
    let (ok, out) = promflow_check(&file);
    assert!(!ok);
    let name = file.display().to_string();
    for expected in [
        format!(
            "{name}:6: group \"g1\", rule 1, \"bad name\": invalid field 'for' in recording rule"
        ),
        format!(
            "{name}:4: group \"g1\", rule 1, \"bad name\": invalid recording rule name: bad name"
        ),
        format!(
            "{name}:8: group \"g1\", rule 2, \"B\": only one of 'record' and 'alert' must be set"
        ),
        format!("{name}:12: group \"g1\", rule 3, \"ok\": invalid label name: bad-label"),
        format!("{name}:14: groupname: \"g1\" is repeated in the same file"),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn bad_promql_is_located() {
    let file = repo_root().join("tests/rules_data/bad_expr.yml");
    let (ok, out) = promflow_check(&file);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{}:5: group \"g\", rule 1, \"A\": could not parse expression",
            file.display()
        )),
        "{out}"
    );
}
