//! Byte sizes as Prometheus writes them (`body_size_limit: 10MB`).
//!
//! Owns the rules of `units.ParseBase2Bytes` (alecthomas/units), which Prometheus
//! uses for `body_size_limit`: an optional sign, then one or more
//! `<number><unit>` terms where the number may have a fraction and the unit is
//! one of `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`, `PB`/`PiB`,
//! `EB`/`EiB` — all powers of 1024, case-sensitive; a bare `0` is zero.

/// Unit names and their size in bytes. `KB` and `KiB` both mean 1024.
const UNITS: [(&str, &str, f64); 7] = [
    ("B", "B", 1.0),
    ("KB", "KiB", 1024.0),
    ("MB", "MiB", 1024.0 * 1024.0),
    ("GB", "GiB", 1024.0 * 1024.0 * 1024.0),
    ("TB", "TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("PB", "PiB", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
    (
        "EB",
        "EiB",
        1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
    ),
];

/// Why a text is not a byte size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The text is not in the size syntax.
    #[error("invalid size {0:?}")]
    Invalid(String),
    /// A term's unit is none of the known ones.
    #[error("unknown unit {unit:?} in {text:?}")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole size.
        text: String,
    },
    /// The size does not fit 64 bits.
    #[error("size {0:?} out of range")]
    OutOfRange(String),
}

/// Parses a Prometheus byte size into a signed byte count.
///
/// Prometheus accepts negative sizes (`-1MB`); for `body_size_limit` a value of
/// zero or below means "no limit", which the caller maps to 0.
pub fn parse_base2_bytes(text: &str) -> Result<i64, SizeError> {
    let invalid = || SizeError::Invalid(text.to_string());
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0f64;
    let mut remaining = rest;
    while !remaining.is_empty() {
        let number_len = remaining
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(remaining.len());
        let number = &remaining[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        remaining = &remaining[number_len..];
        let unit_len = remaining
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(remaining.len());
        let unit = &remaining[..unit_len];
        remaining = &remaining[unit_len..];
        let (_, _, factor) = UNITS
            .iter()
            .find(|(short, long, _)| *short == unit || *long == unit)
            .ok_or_else(|| SizeError::UnknownUnit {
                unit: unit.to_string(),
                text: text.to_string(),
            })?;
        total += value * factor;
    }
    if negative {
        total = -total;
    }
    if !(-(2f64.powi(63))..2f64.powi(63)).contains(&total) {
        return Err(SizeError::OutOfRange(text.to_string()));
    }
    Ok(total as i64)
}

/// Formats a byte count the way Prometheus prints a `Base2Bytes` (`1MiB512KiB`, `0B`).
pub fn format_base2_bytes(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    let mut parts = Vec::new();
    let mut rest = bytes;
    for (_, long, _) in UNITS {
        let digit = rest % 1024;
        if digit != 0 {
            let name = if long == "B" { "B" } else { long };
            parts.push(format!("{digit}{name}"));
        }
        rest /= 1024;
        if rest == 0 {
            break;
        }
    }
    parts.reverse();
    parts.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Accepted/rejected sets checked with `promtool check config` (Prometheus 2.42)
    // on `scrape_configs[0].body_size_limit`.
    #[test]
    fn parses_prometheus_units() {
        let kib: i64 = 1024;
        let cases = [
            ("0", 0),
            ("1B", 1),
            ("1KB", kib),
            ("1KiB", kib),
            ("10MB", 10 * kib * kib),
            ("1MiB", kib * kib),
            ("1MB512KB", kib * kib + 512 * kib),
            ("1.5MB", 3 * kib * kib / 2),
            ("1GiB", kib * kib * kib),
            ("1TB", kib.pow(4)),
            ("1PB", kib.pow(5)),
            ("1EiB", kib.pow(6)),
            ("-1MB", -(kib * kib)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_base2_bytes(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for text in [
            "1kb", "10mb", "1Kb", "1", " 1KB", "1ZB", "", "KB", "-", "1..5KB",
        ] {
            assert!(parse_base2_bytes(text).is_err(), "{text}");
        }
        // promtool 2.42 (Debian build) accepts 8EB and wraps around; current
        // alecthomas/units reports an overflow, which is what promflow does.
        assert!(parse_base2_bytes("8EB").is_err());
    }

    // Expected strings are what Prometheus 2.42 prints in /api/v1/status/config.
    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_base2_bytes(0), "0B");
        assert_eq!(format_base2_bytes(1536 * 1024), "1MiB512KiB");
        assert_eq!(format_base2_bytes(10 * 1024 * 1024), "10MiB");
        assert_eq!(format_base2_bytes(1025), "1KiB1B");
    }
}
