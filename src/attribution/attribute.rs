//! The install use case: a validated report in, its attribution out. The order in which
//! candidates are tried lives in two places that agree: explicit candidates (click id, then
//! Play referrer) are checked against ClickHouse and `admissible` here, in preference order,
//! and `redis/flip.lua` claims the first still unclaimed one or, failing all, the device's
//! freshest fingerprint; with no claim, `resolve` decides between self-reported metadata and
//! organic. The install row, the remembered attribution (for events and conversions) and the
//! deliveries follow from that one answer.

use serde_json::{json, Map, Value};
use tracing::warn;

use super::fraud::{fraud_json, Evidence, Judgement, Verdict};
use super::install::{self, ClickFacts, InstallAttribution, InstallRow};
use super::{
    admissible, referrer, resolve, AttributionConfig, Candidate, InstallPlatform, MatchType,
    SelfReported,
};
use crate::click::ClickId;
use crate::delivery::fanout::{self, Fact};
use crate::error::{Error, FieldError};
use crate::link::template::Values;
use crate::link::LinkTable;
use crate::metrics::Metrics;
use crate::pipeline::batch::{BatchKind, Facts};
use crate::pipeline::fingerprints;
use crate::pipeline::ring::RowQueue;
use crate::store::click_lookup::ClickLookup;
use crate::store::redis::{Binding, Claim, Flip, FlipRequest, Redis};
use crate::time;

/// What the use case works with.
pub struct Context<'a> {
    pub redis: &'a Redis,
    pub clicks: &'a ClickLookup,
    pub links: &'a LinkTable,
    pub rows: &'a RowQueue,
    pub delivery: &'a crate::delivery::Context,
    pub metrics: &'static Metrics,
}

pub const MAX_INSTALL_ID: usize = 128;
pub const MAX_META: usize = 256;

/// The fields of an install or deferred report.
pub const REPORT_FIELDS: [&str; 13] = [
    "install_id",
    "platform",
    "click_id",
    "install_referrer",
    "source",
    "medium",
    "campaign",
    "os_version",
    "device_model",
    "app_version",
    "installed_at",
    "referrer_click_timestamp_seconds",
    "install_begin_timestamp_seconds",
];

/// A validated install report.
pub struct Report<'a> {
    pub install_id: &'a str,
    pub platform: InstallPlatform,
    pub click_id: Option<ClickId>,
    pub referrer_click: Option<ClickId>,
    pub reported: SelfReported<'a>,
    /// os_version, device_model, app_version.
    pub device: [&'a str; 3],
    pub installed_at: Option<u64>,
    /// The Play install referrer's `referrer_click_timestamp_seconds` and
    /// `install_begin_timestamp_seconds`, when the app read them.
    pub referrer_times: [Option<u64>; 2],
}

/// A string field of a client body, bounded and free of control characters.
pub fn text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, FieldError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(FieldError::new(
            field,
            format!("is longer than {max} bytes"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(FieldError::new(
            field,
            "must not contain control characters",
        )),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// A required, non-blank string field.
pub fn required<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<&'a str, FieldError> {
    text(body, field, max)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| FieldError::new(field, "is required"))
}

impl<'a> Report<'a> {
    /// Reads a report's fields (the caller has refused unknown ones).
    pub fn parse(body: &'a Map<String, Value>, now_ms: u64) -> Result<Report<'a>, FieldError> {
        let install_id = required(body, "install_id", MAX_INSTALL_ID)?;
        let platform = InstallPlatform::parse(required(body, "platform", 16)?)
            .ok_or_else(|| FieldError::new("platform", "must be ios, android or web"))?;
        let click_id = match text(body, "click_id", 64)? {
            Some(s) => Some(
                ClickId::parse(s.trim())
                    .ok_or_else(|| FieldError::new("click_id", "is not a Sluice click id"))?,
            ),
            None => None,
        };
        let referrer_click = match text(body, "install_referrer", referrer::MAX_LEN)? {
            Some(r) => referrer::click_id(r)
                .map_err(|e| FieldError::new("install_referrer", e.to_string()))?,
            None => None,
        };
        let installed_at = match text(body, "installed_at", 64)? {
            Some(s) => Some(
                time::parse_rfc3339(s)
                    .ok_or("must be an ISO 8601 date-time with a zone")
                    .and_then(|ms| time::plausible(ms, now_ms))
                    .map_err(|e| FieldError::new("installed_at", e))?,
            ),
            None => None,
        };
        let seconds = |field: &str| match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&s| s > 0)
                .ok_or("must be a Unix time in seconds")
                .and_then(|s| time::plausible(s.saturating_mul(1000), now_ms).map(|_| Some(s)))
                .map_err(|e| FieldError::new(field, e)),
        };
        let referrer_times = [
            seconds("referrer_click_timestamp_seconds")?,
            seconds("install_begin_timestamp_seconds")?,
        ];
        Ok(Report {
            install_id,
            platform,
            click_id,
            referrer_click,
            reported: SelfReported {
                source: text(body, "source", MAX_META)?,
                medium: text(body, "medium", MAX_META)?,
                campaign: text(body, "campaign", MAX_META)?,
            },
            device: [
                text(body, "os_version", 64)?.unwrap_or(""),
                text(body, "device_model", 128)?.unwrap_or(""),
                text(body, "app_version", 64)?.unwrap_or(""),
            ],
            installed_at,
            referrer_times,
        })
    }
}

