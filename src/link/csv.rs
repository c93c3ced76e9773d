//! Links as CSV (`sluice links import|export`): a header row naming link fields, one link a
//! row. An empty cell is an absent field; `rules`, `split` and `click_cap` cells hold their
//! JSON. Export
//! writes exactly the fields import reads, so a catalog moves between installations unchanged.

use std::io::{Read, Write};

use super::catalog::NewLink;
use super::Link;
use crate::error::FieldError;

/// The columns export writes, in order (import accepts any order and any subset with
/// `destination`).
pub const COLUMNS: [&str; 14] = [
    "id",
    "destination",
    "campaign",
    "source",
    "medium",
    "partner_id",
    "ios_destination",
    "android_destination",
    "fallback_url",
    "paused",
    "expires_at",
    "rules",
    "split",
    "click_cap",
];

/// Each row of `input` as a link body, or why it is not one (the field named). Fails only
/// when `input` cannot be read or has no header.
pub fn read(input: impl Read) -> Result<Vec<Result<NewLink, FieldError>>, csv::Error> {
    let mut reader = csv::Reader::from_reader(input);
    let header = reader.headers()?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        rows.push(match record {
            Ok(record) => row(&header, &record),
            Err(e) if e.is_io_error() => return Err(e),
            Err(e) => Err(FieldError::new("row", e.to_string())),
        });
    }
    Ok(rows)
}

fn row(header: &csv::StringRecord, record: &csv::StringRecord) -> Result<NewLink, FieldError> {
    let mut object = serde_json::Map::new();
    for (name, cell) in header.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        let value = match name {
            "paused" => match cell {
                "true" => true.into(),
                "false" => false.into(),
                _ => return Err(FieldError::new("paused", "must be true or false")),
            },
            "rules" | "split" | "click_cap" => serde_json::from_str(cell)
                .map_err(|e| FieldError::new(name, format!("must be JSON: {e}")))?,
            _ => cell.into(),
        };
        object.insert(name.to_string(), value);
    }
    serde_json::from_value(object.into()).map_err(|e| {
        // serde names an unknown or missing field only inside its message, in backquotes.
        let message = e.to_string();
        let field = message.split('`').nth(1).unwrap_or("row").to_string();
        FieldError::new(&field, message)
    })
}

/// A CSV writer that has written the `COLUMNS` header.
pub fn writer<W: Write>(output: W) -> csv::Result<csv::Writer<W>> {
    let mut writer = csv::Writer::from_writer(output);
    writer.write_record(COLUMNS)?;
    Ok(writer)
}

/// Writes one link as a row under `COLUMNS`.
pub fn write<W: Write>(writer: &mut csv::Writer<W>, link: &Link) -> csv::Result<()> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let json = |v: serde_json::Result<String>| v.expect("a link serializes");
    writer.write_record([
        link.id.clone(),
        link.destination.clone(),
        link.campaign.clone(),
        link.source.clone(),
        link.medium.clone(),
        opt(&link.partner_id),
        opt(&link.ios_destination),
        opt(&link.android_destination),
        opt(&link.fallback_url),
        link.paused.to_string(),
        opt(&link.expires_at),
        match link.rules.is_empty() {
            true => String::new(),
            false => json(serde_json::to_string(&link.rules)),
        },
        link.split
            .as_ref()
            .map(|s| json(serde_json::to_string(s)))
            .unwrap_or_default(),
        link.click_cap
            .map(|c| json(serde_json::to_string(&c)))
            .unwrap_or_default(),
    ])
}
