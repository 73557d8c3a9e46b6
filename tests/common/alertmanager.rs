//! A real Alertmanager 0.25 (Debian `prometheus-alertmanager`) on loopback — the
//! receiving end for promflow's alerts and the oracle for the built-in notifier — and
//! a webhook receiver that records what Alertmanager delivers and when, and `amtool`,
//! Alertmanager's client, to run against either.
//!
//! Alertmanager runs in its own temp dir with clustering off, its output in
//! `<dir>/output.log`, killed through its own child handle on drop. The webhook is the
//! capture server of [`super::receiver`].

use super::receiver::CaptureServer;
use super::{
    free_port, http, require_peer, run_command, serves_https, wait_until, COMMAND_TIMEOUT,
    STARTUP_TIMEOUT,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

pub const ALERTMANAGER_BIN: &str = "/usr/bin/prometheus-alertmanager";

/// Alertmanager's command-line client, from the same Debian package.
pub const AMTOOL_BIN: &str = "/usr/bin/amtool";

/// Runs `amtool --alertmanager.url=<url> ARGS…`; (success, stdout, stderr).
pub fn amtool(url: &str, args: &[&str]) -> (bool, String, String) {
    require_peer(AMTOOL_BIN, "prometheus-alertmanager");
    let mut cmd = Command::new(AMTOOL_BIN);
    cmd.arg(format!("--alertmanager.url={url}")).args(args);
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What templates see as `.ExternalURL` in Alertmanager's notifications.
pub const EXTERNAL_URL: &str = "http://alertmanager.test";

/// Collects the JSON bodies POSTed to it, with the time each request was read (a
/// [`CaptureServer`] answering 200).
pub struct Webhook {
    pub port: u16,
    server: CaptureServer,
}

impl Webhook {
    pub fn start() -> Webhook {
        let server = CaptureServer::start();
        Webhook {
            port: server.port(),
            server,
        }
    }

    /// Every JSON body so far, with when it came.
    fn bodies(&self) -> Vec<(Instant, Value)> {
        self.server
            .requests()
            .iter()
            .filter_map(|r| Some((r.received_at, serde_json::from_slice(&r.body).ok()?)))
            .collect()
    }

    /// The first body with `status`.
    pub fn with_status(&self, status: &str) -> Option<Value> {
        self.bodies()
            .into_iter()
            .find(|(_, b)| b["status"] == status)
            .map(|(_, b)| b)
    }

    /// When the first firing notification holding an alert with all of `labels` came.
    pub fn firing_with(&self, labels: &[(&str, &str)]) -> Option<Instant> {
        self.bodies()
            .iter()
            .find(|(_, b)| {
                b["alerts"].as_array().is_some_and(|alerts| {
                    alerts.iter().any(|a| {
                        a["status"] == "firing" && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
                    })
                })
            })
            .map(|(t, _)| *t)
    }
}

/// Alertmanager in a temp dir, killed (by its own handle) on drop.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Routes everything to a webhook on `webhook_port` (group_wait and
    /// group_interval 1s, resolved notifications on), on a free port.
    pub fn start(webhook_port: u16) -> Alertmanager {
        Self::start_on(free_port(), webhook_port, "1s", &["alertname"])
    }

    /// Like [`Alertmanager::start`] on `port`, with `group_wait` and `group_by`.
    pub fn start_on(
        port: u16,
        webhook_port: u16,
        group_wait: &str,
        group_by: &[&str],
    ) -> Alertmanager {
        let config = format!(
            "route:\n  receiver: hook\n  group_by: [{}]\n  group_wait: {group_wait}\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{webhook_port}/hook\n        send_resolved: true\n",
            group_by.join(", ")
        );
        Self::spawn(port, &config)
    }

    /// Alertmanager on `config_yaml` with `--web.external-url` [`EXTERNAL_URL`], on a
    /// free port; returns once `/-/ready` answers 200.
    pub fn start_with_config(config_yaml: &str) -> Alertmanager {
        Self::spawn(free_port(), config_yaml)
    }

    /// Like [`Alertmanager::start_with_config`], serving https only with
    /// `web_config_yaml` (exporter toolkit's `--web.config.file`; absolute paths);
    /// returns once it listens (readiness over https is the test's business, see
    /// `tls::https_get`).
    pub fn start_tls(config_yaml: &str, web_config_yaml: &str) -> Alertmanager {
        Self::spawn_with(free_port(), config_yaml, Some(web_config_yaml))
    }

    fn spawn(port: u16, config_yaml: &str) -> Alertmanager {
        Self::spawn_with(port, config_yaml, None)
    }

    fn spawn_with(port: u16, config_yaml: &str, web_config_yaml: Option<&str>) -> Alertmanager {
        require_peer(ALERTMANAGER_BIN, "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("am.yml"), config_yaml).unwrap();
        let mut web_config = Vec::new();
        if let Some(yaml) = web_config_yaml {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, yaml).expect("write web config");
            web_config.push(format!("--web.config.file={}", path.display()));
        }
        let log = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let child = Command::new(ALERTMANAGER_BIN)
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.external-url={EXTERNAL_URL}"))
            .arg("--cluster.listen-address=")
            .args(&web_config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn alertmanager");
        let am = Alertmanager { child, port, dir };
        let ready = wait_until(STARTUP_TIMEOUT, || match web_config_yaml {
            Some(_) => serves_https(am.addr()),
            None => matches!(http::get(&am.url("/-/ready")), Ok(r) if r.status == 200),
        });
        assert!(ready, "alertmanager not ready: {}", am.log());
        am
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET `path`, asserting 200; the body.
    pub fn get_ok(&self, path: &str) -> String {
        let response = http::get(&self.url(path)).expect("alertmanager GET");
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        response.body
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }

    /// Sends signal `name` (`STOP`: frozen, its socket still accepts but nothing
    /// answers; `CONT`) to this Alertmanager, by its PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args([
                "-c",
                "kill -\"$1\" \"$2\"",
                "sh",
                name,
                &self.child.id().to_string(),
            ])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} alertmanager");
    }

    /// Alertmanager's `GET /api/v2/alerts`.
    pub fn alerts(&self) -> Value {
        let listed = http::get(&format!("http://127.0.0.1:{}/api/v2/alerts", self.port))
            .expect("alertmanager alerts");
        serde_json::from_str(&listed.body).expect("alerts JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
