-- Fraud protection (SPEC "Fraud protection"). A click records whether its address was in the
-- anonymous-address database; an install records its status, its tenant's fraud mode, the
-- verdict, the rules that fired with their values, and how many other clicks could have
-- explained it. Rows from before keep the defaults (status '' reads as attributed or organic
-- by match type).
ALTER TABLE clicks {on_cluster} ADD COLUMN is_anonymous UInt8 DEFAULT 0;

ALTER TABLE installs {on_cluster}
    ADD COLUMN status String DEFAULT '',
    ADD COLUMN fraud_mode String DEFAULT '',
    ADD COLUMN fraud_verdict String DEFAULT '',
    ADD COLUMN fraud_reasons Array(String),
    ADD COLUMN fraud_values Array(String),
    ADD COLUMN competing_clicks UInt32 DEFAULT 0;

-- Click facts gain what the fraud rules ask of a click matched by id: its visitor (IP hash,
-- platform and browser, from which the fingerprint key follows) and its flags ('b' a bot's,
-- 'a' an anonymous address's). Bot clicks are kept now, so that the `bot` rule can judge an
-- install that names one; previews still are not. The old view is dropped after the new one
-- exists, so no click is missed (a batch stored in between is in both: the reader takes one
-- row per id).
CREATE MATERIALIZED VIEW IF NOT EXISTS click_facts_visitor_mv {on_cluster} TO click_facts AS
SELECT date, click_id, tenant_id,
    arrayStringConcat(arrayMap(f -> concat(toString(length(f)), ':', f),
        [tenant_id, link_id, campaign, source, medium, partner_click_id, sub1, sub2, sub3, sub4, sub5, country, variant,
         toString(ip_hash), platform, browser, concat(if(is_bot = 1, 'b', ''), if(is_anonymous = 1, 'a', ''))])) AS facts
FROM clicks
WHERE is_preview = 0;

DROP TABLE IF EXISTS click_facts_variant_mv {on_cluster};

-- Installs the rules fired on, by verdict: one row per install with reason '' (the install
-- itself) and one per reason, by the dimensions stats and breakdowns report them under. Stats
-- count `rejected_installs` here (the installs tables count a rejected install under its match
-- type: attributed = all - organic - rejected).
CREATE TABLE IF NOT EXISTS fraud_installs {on_cluster} (
    tenant_id String,
    date Date,
    verdict String,
    reason String,
    link_id String,
    campaign String,
    source String,
    medium String,
    country String,
    platform String,
    sub1 String,
    variant String,
    installs UInt64
) ENGINE = SummingMergeTree(installs)
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, verdict, reason, link_id, campaign, source, medium, country, platform, sub1, variant);

CREATE MATERIALIZED VIEW IF NOT EXISTS fraud_installs_mv {on_cluster} TO fraud_installs AS
SELECT tenant_id, date, fraud_verdict AS verdict, reason, link_id, campaign, source, medium,
    country, platform, sub1, variant, count() AS installs
FROM installs
ARRAY JOIN arrayConcat([''], fraud_reasons) AS reason
WHERE notEmpty(fraud_reasons)
GROUP BY tenant_id, date, verdict, reason, link_id, campaign, source, medium, country, platform, sub1, variant;

-- The click-to-install time histogram per source (`GET /v1/attribution/stats/ctit`): installs
-- matched to a click, rejected ones included, counted in buckets named by their lower edge in
-- seconds (`stats::ctit::EDGES`): 0, 10 s, 30 s, 1, 5, 15, 30 min, 1, 3, 6, 12 h, 1, 3, 7 d.
CREATE TABLE IF NOT EXISTS ctit_installs {on_cluster} (
    tenant_id String,
    date Date,
    source String,
    bucket UInt32,
    installs UInt64
) ENGINE = SummingMergeTree(installs)
PARTITION BY toYYYYMM(date)
ORDER BY (tenant_id, date, source, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS ctit_installs_mv {on_cluster} TO ctit_installs AS
SELECT tenant_id, date, source,
    toUInt32(multiIf(ctit_seconds < 10, 0, ctit_seconds < 30, 10, ctit_seconds < 60, 30,
        ctit_seconds < 300, 60, ctit_seconds < 900, 300, ctit_seconds < 1800, 900,
        ctit_seconds < 3600, 1800, ctit_seconds < 10800, 3600, ctit_seconds < 21600, 10800,
        ctit_seconds < 43200, 21600, ctit_seconds < 86400, 43200, ctit_seconds < 259200, 86400,
        ctit_seconds < 604800, 259200, 604800)) AS bucket,
    count() AS installs
FROM installs
WHERE match_type IN ('click_id', 'referrer', 'fingerprint')
GROUP BY tenant_id, date, source, bucket;

-- Installs from before, folded in once (none was judged: only their CTIT).
INSERT INTO ctit_installs
SELECT tenant_id, date, source,
    toUInt32(multiIf(ctit_seconds < 10, 0, ctit_seconds < 30, 10, ctit_seconds < 60, 30,
        ctit_seconds < 300, 60, ctit_seconds < 900, 300, ctit_seconds < 1800, 900,
        ctit_seconds < 3600, 1800, ctit_seconds < 10800, 3600, ctit_seconds < 21600, 10800,
        ctit_seconds < 43200, 21600, ctit_seconds < 86400, 43200, ctit_seconds < 259200, 86400,
        ctit_seconds < 604800, 259200, 604800)) AS bucket,
    count() AS installs
FROM installs
WHERE match_type IN ('click_id', 'referrer', 'fingerprint')
GROUP BY tenant_id, date, source, bucket;
