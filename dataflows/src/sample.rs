//! Samples as they enter and travel through the dataflow, and Prometheus's stale
//! marker.
//!
//! A batch enters as columns ([`SampleBatch`]: series ids, timestamps, values, start
//! timestamps only when one is set) with the labels of the series its producer has
//! not announced before (see [`crate::catalog`]); inside the dataflow each sample is a
//! [`Point`], labels looked up by id where an operator needs them. [`Sample`] is a
//! sample with its labels, as producers without a series cache build them.
//!
//! Native histograms travel beside the floats, never among them: a batch's histogram
//! samples are a column of their own ([`SampleBatch::histograms`], a
//! [`HistogramPoint`] each: series id, timestamp, the histogram behind an `Arc`), fed
//! to the dataflow on a second input stream and routed like the floats (both are
//! [`Routable`]). So [`Point`] stays 32 bytes and `Copy`, and a float-only batch pays
//! an empty `Vec` (no allocation), not a tag or a pointer per sample.

use crate::arrival::ArrivalIndex;
use crate::histogram::FloatHistogram;
use crate::labels::Labels;
use crate::render::window::KeyMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// Whether a sample at `timestamp_ms` with start timestamp `start_ms` is the zero
/// sample of its series' start: the 0 a counter had when it started, written at its
/// start timestamp before the first sample that carried it (Prometheus 3.x's
/// `created-timestamp-zero-ingestion`, `AppendSTZeroSample` in tsdb/head_append.go).
/// Storage stores it only when it is newer than the series' newest sample and drops
/// it silently otherwise; its start timestamp is its own time, which marks it.
pub fn is_start_zero(timestamp_ms: i64, start_ms: i64) -> bool {
    start_ms != 0 && start_ms == timestamp_ms
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

/// What the router needs of a sample of either kind: its series, and how the samples
/// it sends one worker are packed for the exchange ([`Pack`]).
pub trait Routable: Clone + 'static {
    /// A batch of samples of this kind bound for one worker.
    type Packed: Pack<Self>;
    /// The series id ([`Labels::hash`]).
    fn series_id(&self) -> u64;
}

impl Routable for Point {
    type Packed = PackedPoints;
    fn series_id(&self) -> u64 {
        self.series_id
    }
}

impl Routable for HistogramPoint {
    type Packed = Vec<HistogramPoint>;
    fn series_id(&self) -> u64 {
        self.series_id
    }
}

/// Samples of kind `S` packed to cross the exchange to one worker (serialized with
/// bincode by timely when that worker is in another process), unpacked there in the
/// order they were pushed.
pub trait Pack<S>:
    Default + Clone + Send + Serialize + serde::de::DeserializeOwned + 'static
{
    /// Appends a sample.
    fn push(&mut self, sample: &S);
    /// The series ids of the samples, in order.
    fn series_ids(&self) -> impl Iterator<Item = u64> + '_;
    /// The samples, in order.
    fn unpack(self, each: impl FnMut(S));
}

/// Native histograms cross as they are (a few; their buckets dominate).
impl Pack<HistogramPoint> for Vec<HistogramPoint> {
    fn push(&mut self, sample: &HistogramPoint) {
        Vec::push(self, sample.clone());
    }

    fn series_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|h| h.series_id)
    }

    fn unpack(self, each: impl FnMut(HistogramPoint)) {
        self.into_iter().for_each(each);
    }
}

/// [`Point`]s bound for one worker, in columns, most of them in fewer bytes than the
/// 32 of a point (issue 14: this is what crosses between processes, once per sample
/// whose series is kept in another process):
/// - series ids: as they are (8 bytes: label hashes, spread over the whole range) in a
///   pack to a worker of the same process, which timely hands over as a value (its
///   in-process channels are typed: nothing is serialized); in a pack to a worker of
///   another process, coded by the dictionary of ids this sender has sent that worker
///   ([`PackedPoints::code_ids`], [`SentIds`], [`ReceivedIds`]): per sample a LEB128
///   code, 0 for an id that crosses whole, else 1 + zigzag(index − (the previous
///   coded sample's index + 1)), so a target's series, which come in the same order
///   every scrape and took consecutive indices the first time, cost 1 byte each; the
///   entries a pack brings (index, id) travel in it, at the logical time they are
///   first used;
/// - timestamps as the difference from the previous sample's (the first's from 0),
///   zigzag LEB128: a target's samples share their scrape's timestamp, 1 byte each;
/// - values XORed with the previous sample's bits (the first's with 0), as Gorilla
///   does, written as a byte counting the XOR's zero bytes at each end and the bytes
///   between: a repeated value is 1 byte, an integer-valued counter near its
///   neighbours' 2–4, any other float at most 9;
/// - start timestamps, only once a sample has one (empty otherwise): per sample 0
///   (none) or 1 + zigzag(timestamp − start), LEB128.
///
/// Decoding gives back every bit, stale markers and NaN payloads included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PackedPoints {
    /// The series ids that cross whole, in their samples' order: every sample's in a
    /// pack without a dictionary.
    series_ids: Vec<u64>,
    /// The dictionary coding of the ids, in a pack to another process.
    coded: Option<CodedIds>,
    timestamps: Vec<u8>,
    values: Vec<u8>,
    starts: Vec<u8>,
    /// The packer's place: the last timestamp and value bits pushed (not sent; a
    /// received pack is only unpacked).
    #[serde(skip)]
    last: (i64, u64),
}

