//! Remote storage: Prometheus's remote write and remote read protocols.
//!
//! - [`proto`]: the `prompb` messages and their Snappy framing, shared by the
//!   receiver (`/api/v1/write`), the sender and remote read (`/api/v1/read`);
//! - [`write`]: the sender, one queue per `remote_write` entry.

pub mod proto;
pub mod write;
