//! The TSDB admin API (`--web.enable-admin-api`) against a real Prometheus 2.42
//! holding the same samples (both fed by the same remote write requests):
//! - `delete_series` answers alike (204, and the errors: no `match[]`, a bad selector,
//!   a bad time), and afterwards range queries and `/api/v1/series` answer alike: a
//!   closed `[start, end]` range of one series is gone (its edges sit on samples), a
//!   series deleted whole answers nothing (Prometheus still lists it in
//!   `/api/v1/series` until its head is compacted; promflow does not, see below);
//!   `clean_tombstones` changes nothing visible;
//! - `snapshot` answers `{"name": …}` alike (and the same `skip_head` error); the
//!   snapshot directory, opened by a fresh promflow as its data directory, answers
//!   the same queries as the promflow it was taken from;
//! - without the flag every endpoint answers Prometheus's "admin APIs disabled" error
//!   with the same status, and GET is not allowed.
//!
//! External services: Prometheus (Debian `prometheus`), started twice (with and
//! without the flag).

mod common;

use common::{api_seconds, now_ms};

use common::http::{post, put, with_query, HttpResponse};
use common::remote_write::{self, Series};
use common::{Peer, Prometheus, Promflow, PromflowLaunch};
use serde_json::Value;

const STEP: i64 = 15_000;
const POINTS: i64 = 120;

/// Series `m{job=…}` for jobs a, b, c and `other{job="a"}`, one sample every 15s.
fn data(t0: i64) -> Vec<Series> {
    let series = |name: &str, job: &str, k: f64| -> Series {
        (
            vec![
                ("__name__".to_string(), name.to_string()),
                ("job".to_string(), job.to_string()),
            ],
            (0..POINTS).map(|i| (t0 + i * STEP, k * i as f64)).collect(),
        )
    };
    vec![
        series("m", "a", 1.0),
        series("m", "b", 2.0),
        series("m", "c", 3.0),
        series("other", "a", 4.0),
    ]
}

/// Status and body; JSON bodies are compared as JSON.
fn answer(r: HttpResponse) -> (u16, Value) {
    let body = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    (r.status, body)
}

fn admin(peer: &Peer, method: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let url = peer.url(&with_query(&format!("/api/v1/admin/tsdb/{path}"), params));
    let r = match method {
        "POST" => post(&url, None, &[]),
        _ => put(&url, None, &[]),
    };
    answer(r.unwrap_or_else(|e| panic!("{method} {path}: {e}")))
}

/// What both are compared on: a range query per series and the series list.
fn view(peer: &Peer, at: i64) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for query in [
        "count_over_time(m[1h])",
        "sum_over_time(m[1h])",
        "count_over_time(other[1h])",
    ] {
        let params = [("query", query), ("time", &api_seconds(at) as &str)];
        let (_, mut v) = answer(peer.get(&with_query("/api/v1/query", &params)));
        sort_result(&mut v["data"]["result"]);
        out.push((query.to_string(), v["data"].clone()));
    }
    let (_, mut series) = answer(peer.get(&with_query(
        "/api/v1/series",
        &[("match[]", "{__name__=~\"m|other\"}")],
    )));
    sort_result(&mut series["data"]);
    out.push(("series".to_string(), series["data"].clone()));
    out
}

fn sort_result(v: &mut Value) {
    if let Some(a) = v.as_array_mut() {
        a.sort_by_key(|x| x.to_string());
    }
}

