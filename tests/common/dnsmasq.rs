//! A real DNS server for discovery tests: Debian's `dnsmasq` on a free high port of
//! 127.0.0.1, answering only from files and flags the test controls.
//!
//! Started with no system configuration at all (`--conf-file=/dev/null`,
//! `--no-resolv`, `--no-hosts`): A/AAAA records come from an `--addn-hosts` file in
//! the peer's temp dir, which [`Dnsmasq::set_hosts`] rewrites and re-reads (SIGHUP);
//! SRV records come from `--srv-host` flags. Killed through its child handle on drop.

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    combined_output, free_port, require_peer, run_command, COMMAND_TIMEOUT, STARTUP_TIMEOUT,
};

pub const DNSMASQ_BIN: &str = "/usr/sbin/dnsmasq";

pub struct Dnsmasq {
    child: Child,
    ip: Ipv4Addr,
    port: u16,
    hosts_path: PathBuf,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (lines of `/etc/hosts` format) and extra flags
    /// (e.g. `--srv-host=_x._tcp.test,localhost,9100`); returns once it listens.
    pub fn start(hosts: &str, extra_args: &[String]) -> Dnsmasq {
        Self::start_at(Ipv4Addr::LOCALHOST, None, hosts, extra_args)
    }

    /// Like [`Dnsmasq::start`] on port 53 of a random 127.53.x.y address, for
    /// resolvers that cannot be told a port (`/etc/resolv.conf`; needs root).
    pub fn start_port_53(hosts: &str) -> Dnsmasq {
        let n = std::process::id() ^ super::free_port() as u32;
        let ip = Ipv4Addr::new(127, 53, (n >> 8) as u8, (n as u8).max(1));
        Self::start_at(ip, Some(53), hosts, &[])
    }

    /// The address it listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    fn start_at(ip: Ipv4Addr, port: Option<u16>, hosts: &str, extra_args: &[String]) -> Dnsmasq {
        require_peer(DNSMASQ_BIN, "dnsmasq");
        let dir = tempfile::Builder::new()
            .prefix("dnsmasq-test-")
            .tempdir()
            .expect("temp dir");
        // dnsmasq drops root privileges after start; it must still read the file on SIGHUP.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let hosts_path = dir.path().join("hosts");
        let log_path = dir.path().join("output.log");
        write_hosts(&hosts_path, hosts);
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = port.unwrap_or_else(free_port);
            let log = File::create(&log_path).expect("create dnsmasq log");
            let mut child = Command::new(DNSMASQ_BIN)
                .args([
                    "--no-daemon".to_string(),
                    "--conf-file=/dev/null".to_string(),
                    format!("--port={port}"),
                    format!("--listen-address={ip}"),
                    "--bind-interfaces".to_string(),
                    "--no-resolv".to_string(),
                    "--no-hosts".to_string(),
                    "--pid-file=".to_string(),
                    "--log-facility=-".to_string(),
                    "--log-queries".to_string(),
                    format!("--addn-hosts={}", hosts_path.display()),
                ])
                .args(extra_args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn dnsmasq");
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                if let Ok(Some(_)) = child.try_wait() {
                    last_log = log;
                    break;
                }
                if log.contains(&format!("read {}", hosts_path.display())) {
                    return Dnsmasq {
                        child,
                        ip,
                        port,
                        hosts_path,
                        log_path,
                        _dir: dir,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("dnsmasq did not start within {STARTUP_TIMEOUT:?}:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!("dnsmasq exited before it was ready:\n{last_log}");
    }

    /// `<ip>:<port>`, for `--discovery.dns.nameserver`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Replaces the hosts file and makes dnsmasq re-read it (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        write_hosts(&self.hosts_path, hosts);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -HUP \"$1\"", "sh", &self.child.id().to_string()]);
        let out = run_command(cmd, None, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "kill -HUP dnsmasq: {}",
            combined_output(&out)
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn write_hosts(path: &PathBuf, hosts: &str) {
    fs::write(path, hosts).expect("write hosts file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- dnsmasq output ---\n{}", self.log());
        }
    }
}
