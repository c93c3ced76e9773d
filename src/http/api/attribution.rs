//! Attribution endpoints: the client calls (`install`, `deferred`, the user binding; a
//! publishable key suffices) and `GET|PATCH /v1/attribution/config` (secret key).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, USER_AGENT};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use tracing::warn;

use super::{object_of, read_json};
use crate::app::App;
use crate::attribution::config::{AttributionConfig, ConfigPatch};
use crate::attribution::install::{self, ClickFacts, InstallAttribution, InstallRow};
use crate::attribution::{admissible, referrer, resolve, Candidate, MatchType, SelfReported};
use crate::click::{agent, ClickId, Platform};
use crate::delivery::fanout::{self, Fact};
use crate::delivery::target::check_url;
use crate::http::auth::{authenticate, require_secret};
use crate::http::client_ip::client_ip;
use crate::http::error::{json_response, ApiError, Body};
use crate::keys::KeyKind;
use crate::link::template::Values;
use crate::pipeline::batch::{BatchKind, Facts};
use crate::pipeline::fingerprints;
use crate::store::clickhouse;
use crate::store::redis::{Binding, Claim, Flip, FlipRequest};
use crate::time;

/// Roomy enough for every field at its limit written as JSON escapes (12 bytes a character).
const BODY_LIMIT: usize = 64 * 1024;

pub async fn config(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let current = app.redis.attribution_config(&caller.tenant_id).await?;
    match *method {
        Method::GET => Ok(json_response(StatusCode::OK, &config_view(&current, false))),
        Method::PATCH => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let fields = value.as_object().ok_or_else(|| {
                ApiError::bad_request("invalid_json", "body must be a JSON object")
            })?;
            let next = ConfigPatch::from_json(fields)
                .and_then(|patch| current.patched(&patch))
?;
            if !next.report_webhook_url.is_empty() {
                check_url(
                    &next.report_webhook_url,
                    app.config.delivery.allow_private_targets,
                )
                .map_err(|e| ApiError::invalid_field("report_webhook_url", e))?;
            }
            app.redis
                .put_attribution_config(&caller.tenant_id, &next)
                .await?;
            // The signing secret is shown once: in the answer that generated or rotated it.
            let new_secret = next.report_signing_secret != current.report_signing_secret;
            Ok(json_response(
                StatusCode::OK,
                &config_view(&next, new_secret),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The settings as the API shows them: the report signing secret only when `with_secret`,
/// otherwise whether one is set.
fn config_view(config: &AttributionConfig, with_secret: bool) -> Value {
    let mut view = json!(config);
    let set = !config.report_signing_secret.is_empty();
    if !with_secret {
        if let Some(fields) = view.as_object_mut() {
            fields.remove("report_signing_secret");
        }
    }
    view["report_signing_secret_set"] = json!(set);
    view
}

/// Which client endpoint is answering.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Install,
    Deferred,
}

const MAX_INSTALL_ID: usize = 128;
const MAX_META: usize = 256;

/// A validated install report.
struct Report<'a> {
    install_id: &'a str,
    platform: &'static str,
    click_id: Option<ClickId>,
    referrer_click: Option<ClickId>,
    reported: [Option<&'a str>; 3],
    device: [&'a str; 3],
    installed_at: Option<u64>,
}

fn text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(ApiError::invalid_field(
            field,
            format!("is longer than {max} bytes"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ApiError::invalid_field(
            field,
            "must not contain control characters",
        )),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::invalid_field(field, "must be a string")),
    }
}

/// The fields of an install or deferred report.
const REPORT_FIELDS: [&str; 11] = [
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
];

fn report(body: &Value, now_ms: u64) -> Result<Report<'_>, ApiError> {
    let body = object_of(body, &REPORT_FIELDS)?;
    let install_id = text(body, "install_id", MAX_INSTALL_ID)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_field("install_id", "is required"))?;
    let platform = match text(body, "platform", 16)?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("ios") => "ios",
        Some("android") => "android",
        Some("web") => "web",
        Some(_) => {
            return Err(ApiError::invalid_field(
                "platform",
                "must be ios, android or web",
            ))
        }
        None => return Err(ApiError::invalid_field("platform", "is required")),
    };
    let click_id = match text(body, "click_id", 64)? {
        Some(s) => Some(
            ClickId::parse(s.trim())
                .ok_or_else(|| ApiError::invalid_field("click_id", "is not a Sluice click id"))?,
        ),
        None => None,
    };
    let referrer_click = match text(body, "install_referrer", referrer::MAX_LEN)? {
        Some(r) => {
            referrer::click_id(r).map_err(|e| ApiError::invalid_field("install_referrer", e))?
        }
        None => None,
    };
    let installed_at = match text(body, "installed_at", 64)? {
        Some(s) => Some(
            time::parse_rfc3339(s)
                .ok_or("must be an ISO 8601 date-time with a zone")
                .and_then(|ms| time::plausible(ms, now_ms))
                .map_err(|e| ApiError::invalid_field("installed_at", e))?,
        ),
        None => None,
    };
    Ok(Report {
        install_id,
        platform,
        click_id,
        referrer_click,
        reported: [
            text(body, "source", MAX_META)?,
            text(body, "medium", MAX_META)?,
            text(body, "campaign", MAX_META)?,
        ],
        device: [
            text(body, "os_version", 64)?.unwrap_or(""),
            text(body, "device_model", 128)?.unwrap_or(""),
            text(body, "app_version", 64)?.unwrap_or(""),
        ],
        installed_at,
    })
}

