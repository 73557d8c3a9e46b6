//! Quoting scalars in `/api/v1/status/config` as Go's yaml.v2 (Prometheus 2.42's
//! marshaller) does, on the text serde's emitter wrote.
//!
//! yaml.v2 double-quotes a string that its YAML 1.1 resolver would read as something
//! else: `""`, `"1"`, `"y"`, `"on"`, `"1:20"` (a base 60 float), `"2001-12-14"`.
//! serde's emitter single-quotes the strings *it* would read as something else
//! (`''`, `'1'`, `'true'`), and leaves YAML 1.1's extra forms (`y`, `no`, `on`,
//! `1:20`) plain. Both emitters single-quote the strings that plain style cannot
//! hold (`'-'`, `'{job="x"}'`); those are left alone.

/// `yaml` (serde's block-style output) with each such scalar double-quoted, as a
/// key or a value of a `key: value` line or a `- value` item. Literal and folded
/// blocks are copied as they are.
pub(crate) fn quote_like_go(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    // The indentation a block scalar's lines are deeper than, while inside one.
    let mut block_indent: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(block) = block_indent {
            if indent > block || line.trim().is_empty() {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block_indent = None;
        }
        let (converted, opens_block) = convert_line(line);
        if opens_block {
            block_indent = Some(indent);
        }
        out.push_str(&converted);
        out.push('\n');
    }
    out
}

/// One line with its key and value quoted as Go would; whether a block scalar starts.
fn convert_line(line: &str) -> (String, bool) {
    let mut rest = line.trim_start();
    let mut out = line[..line.len() - rest.len()].to_string();
    while let Some(after) = rest.strip_prefix("- ") {
        out.push_str("- ");
        rest = after;
    }
    if rest == "-" {
        out.push('-');
        return (out, false);
    }
    let (key, value) = split_key(rest);
    if let Some(key) = key {
        out.push_str(&convert_scalar(key));
        out.push(':');
        match value {
            Some(value) => {
                out.push(' ');
                out.push_str(&convert_scalar(value));
                (out, is_block_indicator(value))
            }
            None => (out, false),
        }
    } else {
        out.push_str(&convert_scalar(rest));
        (out, is_block_indicator(rest))
    }
}

/// `key: value`, `key:` or a lone scalar (`(None, None)` is never returned for a
/// mapping line; a lone scalar comes back as `(None, _)`).
fn split_key(text: &str) -> (Option<&str>, Option<&str>) {
    let key_end = if text.starts_with('\'') {
        match single_quoted_end(text) {
            Some(end) => end,
            None => return (None, None),
        }
    } else if text.starts_with(['"', '[', '{', '|', '>', '&', '*', '!']) {
        return (None, None);
    } else {
        match text
            .find(": ")
            .or_else(|| text.ends_with(':').then(|| text.len() - 1))
        {
            Some(end) => end,
            None => return (None, None),
        }
    };
    let after = &text[key_end..];
    if after == ":" {
        (Some(&text[..key_end]), None)
    } else if let Some(value) = after.strip_prefix(": ") {
        (Some(&text[..key_end]), Some(value))
    } else {
        (None, None)
    }
}

/// The byte just after a single-quoted scalar opening `text`.
fn single_quoted_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn is_block_indicator(value: &str) -> bool {
    value.starts_with(['|', '>'])
}

/// A scalar as yaml.v2 writes the same string: double-quoted when YAML 1.1 would
/// resolve it to another type, otherwise as serde wrote it.
fn convert_scalar(scalar: &str) -> String {
    if scalar.len() >= 2
        && scalar.starts_with('\'')
        && single_quoted_end(scalar) == Some(scalar.len())
    {
        let text = scalar[1..scalar.len() - 1].replace("''", "'");
        if resolves_to_non_string(&text) {
            return double_quoted(&text);
        }
        return scalar.to_string();
    }
    // A plain scalar serde would have quoted came from a number or a bool; one it
    // left plain that YAML 1.1 reads as another type is a string yaml.v2 quotes.
    if !scalar.starts_with(['"', '[', '{', '|', '>', '&', '*', '!'])
        && !serde_reads_as_non_string(scalar)
        && resolves_to_non_string(scalar)
    {
        return double_quoted(scalar);
    }
    scalar.to_string()
}

fn double_quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whether serde_yaml_ng reads the plain scalar as null, a bool or a number (and so
/// quotes such a string when it writes one).
fn serde_reads_as_non_string(s: &str) -> bool {
    matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
    ) || (!s.contains('_') && (is_yaml_int(s) || is_yaml_float(s)))
        || matches!(
            s.trim_start_matches(['+', '-']),
            ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"
        )
}

