//! The built-in notifier's config file: Alertmanager 0.25's format
//! (`--alertmanager.config.file`).
//!
//! Owns: the file as written (serde structs, every field optional), its resolution
//! into ready-to-use settings with Alertmanager's defaults (`resolve_timeout` 5m;
//! `group_wait` 30s, `group_interval` 5m, `repeat_interval` 4h, inherited down the
//! route tree), and every problem, located by file, line and field, through the
//! same loader as promflow's own config. Fields Alertmanager has but promflow does not
//! support (time intervals, Slack's `actions`, SNS's `http_config`, …) are reported
//! as such, not ignored. A receiver's `http_config` (else `global.http_config`,
//! taken whole as Alertmanager does) has prometheus/common's HTTP client settings —
//! `basic_auth`, `authorization`, `bearer_token[_file]`, `oauth2`, `proxy_url`,
//! `follow_redirects`, `enable_http2`, `tls_config` — resolved and checked by the
//! same code as promflow's own sections (`crate::config::resolve_http_client`);
//! without `tls_config` receivers are verified against the system's CA roots. SNS
//! entries have none (the AWS SDK sends them). Each receiver
//! kind's own fields, defaults and checks live beside its request in
//! [`crate::alertmanager::receivers`], whose one list of kinds also gives a
//! receiver's `*_configs` fields and [`Integration`]; this file resolves `global`
//! into [`Globals`] for them.
//!
//! Email entries take their defaults from `global.smtp_*` (see
//! [`crate::alertmanager::receivers::email`]); PagerDuty, OpsGenie, VictorOps and
//! Telegram entries theirs from `global.pagerduty_url`, `opsgenie_api_*`,
//! `victorops_api_*` and `telegram_api_url`, Webex and WeChat entries from
//! `global.webex_api_url` and `global.wechat_*` (see their files there).
//!
//! Extension: `pushover_configs[].api_url` (Alertmanager 0.25 always posts to
//! `https://api.pushover.net/1/messages.json`) so tests and proxies can redirect it.

use crate::alertmanager::matcher::{parse_matchers, MatchType, Matcher, Matchers};
pub use crate::alertmanager::receivers::Integration;
use crate::alertmanager::receivers::{email, wechat, RawGlobalApi, RawReceiver};
use crate::alertmanager::route::{GroupBy, Route};
use crate::alertmanager::template::Templates;
use crate::config::rule_files;
use crate::config::{
    is_valid_label_name, load_located, parse_duration, read_config_file, resolve_http_client,
    ConfigError, FieldPath, HttpClientConfig, PathSegment, Problems, RawHttpClientConfig,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------
// As written

#[derive(Debug, Default, Deserialize)]
struct RawFile {
    global: Option<RawGlobal>,
    route: Option<RawRoute>,
    inhibit_rules: Option<Vec<RawInhibitRule>>,
    receivers: Option<Vec<RawReceiver>>,
    templates: Option<Vec<String>>,
}

/// `global` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGlobal {
    pub(crate) resolve_timeout: Option<String>,
    pub(crate) http_config: Option<RawHttpClientConfig>,
    pub(crate) slack_api_url: Option<String>,
    pub(crate) slack_api_url_file: Option<String>,
    pub(crate) smtp_from: Option<String>,
    pub(crate) smtp_hello: Option<String>,
    pub(crate) smtp_smarthost: Option<String>,
    pub(crate) smtp_auth_username: Option<String>,
    pub(crate) smtp_auth_password: Option<String>,
    pub(crate) smtp_auth_password_file: Option<String>,
    pub(crate) smtp_auth_secret: Option<String>,
    pub(crate) smtp_auth_identity: Option<String>,
    pub(crate) smtp_require_tls: Option<bool>,
    pub(crate) pagerduty_url: Option<String>,
    pub(crate) opsgenie_api_url: Option<String>,
    pub(crate) opsgenie_api_key: Option<String>,
    pub(crate) opsgenie_api_key_file: Option<String>,
    pub(crate) victorops_api_url: Option<String>,
    pub(crate) victorops_api_key: Option<String>,
    pub(crate) victorops_api_key_file: Option<String>,
    pub(crate) telegram_api_url: Option<String>,
    pub(crate) webex_api_url: Option<String>,
    pub(crate) wechat_api_url: Option<String>,
    pub(crate) wechat_api_secret: Option<String>,
    pub(crate) wechat_api_corp_id: Option<String>,
}

