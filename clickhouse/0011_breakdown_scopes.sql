-- Breakdowns at scale. The tables of 0009 and 0010 kept a row per day, key, link, campaign and
-- source: a 30-day country breakdown over 10M clicks merged ~10k HyperLogLog states (and read
-- ~80 MB of them past the index), 0.3-0.6 s. Each fact now lands twice:
--   scope 'all'  — per tenant, dimension, key and day only: what an unfiltered breakdown reads;
--   scope 'link' — also per link, campaign and source: what a breakdown narrowed to a link,
--                  campaign or source reads (by link first in the key: a link's rows are a range).
-- Rows are ordered by key, then day, in small granules (64 rows), so unique clicks — the
-- costly sketches — are merged for just the keys an answer shows (`key IN (…)`): the key's
-- days are a range, and little else is read around it.
-- Facts from before are folded in again at the end.
DROP TABLE IF EXISTS breakdown_clicks_mv {on_cluster};
DROP TABLE IF EXISTS breakdown_installs_mv {on_cluster};
DROP TABLE IF EXISTS breakdown_installs_variant_mv {on_cluster};
DROP TABLE IF EXISTS breakdown_conversions_mv {on_cluster};
DROP TABLE IF EXISTS breakdown_clicks {on_cluster};
DROP TABLE IF EXISTS breakdown_installs {on_cluster};
DROP TABLE IF EXISTS breakdown_conversions {on_cluster};

CREATE TABLE IF NOT EXISTS breakdown_clicks {on_cluster} (
    tenant_id String,
    dim String,
    scope String,
    link_id String,
    campaign String,
    source String,
    key String,
    date Date,
    clicks AggregateFunction(sum, UInt64),
    unique_clicks AggregateFunction(uniqHLL12, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, dim, scope, link_id, campaign, source, key, date)
SETTINGS index_granularity = 64;

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_clicks_all_mv {on_cluster} TO breakdown_clicks AS
SELECT tenant_id, d.1 AS dim, 'all' AS scope, '' AS link_id, '' AS campaign, '' AS source, d.2 AS key, date,
    sumState(toUInt64(1)) AS clicks, uniqHLL12State(ip_hash) AS unique_clicks
FROM clicks
ARRAY JOIN [
    ('country', country),
    ('region', if(region = '', '', concat(country, '-', region))),
    ('city', city),
    ('platform', platform),
    ('os', os),
    ('browser', browser),
    ('device', multiIf(os = 'iPad', 'tablet', device IN ('smartphone', 'mobilephone'), 'mobile', device = 'pc', 'desktop', 'other')),
    ('referrer_host', domain(referrer)),
    ('variant', variant),
    ('sub1', sub1)
] AS d
WHERE is_bot = 0 AND is_preview = 0
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date;

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_clicks_link_mv {on_cluster} TO breakdown_clicks AS
SELECT tenant_id, d.1 AS dim, 'link' AS scope, link_id, campaign, source, d.2 AS key, date,
    sumState(toUInt64(1)) AS clicks, uniqHLL12State(ip_hash) AS unique_clicks
FROM clicks
ARRAY JOIN [
    ('country', country),
    ('region', if(region = '', '', concat(country, '-', region))),
    ('city', city),
    ('platform', platform),
    ('os', os),
    ('browser', browser),
    ('device', multiIf(os = 'iPad', 'tablet', device IN ('smartphone', 'mobilephone'), 'mobile', device = 'pc', 'desktop', 'other')),
    ('referrer_host', domain(referrer)),
    ('variant', variant),
    ('sub1', sub1)
] AS d
WHERE is_bot = 0 AND is_preview = 0
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date;

CREATE TABLE IF NOT EXISTS breakdown_installs {on_cluster} (
    tenant_id String,
    dim String,
    scope String,
    link_id String,
    campaign String,
    source String,
    key String,
    date Date,
    match_type String,
    installs UInt64
) ENGINE = SummingMergeTree(installs)
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, dim, scope, link_id, campaign, source, key, date, match_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_installs_all_mv {on_cluster} TO breakdown_installs AS
SELECT tenant_id, d.1 AS dim, 'all' AS scope, '' AS link_id, '' AS campaign, '' AS source, d.2 AS key, date,
    match_type, count() AS installs
FROM installs
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, match_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_installs_link_mv {on_cluster} TO breakdown_installs AS
SELECT tenant_id, d.1 AS dim, 'link' AS scope, link_id, campaign, source, d.2 AS key, date,
    match_type, count() AS installs
FROM installs
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, match_type;

CREATE TABLE IF NOT EXISTS breakdown_conversions {on_cluster} (
    tenant_id String,
    dim String,
    scope String,
    link_id String,
    campaign String,
    source String,
    key String,
    date Date,
    type String,
    currency String,
    conversions UInt64,
    sum_cents Int64
) ENGINE = SummingMergeTree((conversions, sum_cents))
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, dim, scope, link_id, campaign, source, key, date, type, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_conversions_all_mv {on_cluster} TO breakdown_conversions AS
SELECT tenant_id, d.1 AS dim, 'all' AS scope, '' AS link_id, '' AS campaign, '' AS source, d.2 AS key, date,
    type, currency, count() AS conversions, sum(amount_cents) AS sum_cents
FROM conversions
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
WHERE attributed = 1
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, type, currency;

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_conversions_link_mv {on_cluster} TO breakdown_conversions AS
SELECT tenant_id, d.1 AS dim, 'link' AS scope, link_id, campaign, source, d.2 AS key, date,
    type, currency, count() AS conversions, sum(amount_cents) AS sum_cents
FROM conversions
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
WHERE attributed = 1
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, type, currency;

INSERT INTO breakdown_clicks
SELECT tenant_id, d.1 AS dim, 'all' AS scope, '' AS link_id, '' AS campaign, '' AS source, d.2 AS key, date,
    sumState(toUInt64(1)) AS clicks, uniqHLL12State(ip_hash) AS unique_clicks
FROM clicks
ARRAY JOIN [
    ('country', country),
    ('region', if(region = '', '', concat(country, '-', region))),
    ('city', city),
    ('platform', platform),
    ('os', os),
    ('browser', browser),
    ('device', multiIf(os = 'iPad', 'tablet', device IN ('smartphone', 'mobilephone'), 'mobile', device = 'pc', 'desktop', 'other')),
    ('referrer_host', domain(referrer)),
    ('variant', variant),
    ('sub1', sub1)
] AS d
WHERE is_bot = 0 AND is_preview = 0
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date;

INSERT INTO breakdown_clicks
SELECT tenant_id, d.1 AS dim, 'link' AS scope, link_id, campaign, source, d.2 AS key, date,
    sumState(toUInt64(1)) AS clicks, uniqHLL12State(ip_hash) AS unique_clicks
FROM clicks
ARRAY JOIN [
    ('country', country),
    ('region', if(region = '', '', concat(country, '-', region))),
    ('city', city),
    ('platform', platform),
    ('os', os),
    ('browser', browser),
    ('device', multiIf(os = 'iPad', 'tablet', device IN ('smartphone', 'mobilephone'), 'mobile', device = 'pc', 'desktop', 'other')),
    ('referrer_host', domain(referrer)),
    ('variant', variant),
    ('sub1', sub1)
] AS d
WHERE is_bot = 0 AND is_preview = 0
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date;

INSERT INTO breakdown_installs
SELECT tenant_id, d.1 AS dim, 'all' AS scope, '' AS link_id, '' AS campaign, '' AS source, d.2 AS key, date,
    match_type, count() AS installs
FROM installs
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, match_type;

INSERT INTO breakdown_installs
SELECT tenant_id, d.1 AS dim, 'link' AS scope, link_id, campaign, source, d.2 AS key, date,
    match_type, count() AS installs
FROM installs
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, match_type;

INSERT INTO breakdown_conversions
SELECT tenant_id, d.1 AS dim, 'all' AS scope, '' AS link_id, '' AS campaign, '' AS source, d.2 AS key, date,
    type, currency, count() AS conversions, sum(amount_cents) AS sum_cents
FROM conversions
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
WHERE attributed = 1
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, type, currency;

INSERT INTO breakdown_conversions
SELECT tenant_id, d.1 AS dim, 'link' AS scope, link_id, campaign, source, d.2 AS key, date,
    type, currency, count() AS conversions, sum(amount_cents) AS sum_cents
FROM conversions
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
WHERE attributed = 1
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, date, type, currency
