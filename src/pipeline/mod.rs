//! The click pipeline: a bounded lock-free ring between the redirect and the flusher, the
//! flusher that enriches and encodes batches, the inserter that writes them to ClickHouse,
//! and the disk spill that keeps them while ClickHouse cannot.

pub mod fingerprints;
pub mod flusher;
pub mod frame;
pub mod inserter;
pub mod ring;
pub mod spill;
pub mod wal;

pub use flusher::{FlushConfig, Flusher};
pub use inserter::SpillStatus;
pub use ring::Ring;
