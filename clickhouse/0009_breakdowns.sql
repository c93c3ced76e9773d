-- Breakdowns (GET /v1/attribution/stats/breakdown): human clicks and installs by one
-- dimension's value, daily per tenant, link, campaign and source. Each fact is counted once
-- under each dimension it has a value for (ARRAY JOIN over the dimensions), so one table
-- serves every dimension and a query reads only its dimension's range of the key. Queries
-- aggregate again (-Merge / sum with GROUP BY), as for the other stats tables; the `link`
-- dimension is served by the stats tables of 0005.
--
-- Device classes from the stored agent: woothee calls phones and tablets smartphones, and the
-- only tablet it names is the iPad. Regions carry their country (`US-CA`); referrers are
-- reduced to their host.
CREATE TABLE IF NOT EXISTS breakdown_clicks {on_cluster} (
    tenant_id String,
    dim String,
    date Date,
    key String,
    link_id String,
    campaign String,
    source String,
    clicks AggregateFunction(sum, UInt64),
    unique_clicks AggregateFunction(uniqHLL12, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, dim, date, key, link_id, campaign, source);

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_clicks_mv {on_cluster} TO breakdown_clicks AS
SELECT tenant_id, d.1 AS dim, date, d.2 AS key, link_id, campaign, source,
    sumState(toUInt64(1)) AS clicks,
    uniqHLL12State(ip_hash) AS unique_clicks
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
GROUP BY tenant_id, dim, date, key, link_id, campaign, source;

-- Installs by the dimensions their row carries from the matched click (country, sub1) or
-- reports itself (platform), by match type.
CREATE TABLE IF NOT EXISTS breakdown_installs {on_cluster} (
    tenant_id String,
    dim String,
    date Date,
    key String,
    link_id String,
    campaign String,
    source String,
    match_type String,
    installs UInt64
) ENGINE = SummingMergeTree(installs)
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, dim, date, key, link_id, campaign, source, match_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_installs_mv {on_cluster} TO breakdown_installs AS
SELECT tenant_id, d.1 AS dim, date, d.2 AS key, link_id, campaign, source, match_type,
    count() AS installs
FROM installs
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1)] AS d
GROUP BY tenant_id, dim, date, key, link_id, campaign, source, match_type;

-- Facts stored before, folded in once.
INSERT INTO breakdown_clicks
SELECT tenant_id, d.1 AS dim, date, d.2 AS key, link_id, campaign, source,
    sumState(toUInt64(1)), uniqHLL12State(ip_hash)
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
GROUP BY tenant_id, dim, date, key, link_id, campaign, source;

INSERT INTO breakdown_installs
SELECT tenant_id, d.1 AS dim, date, d.2 AS key, link_id, campaign, source, match_type, count()
FROM installs
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1)] AS d
GROUP BY tenant_id, dim, date, key, link_id, campaign, source, match_type
