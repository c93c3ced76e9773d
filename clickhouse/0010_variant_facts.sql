-- The split variant travels with the click: click_facts gains it as a 13th field (so an install
-- matched by click id knows it), installs store it, and conversions store the dimensions they
-- are broken down by (the install's country, platform, sub1 and variant). Rows from before keep
-- empty values.
--
-- The new view writes the 13-field facts; the old one is dropped after it, so no click is
-- missed (a batch stored in between is in both: the reader takes one row per id).
CREATE MATERIALIZED VIEW IF NOT EXISTS click_facts_variant_mv {on_cluster} TO click_facts AS
SELECT date, click_id, tenant_id,
    arrayStringConcat(arrayMap(f -> concat(toString(length(f)), ':', f),
        [tenant_id, link_id, campaign, source, medium, partner_click_id, sub1, sub2, sub3, sub4, sub5, country, variant])) AS facts
FROM clicks
WHERE is_bot = 0 AND is_preview = 0;

DROP TABLE IF EXISTS click_facts_mv {on_cluster};

ALTER TABLE installs {on_cluster} ADD COLUMN variant String DEFAULT '';

ALTER TABLE conversions {on_cluster}
    ADD COLUMN country String DEFAULT '',
    ADD COLUMN platform String DEFAULT '',
    ADD COLUMN sub1 String DEFAULT '',
    ADD COLUMN variant String DEFAULT '';

-- Breakdowns: installs by variant too, and attributed conversions by the install's country,
-- platform, sub1 and variant (the `link` dimension's come from stats_conversions).
CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_installs_variant_mv {on_cluster} TO breakdown_installs AS
SELECT tenant_id, 'variant' AS dim, date, variant AS key, link_id, campaign, source, match_type,
    count() AS installs
FROM installs
GROUP BY tenant_id, dim, date, key, link_id, campaign, source, match_type;

CREATE TABLE IF NOT EXISTS breakdown_conversions {on_cluster} (
    tenant_id String,
    dim String,
    date Date,
    key String,
    link_id String,
    campaign String,
    source String,
    type String,
    currency String,
    conversions UInt64,
    sum_cents Int64
) ENGINE = SummingMergeTree((conversions, sum_cents))
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, dim, date, key, link_id, campaign, source, type, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS breakdown_conversions_mv {on_cluster} TO breakdown_conversions AS
SELECT tenant_id, d.1 AS dim, date, d.2 AS key, link_id, campaign, source, type, currency,
    count() AS conversions, sum(amount_cents) AS sum_cents
FROM conversions
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
WHERE attributed = 1
GROUP BY tenant_id, dim, date, key, link_id, campaign, source, type, currency;

-- Installs and conversions stored before, folded in once (their dimensions unknown: empty).
INSERT INTO breakdown_installs
SELECT tenant_id, 'variant', date, variant, link_id, campaign, source, match_type, count()
FROM installs
GROUP BY tenant_id, date, variant, link_id, campaign, source, match_type;

INSERT INTO breakdown_conversions
SELECT tenant_id, d.1 AS dim, date, d.2 AS key, link_id, campaign, source, type, currency,
    count(), sum(amount_cents)
FROM conversions
ARRAY JOIN [('country', country), ('platform', platform), ('sub1', sub1), ('variant', variant)] AS d
WHERE attributed = 1
GROUP BY tenant_id, dim, date, key, link_id, campaign, source, type, currency
