//! Rules API latency and stream fan-out, promflow vs Prometheus, side by side.
//!
//! Workload: the `/metrics` body of a real node_exporter (captured once at start),
//! served by `RULES_API_TARGETS` controllable exporters on loopback (the test harness's
//! `common::exporter`), scraped every second.
//!
//! 1. **PUT → first output.** `RULES_API_ROUNDS` times: a new group with one recording
//!    rule (`sum by (mode) (node_cpu_seconds_total)`, interval 1s) is registered, and we
//!    time until its output is visible to an instant query, and until its first event
//!    arrives on an open `/api/v1/stream`. Prometheus's way to add a rule at runtime is
//!    a new rule file plus `POST /-/reload`: timed the same way (query only). Both
//!    evaluate groups on a 1s grid, so ~0.5s of either is waiting for the grid.
//! 2. **Stream fan-out.** 100 consumers (`RULES_API_CONSUMERS`) read
//!    `/api/v1/stream?match[]={job="node"}` (then `?view=` of a registered view with the
//!    same selector) for `RULES_API_SECONDS`; we count events delivered per second and
//!    promflow's CPU time. Prometheus has no push stream; its nearest equivalent is
//!    every consumer polling `/federate` with the same selector once per scrape
//!    interval, which delivers the same samples: compared as samples delivered per
//!    CPU-second of the server.
//!
//! Run: `cargo bench --bench rules_api`. All traffic stays on 127.0.0.1.

#[path = "../tests/common/mod.rs"]
mod common;

use common::exporter::{Exporter, Reply};
use common::http;
use common::{NodeExporter, Prometheus, Promflow};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds(pid: u32) -> f64 {
    promflow::process_stats::read_process(&pid.to_string()).cpu_seconds
}

