//! The lifecycle endpoints `/-/reload` and `/-/quit`, side by side with a real
//! Prometheus 2.42 (`prometheus`, installed by `.ci/test`): without
//! `--web.enable-lifecycle` both answer 403 with Prometheus's text, `GET` answers 405,
//! and with it `/-/quit` answers like Prometheus and shuts down cleanly: the process
//! exits 0, and what was written before (samples in the WAL, the built-in notifier's
//! silences) is there after a restart on the same data directory.

mod common;

use std::time::Duration;

use common::http::{self, HttpResponse};
use common::{now_ms, remote_write, Peer, Prometheus, Promflow, PromflowLaunch};

const CONFIG: &str = "scrape_configs: []\n";

fn request(peer: &Peer, method: &str, path: &str) -> HttpResponse {
    let url = peer.url(path);
    match method {
        "GET" => http::get(&url),
        "POST" => http::post(&url, None, &[]),
        "PUT" => http::put(&url, None, &[]),
        other => panic!("no helper for {other}"),
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// What a client sees: status, body and content type.
fn seen(resp: &HttpResponse) -> (u16, String, Option<String>) {
    (
        resp.status,
        resp.body.clone(),
        resp.header("content-type").map(str::to_string),
    )
}

#[test]
fn without_the_flag_lifecycle_requests_are_refused_like_prometheus() {
    let promflow = Promflow::start(CONFIG);
    // The harness starts Prometheus with --web.enable-lifecycle unless told
    // `--no-web.enable-lifecycle` (kingpin refuses a repeated flag).
    let prometheus = Prometheus::start_with_args(CONFIG, &["--no-web.enable-lifecycle"]);
    for method in ["GET", "POST", "PUT"] {
        for path in ["/-/reload", "/-/quit"] {
            let ours = seen(&request(&promflow, method, path));
            let theirs = seen(&request(&prometheus, method, path));
            assert_eq!(ours, theirs, "{method} {path}");
            let expected = if method == "GET" { 405 } else { 403 };
            assert_eq!(ours.0, expected, "{method} {path}: {ours:?}");
        }
    }
    assert_eq!(
        seen(&request(&promflow, "POST", "/-/quit")).1,
        "Lifecycle API is not enabled."
    );
    // Still serving after the refused quits.
    assert_eq!(promflow.get("/-/healthy").status, 200);
    assert_eq!(prometheus.get("/-/healthy").status, 200);
}

#[test]
fn with_the_flag_reload_answers_like_prometheus() {
    let promflow = Promflow::start_with_args(CONFIG, &["--web.enable-lifecycle"]);
    let prometheus = Prometheus::start(CONFIG);
    for method in ["POST", "PUT", "GET"] {
        let ours = seen(&request(&promflow, method, "/-/reload"));
        let theirs = seen(&request(&prometheus, method, "/-/reload"));
        assert_eq!(ours, theirs, "{method} /-/reload");
    }
    assert_eq!(seen(&request(&promflow, "POST", "/-/reload")).0, 200);
}

#[test]
fn quit_answers_like_prometheus_and_shuts_down_cleanly() {
    let alertmanager_config = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        alertmanager_config.path(),
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .expect("write alertmanager config");
    let am_flag = format!(
        "--alertmanager.config.file={}",
        alertmanager_config.path().display()
    );
    let data = tempfile::tempdir().expect("temp dir");
    let args = [
        "--web.enable-lifecycle",
        "--web.enable-remote-write-receiver",
        // fsync only every minute: a clean shutdown must fsync the WAL itself.
        "--storage.tsdb.wal-fsync=1m",
        am_flag.as_str(),
    ];
    let mut promflow = Promflow::launch(PromflowLaunch {
        config_yaml: CONFIG,
        extra_args: &args,
        data_dir: Some(data.path().to_path_buf()),
        ..PromflowLaunch::default()
    });
    let mut prometheus = Prometheus::start(CONFIG);

    // Written before the quit: a sample and a silence.
    let t = now_ms() - 5_000;
    let body = remote_write::body(&[(
        vec![
            ("__name__".to_string(), "written_before_quit".to_string()),
            ("job".to_string(), "lifecycle".to_string()),
        ],
        vec![(t, 42.0)],
    )]);
    let resp = remote_write::send(&promflow.url(""), &body);
    assert!(resp.status / 100 == 2, "remote write: {resp:?}");
    let silence = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Quiet", "isRegex": false, "isEqual": true}],
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "lifecycle test",
        "comment": "survives /-/quit",
    });
    let resp = http::post(
        &promflow.url("/api/v2/silences"),
        Some("application/json"),
        silence.to_string().as_bytes(),
    )
    .expect("POST /api/v2/silences");
    assert_eq!(resp.status, 200, "silence: {resp:?}");

    let ours = seen(&request(&promflow, "POST", "/-/quit"));
    let theirs = seen(&request(&prometheus, "POST", "/-/quit"));
    assert_eq!(ours, theirs, "POST /-/quit");
    assert_eq!(ours.0, 200);
    assert_eq!(ours.1, "Requesting termination... Goodbye!");

    let exit = Duration::from_secs(30);
    let status = promflow
        .wait_exit(exit)
        .unwrap_or_else(|| panic!("promflow still runs after /-/quit:\n{}", promflow.log()));
    assert!(status.success(), "promflow exited with {status}");
    assert!(
        prometheus.wait_exit(exit).is_some(),
        "Prometheus still runs after /-/quit"
    );
    assert!(
        promflow.log().contains("shutting down"),
        "no clean shutdown in the log:\n{}",
        promflow.log()
    );

    // Back on the same data directory: both are still there.
    promflow.kill_and_restart();
    let result = promflow.get_ok(&http::with_query(
        "/api/v1/query",
        &[("query", "written_before_quit")],
    ));
    let v: serde_json::Value = serde_json::from_str(&result).expect("query JSON");
    assert_eq!(
        v["data"]["result"][0]["value"][1], "42",
        "sample written before /-/quit: {result}"
    );
    let silences = promflow.get_ok("/api/v2/silences");
    assert!(
        silences.contains("survives /-/quit"),
        "silence after restart: {silences}"
    );
}
