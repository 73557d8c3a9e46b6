//! The notifier's config as Alertmanager 0.25 shows it (`GET /api/v2/status`'s
//! `config.original`, what `amtool config show` prints and `amtool config routes`
//! parses): the file re-marshalled the way Alertmanager's Go structs marshal —
//! fields in struct order, defaults filled in (global URLs, `http_config`,
//! receiver texts), secrets as `<secret>`, durations re-printed, unset optional
//! fields left out.
//!
//! Contract: input is a file [`crate::alertmanager::config::NotifyConfig`] already
//! accepted, so unreadable parts are skipped rather than reported. Covers what the
//! built-in notifier supports (global, route, inhibit rules, receivers through each
//! kind's `ReceiverKind::show` in its file, templates); promflow's own extension
//! `pushover_configs[].api_url` is left out, so the text stays a valid Alertmanager file. The YAML emitter is
//! libyaml's (through `serde_yaml_ng`), as Go's `yaml.v2` is, so quoting and line
//! folding come out the same.

use crate::alertmanager::matcher::{parse_matchers, Matchers};
use crate::alertmanager::receivers::email::defaults as email;
use crate::alertmanager::receivers::{opsgenie, pagerduty, telegram, victorops, SHOWN};
use crate::config::{format_duration, parse_duration};
use serde_yaml_ng::{Mapping, Value};
use std::time::Duration;

pub(crate) const SECRET: &str = "<secret>";

/// Alertmanager 0.25's global URLs, in `GlobalConfig` order after `slack_api_url`.
const GLOBAL_URLS: [(&str, &str); 6] = [
    ("pagerduty_url", pagerduty::DEFAULT_URL),
    ("opsgenie_api_url", opsgenie::DEFAULT_API_URL),
    ("wechat_api_url", "https://qyapi.weixin.qq.com/cgi-bin/"),
    ("victorops_api_url", victorops::DEFAULT_API_URL),
    ("telegram_api_url", telegram::DEFAULT_API_URL),
    ("webex_api_url", "https://webexapis.com/v1/messages"),
];

/// The config file `text` as Alertmanager shows it (see the module doc).
pub fn show(text: &str) -> String {
    let file: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
    let mut out = Mapping::new();
    out.insert(
        "global".into(),
        Value::Mapping(global(&file["global"], &file)),
    );
    if let Some(route) = file.get("route").filter(|r| r.is_mapping()) {
        out.insert("route".into(), Value::Mapping(route_of(route)));
    }
    let inhibit = list(&file["inhibit_rules"], inhibit_rule);
    if !inhibit.is_empty() {
        out.insert("inhibit_rules".into(), Value::Sequence(inhibit));
    }
    let receivers = list(&file["receivers"], |r| receiver(r, &file["global"]));
    if !receivers.is_empty() {
        out.insert("receivers".into(), Value::Sequence(receivers));
    }
    let templates = file["templates"].as_sequence().cloned().unwrap_or_default();
    out.insert("templates".into(), Value::Sequence(templates));
    let text = serde_yaml_ng::to_string(&Value::Mapping(out)).unwrap_or_default();
    text.lines().map(|l| fold_line(&go_quoted(l))).collect()
}

/// Go's `yaml.v2` double-quotes a string that would otherwise read as another type
/// (`"1"`, `"+1555"`, `"true"`), where libyaml's emitter single-quotes it: such a
/// single-quoted value (after `key: ` or `- `) is re-quoted Go's way.
fn go_quoted(line: &str) -> String {
    let start = match line.find(": '") {
        Some(i) => i + 2,
        None => match line.trim_start().strip_prefix("- '") {
            Some(_) => line.len() - line.trim_start().len() + 2,
            None => return line.to_string(),
        },
    };
    let quoted = &line[start..];
    let Some(inner) = quoted
        .strip_prefix('\'')
        .and_then(|q| q.strip_suffix('\''))
        .filter(|i| !i.contains('\''))
    else {
        return line.to_string();
    };
    let yaml_1_1_bool = matches!(
        inner.to_ascii_lowercase().as_str(),
        "y" | "yes" | "n" | "no" | "on" | "off"
    );
    let null = matches!(inner, "" | "~" | "null" | "Null" | "NULL");
    let other_type = null
        || matches!(
            serde_yaml_ng::from_str::<Value>(inner),
            Ok(Value::Number(_) | Value::Bool(_))
        );
    if yaml_1_1_bool || other_type {
        format!("{}\"{inner}\"", &line[..start])
    } else {
        line.to_string()
    }
}

