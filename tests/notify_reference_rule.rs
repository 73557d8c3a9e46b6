//! The reference rule of DESIGN.md — CPU over 90% for 20 minutes — through the rule
//! state machine and the built-in notifier to local Slack and Pushover servers, on a
//! virtual clock: samples carry explicit timestamps, the group is evaluated every
//! minute, and the notifier's timers (group_wait 30s, group_interval 5m,
//! repeat_interval 1h) run on the same clock. Deliveries are real HTTP requests.
//!
//! Timeline (minutes; samples at :30 so no range edge falls on a sample):
//! CPU 50 until 10:30, 95 from 10:30 to 100:30, then 20.
//! - 11:00 first evaluation over 90 → pending (no notification);
//! - 31:00 = 11:00 + 20m → firing; notified at 31:30 (group_wait);
//! - re-sent by the rule manager every minute, merged: nothing new until
//!   repeat_interval has passed at a group_interval tick: 96:30 (91:30 is exactly
//!   1h after 31:30, and Alertmanager repeats only once *more* than that has passed);
//! - 101:00 CPU below → resolved; notified at 101:30.
//!
//! External services: none but the two capture servers (tests/common/receiver.rs).

mod common;

use common::receiver::{check_pushover_request, check_slack_request, CaptureServer};
use dataflows::{Labels, Sample};
use promflow::alertmanager::config::NotifyConfig;
use promflow::alertmanager::sink::to_builtin;
use promflow::alertmanager::BuiltinNotifier;
use promflow::notifier::NotifierConfig;
use promflow::rules::alert::AlertState;
use promflow::rules::group::GroupState;
use promflow::rules::options::ManagerOptions;
use promflow::rules::sinks::{HeadEvaluator, RuleEvaluator, SampleSink};
use promflow::storage::Storage;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const T0_MS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MINUTE_MS: i64 = 60_000;
const RUNBOOK: &str = "https://runbooks.example.com/high-cpu";

const RULES: &str = r#"
groups:
  - name: host
    interval: 1m
    rules:
      - alert: HighCPU
        expr: cpu_busy_percent > 90
        for: 20m
        labels:
          severity: page
        annotations:
          summary: "CPU of {{ $labels.instance }} is {{ $value }}%"
          runbook_url: "https://runbooks.example.com/high-cpu"
"#;

fn notifier_config(slack: &CaptureServer, pushover: &CaptureServer) -> String {
    format!(
        r#"
route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
receivers:
  - name: oncall
    slack_configs:
      - api_url: {slack}
        channel: '#oncall'
        send_resolved: true
        title: '{{{{ .CommonLabels.alertname }}}} on {{{{ .CommonLabels.instance }}}} is {{{{ .Status }}}}'
        title_link: '{{{{ .CommonAnnotations.runbook_url }}}}'
        text: '{{{{ range .Alerts }}}}{{{{ .Annotations.summary }}}} (<{{{{ .Annotations.runbook_url }}}}|runbook>){{{{ end }}}}'
        fields:
          - title: Severity
            value: '{{{{ .CommonLabels.severity }}}}'
            short: true
    pushover_configs:
      - api_url: {pushover}
        user_key: uQiRzpo4DXghDmr9QzzfQu27cmVRsG
        token: azGDORePK8gMaC0QOYAMyEEuzJnyUi
        title: '{{{{ .CommonLabels.alertname }}}} {{{{ .Status }}}}'
        message: '{{{{ .CommonAnnotations.summary }}}}'
        url: '{{{{ .CommonAnnotations.runbook_url }}}}'
        url_title: Runbook
"#,
        slack = slack.url("/services/T000/B000/XXXX"),
        pushover = pushover.url("/1/messages.json"),
    )
}

