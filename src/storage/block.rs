//! Persisted blocks: the head's samples of one time range, written once and read-only
//! afterwards, in Arrow IPC files (`arrow-ipc`).
//!
//! A block is a directory `<storage.tsdb.path>/blocks/<min_t>_<max_t>/` holding:
//! - `index.arrow`: the series index as label postings, one row per
//!   `(name, value, series)`, sorted by name, value, series. The labels of series `n`
//!   are the rows whose `series` is `n`; the series of `name="value"` are one run;
//! - `chunks.arrow`: one row per chunk (`series`, `min_t`, `max_t`, `count`, `data`:
//!   the Gorilla-encoded bytes of [`super::chunk`]), sorted by series then time, in
//!   record batches of at most [`CHUNKS_PER_BATCH`] rows so a query reads only the
//!   batches of the series it wants;
//! - `histograms.arrow` (only in a block that holds native histograms): the same
//!   columns for the series' native-histogram chunks, `data` in the encoding of
//!   [`super::histogram_chunk`] (the head's). A block without the file (every block
//!   written before histograms were persisted, and every float-only one) holds none:
//!   float series and their reads pay nothing for histograms;
//! - `meta.json`: the time range `[min_t, max_t)` and counts (samples and chunks of
//!   both kinds; `histogram_samples` and `histogram_chunks` only when not zero);
//! - `tombstones.json` (only after `delete_series`): per series number, the closed time
//!   ranges whose samples are deleted. Reads skip them; compaction and
//!   [`Block::live_chunks`] leave them out, after which the file is gone.
//!
//! Contract: [`Block::write`] writes into `<name>.tmp`, fsyncs, and renames into place,
//! so a block directory either exists whole or not at all (leftover `.tmp` directories
//! are removed by [`open_all`]). [`Block::select`] returns the float samples of
//! matching series in a closed time range, [`Block::select_histograms`] their native
//! histograms; the index lives in memory, chunk data is read from the files on demand.
//! Tombstones, compaction and rewriting treat both kinds alike.

use super::chunk::{self, EncodedChunk};
use super::histogram_chunk;
use super::postings::Postings;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use arrow_schema::{DataType, Field, Schema};
use dataflows::histogram::FloatHistogram;
use dataflows::{Labels, Selector};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per record batch of `chunks.arrow`.
pub const CHUNKS_PER_BATCH: usize = 4096;

/// `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// First millisecond covered.
    pub min_t: i64,
    /// First millisecond after the block.
    pub max_t: i64,
    /// Series in the block.
    pub series: u64,
    /// Samples in the block (floats and native histograms).
    pub samples: u64,
    /// Chunks in the block (of both kinds).
    pub chunks: u64,
    /// Of `samples`, the native-histogram ones.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub histogram_samples: u64,
    /// Of `chunks`, the native-histogram ones (in `histograms.arrow`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub histogram_chunks: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One series as a block holds it: its float chunks ([`super::chunk`]'s encoding)
/// and its native-histogram chunks ([`super::histogram_chunk`]'s), each in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSeries {
    /// The series' labels.
    pub labels: Arc<Labels>,
    /// Float chunks.
    pub floats: Vec<EncodedChunk>,
    /// Native-histogram chunks.
    pub histograms: Vec<EncodedChunk>,
}

impl BlockSeries {
    /// A series with float chunks only.
    pub fn floats(labels: Arc<Labels>, floats: Vec<EncodedChunk>) -> BlockSeries {
        BlockSeries {
            labels,
            floats,
            histograms: Vec::new(),
        }
    }

    /// Whether it holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.floats.is_empty() && self.histograms.is_empty()
    }
}

/// The two chunk files of a block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChunkFile {
    /// `chunks.arrow`: float chunks (always present).
    Floats,
    /// `histograms.arrow`: native-histogram chunks (present only if there are some).
    Histograms,
}

impl ChunkFile {
    fn name(self) -> &'static str {
        match self {
            ChunkFile::Floats => "chunks.arrow",
            ChunkFile::Histograms => "histograms.arrow",
        }
    }
}

