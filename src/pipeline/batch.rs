//! Batches: what the encoder seals and the inserter writes, spills and replays. A batch holds
//! the rows of one kind (one table), carries a random 64-bit id in every row and never spans
//! two months (partitions), so one insert is one atomic block: all of it lands or none.
//!
//! `Builder` is the one way rows become a batch, for the encoder and for write-ahead
//! recovery alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::wal::Wal;
use crate::click::agent::Agent;
use crate::click::row::{self, Captured, Flags};
use crate::time;

/// Which table a batch's rows are for, and how they are encoded. The number is what the
/// spill stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BatchKind {
    /// Clicks as RowBinary rows: what versions before the `Native` encoding spilled.
    ClicksRowBinary = 1,
    /// Install rows without the `variant` column: what versions before it spilled.
    InstallsBeforeVariant = 2,
    Events = 3,
    /// Conversion rows without the dimension columns: what versions before them spilled.
    ConversionsBeforeDimensions = 4,
    /// Clicks as a `Native` block without the `variant` column: what versions before
    /// routing spilled.
    ClicksBeforeVariant = 5,
    /// Clicks as a `Native` block without the `is_anonymous` column: what versions before
    /// fraud protection spilled.
    ClicksBeforeAnonymous = 6,
    /// Install rows without the fraud columns: what versions before fraud protection spilled.
    InstallsBeforeFraud = 7,
    Conversions = 8,
    /// Clicks as a `Native` block.
    Clicks = 9,
    Installs = 10,
    SkanPostbacks = 11,
}

impl BatchKind {
    /// The kinds whose rows arrive through the row queue, in the encoder's order.
    pub const FACTS: [BatchKind; 4] = [
        BatchKind::Installs,
        BatchKind::Events,
        BatchKind::Conversions,
        BatchKind::SkanPostbacks,
    ];

    pub fn from_u8(n: u8) -> Option<BatchKind> {
        Some(match n {
            1 => BatchKind::ClicksRowBinary,
            2 => BatchKind::InstallsBeforeVariant,
            3 => BatchKind::Events,
            4 => BatchKind::ConversionsBeforeDimensions,
            5 => BatchKind::ClicksBeforeVariant,
            6 => BatchKind::ClicksBeforeAnonymous,
            7 => BatchKind::InstallsBeforeFraud,
            8 => BatchKind::Conversions,
            9 => BatchKind::Clicks,
            10 => BatchKind::Installs,
            11 => BatchKind::SkanPostbacks,
            _ => return None,
        })
    }

    pub fn table(self) -> &'static str {
        match self {
            BatchKind::Clicks
            | BatchKind::ClicksBeforeAnonymous
            | BatchKind::ClicksBeforeVariant
            | BatchKind::ClicksRowBinary => "clicks",
            BatchKind::Installs
            | BatchKind::InstallsBeforeFraud
            | BatchKind::InstallsBeforeVariant => "installs",
            BatchKind::Events => "events",
            BatchKind::Conversions | BatchKind::ConversionsBeforeDimensions => "conversions",
            BatchKind::SkanPostbacks => "skan_postbacks",
        }
    }

    /// The columns a row holds, in order (the last is always `batch_id`).
    pub fn columns(self) -> &'static str {
        match self {
            BatchKind::Clicks => row::COLUMNS,
            BatchKind::ClicksBeforeAnonymous => row::COLUMNS_BEFORE_ANONYMOUS,
            BatchKind::ClicksBeforeVariant | BatchKind::ClicksRowBinary => {
                row::COLUMNS_BEFORE_VARIANT
            }
            BatchKind::Installs => crate::attribution::install::COLUMNS,
            BatchKind::InstallsBeforeFraud => crate::attribution::install::COLUMNS_BEFORE_FRAUD,
            BatchKind::InstallsBeforeVariant => crate::attribution::install::COLUMNS_BEFORE_VARIANT,
            BatchKind::Events => crate::conversions::event::COLUMNS,
            BatchKind::Conversions => crate::conversions::conversion::COLUMNS,
            BatchKind::ConversionsBeforeDimensions => {
                crate::conversions::conversion::COLUMNS_BEFORE_DIMENSIONS
            }
            BatchKind::SkanPostbacks => crate::skan::postback::COLUMNS,
        }
    }

    /// The ClickHouse input format of its data.
    pub fn format(self) -> &'static str {
        match self {
            BatchKind::Clicks
            | BatchKind::ClicksBeforeAnonymous
            | BatchKind::ClicksBeforeVariant => "Native",
            _ => "RowBinary",
        }
    }
}

/// Buffers of click batches ClickHouse took, handed back for the next batch: a fresh 10 MB
/// buffer per batch cost the encoder a page fault per 4 KiB (a fifth of its time).
pub type Blocks = Arc<ArrayQueue<Vec<u8>>>;

