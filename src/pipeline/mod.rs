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

/// Lowers the calling thread's scheduling priority (nice 5; on Linux, nice is per thread).
/// The pipeline's threads share cores with the serving threads: at a lower weight they still
/// get a quarter of a contended core (the encoder needs about a tenth), but a redirect that
/// arrives preempts them sooner, which is what the tail latency is made of.
pub fn lower_priority() {
    // SAFETY: setpriority only reads its arguments; `0` is the calling thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) } != 0;
    if failed {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the thread priority");
    }
}
