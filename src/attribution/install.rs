//! The `installs` row: one per install, attributed or organic, encoded as RowBinary in the
//! column order of `clickhouse/0002_installs.sql` (all but the trailing `batch_id`, which the
//! pipeline's encoder appends).

use super::fraud::Judgement;
use super::{InstallPlatform, MatchType};
use crate::click::row::put_str;
use crate::time;

pub const COLUMNS: &str = "date, ts_ms, received_ms, tenant_id, install_id, platform, match_type, \
    click_id, click_ts_ms, ctit_seconds, link_id, campaign, source, medium, partner_click_id, \
    sub1, sub2, sub3, sub4, sub5, country, os_version, device_model, app_version, variant, status, \
    fraud_mode, fraud_verdict, fraud_reasons, fraud_values, competing_clicks, batch_id";

/// The columns of install rows spilled before installs were judged for fraud.
pub const COLUMNS_BEFORE_FRAUD: &str = "date, ts_ms, received_ms, tenant_id, install_id, \
    platform, match_type, click_id, click_ts_ms, ctit_seconds, link_id, campaign, source, medium, \
    partner_click_id, sub1, sub2, sub3, sub4, sub5, country, os_version, device_model, \
    app_version, variant, batch_id";

/// The columns of install rows spilled before installs carried their click's variant.
pub const COLUMNS_BEFORE_VARIANT: &str = "date, ts_ms, received_ms, tenant_id, install_id, \
    platform, match_type, click_id, click_ts_ms, ctit_seconds, link_id, campaign, source, medium, \
    partner_click_id, sub1, sub2, sub3, sub4, sub5, country, os_version, device_model, \
    app_version, batch_id";

/// The attributed click's facts, as the install row and the response carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClickFacts {
    pub click_id: [u8; 16],
    pub ts_ms: u64,
    pub link_id: String,
    pub campaign: String,
    pub source: String,
    pub medium: String,
    pub partner_click_id: String,
    pub subs: [String; 5],
    pub country: String,
    /// The split variant the click got; empty when none.
    pub variant: String,
    /// The click was flagged as a bot's.
    pub bot: bool,
    /// The click's address was in the anonymous-address database.
    pub anonymous: bool,
    /// The clicking visitor as fingerprints key it, `(device, IP hash)`
    /// (`pipeline::fingerprints::device`); unknown for clicks stored before migration 0012.
    pub visitor: Option<(&'static str, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRow<'a> {
    pub ts_ms: u64,
    pub received_ms: u64,
    pub tenant_id: &'a str,
    pub install_id: &'a str,
    pub platform: InstallPlatform,
    pub match_type: MatchType,
    /// The matched click; `None` for metadata and organic installs.
    pub click: Option<&'a ClickFacts>,
    pub ctit_seconds: u64,
    /// Self-reported source/medium/campaign, used when no click matched.
    pub reported: [&'a str; 3],
    pub os_version: &'a str,
    pub device_model: &'a str,
    pub app_version: &'a str,
    pub judgement: &'a Judgement,
    /// Other clicks that could have explained the install when it was matched.
    pub competing_clicks: u32,
}

/// An install's status: `rejected` by the fraud rules, else `attributed` (to a click or
/// self-reported metadata) or `organic`.
pub fn status(match_type: MatchType, judgement: &Judgement) -> &'static str {
    if judgement.rejected() {
        "rejected"
    } else if match_type == MatchType::Organic {
        "organic"
    } else {
        "attributed"
    }
}

pub fn encode(r: &InstallRow<'_>, out: &mut Vec<u8>) {
    let none = ClickFacts::default();
    let c = r.click.unwrap_or(&none);
    out.extend_from_slice(&((r.ts_ms / time::MS_PER_DAY) as u16).to_le_bytes());
    out.extend_from_slice(&r.ts_ms.to_le_bytes());
    out.extend_from_slice(&r.received_ms.to_le_bytes());
    put_str(out, r.tenant_id);
    put_str(out, r.install_id);
    put_str(out, r.platform.as_str());
    put_str(out, r.match_type.as_str());
    out.extend_from_slice(&c.click_id);
    out.extend_from_slice(&c.ts_ms.to_le_bytes());
    out.extend_from_slice(&r.ctit_seconds.to_le_bytes());
    put_str(out, &c.link_id);
    let [source, medium, campaign] = match r.click {
        Some(c) => [c.source.as_str(), c.medium.as_str(), c.campaign.as_str()],
        None => r.reported,
    };
    put_str(out, campaign);
    put_str(out, source);
    put_str(out, medium);
    put_str(out, &c.partner_click_id);
    for sub in &c.subs {
        put_str(out, sub);
    }
    put_str(out, &c.country);
    put_str(out, r.os_version);
    put_str(out, r.device_model);
    put_str(out, r.app_version);
    put_str(out, &c.variant);
    put_str(out, status(r.match_type, r.judgement));
    put_str(out, r.judgement.mode.as_str());
    put_str(out, r.judgement.verdict.as_str());
    put_strings(out, r.judgement.findings.iter().map(|f| f.reason.code()));
    put_strings(out, r.judgement.findings.iter().map(|f| f.value.as_str()));
    out.extend_from_slice(&r.competing_clicks.to_le_bytes());
}

/// An `Array(String)` value: its length (a one-byte LEB128: there is at most one finding per
/// reason), then each string.
fn put_strings<'s>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'s str>) {
    out.push(items.len() as u8);
    for s in items {
        put_str(out, s);
    }
}

