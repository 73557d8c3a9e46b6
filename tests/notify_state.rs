//! The built-in notifier's state file: after a restart (a new notifier on the same
//! file) an alert notified before is not notified again before `repeat_interval`, and
//! silences still mute. Deliveries are real HTTP requests to a capture server
//! (tests/common/receiver.rs); the notifier's clock is explicit.

mod common;

use common::receiver::CaptureServer;
use promflow::alertmanager::alert::{now_nanos, Alert};
use promflow::alertmanager::config::NotifyConfig;
use promflow::alertmanager::BuiltinNotifier;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

const SECOND: i64 = 1_000_000_000;

fn alert(name: &str, at: i64) -> Alert {
    Alert {
        labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
        annotations: BTreeMap::new(),
        starts_at: at,
        ends_at: at + 300 * SECOND,
        generator_url: String::new(),
        updated_at: at,
        timeout: true,
    }
}

fn notifier(capture: &CaptureServer, state: &Path) -> std::sync::Arc<BuiltinNotifier> {
    let config = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        capture.url("/hook")
    );
    let n = BuiltinNotifier::new();
    n.set_state_file(state.to_path_buf());
    n.apply(
        Some(NotifyConfig::load_str(&config, "am.yml", Path::new(".")).unwrap()),
        "http://promflow.test",
    );
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_notification_log_and_silences() {
    let capture = CaptureServer::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("notifier.json");
    let t = now_nanos();

    let before = notifier(&capture, &state);
    before.put(vec![alert("Disk", t)], t);
    assert_eq!(before.flush_due(t + 2 * SECOND).await, 1);
    assert_eq!(capture.count(), 1);
    let silence = json!({
        "matchers": [{"name": "alertname", "value": "Muted", "isRegex": false, "isEqual": true}],
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "test",
        "comment": "maintenance",
    });
    let id = before
        .with_silences(|s, now| s.post(&silence, now))
        .unwrap()
        .unwrap();
    drop(before);
    assert!(state.exists(), "state saved");

    let after = notifier(&capture, &state);
    let t2 = t + 10 * SECOND;
    after.put(vec![alert("Disk", t2), alert("Muted", t2)], t2);
    after.flush_due(t2 + 2 * SECOND).await;
    after.flush_due(t2 + 4 * SECOND).await;
    assert_eq!(capture.count(), 1, "nothing re-sent after the restart");
    let silenced = after
        .with_dispatcher(|d| d.silences.get(&id).map(|s| s.comment.clone()))
        .flatten();
    assert_eq!(silenced.as_deref(), Some("maintenance"));

    // A new alert is still notified: the restored state does not mute everything.
    after.put(vec![alert("Cpu", t2)], t2 + 4 * SECOND);
    after.flush_due(t2 + 6 * SECOND).await;
    let requests = capture.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].json()["groupLabels"],
        json!({"alertname": "Cpu"})
    );
}
