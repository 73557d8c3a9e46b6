//! The series value notation of test scripts (`0+10x10`, `_x3`, `stale`, `{{…}}`),
//! numbers (`0x1f`, `Inf`, `1m` as seconds) and durations (`1h30m`).
//!
//! Contract: expansion follows FORMAT.md §3.1 exactly; `A+BxK` accumulates by
//! repeated addition like upstream, so loaded floats are bit-identical.

use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::sample::STALE_MARKER;

use super::error::NotationError;

/// One point of a series description.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// A float sample (may be the stale marker).
    Float(f64),
    /// A native histogram (`{{…}}`).
    Histogram {
        /// The histogram.
        h: Box<FloatHistogram>,
        /// Whether the description named a `counter_reset_hint` (an expectation then
        /// checks it).
        hint_set: bool,
    },
}

/// Parses a Prometheus duration (`1h30m`, `500ms`, `0`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, NotationError> {
    if s == "0" {
        return Ok(0);
    }
    let bad = || NotationError::BadDuration(s.to_string());
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(bad()),
        };
        // Out of range (`777777777777w`, found by fuzzing) is an error, not an overflow.
        total = n
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses a number as the script lexer does: integer (with `0x` base prefix), float,
/// `Inf`/`NaN` (any case, signed), or a duration taken as seconds.
pub fn parse_number(s: &str) -> Result<f64, NotationError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).map(|v| v as f64).ok()
    } else if body.eq_ignore_ascii_case("inf") {
        Some(f64::INFINITY)
    } else if body.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        body.parse::<f64>()
            .ok()
            .or_else(|| parse_duration_ms(body).ok().map(|ms| ms as f64 / 1000.0))
    } else {
        None
    };
    let v = v.ok_or_else(|| NotationError::BadNumber(s.to_string()))?;
    Ok(if neg { -v } else { v })
}

/// Expands a value list into points; `None` is a missing point (`_`).
pub fn parse_values(text: &str) -> Result<Vec<Option<Point>>, NotationError> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // Histogram item, possibly `{{…}}xK` or `{{H}}+{{D}}xK`.
            let (item, after) = histogram_item(rest)?;
            expand_histograms(item, &mut out)?;
            rest = after.trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        expand_item(&rest[..end], &mut out)?;
        rest = rest[end..].trim_start();
    }
    Ok(out)
}

/// Splits the histogram item at the start of `s` from what follows.
fn histogram_item(s: &str) -> Result<(&str, &str), NotationError> {
    let mut i = 0;
    loop {
        let close = s[i..]
            .find("}}")
            .ok_or_else(|| NotationError::UnclosedHistogram(s.to_string()))?
            + i
            + 2;
        let after = &s[close..];
        if let Some(next) = after.strip_prefix('+').or_else(|| after.strip_prefix('-')) {
            if next.starts_with("{{") {
                i = close + 1;
                continue;
            }
        }
        let end = after
            .find(char::is_whitespace)
            .map(|e| close + e)
            .unwrap_or(s.len());
        return Ok((&s[..end], &s[end..]));
    }
}

/// Expands `{{H}}`, `{{H}}xK` (K+1 copies) and `{{H}}+{{D}}xK` / `{{H}}-{{D}}xK`
/// (H, then K times adding or subtracting D, like upstream's parser).
fn expand_histograms(item: &str, out: &mut Vec<Option<Point>>) -> Result<(), NotationError> {
    let (body, times) = match item.rfind("}}x") {
        Some(i) => (
            &item[..i + 2],
            Some(
                item[i + 3..]
                    .parse::<usize>()
                    .map_err(NotationError::BadRepeat)?,
            ),
        ),
        None => (item, None),
    };
    let (base, step) = match body.find("}}+{{").or_else(|| body.find("}}-{{")) {
        Some(i) => (&body[..i + 2], Some((&body[i + 2..i + 3], &body[i + 3..]))),
        None => (body, None),
    };
    let (base, base_hint) = parse_histogram(base)?;
    let Some(k) = times else {
        out.push(Some(Point::Histogram {
            h: Box::new(base),
            hint_set: base_hint,
        }));
        return Ok(());
    };
    let Some((sign, delta)) = step else {
        for _ in 0..=k {
            out.push(Some(Point::Histogram {
                h: Box::new(base.clone()),
                hint_set: base_hint,
            }));
        }
        return Ok(());
    };
    let (delta, hint_set) = parse_histogram(delta)?;
    let mut cur = base;
    for n in 0..=k {
        if n > 0 {
            if cur.schema > delta.schema {
                return Err(NotationError::SchemaMerge {
                    from: delta.schema,
                    to: cur.schema,
                });
            }
            let combined = if sign == "+" {
                cur.add(&delta)
            } else {
                cur.sub(&delta)
            };
            combined.map_err(NotationError::Combine)?;
        }
        out.push(Some(Point::Histogram {
            h: Box::new(cur.clone()),
            hint_set,
        }));
    }
    Ok(())
}

