//! Per-tenant attribution settings (`GET|PATCH /v1/attribution/config`): defaults, ranges,
//! and a patch that names the field it rejects.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttributionConfig {
    /// A click older than this never matches an install (1–30 days).
    pub click_lookback_days: u32,
    /// A fingerprint match must be younger than this (1–1440 minutes).
    pub fingerprint_window_minutes: u32,
    pub fingerprint_enabled: bool,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig { click_lookback_days: 7, fingerprint_window_minutes: 120, fingerprint_enabled: true }
    }
}

/// A PATCH body: only the fields given change; unknown fields are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    pub click_lookback_days: Option<u32>,
    pub fingerprint_window_minutes: Option<u32>,
    pub fingerprint_enabled: Option<bool>,
}

/// The field that is out of range and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl AttributionConfig {
    pub fn lookback_ms(&self) -> u64 {
        u64::from(self.click_lookback_days) * 86_400_000
    }

    pub fn window_ms(&self) -> u64 {
        u64::from(self.fingerprint_window_minutes) * 60_000
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |field: &'static str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError { field, message: format!("must be between {lo} and {hi}, got {v}") })
            }
        };
        range("click_lookback_days", self.click_lookback_days, 1, 30)?;
        range("fingerprint_window_minutes", self.fingerprint_window_minutes, 1, 1440)
    }

    /// The config with `patch` applied, if the result is valid.
    pub fn patched(&self, patch: &ConfigPatch) -> Result<AttributionConfig, ConfigError> {
        let next = AttributionConfig {
            click_lookback_days: patch.click_lookback_days.unwrap_or(self.click_lookback_days),
            fingerprint_window_minutes: patch.fingerprint_window_minutes.unwrap_or(self.fingerprint_window_minutes),
            fingerprint_enabled: patch.fingerprint_enabled.unwrap_or(self.fingerprint_enabled),
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
            (r#"{"fingerprint_window_minutes": 1440, "fingerprint_enabled": false}"#, Ok((7, 1440, false))),
            (r#"{"fingerprint_window_minutes": 1441}"#, Err("fingerprint_window_minutes")),
            (r#"{"fingerprint_window_minutes": 0}"#, Err("fingerprint_window_minutes")),
        ];
        for (json, want) in cases {
            let patch: ConfigPatch = serde_json::from_str(json).unwrap();
            let got = base
                .patched(&patch)
                .map(|c| (c.click_lookback_days, c.fingerprint_window_minutes, c.fingerprint_enabled))
                .map_err(|e| e.field);
            assert_eq!(got, *want, "{json}");
        }
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"lookback": 3}"#).is_err(), "unknown fields refused");
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"click_lookback_days": -1}"#).is_err());
        assert_eq!(AttributionConfig::default().window_ms(), 7_200_000);
    }
}
