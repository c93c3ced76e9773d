//! The flusher: an encoder thread drains the ring, enriches each click and encodes it as a
//! RowBinary row into the current batch; a batch is sealed on the first of max rows, max
//! bytes or the flush period (counted from its first row), and handed to an async inserter
//! that writes it to ClickHouse, retrying with backoff until it lands.
//!
//! Each batch carries a random 64-bit id in every row and never spans two partitions (months),
//! so one insert is one atomic block: before a retry the inserter asks ClickHouse whether the
//! batch already landed (an insert that timed out may have succeeded) and never inserts it
//! twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clickhouse::Client;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::Ring;
use crate::click::enrich::Enricher;
use crate::click::row;
use crate::metrics::Metrics;
use crate::time;

#[derive(Debug, Clone)]
pub struct FlushConfig {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub period: Duration,
}

/// A sealed batch: encoded rows ready to be sent (and re-sent) verbatim.
#[derive(Debug)]
pub struct Batch {
    pub id: u64,
    pub rows: usize,
    /// First and last UTC day (number) of its rows, to find them again.
    pub first_day: u16,
    pub last_day: u16,
    pub bots: u64,
    pub previews: u64,
    pub data: Bytes,
}

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

/// Sealed batches waiting for the inserter. When ClickHouse is slow this fills, the encoder
/// waits, and the ring absorbs the rest.
const PENDING_BATCHES: usize = 8;
/// Clicks drained per pass before the encoder re-checks its seal conditions.
const DRAIN_CHUNK: usize = 4096;
const IDLE_SLEEP: Duration = Duration::from_millis(1);

impl Flusher {
    pub fn start(
        ring: Arc<Ring>,
        enricher: Enricher,
        ch: Client,
        cfg: FlushConfig,
        metrics: &'static Metrics,
    ) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::channel(PENDING_BATCHES);
        let encoder = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-encoder".into())
                .spawn(move || encode_loop(&ring, enricher, &cfg, &stop, tx, metrics))
                .expect("spawn encoder thread")
        };
        let inserter = tokio::spawn(insert_loop(ch, rx, deadline.clone(), metrics));
        Flusher {
            stop,
            deadline,
            encoder,
            inserter,
        }
    }

    /// Drains the ring into ClickHouse. Retries stop at `timeout`; what is then still
    /// unwritten is reported as lost (the disk spill removes that case).
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
    id: u64,
    buf: Vec<u8>,
    rows: usize,
    first_day: u16,
    last_day: u16,
    month: u32,
    bots: u64,
    previews: u64,
    first_row_at: Instant,
}

impl Building {
    fn new(capacity: usize) -> Building {
        Building {
            id: rand::random(),
            buf: Vec::with_capacity(capacity),
            rows: 0,
            first_day: u16::MAX,
            last_day: 0,
            month: 0,
            bots: 0,
            previews: 0,
            first_row_at: Instant::now(),
        }
    }
}