/// The installing device as fingerprints know it: its device key
/// (`fingerprints::device`) and its keyed IP hash.
pub struct Device {
    pub key: &'static str,
    pub ip_hash: u64,
    /// Its address is in the anonymous-address database.
    pub anonymous: bool,
}

/// An install's attribution, as the client endpoints answer it. A rejected install is answered
/// like an organic one: the verdict and its reasons are for the tenant (the receipt), not for a
/// client a fraudster controls.
#[derive(Default)]
pub struct Attributed {
    pub match_type: MatchType,
    /// The matched click.
    pub click: Option<ClickFacts>,
    pub ctit_seconds: Option<u64>,
    /// The deferred deep link: the link's destination for the install's platform, expanded
    /// with the click's values (absent when the link is gone).
    pub target: Option<String>,
}

/// Resolves the install, claims its click atomically, records it once (a retry gets the
/// first answer and records nothing), and queues its deliveries.
pub async fn attribute(
    ctx: &Context<'_>,
    tenant: &str,
    r: &Report<'_>,
    device: Device,
    received_ms: u64,
) -> Result<Attributed, Error> {
    if ctx.rows.is_full(1024) {
        return Err(Error::Busy("install recording is backed up; retry shortly"));
    }
    let config = ctx.redis.attribution_config(tenant).await?;
    let install_ms = r.installed_at.unwrap_or(received_ms);

    // Explicit candidates are looked up in ClickHouse under this tenant: another tenant's
    // click id is simply not found.
    let wanted: Vec<(MatchType, ClickId)> = [
        (MatchType::ClickId, r.click_id),
        (MatchType::Referrer, r.referrer_click),
    ]
    .into_iter()
    .filter_map(|(how, id)| Some((how, id?)))
    .collect();
    let ids: Vec<ClickId> = wanted.iter().map(|(_, id)| *id).collect();
    let known = ctx.clicks.facts(tenant, &ids).await?;
    let explicit = admissible_explicit(&wanted, &known, install_ms, &config);

    let flip = ctx
        .redis
        .flip(&FlipRequest {
            tenant,
            install_id: r.install_id,
            explicit: &explicit,
            fingerprint: (device.key, device.ip_hash),
            install_ms,
            now_ms: received_ms,
            window_ms: if config.fingerprint_enabled {
                config.window_ms()
            } else {
                0
            },
            lookback_ms: config.lookback_ms(),
        })
        .await?;
    let (first, claim) = match flip {
        Flip::Claimed(claim) => (true, Some(claim)),
        Flip::Nothing => (true, None),
        Flip::Remembered(claim) => (false, claim),
    };
    let click = claimed_click(ctx, tenant, claim.as_ref(), known).await?;
    let (match_type, ctit_seconds) = match (&claim, &click) {
        (Some(c), Some(f)) => (c.how, Some(install_ms.saturating_sub(f.ts_ms) / 1000)),
        _ => (
            resolve::<()>(&[], install_ms, &r.reported, &config).match_type(),
            None,
        ),
    };
    let answer = Attributed {
        match_type,
        target: click
            .as_ref()
            .and_then(|f| target_url(ctx.links, f, r.platform)),
        click,
        ctit_seconds,
    };
    // The first report is judged; a retry answers as the first did (the judgement is not
    // repeated: the clicks counted may have changed since).
    let (judgement, competing) = match (&answer.click, first) {
        (Some(f), true) => judge(ctx, tenant, &config, r, &device, f, &answer).await,
        _ => (Judgement::none(config.fraud_mode), 0),
    };
    let rejected = if first {
        judgement.rejected()
    } else {
        ctx.redis
            .remembered_attribution(tenant, r.install_id)
            .await?
            .is_some_and(|a| a.rejected)
    };
    let matched = remembered(ctx.links, r, &answer);
    if first {
        deliver(ctx, tenant, r, &answer, &matched, &judgement, install_ms).await;
    }
    let remembered = if rejected {
        // Its events and conversions stay unattributed.
        InstallAttribution {
            platform: r.platform.as_str().to_string(),
            rejected: true,
            ..InstallAttribution::default()
        }
    } else {
        matched
    };
    // Remembered for the install's events and its user's conversions, on every retry too,
    // so a crash between the flip and this write heals on the retry. Not awaited: the write
    // is queued on the shared connection now, ahead of anything a later request sends.
    let (redis, tenant_id, install_id) = (
        ctx.redis.clone(),
        tenant.to_string(),
        r.install_id.to_string(),
    );
    tokio::spawn(async move {
        if let Err(error) = redis
            .remember_attribution(&tenant_id, &install_id, &remembered)
            .await
        {
            warn!(%error, "install attribution not remembered; a retry of the install writes it");
        }
    });
    if first {
        let judged = Judged {
            judgement: &judgement,
            competing_clicks: competing,
        };
        record(ctx, tenant, r, &answer, &judged, install_ms, received_ms);
    }
    if rejected {
        return Ok(Attributed::default());
    }
    Ok(answer)
}

