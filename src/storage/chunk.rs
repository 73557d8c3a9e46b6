//! Compressed sample chunks: the head's per-series storage.
//!
//! Contract: [`SeriesChunks`] holds one series' samples in timestamp order in chunks of
//! at most [`SAMPLES_PER_CHUNK`] samples, each a bit stream in the Gorilla encoding
//! (Pelkonen et al., VLDB 2015): timestamps as delta-of-deltas in variable-width
//! buckets, values as the XOR with the previous value's bits. Values round-trip
//! bit-exactly (NaNs, including Prometheus's stale marker, keep their payload).
//! Appending is O(1); reading decodes only the chunks that overlap the asked range.
//!
//! Stream layout of a chunk: first timestamp (64 bits), first value (64 bits); then per
//! sample a timestamp delta-of-delta (`0`; `10`+14 bits; `110`+17; `1110`+20;
//! `1111`+64, two's complement; the first delta is taken against a delta of 0) and a
//! value XOR (`0` same bits; `10` + the meaningful bits inside the previous
//! leading/trailing-zero window; `11` + 5 bits leading zeros + 6 bits meaningful
//! length (0 means 64) + the meaningful bits).
//!
//! Hand-written: the Rust Gorilla crates on crates.io (`tsz` and its forks) are
//! unmaintained, use second-resolution `u64` timestamps and cannot decode a chunk
//! that is still being appended to without copying it, which the head needs for
//! every query of recent data.

/// Samples per chunk before a new one is started (Prometheus uses 120 too).
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// Bits appended MSB-first to a byte buffer: [`OpenChunk::buf`], [`OpenChunk::len`]
/// and [`OpenChunk::used`] (in the chunk rather than in a struct of their own, whose
/// padding would take 8 more bytes per series).
impl OpenChunk {
    /// The stream written so far.
    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Room for `more` bytes. The stream grows by half (at least 16 bytes), not by
    /// doubling: an open chunk is held by every series, and a doubled buffer holds up
    /// to half its size unused (about 1 kB of a full chunk's 2 kB of capacity on
    /// values that change every scrape); each growth is a copy, so not by less either
    /// (a quarter cost about a tenth of the ingest CPU on the compare bench). A chunk
    /// after the first is allocated at the size of the one before it
    /// ([`OpenChunk::new`]), so it rarely grows at all.
    fn reserve(&mut self, more: usize) {
        let len = usize::from(self.len);
        if self.buf.len() - len < more {
            let mut grown = std::mem::take(&mut self.buf).into_vec();
            grown.reserve_exact((len / 2).max(16).max(more));
            grown.resize(grown.capacity(), 0);
            self.buf = grown.into_boxed_slice();
        }
    }

    /// Appends `bytes` (room reserved).
    fn append(&mut self, bytes: &[u8]) {
        let len = usize::from(self.len);
        self.buf[len..len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u16;
    }

    /// The last byte written, to fill its free bits.
    fn last_byte(&mut self) -> &mut u8 {
        &mut self.buf[usize::from(self.len) - 1]
    }

    fn write_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.reserve(1);
            self.append(&[0]);
        }
        if bit {
            *self.last_byte() |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Writes the low `n` (at most 64) bits of `value`, most significant first: the
    /// last byte's free bits, then the rest as whole bytes in one copy (not bit groups
    /// of at most a byte with a push each). The head's chunk append was the largest
    /// item of the compare bench's ingest profile (12% of promflow's CPU at 100k series
    /// every 5s, values changing on every scrape; `perf record`), most of it here.
    fn write_bits(&mut self, value: u64, mut n: u8) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let low = |v: u64, n: u8| if n >= 64 { v } else { v & ((1u64 << n) - 1) };
        if self.used != 0 {
            let free = 8 - self.used;
            let take = free.min(n);
            let chunk = low(value >> (n - take), take) as u8;
            *self.last_byte() |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            n -= take;
            if n == 0 {
                return;
            }
        }
        // Byte aligned: the `n` bits left, at the top of a big-endian word.
        let word = (low(value, n) << (64 - u32::from(n))).to_be_bytes();
        let (full, rest) = (usize::from(n / 8), n % 8);
        let bytes = &word[..full + usize::from(rest > 0)];
        self.reserve(bytes.len());
        self.append(bytes);
        self.used = rest;
    }

