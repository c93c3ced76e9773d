//! The link use cases: create (one or many), list in pages, read, change and delete a
//! tenant's links in Redis; a write waits until this node's link table shows it (`sync`
//! brings it to every node). A tenant only ever reaches its own links: another tenant's
//! code is "not found", exactly like a missing one.

use std::time::Duration;

use ahash::AHashSet;
use serde::{Deserialize, Deserializer};

use std::net::{IpAddr, Ipv4Addr};

use super::cap::ClickCap;
use super::routing::{self, Rule, Sample, Variant};
use super::{
    is_reserved, valid_code, Interner, Link, LinkTable, LiveLink, Routing, Template, MAX_FIELD_LEN,
};
use crate::error::{Error, FieldError, ItemError};
use crate::store::redis::{Put, Redis};
use crate::time;

const GENERATED_CODE_LEN: usize = 8;

/// What the link use cases work with.
pub struct Context<'a> {
    pub redis: &'a Redis,
    /// This node's link table, when there is one (not in the CLI): a write waits (briefly)
    /// until its change is in it, so that the link redirects here as soon as it is answered.
    pub table: Option<&'a LinkTable>,
    /// Links a tenant may have.
    pub limit: usize,
    /// Entries the change feed keeps.
    pub feed_length: usize,
}

/// At most this many links in one `POST /v1/links/bulk` (SPEC, Bulk links).
pub const BULK_MAX: usize = 10_000;

/// `GET /v1/links` pages: this many links unless asked, at most `PAGE_MAX`.
pub const PAGE_DEFAULT: usize = 100;
pub const PAGE_MAX: usize = 1_000;

/// How long a write waits for this node's table to show it; past it the change still
/// arrives (the catalog sync applies it), the answer just does not wait for it.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// What a bulk create did: the links created (with their index in the request) and the
/// items refused, each naming its field.
pub struct Bulk {
    pub created: Vec<(usize, Link)>,
    pub failed: Vec<ItemError>,
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
    expires_at: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
    split: Option<Vec<Variant>>,
    click_cap: Option<ClickCap>,
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
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<String>>,
    /// `[]` or `null` removes every rule.
    #[serde(default, deserialize_with = "nullable")]
    rules: Option<Option<Vec<Rule>>>,
    #[serde(default, deserialize_with = "nullable")]
    split: Option<Option<Vec<Variant>>>,
    #[serde(default, deserialize_with = "nullable")]
    click_cap: Option<Option<ClickCap>>,
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
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
            expires_at: self.expires_at,
            rules: self.rules,
            split: self.split,
            click_cap: self.click_cap,
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
        set(&mut link.expires_at, self.expires_at);
        set(&mut link.rules, self.rules.map(Option::unwrap_or_default));
        set(&mut link.split, self.split);
        set(&mut link.click_cap, self.click_cap);
    }
}

pub async fn create(ctx: &Context<'_>, tenant: &str, new: NewLink) -> Result<Link, Error> {
    let (id, link) = new.into_link(tenant, time::now_rfc3339())?;
    let claim = claim(id, link)?;
    let wanted = claim.link.id.clone();
    check_room(ctx, tenant, 1).await?;
    match place(ctx, vec![claim]).await?.pop().flatten() {
        Some(link) => Ok(link),
        None => Err(Error::Conflict {
            code: "id_taken",
            message: format!("link id {wanted:?} is already taken"),
            field: Some("id"),
        }),
    }
}

/// Creates the valid links among `items` (`POST /v1/links/bulk`, CSV import); the others,
/// and those whose id is taken or repeated, are reported by index. A request that would
/// take the tenant past its link limit creates nothing.
pub async fn create_many(
    ctx: &Context<'_>,
    tenant: &str,
    items: Vec<Result<NewLink, FieldError>>,
) -> Result<Bulk, Error> {
    let now = time::now_rfc3339();
    let mut failed = Vec::new();
    let mut claims = Vec::new();
    let mut indexes = Vec::new();
    let mut ids = AHashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let claimed = item
            .and_then(|new| new.into_link(tenant, now.clone()))
            .and_then(|(id, link)| claim(id, link));
        match claimed {
            Ok(c) if !c.generated && !ids.insert(c.link.id.clone()) => failed.push(ItemError::new(
                index,
                "id",
                format!(
                    "link id {:?} appears more than once in the request",
                    c.link.id
                ),
            )),
            Ok(c) => {
                claims.push(c);
                indexes.push(index);
            }
            Err(e) => failed.push(e.at(index)),
        }
    }
    check_room(ctx, tenant, claims.len()).await?;
    let mut created = Vec::with_capacity(claims.len());
    let wanted: Vec<String> = claims.iter().map(|c| c.link.id.clone()).collect();
    for ((index, id), placed) in indexes
        .into_iter()
        .zip(wanted)
        .zip(place(ctx, claims).await?)
    {
        match placed {
            Some(link) => created.push((index, link)),
            None => failed.push(ItemError::new(
                index,
                "id",
                format!("link id {id:?} is already taken"),
            )),
        }
    }
    failed.sort_by_key(|e| e.index);
    Ok(Bulk { created, failed })
}

