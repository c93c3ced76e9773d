//! The app use cases: a tenant's apps listed, registered (an App Store id registered by
//! another app, of any tenant, is a conflict) and deleted.

use serde_json::{Map, Value};

use super::app::{App, MAX_APPS};
use crate::error::Error;
use crate::store::redis::Redis;

fn no_app(id: &str) -> Error {
    Error::NotFound(format!("no app {id:?}"))
}

pub async fn list(redis: &Redis, tenant: &str) -> Result<Vec<App>, Error> {
    Ok(redis.apps(tenant).await?)
}

pub async fn get(redis: &Redis, tenant: &str, id: &str) -> Result<App, Error> {
    redis.app(tenant, id).await?.ok_or_else(|| no_app(id))
}

pub async fn create(redis: &Redis, tenant: &str, body: &Map<String, Value>) -> Result<App, Error> {
    let app = App::new(body)?;
    if redis.apps(tenant).await?.len() >= MAX_APPS {
        return Err(Error::LimitReached {
            resource: "apps",
            limit: MAX_APPS,
        });
    }
    match redis.create_app(tenant, &app).await? {
        None => Ok(app),
        Some(_) => Err(Error::Conflict {
            code: "app_registered",
            message: format!(
                "App Store id {} is registered already; delete that app first",
                app.app_store_id
            ),
            field: Some("app_store_id"),
        }),
    }
}

pub async fn delete(redis: &Redis, tenant: &str, id: &str) -> Result<(), Error> {
    match redis.delete_app(tenant, id).await? {
        true => Ok(()),
        false => Err(no_app(id)),
    }
}
