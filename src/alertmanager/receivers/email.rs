//! Email (SMTP): the message and the SMTP conversation of Alertmanager 0.25's
//! `notify/email`.
//!
//! The message: the configured `headers` (with `To`, `From` and `Subject` defaulting to
//! `to`, `from` and `email.default.subject`; values expanded, then Q-encoded like Go's
//! `mime.QEncoding` when not plain ASCII), `Message-Id`, `Date` (RFC 1123 with
//! numeric zone), a `multipart/alternative` body with the `text` part (if set) and
//! then the `html` part (`email.default.html` by default, expanded as Go's
//! `html/template`), each quoted-printable like Go's `mime/quotedprintable`. Headers
//! are written in name order (Alertmanager writes them in Go's random map order).
//!
//! The conversation (through `lettre`): port 465 is TLS from the start; otherwise
//! plain TCP, `EHLO hello`, then STARTTLS when `require_tls` (failing when the server
//! does not offer it), with `tls_config` (server name defaulting to the smarthost's
//! host). With `auth_username` set and the server offering AUTH, PLAIN or LOGIN with
//! `auth_password` (or `auth_password_file`, read at each send). Not supported by
//! `lettre` and so not by promflow: CRAM-MD5 (`auth_secret`) and an `auth_identity`
//! different from the username; a server that offers only CRAM-MD5 fails the send.
//! Like Alertmanager, every SMTP or connection failure may be retried; a template
//! error or a bad address may not.
//!
//! Config: `global.smtp_*` supply `smarthost`, `from`, `hello` (`localhost`),
//! `auth_*` and `require_tls` (true) when an entry leaves them out; `send_resolved`
//! defaults to false.

use super::{Delivery, ReceiverKind, RequestError};
use super::{Expander, Failure, SendError};
use crate::alertmanager::config::Globals;
use crate::alertmanager::config_show::{
    flag, insert_nonempty, string, text_or, tls_config_of, SECRET,
};
use crate::alertmanager::template::{Data, Templates};
use crate::config::HttpClientConfig;
use crate::config::{resolve_tls_config, FieldPath, Problems, RawTlsConfig, Secret, TlsConfig};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Identity, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Alertmanager 0.25's default texts of an email config.
pub mod defaults {
    /// The `Subject` header (`DefaultEmailSubject`).
    pub const SUBJECT: &str = r#"{{ template "email.default.subject" . }}"#;
    /// `html`.
    pub const HTML: &str = r#"{{ template "email.default.html" . }}"#;
    /// `global.smtp_hello`.
    pub const HELLO: &str = "localhost";
}

/// A message ready to hand to the smarthost.
#[derive(Clone, Debug, PartialEq)]
pub struct Email {
    /// The envelope sender (the `from` address).
    pub from: String,
    /// The envelope recipients (the `to` addresses).
    pub to: Vec<String>,
    /// The whole message, headers and body, CRLF line ends.
    pub message: Vec<u8>,
    /// How to reach the smarthost.
    pub config: EmailConfig,
}