/// A pack's series ids coded by the dictionary of its sender and destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct CodedIds {
    /// The sending worker (its index in the cluster).
    from: u32,
    /// The dictionary's epoch (see [`SentIds`]).
    epoch: u64,
    /// Per sample, LEB128: 0 for the next id of [`PackedPoints::series_ids`], else
    /// 1 + zigzag(index − (the previous coded sample's index + 1)), the first from
    /// index −1.
    codes: Vec<u8>,
    /// The entries the pack brings, their indices coded as the samples' (zigzag of the
    /// difference from the previous entry's index + 1, LEB128, without the 1 +).
    entry_indices: Vec<u8>,
    /// The entries' ids, in the order of `entry_indices`.
    entry_ids: Vec<u64>,
}

/// The most entries a dictionary takes in one epoch: ids beyond them cross whole until
/// the next epoch, so neither end's table grows past it whatever the churn (a
/// received table is 8 bytes an entry, a sent one about 20).
pub const MAX_DICTIONARY_ENTRIES: usize = 1 << 20;

/// The dictionary of series ids (or of label sets by their hash,
/// [`crate::render::dictionary`]) one worker has sent one worker of another process, in
/// one epoch: per index, the id and the earliest logical time a pack brought its
/// entry at. The epoch is the caller's (in the dataflow a period of logical time,
/// [`crate::render::route::id_epoch`]): a pack of a later epoch starts an empty
/// dictionary, one of an earlier epoch crosses uncoded.
///
/// What the receiver may rely on, whatever order the packs arrive in: every index a
/// pack of time `t` uses is brought (with its id) by a pack of the same sender,
/// destination and epoch at a time not after `t`; an index keeps its id through the
/// epoch. A pack of a time earlier than an entry's first brings the entry again.
pub struct SentIds {
    /// The most entries it takes in an epoch ([`MAX_DICTIONARY_ENTRIES`]).
    limit: usize,
    /// The epoch of the entries (`None`: none yet).
    epoch: Option<u64>,
    /// Per index (its position: the ids in the order they came), the earliest time a
    /// pack brought its entry at.
    entries: ArrivalIndex<u64>,
}

impl Default for SentIds {
    fn default() -> SentIds {
        SentIds::with_limit(MAX_DICTIONARY_ENTRIES)
    }
}

impl SentIds {
    /// An empty dictionary taking at most `limit` entries an epoch.
    pub fn with_limit(limit: usize) -> SentIds {
        SentIds {
            limit,
            epoch: None,
            entries: ArrivalIndex::default(),
        }
    }

    /// Moves it on to epoch `epoch` if its own is earlier, empty (its memory freed);
    /// never back to an epoch it has had (an index must keep its id through one).
    pub fn advance_to(&mut self, epoch: u64) {
        if self.epoch.is_none_or(|e| e < epoch) {
            *self = SentIds {
                epoch: Some(epoch),
                ..SentIds::with_limit(self.limit)
            };
        }
    }

    /// The epoch of its entries (`None`: none yet).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The index of `id`, with whether the pack (or record) of time `time` must bring
    /// its entry: `None` when it is new and the dictionary full. Also the dictionary of
    /// label sets by their hashes ([`crate::render::dictionary`]).
    pub fn code(&mut self, id: u64, time: u64) -> Option<(u32, bool)> {
        let Some(at) = self.entries.find(id) else {
            if self.entries.len() >= self.limit {
                return None;
            }
            return Some((self.entries.push(id, time) as u32, true));
        };
        let first = self.entries.value_mut(at);
        let bring = time < *first;
        *first = (*first).min(time);
        Some((at as u32, bring))
    }
}

/// What a receiving worker has learnt of the dictionaries the workers of other
/// processes keep for it ([`SentIds`] at their end): per (epoch, sending worker), the
/// entries by index. The one table of the series-id dictionary ([`ReceivedIds`]) and
/// the label-set one ([`crate::render::dictionary::ReceivedLabels`]).
pub struct ReceivedTables<T> {
    tables: BTreeMap<(u64, u32), Vec<T>>,
}

impl<T> Default for ReceivedTables<T> {
    fn default() -> Self {
        ReceivedTables {
            tables: BTreeMap::new(),
        }
    }
}

