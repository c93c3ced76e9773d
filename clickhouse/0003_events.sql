-- Post-install events from POST /v1/events, one row per event id (the id is idempotent per
-- tenant for 30 days, so a replayed event writes no second row). ts_ms is the event's own
-- time (event_datetime); the attribution columns are the install's, copied at ingest so
-- stats and postbacks never join. An unknown install leaves them empty with attributed = 0.
CREATE TABLE IF NOT EXISTS events {on_cluster} (
    date Date,
    ts_ms UInt64,
    received_ms UInt64,
    tenant_id String,
    event_id FixedString(16),
    event_name String,
    payload String,
    install_id String,
    attributed UInt8,
    match_type String,
    click_id FixedString(16),
    link_id String,
    campaign String,
    source String,
    medium String,
    partner_id String,
    batch_id UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, event_name, ts_ms)
