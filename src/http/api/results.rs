//! `GET /v1/attribution/results` (secret key): the tenant's matched installs, newest first,
//! filtered by `status` (attributed or rejected), `campaign`, `source`, `from`/`to` (UTC
//! days), `limit` (1–1000, default 100) pages with an opaque `cursor`; and
//! `GET /v1/attribution/installs/{install_id}`, one install's attribution receipt.

use base64::Engine;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::{page_limit, query_params};
use crate::app::App;
use crate::click::ClickId;
use crate::error::FieldError;
use crate::http::auth::require_secret;
use crate::http::error::{json_response, ApiError, Body};
use crate::stats::parse_day;
use crate::store::clickhouse::{install_receipt, matched_installs, MatchedInstall, ResultsFilter};
use crate::time;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub async fn results(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let filter = filter(query)?;
    let limit = filter.limit;
    let mut rows = matched_installs(
        &app.ch,
        &caller.tenant_id,
        &ResultsFilter {
            limit: limit + 1,
            ..filter
        },
    )
    .await?;
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    });
    let results: Vec<Value> = rows.iter().map(view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results, "next_cursor": next.flatten() }),
    ))
}

fn filter(query: Option<&str>) -> Result<ResultsFilter, FieldError> {
    let mut f = ResultsFilter {
        limit: DEFAULT_LIMIT,
        ..ResultsFilter::default()
    };
    for (key, value) in query_params(query) {
        let day = |field: &str| {
            parse_day(&value).ok_or_else(|| FieldError::new(field, "must be a date YYYY-MM-DD"))
        };
        match key.as_str() {
            "status" => {
                f.status = Some(match value.as_str() {
                    "attributed" => "attributed",
                    "rejected" => "rejected",
                    _ => return Err(FieldError::new("status", "must be attributed or rejected")),
                })
            }
            "campaign" => f.campaign = Some(value),
            "source" => f.source = Some(value),
            "from" => f.from_day = Some(day("from")?),
            "to" => f.to_day = Some(day("to")?),
            "limit" => f.limit = page_limit(&value, MAX_LIMIT)?,
            "cursor" => {
                f.before = Some(
                    parse_cursor(&value)
                        .ok_or_else(|| FieldError::new("cursor", "is not a cursor"))?,
                )
            }
            other => {
                return Err(FieldError::new(
                    other,
                    "is not a parameter of this endpoint",
                ))
            }
        }
    }
    if let (Some(from), Some(to)) = (f.from_day, f.to_day) {
        if from > to {
            return Err(FieldError::new("from", "must not be after to"));
        }
    }
    Ok(f)
}

/// base64url of "<ts_ms>:<install_id>".
fn cursor_of(r: &MatchedInstall) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", r.ts_ms, r.install_id))
}

fn parse_cursor(s: &str) -> Option<(u64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (ts, id) = text.split_once(':')?;
    Some((ts.parse().ok()?, id.to_string()))
}

/// `GET /v1/attribution/installs/{install_id}`: `{install_id, status, match_type, click_id?,
/// link_id?, ctit_seconds?, competing_clicks, fraud: {mode, verdict, reasons: [{code,
/// value}]}, installed_at}`; 404 until the install's row is stored (a second or so).
pub async fn receipt(
    app: &App,
    headers: &HeaderMap,
    install_id: &str,
) -> Result<Response<Body>, ApiError> {
    let caller = require_secret(app, headers).await?;
    let install_id = percent_encoding::percent_decode_str(install_id).decode_utf8_lossy();
    let Some(r) = install_receipt(&app.ch, &caller.tenant_id, &install_id).await? else {
        return Err(crate::error::Error::NotFound(format!(
            "no install {install_id:?} is recorded (rows are stored about a second after the report)"
        ))
        .into());
    };
    let matched = r.click_id != [0; 16];
    let reasons: Vec<Value> = r
        .fraud_reasons
        .iter()
        .zip(&r.fraud_values)
        .map(|(code, value)| json!({ "code": code, "value": value }))
        .collect();
    let or = |s: &str, default: &'static str| if s.is_empty() { default } else { s }.to_string();
    let mut out = json!({
        "install_id": install_id,
        "status": r.status,
        "match_type": r.match_type,
        "competing_clicks": r.competing_clicks,
        "fraud": {
            "mode": or(&r.fraud_mode, "off"),
            "verdict": or(&r.fraud_verdict, "not_evaluated"),
            "reasons": reasons,
        },
        "installed_at": time::rfc3339_from_ms(r.ts_ms),
    });
    if matched {
        out["click_id"] = json!(ClickId(r.click_id).to_string());
        out["link_id"] = json!(r.link_id);
        out["ctit_seconds"] = json!(r.ctit_seconds);
    }
    Ok(json_response(StatusCode::OK, &out))
}

fn view(r: &MatchedInstall) -> Value {
    let mut click = [0u8; 16];
    let click_id = hex::decode_to_slice(&r.click_id, &mut click)
        .ok()
        .filter(|_| click != [0; 16])
        .map(|_| ClickId(click).to_string());
    json!({
        "install_id": r.install_id,
        "installed_at": time::rfc3339_from_ms(r.ts_ms),
        "platform": r.platform,
        "match_type": r.match_type,
        "click_id": click_id,
        "clicked_at": click_id.as_ref().map(|_| time::rfc3339_from_ms(r.click_ts_ms)),
        "ctit_seconds": click_id.as_ref().map(|_| r.ctit_seconds),
        "link_id": r.link_id,
        "campaign": r.campaign,
        "source": r.source,
        "medium": r.medium,
        "partner_click_id": r.partner_click_id,
        "country": r.country,
        "status": r.status,
        "fraud_verdict": r.fraud_verdict,
        "fraud_reasons": r.fraud_reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let r = MatchedInstall {
            install_id: "dev:1/ü".into(),
            ts_ms: 1_795_305_600_123,
            platform: String::new(),
            match_type: String::new(),
            click_id: String::new(),
            click_ts_ms: 0,
            ctit_seconds: 0,
            link_id: String::new(),
            campaign: String::new(),
            source: String::new(),
            medium: String::new(),
            ..MatchedInstall::default()
        };
        assert_eq!(
            parse_cursor(&cursor_of(&r)),
            Some((1_795_305_600_123, "dev:1/ü".to_string()))
        );
        for bad in ["", "!!", "bm9jb2xvbg"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
