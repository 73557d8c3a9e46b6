//! Alertmanager's own client, `amtool`, against the built-in notifier and against a
//! real Alertmanager 0.25 (the oracle) holding the same config and the same alerts:
//! every command's output must agree — `alert query` (table, `-o json`,
//! `-o extended`, matchers, `--receiver`, `-i`/`-s`/`-a`), `silence add` / `query`
//! (with matchers, `-o json`, `--expired`) / `expire` / `update`, `config show`, `config
//! routes` (and `routes test`), `cluster show` — and the API v2 endpoints behind
//! them (`/api/v2/status`, `/api/v2/receivers`, `/api/v2/alerts/groups` with its
//! filters, `/api/v2/silences?filter=`) answer the same JSON. Only what depends on
//! the instance or the moment is normalised: silence ids, times of silences (made
//! at slightly different moments), `updatedAt`.
//!
//! Real peers: Alertmanager 0.25 and amtool (Debian `prometheus-alertmanager`),
//! promflow.

mod common;

use common::alertmanager::{amtool, Alertmanager};
use common::receiver::CaptureServer;
use common::{http, Promflow};
use serde_json::{json, Value};

/// Covers what `config show` prints for every supported part: global URLs, a
/// route tree with `matchers`/`match`/`match_re`, inhibit rules, Slack / Pushover /
/// webhook receivers with defaults, a `tls_config`, a long text that Go's YAML folds,
/// quotes, a newline and a tab.
fn notifier_config(capture: &CaptureServer) -> String {
    format!(
        r#"
global:
  resolve_timeout: 2m
  slack_api_url: {slack}
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1h
  group_interval: 1h
  repeat_interval: 4h
  routes:
    - matchers: ['team=~"db|web"', 'severity="info"']
      receiver: notes
      continue: true
      group_wait: 90s
    - match: {{severity: page}}
      match_re: {{instance: "p.*"}}
      receiver: pager
      group_by: ['...']
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [instance]
receivers:
  - name: team
    webhook_configs:
      - url: {team}
    slack_configs:
      - channel: '#ops'
        send_resolved: true
        title: "A rather long title for the alert group {{{{ .GroupLabels.alertname }}}} that goes on for a while"
        text: "it's \"quoted\",\nmulti-line\tand tabbed"
        mrkdwn_in: [text]
        fields:
          - title: Summary
            value: '{{{{ .CommonAnnotations.summary }}}}'
            short: true
  - name: notes
    webhook_configs:
      - url: {notes}
        max_alerts: 1
        send_resolved: false
  - name: pager
    pushover_configs:
      - user_key: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        token: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
        retry: 90s
    webhook_configs:
      - url: {notes}
        http_config:
          tls_config:
            insecure_skip_verify: true
            server_name: hook.test
"#,
        slack = capture.url("/slack"),
        team = capture.url("/team"),
        notes = capture.url("/notes"),
    )
}

fn alert(
    name: &str,
    instance: &str,
    severity: &str,
    team: &str,
    starts: &str,
    ends: &str,
) -> Value {
    json!({
        "labels": {"alertname": name, "instance": instance, "severity": severity, "team": team},
        "annotations": {"summary": format!("{name} on {instance}")},
        "generatorURL": format!("http://prometheus.test/graph?g0.expr={name}"),
        "startsAt": starts,
        "endsAt": ends,
    })
}

/// The two sides: the oracle's and promflow's base URLs.
struct Sides {
    am: String,
    promflow: String,
}

impl Sides {
    /// Runs amtool against both; asserts both succeed and print the same stdout
    /// (after `normalise`); returns the oracle's output.
    fn same(&self, args: &[&str], normalise: impl Fn(&str) -> String) -> String {
        let (am_ok, am_out, am_err) = amtool(&self.am, args);
        let (pf_ok, pf_out, pf_err) = amtool(&self.promflow, args);
        assert!(am_ok, "oracle: amtool {args:?}: {am_err}");
        assert!(pf_ok, "promflow: amtool {args:?}: {pf_err}");
        assert_eq!(
            normalise(&pf_out),
            normalise(&am_out),
            "amtool {args:?} differs (promflow, then Alertmanager)"
        );
        am_out
    }

    fn get(&self, path: &str, normalise: impl Fn(&mut Value)) -> Value {
        let read = |base: &str| {
            let r = http::get(&format!("{base}{path}")).unwrap();
            assert_eq!(r.status, 200, "GET {base}{path}: {}", r.body);
            let mut v: Value = serde_json::from_str(&r.body).unwrap();
            normalise(&mut v);
            v
        };
        let expected = read(&self.am);
        assert_eq!(read(&self.promflow), expected, "GET {path}");
        expected
    }
}

