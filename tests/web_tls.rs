//! `tls_server_config` in `--web.config.file`: promflow's own server over https,
//! against the oracle: a real Prometheus 2.42 started on the same web config file
//! accepts and refuses the same clients (curl with no, a valid, a wrong-CA and an
//! expired client certificate, for every `client_auth_type`); a real Prometheus
//! scrapes promflow's `/metrics` and federates `/federate` with a client
//! certificate; `promtool check web-config` accepts and refuses the same files
//! (except the cipher suites and curve rustls lacks, refused by name); certificates
//! and the file itself are re-read when they change, a bad change keeps the previous
//! ones.
//!
//! Peers: Prometheus 2.42 and promtool, Debian `curl`, `openssl` (test PKI), the
//! controllable exporter.

mod common;

use common::exporter::{Exporter, Reply};
use common::tls::{curl_https, TestPki};
use common::{promtool, run_promflow, wait_until, Prometheus, Promflow};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// The client certificates tried: none, signed by the CA, by an unrelated CA, expired.
fn clients(pki: &TestPki) -> Vec<(&'static str, Option<(String, String)>)> {
    let pair = |name: &str| {
        Some((
            pki.file(&format!("{name}.crt")),
            pki.file(&format!("{name}.key")),
        ))
    };
    vec![
        ("no certificate", None),
        ("certificate from the CA", pair("client")),
        ("certificate from another CA", pair("stranger")),
        ("expired certificate", pair("expired")),
    ]
}

fn pki_with_bad_clients() -> TestPki {
    let pki = TestPki::generate();
    let client = "extendedKeyUsage=clientAuth\n";
    pki.leaf("stranger", "other-ca", "stranger", client, 2);
    pki.leaf("expired", "ca", "expired client", client, -1);
    pki
}

fn web_config(pki: &TestPki, client_auth_type: &str, with_ca: bool) -> String {
    let mut yaml = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: {client_auth_type}\n",
        pki.file("server.crt"),
        pki.file("server.key")
    );
    if with_ca {
        yaml.push_str(&format!("  client_ca_file: {}\n", pki.file("ca.crt")));
    }
    yaml
}

/// Whether curl gets `200` from `/-/ready` with `client`.
fn ready_over_https(
    addr: std::net::SocketAddr,
    ca: &Path,
    client: &Option<(String, String)>,
) -> Result<u16, String> {
    let client = client
        .as_ref()
        .map(|(c, k)| (Path::new(c.as_str()), Path::new(k.as_str())));
    curl_https(addr, "/-/ready", ca, client).map(|(status, _)| status)
}

#[test]
fn client_auth_types_accept_the_clients_prometheus_accepts() {
    let pki = pki_with_bad_clients();
    let dir = tempfile::tempdir().unwrap();
    for (auth, with_ca) in [
        ("NoClientCert", false),
        ("RequestClientCert", false),
        ("RequireAnyClientCert", false),
        ("VerifyClientCertIfGiven", true),
        ("RequireAndVerifyClientCert", true),
    ] {
        let web = dir.path().join(format!("{auth}.yml"));
        std::fs::write(&web, web_config(&pki, auth, with_ca)).unwrap();
        let flag = format!("--web.config.file={}", web.display());
        let promflow = Promflow::start_with_args("", &[&flag]);
        let prometheus = Prometheus::start_with_args("", &[&flag]);
        for (what, client) in clients(&pki) {
            let ours = ready_over_https(promflow.addr(), &pki.path("ca.crt"), &client);
            let theirs = ready_over_https(prometheus.addr(), &pki.path("ca.crt"), &client);
            assert_eq!(
                ours.as_ref().ok(),
                theirs.as_ref().ok(),
                "{auth}, {what}: promflow {ours:?}, Prometheus {theirs:?}"
            );
        }
        // A client that does not trust the server's CA fails with both.
        assert!(ready_over_https(promflow.addr(), &pki.path("other-ca.crt"), &None).is_err());
        // Plain HTTP on the https port: Go's answer.
        let plain = common::http::get(&promflow.url("/-/ready")).unwrap();
        let go = common::http::get(&prometheus.url("/-/ready")).unwrap();
        assert_eq!((plain.status, plain.body), (go.status, go.body));
    }
}

