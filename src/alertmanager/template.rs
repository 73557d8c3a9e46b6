//! Notification templates: Alertmanager 0.25's template data and functions on the
//! `gotmpl` Go-template engine.
//!
//! Owns: the template set (Alertmanager's default templates, `default.tmpl` here,
//! plus the `templates:` files), the data a notification's templates see
//! ([`Data`]: `.Receiver`, `.Status`, `.Alerts` with `.Firing`/`.Resolved`,
//! `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`), and
//! Alertmanager's functions (`toUpper`, `toLower`, `title`, `join`, `match`,
//! `safeHtml`, `reReplaceAll`, `stringSlice`, and `trimSpace`, which Alertmanager
//! only has from 0.26 on).
//!
//! Go templates call methods of the data (`.CommonLabels.SortedPairs.Values`,
//! `.CommonLabels.Remove .GroupLabels.Names`, `.Alerts.Firing`); `gotmpl` data has
//! fields only, so [`rewrite_methods`] turns those method calls into calls of
//! internal functions (`(__values (__sortedPairs .CommonLabels))`) before parsing.
//! The methods are `SortedPairs`, `Names`, `Values`, `Remove` (label sets and pair
//! lists) and `Firing`, `Resolved` (alert lists), as in Alertmanager's
//! `template.go`; like Go, a method wins over a label of the same name.
//!
//! A label set is Alertmanager's `KV` (`map[string]string`) and its templates run with
//! `missingkey=zero`, so a missing label reads as `""`: `{{ .CommonLabels.severity }}`
//! prints nothing, `eq .CommonLabels.severity "critical"` is false, `toUpper` of it is
//! `""`. In `gotmpl` a missing map key is nil (printed `<no value>`, refused by
//! functions), so a key read through a label-set field ([`KV_FIELDS`]) is rewritten
//! too (`.CommonLabels.severity` → `(__kv .CommonLabels "severity")`), and `index` of a
//! label set answers `""` for a missing key. A label set held in a variable
//! (`$l := .CommonLabels`, then `$l.severity`) still reads a missing key as nil.
//!
//! `.StartsAt` and `.EndsAt` print as Go's `time.Time.String()`; their methods
//! `Format LAYOUT`, `Unix`, `UnixNano`, `IsZero`, `Sub TIME`, `UTC` and `Local` are
//! rewritten the same way (`.StartsAt.Format "15:04"` → `__timeFormat .StartsAt
//! "15:04"`) and computed by [`crate::alertmanager::go_time`]. Only a field chain through
//! `StartsAt` / `EndsAt` has them: a time held in a variable (`$t.Format`) does not.

use crate::alertmanager::alert::{fingerprint_hex, format_time_go_string, Alert, Nanos};
use crate::alertmanager::go_time::{duration_string, GoTime};
use crate::rules::template::{arg, arg_str, err, string_map, text, with_text_funcs, FuncHost};
use gotmpl::{Template, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Alertmanager's default templates (see the file's header for attribution).
pub const DEFAULT_TEMPLATES: &str = include_str!("default.tmpl");

/// Method names rewritten into function calls (see the module doc).
const METHODS: [&str; 13] = [
    "SortedPairs",
    "Names",
    "Values",
    "Remove",
    "Firing",
    "Resolved",
    "Format",
    "Unix",
    "UnixNano",
    "IsZero",
    "Sub",
    "UTC",
    "Local",
];

/// The data's label-set (`KV`) fields: a segment after one of them that is not a
/// method reads a label (see the module doc).
const KV_FIELDS: [&str; 5] = [
    "Labels",
    "Annotations",
    "GroupLabels",
    "CommonLabels",
    "CommonAnnotations",
];

/// The methods of a label set (Alertmanager's `KV`); any other segment after a label
/// set reads a label.
const KV_METHODS: [&str; 4] = ["SortedPairs", "Names", "Values", "Remove"];

/// Whether a field chain needs rewriting: it calls a method or reads a label.
fn rewritten(segments: &[&str]) -> bool {
    segments.iter().any(|s| METHODS.contains(s))
        || segments
            .windows(2)
            .any(|pair| KV_FIELDS.contains(&pair[0]) && !KV_METHODS.contains(&pair[1]))
}

