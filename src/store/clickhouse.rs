//! ClickHouse client and the migrations runner. Migrations are the plain-SQL files in
//! `clickhouse/`, embedded at build time, applied in order and recorded in
//! `schema_migrations`. Every statement must run on 18.16 and on current servers.

use clickhouse::{Client, Compression};
use tracing::info;

use super::cluster_schema;
use crate::attribution::install::ClickFacts;
use crate::click::{ClickId, Platform};
use crate::config::ClickHouseConfig;
use crate::pipeline::fingerprints;
use crate::time;

/// (version, SQL). Frozen once landed: add a new file, never edit an old one.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_clicks",
        include_str!("../../clickhouse/0001_clicks.sql"),
    ),
    (
        "0002_installs",
        include_str!("../../clickhouse/0002_installs.sql"),
    ),
    (
        "0003_events",
        include_str!("../../clickhouse/0003_events.sql"),
    ),
    (
        "0004_conversions",
        include_str!("../../clickhouse/0004_conversions.sql"),
    ),
    (
        "0005_stats",
        include_str!("../../clickhouse/0005_stats.sql"),
    ),
    (
        "0006_clicks_by_id",
        include_str!("../../clickhouse/0006_clicks_by_id.sql"),
    ),
    (
        "0007_click_facts",
        include_str!("../../clickhouse/0007_click_facts.sql"),
    ),
    (
        "0008_click_variant",
        include_str!("../../clickhouse/0008_click_variant.sql"),
    ),
    (
        "0009_breakdowns",
        include_str!("../../clickhouse/0009_breakdowns.sql"),
    ),
    (
        "0010_variant_facts",
        include_str!("../../clickhouse/0010_variant_facts.sql"),
    ),
    (
        "0011_breakdown_scopes",
        include_str!("../../clickhouse/0011_breakdown_scopes.sql"),
    ),
    (
        "0012_fraud",
        include_str!("../../clickhouse/0012_fraud.sql"),
    ),
    ("0013_skan", include_str!("../../clickhouse/0013_skan.sql")),
    (
        "0014_breakdown_weeks",
        include_str!("../../clickhouse/0014_breakdown_weeks.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ChError {
    #[error("clickhouse: {0}")]
    Client(#[from] clickhouse::error::Error),
    #[error("migration {version} failed: {source}")]
    Migration {
        version: String,
        source: clickhouse::error::Error,
    },
    /// A batched lookup's query failed (`click_lookup`), as ClickHouse said.
    #[error("clickhouse: {0}")]
    Batched(String),
    #[error("the click lookup has stopped")]
    Stopped,
}

impl From<ChError> for crate::error::Error {
    fn from(e: ChError) -> crate::error::Error {
        crate::error::Unavailable::ClickHouse(e.to_string()).into()
    }
}

/// A client bound to the configured database. Validation is off: 18.16 knows neither the
/// setting nor the `RowBinaryWithNamesAndTypes` format it needs.
pub fn client(cfg: &ClickHouseConfig) -> Client {
    let c = server_client(cfg).with_database(&cfg.database);
    if cfg.cluster.is_empty() {
        return c;
    }
    // An insert into a Distributed table returns once its shard has the block, not when the
    // node has queued it: an acknowledged batch is stored, and its batch-id check sees it.
    // Inserts and reads go to each shard's first healthy replica (`remote_servers` order), so
    // a read sees what was just written rather than a replica still fetching it; the other
    // replica takes both over when the first is down.
    c.with_setting("insert_distributed_sync", "1")
        .with_setting("load_balancing", "in_order")
}

fn server_client(cfg: &ClickHouseConfig) -> Client {
    let mut c = Client::default()
        .with_url(&cfg.url)
        .with_validation(false)
        .with_user(&cfg.user)
        .with_compression(if cfg.lz4() {
            Compression::Lz4
        } else {
            Compression::None
        });
    if !cfg.password.is_empty() {
        c = c.with_password(&cfg.password);
    }
    c
}

fn on_cluster(cfg: &ClickHouseConfig) -> String {
    if cfg.cluster.is_empty() {
        String::new()
    } else {
        format!("ON CLUSTER {}", cfg.cluster)
    }
}

/// Statements of one migration file: split on `;` at line ends, comments dropped.
pub fn statements(sql: &str, on_cluster: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{on_cluster}", on_cluster))
        .collect()
}

/// The schema's statements in the configured mode (one server, or its cluster form): the
/// database, the migrations ledger, then each migration's. What `migrate` runs, in order, and
/// what `sluice migrate --print` shows.
pub fn schema(cfg: &ClickHouseConfig) -> Schema {
    let cluster = on_cluster(cfg);
    let in_form = |statement: String| -> Vec<String> {
        if cfg.cluster.is_empty() {
            vec![statement]
        } else {
            cluster_schema::statements(&statement, &cfg.cluster, &cfg.database)
        }
    };
    Schema {
        database: format!("CREATE DATABASE IF NOT EXISTS {} {cluster}", cfg.database),
        ledger: in_form(format!(
            "CREATE TABLE IF NOT EXISTS schema_migrations {cluster} (version String, applied_at DateTime) \
             ENGINE = MergeTree ORDER BY version"
        )),
        migrations: MIGRATIONS
            .iter()
            .map(|(version, sql)| {
                let statements = statements(sql, &cluster)
                    .into_iter()
                    .flat_map(in_form)
                    .collect();
                (*version, statements)
            })
            .collect(),
    }
}

pub struct Schema {
    pub database: String,
    pub ledger: Vec<String>,
    /// (version, its statements), oldest first.
    pub migrations: Vec<(&'static str, Vec<String>)>,
}

/// Creates the database if missing and applies pending migrations. Returns how many ran.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<usize, ChError> {
    let schema = schema(cfg);
    server_client(cfg).query(&schema.database).execute().await?;
    let ch = client(cfg);
    for statement in &schema.ledger {
        ch.query(statement).execute().await?;
    }
    let applied = applied(&ch).await?;
    let mut ran = 0;
    for (version, statements) in schema.migrations {
        if applied.iter().any(|v| v == version) {
            continue;
        }
        for statement in statements {
            match ch.query(&statement).execute().await {
                // 18.16 has no `ADD COLUMN IF NOT EXISTS`: a column added by an earlier,
                // interrupted run of this migration is there already.
                Err(e)
                    if statement.contains("ADD COLUMN") && e.to_string().contains("Code: 44,") =>
                {
                    info!(version, "column already added by an earlier run");
                }
                result => result.map_err(|source| ChError::Migration {
                    version: version.to_string(),
                    source,
                })?,
            }
        }
        ch.query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, now())")
            .bind(version)
            .execute()
            .await?;
        info!(version, "applied migration");
        ran += 1;
    }
    Ok(ran)
}

pub async fn applied(ch: &Client) -> Result<Vec<String>, ChError> {
    Ok(ch
        .query("SELECT DISTINCT version FROM schema_migrations")
        .fetch_all::<String>()
        .await?)
}

/// Ready when the server answers and every embedded migration is recorded.
pub async fn schema_current(ch: &Client) -> Result<bool, ChError> {
    let applied = applied(ch).await?;
    Ok(MIGRATIONS
        .iter()
        .all(|(v, _)| applied.iter().any(|a| a == v)))
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct FactsRow {
    click_id: [u8; 16],
    facts: String,
}

/// The stored facts of the human clicks with these ids, each with its tenant (the caller
/// keeps its own tenant's), found by key in `click_facts`. An id may come twice (a batch
/// stored while migration 0007 copied). Clicks still in the pipeline (under a second old) are
/// not found.
pub async fn click_facts(
    ch: &Client,
    ids: &[ClickId],
) -> Result<Vec<(String, ClickFacts)>, ChError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Hex digits only: safe to inline.
    let hexes: Vec<String> = ids
        .iter()
        .map(|id| format!("unhex('{}')", hex::encode(id.0)))
        .collect();
    let sql = format!(
        "SELECT click_id, facts FROM click_facts WHERE click_id IN ({})",
        hexes.join(","),
    );
    let rows = ch.query(&sql).fetch_all::<FactsRow>().await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            // Rows before migration 0010 have no variant, rows before 0012 no visitor or flags.
            let fields = length_prefixed(&r.facts)?;
            let (known, later) = match fields.len() {
                12 | 13 | 17 => fields.split_at(12),
                _ => return None,
            };
            let [tenant, link_id, campaign, source, medium, partner_click_id, sub1, sub2, sub3, sub4, sub5, country] =
                <[&str; 12]>::try_from(known).ok()?.map(str::to_string);
            let variant = later.first().copied().unwrap_or("").to_string();
            let (visitor, flags) = match later {
                [_, ip_hash, platform, browser, flags] => (
                    Some((
                        fingerprints::device(Platform::parse(platform), browser),
                        ip_hash.parse().ok()?,
                    )),
                    *flags,
                ),
                _ => (None, ""),
            };
            let facts = ClickFacts {
                click_id: r.click_id,
                ts_ms: ClickId(r.click_id).timestamp_ms(),
                link_id,
                campaign,
                source,
                medium,
                partner_click_id,
                subs: [sub1, sub2, sub3, sub4, sub5],
                country,
                variant,
                bot: flags.contains('b'),
                anonymous: flags.contains('a'),
                visitor,
            };
            Some((tenant, facts))
        })
        .collect())
}

