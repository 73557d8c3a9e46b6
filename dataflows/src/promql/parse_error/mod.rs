//! Parse errors in Prometheus's words and with its `line:col` position.
//!
//! promql-parser reports many syntax errors as just "invalid promql query", and others
//! without a position or in slightly different words. [`syntax_error`] turns its
//! message into Prometheus's (2.42 checked side by side, `tests/query_api.rs`): where
//! promql-parser says nothing useful, a recognizer over the raw text ([`recognizer`])
//! finds the first token that cannot continue the query and words it the way
//! Prometheus's grammar does (`unexpected identifier "b" in grouping opts, expected ","
//! or ")"`); for other messages the offending construct is found in the raw text.
//!
//! Type errors (an operand, argument or parameter of the wrong type, a scalar
//! comparison without `bool`, a modifier given twice) come from promql-parser with no
//! place; [`type_position`] finds the node Prometheus reports them at.
//!
//! Contract: positions are of the text the user wrote (before the rewrites of
//! `durations.rs` and `rewrite.rs`); a message whose place cannot be found is returned
//! without a position rather than with a wrong one.
//!
//! One idea per file: [`translate`] maps each promql-parser message to Prometheus's
//! wording and place ([`syntax_error`]); [`tokens`] is the query as Prometheus's lexer
//! sees it (tokens, the grammar's word lists, how the parser names a token);
//! [`recognizer`] finds the first unexpected token; [`type_position`] where a type
//! error is.

mod recognizer;
mod tokens;
mod translate;
mod type_position;

pub use translate::syntax_error;

#[cfg(test)]
mod tests {
    use super::tokens::{describe, Tok};

    fn error(q: &str) -> String {
        crate::promql::plan::parse(q).unwrap_err().to_string()
    }

    #[test]
    fn words_tokens_like_prometheus() {
        assert_eq!(describe(Tok::Word("by")), "<by>");
        assert_eq!(describe(Tok::Word("and")), "<op:and>");
        assert_eq!(describe(Tok::Sym("%")), "<op:%>");
        assert_eq!(describe(Tok::Sym("=")), "\"=\"");
        assert_eq!(describe(Tok::Word("a:b")), "metric identifier \"a:b\"");
        assert_eq!(
            describe(Tok::Str("\"abcdefghijklmnop\"")),
            r#"string "\"abcdefghi"..."#
        );
    }

    #[test]
    fn finds_the_first_unexpected_token() {
        // Prometheus 2.42's answers (tests/query_api.rs compares more side by side).
        for (q, want) in [
            (
                "foo bar",
                r#"1:5: parse error: unexpected identifier "bar""#,
            ),
            (
                "sum by (a b) (x)",
                r#"1:11: parse error: unexpected identifier "b" in grouping opts, expected "," or ")""#,
            ),
            (
                "sum(rate(x y))",
                r#"1:12: parse error: unexpected identifier "y" in aggregation"#,
            ),
            (
                r#"x{a="b" c="d"}"#,
                r#"1:9: parse error: unexpected identifier "c" in label matching, expected "," or "}""#,
            ),
            (
                "foo[5m] @ start(1)",
                r#"1:17: parse error: unexpected number "1" in @, expected timestamp"#,
            ),
            ("x % % y", "1:5: parse error: unexpected <op:%>"),
            ("sum(x) by (a) by (b)", "1:15: parse error: unexpected <by>"),
        ] {
            assert_eq!(error(q), want, "{q}");
        }
    }

    #[test]
    fn type_errors_at_the_node_prometheus_names() {
        // Prometheus 2.42's answers (tests/query_api.rs compares more side by side).
        for (q, want) in [
            (
                "foo[5m] + 1",
                "1:1: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "sum by (a) (foo) + foo[1m]",
                "1:20: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "sum(foo[5m])",
                "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
            ),
            (
                "quantile(foo, bar)",
                "1:10: parse error: expected type scalar in aggregation parameter, got instant vector",
            ),
            ("1 > 2", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
            (
                "foo @ 1 offset 1m @ 2",
                "1:1: parse error: @ <timestamp> may not be set multiple times",
            ),
            (
                r#"round(foo, "a")"#,
                r#"1:12: parse error: expected type scalar in call to function "round", got string"#,
            ),
            (
                "foo[5m] offset 1h [1m]",
                "1:19: parse error: ranges only allowed for vector selectors",
            ),
        ] {
            assert_eq!(error(q), want, "{q}");
        }
    }
}
