//! Field paths (`scrape_configs[1].scrape_timeout`) and finding their line in the YAML text.
//!
//! `serde_yaml_ng` does not expose positions of successfully parsed values, so
//! semantic problems and unknown fields are located by a small, indentation-aware
//! scanner over the text. It understands block mappings and block sequences
//! (including `- key: value` items and sequences at their parent key's indent),
//! comments, quoted keys and block scalars; flow collections (`{...}`, `[...]`)
//! are treated as leaves, so a path into one resolves to the line of its key.
//! Locating is best effort: a path that cannot be followed to the end resolves
//! to the deepest ancestor found, and never fails loading.

use std::fmt;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSegment {
    Key(String),
    Index(usize),
}

/// Where a value sits in the config document, e.g. `scrape_configs[1].scrape_timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<PathSegment>);

impl FieldPath {
    /// The document root (displays as the empty string).
    pub(crate) fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Key(key.to_string()));
        FieldPath(segments)
    }

    /// This path extended by a sequence index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Index(index));
        FieldPath(segments)
    }

    pub(crate) fn segments(&self) -> &[PathSegment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) if position == 0 => f.write_str(key)?,
                PathSegment::Key(key) => write!(f, ".{key}")?,
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The block structure of a YAML document, with the line of every key and item.
#[derive(Debug)]
enum Node {
    /// `(key, 1-based line, value)` in document order.
    Map(Vec<(String, usize, Node)>),
    /// `(1-based line of the "-", item)`.
    Seq(Vec<(usize, Node)>),
    /// A scalar, a flow collection, or anything the scanner does not look into.
    Leaf,
}

/// A significant (non-blank, non-comment) line with its comment stripped.
#[derive(Debug, Clone)]
struct Line {
    indent: usize,
    text: String,
    number: usize,
}

/// Answers "on which line is this field?" for one YAML text.
#[derive(Debug)]
pub(crate) struct YamlLocator {
    root: Node,
}

impl YamlLocator {
    /// Scans `text` once; lookups are then cheap.
    pub(crate) fn new(text: &str) -> Self {
        let mut lines = significant_lines(text);
        let mut position = 0;
        let root = parse_node(&mut lines, &mut position, -1);
        YamlLocator { root }
    }

    /// The 1-based line of `path`, or of its deepest ancestor that exists in
    /// the text; `None` when not even the first segment is found.
    pub(crate) fn line_of(&self, path: &FieldPath) -> Option<usize> {
        let mut node = &self.root;
        let mut best = None;
        for segment in path.segments() {
            let found = match (node, segment) {
                (Node::Map(entries), PathSegment::Key(key)) => entries
                    .iter()
                    .find(|(name, _, _)| name == key)
                    .map(|(_, line, child)| (*line, child)),
                (Node::Seq(items), PathSegment::Index(index)) => {
                    items.get(*index).map(|(line, child)| (*line, child))
                }
                _ => None,
            };
            match found {
                Some((line, child)) => {
                    best = Some(line);
                    node = child;
                }
                None => break,
            }
        }
        best
    }
}

fn significant_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let content = strip_comment(raw).trim_end();
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed == "---" || trimmed == "..." {
            continue;
        }
        lines.push(Line {
            indent: content.len() - trimmed.len(),
            text: trimmed.to_string(),
            number: index + 1,
        });
    }
    lines
}

/// Cuts a `# comment` (a `#` at the start or after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (offset, c) in line.char_indices() {
        match quote {
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'')
                && (previous == ' '
                    || previous == '['
                    || previous == '{'
                    || previous == ','
                    || previous == ':') =>
            {
                quote = Some(c)
            }
            None if c == '#' && previous.is_whitespace() => return &line[..offset],
            None => {}
        }
        previous = c;
    }
    line
}

fn is_sequence_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Splits `key: value` into the key (unquoted) and the value text.
fn split_key(text: &str) -> Option<(String, &str)> {
    let first = text.chars().next()?;
    if first == '"' || first == '\'' {
        let close = text[1..].find(first)? + 1;
        let after = text[close + 1..].trim_start();
        let value = after.strip_prefix(':')?;
        if !(value.is_empty() || value.starts_with(' ')) {
            return None;
        }
        return Some((text[1..close].to_string(), value.trim()));
    }
    if first == '{' || first == '[' {
        return None;
    }
    let bytes = text.as_bytes();
    for (offset, &byte) in bytes.iter().enumerate() {
        if byte == b':' && (offset + 1 == bytes.len() || bytes[offset + 1] == b' ') {
            let key = text[..offset].trim_end();
            return Some((key.to_string(), text[offset + 1..].trim()));
        }
    }
    None
}

/// Parses the node starting at `position` if it is indented deeper than `parent_indent`.
fn parse_node(lines: &mut [Line], position: &mut usize, parent_indent: isize) -> Node {
    let Some(line) = lines.get(*position) else {
        return Node::Leaf;
    };
    if line.indent as isize <= parent_indent {
        return Node::Leaf;
    }
    let indent = line.indent;
    if is_sequence_item(&line.text) {
        parse_sequence(lines, position, indent)
    } else if split_key(&line.text).is_some() {
        parse_mapping(lines, position, indent)
    } else {
        skip_deeper_than(lines, position, parent_indent);
        Node::Leaf
    }
}

