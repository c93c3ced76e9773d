//! Per-tenant attribution settings (`GET|PATCH /v1/attribution/config`): defaults, ranges,
//! and a patch that names the field it rejects.

use serde::{Deserialize, Serialize};

use super::fraud::FraudMode;
use crate::error::FieldError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttributionConfig {
    /// A click older than this never matches an install (1–30 days).
    pub click_lookback_days: u32,
    /// A fingerprint match must be younger than this (1–1440 minutes).
    pub fingerprint_window_minutes: u32,
    pub fingerprint_enabled: bool,
    /// Raw clicks, installs, events and conversions older than this are deleted (31–3650
    /// days); the daily aggregates behind stats are kept.
    pub raw_retention_days: u32,
    /// Where attribution reports are POSTed (empty: reports cannot be requested).
    pub report_webhook_url: String,
    /// The header carrying a report batch's HMAC-SHA1 (e.g. `X-SLM-Signature`).
    pub report_signature_header: String,
    /// The key report batches are signed with; generated, rotatable.
    pub report_signing_secret: String,
    /// What fraud findings do to an install (`attribution::fraud`).
    pub fraud_mode: FraudMode,
    /// `click_injection` below this click-to-install time (0–3600 s; 0 turns it off).
    pub min_ctit_seconds: u32,
    /// `click_flooding` above this click-to-install time (1–720 h).
    pub max_ctit_hours: u32,
    /// `too_many_clicks` when the click's visitor clicked the link more often than this in
    /// the hour before it (1–63: counted among the newest 64 clicks a fingerprint keeps).
    pub max_clicks_per_visitor_hour: u32,
}

pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Signature";

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            click_lookback_days: 7,
            fingerprint_window_minutes: 120,
            fingerprint_enabled: true,
            raw_retention_days: 400,
            report_webhook_url: String::new(),
            report_signature_header: DEFAULT_SIGNATURE_HEADER.into(),
            report_signing_secret: String::new(),
            fraud_mode: FraudMode::default(),
            min_ctit_seconds: 10,
            max_ctit_hours: 24,
            max_clicks_per_visitor_hour: 20,
        }
    }
}

/// A PATCH body: only the fields given change; unknown fields are refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigPatch {
    pub click_lookback_days: Option<u32>,
    pub fingerprint_window_minutes: Option<u32>,
    pub fingerprint_enabled: Option<bool>,
    pub raw_retention_days: Option<u32>,
    /// `Some("")` clears it.
    pub report_webhook_url: Option<String>,
    pub report_signature_header: Option<String>,
    /// Replace the report signing secret with a new one.
    pub rotate_report_signing_secret: bool,
    pub fraud_mode: Option<FraudMode>,
    pub min_ctit_seconds: Option<u32>,
    pub max_ctit_hours: Option<u32>,
    pub max_clicks_per_visitor_hour: Option<u32>,
}

fn error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message)
}

impl ConfigPatch {
    /// Reads a JSON object's fields, naming the one that is unknown or of the wrong type.
    pub fn from_json(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ConfigPatch, FieldError> {
        let mut patch = ConfigPatch::default();
        for (key, v) in object {
            let integer = || {
                let n = v.as_i64().ok_or_else(|| error(key, "must be an integer"))?;
                u32::try_from(n).map_err(|_| error(key, format!("is out of range, got {n}")))
            };
            match key.as_str() {
                "click_lookback_days" => patch.click_lookback_days = Some(integer()?),
                "fingerprint_window_minutes" => patch.fingerprint_window_minutes = Some(integer()?),
                "raw_retention_days" => patch.raw_retention_days = Some(integer()?),
                "min_ctit_seconds" => patch.min_ctit_seconds = Some(integer()?),
                "max_ctit_hours" => patch.max_ctit_hours = Some(integer()?),
                "max_clicks_per_visitor_hour" => {
                    patch.max_clicks_per_visitor_hour = Some(integer()?)
                }
                "fraud_mode" => {
                    patch.fraud_mode = Some(
                        v.as_str()
                            .and_then(FraudMode::parse)
                            .ok_or_else(|| error(key, "must be off, shadow, flag or reject"))?,
                    )
                }
                "report_webhook_url" => {
                    patch.report_webhook_url = Some(match v {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        _ => return Err(error(key, "must be a URL or null")),
                    })
                }
                "report_signature_header" => {
                    patch.report_signature_header = Some(
                        v.as_str()
                            .ok_or_else(|| error(key, "must be a header name"))?
                            .to_string(),
                    )
                }
                "rotate_report_signing_secret" => {
                    patch.rotate_report_signing_secret = v
                        .as_bool()
                        .ok_or_else(|| error(key, "must be true or false"))?
                }
                "report_signing_secret" => {
                    return Err(error(
                        key,
                        "is generated; rotate it with rotate_report_signing_secret: true",
                    ))
                }
                "fingerprint_enabled" => {
                    patch.fingerprint_enabled = Some(
                        v.as_bool()
                            .ok_or_else(|| error(key, "must be true or false"))?,
                    )
                }
                _ => return Err(error(key, "is not a setting")),
            }
        }
        Ok(patch)
    }
}

impl AttributionConfig {
    pub fn lookback_ms(&self) -> u64 {
        u64::from(self.click_lookback_days) * 86_400_000
    }