impl<T: Clone + Default> ReceivedTables<T> {
    /// Takes `entries` (index, entry) of sender `from`'s dictionary of `epoch`.
    pub fn learn(&mut self, epoch: u64, from: u32, entries: impl IntoIterator<Item = (usize, T)>) {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return;
        }
        let table = self.tables.entry((epoch, from)).or_default();
        for (i, entry) in entries {
            if table.len() <= i {
                table.resize(i + 1, T::default());
            }
            table[i] = entry;
        }
    }

    /// Sender `from`'s dictionary of `epoch`, as learnt so far.
    pub fn table(&self, epoch: u64, from: u32) -> Option<&[T]> {
        self.tables.get(&(epoch, from)).map(Vec::as_slice)
    }

    /// Drops the dictionaries of epochs before `epoch`.
    pub fn forget_before(&mut self, epoch: u64) {
        while let Some(entry) = self.tables.first_entry().filter(|e| e.key().0 < epoch) {
            entry.remove();
        }
    }

    /// The number of entries held (indices up to the largest learnt), over every
    /// dictionary.
    pub fn len(&self) -> usize {
        self.tables.values().map(Vec::len).sum()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// The dictionaries of series ids the workers of other processes have sent this one
/// ([`SentIds`] at their end), by epoch and sender: fed the entries of every pack of a
/// time ([`ReceivedIds::learn`]) before any of them is decoded
/// ([`ReceivedIds::decode`]), times in order.
#[derive(Default)]
pub struct ReceivedIds {
    tables: ReceivedTables<u64>,
}

impl ReceivedIds {
    /// Takes the dictionary entries `pack` brings.
    pub fn learn(&mut self, pack: &PackedPoints) {
        let Some(coded) = &pack.coded else { return };
        let (mut at, mut index) = (0, -1i64);
        let entries = coded.entry_ids.iter().map(|&id| {
            index += 1 + unzigzag(get_varint(&coded.entry_indices, &mut at) as u64);
            (index as usize, id)
        });
        self.tables.learn(coded.epoch, coded.from, entries);
    }

    /// Gives `pack` its series ids back (a pack without a dictionary is left as it is).
    /// Panics on an index no pack has brought (the sender's contract broken).
    pub fn decode(&self, pack: &mut PackedPoints) {
        let Some(coded) = pack.coded.take() else {
            return;
        };
        let table = self.tables.table(coded.epoch, coded.from);
        let whole = std::mem::take(&mut pack.series_ids);
        let mut whole = whole.into_iter();
        let mut ids = Vec::with_capacity(pack.timestamps.len());
        let (mut at, mut index) = (0, -1i64);
        while at < coded.codes.len() {
            match get_varint(&coded.codes, &mut at) {
                0 => ids.push(whole.next().expect("a whole id per code 0")),
                code => {
                    index += 1 + unzigzag((code - 1) as u64);
                    let id = table
                        .and_then(|t| t.get(index as usize))
                        .unwrap_or_else(|| {
                            panic!(
                                "series id index {index} of worker {} epoch {} never brought",
                                coded.from, coded.epoch
                            )
                        });
                    ids.push(*id);
                }
            }
        }
        pack.series_ids = ids;
    }

    /// Drops the dictionaries of epochs before `epoch`.
    pub fn forget_before(&mut self, epoch: u64) {
        self.tables.forget_before(epoch);
    }

    /// The number of entries held, over every dictionary.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

impl PackedPoints {
    /// The number of samples (counted through the timestamps: not for a hot path).
    pub fn len(&self) -> usize {
        self.timestamps.iter().filter(|&&b| b < 0x80).count()
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Bytes of the encoded columns and the dictionary's sender and epoch (what
    /// bincode sends, less its length prefixes and the option's tag).
    pub fn encoded_bytes(&self) -> usize {
        let coded = self.coded.as_ref().map_or(0, |c| {
            4 + 8 + c.codes.len() + c.entry_indices.len() + 8 * c.entry_ids.len()
        });
        8 * self.series_ids.len()
            + coded
            + self.timestamps.len()
            + self.values.len()
            + self.starts.len()
    }

    /// Codes the series ids by `sent`, the dictionary of sender `from` for this pack's
    /// destination, for a pack of logical time `time` in epoch `epoch`: an epoch later
    /// than the dictionary's empties it first; an earlier one (a late time) leaves
    /// the pack uncoded, as do ids new to a full dictionary
    /// ([`MAX_DICTIONARY_ENTRIES`]). The pack brings the entries it is the first of
    /// (by time) to use. Nothing may be pushed after. Returns how many ids it coded as
    /// indices, and how many entries (ids crossing whole beside their index) it brings.
    pub fn code_ids(
        &mut self,
        from: u32,
        epoch: u64,
        time: u64,
        sent: &mut SentIds,
    ) -> (usize, usize) {
        if self.coded.is_some() || self.series_ids.is_empty() {
            return (0, 0);
        }
        sent.advance_to(epoch);
        if sent.epoch != Some(epoch) {
            return (0, 0);
        }
        let mut coded = CodedIds {
            from,
            epoch,
            codes: Vec::with_capacity(self.series_ids.len()),
            ..CodedIds::default()
        };
        let (mut last, mut last_entry) = (-1i64, -1i64);
        let mut whole = Vec::new();
        for &id in &self.series_ids {
            let Some((index, bring)) = sent.code(id, time) else {
                coded.codes.push(0);
                whole.push(id);
                continue;
            };
            let index = i64::from(index);
            if bring {
                put_varint(
                    &mut coded.entry_indices,
                    zigzag(index - (last_entry + 1)).into(),
                );
                coded.entry_ids.push(id);
                last_entry = index;
            }
            put_varint(&mut coded.codes, 1 + u128::from(zigzag(index - (last + 1))));
            last = index;
        }
        let counts = (self.series_ids.len() - whole.len(), coded.entry_ids.len());
        self.series_ids = whole;
        self.coded = Some(coded);
        counts
    }
}

/// LEB128 (a `u128`: a start timestamp's `1 + zigzag` needs 65 bits at the extremes).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(bytes: &[u8], at: &mut usize) -> u128 {
    let mut v = 0u128;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u128::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

impl Pack<Point> for PackedPoints {
    /// Not on a coded pack ([`PackedPoints::code_ids`] is the last step).
    fn push(&mut self, p: &Point) {
        debug_assert!(self.coded.is_none(), "a sample pushed after code_ids");
        let (last_ts, last_bits) = self.last;
        put_varint(
            &mut self.timestamps,
            zigzag(p.timestamp_ms.wrapping_sub(last_ts)).into(),
        );
        let bits = p.value.to_bits();
        let x = bits ^ last_bits;
        if x == 0 {
            self.values.push(0);
        } else {
            let lead = x.leading_zeros() / 8;
            let trail = x.trailing_zeros() / 8;
            // `lead + trail < 8`: three bits and four, with the high bit set (a
            // header of 0 is a repeated value).
            self.values.push((0x80 | lead << 4 | trail) as u8);
            let bytes = x.to_be_bytes();
            self.values
                .extend_from_slice(&bytes[lead as usize..8 - trail as usize]);
        }
        if p.start_ms != 0 && self.starts.is_empty() {
            self.starts.resize(self.series_ids.len(), 0);
        }
        if p.start_ms != 0 {
            put_varint(
                &mut self.starts,
                1 + u128::from(zigzag(p.timestamp_ms.wrapping_sub(p.start_ms))),
            );
        } else if !self.starts.is_empty() {
            self.starts.push(0);
        }
        self.series_ids.push(p.series_id);
        self.last = (p.timestamp_ms, bits);
    }

    /// Of a pack not coded (received: once [`ReceivedIds::decode`]d).
    fn series_ids(&self) -> impl Iterator<Item = u64> + '_ {
        debug_assert!(self.coded.is_none(), "series ids of a coded pack");
        self.series_ids.iter().copied()
    }

    /// Of a pack not coded (received: once [`ReceivedIds::decode`]d).
    fn unpack(self, mut each: impl FnMut(Point)) {
        assert!(self.coded.is_none(), "a coded pack unpacked before decode");
        let (mut ts, mut bits) = (0i64, 0u64);
        let (mut t_at, mut v_at, mut s_at) = (0, 0, 0);
        for &series_id in &self.series_ids {
            ts = ts.wrapping_add(unzigzag(get_varint(&self.timestamps, &mut t_at) as u64));
            let header = self.values[v_at];
            v_at += 1;
            if header != 0 {
                let (lead, trail) = ((header >> 4 & 7) as usize, (header & 0xf) as usize);
                let mut bytes = [0u8; 8];
                let n = 8 - lead - trail;
                bytes[lead..8 - trail].copy_from_slice(&self.values[v_at..v_at + n]);
                v_at += n;
                bits ^= u64::from_be_bytes(bytes);
            }
            let start_ms = if self.starts.is_empty() {
                0
            } else {
                match get_varint(&self.starts, &mut s_at) {
                    0 => 0,
                    d => ts.wrapping_sub(unzigzag((d - 1) as u64)),
                }
            };
            each(Point {
                series_id,
                timestamp_ms: ts,
                value: f64::from_bits(bits),
                start_ms,
            });
        }
    }
}

/// One native-histogram sample inside the dataflow (its series by id, as [`Point`]).
/// A stale marker of a histogram series is a float [`Point`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramPoint {
    /// The series id ([`Labels::hash`]).
    pub series_id: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The histogram, shared by every window that keeps it.
    pub histogram: Arc<FloatHistogram>,
    /// Its start timestamp (ms; 0: none), as [`Point::start_ms`].
    pub start_ms: i64,
}

/// One sample inside the dataflow: its series by id (labels in the catalog).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The series id ([`Labels::hash`]).
    pub series_id: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; may be [`STALE_MARKER`].
    pub value: f64,
    /// Start timestamp (ms), as [`Sample::start_ms`]; 0: unknown.
    pub start_ms: i64,
}