/// libyaml's preferred line width, which Go's `yaml.v2` keeps and `serde_yaml_ng`
/// turns off.
const BEST_WIDTH: usize = 80;

/// Folds one emitted line the way libyaml does with its default width: a plain or
/// single-quoted mapping value breaks at a single space once the line is longer
/// than [`BEST_WIDTH`], continuing two columns right of its key. Other lines (double
/// quoted, block scalars, sequence items) are returned as they are. Ends with `\n`.
fn fold_line(line: &str) -> String {
    let item_prefix = line.len() - line.trim_start_matches([' ', '-']).len();
    let rest = &line[item_prefix..];
    let key_len = rest
        .find(": ")
        .filter(|&i| {
            rest[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .filter(|&i| i > 0);
    let Some(key_len) = key_len else {
        return format!("{line}\n");
    };
    let value_start = item_prefix + key_len + 2;
    let value = &line[value_start..];
    let quoted = value.starts_with('\'');
    if value.starts_with(['"', '|', '>']) || line.chars().count() <= BEST_WIDTH {
        return format!("{line}\n");
    }
    let indent = " ".repeat(item_prefix + 2);
    let mut out = line[..value_start].to_string();
    let mut column = line[..value_start].chars().count();
    let chars: Vec<char> = value.chars().collect();
    let mut previous_space = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let inside = !quoted || (i != 0 && i + 1 != chars.len());
            let next_space = chars.get(i + 1) == Some(&' ');
            if !previous_space && column > BEST_WIDTH && inside && !next_space {
                out.push('\n');
                out.push_str(&indent);
                column = indent.len();
            } else {
                out.push(c);
                column += 1;
            }
            previous_space = true;
        } else {
            out.push(c);
            column += 1;
            previous_space = false;
        }
    }
    out.push('\n');
    out
}

fn list(v: &Value, f: impl Fn(&Value) -> Mapping) -> Vec<Value> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|item| Value::Mapping(f(item)))
        .collect()
}

pub(crate) fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn http_config() -> Value {
    let mut m = Mapping::new();
    m.insert("follow_redirects".into(), true.into());
    m.insert("enable_http2".into(), true.into());
    Value::Mapping(m)
}

/// An `http_config` as prometheus/common 0.39 marshals it after its checks:
/// `bearer_token[_file]` become `authorization` of type `Bearer`, secrets
/// `<secret>`, `follow_redirects` and `enable_http2` always shown.
fn http_config_of(written: &Value) -> Value {
    let mut m = Mapping::new();
    let text = |v: &Value, key: &str| v.get(key).and_then(string).filter(|s| !s.is_empty());
    if let Some(auth) = written.get("basic_auth").filter(|a| a.is_mapping()) {
        let mut a = Mapping::new();
        a.insert(
            "username".into(),
            text(auth, "username").unwrap_or_default().into(),
        );
        if text(auth, "password").is_some() {
            a.insert("password".into(), SECRET.into());
        }
        insert_nonempty(&mut a, auth, &["password_file"]);
        m.insert("basic_auth".into(), Value::Mapping(a));
    }
    let bearer = text(written, "bearer_token");
    let bearer_file = text(written, "bearer_token_file");
    let authorization = written.get("authorization").filter(|a| a.is_mapping());
    if authorization.is_some() || bearer.is_some() || bearer_file.is_some() {
        let mut a = Mapping::new();
        let kind = authorization.and_then(|auth| text(auth, "type"));
        a.insert(
            "type".into(),
            kind.unwrap_or_else(|| "Bearer".into()).into(),
        );
        let credentials = authorization.and_then(|auth| auth.get("credentials"));
        if credentials.is_some() || bearer.is_some() {
            a.insert("credentials".into(), SECRET.into());
        }
        let file = authorization
            .and_then(|auth| text(auth, "credentials_file"))
            .or(bearer_file);
        if let Some(f) = file {
            a.insert("credentials_file".into(), f.into());
        }
        m.insert("authorization".into(), Value::Mapping(a));
    }
    if let Some(oauth2) = written.get("oauth2").filter(|o| o.is_mapping()) {
        let mut o = Mapping::new();
        o.insert(
            "client_id".into(),
            text(oauth2, "client_id").unwrap_or_default().into(),
        );
        if text(oauth2, "client_secret").is_some() {
            o.insert("client_secret".into(), SECRET.into());
        }
        o.insert(
            "client_secret_file".into(),
            text(oauth2, "client_secret_file")
                .unwrap_or_default()
                .into(),
        );
        if let Some(scopes) = oauth2.get("scopes").and_then(strings) {
            o.insert("scopes".into(), scopes);
        }
        o.insert(
            "token_url".into(),
            text(oauth2, "token_url").unwrap_or_default().into(),
        );
        if let Some(params) = oauth2.get("endpoint_params").and_then(sorted_map) {
            o.insert("endpoint_params".into(), params);
        }
        if let Some(tls) = oauth2.get("tls_config").filter(|t| t.is_mapping()) {
            o.insert("tls_config".into(), Value::Mapping(tls_config_of(tls)));
        }
        insert_nonempty(&mut o, oauth2, &["proxy_url"]);
        m.insert("oauth2".into(), Value::Mapping(o));
    }
    insert_nonempty(&mut m, written, &["proxy_url"]);
    if let Some(tls) = written.get("tls_config").filter(|t| t.is_mapping()) {
        m.insert("tls_config".into(), Value::Mapping(tls_config_of(tls)));
    }
    for key in ["follow_redirects", "enable_http2"] {
        m.insert(key.into(), flag(written, key, true));
    }
    Value::Mapping(m)
}