    pub fn window_ms(&self) -> u64 {
        u64::from(self.fingerprint_window_minutes) * 60_000
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        let range = |field: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(error(
                    field,
                    format!("must be between {lo} and {hi}, got {v}"),
                ))
            }
        };
        range("click_lookback_days", self.click_lookback_days, 1, 30)?;
        range(
            "fingerprint_window_minutes",
            self.fingerprint_window_minutes,
            1,
            1440,
        )?;
        // At least a month longer than idempotency keys live, so a replayed event or
        // conversion always finds what it would duplicate.
        range("raw_retention_days", self.raw_retention_days, 31, 3650)?;
        range("min_ctit_seconds", self.min_ctit_seconds, 0, 3600)?;
        range("max_ctit_hours", self.max_ctit_hours, 1, 720)?;
        range(
            "max_clicks_per_visitor_hour",
            self.max_clicks_per_visitor_hour,
            1,
            63,
        )?;
        let url = &self.report_webhook_url;
        if !url.is_empty()
            && (url.len() > 2048
                || !(url.starts_with("https://") || url.starts_with("http://"))
                || reqwest::Url::parse(url).is_err())
        {
            return Err(error(
                "report_webhook_url",
                "must be an absolute http or https URL",
            ));
        }
        let header = &self.report_signature_header;
        if header.is_empty()
            || header.len() > 64
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(error(
                "report_signature_header",
                "must be a header name of letters, digits, - and _",
            ));
        }
        Ok(())
    }

    /// The config with `patch` applied, if the result is valid.
    pub fn patched(&self, patch: &ConfigPatch) -> Result<AttributionConfig, FieldError> {
        let next = AttributionConfig {
            click_lookback_days: patch
                .click_lookback_days
                .unwrap_or(self.click_lookback_days),
            fingerprint_window_minutes: patch
                .fingerprint_window_minutes
                .unwrap_or(self.fingerprint_window_minutes),
            fingerprint_enabled: patch
                .fingerprint_enabled
                .unwrap_or(self.fingerprint_enabled),
            raw_retention_days: patch.raw_retention_days.unwrap_or(self.raw_retention_days),
            report_webhook_url: patch
                .report_webhook_url
                .clone()
                .unwrap_or_else(|| self.report_webhook_url.clone()),
            report_signature_header: patch
                .report_signature_header
                .clone()
                .unwrap_or_else(|| self.report_signature_header.clone()),
            report_signing_secret: if patch.rotate_report_signing_secret
                || self.report_signing_secret.is_empty()
            {
                crate::delivery::sign::new_secret()
            } else {
                self.report_signing_secret.clone()
            },
            fraud_mode: patch.fraud_mode.unwrap_or(self.fraud_mode),
            min_ctit_seconds: patch.min_ctit_seconds.unwrap_or(self.min_ctit_seconds),
            max_ctit_hours: patch.max_ctit_hours.unwrap_or(self.max_ctit_hours),
            max_clicks_per_visitor_hour: patch
                .max_clicks_per_visitor_hour
                .unwrap_or(self.max_clicks_per_visitor_hour),
        };
        next.validate()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_table() {
        let base = AttributionConfig::default();
        // (patch JSON, Ok(resulting lookback, window, enabled) or Err(field))
        let cases: &[(&str, Result<(u32, u32, bool), &str>)] = &[
            ("{}", Ok((7, 120, true))),
            (r#"{"click_lookback_days": 1}"#, Ok((1, 120, true))),
            (r#"{"click_lookback_days": 30}"#, Ok((30, 120, true))),
            (r#"{"click_lookback_days": 0}"#, Err("click_lookback_days")),
            (r#"{"click_lookback_days": 31}"#, Err("click_lookback_days")),
            (
                r#"{"fingerprint_window_minutes": 1440, "fingerprint_enabled": false}"#,
                Ok((7, 1440, false)),
            ),
            (
                r#"{"fingerprint_window_minutes": 1441}"#,
                Err("fingerprint_window_minutes"),
            ),
            (
                r#"{"fingerprint_window_minutes": 0}"#,
                Err("fingerprint_window_minutes"),
            ),
            (r#"{"click_lookback_days": -1}"#, Err("click_lookback_days")),
            (
                r#"{"click_lookback_days": "7"}"#,
                Err("click_lookback_days"),
            ),
            (
                r#"{"click_lookback_days": 2.5}"#,
                Err("click_lookback_days"),
            ),
            (r#"{"fingerprint_enabled": 1}"#, Err("fingerprint_enabled")),
            (r#"{"raw_retention_days": 30}"#, Err("raw_retention_days")),
            (
                r#"{"report_webhook_url": "https://r.example/in"}"#,
                Ok((7, 120, true)),
            ),
            (r#"{"report_webhook_url": null}"#, Ok((7, 120, true))),
            (
                r#"{"report_webhook_url": "r.example/in"}"#,
                Err("report_webhook_url"),
            ),
            (r#"{"report_webhook_url": 5}"#, Err("report_webhook_url")),
            (
                r#"{"report_signature_header": "X-SLM-Signature"}"#,
                Ok((7, 120, true)),
            ),
            (
                r#"{"report_signature_header": "X Sig"}"#,
                Err("report_signature_header"),
            ),
            (
                r#"{"report_signing_secret": "mine"}"#,
                Err("report_signing_secret"),
            ),
            (r#"{"raw_retention_days": 3651}"#, Err("raw_retention_days")),
            (r#"{"lookback": 3}"#, Err("lookback")),
            (r#"{"fraud_mode": "reject"}"#, Ok((7, 120, true))),
            (r#"{"fraud_mode": "Reject"}"#, Err("fraud_mode")),
            (r#"{"fraud_mode": null}"#, Err("fraud_mode")),
            (r#"{"min_ctit_seconds": 0}"#, Ok((7, 120, true))),
            (r#"{"min_ctit_seconds": 3600}"#, Ok((7, 120, true))),
            (r#"{"min_ctit_seconds": 3601}"#, Err("min_ctit_seconds")),
            (r#"{"min_ctit_seconds": -1}"#, Err("min_ctit_seconds")),
            (r#"{"max_ctit_hours": 720}"#, Ok((7, 120, true))),
            (r#"{"max_ctit_hours": 0}"#, Err("max_ctit_hours")),
            (r#"{"max_ctit_hours": 721}"#, Err("max_ctit_hours")),
            (r#"{"max_clicks_per_visitor_hour": 63}"#, Ok((7, 120, true))),
            (
                r#"{"max_clicks_per_visitor_hour": 64}"#,
                Err("max_clicks_per_visitor_hour"),
            ),
            (
                r#"{"max_clicks_per_visitor_hour": 0}"#,
                Err("max_clicks_per_visitor_hour"),
            ),
        ];
        for (json, want) in cases {
            let fields: serde_json::Map<_, _> = serde_json::from_str(json).unwrap();
            let got = ConfigPatch::from_json(&fields)
                .and_then(|patch| base.patched(&patch))
                .map(|c| {
                    (
                        c.click_lookback_days,
                        c.fingerprint_window_minutes,
                        c.fingerprint_enabled,
                    )
                })
                .map_err(|e| e.field);
            assert_eq!(got, want.map_err(String::from), "{json}");
        }
        // A secret is generated when missing, kept by other patches, replaced on rotation.
        let first = base.patched(&ConfigPatch::default()).unwrap();
        assert!(first.report_signing_secret.starts_with("whsec_"));
        let kept = first.patched(&ConfigPatch::default()).unwrap();
        assert_eq!(kept.report_signing_secret, first.report_signing_secret);
        let rotate = ConfigPatch {
            rotate_report_signing_secret: true,
            ..ConfigPatch::default()
        };
        let rotated = first.patched(&rotate).unwrap();
        assert_ne!(rotated.report_signing_secret, first.report_signing_secret);
        assert_eq!(AttributionConfig::default().window_ms(), 7_200_000);
    }
}