/// An open block: metadata and index in memory.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    /// Labels by block-local series number.
    series: Vec<Arc<Labels>>,
    /// The label index over the series numbers.
    postings: Postings,
    /// Per record batch of `chunks.arrow`: its first and last series number.
    batches: Vec<(u32, u32)>,
    /// The same for `histograms.arrow` (empty without the file).
    histogram_batches: Vec<(u32, u32)>,
    /// Series number → deleted closed ranges (`tombstones.json`).
    tombstones: RwLock<Tombstones>,
}

/// Series number → deleted closed time ranges.
type Tombstones = BTreeMap<u32, Vec<(i64, i64)>>;

const TOMBSTONES_FILE: &str = "tombstones.json";

/// One entry of `tombstones.json`.
#[derive(Serialize, Deserialize)]
struct Tombstone {
    series: u32,
    min_t: i64,
    max_t: i64,
}

fn is_deleted(ranges: Option<&Vec<(i64, i64)>>, t: i64) -> bool {
    ranges.is_some_and(|r| r.iter().any(|&(min, max)| t >= min && t <= max))
}

fn arrow_err(e: arrow_schema::ArrowError) -> io::Error {
    io::Error::other(e)
}

fn index_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("series", DataType::UInt32, false),
    ]))
}

fn chunks_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("min_t", DataType::Int64, false),
        Field::new("max_t", DataType::Int64, false),
        Field::new("count", DataType::UInt32, false),
        Field::new("data", DataType::Binary, false),
    ]))
}

/// The directory name of a block covering `[min_t, max_t)`.
pub fn block_name(min_t: i64, max_t: i64) -> String {
    format!("{min_t}_{max_t}")
}

