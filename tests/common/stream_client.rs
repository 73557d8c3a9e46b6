//! A client of promflow's push stream (`/api/v1/stream`): sends the request, skips
//! the response head and decodes the chunked body into lines (NDJSON events, or SSE
//! lines). Reads time out after 20s.

use super::{http, Promflow};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A streaming client: sends the request and decodes the chunked body into lines.
pub struct StreamClient {
    reader: BufReader<TcpStream>,
    pending: String,
}

impl StreamClient {
    /// `GET /api/v1/stream?match[]=matcher`.
    pub fn open(promflow: &Promflow, matcher: &str, accept: &str) -> StreamClient {
        let path = http::with_query("/api/v1/stream", &[("match[]", matcher)]);
        Self::open_path(promflow, &path, accept)
    }

    /// `GET path` (a stream endpoint with its query string).
    pub fn open_path(promflow: &Promflow, path: &str, accept: &str) -> StreamClient {
        let mut socket = TcpStream::connect(promflow.addr()).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(
            socket,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            assert!(!line.is_empty(), "connection closed in the headers");
        }
        StreamClient {
            reader,
            pending: String::new(),
        }
    }

    /// The next complete line of the body, or `None` at its end.
    pub fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.find('\n') {
                let line = self.pending[..i].to_string();
                self.pending.drain(..=i);
                return Some(line);
            }
            let mut size = String::new();
            if self.reader.read_line(&mut size).ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0u8; size + 2];
            self.reader.read_exact(&mut chunk).ok()?;
            self.pending
                .push_str(std::str::from_utf8(&chunk[..size]).unwrap());
        }
    }

    pub fn next_event(&mut self) -> Option<Value> {
        let line = self.next_line()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad event {line:?}: {e}")))
    }
}
