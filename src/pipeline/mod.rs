//! The click pipeline: a bounded lock-free ring between the redirect and the flusher, and the
//! flusher that enriches, encodes and inserts batches into ClickHouse.

pub mod flusher;
pub mod ring;

pub use flusher::{FlushConfig, Flusher};
pub use ring::Ring;
