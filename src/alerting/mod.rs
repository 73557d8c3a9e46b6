//! Alerting: what happens to an alerting rule's output.
//!
//! [`state`] is the per-rule alert state machine (pending → firing → resolved),
//! [`template`] expands annotations and labels (Go text/template with Prometheus's
//! functions), [`notifier`] sends alerts to Alertmanagers (API v2), [`alertmanagers`]
//! resolves which Alertmanagers those are from their discovered targets.
//!
//! The built-in notifier (route tree, grouping, Slack/Pushover/webhook receivers) is
//! [`crate::notify`]; the rule manager's alerts reach it beside the Alertmanager sender
//! through [`crate::notify::sink::AlertFanOut`].

pub mod alertmanagers;
pub mod notifier;
pub mod state;
pub mod template;
