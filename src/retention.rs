//! Retention of raw facts, without TTL clauses (ClickHouse 18.16 has none): each tenant's
//! `raw_retention_days` decides how long its clicks, installs, events and conversions stay.
//! Partitions are months shared by all tenants, so a month is dropped whole (`DROP PARTITION`,
//! instant) once it is past every tenant's retention that has rows in it; a tenant whose
//! retention ended earlier than its neighbours' has its own rows deleted by a mutation
//! (`ALTER TABLE … DELETE`). The daily aggregates behind stats are not touched, unless
//! `stats_retention_days` is set, which drops their months past it.
//!
//! Runs every `retention_interval_ms` on one node at a time (a Redis lock). On a ClickHouse
//! cluster the months are gathered from every shard and the `ALTER`s go to the replicated
//! `_local` tables `ON CLUSTER` (a `Distributed` table takes neither); each shard's
//! replicas then apply them through replication.

use std::collections::BTreeMap;

use clickhouse::Client;
use tracing::{info, warn};

use crate::store::clickhouse::ChError;
use crate::store::redis::{Redis, RedisError};
use crate::time;

/// Raw rows, and the click-id lookup's copy of clicks, kept per tenant's retention.
pub const RAW_TABLES: [&str; 6] = [
    "clicks",
    "click_facts",
    "installs",
    "events",
    "conversions",
    "skan_postbacks",
];
pub const STATS_TABLES: [&str; 5] = [
    "stats_clicks",
    "stats_installs",
    "stats_events",
    "stats_conversions",
    "skan_daily",
];
/// No tenant keeps raw rows for less (the lower bound of `raw_retention_days`): younger
/// months are never looked at.
const MIN_RETENTION_DAYS: u16 = 31;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    ClickHouse(#[from] ChError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl From<clickhouse::error::Error> for RetentionError {
    fn from(e: clickhouse::error::Error) -> Self {
        RetentionError::ClickHouse(e.into())
    }
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// (table, YYYYMM) dropped whole.
    pub dropped: Vec<(String, u32)>,
    /// (table, tenant, first kept day) deleted by mutation.
    pub deleted: Vec<(String, String, u16)>,
}

/// First and last day (day numbers) of month `yyyymm`.
pub fn month_days(yyyymm: u32) -> (u16, u16) {
    let (y, m) = (i64::from(yyyymm / 100), yyyymm % 100);
    let first = time::days_from_civil(y, m, 1);
    let next = if m == 12 {
        time::days_from_civil(y + 1, 1, 1)
    } else {
        time::days_from_civil(y, m + 1, 1)
    };
    (first as u16, (next - 1) as u16)
}

/// What retention works with.
#[derive(Clone)]
pub struct Context {
    pub ch: Client,
    /// For the lock that gives each interval's pass to one node.
    pub redis: Redis,
    pub interval_ms: u64,
    /// Aggregate partitions older than this many days are dropped (0 = kept).
    pub stats_retention_days: u32,
    /// `SLUICE_CLICKHOUSE_CLUSTER` (empty on a single server) and the database.
    pub cluster: String,
    pub database: String,
}

impl Context {
    /// The months `table` has rows in, on every shard.
    async fn partitions(&self, table: &str) -> Result<Vec<u32>, RetentionError> {
        let parts: Vec<String> = if self.cluster.is_empty() {
            self.ch
                .query(
                    "SELECT DISTINCT partition FROM system.parts \
                     WHERE database = currentDatabase() AND table = ? AND active",
                )
                .bind(table)
                .fetch_all()
                .await?
        } else {
            // One replica of each shard: replicas hold the same parts.
            self.ch
                .query(&format!(
                    "SELECT DISTINCT partition FROM cluster('{}', system, parts) \
                     WHERE database = ? AND table = ? AND active",
                    self.cluster
                ))
                .bind(&self.database)
                .bind(format!("{table}_local"))
                .fetch_all()
                .await?
        };
        Ok(parts
            .iter()
            .filter_map(|p| p.trim_matches('\'').parse().ok())
            .collect())
    }

