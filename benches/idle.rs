//! Idle cost: the CPU promflow and a real Prometheus 2.42 use with nothing to do.
//!
//! Isolates the fixed cost of a running server (timers, worker threads, housekeeping):
//! both start on a config with no scrape targets and no rules, side by side on
//! loopback, are left `IDLE_WARMUP` seconds to settle (default 5), then their CPU time
//! (user + system ticks of `/proc/<pid>/stat`, 10 ms resolution) and their threads'
//! context switches (`/proc/<pid>/task/*/status`: a voluntary switch is a thread
//! going to sleep, so about one per wake-up) are read over `IDLE_SECONDS` (default
//! 60). Prints both and the ratio promflow / Prometheus.
//!
//! Run: `cargo bench --bench idle` (release build; `/usr/bin/prometheus` from the
//! Debian package). Nothing is requested from either server during the measurement.

mod side_by_side;

use side_by_side::{cpu_seconds, env_or, Server, PROMETHEUS, PROMFLOW};
use std::path::Path;
use std::time::Duration;

/// Voluntary context switches summed over the threads of `pid`.
fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |t| t.count())
}

fn main() {
    let warmup = env_or("IDLE_WARMUP", 5) as u64;
    let seconds = env_or("IDLE_SECONDS", 60) as u64;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idle.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nscrape_configs: []\n",
    )
    .unwrap();
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
    let before: Vec<(f64, u64)> = servers
        .iter()
        .map(|s| (cpu_seconds(s.pid()), voluntary_switches(s.pid())))
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    println!("idle, no targets and no rules, {seconds} s after {warmup} s of warm-up:");
    let mut cores = Vec::new();
    for (server, (cpu0, switches0)) in servers.iter().zip(before) {
        let cpu = cpu_seconds(server.pid()) - cpu0;
        let switches = voluntary_switches(server.pid()) - switches0;
        println!(
            "  {:>10}: {:.2} CPU-s = {:.5} cores; {:.1} thread wake-ups/s over {} threads",
            server.name,
            cpu,
            cpu / seconds as f64,
            switches as f64 / seconds as f64,
            threads(server.pid())
        );
        cores.push(cpu);
    }
    if let [promflow, prometheus] = cores[..] {
        println!(
            "  ratio promflow / prometheus: {:.2} (CPU ticks are 10 ms: ±{:.2} CPU-s each)",
            promflow / prometheus.max(0.01),
            0.01
        );
    }
}
