//! Rules: rule files ([`file`]), groups registered over HTTP ([`registry`]), the
//! manager that evaluates rule groups, and the restore of alert state after a restart
//! ([`restore`]).

pub mod alert;
pub mod file;
pub mod manager;
pub mod registry;
pub mod restore;
pub mod template;
pub mod unittest;
