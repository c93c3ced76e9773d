-- SKAdNetwork and AdAttributionKit postbacks (POST /.well-known/skadnetwork/report-attribution/,
-- /.well-known/appattribution/report-attribution/, /v1/skan/postbacks), one row per
-- transaction-id / postback-identifier and tenant: a retried or forwarded copy writes no
-- second row. Every postback read is kept, its signature's outcome in `signature` (valid,
-- development, invalid, unverifiable); only rows with counted = 1 enter stats. fine_value is
-- -1 and coarse_value empty when the postback carries none; `body` is the JSON as received.
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
ORDER BY (tenant_id, date, ad_network_id, source_identifier)
