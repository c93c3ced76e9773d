-- SKAdNetwork and AdAttributionKit postbacks (POST /.well-known/skadnetwork/report-attribution/,
-- /.well-known/appattribution/report-attribution/, /v1/skan/postbacks), one row per
-- transaction-id / postback-identifier and tenant: a retried or forwarded copy writes no
-- second row. Every postback read is kept, its signature's outcome in `signature` (valid,
-- development, invalid, unverifiable); only rows with counted = 1 enter stats. fine_value is
-- -1 and coarse_value empty when the postback carries none; `body` is the JSON as received.
-- skan_daily sums the counted ones for the figures.
CREATE TABLE IF NOT EXISTS skan_postbacks {on_cluster} (
    date Date,
    received_ms UInt64,
    tenant_id String,
    app_store_id UInt64,
    receiver String,
    framework String,
    version String,
    ad_network_id String,
    source_identifier String,
    transaction_id String,
    conversion_type String,
    fidelity_type Int8,
    did_win UInt8,
    sequence UInt8,
    fine_value Int16,
    coarse_value String,
    source_app_id String,
    source_domain String,
    signature String,
    kid String,
    counted UInt8,
    body String,
    batch_id UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, ad_network_id, source_identifier);

-- The figures: counted postbacks per day, app, network, source identifier, window, win and
-- conversion type, with their coarse values counted and their fine values as a map (summed by
-- key on merges), so a window's answer sums a few rows per campaign.
CREATE TABLE IF NOT EXISTS skan_daily {on_cluster} (
    tenant_id String,
    date Date,
    app_store_id UInt64,
    ad_network_id String,
    source_identifier String,
    sequence UInt8,
    did_win UInt8,
    conversion_type String,
    postbacks UInt64,
    coarse_low UInt64,
    coarse_medium UInt64,
    coarse_high UInt64,
    fineMap Nested(value Int16, postbacks UInt64)
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, app_store_id, ad_network_id, source_identifier, sequence, did_win,
    conversion_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS skan_daily_mv {on_cluster} TO skan_daily AS
SELECT tenant_id, date, app_store_id, ad_network_id, source_identifier, sequence, did_win,
    conversion_type, count() AS postbacks, countIf(coarse_value = 'low') AS coarse_low,
    countIf(coarse_value = 'medium') AS coarse_medium, countIf(coarse_value = 'high') AS coarse_high,
    tupleElement(sumMapIf([fine_value], [toUInt64(1)], fine_value >= 0), 1) AS `fineMap.value`,
    tupleElement(sumMapIf([fine_value], [toUInt64(1)], fine_value >= 0), 2) AS `fineMap.postbacks`
FROM skan_postbacks
WHERE counted = 1
GROUP BY tenant_id, date, app_store_id, ad_network_id, source_identifier, sequence, did_win,
    conversion_type;