fn parse_sequence(lines: &mut [Line], position: &mut usize, indent: usize) -> Node {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*position) {
        if line.indent != indent || !is_sequence_item(&line.text) {
            break;
        }
        let number = line.number;
        let rest = line.text[1..].trim_start().to_string();
        if rest.is_empty() {
            *position += 1;
        } else {
            // `- key: value`: the item's content starts where `key` does.
            let column = indent + (line.text.len() - rest.len());
            lines[*position] = Line {
                indent: column,
                text: rest,
                number,
            };
        }
        let item = parse_node(lines, position, indent as isize);
        items.push((number, item));
    }
    Node::Seq(items)
}

fn parse_mapping(lines: &mut [Line], position: &mut usize, indent: usize) -> Node {
    let mut entries = Vec::new();
    while let Some(line) = lines.get(*position) {
        if line.indent != indent || is_sequence_item(&line.text) {
            break;
        }
        let Some((key, value)) = split_key(&line.text) else {
            break;
        };
        let number = line.number;
        let value_is_empty = value.is_empty() || is_anchor_or_tag_only(value);
        *position += 1;
        let child = if value_is_empty {
            match lines.get(*position) {
                Some(next) if next.indent == indent && is_sequence_item(&next.text) => {
                    parse_sequence(lines, position, indent)
                }
                _ => parse_node(lines, position, indent as isize),
            }
        } else {
            // Inline scalar, flow collection or block scalar: its continuation
            // lines are all indented deeper than the key.
            skip_deeper_than(lines, position, indent as isize);
            Node::Leaf
        };
        entries.push((key, number, child));
    }
    Node::Map(entries)
}

fn is_anchor_or_tag_only(value: &str) -> bool {
    (value.starts_with('&') || value.starts_with('!')) && !value.contains(' ')
}

fn skip_deeper_than(lines: &[Line], position: &mut usize, indent: isize) {
    while lines
        .get(*position)
        .is_some_and(|line| line.indent as isize > indent)
    {
        *position += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[&str]) -> FieldPath {
        let mut path = FieldPath::root();
        for segment in segments {
            path = match segment.parse::<usize>() {
                Ok(index) => path.index(index),
                Err(_) => path.key(segment),
            };
        }
        path
    }

    const TEXT: &str = "\
# A comment at the top
global:
  scrape_interval: 15s   # trailing comment
  external_labels:
    'quoted key': x

scrape_configs:
- job_name: a
  static_configs:
  - targets: ['a:1', 'b:2']
    labels: {x: y}
- job_name: b
  description: |
    block scalar
    job_name: not a key
  relabel_configs:
    -
      action: keep
    - action: drop
      regex: 'a#b'
  scrape_timeout: 5s
alerting:
  alertmanagers:
    - static_configs:
        - targets:
            - am:9093
";

    #[test]
    fn finds_keys_and_items() {
        let locator = YamlLocator::new(TEXT);
        let cases: &[(&[&str], usize)] = &[
            (&["global"], 2),
            (&["global", "scrape_interval"], 3),
            (&["global", "external_labels", "quoted key"], 5),
            (&["scrape_configs"], 7),
            (&["scrape_configs", "0"], 8),
            (&["scrape_configs", "0", "job_name"], 8),
            (
                &["scrape_configs", "0", "static_configs", "0", "targets"],
                10,
            ),
            (
                &["scrape_configs", "0", "static_configs", "0", "labels"],
                11,
            ),
            (&["scrape_configs", "1", "job_name"], 12),
            (
                &["scrape_configs", "1", "relabel_configs", "0", "action"],
                18,
            ),
            (
                &["scrape_configs", "1", "relabel_configs", "1", "regex"],
                20,
            ),
            (&["scrape_configs", "1", "scrape_timeout"], 21),
            (
                &[
                    "alerting",
                    "alertmanagers",
                    "0",
                    "static_configs",
                    "0",
                    "targets",
                    "0",
                ],
                26,
            ),
        ];
        for (segments, line) in cases {
            assert_eq!(
                locator.line_of(&path(segments)),
                Some(*line),
                "{segments:?}"
            );
        }
    }

    #[test]
    fn falls_back_to_the_deepest_ancestor() {
        let locator = YamlLocator::new(TEXT);
        // Into a flow sequence: the line of its key.
        assert_eq!(
            locator.line_of(&path(&[
                "scrape_configs",
                "0",
                "static_configs",
                "0",
                "targets",
                "1"
            ])),
            Some(10)
        );
        // A missing field: the line of the item that lacks it.
        assert_eq!(
            locator.line_of(&path(&["scrape_configs", "1", "metrics_path"])),
            Some(12)
        );
        assert_eq!(locator.line_of(&path(&["rule_files"])), None);
    }

    #[test]
    fn displays_paths_like_prometheus_docs() {
        assert_eq!(
            path(&["scrape_configs", "1", "relabel_configs", "0", "regex"]).to_string(),
            "scrape_configs[1].relabel_configs[0].regex"
        );
        assert_eq!(FieldPath::root().to_string(), "");
    }

    #[test]
    fn survives_odd_input() {
        for text in [
            "",
            "---\n",
            "just a scalar\n",
            "- a\n- b\n",
            "a:\n  - [\n  b: 1\n",
            ": x\n",
        ] {
            let locator = YamlLocator::new(text);
            let _ = locator.line_of(&path(&["a", "0"]));
        }
    }
}