/// `POST /v1/attribution/install` and `POST /v1/attribution/deferred` (publishable or secret
/// key): resolve the install, claim its click atomically, record it once, answer.
pub async fn attribute(
    app: &App,
    endpoint: Endpoint,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    let value: Value = read_json(body, BODY_LIMIT).await?;
    let received_ms = time::now_ms();
    let r = report(&value, received_ms)?;
    if app.rows.is_full(1024) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "install recording is backed up; retry shortly",
        ));
    }
    let config = app.redis.attribution_config(tenant).await?;
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
    let known = clickhouse::click_facts(&app.ch, tenant, &ids).await?;
    let explicit: Vec<(MatchType, ClickId)> = wanted
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
                        &config,
                    )
                    .is_ok()
            })
        })
        .copied()
        .collect();

    let ip = client_ip(
        peer.ip(),
        headers
            .get_all("x-forwarded-for")
            .iter()
            .map(HeaderValue::as_bytes),
        &app.trusted_proxies,
    );
    // A web page's install matches clicks from its own browser: the app platform if it runs
    // on a phone, else its browser family (`fingerprints::device`).
    let device = match r.platform {
        "web" => {
            let ua = headers
                .get(USER_AGENT)
                .map_or(&[][..], HeaderValue::as_bytes);
            let browser = agent::classify(&String::from_utf8_lossy(ua)).browser;
            fingerprints::device(Platform::from_user_agent(ua), &browser)
        }
        app => app,
    };
    let flip = app
        .redis
        .flip(&FlipRequest {
            tenant,
            install_id: r.install_id,
            explicit: &explicit,
            fingerprint: (device, app.ip_hasher.hash(ip)),
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
    let facts = match &claim {
        Some(Claim {
            member: Some(member),
            ..
        }) => fingerprints::parse_member(member),
        Some(Claim { click, .. }) => match known.iter().find(|f| f.click_id == click.0) {
            Some(f) => Some(f.clone()),
            None => clickhouse::click_facts(&app.ch, tenant, &[*click])
                .await?
                .into_iter()
                .next(),
        },
        None => None,
    };
    let reported = SelfReported {
        source: r.reported[0],
        medium: r.reported[1],
        campaign: r.reported[2],
    };
    let (match_type, ctit) = match (&claim, &facts) {
        (Some(c), Some(f)) => (c.how, Some(install_ms.saturating_sub(f.ts_ms) / 1000)),
        _ => (
            resolve::<()>(&[], install_ms, &reported, &config).match_type(),
            None,
        ),
    };

    // Remembered for the install's events and its user's conversions (on every retry too,
    // so a crash between the flip and this write heals on the retry).
    let remembered = match &facts {
        Some(f) => InstallAttribution {
            match_type,
            click_id: hex::encode(f.click_id),
            link_id: f.link_id.clone(),
            campaign: f.campaign.clone(),
            source: f.source.clone(),
            medium: f.medium.clone(),
            partner_id: app
                .links
                .get(&f.link_id)
                .and_then(|l| l.link.partner_id.clone())
                .unwrap_or_default(),
            partner_click_id: f.partner_click_id.clone(),
            subs: f.subs.clone(),
            country: f.country.clone(),
            ctit_seconds: ctit.unwrap_or(0),
        },
        None if match_type == MatchType::Metadata => InstallAttribution {
            match_type,
            source: r.reported[0].unwrap_or("").to_string(),
            medium: r.reported[1].unwrap_or("").to_string(),
            campaign: r.reported[2].unwrap_or("").to_string(),
            ..InstallAttribution::default()
        },
        None => InstallAttribution::default(),
    };
    // Not awaited: the write is queued on the shared Redis connection now, ahead of anything
    // a later request sends, and the answer does not wait a round trip for it.
    if first && fanout::wanted(&app.delivery, tenant, !remembered.partner_id.is_empty()).await {
        let data = json!({
            "install_id": r.install_id,
            "platform": r.platform,
            "match_type": match_type,
            "click_id": facts.as_ref().map(|f| ClickId(f.click_id).to_string()),
            "link_id": remembered.link_id,
            "campaign": remembered.campaign,
            "source": remembered.source,
            "medium": remembered.medium,
            "ctit_seconds": ctit,
            "installed_at": time::rfc3339_from_ms(install_ms),
        });
        let fact = Fact {
            kind: "install",
            name: "install".into(),
            attribution: Some(remembered.clone()).filter(InstallAttribution::attributed),
            ts_ms: install_ms,
            revenue: None,
            data,
        };
        fanout::deliver(&app.delivery, tenant, vec![fact]).await;
    }
    let (redis, tenant_id, install_id) = (
        app.redis.clone(),
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
        let mut row = Facts::new(BatchKind::Installs);
        install::encode(
            &InstallRow {
                ts_ms: install_ms,
                received_ms,
                tenant_id: tenant,
                install_id: r.install_id,
                platform: r.platform,
                match_type,
                click: facts.as_ref(),
                ctit_seconds: ctit.unwrap_or(0),
                reported: [
                    r.reported[0].unwrap_or(""),
                    r.reported[1].unwrap_or(""),
                    r.reported[2].unwrap_or(""),
                ],
                os_version: r.device[0],
                device_model: r.device[1],
                app_version: r.device[2],
            },
            &mut row.data,
        );
        row.end_row(install_ms);
        if app.rows.push(row).is_err() {
            warn!("install queue full; install answered but not recorded");
        }
        app.metrics.matches[match_index(match_type)].increment(1);
    }

    let target = facts.as_ref().and_then(|f| target_url(app, f, r.platform));
    let click = facts.as_ref().map(|f| ClickId(f.click_id).to_string());
    let attributed = facts.is_some();
    let mut out = match endpoint {
        Endpoint::Install => json!({
            "install_id": r.install_id,
            "attributed": attributed || match_type == MatchType::Metadata,
            "match_type": match_type,
        }),
        Endpoint::Deferred => {
            json!({ "install_id": r.install_id, "matched": attributed, "match_type": match_type })
        }
    };
    if let Some(f) = &facts {
        out["click_id"] = json!(click);
        out["link_id"] = json!(f.link_id);
        out["campaign"] = json!(f.campaign);
        out["source"] = json!(f.source);
        out["medium"] = json!(f.medium);
        out["ctit_seconds"] = json!(ctit);
    } else if match_type == MatchType::Metadata {
        for (field, value) in ["source", "medium", "campaign"].into_iter().zip(r.reported) {
            if let Some(v) = value {
                out[field] = json!(v);
            }
        }
    }
    if let Some(url) = target {
        out["target"] = json!({ "url": url });
    }
    Ok(json_response(StatusCode::OK, &out))
}

fn match_index(m: MatchType) -> usize {
    match m {
        MatchType::ClickId => 0,
        MatchType::Referrer => 1,
        MatchType::Fingerprint => 2,
        MatchType::Metadata => 3,
        MatchType::Organic => 4,
    }
}

/// The deferred deep link: the link's destination for the install's platform, expanded with
/// the click's values (absent when the link is gone).
fn target_url(app: &App, f: &ClickFacts, platform: &str) -> Option<String> {
    let live = app.links.get(&f.link_id)?;
    if live.is_gone() {
        return None;
    }
    let template = match platform {
        "ios" => live.ios.as_ref(),
        "android" => live.android.as_ref(),
        _ => None,
    }
    .unwrap_or(&live.destination);
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
        },
        &mut out,
    );
    String::from_utf8(out).ok()
}