/// The fields of a `click_facts.facts` string (migrations 0007, 0010, 0012): each its byte
/// length, ':' and its bytes. `None` unless the string is exactly that.
fn length_prefixed(mut s: &str) -> Option<Vec<&str>> {
    let mut fields = Vec::with_capacity(17);
    while !s.is_empty() {
        let (len, rest) = s.split_once(':')?;
        let len: usize = len.parse().ok()?;
        fields.push(rest.get(..len)?);
        s = &rest[len..];
    }
    Some(fields)
}

/// A matched (not organic) install, as `GET /v1/attribution/results` lists it.
#[derive(Debug, Clone, Default, clickhouse::Row, serde::Deserialize, serde::Serialize)]
pub struct MatchedInstall {
    pub install_id: String,
    pub ts_ms: u64,
    pub platform: String,
    pub match_type: String,
    pub click_id: String,
    pub click_ts_ms: u64,
    pub ctit_seconds: u64,
    pub link_id: String,
    pub campaign: String,
    pub source: String,
    pub medium: String,
    pub partner_click_id: String,
    pub country: String,
    /// `attributed` or `rejected` (`attribution::install::status`).
    pub status: String,
    pub fraud_verdict: String,
    pub fraud_reasons: Vec<String>,
}

/// An install's status as stored, or for rows from before fraud protection (none) as its
/// match type implies.
const STATUS: &str = "if(status = '', if(match_type = 'organic', 'organic', 'attributed'), status)";

