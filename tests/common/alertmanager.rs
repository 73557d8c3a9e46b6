//! A real Alertmanager 0.25 (Debian package `prometheus-alertmanager`) on a free
//! loopback port, clustering off, its data in a temp dir; the oracle for the built-in
//! notifier.

use super::{require_peer, spawn_https_peer, spawn_peer, Peer};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use tempfile::TempDir;

pub const ALERTMANAGER_BIN: &str = "/usr/bin/prometheus-alertmanager";

/// What templates see as `.ExternalURL` in the oracle's notifications.
pub const EXTERNAL_URL: &str = "http://alertmanager.test";

pub struct Alertmanager {
    peer: Peer,
}

impl std::ops::Deref for Alertmanager {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl Alertmanager {
    /// Starts Alertmanager on `config_yaml` (written to `<dir>/alertmanager.yml`) with
    /// `--web.external-url` [`EXTERNAL_URL`]; returns once `/-/ready` answers 200.
    pub fn start(config_yaml: &str) -> Alertmanager {
        let dir = alertmanager_dir("alertmanager-test-", config_yaml);
        let peer = spawn_peer(
            "alertmanager",
            Path::new(ALERTMANAGER_BIN),
            dir,
            "/-/ready",
            alertmanager_args,
        );
        Alertmanager { peer }
    }

    /// Like `start`, serving https only with `web_config_yaml` (exporter toolkit's
    /// `--web.config.file`; absolute paths) written to `<dir>/web.yml`; returns once
    /// it listens (readiness over https is the test's business, see `tls::https_get`).
    pub fn start_tls(config_yaml: &str, web_config_yaml: &str) -> Alertmanager {
        let dir = alertmanager_dir("alertmanager-tls-test-", config_yaml);
        fs::write(dir.path().join("web.yml"), web_config_yaml).expect("write web config");
        let peer = spawn_https_peer(
            "alertmanager",
            Path::new(ALERTMANAGER_BIN),
            dir,
            |dir, addr| {
                let mut args = alertmanager_args(dir, addr);
                args.push(format!(
                    "--web.config.file={}",
                    dir.join("web.yml").display()
                ));
                args
            },
        );
        Alertmanager { peer }
    }
}

/// A temp dir holding `alertmanager.yml`.
fn alertmanager_dir(prefix: &str, config_yaml: &str) -> TempDir {
    require_peer(ALERTMANAGER_BIN, "prometheus-alertmanager");
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    fs::write(dir.path().join("alertmanager.yml"), config_yaml).expect("write config");
    dir
}

/// The command line: config and data in `dir`, clustering off, quiet.
fn alertmanager_args(dir: &Path, addr: SocketAddr) -> Vec<String> {
    vec![
        format!("--config.file={}", dir.join("alertmanager.yml").display()),
        format!("--storage.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
        format!("--web.external-url={EXTERNAL_URL}"),
        "--cluster.listen-address=".to_string(),
        "--log.level=warn".to_string(),
    ]
}
