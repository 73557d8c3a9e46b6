//! HTTP load at a held rate against promflow and a real Prometheus 2.42 side by side,
//! both under the same scrape workload: latency, errors, and scrapes missed.
//!
//! Workload: the node_exporter-like fleet of `side_by_side::node_fleet_config`,
//! `LOAD_TARGETS` (50) targets × `LOAD_SERIES` (2,000) series = 100k active series in
//! `LOAD_JOBS` (10) jobs, scraped every `LOAD_INTERVAL` (5) seconds, with two recording
//! rules and an alerting rule evaluated at the same interval. promflow and Prometheus
//! (`/usr/bin/prometheus`) scrape the same fleet at the same time, each with its own
//! storage.
//!
//! Load: `wrk` 4.1 (Debian package `wrk`) runs, one after another and on each server
//! in turn, for `LOAD_SECONDS` (30) each:
//! - `/api/v1/query` — `sum by (job) (rate(node_bench_family0_total[1m]))`;
//! - `/api/v1/query_range` — the same over the last 5 minutes, step 15s;
//! - `/federate?match[]={job="node0"}` — one job's 10k series.
//!
//! How the rate is held: wrk 4.1 has no fixed-rate mode (wrk2 is not in Debian). The
//! Lua script's `delay()` makes each of wrk's `C` connections wait `D` ms after each
//! response before its next request, so the offered rate is at most `C·1000/D` per
//! second and stays there while responses are fast next to `D`; the achieved rate is
//! printed beside it (it falls when a server is slower than `D`: wrk then measures a
//! closed loop, so p99 under overload is understated — coordinated omission). The
//! script's `done()` prints p50/p99/max latency, requests and errors (connect, read,
//! write, timeout, non-2xx).
//!
//! Scrapes missed: over the whole load window, per server, from its own `up` series
//! (`count_over_time(up[W])`: scrapes that happened, vs `targets × W / interval`
//! expected; `W - sum_over_time(up)` failed) and the longest `scrape_duration_seconds`;
//! each target with a failed scrape is listed with its longest scrape duration.
//!
//! Run: `cargo bench --bench load` (env `LOAD_TARGETS`, `LOAD_SERIES`, `LOAD_JOBS`,
//! `LOAD_INTERVAL`, `LOAD_SECONDS` override the workload). All traffic stays on
//! 127.0.0.1; every wrk run is bounded by `-d`.

#[path = "side_by_side/mod.rs"]
mod side_by_side;

use side_by_side::{encode, env_or, http_get, node_fleet_config, Server, PROMETHEUS, PROMFLOW};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RULES: &str = "groups:\n  - name: load\n    rules:\n      - record: job:node_bench_family0:rate1m\n        expr: sum by (job) (rate(node_bench_family0_total[1m]))\n      - record: job:node_bench_family1:avg\n        expr: avg by (job) (node_bench_family1_total)\n      - alert: FamilyTwoHigh\n        expr: sum by (job) (node_bench_family2_total) > 1e12\n";

/// One endpoint under load: name, path, wrk connections, delay per connection (ms).
struct Endpoint {
    name: &'static str,
    path: String,
    connections: u32,
    delay_ms: u32,
}

/// What wrk's `done()` printed.
#[derive(Debug, Default)]
struct Outcome {
    requests: f64,
    duration_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: f64,
}

/// The wrk script for `path` with a `delay_ms` pause per connection between requests.
fn script(path: &str, delay_ms: u32) -> String {
    format!(
        r#"local path = [[{path}]]
request = function() return wrk.format("GET", path) end
delay = function() return {delay_ms} end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#
    )
}

fn run_wrk(server: &Server, endpoint: &Endpoint, seconds: u64, dir: &std::path::Path) -> Outcome {
    let script_path = dir.join(format!("{}-{}.lua", server.name, endpoint.name));
    std::fs::write(&script_path, script(&endpoint.path, endpoint.delay_ms)).unwrap();
    let out = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{}", endpoint.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout=10s")
        .arg("-s")
        .arg(&script_path)
        .arg(format!("http://{}", server.addr))
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no RESULT from wrk: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    Outcome {
        requests: v[0],
        duration_s: v[1] / 1e6,
        p50_ms: v[2] / 1e3,
        p99_ms: v[3] / 1e3,
        max_ms: v[4] / 1e3,
        errors: v[5],
    }
}

