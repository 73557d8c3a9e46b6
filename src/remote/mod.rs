//! Remote storage: Prometheus's remote write and remote read protocols, and the OTLP
//! metrics translation.
//!
//! - [`proto`]: the `prompb` messages (remote write 1.0 and 2.0, remote read) and their
//!   Snappy framing, shared by the receiver (`/api/v1/write`), the sender and remote
//!   read (`/api/v1/read`);
//! - [`write`]: the sender, one queue per `remote_write` entry;
//! - [`read`]: the client of the `remote_read` entries, read beside local storage by
//!   ad-hoc queries;
//! - [`otlp_proto`] and [`otlp`]: the OTLP receiver's messages and their translation to
//!   Prometheus series (`/api/v1/otlp/v1/metrics`).

pub mod otlp;
pub mod otlp_proto;
pub mod proto;
pub mod read;
pub mod write;
