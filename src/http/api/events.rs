//! `POST /v1/events`: server-to-server event batches (Basic auth). The whole batch is
//! validated first (any bad event refuses it, naming each by index and field); then each
//! event id is taken once per tenant for 30 days, the installs are looked up for their
//! attribution, and the new events are stored before the 204.

use ahash::AHashSet;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::{body_error, read_batch};
use crate::app::App;
use crate::conversions::{event, ingest, MAX_BODY};
use crate::http::auth::authenticate_basic;
use crate::http::error::{empty_response, ApiError, Body};
use crate::time;

pub async fn ingest(
    app: &App,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let caller = authenticate_basic(app, headers).await?;
    let bytes = read_batch(headers, body, MAX_BODY).await?;
    let raws = event::parse_batch(&bytes).map_err(|e| body_error(e, "events"))?;
    let now = time::now_ms();
    let mut events = Vec::with_capacity(raws.len());
    let mut errors = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        match event::validate(index, raw, now) {
            Ok(e) => events.push(e),
            Err(mut bad) => errors.append(&mut bad),
        }
    }
    if !errors.is_empty() {
        let invalid: AHashSet<usize> = errors.iter().map(|e| e.index).collect();
        return Err(ApiError::bad_request(
            "invalid_events",
            format!(
                "{} of {} events are invalid; nothing in this batch was stored",
                invalid.len(),
                raws.len()
            ),
        )
        .with_details(json!({ "errors": errors })));
    }
    if !events.is_empty() {
        ingest::events(&app.ingest(), &caller.tenant_id, &events, bytes.len()).await?;
    }
    Ok(empty_response(StatusCode::NO_CONTENT))
}