#[test]
fn prometheus_scrapes_and_federates_promflow_with_a_client_certificate() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, web_config(&pki, "RequireAndVerifyClientCert", true)).unwrap();
    let exporter = Exporter::start(Reply::text("from_exporter 7\n"));
    let promflow = Promflow::start_with_args(
        &format!(
            "global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr()
        ),
        &[&format!("--web.config.file={}", web.display())],
    );
    let tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n      server_name: localhost\n",
        pki.file("ca.crt")
    );
    let client_cert = format!(
        "      cert_file: {}\n      key_file: {}\n",
        pki.file("client.crt"),
        pki.file("client.key")
    );
    let prometheus = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: fed\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['from_exporter']\n{tls}{client_cert}    static_configs:\n      - targets: ['{0}']\n  - job_name: self\n{tls}{client_cert}    static_configs:\n      - targets: ['{0}']\n  - job_name: no-client-cert\n{tls}    static_configs:\n      - targets: ['{0}']\n",
        promflow.addr()
    ));
    let value = |expr: &str| -> Option<String> {
        let data = prometheus.query(expr);
        Some(
            data["result"].as_array()?.first()?["value"][1]
                .as_str()?
                .to_string(),
        )
    };
    assert!(
        wait_until(WAIT, || value("from_exporter{job=\"app\"}").as_deref()
            == Some("7")),
        "Prometheus did not federate promflow over https: {}",
        prometheus.get_ok("/api/v1/targets")
    );
    assert!(
        wait_until(WAIT, || value("up{job=\"self\"}").as_deref() == Some("1")
            && value("up{job=\"no-client-cert\"}").as_deref() == Some("0")),
        "{}",
        prometheus.get_ok("/api/v1/targets")
    );
    assert!(
        value("count({job=\"self\",__name__=~\"promflow_.*\"})").is_some(),
        "promflow's own metrics were not scraped"
    );
}

/// The same files, accepted or refused by `promtool check web-config` and by
/// promflow at startup.
#[test]
fn tls_web_configs_are_checked_like_promtool() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let keypair = format!(
        "  cert_file: {}\n  key_file: {}\n",
        pki.file("server.crt"),
        pki.file("server.key")
    );
    // (file, None when both accept it, or (promflow's error, promtool's error)).
    let cases: Vec<(String, Option<(&str, &str)>)> = vec![
        ("tls_server_config:\n  min_version: TLS13\n".into(), None),
        (format!("tls_server_config:\n{keypair}  min_version: TLS10\n  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: false\n"), None),
        (format!("tls_server_config:\n{keypair}  client_auth_type: RequireClientCert\n"), None),
        ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n".into(), Some(("missing cert_file", "missing cert_file"))),
        (format!("tls_server_config:\n  cert_file: {}\n", pki.file("server.crt")), Some(("missing key_file", "missing key_file"))),
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n".into(), Some(("failed to load X509KeyPair", "failed to load X509KeyPair"))),
        (format!("tls_server_config:\n  cert_file: {}\n  key_file: {}\n", pki.file("server.crt"), pki.file("client.key")), Some(("failed to load X509KeyPair", "failed to load X509KeyPair"))),
        (format!("tls_server_config:\n{keypair}  client_auth_type: Sometimes\n"), Some(("Invalid ClientAuth: Sometimes", "Invalid ClientAuth: Sometimes"))),
        (format!("tls_server_config:\n{keypair}  client_ca_file: {}\n", pki.file("ca.crt")), Some(("Client CA's have been configured without a Client Auth Policy", "Client CA's have been configured without a Client Auth Policy"))),
        (format!("tls_server_config:\n{keypair}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"), Some(("unknown cipher: TLS_RSA_WITH_RC4_128_SHA", "unknown cipher: TLS_RSA_WITH_RC4_128_SHA"))),
        (format!("tls_server_config:\n{keypair}  curve_preferences: [P256]\n"), Some(("unknown curve: P256", "unknown curve: P256"))),
        (format!("tls_server_config:\n{keypair}  max_version: TLS14\n"), Some(("unknown TLS version: TLS14", "unknown TLS version: TLS14"))),
        (format!("tls_server_config:\n{keypair}  cert: inline\n"), Some(("unknown field `cert`", "field cert not found"))),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("web{i}.yml"));
        std::fs::write(&path, text).unwrap();
        let (promtool_ok, promtool_out) = promtool(
            &["check", "web-config", &path.display().to_string()],
            dir.path(),
        );
        let flag = format!("--web.config.file={}", path.display());
        match expected {
            None => {
                assert!(promtool_ok, "promtool on {text:?}: {promtool_out}");
                // Starts and serves (https when a cert_file is named).
                drop(Promflow::start_with_args("", &[&flag]));
            }
            Some((ours, theirs)) => {
                assert!(
                    promtool_out.contains(theirs),
                    "promtool on {text:?}: {promtool_out}"
                );
                let out = run_promflow(&[
                    &flag,
                    "--web.listen-address=127.0.0.1:0",
                    &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                ]);
                let output = common::combined_output(&out);
                assert!(!out.status.success(), "promflow started with {text:?}");
                assert!(output.contains(&path.display().to_string()), "{output}");
                assert!(output.contains(ours), "{text:?}: {output}");
            }
        }
    }
    // What rustls lacks is refused by name (promtool accepts it).
    for (field, name) in [
        ("cipher_suites", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
        ("curve_preferences", "CurveP521"),
    ] {
        let path = dir.path().join("lacking.yml");
        std::fs::write(
            &path,
            format!("tls_server_config:\n{keypair}  {field}: [{name}]\n"),
        )
        .unwrap();
        let (promtool_ok, _) = promtool(
            &["check", "web-config", &path.display().to_string()],
            dir.path(),
        );
        assert!(promtool_ok);
        let out = run_promflow(&[
            &format!("--web.config.file={}", path.display()),
            "--web.listen-address=127.0.0.1:0",
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        ]);
        let output = common::combined_output(&out);
        assert!(
            output.contains(&format!("{name} is not supported")),
            "{output}"
        );
    }
}

