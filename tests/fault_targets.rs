//! Bad targets hurt only themselves: one that accepts and never answers, and one that
//! answers with a 1 GB body, beside a good one, scraped by promflow and by a real
//! Prometheus 2.42 with the same config (`scrape_timeout` 500ms, `body_size_limit`
//! 1MB, every 1s).
//!
//! - The hanging target is down once `scrape_timeout` passes (its scrape duration is
//!   the timeout, not more), and its connections are closed: they do not pile up.
//! - The 1 GB target is down for its body size limit, the scrape stops reading at the
//!   limit (the server counts what it could write: the limit plus socket buffers, far
//!   from 1 GB), and `prometheus_target_scrapes_exceeded_body_size_limit_total` counts it.
//! - The good target keeps its schedule: an `up` sample every interval.
//! - Health of each target is Prometheus's.
//!
//! The bad servers are threads of this test on 127.0.0.1; all loops are bounded.

mod common;

use common::exporter::{Exporter, Reply};
use common::{wait_until, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GIB: u64 = 1 << 30;
const LIMIT: u64 = 1 << 20;

/// Reads a request's head (up to the blank line), lower-cased; None if the peer went
/// away.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).to_ascii_lowercase())
}

/// Accepts connections, reads each request and never answers; counts connections
/// open now. A connection's thread ends when the client closes it.
struct Hanging {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl Hanging {
    fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (o, a) = (open.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(10_000) {
                let Ok(mut stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                std::thread::spawn(move || {
                    read_head(&mut stream);
                    // Wait for the client to give up (EOF or reset), at most 10 minutes.
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Hanging {
            addr,
            open,
            accepted,
        }
    }
}

/// Answers every request with a 200 whose body is 1 GiB of valid exposition lines;
/// records how many body bytes each answer got out before the client stopped reading,
/// and whether the client was promflow (its User-Agent).
struct Huge {
    addr: SocketAddr,
    written: Arc<Mutex<Vec<(bool, u64)>>>,
}

impl Huge {
    fn start() -> Huge {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::new(Mutex::new(Vec::new()));
        let w = written.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(10_000) {
                let Ok(mut stream) = stream else { continue };
                let w = w.clone();
                std::thread::spawn(move || {
                    let Some(head) = read_head(&mut stream) else {
                        return;
                    };
                    let promflow = head.contains("user-agent: promflow/");
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {GIB}\r\nConnection: close\r\n\r\n"
                    );
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let mut chunk = String::new();
                    let mut i = 0u64;
                    while chunk.len() < 60 * 1024 {
                        chunk.push_str(&format!("huge_metric{{i=\"{i:012}\"}} 1\n"));
                        i += 1;
                    }
                    let mut sent = 0u64;
                    while sent < GIB {
                        let n = (GIB - sent).min(chunk.len() as u64) as usize;
                        if stream.write_all(&chunk.as_bytes()[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                    w.lock().unwrap().push((promflow, sent));
                });
            }
        });
        Huge { addr, written }
    }
}

fn config(good: SocketAddr, hanging: SocketAddr, huge: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n\
         - job_name: faults\n  body_size_limit: 1MB\n  static_configs:\n\
         \x20\x20- targets: ['{good}', '{hanging}', '{huge}']\n\
         - job_name: neighbour\n  static_configs:\n  - targets: ['{good}']\n"
    )
}

/// `instance → (health, lastScrapeDuration)` of every active target.
fn health(targets_json: &str) -> BTreeMap<String, (String, f64)> {
    let v: Value = serde_json::from_str(targets_json).unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                format!(
                    "{}/{}",
                    t["labels"]["job"].as_str().unwrap(),
                    t["labels"]["instance"].as_str().unwrap()
                ),
                (
                    t["health"].as_str().unwrap().to_string(),
                    t["lastScrapeDuration"].as_f64().unwrap_or(0.0),
                ),
            )
        })
        .collect()
}

fn errors(targets_json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(targets_json).unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["lastError"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_hanging_and_a_1gb_target_hurt_only_themselves() {
    let good = Exporter::start(Reply::text("good_metric 1\n"));
    let hanging = Hanging::start();
    let huge = Huge::start();
    let config = config(good.addr(), hanging.addr, huge.addr);
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);

    let want: BTreeMap<String, String> = [
        (format!("faults/{}", good.addr()), "up"),
        (format!("faults/{}", hanging.addr), "down"),
        (format!("faults/{}", huge.addr), "down"),
        (format!("neighbour/{}", good.addr()), "up"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    let healths = |json: &str| -> BTreeMap<String, String> {
        health(json).into_iter().map(|(k, (h, _))| (k, h)).collect()
    };
    let oracle_targets = || prometheus.get_ok("/api/v1/targets");
    let promflow_targets = || promflow.get_ok("/api/v1/targets");
    let sides: [(&str, &dyn Fn() -> String); 2] = [
        ("prometheus", &oracle_targets),
        ("promflow", &promflow_targets),
    ];
    for (name, get) in sides {
        assert!(
            wait_until(Duration::from_secs(30), || healths(&get()) == want),
            "{name}: target health {:?}, want {want:?}",
            healths(&get())
        );
    }
    // Several more scrapes of every target.
    std::thread::sleep(Duration::from_secs(5));

    let targets = promflow.get_ok("/api/v1/targets");
    let hang_duration = health(&targets)[&format!("faults/{}", hanging.addr)].1;
    assert!(
        (0.45..1.0).contains(&hang_duration),
        "the hanging target's scrape should end at scrape_timeout (0.5s), took {hang_duration}s"
    );
    let oracle = prometheus.get_ok("/api/v1/targets");
    eprintln!("promflow errors: {:?}", errors(&targets));
    eprintln!("prometheus errors: {:?}", errors(&oracle));
    // Connections to the hanging target are closed when a scrape times out: two
    // scrapers, at most one scrape each in flight (plus one being closed).
    let open = hanging.open.load(Ordering::SeqCst);
    let accepted = hanging.accepted.load(Ordering::SeqCst);
    assert!(accepted >= 10, "{accepted} scrapes of the hanging target");
    assert!(
        open <= 4,
        "{open} connections to the hanging target still open"
    );

    // The 1 GB body: promflow stopped reading at the limit (plus what loopback buffers
    // hold). (Prometheus 2.42 drains the rest of a body it refused, until the scrape
    // timeout ends it: printed, not asserted.)
    let all = huge.written.lock().unwrap().clone();
    let written: Vec<u64> = all.iter().filter(|(p, _)| *p).map(|(_, n)| *n).collect();
    let oracle: Vec<u64> = all.iter().filter(|(p, _)| !*p).map(|(_, n)| *n).collect();
    eprintln!("bytes of the 1 GB body written: to promflow {written:?}, to Prometheus {oracle:?}");
    assert!(
        written.len() >= 5,
        "answers to the 1 GB target: {written:?}"
    );
    let most = *written.iter().max().unwrap();
    assert!(
        most < LIMIT + (64 << 20),
        "a scrape read {most} bytes of the 1 GB body; the limit is {LIMIT}"
    );
    let exceeded = promflow
        .metrics()
        .sum("prometheus_target_scrapes_exceeded_body_size_limit_total")
        .unwrap_or(0.0);
    assert!(exceeded >= 5.0, "body size limit hits counted: {exceeded}");

    // The good target, in both jobs, has an `up` sample every second.
    for job in ["faults", "neighbour"] {
        let expr = format!(
            "count_over_time(up{{job=\"{job}\",instance=\"{}\"}}[5s])",
            good.addr()
        );
        let v: Value = serde_json::from_str(&promflow.get_ok(&common::http::with_query(
            "/api/v1/query",
            &[("query", &expr)],
        )))
        .unwrap();
        let n: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap();
        assert!(
            n >= 4.0,
            "{job}: the good target had {n} scrapes in 5s next to the bad ones"
        );
    }
}