/// A link ready to be stored, and whether its code was generated (then a taken one is
/// replaced, not refused).
struct Claim {
    link: Link,
    generated: bool,
}

/// The link with the code it asked for (checked) or a generated one.
fn claim(id: Option<String>, mut link: Link) -> Result<Claim, FieldError> {
    let generated = id.is_none();
    link.id = match id {
        Some(code) if !valid_code(&code) => {
            return Err(FieldError::new(
                "id",
                "must be 1-64 characters of A-Z a-z 0-9 _ -",
            ))
        }
        Some(code) if is_reserved(&code) => {
            return Err(FieldError::new("id", format!("{code:?} is reserved")))
        }
        Some(code) => code,
        None => generate_code(),
    };
    Ok(Claim { link, generated })
}

async fn check_room(ctx: &Context<'_>, tenant: &str, more: usize) -> Result<(), Error> {
    if more > 0 && ctx.redis.link_count(tenant).await? + more > ctx.limit {
        return Err(Error::LimitReached {
            resource: "links",
            limit: ctx.limit,
        });
    }
    Ok(())
}

/// Stores new links, in order: each is `Some` once stored, `None` where its chosen code was
/// taken. A generated code that collides is generated again.
async fn place(ctx: &Context<'_>, claims: Vec<Claim>) -> Result<Vec<Option<Link>>, Error> {
    let mut placed: Vec<Option<Link>> = vec![None; claims.len()];
    let mut pending: Vec<(usize, Claim)> = claims.into_iter().enumerate().collect();
    let mut newest = 0;
    while !pending.is_empty() {
        let links: Vec<Link> = pending.iter().map(|(_, c)| c.link.clone()).collect();
        let versions = ctx
            .redis
            .put_links(&links, Put::Create, ctx.feed_length)
            .await?;
        let mut retry = Vec::new();
        for ((i, mut c), version) in pending.into_iter().zip(versions) {
            match version {
                Some(v) => {
                    newest = newest.max(v);
                    placed[i] = Some(c.link);
                }
                None if c.generated => {
                    c.link.id = generate_code();
                    retry.push((i, c));
                }
                None => {}
            }
        }
        pending = retry;
    }
    settle(ctx, newest).await;
    Ok(placed)
}

/// Waits until this node's table has applied catalog version `version` (see `Context`).
async fn settle(ctx: &Context<'_>, version: u64) {
    if let Some(table) = ctx.table {
        if version > 0 {
            table.wait_applied(version, SETTLE_LIMIT).await;
        }
    }
}

/// A page of the tenant's live links, newest first, and the cursor of the next page.
pub async fn list(
    redis: &Redis,
    tenant: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Link>, Option<String>), Error> {
    let (mut links, next) = redis.tenant_links_page(tenant, cursor, limit).await?;
    links.retain(|l| l.tenant_id == tenant && l.deleted_at.is_none());
    Ok((links, next))
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
    store(ctx, &link).await?;
    Ok(link)
}

/// Marks the link deleted (its code stays taken: old clicks keep their meaning).
pub async fn delete(ctx: &Context<'_>, tenant: &str, id: &str) -> Result<(), Error> {
    let mut link = get(ctx.redis, tenant, id).await?;
    let now = time::now_rfc3339();
    link.updated_at = now.clone();
    link.deleted_at = Some(now);
    store(ctx, &link).await
}

/// Stores a changed link and waits for it here.
async fn store(ctx: &Context<'_>, link: &Link) -> Result<(), Error> {
    let versions = ctx
        .redis
        .put_links(std::slice::from_ref(link), Put::Update, ctx.feed_length)
        .await?;
    settle(ctx, versions.into_iter().flatten().max().unwrap_or(0)).await;
    Ok(())
}

/// A `POST /v1/links/{id}/preview` body: who visits, and optionally the rules and split to
/// try instead of the link's own (what an editor has not saved yet).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[serde(default)]
    visitor: VisitorFacts,
    #[serde(default, deserialize_with = "nullable")]
    rules: Option<Option<Vec<Rule>>>,
    #[serde(default, deserialize_with = "nullable")]
    split: Option<Option<Vec<Variant>>>,
}

