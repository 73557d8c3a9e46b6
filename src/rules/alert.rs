//! The alert state of an alerting rule, as the rule host holds it: the kernel
//! [`dataflows::render::alert_state`] with the expanded annotations as each alert's
//! payload.
//!
//! Owns nothing but the names: the state machine (Prometheus 2.42's pending → firing →
//! inactive/resolved, `for`, `keep_firing_for`, the 15-minute retention of resolved
//! alerts, `ALERTS`/`ALERTS_FOR_STATE`, sending and resending) is the kernel's, one
//! place for every path; see its module doc for the contract. Its errors become the
//! rule's ([`crate::rules::sinks::RuleError`]: `From<AlertError>`).

use std::collections::BTreeMap;

pub use dataflows::render::alert_state::{
    alerts_series, final_labels, for_state_series, keeps_final_labels_distinct, AlertCore,
    AlertError, AlertState, StepOutput, RESOLVED_RETENTION, RESOLVED_RETENTION_MS,
};

/// An alert's expanded annotations.
pub type Annotations = BTreeMap<String, String>;

/// One alert, with its annotations.
pub type Alert = dataflows::render::alert_state::Alert<Annotations>;

/// An element of the rule's result as an alert candidate, with its annotations.
pub type Candidate = dataflows::render::alert_state::Candidate<Annotations>;

/// The state of one alerting rule.
pub type AlertRuleState = dataflows::render::alert_state::AlertMachine<Annotations>;

/// The copy of a dataflow alert stage's state, with annotations
/// ([`dataflows::render::alerting`]).
pub type AlertMirror = dataflows::render::alerting::AlertMirror<Annotations>;
