//! Prometheus's command line (`prometheus --help` of the Debian package, 2.42, which
//! `.ci/test` installs): every flag it lists is known to promflow — listed by
//! `promflow --help`, accepted with a valid value (booleans also as kingpin's
//! `--no-flag`), and in README's flag table — so a unit file or container command
//! written for Prometheus starts promflow. Refused flags stop the server with a message
//! naming them; no-op flags are logged once; the official image's command line
//! serves and reloads; the connection flags and CORS behave as in Prometheus (checked
//! on both).

mod common;

use common::http::{self, HttpResponse};
use common::{
    combined_output, free_port, repo_root, require_peer, run_command, run_promflow, wait_until,
    Peer, Prometheus, Promflow, PROMETHEUS_BIN,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// One flag of `prometheus --help`: its name and, for a flag taking a value, a valid
/// one (its default, or an example for a placeholder such as `<URL>`).
struct Flag {
    name: String,
    value: Option<String>,
}

fn prometheus_flags() -> Vec<Flag> {
    require_peer(PROMETHEUS_BIN, "prometheus");
    let mut cmd = Command::new(PROMETHEUS_BIN);
    cmd.arg("--help");
    let out = combined_output(&run_command(cmd, None, common::COMMAND_TIMEOUT));
    let mut flags = Vec::new();
    for line in out.lines() {
        // Flags start in the first columns; descriptions are indented further.
        let indent = line.len() - line.trim_start().len();
        if indent > 8 {
            continue;
        }
        let line = line.trim_start();
        // `-h, --help …`, `--web.listen-address="0.0.0.0:9090"`, `--enable-feature= ...`
        let Some(at) = line.find("--").filter(|_| line.starts_with('-')) else {
            continue;
        };
        let spec = line[at + 2..].split("  ").next().unwrap_or_default();
        let (name, value) = match spec.split_once('=') {
            None => (spec.trim().to_string(), None),
            Some((name, default)) => {
                let default = default.trim().trim_matches('"');
                let example = match default {
                    "" | "..." => "promql-at-modifier".to_string(),
                    // `<URL>`, `STORAGE.TSDB.RETENTION`: a placeholder, not a default.
                    d if d.starts_with('<')
                        || (d.chars().any(|c| c.is_ascii_uppercase())
                            && d.chars()
                                .all(|c| c.is_ascii_uppercase() || ".-_".contains(c))) =>
                    {
                        example_value(name)
                    }
                    d => d.to_string(),
                };
                (name.to_string(), Some(example))
            }
        };
        flags.push(Flag { name, value });
    }
    assert!(flags.len() > 40, "too few flags read from:\n{out}");
    flags
}

/// A valid value for a flag whose help shows a placeholder instead of a default.
fn example_value(name: &str) -> String {
    match name {
        "web.external-url" => "http://localhost:9090/",
        "web.route-prefix" => "/",
        "web.user-assets" => "/srv/assets",
        "storage.tsdb.retention.size" => "1GB",
        "storage.remote.flush-deadline" => "1m",
        n if n.contains("retention") => "15d",
        other => panic!("no example value for --{other}"),
    }
    .to_string()
}

fn minimal_config() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "scrape_configs: []\n").unwrap();
    file
}

#[test]
fn every_prometheus_flag_is_known_to_promflow() {
    let flags = prometheus_flags();
    let help = combined_output(&run_promflow(&["--help"]));
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let config = minimal_config();
    let config = config.path().to_str().unwrap();
    let mut unknown = Vec::new();
    for flag in &flags {
        let dashed = format!("--{}", flag.name);
        if !help.contains(&dashed) {
            unknown.push(format!("{dashed}: not in promflow --help"));
        }
        if matches!(flag.name.as_str(), "help" | "version") {
            continue;
        }
        let in_table = readme
            .lines()
            .any(|l| l.starts_with("| ") && l.contains(&format!("`{dashed}`")));
        if !in_table {
            unknown.push(format!("{dashed}: not in README's flag table"));
        }
        let forms: Vec<Vec<String>> = match &flag.value {
            // kingpin's two spellings of a value.
            Some(v) => vec![
                vec![format!("{dashed}={v}")],
                vec![dashed.clone(), v.clone()],
            ],
            None => vec![vec![dashed.clone()], vec![format!("--no-{}", flag.name)]],
        };
        for form in forms {
            let mut args: Vec<&str> = form.iter().map(String::as_str).collect();
            args.extend(["check", "config", config]);
            let out = run_promflow(&args);
            if !out.status.success() {
                unknown.push(format!("{form:?}: {}", combined_output(&out)));
            }
        }
    }
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
}

