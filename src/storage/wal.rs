//! The write-ahead log: every series created and every sample accepted by the head is
//! written here before [`super::Storage::append`] returns, so a restart (even after
//! SIGKILL) rebuilds the head exactly as it was acknowledged.
//!
//! Layout, under `<storage.tsdb.path>/wal/`:
//! - segments `00000001`, `00000002`, … of at most [`SEGMENT_BYTES`] each; a process
//!   never appends to a segment it did not create (a restart opens a new one);
//! - `checkpoint.NNNNNNNN`: the series definitions still live when segments below
//!   `NNNNNNNN` were removed. Replay reads the newest checkpoint, then every segment
//!   from `NNNNNNNN` on.
//!
//! A record is framed as `len: u32 LE | crc32: u32 LE | body` (`crc32` of the body,
//! IEEE, by `crc32fast`). A body is a type byte and a payload; a type byte with its
//! high bit set ([`COMPRESSED`]) means the payload is Snappy-compressed (raw format,
//! `snap` crate), as Prometheus does, used when that makes it smaller:
//! - `1` series: `count`, then per series `ref`, `label count`, and per label the
//!   name's and the value's length-prefixed bytes;
//! - `2` samples: `count`, `base timestamp` (zig-zag), then per sample the ref's
//!   difference from the previous sample's ref (zig-zag), `timestamp - base`
//!   (zig-zag) and the value's 8 raw bytes (stale markers stay bit-exact);
//! - `3` tombstones (`delete_series`): `count`, then per deletion `ref`, `min_t` and
//!   `max_t` (zig-zag): the samples of `ref` logged before it in `[min_t, max_t]` are
//!   deleted (float and histogram samples);
//! - `4` native-histogram samples: `count`, then per sample `ref`, `timestamp`
//!   (zig-zag) and the histogram in the head's histogram-chunk encoding of a lone
//!   sample (`super::histogram_chunk::encode_one`: counter-reset hint, schema, zero
//!   threshold, spans, custom bounds, counts, sum; bit-exact);
//! - `5` exemplars (kept by the exemplar storage, `super::exemplars`): `count`, then
//!   per exemplar `ref`, `timestamp` (zig-zag), the value's 8 raw bytes and its labels
//!   (`label count`, then each name's and value's length-prefixed bytes), as
//!   Prometheus logs exemplar records. Whether the timestamp was exposed is not kept:
//!   Prometheus replays them without it too. A log written before this record type
//!   existed replays unchanged.
//!
//! Integers are LEB128 varints. A ref is the head's small per-series number; a later
//! series record for the same labels re-keys the series (refs of dropped series may be
//! reused after a restart, which is safe because replay is in log order).
//!
//! Contract of replay ([`Wal::open`]): a torn or corrupt tail (short frame, bad length,
//! checksum mismatch, undecodable body) truncates the segment at the last good record
//! and removes every later segment, with a warning and one count in
//! [`ReplayStats::corruptions`]; it never fails the start. Only I/O errors (e.g. an
//! unreadable directory) fail [`Wal::open`].
//!
//! Durability: records reach the kernel (`write(2)`) before [`Wal::log`] returns, which
//! survives a killed process; [`WalFsync`] decides when they are also `fsync`ed, which
//! is what survives a power loss.

use super::histogram_chunk;
use super::varint::{get_uvarint, get_varint, put_uvarint, put_varint};
use dataflows::histogram::FloatHistogram;
use dataflows::Labels;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A segment is closed and a new one started once it reaches this size.
pub const SEGMENT_BYTES: u64 = 32 << 20;
/// A frame longer than this is corruption, not a record.
const MAX_RECORD_BYTES: usize = 256 << 20;
const FRAME_HEADER: usize = 8;
const TYPE_SERIES: u8 = 1;
const TYPE_SAMPLES: u8 = 2;
const TYPE_TOMBSTONES: u8 = 3;
const TYPE_HISTOGRAMS: u8 = 4;
const TYPE_EXEMPLARS: u8 = 5;
/// Type-byte flag: the payload is Snappy-compressed.
const COMPRESSED: u8 = 0x80;
/// Payloads shorter than this are stored as they are.
const COMPRESS_FROM: usize = 64;
const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// When the log is `fsync`ed (`--storage.tsdb.wal-fsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalFsync {
    /// After every appended batch, before the append returns.
    Batch,
    /// By a background thread at this interval (and when a segment is closed).
    Every(Duration),
}

