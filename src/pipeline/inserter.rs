//! The inserter: writes sealed batches to ClickHouse, and when ClickHouse is down, slow or
//! refusing, to the disk spill, from which it replays them in order once ClickHouse answers.
//!
//! It never stops taking batches from the encoder while an insert is in flight, so a hanging
//! ClickHouse fills the spill, not the ring. Exactly once: a batch whose insert was ever
//! attempted is replayed only after ClickHouse says none of its rows (found by the batch id
//! every row carries) are there; a batch is one block in one partition, so it landed whole
//! or not at all. A batch ClickHouse refuses for good (its data, not the connection) is set
//! aside in `<data_dir>/dead-letter/` rather than block the batches behind it.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::batch::{Batch, BatchKind, Blocks, Builder};
use super::spill::{self, Spill, SpillError};
use super::sql::{self, InsertError};
use super::wal::{self, Wal};
use crate::click::agent;
use crate::metrics::Metrics;

/// Batches held in memory when the spill cannot take them (unwritable or full). Past this
/// the inserter stops taking batches, the encoder waits and the ring absorbs the rest.
const MEMORY_BATCHES: usize = 8;
const INSERT_TIMEOUT: Duration = Duration::from_secs(20);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const SPILL_RETRY: Duration = Duration::from_secs(2);

/// Where batches go besides ClickHouse.
#[derive(Clone)]
pub struct Storage {
    pub spill_dir: PathBuf,
    pub spill_max_bytes: u64,
    /// Where batches ClickHouse refuses for good are set aside.
    pub dead_letter_dir: PathBuf,
    /// The write-ahead log, when on: batches release its segments once durable.
    pub wal: Option<Arc<Wal>>,
    /// Write-ahead segments an earlier run left, to recover.
    pub wal_leftovers: Vec<(u64, PathBuf)>,
}

/// What shutdown achieved.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushReport {
    pub lost_rows: u64,
}

/// What readiness reports about the spill.
#[derive(Debug, Default)]
pub struct SpillStatus {
    pub bytes: AtomicU64,
    pub max_bytes: AtomicU64,
    /// The last attempt to spill failed (unwritable directory, disk full, over the bound).
    pub failing: AtomicBool,
}

pub struct Inserter {
    ch: Client,
    spill_dir: PathBuf,
    dead_letter_dir: PathBuf,
    spill_max: u64,
    spill: Option<Spill>,
    memory: VecDeque<(Batch, bool)>,
    wal: Option<Arc<Wal>>,
    /// Write-ahead segments of an earlier run, recovered once the spill is empty.
    leftovers: VecDeque<(u64, PathBuf)>,
    status: Arc<SpillStatus>,
    deadline: Arc<OnceLock<Instant>>,
    blocks: Blocks,
    metrics: &'static Metrics,
    report: FlushReport,
}

enum Step {
    Progress,
    Idle,
    Failed,
}

impl Inserter {
    pub fn new(
        ch: Client,
        cfg: &Storage,
        status: Arc<SpillStatus>,
        deadline: Arc<OnceLock<Instant>>,
        blocks: Blocks,
        metrics: &'static Metrics,
    ) -> Inserter {
        status
            .max_bytes
            .store(cfg.spill_max_bytes, Ordering::Relaxed);
        let mut inserter = Inserter {
            ch,
            spill_dir: cfg.spill_dir.clone(),
            dead_letter_dir: cfg.dead_letter_dir.clone(),
            spill_max: cfg.spill_max_bytes,
            spill: None,
            memory: VecDeque::new(),
            wal: cfg.wal.clone(),
            leftovers: cfg.wal_leftovers.iter().cloned().collect(),
            status,
            deadline,
            blocks,
            metrics,
            report: FlushReport::default(),
        };
        inserter.open_spill();
        if let Some(spill) = &inserter.spill {
            if !spill.is_empty() {
                info!(
                    bytes = spill.bytes(),
                    "spilled batches from an earlier run will be replayed first"
                );
            }
        }
        inserter
    }

