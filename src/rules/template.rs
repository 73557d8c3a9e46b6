//! Alert templates: Go `text/template` for rule annotations and labels, with the
//! functions Prometheus 2.42 adds (`template/template.go`).
//!
//! Owns: parsing/expanding one template text with the data Prometheus gives it
//! (`$labels`, `$value`, `$externalLabels`, `$externalURL`, also `.Labels` …) and the
//! function map (`humanize*`, `printf` (built in), `toUpper`, `toLower`, `title`,
//! `reReplaceAll`, `match`, `safeHtml`, `args`, `first`, `label`, `value`,
//! `strvalue`, `sortByLabel`, `graphLink`, `tableLink`, `query`, `pathPrefix`,
//! `externalURL`, `toTime` (printed as Go's `time.Time`; its methods are not
//! available), `parseDuration`, `stripPort`, `stripDomain`). Numbers are formatted like Go's `%.4g` so results match promtool.
//!
//! The Go-template engine is the `gotmpl` crate: a maintained, dependency-free
//! reimplementation of Go's `text/template` (parser, pipelines, variables,
//! `range`/`with`/`define`, Go's builtins incl. `printf`). `gtmpl`, the other
//! candidate, has had no release since 2021 and lacks several builtins.
//!
//! Contract: [`expand`] never panics; an expansion error is returned as `Err` and the
//! caller renders it as Prometheus does (`<error expanding template: …>`).
//! A missing label (`{{ $labels.nope }}`) renders "" as in Prometheus (Go's
//! `missingkey=zero` on a `map[string]string`; checked with promtool). gotmpl's maps
//! are untyped and print a missing key as `<no value>`, so [`expand`] removes that
//! text from the output unless the template or its data contain it literally.
//! gotmpl prints floats as Rust does; [`print_like_go`] pipes every printing action
//! through `__goPrint` so `{{ $value }}` prints as Go's `%v` (`1.5e+10`, `+Inf`).
//! Known difference: a missing label piped into a function (`{{ $labels.nope |
//! printf "%q" }}`) is nil there, where Go passes "".

