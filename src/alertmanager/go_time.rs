//! Go's `time` package as notification templates see it: `time.Time` values
//! (`.StartsAt`, `.EndsAt`) and their methods `Format` (Go layout strings such as
//! `"2006-01-02 15:04:05"`), `Unix`, `UnixNano`, `UTC`, `Local`, `IsZero` and `Sub`,
//! and `time.Duration.String()` (`1h2m3.5s`).
//!
//! Times in template data are text in Go's `time.Time.String()` form
//! (`2024-01-01 00:20:00.5 +0000 UTC`, always UTC; Go's zero time is year 1), which
//! is what `{{ .StartsAt }}` prints (`crate::alertmanager::alert::format_time_go_string`);
//! [`GoTime::parse`] reads that text back for the methods. Contract: every Go layout element is handled; zones print as UTC
//! (`MST` → `UTC`, `-0700` → `+0000`, `Z07:00` → `Z`), as every alert time is UTC.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// A UTC time down to the nanosecond, including Go's zero time (year 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoTime(NaiveDateTime);

impl GoTime {
    /// Nanoseconds since the Unix epoch; `None` is Go's zero time.
    pub fn from_nanos(t: Option<i64>) -> GoTime {
        let zero = NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        GoTime(
            t.and_then(|t| {
                chrono::DateTime::from_timestamp(
                    t.div_euclid(1_000_000_000),
                    t.rem_euclid(1_000_000_000) as u32,
                )
            })
            .map_or(zero, |dt| dt.naive_utc()),
        )
    }

    /// Reads Go's `time.Time.String()` text (`2024-01-01 00:20:00.5 +0000 UTC`).
    pub fn parse(text: &str) -> Option<GoTime> {
        let stamp = text.strip_suffix(" +0000 UTC")?;
        NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(GoTime)
    }

    /// Seconds since the epoch (`Unix`).
    pub fn unix(self) -> i64 {
        self.0.and_utc().timestamp()
    }