#[test]
fn listen_address_takes_gos_forms() {
    let config = minimal_config();
    let config = config.path().to_str().unwrap();
    for address in [":9090", "localhost:9090", "127.0.0.1:9090", "[::1]:9090"] {
        let flag = format!("--web.listen-address={address}");
        let out = run_promflow(&[&flag, "check", "config", config]);
        assert!(out.status.success(), "{flag}: {}", combined_output(&out));
    }
}

/// Runs the promflow server with `args`, expecting it to refuse to start.
fn refused(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let config = minimal_config();
    let mut cmd = Command::new(common::promflow_bin());
    cmd.arg(format!("--config.file={}", config.path().display()))
        .arg(format!("--storage.tsdb.path={}", data.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .args(args);
    let out = run_command(cmd, None, Duration::from_secs(20));
    assert!(!out.status.success(), "{args:?} started");
    combined_output(&out)
}

#[test]
fn refused_flags_stop_the_server_naming_the_flag_and_why() {
    let out = refused(&["--storage.agent.path=/var/lib/agent"]);
    assert!(
        out.contains("--storage.agent.path") && out.contains("agent mode"),
        "{out}"
    );
    let out =
        refused(&["--enable-feature=exemplar-storage,native-histograms,type-and-unit-labels"]);
    assert!(
        out.contains("--enable-feature=type-and-unit-labels")
            && out.contains("__type__")
            && !out.contains("exemplar-storage:")
            && !out.contains("native-histograms:"),
        "{out}"
    );
    let out = refused(&["--agent"]);
    assert!(out.contains("--agent"), "{out}");
}

/// The official Prometheus image's command line (`prom/prometheus`:
/// `--config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus
/// --web.console.libraries=/usr/share/prometheus/console_libraries
/// --web.console.templates=/usr/share/prometheus/consoles`, paths in a temp dir; the
/// harness gives `--config.file` and `--web.listen-address`) plus
/// `--web.enable-lifecycle`: promflow serves, logs each no-op flag once, and reloads.
#[test]
fn the_official_image_command_line_serves_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    let args = [
        format!("--storage.tsdb.path={}", path("prometheus")),
        format!("--web.console.libraries={}", path("console_libraries")),
        format!("--web.console.templates={}", path("consoles")),
        "--web.enable-lifecycle".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &args);
    assert_eq!(promflow.get("/-/healthy").status, 200);
    let log = promflow.log();
    for flag in ["--web.console.libraries", "--web.console.templates"] {
        assert_eq!(
            log.matches(&format!("{flag} is accepted")).count(),
            1,
            "{flag} logged once:\n{log}"
        );
    }
    promflow.write_config(
        "scrape_configs:\n  - job_name: added\n    static_configs:\n      - targets: ['127.0.0.1:9']\n",
    );
    let reload = promflow.reload();
    assert_eq!(reload.status, 200, "{reload:?}");
    let targets = promflow.get_ok("/api/v1/targets");
    assert!(targets.contains("\"added\""), "{targets}");
    assert!(
        dir.path().join("prometheus").is_dir(),
        "storage under --storage.tsdb.path"
    );
}

/// `--web.max-connections=1`: while one connection is open, the next is not served.
fn check_max_connections(peer: &Peer) {
    let held = TcpStream::connect(peer.addr()).unwrap();
    // Let the server accept the first connection.
    std::thread::sleep(Duration::from_millis(300));
    let mut second = TcpStream::connect(peer.addr()).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    second
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        second.read(&mut buf).is_err(),
        "answered while the only connection was taken"
    );
    drop(held);
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = second
        .read(&mut buf)
        .expect("answered once the first closed");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}

