//! Attribution reports: a window of matched installs (at most 180 days, optionally one
//! campaign) POSTed to the tenant's report webhook in batches of at most 100 —
//! `{campaign_id, start_date, end_date, batch_index, total_batches, attribution_data}` — each
//! signed with the hex HMAC-SHA1 of its raw body. Building the batches is pure; `start`
//! records a report and `generate` reads ClickHouse and enqueues its batches as deliveries.

use serde_json::{json, Map, Value};
use tracing::{info, warn};

use std::time::Duration;

use super::worker::{client, send, Attempt};
use super::{Context, Job, Owner, Signing};
use crate::attribution::AttributionConfig;
use crate::click::ClickId;
use crate::error::{Error, FieldError};
use crate::stats::parse_day;
use crate::store::clickhouse::{
    matched_installs, InstallConversions, MatchedInstall, ResultsFilter,
};
use crate::time;

pub const BATCH: usize = 100;
pub const MAX_WINDOW_DAYS: u16 = 180;
/// Matches read from ClickHouse per query while generating.
const PAGE: usize = 10_000;

/// A validated report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub start: u16,
    pub end: u16,
    pub campaign_id: Option<String>,
}

/// A report request from its JSON body's fields.
pub fn request(object: &Map<String, Value>) -> Result<Request, FieldError> {
    if let Some(k) = object
        .keys()
        .find(|k| !["start_date", "end_date", "campaign_id"].contains(&k.as_str()))
    {
        return Err(FieldError::new(k, "is not a report field"));
    }
    let date = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_str)
            .and_then(parse_day)
            .ok_or_else(|| FieldError::new(field, "must be a date YYYY-MM-DD"))
    };
    let (start, end) = (date("start_date")?, date("end_date")?);
    if end < start {
        return Err(FieldError::new("end_date", "must not be before start_date"));
    }
    if end - start > MAX_WINDOW_DAYS {
        return Err(FieldError::new(
            "end_date",
            format!("must be no more than {MAX_WINDOW_DAYS} days after start_date"),
        ));
    }
    let campaign_id = match object.get("campaign_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if !c.is_empty() && c.len() <= 256 => Some(c.clone()),
        Some(_) => {
            return Err(FieldError::new(
                "campaign_id",
                "must be a non-empty string of at most 256 bytes",
            ))
        }
    };
    Ok(Request {
        start,
        end,
        campaign_id,
    })
}

/// How many batches `matches` make (an empty report is one empty batch).
pub fn total_batches(matches: usize) -> usize {
    matches.div_ceil(BATCH).max(1)
}

/// One match object of `attribution_data`.
pub fn match_object(m: &MatchedInstall, conversions: Option<&InstallConversions>) -> Value {
    let mut click = [0u8; 16];
    let click_id = hex::decode_to_slice(&m.click_id, &mut click)
        .ok()
        .filter(|_| click != [0; 16])
        .map(|_| ClickId(click).to_string());
    json!({
        "match_id": m.install_id,
        "campaign_id": m.campaign,
        "campaign_name": m.campaign,
        "link_id": m.link_id,
        "click_id": click_id,
        "install_id": m.install_id,
        "user_id": conversions.and_then(|c| c.user_id.clone()),
        "match_type": m.match_type,
        "click_time": click_id.as_ref().map(|_| time::rfc3339_from_ms(m.click_ts_ms)),
        "install_time": time::rfc3339_from_ms(m.ts_ms),
        "ctit_seconds": click_id.as_ref().map(|_| m.ctit_seconds),
        "source": m.source,
        "medium": m.medium,
        "country": m.country,
        "conversion_count": conversions.map_or(0, |c| c.count),
        "revenue": conversions.map(|c| c.revenue.clone()).unwrap_or_default(),
    })
}

/// A batch's raw body.
pub fn batch_body(r: &Request, index: usize, total: usize, data: Vec<Value>) -> String {
    json!({
        "campaign_id": r.campaign_id,
        "start_date": time::date_string(r.start),
        "end_date": time::date_string(r.end),
        "batch_index": index,
        "total_batches": total,
        "attribution_data": data,
    })
    .to_string()
}

