//! The native-histogram samples of one series, held by the head beside (not inside)
//! its float chunks ([`super::head`] keeps them in a side map by series id, only for
//! series that have histograms, so float series pay nothing for them), and the same
//! chunks as blocks persist them ([`encode`], [`decode`]: a chunk's bytes are the
//! same in the head, in a block and, for one sample, in a WAL record).
//!
//! Encoding (promflow's own, not Prometheus's XOR histogram chunk): chunks of up to
//! [`CHUNK_SAMPLES`] samples, each a byte string in which every sample is written
//! against the previous one of the chunk (the first against nothing):
//! - the timestamp: zig-zag varint, the first as it is, the others as the difference
//!   from the previous;
//! - a flags byte: bits 0–1 the counter-reset hint (unknown, reset, not reset,
//!   gauge), bit 2 "same layout as the previous sample" (schema, zero threshold,
//!   spans, custom bounds), bit 3 "integral counts" (the zero count, the count and
//!   every bucket are integers below 2^53: integer histograms, as most targets
//!   expose);
//! - unless the layout is the same: the schema (zig-zag varint), the zero threshold
//!   (8 bytes), the negative and positive spans (count, then offset as zig-zag varint
//!   and length as varint each) and the custom bounds (count, 8 bytes each);
//! - the zero count, the count and the bucket counts (negative, then positive) in
//!   span order: with integral counts, the zig-zag varint of the difference from the
//!   same count of the previous sample (0 when the layout changed); else the varint
//!   of the XOR of the float bits with that count's bits (leading zero bits cost
//!   nothing);
//! - the sum: the varint of the XOR of its bits with the previous sum's.
//!
//! A steady integer histogram of 20 buckets whose counts grow by small numbers costs
//! about 30 bytes a sample. Truncation drops whole chunks and re-encodes the one that
//! straddles the cutoff (its first kept sample against nothing).

use super::chunk::EncodedChunk;
use super::varint::{get_uvarint, get_varint, put_uvarint, put_varint};
use dataflows::histogram::{CounterResetHint, FloatHistogram, Span};

/// Samples per chunk.
pub const CHUNK_SAMPLES: u16 = 120;

/// The histogram samples of one series, in time order, and the newest one decoded
/// (the reference the next sample is encoded against).
#[derive(Default)]
pub struct HistogramChunks {
    chunks: Vec<Chunk>,
    /// The newest sample, the encoding's reference for the next one in its chunk.
    last: Option<(i64, FloatHistogram)>,
}

struct Chunk {
    bytes: Vec<u8>,
    first_ts: i64,
    last_ts: i64,
    count: u16,
}

impl HistogramChunks {
    /// An empty series.
    pub fn new() -> HistogramChunks {
        HistogramChunks::default()
    }

    /// The newest sample, if any.
    pub fn last(&self) -> Option<&(i64, FloatHistogram)> {
        self.last.as_ref()
    }

    /// The newest timestamp held.
    pub fn last_ts(&self) -> Option<i64> {
        self.chunks.last().map(|c| c.last_ts)
    }

