-- Conversions from webhook sources (POST /w/{token}), one row per accepted conversion; a
-- duplicate idempotency key writes no second row. source_id is the webhook source (kept after
-- the source is deleted); source/medium/campaign are the attributed install's traffic source.
-- Unattributed conversions (no bound user, or an organic install) are kept for audit with
-- attributed = 0 and never counted in stats. amount_cents is 0 and currency empty when no
-- amount was sent.
CREATE TABLE IF NOT EXISTS conversions {on_cluster} (
    date Date,
    ts_ms UInt64,
    tenant_id String,
    conversion_id FixedString(16),
    source_id String,
    user_id String,
    type String,
    amount_cents Int64,
    currency String,
    idempotency_key String,
    metadata String,
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
ORDER BY (tenant_id, date, type, ts_ms)