impl std::fmt::Display for WalFsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalFsync::Batch => write!(f, "batch"),
            WalFsync::Every(d) => write!(f, "{}ms", d.as_millis()),
        }
    }
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// New series: `(ref, labels)`.
    Series(Vec<(u32, Labels)>),
    /// Samples: `(ref, timestamp_ms, value)`.
    Samples(Vec<(u32, i64, f64)>),
    /// Deletions: `(ref, min_t, max_t)`, a closed range.
    Tombstones(Vec<(u32, i64, i64)>),
    /// Native-histogram samples: `(ref, timestamp_ms, histogram)`.
    Histograms(Vec<(u32, i64, FloatHistogram)>),
    /// Exemplars: `(ref, timestamp_ms, value, labels)`.
    Exemplars(Vec<LoggedExemplar>),
}

/// An exemplar as logged: its series' ref, timestamp, value and labels.
pub type LoggedExemplar = (u32, i64, f64, Labels);

/// What replay found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records read.
    pub records: u64,
    /// Segments (and checkpoints) read.
    pub segments: u64,
    /// Torn or corrupt tails truncated.
    pub corruptions: u64,
}

/// The open log. Shared as `Arc<Mutex<Wal>>` by the storage.
pub struct Wal {
    dir: PathBuf,
    fsync: WalFsync,
    file: File,
    index: u64,
    size: u64,
    dirty: bool,
    /// Per segment still on disk: the newest sample timestamp it holds (`i64::MIN` if none).
    max_ts: BTreeMap<u64, i64>,
    buf: Vec<u8>,
    segment_bytes: u64,
    /// A failed write left bytes after `size` that are not cut off yet.
    torn: bool,
    /// The [`spawn_syncer`] thread, unparked when the log becomes dirty (and when the
    /// log is dropped, so it can end).
    syncer: Option<std::thread::Thread>,
}

