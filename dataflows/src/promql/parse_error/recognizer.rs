//! A recursive-descent recognizer of PromQL over Prometheus's tokens that stops where
//! Prometheus's grammar does, with the message of the grammar's error rule that would
//! catch it (`unexpected identifier "b" in grouping opts, expected "," or ")"`); used
//! where promql-parser says only "invalid promql query".
//!
//! Contract: [`first_unexpected`] returns the byte offset and message of the first
//! token that cannot continue the query, or `None` when the recognizer finds nothing
//! wrong (the parser's complaint is then about meaning).

use super::tokens::{
    describe, is_word, tokens_of, Tok, AGGREGATORS, KEYWORDS, NAME_KEYWORDS, OPERATORS,
    WORD_OPERATORS,
};
use crate::promql::rewrite::Token;

/// Where the query first stops being PromQL and Prometheus's message for it; `None` if
/// the recognizer finds nothing wrong (the parser's complaint is then about meaning).
pub(super) fn first_unexpected(query: &str, raw: &[Token]) -> Option<(usize, String)> {
    let mut r = Recognizer {
        toks: tokens_of(query, raw),
        i: 0,
        aggregation_depth: 0,
    };
    r.expr().and_then(|()| r.expect_end()).err()
}

type Step = Result<(), (usize, String)>;

/// A recursive-descent recognizer of PromQL that fails where Prometheus's grammar does,
/// with the message of the grammar's error rule that would catch it.
struct Recognizer<'a> {
    toks: Vec<(Tok<'a>, usize)>,
    i: usize,
    /// How many aggregations the current token is inside (their errors say "in
    /// aggregation").
    aggregation_depth: usize,
}

