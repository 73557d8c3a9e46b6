//! A controllable exporter for tests: serves whatever body the test sets (or makes
//! per request), with the content type and encoding it sets, and records the headers of every request and
//! when (and with which reply) it answered it.
//!
//! Listens on a free port of 127.0.0.1 (or a given loopback address, for discovery
//! tests where targets are 127.0.0.2, 127.0.0.3, …); one thread per connection; stops accepting
//! when dropped (a final self-connection wakes the accept loop).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the exporter answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    /// Sent as `Content-Encoding: gzip` (the body is compressed by the exporter).
    pub gzip: bool,
    pub body: Vec<u8>,
}

impl Reply {
    /// A 200 text-format answer.
    pub fn text(body: &str) -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4".into(),
            gzip: false,
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Makes the reply of each request, when it is made (counters that advance with
/// time, a gauge the test changes).
pub type MakeReply = Arc<dyn Fn() -> Reply + Send + Sync>;

#[derive(Default)]
struct Shared {
    reply: Option<Reply>,
    /// When set, replaces `reply`.
    make: Option<MakeReply>,
    /// Replies given in turn, one per request, before `reply` takes over.
    sequence: std::collections::VecDeque<Reply>,
    /// Lower-cased header names and values of each request, in order.
    requests: Vec<Vec<(String, String)>>,
    /// Bumped by every `set`: which reply a request got.
    generation: u64,
    /// Each answered request: when the answer was written, path, reply generation.
    served: Vec<Served>,
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct Served {
    /// When the whole answer had been written.
    pub at: std::time::Instant,
    /// The request path (with query string).
    pub path: String,
    /// The generation of the reply (see [`Exporter::set`]).
    pub generation: u64,
}

pub struct Exporter {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    pub fn start(reply: Reply) -> Exporter {
        Self::start_on("127.0.0.1:0".parse().unwrap(), reply).expect("bind exporter")
    }

    /// Listens on `addr` (any loopback address; port 0 picks a free one).
    pub fn start_on(addr: SocketAddr, reply: Reply) -> std::io::Result<Exporter> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            reply: Some(reply),
            ..Shared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = s.clone();
                    std::thread::spawn(move || serve(stream, &s));
                }
            }
        });
        Ok(Exporter { addr, shared, stop })
    }

    /// One exporter on each loopback address of `ips`, all on one port (as Swarm tasks
    /// or EC2 hosts are), each answering `reply(ip)`; retries ports taken on any of the
    /// addresses. Returns the port and the exporters.
    pub fn on_one_port(ips: &[&str], reply: impl Fn(&str) -> Reply) -> (u16, Vec<Exporter>) {
        for _attempt in 0..10 {
            let port = super::free_port();
            let started: std::io::Result<Vec<Exporter>> = ips
                .iter()
                .map(|ip| Exporter::start_on(format!("{ip}:{port}").parse().unwrap(), reply(ip)))
                .collect();
            if let Ok(exporters) = started {
                return (port, exporters);
            }
        }
        panic!("no port free on all of {ips:?}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Listens on `addr`, answering each request with what `make` returns then.
    pub fn start_making(addr: SocketAddr, make: MakeReply) -> std::io::Result<Exporter> {
        let exporter = Self::start_on(addr, Reply::text(""))?;
        exporter.shared.lock().unwrap().make = Some(make);
        Ok(exporter)
    }

    /// Serves `replies` one per request, then the last one for ever.
    pub fn start_sequence(replies: Vec<Reply>) -> Exporter {
        let exporter = Exporter::start(Reply::text(""));
        exporter.play_sequence(replies);
        exporter
    }

    /// From the next request on, serves `replies` one per request, then the last one
    /// for ever.
    pub fn play_sequence(&self, replies: Vec<Reply>) {
        let mut shared = self.shared.lock().unwrap();
        shared.reply = replies.last().cloned();
        shared.sequence = replies.into();
    }

    /// Whether every reply of a sequence has been served.
    pub fn sequence_done(&self) -> bool {
        self.shared.lock().unwrap().sequence.is_empty()
    }

    /// Serves `reply` from now on; returns its generation (see [`Exporter::served`]).
    pub fn set(&self, reply: Reply) -> u64 {
        let mut shared = self.shared.lock().unwrap();
        shared.reply = Some(reply);
        shared.generation += 1;
        shared.generation
    }

    /// Every answered request so far.
    pub fn served(&self) -> Vec<Served> {
        self.shared.lock().unwrap().served.clone()
    }

    /// Headers of every request so far.
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.shared.lock().unwrap().requests.clone()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(mut stream: TcpStream, shared: &Mutex<Shared>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let (reply, generation) = {
        let mut s = shared.lock().unwrap();
        s.requests.push(headers);
        let reply = match s.sequence.pop_front() {
            Some(next) => next,
            None => match &s.make {
                Some(make) => make(),
                None => s.reply.clone().expect("reply set"),
            },
        };
        (reply, s.generation)
    };
    let body = if reply.gzip {
        use flate2::write::GzEncoder;
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&reply.body).unwrap();
        e.finish().unwrap()
    } else {
        reply.body.clone()
    };
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        body.len()
    );
    if reply.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    shared.lock().unwrap().served.push(Served {
        at: std::time::Instant::now(),
        path,
        generation,
    });
}
