-- Weekly unique-click sketches beside the daily ones of breakdown_clicks: a breakdown over a
-- window merges its full weeks' sketches and only the edge days' daily ones (a 30-day window:
-- 4 or 5 weekly states and 2 to 12 daily ones per key instead of 30). Fed by the daily
-- table's own inserts (a view of a view's target), and filled from it once here; a day's
-- sketch merged twice changes nothing, as a sketch is the maximum of its registers.
CREATE TABLE IF NOT EXISTS breakdown_clicks_weekly {on_cluster} (
    tenant_id String,
    dim String,
    scope String,
    link_id String,
    campaign String,
    source String,
    key String,
    week Date,
    unique_clicks AggregateFunction(uniqHLL12, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(week)
ORDER BY (tenant_id, dim, scope, link_id, campaign, source, key, week)
SETTINGS index_granularity = 64;

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_clicks_weekly_mv {on_cluster} TO breakdown_clicks_weekly AS
SELECT tenant_id, dim, scope, link_id, campaign, source, key, toMonday(date) AS week,
    uniqHLL12MergeState(unique_clicks) AS unique_clicks
FROM breakdown_clicks
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, week;

INSERT INTO breakdown_clicks_weekly
SELECT tenant_id, dim, scope, link_id, campaign, source, key, toMonday(date) AS week,
    uniqHLL12MergeState(unique_clicks) AS unique_clicks
FROM breakdown_clicks
GROUP BY tenant_id, dim, scope, link_id, campaign, source, key, week;