/// Starts report `r`: recorded as `created`, then generated in the background. Answers its
/// id and the webhook it goes to.
pub async fn start(ctx: &Context, tenant: &str, r: &Request) -> Result<(String, String), Error> {
    let config = report_config(ctx, tenant).await?;
    let id = format!("rep_{}", hex::encode(rand::random::<[u8; 8]>()));
    ctx.redis
        .report_set(
            tenant,
            &id,
            &[
                ("id", id.clone()),
                ("start_date", time::date_string(r.start)),
                ("end_date", time::date_string(r.end)),
                ("campaign_id", r.campaign_id.clone().unwrap_or_default()),
                ("status", "created".into()),
                ("webhook", config.report_webhook_url.clone()),
                ("created_at", time::now_rfc3339()),
            ],
        )
        .await?;
    let (ctx2, tenant2, id2, r2) = (ctx.clone(), tenant.to_string(), id.clone(), r.clone());
    tokio::spawn(async move { generate(&ctx2, &tenant2, &id2, &r2).await });
    Ok((id, config.report_webhook_url))
}

/// Sends an empty signed batch to the report webhook now, once, and tells what it answered.
pub async fn test(ctx: &Context, tenant: &str) -> Result<Attempt, Error> {
    let config = report_config(ctx, tenant).await?;
    let today = (time::now_ms() / time::MS_PER_DAY) as u16;
    let r = Request {
        start: today,
        end: today,
        campaign_id: None,
    };
    let mut job = Job::new(
        tenant,
        Owner::Report {
            report_id: "test".into(),
        },
        config.report_webhook_url.clone(),
        Some(batch_body(&r, 0, 1, Vec::new())),
    );
    job.signing = Some(Signing::Sha1 {
        header: config.report_signature_header.clone(),
        secret: config.report_signing_secret.clone(),
    });
    let allow = ctx.config.allow_private_targets;
    let http = client(allow, Duration::from_millis(ctx.config.timeout_ms));
    Ok(send(&http, &job, allow).await)
}

/// The tenant's attribution config, which must name a report webhook before reports can go.
async fn report_config(ctx: &Context, tenant: &str) -> Result<AttributionConfig, Error> {
    let config = ctx.redis.attribution_config(tenant).await?;
    if config.report_webhook_url.is_empty() {
        return Err(Error::Conflict {
            code: "no_report_webhook",
            message: "set report_webhook_url with PATCH /v1/attribution/config first".into(),
            field: None,
        });
    }
    Ok(config)
}

/// A report's progress as the API shows it.
pub async fn progress(ctx: &Context, tenant: &str, id: &str) -> Result<Value, Error> {
    let fields = ctx.redis.report(tenant, id).await?;
    if fields.is_empty() {
        return Err(Error::NotFound(format!("no report {id:?}")));
    }
    let num = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (total, delivered, dead) = (
        num("total_batches"),
        num("delivered_batches"),
        num("dead_batches"),
    );
    let mut status = fields.get("status").cloned().unwrap_or_default();
    if status == "delivering" && total > 0 && delivered == total {
        status = "delivered".into();
    } else if status == "delivering" && dead > 0 && delivered + dead == total {
        status = "failed".into();
    }
    let campaign = fields.get("campaign_id").filter(|c| !c.is_empty());
    Ok(json!({
        "id": id,
        "start_date": fields.get("start_date"),
        "end_date": fields.get("end_date"),
        "campaign_scope": campaign.map_or("all", String::as_str),
        "status": status,
        "matches": num("matches"),
        "total_batches": total,
        "delivered_batches": delivered,
        "dead_batches": dead,
        "created_at": fields.get("created_at"),
        "response_webhooks": [fields.get("webhook")],
    }))
}

/// Reads the report's matches and enqueues its batches; records the total on the report.
pub async fn generate(ctx: &Context, tenant: &str, report_id: &str, r: &Request) {
    if let Err(error) = try_generate(ctx, tenant, report_id, r).await {
        warn!(%error, report = report_id, "report generation failed");
        let _ = ctx
            .redis
            .report_set(tenant, report_id, &[("status", "failed".to_string())])
            .await;
    }
}