impl RawGlobal {
    /// The `smtp_*` defaults of email entries.
    pub(crate) fn smtp(&self) -> email::RawGlobalSmtp {
        email::RawGlobalSmtp {
            smtp_from: self.smtp_from.clone(),
            smtp_hello: self.smtp_hello.clone(),
            smtp_smarthost: self.smtp_smarthost.clone(),
            smtp_auth_username: self.smtp_auth_username.clone(),
            smtp_auth_password: self.smtp_auth_password.clone(),
            smtp_auth_password_file: self.smtp_auth_password_file.clone(),
            smtp_auth_secret: self.smtp_auth_secret.clone(),
            smtp_auth_identity: self.smtp_auth_identity.clone(),
            smtp_require_tls: self.smtp_require_tls,
        }
    }

    /// The `wechat_*` defaults of WeChat entries.
    pub(crate) fn wechat(&self) -> wechat::RawGlobalWechat {
        wechat::RawGlobalWechat {
            api_url: self.wechat_api_url.clone(),
            api_secret: self.wechat_api_secret.clone(),
            corp_id: self.wechat_api_corp_id.clone(),
        }
    }

    /// The `opsgenie_api_*` defaults of OpsGenie entries.
    pub(crate) fn opsgenie(&self) -> RawGlobalApi {
        RawGlobalApi {
            api_url: self.opsgenie_api_url.clone(),
            api_key: self.opsgenie_api_key.clone(),
            api_key_file: self.opsgenie_api_key_file.clone(),
        }
    }

    /// The `victorops_api_*` defaults of VictorOps entries.
    pub(crate) fn victorops(&self) -> RawGlobalApi {
        RawGlobalApi {
            api_url: self.victorops_api_url.clone(),
            api_key: self.victorops_api_key.clone(),
            api_key_file: self.victorops_api_key_file.clone(),
        }
    }
}

