//! Samples as they travel through the dataflow, and Prometheus's stale marker.

use crate::labels::Labels;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The bit pattern Prometheus uses for a staleness marker: a NaN that no computation
/// produces, written when a series disappears from its target.
pub const STALE_MARKER_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64`.
pub const STALE_MARKER: f64 = f64::from_bits(STALE_MARKER_BITS);

/// Whether `value` is a staleness marker (compared by bits; an ordinary NaN is not).
pub fn is_stale_marker(value: f64) -> bool {
    value.to_bits() == STALE_MARKER_BITS
}

/// One sample of one series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    /// The series id ([`Labels::hash`] of `labels`), used to exchange by series.
    pub series_id: u64,
    /// The series' labels, shared by every sample of the series in this process.
    pub labels: Arc<Labels>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; may be [`STALE_MARKER`].
    pub value: f64,
    /// Start timestamp (ms): when the counter this sample belongs to started counting
    /// (OpenMetrics `_created`, OTLP's start time, a script's `@st` line), used by
    /// `rate`, `increase`, `irate` and `resets` as Prometheus 3.x's
    /// `use-start-timestamps` does. 0: unknown.
    #[serde(default)]
    pub start_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_not_an_ordinary_nan() {
        assert!(is_stale_marker(STALE_MARKER));
        assert!(STALE_MARKER.is_nan());
        assert!(!is_stale_marker(f64::NAN));
        assert!(!is_stale_marker(1.0));
    }
}
