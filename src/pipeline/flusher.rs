//! The flusher: an encoder thread drains the ring, enriches each click and appends it to the
//! current batch's columns (sent as one `Native` block; fact rows arrive RowBinary-encoded
//! and are appended as they are); a batch is sealed on the first of max rows, max
//! bytes or the flush period (counted from its first row), and handed to the inserter
//! (`inserter.rs`), which writes it to ClickHouse or, failing that, to the disk spill.
//!
//! Each batch carries a random 64-bit id in every row and never spans two partitions
//! (months), so one insert is one atomic block: all of a batch lands or none of it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clickhouse::Client;
use crossbeam_queue::ArrayQueue;
use tokio::sync::mpsc;
use tracing::error;

use super::fingerprints::{Fingerprint, Handover};
use super::inserter::{Inserter, SpillStatus};
use super::ring::{Facts, Receipt, RowQueue};
use super::wal::Wal;
use super::Ring;
use crate::click::enrich::Enricher;
use crate::click::row;
use crate::click::row::Captured;
use crate::metrics::Metrics;
use crate::time;

#[derive(Clone)]
pub struct FlushConfig {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub period: Duration,
    pub spill_dir: PathBuf,
    pub spill_max_bytes: u64,
    /// The write-ahead log, when on: batches release its segments once durable.
    pub wal: Option<Arc<Wal>>,
    /// Write-ahead segments an earlier run left, to recover.
    pub wal_leftovers: Vec<(u64, PathBuf)>,
    /// Where fingerprints of mobile clicks go (the Redis writer).
    pub fingerprints: Option<Handover>,
}

/// Buffers of click batches ClickHouse took, handed back for the next batch: a fresh 10 MB
/// buffer per batch cost the encoder a page fault per 4 KiB (a fifth of its time).
pub type Blocks = Arc<ArrayQueue<Vec<u8>>>;

/// A sealed batch: encoded rows ready to be sent (and re-sent) verbatim.
#[derive(Debug)]
pub struct Batch {
    pub id: u64,
    /// Which table the rows are for (the spill keeps batches of every kind).
    pub kind: u8,
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

/// Clicks as a `Native` block.
pub const KIND_CLICKS: u8 = 5;
/// Clicks as RowBinary rows: what versions before the `Native` encoding spilled.
pub const KIND_CLICKS_ROWBINARY: u8 = 1;
pub const KIND_INSTALLS: u8 = 2;
pub const KIND_EVENTS: u8 = 3;
pub const KIND_CONVERSIONS: u8 = 4;
/// The fact kinds that arrive through the row queue, in the encoder's order.
const FACT_KINDS: [u8; 3] = [KIND_INSTALLS, KIND_EVENTS, KIND_CONVERSIONS];
/// Starting buffer of a fact batch (it grows with the batch).
const FACT_BUFFER: usize = 64 << 10;

/// What shutdown achieved.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushReport {
    pub lost_rows: u64,
}

pub struct Flusher {
    stop: Arc<AtomicBool>,
    deadline: Arc<OnceLock<Instant>>,
    encoder: JoinHandle<()>,
    inserter: tokio::task::JoinHandle<FlushReport>,
}

/// Sealed batches waiting for the inserter. It takes them even while an insert is in flight,
/// so this fills only when neither ClickHouse nor the spill can take batches.
const PENDING_BATCHES: usize = 8;
/// Clicks drained per pass before the encoder re-checks its seal conditions.
const DRAIN_CHUNK: usize = 4096;
/// How long the encoder naps when the ring is empty: each nap is a context switch on a core the
/// serving threads want (1 ms cost 0.25 µs per click at 40k clicks/s); clicks wait ≤ 5 ms more.
const IDLE_SLEEP: Duration = Duration::from_millis(5);

