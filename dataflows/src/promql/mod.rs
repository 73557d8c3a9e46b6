//! PromQL: the test-script reader, the plan (lowered from promql-parser's AST) and a
//! reference evaluator that computes a plan at an instant from stored samples.
//!
//! The reference evaluator is the oracle that maintained dataflow operators are
//! checked against; it follows Prometheus 3.x semantics (left-open windows).

pub mod conformance;
pub mod depth;
pub mod durations;
pub mod eval;
pub mod parse_error;
pub mod plan;
pub mod rewrite;
pub mod testscript;
pub mod trim;
