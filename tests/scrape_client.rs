//! Scrape jobs' HTTP client settings, against the oracle: a real Prometheus 2.42
//! scrapes the same recording servers with the same job settings. `basic_auth` and
//! `authorization`: the `Authorization` headers both send are compared, and a rotated
//! password file applies at the next scrape; `proxy_url`: both go through the same
//! plain forward proxy with the same request line; `follow_redirects`: a redirecting
//! target is followed or reported as Prometheus does; `oauth2`: the token request
//! both make to a token endpoint served by the test is the same, and the token is
//! sent and cached until it expires (also by `remote_write`, same code path).
//! A target that closes a kept-alive connection as the next request goes out is
//! scraped again on a new connection, as Go's transport does for Prometheus.
//! Alertmanagers (`alerting.alertmanagers[]`) take the same settings: a
//! `bearer_token_file`, `oauth2` and `proxy_url` each reach the Alertmanager endpoint
//! as they do from Prometheus.
//!
//! Peers: Prometheus 2.42, the controllable exporter (records request headers), the
//! test proxy and redirector (`common::proxy`).

mod common;

use common::exporter::{Exporter, Reply};
use common::proxy::{Proxy, Redirector};
use common::{wait_for, wait_until, Peer, Prometheus, Promflow};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The `Authorization` values of the requests whose User-Agent starts with `agent`.
fn authorizations(exporter: &Exporter, agent: &str) -> BTreeSet<String> {
    exporter
        .requests()
        .iter()
        .filter(|headers| {
            headers
                .iter()
                .any(|(k, v)| k == "user-agent" && v.starts_with(agent))
        })
        .map(|headers| {
            headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn scrape_credentials_are_sent_as_prometheus_sends_them() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "from-a-file\n").unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken\n").unwrap();
    let exporters: Vec<Exporter> = (0..4)
        .map(|_| Exporter::start(Reply::text("m 1\n")))
        .collect();
    let jobs = [
        "basic_auth:\n      username: alice\n      password: s3cret".to_string(),
        format!(
            "basic_auth:\n      username: bob\n      password_file: {}",
            password_file.display()
        ),
        "authorization:\n      credentials: abc".to_string(),
        format!(
            "authorization:\n      type: Token\n      credentials_file: {}",
            token_file.display()
        ),
    ];
    let mut config = String::from(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n",
    );
    for (i, (job, exporter)) in jobs.iter().zip(&exporters).enumerate() {
        config.push_str(&format!(
            "  - job_name: job{i}\n    {job}\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr()
        ));
    }
    let _promflow = Promflow::start(&config);
    let _prometheus = Prometheus::start(&config);
    for exporter in &exporters {
        assert!(
            wait_until(WAIT, || !authorizations(exporter, "promflow/").is_empty()
                && !authorizations(exporter, "Prometheus/").is_empty()),
            "not scraped by both: {:?}",
            exporter.requests()
        );
        let ours = authorizations(exporter, "promflow/");
        let theirs = authorizations(exporter, "Prometheus/");
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(!ours.contains(""), "no Authorization header sent");
    }
    // The password file is read at each scrape.
    std::fs::write(&password_file, "rotated").unwrap();
    let rotated = |agent: &str| authorizations(&exporters[1], agent).len() == 2;
    assert!(wait_until(WAIT, || rotated("promflow/") && rotated("Prometheus/")));
    assert_eq!(
        authorizations(&exporters[1], "promflow/"),
        authorizations(&exporters[1], "Prometheus/")
    );
}

/// A credentials or password file that cannot be read fails the scrape with
/// prometheus/common's error (the request is not sent without its header), and the
/// target reads as Prometheus reports it.
#[test]
fn unreadable_secret_files_fail_the_scrape_as_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let addr = exporter.addr();
    let config = format!(
        "global: {{scrape_interval: 500ms, scrape_timeout: 400ms}}\n\
         scrape_configs:\n\
         - {{job_name: token, authorization: {{credentials_file: {}}}, \
         static_configs: [{{targets: ['{addr}']}}]}}\n\
         - {{job_name: password, basic_auth: {{username: u, password_file: {}}}, \
         static_configs: [{{targets: ['{addr}']}}]}}\n",
        dir.path().join("missing-token").display(),
        dir.path().join("missing-password").display(),
    );
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let ours = wait_for(WAIT, || target_states(&promflow)).expect("promflow's targets");
    let theirs = wait_for(WAIT, || target_states(&prometheus)).expect("Prometheus's targets");
    assert_eq!(ours, theirs);
    assert!(
        ours.iter().all(|(_, health, _)| health == "down"),
        "{ours:?}"
    );
    assert!(
        authorizations(&exporter, "promflow/").is_empty(),
        "a request went out without its credentials: {:?}",
        exporter.requests()
    );
}

