//! promflow: a Prometheus-compatible monitoring engine on timely/differential dataflow.

pub mod config;