use dataflows::go_float::{format_g, format_g_precision};
use dataflows::Labels;
use gotmpl::{Template, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Runs a PromQL instant query for the `query` template function: labels and value
/// of each element of the result.
pub type QueryFn = Arc<dyn Fn(&str) -> Result<Vec<(Labels, f64)>, QueryError> + Send + Sync>;

/// Why the `query` template function failed; the template's error shows its text.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse.
    #[error(transparent)]
    Parse(#[from] dataflows::promql::plan::PlanError),
    /// Its evaluation failed.
    #[error(transparent)]
    Eval(#[from] crate::rules::sinks::RuleError),
}

/// The data one alert's templates see.
#[derive(Clone)]
pub struct TemplateData {
    /// The alert's labels (the rule's output element, before rule labels are added).
    pub labels: BTreeMap<String, String>,
    /// `global.external_labels`.
    pub external_labels: BTreeMap<String, String>,
    /// `--web.external-url`.
    pub external_url: String,
    /// The element's value.
    pub value: f64,
}

/// The variables Prometheus defines before every alert template.
const PREAMBLE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// An alert template that does not parse or fails to expand, as Prometheus words it.
#[derive(Debug, thiserror::Error)]
#[error("template: {name}: {source}")]
pub struct TemplateError {
    /// The template's name (`__alert_<rule>`).
    pub name: String,
    /// The engine's error.
    pub source: gotmpl::TemplateError,
}

/// Checks that `text` parses as an alert template (what `promtool check rules` does).
pub fn check(name: &str, text: &str) -> Result<(), TemplateError> {
    build(name, None, "")
        .parse(&format!("{PREAMBLE}{}", print_like_go(text)))
        .map(|_| ())
        .map_err(|source| TemplateError {
            name: name.to_string(),
            source,
        })
}

/// Expands `text` for one alert. `name` labels errors (Prometheus uses `__alert_<rule>`).
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData,
    query: Option<QueryFn>,
) -> Result<String, TemplateError> {
    let failed = |source| TemplateError {
        name: name.to_string(),
        source,
    };
    let template = build(name, query, &data.external_url)
        .parse(&format!("{PREAMBLE}{}", print_like_go(text)))
        .map_err(failed)?;
    let root = Value::Map(Arc::new(BTreeMap::from([
        (Arc::from("Labels"), string_map(&data.labels)),
        (
            Arc::from("ExternalLabels"),
            string_map(&data.external_labels),
        ),
        (
            Arc::from("ExternalURL"),
            Value::String(Arc::from(data.external_url.as_str())),
        ),
        (Arc::from("Value"), Value::Float(data.value)),
    ])));
    let out = template.execute_to_string(&root).map_err(failed)?;
    // gotmpl prints a missing map key as Go's untyped nil; Prometheus's maps are
    // `map[string]string`, whose missing keys are "" (see the module doc).
    let literal = text.contains(NO_VALUE)
        || data.labels.values().any(|v| v.contains(NO_VALUE))
        || data.external_labels.values().any(|v| v.contains(NO_VALUE))
        || data.external_url.contains(NO_VALUE);
    Ok(if literal {
        out
    } else {
        out.replace(NO_VALUE, "")
    })
}

/// Go keywords that open or close actions printing nothing themselves.
const CONTROL_WORDS: [&str; 10] = [
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// Pipes the output of every printing action of `src` through `__goPrint`, so a
/// float prints as Go's `%v` does (`1.5e+10`, `+Inf`, where gotmpl prints
/// `15000000000`, `inf`): `{{ $value }}` → `{{ $value | __goPrint }}`. Control
/// actions, comments and variable declarations/assignments (which print nothing)
/// are left as they are; quoted text inside actions is skipped while scanning.
pub fn print_like_go(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 16);
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open + 2]);
        rest = &rest[open + 2..];
        let Some(close) = action_end(rest) else {
            out.push_str(rest);
            return out;
        };
        let body = &rest[..close];
        let (inner, right_trim) = match body.strip_suffix(" -") {
            Some(inner) => (inner, " -"),
            None => (body, ""),
        };
        let words = inner.trim_start_matches('-').trim_start();
        let first = words
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        let prints = !words.starts_with("/*")
            && !CONTROL_WORDS.contains(&first)
            && !words.is_empty()
            && !assigns(words);
        let content = inner.trim_end();
        out.push_str(content);
        if prints {
            out.push_str(" | __goPrint");
        }
        out.push_str(&inner[content.len()..]);
        out.push_str(right_trim);
        out.push_str("}}");
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Where the action starting at `s` (just after `{{`) ends: the index of its `}}`,
/// quoted text and comments skipped.
fn action_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => i = quoted_end(bytes, i),
            b'/' if s[i..].starts_with("/*") => {
                i += s[i..].find("*/")? + 2;
            }
            b'}' if s[i..].starts_with("}}") => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Whether an action declares or assigns a variable (`$x := …`, `$x = …`, also
/// `range $i, $v := …` is caught by its keyword first): an `=` outside quotes.
fn assigns(action: &str) -> bool {
    let bytes = action.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => i = quoted_end(bytes, i),
            b'=' => return true,
            _ => i += 1,
        }
    }
    false
}

/// The index just after the quoted text (Go string, raw string or char) opening at
/// `start`; backslash escapes are skipped except in raw strings.
fn quoted_end(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote {
        if bytes[i] == b'\\' && quote != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// What gotmpl prints for nil.
const NO_VALUE: &str = "<no value>";

pub(crate) fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Map(Arc::new(
        map.iter()
            .map(|(k, v)| (Arc::from(k.as_str()), Value::String(Arc::from(v.as_str()))))
            .collect(),
    ))
}

pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::String(Arc::from(s.into().as_str()))
}

pub(crate) fn err(message: impl Into<String>) -> gotmpl::TemplateError {
    gotmpl::TemplateError::Exec(message.into())
}

/// Converts a template argument to a number like Prometheus's `convertToFloat`.
fn to_float(v: &Value) -> gotmpl::Result<f64> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Uint(u) => Ok(*u as f64),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
        other => Err(err(format!("can't convert {} to float", other.type_name()))),
    }
}