fn encode_loop(
    ring: &Ring,
    mut enricher: Enricher,
    cfg: &FlushConfig,
    stop: &AtomicBool,
    tx: mpsc::Sender<Batch>,
    metrics: &'static Metrics,
) {
    let initial = cfg.max_bytes.min(16 << 20);
    let mut b = Building::new(initial);
    let seal = |b: &mut Building| {
        let done = std::mem::replace(b, Building::new(initial));
        let batch = Batch {
            id: done.id,
            rows: done.rows,
            first_day: done.first_day,
            last_day: done.last_day,
            bots: done.bots,
            previews: done.previews,
            data: Bytes::from(done.buf),
        };
        metrics.batches_pending.increment(1.0);
        if tx.blocking_send(batch).is_err() {
            error!("inserter stopped; batch not written");
        }
    };
    loop {
        let mut popped = 0;
        while popped < DRAIN_CHUNK {
            let Some(click) = ring.pop() else { break };
            popped += 1;
            let month = time::month_of(click.ts_ms);
            if b.rows > 0 && month != b.month {
                seal(&mut b);
            }
            if b.rows == 0 {
                b.first_row_at = Instant::now();
                b.month = month;
            }
            let day = (click.ts_ms / time::MS_PER_DAY) as u16;
            b.first_day = b.first_day.min(day);
            b.last_day = b.last_day.max(day);
            let flags = row::encode(&mut b.buf, &click, b.id, &mut enricher);
            b.rows += 1;
            b.bots += flags.is_bot as u64;
            b.previews += flags.is_preview as u64;
            if b.rows >= cfg.max_rows || b.buf.len() >= cfg.max_bytes {
                seal(&mut b);
            }
        }
        if b.rows > 0 && b.first_row_at.elapsed() >= cfg.period {
            seal(&mut b);
        }
        if popped == 0 {
            metrics.ring_depth.set(0.0);
            if stop.load(Ordering::Acquire) && ring.is_empty() {
                if b.rows > 0 {
                    seal(&mut b);
                }
                return;
            }
            std::thread::sleep(IDLE_SLEEP);
        } else {
            metrics.ring_depth.set(ring.len() as f64);
        }
    }
}

async fn insert_loop(
    ch: Client,
    mut rx: mpsc::Receiver<Batch>,
    deadline: Arc<OnceLock<Instant>>,
    metrics: &'static Metrics,
) -> FlushReport {
    let mut report = FlushReport::default();
    let sql = format!("INSERT INTO clicks ({}) FORMAT RowBinary", row::COLUMNS);
    while let Some(batch) = rx.recv().await {
        metrics.batches_pending.decrement(1.0);
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = if attempt > 1 && landed(&ch, &batch).await == Some(true) {
                info!(
                    batch = batch.id,
                    rows = batch.rows,
                    "batch had landed before its retry"
                );
                Ok(())
            } else {
                let started = Instant::now();
                let r = insert(&ch, &sql, &batch).await;
                metrics
                    .flush_duration
                    .record(started.elapsed().as_secs_f64());
                r
            };
            match outcome {
                Ok(()) => {
                    metrics.flush_ok.increment(1);
                    metrics.clicks_flushed.increment(batch.rows as u64);
                    metrics.clicks_bot.increment(batch.bots);
                    metrics.clicks_preview.increment(batch.previews);
                    metrics.flush_batch_rows.record(batch.rows as f64);
                    debug!(batch = batch.id, rows = batch.rows, "batch inserted");
                    break;
                }
                Err(error) => {
                    metrics.flush_error.increment(1);
                    metrics.clickhouse_errors.increment(1);
                    if deadline.get().is_some_and(|d| Instant::now() >= *d) {
                        error!(batch = batch.id, rows = batch.rows, %error, "shutdown deadline passed; batch lost");
                        report.lost_rows += batch.rows as u64;
                        break;
                    }
                    warn!(batch = batch.id, rows = batch.rows, attempt, %error, "clickhouse insert failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    report
}

async fn insert(ch: &Client, sql: &str, batch: &Batch) -> Result<(), clickhouse::error::Error> {
    let mut insert = ch
        .insert_formatted_with(sql.to_string())
        .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
    insert.send(batch.data.clone()).await?;
    insert.end().await
}

/// Whether the batch's rows are already in ClickHouse; `None` when ClickHouse cannot say.
async fn landed(ch: &Client, batch: &Batch) -> Option<bool> {
    let count = ch
        .query("SELECT count() FROM clicks WHERE date >= toDate(?) AND date <= toDate(?) AND batch_id = ?")
        .bind(time::date_string(batch.first_day))
        .bind(time::date_string(batch.last_day))
        .bind(batch.id)
        .fetch_one::<u64>()
        .await
        .ok()?;
    if count != 0 && count != batch.rows as u64 {
        warn!(
            batch = batch.id,
            count,
            rows = batch.rows,
            "batch partially present"
        );
    }
    Some(count >= batch.rows as u64)
}
