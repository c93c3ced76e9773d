-- Every click answered by the redirect, one row each (append-only fact table).
-- ip_hash is a keyed 64-bit hash: the raw IP is never stored.
-- batch_id stamps the flush batch a row arrived in, so a batch whose insert outcome is
-- unknown can be checked for before it is replayed.
CREATE TABLE IF NOT EXISTS clicks {on_cluster} (
    date Date,
    ts_ms UInt64,
    click_id FixedString(16),
    tenant_id String,
    link_id String,
    campaign String,
    source String,
    medium String,
    partner_click_id String,
    sub1 String,
    sub2 String,
    sub3 String,
    sub4 String,
    sub5 String,
    ip_hash UInt64,
    country String,
    region String,
    city String,
    browser String,
    os String,
    os_version String,
    device String,
    platform String,
    referrer String,
    is_bot UInt8,
    is_preview UInt8,
    batch_id UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, link_id, ts_ms)