pub(crate) fn arg(args: &[Value], i: usize, f: &str) -> gotmpl::Result<Value> {
    args.get(i)
        .cloned()
        .ok_or_else(|| err(format!("wrong number of args for {f}")))
}

pub(crate) fn arg_str(args: &[Value], i: usize, f: &str) -> gotmpl::Result<String> {
    Ok(arg(args, i, f)?.to_string())
}

/// A query result sample as templates see it: `.Labels` and `.Value`.
fn sample_value(labels: &Labels, value: f64) -> Value {
    let map: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Value::Map(Arc::new(BTreeMap::from([
        (Arc::from("Labels"), string_map(&map)),
        (Arc::from("Value"), Value::Float(value)),
    ])))
}

/// A template that functions can be added to: Go's `text/template` and, for
/// Alertmanager's HTML email bodies, `html/template`.
pub(crate) trait FuncHost: Sized {
    /// Adds function `name`.
    fn func(
        self,
        name: &str,
        f: impl Fn(&[Value]) -> Result<Value, gotmpl::TemplateError> + Send + Sync + 'static,
    ) -> Self;
}

impl FuncHost for Template {
    fn func(
        self,
        name: &str,
        f: impl Fn(&[Value]) -> Result<Value, gotmpl::TemplateError> + Send + Sync + 'static,
    ) -> Self {
        Template::func(self, name, f)
    }
}

impl FuncHost for gotmpl::html::Template {
    fn func(
        self,
        name: &str,
        f: impl Fn(&[Value]) -> Result<Value, gotmpl::TemplateError> + Send + Sync + 'static,
    ) -> Self {
        gotmpl::html::Template::func(self, name, f)
    }
}

/// Adds the string functions Prometheus and Alertmanager templates share:
/// `reReplaceAll`, `match`, `safeHtml`, `toUpper`, `toLower`, `title`.
pub(crate) fn with_text_funcs<T: FuncHost>(template: T) -> T {
    template
        .func("reReplaceAll", |args| {
            let pattern = arg_str(args, 0, "reReplaceAll")?;
            let replacement = arg_str(args, 1, "reReplaceAll")?;
            let input = arg_str(args, 2, "reReplaceAll")?;
            let re = regex::Regex::new(&pattern).map_err(|e| err(e.to_string()))?;
            Ok(text(
                re.replace_all(&input, go_replacement(&replacement).as_str())
                    .into_owned(),
            ))
        })
        .func("match", |args| {
            let pattern = arg_str(args, 0, "match")?;
            let input = arg_str(args, 1, "match")?;
            let re = regex::Regex::new(&pattern).map_err(|e| err(e.to_string()))?;
            Ok(Value::Bool(re.is_match(&input)))
        })
        .func("safeHtml", |args| Ok(text(arg_str(args, 0, "safeHtml")?)))
        .func("toUpper", |args| {
            Ok(text(arg_str(args, 0, "toUpper")?.to_uppercase()))
        })
        .func("toLower", |args| {
            Ok(text(arg_str(args, 0, "toLower")?.to_lowercase()))
        })
        .func("title", |args| Ok(text(title(&arg_str(args, 0, "title")?))))
}