/// What receiver entries take from `global`: the section as written (empty when
/// absent), its `http_config` and the Slack URL of `slack_api_url` or
/// `slack_api_url_file`, resolved once.
#[derive(Debug)]
pub(crate) struct Globals<'a> {
    /// `global` as written.
    pub(crate) raw: &'a RawGlobal,
    /// `global.http_config`: the `http_config` of entries without their own.
    pub(crate) http_config: HttpClientConfig,
    /// `slack_api_url`, or the content of `slack_api_url_file`.
    pub(crate) slack_api_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRoute {
    receiver: Option<String>,
    group_by: Option<Vec<String>>,
    #[serde(rename = "continue")]
    continue_matching: Option<bool>,
    #[serde(rename = "match")]
    match_equal: Option<BTreeMap<String, String>>,
    match_re: Option<BTreeMap<String, String>>,
    matchers: Option<Vec<String>>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    routes: Option<Vec<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawInhibitRule {
    source_matchers: Option<Vec<String>>,
    target_matchers: Option<Vec<String>>,
    source_match: Option<BTreeMap<String, String>>,
    source_match_re: Option<BTreeMap<String, String>>,
    target_match: Option<BTreeMap<String, String>>,
    target_match_re: Option<BTreeMap<String, String>>,
    equal: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------
// Resolved

/// The loaded notifier configuration.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// `global.resolve_timeout`.
    pub resolve_timeout: Duration,
    /// The routing tree.
    pub route: Route,
    /// `inhibit_rules`.
    pub inhibit_rules: Vec<InhibitRule>,
    /// `receivers`.
    pub receivers: Vec<Receiver>,
    /// `default.tmpl` plus the `templates:` files, parsed.
    pub templates: Templates,
    /// The file as Alertmanager shows it (`crate::alertmanager::config_show`).
    pub original: String,
}

/// One inhibit rule.
#[derive(Clone, Debug)]
pub struct InhibitRule {
    /// Alerts that inhibit.
    pub source: Matchers,
    /// Alerts that can be inhibited.
    pub target: Matchers,
    /// Labels that must be equal in source and target.
    pub equal: Vec<String>,
}

/// A named receiver and its integrations.
#[derive(Clone, Debug)]
pub struct Receiver {
    /// `name`.
    pub name: String,
    /// Its integrations: by kind in the order of Alertmanager's `Receiver` struct
    /// (the `receivers!` list), then as listed.
    pub integrations: Vec<Integration>,
}

/// Alertmanager 0.25 fields that promflow does not support yet, by parent section.
const UNSUPPORTED_FIELDS: &[(&str, &[&str])] = &[
    ("", &["mute_time_intervals", "time_intervals"]),
    ("route", &["mute_time_intervals", "active_time_intervals"]),
    ("receivers", &[]),
    ("slack_configs", &["actions"]),
    ("sns_configs", &["http_config"]),
    // A receiver's `http_config`: the fields promflow's own config lacks too.
    ("inhibit_rules", &[]),
];

fn unknown_field_message(path: &FieldPath) -> String {
    let Some((PathSegment::Key(field), parent)) = path.segments().split_last() else {
        return "unknown field".to_string();
    };
    let section = parent
        .iter()
        .rev()
        .find_map(|s| match s {
            PathSegment::Key(k) if k != "routes" => Some(k.as_str()),
            _ => None,
        })
        .unwrap_or("");
    let supported_elsewhere = UNSUPPORTED_FIELDS
        .iter()
        .any(|(s, fields)| *s == section && fields.contains(&field.as_str()));
    if supported_elsewhere {
        format!("field {field} is not supported by promflow yet")
    } else {
        format!("unknown field {field}")
    }
}

impl NotifyConfig {
    /// Reads and validates an Alertmanager config file; `templates:` paths are
    /// relative to its directory.
    pub fn load_file(path: &Path) -> Result<NotifyConfig, ConfigError> {
        let (text, file_name, base) = read_config_file(path, "Alertmanager config file")?;
        NotifyConfig::load_str(&text, &file_name, base)
    }

    /// Validates config text; `file_name` labels problems.
    pub fn load_str(text: &str, file_name: &str, base: &Path) -> Result<NotifyConfig, ConfigError> {
        let mut config = load_located(
            text,
            file_name,
            unknown_field_message,
            |raw: &RawFile, p| resolve(raw, base, p),
        )?;
        config.original = crate::alertmanager::config_show::show(text);
        Ok(config)
    }
}

pub(crate) fn duration(
    text: &Option<String>,
    default: Duration,
    path: FieldPath,
    p: &mut Problems,
) -> Duration {
    match text {
        None => default,
        Some(t) => parse_duration(t).unwrap_or_else(|e| {
            p.push(path, e.to_string());
            default
        }),
    }
}

pub(crate) fn template_or(value: &Option<String>, default: &str) -> String {
    value.clone().unwrap_or_else(|| default.to_string())
}

fn resolve(raw: &RawFile, base: &Path, p: &mut Problems) -> NotifyConfig {
    let root = FieldPath::root();
    let global = raw.global.as_ref();
    let gpath = root.key("global");
    let resolve_timeout = duration(
        &global.and_then(|g| g.resolve_timeout.clone()),
        Duration::from_secs(300),
        gpath.key("resolve_timeout"),
        p,
    );
    let global_slack_url = match global {
        Some(RawGlobal {
            slack_api_url: Some(u),
            ..
        }) => Some(u.clone()),
        Some(RawGlobal {
            slack_api_url_file: Some(f),
            ..
        }) => match std::fs::read_to_string(base.join(f)) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                p.push(
                    gpath.key("slack_api_url_file"),
                    format!("cannot read {f}: {e}"),
                );
                None
            }
        },
        _ => None,
    };

    if let Some(g) = global {
        for (field, url) in [
            ("pagerduty_url", &g.pagerduty_url),
            ("opsgenie_api_url", &g.opsgenie_api_url),
            ("victorops_api_url", &g.victorops_api_url),
            ("telegram_api_url", &g.telegram_api_url),
            ("webex_api_url", &g.webex_api_url),
            ("wechat_api_url", &g.wechat_api_url),
        ] {
            if let Some(Err(e)) = url.as_deref().map(check_http_url) {
                p.push(gpath.key(field), e.to_string());
            }
        }
        for (kind, key, file) in [
            ("opsgenie", &g.opsgenie_api_key, &g.opsgenie_api_key_file),
            ("victorops", &g.victorops_api_key, &g.victorops_api_key_file),
        ] {
            if key.as_deref().is_some_and(|k| !k.is_empty())
                && file.as_deref().is_some_and(|f| !f.is_empty())
            {
                p.push(
                    gpath.key(&format!("{kind}_api_key")),
                    format!(
                        "at most one of {kind}_api_key & {kind}_api_key_file must be configured"
                    ),
                );
            }
        }
    }
    let no_global = RawGlobal::default();
    let globals = Globals {
        raw: global.unwrap_or(&no_global),
        http_config: match global.and_then(|g| g.http_config.as_ref()) {
            Some(h) => resolve_http_client(h, base, &gpath.key("http_config"), p),
            None => HttpClientConfig::default(),
        },
        slack_api_url: global_slack_url,
    };
    let mut receivers = Vec::new();
    let mut names = BTreeSet::new();
    let rpath = root.key("receivers");
    for (i, r) in raw.receivers.iter().flatten().enumerate() {
        let path = rpath.index(i);
        let Some(name) = r.name.clone().filter(|n| !n.is_empty()) else {
            p.push(path.key("name"), "missing name in receiver");
            continue;
        };
        if !names.insert(name.clone()) {
            p.push(
                path.key("name"),
                format!("notification config name {name:?} is not unique"),
            );
        }
        let integrations = r.integrations(&globals, base, &path, p);
        receivers.push(Receiver { name, integrations });
    }

    let route_path = root.key("route");
    let mut route = match &raw.route {
        None => {
            p.push(route_path.clone(), "no route provided in config");
            default_route()
        }
        Some(r) => {
            if r.receiver.as_deref().unwrap_or("").is_empty() {
                p.push(
                    route_path.key("receiver"),
                    "root route must specify a default receiver",
                );
            }
            if r.matchers.as_ref().is_some_and(|m| !m.is_empty())
                || r.match_equal.as_ref().is_some_and(|m| !m.is_empty())
                || r.match_re.as_ref().is_some_and(|m| !m.is_empty())
            {
                p.push(route_path.clone(), "root route must not have any matchers");
            }
            resolve_route(r, &default_route(), &route_path, p)
        }
    };
    route.assign_keys(None);
    let mut all = Vec::new();
    route.walk(&mut all);
    for r in all {
        if !names.contains(&r.receiver) && !r.receiver.is_empty() {
            p.push(
                route_path.clone(),
                format!("undefined receiver {:?} used in route", r.receiver),
            );
        }
    }

    let mut inhibit_rules = Vec::new();
    for (i, r) in raw.inhibit_rules.iter().flatten().enumerate() {
        let path = root.key("inhibit_rules").index(i);
        let source = matchers_of(
            &r.source_matchers,
            &r.source_match,
            &r.source_match_re,
            &path,
            ["source_matchers", "source_match", "source_match_re"],
            p,
        );
        let target = matchers_of(
            &r.target_matchers,
            &r.target_match,
            &r.target_match_re,
            &path,
            ["target_matchers", "target_match", "target_match_re"],
            p,
        );
        let equal = r.equal.clone().unwrap_or_default();
        for name in &equal {
            if !is_valid_label_name(name) {
                p.push(path.key("equal"), format!("invalid label name {name:?}"));
            }
        }
        inhibit_rules.push(InhibitRule {
            source,
            target,
            equal,
        });
    }

    let mut template_files = Vec::new();
    for (i, pattern) in raw.templates.iter().flatten().enumerate() {
        let tpath = root.key("templates").index(i);
        let full = rule_files::pattern_path(pattern, base);
        match rule_files::check_pattern(pattern).and_then(|()| rule_files::expand(&full)) {
            Ok(files) => template_files.extend(files),
            Err(e) => p.push(tpath, e.to_string()),
        }
    }
    let templates = match Templates::load(&template_files) {
        Ok(t) => t,
        Err(e) => {
            p.push(root.key("templates"), e.to_string());
            Templates::default_only()
        }
    };

    NotifyConfig {
        resolve_timeout,
        route,
        inhibit_rules,
        receivers,
        templates,
        original: String::new(),
    }
}

