//! Stand-ins for Slack and Pushover (and any webhook): a small HTTP server on
//! 127.0.0.1 that records every request and answers with scripted statuses (and
//! bodies, e.g. the JSON Telegram's Bot API answers), also as an intercepting https
//! proxy for clients whose endpoint is fixed (`CONNECT`, then TLS with a test
//! certificate — PagerDuty's v1 endpoint in Alertmanager), plus
//! checks of request bodies against the services' documented formats:
//!
//! - Slack incoming webhooks (<https://api.slack.com/messaging/webhooks>, legacy
//!   attachments <https://api.slack.com/reference/messaging/attachments>): a JSON
//!   object with `text` or `attachments`, only documented fields, colors `good`,
//!   `warning`, `danger` or `#rrggbb`, fields `{title, value, short}`.
//! - Pushover's message API (<https://pushover.net/api>): a form with `token` and
//!   `user` (30 characters of `[A-Za-z0-9]`), a `message` of at most 1024 characters,
//!   `title` ≤ 250, `url` ≤ 512, `url_title` ≤ 100, `priority` -2..2 (2 needs `retry`
//!   ≥ 30 and `expire` ≤ 10800), `html` 0/1, and only documented parameters.

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was read.
    pub received_at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> BTreeMap<String, String> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&self.body)
            .expect("form body")
            .into_iter()
            .collect()
    }
}

/// The server; it stops serving when the test process ends.
pub struct CaptureServer {
    port: u16,
    requests: Arc<Mutex<Vec<Captured>>>,
    statuses: Arc<Mutex<VecDeque<Answer>>>,
    reply: Arc<Mutex<String>>,
    answers: Arc<Mutex<Vec<(String, String)>>>,
}

/// A scripted answer: status, and body (else the server's reply body).
type Answer = (u16, Option<String>);

/// What the serving thread shares with the [`CaptureServer`].
#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Captured>>>,
    statuses: Arc<Mutex<VecDeque<Answer>>>,
    reply: Arc<Mutex<String>>,
    /// Answer bodies by path prefix (the first match wins; else `reply`).
    answers: Arc<Mutex<Vec<(String, String)>>>,
}

/// Reads one request from `stream`, records it and answers it.
fn serve_one(mut stream: impl Read + Write, shared: &Shared) {
    let mut reader = BufReader::new(&mut stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let by_path = shared
        .answers
        .lock()
        .unwrap()
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, b)| b.clone());
    shared.requests.lock().unwrap().push(Captured {
        method,
        path,
        headers,
        body,
        received_at: Instant::now(),
    });
    let (status, text) = shared
        .statuses
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None));
    let reason = if status == 200 { "OK" } else { "Error" };
    let text = text
        .or(by_path)
        .unwrap_or_else(|| shared.reply.lock().unwrap().clone());
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}

impl CaptureServer {
    pub fn start() -> CaptureServer {
        Self::serve(serve_one)
    }

    /// A capture server that is an HTTP proxy intercepting https: it accepts
    /// `CONNECT host:443`, then serves TLS inside the tunnel with `cert`/`key`
    /// (PEM files; the client must trust their CA) and records the request — for
    /// clients whose endpoint cannot be moved, only proxied (`proxy_url`).
    pub fn start_tls_proxy(cert: &str, key: &str) -> CaptureServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("read cert")
            .map(|c| c.expect("parse cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).expect("read key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config"),
        );
        Self::serve(move |mut stream: TcpStream, shared| {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            if !head.starts_with(b"CONNECT ") {
                return;
            }
            if stream
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
            {
                return;
            }
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            serve_one(&mut tls, shared);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        })
    }

