//! How Sluice's threads ask the Linux scheduler to treat them (both settings are per thread).

/// Lowers the calling thread's scheduling priority (nice 5).
/// The pipeline's threads share cores with the serving threads: at a lower weight they still
/// get a quarter of a contended core (the encoder needs about a tenth), but their turns are
/// shorter, so a serving thread with requests waiting gets the core back sooner; that wait
/// is what the tail latency is made of. (Putting them under `SCHED_BATCH` as well measured
/// no gain: loadtest/RESULTS.md.)
pub fn lower_priority() {
    // SAFETY: setpriority only reads its arguments; `0` is the calling thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) } != 0;
    if failed {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the thread priority");
    }
}

/// Puts the calling (serving) thread under `SCHED_BATCH`: same weight, but a request that
/// wakes it does not preempt the thread running on its core, so under load the requests of
/// many connections are ready by the time it runs and one wake-up serves them all. Without
/// it, saturated, the thread woke for every ~3 requests and each sleep and wake-up cost CPU
/// on its side and on the client's. An idle core still runs it at once, so at moderate load
/// latency is unchanged (measured in loadtest/RESULTS.md).
pub fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads its arguments; `0` is the calling thread.
    let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0;
    if failed {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not put a serving thread under SCHED_BATCH");
    }
}
