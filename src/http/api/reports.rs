//! Attribution reports (secret key): `POST /v1/attribution/reports` requests one,
//! `GET /v1/attribution/reports/{id}` shows its progress, `POST /v1/attribution/reports/test`
//! sends an empty signed batch to the report webhook and answers with the receiver's status.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::{as_object, read_json};
use crate::app::App;
use crate::attribution::AttributionConfig;
use crate::delivery::report::{self, batch_body, Request};
use crate::delivery::worker::{client, send};
use crate::delivery::{Job, Owner, Signing};
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
    let tenant = caller.tenant_id.clone();
    match (method, id) {
        (&Method::POST, None) => {
            let value: Value = read_json(body, 16 * 1024).await?;
            let r = report::request(as_object(&value)?)?;
            let config = report_config(app, &tenant).await?;
            let id = format!("rep_{}", hex::encode(rand::random::<[u8; 8]>()));
            let (start, end) = (time::date_string(r.start), time::date_string(r.end));
            app.redis
                .report_set(
                    &tenant,
                    &id,
                    &[
                        ("id", id.clone()),
                        ("start_date", start.clone()),
                        ("end_date", end.clone()),
                        ("campaign_id", r.campaign_id.clone().unwrap_or_default()),
                        ("status", "created".into()),
                        ("webhook", config.report_webhook_url.clone()),
                        ("created_at", time::now_rfc3339()),
                    ],
                )
                .await?;
            let (delivery, tenant2, id2, r2) =
                (app.delivery.clone(), tenant.clone(), id.clone(), r.clone());
            tokio::spawn(async move { report::generate(&delivery, &tenant2, &id2, &r2).await });
            Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "id": id,
                    "start_date": start,
                    "end_date": end,
                    "status": "created",
                    "campaign_scope": r.campaign_id.as_deref().unwrap_or("all"),
                    "campaign_name": r.campaign_id,
                    "response_webhooks": [config.report_webhook_url],
                }),
            ))
        }
        (&Method::POST, Some("test")) => {
            let config = report_config(app, &tenant).await?;
            let today = (time::now_ms() / time::MS_PER_DAY) as u16;
            let r = Request {
                start: today,
                end: today,
                campaign_id: None,
            };
            let mut job = Job::new(
                &tenant,
                Owner::Report {
                    report_id: "test".into(),
                },
                config.report_webhook_url.clone(),
                Some(batch_body(&r, 0, 1, Vec::new())),
            );
            job.signing = Some(Signing::Sha1 {
                header: config.report_signature_header.clone(),
                secret: config.report_signing_secret.clone(),
            });
            let allow = app.config.delivery.allow_private_targets;
            let http = client(allow, Duration::from_millis(app.config.delivery.timeout_ms));
            let attempt = send(&http, &job, allow).await;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "delivered": attempt.ok(),
                    "status_code": attempt.status,
                    "error": attempt.error,
                }),
            ))
        }
        (&Method::GET, Some(id)) => {
            let fields = app.redis.report(&tenant, id).await?;
            if fields.is_empty() {
                return Err(ApiError::not_found(format!("no report {id:?}")));
            }
            let num = |k: &str| {
                fields
                    .get(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let (total, delivered, dead) = (
                num("total_batches"),
                num("delivered_batches"),
                num("dead_batches"),
            );
            let mut status = fields.get("status").cloned().unwrap_or_default();
            if status == "delivering" && total > 0 && delivered == total {
                status = "delivered".into();
            } else if status == "delivering" && dead > 0 && delivered + dead == total {
                status = "failed".into();
            }
            let campaign = fields.get("campaign_id").filter(|c| !c.is_empty());
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "id": id,
                    "start_date": fields.get("start_date"),
                    "end_date": fields.get("end_date"),
                    "campaign_scope": campaign.map_or("all", String::as_str),
                    "status": status,
                    "matches": num("matches"),
                    "total_batches": total,
                    "delivered_batches": delivered,
                    "dead_batches": dead,
                    "created_at": fields.get("created_at"),
                    "response_webhooks": [fields.get("webhook")],
                }),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The tenant's attribution config, which must name a report webhook before reports can go.
async fn report_config(app: &App, tenant: &str) -> Result<AttributionConfig, ApiError> {
    let config = app.redis.attribution_config(tenant).await?;
    if config.report_webhook_url.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_report_webhook",
            "set report_webhook_url with PATCH /v1/attribution/config first",
        ));
    }
    Ok(config)
}