/// The request lines `proxy` forwarded for clients whose User-Agent starts with `agent`.
fn proxied_request_lines(proxy: &Proxy, agent: &str) -> BTreeSet<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|(_, a)| a.starts_with(agent))
        .map(|(line, _)| line)
        .collect()
}

/// `job → (health, lastError)` of `server`'s targets once none is `unknown`.
fn target_states(server: &Peer) -> Option<Vec<(String, String, String)>> {
    let json: Value = serde_json::from_str(&server.get_ok("/api/v1/targets")).ok()?;
    let mut states: Vec<(String, String, String)> = json["data"]["activeTargets"]
        .as_array()?
        .iter()
        .map(|t| {
            (
                t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                t["health"].as_str().unwrap_or_default().to_string(),
                t["lastError"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    states.sort();
    (!states.is_empty() && states.iter().all(|(_, health, _)| health != "unknown"))
        .then_some(states)
}

#[test]
fn proxies_and_redirects_are_followed_as_prometheus_follows_them() {
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let proxy = Proxy::start();
    let redirector = Redirector::start(&format!("http://{}/metrics", exporter.addr()));
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n\
         - job_name: proxied\n    proxy_url: {}\n    static_configs:\n      - targets: ['{}']\n\
         - job_name: redirected\n    static_configs:\n      - targets: ['{}']\n\
         - job_name: not-redirected\n    follow_redirects: false\n    static_configs:\n      - targets: ['{}']\n",
        proxy.url(),
        exporter.addr(),
        redirector.addr(),
        redirector.addr(),
    )
    .replace("\n- job_name", "\n  - job_name");
    let promflow = Promflow::start(&config);
    let prometheus = Prometheus::start(&config);
    let ours = wait_for(WAIT, || target_states(&promflow)).expect("promflow's targets");
    let theirs = wait_for(WAIT, || target_states(&prometheus)).expect("Prometheus's targets");
    assert_eq!(ours, theirs);
    let health: Vec<&str> = ours.iter().map(|(_, h, _)| h.as_str()).collect();
    assert_eq!(health, ["down", "up", "up"], "{ours:?}");
    assert!(ours[0].2.contains("302"), "{ours:?}");
    let lines = |agent: &str| proxied_request_lines(&proxy, agent);
    assert!(wait_until(WAIT, || !lines("promflow/").is_empty()
        && !lines("Prometheus/").is_empty()));
    assert_eq!(lines("promflow/"), lines("Prometheus/"));
}

/// (headers, sorted form fields) of one token request.
type TokenRequest = (Vec<(String, String)>, Vec<(String, String)>);

/// A token endpoint: answers each request with a new token (`tok-1`, `tok-2`, …,
/// `expires_in: 3600`) and records (headers, form) of each, in order.
struct TokenServer {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    fn start() -> TokenServer {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<TokenRequest>>> = Default::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut form: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&body).unwrap_or_default();
                form.sort();
                let n = {
                    let mut seen = record.lock().unwrap();
                    seen.push((headers, form));
                    seen.len()
                };
                let json = format!(
                    r#"{{"access_token":"tok-{n}","token_type":"bearer","expires_in":3600}}"#
                );
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                        json.len()
                    )
                    .as_bytes(),
                );
            }
        });
        TokenServer { addr, seen }
    }
}

