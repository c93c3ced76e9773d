//! Attribution reports (secret key): `POST /v1/attribution/reports` requests one,
//! `GET /v1/attribution/reports/{id}` shows its progress, `POST /v1/attribution/reports/test`
//! sends an empty signed batch to the report webhook and answers with the receiver's status.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{as_object, read_json};
use crate::app::App;
use crate::delivery::report;
use crate::http::auth::require_secret;
use crate::http::error::{json_response, ApiError, Body};
use crate::time;

pub async fn reports(
    app: &Arc<App>,
    method: &Method,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let (ctx, tenant) = (&app.delivery, caller.tenant_id.as_str());
    match (method, id) {
        (&Method::POST, None) => {
            let value: Value = read_json(body, 16 * 1024).await?;
            let r = report::request(as_object(&value)?)?;
            let (id, webhook) = report::start(ctx, tenant, &r).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "id": id,
                    "start_date": time::date_string(r.start),
                    "end_date": time::date_string(r.end),
                    "status": "created",
                    "campaign_scope": r.campaign_id.as_deref().unwrap_or("all"),
                    "campaign_name": r.campaign_id,
                    "response_webhooks": [webhook],
                }),
            ))
        }
        (&Method::POST, Some("test")) => {
            let attempt = report::test(ctx, tenant).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "delivered": attempt.ok(),
                    "status_code": attempt.status,
                    "error": attempt.error,
                }),
            ))
        }
        (&Method::GET, Some(id)) => Ok(json_response(
            StatusCode::OK,
            &report::progress(ctx, tenant, id).await?,
        )),
        _ => Err(ApiError::method_not_allowed()),
    }
}
