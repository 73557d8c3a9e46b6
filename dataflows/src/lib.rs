//! promflow's dataflow layer: the only crate that touches timely types.
//!
//! The service talks to it through a small API ([`Engine`]): feed sample batches,
//! advance the watermark, read maintained outputs. It knows nothing of HTTP, config
//! files or scraping.
//!
//! Contract of the time model (see DESIGN.md): logical time is milliseconds; the input
//! frontier is the watermark given by the service (it never passes the start time of a
//! scrape still in flight); samples older than the watermark are *late*: they are counted
//! and never merged into the dataflow at the wrong time.

// No unsafe code anywhere in the dataflows: the compiler holds us to it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arrival;
pub mod catalog;
pub mod engine;
pub mod go_float;
pub mod histogram;
pub mod labels;
pub mod latest;
pub mod postings;
pub mod promql;
pub mod render;
pub mod sample;
pub mod selector;
pub mod shared_data;

pub use catalog::SeriesCatalog;
pub use engine::{ClusterConfig, Engine, EngineConfig, EngineError, EngineStats};
pub use labels::Labels;
pub use latest::{ChangeListener, LatestChange, LatestEntry, LatestTable};
pub use render::{Delivery, Evaluation, RenderError, RuleHandle, RuleId, RuleOutput, RuleSchedule};
pub use sample::{
    is_stale_marker, is_start_zero, HistogramPoint, Point, Sample, SampleBatch, STALE_MARKER,
};
pub use selector::{LabelMatcher, MatchKind, MatcherError, Selector};