    /// Writes `prefix` (`prefix_bits` wide) then the low `n` bits of `value`: in one
    /// call when both fit in 64 bits, as they do for all but the widest values.
    fn write_prefixed(&mut self, prefix: u64, prefix_bits: u8, value: u64, n: u8) {
        debug_assert!(prefix_bits > 0);
        if prefix_bits + n <= 64 {
            // So `n` < 64.
            self.write_bits(prefix << n | value & ((1u64 << n) - 1), prefix_bits + n);
        } else {
            self.write_bits(prefix, prefix_bits);
            self.write_bits(value, n);
        }
    }
}

/// Reads bits MSB-first.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    /// The next `n` (at most 64) bits, most significant first; `None` if fewer are left.
    fn read_bits(&mut self, n: u8) -> Option<u64> {
        if n > 32 {
            let high = self.read_bits(n - 32)?;
            return Some(high << 32 | self.read_bits(32)?);
        }
        if n == 0 {
            return Some(0);
        }
        let end = self.pos + usize::from(n);
        if end > self.bytes.len() * 8 {
            return None;
        }
        // One big-endian load of the (up to 8) bytes the bits start in: at most 7 bits
        // of offset plus 32 bits fit in it. (Byte by byte showed in decoding profiles.)
        let first = self.pos / 8;
        let mut word = [0u8; 8];
        let have = (self.bytes.len() - first).min(8);
        word[..have].copy_from_slice(&self.bytes[first..first + have]);
        let word = u64::from_be_bytes(word) << (self.pos % 8);
        self.pos = end;
        Some(word >> (64 - n))
    }
}

/// Sign-extends the low `bits` bits of `v`.
fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn fits(v: i64, bits: u8) -> bool {
    let limit = 1i64 << (bits - 1);
    (-limit..limit).contains(&v)
}

/// Encoder state of the chunk being appended to. Every series of the head holds one:
/// 48 bytes (no field for the first timestamp, which the stream starts with, the bit
/// writer's fields inline, the stream a boxed buffer and a `u16` length rather than a
/// `Vec`) keep a head series at 120 bytes, 128 with malloc's rounding, instead of 136
/// and 144.
#[derive(Clone, Debug)]
struct OpenChunk {
    /// The stream's buffer: the stream is its first `len` bytes, the rest zeros.
    buf: Box<[u8]>,
    /// Bytes of the stream (a full chunk takes at most 120 × 19 + 16).
    len: u16,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
    count: u16,
    last_t: i64,
    last_delta: i64,
    last_value: u64,
    leading: u8,
    trailing: u8,
}

/// The stream's first allocation when there is no chunk before it to size it by: 64
/// bytes with malloc's header, about 7 samples of values that change every scrape
/// before it first grows. (Prometheus's 128 cost about 70 bytes more per series on the
/// compare bench, measured a minute after the start, when most streams are shorter.)
const FIRST_CAPACITY: usize = 56;

/// The least a later chunk's stream is allocated at: its first sample (16 bytes) and
/// room for a few more.
const LEAST_CAPACITY: usize = 24;

impl OpenChunk {
    /// A chunk starting with sample `(t, v)`, its stream allocated for `capacity`
    /// bytes (at least [`LEAST_CAPACITY`]).
    fn new(t: i64, v: f64, capacity: usize) -> OpenChunk {
        let mut open = OpenChunk {
            buf: vec![0; capacity.max(LEAST_CAPACITY)].into_boxed_slice(),
            len: 0,
            used: 0,
            count: 1,
            last_t: t,
            last_delta: 0,
            last_value: v.to_bits(),
            leading: u8::MAX,
            trailing: 0,
        };
        open.write_bits(t as u64, 64);
        open.write_bits(v.to_bits(), 64);
        open
    }

    /// The first timestamp: the stream's first 64 bits.
    fn min_t(&self) -> i64 {
        let first: [u8; 8] = self.bytes()[..8]
            .try_into()
            .expect("a chunk starts with its first timestamp");
        i64::from_be_bytes(first)
    }

