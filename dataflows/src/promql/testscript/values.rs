//! The series value notation of test scripts (`0+10x10`, `_x3`, `stale`, `{{…}}`),
//! numbers (`0x1f`, `Inf`, `1m` as seconds) and durations (`1h30m`).
//!
//! Contract: expansion follows FORMAT.md §3.1 exactly; `A+BxK` accumulates by
//! repeated addition like upstream, so loaded floats are bit-identical.

use crate::sample::STALE_MARKER;

/// One point of a series description.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Point {
    /// A float sample (may be the stale marker).
    Float(f64),
    /// A native histogram: not supported, kept as a marker so evals can be skipped.
    Histogram,
}

/// Parses a Prometheus duration (`1h30m`, `500ms`, `0`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let bad = || format!("bad duration {s:?}");
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
pub fn parse_number(s: &str) -> Result<f64, String> {
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
    let v = v.ok_or_else(|| format!("bad number {s:?}"))?;
    Ok(if neg { -v } else { v })
}

/// Expands a value list into points; `None` is a missing point (`_`).
pub fn parse_values(text: &str) -> Result<Vec<Option<Point>>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // Histogram item, possibly `{{…}}xK` or `{{H}}+{{D}}xK`.
            let (item, after) = histogram_item(rest)?;
            let count = match item.rfind("}}x") {
                Some(i) => 1 + item[i + 3..].parse::<usize>().map_err(|e| e.to_string())?,
                None => 1,
            };
            out.extend(std::iter::repeat_n(Some(Point::Histogram), count));
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
fn histogram_item(s: &str) -> Result<(&str, &str), String> {
    let mut i = 0;
    loop {
        let close = s[i..]
            .find("}}")
            .ok_or_else(|| format!("unclosed histogram in {s:?}"))?
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

fn expand_item(item: &str, out: &mut Vec<Option<Point>>) -> Result<(), String> {
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if item == "stale" {
        out.push(Some(Point::Float(STALE_MARKER)));
        return Ok(());
    }
    if let Some(k) = item.strip_prefix("_x") {
        let k: usize = k.parse().map_err(|_| format!("bad item {item:?}"))?;
        out.extend(std::iter::repeat_n(None, k));
        return Ok(());
    }
    // `A`, `AxK`, `A+BxK`, `A-BxK`. The sign of A is part of A.
    let (body, times) = match item.rfind('x') {
        Some(i) if !item[..i].is_empty() && item[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            let k: usize = item[i + 1..]
                .parse()
                .map_err(|_| format!("bad item {item:?}"))?;
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
