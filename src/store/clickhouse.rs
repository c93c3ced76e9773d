//! ClickHouse client and the migrations runner. Migrations are the plain-SQL files in
//! `clickhouse/`, embedded at build time, applied in order and recorded in
//! `schema_migrations`. Every statement must run on 18.16 and on current servers.

use clickhouse::Client;
use tracing::info;

use crate::config::ClickHouseConfig;

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
}

/// A client bound to the configured database. Validation is off: 18.16 knows neither the
/// setting nor the `RowBinaryWithNamesAndTypes` format it needs.
pub fn client(cfg: &ClickHouseConfig) -> Client {
    server_client(cfg).with_database(&cfg.database)
}

fn server_client(cfg: &ClickHouseConfig) -> Client {
    let mut c = Client::default()
        .with_url(&cfg.url)
        .with_validation(false)
        .with_user(&cfg.user);
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

/// Creates the database if missing and applies pending migrations. Returns how many ran.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<usize, ChError> {
    let cluster = on_cluster(cfg);
    server_client(cfg)
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {} {cluster}",
            cfg.database
        ))
        .execute()
        .await?;
    let ch = client(cfg);
    ch.query(&format!(
        "CREATE TABLE IF NOT EXISTS schema_migrations {cluster} (version String, applied_at DateTime) \
         ENGINE = MergeTree ORDER BY version"
    ))
    .execute()
    .await?;
    let applied = applied(&ch).await?;
    let mut ran = 0;
    for (version, sql) in MIGRATIONS {
        if applied.iter().any(|v| v == version) {
            continue;
        }
        for statement in statements(sql, &cluster) {
            ch.query(&statement)
                .execute()
                .await
                .map_err(|source| ChError::Migration {
                    version: version.to_string(),
                    source,
                })?;
        }
        ch.query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, now())")
            .bind(*version)
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
}
