//! Fuzzes `scrape::exposition` with arbitrary bodies in both formats. Beyond "no
//! panic", it checks that an error names a line inside the body (or the one just
//! after it, for a missing `# EOF`) and that `parse_each` sees exactly the samples
//! `parse` returns.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz exposition`
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../../src/scrape/exposition/mod.rs"]
mod exposition;

use exposition::Format;

fuzz_target!(|body: &[u8]| {
    let line_count = body.split(|&b| b == b'\n').count();
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let parsed = exposition::parse(body, format);
        let mut streamed = Vec::new();
        let streamed_result =
            exposition::parse_each(body, format, |sample| streamed.push(sample.to_owned()));
        match parsed {
            Ok(exposition) => {
                assert_eq!(streamed_result.as_ref().ok(), Some(&exposition.metadata));
                assert_eq!(samples_bits(&streamed), samples_bits(&exposition.samples));
            }
            Err(err) => {
                assert!(err.line >= 1 && err.line <= line_count + 1, "{err}");
                assert_eq!(streamed_result.err(), Some(err));
            }
        }
    }
});

/// Samples with values as bits, so NaN compares equal to itself.
fn samples_bits(
    samples: &[exposition::Sample],
) -> Vec<(&str, &[(String, String)], u64, Option<i64>)> {
    samples
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.labels.as_slice(),
                s.value.to_bits(),
                s.timestamp_ms,
            )
        })
        .collect()
}