/// The message for `data`; a template or address error is returned as `Err`.
pub fn request(c: &EmailConfig, templates: &Templates, data: &Data) -> Result<Email, RequestError> {
    let mut t = Expander::new(templates, data);
    let from = t.expand(&c.from);
    let to = t.expand(&c.to);
    let mut headers: BTreeMap<String, String> = c
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), t.expand(v)))
        .collect();
    headers
        .entry("Subject".into())
        .or_insert_with(|| t.expand(defaults::SUBJECT));
    headers.entry("To".into()).or_insert_with(|| to.clone());
    headers.entry("From".into()).or_insert_with(|| from.clone());
    let text = (!c.text.is_empty()).then(|| t.expand(&c.text));
    t.finish()?;
    let html = if c.html.is_empty() {
        None
    } else {
        Some(
            templates
                .expand_html(&c.html, &data.to_value())
                .map_err(|e| RequestError::Template(Box::new(e)))?,
        )
    };
    let addresses = |field, list: &str| {
        parse_address_list(list).map_err(|source| RequestError::Addresses { field, source })
    };
    let from_addrs = addresses("from", &from)?;
    if from_addrs.len() != 1 {
        return Err(RequestError::Invalid(format!(
            "must be exactly one 'from' address (got: {})",
            from_addrs.len()
        )));
    }
    let to_addrs = addresses("to", &to)?;

    let mut out = String::new();
    for (name, value) in &headers {
        let _ = write!(out, "{name}: {}\r\n", q_encode(value));
    }
    if !headers.contains_key("Message-Id") {
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let _ = write!(
            out,
            "Message-Id: <{nanos}.{}@{}>\r\n",
            fastrand::u64(..),
            local_hostname()
        );
    }
    let boundary: String = (0..30)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect();
    let _ = write!(
        out,
        "Date: {}\r\n",
        chrono::Local::now().format("%a, %d %b %Y %H:%M:%S %z")
    );
    let _ = write!(
        out,
        "Content-Type: multipart/alternative;  boundary={boundary}\r\nMIME-Version: 1.0\r\n\r\n"
    );
    let mut first = true;
    for (body, kind) in [(text, "text/plain"), (html, "text/html")] {
        let Some(body) = body else { continue };
        if !first {
            out.push_str("\r\n");
        }
        first = false;
        let _ = write!(
            out,
            "--{boundary}\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: {kind}; charset=UTF-8\r\n\r\n{}",
            quoted_printable(body.as_bytes())
        );
    }
    let _ = write!(out, "\r\n--{boundary}--\r\n");
    Ok(Email {
        from: from_addrs.into_iter().next().unwrap_or_default(),
        to: to_addrs,
        message: out.into_bytes(),
        config: c.clone(),
    })
}

/// Hands `email` to its smarthost once.
pub async fn send(email: &Email, timeout: Duration) -> Result<(), SendError> {
    let c = &email.config;
    let address = |a: &str| {
        a.parse::<Address>().map_err(|error| {
            SendError::Permanent(Failure::EmailAddress {
                address: a.to_string(),
                error,
            })
        })
    };
    let envelope = Envelope::new(
        Some(address(&email.from)?),
        email
            .to
            .iter()
            .map(|a| address(a))
            .collect::<Result<_, _>>()?,
    )
    .map_err(|e| SendError::Permanent(Failure::EmailEnvelope(e)))?;
    let tls_parameters = || {
        tls_parameters(&c.tls_config, &c.smarthost_host).map_err(|error| {
            SendError::Permanent(Failure::SmtpTls {
                smarthost: c.smarthost.to_string(),
                error,
            })
        })
    };
    let tls = if c.smarthost_port == 465 {
        Tls::Wrapper(tls_parameters()?)
    } else if c.require_tls {
        Tls::Required(tls_parameters()?)
    } else {
        Tls::None
    };
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.smarthost_host.as_str())
            .port(c.smarthost_port)
            .hello_name(ClientId::Domain(c.hello.clone()))
            .timeout(Some(timeout))
            .tls(tls);
    if !c.auth_username.is_empty() {
        let password = match &c.auth_password_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|error| {
                    SendError::Permanent(Failure::PasswordFile {
                        file: file.clone(),
                        error,
                    })
                })?
                .trim()
                .to_string(),
            None => c.auth_password.expose().to_string(),
        };
        builder = builder
            .credentials(Credentials::new(c.auth_username.clone(), password))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    builder
        .build()
        .send_raw(&envelope, &email.message)
        .await
        .map(|_| ())
        .map_err(|error| {
            SendError::Retryable(Failure::Smtp {
                smarthost: c.smarthost.to_string(),
                error,
            })
        })
}

/// Why the TLS setup of a smarthost cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SmtpTlsError {
    /// A CA, certificate or key file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The files do not make a TLS setup.
    #[error(transparent)]
    Tls(#[from] lettre::transport::smtp::Error),
}