    fn push(&mut self, t: i64, v: f64) {
        let delta = t.wrapping_sub(self.last_t);
        let dod = delta.wrapping_sub(self.last_delta);
        if dod == 0 {
            self.write_bit(false);
        } else if fits(dod, 14) {
            self.write_prefixed(0b10, 2, dod as u64, 14);
        } else if fits(dod, 17) {
            self.write_prefixed(0b110, 3, dod as u64, 17);
        } else if fits(dod, 20) {
            self.write_prefixed(0b1110, 4, dod as u64, 20);
        } else {
            self.write_prefixed(0b1111, 4, dod as u64, 64);
        }
        let bits = v.to_bits();
        let xor = bits ^ self.last_value;
        if xor == 0 {
            self.write_bit(false);
        } else {
            let leading = (xor.leading_zeros() as u8).min(31);
            let trailing = xor.trailing_zeros() as u8;
            if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
                let sig = 64 - self.leading - self.trailing;
                self.write_prefixed(0b10, 2, xor >> self.trailing, sig);
            } else {
                let sig = 64 - leading - trailing;
                let header = 0b11 << 11 | u64::from(leading) << 6 | u64::from(sig % 64);
                self.write_prefixed(header, 13, xor >> trailing, sig);
                self.leading = leading;
                self.trailing = trailing;
            }
        }
        self.count += 1;
        self.last_t = t;
        self.last_delta = delta;
        self.last_value = bits;
    }
}

/// A full chunk: its bytes and time bounds only.
#[derive(Clone, Debug)]
struct ClosedChunk {
    bytes: Box<[u8]>,
    count: u16,
    min_t: i64,
    max_t: i64,
}

/// Decodes `count` samples from a chunk's bytes.
struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u16,
    started: bool,
    t: i64,
    delta: i64,
    value: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkIter<'a> {
    fn new(bytes: &'a [u8], count: u16) -> ChunkIter<'a> {
        ChunkIter {
            r: BitReader { bytes, pos: 0 },
            left: count,
            started: false,
            t: 0,
            delta: 0,
            value: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        if !self.started {
            self.started = true;
            self.t = self.r.read_bits(64)? as i64;
            self.value = self.r.read_bits(64)?;
            return Some((self.t, f64::from_bits(self.value)));
        }
        let r = &mut self.r;
        let mut prefix = 0;
        while prefix < 4 && r.read_bit()? {
            prefix += 1;
        }
        let dod = match prefix {
            0 => 0,
            1 => sign_extend(r.read_bits(14)?, 14),
            2 => sign_extend(r.read_bits(17)?, 17),
            3 => sign_extend(r.read_bits(20)?, 20),
            _ => r.read_bits(64)? as i64,
        };
        self.delta = self.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.delta);
        if r.read_bit()? {
            if r.read_bit()? {
                self.leading = r.read_bits(5)? as u8;
                let sig = r.read_bits(6)? as u8;
                let sig = if sig == 0 { 64 } else { sig };
                self.trailing = 64 - self.leading - sig;
            }
            let sig = 64 - self.leading - self.trailing;
            self.value ^= r.read_bits(sig)? << self.trailing;
        }
        Some((self.t, f64::from_bits(self.value)))
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let out = self.step();
        if out.is_none() {
            self.left = 0;
        }
        out
    }
}

/// A chunk as persisted in a block: its encoded bytes and what they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedChunk {
    /// The chunk's bit stream (see the module docs).
    pub bytes: Vec<u8>,
    /// Samples in it.
    pub count: u16,
    /// Its first timestamp.
    pub min_t: i64,
    /// Its last timestamp.
    pub max_t: i64,
}

impl EncodedChunk {
    /// Decodes the samples.
    pub fn samples(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        decode(&self.bytes, self.count)
    }
}

/// Decodes `count` samples from a chunk's bytes (fewer if the bytes end early).
pub fn decode(bytes: &[u8], count: u16) -> impl Iterator<Item = (i64, f64)> + '_ {
    ChunkIter::new(bytes, count)
}

/// One series' samples, compressed; see the module contract.
#[derive(Clone, Debug, Default)]
pub struct SeriesChunks {
    /// Boxed, not a `Vec` (8 bytes less per series; a chunk closes once in 120 samples).
    closed: Box<[ClosedChunk]>,
    open: Option<OpenChunk>,
}

impl SeriesChunks {
    /// No samples.
    pub fn new() -> SeriesChunks {
        SeriesChunks::default()
    }