impl Wal {
    /// Opens the log in `dir`, replaying checkpoint and segments into `on_record`, then
    /// starts a new segment. See the module contract.
    pub fn open(
        dir: &Path,
        fsync: WalFsync,
        mut on_record: impl FnMut(Record),
    ) -> io::Result<(Wal, ReplayStats)> {
        fs::create_dir_all(dir)?;
        let mut stats = ReplayStats::default();
        let (checkpoints, segments) = list(dir)?;
        let first = match checkpoints.last() {
            Some(&n) => {
                let path = dir.join(checkpoint_name(n));
                stats.segments += 1;
                if let Some(bad) = replay_file(&path, &mut on_record, &mut stats, &mut |_| {})? {
                    // Checkpoints are written whole and renamed into place: damage here is
                    // not a torn tail, but keep what was readable and go on.
                    warn_corrupt(&path, bad);
                    stats.corruptions += 1;
                }
                n
            }
            None => 0,
        };
        for &old in checkpoints.iter().rev().skip(1) {
            remove_logged(&dir.join(checkpoint_name(old)));
        }
        let mut max_ts = BTreeMap::new();
        let mut last = first.saturating_sub(1);
        let mut damaged = false;
        for &index in &segments {
            let path = dir.join(segment_name(index));
            if index < first || damaged {
                remove_logged(&path);
                continue;
            }
            stats.segments += 1;
            let mut newest = i64::MIN;
            let bad = replay_file(&path, &mut on_record, &mut stats, &mut |ts| {
                newest = newest.max(ts)
            })?;
            max_ts.insert(index, newest);
            last = index;
            if let Some(good_len) = bad {
                warn_corrupt(&path, good_len);
                stats.corruptions += 1;
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(good_len)?;
                damaged = true;
            }
        }
        let index = last + 1;
        let file = create_segment(dir, index)?;
        max_ts.insert(index, i64::MIN);
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                fsync,
                file,
                index,
                size: 0,
                dirty: false,
                max_ts,
                buf: Vec::with_capacity(64 << 10),
                segment_bytes: SEGMENT_BYTES,
                torn: false,
                syncer: None,
            },
            stats,
        ))
    }

    /// Writes the records for new series and accepted samples of one batch, and
    /// `fsync`s them under [`WalFsync::Batch`].
    pub fn log(
        &mut self,
        series: &[(u32, &Labels)],
        samples: &[(u32, i64, f64)],
    ) -> io::Result<()> {
        let newest = samples.iter().map(|s| s.1).max();
        self.log_batch(series, newest, |b| {
            if !samples.is_empty() {
                encode_samples(b, samples);
            }
        })
    }

    /// Writes the records for the new series and accepted histogram samples of one
    /// batch, and `fsync`s them under [`WalFsync::Batch`].
    pub fn log_histograms(
        &mut self,
        series: &[(u32, &Labels)],
        samples: &[(u32, i64, &FloatHistogram)],
    ) -> io::Result<()> {
        let newest = samples.iter().map(|s| s.1).max();
        self.log_batch(series, newest, |b| {
            if !samples.is_empty() {
                frame(b, TYPE_HISTOGRAMS, |b| {
                    put_uvarint(b, samples.len() as u64);
                    for &(r, ts, h) in samples {
                        put_uvarint(b, u64::from(r));
                        put_varint(b, ts);
                        histogram_chunk::encode_one(b, h);
                    }
                });
            }
        })
    }

    /// Writes a record of exemplars (`(ref, timestamp, value, labels)`, their series
    /// logged before), and `fsync`s it under [`WalFsync::Batch`]. Their timestamps
    /// count as the segment's samples' do when segments are retired.
    pub fn log_exemplars(&mut self, exemplars: &[(u32, i64, f64, &Labels)]) -> io::Result<()> {
        let newest = exemplars.iter().map(|e| e.1).max();
        self.log_batch(&[], newest, |b| {
            if !exemplars.is_empty() {
                frame(b, TYPE_EXEMPLARS, |b| {
                    put_uvarint(b, exemplars.len() as u64);
                    for &(r, ts, value, labels) in exemplars {
                        put_uvarint(b, u64::from(r));
                        put_varint(b, ts);
                        b.extend_from_slice(&value.to_bits().to_le_bytes());
                        put_labels(b, labels);
                    }
                });
            }
        })
    }

    /// One batch's records: its new series, then what `samples` encodes (nothing when
    /// the batch has no samples, `newest` then `None`), in the segment they fit in.
    fn log_batch(
        &mut self,
        series: &[(u32, &Labels)],
        newest: Option<i64>,
        samples: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<()> {
        self.buf.clear();
        if !series.is_empty() {
            encode_series(&mut self.buf, series);
        }
        samples(&mut self.buf);
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.size > 0 && self.size + self.buf.len() as u64 > self.segment_bytes {
            self.rotate()?;
        }
        self.write_buf(self.fsync == WalFsync::Batch)?;
        if let Some(newest) = newest {
            let entry = self.max_ts.entry(self.index).or_insert(i64::MIN);
            *entry = (*entry).max(newest);
        }
        Ok(())
    }

    /// Appends `buf` to the segment (and `fsync`s it if `sync`). On failure the
    /// segment is cut back to its last complete record, so neither replay nor later
    /// records see a half-written one; until that succeeds, writes are refused.
    fn write_buf(&mut self, sync: bool) -> io::Result<()> {
        if self.torn {
            self.cut_back()?;
            self.torn = false;
        }
        let written = self.file.write_all(&self.buf).and_then(|()| {
            if sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            if let Err(cut) = self.cut_back() {
                tracing::error!(error = %cut, "cutting a failed write off the WAL segment failed; refusing writes until it succeeds");
                self.torn = true;
            }
            return Err(e);
        }
        self.size += self.buf.len() as u64;
        if !sync && !self.dirty {
            if let Some(syncer) = &self.syncer {
                syncer.unpark();
            }
        }
        self.dirty = !sync;
        Ok(())
    }

    /// Truncates the segment back to the end of its last complete record.
    fn cut_back(&mut self) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.file.set_len(self.size)?;
        self.file.seek(SeekFrom::Start(self.size))?;
        Ok(())
    }

    /// Writes a tombstone record (deletions of logged samples) and `fsync`s it.
    pub fn log_tombstones(&mut self, deletions: &[(u32, i64, i64)]) -> io::Result<()> {
        if deletions.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        frame(&mut self.buf, TYPE_TOMBSTONES, |b| {
            put_uvarint(b, deletions.len() as u64);
            for &(r, min_t, max_t) in deletions {
                put_uvarint(b, u64::from(r));
                put_varint(b, min_t);
                put_varint(b, max_t);
            }
        });
        self.write_buf(true)
    }

    /// `fsync`s what was written since the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Retires segments whose samples are all older than `cutoff_ms`: writes a
    /// checkpoint of `live` (every series the head still holds) and removes those
    /// segments and older checkpoints. Returns the number of segments removed.
    pub fn truncate<'a>(
        &mut self,
        cutoff_ms: i64,
        live: impl Iterator<Item = (u32, &'a Labels)>,
    ) -> io::Result<usize> {
        // The first segment that must stay: the oldest with a sample at or after the
        // cutoff, or the segment being written.
        let keep_from = self
            .max_ts
            .iter()
            .find(|&(&index, &ts)| index == self.index || ts >= cutoff_ms)
            .map(|(&index, _)| index)
            .unwrap_or(self.index);
        let retired: Vec<u64> = self.max_ts.range(..keep_from).map(|(&i, _)| i).collect();
        if retired.is_empty() {
            return Ok(0);
        }
        let live: Vec<(u32, &Labels)> = live.collect();
        let mut body = Vec::new();
        for chunk in live.chunks(10_000) {
            encode_series(&mut body, chunk);
        }
        let tmp = self
            .dir
            .join(format!("{CHECKPOINT_PREFIX}{keep_from:08}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(checkpoint_name(keep_from)))?;
        sync_dir(&self.dir);
        let (checkpoints, _) = list(&self.dir)?;
        for old in checkpoints.into_iter().filter(|&c| c < keep_from) {
            remove_logged(&self.dir.join(checkpoint_name(old)));
        }
        for index in &retired {
            remove_logged(&self.dir.join(segment_name(*index)));
            self.max_ts.remove(index);
        }
        Ok(retired.len())
    }

    /// Bytes held by segments and checkpoints on disk.
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The number of segments on disk.
    pub fn segment_count(&self) -> usize {
        self.max_ts.len()
    }

    #[cfg(test)]
    fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.dirty = false;
        self.index += 1;
        self.file = create_segment(&self.dir, self.index)?;
        self.size = 0;
        self.max_ts.insert(self.index, i64::MIN);
        Ok(())
    }
}

/// Under [`WalFsync::Every`], starts a thread that `fsync`s `wal` at that interval for as
/// long as the log exists. While nothing is written the thread sleeps without a
/// timeout: a write that makes the log dirty wakes it, and it `fsync`s that write
/// `every` later, so an idle server does not wake for the log.
pub fn spawn_syncer(wal: &Arc<Mutex<Wal>>) {
    let WalFsync::Every(every) = wal.lock().fsync else {
        return;
    };
    let weak: Weak<Mutex<Wal>> = Arc::downgrade(wal);
    let spawned = std::thread::Builder::new()
        .name("wal-fsync".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(wal) = weak.upgrade() else { return };
            let mut log = wal.lock();
            let was_dirty = log.dirty;
            if let Err(e) = log.sync() {
                tracing::error!(error = %e, "fsync of the WAL failed");
            }
            drop(log);
            drop(wal);
            if !was_dirty {
                // Nothing written for a whole interval: wait for a write (a write
                // between the check and here leaves the unpark token, so this returns).
                std::thread::park();
            }
        });
    match spawned {
        Ok(handle) => wal.lock().syncer = Some(handle.thread().clone()),
        Err(e) => tracing::error!(error = %e, "cannot start the WAL fsync thread"),
    }
}