    /// Nanoseconds since the epoch (`UnixNano`), saturating like Go's for times
    /// outside ±292 years.
    pub fn unix_nano(self) -> i64 {
        self.nanos_i128().clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    fn nanos_i128(self) -> i128 {
        self.unix() as i128 * 1_000_000_000 + self.0.nanosecond() as i128
    }

    /// Whether this is Go's zero time.
    pub fn is_zero(self) -> bool {
        self == GoTime::from_nanos(None)
    }

    /// `self - other` in nanoseconds, saturating like Go's `Time.Sub`.
    pub fn nanos_since(self, other: GoTime) -> i64 {
        (self.nanos_i128() - other.nanos_i128()).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Go's `Time.Format(layout)`.
    pub fn format(self, layout: &str) -> String {
        let t = self.0;
        let mut out = String::new();
        let mut rest = layout;
        while !rest.is_empty() {
            let Some((prefix, element, after)) = next_element(rest) else {
                out.push_str(rest);
                break;
            };
            out.push_str(prefix);
            rest = after;
            let hour12 = match t.hour() % 12 {
                0 => 12,
                h => h,
            };
            match element {
                Element::LongMonth => out.push_str(&t.format("%B").to_string()),
                Element::Month => out.push_str(&t.format("%b").to_string()),
                Element::NumMonth => out.push_str(&t.month().to_string()),
                Element::ZeroMonth => out.push_str(&format!("{:02}", t.month())),
                Element::LongWeekDay => out.push_str(&t.format("%A").to_string()),
                Element::WeekDay => out.push_str(&t.format("%a").to_string()),
                Element::Day => out.push_str(&t.day().to_string()),
                Element::UnderDay => out.push_str(&format!("{:>2}", t.day())),
                Element::ZeroDay => out.push_str(&format!("{:02}", t.day())),
                Element::UnderYearDay => out.push_str(&format!("{:>3}", t.ordinal())),
                Element::ZeroYearDay => out.push_str(&format!("{:03}", t.ordinal())),
                Element::Hour => out.push_str(&format!("{:02}", t.hour())),
                Element::Hour12 => out.push_str(&hour12.to_string()),
                Element::ZeroHour12 => out.push_str(&format!("{hour12:02}")),
                Element::Minute => out.push_str(&t.minute().to_string()),
                Element::ZeroMinute => out.push_str(&format!("{:02}", t.minute())),
                Element::Second => out.push_str(&t.second().to_string()),
                Element::ZeroSecond => out.push_str(&format!("{:02}", t.second())),
                Element::LongYear => out.push_str(&format!("{:04}", t.year())),
                Element::Year => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
                Element::PM => out.push_str(if t.hour() >= 12 { "PM" } else { "AM" }),
                Element::Pm => out.push_str(if t.hour() >= 12 { "pm" } else { "am" }),
                Element::TzName => out.push_str("UTC"),
                Element::NumTz(text) => out.push_str(text),
                Element::IsoTz => out.push('Z'),
                Element::Fraction {
                    separator,
                    digits,
                    trim,
                } => {
                    let frac = format!("{:09}", t.nanosecond());
                    let mut frac = frac[..digits].to_string();
                    if trim {
                        frac = frac.trim_end_matches('0').to_string();
                    }
                    if !frac.is_empty() {
                        out.push(separator);
                        out.push_str(&frac);
                    }
                }
            }
        }
        out
    }
}

/// One element of a Go layout (Go's `std*` constants).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Element {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TzName,
    /// A numeric zone, printed as UTC's offset in that element's shape.
    NumTz(&'static str),
    /// `Z07:00` and friends: `Z` for UTC.
    IsoTz,
    Fraction {
        separator: char,
        digits: usize,
        trim: bool,
    },
}

/// Go's `nextStdChunk`: the text before the next layout element, the element, and
/// what follows it.
fn next_element(layout: &str) -> Option<(&str, Element, &str)> {
    use Element::*;
    const WORDS: [(&str, Element); 24] = [
        ("January", LongMonth),
        ("Jan", Month),
        ("Monday", LongWeekDay),
        ("Mon", WeekDay),
        ("MST", TzName),
        ("2006", LongYear),
        ("002", ZeroYearDay),
        ("01", ZeroMonth),
        ("02", ZeroDay),
        ("03", ZeroHour12),
        ("04", ZeroMinute),
        ("05", ZeroSecond),
        ("06", Year),
        ("15", Hour),
        ("__2", UnderYearDay),
        ("_2", UnderDay),
        ("PM", PM),
        ("pm", Pm),
        ("-07:00:00", NumTz("+00:00:00")),
        ("-070000", NumTz("+000000")),
        ("-07:00", NumTz("+00:00")),
        ("-0700", NumTz("+0000")),
        ("-07", NumTz("+00")),
        ("1", NumMonth),
    ];
    const MORE: [(&str, Element); 10] = [
        ("Z07:00:00", IsoTz),
        ("Z070000", IsoTz),
        ("Z07:00", IsoTz),
        ("Z0700", IsoTz),
        ("Z07", IsoTz),
        ("2", Day),
        ("3", Hour12),
        ("4", Minute),
        ("5", Second),
        ("_2006", LongYear),
    ];
    let bytes = layout.as_bytes();
    for i in 0..bytes.len() {
        let rest = &layout[i..];
        if !layout.is_char_boundary(i) {
            continue;
        }
        // `Jan` / `Mon` must not be followed by a lower-case letter to count
        // (Go: "Janet" is literal); `_2006` is `_` then the year.
        if let Some(after) = rest.strip_prefix("_2006") {
            return Some((&layout[..i + 1], LongYear, after));
        }
        if let Some(fraction) = fraction_at(layout, i) {
            return Some(fraction);
        }
        for (word, element) in WORDS.iter().chain(MORE.iter()) {
            if *word == "_2006" || !rest.starts_with(word) {
                continue;
            }
            if matches!(element, Month | WeekDay)
                && rest[word.len()..].starts_with(|c: char| c.is_ascii_lowercase())
            {
                continue;
            }
            return Some((&layout[..i], *element, &rest[word.len()..]));
        }
    }
    None
}

/// `.000` / `,999…` right after a digit-free position: fractional seconds (Go
/// takes the run only when no digit follows it).
fn fraction_at(layout: &str, i: usize) -> Option<(&str, Element, &str)> {
    let bytes = layout.as_bytes();
    let separator = bytes[i];
    if separator != b'.' && separator != b',' {
        return None;
    }
    let digit = *bytes.get(i + 1)?;
    if digit != b'0' && digit != b'9' {
        return None;
    }
    let mut j = i + 1;
    while j < bytes.len() && bytes[j] == digit {
        j += 1;
    }
    if bytes.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let digits = (j - i - 1).min(9);
    Some((
        &layout[..i],
        Element::Fraction {
            separator: separator as char,
            digits,
            trim: digit == b'9',
        },
        &layout[j..],
    ))
}

/// Go's `time.Duration.String()` for nanoseconds: `1h0m0s`, `1m30s`, `1.5s`,
/// `250ms`, `1.5µs`, `10ns`, `0s`.
pub fn duration_string(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    let decimal = |value: u64, scale: u32| {
        let unit = 10u64.pow(scale);
        let frac = format!("{:0width$}", value % unit, width = scale as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}", value / unit)
        } else {
            format!("{}.{frac}", value / unit)
        }
    };
    if u < 1_000_000_000 {
        return if u < 1_000 {
            format!("{sign}{u}ns")
        } else if u < 1_000_000 {
            format!("{sign}{}µs", decimal(u, 3))
        } else {
            format!("{sign}{}ms", decimal(u, 6))
        };
    }
    let seconds = decimal(u % 60_000_000_000, 9);
    let total_minutes = u / 60_000_000_000;
    let (hours, minutes) = (total_minutes / 60, total_minutes % 60);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        // Go: time.Duration(x).String().
        for (nanos, want) in [
            (0, "0s"),
            (10, "10ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_430_500_000_000, "1h30m30.5s"),
            (-61_000_000_000, "-1m1s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(duration_string(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn layouts_format_like_go() {
        // 2024-03-05 14:07:09.120 UTC, a Tuesday; expected strings are Go's Format.
        let t = GoTime::from_nanos(Some(1_709_647_629_120_000_000));
        for (layout, want) in [
            ("2006-01-02 15:04:05", "2024-03-05 14:07:09"),
            ("2006-01-02T15:04:05Z07:00", "2024-03-05T14:07:09Z"),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Tue Mar  5 14:07:09 UTC 2024",
            ),
            ("02 Jan 06 15:04 -0700", "05 Mar 24 14:07 +0000"),
            (
                "Monday, January 2, 2006 3:04PM",
                "Tuesday, March 5, 2024 2:07PM",
            ),
            ("15:04:05.000", "14:07:09.120"),
            ("15:04:05.999", "14:07:09.12"),
            (
                "2006-01-02 15:04:05.999999999 -0700 MST",
                "2024-03-05 14:07:09.12 +0000 UTC",
            ),
            ("Janet 002 pm", "Janet 065 pm"),
        ] {
            assert_eq!(t.format(layout), want, "{layout}");
        }
        assert_eq!(t.unix(), 1_709_647_629);
        let text =
            crate::alertmanager::alert::format_time_go_string(Some(1_709_647_629_120_000_000));
        assert_eq!(GoTime::parse(&text), Some(t), "{text}");
        let zero = GoTime::from_nanos(None);
        assert!(zero.is_zero());
        assert_eq!(zero.unix(), -62_135_596_800);
        assert_eq!(zero.format("2006-01-02 15:04:05"), "0001-01-01 00:00:00");
        assert_eq!(t.nanos_since(zero), i64::MAX);
    }
}
