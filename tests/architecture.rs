//! The layers of ARCHITECTURE.md hold in the code: no module of `src/` uses a module
//! of a higher layer.
//!
//! Reads the layer table of ARCHITECTURE.md (`| layer | `module` | … |` rows) and every
//! `crate::…` path in `src/` outside comments (`use crate::a::b;`, `use crate::{a, b};`,
//! `crate::a::f()` in expressions). A file belongs to the top-level module of its path
//! (`src/rules/group.rs` → `rules`); `main.rs` and `lib.rs` are the crate's edge and
//! are not checked. A module missing from the table is an error too, so a new folder
//! gets a row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `module → layer` from the table in ARCHITECTURE.md.
fn layer_table(markdown: &str) -> BTreeMap<String, u32> {
    let mut layers = BTreeMap::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| 7 | `rules` | owns | may use |" splits into ["", "7", "`rules`", …].
        if cells.len() < 4 {
            continue;
        }
        let (Ok(layer), Some(module)) = (
            cells[1].parse::<u32>(),
            cells[2].strip_prefix('`').and_then(|m| m.strip_suffix('`')),
        ) else {
            continue;
        };
        layers.insert(module.to_string(), layer);
    }
    layers
}

/// `source` with comments and the contents of string and char literals blanked
/// (replaced by spaces, newlines kept), so only code is left.
fn code_of(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            chars.get(i + 1 + hashes) == Some(&'"')
                && !chars[..i]
                    .last()
                    .is_some_and(|p| p.is_ascii_alphanumeric() || *p == '_')
        } {
            // A raw string: r"…", r#"…"#, …
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            i += 2 + hashes;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&skipped) = chars.get(i) {
                    blank(&mut out, skipped);
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{…}'.
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn identifier(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules named by `crate::` paths in the code of `source`.
fn crate_modules_used(source: &str) -> Vec<String> {
    let code = code_of(source);
    let mut used = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::x, b, c::{y, z}}`: the first identifier of each item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        used.push(identifier(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let module = identifier(rest);
            if !module.is_empty() {
                used.push(module.to_string());
            }
        }
    }
    used
}

/// The top-level module a file of `src/` belongs to; `None` for the crate's edge.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "main" | "lib")).then(|| module.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every use of a higher layer, and every module the table lacks, in `files`
/// (`(path relative to src/, contents)`).
fn violations(layers: &BTreeMap<String, u32>, files: &[(PathBuf, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, source) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(&own) = layers.get(&module) else {
            found.push(format!(
                "{}: module `{module}` has no row in ARCHITECTURE.md",
                path.display()
            ));
            continue;
        };
        for used in crate_modules_used(source) {
            match layers.get(&used) {
                None => found.push(format!(
                    "{}: uses `crate::{used}`, which has no row in ARCHITECTURE.md",
                    path.display()
                )),
                Some(&layer) if layer > own => found.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {layer})",
                    path.display()
                )),
                Some(_) => {}
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_module_uses_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = layer_table(
        &std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md"),
    );
    assert!(
        layers.len() >= 10,
        "the layer table of ARCHITECTURE.md was not found: {layers:?}"
    );
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path).expect("read source");
            (
                path.strip_prefix(&src).expect("under src").to_path_buf(),
                source,
            )
        })
        .collect();
    assert!(files.len() > 50, "src/ was not read");
    let found = violations(&layers, &files);
    assert!(
        found.is_empty(),
        "imports against ARCHITECTURE.md's layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn an_upward_import_is_found() {
    let layers = layer_table(
        "| layer | module | owns | may use |\n| --- | --- | --- | --- |\n\
         | 0 | `exposition` | x | — |\n| 4 | `storage` | x | 0 |\n| 10 | `api` | x | all |\n",
    );
    let file = |path: &str, source: &str| (PathBuf::from(path), source.to_string());
    let files = [
        // Allowed: same layer, lower layers, comments, strings, other crates' `crate::`.
        file(
            "storage/mod.rs",
            "//! See [`crate::api`].\nuse crate::exposition::write_sample;\n\
             use crate::storage::head;\nlet s = \"// crate::api\"; // crate::api::x\n\
             use dataflows::crate_x;\n",
        ),
        file("main.rs", "use crate::api::serve;\n"),
        // Not allowed.
        file(
            "storage/block.rs",
            "let q = '\"'; let r = r#\"crate::api\"#; /* crate::api */\nfn f() { crate::api::text(); }\n",
        ),
        file(
            "storage/wal.rs",
            "use crate::{\n    exposition::write_type,\n    api::{auth, mod_x},\n};\n",
        ),
        file("exposition.rs", "use crate::unknown::x;\n"),
        file("newmod/mod.rs", "use crate::exposition::x;\n"),
    ];
    assert_eq!(
        violations(&layers, &files),
        [
            "exposition.rs: uses `crate::unknown`, which has no row in ARCHITECTURE.md",
            "newmod/mod.rs: module `newmod` has no row in ARCHITECTURE.md",
            "storage/block.rs: `storage` (layer 4) uses `crate::api` (layer 10)",
            "storage/wal.rs: `storage` (layer 4) uses `crate::api` (layer 10)",
        ]
    );
}
