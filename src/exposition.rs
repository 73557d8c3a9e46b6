//! Writing the text exposition format 0.0.4, byte for byte as Prometheus writes it.
//!
//! Floats are formatted like Go's `strconv.FormatFloat(v, 'g', -1, 64)` (what
//! Prometheus's `expfmt` uses): shortest round-trip digits, exponent form when the
//! decimal exponent is below -4 or at least 6. Label values escape `\`, `"` and newline.

use std::fmt::Write;

/// Formats `v` exactly as Go's `strconv.FormatFloat(v, 'g', -1, 64)`, with Prometheus's
/// spellings for the special values (`+Inf`, `-Inf`, `NaN`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as Go; only the layout
    // differs. Go's 'g' with shortest precision uses %e when exp < -4 || exp >= 6.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    // Plain decimal notation with the shortest digits.
    format!("{v}")
}

/// Appends `value` escaped for a label value in the text format.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a `# TYPE name kind` line.
pub fn write_type(out: &mut String, name: &str, kind: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends one sample line: `name{l="v",...} value [timestamp]`. Labels are written in
/// the order given.
pub fn write_sample<'a>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    value: f64,
    timestamp_ms: Option<i64>,
) {
    out.push_str(name);
    let mut first = true;
    for (label, label_value) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, label_value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(value));
    if let Some(ts) = timestamp_ms {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go_strconv_g_shortest() {
        // Expected strings are what Go 1.19's strconv.FormatFloat(v, 'g', -1, 64) prints.
        for (v, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (1234567.0, "1.234567e+06"),
            (123456.0, "123456"),
            (1e21, "1e+21"),
            (1e6, "1e+06"),
            (2826528.0, "2.826528e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(format_float(v), want, "{v}");
        }
    }

    #[test]
    fn sample_lines_escape_label_values() {
        let mut out = String::new();
        write_sample(&mut out, "m", [("a", "x\"y\\z\nw")], 1.0, Some(42));
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 1 42\n");
        let mut out = String::new();
        write_sample(&mut out, "m", [], 2.0, None);
        assert_eq!(out, "m 2\n");
    }
}
