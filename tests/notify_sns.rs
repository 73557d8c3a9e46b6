//! The built-in notifier's SNS receiver against the real Alertmanager 0.25 (the
//! oracle), both publishing to their own real SNS API: `moto_server` on loopback
//! (`api_url`, SigV4 with static keys). Each moto gets the same topics (a standard
//! and a FIFO one) and a platform endpoint; both notifiers get the same
//! `sns_configs` — `topic_arn` with templated message attributes, a FIFO
//! `topic_arn` with templated subject and message, `phone_number` (an SMS, cut to
//! 1600 bytes), `target_arn` without `send_resolved` — and the same alerts (one
//! group over SNS's 256 KiB message limit). What moto recorded (`/moto-api/data.json`:
//! each topic's message, subject, attributes and FIFO group id, the SMS, the
//! endpoint's messages) must be the same, firing and resolved. Load-time checks are
//! compared with `amtool check-config`.
//!
//! Real peers: Alertmanager 0.25 and amtool (`prometheus-alertmanager`), moto
//! (`moto[server]`, PyPI), promflow.

mod common;

use common::http;
use common::moto::{sdk_config, spawn_moto};
use common::notify_pair::{alert, assert_same_verdict, now, NotifyPair, ROUTE};
use common::Peer;
use serde_json::{json, Value};
use std::time::Duration;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alerts";
const FIFO_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alerts.fifo";

/// Creates the topics and a platform endpoint in `moto`; the endpoint's ARN.
fn prepare(moto: &Peer) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = aws_sdk_sns::Client::new(&sdk_config(moto));
    runtime.block_on(async {
        client
            .create_topic()
            .name("alerts")
            .send()
            .await
            .expect("CreateTopic");
        client
            .create_topic()
            .name("alerts.fifo")
            .attributes("FifoTopic", "true")
            .send()
            .await
            .expect("CreateTopic fifo");
        let app = client
            .create_platform_application()
            .name("app")
            .platform("GCM")
            .attributes("PlatformCredential", "key")
            .send()
            .await
            .expect("CreatePlatformApplication");
        let endpoint = client
            .create_platform_endpoint()
            .platform_application_arn(app.platform_application_arn().unwrap())
            .token("device-token")
            .send()
            .await
            .expect("CreatePlatformEndpoint");
        endpoint.endpoint_arn().unwrap().to_string()
    })
}

fn config(moto: &Peer, endpoint_arn: &str) -> String {
    format!(
        r#"
{ROUTE}receivers:
  - name: team
    sns_configs:
      - api_url: {url}
        sigv4: &sigv4
          region: us-east-1
          access_key: AKIDEXAMPLE
          secret_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
        topic_arn: {TOPIC}
        attributes:
          severity: '{{{{ .CommonLabels.severity }}}}'
          '{{{{ .GroupLabels.alertname }}}}': '{{{{ .Status }}}}'
      - api_url: {url}
        sigv4: *sigv4
        topic_arn: {FIFO_TOPIC}
        subject: '{{{{ .Status | toUpper }}}} {{{{ .CommonLabels.alertname }}}}'
        message: '{{{{ range .Alerts }}}}{{{{ .Labels.instance }}}}={{{{ .Status }}}} {{{{ end }}}}'
      - api_url: {url}
        sigv4: *sigv4
        phone_number: '+15555550100'
      - api_url: {url}
        sigv4: *sigv4
        target_arn: {endpoint_arn}
        send_resolved: false
"#,
        url = moto.url(""),
    )
}

fn alerts(ends: Option<&str>) -> Value {
    let down = |i: &str| json!({"summary": format!("Instance {i} is down & <unreachable>")});
    // Over SNS's 256 KiB (7 + 300000 bytes), ending in 2-byte characters.
    let huge = json!({"summary": format!("{}{}", "x".repeat(262_140), "é".repeat(20_000))});
    json!([
        alert("InstanceDown", "a:9100", down("a"), ends),
        alert("InstanceDown", "b:9100", down("b"), ends),
        alert("Huge", "c:9100", huge, ends),
    ])
}