async fn try_generate(
    ctx: &Context,
    tenant: &str,
    report_id: &str,
    r: &Request,
) -> Result<(), anyhow::Error> {
    let config = ctx.redis.attribution_config(tenant).await?;
    let filter = |before| ResultsFilter {
        // Installs the fraud rules rejected are not the partner's to be paid for.
        status: Some("attributed"),
        campaign: r.campaign_id.clone(),
        source: None,
        from_day: Some(r.start),
        to_day: Some(r.end),
        before,
        limit: PAGE,
    };
    // Every match, oldest pages last (newest first, as the results listing pages).
    let mut matches = Vec::new();
    let mut before = None;
    loop {
        let page = matched_installs(&ctx.ch, tenant, &filter(before.clone())).await?;
        let done = page.len() < PAGE;
        before = page.last().map(|m| (m.ts_ms, m.install_id.clone()));
        matches.extend(page);
        if done {
            break;
        }
    }
    let total = total_batches(matches.len());
    ctx.redis
        .report_set(
            tenant,
            report_id,
            &[
                ("status", "delivering".to_string()),
                ("total_batches", total.to_string()),
                ("matches", matches.len().to_string()),
            ],
        )
        .await?;
    let mut jobs = Vec::with_capacity(total);
    let chunks: Vec<&[MatchedInstall]> = if matches.is_empty() {
        vec![&[]]
    } else {
        matches.chunks(BATCH).collect()
    };
    for (index, chunk) in chunks.into_iter().enumerate() {
        let ids: Vec<&str> = chunk.iter().map(|m| m.install_id.as_str()).collect();
        let conversions =
            crate::store::clickhouse::install_conversions(&ctx.ch, tenant, &ids).await?;
        let data = chunk
            .iter()
            .map(|m| match_object(m, conversions.get(&m.install_id)))
            .collect();
        let mut job = Job::new(
            tenant,
            Owner::Report {
                report_id: report_id.to_string(),
            },
            config.report_webhook_url.clone(),
            Some(batch_body(r, index, total, data)),
        );
        job.signing = Some(Signing::Sha1 {
            header: config.report_signature_header.clone(),
            secret: config.report_signing_secret.clone(),
        });
        jobs.push(job);
        if jobs.len() == 100 {
            ctx.redis.enqueue(&jobs).await?;
            jobs.clear();
        }
    }
    ctx.redis.enqueue(&jobs).await?;
    ctx.metrics.deliveries_enqueued.increment(total as u64);
    info!(
        report = report_id,
        matches = matches.len(),
        batches = total,
        "report queued"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let ok =
            |v: Value| request(v.as_object().unwrap()).map(|r| (r.start, r.end, r.campaign_id));
        assert_eq!(
            ok(json!({"start_date": "2026-01-01", "end_date": "2026-06-30"})),
            Ok((20454, 20634, None))
        );
        assert!(ok(
            json!({"start_date": "2026-01-01", "end_date": "2026-06-30", "campaign_id": "c1"})
        )
        .is_ok());
        let bad = |v: Value| request(v.as_object().unwrap()).unwrap_err().field;
        assert_eq!(
            bad(json!({"start_date": "2026-01-01", "end_date": "2026-07-01"})),
            "end_date",
        );
        assert_eq!(
            bad(json!({"start_date": "2026-01-02", "end_date": "2026-01-01"})),
            "end_date"
        );
        assert_eq!(
            bad(json!({"start_date": "2026-02-30", "end_date": "2026-03-01"})),
            "start_date"
        );
        assert_eq!(bad(json!({"end_date": "2026-03-01"})), "start_date");
        assert_eq!(
            bad(json!({"start_date": "2026-01-01", "end_date": "2026-01-02", "campaign_id": 5})),
            "campaign_id"
        );
    }

    #[test]
    fn batches() {
        assert_eq!(total_batches(0), 1);
        assert_eq!(total_batches(100), 1);
        assert_eq!(total_batches(101), 2);
        assert_eq!(total_batches(250), 3);
    }
}