/// The fraud rules' evidence about a matched install, gathered and judged under the tenant's
/// config; also how many other clicks competed for the install (the receipt shows it). Counts
/// Redis cannot give are left unknown: the install is judged on the rest.
async fn judge(
    ctx: &Context<'_>,
    tenant: &str,
    config: &AttributionConfig,
    r: &Report<'_>,
    device: &Device,
    f: &ClickFacts,
    a: &Attributed,
) -> (Judgement, u32) {
    let install_ms = r.installed_at.unwrap_or_else(time::now_ms);
    // A fingerprint match's visitor is the installing device itself.
    let visitor = match a.match_type {
        MatchType::Fingerprint => Some((device.key, device.ip_hash)),
        _ => f.visitor,
    }
    .filter(|_| config.fingerprint_enabled);
    let counts = ctx
        .redis
        .click_counts(
            tenant,
            visitor,
            &f.link_id,
            f.ts_ms,
            (device.key, device.ip_hash),
            (install_ms.saturating_sub(config.window_ms()), install_ms),
        )
        .await;
    let (visitor_clicks_hour, competing) = counts.unwrap_or_else(|error| {
        warn!(%error, "fraud evidence not read; the install is judged without click counts");
        (None, 0)
    });
    let evidence = Evidence {
        ctit_seconds: a.ctit_seconds.unwrap_or(0),
        click_ts_ms: f.ts_ms,
        referrer_click_s: r.referrer_times[0],
        install_begin_s: r.referrer_times[1],
        visitor_clicks_hour,
        anonymous_click: f.anonymous,
        anonymous_install: device.anonymous,
        bot_click: f.bot,
    };
    let judgement = Judgement::of(config, &evidence);
    ctx.metrics.fraud_verdicts[judgement.verdict as usize].increment(1);
    // A click claimed by id stays in its fingerprint set (only fingerprint claims take theirs
    // out): when that set is the installing device's, it did not compete with itself.
    let own =
        a.match_type != MatchType::Fingerprint && f.visitor == Some((device.key, device.ip_hash));
    let competing = competing.saturating_sub(u64::from(own));
    (judgement, competing.min(u64::from(u32::MAX)) as u32)
}

