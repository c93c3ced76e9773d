//! The receivers of deliveries, as use cases: a tenant's partners (postback templates per
//! fact) and webhook subscriptions, created, changed, listed and deleted in Redis, and the
//! log of what was delivered to each.

use serde_json::{Map, Value};

use super::partner::{check_template, Partner};
use super::sign::new_secret;
use super::target::check_url;
use super::{Context, Owner, Webhook};
use crate::error::{Error, FieldError};
use crate::time;

const MAX_TEMPLATES: usize = 100;
/// What webhooks subscribe to.
pub const WEBHOOK_EVENTS: &[&str] = &["install", "event", "conversion"];

fn no_partner(id: &str) -> Error {
    Error::NotFound(format!("no partner {id:?}"))
}

fn no_webhook(id: &str) -> Error {
    Error::NotFound(format!("no webhook {id:?}"))
}

pub async fn partner(ctx: &Context, tenant: &str, id: &str) -> Result<Partner, Error> {
    ctx.redis
        .partner(tenant, id)
        .await?
        .ok_or_else(|| no_partner(id))
}

pub async fn partners(ctx: &Context, tenant: &str) -> Result<Vec<Partner>, Error> {
    Ok(ctx.redis.partners_of(tenant).await?)
}

/// A new partner from a body's fields (`name` required; `id` generated when absent).
pub async fn create_partner(
    ctx: &Context,
    tenant: &str,
    fields: &Map<String, Value>,
    limit: usize,
) -> Result<Partner, Error> {
    let id = match fields.get("id") {
        None | Some(Value::Null) => format!("p_{}", hex::encode(rand::random::<[u8; 6]>())),
        Some(Value::String(s)) if crate::link::valid_code(s) => s.clone(),
        Some(_) => return Err(FieldError::new("id", "must match [A-Za-z0-9_-]{1,64}").into()),
    };
    if ctx.redis.partners_of(tenant).await?.len() >= limit {
        return Err(Error::LimitReached {
            resource: "partners",
            limit,
        });
    }
    if ctx.redis.partner(tenant, &id).await?.is_some() {
        return Err(Error::Conflict {
            code: "partner_exists",
            message: format!("partner {id:?} exists"),
            field: Some("id"),
        });
    }
    let partner = Partner {
        id,
        name: String::new(),
        postbacks: Default::default(),
        share_revenue: false,
        skan_ad_network_id: None,
        skan_postback_url: None,
        skan_secret: None,
        created_at: time::now_rfc3339(),
    };
    let partner = apply(partner, fields, true, ctx.config.allow_private_targets)?;
    ctx.redis.put_partner(tenant, &partner).await?;
    Ok(partner)
}

pub async fn update_partner(
    ctx: &Context,
    tenant: &str,
    id: &str,
    fields: &Map<String, Value>,
) -> Result<Partner, Error> {
    let current = partner(ctx, tenant, id).await?;
    if fields.contains_key("id") {
        return Err(FieldError::new("id", "cannot be changed").into());
    }
    let partner = apply(current, fields, false, ctx.config.allow_private_targets)?;
    ctx.redis.put_partner(tenant, &partner).await?;
    Ok(partner)
}

pub async fn delete_partner(ctx: &Context, tenant: &str, id: &str) -> Result<(), Error> {
    match ctx.redis.delete_partner(tenant, id).await? {
        true => Ok(()),
        false => Err(no_partner(id)),
    }
}