fn default_route() -> Route {
    Route {
        receiver: String::new(),
        group_by: GroupBy::Labels(BTreeSet::new()),
        matchers: Matchers::default(),
        continue_matching: false,
        group_wait: Duration::from_secs(30),
        group_interval: Duration::from_secs(300),
        repeat_interval: Duration::from_secs(4 * 3600),
        routes: Vec::new(),
        key: String::new(),
    }
}

fn resolve_route(r: &RawRoute, parent: &Route, path: &FieldPath, p: &mut Problems) -> Route {
    let group_by = match &r.group_by {
        None => parent.group_by.clone(),
        Some(list) => {
            if list.iter().any(|l| l == "...") {
                if list.len() > 1 {
                    p.push(
                        path.key("group_by"),
                        "cannot have wildcard group_by (`...`) and other labels at the same time",
                    );
                }
                GroupBy::All
            } else {
                let mut set = BTreeSet::new();
                for name in list {
                    if !is_valid_label_name(name) {
                        p.push(
                            path.key("group_by"),
                            format!("invalid label name {name:?} in group_by list"),
                        );
                    } else if !set.insert(name.clone()) {
                        p.push(
                            path.key("group_by"),
                            format!("duplicated label {name:?} in group_by"),
                        );
                    }
                }
                GroupBy::Labels(set)
            }
        }
    };
    let group_interval = duration(
        &r.group_interval,
        parent.group_interval,
        path.key("group_interval"),
        p,
    );
    if group_interval.is_zero() {
        p.push(path.key("group_interval"), "group_interval cannot be zero");
    }
    let repeat_interval = duration(
        &r.repeat_interval,
        parent.repeat_interval,
        path.key("repeat_interval"),
        p,
    );
    if repeat_interval.is_zero() {
        p.push(
            path.key("repeat_interval"),
            "repeat_interval cannot be zero",
        );
    }
    let mut node = Route {
        receiver: r
            .receiver
            .clone()
            .unwrap_or_else(|| parent.receiver.clone()),
        group_by,
        matchers: matchers_of(
            &r.matchers,
            &r.match_equal,
            &r.match_re,
            path,
            ["matchers", "match", "match_re"],
            p,
        ),
        continue_matching: r.continue_matching.unwrap_or(false),
        group_wait: duration(&r.group_wait, parent.group_wait, path.key("group_wait"), p),
        group_interval,
        repeat_interval,
        routes: Vec::new(),
        key: String::new(),
    };
    let children: Vec<Route> = r
        .routes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| resolve_route(c, &node, &path.key("routes").index(i), p))
        .collect();
    node.routes = children;
    node
}