    /// The oldest timestamp held.
    pub fn first_ts(&self) -> Option<i64> {
        self.chunks.first().map(|c| c.first_ts)
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| usize::from(c.count)).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes of encoded samples.
    pub fn encoded_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes.len()).sum()
    }

    /// Appends a sample newer than every one held (the caller checks).
    pub fn push(&mut self, ts: i64, h: FloatHistogram) {
        let full = self.chunks.last().is_none_or(|c| c.count >= CHUNK_SAMPLES);
        if full {
            self.chunks.push(Chunk {
                bytes: Vec::new(),
                first_ts: ts,
                last_ts: ts,
                count: 0,
            });
        }
        let chunk = self.chunks.last_mut().expect("a chunk was just ensured");
        let previous = if full { None } else { self.last.as_ref() };
        encode_sample(&mut chunk.bytes, previous, ts, &h);
        chunk.last_ts = ts;
        chunk.count += 1;
        if chunk.count == CHUNK_SAMPLES {
            chunk.bytes.shrink_to_fit();
        }
        self.last = Some((ts, h));
    }

    /// The samples with timestamps in `[start, end]`.
    pub fn range(&self, start: i64, end: i64) -> Vec<(i64, FloatHistogram)> {
        let mut out = Vec::new();
        for chunk in self
            .chunks
            .iter()
            .filter(|c| c.last_ts >= start && c.first_ts <= end)
        {
            decode_into(
                &chunk.bytes,
                chunk.count,
                |t| t >= start && t <= end,
                &mut out,
            );
        }
        out
    }

    /// The samples in `[start, end]`, encoded afresh into full chunks (for a block).
    pub fn encode_range(&self, start: i64, end: i64) -> Vec<EncodedChunk> {
        encode(self.range(start, end))
    }

    /// Whether a sample lies in `[start, end]` (by chunk bounds and then samples).
    pub fn has_sample_in(&self, start: i64, end: i64) -> bool {
        self.chunks
            .iter()
            .any(|c| c.last_ts >= start && c.first_ts <= end)
            && !self.range(start, end).is_empty()
    }

    /// Deletes the samples in `[min_t, max_t]` (re-encoding the rest); returns how
    /// many were deleted.
    pub fn delete_range(&mut self, min_t: i64, max_t: i64) -> usize {
        if !self.has_sample_in(min_t, max_t) {
            return 0;
        }
        let all = self.range(i64::MIN, i64::MAX);
        let before = all.len();
        *self = HistogramChunks::new();
        for (ts, h) in all {
            if ts < min_t || ts > max_t {
                self.push(ts, h);
            }
        }
        before - self.len()
    }

    /// Drops the samples older than `cutoff`: the chunks whose samples all are, and
    /// those of the chunk that straddles it (re-encoded), as the float chunks do, so
    /// that nothing a block cut persisted stays in the head.
    pub fn drop_before(&mut self, cutoff: i64) {
        self.chunks.retain(|c| c.last_ts >= cutoff);
        let Some(first) = self.chunks.first().filter(|c| c.first_ts < cutoff) else {
            if self.chunks.is_empty() {
                self.last = None;
            }
            return;
        };
        let mut kept = Vec::with_capacity(usize::from(first.count));
        decode_into(&first.bytes, first.count, |t| t >= cutoff, &mut kept);
        let rest = self.chunks.split_off(1);
        let last = self.last.take();
        *self = HistogramChunks::new();
        for (ts, h) in kept {
            self.push(ts, h);
        }
        // Appends go on in the newest chunk, against the newest sample (unchanged).
        self.chunks.extend(rest);
        self.last = last;
    }
}

/// Samples (in time order, hints as they are to be kept) encoded into chunks of up to
/// [`CHUNK_SAMPLES`], as a block persists them.
pub fn encode(samples: impl IntoIterator<Item = (i64, FloatHistogram)>) -> Vec<EncodedChunk> {
    let mut fresh = HistogramChunks::new();
    for (ts, h) in samples {
        fresh.push(ts, h);
    }
    fresh
        .chunks
        .into_iter()
        .map(|c| EncodedChunk {
            bytes: c.bytes,
            count: c.count,
            min_t: c.first_ts,
            max_t: c.last_ts,
        })
        .collect()
}

/// Decodes the `count` samples of a chunk's bytes (as [`encode`] wrote them; fewer if
/// the bytes end early or are not a chunk).
pub fn decode(bytes: &[u8], count: u16) -> Vec<(i64, FloatHistogram)> {
    let mut out = Vec::with_capacity(usize::from(count));
    decode_into(bytes, count, |_| true, &mut out);
    out
}

/// Decodes a chunk's samples, pushing those whose timestamp `keep` accepts.
fn decode_into(
    bytes: &[u8],
    count: u16,
    keep: impl Fn(i64) -> bool,
    out: &mut Vec<(i64, FloatHistogram)>,
) {
    let mut p = bytes;
    let mut previous: Option<(i64, FloatHistogram)> = None;
    for _ in 0..count {
        let Some(sample) = decode_sample(&mut p, previous.as_ref()) else {
            break;
        };
        if keep(sample.0) {
            out.push(sample.clone());
        }
        previous = Some(sample);
    }
}