impl Drop for Wal {
    /// Wakes the syncer thread, which then finds the log gone and ends.
    fn drop(&mut self) {
        if let Some(syncer) = &self.syncer {
            syncer.unpark();
        }
    }
}

fn segment_name(index: u64) -> String {
    format!("{index:08}")
}

fn checkpoint_name(index: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{index:08}")
}

/// Checkpoint and segment indexes in `dir`, each sorted; temporary files are removed.
fn list(dir: &Path) -> io::Result<(Vec<u64>, Vec<u64>)> {
    let mut checkpoints = Vec::new();
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            remove_logged(&entry.path());
        } else if let Some(n) = name.strip_prefix(CHECKPOINT_PREFIX) {
            if let Ok(n) = n.parse() {
                checkpoints.push(n);
            }
        } else if let Ok(n) = name.parse() {
            segments.push(n);
        }
    }
    checkpoints.sort_unstable();
    segments.sort_unstable();
    Ok((checkpoints, segments))
}

fn create_segment(dir: &Path, index: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join(segment_name(index)))?;
    sync_dir(dir);
    Ok(file)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn remove_logged(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove WAL file");
        }
    }
}

fn warn_corrupt(path: &Path, good_len: u64) {
    tracing::warn!(
        path = %path.display(),
        kept_bytes = good_len,
        "WAL has a torn or corrupt tail; truncating it there and dropping later segments"
    );
}