/// `matchers` plus the legacy `match` / `match_re` maps, sorted.
fn matchers_of(
    matchers: &Option<Vec<String>>,
    equal: &Option<BTreeMap<String, String>>,
    regex: &Option<BTreeMap<String, String>>,
    path: &FieldPath,
    fields: [&str; 3],
    p: &mut Problems,
) -> Matchers {
    let mut out: Vec<Matcher> = Vec::new();
    for (i, text) in matchers.iter().flatten().enumerate() {
        match parse_matchers(text) {
            Ok(ms) => out.extend(ms),
            Err(e) => p.push(path.key(fields[0]).index(i), e.to_string()),
        }
    }
    for (map, field, kind) in [
        (equal, fields[1], MatchType::Equal),
        (regex, fields[2], MatchType::Regexp),
    ] {
        for (name, value) in map.iter().flatten() {
            if !is_valid_label_name(name) {
                p.push(
                    path.key(field).key(name),
                    format!("invalid label name {name:?}"),
                );
                continue;
            }
            match Matcher::new(name, kind, value) {
                Ok(m) => out.push(m),
                Err(e) => p.push(path.key(field).key(name), e.to_string()),
            }
        }
    }
    Matchers::sorted(out)
}

/// Receivers are reached over `http://` or `https://` (verified against the system's
/// CA roots, or `http_config.tls_config`).
pub(crate) fn check_http_url(url: &str) -> Result<(), UrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| UrlError::Invalid {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(UrlError::Scheme(other.to_string())),
    }
}

