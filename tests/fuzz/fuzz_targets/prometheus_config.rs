//! Fuzzes the Prometheus config loader (`promflow::config::Config::load_str`, what
//! startup, reload and `promflow check config` run on `prometheus.yml`), then prints
//! an accepted config as `/api/v1/status/config` does. Checks only that nothing
//! panics, aborts, or runs without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promflow::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: relative paths in the config resolve there.
    if let Ok(config) = Config::load_str(text, "prometheus.yml", Path::new("/nonexistent-fuzz")) {
        let _ = config.to_yaml();
    }
});