/// Replays one file. Returns `Some(length of the good prefix)` if it ends in a torn or
/// corrupt record.
fn replay_file(
    path: &Path,
    on_record: &mut impl FnMut(Record),
    stats: &mut ReplayStats,
    on_sample_ts: &mut impl FnMut(i64),
) -> io::Result<Option<u64>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + FRAME_HEADER) else {
            return Ok(Some(pos as u64));
        };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD_BYTES {
            return Ok(Some(pos as u64));
        }
        let Some(body) = data.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len) else {
            return Ok(Some(pos as u64));
        };
        if crc32fast::hash(body) != crc {
            return Ok(Some(pos as u64));
        }
        let Some(record) = decode(body) else {
            return Ok(Some(pos as u64));
        };
        if let Record::Samples(samples) = &record {
            for s in samples {
                on_sample_ts(s.1);
            }
        }
        if let Record::Histograms(samples) = &record {
            for s in samples {
                on_sample_ts(s.1);
            }
        }
        if let Record::Exemplars(exemplars) = &record {
            for e in exemplars {
                on_sample_ts(e.1);
            }
        }
        stats.records += 1;
        on_record(record);
        pos += FRAME_HEADER + len;
    }
    Ok(None)
}

fn frame(out: &mut Vec<u8>, body_type: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.push(body_type);
    fill(out);
    let payload_at = start + FRAME_HEADER + 1;
    if out.len() - payload_at >= COMPRESS_FROM {
        if let Ok(packed) = snap::raw::Encoder::new().compress_vec(&out[payload_at..]) {
            if packed.len() < out.len() - payload_at {
                out.truncate(payload_at);
                out.extend_from_slice(&packed);
                out[payload_at - 1] |= COMPRESSED;
            }
        }
    }
    let body = &out[start + FRAME_HEADER..];
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(body).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

fn encode_series(out: &mut Vec<u8>, series: &[(u32, &Labels)]) {
    frame(out, TYPE_SERIES, |b| {
        put_uvarint(b, series.len() as u64);
        for (r, labels) in series {
            put_uvarint(b, u64::from(*r));
            put_labels(b, labels);
        }
    });
}

/// `label count`, then each name's and value's length-prefixed bytes.
fn put_labels(b: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(b, labels.len() as u64);
    for (name, value) in labels.iter() {
        put_uvarint(b, name.len() as u64);
        b.extend_from_slice(name.as_bytes());
        put_uvarint(b, value.len() as u64);
        b.extend_from_slice(value.as_bytes());
    }
}

/// What [`put_labels`] wrote.
fn get_labels(p: &mut &[u8]) -> Option<Labels> {
    let count = get_uvarint(p)? as usize;
    let mut pairs = Vec::with_capacity(count.min(256));
    for _ in 0..count {
        let name = get_string(p)?;
        let value = get_string(p)?;
        pairs.push((name, value));
    }
    Some(Labels::from_pairs(pairs))
}

fn encode_samples(out: &mut Vec<u8>, samples: &[(u32, i64, f64)]) {
    frame(out, TYPE_SAMPLES, |b| {
        let base = samples[0].1;
        put_uvarint(b, samples.len() as u64);
        put_varint(b, base);
        let mut prev = 0i64;
        for &(r, ts, v) in samples {
            put_varint(b, i64::from(r) - prev);
            prev = i64::from(r);
            put_varint(b, ts.wrapping_sub(base));
            b.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    });
}

fn decode(body: &[u8]) -> Option<Record> {
    let (&kind, payload) = body.split_first()?;
    let unpacked;
    let mut p = if kind & COMPRESSED != 0 {
        unpacked = snap::raw::Decoder::new().decompress_vec(payload).ok()?;
        &unpacked[..]
    } else {
        payload
    };
    let record = match kind & !COMPRESSED {
        TYPE_SERIES => {
            let n = get_uvarint(&mut p)? as usize;
            let mut series = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let r = u32::try_from(get_uvarint(&mut p)?).ok()?;
                series.push((r, get_labels(&mut p)?));
            }
            Record::Series(series)
        }
        TYPE_SAMPLES => {
            let n = get_uvarint(&mut p)? as usize;
            let base = get_varint(&mut p)?;
            let mut samples = Vec::with_capacity(n.min(1 << 20));
            let mut prev = 0i64;
            for _ in 0..n {
                prev = prev.checked_add(get_varint(&mut p)?)?;
                let r = u32::try_from(prev).ok()?;
                let ts = base.wrapping_add(get_varint(&mut p)?);
                let (bits, rest) = p.split_first_chunk::<8>()?;
                p = rest;
                samples.push((r, ts, f64::from_bits(u64::from_le_bytes(*bits))));
            }
            Record::Samples(samples)
        }
        TYPE_TOMBSTONES => {
            let n = get_uvarint(&mut p)? as usize;
            let mut deletions = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let r = u32::try_from(get_uvarint(&mut p)?).ok()?;
                deletions.push((r, get_varint(&mut p)?, get_varint(&mut p)?));
            }
            Record::Tombstones(deletions)
        }
        TYPE_HISTOGRAMS => {
            let n = get_uvarint(&mut p)? as usize;
            let mut samples = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let r = u32::try_from(get_uvarint(&mut p)?).ok()?;
                let ts = get_varint(&mut p)?;
                let h = histogram_chunk::decode_one(&mut p)?;
                samples.push((r, ts, h));
            }
            Record::Histograms(samples)
        }
        TYPE_EXEMPLARS => {
            let n = get_uvarint(&mut p)? as usize;
            let mut exemplars = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let r = u32::try_from(get_uvarint(&mut p)?).ok()?;
                let ts = get_varint(&mut p)?;
                let (bits, rest) = p.split_first_chunk::<8>()?;
                p = rest;
                let value = f64::from_bits(u64::from_le_bytes(*bits));
                exemplars.push((r, ts, value, get_labels(&mut p)?));
            }
            Record::Exemplars(exemplars)
        }
        _ => return None,
    };
    p.is_empty().then_some(record)
}

