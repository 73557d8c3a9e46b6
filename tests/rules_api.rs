//! The rules API (`PUT`/`GET`/`DELETE /api/v1/rules/{namespace}/{group}`): groups
//! registered over HTTP evaluate over live scraped targets, notify a real
//! Alertmanager, leave other groups' state alone, survive restarts and reloads, and
//! invalid registrations change nothing (promtool, the oracle, rejects the same
//! groups as a rule file).
//!
//! Real peers: the controllable exporter (`common::exporter`) scraped by promflow;
//! Alertmanager 0.25 with a webhook receiver (`common::alertmanager`); promtool.

mod common;

use common::alertmanager::{Alertmanager, Webhook};
use common::exporter::{Exporter, Reply};
use common::http::{self, HttpResponse};
use common::{promtool, wait_for, wait_until, Promflow};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

fn config(exporter: &Exporter, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n  evaluation_interval: 1s\n{extra}scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr()
    )
}

fn put(promflow: &Promflow, path: &str, body: &str) -> HttpResponse {
    http::send(
        "PUT",
        &promflow.url(path),
        &[],
        Some("application/yaml"),
        body.as_bytes(),
    )
    .expect("PUT")
}

fn delete(promflow: &Promflow, path: &str) -> HttpResponse {
    http::send("DELETE", &promflow.url(path), &[], None, b"").expect("DELETE")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body}"))
}

/// `/api/v1/rules` groups.
fn rule_groups(promflow: &Promflow) -> Vec<Value> {
    json(&promflow.get_ok("/api/v1/rules"))["data"]["groups"]
        .as_array()
        .unwrap()
        .clone()
}

/// The `activeAt` of the pending or firing alert named `alertname`.
fn active_at(promflow: &Promflow, alertname: &str) -> Option<String> {
    let alerts = json(&promflow.get_ok("/api/v1/alerts"));
    alerts["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == alertname)
        .map(|a| a["activeAt"].as_str().unwrap().to_string())
}

/// The value of a one-element instant query, if there is one.
fn query_value(promflow: &Promflow, expr: &str) -> Option<f64> {
    let body = promflow.get_ok(&http::with_query("/api/v1/query", &[("query", expr)]));
    let v = json(&body);
    let result = v["data"]["result"].as_array()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

const CPU_GROUP: &str = "name: cpu\nrules:\n  - alert: HighCPU\n    expr: cpu_busy_percent > 90\n    for: 1s\n    labels:\n      severity: page\n    annotations:\n      summary: \"CPU {{ $value }} on {{ $labels.instance }}\"\n";

#[test]
fn registered_group_fires_then_resolves_when_deleted() {
    let webhook = Webhook::start();
    let am = Alertmanager::start(webhook.port);
    let exporter = Exporter::start(Reply::text("cpu_busy_percent 95\n"));
    let alerting = format!(
        "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{}']\n",
        am.port
    );
    let promflow =
        Promflow::start_with_args(&config(&exporter, &alerting), &["--web.enable-rules-api"]);

    let resp = put(&promflow, "/api/v1/rules/team-a/cpu", CPU_GROUP);
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(json(&resp.body)["status"], "success");
    let groups = rule_groups(&promflow);
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["name"], "cpu");
    assert_eq!(groups[0]["file"], "team-a");
    assert_eq!(groups[0]["origin"], "api");
    // The definition reads back as YAML, as Mimir's ruler API answers.
    let got = promflow.get("/api/v1/rules/team-a/cpu");
    assert_eq!(got.header("content-type"), Some("application/yaml"));
    let got: serde_yaml_ng::Value = serde_yaml_ng::from_str(&got.body).unwrap();
    let sent: serde_yaml_ng::Value = serde_yaml_ng::from_str(CPU_GROUP).unwrap();
    assert_eq!(got, sent);

    let firing = wait_for(WAIT, || webhook.with_status("firing")).unwrap_or_else(|| {
        panic!(
            "no firing webhook; alertmanager log:\n{}\nrules: {}",
            am.log(),
            promflow.get_ok("/api/v1/rules")
        )
    });
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "HighCPU");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("CPU 95 on {}", exporter.addr())
    );

    // The target still reports 95: only the deletion can resolve the alert.
    let resp = delete(&promflow, "/api/v1/rules/team-a/cpu");
    assert_eq!(resp.status, 202, "{}", resp.body);
    let resolved = wait_for(WAIT, || webhook.with_status("resolved"))
        .unwrap_or_else(|| panic!("no resolved webhook; log:\n{}", am.log()));
    let alert = &resolved["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "HighCPU");
    assert_eq!(alert["status"], "resolved");
    assert_eq!(alert["startsAt"], firing["alerts"][0]["startsAt"]);
    assert_ne!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(rule_groups(&promflow).is_empty());
    assert_eq!(active_at(&promflow, "HighCPU"), None);
    assert_eq!(promflow.get("/api/v1/rules/team-a/cpu").status, 404);
    assert_eq!(delete(&promflow, "/api/v1/rules/team-a/cpu").status, 404);
}

