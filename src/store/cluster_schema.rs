//! The schema on a ClickHouse cluster (`SLUICE_CLICKHOUSE_CLUSTER`). Migrations are written
//! for one server; on a cluster each statement takes its cluster form, so the SQL files stay
//! the one description of the schema:
//! - a table `t` becomes `t_local`, the `Replicated` variant of its engine on every node
//!   (replica paths from each node's `{shard}` and `{replica}` macros), and `t`, a
//!   `Distributed` table over them that reads every shard and sends each inserted block to
//!   one shard: by `batch_id` where the table has one (a flush batch stays one block on one
//!   shard, as it is one block in one partition on a single server), else at random;
//! - a materialized view reads and writes the local tables, so each shard aggregates its own
//!   rows (a view on a `Distributed` table would see only the inserts of the node it is on);
//!   names are qualified with the database, which `ON CLUSTER` statements do not carry to
//!   the other nodes;
//! - `DROP TABLE` drops both halves; `ALTER TABLE` changes the local table, and the
//!   `Distributed` table is made again over it (it names the columns it reads, and 18.16
//!   refuses `ALTER … ON CLUSTER` on a table that is not replicated); `INSERT … SELECT` goes
//!   through the `Distributed` tables.

/// The cluster form of one migration statement (`{on_cluster}` already filled in).
pub fn statements(statement: &str, cluster: &str, database: &str) -> Vec<String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        ["CREATE", "TABLE", "IF", "NOT", "EXISTS", table, ..]
            if statement.contains("MergeTree") =>
        {
            table_statements(statement, table, cluster, database)
        }
        ["CREATE", "MATERIALIZED", "VIEW", ..] => vec![local_view(statement, database)],
        ["DROP", "TABLE", "IF", "EXISTS", table, rest @ ..] => vec![
            statement.to_string(),
            format!("DROP TABLE IF EXISTS {table}_local {}", rest.join(" ")),
        ],
        ["ALTER", "TABLE", table, rest @ ..] => vec![
            format!("ALTER TABLE {table}_local {}", rest.join(" ")),
            format!("DROP TABLE IF EXISTS {table} ON CLUSTER {cluster}"),
            distributed(table, cluster, database),
        ],
        _ => vec![statement.to_string()],
    }
}

