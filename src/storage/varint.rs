//! Variable-length integers as the WAL and the histogram chunks write them: Go's
//! `encoding/binary` uvarints (7 bits a byte, low first) and zigzag varints.
//!
//! Contract: `get_*` read what `put_*` wrote and advance the slice past it; `None` on
//! a truncated or over-long value.

/// Appends `v` as a uvarint.
pub(super) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a uvarint.
pub(super) fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a uvarint.
pub(super) fn get_uvarint(p: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = p.split_first()?;
        *p = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Reads a zigzag varint.
pub(super) fn get_varint(p: &mut &[u8]) -> Option<i64> {
    let u = get_uvarint(p)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}