/// A written `tls_config` as prometheus/common's `TLSConfig` marshals.
pub(crate) fn tls_config_of(tls: &Value) -> Mapping {
    let mut t = Mapping::new();
    for key in [
        "ca",
        "cert",
        "ca_file",
        "cert_file",
        "key_file",
        "server_name",
    ] {
        if let Some(v) = tls.get(key).and_then(string).filter(|s| !s.is_empty()) {
            t.insert(key.into(), v.into());
        }
    }
    if tls.get("key").is_some() {
        t.insert("key".into(), SECRET.into());
    }
    t.insert(
        "insecure_skip_verify".into(),
        flag(tls, "insecure_skip_verify", false),
    );
    // Alertmanager 0.25 prints TLS versions as Go's uint16 constants.
    for key in ["min_version", "max_version"] {
        if let Some(v) = tls.get(key).and_then(string) {
            let number = ["TLS10", "TLS11", "TLS12", "TLS13"]
                .iter()
                .position(|name| *name == v)
                .map(|i| 769 + i as u64);
            t.insert(key.into(), number.map_or_else(|| v.into(), Value::from));
        }
    }
    t
}

fn global(g: &Value, file: &Value) -> Mapping {
    let mut m = Mapping::new();
    let timeout = g
        .get("resolve_timeout")
        .and_then(string)
        .and_then(|t| parse_duration(&t).ok())
        .unwrap_or(Duration::from_secs(300));
    m.insert("resolve_timeout".into(), format_duration(timeout).into());
    m.insert(
        "http_config".into(),
        g.get("http_config")
            .map(http_config_of)
            .unwrap_or_else(http_config),
    );
    for (key, value) in global_smtp(g) {
        m.insert(key.into(), value);
    }
    if g.get("slack_api_url").is_some() {
        m.insert("slack_api_url".into(), SECRET.into());
    }
    if let Some(f) = g.get("slack_api_url_file").and_then(string) {
        m.insert("slack_api_url_file".into(), f.into());
    }
    for (key, default) in GLOBAL_URLS {
        let mut url = g.get(key).and_then(string).unwrap_or(default.to_string());
        // Alertmanager appends the `/` to the URL it shares with the entries that
        // take it, so the global one shows it too once one does.
        let kind = key.split('_').next().unwrap_or("");
        if DIRECTORY_URLS.contains(&key) && takes_global_url(file, kind) {
            url = directory_url(&url);
        }
        m.insert(key.into(), url.into());
        if let Some((_, [secret, file_key])) = GLOBAL_KEYS.iter().find(|(k, _)| *k == key) {
            if g.get(*secret)
                .and_then(string)
                .is_some_and(|s| !s.is_empty())
            {
                m.insert((*secret).into(), SECRET.into());
            }
            if let Some(f) = g.get(*file_key).and_then(string).filter(|s| !s.is_empty()) {
                m.insert((*file_key).into(), f.into());
            }
        }
    }
    m
}