/// `PUT /v1/attribution/link` (publishable or secret key): binds a user to an install so
/// that the user's conversions attribute to the install's click.
pub async fn bind_user(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, headers).await?;
    let value: Value = read_json(body, BODY_LIMIT).await?;
    let body = object_of(&value, &["install_id", "user_id"])?;
    let install_id = text(body, "install_id", MAX_INSTALL_ID)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_field("install_id", "is required"))?;
    let user_id = text(body, "user_id", MAX_META)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_field("user_id", "is required"))?;
    let may_rebind = caller.kind == KeyKind::Secret;
    match app
        .redis
        .bind_user(&caller.tenant_id, install_id, user_id, may_rebind)
        .await?
    {
        Binding::Bound { replaced } => {
            let mut answer = json!({ "install_id": install_id, "user_id": user_id });
            if let Some(previous) = replaced {
                answer["rebound_from"] = json!(previous);
            }
            Ok(json_response(StatusCode::OK, &answer))
        }
        Binding::Taken => Err(ApiError::new(
            StatusCode::CONFLICT,
            "user_already_bound",
            "this user is bound to another install; only a secret key may rebind it",
        )
        .with_details(json!({ "field": "user_id" }))),
        Binding::UnknownInstall => Err(ApiError::not_found(format!(
            "no install {install_id:?} has been reported"
        ))),
    }
}
