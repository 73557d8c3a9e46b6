//! Idle and fixed costs: the CPU promflow and a real Prometheus 2.42 use with nothing
//! (or almost nothing) to do.
//!
//! Isolates the fixed cost of a running server (timers, worker threads, housekeeping).
//! Each case starts both servers side by side on loopback with the same config, leaves
//! them `IDLE_WARMUP` seconds to settle (default 20: past the first scrape and the
//! first rounds of startup work), then reads their CPU time (user + system ticks of
//! `/proc/<pid>/stat`, 10 ms resolution) and their threads' voluntary context switches
//! (`/proc/<pid>/task/*/status`: a voluntary switch is a thread going to sleep, so
//! about one per wake-up) over `IDLE_SECONDS` (default 60). Prints both, the ratio
//! promflow / Prometheus, and per server the threads (by name) that woke more than
//! once a minute, so a periodic wake-up shows where it comes from.
//!
//! The cases (`IDLE_CASES`, comma-separated, default `none,one`):
//! - `none`: no scrape targets and no rules;
//! - `one`: one small target (47 node_exporter-like series, [`node_body`], served in
//!   this process) scraped every 15s, no rules;
//! - `rules`: the same target and 10 alert rules over it ([`rule_file`]) evaluated
//!   every 15s (promflow in its default `--rules.evaluation=interval`).
//!
//! Run: `cargo bench --bench idle` (release build; `/usr/bin/prometheus` from the
//! Debian package). A functional run of the debug build: `cargo bench --profile dev
//! --bench idle`. Nothing is requested from either server during the measurement.

mod side_by_side;

use side_by_side::{
    cpu_seconds, env_or, node_body, rule_file, serve_exporter, Server, PROMETHEUS, PROMFLOW,
};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Voluntary context switches of each thread of `pid`, by thread name (threads of
/// one name summed).
fn switches_by_thread(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.filter_map(|t| t.ok()) {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let name = field("Name:").unwrap_or_default();
        let switches = field("voluntary_ctxt_switches:")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name).or_insert(0) += switches;
    }
    out
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |t| t.count())
}

/// The config of case `case` (a rule file, if any, written to `dir`): (description,
/// config text).
fn case_config(case: &str, dir: &Path) -> Option<(&'static str, String)> {
    const GLOBAL: &str = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n";
    let target = || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_exporter(listener, Arc::new(AtomicU64::new(0)), node_body);
        format!("scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"{addr}\"]\n")
    };
    match case {
        "none" => Some((
            "idle, no targets and no rules",
            format!("{GLOBAL}scrape_configs: []\n"),
        )),
        "one" => Some((
            "one target (47 series) @15s, no rules",
            format!("{GLOBAL}{}", target()),
        )),
        "rules" => {
            let rules = dir.join("rules.yml");
            std::fs::write(&rules, rule_file(10)).unwrap();
            Some((
                "one target (47 series) @15s, 10 alert rules @15s",
                format!(
                    "{GLOBAL}rule_files: [\"{}\"]\n{}",
                    rules.display(),
                    target()
                ),
            ))
        }
        _ => None,
    }
}

/// Runs one case: both servers at once on its config; prints their figures.
fn run(case: &str, warmup: u64, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let Some((title, config_text)) = case_config(case, dir.path()) else {
        println!("unknown case {case:?} (none, one, rules)");
        return;
    };
    let config = dir.path().join("idle.yml");
    std::fs::write(&config, config_text).unwrap();
    let mut servers = vec![Server::start(
        "promflow",
        PROMFLOW,
        &config,
        &dir.path().join("promflow"),
        &[],
    )];
    if Path::new(PROMETHEUS).exists() {
        servers.push(Server::start(
            "prometheus",
            PROMETHEUS,
            &config,
            &dir.path().join("prometheus"),
            &[],
        ));
    } else {
        println!("{PROMETHEUS} not found: promflow alone (apt-get install prometheus)");
    }
    std::thread::sleep(Duration::from_secs(warmup));
    let before: Vec<(f64, BTreeMap<String, u64>)> = servers
        .iter()
        .map(|s| (cpu_seconds(s.pid()), switches_by_thread(s.pid())))
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    println!("{title}, {seconds} s after {warmup} s of warm-up:");
    let mut cores = Vec::new();
    let mut wakeups = Vec::new();
    let mut breakdowns = Vec::new();
    for (server, (cpu0, switches0)) in servers.iter().zip(before) {
        let cpu = cpu_seconds(server.pid()) - cpu0;
        let mut by_thread: Vec<(String, f64)> = switches_by_thread(server.pid())
            .into_iter()
            .map(|(name, n)| {
                let n0 = switches0.get(&name).copied().unwrap_or(0);
                (name, n.saturating_sub(n0) as f64 / seconds as f64)
            })
            .filter(|(_, per_s)| *per_s * 60.0 > 1.0)
            .collect();
        by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
        let per_s: f64 = by_thread.iter().map(|(_, n)| n).sum();
        println!(
            "  {:>10}: {:.2} CPU-s = {:.5} cores; {:.1} thread wake-ups/s over {} threads",
            server.name,
            cpu,
            cpu / seconds as f64,
            per_s,
            threads(server.pid())
        );
        let shown: Vec<String> = by_thread
            .iter()
            .map(|(name, n)| format!("{name} {n:.2}"))
            .collect();
        breakdowns.push(format!(
            "  {:>10} wake-ups/s by thread: {}",
            server.name,
            shown.join(", ")
        ));
        cores.push(cpu);
        wakeups.push(per_s);
    }
    for line in breakdowns {
        println!("{line}");
    }
    if let ([promflow, prometheus], [w_promflow, w_prometheus]) = (&cores[..], &wakeups[..]) {
        println!(
            "  ratio promflow / prometheus: CPU {:.2} (ticks are 10 ms: ±0.01 CPU-s each), wake-ups {:.2}",
            promflow / prometheus.max(0.01),
            w_promflow / w_prometheus.max(0.01)
        );
    }
}

fn main() {
    let warmup = env_or("IDLE_WARMUP", 20) as u64;
    let seconds = env_or("IDLE_SECONDS", 60) as u64;
    let cases = std::env::var("IDLE_CASES").unwrap_or_else(|_| "none,one".into());
    for case in cases.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        run(case, warmup, seconds);
    }
}