/// The data's `time.Time` fields, whose segments may be followed by time methods.
const TIME_FIELDS: [&str; 2] = ["StartsAt", "EndsAt"];

/// A parsed template set.
#[derive(Clone)]
pub struct Templates {
    base: Template,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    /// The default templates only.
    pub fn default_only() -> Templates {
        Templates::load(&[]).expect("the default templates parse")
    }

    /// The default templates, then each file (later definitions replace earlier ones).
    pub fn load(files: &[PathBuf]) -> Result<Templates, TemplateError> {
        let mut base = functions(Template::new("__notify"))
            .missing_key(gotmpl::MissingKey::ZeroValue)
            .parse(&rewrite_methods(DEFAULT_TEMPLATES))
            .map_err(TemplateError::Defaults)?;
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| TemplateError::Read {
                path: file.clone(),
                source,
            })?;
            base = base
                .parse(&rewrite_methods(&text))
                .map_err(|source| TemplateError::Parse {
                    path: file.clone(),
                    source,
                })?;
        }
        // The set's own body is empty: only `define`s are kept.
        base = base.parse("")?;
        Ok(Templates { base })
    }

    /// Expands one config text (e.g. a Slack `title`) with `data`.
    pub fn expand(&self, text: &str, data: &Value) -> Result<String, TemplateError> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        Ok(self
            .base
            .clone()
            .parse(&rewrite_methods(text))
            .and_then(|t| t.execute_to_string(data))?)
    }

    /// Expands one config text as Go's `html/template` does (Alertmanager's
    /// `ExecuteHTMLString`, the email `html` body): the same definitions, values
    /// escaped for their HTML context.
    pub fn expand_html(&self, text: &str, data: &Value) -> Result<String, TemplateError> {
        let mut t = functions(gotmpl::html::Template::new("__html"))
            .missing_key(gotmpl::MissingKey::ZeroValue);
        for name in self.base.templates() {
            if let Some(tree) = self.base.lookup(name).filter(|_| name != "__notify") {
                t = t.add_parse_tree(name, tree.clone())?;
            }
        }
        Ok(t.parse(&rewrite_methods(text))
            .and_then(|t| t.execute_to_string(data))?)
    }
}

/// Why templates failed to load or to expand. The texts are the ones promflow has
/// always reported (the load errors at `templates` in a config's problems, the
/// expansion errors wrapped by each integration as Alertmanager wraps them).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The built-in default templates do not parse (a promflow bug).
    #[error("default templates: {0}")]
    Defaults(#[source] gotmpl::TemplateError),
    /// A `templates:` file cannot be read.
    #[error("cannot read template file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `templates:` file does not parse.
    #[error("template file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: gotmpl::TemplateError,
    },
    /// A text does not parse or fails to execute (the engine's message, as Go's).
    #[error(transparent)]
    Expand(#[from] gotmpl::TemplateError),
}

/// One alert as templates see it.
#[derive(Clone, Debug, PartialEq)]
pub struct DataAlert {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `startsAt`.
    pub starts_at: Nanos,
    /// `endsAt`; `None` (Go's zero time) while firing.
    pub ends_at: Option<Nanos>,
    /// `generatorURL`.
    pub generator_url: String,
    /// 16 hex digits.
    pub fingerprint: String,
}

/// What one notification's templates (and the webhook body) are made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// The receiver's name, regex-quoted as Alertmanager does.
    pub receiver: String,
    /// `firing` if any alert fires, else `resolved`.
    pub status: &'static str,
    /// The alerts.
    pub alerts: Vec<DataAlert>,
    /// The group's labels.
    pub group_labels: BTreeMap<String, String>,
    /// Labels all alerts share.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations all alerts share.
    pub common_annotations: BTreeMap<String, String>,
    /// The notifier's external URL.
    pub external_url: String,
}

