//! Fuzzes `scrape::exposition` with arbitrary bodies in all three formats (text,
//! OpenMetrics, protobuf). Beyond "no panic", it checks that a text format's error
//! names a line inside the body (or the one just after it, for a missing `# EOF`),
//! that a protobuf error names none (line 0), and that `parse_each` sees exactly the samples
//! `parse` returns, and that `parse_with` with a sink that knows the series texts
//! of a first pass (the scrape cache's fast path) gets the same outcome and samples.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz exposition`
#![no_main]

use libfuzzer_sys::fuzz_target;

use exposition::{Format, SampleRef, SampleSink};
use promflow::scrape::exposition;
use std::collections::HashSet;

/// Remembers the series texts given with labels and takes them by text afterwards.
#[derive(Default)]
struct Remembering {
    seen: HashSet<Vec<u8>>,
    got: Vec<(Vec<u8>, u64, Option<i64>)>,
}

impl SampleSink for Remembering {
    const KNOWS_SERIES: bool = true;

    fn known(&mut self, series: &[u8], value: f64, timestamp_ms: Option<i64>) -> bool {
        let known = self.seen.contains(series);
        if known {
            self.got
                .push((series.to_vec(), value.to_bits(), timestamp_ms));
        }
        known
    }

    fn sample(&mut self, sample: SampleRef<'_>) {
        self.seen.insert(sample.series.to_vec());
        self.got.push((
            sample.series.to_vec(),
            sample.value.to_bits(),
            sample.timestamp_ms,
        ));
    }
}

fuzz_target!(|body: &[u8]| {
    let line_count = body.split(|&b| b == b'\n').count();
    for format in [Format::PrometheusText, Format::OpenMetrics, Format::Protobuf] {
        let parsed = exposition::parse(body, format);
        let mut streamed = Vec::new();
        let mut texts = Vec::new();
        let streamed_result = exposition::parse_each(body, format, |sample| {
            texts.push((
                sample.series.to_vec(),
                sample.value.to_bits(),
                sample.timestamp_ms,
            ));
            streamed.push(sample.to_owned())
        });
        let mut sink = Remembering::default();
        let _ = exposition::parse_with(body, format, &mut sink);
        sink.got.clear();
        let again = exposition::parse_with(body, format, &mut sink);
        assert_eq!(again, streamed_result);
        assert_eq!(sink.got, texts);
        match parsed {
            Ok(exposition) => {
                assert_eq!(streamed_result.as_ref().ok(), Some(&exposition.metadata));
                assert_eq!(samples_bits(&streamed), samples_bits(&exposition.samples));
            }
            Err(err) => {
                if format == Format::Protobuf {
                    assert_eq!(err.line, 0, "{err}");
                } else {
                    assert!(err.line >= 1 && err.line <= line_count + 1, "{err}");
                }
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
