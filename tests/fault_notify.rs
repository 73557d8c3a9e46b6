//! Notification targets that hang do not stop rule evaluation and lose nothing.
//!
//! promflow evaluates an alerting rule over five scraped series (five alerts) and a
//! recording rule every second, and notifies a real Alertmanager 0.25 (Prometheus's
//! notifier path) and, through its built-in Alertmanager, Slack and Pushover stand-ins.
//! All three hang: Alertmanager is frozen with SIGSTOP (its socket still accepts,
//! nothing answers), the Slack and Pushover servers read each request and hold the
//! answer. For `STUCK` seconds:
//! - the rule group's `lastEvaluation` keeps moving (a new value nearly every second)
//!   and the recording rule gets a sample every evaluation;
//! - requests keep being attempted (retries, each ended by its timeout).
//!
//! Then Alertmanager gets SIGCONT and the servers answer 200: every one of the five
//! alerts reaches Alertmanager's webhook, Slack and Pushover. Toward Alertmanager this
//! is Prometheus's contract: a batch that no Alertmanager took within its `timeout`
//! (retried with backoff meanwhile) is counted in `prometheus_notifications_dropped_total`,
//! and firing alerts are sent again every `--rules.alert.resend-delay` (2s here); the
//! built-in Alertmanager's receivers keep their notifications until delivered. External services: Alertmanager 0.25 (`prometheus-alertmanager`);
//! the rest are threads of this test on 127.0.0.1.

mod common;

use common::alertmanager::{Alertmanager, Webhook};
use common::exporter::{Exporter, Reply};
use common::http::with_query;
use common::{wait_until, Promflow};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ALERTS: usize = 5;
const STUCK: Duration = Duration::from_secs(10);

/// An HTTP server that records each request's body and answers 200 (with `reply`)
/// only once released; until then every connection hangs after its request.
struct Stuck {
    addr: SocketAddr,
    released: Arc<AtomicBool>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Stuck {
    fn start(reply: &'static str) -> Stuck {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (r, b) = (released.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(10_000) {
                let Ok(mut stream) = stream else { continue };
                let (r, b) = (r.clone(), b.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 8192];
                    // Head, then Content-Length bytes of body.
                    let body = loop {
                        match stream.read(&mut buf) {
                            Ok(n) if n > 0 => raw.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if raw.len() >= end + 4 + len {
                            break String::from_utf8_lossy(&raw[end + 4..end + 4 + len])
                                .into_owned();
                        }
                    };
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while !r.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    // A form body (Pushover) is decoded, so its text reads as Slack's.
                    let body = match serde_urlencoded::from_str::<Vec<(String, String)>>(&body) {
                        Ok(pairs) if !body.starts_with('{') => pairs
                            .into_iter()
                            .map(|(_, v)| v)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => body,
                    };
                    b.lock().unwrap().push(body);
                    let _ = stream.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                            reply.len()
                        )
                        .as_bytes(),
                    );
                });
            }
        });
        Stuck {
            addr,
            released,
            bodies,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Which of the alerts `n="0"`… the answered requests named (`n=<i>;` in the text).
    fn alerts_delivered(&self) -> BTreeSet<usize> {
        let bodies = self.bodies.lock().unwrap();
        (0..ALERTS)
            .filter(|n| bodies.iter().any(|b| b.contains(&format!("n={n};"))))
            .collect()
    }
}

fn builtin_am_config(slack: &Stuck, pushover: &Stuck) -> String {
    format!(
        r#"route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: oncall
    slack_configs:
      - api_url: {slack}
        channel: '#oncall'
        text: '{{{{ range .Alerts }}}}n={{{{ .Labels.n }}}}; {{{{ end }}}}'
    pushover_configs:
      - api_url: {pushover}
        user_key: uQiRzpo4DXghDmr9QzzfQu27cmVRsG
        token: azGDORePK8gMaC0QOYAMyEEuzJnyUi
        message: '{{{{ range .Alerts }}}}n={{{{ .Labels.n }}}}; {{{{ end }}}}'
"#,
        slack = slack.url("/services/T/B/X"),
        pushover = pushover.url("/1/messages.json"),
    )
}

