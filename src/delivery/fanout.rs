//! Turning stored facts into deliveries: a webhook job for every subscription to the fact's
//! kind, and a partner postback when the fact is attributed to a click on a partner's link and
//! the partner has a template for its type. Jobs are enqueued after the facts are durable; a
//! tenant with neither webhooks nor partner-attributed facts costs one cached lookup.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tracing::warn;

use super::partner::fill;
use super::{Context, Job, Owner, Signing};
use crate::attribution::install::InstallAttribution;
use crate::time;

/// A stored fact to deliver.
pub struct Fact {
    /// `install`, `event` or `conversion`: what webhooks subscribe to.
    pub kind: &'static str,
    /// The postback template it fires: `install`, the event name, the conversion type.
    pub name: String,
    pub attribution: Option<InstallAttribution>,
    pub ts_ms: u64,
    /// (decimal amount in the major unit, currency), for `{revenue}` and `{currency}`.
    pub revenue: Option<(String, String)>,
    /// The webhook payload's `data`.
    pub data: Value,
    /// A rejected install's first reason code and its value, for `{rejection_reason}` and
    /// `{rejection_value}`.
    pub rejection: Option<(String, String)>,
}

/// Whether facts of `tenant` can lead to any delivery: it has webhooks, or some fact is
/// attributed to a partner's link. Lets the ingest paths skip building payloads.
pub async fn wanted(ctx: &Context, tenant: &str, any_partner: bool) -> bool {
    any_partner
        || ctx
            .redis
            .webhooks_cached(tenant)
            .await
            .map_or(true, |w| !w.is_empty())
}

/// Enqueues the deliveries for `facts`. Failures are logged and counted, never returned: the
/// facts are stored, and their sender must not retry them for a delivery's sake.
pub async fn deliver(ctx: &Context, tenant: &str, facts: Vec<Fact>) {
    if facts.is_empty() {
        return;
    }
    match jobs(ctx, tenant, facts).await {
        Ok(jobs) if jobs.is_empty() => {}
        Ok(jobs) => match ctx.redis.enqueue(&jobs).await {
            Ok(()) => ctx.metrics.deliveries_enqueued.increment(jobs.len() as u64),
            Err(error) => {
                ctx.metrics.deliveries_lost.increment(jobs.len() as u64);
                warn!(%error, jobs = jobs.len(), "deliveries not enqueued");
            }
        },
        Err(error) => warn!(%error, "deliveries not planned"),
    }
}

async fn jobs(
    ctx: &Context,
    tenant: &str,
    facts: Vec<Fact>,
) -> Result<Vec<Job>, crate::store::redis::RedisError> {
    let webhooks = ctx.redis.webhooks_cached(tenant).await?;
    let mut partners = BTreeMap::new();
    let mut jobs = Vec::new();
    for fact in facts {
        for hook in webhooks
            .iter()
            .filter(|w| w.events.iter().any(|e| e == fact.kind))
        {
            let mut job = Job::new(
                tenant,
                Owner::Webhook {
                    webhook_id: hook.id.clone(),
                },
                hook.url.clone(),
                None,
            );
            job.body = Some(
                json!({
                    "event_id": job.id,
                    "type": fact.kind,
                    "created_at": time::rfc3339_from_ms(fact.ts_ms),
                    "data": fact.data,
                })
                .to_string(),
            );
            job.signing = Some(Signing::Webhook {
                secret: hook.secret.clone(),
            });
            jobs.push(job);
        }
        let Some(a) = fact
            .attribution
            .as_ref()
            .filter(|a| !a.partner_id.is_empty())
        else {
            continue;
        };
        if !partners.contains_key(&a.partner_id) {
            let p = ctx.redis.partner_cached(tenant, &a.partner_id).await?;
            partners.insert(a.partner_id.clone(), p);
        }
        let Some(partner) = partners[&a.partner_id].as_ref() else {
            continue;
        };
        let Some(template) = partner.postbacks.get(&fact.name) else {
            continue;
        };
        let mut values: BTreeMap<&str, String> = BTreeMap::from([
            ("click_id", a.partner_click_id.clone()),
            ("event", fact.name.clone()),
            ("campaign", a.campaign.clone()),
            ("source", a.source.clone()),
            ("country", a.country.clone()),
            ("match_type", a.match_type.as_str().to_string()),
            ("ctit_seconds", a.ctit_seconds.to_string()),
            ("timestamp", (fact.ts_ms / 1000).to_string()),
        ]);
        for (i, sub) in a.subs.iter().enumerate() {
            values.insert(["sub1", "sub2", "sub3", "sub4", "sub5"][i], sub.clone());
        }
        if let Some((code, value)) = &fact.rejection {
            values.insert("rejection_reason", code.clone());
            values.insert("rejection_value", value.clone());
        }
        if let (true, Some((amount, currency))) = (partner.share_revenue, &fact.revenue) {
            values.insert("revenue", amount.clone());
            values.insert("currency", currency.clone());
        }
        jobs.push(Job::new(
            tenant,
            Owner::Postback {
                partner_id: partner.id.clone(),
            },
            fill(template, &values),
            None,
        ));
    }
    Ok(jobs)
}
