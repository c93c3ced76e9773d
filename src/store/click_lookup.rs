//! Click-id lookups, batched: installs that arrive together share one ClickHouse query.
//!
//! A point query on `clicks_by_id` costs ClickHouse a few milliseconds however few rows it
//! returns (parsing, planning, one index granule per column), so one query per install caps
//! a two-core box at a few hundred installs a second. Lookups wait in a queue while up to
//! `IN_FLIGHT` queries run; each query then takes everything queued (one query per tenant
//! among them). An idle server answers a lone lookup at once: no batching window is waited.

use std::sync::Arc;

use ahash::AHashMap;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::clickhouse::{click_facts, ChError};
use crate::attribution::install::ClickFacts;
use crate::click::ClickId;

/// Queries running at once.
const IN_FLIGHT: usize = 4;
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

/// One query per tenant in the batch; each lookup gets the facts of its own ids.
async fn answer(ch: &clickhouse::Client, batch: Vec<Lookup>) {
    let mut by_tenant: AHashMap<String, Vec<Lookup>> = AHashMap::new();
    for lookup in batch {
        by_tenant
            .entry(lookup.tenant.clone())
            .or_default()
            .push(lookup);
    }
    let queries = by_tenant.into_iter().map(|(tenant, lookups)| async move {
        let mut ids: Vec<ClickId> = lookups.iter().flat_map(|l| l.ids.iter().copied()).collect();
        ids.sort_unstable_by_key(|id| id.0);
        ids.dedup();
        let found = click_facts(ch, &tenant, &ids)
            .await
            .map_err(|e| e.to_string());
        for lookup in lookups {
            let own = found.as_ref().map(|facts| {
                facts
                    .iter()
                    .filter(|f| lookup.ids.iter().any(|id| id.0 == f.click_id))
                    .cloned()
                    .collect()
            });
            // The asker may have gone (its request was dropped): nothing to do.
            let _ = lookup.reply.send(own.map_err(Clone::clone));
        }
    });
    futures_util::future::join_all(queries).await;
}
