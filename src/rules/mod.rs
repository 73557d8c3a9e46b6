//! Rules: rule files ([`file`]) and the manager that evaluates rule groups.

pub mod file;
pub mod manager;
pub mod unittest;