/// One install as its attribution receipt shows it.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct InstallReceipt {
    pub ts_ms: u64,
    pub status: String,
    pub match_type: String,
    pub click_id: [u8; 16],
    pub link_id: String,
    pub ctit_seconds: u64,
    pub competing_clicks: u32,
    pub fraud_mode: String,
    pub fraud_verdict: String,
    pub fraud_reasons: Vec<String>,
    pub fraud_values: Vec<String>,
}

/// The tenant's install `install_id` as first recorded (`None` until its row is stored).
pub async fn install_receipt(
    ch: &Client,
    tenant: &str,
    install_id: &str,
) -> Result<Option<InstallReceipt>, ChError> {
    let sql = format!(
        "SELECT ts_ms, {STATUS} AS status_, match_type, click_id, link_id, ctit_seconds, \
         competing_clicks, fraud_mode, fraud_verdict, fraud_reasons, fraud_values \
         FROM installs WHERE tenant_id = ? AND install_id = ? ORDER BY received_ms LIMIT 1"
    );
    Ok(ch
        .query(&sql)
        .bind(tenant)
        .bind(install_id)
        .fetch_optional()
        .await?)
}

/// Which matched installs to list, newest first.
#[derive(Debug, Default)]
pub struct ResultsFilter {
    /// Only installs of this status (`attributed` or `rejected`).
    pub status: Option<&'static str>,
    pub campaign: Option<String>,
    pub source: Option<String>,
    pub from_day: Option<u16>,
    pub to_day: Option<u16>,
    /// Strictly older than this (ts_ms, install_id): the last one of the previous page.
    pub before: Option<(u64, String)>,
    pub limit: usize,
}

