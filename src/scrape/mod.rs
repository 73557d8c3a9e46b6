//! Scraping targets: fetching their `/metrics` and turning the bodies into samples.

pub mod exposition;
