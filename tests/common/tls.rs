//! TLS material and an https probe for tests, made with the real `openssl` CLI.
//!
//! [`TestPki::generate`] writes a throw-away CA, a server certificate for
//! `localhost` and `127.0.0.1` signed by it, a client certificate signed by it, and a
//! second, unrelated CA (for "wrong CA" cases) into a temp dir. [`https_get`] fetches
//! one path from an https peer through `openssl s_client`, verifying the server
//! against a CA file, so tests can read a TLS-only peer's API without a TLS stack
//! of their own. [`TlsFront`] serves a plain-HTTP peer over https with the server
//! certificate (for peers without TLS of their own, e.g. moto_server).

use super::http::{self, HttpResponse};
use super::{combined_output, run_command, COMMAND_TIMEOUT};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

pub const OPENSSL_BIN: &str = "openssl";

/// Certificates and keys (PEM) in a temp dir; see the module doc.
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    /// Generates everything with `openssl` (P-256 keys, valid for two days).
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("promflow-pki-")
            .tempdir()
            .expect("temp dir");
        let pki = TestPki { dir };
        pki.self_signed_ca("ca", "promflow test CA");
        pki.self_signed_ca("other-ca", "unrelated test CA");
        pki.signed_leaf(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        pki.signed_leaf(
            "client",
            "promflow test client",
            "extendedKeyUsage=clientAuth\n",
        );
        pki
    }

    /// `<dir>/<name>` (e.g. `ca.crt`, `server.key`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `path` as text for YAML.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let mut cmd = Command::new(OPENSSL_BIN);
        cmd.args(args).current_dir(self.dir.path());
        let out = run_command(cmd, None, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "openssl {args:?} failed (install the `openssl` package): {}",
            combined_output(&out)
        );
    }

    fn self_signed_ca(&self, name: &str, common_name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={common_name}"),
        ]);
    }

    fn signed_leaf(&self, name: &str, common_name: &str, extensions: &str) {
        self.leaf(name, "ca", common_name, extensions, 2);
    }

    /// Writes `<name>.crt`/`<name>.key`: a P-256 leaf signed by the CA `ca` (`ca` or
    /// `other-ca`), valid for `days` from now (negative: already expired).
    pub fn leaf(&self, name: &str, ca: &str, common_name: &str, extensions: &str, days: i32) {
        std::fs::write(self.path(&format!("{name}.ext")), extensions).expect("write ext");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={common_name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-days",
            &days.to_string(),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    /// Exporter toolkit's `--web.config.file` serving `server.crt`; with
    /// `require_client_cert`, clients must present a certificate signed by the CA.
    pub fn web_config(&self, require_client_cert: bool) -> String {
        let mut yaml = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            self.file("server.crt"),
            self.file("server.key")
        );
        if require_client_cert {
            yaml.push_str(&format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
                self.file("ca.crt")
            ));
        }
        yaml
    }
}

/// `GET path` from the https peer at `addr`, verifying its certificate against
/// `ca_file` (and presenting `client` = (cert, key) if given); `None` if the TLS
/// handshake or the request failed.
pub fn https_get(
    addr: SocketAddr,
    path: &str,
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Option<HttpResponse> {
    let mut cmd = Command::new(OPENSSL_BIN);
    cmd.args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(ca_file);
    if let Some((cert, key)) = client {
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let out = run_command(cmd, Some(request.as_bytes()), COMMAND_TIMEOUT);
    http::parse_response(&out.stdout).ok()
}

/// `curl` (Debian `curl`) `GET https://localhost:<port><path>`, verifying the server
/// against `ca_file` and presenting `client` = (cert, key) if given: `Ok((status,
/// body))`, or `Err(curl's output)` when the connection or handshake failed.
pub fn curl_https(
    addr: SocketAddr,
    path: &str,
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<(u16, String), String> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(ca_file)
    .arg("--resolve")
    .arg(format!("localhost:{}:127.0.0.1", addr.port()));
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    cmd.arg(format!("https://localhost:{}{path}", addr.port()));
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(combined_output(&out));
    }
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok((status.trim().parse().unwrap_or(0), body.to_string()))
}

/// An https front of a plain-HTTP peer: TLS with `server.crt` of a [`TestPki`] on a
/// free port of 127.0.0.1, each connection relayed to the peer; stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    pub fn start(pki: &TestPki, backend: SocketAddr) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        promflow::http_client::install_crypto_provider();
        let certs = CertificateDer::pem_file_iter(pki.path("server.crt"))
            .expect("server.crt")
            .collect::<Result<Vec<_>, _>>()
            .expect("server.crt");
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).expect("server.key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut origin) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut origin).await;
                });
            }
        });
        TlsFront {
            addr,
            _runtime: runtime,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}