/// Parses one `{{key:value …}}` description, and whether it named a counter-reset hint.
pub fn parse_histogram(text: &str) -> Result<(FloatHistogram, bool), NotationError> {
    let inner = text
        .trim()
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .ok_or_else(|| NotationError::BadHistogram(text.to_string()))?;
    let mut h = FloatHistogram::default();
    let mut hint_set = false;
    let (mut pos, mut neg): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| NotationError::BadHistogramField(text.to_string()))?;
        let key = rest[..colon].trim();
        rest = rest[colon + 1..].trim_start();
        let value;
        if rest.starts_with('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| NotationError::UnclosedList(text.to_string()))?;
            value = &rest[..=close];
            rest = rest[close + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = &rest[..end];
            rest = rest[end..].trim_start();
        }
        let list = || -> Result<Vec<f64>, NotationError> {
            value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split_whitespace()
                .map(parse_number)
                .collect()
        };
        let int = || -> Result<i32, NotationError> {
            value.parse::<i32>().map_err(|_| NotationError::BadInteger {
                key: key.to_string(),
                value: value.to_string(),
            })
        };
        match key {
            "schema" => h.schema = int()?,
            "sum" => h.sum = parse_number(value)?,
            "count" => h.count = parse_number(value)?,
            "z_bucket" => h.zero_count = parse_number(value)?,
            "z_bucket_w" => h.zero_threshold = parse_number(value)?,
            "buckets" => pos = list()?,
            "n_buckets" => neg = list()?,
            "offset" => offset = int()?,
            "n_offset" => n_offset = int()?,
            "custom_values" => h.custom_values = list()?,
            "counter_reset_hint" => {
                hint_set = true;
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(NotationError::BadCounterResetHint(other.to_string())),
                };
            }
            other => return Err(NotationError::UnknownHistogramField(other.to_string())),
        }
    }
    let span = |offset: i32, n: usize| {
        (n > 0)
            .then_some(crate::histogram::Span {
                offset,
                length: n as u32,
            })
            .into_iter()
            .collect()
    };
    h.positive_spans = span(offset, pos.len());
    h.negative_spans = span(n_offset, neg.len());
    h.positive_buckets = pos;
    h.negative_buckets = neg;
    Ok((h, hint_set))
}

fn expand_item(item: &str, out: &mut Vec<Option<Point>>) -> Result<(), NotationError> {
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if item == "stale" {
        out.push(Some(Point::Float(STALE_MARKER)));
        return Ok(());
    }
    if let Some(k) = item.strip_prefix("_x") {
        let k: usize = k
            .parse()
            .map_err(|_| NotationError::BadItem(item.to_string()))?;
        out.extend(std::iter::repeat_n(None, k));
        return Ok(());
    }
    // `A`, `AxK`, `A+BxK`, `A-BxK`. The sign of A is part of A.
    let (body, times) = match item.rfind('x') {
        Some(i) if !item[..i].is_empty() && item[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            let k: usize = item[i + 1..]
                .parse()
                .map_err(|_| NotationError::BadItem(item.to_string()))?;
            (&item[..i], Some(k))
        }
        _ => (item, None),
    };
    let Some(k) = times else {
        out.push(Some(Point::Float(parse_number(item)?)));
        return Ok(());
    };
    // Find an operator after the first character that is not part of an exponent.
    let bytes = body.as_bytes();
    let mut split = None;
    for j in 1..bytes.len() {
        if (bytes[j] == b'+' || bytes[j] == b'-') && !matches!(bytes[j - 1], b'e' | b'E') {
            split = Some(j);
            break;
        }
    }
    let (start, step) = match split {
        Some(j) => {
            let step = parse_number(&body[j + 1..])?;
            let step = if bytes[j] == b'-' { -step } else { step };
            (parse_number(&body[..j])?, step)
        }
        None => (parse_number(body)?, 0.0),
    };
    let mut v = start;
    for n in 0..=k {
        if n > 0 {
            v += step;
        }
        out.push(Some(Point::Float(v)));
    }
    Ok(())
}