/// The rule group's `lastEvaluation` as promflow reports it.
fn last_evaluation(promflow: &Promflow) -> String {
    let v: Value = serde_json::from_str(&promflow.get_ok("/api/v1/rules")).unwrap();
    v["data"]["groups"][0]["lastEvaluation"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn hanging_notifiers_block_no_evaluation_and_lose_no_alert() {
    let body: String = (0..ALERTS)
        .map(|n| format!("fault_metric{{n=\"{n}\"}} 1\n"))
        .collect();
    let exporter = Exporter::start(Reply::text(&body));
    let webhook = Webhook::start();
    let am = Alertmanager::start(webhook.port);
    let (slack, pushover) = (Stuck::start("ok"), Stuck::start(r#"{"status":1}"#));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: faults\n    interval: 1s\n    rules:\n      - record: fault_tick\n        expr: count(fault_metric)\n      - alert: Fault\n        expr: fault_metric > 0\n",
    )
    .unwrap();
    let am_config = dir.path().join("am.yml");
    std::fs::write(&am_config, builtin_am_config(&slack, &pushover)).unwrap();

    // Frozen before the first alert goes out.
    am.signal("STOP");
    let promflow = Promflow::start_with_args(
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - timeout: 2s\n      static_configs:\n        \
             - targets: ['127.0.0.1:{}']\nscrape_configs:\n  - job_name: app\n    \
             static_configs:\n      - targets: ['{}']\n",
            rules.display(),
            am.port,
            exporter.addr()
        ),
        &[&format!(
            "--alertmanager.config.file={}",
            am_config.display()
        )],
    );

    // While everything downstream hangs, evaluation goes on.
    assert!(
        wait_until(Duration::from_secs(20), || !last_evaluation(&promflow)
            .is_empty()),
        "the group never evaluated"
    );
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    while started.elapsed() < STUCK {
        seen.insert(last_evaluation(&promflow));
        std::thread::sleep(Duration::from_millis(250));
    }
    let stuck_secs = STUCK.as_secs() as usize;
    assert!(
        seen.len() + 2 >= stuck_secs,
        "{} distinct lastEvaluation values in {stuck_secs}s while notifiers hung: {seen:?}",
        seen.len()
    );
    let v: Value = serde_json::from_str(&promflow.get_ok(&with_query(
        "/api/v1/query",
        &[(
            "query",
            &format!("count_over_time(fault_tick[{stuck_secs}s])"),
        )],
    )))
    .unwrap();
    let ticks: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap();
    assert!(
        ticks + 2.0 >= stuck_secs as f64,
        "{ticks} recording-rule samples in {stuck_secs}s while notifiers hung"
    );
    let attempts = promflow
        .metrics()
        .sum("prometheus_notifications_errors_total")
        .unwrap_or(0.0);
    eprintln!("Alertmanager attempts failed while frozen: {attempts}");
    assert!(
        attempts >= 1.0,
        "no failed attempt to the frozen Alertmanager"
    );

    // Everything comes back: nothing was lost.
    am.signal("CONT");
    slack.released.store(true, Ordering::SeqCst);
    pushover.released.store(true, Ordering::SeqCst);
    let all: BTreeSet<usize> = (0..ALERTS).collect();
    assert!(
        wait_until(Duration::from_secs(40), || slack.alerts_delivered() == all
            && pushover.alerts_delivered() == all),
        "delivered after the hang: Slack {:?}, Pushover {:?}",
        slack.alerts_delivered(),
        pushover.alerts_delivered()
    );
    for n in 0..ALERTS {
        let n = n.to_string();
        assert!(
            wait_until(Duration::from_secs(40), || webhook
                .firing_with(&[("alertname", "Fault"), ("n", &n)])
                .is_some()),
            "alert n={n} never reached Alertmanager's webhook; alertmanager log:\n{}",
            am.log()
        );
    }
    // Batches no Alertmanager took were counted as dropped, as Prometheus counts them;
    // the alerts themselves were not lost: the resend delivered them.
    let dropped = promflow
        .metrics()
        .sum("prometheus_notifications_dropped_total")
        .unwrap_or(0.0);
    eprintln!("batches of alerts dropped while Alertmanager was frozen: {dropped}");
    assert!(dropped >= 1.0, "dropped batches counted: {dropped}");
}
