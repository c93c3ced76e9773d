//! The flusher: an encoder thread drains the ring, enriches each click and appends it to the
//! current batch (`batch.rs`; fact rows arrive encoded and are appended as they are); a
//! batch is sealed on the first of max rows, max bytes or the flush period (counted from its
//! first row), and handed to the inserter (`inserter.rs`), which writes it to ClickHouse or,
//! failing that, to the disk spill.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clickhouse::Client;
use crossbeam_queue::ArrayQueue;
use tokio::sync::mpsc;
use tracing::error;

use super::batch::{Batch, BatchKind, Blocks, Builder, Facts};
use super::fingerprints::{Fingerprint, Handover};
use super::inserter::{FlushReport, Inserter, SpillStatus, Storage};
use super::ring::RowQueue;
use super::Ring;
use crate::click::enrich::Enricher;
use crate::click::row::Captured;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct FlushConfig {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub period: Duration,
    /// Where batches go besides ClickHouse.
    pub storage: Storage,
    /// Where fingerprints of human clicks go (the Redis writer).
    pub fingerprints: Option<Handover>,
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
            &cfg.storage,
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
    let mut clicks = Builder::clicks();
    let mut facts = BatchKind::FACTS.map(Builder::facts);
    let mut fingerprints = Vec::new();
    let send = |b: &mut Builder| {
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
                let agent = enricher.agent(click.texts.user_agent());
                let anonymous = enricher.anonymous(click.ip);
                let captured = Captured::of(
                    &click,
                    enricher.ip_hash(click.ip),
                    enricher.place(click.ip),
                    anonymous,
                );
                let flags = clicks.push_click(&captured, &agent);
                let human = !flags.is_bot && !flags.is_preview;
                // A capped link counts its human clicks, known as such only here.
                if let (true, Some(cap)) = (human, click.link.cap()) {
                    cap.count();
                }
                if click.wal_segment != 0 {
                    match clicks.wal.last_mut() {
                        Some((seq, n)) if *seq == click.wal_segment => *n += 1,
                        _ => clicks.wal.push((click.wal_segment, 1)),
                    }
                }
                if cfg.fingerprints.is_some() {
                    let ip_hash = captured.ip_hash;
                    let country = Fingerprint::country_code(captured.place.country);
                    fingerprints.extend(Fingerprint::of(
                        click,
                        ip_hash,
                        country,
                        anonymous,
                        human,
                        &agent.browser,
                    ));
                }
                if clicks.full(cfg.max_rows, cfg.max_bytes) {
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
            if let Some(b) = facts.iter_mut().find(|b| b.kind() == fact.kind) {
                append_facts(b, &fact, cfg, &send);
            }
        }
        for b in std::iter::once(&mut clicks).chain(facts.iter_mut()) {
            if b.due(cfg.period) {
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

/// Appends one request's fact rows, sealing (through `send`) whenever a month changes or the
/// batch fills.
fn append_facts(b: &mut Builder, facts: &Facts, cfg: &FlushConfig, send: &dyn Fn(&mut Builder)) {
    let mut start = 0;
    for &(end, ts_ms) in &facts.rows {
        if b.other_month(ts_ms) {
            send(b);
        }
        b.push_fact(
            &facts.data[start as usize..end as usize],
            ts_ms,
            facts.receipt.as_ref(),
        );
        start = end;
        if b.full(cfg.max_rows, cfg.max_bytes) {
            send(b);
        }
    }
}
