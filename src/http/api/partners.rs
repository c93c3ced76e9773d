//! Partners (`POST|GET /v1/partners`, `GET|PATCH|DELETE /v1/partners/{id}`,
//! `GET /v1/partners/{id}/deliveries`) and webhooks (`POST|GET /v1/webhooks`,
//! `GET|DELETE /v1/webhooks/{id}`, `GET /v1/webhooks/{id}/deliveries`), secret key only.

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::read_json;
use crate::app::App;
use crate::delivery::partner::{check_template, Partner};
use crate::delivery::sign::new_secret;
use crate::delivery::target::check_url;
use crate::delivery::Owner;
use crate::http::auth::require_secret;
use crate::http::error::{empty_response, json_response, ApiError, Body};
use crate::store::redis::Webhook;

const BODY_LIMIT: usize = 64 * 1024;
const MAX_TEMPLATES: usize = 100;
/// What webhooks subscribe to.
pub const WEBHOOK_EVENTS: &[&str] = &["install", "event", "conversion"];

/// `/v1/partners…`: `id` and whether the path ends in `/deliveries`.
pub async fn partners(
    app: &App,
    method: &Method,
    id: Option<&str>,
    deliveries: bool,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    let missing = |id: &str| ApiError::not_found(format!("no partner {id:?}"));
    match (method, id, deliveries) {
        (&Method::GET, Some(id), true) => {
            app.redis
                .partner(tenant, id)
                .await?
                .ok_or_else(|| missing(id))?;
            let owner = Owner::Postback {
                partner_id: id.to_string(),
            };
            let log = app.redis.delivery_log(tenant, &owner).await?;
            Ok(json_response(StatusCode::OK, &json!({ "deliveries": log })))
        }
        (_, _, true) => Err(ApiError::method_not_allowed()),
        (&Method::GET, None, _) => {
            let list = app.redis.partners_of(tenant).await?;
            Ok(json_response(StatusCode::OK, &json!({ "partners": list })))
        }
        (&Method::POST, None, _) => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let fields = object(&value)?;
            let id = match fields.get("id") {
                None | Some(Value::Null) => format!("p_{}", hex::encode(rand::random::<[u8; 6]>())),
                Some(Value::String(s)) if crate::link::valid_code(s) => s.clone(),
                Some(_) => {
                    return Err(ApiError::invalid_field(
                        "id",
                        "must match [A-Za-z0-9_-]{1,64}",
                    ))
                }
            };
            let limit = app.config.limits.partners;
            if app.redis.partners_of(tenant).await?.len() >= limit {
                return Err(ApiError::limit_reached("partners", limit));
            }
            if app.redis.partner(tenant, &id).await?.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "partner_exists",
                    format!("partner {id:?} exists"),
                ));
            }
            let partner = Partner {
                id,
                name: String::new(),
                postbacks: BTreeMap::new(),
                share_revenue: false,
                created_at: crate::time::now_rfc3339(),
            };
            let allow_private = app.config.delivery.allow_private_targets;
            let partner = apply(partner, fields, true, allow_private)?;
            app.redis.put_partner(tenant, &partner).await?;
            Ok(json_response(StatusCode::CREATED, &json!(partner)))
        }
        (&Method::GET, Some(id), _) => {
            let p = app
                .redis
                .partner(tenant, id)
                .await?
                .ok_or_else(|| missing(id))?;
            Ok(json_response(StatusCode::OK, &json!(p)))
        }
        (&Method::PATCH, Some(id), _) => {
            let current = app
                .redis
                .partner(tenant, id)
                .await?
                .ok_or_else(|| missing(id))?;
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let fields = object(&value)?;
            if fields.contains_key("id") {
                return Err(ApiError::invalid_field("id", "cannot be changed"));
            }
            let allow_private = app.config.delivery.allow_private_targets;
            let partner = apply(current, fields, false, allow_private)?;
            app.redis.put_partner(tenant, &partner).await?;
            Ok(json_response(StatusCode::OK, &json!(partner)))
        }
        (&Method::DELETE, Some(id), _) => {
            if app.redis.delete_partner(tenant, id).await? {
                Ok(empty_response(StatusCode::NO_CONTENT))
            } else {
                Err(missing(id))
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn object(value: &Value) -> Result<&Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "body must be a JSON object"))
}

