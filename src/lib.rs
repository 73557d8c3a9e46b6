//! promflow: a Prometheus-compatible monitoring engine on timely dataflow.
//!
//! The data path reads top to bottom: [`config`] → [`discovery`] (target groups) →
//! [`scrape`] (targets, loops, the exposition parser) → [`relabel`] → [`ingest`]
//! (watermark, write path) →
//! [`storage`] and the `dataflows` crate → [`api`] (HTTP). [`service`] owns the
//! running pieces; `main.rs` is the CLI. Every outgoing HTTP client (scrapes,
//! Alertmanagers, notifier receivers) is built by [`http_client`].

// No unsafe code anywhere in promflow: the compiler holds us to it.
#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod api;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod exposition;
pub mod flags;
pub mod holdback;
pub mod http_client;
pub mod ingest;
pub mod logging;
pub mod notifier;
pub mod os_error;
pub mod process_stats;
pub mod relabel;
pub mod remote;
pub mod rules;
pub mod scrape;
pub mod selfmetrics;
pub mod service;
pub mod state_file;
pub mod storage;