#[test]
fn oauth2_tokens_are_fetched_and_sent_as_prometheus_does() {
    let tokens = TokenServer::start();
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let config = format!(
        "global:\n  scrape_interval: 300ms\n  scrape_timeout: 250ms\nscrape_configs:\n  - job_name: oauth\n    oauth2:\n      client_id: 'id x'\n      client_secret: 's&cret'\n      scopes: [read, 'write:all']\n      token_url: http://{}/token\n      endpoint_params:\n        audience: promflow\n    static_configs:\n      - targets: ['{}']\n",
        tokens.addr,
        exporter.addr()
    );
    let _promflow = Promflow::start(&config);
    let _prometheus = Prometheus::start(&config);
    let scrapes = |agent: &str| -> Vec<String> {
        exporter
            .requests()
            .iter()
            .filter(|h| {
                h.iter()
                    .any(|(k, v)| k == "user-agent" && v.starts_with(agent))
            })
            .map(|h| {
                h.iter()
                    .find(|(k, _)| k == "authorization")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    };
    assert!(
        wait_until(WAIT, || scrapes("promflow/").len() >= 4
            && scrapes("Prometheus/").len() >= 4),
        "{:?}",
        exporter.requests()
    );
    // One token each, reused by every scrape.
    let seen = tokens.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let token_of = |agent: &str| -> usize {
        let sent: BTreeSet<String> = scrapes(agent).into_iter().collect();
        assert_eq!(sent.len(), 1, "{agent}: {sent:?}");
        let header = sent.into_iter().next().unwrap();
        header
            .strip_prefix("Bearer tok-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{agent} sent {header:?}"))
    };
    let (ours, theirs) = (
        &seen[token_of("promflow/") - 1],
        &seen[token_of("Prometheus/") - 1],
    );
    let header = |h: &Vec<(String, String)>, name: &str| {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    assert!(
        ours.1
            .contains(&("grant_type".into(), "client_credentials".into())),
        "{ours:?}"
    );
    assert!(
        header(&ours.0, "authorization").is_some_and(|h| h.starts_with("Basic ")),
        "{ours:?}"
    );
    assert_eq!(ours.1, theirs.1, "token request forms differ");
    assert_eq!(
        header(&ours.0, "authorization"),
        header(&theirs.0, "authorization")
    );
    assert_eq!(
        header(&ours.0, "content-type"),
        header(&theirs.0, "content-type")
    );
}

#[test]
fn remote_write_sends_its_oauth2_token() {
    let tokens = TokenServer::start();
    let receiver = common::receiver::CaptureServer::start();
    let exporter = Exporter::start(Reply::text("m 1\n"));
    let _promflow = Promflow::start(&format!(
        "global:\n  scrape_interval: 300ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\nremote_write:\n  - url: {}\n    oauth2:\n      client_id: rw\n      client_secret: s\n      token_url: http://{}/token\n    queue_config:\n      batch_send_deadline: 200ms\n",
        exporter.addr(),
        receiver.url("/write"),
        tokens.addr
    ));
    let writes = receiver.wait_for(3, WAIT);
    assert!(writes.len() >= 3, "{writes:?}");
    for write in &writes {
        assert_eq!(write.header("authorization"), Some("Bearer tok-1"));
    }
    let seen = tokens.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the token is reused: {seen:?}");
    assert_eq!(
        seen[0].1,
        [("grant_type".to_string(), "client_credentials".to_string())]
    );
}

#[test]
fn alertmanagers_take_the_http_client_settings_prometheus_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("am-token");
    std::fs::write(&token_file, "am-t0ken\n").unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n",
    )
    .unwrap();
    let tokens = TokenServer::start();
    let proxy = Proxy::start();
    let (bearer, oauth, proxied) = (
        common::receiver::CaptureServer::start(),
        common::receiver::CaptureServer::start(),
        common::receiver::CaptureServer::start(),
    );
    let config = format!(
        r#"global:
  evaluation_interval: 300ms
rule_files:
  - {rules}
alerting:
  alertmanagers:
    - bearer_token_file: {token_file}
      static_configs:
        - targets: ['127.0.0.1:{p0}']
    - oauth2:
        client_id: am
        client_secret: s
        scopes: [alerts]
        token_url: http://{token}/token
      static_configs:
        - targets: ['127.0.0.1:{p1}']
    - proxy_url: {proxy}
      follow_redirects: false
      static_configs:
        - targets: ['127.0.0.1:{p2}']
"#,
        rules = rules.display(),
        token_file = token_file.display(),
        p0 = bearer.port(),
        token = tokens.addr,
        p1 = oauth.port(),
        proxy = proxy.url(),
        p2 = proxied.port(),
    );
    // Prometheus drops the first alert when it comes before discovery has named the
    // Alertmanagers; a short resend delay sends it again soon after.
    let _promflow = Promflow::start_with_args(&config, &["--rules.alert.resend-delay=1s"]);
    let _prometheus = Prometheus::start_with_args(&config, &["--rules.alert.resend-delay=1s"]);
    let sent_by = |server: &common::receiver::CaptureServer, agent: &str| -> BTreeSet<String> {
        server
            .requests()
            .iter()
            .filter(|r| r.header("user-agent").is_some_and(|a| a.starts_with(agent)))
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.method,
                    r.path,
                    r.header("authorization").unwrap_or("")
                )
            })
            .collect()
    };
    let both = |server: &common::receiver::CaptureServer| {
        !sent_by(server, "promflow/").is_empty() && !sent_by(server, "Prometheus/").is_empty()
    };
    assert!(
        wait_until(WAIT, || both(&bearer) && both(&oauth) && both(&proxied)),
        "not every Alertmanager got alerts from both: {:?} {:?} {:?}",
        bearer.requests().len(),
        oauth.requests().len(),
        proxied.requests().len()
    );
    // bearer_token_file: the same header from both.
    assert_eq!(
        sent_by(&bearer, "promflow/"),
        sent_by(&bearer, "Prometheus/")
    );
    assert_eq!(
        sent_by(&bearer, "promflow/")
            .into_iter()
            .collect::<Vec<_>>(),
        ["POST /api/v2/alerts Bearer am-t0ken"]
    );
    // oauth2: a token each, the same token request form, sent as a Bearer header.
    let seen = tokens.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].1, seen[1].1, "token request forms differ");
    for agent in ["promflow/", "Prometheus/"] {
        let sent = sent_by(&oauth, agent);
        assert!(
            sent.iter()
                .all(|s| s.starts_with("POST /api/v2/alerts Bearer tok-")),
            "{agent}: {sent:?}"
        );
    }
    // proxy_url: both go through the proxy with the same request line.
    let lines = |agent: &str| proxied_request_lines(&proxy, agent);
    assert_eq!(lines("promflow/"), lines("Prometheus/"));
    assert_eq!(
        lines("promflow/").into_iter().collect::<Vec<_>>(),
        [format!(
            "POST http://127.0.0.1:{}/api/v2/alerts HTTP/1.1",
            proxied.port()
        )]
    );
}

