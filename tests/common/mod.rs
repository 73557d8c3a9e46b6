//! Test harness: starts promflow and REAL peers (Prometheus, node_exporter) on
//! 127.0.0.1 with free ports, and runs promtool.
//!
//! Each peer runs in its own temporary directory, with its stdout and stderr in
//! `<dir>/output.log`; a peer is killed through its own child handle when its value
//! is dropped (never by name). If a test panics while a peer is alive, the tail of
//! that peer's log is printed. Every wait is bounded.
//!
//! The peers come from Debian packages that `.ci/run` installs; a missing binary is a
//! panic that says how to install it, never a silent skip.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

pub mod alertmanager;
pub mod dnsmasq;
pub mod exporter;
pub mod exposition;
pub mod fleet;
pub mod http;
pub mod moto;
pub mod notify_pair;
pub mod protobuf;
pub mod proxy;
pub mod receiver;
pub mod reference;
pub mod remote_write;
pub mod smtp;
pub mod stream_client;
pub mod tls;

use std::fs::{self, File};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use exposition::Exposition;
use http::HttpResponse;
use tempfile::TempDir;

/// How long a peer may take to become ready.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a helper command (promtool, `promflow check`) may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `wait_until` polls.
const POLL: Duration = Duration::from_millis(100);
/// How many ports to try when a freshly found port is taken before the peer binds it.
const PORT_ATTEMPTS: usize = 5;

pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";
pub const PROMTOOL_BIN: &str = "/usr/bin/promtool";
pub const NODE_EXPORTER_BIN: &str = "/usr/bin/prometheus-node-exporter";
pub const BLACKBOX_EXPORTER_BIN: &str = "/usr/bin/prometheus-blackbox-exporter";

/// The promflow binary built by Cargo for this test run.
pub fn promflow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_promflow"))
}

/// The repository root (where `queries/` and `deploy/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `f` every 100ms until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || f().then_some(())).is_some()
}

/// Polls `f` every 100ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Wall-clock time in ms since the epoch (sample timestamps in tests).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A timestamp in ms as the API's seconds parameter (`1700000000.123`).
pub fn api_seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0, then released).
/// Another process may take it before the peer binds it: `spawn_peer` retries.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The Python of the repository's venv that can import `module` (aiosmtpd,
/// jsonschema, …): `$SMTP_PYTHON` (set by `.ci/test`), else `<repo>/.venv/bin/python`;
/// a panic with the install command when it cannot.
pub fn venv_python(module: &str) -> PathBuf {
    let python = std::env::var_os("SMTP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        panic!(
            "{module} is missing for {}: run `bash .ci/test`, or `python3 -m venv .venv && \
             .venv/bin/pip install {module}` in the repository root, or set SMTP_PYTHON",
            python.display()
        );
    }
    python
}