/// Samples in columns, as a batch enters the dataflow ([`crate::Engine::feed`]).
#[derive(Clone, Debug, Default)]
pub struct SampleBatch {
    /// Per sample, its series id.
    pub series_ids: Vec<u64>,
    /// Per sample, its timestamp (ms).
    pub timestamps_ms: Vec<i64>,
    /// Per sample, its value.
    pub values: Vec<f64>,
    /// Per sample, its start timestamp (0: unknown); `None` when no sample has one.
    pub start_ms: Option<Vec<i64>>,
    /// The native-histogram samples, a column apart from the floats (empty, with no
    /// allocation, in a float-only batch). Not counted by [`SampleBatch::len`].
    pub histograms: Vec<HistogramPoint>,
    /// The labels of the series the producer has not announced to the catalog before
    /// (by id); any series of the batch may be repeated here.
    pub new_series: Vec<(u64, Arc<Labels>)>,
}

impl SampleBatch {
    /// An empty batch with room for `capacity` samples.
    pub fn with_capacity(capacity: usize) -> SampleBatch {
        SampleBatch {
            series_ids: Vec::with_capacity(capacity),
            timestamps_ms: Vec::with_capacity(capacity),
            values: Vec::with_capacity(capacity),
            start_ms: None,
            histograms: Vec::new(),
            new_series: Vec::new(),
        }
    }

    /// The number of float samples (the histograms are [`SampleBatch::histograms`]).
    pub fn len(&self) -> usize {
        self.series_ids.len()
    }

    /// Whether the batch holds no float sample.
    pub fn is_empty(&self) -> bool {
        self.series_ids.is_empty()
    }

    /// Appends a native-histogram sample of a series already announced (or in
    /// [`SampleBatch::new_series`]), with its start timestamp (0: none).
    pub fn push_histogram(
        &mut self,
        series_id: u64,
        timestamp_ms: i64,
        histogram: Arc<FloatHistogram>,
        start_ms: i64,
    ) {
        self.histograms.push(HistogramPoint {
            series_id,
            timestamp_ms,
            histogram,
            start_ms,
        });
    }

    /// Appends a sample of a series already announced (or in [`SampleBatch::new_series`]).
    pub fn push(&mut self, series_id: u64, timestamp_ms: i64, value: f64, start_ms: i64) {
        if start_ms != 0 || self.start_ms.is_some() {
            let len = self.series_ids.len();
            self.start_ms
                .get_or_insert_with(|| vec![0; len])
                .push(start_ms);
        }
        self.series_ids.push(series_id);
        self.timestamps_ms.push(timestamp_ms);
        self.values.push(value);
    }

