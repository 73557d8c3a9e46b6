//! Rules: rule files ([`file`]), groups registered over HTTP ([`registry`]) and the
//! manager that evaluates rule groups.

pub mod file;
pub mod manager;
pub mod registry;
pub mod unittest;