    /// Accepts on a free loopback port, handling one connection at a time.
    fn serve(handle: impl Fn(TcpStream, &Shared) + Send + 'static) -> CaptureServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture server");
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            requests: Arc::new(Mutex::new(Vec::new())),
            statuses: Arc::new(Mutex::new(VecDeque::new())),
            reply: Arc::new(Mutex::new("ok".to_string())),
            answers: Arc::new(Mutex::new(Vec::new())),
        };
        let serving = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                handle(stream, &serving);
            }
        });
        CaptureServer {
            port,
            requests: shared.requests,
            statuses: shared.statuses,
            reply: shared.reply,
            answers: shared.answers,
        }
    }

    /// Answers requests whose path starts with `path_prefix` with `body` (e.g. a
    /// service's JSON answer) instead of the reply body.
    pub fn answer(&self, path_prefix: &str, body: &str) {
        self.answers
            .lock()
            .unwrap()
            .push((path_prefix.to_string(), body.to_string()));
    }

    /// Answers every request with `body` (instead of `ok`), e.g. the JSON a
    /// Telegram-speaking client needs to see.
    pub fn reply_with_body(&self, body: &str) {
        *self.reply.lock().unwrap() = body.to_string();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Answers the next requests with these statuses (then 200 again).
    pub fn respond_with(&self, statuses: &[u16]) {
        self.statuses
            .lock()
            .unwrap()
            .extend(statuses.iter().map(|s| (*s, None)));
    }

    /// Answers the next requests with these statuses and bodies (then as before).
    pub fn respond_with_bodies(&self, answers: &[(u16, &str)]) {
        self.statuses
            .lock()
            .unwrap()
            .extend(answers.iter().map(|(s, b)| (*s, Some(b.to_string()))));
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` requests arrived; returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Captured> {
        super::wait_until(timeout, || self.count() >= n);
        self.requests()
    }
}

const SLACK_MESSAGE_FIELDS: &[&str] = &[
    "text",
    "attachments",
    "blocks",
    "channel",
    "username",
    "icon_emoji",
    "icon_url",
    "link_names",
    "mrkdwn",
    "thread_ts",
];
const SLACK_ATTACHMENT_FIELDS: &[&str] = &[
    "fallback",
    "color",
    "pretext",
    "author_name",
    "author_link",
    "author_icon",
    "title",
    "title_link",
    "text",
    "fields",
    "image_url",
    "thumb_url",
    "footer",
    "footer_icon",
    "ts",
    "mrkdwn_in",
    "callback_id",
    "actions",
];

/// Panics unless `request` is a well-formed Slack incoming-webhook POST.
pub fn check_slack_request(request: &Captured) -> Value {
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    let message = body.as_object().expect("Slack message is a JSON object");
    for key in message.keys() {
        assert!(
            SLACK_MESSAGE_FIELDS.contains(&key.as_str()),
            "undocumented Slack field {key}"
        );
    }
    assert!(
        message.contains_key("text") || message.contains_key("attachments"),
        "Slack message needs text or attachments"
    );
    for attachment in message
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let attachment = attachment.as_object().expect("attachment is an object");
        for key in attachment.keys() {
            assert!(
                SLACK_ATTACHMENT_FIELDS.contains(&key.as_str()),
                "undocumented attachment field {key}"
            );
        }
        if let Some(color) = attachment.get("color").and_then(Value::as_str) {
            let hex = color.len() == 7
                && color.starts_with('#')
                && color[1..].chars().all(|c| c.is_ascii_hexdigit());
            assert!(
                ["good", "warning", "danger"].contains(&color) || hex,
                "bad color {color}"
            );
        }
        for field in attachment
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = field.as_object().expect("field is an object");
            for key in field.keys() {
                assert!(
                    ["title", "value", "short"].contains(&key.as_str()),
                    "undocumented field key {key}"
                );
            }
            if let Some(short) = field.get("short") {
                assert!(short.is_boolean(), "short must be a boolean");
            }
        }
        for key in [
            "title",
            "title_link",
            "text",
            "fallback",
            "pretext",
            "footer",
        ] {
            if let Some(v) = attachment.get(key) {
                assert!(v.is_string(), "{key} must be a string");
            }
        }
    }
    body
}

const PUSHOVER_PARAMETERS: &[&str] = &[
    "token",
    "user",
    "message",
    "attachment",
    "attachment_base64",
    "attachment_type",
    "device",
    "html",
    "monospace",
    "priority",
    "sound",
    "timestamp",
    "title",
    "ttl",
    "url",
    "url_title",
    "retry",
    "expire",
    "callback",
    "tags",
];

/// Panics unless `request` is a well-formed Pushover message POST; returns its form.
pub fn check_pushover_request(request: &Captured) -> BTreeMap<String, String> {
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = request.form();
    for key in form.keys() {
        assert!(
            PUSHOVER_PARAMETERS.contains(&key.as_str()),
            "undocumented Pushover parameter {key}"
        );
    }
    for key in ["token", "user"] {
        let v = form
            .get(key)
            .unwrap_or_else(|| panic!("Pushover needs {key}"));
        assert!(
            v.len() == 30 && v.chars().all(|c| c.is_ascii_alphanumeric()),
            "bad {key} {v:?}"
        );
    }
    let message = form.get("message").expect("Pushover needs message");
    assert!(
        !message.is_empty() && message.chars().count() <= 1024,
        "message length"
    );
    for (key, max) in [("title", 250), ("url", 512), ("url_title", 100)] {
        if let Some(v) = form.get(key) {
            assert!(v.chars().count() <= max, "{key} longer than {max}");
        }
    }
    if let Some(html) = form.get("html") {
        assert!(html == "0" || html == "1", "html must be 0 or 1");
    }
    let priority: i32 = form
        .get("priority")
        .map_or(Ok(0), |p| p.parse())
        .expect("numeric priority");
    assert!((-2..=2).contains(&priority), "priority {priority}");
    if priority == 2 {
        let retry: u64 = form
            .get("retry")
            .expect("emergency needs retry")
            .parse()
            .unwrap();
        let expire: u64 = form
            .get("expire")
            .expect("emergency needs expire")
            .parse()
            .unwrap();
        assert!(retry >= 30, "retry {retry} < 30");
        assert!(expire <= 10800, "expire {expire} > 10800");
    }
    form
}
