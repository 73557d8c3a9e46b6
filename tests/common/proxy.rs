//! A plain forward HTTP proxy and a redirecting server for tests of outgoing clients'
//! `proxy_url` and `follow_redirects`.
//!
//! [`Proxy`] accepts absolute-form requests (`GET http://host:port/path HTTP/1.1`),
//! records each request line with its User-Agent (and each request head), forwards the
//! request to the origin in origin form with `Connection: close`, and copies the answer
//! back; a `CONNECT host:port` is answered `200` and relayed both ways as a tunnel.
//! [`Redirector`] answers every request with `302 Found` to a fixed URL. Both listen on
//! a free port of 127.0.0.1, one thread per connection, and stop accepting when
//! dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reads a request head (up to the blank line); `None` on EOF or error.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).to_string())
}

/// Accepts on a free loopback port until `stop`, handling each connection on a thread.
fn serve(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = stream {
                let handle = handle.clone();
                std::thread::spawn(move || handle(stream));
            }
        }
    });
    (addr, stop)
}

fn stop(addr: SocketAddr, stop: &AtomicBool) {
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

/// The forward proxy; see the module doc.
pub struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

/// Answers a CONNECT on `client` and relays bytes between it and `target` until
/// either side closes.
fn tunnel(mut client: TcpStream, target: &str) {
    let Ok(origin) = TcpStream::connect(target) else {
        let _ = client.write_all(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let _ = client.set_read_timeout(None);
    let (Ok(mut client_in), Ok(mut origin_out)) = (client.try_clone(), origin.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut origin_out);
        let _ = origin_out.shutdown(std::net::Shutdown::Write);
    });
    let mut origin_in = origin;
    let _ = std::io::copy(&mut origin_in, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = upstream.join();
}

impl Proxy {
    pub fn start() -> Proxy {
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let record_head = heads.clone();
        let (addr, stop) = serve(move |mut client| {
            let Some(head) = read_head(&mut client) else {
                return;
            };
            record_head.lock().unwrap().push(head.clone());
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default().to_string();
            let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
            let agent = headers
                .iter()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default();
            record.lock().unwrap().push((request_line.clone(), agent));
            let mut parts = request_line.split_whitespace();
            let (method, target) = (parts.next().unwrap_or("GET"), parts.next().unwrap_or(""));
            if method == "CONNECT" {
                return tunnel(client, target);
            }
            let Some(rest) = target.strip_prefix("http://") else {
                let _ = client.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            };
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let Ok(mut origin) = TcpStream::connect(host) else {
                let _ = client.write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            };
            let mut forwarded = format!(
                "{method} {} HTTP/1.1\r\n",
                if path.is_empty() { "/" } else { path }
            );
            for header in &headers {
                let name = header.split(':').next().unwrap_or("").to_ascii_lowercase();
                if name != "connection" && name != "proxy-connection" {
                    forwarded.push_str(header);
                    forwarded.push_str("\r\n");
                }
            }
            forwarded.push_str("Connection: close\r\n\r\n");
            let _ = origin.write_all(forwarded.as_bytes());
            // A request body (POSTs: alerts, remote write) follows the head.
            let length: u64 = headers
                .iter()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                })
                .unwrap_or(0);
            let _ = std::io::copy(&mut (&mut client).take(length), &mut origin);
            let _ = std::io::copy(&mut origin, &mut client);
        });
        Proxy {
            addr,
            stop,
            seen,
            heads,
        }
    }

    /// `http://127.0.0.1:<port>`, for `proxy_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (request line, User-Agent) of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// The head (request line and header lines) of every request so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        stop(self.addr, &self.stop);
    }
}

/// Answers every request with `302 Found` to `location`.
pub struct Redirector {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Redirector {
    pub fn start(location: &str) -> Redirector {
        let answer = format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let (addr, stop) = serve(move |mut client| {
            if read_head(&mut client).is_some() {
                let _ = client.write_all(answer.as_bytes());
            }
        });
        Redirector { addr, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        stop(self.addr, &self.stop);
    }
}
