//! The ring buffer: a bounded lock-free MPMC queue (crossbeam's `ArrayQueue`). Pushing never
//! blocks and never allocates; when it is full the click is refused and counted, and the
//! redirect is answered anyway.

use crossbeam_queue::ArrayQueue;

use crate::click::Click;

pub struct Ring {
    queue: ArrayQueue<Click>,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            queue: ArrayQueue::new(capacity),
        }
    }

    /// Hands the click back when the ring is full (moved back, not boxed: the hot path
    /// never allocates for a refusal).
    #[allow(clippy::result_large_err)]
    #[inline]
    pub fn push(&self, click: Click) -> Result<(), Click> {
        self.queue.push(click)
    }

    #[inline]
    pub fn pop(&self) -> Option<Click> {
        self.queue.pop()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

/// A fact row other than a click (an install today), encoded by whoever produced it with
/// every column but the trailing `batch_id`, which the encoder appends.
#[derive(Debug)]
pub struct FactRow {
    pub kind: u8,
    pub ts_ms: u64,
    pub row: Vec<u8>,
}

/// The queue of fact rows beside the click ring: low volume, same bounded lock-free queue.
pub struct RowQueue {
    queue: ArrayQueue<FactRow>,
}

impl RowQueue {
    pub fn new(capacity: usize) -> RowQueue {
        RowQueue {
            queue: ArrayQueue::new(capacity),
        }
    }

    /// Hands the row back when the queue is full (the caller answers 503: nothing is
    /// half-stored).
    #[allow(clippy::result_large_err)]
    pub fn push(&self, row: FactRow) -> Result<(), FactRow> {
        self.queue.push(row)
    }

    pub fn pop(&self) -> Option<FactRow> {
        self.queue.pop()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }
}