/// What `moto` recorded: per topic its notifications (without message ids), the
/// SMS, the platform endpoint's messages; each sorted.
fn recorded(moto: &Peer) -> Value {
    let data: Value =
        serde_json::from_str(&http::get(&moto.url("/moto-api/data.json")).unwrap().body).unwrap();
    let sns = &data["sns"];
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|x| x.to_string());
        v
    };
    let topics: Vec<Value> = sns["Topic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let sent = t["sent_notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| json!(n.as_array().unwrap()[1..]))
                .collect();
            json!({"name": t["name"], "sent": sorted(sent)})
        })
        .collect();
    let sms = sns["SMS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["phone_number"], m["message"]]))
        .collect();
    let endpoint = sns["PlatformEndpoint"][0]["messages"]
        .as_object()
        .unwrap()
        .values()
        .cloned()
        .collect();
    json!({"topics": sorted(topics), "sms": sorted(sms), "endpoint": sorted(endpoint)})
}

fn count(recorded: &Value) -> usize {
    let topics: usize = recorded["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sent"].as_array().unwrap().len())
        .sum();
    topics
        + recorded["sms"].as_array().unwrap().len()
        + recorded["endpoint"].as_array().unwrap().len()
}

fn wait_recorded(moto: &Peer, n: usize) -> Value {
    common::wait_until(Duration::from_secs(30), || count(&recorded(moto)) >= n);
    recorded(moto)
}

#[test]
fn sns_matches_alertmanager() {
    let (am_moto, pf_moto) = (spawn_moto(), spawn_moto());
    let (am_endpoint, pf_endpoint) = (prepare(&am_moto), prepare(&pf_moto));
    let pair = NotifyPair::start(
        &config(&am_moto, &am_endpoint),
        &config(&pf_moto, &pf_endpoint),
    );

    pair.post(&alerts(None));
    let expected = wait_recorded(&am_moto, 8);
    let got = wait_recorded(&pf_moto, 8);
    assert_eq!(count(&expected), 8, "{}", pair.am.log());
    let plain = &expected["topics"][0];
    assert_eq!(plain["name"], "alerts");
    let huge = plain["sent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n[0].as_str().unwrap().len() > 200_000)
        .expect("the huge group's notification");
    assert_eq!(huge[0].as_str().unwrap().len(), 256 * 1024);
    assert_eq!(
        huge[2]["truncated"],
        json!({"Type": "String", "Value": "true"})
    );
    let fifo = &expected["topics"][1]["sent"][0];
    assert_eq!(
        fifo[3].as_str().map(str::len),
        Some(64),
        "a SHA-256 group id: {fifo}"
    );
    assert!(expected["sms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m[1].as_str().unwrap().len() == 1600));
    assert_eq!(got, expected);

    // Resolved: all but the target_arn entry publish again.
    pair.post(&alerts(Some(&now())));
    let expected = wait_recorded(&am_moto, 14);
    let got = wait_recorded(&pf_moto, 14);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&recorded(&am_moto)), 14);
    assert_eq!(count(&recorded(&pf_moto)), 14);
    assert_eq!(got, expected);
}

#[test]
fn sns_config_checks_match_amtool() {
    let entry = |fields: &str| {
        format!(
            "route:\n  receiver: s\nreceivers:\n  - name: s\n    sns_configs:\n      - {fields}\n"
        )
    };
    for (config, message) in [
        (entry("topic_arn: arn:aws:sns:us-east-1:1:t"), ""),
        (entry("phone_number: '+1555'"), ""),
        (entry("target_arn: arn:t\n        sigv4: {region: eu-west-1, access_key: a, secret_key: s}"), ""),
        // Alertmanager's XOR accepts all three too.
        (entry("topic_arn: t\n        phone_number: p\n        target_arn: a"), ""),
        (
            entry("subject: s"),
            "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config",
        ),
        (
            entry("topic_arn: t\n        phone_number: p"),
            "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config",
        ),
        (
            entry("topic_arn: t\n        sigv4: {access_key: a}"),
            "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SigV4 config",
        ),
    ] {
        assert_same_verdict(&config, message);
    }
}
