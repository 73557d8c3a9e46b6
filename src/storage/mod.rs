//! Storage: where samples live after they are scraped, for queries and history.
//!
//! Today this is an in-memory head of recent samples per series ([`head::Head`]),
//! trimmed to a retention window. The storage issue makes it durable (WAL, compressed
//! chunks, persisted blocks) behind the same append/select interface.

pub mod head;

pub use head::{AppendOutcome, Head};
