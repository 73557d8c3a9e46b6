//! What the test-script reader finds wrong, as kinds: [`NotationError`] for the
//! value and series notation (also read by `promflow test rules`), [`ScriptProblem`]
//! for the commands around it. A [`super::ScriptError`] adds the line. The texts are
//! what the conformance report and `promflow test rules` print, unchanged.

use std::fmt;

use crate::histogram::CombineError;

/// Why a duration, number, value list, histogram or series text does not read.
#[derive(Clone, Debug, PartialEq)]
pub enum NotationError {
    /// Not a Prometheus duration, or out of range.
    BadDuration(String),
    /// Not a number, `Inf`/`NaN` or a duration.
    BadNumber(String),
    /// An item of a value list (`_xK`, `AxK`, `A+BxK`) that does not read.
    BadItem(String),
    /// `{{…` without its `}}`.
    UnclosedHistogram(String),
    /// The `K` of `{{…}}xK`.
    BadRepeat(std::num::ParseIntError),
    /// `{{H}}+{{D}}xK` where `D` has a coarser schema than `H`.
    SchemaMerge {
        /// `D`'s schema.
        from: i32,
        /// `H`'s schema.
        to: i32,
    },
    /// `{{H}}+{{D}}xK` that cannot be combined otherwise.
    Combine(CombineError),
    /// Not `{{…}}`.
    BadHistogram(String),
    /// A histogram field without `:`.
    BadHistogramField(String),
    /// A histogram list without `]`.
    UnclosedList(String),
    /// An integer histogram field (`schema`, `offset`, `n_offset`) that does not read.
    BadInteger {
        /// The field.
        key: String,
        /// Its text.
        value: String,
    },
    /// Not `unknown`, `reset`, `not_reset` or `gauge`.
    BadCounterResetHint(String),
    /// A histogram field this reader does not know.
    UnknownHistogramField(String),
    /// Values without a series before them.
    NoSeries(String),
    /// `{` without its `}`.
    UnclosedBrace(String),
    /// A label list item that is neither a name nor a quoted string.
    BadLabelList(String),
    /// A label list that ends where a quoted string should be.
    ExpectedQuotedString,
    /// Something else where a quoted string should start.
    ExpectedQuote(char),
    /// A quoted string without its closing quote.
    UnterminatedString,
}

impl fmt::Display for NotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotationError::BadDuration(s) => write!(f, "bad duration {s:?}"),
            NotationError::BadNumber(s) => write!(f, "bad number {s:?}"),
            NotationError::BadItem(item) => write!(f, "bad item {item:?}"),
            NotationError::UnclosedHistogram(s) => write!(f, "unclosed histogram in {s:?}"),
            NotationError::BadRepeat(e) => write!(f, "{e}"),
            NotationError::SchemaMerge { from, to } => write!(
                f,
                "error combining histograms: cannot merge from schema {from} to {to}"
            ),
            NotationError::Combine(e) => write!(f, "error combining histograms: {e:?}"),
            NotationError::BadHistogram(text) => write!(f, "bad histogram {text:?}"),
            NotationError::BadHistogramField(text) => {
                write!(f, "bad histogram field in {text:?}")
            }
            NotationError::UnclosedList(text) => write!(f, "unclosed list in {text:?}"),
            NotationError::BadInteger { key, value } => write!(f, "bad {key} {value:?}"),
            NotationError::BadCounterResetHint(v) => write!(f, "bad counter_reset_hint {v:?}"),
            NotationError::UnknownHistogramField(k) => {
                write!(f, "unknown histogram field {k:?}")
            }
            NotationError::NoSeries(text) => write!(f, "no series in {text:?}"),
            NotationError::UnclosedBrace(text) => write!(f, "unclosed brace in {text:?}"),
            NotationError::BadLabelList(inner) => write!(f, "bad label list {inner:?}"),
            NotationError::ExpectedQuotedString => f.write_str("expected a quoted string"),
            NotationError::ExpectedQuote(c) => write!(f, "expected a quote, found {c:?}"),
            NotationError::UnterminatedString => f.write_str("unterminated string"),
        }
    }
}

impl std::error::Error for NotationError {}

/// Why a script line does not read.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptProblem {
    /// The line's value or series notation.
    Notation(NotationError),
    /// Not `load`, `eval` or `clear`.
    UnknownCommand(String),
    /// Not `load` or `load_with_nhcb`.
    UnknownLoadCommand(String),
    /// `load` alone.
    LoadWithoutInterval,
    /// A start-timestamp line whose offsets include a histogram.
    HistogramInStartLine,
    /// Not one of the `eval*` commands.
    UnknownEvalCommand(String),
    /// Not `instant` or `range`.
    UnknownEvalKind(String),
    /// `eval instant` not followed by `at`.
    ExpectedAt,
    /// `eval range` not followed by `from A to B step S`.
    ExpectedRange,
    /// `eval range from A to B` with B before A.
    RangeEndBeforeStart,
    /// An `eval` line without a query.
    EvalWithoutExpression,
    /// An instant eval expecting a series with several values.
    SeveralValuesForInstant,
    /// An eval expecting both a scalar and series.
    ScalarAndSeries,
    /// `expect range` not followed by `vector from A to B step S`.
    ExpectedRangeVector,
    /// `expect string` without a quoted string.
    BadExpectedString(String),
    /// An `expect` directive this reader does not know.
    UnknownExpectDirective(String),
}

impl From<NotationError> for ScriptProblem {
    fn from(e: NotationError) -> ScriptProblem {
        ScriptProblem::Notation(e)
    }
}

impl fmt::Display for ScriptProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptProblem::Notation(e) => e.fmt(f),
            ScriptProblem::UnknownCommand(word) => write!(f, "unknown command {word:?}"),
            ScriptProblem::UnknownLoadCommand(w) => write!(f, "unknown load command {w:?}"),
            ScriptProblem::LoadWithoutInterval => f.write_str("load needs an interval"),
            ScriptProblem::HistogramInStartLine => {
                f.write_str("histogram in a start-timestamp line")
            }
            ScriptProblem::UnknownEvalCommand(w) => write!(f, "unknown eval command {w:?}"),
            ScriptProblem::UnknownEvalKind(w) => write!(f, "unknown eval kind {w:?}"),
            ScriptProblem::ExpectedAt => f.write_str("expected `at` after `eval instant`"),
            ScriptProblem::ExpectedRange => f.write_str("expected `range from A to B step S`"),
            ScriptProblem::RangeEndBeforeStart => f.write_str("range end before start"),
            ScriptProblem::EvalWithoutExpression => f.write_str("eval without expression"),
            ScriptProblem::SeveralValuesForInstant => {
                f.write_str("several values for an instant eval")
            }
            ScriptProblem::ScalarAndSeries => f.write_str("both a scalar and series expected"),
            ScriptProblem::ExpectedRangeVector => {
                f.write_str("expected `expect range vector from A to B step S`")
            }
            ScriptProblem::BadExpectedString(s) => write!(f, "bad expected string {s}"),
            ScriptProblem::UnknownExpectDirective(d) => {
                write!(f, "unknown expect directive {d:?}")
            }
        }
    }
}
