-- Weekly unique-click sketches for the dimensions with many keys, beside the daily ones of
-- breakdown_clicks (scope all): a breakdown over a window merges its weeks' sketches and only
-- the edge days' daily ones (a 30-day window ending today: 4 or 5 weekly states and at most 6
-- daily ones per key instead of 30). The view reads clicks itself (18.16 does not run the
-- views of a view's target). The weeks so far are filled from the daily sketches once here;
-- a sketch merged twice changes nothing, as a sketch is the maximum of its registers.
CREATE TABLE IF NOT EXISTS breakdown_clicks_weekly {on_cluster} (
    tenant_id String,
    dim String,
    key String,
    week Date,
    unique_clicks AggregateFunction(uniqHLL12, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(week)
ORDER BY (tenant_id, dim, key, week)
SETTINGS index_granularity = 64;

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_clicks_weekly_mv {on_cluster} TO breakdown_clicks_weekly AS
SELECT tenant_id, d.1 AS dim, d.2 AS key, toMonday(date) AS week,
    uniqHLL12State(ip_hash) AS unique_clicks
FROM clicks
ARRAY JOIN [
    ('region', if(region = '', '', concat(country, '-', region))),
    ('city', city),
    ('referrer_host', domain(referrer)),
    ('sub1', sub1)
] AS d
WHERE is_bot = 0 AND is_preview = 0
GROUP BY tenant_id, dim, key, week;

INSERT INTO breakdown_clicks_weekly
SELECT tenant_id, dim, key, toMonday(date) AS week, uniqHLL12MergeState(unique_clicks) AS unique_clicks
FROM breakdown_clicks
WHERE scope = 'all' AND dim IN ('region', 'city', 'referrer_host', 'sub1')
GROUP BY tenant_id, dim, key, week;
