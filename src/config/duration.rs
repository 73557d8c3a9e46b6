//! Prometheus durations: parsing and formatting the `1y1w1d1h1m1s1ms` syntax.
//!
//! Owns the exact rules of Prometheus's `model.ParseDuration` and
//! `model.Duration.String` (prometheus/common, as vendored by Prometheus 2.42):
//! units `y` (365d), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and in
//! that order, integer counts only, no sign, `"0"` alone allowed, and a total
//! that must fit Go's `time.Duration` (about 292 years).

use std::time::Duration;

/// Units in the only order Prometheus accepts them, with their length in ms.
const UNITS: [(&str, u128); 7] = [
    ("y", 1000 * 60 * 60 * 24 * 365),
    ("w", 1000 * 60 * 60 * 24 * 7),
    ("d", 1000 * 60 * 60 * 24),
    ("h", 1000 * 60 * 60),
    ("m", 1000 * 60),
    ("s", 1000),
    ("ms", 1),
];

/// Largest duration Prometheus accepts: `i64::MAX` nanoseconds (Go's `time.Duration`).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a text is not a Prometheus duration, in Prometheus's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is empty.
    #[error("empty duration string")]
    Empty,
    /// The text is not in the duration syntax.
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// The duration does not fit Go's `time.Duration`.
    #[error("duration out of range")]
    OutOfRange,
}

/// Parses a Prometheus duration such as `1h30m`, `90s`, `1y1w1d1h1m1s1ms` or `0`.
///
/// The error strings are Prometheus's own (`not a valid duration string: "1.5s"`,
/// `empty duration string`, `duration out of range`).
///
/// ```
/// # use promflow::config::parse_duration;
/// # use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("1.5s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let bytes = text.as_bytes();
    let mut pos = 0;
    // Index into UNITS of the next unit allowed: units must be strictly ordered.
    let mut next_unit = 0;
    let mut total_ms: u128 = 0;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let digits = &text[digits_start..pos];
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit = &text[unit_start..pos];
        if digits.is_empty() || unit.is_empty() {
            return Err(invalid());
        }
        let offset = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        let (_, unit_ms) = UNITS[next_unit + offset];
        next_unit += offset + 1;
        // More than 30 digits cannot fit in range anyway; avoids u128 overflow.
        let count: u128 = if digits.len() > 30 {
            return Err(DurationError::OutOfRange);
        } else {
            digits.parse().map_err(|_| invalid())?
        };
        total_ms += count * unit_ms;
        if total_ms * 1_000_000 > MAX_NANOS {
            return Err(DurationError::OutOfRange);
        }
    }
    Ok(Duration::from_millis(total_ms as u64))
}

/// Formats a duration the way Prometheus prints one (`model.Duration.String`).
///
/// Years and weeks are used only when they divide the duration exactly (90 days
/// prints as `90d`, not `12w6d`); zero prints as `0s`; sub-millisecond precision
/// is dropped.
///
/// ```
/// # use promflow::config::format_duration;
/// # use std::time::Duration;
/// assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
/// assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "1w");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, unit_ms) in UNITS {
        let exact_only = name == "y" || name == "w";
        if exact_only && !ms.is_multiple_of(unit_ms) {
            continue;
        }
        let count = ms / unit_ms;
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
            ms -= count * unit_ms;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    // Accepted/rejected sets checked with `promtool check config` (Prometheus 2.42)
    // on `global.evaluation_interval`.
    #[test]
    fn accepts_what_prometheus_accepts() {
        let day = 86_400_000;
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("1ms", 1),
            ("300ms", 300),
            ("01s", 1000),
            ("90m", 90 * 60_000),
            ("1h30m", 90 * 60_000),
            ("1h0m", 3_600_000),
            ("1h1s", 3_601_000),
            ("1d", day),
            ("1w", 7 * day),
            ("1y", 365 * day),
            (
                "1y1w1d1h1m1s1ms",
                365 * day + 7 * day + day + 3_600_000 + 60_000 + 1000 + 1,
            ),
            ("106751d", 106_751 * day),
            ("292y", 292 * 365 * day),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(ms(want)), "{text}");
        }
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for text in [
            "1s1y", "1.5s", "-1s", "1S", "1", "1m1m", " 1s", "1s ", "1us", "1ns", "s", "1h 1m",
            "ms1",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("not a valid duration string: {text:?}")
            );
        }
        assert_eq!(
            parse_duration("").unwrap_err().to_string(),
            "empty duration string"
        );
    }

    #[test]
    fn rejects_durations_beyond_go_time_duration() {
        for text in [
            "106752d",
            "293y",
            "9223372036854775807ms",
            "99999999999999999999999999999999999s",
        ] {
            assert_eq!(
                parse_duration(text).unwrap_err().to_string(),
                "duration out of range"
            );
        }
    }

    // Expected strings are what Prometheus 2.42 prints in /api/v1/status/config.
    #[test]
    fn formats_like_prometheus() {
        let day = 86_400_000;
        assert_eq!(format_duration(ms(0)), "0s");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(5_400_000)), "1h30m");
        assert_eq!(format_duration(ms(7 * day)), "1w");
        assert_eq!(format_duration(ms(90 * day)), "90d");
        assert_eq!(format_duration(ms(365 * day)), "1y");
        assert_eq!(format_duration(ms(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for n in [1, 999, 1000, 61_000, 3_600_001, 86_400_000 * 400 + 5] {
            assert_eq!(parse_duration(&format_duration(ms(n))), Ok(ms(n)));
        }
    }
}
