//! Reading samples and series by matchers: [`Storage::select`] (every series matching
//! a selector with its samples in a time range) and [`Storage::series_in_range`] (the
//! labels of matching series with a sample in a range), each over the blocks that
//! overlap the range and the head; and `Storage` as the reference evaluator's
//! [`SeriesSource`](dataflows::promql::eval::SeriesSource) of floats only.
//! [`Storage::select_histograms`] reads native-histogram samples the same way (blocks
//! and head); [`Storage::select_with_histograms`] and [`HistogramSource`] add them as
//! the evaluator's handles ([`dataflows::promql::eval::native`]), for the ad-hoc query
//! API and rules evaluated over storage; `Storage` itself, as a source, holds float
//! samples only (remote read and federation read histograms apart).
//!
//! Contract: one entry per series, its samples in time order with one sample per
//! timestamp, whether they are in blocks, in the head or (for the moment between a
//! block cut and the head's truncation) in both; a block that cannot be read is
//! counted and logged, and the rest is still answered.

use super::block::Block;
use super::{SeriesHistogramsInRange, SeriesInRange, SeriesSamplesInRange, Storage};
use dataflows::histogram::FloatHistogram;
use dataflows::promql::eval::native::{handle, SOURCE};
use dataflows::promql::eval::{Selected, SeriesSource};
use dataflows::{Labels, Selector};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Storage {
    /// The samples of every series matching `selector` with timestamps in `[start, end]`.
    pub fn select(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesSamplesInRange> {
        let head = self.head.select(selector, start_ms, end_ms);
        let blocks = self.blocks_overlapping(start_ms, end_ms);
        self.merge_blocks_and_head(&blocks, head, |b| b.select(selector, start_ms, end_ms))
    }

    /// The native-histogram samples of every series matching `selector` with
    /// timestamps in `[start, end]`, from the blocks and the head (series without one
    /// there are left out). Reads no block file while no block holds histograms.
    pub fn select_histograms(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesHistogramsInRange> {
        let head = self.head.select_histograms(selector, start_ms, end_ms);
        let mut blocks = self.blocks_overlapping(start_ms, end_ms);
        blocks.retain(|b| b.has_histograms());
        self.merge_blocks_and_head(&blocks, head, |b| {
            b.select_histograms(selector, start_ms, end_ms)
        })
    }

    /// What `read` finds in each of `blocks` and `head`, merged by series: one entry
    /// per series, its samples in time order, one per timestamp.
    fn merge_blocks_and_head<T>(
        &self,
        blocks: &[Arc<Block>],
        head: Vec<SeriesInRange<T>>,
        read: impl Fn(&Block) -> std::io::Result<Vec<SeriesInRange<T>>>,
    ) -> Vec<SeriesInRange<T>> {
        if blocks.is_empty() {
            return head;
        }
        let mut merged: BTreeMap<Arc<Labels>, Vec<(i64, T)>> = BTreeMap::new();
        for block in blocks {
            match read(block) {
                Ok(found) => {
                    for (labels, samples) in found {
                        merged.entry(labels).or_default().extend(samples);
                    }
                }
                Err(e) => {
                    self.metrics.block_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(block = %block.dir().display(), error = %e, "reading a block failed");
                }
            }
        }
        for (labels, samples) in head {
            merged.entry(labels).or_default().extend(samples);
        }
        merged
            .into_iter()
            .map(|(labels, mut samples)| {
                // Blocks are in time order and the head follows them; a sample can be in
                // both only for the moment between a cut and the head's truncation (for
                // histograms, which the head drops by whole chunks, a little longer).
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
                (labels, samples)
            })
            .collect()
    }

    pub(super) fn blocks_overlapping(&self, start_ms: i64, end_ms: i64) -> Vec<Arc<Block>> {
        self.persisted.as_ref().map_or_else(Vec::new, |p| {
            p.blocks
                .read()
                .iter()
                .filter(|b| b.overlaps(start_ms, end_ms))
                .cloned()
                .collect()
        })
    }

    /// Labels of every series matching any of `selectors` (all if none) with a sample in
    /// `[start, end]`, sorted.
    pub fn series_in_range(
        &self,
        selectors: &[Selector],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<Arc<Labels>> {
        let mut out = self.head.series_in_range(selectors, start_ms, end_ms);
        let blocks = self.blocks_overlapping(start_ms, end_ms);
        if blocks.is_empty() {
            return out;
        }
        let all = [Selector { matchers: vec![] }];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        for block in blocks {
            // Series listed by a block's index have a sample in its range; a partial
            // overlap needs a look at the samples.
            let whole = block.meta().min_t >= start_ms
                && block.meta().max_t - 1 <= end_ms
                && !block.has_tombstones();
            for selector in selectors {
                if whole {
                    out.extend(block.series_matching(std::slice::from_ref(selector)));
                    continue;
                }
                if let Ok(found) = block.select(selector, start_ms, end_ms) {
                    out.extend(found.into_iter().map(|(labels, _)| labels));
                }
                if let Ok(found) = block.select_histograms(selector, start_ms, end_ms) {
                    out.extend(found.into_iter().map(|(labels, _)| labels));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Storage {
    /// [`Storage::select`] with the native-histogram samples
    /// ([`Storage::select_histograms`]) merged in, each as a handle ([`SOURCE`]) to its
    /// histogram pushed onto `table` (one sample per timestamp: a float sample at the
    /// same time wins). Exactly `select` while no histogram is stored.
    pub fn select_with_histograms(
        &self,
        selector: &Selector,
        start_ms: i64,
        end_ms: i64,
        table: &RefCell<Vec<Arc<FloatHistogram>>>,
    ) -> Selected {
        let mut floats = self.select(selector, start_ms, end_ms);
        let histograms = self.select_histograms(selector, start_ms, end_ms);
        if histograms.is_empty() {
            return floats;
        }
        let position: HashMap<Arc<Labels>, usize> = floats
            .iter()
            .enumerate()
            .map(|(i, (labels, _))| (labels.clone(), i))
            .collect();
        let mut table = table.borrow_mut();
        for (labels, samples) in histograms {
            let handles = samples.into_iter().map(|(ts, h)| {
                table.push(Arc::new(h));
                (ts, handle(SOURCE, (table.len() - 1) as u32))
            });
            match position.get(&labels) {
                Some(&i) => {
                    let merged = &mut floats[i].1;
                    merged.extend(handles);
                    merged.sort_by_key(|s| s.0);
                    merged.dedup_by_key(|s| s.0);
                }
                None => floats.push((labels, handles.collect())),
            }
        }
        floats
    }
}

/// The ad-hoc evaluator's view of storage with native histograms
/// ([`Storage::select_with_histograms`]): holds the histograms its selections
/// returned for as long as the query.
pub struct HistogramSource<'a> {
    storage: &'a Storage,
    histograms: RefCell<Vec<Arc<FloatHistogram>>>,
}

impl<'a> HistogramSource<'a> {
    /// A source over `storage` for one query.
    pub fn new(storage: &'a Storage) -> HistogramSource<'a> {
        HistogramSource {
            storage,
            histograms: RefCell::new(Vec::new()),
        }
    }

    /// The histograms the selections returned so far, by handle index.
    pub fn histograms(&self) -> Vec<Arc<FloatHistogram>> {
        self.histograms.borrow().clone()
    }
}

impl SeriesSource for HistogramSource<'_> {
    fn select(&self, matchers: &Selector, start_ms: i64, end_ms: i64) -> Selected {
        self.storage
            .select_with_histograms(matchers, start_ms, end_ms, &self.histograms)
    }

    fn histogram(&self, index: u32) -> Option<Arc<FloatHistogram>> {
        self.histograms.borrow().get(index as usize).cloned()
    }
}

impl dataflows::promql::eval::SeriesSource for Storage {
    fn select(
        &self,
        matchers: &Selector,
        start_ms: i64,
        end_ms: i64,
    ) -> dataflows::promql::eval::Selected {
        Storage::select(self, matchers, start_ms, end_ms)
    }
}
