//! Fuzzes the OTLP receiver (`POST /api/v1/otlp/v1/metrics`): the first byte picks the
//! encoding (odd: JSON, even: protobuf), the rest is the body, decoded
//! (`promflow::remote::otlp_proto::decode_request`) and translated to samples
//! (`promflow::remote::otlp::translate`) with the default `otlp:` settings and with
//! every resource attribute promoted. Checks only that nothing panics, aborts, or runs
//! (or allocates) without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promflow::config::OtlpConfig;
use promflow::remote::{otlp, otlp_proto};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let Ok(request) = otlp_proto::decode_request(body, mode & 1 == 1) else {
        return;
    };
    let _ = otlp::translate(&request, &OtlpConfig::default(), 300_000);
    let all = OtlpConfig {
        promote_all_resource_attributes: true,
        ..OtlpConfig::default()
    };
    let _ = otlp::translate(&request, &all, 300_000);
});