fn table_statements(statement: &str, table: &str, cluster: &str, database: &str) -> Vec<String> {
    let local = format!("{table}_local");
    let named = statement.replacen(&format!("EXISTS {table} "), &format!("EXISTS {local} "), 1);
    let at = named
        .find("ENGINE = ")
        .expect("a MergeTree table names its engine")
        + "ENGINE = ".len();
    let engine_end = named[at..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .map_or(named.len(), |n| at + n);
    let engine = &named[at..engine_end];
    // The engine's own parameters (SummingMergeTree's columns), after the replica's.
    let (params, rest_at) = match named[engine_end..].strip_prefix('(') {
        Some(_) => {
            let close = matching_paren(&named, engine_end);
            (format!(", {}", &named[engine_end + 1..close]), close + 1)
        }
        None => (String::new(), engine_end),
    };
    let replicated = format!(
        "{}Replicated{engine}('/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'{params}){}",
        &named[..at],
        &named[rest_at..]
    );
    vec![replicated, distributed(table, cluster, database)]
}

/// The fact tables: each row carries its flush batch's id, and a batch goes to one shard.
const BY_BATCH: [&str; 5] = [
    "clicks",
    "installs",
    "events",
    "conversions",
    "skan_postbacks",
];

/// The `Distributed` table `table` over its local tables.
fn distributed(table: &str, cluster: &str, database: &str) -> String {
    let key = if BY_BATCH.contains(&table) {
        "batch_id"
    } else {
        "rand()"
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ON CLUSTER {cluster} AS {database}.{table}_local \
         ENGINE = Distributed({cluster}, {database}, {table}_local, {key})"
    )
}

/// The index of the `)` closing the `(` at `open`.
fn matching_paren(s: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in a migration: {s}")
}

/// A materialized view between local tables: `TO t` and its first `FROM s` become
/// `<database>.t_local` and `<database>.s_local` (a statement `ON CLUSTER` runs on the other
/// nodes without the current database: every name it reads is qualified).
fn local_view(statement: &str, database: &str) -> String {
    let mut out = String::new();
    let mut words = statement.split_inclusive(char::is_whitespace).peekable();
    let (mut to_done, mut from_done) = (false, false);
    while let Some(word) = words.next() {
        out.push_str(word);
        let keyword = word.trim();
        let rename = (keyword == "TO" && !to_done) || (keyword == "FROM" && !from_done);
        if rename {
            if let Some(name) = words.next() {
                let trimmed = name.trim_end();
                out.push_str(&format!("{database}.{trimmed}_local"));
                out.push_str(&name[trimmed.len()..]);
            }
            if keyword == "TO" {
                to_done = true;
            } else {
                from_done = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_statement_takes_its_cluster_form() {
        let cases: &[(&str, &[&str])] = &[
            (
                "CREATE TABLE IF NOT EXISTS clicks ON CLUSTER c (date Date, batch_id UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(date) ORDER BY date",
                &[
                    "CREATE TABLE IF NOT EXISTS clicks_local ON CLUSTER c (date Date, batch_id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/clicks_local', '{replica}') PARTITION BY toYYYYMM(date) ORDER BY date",
                    "CREATE TABLE IF NOT EXISTS clicks ON CLUSTER c AS db.clicks_local ENGINE = Distributed(c, db, clicks_local, batch_id)",
                ],
            ),
            (
                "CREATE TABLE IF NOT EXISTS s ON CLUSTER c (k String, n UInt64, m UInt64) ENGINE = SummingMergeTree((n, m)) ORDER BY k",
                &[
                    "CREATE TABLE IF NOT EXISTS s_local ON CLUSTER c (k String, n UInt64, m UInt64) ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db/s_local', '{replica}', (n, m)) ORDER BY k",
                    "CREATE TABLE IF NOT EXISTS s ON CLUSTER c AS db.s_local ENGINE = Distributed(c, db, s_local, rand())",
                ],
            ),
            (
                "CREATE TABLE IF NOT EXISTS a ON CLUSTER c (k String) ENGINE = AggregatingMergeTree ORDER BY k SETTINGS index_granularity = 256",
                &[
                    "CREATE TABLE IF NOT EXISTS a_local ON CLUSTER c (k String) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/db/a_local', '{replica}') ORDER BY k SETTINGS index_granularity = 256",
                    "CREATE TABLE IF NOT EXISTS a ON CLUSTER c AS db.a_local ENGINE = Distributed(c, db, a_local, rand())",
                ],
            ),
            (
                "CREATE MATERIALIZED VIEW IF NOT EXISTS v ON CLUSTER c TO stats AS\nSELECT k, count() FROM clicks WHERE x IN (SELECT 1) GROUP BY k",
                &["CREATE MATERIALIZED VIEW IF NOT EXISTS v ON CLUSTER c TO db.stats_local AS\nSELECT k, count() FROM db.clicks_local WHERE x IN (SELECT 1) GROUP BY k"],
            ),
            (
                "DROP TABLE IF EXISTS old ON CLUSTER c",
                &["DROP TABLE IF EXISTS old ON CLUSTER c", "DROP TABLE IF EXISTS old_local ON CLUSTER c"],
            ),
            (
                "ALTER TABLE clicks ON CLUSTER c ADD COLUMN v String DEFAULT ''",
                &[
                    "ALTER TABLE clicks_local ON CLUSTER c ADD COLUMN v String DEFAULT ''",
                    "DROP TABLE IF EXISTS clicks ON CLUSTER c",
                    "CREATE TABLE IF NOT EXISTS clicks ON CLUSTER c AS db.clicks_local ENGINE = Distributed(c, db, clicks_local, batch_id)",
                ],
            ),
            (
                "INSERT INTO a SELECT k FROM b",
                &["INSERT INTO a SELECT k FROM b"],
            ),
        ];
        for (statement, want) in cases {
            assert_eq!(statements(statement, "c", "db"), *want, "{statement}");
        }
    }
}
