//! Fuzzes the remote read endpoint's decoding (`POST /api/v1/read`): Snappy and
//! protobuf (`promflow::remote::proto::decode`), each query's matchers as selectors
//! (`LabelMatcher::new`, regexes compiled) and the selection over a small fixed data
//! set. Checks only that nothing panics, aborts, or runs (or allocates) without bound.
#![no_main]

use dataflows::promql::eval::SeriesSource;
use dataflows::{LabelMatcher, Selector};
use libfuzzer_sys::fuzz_target;
use promflow::remote::proto::{self, ReadRequest};

mod common;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = proto::decode::<ReadRequest>(body) else {
        return;
    };
    for query in &request.queries {
        let mut matchers = Vec::new();
        for m in &query.matchers {
            let op = match m.r#type {
                0 => "=",
                1 => "!=",
                2 => "=~",
                3 => "!~",
                _ => return,
            };
            let Ok(matcher) = LabelMatcher::new(&m.name, op, &m.value) else {
                return;
            };
            matchers.push(matcher);
        }
        let selector = Selector { matchers };
        let _ =
            common::data_set().select(&selector, query.start_timestamp_ms, query.end_timestamp_ms);
    }
});