/// A sealed batch: encoded rows ready to be sent (and re-sent) verbatim.
#[derive(Debug)]
pub struct Batch {
    pub id: u64,
    pub kind: BatchKind,
    pub rows: usize,
    /// First and last UTC day (number) of its rows, to find them again.
    pub first_day: u16,
    pub last_day: u16,
    pub bots: u64,
    pub previews: u64,
    pub data: Bytes,
    /// Clicks per write-ahead segment, to release segments once the batch is durable.
    pub wal: Vec<(u64, u32)>,
    /// Rows per waiting request, to tell each once the batch is durable.
    pub receipts: Vec<(Arc<Receipt>, u32)>,
}

impl Batch {
    /// The batch is in ClickHouse or the spill: release what waits for that.
    pub fn settle(&self, wal: Option<&Wal>) {
        if let Some(w) = wal {
            w.mark_durable(&self.wal);
        }
        for (receipt, rows) in &self.receipts {
            receipt.settle(*rows);
        }
    }
}

/// Fact rows other than clicks (installs, events, conversions) from one request, encoded by
/// the producer with every column but the trailing `batch_id`, which the encoder appends. They
/// travel as one queue entry, so a request's rows are all taken or all refused.
#[derive(Debug)]
pub struct Facts {
    pub kind: BatchKind,
    /// The rows, back to back.
    pub data: Vec<u8>,
    /// For each row: where it ends in `data`, and its time (which picks its partition).
    pub rows: Vec<(u32, u64)>,
    /// Told when every row is durable (in ClickHouse or the spill), for callers that answer
    /// only then.
    pub receipt: Option<Arc<Receipt>>,
}