fn build(name: &str, query: Option<QueryFn>, external_url: &str) -> Template {
    let prefix = external_url_path(external_url);
    let url = external_url.to_string();
    with_text_funcs(Template::new(name))
        .missing_key(gotmpl::MissingKey::ZeroValue)
        .func("query", move |args| {
            let q = arg_str(args, 0, "query")?;
            let Some(query) = &query else {
                return Err(err("query is not available here"));
            };
            let result = query(&q).map_err(|e| err(e.to_string()))?;
            Ok(Value::List(
                result
                    .iter()
                    .map(|(l, v)| sample_value(l, *v))
                    .collect::<Vec<_>>()
                    .into(),
            ))
        })
        .func("first", |args| match arg(args, 0, "first")? {
            Value::List(items) => items
                .first()
                .cloned()
                .ok_or_else(|| err("first() called on vector with no elements")),
            other => Err(err(format!("first: not a list: {}", other.type_name()))),
        })
        .func("label", |args| {
            let name = arg_str(args, 0, "label")?;
            let sample = arg(args, 1, "label")?;
            Ok(sample
                .field("Labels")
                .and_then(|l| l.field(&name))
                .cloned()
                .unwrap_or_else(|| text("")))
        })
        .func("value", |args| {
            Ok(arg(args, 0, "value")?
                .field("Value")
                .cloned()
                .unwrap_or(Value::Float(0.0)))
        })
        .func("strvalue", |args| {
            Ok(arg(args, 0, "strvalue")?
                .field("Labels")
                .and_then(|l| l.field("__value__"))
                .cloned()
                .unwrap_or_else(|| text("")))
        })
        .func("sortByLabel", |args| {
            let name = arg_str(args, 0, "sortByLabel")?;
            match arg(args, 1, "sortByLabel")? {
                Value::List(items) => {
                    let mut items: Vec<Value> = items.to_vec();
                    let key = |v: &Value| {
                        v.field("Labels")
                            .and_then(|l| l.field(&name))
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    };
                    items.sort_by_key(key);
                    Ok(Value::List(items.into()))
                }
                other => Err(err(format!(
                    "sortByLabel: not a list: {}",
                    other.type_name()
                ))),
            }
        })
        .func("args", |args| {
            let map: BTreeMap<Arc<str>, Value> = args
                .iter()
                .enumerate()
                .map(|(i, v)| (Arc::from(format!("arg{i}").as_str()), v.clone()))
                .collect();
            Ok(Value::Map(Arc::new(map)))
        })
        .func("humanize", |args| {
            Ok(text(humanize(to_float(&arg(args, 0, "humanize")?)?)))
        })
        .func("humanize1024", |args| {
            Ok(text(humanize1024(to_float(&arg(
                args,
                0,
                "humanize1024",
            )?)?)))
        })
        .func("humanizeDuration", |args| {
            Ok(text(humanize_duration(to_float(&arg(
                args,
                0,
                "humanizeDuration",
            )?)?)))
        })
        .func("humanizePercentage", |args| {
            let v = to_float(&arg(args, 0, "humanizePercentage")?)?;
            Ok(text(format!("{}%", go_g4(v * 100.0))))
        })
        .func("humanizeTimestamp", |args| {
            let v = to_float(&arg(args, 0, "humanizeTimestamp")?)?;
            if !v.is_finite() {
                return Ok(text(go_g4(v)));
            }
            float_to_time(v).map(text).map_err(|e| err(e.to_string()))
        })
        .func("__goPrint", |args| match arg(args, 0, "__goPrint")? {
            Value::Float(f) => Ok(text(format_g(f))),
            other => Ok(other),
        })
        .func("toTime", |args| {
            let v = to_float(&arg(args, 0, "toTime")?)?;
            float_to_time(v).map(text).map_err(|e| err(e.to_string()))
        })
        .func("parseDuration", |args| {
            let d = arg_str(args, 0, "parseDuration")?;
            crate::config::parse_duration(&d)
                .map(|d| Value::Float(d.as_secs_f64()))
                .map_err(|e| err(e.to_string()))
        })
        .func("stripPort", |args| {
            let host_port = arg_str(args, 0, "stripPort")?;
            Ok(text(match split_host_port(&host_port) {
                Some((host, _)) => host.to_string(),
                None => host_port,
            }))
        })
        .func("stripDomain", |args| {
            Ok(text(strip_domain(&arg_str(args, 0, "stripDomain")?)))
        })
        .func("graphLink", |args| {
            Ok(text(graph_link(&arg_str(args, 0, "graphLink")?, 0)))
        })
        .func("tableLink", |args| {
            Ok(text(graph_link(&arg_str(args, 0, "tableLink")?, 1)))
        })
        .func("pathPrefix", move |_| Ok(text(prefix.clone())))
        .func("externalURL", move |_| Ok(text(url.clone())))
}

/// The path of the external URL (Prometheus's `pathPrefix`).
fn external_url_path(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

/// Go's `$1`/`${name}` expansion differs from the regex crate's only in that `$1x`
/// means the group named `1x`; both crates agree on the common forms.
fn go_replacement(replacement: &str) -> String {
    replacement.to_string()
}

/// `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_letter = false;
    for c in s.chars() {
        let is_word = c.is_alphanumeric() || c == '_' || c == '\'';
        if is_word && !previous_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        previous_letter = is_word;
    }
    out
}