impl<'a> Recognizer<'a> {
    fn peek(&self) -> Tok<'a> {
        self.toks[self.i.min(self.toks.len() - 1)].0
    }

    fn peek_at(&self, k: usize) -> Tok<'a> {
        self.toks[(self.i + k).min(self.toks.len() - 1)].0
    }

    fn bump(&mut self) {
        self.i += 1;
    }

    fn sym(&self, s: &str) -> bool {
        self.peek() == Tok::Sym(s)
    }

    fn word(&self, list: &[&str]) -> bool {
        matches!(self.peek(), Tok::Word(w) if is_word(list, w))
    }

    /// Fails at the current token, in `context` with `expected` if given.
    fn fail(&self, context: &str, expected: &str) -> Step {
        let mut m = format!("unexpected {}", describe(self.peek()));
        if !context.is_empty() {
            m.push_str(" in ");
            m.push_str(context);
        }
        if !expected.is_empty() {
            m.push_str(", expected ");
            m.push_str(expected);
        }
        Err((self.toks[self.i.min(self.toks.len() - 1)].1, m))
    }

    /// Fails at the current token, without a rule of its own.
    fn fail_plain(&self) -> Step {
        if self.aggregation_depth > 0 {
            self.fail("aggregation", "")
        } else {
            self.fail("", "")
        }
    }

    fn expect_end(&self) -> Step {
        if self.peek() == Tok::End {
            Ok(())
        } else {
            self.fail_plain()
        }
    }

    /// operand (binary-operator modifiers operand)*
    fn expr(&mut self) -> Step {
        self.operand()?;
        loop {
            let binary = match self.peek() {
                Tok::Sym(s) => OPERATORS.contains(&s),
                Tok::Word(w) => is_word(&WORD_OPERATORS, w),
                _ => false,
            };
            if !binary {
                return Ok(());
            }
            self.bump();
            if self.word(&["bool"]) {
                self.bump();
            }
            if self.word(&["on", "ignoring"]) {
                self.bump();
                self.grouping()?;
                if self.word(&["group_left", "group_right"]) {
                    self.bump();
                    if self.sym("(") {
                        self.grouping()?;
                    }
                }
            }
            self.operand()?;
        }
    }

    /// A unary-signed primary with its `[…]`, `offset` and `@` modifiers.
    fn operand(&mut self) -> Step {
        while self.sym("-") || self.sym("+") {
            self.bump();
        }
        self.primary()?;
        loop {
            if self.sym("[") {
                self.bump();
                self.brackets()?;
            } else if self.word(&["offset"]) {
                self.bump();
                if self.sym("-") {
                    self.bump();
                }
                match self.peek() {
                    Tok::Duration(_) | Tok::Number(_) => self.bump(),
                    _ => return self.fail("offset", "duration"),
                }
            } else if self.sym("@") {
                self.bump();
                self.at_modifier()?;
            } else {
                return Ok(());
            }
        }
    }

    fn primary(&mut self) -> Step {
        match self.peek() {
            Tok::Number(_) | Tok::Str(_) => {
                self.bump();
                Ok(())
            }
            Tok::Sym("(") => {
                self.bump();
                self.expr()?;
                self.close(")")
            }
            Tok::Sym("{") => self.matchers(),
            Tok::Word(w)
                if is_word(&AGGREGATORS, w)
                    && (self.peek_at(1) == Tok::Sym("(")
                        || matches!(self.peek_at(1), Tok::Word(k) if is_word(&["by", "without"], k))) =>
            {
                self.bump();
                self.aggregation()
            }
            Tok::Word(w)
                if !(is_word(&KEYWORDS, w) || is_word(&WORD_OPERATORS, w))
                    || is_word(&NAME_KEYWORDS, w) =>
            {
                self.bump();
                if self.sym("(") {
                    self.bump();
                    self.arguments()
                } else if self.sym("{") {
                    self.matchers()
                } else {
                    Ok(())
                }
            }
            _ => self.fail_plain(),
        }
    }

    fn close(&mut self, s: &str) -> Step {
        if self.sym(s) {
            self.bump();
            Ok(())
        } else {
            self.fail_plain()
        }
    }

    /// After `name(`: arguments up to `)`.
    fn arguments(&mut self) -> Step {
        if self.sym(")") {
            self.bump();
            return Ok(());
        }
        loop {
            self.expr()?;
            if self.sym(",") {
                self.bump();
                if self.sym(")") {
                    // A trailing comma: the parser names it.
                    self.bump();
                    return Ok(());
                }
            } else {
                return self.close(")");
            }
        }
    }

    /// After the aggregator: `[by|without (…)] (args) [by|without (…)]`.
    fn aggregation(&mut self) -> Step {
        self.aggregation_depth += 1;
        let modifier_first = self.word(&["by", "without"]);
        if modifier_first {
            self.bump();
            self.grouping()?;
        }
        if !self.sym("(") {
            return self.fail("aggregation", "");
        }
        self.bump();
        self.arguments()?;
        self.aggregation_depth -= 1;
        if !modifier_first && self.word(&["by", "without"]) {
            self.bump();
            self.grouping()?;
        }
        Ok(())
    }

    /// `(label, …)` after `by`, `without`, `on`, `ignoring` or a group modifier.
    fn grouping(&mut self) -> Step {
        let context = "grouping opts";
        if !self.sym("(") {
            return self.fail(context, "\"(\"");
        }
        self.bump();
        if self.sym(")") {
            self.bump();
            return Ok(());
        }
        loop {
            if !matches!(self.peek(), Tok::Word(_)) {
                return self.fail(context, "label");
            }
            self.bump();
            if self.sym(")") {
                self.bump();
                return Ok(());
            }
            if !self.sym(",") {
                return self.fail(context, "\",\" or \")\"");
            }
            self.bump();
            if self.sym(")") {
                self.bump();
                return Ok(());
            }
        }
    }

    /// `{name op "value", …}`, at the `{`.
    fn matchers(&mut self) -> Step {
        let context = "label matching";
        self.bump();
        loop {
            if self.sym("}") {
                self.bump();
                return Ok(());
            }
            let quoted = match self.peek() {
                Tok::Word(_) => false,
                Tok::Str(_) => true,
                _ => return self.fail(context, "identifier or \"}\""),
            };
            self.bump();
            if matches!(self.peek(), Tok::Sym("=" | "!=" | "=~" | "!~")) {
                self.bump();
            } else if quoted && matches!(self.peek(), Tok::Sym("," | "}")) {
                // A quoted metric name (`{"x"}`, Prometheus 3.x).
                if self.sym(",") {
                    self.bump();
                }
                continue;
            } else {
                return self.fail(context, "label matching operator");
            }
            if !matches!(self.peek(), Tok::Str(_)) {
                return self.fail(context, "string");
            }
            self.bump();
            if self.sym(",") {
                self.bump();
            } else if !self.sym("}") {
                return self.fail(context, "\",\" or \"}\"");
            }
        }
    }

    /// After `[`: a range `d]` or a subquery `d:[d]]`.
    fn brackets(&mut self) -> Step {
        if !matches!(self.peek(), Tok::Duration(_) | Tok::Number(_)) {
            return self.fail("subquery selector", "duration");
        }
        self.bump();
        if self.sym("]") {
            self.bump();
            return Ok(());
        }
        if !self.sym(":") {
            return self.fail("subquery or range", "\":\" or \"]\"");
        }
        self.bump();
        if matches!(self.peek(), Tok::Duration(_) | Tok::Number(_)) {
            self.bump();
            if !self.sym("]") {
                return self.fail("subquery selector", "\"]\"");
            }
        } else if !self.sym("]") {
            return self.fail("subquery selector", "duration or \"]\"");
        }
        self.bump();
        Ok(())
    }

    /// After `@`: a timestamp or `start()` / `end()`.
    fn at_modifier(&mut self) -> Step {
        let context = "@";
        if self.sym("-") || self.sym("+") {
            self.bump();
        }
        match self.peek() {
            Tok::Number(_) => {
                self.bump();
                Ok(())
            }
            Tok::Word(w) if is_word(&["start", "end"], w) => {
                self.bump();
                for s in ["(", ")"] {
                    if !self.sym(s) {
                        return self.fail(context, "timestamp");
                    }
                    self.bump();
                }
                Ok(())
            }
            _ => self.fail(context, "timestamp"),
        }
    }
}
