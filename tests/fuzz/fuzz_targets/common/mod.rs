//! What several fuzz targets share: the small fixed data set queries are evaluated
//! on (built once per process), in the notation of the PromQL test scripts.

use dataflows::promql::testscript::store::MemStorage;
use dataflows::promql::testscript::{parse_script, Command};

/// The series: metrics of `shared/promql-tests` (`http_requests`, `foo`), a classic
/// histogram, a counter with a reset, special values, a stale marker, a gap.
const DATA_SET: &str = r#"
load 1m
  http_requests{job="api-server", instance="0", group="production"} 0+10x10
  http_requests{job="api-server", instance="1", group="production"} 0+20x10
  http_requests{job="app-server", instance="0", group="canary"} 0+70x10
  foo{job="api-server", instance="0", region="europe"} 0+90x10
  foo{job="api-server"} 0+100x10
  counter{env="a"} 0 5 10 2 4 8 _ 10 stale 3 6
  specials{kind="x"} NaN Inf -Inf 0 -0 1e308 -1e308 5e-324 1 2 3
  request_duration_seconds_bucket{le="0.1"} 0+1x10
  request_duration_seconds_bucket{le="1"} 0+3x10
  request_duration_seconds_bucket{le="+Inf"} 0+4x10
  request_duration_seconds_sum 0+2x10
  request_duration_seconds_count 0+4x10
  up{job="api-server", instance="0"} 1 1 0 1 1 _ 1 1 1 0 1
  info_metric{job="api-server", instance="0", version="1.2"} 1x10
"#;

/// The data set, built on first use. Leaked: it lives as long as the fuzzing process.
pub fn data_set() -> &'static MemStorage {
    thread_local! {
        static STORE: &'static MemStorage = Box::leak(Box::new(build()));
    }
    STORE.with(|store| *store)
}

fn build() -> MemStorage {
    let mut store = MemStorage::default();
    for command in parse_script(DATA_SET).expect("the fixed data set parses") {
        if let Command::Load(load) = command {
            store.load(load);
        }
    }
    store
}
