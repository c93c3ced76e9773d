//! Every ClickHouse statement the pipeline issues: the batch insert, the "has this batch
//! landed" check behind exactly-once replay, and the click-id lookup of write-ahead recovery.
//! Errors say whether trying again can help.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use clickhouse::Client;
use tracing::error;

use super::batch::{Batch, BatchKind};
use crate::time;

/// Why ClickHouse did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// ClickHouse refused the data itself (it cannot parse or store it): the same bytes will
    /// be refused every time, so the batch is set aside, not retried.
    #[error("clickhouse refused the batch's data (code {code}): {message}")]
    Refused { code: u32, message: String },
    /// Anything a later try may get past: no connection, a timeout, a server busy, out of
    /// memory or merging, a table not there yet.
    #[error("{0}")]
    Unavailable(String),
}

impl InsertError {
    fn of(error: clickhouse::error::Error) -> InsertError {
        let message = error.to_string();
        match server_code(&message) {
            Some(code) if REFUSED_DATA.contains(&code) => InsertError::Refused { code, message },
            _ => InsertError::Unavailable(message),
        }
    }
}

/// ClickHouse error codes that mean "this data can never be inserted": it cannot be parsed
/// or does not fit the column. (Codes for missing tables or columns are left out: a
/// migration can bring those.)
const REFUSED_DATA: [u32; 14] = [
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
];

/// The server's error code in an error message: `Code: 33, e.displayText() = …` (18.16) or
/// `Code: 33. DB::Exception: …` (current releases).
fn server_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + "Code: ".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Inserts a batch as one block.
pub async fn insert(
    ch: &Client,
    kind: BatchKind,
    data: Bytes,
    timeout: Duration,
) -> Result<(), InsertError> {
    let statement = format!(
        "INSERT INTO {} ({}) FORMAT {}",
        kind.table(),
        kind.columns(),
        kind.format()
    );
    let mut insert = ch
        .insert_formatted_with(statement)
        .with_timeouts(Some(timeout), Some(timeout));
    insert.send(data).await.map_err(InsertError::of)?;
    insert.end().await.map_err(InsertError::of)
}

/// Whether the batch's rows are in ClickHouse. Batches are atomic, so a partial count is a
/// broken invariant: it is logged, and the batch is not inserted again (a duplicate would
/// be worse than the gap the log points at).
pub async fn landed(ch: &Client, batch: &Batch) -> Result<bool, clickhouse::error::Error> {
    let count = ch
        .query(&format!(
            "SELECT count() FROM {} WHERE date >= toDate(?) AND date <= toDate(?) AND batch_id = ?",
            batch.kind.table()
        ))
        .bind(time::date_string(batch.first_day))
        .bind(time::date_string(batch.last_day))
        .bind(batch.id)
        .fetch_one::<u64>()
        .await?;
    if count != 0 && count != batch.rows as u64 {
        error!(
            batch = batch.id,
            count,
            rows = batch.rows,
            "batch partially present in clickhouse"
        );
    }
    Ok(count > 0)
}

/// Which of these clicks (id and time) ClickHouse already has.
pub async fn present_click_ids(
    ch: &Client,
    clicks: &[([u8; 16], u64)],
) -> Result<HashSet<[u8; 16]>, clickhouse::error::Error> {
    let mut present = HashSet::new();
    for chunk in clicks.chunks(5_000) {
        let first = chunk.iter().map(|c| c.1).min().unwrap_or(0) / time::MS_PER_DAY;
        let last = chunk.iter().map(|c| c.1).max().unwrap_or(0) / time::MS_PER_DAY;
        // Hex digits only: safe to inline.
        let ids: Vec<String> = chunk
            .iter()
            .map(|c| format!("unhex('{}')", hex::encode(c.0)))
            .collect();
        let sql = format!(
            "SELECT hex(click_id) FROM clicks WHERE date >= toDate(?) AND date <= toDate(?) AND click_id IN ({})",
            ids.join(",")
        );
        let found = ch
            .query(&sql)
            .bind(time::date_string(first as u16))
            .bind(time::date_string(last as u16))
            .fetch_all::<String>()
            .await?;
        for h in found {
            let mut id = [0u8; 16];
            if hex::decode_to_slice(h, &mut id).is_ok() {
                present.insert(id);
            }
        }
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_data_is_told_from_trouble() {
        // (message, code, refused for good)
        let cases = [
            ("bad response: Code: 33, e.displayText() = DB::Exception: Cannot read all data. Bytes read: 3. Bytes expected: 8.: (at row 1)", Some(33), true),
            ("bad response: Code: 27. DB::Exception: Cannot parse input: expected '\\t'", Some(27), true),
            ("bad response: Code: 60, e.displayText() = DB::Exception: Table default.t doesn't exist.", Some(60), false),
            ("bad response: Code: 252, e.displayText() = DB::Exception: Too many parts (300)", Some(252), false),
            ("bad response: Code: 241. DB::Exception: Memory limit (total) exceeded", Some(241), false),
            ("network error: error trying to connect: tcp connect error: Connection refused", None, false),
            ("timeout expired", None, false),
            ("Code: ", None, false),
            ("Code: 99999999999999999999", None, false),
        ];
        for (message, code, refused) in cases {
            assert_eq!(server_code(message), code, "{message}");
            let error = InsertError::of(clickhouse::error::Error::Custom(message.into()));
            assert_eq!(
                matches!(error, InsertError::Refused { .. }),
                refused,
                "{message}"
            );
        }
    }
}