/// Applies the given fields (all of `name` required on create); `postbacks` entries set to
/// `null` are removed.
fn apply(
    mut p: Partner,
    fields: &Map<String, Value>,
    create: bool,
    allow_private: bool,
) -> Result<Partner, ApiError> {
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("id", _) => {}
            ("name", Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 128 => {
                p.name = s.clone()
            }
            ("name", _) => {
                return Err(ApiError::invalid_field(
                    "name",
                    "must be a non-empty string of at most 128 characters",
                ))
            }
            ("share_revenue", Value::Bool(b)) => p.share_revenue = *b,
            ("share_revenue", _) => {
                return Err(ApiError::invalid_field(
                    "share_revenue",
                    "must be true or false",
                ))
            }
            ("postbacks", Value::Object(map)) => {
                for (kind, template) in map {
                    let field = format!("postbacks.{kind}");
                    if kind.is_empty() || kind.chars().count() > 64 {
                        return Err(ApiError::invalid_field(
                            &field,
                            "type must be 1 to 64 characters",
                        ));
                    }
                    match template {
                        Value::Null => {
                            p.postbacks.remove(kind);
                        }
                        Value::String(t) => {
                            check_template(t, allow_private)
                                .map_err(|e| ApiError::invalid_field(&field, e))?;
                            p.postbacks.insert(kind.clone(), t.clone());
                        }
                        _ => {
                            return Err(ApiError::invalid_field(
                                &field,
                                "must be a URL template or null",
                            ))
                        }
                    }
                }
                if p.postbacks.len() > MAX_TEMPLATES {
                    return Err(ApiError::invalid_field(
                        "postbacks",
                        format!("at most {MAX_TEMPLATES} templates"),
                    ));
                }
            }
            ("postbacks", _) => {
                return Err(ApiError::invalid_field(
                    "postbacks",
                    "must be an object of type → URL template",
                ))
            }
            (other, _) => return Err(ApiError::invalid_field(other, "is not a partner field")),
        }
    }
    if create && p.name.is_empty() {
        return Err(ApiError::invalid_field("name", "is required"));
    }
    Ok(p)
}

/// `/v1/webhooks…`.
pub async fn webhooks(
    app: &App,
    method: &Method,
    id: Option<&str>,
    deliveries: bool,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let tenant = caller.tenant_id.as_str();
    let missing = |id: &str| ApiError::not_found(format!("no webhook {id:?}"));
    let find = |list: Vec<Webhook>, id: &str| list.into_iter().find(|w| w.id == id);
    match (method, id, deliveries) {
        (&Method::GET, Some(id), true) => {
            find(app.redis.webhooks_of(tenant).await?, id).ok_or_else(|| missing(id))?;
            let owner = Owner::Webhook {
                webhook_id: id.to_string(),
            };
            let log = app.redis.delivery_log(tenant, &owner).await?;
            Ok(json_response(StatusCode::OK, &json!({ "deliveries": log })))
        }
        (_, _, true) => Err(ApiError::method_not_allowed()),
        (&Method::GET, None, _) => {
            let list: Vec<Value> = app
                .redis
                .webhooks_of(tenant)
                .await?
                .iter()
                .map(|w| view(w, false))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "webhooks": list })))
        }
        (&Method::POST, None, _) => {
            let value: Value = read_json(body, BODY_LIMIT).await?;
            let fields = object(&value)?;
            if let Some(k) = fields
                .keys()
                .find(|k| !["url", "events"].contains(&k.as_str()))
            {
                return Err(ApiError::invalid_field(k, "is not a webhook field"));
            }
            let url = match fields.get("url") {
                Some(Value::String(u)) => u.clone(),
                _ => {
                    return Err(ApiError::invalid_field(
                        "url",
                        "is required (an http or https URL)",
                    ))
                }
            };
            check_url(&url, app.config.delivery.allow_private_targets)
                .map_err(|e| ApiError::invalid_field("url", e))?;
            let events: Vec<String> = match fields.get("events") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|e| match e.as_str() {
                        Some(s) if WEBHOOK_EVENTS.contains(&s) => Ok(s.to_string()),
                        _ => Err(ApiError::invalid_field(
                            "events",
                            format!("must list some of {}", WEBHOOK_EVENTS.join(", ")),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(ApiError::invalid_field(
                        "events",
                        format!(
                            "is required: a non-empty list of {}",
                            WEBHOOK_EVENTS.join(", ")
                        ),
                    ))
                }
            };
            let limit = app.config.limits.webhooks;
            if app.redis.webhooks_of(tenant).await?.len() >= limit {
                return Err(ApiError::limit_reached("webhooks", limit));
            }
            let webhook = Webhook {
                id: format!("wh_{}", hex::encode(rand::random::<[u8; 8]>())),
                url,
                events,
                secret: new_secret(),
                created_at: crate::time::now_rfc3339(),
            };
            app.redis.put_webhook(tenant, &webhook).await?;
            Ok(json_response(StatusCode::CREATED, &view(&webhook, true)))
        }
        (&Method::GET, Some(id), _) => {
            let w = find(app.redis.webhooks_of(tenant).await?, id).ok_or_else(|| missing(id))?;
            Ok(json_response(StatusCode::OK, &view(&w, false)))
        }
        (&Method::DELETE, Some(id), _) => {
            if app.redis.delete_webhook(tenant, id).await? {
                Ok(empty_response(StatusCode::NO_CONTENT))
            } else {
                Err(missing(id))
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The secret is shown once, when the webhook is created.
fn view(w: &Webhook, with_secret: bool) -> Value {
    let mut v = json!({ "id": w.id, "url": w.url, "events": w.events, "created_at": w.created_at });
    if with_secret {
        v["secret"] = json!(w.secret);
    }
    v
}