/// Applies the given fields (all of `name` required on create); `postbacks` entries set to
/// `null` are removed.
fn apply(
    mut p: Partner,
    fields: &Map<String, Value>,
    create: bool,
    allow_private: bool,
) -> Result<Partner, FieldError> {
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("id", _) => {}
            ("name", Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 128 => {
                p.name = s.clone()
            }
            ("name", _) => {
                return Err(FieldError::new(
                    "name",
                    "must be a non-empty string of at most 128 characters",
                ))
            }
            ("share_revenue", Value::Bool(b)) => p.share_revenue = *b,
            ("share_revenue", _) => {
                return Err(FieldError::new("share_revenue", "must be true or false"))
            }
            ("postbacks", Value::Object(map)) => {
                for (kind, template) in map {
                    let field = format!("postbacks.{kind}");
                    if kind.is_empty() || kind.chars().count() > 64 {
                        return Err(FieldError::new(&field, "type must be 1 to 64 characters"));
                    }
                    match template {
                        Value::Null => {
                            p.postbacks.remove(kind);
                        }
                        Value::String(t) => {
                            check_template(t, allow_private)
                                .map_err(|e| FieldError::new(&field, e))?;
                            p.postbacks.insert(kind.clone(), t.clone());
                        }
                        _ => return Err(FieldError::new(&field, "must be a URL template or null")),
                    }
                }
                if p.postbacks.len() > MAX_TEMPLATES {
                    return Err(FieldError::new(
                        "postbacks",
                        format!("at most {MAX_TEMPLATES} templates"),
                    ));
                }
            }
            ("postbacks", _) => {
                return Err(FieldError::new(
                    "postbacks",
                    "must be an object of type → URL template",
                ))
            }
            ("skan_ad_network_id", Value::Null) => p.skan_ad_network_id = None,
            ("skan_ad_network_id", Value::String(s))
                if (1..=256).contains(&s.len()) && !s.chars().any(char::is_control) =>
            {
                p.skan_ad_network_id = Some(s.clone())
            }
            ("skan_ad_network_id", _) => {
                return Err(FieldError::new(
                    "skan_ad_network_id",
                    "must be an ad network id such as \"example123.skadnetwork\", or null",
                ))
            }
            ("skan_postback_url", Value::Null) => p.skan_postback_url = None,
            ("skan_postback_url", Value::String(url)) if !url.contains(['{', '}']) => {
                check_template(url, allow_private)
                    .map_err(|e| FieldError::new("skan_postback_url", e))?;
                p.skan_postback_url = Some(url.clone());
            }
            ("skan_postback_url", _) => {
                return Err(FieldError::new(
                    "skan_postback_url",
                    "must be an http(s) URL without macros, or null",
                ))
            }
            (other, _) => return Err(FieldError::new(other, "is not a partner field")),
        }
    }
    if create && p.name.is_empty() {
        return Err(FieldError::new("name", "is required"));
    }
    // Forwarded copies are signed: the secret is made with the first forwarding URL and kept.
    if p.skan_postback_url.is_some() && p.skan_secret.is_none() {
        p.skan_secret = Some(super::sign::new_secret());
    }
    Ok(p)
}

pub async fn webhooks(ctx: &Context, tenant: &str) -> Result<Vec<Webhook>, Error> {
    Ok(ctx.redis.webhooks_of(tenant).await?)
}

pub async fn webhook(ctx: &Context, tenant: &str, id: &str) -> Result<Webhook, Error> {
    webhooks(ctx, tenant)
        .await?
        .into_iter()
        .find(|w| w.id == id)
        .ok_or_else(|| no_webhook(id))
}

/// A new subscription from `{url, events}`, with a fresh signing secret.
pub async fn create_webhook(
    ctx: &Context,
    tenant: &str,
    fields: &Map<String, Value>,
    limit: usize,
) -> Result<Webhook, Error> {
    if let Some(k) = fields
        .keys()
        .find(|k| !["url", "events"].contains(&k.as_str()))
    {
        return Err(FieldError::new(k, "is not a webhook field").into());
    }
    let url = match fields.get("url") {
        Some(Value::String(u)) => u.clone(),
        _ => return Err(FieldError::new("url", "is required (an http or https URL)").into()),
    };
    check_url(&url, ctx.config.allow_private_targets).map_err(|e| FieldError::new("url", e))?;
    let events = match fields.get("events") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|e| match e.as_str() {
                Some(s) if WEBHOOK_EVENTS.contains(&s) => Ok(s.to_string()),
                _ => Err(FieldError::new(
                    "events",
                    format!("must list some of {}", WEBHOOK_EVENTS.join(", ")),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(FieldError::new(
                "events",
                format!(
                    "is required: a non-empty list of {}",
                    WEBHOOK_EVENTS.join(", ")
                ),
            )
            .into())
        }
    };
    if ctx.redis.webhooks_of(tenant).await?.len() >= limit {
        return Err(Error::LimitReached {
            resource: "webhooks",
            limit,
        });
    }
    let webhook = Webhook {
        id: format!("wh_{}", hex::encode(rand::random::<[u8; 8]>())),
        url,
        events,
        secret: new_secret(),
        created_at: time::now_rfc3339(),
    };
    ctx.redis.put_webhook(tenant, &webhook).await?;
    Ok(webhook)
}

pub async fn delete_webhook(ctx: &Context, tenant: &str, id: &str) -> Result<(), Error> {
    match ctx.redis.delete_webhook(tenant, id).await? {
        true => Ok(()),
        false => Err(no_webhook(id)),
    }
}

/// The latest delivery attempts to a partner or webhook the tenant has.
pub async fn deliveries(ctx: &Context, tenant: &str, owner: &Owner) -> Result<Vec<Value>, Error> {
    match owner {
        Owner::Postback { partner_id } => drop(partner(ctx, tenant, partner_id).await?),
        Owner::Webhook { webhook_id } => drop(webhook(ctx, tenant, webhook_id).await?),
        Owner::Report { .. } => {}
    }
    Ok(ctx.redis.delivery_log(tenant, owner).await?)
}
