//! Scraping: turning targets into samples, one tokio task per target.
//!
//! - [`exposition`] parses the text exposition format 0.0.4 and OpenMetrics 1.0.
//! - [`target`] resolves a scrape config into the targets to scrape (labels, URL).
//! - [`scrape_loop`] is the per-target task: fetch, parse, label, stale markers,
//!   synthetic series (`up`, …), commit through the ingester.
//! - [`scrape_cache`] is a loop's memory of what each exposed series became, which
//!   also drives its stale markers.
//! - `nhcb` turns scraped classic histograms into native histograms with custom
//!   buckets (`convert_classic_histograms_to_nhcb`).
//! - [`manager`] reconciles the running loops with the wanted targets on every
//!   (re)load: new targets start, removed ones stop with stale markers, unchanged
//!   ones keep running.

pub mod exposition;
pub mod manager;
mod nhcb;
pub mod scrape_cache;
pub mod scrape_loop;
pub mod target;

pub use manager::ScrapeManager;
pub use target::TargetSpec;
