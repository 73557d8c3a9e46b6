//! Alerting: what happens to an alerting rule's output.
//!
//! [`state`] is the per-rule alert state machine (pending → firing → resolved),
//! [`template`] expands annotations and labels (Go text/template with Prometheus's
//! functions), [`notifier`] sends alerts to Alertmanagers (API v2).
//!
//! Not here yet: the built-in notifier (route tree, grouping, Slack/Pushover/webhook
//! receivers) of issue 5 item 5; alerts go to Alertmanager only for now.

pub mod notifier;
pub mod state;
pub mod template;