fn tls_parameters(tls: &TlsConfig, host: &str) -> Result<TlsParameters, SmtpTlsError> {
    let name = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let mut b =
        TlsParameters::builder(name).dangerous_accept_invalid_certs(tls.insecure_skip_verify);
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| SmtpTlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    if let Some(ca) = &tls.ca_file {
        b = b.add_root_certificate(Certificate::from_pem(&read(ca)?)?);
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        b = b.identify_with(Identity::from_pem(&read(cert)?, &read(key)?)?);
    }
    Ok(b.build_rustls()?)
}

/// Why an address list does not parse (Go's `net/mail` wording).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// An empty entry.
    #[error("mail: no address")]
    NoAddress,
    /// An entry without `@`.
    #[error("mail: missing @ in addr-spec {0:?}")]
    MissingAt(String),
}

/// The addresses of a list like `Team <team@example.org>, ops@example.org` (the
/// `addr-spec` of each, as Go's `mail.ParseAddressList` yields them).
fn parse_address_list(list: &str) -> Result<Vec<String>, AddressError> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, ch) in list.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    for part in parts {
        let part = part.trim();
        let spec = match (part.rfind('<'), part.ends_with('>')) {
            (Some(i), true) => &part[i + 1..part.len() - 1],
            _ => part,
        };
        if spec.is_empty() || !spec.contains('@') {
            return Err(if part.is_empty() {
                AddressError::NoAddress
            } else {
                AddressError::MissingAt(spec.to_string())
            });
        }
        out.push(spec.to_string());
    }
    Ok(out)
}

fn local_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Go's `mime.QEncoding.Encode("utf-8", s)`: `s` itself when it is printable ASCII,
/// else encoded words of at most 75 characters.
pub fn q_encode(s: &str) -> String {
    if !s.bytes().any(|b| !(b' '..=b'~').contains(&b) && b != b'\t') {
        return s.to_string();
    }
    const START: &str = "=?utf-8?q?";
    const MAX: usize = 75;
    let mut out = String::from(START);
    let mut len = "utf-8".len() + 7;
    for ch in s.chars() {
        let mut buf = [0u8; 4];
        let bytes = ch.encode_utf8(&mut buf).as_bytes();
        let literal = |b: u8| (b' '..=b'~').contains(&b) && !matches!(b, b'=' | b'?' | b'_');
        let enc_len = if bytes.len() == 1 && literal(bytes[0]) {
            1
        } else {
            3 * bytes.len()
        };
        if len + enc_len > MAX {
            out.push_str("?= ");
            out.push_str(START);
            len = "utf-8".len() + 7;
        }
        for &b in bytes {
            match b {
                b' ' => out.push('_'),
                b if literal(b) => out.push(b as char),
                b => {
                    let _ = write!(out, "={b:02X}");
                }
            }
        }
        len += enc_len;
    }
    out.push_str("?=");
    out
}

/// Go's `mime/quotedprintable.Writer` (text mode): lines of at most 76 characters
/// with `=` soft breaks, line ends as CRLF, `=`, control and non-ASCII bytes and
/// whitespace before a line end as `=XX`.
pub fn quoted_printable(input: &[u8]) -> String {
    const LINE_MAX: usize = 76;
    struct W {
        out: String,
        line: Vec<u8>,
        cr: bool,
    }
    impl W {
        fn crlf(&mut self) {
            self.line.extend_from_slice(b"\r\n");
            self.flush();
        }
        fn flush(&mut self) {
            self.out.push_str(&String::from_utf8_lossy(&self.line));
            self.line.clear();
        }
        fn soft_break(&mut self) {
            self.line.push(b'=');
            self.crlf();
        }
        fn encode(&mut self, b: u8) {
            if LINE_MAX - 1 - self.line.len() < 3 {
                self.soft_break();
            }
            self.line.extend_from_slice(format!("={b:02X}").as_bytes());
        }
        fn check_last_byte(&mut self) {
            if let Some(&b) = self.line.last() {
                if b == b' ' || b == b'\t' {
                    self.line.pop();
                    self.encode(b);
                }
            }
        }
        fn write(&mut self, b: u8) {
            if b == b'\n' || b == b'\r' {
                if self.cr && b == b'\n' {
                    self.cr = false;
                    return;
                }
                if b == b'\r' {
                    self.cr = true;
                }
                self.check_last_byte();
                self.crlf();
                return;
            }
            if self.line.len() == LINE_MAX - 1 {
                self.soft_break();
            }
            self.line.push(b);
            self.cr = false;
        }
    }
    let mut w = W {
        out: String::new(),
        line: Vec::new(),
        cr: false,
    };
    for &b in input {
        let plain = (b'!'..=b'~').contains(&b) && b != b'=';
        if plain || b == b' ' || b == b'\t' || b == b'\n' || b == b'\r' {
            w.write(b);
        } else {
            w.encode(b);
            w.cr = false;
        }
    }
    w.check_last_byte();
    w.flush();
    w.out
}

