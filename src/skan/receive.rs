//! Receiving a postback, whichever way it comes: Apple devices' copies at the well-known
//! paths, or an ad network's forwards through the API. The postback names its app; the app
//! names its tenant. Every postback read is stored once per transaction id (Apple retries a
//! postback it got no `200` for, and a network may forward the copy Apple sent here too);
//! those that verify are counted and forwarded to the partner with their ad network id.
//!
//! Verified and unverified postbacks take their transaction ids apart: a forged postback
//! reusing a real one's id cannot keep the real one from being counted.

use serde_json::{json, Map, Value};
use tracing::warn;

use super::keys::AppleKeys;
use super::postback::{Postback, Received};
use crate::conversions::ingest;
use crate::delivery::{Job, Owner, Signing};
use crate::error::{Error, FieldError};
use crate::pipeline::batch::{BatchKind, Facts};
use crate::time;

/// What receiving works with.
pub struct Context<'a> {
    pub ingest: ingest::Context<'a>,
    pub keys: &'a AppleKeys,
}

/// Where a postback came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    /// `/.well-known/skadnetwork/report-attribution/`.
    SkAdNetwork,
    /// `/.well-known/appattribution/report-attribution/`.
    AppAttribution,
    /// `POST /v1/skan/postbacks`, from the tenant (as its key says).
    AdNetwork { tenant: String },
}

impl Receiver {
    fn as_str(&self) -> &'static str {
        match self {
            Receiver::SkAdNetwork => "skadnetwork",
            Receiver::AppAttribution => "appattribution",
            Receiver::AdNetwork { .. } => "ad_network",
        }
    }
}

/// What became of a postback.
#[derive(Debug)]
pub struct Outcome {
    pub postback: Postback,
    /// False: a copy with its transaction id was stored before.
    pub stored: bool,
    pub counted: bool,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "status": if self.stored { "stored" } else { "duplicate" },
            "framework": self.postback.kind,
            "version": self.postback.version,
            "transaction_id": self.postback.transaction_id,
            "signature": self.postback.check.as_str(),
            "counted": self.counted,
        })
    }
}

/// A postback read, verified and placed with its tenant, not yet stored.
pub struct Read<'a> {
    pub postback: Postback,
    pub tenant: String,
    counted: bool,
    receiver: Receiver,
    body: &'a str,
}

/// Reads and verifies one postback body and finds its tenant: `400` for a body that is not a
/// postback, `404` for an app no tenant registered (or, through the API, not the caller's).
pub async fn read<'a>(
    ctx: &Context<'_>,
    receiver: Receiver,
    body: &'a [u8],
) -> Result<Read<'a>, Error> {
    let fields: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| FieldError::new("body", "must be a JSON object (a postback)"))?;
    let body = std::str::from_utf8(body).map_err(|_| FieldError::new("body", "must be UTF-8"))?;
    let postback = Postback::read(&fields, ctx.keys)?;
    let unknown = || {
        Error::NotFound(format!(
            "no app with App Store id {} is registered",
            postback.app_id
        ))
    };
    let redis = ctx.ingest.redis;
    let owner = redis
        .app_owner(postback.app_id)
        .await?
        .ok_or_else(unknown)?;
    if let Receiver::AdNetwork { tenant } = &receiver {
        // A tenant forwards postbacks of its own apps only.
        if *tenant != owner.tenant_id {
            return Err(unknown());
        }
    }
    let app = redis
        .app(&owner.tenant_id, &owner.app_id)
        .await?
        .ok_or_else(unknown)?;
    Ok(Read {
        counted: postback.counts(app.count_development_postbacks),
        postback,
        tenant: owner.tenant_id,
        receiver,
        body,
    })
}

/// Stores a postback once per transaction id and forwards it when it counts.
pub async fn store(ctx: &Context<'_>, read: Read<'_>) -> Result<Outcome, Error> {
    let Read {
        postback,
        tenant,
        counted,
        receiver,
        body,
    } = read;
    let now = time::now_ms();
    let mut facts = Facts::new(BatchKind::SkanPostbacks);
    postback.encode(
        &mut facts.data,
        &Received {
            ms: now,
            tenant_id: &tenant,
            receiver: receiver.as_str(),
            counted,
            body,
        },
    );
    facts.end_row(now);
    let namespace = if counted { "skan" } else { "skan_unverified" };
    let id = postback.transaction_id.as_bytes();
    let stored = ingest::store_once(&ctx.ingest, &tenant, namespace, id, facts).await?;
    let metrics = ctx.ingest.metrics;
    metrics.skan_postbacks[usize::from(stored) * 2 + usize::from(counted)].increment(1);
    if stored && counted {
        forward(&ctx.ingest, &tenant, &postback, body).await;
    }
    Ok(Outcome {
        postback,
        stored,
        counted,
    })
}

/// Queues a copy of the postback, as received, for each partner with its ad network id.
/// Failures are logged and counted: the postback is stored, and Apple must not resend it for
/// a forward's sake.
async fn forward(ctx: &ingest::Context<'_>, tenant: &str, postback: &Postback, body: &str) {
    let delivery = ctx.delivery;
    let partners = match ctx.redis.partners_of(tenant).await {
        Ok(p) => p,
        Err(error) => {
            warn!(%error, "partners not read; postback not forwarded");
            delivery.metrics.deliveries_lost.increment(1);
            return;
        }
    };
    let jobs: Vec<Job> = partners
        .into_iter()
        .filter(|p| p.skan_ad_network_id.as_deref() == Some(postback.ad_network_id.as_str()))
        .filter_map(|p| {
            let (url, secret) = (p.skan_postback_url?, p.skan_secret?);
            let mut job = Job::new(
                tenant,
                Owner::Postback { partner_id: p.id },
                url,
                Some(body.to_string()),
            );
            job.signing = Some(Signing::Webhook { secret });
            Some(job)
        })
        .collect();
    if jobs.is_empty() {
        return;
    }
    match ctx.redis.enqueue(&jobs).await {
        Ok(()) => delivery
            .metrics
            .deliveries_enqueued
            .increment(jobs.len() as u64),
        Err(error) => {
            delivery
                .metrics
                .deliveries_lost
                .increment(jobs.len() as u64);
            warn!(%error, "postback forwards not enqueued");
        }
    }
}
