//! The built-in notifier's email receiver against a real SMTP server
//! (`aiosmtpd` on loopback, tests/common/smtp.rs) and against the real
//! Alertmanager 0.25 (the oracle): both get the same config and alerts and must
//! send the same messages — the same headers (`From`, `To`, `Subject`, custom and
//! Q-encoded ones, `Content-Type`, `MIME-Version`), the same envelope, and the same
//! text and HTML parts (Alertmanager's default `email.default.html`, values
//! HTML-escaped). Only what depends on the instance is normalised: the external URL,
//! `Message-Id`, `Date` and the multipart boundary (their form is checked). A second
//! test sends through STARTTLS and AUTH PLAIN, both sides, to the same kind of
//! server.
//!
//! Real peers: Alertmanager 0.25 (`prometheus-alertmanager`), aiosmtpd (PyPI), promflow.

mod common;

use common::alertmanager::{Alertmanager, EXTERNAL_URL};
use common::receiver::CaptureServer;
use common::smtp::{Mail, SmtpServer};
use common::tls::TestPki;
use common::{http, Promflow};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fn config(smtp: &SmtpServer, hook: &CaptureServer) -> String {
    format!(
        r#"
global:
  smtp_smarthost: '{smarthost}'
  smtp_from: 'Alertmanager <alertmanager@example.org>'
  smtp_require_tls: false
route:
  receiver: team
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    email_configs:
      - to: 'team-X+alerts@example.org'
      - to: 'Ops <ops@example.org>, oncall@example.org'
        send_resolved: true
        hello: promflow.test
        headers:
          subject: 'Ünïcode — {{{{ template "email.default.subject" . }}}}'
          X-Team: '{{{{ .CommonLabels.team }}}}'
        text: '{{{{ range .Alerts }}}}{{{{ .Labels.instance }}}}: {{{{ .Annotations.summary }}}} {{{{ .Status }}}}{{{{ "\n" }}}}{{{{ end }}}}'
    webhook_configs:
      - url: {hook}
"#,
        smarthost = smtp.smarthost(),
        hook = hook.url("/hook"),
    )
}