fn as_is(s: &str) -> String {
    s.to_string()
}

/// Replaces silence ids (36-character UUID-shaped words) and `YYYY-MM-DD hh:mm:ss`
/// times, which differ between two silences made a moment apart.
fn ids_and_times(s: &str) -> String {
    let uuid =
        regex::Regex::new(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
            .unwrap();
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z)?").unwrap();
    time.replace_all(&uuid.replace_all(s, "ID"), "TIME")
        .into_owned()
}

/// `updatedAt` of every alert, at any depth.
fn without_updated_at(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.contains_key("updatedAt") {
                o.insert("updatedAt".into(), json!("normalised"));
            }
            o.values_mut().for_each(without_updated_at);
        }
        Value::Array(a) => a.iter_mut().for_each(without_updated_at),
        _ => {}
    }
}

/// An amtool JSON listing with `updatedAt` normalised.
fn json_without_updated_at(s: &str) -> String {
    let mut v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
    without_updated_at(&mut v);
    v.to_string()
}

/// A silence listing (amtool JSON) with ids and times normalised.
fn silences_json(s: &str) -> String {
    let mut v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
    for silence in v.as_array_mut().into_iter().flatten() {
        for field in ["id", "startsAt", "endsAt", "updatedAt"] {
            silence[field] = json!("normalised");
        }
    }
    v.to_string()
}

