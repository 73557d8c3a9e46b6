//! Synthetic exporters of the reference setup's fleet, served by
//! [`super::exporter::Exporter::start_making`] with bodies made at each scrape:
//!
//! - [`ServiceTask`]: a task of a Go service, as the Go client library exposes it —
//!   `http_requests_total{function,code}` counters and an
//!   `http_request_duration_seconds{function}` histogram that advance with time, an
//!   `online_devices` gauge the test sets, Go runtime gauges; it can stop answering
//!   (503) like a hung task;
//! - [`CpuHost`]: a node_exporter's `node_cpu_seconds_total{cpu,mode}` of a host whose
//!   load the test switches (busy: 98% non-idle), counters continuous across switches,
//!   with a log of when each body was made and its `user` value (which tells the
//!   scrapes apart: it advances at least 0.05 s/s and is written to the microsecond);
//! - [`cadvisor_reply`]: cAdvisor's container series for two containers and a cgroup
//!   with no container name.

use super::exporter::{Exporter, MakeReply, Reply};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The functions a service task counts requests of.
pub const FUNCTIONS: [&str; 2] = ["login", "list_devices"];
const BUCKETS: [f64; 5] = [0.005, 0.025, 0.1, 0.5, 2.5];

/// One task of a Go service.
pub struct ServiceTask {
    pub exporter: Exporter,
    devices: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl ServiceTask {
    pub fn start(addr: SocketAddr, devices: u64) -> std::io::Result<ServiceTask> {
        let started = Instant::now();
        let devices = Arc::new(AtomicU64::new(devices));
        let down = Arc::new(AtomicBool::new(false));
        let (d, dn) = (devices.clone(), down.clone());
        let make: MakeReply = Arc::new(move || {
            if dn.load(Ordering::SeqCst) {
                return Reply {
                    status: 503,
                    ..Reply::text("hung\n")
                };
            }
            Reply::text(&service_body(
                started.elapsed().as_secs_f64(),
                d.load(Ordering::SeqCst),
            ))
        });
        Ok(ServiceTask {
            exporter: Exporter::start_making(addr, make)?,
            devices,
            down,
        })
    }

    pub fn set_devices(&self, n: u64) {
        self.devices.store(n, Ordering::SeqCst);
    }

    /// Whether scrapes get 503 (the task hangs) instead of metrics.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// The exposition of a task `secs` seconds after it started: 10 logins and 40 device
/// listings a second (1% of logins fail), latencies spread over the buckets.
pub fn service_body(secs: f64, devices: u64) -> String {
    let mut b = String::new();
    b.push_str("# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 23\n");
    b.push_str("# HELP http_requests_total Requests handled, by function and status code.\n# TYPE http_requests_total counter\n");
    let rates = [10.0, 40.0];
    for (f, rate) in FUNCTIONS.iter().zip(rates) {
        let n = (secs * rate).floor();
        let failed = (n / 100.0).floor();
        let _ = writeln!(
            b,
            "http_requests_total{{code=\"200\",function=\"{f}\"}} {}",
            n - failed
        );
        let _ = writeln!(
            b,
            "http_requests_total{{code=\"500\",function=\"{f}\"}} {failed}"
        );
    }
    b.push_str("# HELP http_request_duration_seconds Request latency, by function.\n# TYPE http_request_duration_seconds histogram\n");
    for (f, rate) in FUNCTIONS.iter().zip(rates) {
        let n = (secs * rate).floor();
        // Cumulative shares per bucket: 20%, 60%, 90%, 99%, 100%.
        for (le, share) in BUCKETS.iter().zip([0.2, 0.6, 0.9, 0.99, 1.0]) {
            let _ = writeln!(
                b,
                "http_request_duration_seconds_bucket{{function=\"{f}\",le=\"{le}\"}} {}",
                (n * share).floor()
            );
        }
        let _ = writeln!(
            b,
            "http_request_duration_seconds_bucket{{function=\"{f}\",le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(
            b,
            "http_request_duration_seconds_sum{{function=\"{f}\"}} {}",
            n * 0.04
        );
        let _ = writeln!(
            b,
            "http_request_duration_seconds_count{{function=\"{f}\"}} {n}"
        );
    }
    let _ = write!(
        b,
        "# HELP online_devices Devices connected to this task.\n# TYPE online_devices gauge\nonline_devices {devices}\n"
    );
    b
}

/// A host's CPU counters under a load the test switches.
pub struct CpuHost {
    pub exporter: Exporter,
    state: Arc<Mutex<CpuState>>,
    made: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// Seconds per CPU in each mode up to `since`, and the load from then on.
struct CpuState {
    idle: f64,
    user: f64,
    since: Instant,
    busy: bool,
}

impl CpuState {
    /// (idle, user) seconds per CPU now.
    fn now(&self) -> (f64, f64) {
        let dt = self.since.elapsed().as_secs_f64();
        let busy_share = if self.busy { 0.98 } else { 0.05 };
        (
            self.idle + dt * (1.0 - busy_share),
            self.user + dt * busy_share,
        )
    }
}

/// CPUs of the synthetic host.
const CPUS: usize = 2;

impl CpuHost {
    pub fn start(addr: SocketAddr) -> std::io::Result<CpuHost> {
        let state = Arc::new(Mutex::new(CpuState {
            idle: 5000.0,
            user: 300.0,
            since: Instant::now(),
            busy: false,
        }));
        let made: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let (s, log) = (state.clone(), made.clone());
        let make: MakeReply = Arc::new(move || {
            let (idle, user) = s.lock().unwrap().now();
            log.lock()
                .unwrap()
                .push((Instant::now(), format!("{user:.6}")));
            let mut b = String::from("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n");
            for cpu in 0..CPUS {
                let _ = writeln!(
                    b,
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"idle\"}} {idle:.6}"
                );
                let _ = writeln!(
                    b,
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"user\"}} {user:.6}"
                );
            }
            Reply::text(&b)
        });
        Ok(CpuHost {
            exporter: Exporter::start_making(addr, make)?,
            state,
            made,
        })
    }

    /// When each body was made (it is written right after) and the `user` value it
    /// carries, as written.
    pub fn made(&self) -> Vec<(Instant, String)> {
        self.made.lock().unwrap().clone()
    }

    /// Switches the load: busy is 98% non-idle on every CPU, else 5%.
    pub fn set_busy(&self, busy: bool) {
        let mut s = self.state.lock().unwrap();
        let (idle, user) = s.now();
        *s = CpuState {
            idle,
            user,
            since: Instant::now(),
            busy,
        };
    }
}

/// cAdvisor's answer now: two named containers and one cgroup without a name.
pub fn cadvisor_reply() -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut b = String::new();
    let containers = [
        ("/docker/a1", "myservice.1.x7", "myservice:1.4"),
        ("/docker/b2", "myservice.2.k3", "myservice:1.4"),
        ("/system.slice/sshd.service", "", ""),
    ];
    for (family, kind, help) in [
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed in seconds.",
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set in bytes.",
        ),
        (
            "container_last_seen",
            "gauge",
            "Last time a container was seen by the exporter",
        ),
        (
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds.",
        ),
    ] {
        let _ = writeln!(b, "# HELP {family} {help}\n# TYPE {family} {kind}");
        for (i, (id, name, image)) in containers.iter().enumerate() {
            let value = match family {
                "container_last_seen" => now as f64,
                "container_start_time_seconds" => 1_700_000_000.0 + i as f64,
                "container_memory_working_set_bytes" => 50e6 * (i + 1) as f64,
                _ => 12.5 * (i + 1) as f64,
            };
            let _ = writeln!(
                b,
                "{family}{{id=\"{id}\",image=\"{image}\",name=\"{name}\"}} {value}"
            );
        }
    }
    Reply::text(&b)
}

/// A cAdvisor stand-in on `addr`.
pub fn start_cadvisor(addr: SocketAddr) -> std::io::Result<Exporter> {
    Exporter::start_making(addr, Arc::new(cadvisor_reply))
}