#[test]
fn a_change_to_one_group_leaves_other_groups_pending_alerts_alone() {
    let exporter = Exporter::start(Reply::text("a 1\nb 1\nc 1\n"));
    let rules_dir = tempfile::tempdir().unwrap();
    let rule_file = rules_dir.path().join("file.yml");
    std::fs::write(
        &rule_file,
        "groups:\n  - name: from-file\n    rules:\n      - alert: FileHeld\n        expr: a > 0\n        for: 10m\n",
    )
    .unwrap();
    let promflow = Promflow::start_with_args(
        &config(
            &exporter,
            &format!("rule_files:\n  - {}\n", rule_file.display()),
        ),
        &["--web.enable-rules-api", "--web.enable-lifecycle"],
    );
    // JSON bodies are accepted as well as YAML.
    let held =
        r#"{"name": "held", "rules": [{"alert": "ApiHeld", "expr": "b > 0", "for": "10m"}]}"#;
    assert_eq!(put(&promflow, "/api/v1/rules/ns/held", held).status, 202);
    let changing = "name: changing\nrules:\n  - alert: Changing\n    expr: c > 0\n    for: 10m\n";
    assert_eq!(
        put(&promflow, "/api/v1/rules/ns/changing", changing).status,
        202
    );
    let pending = |name: &str| {
        wait_for(WAIT, || active_at(&promflow, name))
            .unwrap_or_else(|| panic!("{name} never pending: {}", promflow.get_ok("/api/v1/rules")))
    };
    let (file_at, api_at, changing_at) =
        (pending("FileHeld"), pending("ApiHeld"), pending("Changing"));
    let origins: Vec<(String, String)> = rule_groups(&promflow)
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        origins.contains(&("from-file".into(), "file".into())),
        "{origins:?}"
    );
    assert!(
        origins.contains(&("held".into(), "api".into())),
        "{origins:?}"
    );

    // activeAt has second resolution in the API: wait so a restarted state would show.
    std::thread::sleep(Duration::from_millis(1500));
    let installed = || {
        promflow
            .metrics()
            .sum("promflow_engine_rules_installed_total")
            .expect("rules installed counter")
    };
    let installed_before = installed();
    let changed = "name: changing\nrules:\n  - alert: Changing\n    expr: c > 0.5\n    for: 10m\n";
    assert_eq!(
        put(&promflow, "/api/v1/rules/ns/changing", changed).status,
        202
    );
    // Only the changed group's one rule is installed in the dataflow again; the
    // other groups keep running untouched.
    assert_eq!(installed() - installed_before, 1.0);
    assert!(
        wait_until(WAIT, || active_at(&promflow, "Changing")
            .is_some_and(|at| at != changing_at)),
        "the changed rule did not start over"
    );
    assert_eq!(active_at(&promflow, "FileHeld"), Some(file_at.clone()));
    assert_eq!(active_at(&promflow, "ApiHeld"), Some(api_at.clone()));

    // Adding and removing other groups, and reloading the config, keep them too.
    let extra = "name: extra\nrules:\n  - record: c_doubled\n    expr: c * 2\n";
    assert_eq!(
        put(&promflow, "/api/v1/rules/other/extra", extra).status,
        202
    );
    assert!(wait_until(WAIT, || query_value(&promflow, "c_doubled") == Some(2.0)));
    assert_eq!(delete(&promflow, "/api/v1/rules/other").status, 202);
    assert_eq!(promflow.reload().status, 200);
    promflow.sighup();
    std::thread::sleep(Duration::from_millis(1500));
    let names: Vec<String> = rule_groups(&promflow)
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["from-file", "changing", "held"],
        "reload keeps API groups"
    );
    assert_eq!(active_at(&promflow, "FileHeld"), Some(file_at));
    assert_eq!(active_at(&promflow, "ApiHeld"), Some(api_at));
}

#[test]
fn registered_groups_come_back_after_a_restart() {
    let exporter = Exporter::start(Reply::text("cpu_busy_percent 42\n"));
    let promflow = Promflow::start_with_args(&config(&exporter, ""), &["--web.enable-rules-api"]);
    let group = "name: rec\ninterval: 1s\nrules:\n  - record: job:cpu_busy_percent:max\n    expr: max by (job) (cpu_busy_percent)\n";
    assert_eq!(put(&promflow, "/api/v1/rules/team/rec", group).status, 202);
    assert!(wait_until(WAIT, || query_value(
        &promflow,
        "job:cpu_busy_percent:max"
    ) == Some(42.0)));
    let before = promflow.get_ok("/api/v1/rules/team");

    let restarted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let promflow = promflow.restart();
    assert_eq!(promflow.get_ok("/api/v1/rules/team"), before);
    let groups = rule_groups(&promflow);
    assert_eq!(groups[0]["origin"], "api");
    // A sample written after the restart: the group evaluates again.
    let fresh = format!("timestamp(job:cpu_busy_percent:max) > {restarted_at}");
    assert!(
        wait_until(WAIT, || query_value(&promflow, &fresh).is_some()),
        "no evaluation after the restart: {}",
        promflow.get_ok("/api/v1/rules")
    );
}

