//! Keeps this node's link table in step with the catalog in Redis.
//!
//! Every change to a link bumps the catalog version and appends `{version, code}` to the
//! change feed in one step (`redis/link_put.lua`). A node loads the whole catalog once (at
//! start), remembering the feed's head, then follows the feed: each entry names a code
//! whose current link is fetched and applied — work per change, not per catalog. Versions
//! are contiguous, so a node can tell when the feed cannot bring it up to date: the first
//! entry after its position is not the next version (the feed was trimmed past it, or lost),
//! or Redis's version is behind the node's (Redis came back from an older copy). Then it
//! loads the whole catalog again, into a new map, while the old one keeps serving.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::table::{new_map, put, LinkTable};
use super::{cap, Link};
use crate::metrics::Metrics;
use crate::store::redis::{FeedHead, Redis, RedisError};
use crate::time;

/// Feed entries read (and links fetched) per round trip.
const FEED_BATCH: usize = 10_000;
/// Links per step of a full catalog scan.
const SCAN_BATCH: usize = 10_000;

/// Loads the whole catalog into a new map and serves it. Returns the feed position the load
/// is current to: changes written during the scan are on the feed after it (applying one
/// twice is harmless: it fetches the link's current state).
pub async fn load(
    redis: &Redis,
    table: &LinkTable,
    metrics: &Metrics,
) -> Result<FeedHead, RedisError> {
    let head = redis.link_feed_head().await?;
    // Links are compiled into the new map on a second thread while the next batch is
    // fetched and decoded here: a cold start uses two cores, not one.
    let map = Arc::new(new_map(table.len()));
    let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<Link>>(2);
    let compiler = {
        let (map, labels) = (map.clone(), table.labels());
        tokio::task::spawn_blocking(move || {
            while let Some(links) = received.blocking_recv() {
                for link in &links {
                    put(&map, &labels, link);
                }
            }
        })
    };
    let mut cursor = 0;
    let scanned = loop {
        let (next, links) = match redis.scan_links(cursor, SCAN_BATCH).await {
            Ok(step) => step,
            Err(e) => break Err(e),
        };
        if batches.send(links).await.is_err() || next == 0 {
            break Ok(());
        }
        cursor = next;
    };
    drop(batches);
    compiler.await.expect("compiling links does not panic");
    scanned?;
    let map = Arc::try_unwrap(map).unwrap_or_else(|_| unreachable!("the compiler is done"));
    table.install(map);
    table.set_applied(head.version);
    metrics.link_catalog_loads.increment(1);
    metrics.link_table_size.set(table.len() as f64);
    metrics.link_catalog_version.set(head.version as f64);
    Ok(head)
}

/// What following the feed found.
#[derive(Debug, PartialEq)]
pub enum CatchUp {
    /// The table is current to the feed's end.
    Current,
    /// The feed cannot say what changed since `at`: load the whole catalog.
    Gap,
}

/// Applies the feed's entries after `at`, moving it along.
pub async fn catch_up(
    redis: &Redis,
    table: &LinkTable,
    metrics: &Metrics,
    at: &mut FeedHead,
) -> Result<CatchUp, RedisError> {
    loop {
        let read = redis.read_link_feed(&at.entry_id, FEED_BATCH).await?;
        if read.version < at.version {
            return Ok(CatchUp::Gap);
        }
        let Some(first) = read.entries.first() else {
            return Ok(if read.version == at.version {
                CatchUp::Current
            } else {
                CatchUp::Gap
            });
        };
        if first.version != at.version + 1 {
            return Ok(CatchUp::Gap);
        }
        let mut codes: Vec<String> = read.entries.iter().map(|e| e.code.clone()).collect();
        codes.sort_unstable();
        codes.dedup();
        let links = redis.get_links(&codes).await?;
        table.apply(
            codes
                .iter()
                .map(String::as_str)
                .zip(links.iter().map(Option::as_ref)),
        );
        let last = read.entries.last().expect("not empty");
        *at = FeedHead {
            version: last.version,
            entry_id: last.entry_id.clone(),
        };
        table.set_applied(at.version);
        metrics
            .link_changes_applied
            .increment(read.entries.len() as u64);
        metrics.link_table_size.set(table.len() as f64);
        metrics.link_catalog_version.set(at.version as f64);
        if read.entries.len() < FEED_BATCH {
            return Ok(CatchUp::Current);
        }
    }
}

/// Loads the catalog and applies what changed meanwhile: what a node does before serving.
pub async fn start(
    redis: &Redis,
    table: &LinkTable,
    metrics: &Metrics,
) -> Result<FeedHead, RedisError> {
    redis.migrate_links().await?;
    let mut at = load(redis, table, metrics).await?;
    while catch_up(redis, table, metrics, &mut at).await? == CatchUp::Gap {
        at = load(redis, table, metrics).await?;
    }
    Ok(at)
}

/// Follows the feed every `interval` (sooner when a change is written on this node),
/// reloading the catalog on a gap. Runs for the life of the process.
pub async fn follow(
    redis: Redis,
    table: &LinkTable,
    metrics: &Metrics,
    mut at: FeedHead,
    interval: Duration,
) {
    // Log transitions only: an outage polled 4 times a second is one line, not 4/s.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = table.nudge.notified() => {}
        }
        let result = match catch_up(&redis, table, metrics, &mut at).await {
            Ok(CatchUp::Current) => Ok(()),
            Ok(CatchUp::Gap) => {
                warn!(
                    version = at.version,
                    "link change feed has a gap here; reloading the catalog"
                );
                load(&redis, table, metrics).await.map(|head| at = head)
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                info!("link table refresh recovered");
            }
            Ok(()) => {}
            Err(error) => {
                metrics.link_refresh_errors.increment(1);
                if !failing {
                    failing = true;
                    warn!(%error, "link table refresh failing; serving the last table");
                }
            }
        }
    }
}

/// Shares this node's counts of capped links' clicks every `cap::TICK` and learns the
/// deployment's (see `cap`). Runs for the life of the process.
pub async fn share_caps(redis: Redis, table: &LinkTable, metrics: &Metrics) {
    let mut tick = tokio::time::interval(cap::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = time::now_ms();
        let due = table.labels().counters.due(now);
        if due.is_empty() {
            continue;
        }
        let day = cap::day_of(now);
        let clicks: Vec<(&str, u64)> = due.iter().map(|d| (&*d.link_id, d.clicks)).collect();
        match redis.add_capped_clicks(day, &clicks).await {
            Ok(counts) => {
                for (d, (total, today)) in due.iter().zip(counts) {
                    d.learned(total, today, day, now);
                }
            }
            Err(error) => {
                metrics.click_cap_share_errors.increment(1);
                debug!(%error, "sharing click-cap counts failed; retrying next tick");
                due.iter().for_each(cap::Due::put_back);
            }
        }
    }
}