fn get_string(p: &mut &[u8]) -> Option<String> {
    let len = get_uvarint(p)? as usize;
    if len > p.len() {
        return None;
    }
    let (s, rest) = p.split_at(len);
    *p = rest;
    String::from_utf8(s.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(job: &str) -> Labels {
        Labels::from_pairs(vec![
            ("__name__".into(), "up".into()),
            ("job".into(), job.into()),
        ])
    }

    fn replay(dir: &Path) -> (Vec<Record>, ReplayStats, Wal) {
        let mut records = Vec::new();
        let (wal, stats) = Wal::open(dir, WalFsync::Batch, |r| records.push(r)).unwrap();
        (records, stats, wal)
    }

    #[test]
    fn records_round_trip_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dataflows::STALE_MARKER;
        {
            let (records, _, mut wal) = replay(dir.path());
            assert!(records.is_empty());
            wal.log(&[(0, &labels("a"))], &[(0, 1000, 1.5), (0, 999, stale)])
                .unwrap();
        }
        let (records, stats, mut wal) = replay(dir.path());
        assert_eq!(stats.corruptions, 0);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], Record::Series(vec![(0, labels("a"))]));
        let Record::Samples(s) = &records[1] else {
            panic!("not samples: {:?}", records[1])
        };
        let bits: Vec<(u32, i64, u64)> = s.iter().map(|&(r, t, v)| (r, t, v.to_bits())).collect();
        assert_eq!(
            bits,
            vec![(0, 1000, 1.5f64.to_bits()), (0, 999, stale.to_bits())]
        );
        wal.log(&[], &[(0, 2000, 2.0)]).unwrap();
        drop(wal);
        let (records, _, _) = replay(dir.path());
        assert_eq!(records.len(), 3);
    }

    /// Exemplar records (type 5) round-trip beside the series and samples logged
    /// before them, bit-exact, labels included; a log of the older record types only
    /// (the other tests) replays as before.
    #[test]
    fn exemplar_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let trace = Labels::from_strs(&[("trace_id", "abc"), ("span_id", "1")]);
        {
            let (_, _, mut wal) = replay(dir.path());
            wal.log(&[(0, &labels("a"))], &[(0, 1000, 1.0)]).unwrap();
            wal.log_exemplars(&[(0, 990, 0.25, &trace), (0, 1000, -0.0, &Labels::default())])
                .unwrap();
            wal.log_exemplars(&[]).unwrap();
        }
        let (records, stats, _) = replay(dir.path());
        assert_eq!(stats.corruptions, 0);
        assert_eq!(records.len(), 3, "{records:?}");
        let Record::Exemplars(e) = &records[2] else {
            panic!("not exemplars: {:?}", records[2])
        };
        assert_eq!(e.len(), 2);
        assert_eq!(e[0], (0, 990, 0.25, trace));
        assert_eq!(
            (e[1].0, e[1].1, e[1].2.to_bits()),
            (0, 1000, (-0.0f64).to_bits())
        );
        assert!(e[1].3.is_empty());
    }

    #[test]
    fn torn_and_corrupt_tails_are_truncated_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_, _, mut wal) = replay(dir.path());
            wal.log(&[(0, &labels("a"))], &[(0, 1000, 1.0)]).unwrap();
            wal.log(&[], &[(0, 2000, 2.0)]).unwrap();
        }
        let seg = dir.path().join(segment_name(1));
        let full = fs::read(&seg).unwrap();
        // Torn: the last record is cut in half.
        fs::write(&seg, &full[..full.len() - 5]).unwrap();
        let (records, stats, wal) = replay(dir.path());
        assert_eq!(stats.corruptions, 1);
        assert_eq!(records.len(), 2, "series and the first samples survive");
        drop(wal);
        let truncated = fs::read(&seg).unwrap().len();
        // Corrupt: flip a byte in the (now last) record's body.
        let mut bytes = fs::read(&seg).unwrap();
        bytes[truncated - 1] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let (records, stats, _) = replay(dir.path());
        assert_eq!(stats.corruptions, 1);
        assert_eq!(records.len(), 1);
        // Segments after the damaged one are dropped, a clean replay follows.
        let (_, stats, _) = replay(dir.path());
        assert_eq!(stats.corruptions, 0);
    }

    #[test]
    fn truncation_checkpoints_live_series_and_removes_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_, _, mut wal) = replay(dir.path());
            wal.log(
                &[(0, &labels("a")), (1, &labels("b"))],
                &[(0, 100, 1.0), (1, 100, 1.0)],
            )
            .unwrap();
        }
        {
            // A restart starts segment 2.
            let (_, _, mut wal) = replay(dir.path());
            wal.log(&[], &[(1, 5000, 2.0)]).unwrap();
            let removed = wal
                .truncate(1000, [(1u32, &labels("b"))].into_iter())
                .unwrap();
            assert_eq!(removed, 1);
            assert_eq!(wal.segment_count(), 1);
        }
        let (records, stats, _) = replay(dir.path());
        assert_eq!(stats.corruptions, 0);
        assert_eq!(
            records,
            vec![
                Record::Series(vec![(1, labels("b"))]),
                Record::Samples(vec![(1, 5000, 2.0)]),
            ]
        );
    }

    #[test]
    fn segments_rotate_and_retire_by_sample_age() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_, _, mut wal) = replay(dir.path());
            wal.set_segment_bytes(200);
            wal.log(&[(0, &labels("a"))], &[]).unwrap();
            for t in 0..100 {
                wal.log(&[], &[(0, t * 1000, t as f64)]).unwrap();
            }
            assert!(wal.segment_count() > 5, "{} segments", wal.segment_count());
            let before = wal.segment_count();
            let removed = wal
                .truncate(50_000, [(0u32, &labels("a"))].into_iter())
                .unwrap();
            assert!(removed > 0 && removed < before);
        }
        let (records, stats, _) = replay(dir.path());
        assert_eq!(stats.corruptions, 0);
        let samples: Vec<i64> = records
            .iter()
            .flat_map(|r| match r {
                Record::Samples(s) => s.iter().map(|x| x.1).collect(),
                Record::Series(_)
                | Record::Tombstones(_)
                | Record::Histograms(_)
                | Record::Exemplars(_) => vec![],
            })
            .collect();
        assert!(samples.contains(&50_000) && samples.contains(&99_000));
        assert!(samples.windows(2).all(|w| w[0] < w[1]));
        assert!(matches!(&records[0], Record::Series(s) if s[0].0 == 0));
    }
}
