//! The project's shared reference data for tests: `shared/` beside the checkout
//! (Prometheus's PromQL test scripts, outputs captured from the real peers). It sits
//! beside the project's own working copies and CI's clone; a user's clone has none.
//!
//! Contract: [`locate`] returns the path when it exists. When it does not, it says on
//! stderr (past the test harness's capture, so it shows in `cargo test` output) that
//! the check reading it is skipped and returns `None` — except under `CI=true`, where
//! it panics, so CI never passes by skipping.

use std::io::Write;
use std::path::PathBuf;

/// `shared/<relative>` beside the checkout; see the module contract. `what` names the
/// check that needs it.
pub fn locate(relative: &str, what: &str) -> Option<PathBuf> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(relative);
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "{what}: {} is absent (the shared reference data beside the project's checkout)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}; CI=true requires it");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
    None
}
