//! Fuzzes the remote write receiver's decoding (`POST /api/v1/write`): Snappy and
//! protobuf (`promflow::remote::proto::decode`), then each series' labels as the
//! handler builds them and its native histograms as the handler checks them
//! (`to_valid_float`: schema reduction, `Validate`), with the buckets of those it
//! would store. Checks only that nothing panics, aborts, or runs (or allocates)
//! without bound.
#![no_main]

use dataflows::Labels;
use libfuzzer_sys::fuzz_target;
use promflow::remote::proto::{self, WriteRequest};

fuzz_target!(|body: &[u8]| {
    let Ok(request) = proto::decode::<WriteRequest>(body) else {
        return;
    };
    for series in request.timeseries {
        let labels = Labels::from_pairs(
            series
                .labels
                .into_iter()
                .map(|l| (l.name, l.value))
                .collect(),
        );
        let _ = (labels.metric_name().is_empty(), labels.hash());
        for h in &series.histograms {
            if let Ok(h) = h.to_valid_float() {
                let _ = h.all_buckets();
            }
        }
    }
});
