//! Rules: rule files ([`file`]), the manager that evaluates rule groups, and the
//! restore of alert state after a restart ([`restore`]).

pub mod file;
pub mod manager;
pub mod restore;
pub mod unittest;