fn cpu_sample(minute: i64, value: f64) -> Sample {
    let labels = Arc::new(Labels::from_pairs(vec![
        ("__name__".into(), "cpu_busy_percent".into()),
        ("instance".into(), "host-a:9100".into()),
        ("job".into(), "node".into()),
    ]));
    Sample {
        series_id: labels.hash(),
        labels,
        timestamp_ms: T0_MS + minute * MINUTE_MS + 30_000,
        value,
        start_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_over_90_for_20m_pages_once_per_state_change() {
    let (slack, pushover) = (CaptureServer::start(), CaptureServer::start());
    let head = Arc::new(Storage::new());
    let samples: Vec<Sample> = (0..=130)
        .map(|m| {
            cpu_sample(
                m,
                if (10..100).contains(&m) {
                    95.0
                } else if m < 10 {
                    50.0
                } else {
                    20.0
                },
            )
        })
        .collect();
    head.append(&samples).expect("append the input series");
    let groups =
        promflow::rules::file::load_str(RULES, "rules.yml", Path::new("rules.yml")).unwrap();
    let mut group = GroupState::new(groups[0].clone(), Duration::from_secs(60));
    let evaluator: Arc<dyn RuleEvaluator> =
        Arc::new(HeadEvaluator::new(head.clone(), 5 * MINUTE_MS));
    let options = ManagerOptions {
        external_url: "http://promflow.example:9090".into(),
        ..ManagerOptions::default()
    };
    let sender = NotifierConfig {
        external_url: options.external_url.clone(),
        ..NotifierConfig::default()
    };
    let notifier = BuiltinNotifier::new();
    let config = NotifyConfig::load_str(
        &notifier_config(&slack, &pushover),
        "am.yml",
        Path::new("."),
    )
    .unwrap();
    notifier.apply(Some(config), "http://promflow.example:9090");

    // (virtual second of the notification, Slack body)
    let mut notified: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut states: Vec<(i64, AlertState)> = Vec::new();
    let step_ms = 10_000;
    let mut t = T0_MS;
    while t <= T0_MS + 110 * MINUTE_MS {
        let now_ns = t * 1_000_000;
        if (t - T0_MS) % MINUTE_MS == 0 {
            let sends = group.evaluate(t, &evaluator, &*head as &dyn SampleSink, &options);
            if let Some(alert) = group.rules[0]
                .alerts
                .as_ref()
                .and_then(|s| s.alerts().next().cloned())
            {
                if states.last().map(|(_, s)| *s) != Some(alert.state) {
                    states.push(((t - T0_MS) / 1000, alert.state));
                }
            }
            for (expr, alerts) in sends {
                notifier.put(
                    to_builtin(&sender, &expr, &alerts, now_ns, 300_000_000_000),
                    now_ns,
                );
            }
        }
        notifier.flush_due(now_ns).await;
        for request in slack.requests().into_iter().skip(notified.len()) {
            notified.push(((t - T0_MS) / 1000, check_slack_request(&request)));
        }
        t += step_ms;
    }

    // The alert's own transitions: pending at the first crossing, firing 20m later.
    assert_eq!(
        states,
        [
            (11 * 60, AlertState::Pending),
            (31 * 60, AlertState::Firing),
            (101 * 60, AlertState::Inactive)
        ]
    );
    let times: Vec<i64> = notified.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [31 * 60 + 30, 96 * 60 + 30, 101 * 60 + 30],
        "Slack notifications at"
    );

    let firing = &notified[0].1;
    assert_eq!(firing["channel"], "#oncall");
    let attachment = &firing["attachments"][0];
    assert_eq!(attachment["title"], "HighCPU on host-a:9100 is firing");
    assert_eq!(attachment["title_link"], RUNBOOK);
    assert_eq!(
        attachment["text"],
        format!("CPU of host-a:9100 is 95% (<{RUNBOOK}|runbook>)")
    );
    assert_eq!(attachment["color"], "danger");
    assert_eq!(
        attachment["fields"],
        serde_json::json!([{"title": "Severity", "value": "page", "short": true}])
    );
    let resolved = &notified[2].1["attachments"][0];
    assert_eq!(resolved["title"], "HighCPU on host-a:9100 is resolved");
    assert_eq!(resolved["color"], "good");

    let pushes = pushover.requests();
    assert_eq!(pushes.len(), 3, "one Pushover message per Slack message");
    let form = check_pushover_request(&pushes[0]);
    assert_eq!(form["token"], "azGDORePK8gMaC0QOYAMyEEuzJnyUi");
    assert_eq!(form["user"], "uQiRzpo4DXghDmr9QzzfQu27cmVRsG");
    assert_eq!(form["title"], "HighCPU firing");
    assert_eq!(form["message"], "CPU of host-a:9100 is 95%");
    assert_eq!(form["url"], RUNBOOK);
    assert_eq!(form["url_title"], "Runbook");
    assert_eq!(
        form["priority"], "2",
        "firing pages with emergency priority by default"
    );
    assert_eq!(
        (form["retry"].as_str(), form["expire"].as_str()),
        ("60", "3600")
    );
    let form = check_pushover_request(&pushes[2]);
    assert_eq!(form["title"], "HighCPU resolved");
    assert_eq!(form["priority"], "0");
}
