//! Exposition parser throughput, in isolation: no HTTP, no decompression, no
//! ingestion. Each case parses one in-memory body again and again and reports
//! samples/s and MB/s for:
//!
//! - `promflow parse`: `exposition::parse`, which builds an owned `Exposition`
//!   (a `String` per name and label);
//! - `promflow parse_each`: `exposition::parse_each`, which lends each sample to a
//!   callback without allocating per sample;
//! - `promflow parse_with known`: `exposition::parse_with` with a sink that knows
//!   every series text already (the scrape cache's steady state: labels are not
//!   read), looked up in a hash set;
//! - `prometheus-parse`: the `prometheus-parse` crate (text format only), fed the
//!   body's lines as its API requires.
//!
//! Bodies: `benches/data/node_exporter.prom`, a real node_exporter 1.5 response
//! captured once from a small container (about 500 series), and a generated
//! node_exporter-like body of a large host (64 CPUs, many disks, interfaces and
//! interrupts; about 6,000 series) in both the text format and OpenMetrics.
//!
//! Run with `cargo bench --bench exposition` (release profile). Set
//! `EXPOSITION_BENCH_SECONDS` to change the time spent per case (default 1).

use std::fmt::Write as _;
use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use promflow::scrape::exposition::{self, Format};

const REAL_NODE_EXPORTER: &[u8] = include_bytes!("data/node_exporter.prom");

