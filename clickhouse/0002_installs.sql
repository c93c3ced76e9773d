-- Every install reported through the attribution endpoints, attributed or organic, one row
-- each (the flip's remembered answer keeps a retried install from writing a second row).
-- click_id is all zeros and click/link fields empty when nothing matched.
CREATE TABLE IF NOT EXISTS installs {on_cluster} (
    date Date,
    ts_ms UInt64,
    received_ms UInt64,
    tenant_id String,
    install_id String,
    platform String,
    match_type String,
    click_id FixedString(16),
    click_ts_ms UInt64,
    ctit_seconds UInt64,
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
    country String,
    os_version String,
    device_model String,
    app_version String,
    batch_id UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, install_id)
