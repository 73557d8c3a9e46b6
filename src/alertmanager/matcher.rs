//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"re"`,
//! `name!~"re"`, as in Alertmanager 0.25's `pkg/labels` (parse.go, matcher.go).
//!
//! Owns: parsing one matcher list (`{a="b", c=~"d.*"}` or `a=b,c=~d.*`; values may be
//! quoted with Go escapes or bare), matching a label set (a missing label matches as
//! the empty string; regexes are anchored), and the text form Alertmanager prints
//! (`name="value"` with Go `%q` quoting) that route keys and group keys are made of.

use regex::Regex;
use std::collections::BTreeMap;
use std::fmt;

/// The four matcher operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regexp,
    /// `!~`
    NotRegexp,
}

impl MatchType {
    fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }
}

/// One matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub kind: MatchType,
    /// Value or regex text as written.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        (&self.name, self.kind, &self.value) == (&other.name, other.kind, &other.value)
    }
}

/// Why a matcher is not valid (Alertmanager's messages).
#[derive(Debug, Clone, thiserror::Error)]
pub enum MatcherError {
    /// Not `name op value`, or unbalanced braces around a list.
    #[error("bad matcher format: {0}")]
    BadFormat(String),
    /// A quoted value without its closing quote.
    #[error("{0}: unterminated quoted value")]
    Unterminated(String),
    /// A quoted value with an escape Go does not know.
    #[error("{0}: invalid escape in quoted value")]
    InvalidEscape(String),
    /// A regex value that does not compile.
    #[error("invalid regular expression {value:?}: {source}")]
    Regex {
        /// The value as written.
        value: String,
        /// The compiler's error.
        source: regex::Error,
    },
}

impl Matcher {
    /// A matcher; regex values are compiled anchored (`^(?:re)$`).
    pub fn new(name: &str, kind: MatchType, value: &str) -> Result<Matcher, MatcherError> {
        let re = match kind {
            MatchType::Regexp | MatchType::NotRegexp => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|source| {
                    MatcherError::Regex {
                        value: value.to_string(),
                        source,
                    }
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            kind,
            value: value.to_string(),
            re,
        })
    }

    /// Whether `value` (the label's value, "" when missing) matches.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.kind, &self.re) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regexp, Some(re)) => re.is_match(value),
            (MatchType::NotRegexp, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }

    /// Whether the label set matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }
}

impl fmt::Display for Matcher {
    /// `name="value"`, the value quoted like Go's `%q`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.name,
            self.kind.as_str(),
            go_quote(&self.value)
        )
    }
}

/// A conjunction of matchers, kept sorted like Alertmanager's `labels.Matchers`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Sorts by name, then value, then operator (Alertmanager's order).
    pub fn sorted(mut list: Vec<Matcher>) -> Matchers {
        list.sort_by(|a, b| (&a.name, &a.value, a.kind).cmp(&(&b.name, &b.value, b.kind)));
        Matchers(list)
    }

    /// Whether every matcher matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }
}

impl fmt::Display for Matchers {
    /// `{a="b",c=~"d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// Go's `%q` for the strings that appear in labels: `"` and `\` escaped, control
/// characters as `\n`, `\t`, … or `\xNN`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses a matcher list as Alertmanager's `ParseMatchers`: optional surrounding
/// braces, comma-separated matchers, values bare or double-quoted.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    let mut body = text.trim();
    if let Some(inner) = body.strip_prefix('{') {
        body = inner
            .strip_suffix('}')
            .ok_or_else(|| MatcherError::BadFormat(text.to_string()))?;
    }
    let mut out = Vec::new();
    for part in split_outside_quotes(body) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(parse_matcher(part)?);
    }
    Ok(out)
}

/// Splits on commas that are not inside a double-quoted value.
fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One matcher such as `severity=~"page|critical"`.
pub fn parse_matcher(text: &str) -> Result<Matcher, MatcherError> {
    let bad = || MatcherError::BadFormat(text.to_string());
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or_else(bad)?;
    let name = &text[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let rest = text[name_end..].trim_start();
    let (kind, value) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchType::Regexp, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchType::NotRegexp, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchType::Equal, v)
    } else {
        return Err(bad());
    };
    let value = value.trim();
    let value = if let Some(inner) = value.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| MatcherError::Unterminated(text.to_string()))?;
        go_unquote(inner).ok_or_else(|| MatcherError::InvalidEscape(text.to_string()))?
    } else {
        value.to_string()
    };
    Matcher::new(name, kind, &value)
}

/// The escapes of a Go double-quoted string that matter for label values.
fn go_unquote(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '\\' => '\\',
            '"' => '"',
            '\'' => '\'',
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_quoted_bare_and_braced_lists() {
        let ms = parse_matchers(r#"{severity=~"page|critical", team = ops,alertname!="Watchdog"}"#)
            .unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[0].to_string(), r#"severity=~"page|critical""#);
        assert_eq!(ms[1].to_string(), r#"team="ops""#);
        assert_eq!(ms[2].to_string(), r#"alertname!="Watchdog""#);
        let m = parse_matcher(r#"msg="a, \"b\"""#).unwrap();
        assert_eq!(m.value, "a, \"b\"");
        assert!(parse_matcher("=x").is_err());
        assert!(parse_matcher("a=~\"(\"").is_err());
    }

    #[test]
    fn matching_is_anchored_and_missing_labels_are_empty() {
        let l = labels(&[("severity", "page"), ("team", "ops")]);
        assert!(parse_matcher("severity=~pa.*").unwrap().matches(&l));
        assert!(!parse_matcher("severity=~pa").unwrap().matches(&l));
        assert!(parse_matcher("missing=\"\"").unwrap().matches(&l));
        assert!(parse_matcher("missing!~.+").unwrap().matches(&l));
        assert!(!parse_matcher("team!=ops").unwrap().matches(&l));
    }
}
