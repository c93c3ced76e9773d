//! The ring buffer: a bounded lock-free MPMC queue (crossbeam's `ArrayQueue`). Pushing never
//! blocks and never allocates; when it is full the click is refused and counted, and the
//! redirect is answered anyway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use tokio::sync::oneshot;

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

/// Fact rows other than clicks (installs, events, conversions) from one request, encoded by
/// the producer with every column but the trailing `batch_id`, which the encoder appends. They
/// travel as one queue entry, so a request's rows are all taken or all refused.
#[derive(Debug)]
pub struct Facts {
    pub kind: u8,
    /// The rows, back to back.
    pub data: Vec<u8>,
    /// For each row: where it ends in `data`, and its time (which picks its partition).
    pub rows: Vec<(u32, u64)>,
    /// Told when every row is durable (in ClickHouse or the spill), for callers that answer
    /// only then.
    pub receipt: Option<Arc<Receipt>>,
}

impl Facts {
    pub fn new(kind: u8) -> Facts {
        Facts {
            kind,
            data: Vec::new(),
            rows: Vec::new(),
            receipt: None,
        }
    }

    /// Marks the end of a row just encoded into `data`.
    pub fn end_row(&mut self, ts_ms: u64) {
        self.rows.push((self.data.len() as u32, ts_ms));
    }

    /// Asks to be told when every row is durable.
    pub fn with_receipt(mut self) -> (Facts, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        self.receipt = Some(Arc::new(Receipt {
            remaining: AtomicUsize::new(self.rows.len()),
            done: Mutex::new(Some(tx)),
        }));
        (self, rx)
    }
}

/// Counts a request's rows down as the batches holding them become durable. When rows are
/// lost instead (shutdown past its deadline), the last holder drops it and the waiter sees
/// the channel closed.
#[derive(Debug)]
pub struct Receipt {
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Receipt {
    pub fn settle(&self, rows: u32) {
        let rows = rows as usize;
        if self.remaining.fetch_sub(rows, Ordering::AcqRel) == rows {
            if let Some(tx) = self.done.lock().take() {
                let _ = tx.send(());
            }
        }
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