#[test]
fn admin_api_answers_and_deletes_like_prometheus() {
    let data_dir = tempfile::tempdir().unwrap();
    let promflow = Promflow::launch(PromflowLaunch {
        config_yaml: "scrape_configs: []\n",
        extra_args: &[
            "--web.enable-admin-api",
            "--web.enable-remote-write-receiver",
        ],
        data_dir: Some(data_dir.path().join("data")),
        ..PromflowLaunch::default()
    });
    let prometheus = Prometheus::start_with_args(
        "scrape_configs: []\n",
        &[
            "--web.enable-admin-api",
            "--web.enable-remote-write-receiver",
        ],
    );
    // Samples 500ms off the second so that query windows never end on one.
    let t0 = (now_ms() - POINTS * STEP - 60_000) / 1000 * 1000 + 500;
    let body = remote_write::body(&data(t0));
    for peer in [&*promflow, &*prometheus] {
        let r = remote_write::send(&peer.url(""), &body);
        assert_eq!(r.status, 204, "remote write: {}", r.body);
    }
    let at = t0 + POINTS * STEP + 1_000;
    let before = view(&promflow, at);
    assert_eq!(
        before,
        view(&prometheus, at),
        "the same data before deleting"
    );

    let mut problems = Vec::new();
    let mut both = |what: &str, method: &str, path: &str, params: &[(&str, &str)]| {
        let ours = admin(&promflow, method, path, params);
        let theirs = admin(&prometheus, method, path, params);
        if ours != theirs {
            problems.push(format!("{what}: promflow {ours:?}, prometheus {theirs:?}"));
        }
        ours
    };
    both("no match[]", "POST", "delete_series", &[]);
    // A bad selector: the same answer but for the position Prometheus's parser puts
    // before its message ("1:3: parse error: "), which promql-parser does not give.
    let bad = [("match[]", "m{")];
    let (ours, theirs) = (
        admin(&promflow, "POST", "delete_series", &bad),
        admin(&prometheus, "POST", "delete_series", &bad),
    );
    let without_position = |v: &Value| {
        let mut v = v.clone();
        let text = v["error"]
            .as_str()
            .unwrap()
            .replace("1:3: parse error: ", "");
        v["error"] = Value::String(text);
        v
    };
    assert_eq!(
        (ours.0, without_position(&ours.1)),
        (theirs.0, without_position(&theirs.1))
    );
    both(
        "bad start",
        "POST",
        "delete_series",
        &[("match[]", "m"), ("start", "soon")],
    );
    // The edges of the range are sample timestamps: both are deleted (closed range).
    let (from, to) = (api_seconds(t0 + 20 * STEP), api_seconds(t0 + 40 * STEP));
    let deleted = both(
        "delete a range",
        "POST",
        "delete_series",
        &[("match[]", "m{job=\"b\"}"), ("start", &from), ("end", &to)],
    );
    assert_eq!(deleted.0, 204);
    both(
        "delete a series whole (PUT)",
        "PUT",
        "delete_series",
        &[("match[]", "m{job=\"c\"}")],
    );
    both(
        "delete what is not there",
        "POST",
        "delete_series",
        &[("match[]", "absent")],
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let after = view(&promflow, at);
    assert_ne!(after, before, "something was deleted");
    // One known difference: Prometheus keeps listing a series whose every sample was
    // deleted (`m{job="c"}`) in `/api/v1/series` until its head is compacted, as its
    // tombstones only mask samples; promflow deletes head samples outright and lists
    // only series with samples. Queries agree.
    let mut theirs = view(&prometheus, at);
    let listed = &mut theirs.last_mut().unwrap().1;
    let c = serde_json::json!({"__name__": "m", "job": "c"});
    let before_len = listed.as_array().unwrap().len();
    listed.as_array_mut().unwrap().retain(|s| *s != c);
    assert_eq!(listed.as_array().unwrap().len(), before_len - 1, "{listed}");
    assert_eq!(after, theirs, "the same data after deleting");

    let cleaned = admin(&promflow, "POST", "clean_tombstones", &[]);
    assert_eq!(cleaned, admin(&prometheus, "POST", "clean_tombstones", &[]));
    assert_eq!(
        after,
        view(&promflow, at),
        "clean_tombstones changes no answer"
    );

    // Snapshots: the same shape; promflow's opens as a data directory.
    let (status, ours) = admin(&promflow, "POST", "snapshot", &[]);
    let (their_status, theirs) = admin(&prometheus, "POST", "snapshot", &[]);
    assert_eq!((status, their_status), (200, 200), "{ours} {theirs}");
    let name_shape = |v: &Value| -> String {
        v["data"]["name"]
            .as_str()
            .unwrap()
            .chars()
            .map(|c| if c.is_ascii_hexdigit() { 'h' } else { c })
            .collect()
    };
    assert_eq!(ours["status"], theirs["status"]);
    assert_eq!(name_shape(&ours), name_shape(&theirs), "{ours} {theirs}");
    assert_eq!(
        admin(&promflow, "POST", "snapshot", &[("skip_head", "maybe")]),
        admin(&prometheus, "POST", "snapshot", &[("skip_head", "maybe")])
    );
    let snapshot_dir = data_dir
        .path()
        .join("data/snapshots")
        .join(ours["data"]["name"].as_str().unwrap());
    let reopened = Promflow::launch(PromflowLaunch {
        config_yaml: "scrape_configs: []\n",
        data_dir: Some(snapshot_dir),
        ..PromflowLaunch::default()
    });
    assert_eq!(
        view(&reopened, at),
        after,
        "the snapshot holds what promflow held"
    );
    drop(reopened);

    // Without the flag: the same refusals.
    let closed = Promflow::start("scrape_configs: []\n");
    let closed_prometheus = Prometheus::start("scrape_configs: []\n");
    for path in ["delete_series", "clean_tombstones", "snapshot"] {
        for method in ["POST", "PUT"] {
            let ours = admin(&closed, method, path, &[("match[]", "m")]);
            let theirs = admin(&closed_prometheus, method, path, &[("match[]", "m")]);
            assert_eq!(ours, theirs, "{method} {path} without the flag");
        }
        let url = format!("/api/v1/admin/tsdb/{path}");
        assert_eq!(closed.get(&url).status, closed_prometheus.get(&url).status);
    }
}