/// The first value of an instant query's answer on `server` (0 if none).
fn scalar(server: &Server, expr: &str) -> f64 {
    let body = http_get(
        &server.addr,
        &format!("/api/v1/query?query={}", encode(expr)),
    )
    .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

/// Each series of an instant query's result as `(instance, value)`.
fn by_instance(server: &Server, expr: &str) -> Vec<(String, f64)> {
    let body = http_get(
        &server.addr,
        &format!("/api/v1/query?query={}", encode(expr)),
    )
    .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let instance = r["metric"]["instance"].as_str().unwrap_or("").to_string();
            let value = r["value"][1].as_str().and_then(|s| s.parse().ok());
            (instance, value.unwrap_or(f64::NAN))
        })
        .collect()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let targets = env_or("LOAD_TARGETS", 50);
    let series = env_or("LOAD_SERIES", 2000);
    let jobs = env_or("LOAD_JOBS", 10).clamp(1, targets);
    let interval = env_or("LOAD_INTERVAL", 5) as u64;
    let seconds = env_or("LOAD_SECONDS", 30) as u64;
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found (apt-get install prometheus)"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let config = node_fleet_config(
        targets,
        series,
        jobs,
        interval,
        &format!("rule_files:\n  - {}\n", rules.display()),
    );
    let config_path = dir.path().join("load.yml");
    std::fs::write(&config_path, config).unwrap();
    let promflow = Server::start(
        "promflow",
        PROMFLOW,
        &config_path,
        &dir.path().join("pf"),
        &[],
    );
    let prometheus = Server::start(
        "prometheus",
        PROMETHEUS,
        &config_path,
        &dir.path().join("prom"),
        &[],
    );
    let servers = [&promflow, &prometheus];
    println!(
        "workload: {targets} targets x {series} series ({} active series) in {jobs} jobs, scraped \
         every {interval}s, 2 recording rules + 1 alert; {seconds}s of wrk per endpoint and server",
        targets * series
    );
    // Both serve every series, and a minute of data exists for rate(…[1m]).
    let expected = (targets * series) as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    for server in servers {
        while scalar(server, "count({__name__=~\"node_bench_.+\"})") < expected {
            assert!(
                Instant::now() < deadline,
                "{} never served every series",
                server.name
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    std::thread::sleep(Duration::from_secs(60));

    let expr = "sum by (job) (rate(node_bench_family0_total[1m]))";
    let end = now_s();
    let endpoints = [
        Endpoint {
            name: "query",
            path: format!("/api/v1/query?query={}", encode(expr)),
            connections: 2,
            delay_ms: 100,
        },
        Endpoint {
            name: "query_range",
            path: format!(
                "/api/v1/query_range?query={}&start={}&end={end}&step=15",
                encode(expr),
                end - 300
            ),
            connections: 2,
            delay_ms: 200,
        },
        Endpoint {
            name: "federate",
            path: format!("/federate?match[]={}", encode("{job=\"node0\"}")),
            connections: 1,
            delay_ms: 500,
        },
    ];
    let started = now_s();
    let mut rows = Vec::new();
    for endpoint in &endpoints {
        for server in servers {
            let o = run_wrk(server, endpoint, seconds, dir.path());
            println!(
                "{:<11} {:<10} offered {:>5.1}/s achieved {:>5.1}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  errors {}  (load {})",
                endpoint.name,
                server.name,
                f64::from(endpoint.connections) * 1000.0 / f64::from(endpoint.delay_ms),
                o.requests / o.duration_s,
                o.p50_ms,
                o.p99_ms,
                o.max_ms,
                o.errors,
                load_average()
            );
            rows.push((endpoint.name, server.name, o));
        }
    }
    // Scrapes over the load window, from each server's own `up`.
    std::thread::sleep(Duration::from_secs(interval));
    let window = now_s() - started;
    let want = (targets as u64 * window / interval) as f64;
    for server in servers {
        let done = scalar(server, &format!("sum(count_over_time(up[{window}s]))"));
        let ok = scalar(server, &format!("sum(sum_over_time(up[{window}s]))"));
        let longest = scalar(
            server,
            &format!("max(max_over_time(scrape_duration_seconds[{window}s]))"),
        );
        println!(
            "scrapes    {:<10} over {window}s: {done} of ~{want} expected ({} missed), {} failed, longest {:.3}s",
            server.name,
            (want - done).max(0.0),
            done - ok,
            longest
        );
        // Which targets failed, and whether a scrape ran into the timeout (its
        // duration is then about `scrape_timeout`).
        let failed = by_instance(
            server,
            &format!("count_over_time(up[{window}s]) - sum_over_time(up[{window}s]) > 0"),
        );
        for (instance, count) in failed {
            let slowest = by_instance(
                server,
                &format!(
                    "max_over_time(scrape_duration_seconds{{instance=\"{instance}\"}}[{window}s])"
                ),
            );
            println!(
                "  failed     {:<10} {instance}: {count} scrape(s), longest {:.3}s",
                server.name,
                slowest.first().map_or(f64::NAN, |s| s.1)
            );
        }
    }
}