/// An install's judgement as its row stores it.
struct Judged<'j> {
    judgement: &'j Judgement,
    competing_clicks: u32,
}

/// The facts of the claimed click: carried by a fingerprint claim, already looked up for an
/// explicit one, or (a retry's remembered claim) looked up now.
async fn claimed_click(
    ctx: &Context<'_>,
    tenant: &str,
    claim: Option<&Claim>,
    known: Vec<ClickFacts>,
) -> Result<Option<ClickFacts>, Error> {
    Ok(match claim {
        None => None,
        Some(Claim {
            member: Some(member),
            ..
        }) => fingerprints::parse_member(member),
        Some(Claim { click, .. }) => match known.into_iter().find(|f| f.click_id == click.0) {
            Some(f) => Some(f),
            None => ctx
                .clicks
                .facts(tenant, &[*click])
                .await?
                .into_iter()
                .next(),
        },
    })
}

/// The explicit candidates that exist under this tenant and may explain the install, in
/// preference order.
fn admissible_explicit(
    wanted: &[(MatchType, ClickId)],
    known: &[ClickFacts],
    install_ms: u64,
    config: &AttributionConfig,
) -> Vec<(MatchType, ClickId)> {
    wanted
        .iter()
        .filter(|(how, id)| {
            known.iter().any(|f| {
                f.click_id == id.0
                    && admissible(
                        &Candidate {
                            how: *how,
                            click_ts_ms: f.ts_ms,
                            click: (),
                        },
                        install_ms,
                        config,
                    )
                    .is_ok()
            })
        })
        .copied()
        .collect()
}

/// What the install's events and its user's conversions inherit.
fn remembered(links: &LinkTable, r: &Report<'_>, a: &Attributed) -> InstallAttribution {
    match &a.click {
        Some(f) => InstallAttribution {
            match_type: a.match_type,
            click_id: hex::encode(f.click_id),
            link_id: f.link_id.clone(),
            campaign: f.campaign.clone(),
            source: f.source.clone(),
            medium: f.medium.clone(),
            partner_id: links
                .get(&f.link_id)
                .and_then(|l| l.labels.partner_id.as_deref().map(str::to_string))
                .unwrap_or_default(),
            partner_click_id: f.partner_click_id.clone(),
            subs: f.subs.clone(),
            country: f.country.clone(),
            ctit_seconds: a.ctit_seconds.unwrap_or(0),
            platform: r.platform.as_str().to_string(),
            variant: f.variant.clone(),
            rejected: false,
        },
        None if a.match_type == MatchType::Metadata => InstallAttribution {
            match_type: a.match_type,
            source: r.reported.source.unwrap_or("").to_string(),
            medium: r.reported.medium.unwrap_or("").to_string(),
            campaign: r.reported.campaign.unwrap_or("").to_string(),
            platform: r.platform.as_str().to_string(),
            ..InstallAttribution::default()
        },
        None => InstallAttribution {
            platform: r.platform.as_str().to_string(),
            ..InstallAttribution::default()
        },
    }
}