    /// Appends `sample`, announcing its labels when `announce`.
    pub fn push_sample(&mut self, sample: &Sample, announce: bool) {
        if announce {
            self.new_series
                .push((sample.series_id, sample.labels.clone()));
        }
        self.push(
            sample.series_id,
            sample.timestamp_ms,
            sample.value,
            sample.start_ms,
        );
    }

    /// A batch of copies of `samples`, every series announced (a producer without a
    /// series cache that keeps its samples; `SampleBatch::from(Vec<Sample>)` moves them).
    pub fn from_samples(samples: &[Sample]) -> SampleBatch {
        let mut batch = SampleBatch::with_capacity(samples.len());
        for sample in samples {
            batch.push_sample(sample, true);
        }
        batch
    }

    /// The start timestamp of sample `i` (0: unknown).
    pub fn start_ms_at(&self, i: usize) -> i64 {
        self.start_ms.as_ref().map_or(0, |s| s[i])
    }

    /// Whether sample `i` is the zero sample of a start ([`is_start_zero`]).
    pub fn is_start_zero_at(&self, i: usize) -> bool {
        self.start_ms
            .as_ref()
            .is_some_and(|s| is_start_zero(self.timestamps_ms[i], s[i]))
    }

    /// Inserts, before sample `at`, the zero sample of the start `start_ms` of its
    /// series ([`is_start_zero`]): value 0 at `start_ms`.
    pub fn insert_start_zero(&mut self, at: usize, start_ms: i64) {
        let len = self.series_ids.len();
        self.start_ms
            .get_or_insert_with(|| vec![0; len])
            .insert(at, start_ms);
        self.series_ids.insert(at, self.series_ids[at]);
        self.timestamps_ms.insert(at, start_ms);
        self.values.insert(at, 0.0);
    }

    /// Keeps the start timestamps only where they mark the zero sample of a start
    /// ([`is_start_zero`]), floats and histograms: what
    /// [`crate::Engine::feed_with_start_zeros`] takes.
    pub fn keep_start_zero_marks(&mut self) {
        if let Some(starts) = &mut self.start_ms {
            let mut any = false;
            for (start, &ts) in starts.iter_mut().zip(&self.timestamps_ms) {
                if is_start_zero(ts, *start) {
                    any = true;
                } else {
                    *start = 0;
                }
            }
            if !any {
                self.start_ms = None;
            }
        }
        for h in &mut self.histograms {
            if !is_start_zero(h.timestamp_ms, h.start_ms) {
                h.start_ms = 0;
            }
        }
    }

    /// Takes the zero samples of starts ([`is_start_zero`]) older than `before_ms` out
    /// of the batch, floats and histograms, and drops the start timestamps of the
    /// samples left (see [`crate::Engine::feed_with_start_zeros`]). Returned, without
    /// their start timestamps, are those the sample that brought the start follows in
    /// the batch (the next of the same kind, of the same series) not older than
    /// `before_ms`; the others (their sample late too, or not stored) go.
    pub fn take_start_zeros_before(&mut self, before_ms: i64) -> (Vec<Point>, Vec<HistogramPoint>) {
        let mut zeros = Vec::new();
        if let Some(starts) = self.start_ms.take() {
            let mut kept = Vec::with_capacity(self.len());
            for (i, &start) in starts.iter().enumerate() {
                let (id, ts) = (self.series_ids[i], self.timestamps_ms[i]);
                if !(is_start_zero(ts, start) && ts < before_ms) {
                    kept.push(i);
                    continue;
                }
                let next = i + 1;
                if next < self.len()
                    && self.series_ids[next] == id
                    && self.timestamps_ms[next] >= before_ms
                {
                    zeros.push(Point {
                        series_id: id,
                        timestamp_ms: ts,
                        value: self.values[i],
                        start_ms: 0,
                    });
                }
            }
            self.retain_indices(&kept);
        }
        let mut histogram_zeros = Vec::new();
        if self.histograms.iter().any(|h| h.start_ms != 0) {
            let behind = |h: &HistogramPoint| {
                is_start_zero(h.timestamp_ms, h.start_ms) && h.timestamp_ms < before_ms
            };
            let mut kept = Vec::with_capacity(self.histograms.len());
            let mut rest = std::mem::take(&mut self.histograms).into_iter().peekable();
            while let Some(mut h) = rest.next() {
                let zero = behind(&h);
                h.start_ms = 0;
                if !zero {
                    kept.push(h);
                } else if rest
                    .peek()
                    .is_some_and(|n| n.series_id == h.series_id && n.timestamp_ms >= before_ms)
                {
                    histogram_zeros.push(h);
                }
            }
            self.histograms = kept;
        }
        (zeros, histogram_zeros)
    }

    /// The labels [`SampleBatch::new_series`] gives series `id`, if it announces it
    /// (a linear search: for the few series a batch creates, see
    /// [`SampleBatch::announced`] for many).
    pub fn announced_labels(&self, id: u64) -> Option<&Arc<Labels>> {
        self.new_series
            .iter()
            .find(|(announced, _)| *announced == id)
            .map(|(_, labels)| labels)
    }

    /// [`SampleBatch::new_series`] by id (the first announcement of an id wins).
    pub fn announced(&self) -> KeyMap<u64, &Arc<Labels>> {
        let mut by_id = KeyMap::default();
        by_id.reserve(self.new_series.len());
        for (id, labels) in &self.new_series {
            by_id.entry(*id).or_insert(labels);
        }
        by_id
    }

