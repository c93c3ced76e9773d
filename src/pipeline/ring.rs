//! The ring buffer: bounded lock-free MPMC queues (crossbeam's `ArrayQueue`). Pushing never
//! blocks; when the ring is full the clicks are refused and counted, and their redirects
//! answered anyway.
//!
//! Clicks travel in chunks. A serving thread gathers its clicks in a chunk of its own and
//! hands it over when it is full, when a click comes `CHUNK_MAX_AGE_MS` or more after the
//! chunk's first, or when the thread is about to idle (or ends). Pushed one by one, every
//! click had the two serving threads take turns on the queue's tail and wait for a slot last
//! touched by the encoder's core (`perf`: the push was the serving thread's costliest
//! function of its own).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::batch::Facts;
use crate::click::Click;
use crate::metrics::Metrics;

/// Clicks per chunk at most.
pub const CHUNK: usize = 64;
/// A click this much later than its chunk's first hands the chunk over first: a busy
/// thread's chunk does not wait to fill.
const CHUNK_MAX_AGE_MS: u64 = 5;
/// Emptied chunks kept for reuse.
const SPARE_CHUNKS: usize = 256;

pub struct Ring {
    chunks: ArrayQueue<Vec<Click>>,
    /// Clicks in `chunks`: the ring's bound.
    clicks: AtomicUsize,
    capacity: usize,
    /// Chunks the encoder emptied, with their room.
    spare: ArrayQueue<Vec<Click>>,
    metrics: &'static Metrics,
}

impl Ring {
    /// Holds up to `capacity` clicks; counts what it takes and refuses in `metrics`.
    pub fn new(capacity: usize, metrics: &'static Metrics) -> Ring {
        let capacity = capacity.max(1);
        Ring {
            // Every chunk holds a click at least.
            chunks: ArrayQueue::new(capacity),
            clicks: AtomicUsize::new(0),
            capacity,
            spare: ArrayQueue::new(SPARE_CHUNKS),
            metrics,
        }
    }

    /// Pushes one click now, as a chunk of its own (threads that serve redirects buffer
    /// theirs through `push`).
    pub fn push_one(&self, click: Click) {
        self.hand_over(vec![click]);
    }

    /// Takes the chunk, or drops its clicks when the ring is full; counts them either way.
    fn hand_over(&self, chunk: Vec<Click>) {
        let n = chunk.len();
        let refused = if self.clicks.fetch_add(n, Ordering::AcqRel) + n > self.capacity {
            Some(chunk)
        } else {
            self.chunks.push(chunk).err()
        };
        let taken = refused.is_none();
        if let Some(chunk) = refused {
            self.clicks.fetch_sub(n, Ordering::AcqRel);
            self.give_back(chunk);
        }
        self.metrics.record_clicks(taken, n as u64);
    }

    pub fn pop_chunk(&self) -> Option<Vec<Click>> {
        let chunk = self.chunks.pop()?;
        self.clicks.fetch_sub(chunk.len(), Ordering::AcqRel);
        Some(chunk)
    }

    /// Returns an emptied chunk's room for reuse (a gathering thread's, not a single click's).
    pub fn give_back(&self, mut chunk: Vec<Click>) {
        if chunk.capacity() >= CHUNK {
            chunk.clear();
            let _ = self.spare.push(chunk);
        }
    }

