//! A real Alertmanager 0.25 (Debian package `prometheus-alertmanager`) on 127.0.0.1
//! with clustering off, routing every alert to a webhook receiver ([`Webhook`], a
//! small std::net HTTP server that keeps the JSON bodies POSTed to it). Alertmanager
//! groups by `alertname` with 1s group wait/interval and sends resolved notifications.

use super::{free_port, http, require_peer, wait_until, STARTUP_TIMEOUT};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALERTMANAGER_BIN: &str = "/usr/bin/prometheus-alertmanager";

/// Collects the JSON bodies POSTed to it.
pub struct Webhook {
    pub port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        sink.lock().unwrap().push(v);
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { port, bodies }
    }

    pub fn with_status(&self, status: &str) -> Option<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .find(|b| b["status"] == status)
            .cloned()
    }
}

/// Alertmanager in a temp dir, killed (by its own handle) on drop.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start(webhook_port: u16) -> Alertmanager {
        require_peer(ALERTMANAGER_BIN, "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{webhook_port}/hook\n        send_resolved: true\n"
        );
        std::fs::write(dir.path().join("am.yml"), config).unwrap();
        let port = free_port();
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
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn alertmanager");
        let am = Alertmanager {
            child,
            port,
            _dir: dir,
        };
        let ready = wait_until(
            STARTUP_TIMEOUT,
            || matches!(http::get(&format!("http://127.0.0.1:{port}/-/ready")), Ok(r) if r.status == 200),
        );
        assert!(ready, "alertmanager not ready: {}", am.log());
        am
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("output.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