/// Queues the install's webhooks and partner postback: the partner's `install` template, or
/// for a rejected install its `rejected_install` template with the first reason and its value.
async fn deliver(
    ctx: &Context<'_>,
    tenant: &str,
    r: &Report<'_>,
    a: &Attributed,
    remembered: &InstallAttribution,
    judgement: &Judgement,
    install_ms: u64,
) {
    if !fanout::wanted(ctx.delivery, tenant, !remembered.partner_id.is_empty()).await {
        return;
    }
    let mut data = json!({
        "install_id": r.install_id,
        "platform": r.platform.as_str(),
        "match_type": a.match_type,
        "click_id": a.click.as_ref().map(|f| ClickId(f.click_id).to_string()),
        "link_id": remembered.link_id,
        "campaign": remembered.campaign,
        "source": remembered.source,
        "medium": remembered.medium,
        "ctit_seconds": a.ctit_seconds,
        "installed_at": time::rfc3339_from_ms(install_ms),
        "status": install::status(a.match_type, judgement),
    });
    if judgement.verdict != Verdict::NotEvaluated {
        data["fraud"] = fraud_json(judgement);
    }
    let rejection = judgement
        .findings
        .first()
        .filter(|_| judgement.rejected())
        .map(|f| (f.reason.code().to_string(), f.value.clone()));
    let fact = Fact {
        kind: "install",
        name: if rejection.is_some() {
            "rejected_install"
        } else {
            "install"
        }
        .into(),
        attribution: Some(remembered.clone()).filter(InstallAttribution::attributed),
        ts_ms: install_ms,
        revenue: None,
        data,
        rejection,
    };
    fanout::deliver(ctx.delivery, tenant, vec![fact]).await;
}

/// Queues the install's row for ClickHouse and counts its match.
fn record(
    ctx: &Context<'_>,
    tenant: &str,
    r: &Report<'_>,
    a: &Attributed,
    judged: &Judged<'_>,
    install_ms: u64,
    received_ms: u64,
) {
    let mut row = Facts::new(BatchKind::Installs);
    install::encode(
        &InstallRow {
            ts_ms: install_ms,
            received_ms,
            tenant_id: tenant,
            install_id: r.install_id,
            platform: r.platform,
            match_type: a.match_type,
            click: a.click.as_ref(),
            ctit_seconds: a.ctit_seconds.unwrap_or(0),
            reported: [
                r.reported.source.unwrap_or(""),
                r.reported.medium.unwrap_or(""),
                r.reported.campaign.unwrap_or(""),
            ],
            os_version: r.device[0],
            device_model: r.device[1],
            app_version: r.device[2],
            judgement: judged.judgement,
            competing_clicks: judged.competing_clicks,
        },
        &mut row.data,
    );
    row.end_row(install_ms);
    if ctx.rows.push(row).is_err() {
        warn!("install queue full; install answered but not recorded");
    }
    ctx.metrics.matches[a.match_type.index()].increment(1);
}

/// The link's destination for the platform (the click's split variant's, when it had one),
/// expanded with the click's values.
fn target_url(links: &LinkTable, f: &ClickFacts, platform: InstallPlatform) -> Option<String> {
    let live = links.get(&f.link_id)?;
    if live.is_gone(crate::time::now_ms()) {
        return None;
    }
    let template = live
        .routing()
        .and_then(|r| r.variant(&f.variant))
        .unwrap_or_else(|| live.destination_for(platform.as_str()));
    let click_id = ClickId(f.click_id).to_string();
    let mut out = Vec::with_capacity(256);
    template.expand(
        &Values {
            click_id: &click_id,
            partner_click_id: &f.partner_click_id,
            link_id: &f.link_id,
            campaign: &f.campaign,
            source: &f.source,
            medium: &f.medium,
            subs: [&f.subs[0], &f.subs[1], &f.subs[2], &f.subs[3], &f.subs[4]],
            country: &f.country,
            variant: &f.variant,
        },
        &mut out,
    );
    String::from_utf8(out).ok()
}

/// Binds `user_id` to a reported install so that the user's conversions attribute to its
/// click. The first binding stands unless `may_rebind` (a secret key); answers the user's
/// previous install when it was rebound.
pub async fn bind_user(
    redis: &Redis,
    tenant: &str,
    install_id: &str,
    user_id: &str,
    may_rebind: bool,
) -> Result<Option<String>, Error> {
    match redis
        .bind_user(tenant, install_id, user_id, may_rebind)
        .await?
    {
        Binding::Bound { replaced } => Ok(replaced),
        Binding::Taken => Err(Error::Conflict {
            code: "user_already_bound",
            message: "this user is bound to another install; only a secret key may rebind it"
                .into(),
            field: Some("user_id"),
        }),
        Binding::UnknownInstall => Err(Error::NotFound(format!(
            "no install {install_id:?} has been reported"
        ))),
    }
}