/// Serves `body` on the first request of each connection and closes the connection,
/// unanswered, when a second request comes on it: what a server whose idle timeout
/// ends as the next scrape goes out does. Returns its address.
fn serve_closing_kept_alive_connections(body: &'static str) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = [0u8; 4096];
                for answered in 0.. {
                    let mut request = Vec::new();
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    if answered == 1 {
                        return;
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The target closes each kept-alive connection as the second request on it arrives.
/// Prometheus (Go's transport sends such a request again on a new connection) keeps
/// the target up; promflow must too, every scrape.
#[test]
fn a_connection_closed_as_the_request_goes_out_is_retried_as_prometheus_does() {
    let addr = serve_closing_kept_alive_connections("m 1\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: closing\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    let prometheus = Prometheus::start(&config);
    let promflow = Promflow::start(&config);
    // Enough scrapes for several reused connections, on both.
    let query = "count_over_time(up[20s])";
    for server in [&*prometheus, &*promflow] {
        assert!(
            wait_until(WAIT, || server.vector_lines(query, None).iter().any(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
                    >= Some(6.0)
            })),
            "{query} on {}: {:?}",
            server.addr(),
            server.vector_lines(query, None)
        );
    }
    let lowest = "min_over_time(up[20s])";
    let oracle = prometheus.vector_lines(lowest, None);
    assert!(!oracle.is_empty(), "{lowest} on Prometheus: nothing");
    assert_eq!(promflow.vector_lines(lowest, None), oracle, "{lowest}");
}