    fn open_spill(&mut self) {
        if self.spill.is_some() {
            return;
        }
        match Spill::open(&self.spill_dir, self.spill_max) {
            Ok(spill) => {
                self.spill = Some(spill);
                if self.status.failing.swap(false, Ordering::Relaxed) {
                    info!("spill directory usable again");
                }
            }
            Err(error) => {
                self.metrics.spill_errors.increment(1);
                if !self.status.failing.swap(true, Ordering::Relaxed) {
                    error!(%error, "spill directory unusable; batches ClickHouse refuses stay in memory");
                }
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let bytes = self.spill.as_ref().map_or(0, Spill::bytes);
        self.status.bytes.store(bytes, Ordering::Relaxed);
        self.metrics.spill_bytes.set(bytes as f64);
    }

    fn backlog(&self) -> bool {
        !self.memory.is_empty() || self.spill.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn past_deadline(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= *d)
    }

    /// Keeps a batch that is not in ClickHouse: on disk when possible, else in memory.
    fn stash(&mut self, batch: Batch, attempted: bool) {
        self.memory.push_back((batch, attempted));
        self.persist();
    }

    /// Moves in-memory batches to the spill, oldest first, while it takes them.
    fn persist(&mut self) {
        self.open_spill();
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        while let Some((batch, attempted)) = self.memory.front() {
            match spill.append(batch, *attempted) {
                Ok(()) => {
                    batch.settle(self.wal.as_deref());
                    self.metrics.clicks_spilled.increment(batch.rows as u64);
                    self.metrics.spill_written.increment(1);
                    if self.status.failing.swap(false, Ordering::Relaxed) {
                        info!("spill writable again");
                    }
                    debug!(batch = batch.id, rows = batch.rows, "batch spilled");
                    self.memory.pop_front();
                }
                Err(error) => {
                    self.metrics.spill_errors.increment(1);
                    if !self.status.failing.swap(true, Ordering::Relaxed) {
                        error!(%error, "cannot spill batch; holding it in memory");
                    }
                    if matches!(error, SpillError::Io { .. }) {
                        // Reopen next time: the directory may have been repaired.
                        self.spill = None;
                    }
                    break;
                }
            }
        }
        self.publish();
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Batch>) -> FlushReport {
        let mut open = true;
        let mut backoff = BACKOFF_MIN;
        loop {
            // Write-ahead segments of an earlier run go in once that run's spill is replayed,
            // so a click in both is found in ClickHouse and not inserted twice.
            if open && !self.backlog() && !self.leftovers.is_empty() {
                match self.recover_one(&mut rx, &mut open).await {
                    Step::Failed => {
                        let sleep = tokio::time::sleep(backoff);
                        self.with_intake(sleep, &mut rx, &mut open).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    _ => backoff = BACKOFF_MIN,
                }
                continue;
            }
            if !self.backlog() {
                let next = if self.spill.is_some() {
                    rx.recv().await
                } else {
                    // No usable spill: look again every few seconds, so a repaired
                    // directory clears the readiness failure without waiting for an outage.
                    match tokio::time::timeout(SPILL_RETRY, rx.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            self.open_spill();
                            continue;
                        }
                    }
                };
                let Some(batch) = next else { break };
                self.metrics.batches_pending.decrement(1.0);
                match self
                    .deliver_with_intake(&batch, false, &mut rx, &mut open)
                    .await
                {
                    Outcome::Stored => {
                        backoff = BACKOFF_MIN;
                        self.recycle(batch);
                    }
                    Outcome::Refused(error) => {
                        if !self.dead_letter(&batch, &error) {
                            self.stash(batch, true);
                        }
                    }
                    Outcome::Failed => self.stash(batch, true),
                }
                continue;
            }
            // Backlog: take what the encoder sealed without ever making it wait.
            while open && self.memory.len() < MEMORY_BATCHES {
                match rx.try_recv() {
                    Ok(batch) => {
                        self.metrics.batches_pending.decrement(1.0);
                        self.stash(batch, false);
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            if !open {
                // Shutting down: what is on disk is durable and replays at the next start.
                self.persist();
                if self.memory.is_empty() {
                    break;
                }
                if self.past_deadline() {
                    let lost: usize = self.memory.iter().map(|(b, _)| b.rows).sum();
                    error!(
                        lost,
                        "shutdown deadline passed with batches neither inserted nor spilled"
                    );
                    self.report.lost_rows += lost as u64;
                    break;
                }
            }
            match self.replay_one(&mut rx, &mut open).await {
                Step::Progress => backoff = BACKOFF_MIN,
                Step::Idle => {}
                Step::Failed => {
                    let sleep = tokio::time::sleep(backoff);
                    self.with_intake(sleep, &mut rx, &mut open).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.publish();
        self.report
    }

    /// Replays the oldest kept batch: the spill's first record, else the oldest in memory.
    async fn replay_one(&mut self, rx: &mut mpsc::Receiver<Batch>, open: &mut bool) -> Step {
        self.persist();
        let from_spill = match self.spill.as_mut().map(Spill::peek) {
            Some(Ok(Some(record))) => Some(record),
            Some(Ok(None)) | None => None,
            Some(Err(error)) => {
                self.metrics.spill_errors.increment(1);
                error!(%error, "cannot read spill");
                self.spill = None;
                return Step::Failed;
            }
        };
        if let Some(record) = from_spill {
            let spill = self.spill.as_mut().expect("peeked from it");
            if !record.attempted {
                if let Err(error) = spill.mark_attempted() {
                    self.metrics.spill_errors.increment(1);
                    error!(%error, "cannot mark a spilled batch attempted; not inserting it");
                    return Step::Failed;
                }
            }
            match self
                .deliver_with_intake(&record.batch, record.attempted, rx, open)
                .await
            {
                Outcome::Stored => {}
                Outcome::Refused(error) => {
                    if !self.dead_letter(&record.batch, &error) {
                        return Step::Failed;
                    }
                }
                Outcome::Failed => return Step::Failed,
            }
            let spill = self.spill.as_mut().expect("peeked from it");
            let corrupt_before = spill.corrupt;
            if let Err(error) = spill.advance() {
                // The batch is in ClickHouse; a stale cursor only costs a landed check later.
                warn!(%error, "cannot persist spill cursor");
            }
            self.metrics
                .spill_corrupt
                .increment(spill.corrupt - corrupt_before);
            self.metrics
                .clicks_replayed
                .increment(record.batch.rows as u64);
            self.publish();
            return Step::Progress;
        }
        let Some((batch, attempted)) = self.memory.pop_front() else {
            return Step::Idle;
        };
        match self.deliver_with_intake(&batch, attempted, rx, open).await {
            Outcome::Stored => Step::Progress,
            Outcome::Refused(error) if self.dead_letter(&batch, &error) => Step::Progress,
            Outcome::Refused(_) | Outcome::Failed => {
                self.memory.push_front((batch, true));
                Step::Failed
            }
        }
    }

    /// Sets aside a batch ClickHouse refuses for good, in `<data_dir>/dead-letter/<id>.batch`
    /// (a spill record, fsynced): it is durable there, counted and logged, and no longer
    /// holds up the batches behind it. False when it could not be written (then it stays
    /// where it was).
    fn dead_letter(&self, batch: &Batch, error: &InsertError) -> bool {
        let path = self
            .dead_letter_dir
            .join(format!("{:016x}.batch", batch.id));
        match spill::write_record_file(&path, batch) {
            Ok(()) => {
                batch.settle(self.wal.as_deref());
                self.metrics
                    .dead_lettered(batch.kind.table(), batch.rows as u64);
                error!(
                    batch = batch.id,
                    rows = batch.rows,
                    table = batch.kind.table(),
                    path = %path.display(),
                    %error,
                    "clickhouse refuses this batch for good; set aside in the dead-letter directory"
                );
                true
            }
            Err(write_error) => {
                self.metrics.spill_errors.increment(1);
                error!(batch = batch.id, %error, %write_error, "cannot set a refused batch aside; keeping it");
                false
            }
        }
    }

    /// Inserts the clicks of the oldest leftover write-ahead segment that ClickHouse does not
    /// have (by click id), then deletes the segment.
    async fn recover_one(&mut self, rx: &mut mpsc::Receiver<Batch>, open: &mut bool) -> Step {
        let Some((seq, path)) = self.leftovers.front().cloned() else {
            return Step::Idle;
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                error!(segment = seq, %error, "cannot read write-ahead segment; skipping it");
                self.leftovers.pop_front();
                return Step::Progress;
            }
        };
        let clicks: Vec<_> = wal::records(&bytes).collect();
        let ids: Vec<_> = clicks.iter().map(|c| (c.id, c.ts_ms)).collect();
        let ch = self.ch.clone();
        let present = match self
            .with_intake(sql::present_click_ids(&ch, &ids), rx, open)
            .await
        {
            Ok(present) => present,
            Err(error) => {
                warn!(segment = seq, %error, "cannot check write-ahead clicks against clickhouse");
                return Step::Failed;
            }
        };
        let missing: Vec<_> = clicks.iter().filter(|c| !present.contains(&c.id)).collect();
        let mut agents = std::collections::HashMap::new();
        let mut batches = Vec::new();
        let mut builder = Builder::clicks();
        let no_blocks: Blocks = Arc::new(crossbeam_queue::ArrayQueue::new(1));
        for c in &missing {
            if builder.other_month(c.ts_ms) {
                batches.push(builder.seal(&no_blocks));
            }
            let agent = agents
                .entry(c.user_agent)
                .or_insert_with(|| agent::classify(c.user_agent));
            builder.push_click(c, agent);
        }
        if builder.rows > 0 {
            batches.push(builder.seal(&no_blocks));
        }
        for batch in &batches {
            match self.deliver_with_intake(batch, false, rx, open).await {
                Outcome::Stored => {}
                Outcome::Refused(error) if self.dead_letter(batch, &error) => {}
                Outcome::Refused(_) | Outcome::Failed => return Step::Failed,
            }
        }
        if let Err(error) = std::fs::remove_file(&path) {
            warn!(segment = seq, %error, "cannot delete recovered write-ahead segment");
        }
        self.leftovers.pop_front();
        self.metrics
            .clicks_recovered
            .increment(missing.len() as u64);
        info!(
            segment = seq,
            clicks = clicks.len(),
            recovered = missing.len(),
            "write-ahead segment recovered"
        );
        Step::Progress
    }

    /// Hands a delivered click batch's buffer back to the encoder (when nothing else holds it).
    fn recycle(&self, batch: Batch) {
        if batch.kind == BatchKind::Clicks {
            if let Ok(data) = batch.data.try_into_mut() {
                let _ = self.blocks.push(Vec::from(data));
            }
        }
    }

    /// Inserts the batch unless it is already there.
    async fn deliver_with_intake(
        &mut self,
        batch: &Batch,
        attempted: bool,
        rx: &mut mpsc::Receiver<Batch>,
        open: &mut bool,
    ) -> Outcome {
        let timeout = match self.deadline.get() {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_secs(1), INSERT_TIMEOUT),
            None => INSERT_TIMEOUT,
        };
        let ch = self.ch.clone();
        let started = Instant::now();
        let attempt = async {
            if attempted {
                match tokio::time::timeout(timeout, sql::landed(&ch, batch)).await {
                    Ok(Ok(true)) => return Ok(Delivered::AlreadyThere),
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => return Err(InsertError::Unavailable(error.to_string())),
                    Err(_) => {
                        return Err(InsertError::Unavailable("landed check timed out".into()))
                    }
                }
            }
            let insert = sql::insert(&ch, batch.kind, batch.data.clone(), INSERT_TIMEOUT);
            match tokio::time::timeout(timeout, insert).await {
                Ok(Ok(())) => Ok(Delivered::Inserted),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(InsertError::Unavailable(format!(
                    "insert timed out after {timeout:?}"
                ))),
            }
        };
        let outcome = self.with_intake(attempt, rx, open).await;
        self.metrics
            .flush_duration
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(how) => {
                batch.settle(self.wal.as_deref());
                self.metrics.flush_ok.increment(1);
                self.metrics
                    .rows_flushed(batch.kind.table(), batch.rows as u64);
                self.metrics.clicks_bot.increment(batch.bots);
                self.metrics.clicks_preview.increment(batch.previews);
                self.metrics.flush_batch_rows.record(batch.rows as f64);
                if matches!(how, Delivered::AlreadyThere) {
                    self.metrics.spill_already_landed.increment(1);
                    info!(
                        batch = batch.id,
                        rows = batch.rows,
                        "batch had already landed; not inserted again"
                    );
                }
                Outcome::Stored
            }
            Err(error) => {
                self.metrics.flush_error.increment(1);
                self.metrics.clickhouse_errors.increment(1);
                match error {
                    InsertError::Refused { .. } => Outcome::Refused(error),
                    InsertError::Unavailable(_) => {
                        warn!(batch = batch.id, rows = batch.rows, %error, "clickhouse insert failed");
                        Outcome::Failed
                    }
                }
            }
        }
    }

    /// Drives `fut` while stashing batches the encoder seals meanwhile.
    async fn with_intake<F: Future>(
        &mut self,
        fut: F,
        rx: &mut mpsc::Receiver<Batch>,
        open: &mut bool,
    ) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                batch = rx.recv(), if *open && self.memory.len() < MEMORY_BATCHES => match batch {
                    Some(batch) => {
                        self.metrics.batches_pending.decrement(1.0);
                        self.stash(batch, false);
                    }
                    None => *open = false,
                },
            }
        }
    }
}

enum Delivered {
    Inserted,
    AlreadyThere,
}

/// What became of a batch offered to ClickHouse.
enum Outcome {
    /// In ClickHouse (now, or by an earlier attempt whose answer was lost).
    Stored,
    /// Refused for good: its data cannot be stored, however often it is sent.
    Refused(InsertError),
    /// Not now: keep it and try again.
    Failed,
}