// ---------------------------------------------------------------------------
// Config

/// `global.smtp_*`: what email entries inherit.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGlobalSmtp {
    pub(crate) smtp_from: Option<String>,
    pub(crate) smtp_hello: Option<String>,
    pub(crate) smtp_smarthost: Option<String>,
    pub(crate) smtp_auth_username: Option<String>,
    pub(crate) smtp_auth_password: Option<String>,
    pub(crate) smtp_auth_password_file: Option<String>,
    pub(crate) smtp_auth_secret: Option<String>,
    pub(crate) smtp_auth_identity: Option<String>,
    pub(crate) smtp_require_tls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEmail {
    pub(crate) send_resolved: Option<bool>,
    pub(crate) to: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) hello: Option<String>,
    pub(crate) smarthost: Option<String>,
    pub(crate) auth_username: Option<String>,
    pub(crate) auth_password: Option<String>,
    pub(crate) auth_password_file: Option<String>,
    pub(crate) auth_secret: Option<String>,
    pub(crate) auth_identity: Option<String>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) html: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) require_tls: Option<bool>,
    pub(crate) tls_config: Option<RawTlsConfig>,
}

/// `email_configs` entry, with the globals applied.
#[derive(Clone, Debug, PartialEq)]
pub struct EmailConfig {
    /// Defaults to false.
    pub send_resolved: bool,
    /// Template: the recipients.
    pub to: String,
    /// Template: the sender.
    pub from: String,
    /// The EHLO name.
    pub hello: String,
    /// `host:port` as written.
    pub smarthost: String,
    /// Its host.
    pub smarthost_host: String,
    /// Its port.
    pub smarthost_port: u16,
    /// Empty: no AUTH.
    pub auth_username: String,
    /// PLAIN / LOGIN password.
    pub auth_password: Secret,
    /// Or read from this file at each send.
    pub auth_password_file: Option<PathBuf>,
    /// CRAM-MD5 secret (not used by promflow, see the module doc).
    pub auth_secret: Secret,
    /// PLAIN identity (not used by promflow, see the module doc).
    pub auth_identity: String,
    /// Header templates, canonical names (`Subject`, `X-Team`).
    pub headers: BTreeMap<String, String>,
    /// Template of the HTML part (empty: none).
    pub html: String,
    /// Template of the text part (empty: none).
    pub text: String,
    /// STARTTLS required (when not on port 465).
    pub require_tls: bool,
    /// `tls_config`.
    pub tls_config: TlsConfig,
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-team-id` → `X-Team-Id`.
pub(crate) fn canonical_header(name: &str) -> String {
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// Resolves one `email_configs` entry with the globals, adding its problems.
pub(crate) fn resolve(
    c: &RawEmail,
    global: Option<&RawGlobalSmtp>,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> EmailConfig {
    let g = |f: fn(&RawGlobalSmtp) -> &Option<String>| {
        global.and_then(|g| f(g).clone()).filter(|s| !s.is_empty())
    };
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let to = set(&c.to).unwrap_or_default();
    if to.is_empty() {
        p.push(path.key("to"), "missing to address in email config");
    }
    let mut headers = BTreeMap::new();
    for (name, value) in c.headers.iter().flatten() {
        let canonical = canonical_header(name);
        if headers.insert(canonical.clone(), value.clone()).is_some() {
            p.push(
                path.key("headers"),
                format!("duplicate header {canonical:?} in email config"),
            );
        }
    }
    let smarthost = set(&c.smarthost).or_else(|| g(|g| &g.smtp_smarthost));
    let (smarthost, host, port) = match smarthost {
        None => {
            p.push(path.key("smarthost"), "no global SMTP smarthost set");
            (String::new(), String::new(), 0)
        }
        Some(s) => match s.rsplit_once(':') {
            Some((h, port)) if !h.is_empty() => match port.parse::<u16>() {
                Ok(n) => (
                    s.clone(),
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    n,
                ),
                Err(_) => {
                    p.push(
                        path.key("smarthost"),
                        format!("invalid port {port:?} in {s:?}"),
                    );
                    (s, String::new(), 0)
                }
            },
            _ => {
                p.push(
                    path.key("smarthost"),
                    format!("address {s}: missing port in address"),
                );
                (s, String::new(), 0)
            }
        },
    };
    let from = set(&c.from).or_else(|| g(|g| &g.smtp_from));
    if from.is_none() {
        p.push(path.key("from"), "no global SMTP from set");
    }
    let (auth_password, auth_password_file) =
        if set(&c.auth_password).is_some() || set(&c.auth_password_file).is_some() {
            (set(&c.auth_password), set(&c.auth_password_file))
        } else {
            (
                g(|g| &g.smtp_auth_password),
                g(|g| &g.smtp_auth_password_file),
            )
        };
    if auth_password.is_some() && auth_password_file.is_some() {
        p.push(
            path.key("auth_password"),
            "at most one of auth_password & auth_password_file must be configured",
        );
    }
    EmailConfig {
        send_resolved: c.send_resolved.unwrap_or(false),
        to,
        from: from.unwrap_or_default(),
        hello: set(&c.hello)
            .or_else(|| g(|g| &g.smtp_hello))
            .unwrap_or_else(|| defaults::HELLO.to_string()),
        smarthost,
        smarthost_host: host,
        smarthost_port: port,
        auth_username: set(&c.auth_username)
            .or_else(|| g(|g| &g.smtp_auth_username))
            .unwrap_or_default(),
        auth_password: Secret::new(auth_password.unwrap_or_default()),
        auth_password_file: auth_password_file.map(|f| base.join(f)),
        auth_secret: Secret::new(
            set(&c.auth_secret)
                .or_else(|| g(|g| &g.smtp_auth_secret))
                .unwrap_or_default(),
        ),
        auth_identity: set(&c.auth_identity)
            .or_else(|| g(|g| &g.smtp_auth_identity))
            .unwrap_or_default(),
        headers,
        html: c.html.clone().unwrap_or_else(|| defaults::HTML.to_string()),
        text: c.text.clone().unwrap_or_default(),
        require_tls: c
            .require_tls
            .or_else(|| global.and_then(|g| g.smtp_require_tls))
            .unwrap_or(true),
        tls_config: resolve_tls_config(c.tls_config.as_ref(), base, &path.key("tls_config"), p),
    }
}

impl ReceiverKind for EmailConfig {
    type Raw = RawEmail;
    const NAME: &'static str = "email";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawEmail,
        global: &Globals,
        base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> EmailConfig {
        resolve(raw, Some(&global.raw.smtp()), base, path, p)
    }

    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        _group_key: &str,
    ) -> Result<Delivery, RequestError> {
        request(self, templates, data).map(|e| Delivery::Email(Box::new(e)))
    }

    fn http_config(&self) -> Option<&HttpClientConfig> {
        None
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn show(entry: &YamlValue, global: &YamlValue) -> Mapping {
        show(entry, global)
    }
}

/// An `email_configs` entry with the globals applied, as `EmailConfig` marshals.
pub(crate) fn show(c: &YamlValue, g: &YamlValue) -> Mapping {
    let mut m = Mapping::new();
    m.insert("send_resolved".into(), flag(c, "send_resolved", false));
    let own = |key: &str| c.get(key).and_then(string).filter(|s| !s.is_empty());
    let global = |key: &str| g.get(key).and_then(string).filter(|s| !s.is_empty());
    let to = own("to").unwrap_or_default();
    m.insert("to".into(), to.clone().into());
    let from = own("from")
        .or_else(|| global("smtp_from"))
        .unwrap_or_default();
    m.insert("from".into(), from.clone().into());
    let hello = own("hello")
        .or_else(|| global("smtp_hello"))
        .unwrap_or_else(|| defaults::HELLO.to_string());
    m.insert("hello".into(), hello.into());
    if let Some(v) = own("smarthost").or_else(|| global("smtp_smarthost")) {
        m.insert("smarthost".into(), v.into());
    }
    if let Some(v) = own("auth_username").or_else(|| global("smtp_auth_username")) {
        m.insert("auth_username".into(), v.into());
    }
    let (password, password_file) =
        if own("auth_password").is_some() || own("auth_password_file").is_some() {
            (own("auth_password"), own("auth_password_file"))
        } else {
            (
                global("smtp_auth_password"),
                global("smtp_auth_password_file"),
            )
        };
    if password.is_some() {
        m.insert("auth_password".into(), SECRET.into());
    }
    if let Some(f) = password_file {
        m.insert("auth_password_file".into(), f.into());
    }
    if own("auth_secret")
        .or_else(|| global("smtp_auth_secret"))
        .is_some()
    {
        m.insert("auth_secret".into(), SECRET.into());
    }
    if let Some(v) = own("auth_identity").or_else(|| global("smtp_auth_identity")) {
        m.insert("auth_identity".into(), v.into());
    }
    // Alertmanager fills in To, From and Subject at load; names canonical, sorted.
    let mut headers: std::collections::BTreeMap<String, YamlValue> = c
        .get("headers")
        .and_then(YamlValue::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((canonical_header(&string(k)?), v.clone())))
        .collect();
    headers.entry("To".into()).or_insert_with(|| to.into());
    headers.entry("From".into()).or_insert_with(|| from.into());
    headers
        .entry("Subject".into())
        .or_insert_with(|| defaults::SUBJECT.into());
    m.insert(
        "headers".into(),
        YamlValue::Mapping(headers.into_iter().map(|(k, v)| (k.into(), v)).collect()),
    );
    m.insert("html".into(), text_or(c, "html", defaults::HTML));
    insert_nonempty(&mut m, c, &["text"]);
    let require_tls = c
        .get("require_tls")
        .or_else(|| g.get("smtp_require_tls"))
        .and_then(YamlValue::as_bool)
        .unwrap_or(true);
    m.insert("require_tls".into(), require_tls.into());
    if let Some(tls) = c.get("tls_config").filter(|t| t.is_mapping()) {
        m.insert("tls_config".into(), YamlValue::Mapping(tls_config_of(tls)));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_encoding_as_go() {
        assert_eq!(q_encode("[FIRING:1] x"), "[FIRING:1] x");
        assert_eq!(
            q_encode("¡Hola, señor!"),
            "=?utf-8?q?=C2=A1Hola,_se=C3=B1or!?="
        );
    }

    #[test]
    fn quoted_printable_as_go() {
        assert_eq!(quoted_printable(b"a=b \nc\td"), "a=3Db=20\r\nc\td");
        let long = "x".repeat(80);
        assert_eq!(
            quoted_printable(long.as_bytes()),
            format!("{}=\r\n{}", "x".repeat(75), "x".repeat(5))
        );
        assert_eq!(canonical_header("x-team-ID"), "X-Team-Id");
    }
}
