//! Alert detection latency, promflow (on-arrival rules) vs Prometheus + Alertmanager,
//! side by side in one run.
//!
//! Isolates the path from "the scrape that makes an alert true has ended" to "the
//! receiver got the HTTP request": rule evaluation, alert state, the notifier and
//! Alertmanager's dispatch. Three servers scrape the same targets every 1s: promflow
//! with `--rules.evaluation=on-arrival`, and two real Prometheus 2.42 with
//! `evaluation_interval` 1s and 15s. All send to one real Alertmanager 0.25
//! (`group_by: [alertname, trial, system]`, `group_wait: 0s`) whose webhook receiver
//! is a local HTTP server. Each trial starts a new controllable exporter (tests/common)
//! on a new port, handed to all three through `file_sd_configs`: a new target gets a
//! new scrape offset, so the phase between scrape and rule evaluation is random per
//! trial, as it is across real deployments (with one fixed target it is a constant set
//! by hashes). Once every server has scraped it twice, after a random pause (0-15s,
//! a random phase against every evaluation cycle), it flips
//! to `probe{trial="N"} 1`; the rule `probe > 0` (no `for`) fires. Latency = webhook
//! receipt − the moment the exporter finished writing the first answer with the
//! flipped value to that server (each server scrapes with its own `?system=` param).
//!
//! Run: `cargo bench --bench alert_latency` (env `ALERT_LATENCY_TRIALS`, default 12).
//! All traffic stays on 127.0.0.1. Prints p50/p99 (nearest rank) per system.

#[path = "../tests/common/mod.rs"]
mod common;

use common::alertmanager::{Alertmanager, Webhook};
use common::exporter::{Exporter, Reply};
use common::{free_port, Prometheus, Promflow};
use std::time::{Duration, Instant};

const SYSTEMS: [&str; 3] = ["promflow", "prometheus-1s", "prometheus-15s"];

fn config(
    system: &str,
    evaluation_interval: &str,
    rules: &str,
    am_port: u16,
    targets_file: &str,
) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: {evaluation_interval}\n  external_labels:\n    system: {system}\nrule_files:\n  - {rules}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: probe\n    params:\n      system: ['{system}']\n    file_sd_configs:\n      - files: ['{targets_file}']\n"
    )
}

/// Points every server at `exporter` (only) through the file_sd file, atomically.
fn serve_only(targets_file: &std::path::Path, exporter: &Exporter) {
    let tmp = targets_file.with_extension("tmp");
    let body = format!("[{{\"targets\": [\"{}\"]}}]", exporter.addr());
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, targets_file).unwrap();
}

fn main() {
    let trials: usize = std::env::var("ALERT_LATENCY_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let webhook = Webhook::start();
    let am = Alertmanager::start_on(
        free_port(),
        webhook.port,
        "0s",
        &["alertname", "trial", "system"],
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: latency\n    rules:\n      - alert: LatencyProbe\n        expr: probe > 0\n",
    )
    .unwrap();
    let rules = rules.display().to_string();
    let targets_file = dir.path().join("targets.json");
    let mut exporter = Exporter::start(Reply::text("probe{trial=\"0\"} 0\n"));
    serve_only(&targets_file, &exporter);
    let targets = targets_file.display().to_string();
    let promflow = Promflow::start_with_args(
        &config("promflow", "1s", &rules, am.port, &targets),
        &["--rules.evaluation=on-arrival", "--log.level=warn"],
    );
    let _prom1 = Prometheus::start(&config("prometheus-1s", "1s", &rules, am.port, &targets));
    let _prom15 = Prometheus::start(&config("prometheus-15s", "15s", &rules, am.port, &targets));
    println!(
        "alert detection latency: {trials} trials, scrape_interval 1s, one Alertmanager (group_wait 0s)"
    );

    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); SYSTEMS.len()];
    for trial in 1..=trials {
        // A new target (new scrape offset), scraped twice by everyone before the flip.
        exporter = Exporter::start(Reply::text(&format!("probe{{trial=\"{trial}\"}} 0\n")));
        serve_only(&targets_file, &exporter);
        let warm = Instant::now() + Duration::from_secs(30);
        while Instant::now() < warm {
            let served = exporter.served();
            let scraped_twice = SYSTEMS.iter().all(|system| {
                let tag = format!("system={system}");
                served.iter().filter(|s| s.path.contains(&tag)).count() >= 2
            });
            if scraped_twice {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A random phase against every evaluation cycle (the longest is 15s); without
        // it the flip would follow the previous trial's slowest alert at a fixed phase.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..15_000)));
        let generation = exporter.set(Reply::text(&format!("probe{{trial=\"{trial}\"}} 1\n")));
        let deadline = Instant::now() + Duration::from_secs(40);
        let trial_label = trial.to_string();
        loop {
            let done = SYSTEMS.iter().all(|s| {
                webhook
                    .firing_with(&[("trial", &trial_label), ("system", s)])
                    .is_some()
            });
            if done || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let served = exporter.served();
        let mut line = format!("trial {trial:>3}:");
        for (i, system) in SYSTEMS.iter().enumerate() {
            let tag = format!("system={system}");
            let scraped = served
                .iter()
                .find(|s| s.generation >= generation && s.path.contains(&tag))
                .map(|s| s.at);
            let received = webhook.firing_with(&[("trial", &trial_label), ("system", system)]);
            match (scraped, received) {
                (Some(scraped), Some(received)) => {
                    let ms = received.saturating_duration_since(scraped).as_secs_f64() * 1000.0;
                    latencies[i].push(ms);
                    line.push_str(&format!("  {system} {ms:>8.1} ms"));
                }
                _ => line.push_str(&format!("  {system} (no alert within 40s)")),
            }
        }
        println!("{line}");
    }
    // What promflow's notifier went through (a retried POST shows as errors).
    for line in promflow.get_ok("/metrics").lines() {
        if line.starts_with("prometheus_notifications_") {
            println!("promflow: {line}");
        }
    }
    println!(
        "{:>16} {:>10} {:>10} {:>6}",
        "system", "p50 ms", "p99 ms", "n"
    );
    for (system, mut l) in SYSTEMS.iter().zip(latencies) {
        if l.is_empty() {
            println!("{system:>16} {:>10} {:>10} {:>6}", "-", "-", 0);
            continue;
        }
        l.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{system:>16} {:>10.1} {:>10.1} {:>6}",
            common::percentile(&l, 50.0),
            common::percentile(&l, 99.0),
            l.len()
        );
    }
}