    /// `ALTER TABLE <table> <change>`, on the table that holds the rows.
    async fn alter(
        &self,
        table: &str,
        change: &str,
        tenant: Option<&str>,
    ) -> Result<(), RetentionError> {
        let target = if self.cluster.is_empty() {
            table.to_string()
        } else {
            format!(
                "{}.{table}_local ON CLUSTER {}",
                self.database, self.cluster
            )
        };
        let mut query = self.ch.query(&format!("ALTER TABLE {target} {change}"));
        if let Some(tenant) = tenant {
            query = query.bind(tenant);
        }
        Ok(query.execute().await?)
    }
}

/// One pass over every table, as of UTC day `today`.
pub async fn run_once(ctx: &Context, today: u16) -> Result<Report, RetentionError> {
    let mut report = Report::default();
    let mut cutoffs: BTreeMap<String, u16> = BTreeMap::new();
    for table in RAW_TABLES {
        let mut partial: BTreeMap<String, u16> = BTreeMap::new();
        for month in ctx.partitions(table).await? {
            let (first, last) = month_days(month);
            if last + MIN_RETENTION_DAYS >= today {
                continue;
            }
            let tenants: Vec<String> = ctx
                .ch
                .query(&format!(
                    "SELECT DISTINCT tenant_id FROM {table} WHERE toYYYYMM(date) = {month}"
                ))
                .fetch_all()
                .await?;
            // Whole when every tenant's rows here are past retention; else the tenants with
            // some rows past it get a delete of their own.
            let mut whole = true;
            let mut expired = Vec::new();
            for tenant in tenants {
                let cutoff = match cutoffs.get(&tenant) {
                    Some(c) => *c,
                    None => {
                        let days = ctx
                            .redis
                            .attribution_config(&tenant)
                            .await?
                            .raw_retention_days;
                        let c = today.saturating_sub(days.min(u32::from(u16::MAX)) as u16);
                        cutoffs.insert(tenant.clone(), c);
                        c
                    }
                };
                // Rows dated before `cutoff` are past retention.
                whole &= cutoff > last;
                if cutoff > first {
                    expired.push((tenant, cutoff));
                }
            }
            if whole {
                ctx.alter(table, &format!("DROP PARTITION {month}"), None)
                    .await?;
                info!(
                    table,
                    month, "dropped a month of raw rows past every tenant's retention"
                );
                report.dropped.push((table.to_string(), month));
            } else {
                partial.extend(expired);
            }
        }
        for (tenant, cutoff) in partial {
            let day = time::date_string(cutoff);
            let expired: u64 = ctx
                .ch
                .query(&format!(
                    "SELECT count() FROM {table} WHERE tenant_id = ? AND date < toDate('{day}')"
                ))
                .bind(&tenant)
                .fetch_one()
                .await?;
            if expired == 0 {
                continue;
            }
            ctx.alter(
                table,
                &format!("DELETE WHERE tenant_id = ? AND date < toDate('{day}')"),
                Some(&tenant),
            )
            .await?;
            info!(table, %tenant, expired, before = %day, "deleting a tenant's raw rows past its retention");
            report.deleted.push((table.to_string(), tenant, cutoff));
        }
    }
    let keep = ctx.stats_retention_days;
    if keep > 0 {
        for table in STATS_TABLES {
            for month in ctx.partitions(table).await? {
                if u32::from(month_days(month).1) + keep < u32::from(today) {
                    ctx.alter(table, &format!("DROP PARTITION {month}"), None)
                        .await?;
                    report.dropped.push((table.to_string(), month));
                }
            }
        }
    }
    Ok(report)
}

/// Runs retention every `retention_interval_ms`, on one node per interval.
pub async fn run(ctx: Context) {
    let every = std::time::Duration::from_millis(ctx.interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ctx.redis.take_lock("retention", every).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                warn!(%error, "retention skipped: redis unavailable");
                continue;
            }
        }
        let today = (time::now_ms() / time::MS_PER_DAY) as u16;
        if let Err(error) = run_once(&ctx, today).await {
            warn!(%error, "retention pass failed; retried next interval");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let cases = [
            (202601, ("2026-01-01", "2026-01-31")),
            (202402, ("2024-02-01", "2024-02-29")),
            (202512, ("2025-12-01", "2025-12-31")),
        ];
        for (month, (first, last)) in cases {
            let (a, b) = month_days(month);
            assert_eq!(
                (time::date_string(a).as_str(), time::date_string(b).as_str()),
                (first, last)
            );
        }
    }
}