impl Flusher {
    pub fn start(
        ring: Arc<Ring>,
        rows: Arc<RowQueue>,
        enricher: Enricher,
        ch: Client,
        cfg: FlushConfig,
        spill_status: Arc<SpillStatus>,
        metrics: &'static Metrics,
    ) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel(PENDING_BATCHES);
        let blocks: Blocks = Arc::new(ArrayQueue::new(2));
        let inserter = Inserter::new(
            ch,
            &cfg,
            spill_status,
            deadline.clone(),
            blocks.clone(),
            metrics,
        );
        let encoder = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-encoder".into())
                .spawn(move || {
                    crate::scheduling::lower_priority();
                    encode_loop(&ring, &rows, enricher, &cfg, &stop, tx, &blocks, metrics)
                })
                .expect("spawn encoder thread")
        };
        let inserter = tokio::spawn(inserter.run(rx));
        Flusher {
            stop,
            deadline,
            encoder,
            inserter,
        }
    }

    /// Drains the ring into ClickHouse or the spill (both durable). Only batches that could
    /// go to neither by `timeout` are reported lost.
    pub async fn shutdown(self, timeout: Duration) -> FlushReport {
        let _ = self.deadline.set(Instant::now() + timeout);
        self.stop.store(true, Ordering::Release);
        let encoder = self.encoder;
        if tokio::task::spawn_blocking(move || encoder.join())
            .await
            .is_err()
        {
            error!("encoder thread panicked");
        }
        self.inserter.await.unwrap_or_else(|error| {
            error!(%error, "inserter task failed");
            FlushReport::default()
        })
    }
}

struct Building {
    kind: u8,
    id: u64,
    body: Body,
    rows: usize,
    first_day: u16,
    last_day: u16,
    month: u32,
    bots: u64,
    previews: u64,
    wal: Vec<(u64, u32)>,
    receipts: Vec<(Arc<Receipt>, u32)>,
    first_row_at: Instant,
}

/// Clicks are encoded by the flusher as columns (a `Native` block); fact rows arrive
/// RowBinary-encoded from their producers and are appended as they are.
#[allow(clippy::large_enum_variant)] // one per batch kind, never moved per row
enum Body {
    Rows(Vec<u8>),
    Columns(row::Columns),
}