fn main() {
    let seconds: f64 = std::env::var("EXPOSITION_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(seconds);
    let large_text = node_exporter_like(Format::PrometheusText);
    let large_om = node_exporter_like(Format::OpenMetrics);

    println!(
        "{:<34} {:<22} {:>8} {:>12} {:>14} {:>9}",
        "body", "parser", "samples", "µs/body", "samples/s", "MB/s"
    );
    for (body_name, body, format) in [
        (
            "node_exporter.prom (real)",
            REAL_NODE_EXPORTER,
            Format::PrometheusText,
        ),
        (
            "node_exporter-like text",
            large_text.as_bytes(),
            Format::PrometheusText,
        ),
        (
            "node_exporter-like OpenMetrics",
            large_om.as_bytes(),
            Format::OpenMetrics,
        ),
    ] {
        let samples = exposition::parse(body, format)
            .expect("benchmark body must parse")
            .samples
            .len();
        let run = |parser: &str, parse_once: &mut dyn FnMut() -> usize| {
            let per_body = measure(budget, parse_once);
            let secs = per_body.as_secs_f64();
            println!(
                "{:<34} {:<22} {:>8} {:>12.1} {:>14.0} {:>9.1}",
                body_name,
                parser,
                samples,
                secs * 1e6,
                samples as f64 / secs,
                body.len() as f64 / secs / 1e6
            );
        };
        run("promflow parse", &mut || {
            exposition::parse(black_box(body), format)
                .map(|e| e.samples.len())
                .unwrap_or(0)
        });
        run("promflow parse_each", &mut || {
            let mut count = 0;
            let _ = exposition::parse_each(black_box(body), format, |sample| {
                black_box(&sample);
                count += 1;
            });
            count
        });
        let mut known = KnownSeries::default();
        exposition::parse_each(body, format, |s| {
            known.0.insert(s.series.to_vec());
        })
        .expect("benchmark body must parse");
        run("promflow parse_with known", &mut || {
            known.1 = 0;
            let _ = exposition::parse_with(black_box(body), format, &mut known);
            known.1
        });
        if format == Format::PrometheusText {
            run("prometheus-parse", &mut || {
                let text = std::str::from_utf8(black_box(body)).unwrap_or_default();
                let lines = text.lines().map(|line| Ok::<_, io::Error>(line.to_owned()));
                prometheus_parse::Scrape::parse(lines)
                    .map(|s| s.samples.len())
                    .unwrap_or(0)
            });
        }
    }
}

/// A sink that knows the series texts in its set and counts the samples it takes.
#[derive(Default)]
struct KnownSeries(std::collections::HashSet<Vec<u8>>, usize);

impl exposition::SampleSink for KnownSeries {
    const KNOWS_SERIES: bool = true;

    fn known(&mut self, series: &[u8], value: f64, _timestamp_ms: Option<i64>) -> bool {
        black_box(value);
        let known = self.0.contains(series);
        self.1 += usize::from(known);
        known
    }

    fn sample(&mut self, sample: exposition::SampleRef<'_>) {
        black_box(&sample);
        self.1 += 1;
    }
}

/// Runs `parse_once` repeatedly for about `budget` after a warm-up, in batches,
/// and returns the median time per call over the batches.
fn measure(budget: Duration, parse_once: &mut dyn FnMut() -> usize) -> Duration {
    const BATCHES: u32 = 11;
    let warm_up = Instant::now();
    let mut calls = 0u32;
    while warm_up.elapsed() < budget / 10 || calls < 3 {
        black_box(parse_once());
        calls += 1;
    }
    let per_call = warm_up.elapsed() / calls;
    let per_batch = ((budget / BATCHES).as_secs_f64() / per_call.as_secs_f64()).max(1.0) as u32;
    let mut times: Vec<Duration> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                black_box(parse_once());
            }
            start.elapsed() / per_batch
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Writes a node_exporter-style body for a big host, with HELP/TYPE lines, label
/// sets of one to four labels, integer, fractional, exponent and NaN values, a
/// summary and a histogram.
fn node_exporter_like(format: Format) -> String {
    let mut out = String::with_capacity(1 << 20);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut value = |kind: u64| -> String {
        let r = next();
        match (r % 7, kind) {
            (_, 0) => format!("{}", r % 100_000),
            (0, _) => format!("{:e}", (r % 10_000_000_000) as f64 * 1.7),
            (1, _) => "0".to_string(),
            (2, _) if r % 97 == 0 => "NaN".to_string(),
            _ => format!("{}", (r % 100_000_000) as f64 / 100.0),
        }
    };
    let open_metrics = format == Format::OpenMetrics;
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        // OpenMetrics names a counter family without its `_total` suffix.
        let family = match (open_metrics, kind) {
            (true, "counter") => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {kind}");
    };

    family(
        &mut out,
        "go_gc_duration_seconds",
        "summary",
        "A summary of the pause duration of garbage collection cycles.",
    );
    for q in ["0", "0.25", "0.5", "0.75", "1"] {
        let _ = writeln!(
            out,
            "go_gc_duration_seconds{{quantile=\"{q}\"}} {}",
            value(1)
        );
    }
    let _ = writeln!(
        out,
        "go_gc_duration_seconds_sum {}\ngo_gc_duration_seconds_count {}",
        value(1),
        value(0)
    );
    for g in [
        "go_goroutines",
        "go_threads",
        "go_memstats_alloc_bytes",
        "go_memstats_heap_inuse_bytes",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        family(
            &mut out,
            g,
            "gauge",
            "Number of things that exist right now.",
        );
        let _ = writeln!(out, "{g} {}", value(1));
    }
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    family(
        &mut out,
        "node_cpu_seconds_total",
        "counter",
        "Seconds the CPUs spent in each mode.",
    );
    for cpu in 0..64 {
        for mode in modes {
            let _ = writeln!(
                out,
                "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}",
                value(1)
            );
        }
    }
    family(
        &mut out,
        "node_cpu_scaling_frequency_hertz",
        "gauge",
        "Current scaled CPU thread frequency in hertz.",
    );
    for cpu in 0..64 {
        let _ = writeln!(
            out,
            "node_cpu_scaling_frequency_hertz{{cpu=\"{cpu}\"}} {}",
            value(0)
        );
    }
    let disk_metrics = [
        "reads_completed_total",
        "reads_merged_total",
        "read_bytes_total",
        "read_time_seconds_total",
        "writes_completed_total",
        "writes_merged_total",
        "written_bytes_total",
        "write_time_seconds_total",
        "io_now",
        "io_time_seconds_total",
        "io_time_weighted_seconds_total",
        "discards_completed_total",
        "discards_merged_total",
        "discarded_sectors_total",
        "discard_time_seconds_total",
        "flush_requests_total",
        "flush_requests_time_seconds_total",
    ];
    for metric in disk_metrics {
        let name = format!("node_disk_{metric}");
        let kind = if metric.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        family(
            &mut out,
            &name,
            kind,
            "The total number of disk things, as read from /proc/diskstats.",
        );
        for disk in 0..16 {
            let _ = writeln!(
                out,
                "{name}{{device=\"nvme{}n{}\"}} {}",
                disk / 4,
                disk % 4,
                value(1)
            );
        }
    }
    for metric in [
        "avail_bytes",
        "device_error",
        "files",
        "files_free",
        "free_bytes",
        "readonly",
        "size_bytes",
    ] {
        let name = format!("node_filesystem_{metric}");
        family(
            &mut out,
            &name,
            "gauge",
            "Filesystem space or inodes, or an error flag.",
        );
        for fs in 0..40 {
            let _ = writeln!(out, "{name}{{device=\"/dev/mapper/vg0-lv{fs}\",fstype=\"ext4\",mountpoint=\"/srv/volume/{fs}\"}} {}", value(1));
        }
    }
    let net_metrics = [
        "receive_bytes_total",
        "receive_compressed_total",
        "receive_drop_total",
        "receive_errs_total",
        "receive_fifo_total",
        "receive_frame_total",
        "receive_multicast_total",
        "receive_packets_total",
        "transmit_bytes_total",
        "transmit_carrier_total",
        "transmit_colls_total",
        "transmit_compressed_total",
        "transmit_drop_total",
        "transmit_errs_total",
        "transmit_fifo_total",
        "transmit_packets_total",
        "mtu_bytes",
        "speed_bytes",
        "up",
        "carrier",
        "carrier_changes_total",
        "flags",
        "iface_id",
        "iface_link",
        "iface_link_mode",
        "net_dev_group",
        "protocol_type",
        "transmit_queue_length",
        "address_assign_type",
        "dormant",
    ];
    for metric in net_metrics {
        let name = format!("node_network_{metric}");
        let kind = if metric.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        family(
            &mut out,
            &name,
            kind,
            "Network device statistic, from /proc/net/dev or /sys/class/net.",
        );
        for dev in 0..50 {
            let _ = writeln!(
                out,
                "{name}{{device=\"veth{:08x}\"}} {}",
                dev * 2654435761u32,
                value(1)
            );
        }
    }
    family(
        &mut out,
        "node_interrupts_total",
        "counter",
        "Interrupt details.",
    );
    for cpu in 0..64 {
        for irq in 0..40 {
            let _ = writeln!(out, "node_interrupts_total{{cpu=\"{cpu}\",devices=\"nvme0q{irq}\",info=\"PCI-MSI-edge\",type=\"{}\"}} {}", 120 + irq, value(0));
        }
    }
    family(
        &mut out,
        "http_request_duration_seconds",
        "histogram",
        "Latency of HTTP requests.",
    );
    for handler in [
        "/metrics",
        "/api/v1/query",
        "/api/v1/query_range",
        "/federate",
    ] {
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ] {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{handler=\"{handler}\",le=\"{le}\"}} {}",
                value(0)
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{handler=\"{handler}\"}} {}",
            value(1)
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{handler=\"{handler}\"}} {}",
            value(0)
        );
    }
    family(
        &mut out,
        "node_scrape_collector_success",
        "gauge",
        "node_exporter: Whether a collector succeeded.",
    );
    for collector in 0..40 {
        let _ = writeln!(
            out,
            "node_scrape_collector_success{{collector=\"collector_{collector}\"}} 1"
        );
    }
    if open_metrics {
        out.push_str("# EOF\n");
    }
    out
}