/// A port that was free a moment ago on every one of `ips` (loopback addresses), for
/// peers that must share a port on several addresses (Swarm tasks, EC2 hosts).
pub fn free_port_on(ips: &[std::net::Ipv4Addr]) -> u16 {
    for _attempt in 0..20 {
        let port = free_port();
        let bound: Result<Vec<TcpListener>, _> = ips
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)))
            .collect();
        if bound.is_ok() {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Panics with an install hint unless `bin` exists.
pub fn require_peer(bin: &str, package: &str) {
    if !Path::new(bin).exists() {
        panic!(
            "real peer {bin} is missing: run `bash .ci/test` (installs all peers, then tests) or \
             `apt-get install --no-install-recommends {package}`"
        );
    }
}

/// A running process on a loopback port, owned through its child handle.
pub struct Peer {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    config_path: Option<PathBuf>,
    // Dropped after `child` is killed (see `Drop`), so the process never loses its files.
    dir: TempDir,
}

impl Peer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What the process has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET path`, panicking on a transport error (the peer is expected to be up).
    pub fn get(&self, path: &str) -> HttpResponse {
        http::get(&self.url(path))
            .unwrap_or_else(|e| panic!("{}: GET {path}: {e}\n{}", self.name, self.log_tail()))
    }

    /// `GET path`, panicking unless the answer is 200; returns the body.
    pub fn get_ok(&self, path: &str) -> String {
        let resp = self.get(path);
        assert_eq!(
            resp.status, 200,
            "{}: GET {path} answered {}: {}",
            self.name, resp.status, resp.body
        );
        resp.body
    }

    /// The instant query's vector result at `at_ms` (now when `None`), as sorted
    /// `{labels} "value"` lines.
    pub fn vector_lines(&self, query: &str, at_ms: Option<i64>) -> Vec<String> {
        let at = at_ms.map(|ms| format!("{}.{:03}", ms / 1000, ms % 1000));
        let mut params = vec![("query", query)];
        if let Some(at) = &at {
            params.push(("time", at));
        }
        let body = self.get_ok(&http::with_query("/api/v1/query", &params));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut out: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: {query}: not a vector: {body}", self.name))
            .iter()
            .map(|r| format!("{} {}", r["metric"], r["value"][1]))
            .collect();
        out.sort();
        out
    }

    /// `POST path` with an empty body, panicking on a transport error.
    pub fn post(&self, path: &str) -> HttpResponse {
        http::post(&self.url(path), None, &[])
            .unwrap_or_else(|e| panic!("{}: POST {path}: {e}\n{}", self.name, self.log_tail()))
    }

    /// Sends SIGHUP to the process (by its PID, through the shell's `kill` builtin).
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// Sends signal `name` (`HUP`, `STOP`, `CONT`, …) to the process, by its PID.
    pub fn signal(&self, name: &str) {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "kill -\"$1\" \"$2\"",
            "sh",
            name,
            &self.pid().to_string(),
        ]);
        let out = run_command(cmd, None, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "kill -{name}: {}",
            combined_output(&out)
        );
    }

    /// `GET /api/v1/query?query=expr` at the server's current time; returns `data`
    /// (`{"resultType": …, "result": …}`), panicking unless the status is success.
    pub fn query(&self, expr: &str) -> serde_json::Value {
        self.api_query(&[("query", expr)])
    }

    /// Like `query`, evaluated at `time` (Unix seconds, millisecond precision).
    pub fn query_at(&self, expr: &str, time_ms: i64) -> serde_json::Value {
        let time = format!(
            "{}.{:03}",
            time_ms.div_euclid(1000),
            time_ms.rem_euclid(1000)
        );
        self.api_query(&[("query", expr), ("time", &time)])
    }

    /// Whether the newest sample of the one series `metric` selects, read 1s after
    /// `ts_ms`, is at `ts_ms` (a step with explicit timestamps has been stored).
    pub fn stored_at(&self, metric: &str, ts_ms: i64) -> bool {
        let expr = format!("timestamp({metric})");
        self.query_at(&expr, ts_ms + 1_000)["result"][0]["value"][1]
            .as_str()
            .map(|v| v.parse::<f64>().unwrap() * 1000.0)
            == Some(ts_ms as f64)
    }

    fn api_query(&self, params: &[(&str, &str)]) -> serde_json::Value {
        let resp = self.get(&http::with_query("/api/v1/query", params));
        let v: serde_json::Value = serde_json::from_str(&resp.body)
            .unwrap_or_else(|e| panic!("query {params:?}: bad JSON ({e}): {}", resp.body));
        assert_eq!(
            v["status"], "success",
            "query {params:?} answered {}: {}",
            resp.status, resp.body
        );
        v["data"].clone()
    }

    /// `GET /federate?match[]=m1&match[]=m2…` as text (panics unless 200).
    pub fn federate_body(&self, matchers: &[&str]) -> String {
        let params: Vec<(&str, &str)> = matchers.iter().map(|m| ("match[]", *m)).collect();
        self.get_ok(&http::with_query("/federate", &params))
    }

    /// `GET /federate?match[]=…`, parsed.
    pub fn federate(&self, matchers: &[&str]) -> Exposition {
        exposition::parse(&self.federate_body(matchers))
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Exposition {
        exposition::parse(&self.get_ok("/metrics"))
    }

    /// The config file the process was started with (promflow and Prometheus only).
    pub fn config_path(&self) -> &Path {
        self.config_path
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no config file", self.name))
    }

    /// Replaces the config file (does not reload: see `reload` and `sighup`).
    pub fn write_config(&self, config_yaml: &str) {
        fs::write(self.config_path(), config_yaml).expect("write config");
    }

    /// `POST /-/reload`.
    pub fn reload(&self) -> HttpResponse {
        self.post("/-/reload")
    }

    /// Stops the process with SIGTERM (a clean shutdown) and waits for it to exit;
    /// the log so far is kept in `output-before-restart.log` (a restart overwrites
    /// `output.log`).
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(STARTUP_TIMEOUT);
        assert!(
            status.is_some(),
            "{} did not exit within {STARTUP_TIMEOUT:?} of SIGTERM\n{}",
            self.name,
            self.log_tail()
        );
        let _ = fs::copy(&self.log_path, self.dir().join("output-before-restart.log"));
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_for(timeout, || self.child.try_wait().ok().flatten())
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- last lines of {} output ({}) ---\n{}",
            self.name,
            self.log_path.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// Starts `bin` in `dir` on a free loopback port and waits until `GET ready_path`
/// answers 200. `args(dir, addr)` gives the command line for a chosen address. If the
/// process dies complaining that the address is in use, it is retried on another port.
fn spawn_peer(
    name: &'static str,
    bin: &Path,
    dir: TempDir,
    ready_path: &str,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> Peer {
    spawn_peer_answering(name, bin, dir, ready_path, 200, args)
}

/// `spawn_peer`, ready once `GET ready_path` answers `ready_status` (401 for a peer
/// that requires authentication everywhere).
fn spawn_peer_answering(
    name: &'static str,
    bin: &Path,
    dir: TempDir,
    ready_path: &str,
    ready_status: u16,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> Peer {
    let what = format!("answer {ready_status} on {ready_path}");
    spawn_peer_until(
        name,
        bin,
        dir,
        &what,
        answers(ready_path, ready_status),
        args,
    )
}

/// Readiness: `GET ready_path` answers `status`.
fn answers(ready_path: &str, status: u16) -> impl Fn(SocketAddr) -> bool + '_ {
    move |addr| matches!(http::get(&format!("http://{addr}{ready_path}")), Ok(r) if r.status == status)
}

/// Like `spawn_peer`, for a peer that serves only https: ready once a plain-HTTP
/// request gets Go's "Client sent an HTTP request to an HTTPS server." answer.
fn spawn_https_peer(
    name: &'static str,
    bin: &Path,
    dir: TempDir,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> Peer {
    spawn_peer_until(name, bin, dir, "listen for https", serves_https, args)
}

/// Whether `addr` serves https: a plain-HTTP request gets Go's "Client sent an HTTP
/// request to an HTTPS server." answer.
pub fn serves_https(addr: SocketAddr) -> bool {
    matches!(http::get(&format!("http://{addr}/")),
        Ok(r) if r.status == 400 && r.body.contains("HTTPS server"))
}

/// `spawn_peer` with the readiness check `ready_check(addr)`, described by `ready_what`.
fn spawn_peer_until(
    name: &'static str,
    bin: &Path,
    dir: TempDir,
    ready_what: &str,
    ready_check: impl Fn(SocketAddr) -> bool,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> Peer {
    let (child, addr) = launch(name, bin, dir.path(), ready_what, ready_check, args);
    Peer {
        name,
        child,
        addr,
        log_path: dir.path().join("output.log"),
        config_path: None,
        dir,
    }
}

/// Starts `bin` in `dir` (see [`spawn_peer`]) and returns its child and address once
/// `ready_check(addr)` holds.
fn launch(
    name: &'static str,
    bin: &Path,
    dir: &Path,
    ready_what: &str,
    ready_check: impl Fn(SocketAddr) -> bool,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> (Child, SocketAddr) {
    let any_port = || ([127, 0, 0, 1], free_port()).into();
    launch_on(name, bin, dir, any_port, ready_what, ready_check, args)
}

/// [`launch`] on the addresses `pick` gives (a fixed one: no retry on another port).
fn launch_on(
    name: &'static str,
    bin: &Path,
    dir: &Path,
    pick: impl Fn() -> SocketAddr,
    ready_what: &str,
    ready_check: impl Fn(SocketAddr) -> bool,
    args: impl Fn(&Path, SocketAddr) -> Vec<String>,
) -> (Child, SocketAddr) {
    let log_path = dir.join("output.log");
    let read_log = || fs::read_to_string(&log_path).unwrap_or_default();
    let mut last_log = String::new();
    for _attempt in 0..PORT_ATTEMPTS {
        let addr = pick();
        let log = File::create(&log_path).expect("create peer log");
        let mut child = Command::new(bin)
            .args(args(dir, addr))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", bin.display()));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut exit_status = None;
        let ready = loop {
            if let Ok(Some(status)) = child.try_wait() {
                exit_status = Some(status);
                break false;
            }
            if ready_check(addr) {
                break true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} did not {ready_what} within {STARTUP_TIMEOUT:?}; \
                     its output:\n{}",
                    read_log()
                );
            }
            std::thread::sleep(POLL);
        };
        if ready {
            return (child, addr);
        }
        // The process exited before it was ready: retry only if its port was taken.
        last_log = read_log();
        let lower = last_log.to_ascii_lowercase();
        if !lower.contains("address already in use") && !lower.contains("addrinuse") {
            panic!(
                "{name} ({}) exited before it was ready ({exit_status:?}); its output:\n{last_log}",
                bin.display()
            );
        }
    }
    panic!("{name}: no free port after {PORT_ATTEMPTS} attempts; last output:\n{last_log}");
}

/// Runs a command with optional stdin, killing it if it outlives `timeout`.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    // Feed stdin and drain stdout/stderr on threads so a large body cannot deadlock.
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// stdout and stderr of a finished command, as one text.
pub fn combined_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// promflow

/// A running promflow on a free loopback port, with its config and data in a temp dir.
pub struct Promflow {
    peer: Peer,
    extra_args: Vec<String>,
}

impl std::ops::Deref for Promflow {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl std::ops::DerefMut for Promflow {
    fn deref_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }
}

impl Promflow {
    /// Writes `config_yaml` to `<tmp>/promflow.yml` and starts promflow on it,
    /// returning once `/-/ready` answers 200.
    pub fn start(config_yaml: &str) -> Promflow {
        Self::start_with_args(config_yaml, &[])
    }

    /// Like `start`, with extra command-line flags (e.g. `--log.level=debug`).
    pub fn start_with_args(config_yaml: &str, extra_args: &[&str]) -> Promflow {
        Self::launch(PromflowLaunch {
            config_yaml,
            extra_args,
            ..PromflowLaunch::default()
        })
    }

    /// Starts promflow as `launch` says; returns once `/-/ready` answers 200.
    pub fn launch(launch: PromflowLaunch) -> Promflow {
        let bin = promflow_bin();
        assert!(
            bin.exists(),
            "promflow binary {} is missing (cargo builds it for integration tests)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("promflow-test-")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("promflow.yml");
        fs::write(&config_path, launch.config_yaml).expect("write promflow config");
        let mut extra: Vec<String> = launch.extra_args.iter().map(|s| s.to_string()).collect();
        if let Some(data) = &launch.data_dir {
            extra.push(format!("--storage.tsdb.path={}", data.display()));
        }
        let (what, check) = ready_check(&extra);
        let mut peer = match (launch.file_size_limit_kib, launch.listen) {
            (None, Some(addr)) => {
                let (child, addr) = launch_on(
                    "promflow",
                    &bin,
                    dir.path(),
                    || addr,
                    &what,
                    &*check,
                    |d, a| promflow_args(d, a, &extra),
                );
                Peer {
                    name: "promflow",
                    child,
                    addr,
                    log_path: dir.path().join("output.log"),
                    config_path: None,
                    dir,
                }
            }
            (None, None) => spawn_peer_until("promflow", &bin, dir, &what, &*check, |d, a| {
                promflow_args(d, a, &extra)
            }),
            // bash's `ulimit -f` counts KiB; SIGXFSZ is ignored so a write past the
            // limit fails with EFBIG instead of killing the process. (A restart runs
            // without the limit.)
            (Some(kib), _) => spawn_peer_until(
                "promflow",
                Path::new("/bin/bash"),
                dir,
                &what,
                &*check,
                |d, a| {
                    let mut wrapped = vec![
                        "-c".to_string(),
                        format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""),
                        bin.display().to_string(),
                    ];
                    wrapped.extend(promflow_args(d, a, &extra));
                    wrapped
                },
            ),
        };
        peer.config_path = Some(config_path);
        Promflow {
            peer,
            extra_args: extra,
        }
    }

    /// [`Promflow::kill_and_restart`], by value.
    pub fn restart(mut self) -> Promflow {
        self.kill_and_restart();
        self
    }

    /// Kills promflow with SIGKILL (its own child handle) and starts it again on the
    /// same directory (config, storage) and flags, on a new port; the log so far is
    /// kept in `output-before-restart.log`.
    pub fn kill_and_restart(&mut self) {
        self.kill_and_restart_adding(&[]);
    }

    /// Stops promflow with SIGTERM (a clean shutdown), waits for it to exit and
    /// starts it again on the same directory (config, storage) and flags, on a new
    /// port.
    pub fn terminate_and_restart(&mut self) {
        self.peer.terminate();
        self.relaunch();
    }

    /// [`Promflow::kill_and_restart`] with `more` flags added from now on (e.g. a
    /// short `--storage.tsdb.min-block-duration`, so that the restart cuts the head
    /// into blocks).
    pub fn kill_and_restart_adding(&mut self, more: &[&str]) {
        self.extra_args.extend(more.iter().map(|s| s.to_string()));
        let _ = self.peer.child.kill();
        let _ = self.peer.child.wait();
        let dir = self.peer.dir.path().to_path_buf();
        let _ = fs::copy(
            dir.join("output.log"),
            dir.join("output-before-restart.log"),
        );
        self.relaunch();
    }

    /// Starts promflow again (its process has ended) on the same directory and flags.
    fn relaunch(&mut self) {
        let dir = self.peer.dir.path().to_path_buf();
        let extra = self.extra_args.clone();
        let (what, check) = ready_check(&extra);
        let (child, addr) = launch("promflow", &promflow_bin(), &dir, &what, &*check, |d, a| {
            promflow_args(d, a, &extra)
        });
        self.peer.child = child;
        self.peer.addr = addr;
    }
}

/// When a server started with `args` is up: it serves https when its
/// `--web.config.file` names a `cert_file` (`tls_server_config`), else `/-/ready`
/// answers [`ready_status`].
fn ready_check(args: &[String]) -> (String, Box<dyn Fn(SocketAddr) -> bool>) {
    let serves_tls = args
        .iter()
        .filter_map(|a| a.strip_prefix("--web.config.file="))
        .any(|file| fs::read_to_string(file).is_ok_and(|text| text.contains("cert_file:")));
    if serves_tls {
        return ("listen for https".to_string(), Box::new(serves_https));
    }
    let status = ready_status(args);
    let ready = ready_path(args);
    (
        format!("answer {status} on {ready}"),
        Box::new(move |addr| answers(&ready, status)(addr)),
    )
}

/// What "up" answers: 401 when a web config requires authentication everywhere.
fn ready_status(args: &[String]) -> u16 {
    let requires_auth = args
        .iter()
        .filter_map(|a| a.strip_prefix("--web.config.file="))
        .any(|file| {
            fs::read_to_string(file).map_or(true, |text| {
                text.contains("basic_auth_users:") || text.contains("bearer_tokens:")
            })
        });
    if requires_auth {
        401
    } else {
        200
    }
}

/// Where readiness is asked: `/-/ready` under the route prefix that
/// `--web.route-prefix` or `--web.external-url` in `args` give (Prometheus's rule).
fn ready_path(args: &[String]) -> String {
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
    };
    let prefix =
        promflow::api::server::route_prefix(flag("web.route-prefix"), flag("web.external-url"))
            .expect("valid route prefix flags");
    format!("{}/-/ready", prefix.trim_end_matches('/'))
}

/// The command line: config in `dir`, storage in `<dir>/data` unless `extra` names
/// another `--storage.tsdb.path`.
fn promflow_args(dir: &Path, addr: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        format!("--config.file={}", dir.join("promflow.yml").display()),
        format!("--web.listen-address={addr}"),
    ];
    if !extra.iter().any(|a| a.starts_with("--storage.tsdb.path")) {
        args.push(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ));
    }
    args.extend(extra.iter().cloned());
    args
}

/// How [`Promflow::launch`] starts promflow.
#[derive(Default)]
pub struct PromflowLaunch<'a> {
    /// The config file's text.
    pub config_yaml: &'a str,
    /// Extra command-line flags.
    pub extra_args: &'a [&'a str],
    /// `--storage.tsdb.path` (default: `data` in the peer's temp dir, gone with it).
    pub data_dir: Option<PathBuf>,
    /// A file size limit (`ulimit -f`, KiB) on the process: writes past it fail.
    pub file_size_limit_kib: Option<u64>,
    /// The address to listen on (default: a free loopback port), e.g. one a cluster's
    /// hostfile names before the process starts.
    pub listen: Option<SocketAddr>,
}

/// Runs the promflow binary with `args` (e.g. `check config FILE`) and waits for it.
pub fn run_promflow(args: &[&str]) -> Output {
    let mut cmd = Command::new(promflow_bin());
    cmd.args(args);
    run_command(cmd, None, COMMAND_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Prometheus

/// A real Prometheus (Debian package `prometheus`) on a free loopback port.
pub struct Prometheus {
    peer: Peer,
    /// The binary started (`prometheus`, or `unshare` around it).
    bin: &'static str,
    /// The command line without the per-directory and address flags.
    wrapper: Vec<String>,
    extra: Vec<String>,
    lifecycle: bool,
}

impl std::ops::Deref for Prometheus {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl std::ops::DerefMut for Prometheus {
    fn deref_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }
}

impl Prometheus {
    /// Starts Prometheus on `config_yaml` with its TSDB in a temp dir and
    /// `--web.enable-lifecycle` (unless `--no-web.enable-lifecycle` is among the extra
    /// flags); returns once `/-/ready` answers 200.
    pub fn start(config_yaml: &str) -> Prometheus {
        Self::start_with_args(config_yaml, &[])
    }

    /// Like `start`, with extra flags (a `--web.config.file` makes "up" mean 401).
    pub fn start_with_args(config_yaml: &str, extra_args: &[&str]) -> Prometheus {
        Self::start_resolving(config_yaml, extra_args, None)
    }

    /// Like `start_with_args`, resolving names (`dns_sd_configs`) with the DNS server
    /// on port 53 of `nameserver`: Prometheus reads only `/etc/resolv.conf`, so it runs
    /// in a private mount namespace (`unshare --mount`, needs root) where a resolv.conf
    /// naming `nameserver` is bound over `/etc/resolv.conf`. The rest of the machine
    /// keeps its own.
    pub fn start_resolving(
        config_yaml: &str,
        extra_args: &[&str],
        nameserver: Option<std::net::Ipv4Addr>,
    ) -> Prometheus {
        require_peer(PROMETHEUS_BIN, "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("prometheus-test-")
            .tempdir()
            .expect("temp dir");
        fs::write(dir.path().join("prometheus.yml"), config_yaml).expect("write config");
        let config_path = dir.path().join("prometheus.yml");
        // `--no-web.enable-lifecycle` drops the harness's `--web.enable-lifecycle`:
        // kingpin refuses a flag given twice.
        let lifecycle = !extra_args.contains(&"--no-web.enable-lifecycle");
        let extra: Vec<String> = extra_args
            .iter()
            .filter(|a| **a != "--no-web.enable-lifecycle")
            .map(|a| a.to_string())
            .collect();
        let (what, check) = ready_check(&extra);
        let mut wrapper: Vec<String> = Vec::new();
        if let Some(ip) = nameserver {
            let resolv = dir.path().join("resolv.conf");
            fs::write(&resolv, format!("nameserver {ip}\n")).expect("write resolv.conf");
            wrapper = [
                "--mount",
                "--",
                "/bin/sh",
                "-c",
                "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
            ]
            .map(String::from)
            .to_vec();
            wrapper.push(resolv.display().to_string());
            wrapper.push(PROMETHEUS_BIN.to_string());
        }
        let bin = if wrapper.is_empty() {
            PROMETHEUS_BIN
        } else {
            "/usr/bin/unshare"
        };
        let mut peer = spawn_peer_until(
            "prometheus",
            Path::new(bin),
            dir,
            &what,
            &*check,
            |dir, addr| prometheus_args(&wrapper, lifecycle, &extra, dir, addr),
        );
        peer.config_path = Some(config_path);
        Prometheus {
            peer,
            bin,
            wrapper,
            extra,
            lifecycle,
        }
    }

    /// Stops Prometheus with SIGTERM (a clean shutdown), waits for it to exit and
    /// starts it again on the same directory (config, TSDB) and flags, on a new port.
    pub fn terminate_and_restart(&mut self) {
        self.peer.terminate();
        self.relaunch();
    }

    /// Kills Prometheus with SIGKILL (its own child handle) and starts it again on the
    /// same directory (config, TSDB) and flags, on a new port.
    pub fn kill_and_restart(&mut self) {
        let _ = self.peer.child.kill();
        let _ = self.peer.child.wait();
        self.relaunch();
    }

    /// Starts Prometheus again (its process has ended) on the same directory and flags.
    fn relaunch(&mut self) {
        let (what, check) = ready_check(&self.extra);
        let dir = self.peer.dir.path().to_path_buf();
        let (wrapper, lifecycle, extra) = (&self.wrapper, self.lifecycle, &self.extra);
        let (child, addr) = launch(
            "prometheus",
            Path::new(self.bin),
            &dir,
            &what,
            &*check,
            |d, a| prometheus_args(wrapper, lifecycle, extra, d, a),
        );
        self.peer.child = child;
        self.peer.addr = addr;
    }
}

/// Prometheus's command line in `dir` on `addr`.
fn prometheus_args(
    wrapper: &[String],
    lifecycle: bool,
    extra: &[String],
    dir: &Path,
    addr: SocketAddr,
) -> Vec<String> {
    let mut args = wrapper.to_vec();
    args.extend([
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
        "--log.level=warn".to_string(),
    ]);
    if lifecycle {
        args.push("--web.enable-lifecycle".to_string());
    }
    args.extend(extra.iter().cloned());
    args
}

// ---------------------------------------------------------------------------
// node_exporter

/// A real blackbox exporter (Debian package `prometheus-blackbox-exporter`) on a free
/// loopback port, with the modules of `config_yaml` (written to `<dir>/blackbox.yml`).
pub struct BlackboxExporter {
    peer: Peer,
}

impl std::ops::Deref for BlackboxExporter {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl BlackboxExporter {
    /// Starts it and returns once `/metrics` answers 200.
    pub fn start(config_yaml: &str) -> BlackboxExporter {
        require_peer(BLACKBOX_EXPORTER_BIN, "prometheus-blackbox-exporter");
        let dir = tempfile::Builder::new()
            .prefix("blackbox-exporter-test-")
            .tempdir()
            .expect("temp dir");
        fs::write(dir.path().join("blackbox.yml"), config_yaml).expect("write blackbox config");
        let peer = spawn_peer(
            "blackbox_exporter",
            Path::new(BLACKBOX_EXPORTER_BIN),
            dir,
            "/metrics",
            |dir, addr| {
                vec![
                    format!("--config.file={}", dir.join("blackbox.yml").display()),
                    format!("--web.listen-address={addr}"),
                ]
            },
        );
        BlackboxExporter { peer }
    }
}

/// A real node_exporter (Debian package `prometheus-node-exporter`) on a free loopback port.
pub struct NodeExporter {
    peer: Peer,
}

impl std::ops::Deref for NodeExporter {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl NodeExporter {
    /// Starts node_exporter and returns once `/metrics` answers 200.
    pub fn start() -> NodeExporter {
        require_peer(NODE_EXPORTER_BIN, "prometheus-node-exporter");
        let dir = tempfile::Builder::new()
            .prefix("node-exporter-test-")
            .tempdir()
            .expect("temp dir");
        let peer = spawn_peer(
            "node_exporter",
            Path::new(NODE_EXPORTER_BIN),
            dir,
            "/metrics",
            |_, addr| vec![format!("--web.listen-address={addr}")],
        );
        NodeExporter { peer }
    }

    /// Starts node_exporter on `addr` (a loopback address and port the test chose,
    /// e.g. an EC2 host's private IP) and returns once `/metrics` answers 200.
    pub fn start_on(addr: SocketAddr) -> NodeExporter {
        require_peer(NODE_EXPORTER_BIN, "prometheus-node-exporter");
        let dir = tempfile::Builder::new()
            .prefix("node-exporter-test-")
            .tempdir()
            .expect("temp dir");
        let (child, addr) = launch_on(
            "node_exporter",
            Path::new(NODE_EXPORTER_BIN),
            dir.path(),
            || addr,
            "answer 200 on /metrics",
            answers("/metrics", 200),
            // The systemd collector logs an error per scrape without systemd.
            |_, addr| {
                vec![
                    format!("--web.listen-address={addr}"),
                    "--no-collector.systemd".into(),
                ]
            },
        );
        NodeExporter {
            peer: Peer {
                name: "node_exporter",
                child,
                addr,
                log_path: dir.path().join("output.log"),
                config_path: None,
                dir,
            },
        }
    }

    /// Starts node_exporter serving https only, with `web_config_yaml` (exporter
    /// toolkit's `--web.config.file`: `tls_server_config`, …; paths in it should be
    /// absolute) written to `<dir>/web.yml`; returns once it listens.
    pub fn start_tls(web_config_yaml: &str) -> NodeExporter {
        require_peer(NODE_EXPORTER_BIN, "prometheus-node-exporter");
        let dir = tempfile::Builder::new()
            .prefix("node-exporter-tls-test-")
            .tempdir()
            .expect("temp dir");
        fs::write(dir.path().join("web.yml"), web_config_yaml).expect("write web config");
        let peer = spawn_https_peer(
            "node_exporter",
            Path::new(NODE_EXPORTER_BIN),
            dir,
            |dir, addr| {
                vec![
                    format!("--web.listen-address={addr}"),
                    format!("--web.config.file={}", dir.join("web.yml").display()),
                ]
            },
        );
        NodeExporter { peer }
    }

    /// The exporter's `/metrics` body as text.
    pub fn metrics_body(&self) -> String {
        self.get_ok("/metrics")
    }
}

// ---------------------------------------------------------------------------
// promtool

/// Pipes `body` into `promtool check metrics`; returns (exit status success, stdout+stderr).
///
/// promtool 2.42 exits 1 when the body does not parse ("error while linting: text
/// format parsing error …") and 3 when it parses but has lint problems (one line per
/// problem: `<metric> <problem>`).
pub fn promtool_check_metrics(body: &str) -> (bool, String) {
    require_peer(PROMTOOL_BIN, "prometheus");
    let mut cmd = Command::new(PROMTOOL_BIN);
    cmd.args(["check", "metrics"]);
    let out = run_command(cmd, Some(body.as_bytes()), COMMAND_TIMEOUT);
    (out.status.success(), combined_output(&out))
}

/// Runs `promtool <args>` from `cwd`; returns (exit status success, stdout+stderr).
pub fn promtool(args: &[&str], cwd: &Path) -> (bool, String) {
    require_peer(PROMTOOL_BIN, "prometheus");
    let mut cmd = Command::new(PROMTOOL_BIN);
    cmd.args(args).current_dir(cwd);
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    (out.status.success(), combined_output(&out))
}

/// The nearest-rank `p`th percentile (0–100) of `sorted` (ascending, not empty): the
/// value at rank ⌈p/100 · n⌉, as the latency benches report p50/p99.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// `Authorization: Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A `--web.config.file` in `dir` (`web.yml`) asking for basic authentication of
/// `users` (bcrypt hashes of their passwords); its path.
pub fn write_web_config(dir: &Path, users: &[(&str, &str)]) -> String {
    let mut text = String::from("basic_auth_users:\n");
    for (user, password) in users {
        text.push_str(&format!(
            "  {user}: {}\n",
            bcrypt::hash(password, 4).unwrap()
        ));
    }
    let path = dir.join("web.yml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