fn config(targets: &[String], extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{extra}scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

fn has_result(addr: &str, expr: &str) -> bool {
    http::get(&format!(
        "http://{addr}{}",
        http::with_query("/api/v1/query", &[("query", expr)])
    ))
    .is_ok_and(|r| r.body.contains("\"result\":[{"))
}

/// Polls every 5ms until `expr` has a result; the time it took.
fn until_result(addr: &str, expr: &str, from: Instant) -> Duration {
    let deadline = from + Duration::from_secs(30);
    while !has_result(addr, expr) {
        assert!(Instant::now() < deadline, "{expr} never appeared on {addr}");
        std::thread::sleep(Duration::from_millis(5));
    }
    from.elapsed()
}

fn group(i: usize) -> String {
    format!("name: bench_{i}\ninterval: 1s\nrules:\n  - record: bench:rule_{i}\n    expr: sum by (mode) (node_cpu_seconds_total)\n")
}

fn summary(name: &str, mut times: Vec<Duration>) -> f64 {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(times[times.len() / 2]);
    println!(
        "{name:>40}: median {median:>6.0} ms, p90 {:>6.0} ms, min {:>6.0} ms, max {:>6.0} ms",
        ms(times[(times.len() * 9 / 10).min(times.len() - 1)]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    median
}

/// Reads a streaming response, counting body lines (events); stops when `stop` is set.
fn consume(
    addr: String,
    path: String,
    events: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut socket) = TcpStream::connect(&addr) else {
        return;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = write!(socket, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match socket.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let chunk = &buf[..n];
                // An event is one JSON line; chunk-size lines do not start with '{'.
                tail.extend_from_slice(chunk);
                let mut start = 0;
                for (i, b) in tail.iter().enumerate() {
                    if *b == b'\n' {
                        let line = &tail[start..i];
                        if line.first() == Some(&b'{') {
                            events.fetch_add(1, Ordering::Relaxed);
                            if line.windows(9).any(|w| w == b"\"dropped\"") {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        start = i + 1;
                    }
                }
                tail.drain(..start);
            }
            Err(_) => continue,
        }
    }
}

/// Polls `/federate` once a second, counting sample lines.
fn poll_federate(addr: String, path: String, samples: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Ok(r) = http::get(&format!("http://{addr}{path}")) {
            let n = r
                .body
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count();
            samples.fetch_add(n as u64, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
}

/// Runs `consumers` threads of `work` for `seconds` after a 3s warm-up; returns
/// (count per second, server CPU seconds per second, consumers that got a drop).
fn fan_out(
    pid: u32,
    consumers: usize,
    seconds: u64,
    work: impl Fn(Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicBool>) + Send + Sync + Clone + 'static,
) -> (f64, f64, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..consumers)
        .map(|_| {
            let (count, dropped, stop, work) =
                (count.clone(), dropped.clone(), stop.clone(), work.clone());
            std::thread::spawn(move || work(count, dropped, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let (n0, c0) = (count.load(Ordering::Relaxed), cpu_seconds(pid));
    std::thread::sleep(Duration::from_secs(seconds));
    let (n1, c1) = (count.load(Ordering::Relaxed), cpu_seconds(pid));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = seconds as f64;
    (
        (n1 - n0) as f64 / secs,
        (c1 - c0) / secs,
        dropped.load(Ordering::Relaxed),
    )
}

fn main() {
    let targets = env_or("RULES_API_TARGETS", 2);
    let rounds = env_or("RULES_API_ROUNDS", 30);
    let consumers = env_or("RULES_API_CONSUMERS", 100);
    let seconds = env_or("RULES_API_SECONDS", 10) as u64;

    let node = NodeExporter::start();
    let body = node.metrics_body();
    drop(node);
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let exporters: Vec<Exporter> = (0..targets)
        .map(|_| Exporter::start(Reply::text(&body)))
        .collect();
    let addresses: Vec<String> = exporters
        .iter()
        .map(|e| format!("'{}'", e.addr()))
        .collect();
    println!("workload: {targets} targets x {series} series (a real node_exporter's body), scraped every 1s");

    // 1. PUT → first output.
    let promflow = Promflow::start_with_args(
        &config(&addresses, ""),
        &[
            "--web.enable-rules-api",
            "--web.enable-federation-views-api",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    );
    let addr = promflow.addr().to_string();
    let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    {
        let (arrivals, promflow_addr) = (arrivals.clone(), addr.clone());
        std::thread::spawn(move || {
            let path =
                http::with_query("/api/v1/stream", &[("match[]", "{__name__=~\"bench:.*\"}")]);
            let mut socket = TcpStream::connect(&promflow_addr).unwrap();
            write!(socket, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = socket.read(&mut buf) {
                if n == 0 {
                    return;
                }
                let now = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]);
                for name in text.split("\"__name__\":\"").skip(1) {
                    let name = name.split('"').next().unwrap_or("").to_string();
                    arrivals.lock().unwrap().push((name, now));
                }
            }
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    let (mut by_query, mut by_stream) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let started = Instant::now();
        let resp = http::send(
            "PUT",
            &format!("http://{addr}/api/v1/rules/bench/bench_{i}"),
            &[],
            Some("application/yaml"),
            group(i).as_bytes(),
        )
        .unwrap();
        assert_eq!(resp.status, 202, "{}", resp.body);
        by_query.push(until_result(&addr, &format!("bench:rule_{i}"), started));
        let name = format!("bench:rule_{i}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let arrived = loop {
            if let Some((_, at)) = arrivals.lock().unwrap().iter().find(|(n, _)| *n == name) {
                break *at;
            }
            assert!(Instant::now() < deadline, "no stream event for {name}");
            std::thread::sleep(Duration::from_millis(5));
        };
        by_stream.push(arrived.saturating_duration_since(started));
        std::thread::sleep(Duration::from_millis(337));
    }
    println!("\nPUT -> first output ({rounds} rounds, 1s group interval):");
    let ours = summary("promflow PUT, visible to query", by_query);
    summary("promflow PUT, first stream event", by_stream);

    // 2. Stream fan-out (promflow keeps running with its bench groups).
    println!("\nfan-out to {consumers} consumers over {seconds}s:");
    let stream_path = http::with_query("/api/v1/stream", &[("match[]", "{job=\"node\"}")]);
    let work = {
        let (addr, path) = (addr.clone(), stream_path.clone());
        move |n, d, s| consume(addr.clone(), path.clone(), n, d, s)
    };
    let (events, cpu, dropped) = fan_out(promflow.pid(), consumers, seconds, work);
    // Each scrape also writes `up` and the four other scrape series.
    let expected = (targets * (series + 5) * consumers) as f64;
    println!(
        "{:>40}: {events:>9.0} events/s ({:.0}% of {expected:.0} new samples/s x consumers), {cpu:.2} CPU-s/s, {dropped} consumers dropped",
        "promflow stream, match[] per request",
        100.0 * events / expected
    );
    let stream_rate = events / cpu.max(1e-9);
    let form = format!("match[]={}", http::encode("{job=\"node\"}"));
    let resp = http::send(
        "PUT",
        &format!("http://{addr}/api/v1/federation/node"),
        &[],
        Some("application/x-www-form-urlencoded"),
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    let work = {
        let addr = addr.clone();
        move |n, d, s| consume(addr.clone(), "/api/v1/stream?view=node".into(), n, d, s)
    };
    let (events, cpu, dropped) = fan_out(promflow.pid(), consumers, seconds, work);
    println!(
        "{:>40}: {events:>9.0} events/s ({:.0}%), {cpu:.2} CPU-s/s, {dropped} consumers dropped",
        "promflow stream, registered view",
        100.0 * events / expected
    );
    let view_rate = events / cpu.max(1e-9);
    drop(promflow);

    // Prometheus: rule file + reload; then /federate polled by every consumer.
    let rules_dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(&config(
        &addresses,
        &format!("rule_files:\n  - {}/*.yml\n", rules_dir.path().display()),
    ));
    let paddr = prometheus.addr().to_string();
    std::thread::sleep(Duration::from_secs(3));
    let mut reload_times = Vec::new();
    for i in 0..rounds {
        let started = Instant::now();
        let file = format!(
            "groups:\n{}",
            group(i)
                .lines()
                .map(|l| format!("  {}{l}\n", if l.starts_with("name") { "- " } else { "  " }))
                .collect::<String>()
        );
        std::fs::write(rules_dir.path().join(format!("bench_{i}.yml")), file).unwrap();
        assert_eq!(prometheus.reload().status, 200);
        reload_times.push(until_result(&paddr, &format!("bench:rule_{i}"), started));
        std::thread::sleep(Duration::from_millis(337));
    }
    println!("\nPrometheus 2.42:");
    let theirs = summary("Prometheus rule file + reload, query", reload_times);
    let work = {
        let (paddr, path) = (
            paddr.clone(),
            http::with_query("/federate", &[("match[]", "{job=\"node\"}")]),
        );
        move |n, _d, s| poll_federate(paddr.clone(), path.clone(), n, s)
    };
    let (samples, cpu, _) = fan_out(prometheus.pid(), consumers, seconds, work);
    println!(
        "{:>40}: {samples:>9.0} samples/s, {cpu:.2} CPU-s/s",
        "Prometheus /federate polled every 1s"
    );
    let federate_rate = samples / cpu.max(1e-9);
    println!("\nratios (promflow / Prometheus):");
    println!(
        "  PUT -> visible to query, median time: {:.2}",
        ours / theirs.max(1e-9)
    );
    println!(
        "  samples delivered per server CPU-second, stream (match[]) vs /federate polling: {:.2}",
        stream_rate / federate_rate.max(1e-9)
    );
    println!(
        "  samples delivered per server CPU-second, stream (view) vs /federate polling: {:.2}",
        view_rate / federate_rate.max(1e-9)
    );
}
