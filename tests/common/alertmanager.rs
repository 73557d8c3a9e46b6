//! A real Alertmanager 0.25 (Debian package `prometheus-alertmanager`) on a free
//! loopback port, clustering off, its data in a temp dir; the oracle for the built-in
//! notifier.

use super::{require_peer, spawn_https_peer, spawn_peer, Peer};
use std::fs;
use std::path::Path;

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
        require_peer(ALERTMANAGER_BIN, "prometheus-alertmanager");
        let dir = tempfile::Builder::new()
            .prefix("alertmanager-test-")
            .tempdir()
            .expect("temp dir");
        fs::write(dir.path().join("alertmanager.yml"), config_yaml).expect("write config");
        let peer = spawn_peer(
            "alertmanager",
            Path::new(ALERTMANAGER_BIN),
            dir,
            "/-/ready",
            |dir, addr| {
                vec![
                    format!("--config.file={}", dir.join("alertmanager.yml").display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                    format!("--web.external-url={EXTERNAL_URL}"),
                    "--cluster.listen-address=".to_string(),
                    "--log.level=warn".to_string(),
                ]
            },
        );
        Alertmanager { peer }
    }

    /// Like `start`, serving https only with `web_config_yaml` (exporter toolkit's
    /// `--web.config.file`; absolute paths) written to `<dir>/web.yml`; returns once
    /// it listens (readiness over https is the test's business, see `tls::https_get`).
    pub fn start_tls(config_yaml: &str, web_config_yaml: &str) -> Alertmanager {
        require_peer(ALERTMANAGER_BIN, "prometheus-alertmanager");
        let dir = tempfile::Builder::new()
            .prefix("alertmanager-tls-test-")
            .tempdir()
            .expect("temp dir");
        fs::write(dir.path().join("alertmanager.yml"), config_yaml).expect("write config");
        fs::write(dir.path().join("web.yml"), web_config_yaml).expect("write web config");
        let peer = spawn_https_peer(
            "alertmanager",
            Path::new(ALERTMANAGER_BIN),
            dir,
            |dir, addr| {
                vec![
                    format!("--config.file={}", dir.join("alertmanager.yml").display()),
                    format!("--web.config.file={}", dir.join("web.yml").display()),
                    format!("--storage.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                    format!("--web.external-url={EXTERNAL_URL}"),
                    "--cluster.listen-address=".to_string(),
                    "--log.level=warn".to_string(),
                ]
            },
        );
        Alertmanager { peer }
    }
}
