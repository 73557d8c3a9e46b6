//! Build script: tells cargo that the web UI's built assets, embedded by
//! `src/api/ui.rs` with `include_dir!`, are inputs of the crate, so a rebuilt
//! `web/ui/dist` is embedded at the next build (include_dir 0.7 does not track the
//! files it embeds).
fn main() {
    println!("cargo:rerun-if-changed=web/ui/dist");
}
