-- Daily aggregates that serve every stats endpoint, one table per fact, each fed by a
-- materialized view on inserts into its fact table (so the pipeline's exactly-once insert of a
-- batch counts it exactly once here too). Keyed by tenant, day, link, campaign, source and
-- medium. Rows with the same key are combined only when parts merge, whenever that happens:
-- stats queries always aggregate again (-Merge / sum with GROUP BY) and never read the raw
-- fact tables. Rows existing before this migration are folded in once, at the end.

-- Clicks: human clicks (neither bot nor preview), unique human clicks by IP hash, bots, previews.
-- Unique clicks are HyperLogLog sketches (uniqHLL12: exact up to 16 distinct, about 1.6%
-- error beyond): merging 30 days of them costs milliseconds where exact sets over millions of
-- IPs cost seconds.
CREATE TABLE IF NOT EXISTS stats_clicks {on_cluster} (
    tenant_id String,
    date Date,
    link_id String,
    campaign String,
    source String,
    medium String,
    clicks AggregateFunction(sum, UInt64),
    unique_clicks AggregateFunction(uniqHLL12If, UInt64, UInt8),
    bot_clicks AggregateFunction(sum, UInt64),
    preview_clicks AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, link_id, campaign, source, medium);

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_clicks_mv {on_cluster} TO stats_clicks AS
SELECT tenant_id, date, link_id, campaign, source, medium,
    sumState(toUInt64(is_bot = 0 AND is_preview = 0)) AS clicks,
    uniqHLL12IfState(ip_hash, is_bot = 0 AND is_preview = 0) AS unique_clicks,
    sumState(toUInt64(is_bot)) AS bot_clicks,
    sumState(toUInt64(is_preview)) AS preview_clicks
FROM clicks
GROUP BY tenant_id, date, link_id, campaign, source, medium;

-- Installs by match type (organic ones have empty link and, unless self-reported, campaign).
CREATE TABLE IF NOT EXISTS stats_installs {on_cluster} (
    tenant_id String,
    date Date,
    link_id String,
    campaign String,
    source String,
    medium String,
    match_type String,
    installs UInt64
) ENGINE = SummingMergeTree(installs)
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, link_id, campaign, source, medium, match_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_installs_mv {on_cluster} TO stats_installs AS
SELECT tenant_id, date, link_id, campaign, source, medium, match_type, count() AS installs
FROM installs
GROUP BY tenant_id, date, link_id, campaign, source, medium, match_type;

-- Events by name, on the day they happened.
CREATE TABLE IF NOT EXISTS stats_events {on_cluster} (
    tenant_id String,
    date Date,
    link_id String,
    campaign String,
    source String,
    medium String,
    event_name String,
    events UInt64
) ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, link_id, campaign, source, medium, event_name);

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_events_mv {on_cluster} TO stats_events AS
SELECT tenant_id, date, link_id, campaign, source, medium, event_name, count() AS events
FROM events
GROUP BY tenant_id, date, link_id, campaign, source, medium, event_name;

-- Attributed conversions by type and currency: count and summed amount (refunds negative).
-- Unattributed conversions are kept in `conversions` for audit and never counted here.
CREATE TABLE IF NOT EXISTS stats_conversions {on_cluster} (
    tenant_id String,
    date Date,
    link_id String,
    campaign String,
    source String,
    medium String,
    type String,
    currency String,
    conversions UInt64,
    sum_cents Int64
) ENGINE = SummingMergeTree((conversions, sum_cents))
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, link_id, campaign, source, medium, type, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_conversions_mv {on_cluster} TO stats_conversions AS
SELECT tenant_id, date, link_id, campaign, source, medium, type, currency,
    count() AS conversions, sum(amount_cents) AS sum_cents
FROM conversions
WHERE attributed = 1
GROUP BY tenant_id, date, link_id, campaign, source, medium, type, currency;

INSERT INTO stats_clicks
SELECT tenant_id, date, link_id, campaign, source, medium,
    sumState(toUInt64(is_bot = 0 AND is_preview = 0)),
    uniqHLL12IfState(ip_hash, is_bot = 0 AND is_preview = 0),
    sumState(toUInt64(is_bot)),
    sumState(toUInt64(is_preview))
FROM clicks
GROUP BY tenant_id, date, link_id, campaign, source, medium;

INSERT INTO stats_installs
SELECT tenant_id, date, link_id, campaign, source, medium, match_type, count()
FROM installs
GROUP BY tenant_id, date, link_id, campaign, source, medium, match_type;

INSERT INTO stats_events
SELECT tenant_id, date, link_id, campaign, source, medium, event_name, count()
FROM events
GROUP BY tenant_id, date, link_id, campaign, source, medium, event_name;

INSERT INTO stats_conversions
SELECT tenant_id, date, link_id, campaign, source, medium, type, currency, count(), sum(amount_cents)
FROM conversions
WHERE attributed = 1
GROUP BY tenant_id, date, link_id, campaign, source, medium, type, currency