impl Block {
    /// Writes a block of `series` covering `[min_t, max_t)` under `root` and opens it.
    pub fn write(
        root: &Path,
        min_t: i64,
        max_t: i64,
        mut series: Vec<BlockSeries>,
    ) -> io::Result<Block> {
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let name = block_name(min_t, max_t);
        let tmp = root.join(format!("{name}.tmp"));
        let dir = root.join(&name);
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;

        // The postings: (name, value, series), sorted.
        let mut postings: Vec<(&str, &str, u32)> = Vec::new();
        for (n, s) in series.iter().enumerate() {
            for (name, value) in s.labels.iter() {
                postings.push((name, value, n as u32));
            }
        }
        postings.sort_unstable();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(postings.iter().map(|p| p.0))),
            Arc::new(StringArray::from_iter_values(postings.iter().map(|p| p.1))),
            Arc::new(UInt32Array::from_iter_values(postings.iter().map(|p| p.2))),
        ];
        let batch = RecordBatch::try_new(index_schema(), columns).map_err(arrow_err)?;
        write_arrow(&tmp.join("index.arrow"), &index_schema(), [batch])?;

        // The chunks, in batches: floats always, histograms if there are some.
        let floats = write_chunks(&tmp, ChunkFile::Floats, &series, |s| &s.floats)?;
        let histograms = if series.iter().any(|s| !s.histograms.is_empty()) {
            write_chunks(&tmp, ChunkFile::Histograms, &series, |s| &s.histograms)?
        } else {
            (0, 0)
        };

        let meta = BlockMeta {
            min_t,
            max_t,
            series: series.len() as u64,
            samples: floats.1 + histograms.1,
            chunks: floats.0 + histograms.0,
            histogram_samples: histograms.1,
            histogram_chunks: histograms.0,
        };
        let meta_json = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        fs::write(tmp.join("meta.json"), meta_json)?;
        File::open(tmp.join("meta.json"))?.sync_all()?;
        // Replacing a block (compaction into the same range, clean_tombstones): the
        // old one steps aside as `<name>.old` first and is removed only after the new
        // one is in place, so a crash at any point leaves one whole block (see
        // `open_all`).
        let old = root.join(format!("{name}.old"));
        if dir.exists() {
            if old.exists() {
                fs::remove_dir_all(&old)?;
            }
            fs::rename(&dir, &old)?;
        }
        fs::rename(&tmp, &dir)?;
        if let Ok(d) = File::open(root) {
            let _ = d.sync_all();
        }
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        Block::open(&dir)
    }

    /// Opens the block in `dir`, reading its metadata and index.
    pub fn open(dir: &Path) -> io::Result<Block> {
        let meta: BlockMeta = serde_json::from_slice(&fs::read(dir.join("meta.json"))?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut pairs: Vec<Vec<(String, String)>> = vec![Vec::new(); meta.series as usize];
        for batch in
            FileReader::try_new(File::open(dir.join("index.arrow"))?, None).map_err(arrow_err)?
        {
            let batch = batch.map_err(arrow_err)?;
            let names = batch.column(0).as_string::<i32>();
            let values = batch.column(1).as_string::<i32>();
            let series = batch.column(2).as_primitive::<UInt32Type>();
            for i in 0..batch.num_rows() {
                let (name, value, n) = (names.value(i), values.value(i), series.value(i));
                let slot = pairs.get_mut(n as usize).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "series number out of range")
                })?;
                slot.push((name.to_string(), value.to_string()));
            }
        }
        let series: Vec<Arc<Labels>> = pairs
            .into_iter()
            .map(|p| Arc::new(Labels::from_pairs(p)))
            .collect();
        let mut postings = Postings::new();
        for (n, labels) in series.iter().enumerate() {
            postings.add(n as u32, labels);
        }
        let batches = batch_ranges(&dir.join(ChunkFile::Floats.name()))?;
        let histogram_batches = match batch_ranges(&dir.join(ChunkFile::Histograms.name())) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            other => other?,
        };
        let mut tombstones = Tombstones::new();
        match fs::read(dir.join(TOMBSTONES_FILE)) {
            Ok(bytes) => {
                let list: Vec<Tombstone> = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                for t in list {
                    tombstones
                        .entry(t.series)
                        .or_default()
                        .push((t.min_t, t.max_t));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            series,
            postings,
            batches,
            histogram_batches,
            tombstones: RwLock::new(tombstones),
        })
    }

    /// Marks the samples in `[min_t, max_t]` of the series matching any of `selectors`
    /// as deleted, durably (`tombstones.json` is replaced atomically). Returns the
    /// number of series marked.
    pub fn delete(&self, selectors: &[Selector], min_t: i64, max_t: i64) -> io::Result<usize> {
        if selectors.is_empty() || !self.overlaps(min_t, max_t) {
            return Ok(0);
        }
        let mut numbers: Vec<u32> = selectors.iter().flat_map(|s| self.matching(s)).collect();
        numbers.sort_unstable();
        numbers.dedup();
        if numbers.is_empty() {
            return Ok(0);
        }
        let mut tombstones = self.tombstones.write();
        let mut updated = tombstones.clone();
        for &n in &numbers {
            updated.entry(n).or_default().push((min_t, max_t));
        }
        let list: Vec<Tombstone> = updated
            .iter()
            .flat_map(|(&series, ranges)| {
                ranges.iter().map(move |&(min_t, max_t)| Tombstone {
                    series,
                    min_t,
                    max_t,
                })
            })
            .collect();
        let tmp = self.dir.join(format!("{TOMBSTONES_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            io::Write::write_all(
                &mut f,
                &serde_json::to_vec(&list).map_err(io::Error::other)?,
            )?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(TOMBSTONES_FILE))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        *tombstones = updated;
        Ok(numbers.len())
    }

    /// Whether some samples of the block are deleted (by tombstones).
    pub fn has_tombstones(&self) -> bool {
        !self.tombstones.read().is_empty()
    }

    /// The block's metadata.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the block holds time `[start, end]` at all.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.meta.min_t <= end && self.meta.max_t > start
    }

    /// The numbers of the series matching `selector`, sorted, from the index.
    fn matching(&self, selector: &Selector) -> Vec<u32> {
        self.postings.select(selector)
    }

    /// Every label name of the block's series, sorted (from the index).
    pub fn label_names(&self) -> Vec<String> {
        self.postings.label_names()
    }

    /// Every value of label `name` among the block's series, sorted (from the index).
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings.label_values(name)
    }

    /// Labels of the series matching any of `selectors` (all if none).
    pub fn series_matching(&self, selectors: &[Selector]) -> Vec<Arc<Labels>> {
        if selectors.is_empty() {
            return self.series.clone();
        }
        let mut numbers: Vec<u32> = selectors.iter().flat_map(|s| self.matching(s)).collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
            .into_iter()
            .map(|n| self.series[n as usize].clone())
            .collect()
    }

    /// Whether the block holds native-histogram chunks.
    pub fn has_histograms(&self) -> bool {
        !self.histogram_batches.is_empty()
    }

    /// The float samples of every series matching `selector` in `[start, end]`.
    pub fn select(
        &self,
        selector: &Selector,
        start: i64,
        end: i64,
    ) -> io::Result<Vec<super::SeriesSamplesInRange>> {
        self.select_from(
            ChunkFile::Floats,
            selector,
            start,
            end,
            |bytes, count, push| chunk::decode(bytes, count).for_each(|(t, v)| push(t, v)),
        )
    }

    /// The native-histogram samples of every series matching `selector` in
    /// `[start, end]`.
    pub fn select_histograms(
        &self,
        selector: &Selector,
        start: i64,
        end: i64,
    ) -> io::Result<Vec<super::SeriesHistogramsInRange>> {
        if !self.has_histograms() {
            return Ok(Vec::new());
        }
        self.select_from(
            ChunkFile::Histograms,
            selector,
            start,
            end,
            |bytes, count, push| {
                histogram_chunk::decode(bytes, count)
                    .into_iter()
                    .for_each(|(t, h)| push(t, h))
            },
        )
    }

    /// The samples of one chunk file for [`Block::select`] and
    /// [`Block::select_histograms`]: `decode` hands every sample of a chunk's bytes to
    /// its third argument, which keeps those in range and not deleted.
    fn select_from<T>(
        &self,
        file: ChunkFile,
        selector: &Selector,
        start: i64,
        end: i64,
        decode: impl Fn(&[u8], u16, &mut dyn FnMut(i64, T)),
    ) -> io::Result<Vec<super::SeriesInRange<T>>> {
        if !self.overlaps(start, end) {
            return Ok(Vec::new());
        }
        let wanted = self.matching(selector);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let batches = match file {
            ChunkFile::Floats => &self.batches,
            ChunkFile::Histograms => &self.histogram_batches,
        };
        let mut out: BTreeMap<u32, Vec<(i64, T)>> = BTreeMap::new();
        let tombstones = self.tombstones.read();
        let mut reader = FileReader::try_new(File::open(self.dir.join(file.name()))?, None)
            .map_err(arrow_err)?;
        for (i, &(first, last)) in batches.iter().enumerate() {
            let from = wanted.partition_point(|&n| n < first);
            if wanted.get(from).is_none_or(|&n| n > last) {
                continue;
            }
            reader.set_index(i).map_err(arrow_err)?;
            let Some(batch) = reader.next() else { break };
            let batch = batch.map_err(arrow_err)?;
            let rows = ChunkRows::of(&batch);
            for row in 0..batch.num_rows() {
                let n = rows.series.value(row);
                if wanted.binary_search(&n).is_err()
                    || rows.max_t.value(row) < start
                    || rows.min_t.value(row) > end
                {
                    continue;
                }
                let count = rows.count(row);
                let deleted = tombstones.get(&n);
                let into = out.entry(n).or_default();
                decode(rows.data.value(row), count, &mut |t, v| {
                    if t >= start && t <= end && !is_deleted(deleted, t) {
                        into.push((t, v));
                    }
                });
            }
        }
        Ok(out
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(n, s)| (self.series[n as usize].clone(), s))
            .collect())
    }

    /// Every series with all its chunks, in time order (for compaction).
    pub fn all_chunks(&self) -> io::Result<Vec<BlockSeries>> {
        let mut out: Vec<BlockSeries> = self
            .series
            .iter()
            .map(|l| BlockSeries::floats(l.clone(), Vec::new()))
            .collect();
        let files: &[ChunkFile] = if self.has_histograms() {
            &[ChunkFile::Floats, ChunkFile::Histograms]
        } else {
            &[ChunkFile::Floats]
        };
        for &file in files {
            let reader = FileReader::try_new(File::open(self.dir.join(file.name()))?, None)
                .map_err(arrow_err)?;
            for batch in reader {
                let batch = batch.map_err(arrow_err)?;
                let rows = ChunkRows::of(&batch);
                for row in 0..batch.num_rows() {
                    let slot = out
                        .get_mut(rows.series.value(row) as usize)
                        .ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "series number out of range")
                        })?;
                    let chunk = EncodedChunk {
                        bytes: rows.data.value(row).to_vec(),
                        count: rows.count(row),
                        min_t: rows.min_t.value(row),
                        max_t: rows.max_t.value(row),
                    };
                    match file {
                        ChunkFile::Floats => slot.floats.push(chunk),
                        ChunkFile::Histograms => slot.histograms.push(chunk),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every series with what is left of its chunks once deleted samples are left
    /// out (chunks holding some are re-encoded); series with nothing left are dropped.
    pub fn live_chunks(&self) -> io::Result<Vec<BlockSeries>> {
        let all = self.all_chunks()?;
        let tombstones = self.tombstones.read();
        if tombstones.is_empty() {
            return Ok(all);
        }
        Ok(all
            .into_iter()
            .enumerate()
            .map(|(n, series)| match tombstones.get(&(n as u32)) {
                None => series,
                Some(ranges) => {
                    let live = |t: i64| !is_deleted(Some(ranges), t);
                    let floats = series
                        .floats
                        .iter()
                        .flat_map(|c| c.samples().collect::<Vec<_>>())
                        .filter(|&(t, _)| live(t));
                    let histograms = series
                        .histograms
                        .iter()
                        .flat_map(|c| histogram_chunk::decode(&c.bytes, c.count))
                        .filter(|(t, _)| live(*t));
                    BlockSeries {
                        labels: series.labels,
                        floats: chunk::encode(floats.collect::<Vec<_>>()),
                        histograms: histogram_chunk::encode(
                            histograms.collect::<Vec<(i64, FloatHistogram)>>(),
                        ),
                    }
                }
            })
            .filter(|series| !series.is_empty())
            .collect())
    }

    /// Bytes of the block's files.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

/// Bytes of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Writes one block covering `[min_t, max_t)` from `parts` (blocks inside that range)
/// by copying their chunks of both kinds (less deleted samples), series by series, in
/// time order. A chunk that starts no later than the series' last chunk of its kind so
/// far is a duplicate (a compaction interrupted before its inputs were deleted leaves
/// such overlaps) and is skipped.
pub fn compact(root: &Path, min_t: i64, max_t: i64, parts: &[Arc<Block>]) -> io::Result<Block> {
    let mut parts: Vec<&Arc<Block>> = parts.iter().collect();
    parts.sort_by_key(|b| (b.meta.min_t, std::cmp::Reverse(b.meta.max_t)));
    let mut merged: BTreeMap<Arc<Labels>, BlockSeries> = BTreeMap::new();
    for block in parts {
        for series in block.live_chunks()? {
            let into = merged
                .entry(series.labels.clone())
                .or_insert_with(|| BlockSeries::floats(series.labels.clone(), Vec::new()));
            for (from, into) in [
                (series.floats, &mut into.floats),
                (series.histograms, &mut into.histograms),
            ] {
                for c in from {
                    if into.last().is_none_or(|last| c.min_t > last.max_t) {
                        into.push(c);
                    }
                }
            }
        }
    }
    Block::write(root, min_t, max_t, merged.into_values().collect())
}

/// Writes the chunk file `file` of `series` (the chunks `chunks` picks) into `dir`, in
/// record batches of [`CHUNKS_PER_BATCH`] rows; returns `(chunks, samples)` written.
fn write_chunks(
    dir: &Path,
    file: ChunkFile,
    series: &[BlockSeries],
    chunks: impl Fn(&BlockSeries) -> &Vec<EncodedChunk>,
) -> io::Result<(u64, u64)> {
    let rows: Vec<(u32, &EncodedChunk)> = series
        .iter()
        .enumerate()
        .flat_map(|(n, s)| chunks(s).iter().map(move |c| (n as u32, c)))
        .collect();
    let batches = rows
        .chunks(CHUNKS_PER_BATCH)
        .map(|rows| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.min_t))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.max_t))),
                Arc::new(UInt32Array::from_iter_values(
                    rows.iter().map(|r| u32::from(r.1.count)),
                )),
                Arc::new(BinaryArray::from_iter_values(
                    rows.iter().map(|r| r.1.bytes.as_slice()),
                )),
            ];
            RecordBatch::try_new(chunks_schema(), columns).map_err(arrow_err)
        })
        .collect::<io::Result<Vec<_>>>()?;
    write_arrow(&dir.join(file.name()), &chunks_schema(), batches)?;
    let samples = rows.iter().map(|r| u64::from(r.1.count)).sum();
    Ok((rows.len() as u64, samples))
}