/// Why a receiver's URL is refused (reported at the field in the config's problems).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    /// It does not parse.
    #[error("invalid URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
    /// Neither `http` nor `https`.
    #[error("unsupported scheme {0:?} for URL")]
    Scheme(String),
}

/// A receiver's base URL: the entry's (`entry`, reported at `path` when bad), else
/// the global one, else `default`; its path made to end in `/` as Alertmanager does
/// for OpsGenie, VictorOps and WeChat.
pub(crate) fn base_url(
    entry: &Option<String>,
    global: &Option<String>,
    default: &str,
    path: &FieldPath,
    p: &mut Problems,
) -> reqwest::Url {
    let text = entry
        .as_ref()
        .or(global.as_ref())
        .map_or(default, |s| s.as_str());
    let parsed = check_http_url(text)
        .map_err(|e| e.to_string())
        .and_then(|()| reqwest::Url::parse(text).map_err(|e| e.to_string()));
    let mut url = match parsed {
        Ok(u) => u,
        Err(e) => {
            if entry.is_some() {
                p.push(path.clone(), e);
            }
            reqwest::Url::parse(default).expect("default URL")
        }
    };
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url
}

/// The `http_config` of a receiver entry at `path`, else `global.http_config`
/// (Alertmanager takes the global one whole when an entry has none).
pub(crate) fn receiver_http_config(
    http_config: &Option<RawHttpClientConfig>,
    global: &Globals,
    base: &Path,
    path: &FieldPath,
    p: &mut Problems,
) -> HttpClientConfig {
    match http_config {
        Some(h) => resolve_http_client(h, base, &path.key("http_config"), p),
        None => global.http_config.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<NotifyConfig, ConfigError> {
        NotifyConfig::load_str(text, "am.yml", Path::new("."))
    }

    #[test]
    fn inherits_route_settings_and_applies_defaults() {
        let c = load(
            "global:\n  slack_api_url: http://127.0.0.1:1/s\nroute:\n  receiver: a\n  group_by: [alertname]\n  group_wait: 10s\n  routes:\n    - matchers: ['severity=\"page\"']\n      receiver: b\n      repeat_interval: 1h\nreceivers:\n  - name: a\n    slack_configs:\n      - channel: '#x'\n  - name: b\n    webhook_configs:\n      - url: http://127.0.0.1:1/h\n",
        )
        .unwrap();
        let child = &c.route.routes[0];
        assert_eq!(child.group_wait, Duration::from_secs(10));
        assert_eq!(child.group_interval, Duration::from_secs(300));
        assert_eq!(child.repeat_interval, Duration::from_secs(3600));
        assert_eq!(child.key, "{}/{severity=\"page\"}");
        assert_eq!(c.resolve_timeout, Duration::from_secs(300));
        let Integration::Slack(s) = &c.receivers[0].integrations[0] else {
            panic!()
        };
        assert_eq!(s.api_url.expose(), "http://127.0.0.1:1/s");
        assert!(!s.send_resolved);
    }

    #[test]
    fn every_problem_is_located() {
        let err = load(
            "route:\n  receiver: nope\n  group_wait: 1x\n  colour: red\nreceivers:\n  - name: a\n    opsgenie_configs: [{}]\n    pushover_configs:\n      - token: t\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("am.yml:3: route.group_wait: not a valid duration string"),
            "{text}"
        );
        assert!(
            text.contains("am.yml:4: route.colour: unknown field colour"),
            "{text}"
        );
        assert!(
            text.contains("am.yml:7: receivers[0].opsgenie_configs[0]: no global OpsGenie API Key set either inline or in a file"),
            "{text}"
        );
        assert!(
            text.contains("missing user key in Pushover config"),
            "{text}"
        );
        assert!(
            text.contains("undefined receiver \"nope\" used in route"),
            "{text}"
        );
        assert!(
            !text.contains("api_url"),
            "the default Pushover API is https, reached with the system's roots: {text}"
        );
    }

    #[test]
    fn http_config_problems_are_located() {
        // As promflow words them for its own sections (Alertmanager 0.25 stops at the
        // first, in yaml.v2's words).
        let text = load("route: {receiver: r}\nreceivers:\n- name: r\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n    http_config: {foo: 1, basic_auth: {usernam: u}, bearer_token: a, bearer_token_file: b}\n").unwrap_err().to_string();
        for problem in [
            "am.yml:6: receivers[0].webhook_configs[0].http_config.foo: unknown field foo",
            "am.yml:6: receivers[0].webhook_configs[0].http_config.basic_auth.usernam: unknown field usernam",
            "am.yml:6: receivers[0].webhook_configs[0].http_config: at most one of bearer_token & bearer_token_file must be configured",
        ] {
            assert!(text.contains(problem), "{problem}\nnot in\n{text}");
        }
        let text = load("route: {receiver: r}\nreceivers:\n- name: r\n  slack_configs:\n  - api_url: http://127.0.0.1:1/\n    channel: c\n    http_config: 5\n").unwrap_err().to_string();
        assert!(
            text.contains("am.yml:7: receivers[0].slack_configs[0].http_config: invalid type: integer `5`, expected struct HttpConfig"),
            "{text}"
        );
    }

    #[test]
    fn receivers_take_an_http_config() {
        let c = load(
            "route:\n  receiver: a\nreceivers:\n  - name: a\n    webhook_configs:\n      - url: https://hooks.internal/x\n        http_config:\n          tls_config:\n            server_name: hooks\n            insecure_skip_verify: true\n",
        )
        .unwrap();
        let tls = &c.receivers[0].integrations[0]
            .http_config()
            .unwrap()
            .tls_config;
        assert_eq!(tls.server_name.as_deref(), Some("hooks"));
        assert!(tls.insecure_skip_verify);

        let text = load(
            "route:\n  receiver: a\nreceivers:\n  - name: a\n    slack_configs:\n      - api_url: https://slack.internal/x\n        http_config:\n          proxy_url: ftp://proxy:3128\n          tls_config:\n            ca_file: /nonexistent/ca.pem\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("am.yml:8: receivers[0].slack_configs[0].http_config.proxy_url: proxy_url scheme \"ftp\" is not supported by promflow (http and https proxies only)"),
            "{text}"
        );
        assert!(
            text.contains("am.yml:10: receivers[0].slack_configs[0].http_config.tls_config.ca_file: unable to load specified CA cert /nonexistent/ca.pem: "),
            "{text}"
        );
    }

    #[test]
    fn unknown_receiver_fields_are_reported() {
        let text = load(
            "route:\n  receiver: a\nreceivers:\n  - name: a\n    pigeon_configs: [{}]\n    webhook_configs:\n      - url: http://127.0.0.1:1/h\n        colour: red\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("am.yml:5: receivers[0].pigeon_configs: unknown field pigeon_configs"),
            "{text}"
        );
        assert!(
            text.contains("am.yml:8: receivers[0].webhook_configs[0].colour: unknown field colour"),
            "{text}"
        );
    }
}
