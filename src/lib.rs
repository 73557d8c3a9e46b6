//! promflow as a library: the service's layers, used by the `promflow` binary.

pub mod scrape;