fn hint_bits(hint: CounterResetHint) -> u8 {
    match hint {
        CounterResetHint::Unknown => 0,
        CounterResetHint::Reset => 1,
        CounterResetHint::NotReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_of(bits: u8) -> CounterResetHint {
    match bits & 3 {
        1 => CounterResetHint::Reset,
        2 => CounterResetHint::NotReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    }
}

const SAME_LAYOUT: u8 = 4;
const INTEGRAL: u8 = 8;

fn same_layout(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.schema == b.schema
        && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
        && a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && a.custom_values.len() == b.custom_values.len()
        && a.custom_values
            .iter()
            .zip(&b.custom_values)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn integral(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0
}

/// The counts a sample encodes, in order: zero count, count, negative, positive.
fn counts(h: &FloatHistogram) -> impl Iterator<Item = f64> + '_ {
    [h.zero_count, h.count]
        .into_iter()
        .chain(h.negative_buckets.iter().copied())
        .chain(h.positive_buckets.iter().copied())
}

fn encode_sample(
    out: &mut Vec<u8>,
    previous: Option<&(i64, FloatHistogram)>,
    ts: i64,
    h: &FloatHistogram,
) {
    let same = previous.filter(|(_, p)| same_layout(p, h));
    let is_integral = counts(h).all(integral) && same.is_none_or(|(_, p)| counts(p).all(integral));
    match previous {
        Some((prev_ts, _)) => put_varint(out, ts.wrapping_sub(*prev_ts)),
        None => put_varint(out, ts),
    }
    let mut flags = hint_bits(h.counter_reset_hint);
    if same.is_some() {
        flags |= SAME_LAYOUT;
    }
    if is_integral {
        flags |= INTEGRAL;
    }
    out.push(flags);
    if same.is_none() {
        put_varint(out, i64::from(h.schema));
        out.extend_from_slice(&h.zero_threshold.to_bits().to_le_bytes());
        for spans in [&h.negative_spans, &h.positive_spans] {
            put_uvarint(out, spans.len() as u64);
            for s in spans {
                put_varint(out, i64::from(s.offset));
                put_uvarint(out, u64::from(s.length));
            }
        }
        put_uvarint(out, h.custom_values.len() as u64);
        for v in &h.custom_values {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    let reference: Vec<f64> = match same {
        Some((_, p)) => counts(p).collect(),
        None => Vec::new(),
    };
    for (i, v) in counts(h).enumerate() {
        let r = reference.get(i).copied().unwrap_or(0.0);
        if is_integral {
            put_varint(out, (v as i64).wrapping_sub(r as i64));
        } else {
            put_uvarint(out, v.to_bits() ^ r.to_bits());
        }
    }
    let previous_sum = previous.map_or(0.0, |(_, p)| p.sum);
    put_uvarint(out, h.sum.to_bits() ^ previous_sum.to_bits());
}

fn decode_sample(
    p: &mut &[u8],
    previous: Option<&(i64, FloatHistogram)>,
) -> Option<(i64, FloatHistogram)> {
    let delta = get_varint(p)?;
    let ts = match previous {
        Some((prev_ts, _)) => prev_ts.wrapping_add(delta),
        None => delta,
    };
    let (&flags, rest) = p.split_first()?;
    *p = rest;
    let mut h = FloatHistogram {
        counter_reset_hint: hint_of(flags),
        ..FloatHistogram::default()
    };
    let same = if flags & SAME_LAYOUT != 0 {
        let (_, prev) = previous?;
        h.schema = prev.schema;
        h.zero_threshold = prev.zero_threshold;
        h.negative_spans = prev.negative_spans.clone();
        h.positive_spans = prev.positive_spans.clone();
        h.custom_values = prev.custom_values.clone();
        Some(prev)
    } else {
        h.schema = i32::try_from(get_varint(p)?).ok()?;
        h.zero_threshold = get_f64(p)?;
        let mut spans = || -> Option<Vec<Span>> {
            let n = get_uvarint(p)? as usize;
            let mut out = Vec::with_capacity(n.min(1 << 12));
            for _ in 0..n {
                let offset = i32::try_from(get_varint(p)?).ok()?;
                let length = u32::try_from(get_uvarint(p)?).ok()?;
                out.push(Span { offset, length });
            }
            Some(out)
        };
        h.negative_spans = spans()?;
        h.positive_spans = spans()?;
        let n = get_uvarint(p)? as usize;
        for _ in 0..n {
            h.custom_values.push(get_f64(p)?);
        }
        None
    };
    let reference: Vec<f64> = same.map_or_else(Vec::new, |prev| counts(prev).collect());
    let buckets = |spans: &[Span]| spans.iter().map(|s| s.length as usize).sum::<usize>();
    let (n_neg, n_pos) = (buckets(&h.negative_spans), buckets(&h.positive_spans));
    let mut values = Vec::with_capacity(2 + n_neg + n_pos);
    for i in 0..2 + n_neg + n_pos {
        let r = reference.get(i).copied().unwrap_or(0.0);
        let v = if flags & INTEGRAL != 0 {
            (r as i64).wrapping_add(get_varint(p)?) as f64
        } else {
            f64::from_bits(get_uvarint(p)? ^ r.to_bits())
        };
        values.push(v);
    }
    h.zero_count = values[0];
    h.count = values[1];
    h.negative_buckets = values[2..2 + n_neg].to_vec();
    h.positive_buckets = values[2 + n_neg..].to_vec();
    let previous_sum = previous.map_or(0.0, |(_, prev)| prev.sum);
    h.sum = f64::from_bits(get_uvarint(p)? ^ previous_sum.to_bits());
    Some((ts, h))
}

fn get_f64(p: &mut &[u8]) -> Option<f64> {
    let (bits, rest) = p.split_first_chunk::<8>()?;
    *p = rest;
    Some(f64::from_bits(u64::from_le_bytes(*bits)))
}

/// Encodes `h` alone (the WAL's histogram records use the chunk encoding of a first
/// sample, timestamp 0).
pub fn encode_one(out: &mut Vec<u8>, h: &FloatHistogram) {
    encode_sample(out, None, 0, h);
}

/// Decodes what [`encode_one`] wrote from the front of `p`.
pub fn decode_one(p: &mut &[u8]) -> Option<FloatHistogram> {
    decode_sample(p, None).map(|(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: usize, float: bool) -> FloatHistogram {
        let step = if float { 0.5 } else { 1.0 };
        let grow = i as f64 * step;
        FloatHistogram {
            counter_reset_hint: if i == 0 {
                CounterResetHint::Unknown
            } else {
                CounterResetHint::NotReset
            },
            schema: if i < 130 { 3 } else { 2 },
            zero_threshold: 1e-128,
            zero_count: 2.0 + grow,
            count: 20.0 + 4.0 * grow,
            sum: 12.345 + i as f64 * 0.731,
            positive_spans: vec![
                Span {
                    offset: -2,
                    length: 2,
                },
                Span {
                    offset: 3,
                    length: 1,
                },
            ],
            negative_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            positive_buckets: vec![5.0 + grow, 6.0 + grow, 4.0],
            negative_buckets: vec![3.0 + grow],
            custom_values: Vec::new(),
        }
    }

    #[test]
    fn samples_round_trip_across_chunks_layouts_and_kinds() {
        for float in [false, true] {
            let mut chunks = HistogramChunks::new();
            let samples: Vec<(i64, FloatHistogram)> = (0..300)
                .map(|i| (1_000 + 15_000 * i as i64, h(i, float)))
                .collect();
            for (ts, h) in &samples {
                chunks.push(*ts, h.clone());
            }
            assert_eq!(chunks.len(), 300);
            let back = chunks.range(i64::MIN, i64::MAX);
            assert_eq!(back.len(), samples.len());
            for (got, want) in back.iter().zip(&samples) {
                assert_eq!(got.0, want.0);
                assert!(got.1.same(&want.1, true, |a, b| a.to_bits() == b.to_bits()));
                assert_eq!(got.1.counter_reset_hint, want.1.counter_reset_hint);
            }
            let cut = chunks.range(samples[10].0, samples[12].0);
            assert_eq!(cut.len(), 3);
            // As a block persists them: a range encoded afresh decodes to the same.
            let persisted = chunks.encode_range(samples[5].0, samples[250].0);
            assert_eq!(persisted.len(), 3);
            let decoded: Vec<(i64, FloatHistogram)> = persisted
                .iter()
                .flat_map(|c| decode(&c.bytes, c.count))
                .collect();
            assert_eq!(decoded, chunks.range(samples[5].0, samples[250].0));
            assert_eq!(
                (persisted[0].min_t, persisted[2].max_t),
                (samples[5].0, samples[250].0)
            );
            chunks.drop_before(samples[200].0);
            assert_eq!(chunks.first_ts(), Some(samples[200].0));
            assert_eq!(chunks.range(i64::MIN, i64::MAX), samples[200..].to_vec());
            // Appends go on against the newest sample.
            chunks.push(samples[299].0 + 1, h(300, float));
            assert_eq!(chunks.len(), 101);
            assert_eq!(
                chunks.range(samples[299].0 + 1, i64::MAX)[0].1,
                h(300, float)
            );
        }
    }

    #[test]
    fn steady_integer_histograms_are_compact() {
        let mut chunks = HistogramChunks::new();
        for i in 0..120 {
            chunks.push(15_000 * i, h(i as usize, false));
        }
        assert!(
            chunks.encoded_bytes() < 120 * 24,
            "{}",
            chunks.encoded_bytes()
        );
    }
}