    /// Appends a sample; the caller keeps timestamps increasing. Returns the bytes the
    /// encoded samples grew by (what [`SeriesChunks::encoded_bytes`] counts).
    pub fn push(&mut self, t: i64, v: f64) -> usize {
        match &mut self.open {
            Some(open) if open.count < SAMPLES_PER_CHUNK => {
                let before = open.len;
                open.push(t, v);
                usize::from(open.len - before)
            }
            _ => {
                // The next chunk is allocated at about the size the last one took.
                let expect = match (&self.open, self.closed.last()) {
                    (Some(open), _) => usize::from(open.len) * 17 / 16,
                    (None, Some(closed)) => closed.bytes.len() * 17 / 16,
                    (None, None) => FIRST_CAPACITY,
                };
                self.close_open();
                let open = OpenChunk::new(t, v, expect);
                let bytes = usize::from(open.len);
                self.open = Some(open);
                bytes
            }
        }
    }

    fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            let (min_t, count, max_t) = (open.min_t(), open.count, open.last_t);
            let mut bytes = open.buf.into_vec();
            bytes.truncate(usize::from(open.len));
            let mut closed = std::mem::take(&mut self.closed).into_vec();
            closed.push(ClosedChunk {
                bytes: bytes.into_boxed_slice(),
                count,
                min_t,
                max_t,
            });
            self.closed = closed.into_boxed_slice();
        }
    }

    /// Every chunk as `(bytes, count, min_t, max_t)`, oldest first.
    fn chunks(&self) -> impl Iterator<Item = (&[u8], u16, i64, i64)> {
        self.closed
            .iter()
            .map(|c| (&c.bytes[..], c.count, c.min_t, c.max_t))
            .chain(
                self.open
                    .iter()
                    .map(|o| (o.bytes(), o.count, o.min_t(), o.last_t)),
            )
    }

    /// The newest timestamp, in O(1): every append (and every replayed sample) asks.
    pub fn last_ts(&self) -> Option<i64> {
        // Not `chunks().last()`, which walks every closed chunk.
        match &self.open {
            Some(open) => Some(open.last_t),
            None => self.closed.last().map(|c| c.max_t),
        }
    }

    /// The newest sample, in O(1) while a chunk is open (an append at the newest
    /// timestamp asks, to tell an exact duplicate from a different value).
    pub fn last(&self) -> Option<(i64, f64)> {
        match &self.open {
            Some(open) => Some((open.last_t, f64::from_bits(open.last_value))),
            None => self
                .closed
                .last()
                .and_then(|c| decode(&c.bytes, c.count).last()),
        }
    }

    /// The oldest timestamp.
    pub fn first_ts(&self) -> Option<i64> {
        self.chunks().next().map(|c| c.2)
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.chunks().map(|c| usize::from(c.1)).sum()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.closed.is_empty()
    }

    /// The samples with timestamps in `[start, end]`, in order.
    pub fn range(&self, start: i64, end: i64) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.chunks()
            .filter(move |c| c.3 >= start && c.2 <= end)
            .flat_map(|(bytes, count, _, _)| ChunkIter::new(bytes, count))
            .filter(move |&(t, _)| t >= start && t <= end)
    }

    /// Whether some sample lies in `[start, end]`.
    pub fn has_sample_in(&self, start: i64, end: i64) -> bool {
        self.range(start, end).next().is_some()
    }

    /// Drops samples older than `cutoff`; the chunk that straddles it is re-encoded.
    pub fn drop_before(&mut self, cutoff: i64) {
        let mut closed = std::mem::take(&mut self.closed).into_vec();
        closed.retain(|c| c.max_t >= cutoff);
        self.closed = closed.into_boxed_slice();
        if self.open.as_ref().is_some_and(|o| o.last_t < cutoff) {
            self.open = None;
        }
        let straddles = self.chunks().next().is_some_and(|c| c.2 < cutoff);
        if !straddles {
            return;
        }
        if let Some(first) = self.closed.first() {
            let kept: Vec<(i64, f64)> = ChunkIter::new(&first.bytes, first.count)
                .filter(|&(t, _)| t >= cutoff)
                .collect();
            let mut rebuilt = SeriesChunks::new();
            for (t, v) in kept {
                rebuilt.push(t, v);
            }
            rebuilt.close_open();
            let mut closed = std::mem::take(&mut self.closed).into_vec();
            closed.splice(0..1, rebuilt.closed);
            self.closed = closed.into_boxed_slice();
        } else if let Some(open) = &self.open {
            let kept: Vec<(i64, f64)> = ChunkIter::new(open.bytes(), open.count)
                .filter(|&(t, _)| t >= cutoff)
                .collect();
            self.open = None;
            for (t, v) in kept {
                self.push(t, v);
            }
        }
    }

    /// Deletes the samples in `[min_t, max_t]`; returns how many there were. Chunks
    /// that hold some are re-encoded (a rare, admin-driven operation).
    pub fn delete_range(&mut self, min_t: i64, max_t: i64) -> usize {
        let doomed = self.range(min_t, max_t).count();
        if doomed > 0 {
            let kept: Vec<(i64, f64)> = self
                .range(i64::MIN, i64::MAX)
                .filter(|&(t, _)| t < min_t || t > max_t)
                .collect();
            *self = SeriesChunks::new();
            for (t, v) in kept {
                self.push(t, v);
            }
        }
        doomed
    }

    /// The samples in `[start, end]`, encoded afresh into full chunks (for a block).
    pub fn encode_range(&self, start: i64, end: i64) -> Vec<EncodedChunk> {
        encode(self.range(start, end))
    }

    /// Heap bytes of the encoded samples (excluding bookkeeping).
    pub fn encoded_bytes(&self) -> usize {
        self.chunks().map(|c| c.0.len()).sum()
    }
}