impl Building {
    fn new(kind: u8, body: Body) -> Building {
        Building {
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

    /// Whether a row at `ts_ms` must go into a fresh batch (another month: one batch, one
    /// partition, one atomic block).
    fn other_month(&self, ts_ms: u64) -> bool {
        // A day the batch already holds is in its month: only a new day needs the calendar.
        let day = (ts_ms / time::MS_PER_DAY) as u16;
        self.rows > 0
            && !(self.first_day..=self.last_day).contains(&day)
            && time::month_of(ts_ms) != self.month
    }

    /// Accounts for a row at `ts_ms` about to be appended to `buf`.
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

    /// Appends one request's fact rows, sealing (through `send`) whenever a month changes
    /// or the batch fills.
    fn append_facts(&mut self, facts: &Facts, cfg: &FlushConfig, send: &dyn Fn(&mut Building)) {
        let mut start = 0;
        for &(end, ts_ms) in &facts.rows {
            if self.other_month(ts_ms) {
                send(self);
            }
            self.add_row(ts_ms);
            let Body::Rows(buf) = &mut self.body else {
                unreachable!("fact batches hold rows")
            };
            buf.extend_from_slice(&facts.data[start as usize..end as usize]);
            buf.extend_from_slice(&self.id.to_le_bytes());
            start = end;
            if let Some(receipt) = &facts.receipt {
                match self.receipts.last_mut() {
                    Some((r, n)) if Arc::ptr_eq(r, receipt) => *n += 1,
                    _ => self.receipts.push((receipt.clone(), 1)),
                }
            }
            if self.full(cfg) {
                send(self);
            }
        }
    }

    fn full(&self, cfg: &FlushConfig) -> bool {
        let bytes = match &self.body {
            Body::Rows(buf) => buf.len(),
            Body::Columns(columns) => columns.bytes(),
        };
        self.rows >= cfg.max_rows || bytes >= cfg.max_bytes
    }

    fn due(&self, cfg: &FlushConfig) -> bool {
        self.rows > 0 && self.first_row_at.elapsed() >= cfg.period
    }

    fn seal(&mut self, blocks: &Blocks) -> Batch {
        let data = match &mut self.body {
            Body::Rows(buf) => std::mem::replace(buf, Vec::with_capacity(FACT_BUFFER)),
            Body::Columns(columns) => columns.take_block(self.id, blocks.pop().unwrap_or_default()),
        };
        let body = std::mem::replace(&mut self.body, Body::Rows(Vec::new()));
        let done = std::mem::replace(self, Building::new(self.kind, body));
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

#[allow(clippy::too_many_arguments)]
fn encode_loop(
    ring: &Ring,
    rows: &RowQueue,
    mut enricher: Enricher,
    cfg: &FlushConfig,
    stop: &AtomicBool,
    tx: mpsc::Sender<Batch>,
    blocks: &Blocks,
    metrics: &'static Metrics,
) {
    let mut clicks = Building::new(KIND_CLICKS, Body::Columns(row::Columns::new()));
    let mut facts =
        FACT_KINDS.map(|kind| Building::new(kind, Body::Rows(Vec::with_capacity(FACT_BUFFER))));
    let mut fingerprints = Vec::new();
    let send = |b: &mut Building| {
        let batch = b.seal(blocks);
        metrics.batches_pending.increment(1.0);
        if tx.blocking_send(batch).is_err() {
            error!("inserter stopped; batch not written");
        }
    };
    loop {
        let mut popped = 0;
        while popped < DRAIN_CHUNK {
            let Some(mut chunk) = ring.pop_chunk() else {
                break;
            };
            popped += chunk.len();
            for click in chunk.drain(..) {
                if clicks.other_month(click.ts_ms) {
                    send(&mut clicks);
                }
                clicks.add_row(click.ts_ms);
                let agent = enricher.agent(click.texts.user_agent());
                let captured =
                    Captured::of(&click, enricher.ip_hash(click.ip), enricher.place(click.ip));
                let Body::Columns(columns) = &mut clicks.body else {
                    unreachable!("click batches hold columns")
                };
                let flags = columns.push(&captured, &agent);
                clicks.bots += flags.is_bot as u64;
                clicks.previews += flags.is_preview as u64;
                if click.wal_segment != 0 {
                    match clicks.wal.last_mut() {
                        Some((seq, n)) if *seq == click.wal_segment => *n += 1,
                        _ => clicks.wal.push((click.wal_segment, 1)),
                    }
                }
                if cfg.fingerprints.is_some() {
                    let (ip_hash, human) = (captured.ip_hash, !flags.is_bot && !flags.is_preview);
                    let country = Fingerprint::country_code(captured.place.country);
                    fingerprints.extend(Fingerprint::of(
                        click,
                        ip_hash,
                        country,
                        human,
                        &agent.browser,
                    ));
                }
                if clicks.full(cfg) {
                    send(&mut clicks);
                }
            }
            ring.give_back(chunk);
        }
        // One hand-over per drain, not per click: each send may wake the writer's runtime,
        // and on a busy core those wakeups cost more than the writes.
        if let (Some(writer), false) = (&cfg.fingerprints, fingerprints.is_empty()) {
            if let Err(n) = writer.send(&mut fingerprints) {
                metrics.fingerprints_dropped.increment(n as u64);
            }
        }
        while let Some(fact) = rows.pop() {
            popped += 1;
            if let Some(b) = facts.iter_mut().find(|b| b.kind == fact.kind) {
                b.append_facts(&fact, cfg, &send);
            }
        }
        for b in std::iter::once(&mut clicks).chain(facts.iter_mut()) {
            if b.due(cfg) {
                send(b);
            }
        }
        if popped == 0 {
            metrics.ring_depth.set(0.0);
            if stop.load(Ordering::Acquire) && ring.is_empty() && rows.is_empty() {
                for b in std::iter::once(&mut clicks).chain(facts.iter_mut()) {
                    if b.rows > 0 {
                        send(b);
                    }
                }
                return;
            }
            std::thread::sleep(IDLE_SLEEP);
        } else {
            metrics.ring_depth.set(ring.len() as f64);
        }
    }
}