/// The columns of a record batch of a chunk file (`series`, `min_t`, `max_t`,
/// `count`, `data`; the same for float and histogram chunks).
struct ChunkRows<'b> {
    series: &'b UInt32Array,
    min_t: &'b Int64Array,
    max_t: &'b Int64Array,
    counts: &'b UInt32Array,
    data: &'b BinaryArray,
}

impl<'b> ChunkRows<'b> {
    fn of(batch: &'b RecordBatch) -> ChunkRows<'b> {
        ChunkRows {
            series: batch.column(0).as_primitive::<UInt32Type>(),
            min_t: batch.column(1).as_primitive::<Int64Type>(),
            max_t: batch.column(2).as_primitive::<Int64Type>(),
            counts: batch.column(3).as_primitive::<UInt32Type>(),
            data: batch.column(4).as_binary::<i32>(),
        }
    }

    /// Samples in the chunk of `row`.
    fn count(&self, row: usize) -> u16 {
        u16::try_from(self.counts.value(row)).unwrap_or(u16::MAX)
    }
}

/// Per record batch of the chunk file at `path`: its first and last series number.
fn batch_ranges(path: &Path) -> io::Result<Vec<(u32, u32)>> {
    let mut ranges = Vec::new();
    for batch in FileReader::try_new(File::open(path)?, None).map_err(arrow_err)? {
        let batch = batch.map_err(arrow_err)?;
        let s = batch.column(0).as_primitive::<UInt32Type>();
        if batch.num_rows() > 0 {
            ranges.push((s.value(0), s.value(batch.num_rows() - 1)));
        }
    }
    Ok(ranges)
}

fn write_arrow(
    path: &Path,
    schema: &Arc<Schema>,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> io::Result<()> {
    let file = File::create(path)?;
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(arrow_err)?;
    let mut writer = FileWriter::try_new_with_options(file, schema, options).map_err(arrow_err)?;
    for batch in batches {
        writer.write(&batch).map_err(arrow_err)?;
    }
    writer.finish().map_err(arrow_err)?;
    writer.get_ref().sync_all()
}

/// Opens every block under `root`, oldest first, removing unfinished `.tmp` ones. A
/// block replaced by [`Block::write`] when it was interrupted: `<name>.old` is removed
/// if `<name>` made it into place, else it is put back. A block that cannot be read is
/// logged and skipped (its directory is left alone).
pub fn open_all(root: &Path) -> io::Result<Vec<Block>> {
    fs::create_dir_all(root)?;
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        if !path.is_dir() || path.extension().is_none_or(|e| e != "old") {
            continue;
        }
        let current = path.with_extension("");
        if current.exists() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::rename(&path, &current)?;
        }
    }
    let mut blocks = Vec::new();
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.extension().is_some_and(|e| e == "tmp") {
            let _ = fs::remove_dir_all(&path);
            continue;
        }
        match Block::open(&path) {
            Ok(block) => blocks.push(block),
            Err(e) => {
                tracing::error!(block = %path.display(), error = %e, "cannot open block; skipping it")
            }
        }
    }
    blocks.sort_by_key(|b| (b.meta.min_t, b.meta.max_t));
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::SeriesChunks;
    use dataflows::LabelMatcher;

    fn labels(job: &str, i: usize) -> Arc<Labels> {
        Arc::new(Labels::from_pairs(vec![
            ("__name__".into(), "m".into()),
            ("job".into(), job.into()),
            ("i".into(), i.to_string()),
        ]))
    }

    #[test]
    fn write_open_and_select_by_postings() {
        let dir = tempfile::tempdir().unwrap();
        let mut series = Vec::new();
        for i in 0..3000 {
            let mut c = SeriesChunks::new();
            for t in 0..300 {
                c.push(t * 1000, (i as i64 * t) as f64);
            }
            let job = if i % 2 == 0 { "even" } else { "odd" };
            series.push(BlockSeries::floats(
                labels(job, i),
                c.encode_range(0, 299_999),
            ));
        }
        let block = Block::write(dir.path(), 0, 300_000, series).unwrap();
        assert_eq!(block.meta().samples, 3000 * 300);
        assert!(block.batches.len() > 1, "several record batches");
        let block = Block::open(block.dir()).unwrap();
        let sel = Selector {
            matchers: vec![
                LabelMatcher::new("job", "=", "odd").unwrap(),
                LabelMatcher::new("i", "=~", "2999|7").unwrap(),
            ],
        };
        let mut got = block.select(&sel, 10_000, 12_000).unwrap();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, labels("odd", 2999));
        assert_eq!(
            got[0].1,
            vec![(10_000, 29990.0), (11_000, 32989.0), (12_000, 35988.0)]
        );
        assert_eq!(
            got[1].1,
            vec![(10_000, 70.0), (11_000, 77.0), (12_000, 84.0)]
        );
        assert_eq!(block.series_matching(&[]).len(), 3000);
        assert!(block.select(&sel, 400_000, 500_000).unwrap().is_empty());
    }

    /// A block replaced in place survives a crash at either step of the swap.
    #[test]
    fn an_interrupted_replacement_leaves_one_whole_block() {
        let dir = tempfile::tempdir().unwrap();
        let write = |n: usize| {
            let series = (0..n)
                .map(|i| {
                    let mut c = SeriesChunks::new();
                    c.push(1_000, i as f64);
                    BlockSeries::floats(labels("j", i), c.encode_range(0, 10_000))
                })
                .collect();
            Block::write(dir.path(), 0, 10_000, series).unwrap()
        };
        let name = dir.path().join(block_name(0, 10_000));
        let old = dir.path().join(format!("{}.old", block_name(0, 10_000)));
        let series_in =
            |blocks: Vec<Block>| -> Vec<u64> { blocks.iter().map(|b| b.meta().series).collect() };
        // Crash after the old block stepped aside, before the new one moved in: the
        // old one comes back.
        write(3);
        fs::rename(&name, &old).unwrap();
        assert_eq!(series_in(open_all(dir.path()).unwrap()), vec![3]);
        assert!(name.exists() && !old.exists());
        // Crash after the new one moved in, before the old one was removed: the new
        // one stays.
        let keep = dir.path().join("keep");
        fs::rename(&name, &keep).unwrap();
        write(2);
        fs::rename(&keep, &old).unwrap();
        assert_eq!(series_in(open_all(dir.path()).unwrap()), vec![2]);
        assert!(!old.exists());
        // And a plain replacement leaves nothing behind.
        assert_eq!(write(5).meta().series, 5);
        assert!(!old.exists());
        assert_eq!(series_in(open_all(dir.path()).unwrap()), vec![5]);
    }

    #[test]
    fn compaction_merges_in_time_order_and_skips_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let part = |from: i64, to: i64, series: usize| {
            let list: Vec<_> = (0..series)
                .map(|i| {
                    let mut c = SeriesChunks::new();
                    for t in (from..to).step_by(10) {
                        c.push(t, t as f64 + i as f64);
                    }
                    BlockSeries::floats(labels("j", i), c.encode_range(from, to - 1))
                })
                .collect();
            Arc::new(Block::write(dir.path(), from, to, list).unwrap())
        };
        // Series 2 exists only in the second block.
        let (a, b) = (part(0, 2000, 2), part(2000, 4000, 3));
        let merged = Arc::new(compact(dir.path(), 0, 4000, &[b.clone(), a.clone()]).unwrap());
        let everything = Selector { matchers: vec![] };
        let check = |block: &Block| {
            let mut got = block.select(&everything, 0, 4000).unwrap();
            got.sort_by(|x, y| x.0.cmp(&y.0));
            assert_eq!(got.len(), 3);
            for (labels, samples) in &got {
                let i: i64 = labels.get("i").unwrap().parse().unwrap();
                let from = if i == 2 { 2000 } else { 0 };
                let want: Vec<(i64, f64)> = (from..4000)
                    .step_by(10)
                    .map(|t| (t, (t + i) as f64))
                    .collect();
                assert_eq!(samples, &want, "series {i}");
            }
        };
        check(&merged);
        // An interrupted compaction left the inputs next to the merged block: merging
        // all three again gives the same samples once.
        let again = compact(dir.path(), 0, 4000, &[a, merged, b]).unwrap();
        check(&again);
        assert_eq!(again.meta().samples, 2 * 400 + 200);
    }

    /// A float-only block is written as before histograms were persisted (no
    /// `histograms.arrow`, no histogram counts in `meta.json`), and such a block,
    /// with the `meta.json` an older promflow wrote, opens and reads no histograms;
    /// a block with histograms reads both kinds apart.
    #[test]
    fn blocks_without_histograms_open_as_before() {
        use dataflows::histogram::{FloatHistogram, Span};
        let dir = tempfile::tempdir().unwrap();
        let floats = |i: usize| {
            let mut c = SeriesChunks::new();
            c.push(1_000, i as f64);
            BlockSeries::floats(labels("j", i), c.encode_range(0, 10_000))
        };
        let block = Block::write(dir.path(), 0, 10_000, vec![floats(0), floats(1)]).unwrap();
        assert!(!block.dir().join("histograms.arrow").exists());
        let meta = fs::read_to_string(block.dir().join("meta.json")).unwrap();
        assert!(!meta.contains("histogram"), "{meta}");
        fs::write(
            block.dir().join("meta.json"),
            r#"{"min_t":0,"max_t":10000,"series":2,"samples":2,"chunks":2}"#,
        )
        .unwrap();
        let block = Block::open(block.dir()).unwrap();
        let everything = Selector { matchers: vec![] };
        assert!(!block.has_histograms());
        assert!(block
            .select_histograms(&everything, 0, 10_000)
            .unwrap()
            .is_empty());
        assert_eq!(block.select(&everything, 0, 10_000).unwrap().len(), 2);

        let h = |n: f64| FloatHistogram {
            schema: 0,
            count: n,
            sum: n / 2.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![n],
            ..FloatHistogram::default()
        };
        let samples: Vec<(i64, FloatHistogram)> =
            (0..300).map(|i| (20_000 + i * 10, h(i as f64))).collect();
        let mixed = BlockSeries {
            labels: labels("h", 0),
            floats: chunk::encode([(20_000, 1.0)]),
            histograms: histogram_chunk::encode(samples.clone()),
        };
        let block = Block::write(dir.path(), 20_000, 30_000, vec![mixed, floats(1)]).unwrap();
        let block = Block::open(block.dir()).unwrap();
        assert!(block.has_histograms());
        assert_eq!(
            (block.meta().samples, block.meta().histogram_samples),
            (302, 300)
        );
        let got = block
            .select_histograms(&everything, 20_100, 20_200)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, samples[10..=20].to_vec());
        assert_eq!(block.select(&everything, 0, 30_000).unwrap().len(), 2);
        let merged = compact(dir.path(), 0, 30_000, &[Arc::new(block)]).unwrap();
        let got = merged.select_histograms(&everything, 0, 30_000).unwrap();
        assert_eq!(got[0].1, samples);
    }
}