/// Samples (in time order) encoded into full chunks.
pub fn encode(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<EncodedChunk> {
    let mut fresh = SeriesChunks::new();
    for (t, v) in samples {
        fresh.push(t, v);
    }
    fresh.close_open();
    fresh
        .closed
        .into_vec()
        .into_iter()
        .map(|c| EncodedChunk {
            bytes: c.bytes.into_vec(),
            count: c.count,
            min_t: c.min_t,
            max_t: c.max_t,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit `i` of `bytes`, most significant first: what every read must agree with.
    fn bit(bytes: &[u8], i: usize) -> u64 {
        u64::from(bytes[i / 8] >> (7 - i % 8) & 1)
    }

    #[test]
    fn reads_of_any_width_at_any_offset_are_the_bits_in_order() {
        let bytes: Vec<u8> = (0..23u32).map(|i| (i * 97 + 31) as u8 ^ 0x5a).collect();
        let total = bytes.len() * 8;
        for start in 0..total {
            for n in 0..=64u8 {
                let mut r = BitReader {
                    bytes: &bytes,
                    pos: start,
                };
                let got = r.read_bits(n);
                if start + usize::from(n) > total {
                    assert_eq!(got, None, "start {start} n {n}");
                    continue;
                }
                let want =
                    (start..start + usize::from(n)).fold(0, |acc, i| acc << 1 | bit(&bytes, i));
                assert_eq!(got, Some(want), "start {start} n {n}");
                assert_eq!(r.pos, start + usize::from(n));
            }
        }
    }

    fn round_trip(samples: &[(i64, f64)]) {
        let mut c = SeriesChunks::new();
        for &(t, v) in samples {
            c.push(t, v);
        }
        let got: Vec<(i64, u64)> = c
            .range(i64::MIN, i64::MAX)
            .map(|(t, v)| (t, v.to_bits()))
            .collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert_eq!(c.len(), samples.len());
    }

    /// An open chunk's stream holds at most half (or 16 bytes, or the first allocation)
    /// more than it uses, or about the size of the chunk before it.
    #[test]
    fn open_streams_hold_little_unused() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut c = SeriesChunks::new();
        for i in 0..1000 {
            c.push(i * 15_000, rng.f64() * 1e6);
            let open = c.open.as_ref().unwrap();
            let (len, cap) = (usize::from(open.len), open.buf.len());
            let before = c.closed.last().map_or(0, |c| c.bytes.len() * 17 / 16);
            let first = if c.closed.is_empty() {
                FIRST_CAPACITY
            } else {
                0
            };
            let bound = (len + (len / 2).max(16))
                .max(first)
                .max(LEAST_CAPACITY)
                .max(before);
            assert!(cap <= bound + 8, "{len} bytes in {cap} after {i} samples");
        }
    }

    /// Bits written in runs of any width, at any offset, are those written one by one.
    #[test]
    fn runs_of_bits_are_the_bits_one_by_one() {
        let mut rng = fastrand::Rng::with_seed(3);
        let (mut runs, mut singly) = (OpenChunk::new(0, 0.0, 0), OpenChunk::new(0, 0.0, 0));
        for _ in 0..2000 {
            let (value, n) = (rng.u64(..), rng.u8(0..=64));
            if rng.bool() {
                runs.write_bits(value, n);
            } else {
                let (prefix, prefix_bits) = (rng.u64(..), rng.u8(1..=4));
                let prefix = prefix & ((1 << prefix_bits) - 1);
                runs.write_prefixed(prefix, prefix_bits, value, n);
                for i in (0..prefix_bits).rev() {
                    singly.write_bit(prefix >> i & 1 == 1);
                }
            }
            for i in (0..n).rev() {
                singly.write_bit(value >> i & 1 == 1);
            }
            assert_eq!((runs.bytes(), runs.used), (singly.bytes(), singly.used));
        }
    }

    #[test]
    fn random_series_round_trip_bit_exactly() {
        let mut rng = fastrand::Rng::with_seed(7);
        for case in 0..300 {
            let n = rng.usize(0..500);
            let mut t = rng.i64(-1 << 40..1 << 42);
            let mut v = rng.f64() * 1000.0;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                t += match case % 4 {
                    0 => 15_000,
                    1 => 15_000 + rng.i64(-50..50),
                    2 => rng.i64(1..1 << 30),
                    _ => rng.i64(1..i64::MAX >> 24),
                };
                v = match rng.u8(0..8) {
                    0 => f64::from_bits(rng.u64(..)),
                    1 => dataflows::STALE_MARKER,
                    2 => f64::NAN,
                    3 => v,
                    4 => v + 1.0,
                    5 => rng.f64() * 1e300,
                    6 => -0.0,
                    _ => (v + rng.f64()).round(),
                };
                samples.push((t, v));
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn range_and_truncation() {
        let mut c = SeriesChunks::new();
        for i in 0..1000 {
            c.push(i * 10, i as f64);
        }
        let got: Vec<i64> = c.range(95, 130).map(|p| p.0).collect();
        assert_eq!(got, vec![100, 110, 120, 130]);
        c.drop_before(1505);
        assert_eq!(c.first_ts(), Some(1510));
        assert_eq!(c.len(), 1000 - 151);
        assert_eq!(c.last_ts(), Some(9990));
        c.drop_before(9985);
        assert_eq!(
            c.range(i64::MIN, i64::MAX).collect::<Vec<_>>(),
            vec![(9990, 999.0)]
        );
        c.drop_before(10_000);
        assert!(c.is_empty());
    }

    /// Bytes per sample for typical scrape data; printed with `--nocapture`.
    #[test]
    fn bytes_per_sample() {
        let n = 120 * 100;
        let mut rng = fastrand::Rng::with_seed(1);
        type Values = Box<dyn Fn(i64, &mut fastrand::Rng) -> f64>;
        let cases: [(&str, Values, f64); 4] = [
            ("constant", Box::new(|_, _| 1.0), 2.1),
            (
                "counter +1..100/scrape",
                Box::new(|i, _| (i * 37 % 100 + i * 50) as f64),
                4.0,
            ),
            (
                "gauge, 2 decimals",
                Box::new(|_, r| (r.f64() * 10_000.0).round() / 100.0),
                10.0,
            ),
            ("random f64", Box::new(|_, r| r.f64()), 9.5),
        ];
        for (name, value, bound) in cases {
            let mut c = SeriesChunks::new();
            let mut t = 1_700_000_000_000i64;
            for i in 0..n {
                t += 15_000 + rng.i64(-3..3);
                c.push(t, value(i, &mut rng));
            }
            let bps = c.encoded_bytes() as f64 / n as f64;
            eprintln!("{name}: {bps:.3} bytes/sample");
            assert!(bps <= bound, "{name}: {bps} bytes/sample > {bound}");
        }
    }
}