#[test]
fn certificates_and_the_file_reload_when_they_change() {
    let pki = TestPki::generate();
    let server = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    pki.leaf("other-server", "other-ca", "localhost", server, 2);
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, web_config(&pki, "NoClientCert", false)).unwrap();
    let promflow =
        Promflow::start_with_args("", &[&format!("--web.config.file={}", web.display())]);
    let ca = pki.path("ca.crt");
    let other_ca = pki.path("other-ca.crt");
    assert_eq!(
        curl_https(promflow.addr(), "/-/ready", &ca, None).map(|r| r.0),
        Ok(200)
    );

    // The certificate and key files are replaced: the next handshake uses them.
    std::fs::copy(pki.path("other-server.crt"), pki.path("server.crt")).unwrap();
    std::fs::copy(pki.path("other-server.key"), pki.path("server.key")).unwrap();
    assert!(
        wait_until(WAIT, || curl_https(
            promflow.addr(),
            "/-/ready",
            &other_ca,
            None
        )
        .is_ok()),
        "the rotated certificate is not served"
    );
    assert!(curl_https(promflow.addr(), "/-/ready", &ca, None).is_err());

    // A file that no longer loads keeps the previous configuration, with an error.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
    )
    .unwrap();
    assert!(wait_until(WAIT, || {
        let _ = curl_https(promflow.addr(), "/-/ready", &other_ca, None);
        promflow.log().contains("keeping the previous")
    }));
    assert_eq!(
        curl_https(promflow.addr(), "/-/ready", &other_ca, None).map(|r| r.0),
        Ok(200)
    );

    // A valid change takes effect: now a client certificate is required.
    std::fs::write(&web, web_config(&pki, "RequireAndVerifyClientCert", true)).unwrap();
    assert!(wait_until(WAIT, || curl_https(
        promflow.addr(),
        "/-/ready",
        &other_ca,
        None
    )
    .is_err()));
    let client = Some((pki.path("client.crt"), pki.path("client.key")));
    let client = client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    assert_eq!(
        curl_https(promflow.addr(), "/-/ready", &other_ca, client).map(|r| r.0),
        Ok(200)
    );
}