impl Data {
    /// Alertmanager's `template.Data` for `alerts` of a group at `now`.
    pub fn new(
        receiver: &str,
        group_labels: &BTreeMap<String, String>,
        alerts: &[Alert],
        external_url: &str,
        now: Nanos,
    ) -> Data {
        let alerts: Vec<DataAlert> = alerts
            .iter()
            .map(|a| {
                let resolved = a.resolved_at(now);
                DataAlert {
                    status: a.status(now),
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: a.starts_at,
                    ends_at: resolved.then_some(a.ends_at),
                    generator_url: a.generator_url.clone(),
                    fingerprint: fingerprint_hex(a.fingerprint()),
                }
            })
            .collect();
        Data {
            receiver: go_quote_meta(receiver),
            status: if alerts.iter().any(|a| a.status == "firing") {
                "firing"
            } else {
                "resolved"
            },
            common_labels: common(&alerts, |a| &a.labels),
            common_annotations: common(&alerts, |a| &a.annotations),
            group_labels: group_labels.clone(),
            alerts,
            external_url: external_url.to_string(),
        }
    }

    /// The same notification with only the first `n` alerts (a webhook's
    /// `max_alerts`): common labels and annotations are those of the kept alerts.
    pub fn truncated(&self, n: usize) -> Data {
        let alerts: Vec<DataAlert> = self.alerts.iter().take(n).cloned().collect();
        Data {
            common_labels: common(&alerts, |a| &a.labels),
            common_annotations: common(&alerts, |a| &a.annotations),
            alerts,
            ..self.clone()
        }
    }

    /// The data as a template value.
    pub fn to_value(&self) -> Value {
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|a| {
                map([
                    ("Status", text(a.status)),
                    ("Labels", string_map(&a.labels)),
                    ("Annotations", string_map(&a.annotations)),
                    ("StartsAt", text(format_time_go_string(Some(a.starts_at)))),
                    ("EndsAt", text(format_time_go_string(a.ends_at))),
                    ("GeneratorURL", text(a.generator_url.clone())),
                    ("Fingerprint", text(a.fingerprint.clone())),
                ])
            })
            .collect();
        map([
            ("Receiver", text(self.receiver.clone())),
            ("Status", text(self.status)),
            ("Alerts", Value::List(alerts.into())),
            ("GroupLabels", string_map(&self.group_labels)),
            ("CommonLabels", string_map(&self.common_labels)),
            ("CommonAnnotations", string_map(&self.common_annotations)),
            ("ExternalURL", text(self.external_url.clone())),
        ])
    }
}

/// The pairs every alert has with the same value.
fn common(
    alerts: &[DataAlert],
    get: fn(&DataAlert) -> &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut common = alerts.first().map(|a| get(a).clone()).unwrap_or_default();
    for a in alerts.iter().skip(1) {
        common.retain(|k, v| get(a).get(k) == Some(v));
    }
    common
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(Arc::new(
        entries
            .into_iter()
            .map(|(k, v)| (Arc::from(k), v))
            .collect(),
    ))
}

/// Go's `regexp.QuoteMeta`.
pub fn go_quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Alertmanager's `KV.SortedPairs`: `alertname` first, then by name.
fn sorted_pairs(kv: &BTreeMap<Arc<str>, Value>) -> Vec<Value> {
    let mut keys: Vec<&Arc<str>> = kv.keys().collect();
    keys.sort_by_key(|k| (&***k != "alertname", k.to_string()));
    keys.into_iter()
        .map(|k| map([("Name", Value::String(k.clone())), ("Value", kv[k].clone())]))
        .collect()
}

/// The pairs of a label set or a pair list.
fn pairs_of(v: &Value, f: &str) -> gotmpl::Result<Vec<Value>> {
    match v {
        Value::Map(m) => Ok(sorted_pairs(m)),
        Value::List(l) => Ok(l.to_vec()),
        Value::Nil => Ok(Vec::new()),
        other => Err(err(format!("{f}: not a label set: {}", other.type_name()))),
    }
}

/// `Names` / `Values`: one field of each pair of a label set or pair list.
fn pair_fields(args: &[Value], method: &str, field: &str) -> gotmpl::Result<Value> {
    let pairs = pairs_of(&arg(args, 0, method)?, method)?;
    Ok(Value::List(
        pairs
            .iter()
            .filter_map(|p| p.field(field).cloned())
            .collect::<Vec<_>>()
            .into(),
    ))
}

fn alerts_with_status(args: &[Value], f: &str, status: &str) -> gotmpl::Result<Value> {
    match arg(args, 0, f)? {
        Value::List(l) => Ok(Value::List(
            l.iter()
                .filter(|a| a.field("Status").is_some_and(|s| s.to_string() == status))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )),
        other => Err(err(format!(
            "{f}: not an alert list: {}",
            other.type_name()
        ))),
    }
}

