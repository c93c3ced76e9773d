//! Click-id lookups, batched: installs that arrive together share one ClickHouse query.
//!
//! A point query on `click_facts` costs ClickHouse about a millisecond of CPU however few rows
//! it returns (parsing, planning, the index), an id in it 0.1–0.3 ms (a compressed block of
//! each of two columns), so one query per install would spend most of a two-core box on
//! overhead. Lookups wait in a queue while up to `IN_FLIGHT` queries run; each
//! query then takes everything queued, whatever the tenants (each lookup keeps its own
//! tenant's rows). An idle server answers a lone lookup at once: no batching window is waited.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::clickhouse::{click_facts, ChError};
use crate::attribution::install::ClickFacts;
use crate::click::ClickId;

/// Queries running at once. Two measured best (loadtest/RESULTS.md): with one, a slow query
/// stalls every lookup; with four, batches shrink and the fixed cost per install grows.
const IN_FLIGHT: usize = 2;
/// Click ids in one query at most.
const MAX_IDS: usize = 1_000;

struct Lookup {
    tenant: String,
    ids: Vec<ClickId>,
    reply: oneshot::Sender<Result<Vec<ClickFacts>, String>>,
}

#[derive(Clone)]
pub struct ClickLookup {
    queue: mpsc::UnboundedSender<Lookup>,
}

impl ClickLookup {
    /// Starts the batching task on the current runtime.
    pub fn start(ch: clickhouse::Client) -> ClickLookup {
        // A lookup reads a block here and there: one thread a query (several run at once), and
        // read buffers the size of a compressed block rather than 1 MiB a column.
        let ch = ch
            .with_setting("max_threads", "1")
            .with_setting("max_read_buffer_size", "65536");
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(ch, waiting));
        ClickLookup { queue }
    }

    /// The stored facts of the tenant's human clicks with these ids (see `click_facts`).
    pub async fn facts(&self, tenant: &str, ids: &[ClickId]) -> Result<Vec<ClickFacts>, ChError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            tenant: tenant.to_string(),
            ids: ids.to_vec(),
            reply,
        };
        let stopped = || ChError::Stopped;
        self.queue.send(lookup).map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(ChError::Batched)
    }
}

async fn run(ch: clickhouse::Client, mut waiting: mpsc::UnboundedReceiver<Lookup>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the slots were busy goes in this batch.
        let mut batch = vec![first];
        let mut ids = batch[0].ids.len();
        while ids < MAX_IDS {
            match waiting.try_recv() {
                Ok(lookup) => {
                    ids += lookup.ids.len();
                    batch.push(lookup);
                }
                Err(_) => break,
            }
        }
        let ch = ch.clone();
        tokio::spawn(async move {
            answer(&ch, batch).await;
            drop(slot);
        });
    }
}

/// One query for the batch; each lookup gets its own tenant's facts of its own ids, once.
async fn answer(ch: &clickhouse::Client, batch: Vec<Lookup>) {
    let mut ids: Vec<ClickId> = batch.iter().flat_map(|l| l.ids.iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = click_facts(ch, &ids).await.map_err(|e| e.to_string());
    for lookup in batch {
        let own = found.as_ref().map(|found| {
            let mut own: Vec<ClickFacts> = Vec::new();
            for (tenant, facts) in found {
                if *tenant == lookup.tenant
                    && lookup.ids.iter().any(|id| id.0 == facts.click_id)
                    && !own.iter().any(|f| f.click_id == facts.click_id)
                {
                    own.push(facts.clone());
                }
            }
            own
        });
        // The asker may have gone (its request was dropped): nothing to do.
        let _ = lookup.reply.send(own.map_err(Clone::clone));
    }
}
