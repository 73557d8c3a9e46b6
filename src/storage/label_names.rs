//! Label names and values of the stored series, for `/api/v1/labels` and
//! `/api/v1/label/<name>/values` without `match[]`: read from the indexes of the head
//! and of the blocks, no series read.
//!
//! Contract, as Prometheus's `LabelNames`/`LabelValues` without matchers: the names (or
//! values) of every series of the head and of each block whose time range overlaps
//! `[start, end]`, sorted and distinct; a series is not checked for a sample in the
//! range itself.

use super::Storage;

impl Storage {
    /// Every label name of a series in the head or a block overlapping `[start, end]`.
    pub fn label_names(&self, start_ms: i64, end_ms: i64) -> Vec<String> {
        self.read_indexes(
            start_ms,
            end_ms,
            |head| head.label_names(),
            |block| block.label_names(),
        )
    }

    /// Every value of label `name` in the head or a block overlapping `[start, end]`.
    pub fn label_values(&self, name: &str, start_ms: i64, end_ms: i64) -> Vec<String> {
        self.read_indexes(
            start_ms,
            end_ms,
            |head| head.label_values(name),
            |block| block.label_values(name),
        )
    }

    fn read_indexes(
        &self,
        start_ms: i64,
        end_ms: i64,
        head: impl FnOnce(&super::head::Head) -> Vec<String>,
        block: impl Fn(&super::block::Block) -> Vec<String>,
    ) -> Vec<String> {
        let mut out = match self.head.time_range() {
            Some((min_t, max_t)) if min_t <= end_ms && max_t >= start_ms => head(&self.head),
            _ => Vec::new(),
        };
        for b in self.blocks_overlapping(start_ms, end_ms) {
            out.extend(block(&b));
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