fn alert(instance: &str, ends: Option<&str>) -> Value {
    let starts = (chrono::Utc::now() - chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut a = json!({
        "labels": {"alertname": "HighLatency", "instance": instance, "team": "X", "severity": "page"},
        "annotations": {
            "summary": format!("Latency <b>high</b> on {instance} & \"rising\""),
            "description": "p99 > 1s — for 5 minutes",
        },
        "generatorURL": "http://prometheus.test/graph?g0.expr=latency+%3E+1&g0.tab=1",
        "startsAt": starts,
    });
    if let Some(e) = ends {
        a["endsAt"] = json!(e);
    }
    a
}

fn post(url: &str, alerts: &Value) {
    let r = http::post(url, Some("application/json"), alerts.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 200, "POST {url}: {}", r.body);
}

/// A message as comparable values: stable headers, envelope, parts, with the
/// external URL replaced; the per-message headers' form is checked here.
fn comparable(mail: &Mail, external_url: &str) -> Value {
    let message_id = mail.header("Message-Id").expect("Message-Id");
    assert!(
        regex::Regex::new(r"^<\d+\.\d+@[^>]+>$")
            .unwrap()
            .is_match(message_id),
        "Message-Id {message_id:?}"
    );
    let date = mail.header("Date").expect("Date");
    assert!(
        chrono::DateTime::parse_from_rfc2822(date).is_ok() && date.len() == 31,
        "Date {date:?} is RFC 1123 with a numeric zone"
    );
    let headers: BTreeMap<String, String> = mail.stable_headers();
    let parts: Vec<(String, String)> = mail
        .parts
        .iter()
        .map(|(t, b)| (t.clone(), b.replace(external_url, "EXTERNAL_URL")))
        .collect();
    json!({
        "headers": headers,
        "mail_from": mail.meta["mail_from"],
        "rcpt_tos": mail.meta["rcpt_tos"],
        "hello": mail.meta["hello"],
        "parts": parts,
    })
}

fn sorted(mails: &[Mail], external_url: &str) -> Vec<Value> {
    let mut v: Vec<Value> = mails.iter().map(|m| comparable(m, external_url)).collect();
    v.sort_by_key(|m| m.to_string());
    v
}

#[test]
fn email_matches_alertmanager() {
    let (am_smtp, pf_smtp) = (SmtpServer::start(), SmtpServer::start());
    let (am_hook, pf_hook) = (CaptureServer::start(), CaptureServer::start());
    let am = Alertmanager::start_with_config(&config(&am_smtp, &am_hook));
    let dir = tempfile::tempdir().unwrap();
    let am_config = dir.path().join("am.yml");
    std::fs::write(&am_config, config(&pf_smtp, &pf_hook)).unwrap();
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!(
            "--alertmanager.config.file={}",
            am_config.display()
        )],
    );

    let firing = json!([alert("a", None), alert("b", None)]);
    post(&am.url("/api/v2/alerts"), &firing);
    post(&promflow.url("/api/v2/alerts"), &firing);
    let expected = am_smtp.wait_for(2, Duration::from_secs(30));
    let got = pf_smtp.wait_for(2, Duration::from_secs(30));
    pf_hook.wait_for(1, Duration::from_secs(30));
    let pf_url = pf_hook.requests()[0].json()["externalURL"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = sorted(&expected, EXTERNAL_URL);
    assert_eq!(expected.len(), 2);
    let html = expected
        .iter()
        .flat_map(|m| m["parts"].as_array().unwrap().clone())
        .find(|p| p[0] == "text/html; charset=UTF-8")
        .expect("an HTML part");
    assert!(
        html[1]
            .as_str()
            .unwrap()
            .contains("Latency &lt;b&gt;high&lt;/b&gt;"),
        "the oracle escapes values in HTML: {html}"
    );
    assert_eq!(sorted(&got, &pf_url), expected);

    // Resolved: only the entry with send_resolved sends again.
    let ends = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let resolved = json!([alert("a", Some(&ends)), alert("b", Some(&ends))]);
    post(&am.url("/api/v2/alerts"), &resolved);
    post(&promflow.url("/api/v2/alerts"), &resolved);
    let expected = am_smtp.wait_for(3, Duration::from_secs(30));
    let got = pf_smtp.wait_for(3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(am_smtp.mails().len(), 3);
    assert_eq!(pf_smtp.mails().len(), 3);
    assert_eq!(
        comparable(&got[2], &pf_url),
        comparable(&expected[2], EXTERNAL_URL)
    );
}

#[test]
fn email_through_starttls_and_auth() {
    let pki = TestPki::generate();
    let options = [
        "--tls".to_string(),
        pki.file("server.crt"),
        pki.file("server.key"),
        "--auth".into(),
        "alertmanager".into(),
        "s3cret".into(),
    ];
    let (am_smtp, pf_smtp) = (
        SmtpServer::start_with(&options),
        SmtpServer::start_with(&options),
    );
    let config = |smtp: &SmtpServer| {
        format!(
            "route:\n  receiver: team\n  group_wait: 1s\nreceivers:\n  - name: team\n    email_configs:\n      - to: team@example.org\n        from: am@example.org\n        smarthost: 'localhost:{port}'\n        auth_username: alertmanager\n        auth_password: s3cret\n        tls_config:\n          ca_file: {ca}\n",
            port = smtp.smarthost().rsplit_once(':').unwrap().1,
            ca = pki.file("ca.crt"),
        )
    };
    let am = Alertmanager::start_with_config(&config(&am_smtp));
    let dir = tempfile::tempdir().unwrap();
    let am_config = dir.path().join("am.yml");
    std::fs::write(&am_config, config(&pf_smtp)).unwrap();
    let promflow = Promflow::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &[&format!(
            "--alertmanager.config.file={}",
            am_config.display()
        )],
    );
    let firing = json!([alert("a", None)]);
    post(&am.url("/api/v2/alerts"), &firing);
    post(&promflow.url("/api/v2/alerts"), &firing);
    for smtp in [&am_smtp, &pf_smtp] {
        let mail = &smtp.wait_for(1, Duration::from_secs(30))[0];
        assert_eq!(mail.meta["tls"], true, "{:?}", mail.meta);
        assert_eq!(mail.meta["authenticated"], true, "{:?}", mail.meta);
        assert_eq!(mail.meta["rcpt_tos"], json!(["team@example.org"]));
        assert_eq!(mail.meta["hello"], "localhost");
    }
}
