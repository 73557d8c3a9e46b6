//! Duration expressions (experimental Prometheus syntax promql-parser 0.11 rejects):
//! arithmetic in range/subquery brackets and after `offset`, rewritten to plain
//! millisecond literals before parsing.
//!
//! ```promql
//! x[26m+4m]                       ->  x[1800000ms]
//! x[29s+1s:20*500ms]              ->  x[30000ms:10000ms]
//! x offset -min_of(step(), 1s)+1  ->  x offset -1000ms+1   (offset takes one term)
//! ```
//!
//! Contract: numbers are seconds, durations are converted to seconds, the operators
//! are `+ - * / % ^` with PromQL precedence (`^` binds tighter than unary minus), and
//! `step()`, `range()`, `min_of(a, b)`, `max_of(a, b)` are known (case-insensitive).
//! Text that is already a plain duration, or that does not evaluate, is left as is,
//! so the parser reports it.

use crate::promql::testscript::parse_duration_ms;

/// Query-level values duration expressions may use.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueryTimes {
    /// `step()`, ms (0 for instant queries).
    pub step_ms: i64,
    /// `range()`, ms: end minus start (0 for instant queries).
    pub range_ms: i64,
}

/// Rewrites every duration expression in `query` to a millisecond literal.
pub fn rewrite(query: &str, times: QueryTimes) -> String {
    let chars: Vec<char> = query.chars().collect();
    let mut out = String::with_capacity(query.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let end = skip_string(&chars, i);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '{' {
            let end = matching(&chars, i, '{', '}').map_or(chars.len(), |e| e + 1);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '[' {
            let Some(end) = matching(&chars, i, '[', ']') else {
                out.extend(&chars[i..]);
                break;
            };
            let inner: String = chars[i + 1..end].iter().collect();
            out.push('[');
            let parts = split_top_level_colon(&inner);
            let rendered: Vec<String> = parts.iter().map(|p| rewrite_part(p, times)).collect();
            out.push_str(&rendered.join(":"));
            out.push(']');
            i = end + 1;
        } else if is_word_at(&chars, i, "offset") {
            let (text, next) = offset_term(&chars, i + "offset".len());
            let term = rewrite_offset(&text, times);
            // A zero offset is a no-op that the parser rejects as a duration.
            if term.trim() != "0ms" {
                out.push_str("offset");
                out.push_str(&term);
            }
            i = next;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let q = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && q != '`' {
            i += 2;
            continue;
        }
        if chars[i] == q {
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// Index of the bracket closing the one at `start`.
fn matching(chars: &[char], start: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

fn is_word_at(chars: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    if i + w.len() > chars.len() {
        return false;
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    chars[i..i + w.len()]
        .iter()
        .zip(&w)
        .all(|(a, b)| a.eq_ignore_ascii_case(b))
        && (i == 0 || !ident(chars[i - 1]))
        && chars.get(i + w.len()).is_none_or(|c| !ident(*c))
}

fn split_top_level_colon(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn rewrite_part(part: &str, times: QueryTimes) -> String {
    let t = part.trim();
    if t.is_empty() || parse_duration_ms(t).is_ok() {
        return part.to_string();
    }
    match eval_seconds(t, times) {
        Some(s) => format!("{}ms", (s * 1000.0).round() as i64),
        None => part.to_string(),
    }
}

/// The single term after `offset`: optional sign, then a parenthesised expression,
/// a call, or a literal. Returns it (with leading whitespace) and the index after it.
fn offset_term(chars: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    if i < chars.len() && (chars[i] == '-' || chars[i] == '+') {
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
    }
    if i < chars.len() && chars[i] == '(' {
        i = matching(chars, i, '(', ')').map_or(chars.len(), |e| e + 1);
    } else {
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
        {
            i += 1;
        }
        if i < chars.len() && chars[i] == '(' {
            i = matching(chars, i, '(', ')').map_or(chars.len(), |e| e + 1);
        }
    }
    (chars[start..i].iter().collect(), i)
}

fn rewrite_offset(term: &str, times: QueryTimes) -> String {
    let t = term.trim();
    let unsigned = t.strip_prefix('-').unwrap_or(t).trim();
    if t.is_empty() || parse_duration_ms(unsigned).is_ok() {
        return term.to_string();
    }
    match eval_seconds(t, times) {
        Some(s) => format!(" {}ms", (s * 1000.0).round() as i64),
        None => term.to_string(),
    }
}

/// Evaluates a duration expression to seconds.
pub fn eval_seconds(expr: &str, times: QueryTimes) -> Option<f64> {
    let mut p = Parser {
        s: expr.chars().filter(|c| !c.is_whitespace()).collect(),
        i: 0,
        times,
    };
    let v = p.sum()?;
    (p.i == p.s.len()).then_some(v)
}

struct Parser {
    s: Vec<char>,
    i: usize,
    times: QueryTimes,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn sum(&mut self) -> Option<f64> {
        let mut v = self.product()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.i += 1;
            let r = self.product()?;
            v = if c == '+' { v + r } else { v - r };
        }
        Some(v)
    }

    fn product(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        while let Some(c @ ('*' | '/' | '%')) = self.peek() {
            self.i += 1;
            let r = self.unary()?;
            v = match c {
                '*' => v * r,
                '/' => v / r,
                _ => v % r,
            };
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<f64> {
        match self.peek() {
            Some('-') => {
                self.i += 1;
                Some(-self.unary()?)
            }
            Some('+') => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.primary()?;
        if self.peek() == Some('^') {
            self.i += 1;
            let exp = self.unary()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }

    fn primary(&mut self) -> Option<f64> {
        if self.peek() == Some('(') {
            self.i += 1;
            let v = self.sum()?;
            if self.peek() != Some(')') {
                return None;
            }
            self.i += 1;
            return Some(v);
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.i += 1;
        }
        let word: String = self.s[start..self.i].iter().collect();
        if self.peek() == Some('(') {
            self.i += 1;
            let mut args = Vec::new();
            if self.peek() != Some(')') {
                loop {
                    args.push(self.sum()?);
                    match self.peek() {
                        Some(',') => self.i += 1,
                        _ => break,
                    }
                }
            }
            if self.peek() != Some(')') {
                return None;
            }
            self.i += 1;
            return match (word.to_ascii_lowercase().as_str(), args.as_slice()) {
                ("step", []) => Some(self.times.step_ms as f64 / 1000.0),
                ("range", []) => Some(self.times.range_ms as f64 / 1000.0),
                ("min_of", [a, b]) => Some(a.min(*b)),
                ("max_of", [a, b]) => Some(a.max(*b)),
                _ => None,
            };
        }
        if let Ok(v) = word.parse::<f64>() {
            return Some(v);
        }
        parse_duration_ms(&word).ok().map(|ms| ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: QueryTimes = QueryTimes {
        step_ms: 5000,
        range_ms: 10_000,
    };

    #[test]
    fn brackets() {
        assert_eq!(rewrite("x[26m+4m]", T), "x[1800000ms]");
        assert_eq!(rewrite("x[29s+1s:20*500ms]", T), "x[30000ms:10000ms]");
        assert_eq!(rewrite("x[5m:]", T), "x[5m:]");
        assert_eq!(rewrite("x[1+(STep()-5)*2]", T), "x[1000ms]");
        assert_eq!(rewrite(r#"x{a="[1+1]"}[5m]"#, T), r#"x{a="[1+1]"}[5m]"#);
    }

    #[test]
    fn offset_takes_one_term() {
        assert_eq!(rewrite("x offset 5m", T), "x offset 5m");
        assert_eq!(rewrite("x offset -2 ^ 2", T), "x offset -2000ms ^ 2");
        assert_eq!(rewrite("x offset (-2 ^ 2)", T), "x offset -4000ms");
        assert_eq!(rewrite("x offset (step()*0)", T), "x ");
        assert_eq!(
            rewrite("x offset -min_of(step(), 1s)+8000", T),
            "x offset -1000ms+8000"
        );
    }
}