#[test]
fn amtool_sees_the_builtin_notifier_as_alertmanager() {
    // One receiving server for both, so the configs are the same text (group_wait
    // keeps notifications from being sent during the test).
    let capture = CaptureServer::start();
    let am = Alertmanager::start_with_config(&notifier_config(&capture));
    let dir = tempfile::tempdir().unwrap();
    let am_config = dir.path().join("am.yml");
    std::fs::write(&am_config, notifier_config(&capture)).unwrap();
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!(
            "--alertmanager.config.file={}",
            am_config.display()
        )],
    );
    let sides = Sides {
        am: am.url(""),
        promflow: promflow.url(""),
    };

    let now = chrono::Utc::now();
    let time = |offset: i64| {
        (now + chrono::Duration::seconds(offset))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (starts, ends) = (time(-120), time(3600));
    let alerts = json!([
        alert("HighCPU", "a", "critical", "web", &starts, &ends),
        alert("HighCPU", "b", "critical", "web", &starts, &ends),
        alert("DiskFull", "a", "warning", "db", &starts, &ends),
        alert("Note", "x", "info", "db", &starts, &ends),
        alert("Paged", "p1", "page", "ops", &starts, &ends),
        alert("Gone", "g", "critical", "ops", &time(-600), &time(-60)),
    ]);
    for base in [&sides.am, &sides.promflow] {
        let r = http::post(
            &format!("{base}/api/v2/alerts"),
            Some("application/json"),
            alerts.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "POST to {base}: {}", r.body);
    }

    // Alerts.
    let table = sides.same(&["alert", "query"], as_is);
    assert!(table.contains("HighCPU") && !table.contains("DiskFull") && !table.contains("Gone"));
    sides.same(&["alert", "query", "-o", "json"], json_without_updated_at);
    sides.same(&["alert", "query", "-o", "extended"], as_is);
    sides.same(&["alert", "query", "-i"], as_is);
    sides.same(
        &["alert", "query", "-a", "-o", "json"],
        json_without_updated_at,
    );
    sides.same(&["alert", "query", "alertname=HighCPU"], as_is);
    sides.same(
        &["alert", "query", r#"instance=~"a|x""#, "-o", "json"],
        json_without_updated_at,
    );
    sides.same(&["alert", "query", "--receiver=notes"], as_is);
    sides.same(&["alert", "query", "--receiver=te.*", "-a"], as_is);

    // An alert added with amtool itself.
    for base in [&sides.am, &sides.promflow] {
        let (ok, _, err) = amtool(
            base,
            &[
                "alert",
                "add",
                "alertname=Added",
                "severity=info",
                "team=web",
                "--annotation=summary=added by amtool",
                &format!("--start={starts}"),
                &format!("--end={ends}"),
            ],
        );
        assert!(ok, "alert add on {base}: {err}");
    }
    sides.same(
        &["alert", "query", "alertname=Added", "-o", "extended"],
        as_is,
    );

    // The endpoints behind other clients (Grafana, the Alertmanager UI).
    for query in [
        "?active=false",
        "?silenced=false&inhibited=false",
        "?receiver=pag.*",
        "?active=true&receiver=notes",
        &format!("?filter={}", http::encode("severity!~crit.*")),
    ] {
        sides.get(&format!("/api/v2/alerts{query}"), without_updated_at);
    }
    sides.get("/api/v2/receivers", |_| {});
    let groups = sides.get("/api/v2/alerts/groups", without_updated_at);
    assert!(groups.as_array().unwrap().len() >= 4, "{groups:#}");
    for query in [
        "?active=false",
        "?inhibited=false",
        "?receiver=notes",
        &format!("?filter={}", http::encode(r#"instance="a""#)),
        &format!(
            "?filter={}&filter=severity%3Dcritical",
            http::encode("alertname=~High.*")
        ),
    ] {
        sides.get(&format!("/api/v2/alerts/groups{query}"), without_updated_at);
    }
    let status = sides.get("/api/v2/status", |v| {
        v["uptime"] = json!("normalised");
        v["versionInfo"] = json!("normalised");
    });
    assert_eq!(status["cluster"]["status"], "disabled");

    // Config.
    let shown = sides.same(&["config", "show"], as_is);
    assert!(shown.contains("slack_api_url: <secret>"), "{shown}");
    sides.same(&["config", "routes"], as_is);
    for labels in [
        &["severity=info", "team=db"][..],
        &["severity=page", "instance=p2"],
        &["alertname=Other"],
    ] {
        let mut args = vec!["config", "routes", "test"];
        args.extend(labels);
        sides.same(&args, as_is);
    }
    sides.same(&["cluster", "show"], as_is);

    // Silences: two, ending at different times, so their order is checked too.
    let mut ids = Vec::new();
    for base in [&sides.am, &sides.promflow] {
        let add = |args: &[&str]| {
            let (ok, out, err) = amtool(base, args);
            assert!(ok, "silence add on {base}: {err}");
            out.trim().to_string()
        };
        let long = add(&[
            "silence",
            "add",
            "alertname=HighCPU",
            r#"instance=~"a|b""#,
            "-c",
            "upgrade",
            "-a",
            "ops",
            "-d",
            "2h",
        ]);
        let short = add(&[
            "silence",
            "add",
            "team=db",
            "-c",
            "maintenance",
            "-a",
            "dba",
            "-d",
            "1h",
        ]);
        ids.push((long, short));
    }
    sides.same(&["silence", "query"], ids_and_times);
    sides.same(&["silence", "query", "-o", "json"], silences_json);
    sides.same(&["silence", "query", "alertname=HighCPU"], ids_and_times);
    sides.same(&["silence", "query", "instance=a"], ids_and_times);
    sides.same(&["silence", "query", r#"instance="a|b""#], ids_and_times);
    sides.same(&["silence", "query", "team!=db"], ids_and_times);
    sides.same(&["alert", "query", "-s"], as_is);
    sides.same(
        &["alert", "query", "-a", "-o", "json"],
        json_without_updated_at,
    );
    sides.get("/api/v2/alerts/groups?silenced=false", without_updated_at);

    // Expiring twice, and an unknown id: the same outcome on both.
    let mut outcomes = Vec::new();
    for (base, (long, _)) in [&sides.am, &sides.promflow].into_iter().zip(&ids) {
        let (ok, _, err) = amtool(base, &["silence", "expire", long]);
        assert!(ok, "silence expire on {base}: {err}");
        let again = amtool(base, &["silence", "expire", long]).0;
        let unknown = amtool(
            base,
            &["silence", "expire", "00000000-0000-4000-8000-000000000000"],
        )
        .0;
        outcomes.push((again, unknown));
    }
    assert_eq!(
        outcomes[1], outcomes[0],
        "expire again / unknown (promflow, then Alertmanager)"
    );
    let active = sides.same(&["silence", "query", "-q"], ids_and_times);
    assert_eq!(active.lines().count(), 1, "{active}");
    sides.same(&["silence", "query", "--expired"], ids_and_times);
    sides.same(&["alert", "query"], as_is);

    // Updating: in place while the matchers stay; moving an active silence's start
    // into the future expires it and makes a new one.
    for (base, (_, short)) in [&sides.am, &sides.promflow].into_iter().zip(&ids) {
        for args in [
            &["-c", "longer maintenance", "-d", "3h"][..],
            &["--start=2030-01-01T00:00:00Z", "--end=2030-01-02T00:00:00Z"],
        ] {
            let mut command = vec!["silence", "update", short.as_str()];
            command.extend(args);
            let (ok, _, err) = amtool(base, &command);
            assert!(ok, "silence update on {base}: {err}");
        }
    }
    sides.same(&["silence", "query"], ids_and_times);
    sides.same(
        &["silence", "query", "--expired", "-o", "json"],
        silences_json,
    );
}
