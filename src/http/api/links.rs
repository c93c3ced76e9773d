//! `POST|GET /v1/links`, `GET|PATCH|DELETE /v1/links/{id}` (secret key). A tenant only ever
//! sees its own links: another tenant's code answers 404, exactly like a missing one.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::read_json;
use crate::app::App;
use crate::http::auth::require_secret;
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::link::{self, Link, Template, MAX_FIELD_LEN};
use crate::time;

const BODY_LIMIT: usize = 64 * 1024;
const GENERATED_CODE_LEN: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLink {
    id: Option<String>,
    destination: String,
    #[serde(default)]
    campaign: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    medium: String,
    partner_id: Option<String>,
    ios_destination: Option<String>,
    android_destination: Option<String>,
    fallback_url: Option<String>,
    #[serde(default)]
    paused: bool,
}

/// Absent = unchanged; `null` = cleared (for the optional fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkPatch {
    destination: Option<String>,
    campaign: Option<String>,
    source: Option<String>,
    medium: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    partner_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    ios_destination: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    android_destination: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    fallback_url: Option<Option<String>>,
    paused: Option<bool>,
}

fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn handle(
    app: &App,
    method: &Method,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    match (method, id) {
        (&Method::POST, None) => create(app, tenant, read_json(body, BODY_LIMIT).await?).await,
        (&Method::GET, None) => list(app, tenant).await,
        (&Method::GET, Some(id)) => Ok(json_response(
            StatusCode::OK,
            &view(&owned(app, tenant, id).await?),
        )),
        (&Method::PATCH, Some(id)) => {
            update(app, tenant, id, read_json(body, BODY_LIMIT).await?).await
        }
        (&Method::DELETE, Some(id)) => delete(app, tenant, id).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

impl NewLink {
    /// The link this body describes (its id still to be checked or generated), validated.
    fn into_link(self, tenant: &str, now: String) -> Result<(Option<String>, Link), ApiError> {
        let link = Link {
            id: String::new(),
            tenant_id: tenant.to_string(),
            destination: self.destination,
            campaign: self.campaign,
            source: self.source,
            medium: self.medium,
            partner_id: self.partner_id,
            ios_destination: self.ios_destination,
            android_destination: self.android_destination,
            fallback_url: self.fallback_url,
            paused: self.paused,
            created_at: now.clone(),
            updated_at: now,
            deleted_at: None,
        };
        validate(&link)?;
        Ok((self.id, link))
    }
}

async fn create(app: &App, tenant: &str, new: NewLink) -> Result<Response<Body>, ApiError> {
    let (id, mut link) = new.into_link(tenant, time::now_rfc3339())?;
    let limit = app.config.limits.links;
    if app.redis.link_count(tenant).await? >= limit {
        return Err(ApiError::limit_reached("links", limit));
    }
    match id {
        Some(code) => {
            if !link::valid_code(&code) {
                return Err(ApiError::invalid_field(
                    "id",
                    "must be 1-64 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if link::is_reserved(&code) {
                return Err(ApiError::invalid_field(
                    "id",
                    format!("{code:?} is reserved"),
                ));
            }
            link.id = code;
            if !app.redis.insert_link(&link).await? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "id_taken",
                    format!("link id {:?} is already taken", link.id),
                )
                .with_details(json!({ "field": "id" })));
            }
        }
        None => loop {
            link.id = generate_code();
            if app.redis.insert_link(&link).await? {
                break;
            }
        },
    }
    app.refresh_links().await;
    Ok(json_response(StatusCode::CREATED, &view(&link)))
}

async fn list(app: &App, tenant: &str) -> Result<Response<Body>, ApiError> {
    let mut links = app.redis.tenant_links(tenant).await?;
    links.retain(|l| l.tenant_id == tenant && l.deleted_at.is_none());
    links.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let views: Vec<_> = links.iter().map(view).collect();
    Ok(json_response(StatusCode::OK, &json!({ "links": views })))
}

async fn update(
    app: &App,
    tenant: &str,
    id: &str,
    patch: LinkPatch,
) -> Result<Response<Body>, ApiError> {
    let mut link = owned(app, tenant, id).await?;
    if let Some(v) = patch.destination {
        link.destination = v;
    }
    if let Some(v) = patch.campaign {
        link.campaign = v;
    }
    if let Some(v) = patch.source {
        link.source = v;
    }
    if let Some(v) = patch.medium {
        link.medium = v;
    }
    if let Some(v) = patch.partner_id {
        link.partner_id = v;
    }
    if let Some(v) = patch.ios_destination {
        link.ios_destination = v;
    }
    if let Some(v) = patch.android_destination {
        link.android_destination = v;
    }
    if let Some(v) = patch.fallback_url {
        link.fallback_url = v;
    }
    if let Some(v) = patch.paused {
        link.paused = v;
    }
    validate(&link)?;
    link.updated_at = time::now_rfc3339();
    app.redis.put_link(&link).await?;
    app.refresh_links().await;
    Ok(json_response(StatusCode::OK, &view(&link)))
}

async fn delete(app: &App, tenant: &str, id: &str) -> Result<Response<Body>, ApiError> {
    let mut link = owned(app, tenant, id).await?;
    let now = time::now_rfc3339();
    link.updated_at = now.clone();
    link.deleted_at = Some(now);
    app.redis.put_link(&link).await?;
    app.refresh_links().await;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// The tenant's live link, or 404 (also for other tenants' and deleted links).
pub(crate) async fn owned(app: &App, tenant: &str, id: &str) -> Result<Link, ApiError> {
    match app.redis.get_link(id).await? {
        Some(link) if link.tenant_id == tenant && link.deleted_at.is_none() => Ok(link),
        _ => Err(ApiError::not_found(format!("no link with id {id:?}"))),
    }
}

fn validate(link: &Link) -> Result<(), ApiError> {
    Template::parse(&link.destination).map_err(|e| ApiError::invalid_field("destination", e))?;
    for (field, value) in [
        ("ios_destination", &link.ios_destination),
        ("android_destination", &link.android_destination),
        ("fallback_url", &link.fallback_url),
    ] {
        if let Some(url) = value {
            Template::parse(url).map_err(|e| ApiError::invalid_field(field, e))?;
        }
    }
    for (field, value) in [
        ("campaign", Some(&link.campaign)),
        ("source", Some(&link.source)),
        ("medium", Some(&link.medium)),
        ("partner_id", link.partner_id.as_ref()),
    ] {
        if let Some(v) = value {
            if v.len() > MAX_FIELD_LEN {
                return Err(ApiError::invalid_field(
                    field,
                    format!("is longer than {MAX_FIELD_LEN} bytes"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(ApiError::invalid_field(
                    field,
                    "must not contain control characters",
                ));
            }
        }
    }
    Ok(())
}

fn view(link: &Link) -> serde_json::Value {
    let mut v = serde_json::to_value(link).expect("links serialize");
    if let Some(map) = v.as_object_mut() {
        map.remove("tenant_id");
        map.remove("deleted_at");
        map.insert("path".into(), json!(format!("/{}", link.id)));
    }
    v
}

fn generate_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..GENERATED_CODE_LEN)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LiveLink;

    fn link_from(body: &[u8]) -> Option<Link> {
        let new: NewLink = serde_json::from_slice(body).ok()?;
        new.into_link("t", String::new()).ok().map(|(_, link)| link)
    }

    proptest::proptest! {
        /// Any body: no panic; whatever validation accepts compiles for the redirect.
        #[test]
        fn fuzz_link_bodies(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            dest in "https?://[ -~]{0,60}",
            campaign in ".{0,300}",
        ) {
            let _ = link_from(&bytes);
            let body = serde_json::json!({"destination": dest, "campaign": campaign, "ios_destination": dest});
            if let Some(link) = link_from(body.to_string().as_bytes()) {
                proptest::prop_assert!(LiveLink::compile(link).is_ok());
            }
        }
    }
}