/// What an install was attributed to, remembered in Redis when the install is reported, so
/// that its later events and its user's conversions carry the same attribution on their rows
/// (stats and postbacks never join at read time).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstallAttribution {
    pub match_type: MatchType,
    /// Hex click id; empty for metadata and organic installs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub click_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub campaign: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub medium: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partner_id: String,
    /// The click's partner click id, sub1…sub5 and country, and the install's CTIT: what
    /// partner postbacks for the install's events and conversions fill in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partner_click_id: String,
    #[serde(default, skip_serializing_if = "is_blank")]
    pub subs: [String; 5],
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctit_seconds: u64,
    /// The install's platform and its click's split variant: what conversions are broken
    /// down by, with the country and sub1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// Rejected by the fraud rules: remembered as organic (nothing of it is attributed), so
    /// that a retried report answers as the first did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
}

fn is_blank(subs: &[String; 5]) -> bool {
    subs.iter().all(String::is_empty)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl InstallAttribution {
    /// Attributed to something (a click or self-reported campaign metadata), not organic.
    pub fn attributed(&self) -> bool {
        self.match_type != MatchType::Organic
    }
}

/// The attribution columns events and conversions share, in their table order: `install_id,
/// attributed, match_type, click_id, link_id, campaign, source, medium, partner_id`. An
/// unknown install has empty values and `attributed = 0`.
pub fn encode_attribution(out: &mut Vec<u8>, install_id: &str, a: Option<&InstallAttribution>) {
    put_str(out, install_id);
    out.push(a.is_some_and(InstallAttribution::attributed) as u8);
    let Some(a) = a else {
        put_str(out, "");
        out.extend_from_slice(&[0; 16]);
        for _ in 0..5 {
            put_str(out, "");
        }
        return;
    };
    put_str(out, a.match_type.as_str());
    let mut click = [0u8; 16];
    if hex::decode_to_slice(&a.click_id, &mut click).is_err() {
        click = [0; 16];
    }
    out.extend_from_slice(&click);
    for v in [&a.link_id, &a.campaign, &a.source, &a.medium, &a.partner_id] {
        put_str(out, v);
    }
}

/// The columns conversions are broken down by, after the attribution columns: `country,
/// platform, sub1, variant` (empty for an unknown install).
pub fn encode_dimensions(out: &mut Vec<u8>, a: Option<&InstallAttribution>) {
    let a = a.cloned().unwrap_or_default();
    for v in [&a.country, &a.platform, &a.subs[0], &a.variant] {
        put_str(out, v);
    }
}