    /// Keeps the float samples at the indices `kept` (ascending), drops the others;
    /// the announcements and the histograms stay.
    pub fn retain_indices(&mut self, kept: &[usize]) {
        if kept.len() == self.len() {
            return;
        }
        fn filter<T: Copy>(column: &mut Vec<T>, kept: &[usize]) {
            for (to, &from) in kept.iter().enumerate() {
                column[to] = column[from];
            }
            column.truncate(kept.len());
        }
        filter(&mut self.series_ids, kept);
        filter(&mut self.timestamps_ms, kept);
        filter(&mut self.values, kept);
        if let Some(starts) = &mut self.start_ms {
            filter(starts, kept);
        }
    }

    /// Keeps the samples (floats and histograms) for which `keep(timestamp)` holds;
    /// returns how many went.
    pub fn retain_by_time(&mut self, mut keep: impl FnMut(i64) -> bool) -> usize {
        let histograms = self.histograms.len();
        self.histograms.retain(|h| keep(h.timestamp_ms));
        let gone_histograms = histograms - self.histograms.len();
        let before = self.len();
        if self.timestamps_ms.iter().all(|&t| keep(t)) {
            return gone_histograms;
        }
        let kept: Vec<bool> = self.timestamps_ms.iter().map(|&t| keep(t)).collect();
        fn filter<T: Copy>(column: &mut Vec<T>, kept: &[bool]) {
            let mut i = 0;
            column.retain(|_| {
                i += 1;
                kept[i - 1]
            });
        }
        filter(&mut self.series_ids, &kept);
        filter(&mut self.timestamps_ms, &kept);
        filter(&mut self.values, &kept);
        if let Some(starts) = &mut self.start_ms {
            filter(starts, &kept);
        }
        before - self.len() + gone_histograms
    }

    /// The samples as points, in order.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        (0..self.len()).map(|i| Point {
            series_id: self.series_ids[i],
            timestamp_ms: self.timestamps_ms[i],
            value: self.values[i],
            start_ms: self.start_ms_at(i),
        })
    }
}