/// Runs promtool (with the duplicate-rules lint fatal) on `group_yaml` as a rule file.
fn promtool_accepts(group_yaml: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::from("groups:\n");
    for (i, line) in group_yaml.lines().enumerate() {
        file.push_str(if i == 0 { "  - " } else { "    " });
        file.push_str(line);
        file.push('\n');
    }
    std::fs::write(dir.path().join("r.yml"), file).unwrap();
    promtool(
        &[
            "check",
            "rules",
            "--lint=duplicate-rules",
            "--lint-fatal",
            "r.yml",
        ],
        dir.path(),
    )
    .0
}

#[test]
fn invalid_registrations_are_refused_and_change_nothing() {
    let exporter = Exporter::start(Reply::text("up_like 1\n"));
    let rules_dir = tempfile::tempdir().unwrap();
    let rule_file = rules_dir.path().join("file.yml");
    std::fs::write(&rule_file, "groups: []\n").unwrap();
    let promflow = Promflow::start_with_args(
        &config(
            &exporter,
            &format!("rule_files:\n  - {}\n", rule_file.display()),
        ),
        &["--web.enable-rules-api"],
    );
    let good = "name: g\nrules:\n  - record: r\n    expr: up_like * 2\n";
    assert_eq!(put(&promflow, "/api/v1/rules/ns/g", good).status, 202);
    let state_file = promflow.dir().join("data/rule_groups.yml");
    let stored = std::fs::read_to_string(&state_file).unwrap();
    let definitions = promflow.get_ok("/api/v1/rules/ns");

    // Groups that are wrong as rule-file groups: promtool rejects each one as well.
    let invalid_groups = [
        ("name: g\nrules:\n  - record: r\n    expr: sum(rate(up_like[5m])\n", "rule group body:4: group \"g\", rule 1, \"r\": could not parse expression"),
        ("name: g\nrules:\n  - record: r\n    expr: up_like\n    bogus: 1\n", "rule group body:5: field rules[0].bogus not found"),
        ("name: g\nsurprise: true\nrules: []\n", "rule group body:2: field surprise not found"),
        ("name: g\nrules:\n  - record: r\n    expr: up_like\n  - record: r\n    expr: up_like * 3\n", "rules 1 and 2 both record \"r\""),
        ("name: g\nrules:\n  - record: bad name\n    expr: up_like\n", "invalid recording rule name: bad name"),
        ("name: g\nrules:\n  - record: r\n    expr: up_like\n    for: 1m\n", "invalid field 'for' in recording rule"),
        ("name: g\nrules:\n  - alert: A\n    expr: up_like\n    for: soon\n", "rule group body:5"),
        ("name: g\nrules:\n  - alert: A\n    expr: up_like\n    annotations:\n      s: \"{{ .Oops \"\n", "annotation \"s\""),
        ("name: g\nrules:\n  - expr: up_like\n", "one of 'record' or 'alert' must be set"),
        ("name: g\nrules:\n  - record: r\n    expr: [unclosed\n", "rule group body:5: did not find expected ',' or ']'"),
    ];
    for (body, expected) in invalid_groups {
        assert!(!promtool_accepts(body), "promtool accepts {body:?}");
        let resp = put(&promflow, "/api/v1/rules/ns/g", body);
        assert_eq!(resp.status, 400, "{body:?}: {}", resp.body);
        let v = json(&resp.body);
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "bad_data");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(expected), "{body:?}: {error}");
    }
    // Bodies that are not one group named like the URL's.
    for (path, body, expected) in [
        ("/api/v1/rules/ns/g", "", "empty"),
        ("/api/v1/rules/ns/g", "name: other\nrules: []\n", "differs"),
        (
            "/api/v1/rules/ns/g",
            "groups:\n  - name: g\n    rules: []\n",
            "not a rule file",
        ),
        ("/api/v1/rules/ns/g", "[1, 2]", "one rule group"),
        (
            "/api/v1/rules/ns/g",
            "{\"name\": \"g\", \"rules\": [}",
            "did not find expected",
        ),
        (
            &format!(
                "/api/v1/rules/{}/g",
                http::encode(&rule_file.display().to_string())
            ),
            "name: g\nrules: []\n",
            "is a rule file of the configuration",
        ),
    ] {
        let resp = put(&promflow, path, body);
        assert_eq!(resp.status, 400, "{body:?}: {}", resp.body);
        let v = json(&resp.body);
        assert_eq!(v["errorType"], "bad_data");
        assert!(
            v["error"].as_str().unwrap().contains(expected),
            "{body:?}: {}",
            v["error"]
        );
    }
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), stored);
    assert_eq!(promflow.get_ok("/api/v1/rules/ns"), definitions);
    let groups = rule_groups(&promflow);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["rules"][0]["query"], "up_like * 2");
    assert!(wait_until(WAIT, || query_value(&promflow, "r") == Some(2.0)));
}
