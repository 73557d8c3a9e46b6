//! Rules: rule evaluation and alert state, where the alert path starts (Prometheus's
//! `rules/` package).
//!
//! Rule files ([`file`]) and groups registered over HTTP ([`registry`]) become
//! [`group::GroupState`]s, evaluated by one [`runner`] thread per group under the
//! [`manager`] (reload, which results come from the dataflow and which from storage);
//! alerting rules step [`alert`] state (inactive → pending → firing → resolved) with
//! labels and annotations expanded by [`template`]; [`restore`] brings alert state
//! back after a restart; [`metrics`] counts evaluations and iterations as Prometheus's
//! `prometheus_rule_*` metrics. Evaluation reads through and writes to the traits in
//! [`sinks`]: alerts due for sending go to an [`sinks::AlertSink`], implemented
//! downstream by the notifier and the built-in Alertmanager. [`unittest`] is
//! `promflow test rules` (promtool's rule unit tests).

pub mod alert;
pub mod file;
pub mod group;
pub mod manager;
pub mod metrics;
pub mod options;
pub mod registry;
pub mod restore;
pub mod runner;
pub mod sinks;
#[cfg(test)]
mod stage_equivalence;
pub mod template;
pub mod unittest;