/// Argument `i` as a time (the `time.Time.String()` text of `.StartsAt` / `.EndsAt`).
fn time_arg(args: &[Value], i: usize, method: &str) -> gotmpl::Result<GoTime> {
    let value = arg_str(args, i, method)?;
    GoTime::parse(&value).ok_or_else(|| err(format!("{method}: not a time: {value:?}")))
}

fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().map(|s| s.to_string()).collect(),
        Value::Nil => Vec::new(),
        other => vec![other.to_string()],
    }
}

/// The label `key` of the label set `set`, `""` when it has none (`missingkey=zero`
/// on Alertmanager's `map[string]string`); nil of nil, as Go reads a field of nil.
fn label_of(set: &Value, key: &str) -> gotmpl::Result<Value> {
    match set {
        Value::Map(m) => Ok(m.get(key).cloned().unwrap_or_else(|| text(String::new()))),
        Value::Nil => Ok(Value::Nil),
        other => Err(err(format!(
            "can't evaluate field {key} in type {}",
            other.type_name()
        ))),
    }
}

fn functions<T: FuncHost>(template: T) -> T {
    with_text_funcs(template)
        .func("trimSpace", |args| {
            Ok(text(arg_str(args, 0, "trimSpace")?.trim().to_string()))
        })
        .func("join", |args| {
            let sep = arg_str(args, 0, "join")?;
            Ok(text(string_list(&arg(args, 1, "join")?).join(&sep)))
        })
        .func("stringSlice", |args| {
            Ok(Value::List(
                args.iter()
                    .map(|a| text(a.to_string()))
                    .collect::<Vec<_>>()
                    .into(),
            ))
        })
        .func("__sortedPairs", |args| {
            Ok(Value::List(
                pairs_of(&arg(args, 0, "SortedPairs")?, "SortedPairs")?.into(),
            ))
        })
        .func("__kv", |args| {
            label_of(&arg(args, 0, "label")?, &arg_str(args, 1, "label")?)
        })
        .func("index", |args| {
            // Go's `index`, where a label set's missing key is "" (the zero value of
            // Alertmanager's `map[string]string`), not nil.
            let (first, keys) = match args {
                [first, keys @ ..] if !keys.is_empty() => (first, keys),
                _ => {
                    return Err(err(format!(
                        "wrong number of args for index: want at least 2 got {}",
                        args.len()
                    )))
                }
            };
            keys.iter()
                .try_fold(first.clone(), |value, key| match (&value, key) {
                    (Value::Map(_), Value::String(k)) => label_of(&value, k),
                    _ => value.index(key),
                })
        })
        .func("__names", |args| pair_fields(args, "Names", "Name"))
        .func("__values", |args| pair_fields(args, "Values", "Value"))
        .func("__remove", |args| match arg(args, 0, "Remove")? {
            Value::Map(m) => {
                let drop = string_list(&arg(args, 1, "Remove")?);
                let kept: BTreeMap<Arc<str>, Value> = m
                    .iter()
                    .filter(|(k, _)| !drop.iter().any(|d| d.as_str() == &***k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(Value::Map(Arc::new(kept)))
            }
            other => Err(err(format!(
                "Remove: not a label set: {}",
                other.type_name()
            ))),
        })
        .func("__timeFormat", |args| {
            let layout = arg_str(args, 1, "Format")?;
            Ok(text(time_arg(args, 0, "Format")?.format(&layout)))
        })
        .func("__timeSub", |args| {
            let (a, b) = (time_arg(args, 0, "Sub")?, time_arg(args, 1, "Sub")?);
            Ok(text(duration_string(a.nanos_since(b))))
        })
        .func("__timeUnix", |args| {
            Ok(Value::Int(time_arg(args, 0, "Unix")?.unix()))
        })
        .func("__timeUnixNano", |args| {
            Ok(Value::Int(time_arg(args, 0, "UnixNano")?.unix_nano()))
        })
        .func("__timeIsZero", |args| {
            Ok(Value::Bool(time_arg(args, 0, "IsZero")?.is_zero()))
        })
        .func("__firing", |args| {
            alerts_with_status(args, "Firing", "firing")
        })
        .func("__resolved", |args| {
            alerts_with_status(args, "Resolved", "resolved")
        })
}

/// Rewrites method calls in the actions of `src` (see the module doc):
/// `.A.SortedPairs.Values` → `(__values (__sortedPairs .A))`, `$x.Alerts.Firing` →
/// `(__firing $x.Alerts)`, `.A.Remove ARGS` → `__remove .A ARGS`.
pub fn rewrite_methods(src: &str) -> String {
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 32);
    let mut i = 0;
    let mut in_action = false;
    // Positions in `out` of the open parentheses of the current action.
    let mut parens: Vec<usize> = Vec::new();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        let rest = &src[i..];
        if !in_action {
            match rest.find("{{") {
                Some(at) => {
                    out.push_str(&rest[..at + 2]);
                    i += at + 2;
                    in_action = true;
                    parens.clear();
                }
                None => {
                    out.push_str(rest);
                    break;
                }
            }
            continue;
        }
        if rest.starts_with("}}") {
            out.push_str("}}");
            i += 2;
            in_action = false;
            continue;
        }
        if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.push_str(&rest[..end]);
            i += end;
            continue;
        }
        let b = bytes[i];
        match b {
            b'"' | b'\'' | b'`' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b {
                    if bytes[j] == b'\\' && b != b'`' {
                        j += 1;
                    }
                    j += 1;
                }
                let end = (j + 1).min(bytes.len());
                out.push_str(&src[i..end]);
                i = end;
            }
            b'(' => {
                parens.push(out.len());
                out.push('(');
                i += 1;
            }
            b')' => {
                let open = parens.pop();
                out.push(')');
                i += 1;
                if let Some(open) = open {
                    let (segments, len) = field_segments(&src[i..]);
                    if rewritten(&segments) {
                        let base = out.split_off(open);
                        out.push_str(&apply_methods(&base, &segments));
                        i += len;
                    }
                }
            }
            b'.' | b'$' if i == 0 || !is_ident(bytes[i - 1]) => {
                // A variable or the dot, then `.Field` segments.
                let mut j = i + 1;
                if b == b'$' {
                    while j < bytes.len() && is_ident(bytes[j]) {
                        j += 1;
                    }
                    let (segments, len) = field_segments(&src[j..]);
                    if rewritten(&segments) {
                        out.push_str(&apply_methods(&src[i..j], &segments));
                        i = j + len;
                    } else {
                        out.push_str(&src[i..j + len]);
                        i = j + len;
                    }
                } else {
                    let (segments, len) = field_segments(&src[i..]);
                    if rewritten(&segments) {
                        out.push_str(&apply_methods(".", &segments));
                    } else {
                        out.push_str(&src[i..i + len.max(1)]);
                    }
                    i += len.max(1);
                }
            }
            _ => {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// The `.Ident` segments at the start of `s`, and their total length.
fn field_segments(s: &str) -> (Vec<&str>, usize) {
    let bytes = s.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    while i < bytes.len() && bytes[i] == b'.' {
        let start = i + 1;
        let mut j = start;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
            j += 1;
        }
        if j == start || bytes[start].is_ascii_digit() {
            break;
        }
        segments.push(&s[start..j]);
        i = j;
    }
    (segments, i)
}

/// Builds the rewritten expression for `base` followed by `segments`.
fn apply_methods(base: &str, segments: &[&str]) -> String {
    let mut expr = base.to_string();
    // Whether `expr` is a `time.Time` (a time field, possibly through UTC/Local).
    let mut is_time = false;
    // Whether `expr` is a label set (a `KV` field).
    let mut is_kv = false;
    for (n, seg) in segments.iter().enumerate() {
        let rest = || {
            segments[n + 1..]
                .iter()
                .map(|s| format!(".{s}"))
                .collect::<String>()
        };
        if is_time {
            match *seg {
                "UTC" | "Local" => continue,
                // Methods with an argument head their command; the argument follows.
                "Format" => return format!("__timeFormat {expr}{}", rest()),
                "Sub" => return format!("__timeSub {expr}{}", rest()),
                "Unix" | "UnixNano" | "IsZero" => {
                    expr = format!("(__time{seg} {expr})");
                    is_time = false;
                    continue;
                }
                _ => {}
            }
        }
        if is_kv && !KV_METHODS.contains(seg) {
            expr = format!("(__kv {expr} {seg:?})");
            is_kv = false;
            continue;
        }
        is_time = TIME_FIELDS.contains(seg);
        is_kv = KV_FIELDS.contains(seg);
        let function = match *seg {
            "SortedPairs" => "__sortedPairs",
            "Names" => "__names",
            "Values" => "__values",
            "Firing" => "__firing",
            "Resolved" => "__resolved",
            "Remove" => {
                // Takes arguments: it must head its command; the rest of the command follows.
                return format!("__remove {expr}{}", rest());
            }
            field => {
                if expr == "." {
                    expr = format!(".{field}");
                } else {
                    expr = format!("{expr}.{field}");
                }
                continue;
            }
        };
        expr = format!("({function} {expr})");
    }
    expr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)], ends_at: Nanos) -> Alert {
        let kv = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Alert {
            labels: kv(labels),
            annotations: kv(annotations),
            starts_at: 0,
            ends_at,
            generator_url: "http://prom/graph".into(),
            updated_at: 0,
            timeout: false,
        }
    }

    #[test]
    fn method_calls_become_functions() {
        assert_eq!(
            rewrite_methods(r#"a {{ .GroupLabels.SortedPairs.Values | join " " }} b"#),
            r#"a {{ (__values (__sortedPairs .GroupLabels)) | join " " }} b"#
        );
        assert_eq!(
            rewrite_methods(
                r#"{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ .Values }}{{ end }}"#
            ),
            r#"{{ with __remove .CommonLabels (__names .GroupLabels) }}{{ (__values .) }}{{ end }}"#
        );
        assert_eq!(
            rewrite_methods(
                r#"{{ $d.Alerts.Firing | len }} {{ ".Values" }} {{ .Labels.instance }}"#
            ),
            r#"{{ (__firing $d.Alerts) | len }} {{ ".Values" }} {{ (__kv .Labels "instance") }}"#
        );
        assert_eq!(rewrite_methods("{{ 1.5 }} .Values"), "{{ 1.5 }} .Values");
    }

    #[test]
    fn common_user_template_shapes_work() {
        let t = Templates::default_only();
        let alerts = [
            alert(
                &[("alertname", "Disk"), ("instance", "a")],
                &[("description", "full")],
                i64::MAX,
            ),
            alert(
                &[("alertname", "Disk"), ("instance", "b")],
                &[("description", "full")],
                0,
            ),
        ];
        let data = Data::new("ops", &BTreeMap::new(), &alerts, "http://x", 1).to_value();
        let run = |text: &str| t.expand(text, &data).unwrap();
        assert_eq!(
            run("{{ len .Alerts.Firing }}/{{ len .Alerts.Resolved }}"),
            "1/1"
        );
        assert_eq!(
            run(r#"{{ (index .Alerts 0).Labels.SortedPairs.Names | join "," }}"#),
            "alertname,instance"
        );
        assert_eq!(run("{{ (index .Alerts 1).Labels.instance }}"), "b");
        assert_eq!(
            run(
                r#"{{- range .Alerts.Firing }}{{ .Labels.instance | toUpper }}: {{ .Annotations.description }}{{ end -}}"#
            ),
            "A: full"
        );
        assert_eq!(
            run(r#"{{ range $k, $v := .CommonLabels }}{{ $k }}={{ $v }};{{ end }}"#),
            "alertname=Disk;"
        );
        assert_eq!(
            run(r#"{{ .CommonAnnotations.Values | join " " }} {{ .Receiver }}"#),
            "full ops"
        );
        assert_eq!(
            run(r#"{{ stringSlice "a" "b" | join "-" }} {{ "  x " | trimSpace }}"#),
            "a-b x"
        );
    }

    #[test]
    fn a_missing_label_reads_as_empty_like_alertmanager() {
        // Expected: what `amtool template render` (Alertmanager 0.25) printed for the
        // same text: `[] [] [empty] [] [||] [] []` (its example data has no `missing`
        // or `nope` label); a label held in a variable is the documented exception.
        let t = Templates::default_only();
        let alerts = [alert(&[("alertname", "Disk")], &[], i64::MAX)];
        let data = Data::new("ops", &BTreeMap::new(), &alerts, "http://x", 1).to_value();
        assert_eq!(
            t.expand(
                r#"[{{ .CommonLabels.missing }}] [{{ index .CommonLabels "missing" }}] [{{ if eq .CommonLabels.missing "" }}empty{{ end }}] [{{ .CommonLabels.missing | toUpper }}] [{{ range .Alerts }}{{ .Labels.nope }}|{{ .Annotations.nope }}{{ end }}] [{{ $.GroupLabels.alertname }}]"#,
                &data
            )
            .unwrap(),
            "[] [] [empty] [] [|] []"
        );
        assert_eq!(
            t.expand(r#"{{ .CommonLabels.alertname }} {{ index .CommonLabels "alertname" }} {{ (index .Alerts 0).Labels.alertname }}"#, &data).unwrap(),
            "Disk Disk Disk"
        );
        assert_eq!(
            rewrite_methods(
                r#"{{ .CommonLabels.severity | toUpper }} {{ $a.Labels.SortedPairs }}"#
            ),
            r#"{{ (__kv .CommonLabels "severity") | toUpper }} {{ (__sortedPairs $a.Labels) }}"#
        );
    }

    #[test]
    fn time_methods_work_on_alert_times() {
        assert_eq!(
            rewrite_methods(r#"{{ .StartsAt.UTC.Format "15:04" }} {{ .EndsAt.Sub .StartsAt }}"#),
            r#"{{ __timeFormat .StartsAt "15:04" }} {{ __timeSub .EndsAt .StartsAt }}"#
        );
        assert_eq!(
            rewrite_methods("{{ (index .Alerts 0).StartsAt.Unix }} {{ .Labels.Format }}"),
            r#"{{ (__timeUnix (index .Alerts 0).StartsAt) }} {{ (__kv .Labels "Format") }}"#
        );
        let t = Templates::default_only();
        let mut resolved = alert(&[("alertname", "A")], &[], 1_709_647_689_500_000_000);
        resolved.starts_at = 1_709_647_629_120_000_000;
        let mut firing = alert(&[("alertname", "B")], &[], i64::MAX);
        firing.starts_at = resolved.starts_at;
        let data = Data::new(
            "r",
            &BTreeMap::new(),
            &[resolved, firing],
            "http://x",
            1_709_647_700_000_000_000,
        )
        .to_value();
        let run = |text: &str| t.expand(text, &data).unwrap();
        assert_eq!(
            run(
                r#"{{ range .Alerts }}{{ .StartsAt.Format "2006-01-02 15:04:05.000 MST" }}|{{ end }}"#
            ),
            "2024-03-05 14:07:09.120 UTC|2024-03-05 14:07:09.120 UTC|"
        );
        assert_eq!(
            run("{{ range .Alerts.Resolved }}{{ .EndsAt.Sub .StartsAt }} {{ .StartsAt.Unix }}{{ end }}"),
            "1m0.38s 1709647629"
        );
        assert_eq!(
            run("{{ range .Alerts.Firing }}{{ .EndsAt.IsZero }} {{ .EndsAt }}{{ end }}"),
            "true 0001-01-01 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn default_subject_matches_alertmanager() {
        // Expected text rendered by Alertmanager 0.25 (slack title of two alerts).
        let t = Templates::default_only();
        let alerts = [
            alert(
                &[
                    ("alertname", "HighCPU"),
                    ("instance", "a"),
                    ("severity", "page"),
                ],
                &[],
                i64::MAX,
            ),
            alert(
                &[
                    ("alertname", "HighCPU"),
                    ("instance", "b"),
                    ("severity", "page"),
                ],
                &[],
                i64::MAX,
            ),
        ];
        let group = BTreeMap::from([("alertname".to_string(), "HighCPU".to_string())]);
        let data = Data::new("slack", &group, &alerts, "http://vm:19093", 1).to_value();
        assert_eq!(
            t.expand(r#"{{ template "slack.default.title" . }}"#, &data)
                .unwrap(),
            "[FIRING:2] HighCPU (page)"
        );
        assert_eq!(
            t.expand(r#"{{ template "slack.default.titlelink" . }}"#, &data)
                .unwrap(),
            "http://vm:19093/#/alerts?receiver=slack"
        );
    }
}