/// Whether yaml.v2's resolver (YAML 1.1) reads the plain scalar `s` as anything but a
/// string, or its encoder quotes it anyway (base 60 floats).
fn resolves_to_non_string(s: &str) -> bool {
    matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "y"
            | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
            | ".inf"
            | ".Inf"
            | ".INF"
            | "+.inf"
            | "+.Inf"
            | "+.INF"
            | "-.inf"
            | "-.Inf"
            | "-.INF"
            | ".nan"
            | ".NaN"
            | ".NAN"
            | "<<"
    ) || (s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
        && (is_yaml_int(s) || is_yaml_float(s) || is_base60_float(s) || is_timestamp(s)))
}

/// An integer as yaml.v2 reads one: `_` removed, then Go's `strconv.ParseInt(s, 0,
/// 64)` (or `ParseUint`): a sign, then decimal, `0x`, `0o`, `0b` or leading-`0`
/// octal digits (range aside).
fn is_yaml_int(s: &str) -> bool {
    let s: String = s.chars().filter(|&c| c != '_').collect();
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(&s);
    let prefixed = |p: &[char]| unsigned.strip_prefix('0').and_then(|r| r.strip_prefix(p));
    let (digits, radix) = if let Some(d) = prefixed(&['x', 'X']) {
        (d, 16)
    } else if let Some(d) = prefixed(&['o', 'O']) {
        (d, 8)
    } else if let Some(d) = prefixed(&['b', 'B']) {
        (d, 2)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (&unsigned[1..], 8)
    } else {
        (unsigned, 10)
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

/// yaml.v2's float syntax (`_` removed first): `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(s: &str) -> bool {
    let s: String = s.chars().filter(|&c| c != '_').collect();
    let s = s.strip_prefix(['+', '-']).unwrap_or(&s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// yaml.v2's base 60 float: `[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?`.
fn is_base60_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (body, fraction) = match s.split_once('.') {
        Some((body, fraction)) => (body, Some(fraction)),
        None => (s, None),
    };
    let mut parts = body.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| c.is_ascii_digit())
        && head.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let sixties: Vec<&str> = parts.collect();
    let sixties_ok = !sixties.is_empty()
        && sixties.iter().all(|p| {
            let b = p.as_bytes();
            match b {
                [d] => d.is_ascii_digit(),
                [t, d] => (b'0'..=b'5').contains(t) && d.is_ascii_digit(),
                _ => false,
            }
        });
    let fraction_ok = fraction.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
    head_ok && sixties_ok && fraction_ok
}

/// A date yaml.v2 reads as a timestamp: `YYYY-M-D`, optionally followed by a time
/// (`T`, `t` or spaces, then `H:MM:SS`...); approximated by its date part and a
/// time part of digits, `:`, `.`, `Z`, `+` and `-`.
fn is_timestamp(s: &str) -> bool {
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim_start())),
        None => (s, None),
    };
    let fields: Vec<&str> = date.split('-').collect();
    let date_ok = fields.len() == 3
        && fields[0].len() == 4
        && (1..=2).contains(&fields[1].len())
        && (1..=2).contains(&fields[2].len())
        && fields.iter().all(|f| f.bytes().all(|b| b.is_ascii_digit()));
    let time_ok = time.is_none_or(|t| {
        t.contains(':')
            && t.starts_with(|c: char| c.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_digit() || b":.Z+- ".contains(&b))
    });
    date_ok && time_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus 2.42's /api/v1/status/config printed for these values
    /// (external labels, static_configs labels, relabel fields).
    #[test]
    fn quotes_as_prometheus_printed() {
        let serde = "  external_labels:\n    a: ''\n    b: x\n    c: '1'\n  target_label: y\n  separator: '-'\n  params:\n    match[]:\n    - '{job=\"x\"}'\n  labels:\n    z: '1'\n    on: off\n  port: 80\n  follow_redirects: true\n  - ''\n  x: |-\n    y\n    '1'\n  t: 1:20\n";
        let go = "  external_labels:\n    a: \"\"\n    b: x\n    c: \"1\"\n  target_label: \"y\"\n  separator: '-'\n  params:\n    match[]:\n    - '{job=\"x\"}'\n  labels:\n    z: \"1\"\n    \"on\": \"off\"\n  port: 80\n  follow_redirects: true\n  - \"\"\n  x: |-\n    y\n    '1'\n  t: \"1:20\"\n";
        assert_eq!(quote_like_go(serde), go);
    }

    #[test]
    fn yaml_1_1_resolution() {
        for s in [
            "1",
            "0x1F",
            "0o17",
            "017",
            "1.5",
            ".5",
            "1e3",
            "-1",
            "1:20",
            "2001-12-14",
            "Y",
            "off",
            "",
            "1_000",
            "09",
        ] {
            assert!(resolves_to_non_string(s), "{s:?}");
        }
        for s in [
            "1m",
            "x",
            "127.0.0.1:9",
            "localhost:9090",
            "1.2.3",
            "v1",
            "0x",
            "_1",
            "-",
            "a:b",
        ] {
            assert!(!resolves_to_non_string(s), "{s:?}");
        }
    }
}
