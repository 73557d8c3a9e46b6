//! Fuzzes rule groups as they arrive: a rule file (`promflow::rules::file::load_str`,
//! what rule loading and `promflow check rules` run) and the same text as a rules API
//! body (`promflow::rules::registry::validate_group`, what
//! `PUT /api/v1/rules/{namespace}/{group}` runs). Checks only that nothing panics,
//! aborts, or runs without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promflow::rules::{file, registry};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = file::load_str(text, "rules.yml", Path::new("/nonexistent-fuzz/rules.yml"));
    let _ = registry::validate_group("namespace", "group", text);
});
