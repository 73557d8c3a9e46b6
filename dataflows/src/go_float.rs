//! Go's float formatting, the one place promflow spells a float as Prometheus does.
//!
//! Go's `strconv.FormatFloat(v, fmt, prec, 64)` in the forms Prometheus uses:
//! - [`format_g`]: `'g'`, shortest digits (`%v`; the text exposition format,
//!   templates' printing of floats): exponent form when the decimal exponent is below
//!   -4 or at least 6 (`1.234567e+06`, `1e-05`, `123456`);
//! - [`format_g_precision`]: `'g'` with `prec` significant digits (`%.4g`, the
//!   `humanize*` template functions), trailing zeros removed;
//! - [`format_e`]: `'e'`, shortest digits (`9.5e+01`, the rules API's alert values);
//! - [`GoFloat`] / [`format_f`]: `'f'`, shortest digits, never an exponent (scalar
//!   query results, label values written by PromQL functions);
//! - [`JsonSampleFloat`]: Prometheus's `jsonutil.MarshalFloat` for the points of
//!   vectors and matrices in the HTTP API: `'f'`, but `'e'` when the magnitude is below
//!   1e-6 or at least 1e21 (`1e-07`, `1e+21`), as JavaScript prints numbers.
//!
//! Special values are Prometheus's spellings: `NaN`, `+Inf`, `-Inf`; negative zero
//! is `-0`. Rust's `{:e}` gives the same shortest round-trip digits as Go; only the
//! layout differs (Go writes at least two exponent digits and its sign).

use std::fmt;

/// `NaN`, `+Inf` or `-Inf` for those values, else `None`.
pub(crate) fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// Rust's `{:e}` output (`1.5e-7`) split into mantissa and decimal exponent.
fn split_exponent(sci: &str) -> (&str, i32) {
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    (mantissa, exponent.parse().unwrap_or(0))
}

/// Go's exponent layout: `mantissa`, `e`, sign, at least two digits.
fn go_exponent(mantissa: &str, exponent: i32) -> String {
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

/// `strconv.FormatFloat(v, 'g', -1, 64)`.
pub fn format_g(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exponent) = split_exponent(&sci);
    if !(-4..6).contains(&exponent) {
        return go_exponent(mantissa, exponent);
    }
    // Plain decimal notation with the shortest digits.
    format!("{v}")
}

/// `strconv.FormatFloat(v, 'g', precision, 64)` (Go's `%.{precision}g`): exponent
/// form when the exponent is < -4 or >= precision, trailing zeros removed.
pub fn format_g_precision(v: f64, precision: usize) -> String {
    if let Some(s) = special(v) {
        return s.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.*e}", precision.saturating_sub(1), v);
    let (mantissa, exponent) = split_exponent(&sci);
    if exponent < -4 || exponent >= precision as i32 {
        go_exponent(trim_zeros(mantissa), exponent)
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `strconv.FormatFloat(v, 'e', -1, 64)`: `9.5e+01`.
pub fn format_e(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exponent) = split_exponent(&sci);
    go_exponent(mantissa, exponent)
}

/// `strconv.FormatFloat(v, 'f', -1, 64)`.
pub fn format_f(v: f64) -> String {
    GoFloat(v).to_string()
}

/// Displays a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)`: `NaN`, `+Inf`,
/// `-Inf`, else Rust's `{}`, which is the same shortest round-trip decimal without
/// exponent (`-0`, `0.1`, `1000000000000000000000`).
pub struct GoFloat(pub f64);

impl fmt::Display for GoFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match special(self.0) {
            Some(s) => f.write_str(s),
            None => fmt::Display::fmt(&self.0, f),
        }
    }
}

/// Displays a float as Prometheus's `jsonutil.MarshalFloat` writes a vector's or a
/// matrix's sample value: Go's `'f', -1`, or `'e', -1` when `v` is not zero and its
/// magnitude is below 1e-6 or at least 1e21.
pub struct JsonSampleFloat(pub f64);

impl fmt::Display for JsonSampleFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.0.abs();
        if abs.is_finite() && abs != 0.0 && !(1e-6..1e21).contains(&abs) {
            f.write_str(&format_e(self.0))
        } else {
            GoFloat(self.0).fmt(f)
        }
    }
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
            assert_eq!(format_g(v), want, "{v}");
        }
    }

    #[test]
    fn floats_like_go_strconv_f_shortest() {
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(0.1), "0.1");
        assert_eq!(format_f(-0.0), "-0");
        assert_eq!(format_f(f64::NAN), "NaN");
    }

    #[test]
    fn json_sample_values_like_prometheus() {
        // Expected strings are what Prometheus 2.42's /api/v1/query answers for
        // `vector(<v>)`.
        for (v, want) in [
            (1e-7, "1e-07"),
            (1e-6, "0.000001"),
            (9.9e-7, "9.9e-07"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (-1e-7, "-1e-07"),
            (-2e22, "-2e+22"),
            (1.5e-300, "1.5e-300"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(JsonSampleFloat(v).to_string(), want, "{v}");
        }
    }
}
