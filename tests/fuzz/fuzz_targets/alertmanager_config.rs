//! Fuzzes the Alertmanager config loader
//! (`promflow::alertmanager::config::NotifyConfig::load_str`, what the built-in
//! Alertmanager runs on `alertmanager.yml`). Checks only that nothing panics, aborts,
//! or runs without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promflow::alertmanager::config::NotifyConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: `templates:` paths resolve there.
    let _ = NotifyConfig::load_str(text, "alertmanager.yml", Path::new("/nonexistent-fuzz"));
});