    fn fresh(&self) -> Vec<Click> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// Clicks waiting in the ring (not those still gathering in a thread's chunk).
    pub fn len(&self) -> usize {
        self.clicks.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// This thread's chunk, when it serves redirects for a ring.
struct Gathering {
    ring: Arc<Ring>,
    chunk: Vec<Click>,
}

impl Gathering {
    fn flush(&mut self) {
        if !self.chunk.is_empty() {
            let next = self.ring.fresh();
            self.ring
                .hand_over(std::mem::replace(&mut self.chunk, next));
        }
    }
}

impl Drop for Gathering {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static GATHERING: RefCell<Option<Gathering>> = const { RefCell::new(None) };
}

/// Makes this thread gather its clicks for `ring` into chunks. The thread must call `flush`
/// before it idles and `detach` before it ends (a serving runtime's park hook and exit).
pub fn attach(ring: Arc<Ring>) {
    let chunk = ring.fresh();
    GATHERING.set(Some(Gathering { ring, chunk }));
}

/// Hands over this thread's chunk, if it holds clicks.
pub fn flush() {
    GATHERING.with_borrow_mut(|g| {
        if let Some(g) = g {
            g.flush();
        }
    });
}

/// Hands over this thread's chunk and stops gathering.
pub fn detach() {
    drop(GATHERING.take());
}

/// Records a click: into this thread's chunk when it gathers for `ring`, else at once.
pub fn push(ring: &Arc<Ring>, click: Click) {
    let click = GATHERING.with_borrow_mut(|g| match g {
        Some(g) if Arc::ptr_eq(&g.ring, ring) => {
            let stale = g
                .chunk
                .first()
                .is_some_and(|first| click.ts_ms >= first.ts_ms + CHUNK_MAX_AGE_MS);
            if stale {
                g.flush();
            }
            g.chunk.push(click);
            if g.chunk.len() >= CHUNK {
                g.flush();
            }
            None
        }
        _ => Some(click),
    });
    if let Some(click) = click {
        ring.push_one(click);
    }
}

/// The queue of fact rows beside the click ring: lower volume, the same bounded lock-free
/// queue, and also bounded in bytes (an entry may hold a thousand events).
pub struct RowQueue {
    queue: ArrayQueue<Facts>,
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl RowQueue {
    pub fn new(capacity: usize, max_bytes: usize) -> RowQueue {
        RowQueue {
            queue: ArrayQueue::new(capacity),
            bytes: AtomicUsize::new(0),
            max_bytes,
        }
    }

    /// Hands the rows back when the queue is full (the caller answers 503: nothing is
    /// half-stored).
    #[allow(clippy::result_large_err)]
    pub fn push(&self, facts: Facts) -> Result<(), Facts> {
        let n = facts.data.len();
        if self.bytes.fetch_add(n, Ordering::AcqRel) + n > self.max_bytes {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            return Err(facts);
        }
        self.queue.push(facts).inspect_err(|_| {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
        })
    }

    pub fn pop(&self) -> Option<Facts> {
        let facts = self.queue.pop()?;
        self.bytes.fetch_sub(facts.data.len(), Ordering::AcqRel);
        Some(facts)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether `bytes` more would be refused right now (checked before anything is
    /// promised to a caller, e.g. idempotency keys taken).
    pub fn is_full(&self, bytes: usize) -> bool {
        self.queue.is_full() || self.bytes.load(Ordering::Acquire) + bytes > self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::click::Platform;

    fn click(ts_ms: u64) -> Click {
        Click {
            ts_ms,
            ..crate::pipeline::fingerprints::tests::click(Platform::Other)
        }
    }

    /// The clicks waiting in the ring, by chunk, as their times.
    fn chunks(ring: &Ring) -> Vec<Vec<u64>> {
        std::iter::from_fn(|| ring.pop_chunk())
            .map(|chunk| {
                let times = chunk.iter().map(|c| c.ts_ms).collect();
                ring.give_back(chunk);
                times
            })
            .collect()
    }

    #[test]
    fn a_gathering_thread_hands_over_full_stale_and_flushed_chunks() {
        let ring = Arc::new(Ring::new(1_000, crate::metrics::init()));
        attach(ring.clone());
        // (clicks pushed with these times, chunks the ring then holds)
        let cases: [(Vec<u64>, Vec<Vec<u64>>); 3] = [
            // A full chunk goes at once; the rest waits.
            (vec![100; CHUNK + 1], vec![vec![100; CHUNK]]),
            // A click 5 ms after the chunk's first sends the chunk ahead of it.
            (vec![104, 105], vec![vec![100, 104]]),
            (vec![106], vec![]),
        ];
        for (times, want) in cases {
            for t in &times {
                push(&ring, click(*t));
            }
            assert_eq!(chunks(&ring), want, "after pushing {times:?}");
        }
        // Before the thread idles (the runtime's park hook) and when it stops gathering.
        flush();
        assert_eq!(chunks(&ring), vec![vec![105, 106]]);
        push(&ring, click(107));
        detach();
        assert_eq!(chunks(&ring), vec![vec![107]]);
        // Not gathering: each click goes at once.
        push(&ring, click(108));
        assert_eq!(chunks(&ring), vec![vec![108]]);
    }

    #[test]
    fn a_full_ring_refuses_whole_chunks_and_takes_again_once_drained() {
        let ring = Arc::new(Ring::new(3, crate::metrics::init()));
        ring.push_one(click(1));
        ring.push_one(click(2));
        attach(ring.clone());
        push(&ring, click(3));
        push(&ring, click(4));
        flush(); // two more than the one place left: both refused
        ring.push_one(click(5));
        assert_eq!(ring.len(), 3);
        ring.push_one(click(6)); // refused
        assert_eq!(chunks(&ring), vec![vec![1], vec![2], vec![5]]);
        assert_eq!(ring.len(), 0);
        push(&ring, click(7));
        detach();
        assert_eq!(chunks(&ring), vec![vec![7]]);
    }
}