/// The visitor of a preview; what is left out is unknown (`platform`: `other`; `at`: now).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VisitorFacts {
    country: Option<String>,
    /// ISO 3166-2 (`US-CA`), as rules name regions.
    region: Option<String>,
    platform: Option<String>,
    os: Option<String>,
    device: Option<String>,
    browser: Option<String>,
    language: Option<String>,
    ip: Option<String>,
    /// RFC 3339.
    at: Option<String>,
    /// A query string (`tier=gold&sub1=x`).
    query: Option<String>,
    /// With `ip`, what picks the split variant.
    user_agent: Option<String>,
}

/// Where a preview's visitor goes.
pub struct Preview {
    /// The index of the rule that took it (`None`: the link's split or destinations).
    pub rule: Option<usize>,
    pub variant: Option<String>,
    /// The destination template, macros unexpanded.
    pub destination: String,
    /// The link is paused, deleted or expired: it answers 410 or its fallback.
    pub gone: bool,
}

/// Where the tenant's link `id` (with the request's draft rules and split, when given) sends
/// the described visitor; `identity` is the split bucket of an address and user agent as the
/// redirect computes it.
pub async fn preview(
    redis: &Redis,
    tenant: &str,
    id: &str,
    request: PreviewRequest,
    identity: impl Fn(IpAddr, &str) -> u64,
) -> Result<Preview, Error> {
    let mut link = get(redis, tenant, id).await?;
    if let Some(rules) = request.rules {
        link.rules = rules.unwrap_or_default();
    }
    if let Some(split) = request.split {
        link.split = split;
    }
    let sample = request.visitor.sample(&identity)?;
    let live = LiveLink::compile(&link, &Interner::default())?;
    let route = live.routing().and_then(|r| r.route(&sample));
    let (template, variant, rule) = match route {
        Some(r) => (r.template, r.variant, r.rule),
        None => (live.destination_for(&sample.platform), None, None),
    };
    Ok(Preview {
        rule,
        variant: variant.map(|at| live.variant_id(at).to_string()),
        destination: template.source(),
        gone: live.is_gone(sample.now_ms),
    })
}

impl VisitorFacts {
    fn sample(self, identity: &impl Fn(IpAddr, &str) -> u64) -> Result<Sample, FieldError> {
        let one_of = |field: &str, value: Option<String>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v.as_str()) => Err(FieldError::new(
                &format!("visitor.{field}"),
                format!("must be one of {}", allowed.join(", ")),
            )),
            v => Ok(v.unwrap_or_default()),
        };
        let ip = match self.ip.as_deref() {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(ip) => ip
                .parse()
                .map_err(|_| FieldError::new("visitor.ip", "must be an IP address"))?,
        };
        let now_ms = match self.at.as_deref() {
            None => time::now_ms(),
            Some(at) => time::parse_rfc3339(at)
                .ok_or_else(|| FieldError::new("visitor.at", "must be an RFC 3339 time"))?,
        };
        let country = self.country.unwrap_or_default().to_ascii_uppercase();
        let region = self.region.unwrap_or_default().to_ascii_uppercase();
        // `US-CA` for a US visitor is region `CA`.
        let region = match region.split_once('-') {
            Some((c, r)) if c == country => r.to_string(),
            _ => region,
        };
        let user_agent = self.user_agent.unwrap_or_default();
        Ok(Sample {
            identity: identity(ip, &user_agent),
            country,
            region,
            platform: match self.platform {
                None => "other".into(),
                p => one_of("platform", p, routing::PLATFORMS)?,
            },
            os: one_of("os", self.os, routing::OS_FAMILIES)?,
            device: one_of("device", self.device, routing::DEVICES)?,
            browser: self.browser.unwrap_or_default(),
            language: self.language.unwrap_or_default().to_ascii_lowercase(),
            ip,
            now_ms,
            query: self.query,
        })
    }
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
    Routing::compile(&link.rules, link.split.as_deref(), &link.id)?;
    if let Some(cap) = &link.click_cap {
        cap.validate()?;
    }
    if let Some(at) = &link.expires_at {
        if time::parse_rfc3339(at).is_none() {
            return Err(FieldError::new(
                "expires_at",
                "must be an RFC 3339 time, e.g. 2027-01-31T23:59:59Z",
            ));
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
    use crate::link::{Interner, LiveLink};

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
                proptest::prop_assert!(LiveLink::compile(&link, &Interner::default()).is_ok());
            }
        }
    }
}