/// The tenant's matched installs, newest first by install time then install id: a total
/// order, so a cursor (the last row's pair) pages through them exactly once each, whatever
/// arrives meanwhile.
pub async fn matched_installs(
    ch: &Client,
    tenant: &str,
    f: &ResultsFilter,
) -> Result<Vec<MatchedInstall>, ChError> {
    let mut sql = format!(
        "SELECT install_id, ts_ms, platform, match_type, lower(hex(click_id)) AS click_id, \
         click_ts_ms, ctit_seconds, link_id, campaign, source, medium, partner_click_id, country, \
         {STATUS} AS status_, fraud_verdict, fraud_reasons \
         FROM installs WHERE tenant_id = ? AND match_type != 'organic'",
    );
    if let Some(status) = f.status {
        // A fixed word (`ResultsFilter::status`): safe to inline.
        sql.push_str(&format!(" AND status_ = '{status}'"));
    }
    if f.campaign.is_some() {
        sql.push_str(" AND campaign = ?");
    }
    if f.source.is_some() {
        sql.push_str(" AND source = ?");
    }
    if let Some(day) = f.from_day {
        sql.push_str(&format!(
            " AND date >= toDate('{}')",
            time::date_string(day)
        ));
    }
    if let Some(day) = f.to_day {
        sql.push_str(&format!(
            " AND date <= toDate('{}')",
            time::date_string(day)
        ));
    }
    if f.before.is_some() {
        sql.push_str(" AND (ts_ms < ? OR (ts_ms = ? AND install_id < ?))");
    }
    sql.push_str(&format!(
        " ORDER BY ts_ms DESC, install_id DESC LIMIT {}",
        f.limit
    ));
    let mut q = ch.query(&sql).bind(tenant);
    for v in [&f.campaign, &f.source].into_iter().flatten() {
        q = q.bind(v);
    }
    if let Some((ts, id)) = &f.before {
        q = q.bind(ts).bind(ts).bind(id);
    }
    Ok(q.fetch_all::<MatchedInstall>().await?)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct InstallConversionRow {
    install_id: String,
    user_id: String,
    currency: String,
    n: u64,
    sum_cents: i64,
}

/// An install's attributed conversions.
#[derive(Debug, Clone, Default)]
pub struct InstallConversions {
    pub user_id: Option<String>,
    pub count: u64,
    /// Currency → summed amount in its smallest unit.
    pub revenue: std::collections::BTreeMap<String, i64>,
}

/// The attributed conversions of these installs: count, user, revenue per currency.
pub async fn install_conversions(
    ch: &Client,
    tenant: &str,
    install_ids: &[&str],
) -> Result<std::collections::BTreeMap<String, InstallConversions>, ChError> {
    let mut out: std::collections::BTreeMap<String, InstallConversions> = Default::default();
    if install_ids.is_empty() {
        return Ok(out);
    }
    let placeholders = vec!["?"; install_ids.len()].join(",");
    let mut q = ch
        .query(&format!(
            "SELECT install_id, any(user_id) AS user_id, currency, count() AS n, sum(amount_cents) AS sum_cents \
             FROM conversions WHERE tenant_id = ? AND attributed = 1 AND install_id IN ({placeholders}) \
             GROUP BY install_id, currency"
        ))
        .bind(tenant);
    for id in install_ids {
        q = q.bind(*id);
    }
    for r in q.fetch_all::<InstallConversionRow>().await? {
        let c = out.entry(r.install_id).or_default();
        c.user_id = Some(r.user_id);
        c.count += r.n;
        if !r.currency.is_empty() {
            *c.revenue.entry(r.currency).or_default() += r.sum_cents;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_fills_cluster() {
        let sql = "-- comment; not a split\nCREATE TABLE a {on_cluster} (x UInt8) ENGINE = Log;\n\nCREATE TABLE b (y String) ENGINE = Log;\n";
        assert_eq!(
            statements(sql, "ON CLUSTER c"),
            vec![
                "CREATE TABLE a ON CLUSTER c (x UInt8) ENGINE = Log",
                "CREATE TABLE b (y String) ENGINE = Log"
            ]
        );
        for (version, sql) in MIGRATIONS {
            assert!(!statements(sql, "").is_empty(), "{version} has statements");
        }
    }

    #[test]
    fn reads_length_prefixed_facts() {
        let cases: [(&str, Option<&[&str]>); 9] = [
            ("3:t_12:l11:c", Some(&["t_1", "l1", "c"])),
            ("0:0:0:", Some(&["", "", ""])),
            // Separators and multi-byte text inside a field are its bytes.
            ("3:a:b4:é:x0:", Some(&["a:b", "é:x", ""])),
            ("3:t_12:l1", Some(&["t_1", "l1"])),
            ("", Some(&[])),
            ("3:t_12:l19:c", None), // longer than what is left
            ("x:t_12:l11:c", None), // no length
            ("1:é0:0:", None),      // a length inside a character
            ("3t_12:l11:c", None),  // no separator
        ];
        for (s, want) in cases {
            assert_eq!(length_prefixed(s).as_deref(), want, "{s}");
        }
    }
}