/// Global URLs Alertmanager turns into directories (a `/` added to the path).
const DIRECTORY_URLS: [&str; 3] = ["opsgenie_api_url", "wechat_api_url", "victorops_api_url"];

/// The credentials `GlobalConfig` lists right after a global URL: a secret shown as
/// `<secret>`, then a field shown as written (a key file, WeChat's corp id).
const GLOBAL_KEYS: [(&str, [&str; 2]); 3] = [
    (
        "opsgenie_api_url",
        ["opsgenie_api_key", "opsgenie_api_key_file"],
    ),
    (
        "wechat_api_url",
        ["wechat_api_secret", "wechat_api_corp_id"],
    ),
    (
        "victorops_api_url",
        ["victorops_api_key", "victorops_api_key_file"],
    ),
];

/// Whether some `<kind>_configs` entry of `file` has no `api_url` of its own.
fn takes_global_url(file: &Value, kind: &str) -> bool {
    file["receivers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r[format!("{kind}_configs").as_str()]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .any(|c| c.get("api_url").is_none())
}

/// A string map with its keys in order (how Go marshals a `map[string]string`).
pub(crate) fn sorted_map(v: &Value) -> Option<Value> {
    let map = v.as_mapping()?;
    let mut pairs: Vec<(String, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((string(k)?, string(v)?)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort();
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(k.into(), v.into());
    }
    Some(Value::Mapping(m))
}

/// A `matchers` list, parsed, sorted and printed as Alertmanager's `Matchers` marshal.
fn matchers(v: &Value) -> Option<Value> {
    let mut all = Vec::new();
    for text in v.as_sequence()?.iter().filter_map(string) {
        all.extend(parse_matchers(&text).ok()?);
    }
    if all.is_empty() {
        return None;
    }
    Some(Value::Sequence(
        Matchers::sorted(all)
            .0
            .iter()
            .map(|m| Value::String(m.to_string()))
            .collect(),
    ))
}

pub(crate) fn strings(v: &Value) -> Option<Value> {
    let items: Vec<Value> = v
        .as_sequence()?
        .iter()
        .filter_map(string)
        .map(Value::String)
        .collect();
    (!items.is_empty()).then_some(Value::Sequence(items))
}

fn route_of(r: &Value) -> Mapping {
    let mut m = Mapping::new();
    if let Some(receiver) = r.get("receiver").and_then(string) {
        m.insert("receiver".into(), receiver.into());
    }
    if let Some(group_by) = r.get("group_by").and_then(strings) {
        m.insert("group_by".into(), group_by);
    }
    for (key, render) in [
        ("match", sorted_map as fn(&Value) -> Option<Value>),
        ("match_re", sorted_map),
        ("matchers", matchers),
    ] {
        if let Some(v) = r.get(key).and_then(render) {
            m.insert(key.into(), v);
        }
    }
    m.insert("continue".into(), flag(r, "continue", false));
    let children = list(&r["routes"], route_of);
    if !children.is_empty() {
        m.insert("routes".into(), Value::Sequence(children));
    }
    for key in ["group_wait", "group_interval", "repeat_interval"] {
        if let Some(d) = r
            .get(key)
            .and_then(string)
            .and_then(|t| parse_duration(&t).ok())
        {
            m.insert(key.into(), format_duration(d).into());
        }
    }
    m
}

fn inhibit_rule(r: &Value) -> Mapping {
    let mut m = Mapping::new();
    for side in ["source", "target"] {
        for (suffix, render) in [
            ("_match", sorted_map as fn(&Value) -> Option<Value>),
            ("_match_re", sorted_map),
            ("_matchers", matchers),
        ] {
            let key = format!("{side}{suffix}");
            if let Some(v) = r.get(&key).and_then(render) {
                m.insert(key.into(), v);
            }
        }
    }
    if let Some(equal) = r.get("equal").and_then(strings) {
        m.insert("equal".into(), equal);
    }
    m
}

/// `global.smtp_*` in `GlobalConfig` order, defaults filled in.
fn global_smtp(g: &Value) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    let text = |key: &str| g.get(key).and_then(string).filter(|s| !s.is_empty());
    for key in [
        "smtp_from",
        "smtp_hello",
        "smtp_smarthost",
        "smtp_auth_username",
        "smtp_auth_password",
        "smtp_auth_password_file",
        "smtp_auth_secret",
        "smtp_auth_identity",
    ] {
        let value = match (key, text(key)) {
            ("smtp_hello", None) => Some(email::HELLO.to_string()),
            ("smtp_auth_password" | "smtp_auth_secret", Some(_)) => Some(SECRET.to_string()),
            (_, v) => v,
        };
        if let Some(v) = value {
            out.push((key, v.into()));
        }
    }
    out.push(("smtp_require_tls", flag(g, "smtp_require_tls", true)));
    out
}

fn receiver(r: &Value, global: &Value) -> Mapping {
    let mut m = Mapping::new();
    m.insert(
        "name".into(),
        r.get("name").and_then(string).unwrap_or_default().into(),
    );
    // Alertmanager's `Receiver` struct order; entries without an `http_config` take
    // `global.http_config`.
    let inherit = |c: &Value| match (c, global.get("http_config")) {
        (Value::Mapping(entry), Some(h)) if !entry.contains_key("http_config") => {
            let mut entry = entry.clone();
            entry.insert("http_config".into(), h.clone());
            Value::Mapping(entry)
        }
        _ => c.clone(),
    };
    for (key, show) in SHOWN {
        let configs = list(&r[*key], |c| show(&inherit(c), global));
        if !configs.is_empty() {
            m.insert((*key).into(), Value::Sequence(configs));
        }
    }
    m
}

/// `send_resolved` and `http_config`, which every receiver config starts with.
pub(crate) fn notifier_head(c: &Value, send_resolved_default: bool) -> Mapping {
    let mut m = Mapping::new();
    m.insert(
        "send_resolved".into(),
        flag(c, "send_resolved", send_resolved_default),
    );
    m.insert(
        "http_config".into(),
        c.get("http_config")
            .map(http_config_of)
            .unwrap_or_else(http_config),
    );
    m
}

/// A boolean field, or its default.
pub(crate) fn flag(c: &Value, key: &str, default: bool) -> Value {
    c.get(key)
        .and_then(Value::as_bool)
        .unwrap_or(default)
        .into()
}

/// Copies the `keys` that are set and not empty (Go's `omitempty` strings).
pub(crate) fn insert_nonempty(m: &mut Mapping, c: &Value, keys: &[&str]) {
    for key in keys {
        if let Some(v) = c.get(*key).and_then(string).filter(|s| !s.is_empty()) {
            m.insert((*key).into(), v.into());
        }
    }
}

/// A text with a default, left out when empty (Go's `omitempty` on a string the
/// config filled in).
pub(crate) fn insert_text(m: &mut Mapping, c: &Value, key: &str, default: &str) {
    let text = c.get(key).and_then(string);
    let text = text.as_deref().unwrap_or(default);
    if !text.is_empty() {
        m.insert(key.into(), text.into());
    }
}

/// `secret_key` as `<secret>` and `file_key` as written, from the entry when it sets
/// either, else from `global`'s `global_secret`/`global_file` (Alertmanager copies
/// both then).
pub(crate) fn insert_key(
    m: &mut Mapping,
    c: &Value,
    [secret_key, file_key]: [&str; 2],
    global: &Value,
    [global_secret, global_file]: [&str; 2],
) {
    let set = |v: &Value, k: &str| v.get(k).and_then(string).filter(|s| !s.is_empty());
    let from_entry = set(c, secret_key).is_some() || set(c, file_key).is_some();
    let (secret, file) = if from_entry {
        (set(c, secret_key), set(c, file_key))
    } else {
        (set(global, global_secret), set(global, global_file))
    };
    if secret.is_some() {
        m.insert(secret_key.into(), SECRET.into());
    }
    if let Some(f) = file {
        m.insert(file_key.into(), f.into());
    }
}

/// A receiver's URL: the entry's `key`, else `global`'s `global_key`, else
/// `default`; with a `/` added to its path when `directory` (OpsGenie, VictorOps).
pub(crate) fn url_of(
    c: &Value,
    key: &str,
    global: &Value,
    global_key: &str,
    default: &str,
    directory: bool,
) -> String {
    let text = c
        .get(key)
        .and_then(string)
        .or_else(|| global.get(global_key).and_then(string))
        .unwrap_or_else(|| default.to_string());
    if directory {
        directory_url(&text)
    } else {
        text
    }
}

/// `url` with a `/` added to its path, as Alertmanager does to base URLs.
fn directory_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.path().ends_with('/') => {
            u.set_path(&format!("{}/", u.path()));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub(crate) fn text_or(c: &Value, key: &str, default: &str) -> Value {
    c.get(key)
        .and_then(string)
        .unwrap_or_else(|| default.to_string())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_what_alertmanager_0_25_prints() {
        // Expected lines from `amtool config show` against Alertmanager 0.25 with
        // the same file.
        let shown = show(
            "route:\n  receiver: a\nreceivers:\n  - name: a\n    webhook_configs:\n      - url: https://h/x\n        http_config:\n          tls_config:\n            min_version: TLS12\n    slack_configs:\n      - api_url: https://h/s\n        title: \"A very long title that goes on and on and on and on and on and on and on and on and on and on\"\n",
        );
        assert!(shown.contains("        min_version: 771\n"), "{shown}");
        assert!(
            shown.contains("    title: A very long title that goes on and on and on and on and on and on and on\n      and on and on and on\n"),
            "{shown}"
        );
        assert!(
            shown.starts_with("global:\n  resolve_timeout: 5m\n"),
            "{shown}"
        );
        assert!(shown.ends_with("templates: []\n"), "{shown}");
    }

    #[test]
    fn shows_email_configs_as_alertmanager_0_25() {
        // Expected: `amtool config show` against Alertmanager 0.25 with the same file.
        let shown = show(
            "global:\n  smtp_smarthost: 'localhost:25'\n  smtp_from: 'alertmanager@example.org'\n  smtp_auth_username: 'alertmanager'\n  smtp_auth_password: 'password'\nroute:\n  receiver: a\nreceivers:\n- name: a\n  email_configs:\n  - to: 'team-X+alerts@example.org'\n  - to: b@example.org\n    send_resolved: true\n    headers: {x-team: X}\n    text: hi\n    auth_password_file: /tmp/pw\n    tls_config: {insecure_skip_verify: true}\n",
        );
        let expected_global = "  smtp_from: alertmanager@example.org\n  smtp_hello: localhost\n  smtp_smarthost: localhost:25\n  smtp_auth_username: alertmanager\n  smtp_auth_password: <secret>\n  smtp_require_tls: true\n  pagerduty_url:";
        assert!(shown.contains(expected_global), "{shown}");
        let expected = r#"receivers:
- name: a
  email_configs:
  - send_resolved: false
    to: team-X+alerts@example.org
    from: alertmanager@example.org
    hello: localhost
    smarthost: localhost:25
    auth_username: alertmanager
    auth_password: <secret>
    headers:
      From: alertmanager@example.org
      Subject: '{{ template "email.default.subject" . }}'
      To: team-X+alerts@example.org
    html: '{{ template "email.default.html" . }}'
    require_tls: true
  - send_resolved: true
    to: b@example.org
    from: alertmanager@example.org
    hello: localhost
    smarthost: localhost:25
    auth_username: alertmanager
    auth_password_file: /tmp/pw
    headers:
      From: alertmanager@example.org
      Subject: '{{ template "email.default.subject" . }}'
      To: b@example.org
      X-Team: X
    html: '{{ template "email.default.html" . }}'
    text: hi
    require_tls: true
    tls_config:
      insecure_skip_verify: true
templates: []
"#;
        assert!(shown.ends_with(expected), "{shown}");
    }

    #[test]
    fn shows_webex_wechat_and_sns_configs_as_alertmanager_0_25() {
        // Expected: Alertmanager 0.25's `config.original` for the same file.
        let shown = show(include_str!(
            "../../tests/data/am-show-webex-wechat-sns.yml"
        ));
        let expected = include_str!("../../tests/data/am-show-webex-wechat-sns.expected");
        assert_eq!(shown, expected);
    }
}
