//! A strict little reader for the Prometheus text format, used by tests to read
//! `/federate` and `/metrics` bodies (promflow's and the real peers').
//!
//! It is deliberately independent of promflow's own parser, so a parser bug cannot
//! hide itself. It panics on a line it cannot read: a test body must be well formed.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value [timestamp_ms]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The series identity, `name{a="1",b="2"}` with labels sorted.
    pub fn series(&self) -> String {
        series_key(&self.name, &self.labels)
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A parsed body: the samples in order and the `# TYPE` of each family.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Samples with this metric name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Sum of the values of all samples with this name, `None` if there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut it = self.named(name).peekable();
        it.peek()?;
        Some(it.map(|s| s.value).sum())
    }

    /// The sample of `name` whose labels include all of `labels`; panics if several match.
    pub fn find<'a>(&'a self, name: &'a str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        let mut hits = self
            .named(name)
            .filter(|s| labels.iter().all(|(k, v)| s.label(k) == Some(*v)));
        let first = hits.next();
        if let Some(second) = hits.next() {
            panic!("more than one sample matches {name}{labels:?}: {first:?}, {second:?}");
        }
        first
    }
}

/// `name{a="1",b="2"}` with labels in sorted order and values escaped as in the format.
pub fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('"', "\\\"");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", body.join(","))
}

/// Parses a whole body; panics with the line number on anything malformed.
pub fn parse(body: &str) -> Exposition {
    let mut out = Exposition::default();
    for (i, line) in body.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    out.types.insert(name.to_string(), kind.to_string());
                }
            }
            continue;
        }
        match parse_sample(line) {
            Ok(s) => out.samples.push(s),
            Err(e) => panic!("exposition line {}: {e}: {line:?}", i + 1),
        }
    }
    out
}

/// Parses a float as the text format writes it (`NaN`, `+Inf`, `-Inf` included).
pub fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Equality for sample values: bit-for-bit, except that any NaN equals any NaN.
pub fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    let timestamp_ms = match fields.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|e| format!("bad timestamp {t:?}: {e}"))?,
        ),
        None => None,
    };
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads `a="x",b="y"}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, out: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate label {key}"));
        }
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}
