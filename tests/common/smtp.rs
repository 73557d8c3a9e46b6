//! A real SMTP server on loopback for the email receiver: Python's `aiosmtpd`
//! (PyPI) running `tests/data/smtp_capture.py`, which keeps every message it is
//! given, with its envelope and whether the session used STARTTLS and AUTH.
//!
//! The Python is `$SMTP_PYTHON` (set by `.ci/test`), else `<repo>/.venv/bin/python`;
//! without `aiosmtpd` there the test panics with the install command.

use super::{spawn_peer_until, wait_for, Peer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// One message as received.
#[derive(Clone, Debug)]
pub struct Mail {
    /// Envelope and session: `mail_from`, `rcpt_tos`, `tls`, `authenticated`, `hello`.
    pub meta: Value,
    /// The header lines before the body, in order.
    pub headers: Vec<(String, String)>,
    /// The body parts: (`Content-Type`, decoded quoted-printable text).
    pub parts: Vec<(String, String)>,
    /// The whole message as received.
    pub raw: String,
}

impl Mail {
    /// The value of header `name` (first of them).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The headers by name, without those that differ per message
    /// (`Message-Id`, `Date`) and with the multipart boundary replaced.
    pub fn stable_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .filter(|(n, _)| n != "Message-Id" && n != "Date")
            .map(|(n, v)| {
                let v = match v.split_once("boundary=") {
                    Some((head, _)) => format!("{head}boundary=BOUNDARY"),
                    None => v.clone(),
                };
                (n.clone(), v)
            })
            .collect()
    }
}

/// `aiosmtpd`'s Python.
pub fn smtp_python() -> PathBuf {
    super::venv_python("aiosmtpd")
}

/// A running capture server.
pub struct SmtpServer {
    peer: Peer,
}

impl SmtpServer {
    /// Plain SMTP, no AUTH.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(&[])
    }

    /// With `smtp_capture.py`'s options (`--tls CERT KEY`, `--auth USER PASSWORD`).
    pub fn start_with(options: &[String]) -> SmtpServer {
        let python = smtp_python();
        let dir = tempfile::Builder::new()
            .prefix("smtp-test-")
            .tempdir()
            .expect("temp dir");
        let script = super::repo_root().join("tests/data/smtp_capture.py");
        let options = options.to_vec();
        let peer = spawn_peer_until(
            "aiosmtpd",
            &python,
            dir,
            "accept SMTP connections",
            |addr| TcpStream::connect(addr).is_ok(),
            |dir, addr| {
                let mut args = vec![
                    script.display().to_string(),
                    addr.ip().to_string(),
                    addr.port().to_string(),
                    dir.display().to_string(),
                ];
                args.extend(options.iter().cloned());
                args
            },
        );
        SmtpServer { peer }
    }

    /// `host:port`.
    pub fn smarthost(&self) -> String {
        self.peer.addr().to_string()
    }

    /// The messages received so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        for n in 1.. {
            let dir = self.peer.dir();
            let Ok(raw) = std::fs::read_to_string(dir.join(format!("{n}.eml"))) else {
                break;
            };
            let meta: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{n}.json"))).unwrap(),
            )
            .unwrap();
            out.push(parse(&raw, meta));
        }
        out
    }

    /// Waits until `n` messages arrived; panics after `timeout` with the log.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        wait_for(timeout, || {
            let mails = self.mails();
            (mails.len() >= n).then_some(mails)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} of {n} messages arrived in {timeout:?}; server output:\n{}",
                self.mails().len(),
                std::fs::read_to_string(self.peer.dir().join("output.log")).unwrap_or_default()
            )
        })
    }
}

fn parse(raw: &str, meta: Value) -> Mail {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no blank line after the headers:\n{raw}"));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("continuation line first");
            last.1.push_str(line);
            continue;
        }
        let (n, v) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        headers.push((n.to_string(), v.to_string()));
    }
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "Content-Type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let boundary = content_type
        .split_once("boundary=")
        .map(|(_, b)| b.to_string())
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let mut parts = Vec::new();
    for chunk in body.split(&format!("--{boundary}")).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.trim_start_matches("\r\n");
        let (part_head, part_body) = chunk.split_once("\r\n\r\n").expect("part headers");
        let part_type = part_head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or_default()
            .to_string();
        let part_body = part_body.strip_suffix("\r\n").unwrap_or(part_body);
        parts.push((part_type, decode_quoted_printable(part_body)));
    }
    Mail {
        meta,
        headers,
        parts,
        raw: raw.to_string(),
    }
}

/// Quoted-printable to text: `=XX` bytes, `=` soft line breaks removed.
fn decode_quoted_printable(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