/// Every series announced: the batch of a producer without a series cache.
impl From<Vec<Sample>> for SampleBatch {
    fn from(samples: Vec<Sample>) -> SampleBatch {
        let mut batch = SampleBatch::with_capacity(samples.len());
        for sample in &samples {
            batch.push_sample(sample, true);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Native histograms travel apart (see the module doc): a float sample inside the
    /// dataflow stays four words, with nothing per sample for histograms.
    #[test]
    fn a_point_stays_four_words() {
        assert_eq!(std::mem::size_of::<Point>(), 32);
    }

    /// What crosses the exchange comes back bit for bit, in fewer bytes than points.
    #[test]
    fn packed_points_come_back_whole() {
        let mut points = Vec::new();
        let mut rng = fastrand::Rng::with_seed(14);
        for i in 0..2_000u64 {
            let value = match i % 9 {
                0 => STALE_MARKER,
                1 => f64::NAN,
                2 => -0.0,
                3 => f64::INFINITY,
                4 => rng.f64() * 1e6,
                5 => (i / 9) as f64,
                6 => f64::MIN_POSITIVE,
                _ => 1234.0 + i as f64,
            };
            let timestamp_ms = match i % 5 {
                0 => 1_700_000_000_000 + (i as i64 / 50) * 15_000,
                1 => -(i as i64),
                2 => i64::MAX - i as i64,
                _ => 1_700_000_000_000,
            };
            let start_ms = if i > 1_000 && i % 3 == 0 {
                [timestamp_ms, 1, i64::MIN, timestamp_ms - 86_400_000][i as usize % 4]
            } else {
                0
            };
            points.push(Point {
                series_id: rng.u64(..),
                timestamp_ms,
                value,
                start_ms,
            });
        }
        for n in [0, 1, 2, 1_000, 1_001, points.len()] {
            let mut packed = PackedPoints::default();
            for p in &points[..n] {
                packed.push(p);
            }
            let sent: PackedPoints =
                serde_json::from_str(&serde_json::to_string(&packed).unwrap()).unwrap();
            let mut back = Vec::new();
            sent.unpack(|p| back.push(p));
            assert_eq!(back.len(), n);
            for (a, b) in back.iter().zip(&points) {
                assert_eq!(
                    (a.series_id, a.timestamp_ms, a.value.to_bits(), a.start_ms),
                    (b.series_id, b.timestamp_ms, b.value.to_bits(), b.start_ms)
                );
            }
        }
        // A scrape's samples: one timestamp, integer-valued counters.
        let mut packed = PackedPoints::default();
        for i in 0..1_000u64 {
            packed.push(&Point {
                series_id: rng.u64(..),
                timestamp_ms: 1_700_000_000_000,
                value: (100_000 + 7 * i) as f64,
                start_ms: 0,
            });
        }
        assert!(
            packed.encoded_bytes() < 13 * 1_000,
            "{}",
            packed.encoded_bytes()
        );
    }

    /// A pack as it arrives in another process (serialized, its packer's place lost).
    fn sent(packed: &PackedPoints) -> PackedPoints {
        serde_json::from_str(&serde_json::to_string(packed).unwrap()).unwrap()
    }

    fn bits(points: &[Point]) -> Vec<(u64, i64, u64, i64)> {
        points
            .iter()
            .map(|p| (p.series_id, p.timestamp_ms, p.value.to_bits(), p.start_ms))
            .collect()
    }

    /// Packs `points` for time `t` and codes the pack by `dictionary`; returns the
    /// pack with the points it must give back (pushed uncoded, kept for comparison).
    fn coded(
        points: &[Point],
        t: u64,
        epoch: u64,
        dictionary: &mut SentIds,
    ) -> (PackedPoints, Vec<Point>) {
        let mut pack = PackedPoints::default();
        for p in points {
            pack.push(p);
        }
        pack.code_ids(3, epoch, t, dictionary);
        (pack, points.to_vec())
    }

    /// Checks that every pack, crossed and decoded in time order, gives back its
    /// points bit for bit.
    fn round_trip(packs: &[(u64, (PackedPoints, Vec<Point>))], order: &[usize]) {
        let mut received = ReceivedIds::default();
        let mut by_time: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for &i in order {
            by_time.entry(packs[i].0).or_default().push(i);
        }
        for (_, at) in by_time {
            let arrived: Vec<(usize, PackedPoints)> =
                at.iter().map(|&i| (i, sent(&packs[i].1 .0))).collect();
            for (_, pack) in &arrived {
                received.learn(pack);
            }
            for (i, mut pack) in arrived.into_iter().rev() {
                received.decode(&mut pack);
                let mut back = Vec::new();
                pack.unpack(|p| back.push(p));
                assert_eq!(bits(&back), bits(&packs[i].1 .1), "pack {i}");
            }
        }
    }

    /// Scrapes of `targets` targets of `per` series each at time `t`, values of every
    /// kind (stale markers, NaNs, start timestamps among them).
    fn scrape(targets: std::ops::Range<u64>, per: u64, t: i64) -> Vec<Point> {
        let mut points = Vec::new();
        for target in targets {
            for i in 0..per {
                let n = target * per + i;
                let value = match n % 7 {
                    0 => STALE_MARKER,
                    1 => f64::from_bits(0x7ff8_0000_dead_beef),
                    2 => -0.0,
                    _ => (t / 1000) as f64 + n as f64,
                };
                points.push(Point {
                    series_id: xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes()),
                    timestamp_ms: t,
                    value,
                    start_ms: if n.is_multiple_of(5) {
                        t - 86_400_000
                    } else {
                        0
                    },
                });
            }
        }
        points
    }

    /// Coded packs give back every bit; a series the destination has had crosses as
    /// about a byte; a series new mid-epoch brings its entry once; a pack at a time
    /// earlier than an entry's first brings it again; packs of one time may use each
    /// other's entries whatever order they cross in.
    #[test]
    fn coded_packs_come_back_whole_in_any_crossing_order() {
        let mut dictionary = SentIds::default();
        let mut packs = Vec::new();
        // Two scrapes of targets 0..10, then 0..12 (two targets new mid-epoch), then a
        // pack at a time before the first (a late time of the same epoch).
        packs.push((
            1_000,
            coded(&scrape(0..10, 50, 1_000), 1_000, 0, &mut dictionary),
        ));
        let second = coded(&scrape(0..10, 50, 16_000), 16_000, 0, &mut dictionary);
        assert!(second.0.coded.as_ref().unwrap().entry_ids.is_empty());
        assert!(second.0.series_ids.is_empty());
        // Known series in the order they came: a byte each.
        assert_eq!(second.0.coded.as_ref().unwrap().codes.len(), 500);
        packs.push((16_000, second));
        let third = coded(&scrape(5..12, 50, 31_000), 31_000, 0, &mut dictionary);
        assert_eq!(third.0.coded.as_ref().unwrap().entry_ids.len(), 100);
        packs.push((31_000, third));
        let late = coded(&scrape(9..11, 50, 500), 500, 0, &mut dictionary);
        // Target 9 was first brought at 1000, 10 at 31000: both again at 500.
        assert_eq!(late.0.coded.as_ref().unwrap().entry_ids.len(), 100);
        packs.push((500, late));
        // Two packs at one time, the second using the entries the first brought.
        packs.push((
            46_000,
            coded(&scrape(12..13, 50, 46_000), 46_000, 0, &mut dictionary),
        ));
        let reuse = coded(&scrape(12..14, 50, 46_000), 46_000, 0, &mut dictionary);
        assert_eq!(reuse.0.coded.as_ref().unwrap().entry_ids.len(), 50);
        packs.push((46_000, reuse));
        round_trip(&packs, &[0, 1, 2, 3, 4, 5]);
        round_trip(&packs, &[5, 4, 3, 2, 1, 0]);
        // Once the dictionary holds them, 500 samples take 500 bytes of ids.
        let again = coded(&scrape(0..10, 50, 61_000), 61_000, 0, &mut dictionary).0;
        let uncoded = {
            let mut p = PackedPoints::default();
            scrape(0..10, 50, 61_000).iter().for_each(|x| p.push(x));
            p
        };
        assert_eq!(
            uncoded.encoded_bytes() - again.encoded_bytes(),
            500 * 8 - 500 - 12
        );
    }

    /// A later epoch starts the dictionary over (indices from 0, entries brought
    /// again); a pack of an earlier epoch crosses uncoded; the receiver forgets the
    /// epochs it has passed and still decodes; ids beyond a full dictionary cross
    /// whole.
    #[test]
    fn epochs_start_over_and_full_dictionaries_send_ids_whole() {
        let mut dictionary = SentIds::with_limit(120);
        let first = coded(&scrape(0..2, 50, 1_000), 1_000, 0, &mut dictionary);
        assert_eq!(first.0.coded.as_ref().unwrap().entry_ids.len(), 100);
        let next = coded(&scrape(0..3, 50, 700_000), 700_000, 1, &mut dictionary);
        // The new epoch's dictionary takes 120 of the 150, from index 0.
        let c = next.0.coded.as_ref().unwrap();
        assert_eq!((c.epoch, c.entry_ids.len()), (1, 120));
        assert_eq!(next.0.series_ids.len(), 30);
        assert_eq!(c.entry_indices[0], 0);
        let late = coded(&scrape(0..1, 50, 2_000), 2_000, 0, &mut dictionary);
        assert!(late.0.coded.is_none());
        assert_eq!(late.0.series_ids.len(), 50);
        // Moved on to epoch 2 (a new period, nothing sent): empty, and epoch 1 is
        // not taken up again.
        let mut moved = SentIds::with_limit(120);
        coded(&scrape(0..1, 50, 700_000), 700_000, 1, &mut moved);
        moved.advance_to(2);
        assert!(moved.entries.is_empty() && moved.epoch == Some(2));
        let behind = coded(&scrape(0..1, 50, 701_000), 701_000, 1, &mut moved);
        assert!(behind.0.coded.is_none());
        let packs = vec![(1_000, first), (2_000, late), (700_000, next)];
        round_trip(&packs, &[2, 1, 0]);
        let mut received = ReceivedIds::default();
        received.learn(&packs[0].1 .0);
        received.learn(&packs[2].1 .0);
        assert_eq!(received.len(), 220);
        received.forget_before(1);
        assert_eq!(received.len(), 120);
        let mut pack = sent(&packs[2].1 .0);
        received.decode(&mut pack);
        let mut back = Vec::new();
        pack.unpack(|p| back.push(p));
        assert_eq!(bits(&back), bits(&packs[2].1 .1));
    }

    #[test]
    fn stale_marker_is_not_an_ordinary_nan() {
        assert!(is_stale_marker(STALE_MARKER));
        assert!(STALE_MARKER.is_nan());
        assert!(!is_stale_marker(f64::NAN));
        assert!(!is_stale_marker(1.0));
    }

    /// The start column exists only once a sample has a start, filled with 0 before
    /// it; filtering by time keeps the columns aligned.
    #[test]
    fn start_column_appears_with_the_first_start_and_columns_stay_aligned() {
        let mut batch = SampleBatch::with_capacity(3);
        batch.push(1, 10, 1.0, 0);
        assert!(batch.start_ms.is_none());
        batch.push(2, 20, 2.0, 5);
        batch.push(3, 30, 3.0, 0);
        assert_eq!(batch.start_ms.as_deref(), Some(&[0, 5, 0][..]));
        assert_eq!(batch.retain_by_time(|t| t != 10), 1);
        let points: Vec<Point> = batch.points().collect();
        assert_eq!(
            points,
            vec![
                Point {
                    series_id: 2,
                    timestamp_ms: 20,
                    value: 2.0,
                    start_ms: 5
                },
                Point {
                    series_id: 3,
                    timestamp_ms: 30,
                    value: 3.0,
                    start_ms: 0
                },
            ]
        );
    }

    /// Zero samples of starts behind the watermark come out of the batch, and are
    /// returned only when the sample after them (the one that brought the start) is of
    /// their series and not behind; every start mark goes.
    #[test]
    fn start_zeros_behind_come_out_with_their_sample_not_behind() {
        let mut batch = SampleBatch::default();
        for (id, ts, start) in [
            (1, 5, 5),
            (1, 20, 0),
            (2, 6, 6),
            (2, 8, 0),
            (3, 7, 7),
            (4, 30, 0),
            (5, 3, 0),
            (6, 12, 12),
            (6, 25, 0),
        ] {
            batch.push(id, ts, if start == 0 { 1.0 } else { 0.0 }, start);
        }
        let h = |id: u64, ts: i64, start: i64| HistogramPoint {
            series_id: id,
            timestamp_ms: ts,
            histogram: Arc::new(FloatHistogram::default()),
            start_ms: start,
        };
        batch.histograms = vec![h(1, 4, 4), h(1, 21, 0), h(2, 5, 5), h(2, 9, 0)];
        let (zeros, histogram_zeros) = batch.take_start_zeros_before(10);
        let at = |p: &[Point]| {
            p.iter()
                .map(|p| (p.series_id, p.timestamp_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(&zeros), [(1, 5)]);
        assert!(zeros.iter().all(|p| p.start_ms == 0 && p.value == 0.0));
        assert_eq!(batch.series_ids, [1, 2, 4, 5, 6, 6]);
        assert_eq!(batch.timestamps_ms, [20, 8, 30, 3, 12, 25]);
        assert!(batch.start_ms.is_none());
        let hs = |h: &[HistogramPoint]| {
            h.iter()
                .map(|h| (h.series_id, h.timestamp_ms, h.start_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(hs(&histogram_zeros), [(1, 4, 0)]);
        assert_eq!(hs(&batch.histograms), [(1, 21, 0), (2, 9, 0)]);
    }

    /// Keeping samples by index keeps the columns aligned and the announcements.
    #[test]
    fn retain_indices_keeps_the_chosen_samples_in_order() {
        let labels = Arc::new(Labels::from_strs(&[("__name__", "a")]));
        let mut batch = SampleBatch::with_capacity(4);
        batch.new_series.push((7, labels.clone()));
        for i in 0..4 {
            batch.push(i, i as i64 * 10, i as f64, if i == 2 { 3 } else { 0 });
        }
        batch.retain_indices(&[1, 2]);
        assert_eq!(batch.series_ids, vec![1, 2]);
        assert_eq!(batch.timestamps_ms, vec![10, 20]);
        assert_eq!(batch.values, vec![1.0, 2.0]);
        assert_eq!(batch.start_ms.as_deref(), Some(&[0, 3][..]));
        assert!(Arc::ptr_eq(batch.announced_labels(7).unwrap(), &labels));
        assert!(batch.announced_labels(1).is_none());
        assert_eq!(batch.announced().len(), 1);
    }
}