impl Facts {
    pub fn new(kind: BatchKind) -> Facts {
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

/// Starting buffer of a fact batch (it grows with the batch).
const FACT_BUFFER: usize = 64 << 10;

/// A batch being filled.
pub struct Builder {
    kind: BatchKind,
    id: u64,
    body: Body,
    pub rows: usize,
    first_day: u16,
    last_day: u16,
    month: u32,
    bots: u64,
    previews: u64,
    /// Clicks per write-ahead segment (the encoder counts them as it appends).
    pub wal: Vec<(u64, u32)>,
    receipts: Vec<(Arc<Receipt>, u32)>,
    first_row_at: Instant,
}

/// Clicks are encoded as columns (a `Native` block); fact rows arrive RowBinary-encoded from
/// their producers and are appended as they are.
#[allow(clippy::large_enum_variant)] // one per batch kind, never moved per row
enum Body {
    Rows(Vec<u8>),
    Columns(row::Columns),
}

impl Builder {
    pub fn clicks() -> Builder {
        Builder::new(BatchKind::Clicks, Body::Columns(row::Columns::new()))
    }

    pub fn facts(kind: BatchKind) -> Builder {
        Builder::new(kind, Body::Rows(Vec::with_capacity(FACT_BUFFER)))
    }

    fn new(kind: BatchKind, body: Body) -> Builder {
        Builder {
            kind,
            id: rand::random(),
            body,
            rows: 0,
            first_day: u16::MAX,
            last_day: 0,
            month: 0,
            bots: 0,
            previews: 0,
            wal: Vec::new(),
            receipts: Vec::new(),
            first_row_at: Instant::now(),
        }
    }

    pub fn kind(&self) -> BatchKind {
        self.kind
    }

    /// Whether a row at `ts_ms` must go into a fresh batch (another month: one batch, one
    /// partition, one atomic block).
    pub fn other_month(&self, ts_ms: u64) -> bool {
        // A day the batch already holds is in its month: only a new day needs the calendar.
        let day = (ts_ms / time::MS_PER_DAY) as u16;
        self.rows > 0
            && !(self.first_day..=self.last_day).contains(&day)
            && time::month_of(ts_ms) != self.month
    }

    /// Accounts for a row at `ts_ms` about to be appended.
    fn add_row(&mut self, ts_ms: u64) {
        if self.rows == 0 {
            self.first_row_at = Instant::now();
            self.month = time::month_of(ts_ms);
        }
        let day = (ts_ms / time::MS_PER_DAY) as u16;
        self.first_day = self.first_day.min(day);
        self.last_day = self.last_day.max(day);
        self.rows += 1;
    }

    /// Appends a click (the caller seals first when `other_month` says so).
    pub fn push_click(&mut self, click: &Captured<'_>, agent: &Agent) -> Flags {
        self.add_row(click.ts_ms);
        let Body::Columns(columns) = &mut self.body else {
            unreachable!("click batches hold columns")
        };
        let flags = columns.push(click, agent);
        self.bots += flags.is_bot as u64;
        self.previews += flags.is_preview as u64;
        flags
    }

    /// Appends one fact row (`batch_id` added here), counted against `receipt`.
    pub fn push_fact(&mut self, row: &[u8], ts_ms: u64, receipt: Option<&Arc<Receipt>>) {
        self.add_row(ts_ms);
        let Body::Rows(buf) = &mut self.body else {
            unreachable!("fact batches hold rows")
        };
        buf.extend_from_slice(row);
        buf.extend_from_slice(&self.id.to_le_bytes());
        if let Some(receipt) = receipt {
            match self.receipts.last_mut() {
                Some((r, n)) if Arc::ptr_eq(r, receipt) => *n += 1,
                _ => self.receipts.push((receipt.clone(), 1)),
            }
        }
    }

    /// Whether the batch reached `max_rows` rows or `max_bytes` bytes.
    pub fn full(&self, max_rows: usize, max_bytes: usize) -> bool {
        let bytes = match &self.body {
            Body::Rows(buf) => buf.len(),
            Body::Columns(columns) => columns.bytes(),
        };
        self.rows >= max_rows || bytes >= max_bytes
    }

    /// Whether its first row is `period` old.
    pub fn due(&self, period: Duration) -> bool {
        self.rows > 0 && self.first_row_at.elapsed() >= period
    }

    /// The batch so far, leaving an empty one of the same kind (a click block's buffer comes
    /// from `blocks` when one is there).
    pub fn seal(&mut self, blocks: &Blocks) -> Batch {
        let data = match &mut self.body {
            Body::Rows(buf) => std::mem::replace(buf, Vec::with_capacity(FACT_BUFFER)),
            Body::Columns(columns) => columns.take_block(self.id, blocks.pop().unwrap_or_default()),
        };
        let body = std::mem::replace(&mut self.body, Body::Rows(Vec::new()));
        let done = std::mem::replace(self, Builder::new(self.kind, body));
        Batch {
            id: done.id,
            kind: done.kind,
            rows: done.rows,
            first_day: done.first_day,
            last_day: done.last_day,
            bots: done.bots,
            previews: done.previews,
            data: Bytes::from(data),
            wal: done.wal,
            receipts: done.receipts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_numbers() {
        for n in 0..=u8::MAX {
            if let Some(kind) = BatchKind::from_u8(n) {
                assert_eq!(kind as u8, n);
            }
        }
        // (kind, table, format)
        let cases = [
            (BatchKind::Clicks, "clicks", "Native"),
            (BatchKind::ClicksBeforeVariant, "clicks", "Native"),
            (BatchKind::ClicksBeforeAnonymous, "clicks", "Native"),
            (BatchKind::InstallsBeforeFraud, "installs", "RowBinary"),
            (BatchKind::ClicksRowBinary, "clicks", "RowBinary"),
            (BatchKind::Installs, "installs", "RowBinary"),
            (BatchKind::InstallsBeforeVariant, "installs", "RowBinary"),
            (BatchKind::Events, "events", "RowBinary"),
            (BatchKind::Conversions, "conversions", "RowBinary"),
            (
                BatchKind::ConversionsBeforeDimensions,
                "conversions",
                "RowBinary",
            ),
            (BatchKind::SkanPostbacks, "skan_postbacks", "RowBinary"),
        ];
        for (kind, table, format) in cases {
            assert_eq!(BatchKind::from_u8(kind as u8), Some(kind));
            assert_eq!((kind.table(), kind.format()), (table, format));
            assert!(kind.columns().ends_with("batch_id"), "{kind:?}");
        }
        assert_eq!(BatchKind::from_u8(0), None);
        assert_eq!(BatchKind::from_u8(12), None);
        assert!(BatchKind::Clicks.columns().contains("is_anonymous"));
        assert!(!BatchKind::ClicksBeforeAnonymous
            .columns()
            .contains("is_anonymous"));
        assert!(BatchKind::ClicksBeforeAnonymous
            .columns()
            .contains("variant"));
        assert!(BatchKind::Installs.columns().contains("fraud_reasons"));
        assert!(!BatchKind::InstallsBeforeFraud
            .columns()
            .contains("fraud_reasons"));
        assert!(!BatchKind::ClicksBeforeVariant.columns().contains("variant"));
        assert!(!BatchKind::InstallsBeforeVariant
            .columns()
            .contains("variant"));
        assert!(!BatchKind::ConversionsBeforeDimensions
            .columns()
            .contains("variant"));
    }

    #[test]
    fn batches_stay_within_a_month() {
        let mut b = Builder::facts(BatchKind::Events);
        let jan31 = 1_801_440_000_000 - 1; // 2027-01-31T23:59:59.999Z
        assert!(!b.other_month(jan31), "an empty batch takes any row");
        b.push_fact(b"row", jan31, None);
        assert!(!b.other_month(jan31 - time::MS_PER_DAY));
        assert!(b.other_month(jan31 + 1), "February is another partition");
        let batch = b.seal(&Arc::new(ArrayQueue::new(1)));
        assert_eq!((batch.rows, batch.kind), (1, BatchKind::Events));
        assert_eq!(&batch.data[..3], b"row");
        assert_eq!(&batch.data[3..], batch.id.to_le_bytes());
        assert_eq!(b.rows, 0, "sealing leaves an empty batch");
    }
}
