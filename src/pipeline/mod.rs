//! The click pipeline: a bounded lock-free ring between the redirect and the flusher, the
//! flusher that enriches and encodes batches (`batch.rs`), the inserter that writes them to
//! ClickHouse (`sql.rs` holds every statement), and the disk spill that keeps them while
//! ClickHouse cannot.

pub mod batch;
pub mod fingerprints;
pub mod flusher;
pub mod frame;
pub mod inserter;
pub mod ring;
pub mod spill;
pub mod sql;
pub mod wal;

pub use flusher::{FlushConfig, Flusher};
pub use inserter::SpillStatus;
pub use ring::Ring;