/// `--web.read-timeout=1s`: an idle connection is closed after about a second.
fn check_read_timeout(peer: &Peer) {
    let mut idle = TcpStream::connect(peer.addr()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?} ({n} bytes)"
    );
}

#[test]
fn connection_flags_behave_like_prometheus() {
    let args = ["--web.read-timeout=1s"];
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &args);
    let prometheus = Prometheus::start_with_args("scrape_configs: []\n", &args);
    for peer in [&*promflow, &*prometheus] {
        check_read_timeout(peer);
    }
    drop((promflow, prometheus));
    let args = ["--web.max-connections=1"];
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &args);
    let prometheus = Prometheus::start_with_args("scrape_configs: []\n", &args);
    for peer in [&*promflow, &*prometheus] {
        check_max_connections(peer);
    }
}

fn get_with_origin(peer: &Peer, method: &str, path: &str, origin: &str) -> HttpResponse {
    let url = peer.url(path);
    let (host, rest) = url.trim_start_matches("http://").split_once('/').unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} /{rest} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    http::parse_response(&raw).unwrap()
}

/// The CORS headers of a response, sorted.
fn cors(resp: &HttpResponse) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = resp
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-") || k == "vary")
        .cloned()
        .collect();
    h.sort();
    h
}

#[test]
fn cors_and_route_prefix_like_prometheus() {
    let args = [
        r"--web.cors.origin=https?://(a|b)\.example",
        "--web.external-url=http://localhost:9090/prom/",
    ];
    // The harness asks for readiness under the prefix.
    let promflow = Promflow::start_with_args("scrape_configs: []\n", &args);
    let prometheus = Prometheus::start_with_args("scrape_configs: []\n", &args);
    for (method, path, origin) in [
        ("GET", "/prom/api/v1/query?query=1", "https://a.example"),
        ("GET", "/prom/api/v1/query?query=1", "https://c.example"),
        ("OPTIONS", "/prom/api/v1/query", "http://b.example"),
        ("GET", "/prom/api/v1/labels", "https://b.example"),
    ] {
        let ours = get_with_origin(&promflow, method, path, origin);
        let theirs = get_with_origin(&prometheus, method, path, origin);
        assert_eq!(ours.status, theirs.status, "{method} {path}");
        assert_eq!(cors(&ours), cors(&theirs), "{method} {path} from {origin}");
    }
    // Under the prefix; `/` redirects to it.
    for path in ["/prom/-/healthy", "/-/healthy", "/"] {
        let ours = http::get(&promflow.url(path)).unwrap();
        let theirs = http::get(&prometheus.url(path)).unwrap();
        assert_eq!(ours.status, theirs.status, "{path}");
        assert_eq!(ours.header("location"), theirs.header("location"), "{path}");
    }
}

#[test]
fn log_format_json_and_queue_capacity() {
    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            "--log.format=json",
            "--alertmanager.notification-queue-capacity=77",
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || promflow
        .log()
        .contains("promflow is ready")));
    let log = promflow.log();
    let ready = log
        .lines()
        .find(|l| l.contains("promflow is ready"))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(ready).unwrap_or_else(|e| panic!("{e}: {ready}"));
    assert_eq!(v["level"], "info", "{ready}");
    assert_eq!(v["msg"], "promflow is ready", "{ready}");
    assert!(
        v["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ready}"
    );
    assert_eq!(
        promflow
            .metrics()
            .sum("prometheus_notifications_queue_capacity"),
        Some(77.0)
    );
}

/// Prometheus 3's `--enable-feature=auto-reload-config`: a changed config file is
/// applied without SIGHUP or `/-/reload`.
#[test]
fn auto_reload_config_applies_a_changed_file() {
    let promflow = Promflow::start_with_args(
        "scrape_configs: []\n",
        &[
            "--enable-feature=auto-reload-config",
            "--config.auto-reload-interval=1s",
        ],
    );
    promflow.write_config(
        "scrape_configs:\n  - job_name: appeared\n    static_configs:\n      - targets: ['127.0.0.1:9']\n",
    );
    assert!(
        wait_until(Duration::from_secs(15), || promflow
            .get_ok("/api/v1/targets")
            .contains("\"appeared\"")),
        "not reloaded:\n{}",
        promflow.log()
    );
}
