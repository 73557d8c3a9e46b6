//! The real Alertmanager 0.25 and promflow's built-in notifier side by side, each
//! with its own copy of a receiver config (the copies differ only in where they
//! send), fed the same alerts: the harness of the receiver oracle tests.

use super::alertmanager::Alertmanager;
use super::{http, Promflow};
use serde_json::{json, Value};

/// The route of the oracle tests: everything to receiver `team`, grouped by
/// alertname, flushed after 1s.
pub const ROUTE: &str = "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n";

/// Alertmanager on `am_config`, promflow with `--alertmanager.config.file` holding
/// `pf_config`.
pub struct NotifyPair {
    pub am: Alertmanager,
    pub promflow: Promflow,
    _dir: tempfile::TempDir,
}

impl NotifyPair {
    pub fn start(am_config: &str, pf_config: &str) -> NotifyPair {
        let am = Alertmanager::start_with_config(am_config);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("am.yml");
        std::fs::write(&file, pf_config).unwrap();
        let promflow = Promflow::start_with_args(
            "global:\n  scrape_interval: 15s\n",
            &[&format!("--alertmanager.config.file={}", file.display())],
        );
        NotifyPair {
            am,
            promflow,
            _dir: dir,
        }
    }

    /// POSTs `alerts` to both `/api/v2/alerts`.
    pub fn post(&self, alerts: &Value) {
        for url in [
            self.am.url("/api/v2/alerts"),
            self.promflow.url("/api/v2/alerts"),
        ] {
            let r = http::post(
                &url,
                Some("application/json"),
                alerts.to_string().as_bytes(),
            )
            .unwrap();
            assert_eq!(r.status, 200, "POST {url}: {}", r.body);
        }
    }
}

/// An alert of `alertname` on `instance`, started now (5s before `ends` if set), resolved at `ends` if set,
/// with `annotations`.
pub fn alert(alertname: &str, instance: &str, annotations: Value, ends: Option<&str>) -> Value {
    // A firing alert started now, not earlier: one that started more than
    // `group_wait` ago makes Alertmanager flush its new group at once, racing the
    // insertion of the other alerts of the same POST (under load, the oracle then sent
    // one of two). A resolved one started before it ended (Alertmanager refuses an end
    // before the start).
    let starts = match ends {
        None => now(),
        Some(e) => (chrono::DateTime::parse_from_rfc3339(e).expect("an RFC 3339 end")
            - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let mut a = json!({
        "labels": {"alertname": alertname, "instance": instance, "severity": "page"},
        "annotations": annotations,
        "generatorURL": "http://prometheus.test/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
        "startsAt": starts,
    });
    if let Some(e) = ends {
        a["endsAt"] = json!(e);
    }
    a
}

/// Now, as an `endsAt` that resolves an alert.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `amtool check-config` on `config` (Alertmanager 0.25's own checks): its output
/// when it refuses the file.
pub fn amtool_check(config: &str) -> Result<(), String> {
    super::require_peer(super::alertmanager::AMTOOL_BIN, "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("am.yml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = std::process::Command::new(super::alertmanager::AMTOOL_BIN);
    cmd.arg("check-config").arg(&file);
    let out = super::run_command(cmd, None, super::COMMAND_TIMEOUT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text)
    }
}

/// promflow's checks of the same file.
pub fn promflow_check(config: &str) -> Result<(), String> {
    promflow::alertmanager::config::NotifyConfig::load_str(
        config,
        "am.yml",
        std::path::Path::new("."),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Both refuse `config`, each saying `message` (Alertmanager's text), or both accept
/// it (`message` empty).
pub fn assert_same_verdict(config: &str, message: &str) {
    let (am, pf) = (amtool_check(config), promflow_check(config));
    if message.is_empty() {
        assert!(am.is_ok(), "amtool refuses:\n{config}\n{am:?}");
        assert!(pf.is_ok(), "promflow refuses:\n{config}\n{pf:?}");
        return;
    }
    let am = am.expect_err(config);
    assert!(am.contains(message), "amtool says {am:?}, not {message:?}");
    let pf = pf.expect_err(config);
    assert!(
        pf.contains(message),
        "promflow says {pf:?}, not {message:?}"
    );
}
