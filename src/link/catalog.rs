//! The link use cases: create, read, change and delete a tenant's links in Redis, and keep
//! this node's link table (what the redirect reads) in step with them. A tenant only ever
//! reaches its own links: another tenant's code is "not found", exactly like a missing one.

use serde::{Deserialize, Deserializer};
use tracing::warn;

use super::{is_reserved, valid_code, Link, LinkTable, Template, MAX_FIELD_LEN};
use crate::error::{Error, FieldError};
use crate::metrics::Metrics;
use crate::store::redis::{Redis, RedisError};
use crate::time;

const GENERATED_CODE_LEN: usize = 8;

/// What the link use cases work with.
pub struct Context<'a> {
    pub redis: &'a Redis,
    pub table: &'a LinkTable,
    pub metrics: &'static Metrics,
    /// Links a tenant may have.
    pub limit: usize,
}

/// A `POST /v1/links` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
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

/// A `PATCH /v1/links/{id}` body. Absent = unchanged; `null` = cleared (for the optional
/// fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkPatch {
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

impl NewLink {
    /// The link this body describes (its id still to be checked or generated), validated.
    fn into_link(self, tenant: &str, now: String) -> Result<(Option<String>, Link), FieldError> {
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

impl LinkPatch {
    fn apply(self, link: &mut Link) {
        fn set<T>(field: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *field = v;
            }
        }
        set(&mut link.destination, self.destination);
        set(&mut link.campaign, self.campaign);
        set(&mut link.source, self.source);
        set(&mut link.medium, self.medium);
        set(&mut link.partner_id, self.partner_id);
        set(&mut link.ios_destination, self.ios_destination);
        set(&mut link.android_destination, self.android_destination);
        set(&mut link.fallback_url, self.fallback_url);
        set(&mut link.paused, self.paused);
    }
}

pub async fn create(ctx: &Context<'_>, tenant: &str, new: NewLink) -> Result<Link, Error> {
    let (id, mut link) = new.into_link(tenant, time::now_rfc3339())?;
    if ctx.redis.link_count(tenant).await? >= ctx.limit {
        return Err(Error::LimitReached {
            resource: "links",
            limit: ctx.limit,
        });
    }
    match id {
        Some(code) => {
            if !valid_code(&code) {
                return Err(
                    FieldError::new("id", "must be 1-64 characters of A-Z a-z 0-9 _ -").into(),
                );
            }
            if is_reserved(&code) {
                return Err(FieldError::new("id", format!("{code:?} is reserved")).into());
            }
            link.id = code;
            if !ctx.redis.insert_link(&link).await? {
                return Err(Error::Conflict {
                    code: "id_taken",
                    message: format!("link id {:?} is already taken", link.id),
                    field: Some("id"),
                });
            }
        }
        None => loop {
            link.id = generate_code();
            if ctx.redis.insert_link(&link).await? {
                break;
            }
        },
    }
    refresh(ctx).await;
    Ok(link)
}

/// The tenant's live links, newest first.
pub async fn list(redis: &Redis, tenant: &str) -> Result<Vec<Link>, Error> {
    let mut links = redis.tenant_links(tenant).await?;
    links.retain(|l| l.tenant_id == tenant && l.deleted_at.is_none());
    links.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(links)
}

/// The tenant's live link `id` (not found also for other tenants' and deleted links).
pub async fn get(redis: &Redis, tenant: &str, id: &str) -> Result<Link, Error> {
    match redis.get_link(id).await? {
        Some(link) if link.tenant_id == tenant && link.deleted_at.is_none() => Ok(link),
        _ => Err(Error::NotFound(format!("no link with id {id:?}"))),
    }
}

pub async fn update(
    ctx: &Context<'_>,
    tenant: &str,
    id: &str,
    patch: LinkPatch,
) -> Result<Link, Error> {
    let mut link = get(ctx.redis, tenant, id).await?;
    patch.apply(&mut link);
    validate(&link)?;
    link.updated_at = time::now_rfc3339();
    ctx.redis.put_link(&link).await?;
    refresh(ctx).await;
    Ok(link)
}

/// Marks the link deleted (its code stays taken: old clicks keep their meaning).
pub async fn delete(ctx: &Context<'_>, tenant: &str, id: &str) -> Result<(), Error> {
    let mut link = get(ctx.redis, tenant, id).await?;
    let now = time::now_rfc3339();
    link.updated_at = now.clone();
    link.deleted_at = Some(now);
    ctx.redis.put_link(&link).await?;
    refresh(ctx).await;
    Ok(())
}

/// Reloads this node's link table now, so the change redirects at once here (other nodes
/// follow within `link_refresh_ms`). A failure keeps the previous table.
async fn refresh(ctx: &Context<'_>) {
    if let Err(error) = reload(ctx.redis, ctx.table, ctx.metrics).await {
        ctx.metrics.link_refresh_errors.increment(1);
        warn!(%error, "link table refresh failed; serving the previous table");
    }
}

/// Loads the whole link set into `table`. Serialized, so an older snapshot never replaces
/// a newer one.
pub async fn reload(redis: &Redis, table: &LinkTable, metrics: &Metrics) -> Result<(), RedisError> {
    let _guard = table.reloading.lock().await;
    let (version, links) = redis.all_links().await?;
    table.replace(version, links);
    metrics.link_table_size.set(table.len() as f64);
    Ok(())
}

/// Reloads `table` when Redis's link-set version moved.
pub async fn reload_if_changed(
    redis: &Redis,
    table: &LinkTable,
    metrics: &Metrics,
) -> Result<(), RedisError> {
    if Some(redis.links_version().await?) != table.version() {
        reload(redis, table, metrics).await?;
    }
    Ok(())
}

fn validate(link: &Link) -> Result<(), FieldError> {
    Template::parse(&link.destination)
        .map_err(|e| FieldError::new("destination", e.to_string()))?;
    for (field, value) in [
        ("ios_destination", &link.ios_destination),
        ("android_destination", &link.android_destination),
        ("fallback_url", &link.fallback_url),
    ] {
        if let Some(url) = value {
            Template::parse(url).map_err(|e| FieldError::new(field, e.to_string()))?;
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
                return Err(FieldError::new(
                    field,
                    format!("is longer than {MAX_FIELD_LEN} bytes"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(FieldError::new(
                    field,
                    "must not contain control characters",
                ));
            }
        }
    }
    Ok(())
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
