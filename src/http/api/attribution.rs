//! Attribution endpoints: the client calls (`install`, `deferred`, the user binding; a
//! publishable key suffices) and `GET|PATCH /v1/attribution/config` (secret key).

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, USER_AGENT};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{as_object, object_of, read_json};
use crate::app::App;
use crate::attribution::attribute::{self, Device, Report, REPORT_FIELDS};
use crate::attribution::config::AttributionConfig;
use crate::attribution::settings;
use crate::attribution::{InstallPlatform, MatchType};
use crate::click::{agent, ClickId, Platform};
use crate::http::auth::{authenticate, require_secret};
use crate::http::client_ip::client_ip;
use crate::http::error::{json_response, ApiError, Body};
use crate::keys::KeyKind;
use crate::pipeline::fingerprints;
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
    let (config, new_secret) = match *method {
        Method::GET => (settings::get(&app.redis, &caller.tenant_id).await?, false),
        Method::PATCH => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let allow_private = app.config.delivery.allow_private_targets;
            settings::patch(
                &app.redis,
                &caller.tenant_id,
                as_object(&value)?,
                allow_private,
            )
            .await?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    // The signing secret is shown once: in the answer that generated or rotated it.
    Ok(json_response(
        StatusCode::OK,
        &config_view(&config, new_secret),
    ))
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

/// `POST /v1/attribution/install` and `POST /v1/attribution/deferred` (publishable or secret
/// key).
pub async fn attribute(
    app: &App,
    endpoint: Endpoint,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate(app, headers).await?;
    let value: Value = read_json(body, BODY_LIMIT).await?;
    let received_ms = time::now_ms();
    let r = Report::parse(object_of(&value, &REPORT_FIELDS)?, received_ms)?;
    let a = attribute::attribute(
        &app.attribution(),
        &caller.tenant_id,
        &r,
        device(app, headers, peer, r.platform),
        received_ms,
    )
    .await?;
    let attributed = a.click.is_some();
    let mut out = match endpoint {
        Endpoint::Install => json!({
            "install_id": r.install_id,
            "attributed": attributed || a.match_type == MatchType::Metadata,
            "match_type": a.match_type,
        }),
        Endpoint::Deferred => {
            json!({ "install_id": r.install_id, "matched": attributed, "match_type": a.match_type })
        }
    };
    if let Some(f) = &a.click {
        out["click_id"] = json!(ClickId(f.click_id).to_string());
        out["link_id"] = json!(f.link_id);
        out["campaign"] = json!(f.campaign);
        out["source"] = json!(f.source);
        out["medium"] = json!(f.medium);
        out["ctit_seconds"] = json!(a.ctit_seconds);
    } else if a.match_type == MatchType::Metadata {
        let reported = [r.reported.source, r.reported.medium, r.reported.campaign];
        for (field, value) in ["source", "medium", "campaign"].into_iter().zip(reported) {
            if let Some(v) = value {
                out[field] = json!(v);
            }
        }
    }
    if let Some(url) = a.target {
        out["target"] = json!({ "url": url });
    }
    Ok(json_response(StatusCode::OK, &out))
}

/// The reporting device as fingerprints know it. A web page's install matches clicks from
/// its own browser: the app platform if it runs on a phone, else its browser family.
fn device(app: &App, headers: &HeaderMap, peer: SocketAddr, platform: InstallPlatform) -> Device {
    let ip = client_ip(
        peer.ip(),
        headers
            .get_all("x-forwarded-for")
            .iter()
            .map(HeaderValue::as_bytes),
        &app.trusted_proxies,
    );
    let key = match platform {
        InstallPlatform::Web => {
            let ua = headers
                .get(USER_AGENT)
                .map_or(&[][..], HeaderValue::as_bytes);
            let browser = agent::classify(&String::from_utf8_lossy(ua)).browser;
            fingerprints::device(Platform::from_user_agent(ua), &browser)
        }
        app_platform => app_platform.as_str(),
    };
    Device {
        key,
        ip_hash: app.ip_hasher.hash(ip),
        anonymous: app.anonymous.as_ref().is_some_and(|a| a.contains(ip)),
    }
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
    let install_id = attribute::required(body, "install_id", attribute::MAX_INSTALL_ID)?;
    let user_id = attribute::required(body, "user_id", attribute::MAX_META)?;
    let may_rebind = caller.kind == KeyKind::Secret;
    let replaced = attribute::bind_user(
        &app.redis,
        &caller.tenant_id,
        install_id,
        user_id,
        may_rebind,
    )
    .await?;
    let mut answer = json!({ "install_id": install_id, "user_id": user_id });
    if let Some(previous) = replaced {
        answer["rebound_from"] = json!(previous);
    }
    Ok(json_response(StatusCode::OK, &answer))
}
