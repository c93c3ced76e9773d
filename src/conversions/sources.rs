//! The webhook source use cases: a tenant's sources listed, created (with a webhook URL
//! token returned once), rotated (a new token; the old URL stops working) and deleted. Every
//! tenant has the `default` source from its first call on.

use serde_json::{Map, Value};

use super::source::{Source, MAX_NAME, TYPES};
use crate::error::{Error, FieldError};
use crate::store::redis::Redis;

fn no_source(id: &str) -> Error {
    Error::NotFound(format!("no source {id:?}"))
}

pub async fn list(redis: &Redis, tenant: &str) -> Result<Vec<Source>, Error> {
    redis.ensure_default_source(tenant).await?;
    Ok(redis.sources(tenant).await?)
}

pub async fn get(redis: &Redis, tenant: &str, id: &str) -> Result<Source, Error> {
    redis.ensure_default_source(tenant).await?;
    redis.source(tenant, id).await?.ok_or_else(|| no_source(id))
}

/// A new source from `{name, source_type?}`, and its token.
pub async fn create(
    redis: &Redis,
    tenant: &str,
    fields: &Map<String, Value>,
    limit: usize,
) -> Result<(Source, String), Error> {
    let (name, source_type) = new_source(fields)?;
    if list(redis, tenant).await?.len() >= limit {
        return Err(Error::LimitReached {
            resource: "sources",
            limit,
        });
    }
    let (source, token) = Source::new(name, source_type);
    redis.create_source(tenant, &source).await?;
    Ok((source, token))
}

/// The source with a new token, and the token.
pub async fn rotate(redis: &Redis, tenant: &str, id: &str) -> Result<(Source, String), Error> {
    redis.ensure_default_source(tenant).await?;
    redis
        .rotate_source(tenant, id)
        .await?
        .ok_or_else(|| no_source(id))
}

pub async fn delete(redis: &Redis, tenant: &str, id: &str) -> Result<(), Error> {
    redis.ensure_default_source(tenant).await?;
    match redis.delete_source(tenant, id).await? {
        true => Ok(()),
        false => Err(no_source(id)),
    }
}

/// The name and type a new source is asked for.
fn new_source(body: &Map<String, Value>) -> Result<(&str, &str), FieldError> {
    if let Some(field) = body
        .keys()
        .find(|k| !["name", "source_type"].contains(&k.as_str()))
    {
        return Err(FieldError::new(field, "is not a source field"));
    }
    let name = match body.get("name") {
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= MAX_NAME
                && !s.chars().any(char::is_control) =>
        {
            s.as_str()
        }
        Some(_) => {
            return Err(FieldError::new(
                "name",
                format!("must be a non-empty string of at most {MAX_NAME} characters"),
            ))
        }
        None => return Err(FieldError::new("name", "is required")),
    };
    let source_type = match body.get("source_type") {
        None | Some(Value::Null) => "custom",
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => t.as_str(),
        Some(_) => {
            return Err(FieldError::new(
                "source_type",
                format!("must be one of {}", TYPES.join(", ")),
            ))
        }
    };
    Ok((name, source_type))
}