/// `/graph?g0.expr=…&g0.tab=N`, as Prometheus's `strutil.GraphLinkForExpression`.
pub fn graph_link(expr: &str, tab: u8) -> String {
    format!("/graph?g0.expr={}&g0.tab={tab}", query_escape(expr))
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `fmt.Sprintf("%.4g", v)`.
pub fn go_g4(v: f64) -> String {
    format_g_precision(v, 4)
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g4(v))
}

/// Prometheus's `humanize1024`: binary prefixes for values of at least 1.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g4(v))
}

/// Prometheus's `humanizeDuration` (seconds in, `1d 2h 3m 4s` out).
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g4(v);
    }
    if v == 0.0 {
        return format!("{}s", go_g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g4(v))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g4(v))
}

/// Why seconds are no time, in Prometheus's words (`floatToTime`).
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    /// NaN or ±Inf.
    #[error("value is NaN or Inf")]
    NotFinite,
    /// Beyond int64 nanoseconds.
    #[error("{} cannot be represented as a nanoseconds timestamp since it overflows int64", format_g(*.0))]
    Overflow(f64),
    /// Beyond what a date can hold.
    #[error("{} is out of range", format_g(*.0))]
    OutOfRange(f64),
}

/// Prometheus's `floatToTime` as `toTime` and `humanizeTimestamp` print it: seconds
/// to Go's `time.Time.String()` in UTC, truncated (toward zero) to milliseconds like
/// `model.TimeFromUnixNano`; NaN, ±Inf and times beyond int64 nanoseconds are errors
/// with Prometheus's messages.
pub fn float_to_time(v: f64) -> Result<String, TimeError> {
    if !v.is_finite() {
        return Err(TimeError::NotFinite);
    }
    let nanos = v * 1e9;
    if nanos > i64::MAX as f64 || nanos < i64::MIN as f64 {
        return Err(TimeError::Overflow(v));
    }
    let ms = (nanos as i64) / 1_000_000;
    let secs = ms.div_euclid(1000);
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
    let t = chrono::DateTime::from_timestamp(secs, nanos).ok_or(TimeError::OutOfRange(v))?;
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if nanos > 0 {
        out.push('.');
        out.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    Ok(out)
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; `None` where Go errs
/// (no port, too many colons, misplaced brackets).
fn split_host_port(host_port: &str) -> Option<(&str, &str)> {
    let colon = host_port.rfind(':')?;
    let (host, brackets_from) = if let Some(inner) = host_port.strip_prefix('[') {
        let end = inner.find(']')? + 1;
        if end + 1 != colon {
            return None;
        }
        (&host_port[1..end], end + 1)
    } else {
        let host = &host_port[..colon];
        if host.contains(':') {
            return None;
        }
        (host, 0)
    };
    let start = usize::from(host_port.starts_with('['));
    if host_port[start..].contains('[') || host_port[brackets_from..].contains(']') {
        return None;
    }
    Some((host, &host_port[colon + 1..]))
}

/// Prometheus's `stripDomain`: the first label of a host name, the port kept; IP
/// addresses are returned unchanged.
fn strip_domain(host_port: &str) -> String {
    let (host, port) = split_host_port(host_port).unwrap_or((host_port, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host_port.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    match (port.is_empty(), host.contains(':')) {
        (true, _) => host.to_string(),
        (false, true) => format!("[{host}]:{port}"),
        (false, false) => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(labels: &[(&str, &str)], value: f64) -> TemplateData {
        TemplateData {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            external_labels: BTreeMap::from([("dc".to_string(), "eu1".to_string())]),
            external_url: "http://prom.example:9090/prefix".into(),
            value,
        }
    }

    fn run(text: &str, value: f64) -> String {
        expand(
            "__alert_T",
            text,
            &data(&[("instance", "host-a:9100"), ("job", "node")], value),
            None,
        )
        .unwrap()
    }

    #[test]
    fn go_percent_g_matches_go() {
        // Expected strings are Go's fmt.Sprintf("%.4g", v).
        for (v, want) in [
            (98.33333333, "98.33"),
            (100.0, "100"),
            (1234567.0, "1.235e+06"),
            (0.000012345, "1.234e-05"),
            (0.0001, "0.0001"),
            (1.5, "1.5"),
            (-2.0, "-2"),
            (9999.5, "1e+04"),
        ] {
            assert_eq!(go_g4(v), want, "{v}");
        }
    }

    #[test]
    fn humanizers_match_prometheus() {
        // Expected strings from Prometheus 2.42 template tests / promtool output.
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize_duration(93784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(61.0), "1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(0.0015), "1.5ms");
        assert_eq!(
            float_to_time(1435065584.128).unwrap(),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(float_to_time(0.0).unwrap(), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(format_g(1209600.0), "1.2096e+06");
        assert_eq!(format_g(5400.0), "5400");
        assert_eq!(format_g(0.001), "0.001");
        // promtool 2.42's message for humanizeTimestamp / toTime of 1e10.
        assert_eq!(
            float_to_time(1e10).unwrap_err().to_string(),
            "1e+10 cannot be represented as a nanoseconds timestamp since it overflows int64"
        );
    }

    #[test]
    fn alert_variables_and_functions() {
        assert_eq!(
            run(
                "CPU of {{ $labels.instance }} is {{ $value | humanizePercentage }}",
                0.98333
            ),
            "CPU of host-a:9100 is 98.33%"
        );
        assert_eq!(run("{{ $externalLabels.dc }}", 1.0), "eu1");
        assert_eq!(run("{{ .Labels.job | toUpper }}", 1.0), "NODE");
        assert_eq!(
            run("{{ title \"hello big world\" }}", 1.0),
            "Hello Big World"
        );
        assert_eq!(
            run("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", 1.0),
            "host-a"
        );
        assert_eq!(run("{{ printf \"%.1f\" $value }}", 2.25), "2.2");
        assert_eq!(
            run("{{ if match \"^host\" $labels.instance }}yes{{ end }}", 1.0),
            "yes"
        );
        assert_eq!(
            run("{{ graphLink \"up == 0\" }}", 1.0),
            "/graph?g0.expr=up+%3D%3D+0&g0.tab=0"
        );
        assert_eq!(run("{{ pathPrefix }}", 1.0), "/prefix");
        assert_eq!(run("{{ with args 1 \"x\" }}{{ .arg1 }}{{ end }}", 1.0), "x");
    }

    #[test]
    fn query_function_reads_through_the_callback() {
        let query: QueryFn = Arc::new(|q: &str| {
            assert_eq!(q, "up");
            Ok(vec![(
                Labels::from_pairs(vec![("instance".into(), "a".into())]),
                1.0,
            )])
        });
        let out = expand(
            "t",
            "{{ with query \"up\" }}{{ . | first | label \"instance\" }}={{ . | first | value }}{{ end }}",
            &data(&[], 0.0),
            Some(query),
        )
        .unwrap();
        assert_eq!(out, "a=1");
    }

    #[test]
    fn printing_actions_print_floats_like_go() {
        assert_eq!(
            print_like_go(
                r#"a {{ $value }} {{- if gt $value 1.0 -}} {{ $x := 2.0 }}{{ $x }}{{ end }} {{/* c */}} {{ "}}" }}"#
            ),
            r#"a {{ $value | __goPrint }} {{- if gt $value 1.0 -}} {{ $x := 2.0 }}{{ $x | __goPrint }}{{ end }} {{/* c */}} {{ "}}" | __goPrint }}"#
        );
        assert_eq!(print_like_go("{{ .Value -}}"), "{{ .Value | __goPrint -}}");
        // Go's %v: expected strings from promtool 2.42 ($value of these samples).
        assert_eq!(run("{{ $value }}", 1.5e10), "1.5e+10");
        assert_eq!(run("{{ $value }}", f64::INFINITY), "+Inf");
        assert_eq!(run("{{ $value }}", 0.00001), "1e-05");
        assert_eq!(run("{{ $value }} {{ $labels.nope }}|", 98.5), "98.5 |");
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(check("__alert_A", "{{ $labels.x ").is_err());
        assert!(check("__alert_A", "{{ $labels.x }}").is_ok());
    }
}
