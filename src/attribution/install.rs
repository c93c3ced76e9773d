//! The `installs` row: one per install, attributed or organic, encoded as RowBinary in the
//! column order of `clickhouse/0002_installs.sql` (all but the trailing `batch_id`, which the
//! pipeline's encoder appends).

use super::MatchType;
use crate::click::row::put_str;
use crate::time;

pub const COLUMNS: &str = "date, ts_ms, received_ms, tenant_id, install_id, platform, match_type, \
    click_id, click_ts_ms, ctit_seconds, link_id, campaign, source, medium, partner_click_id, \
    sub1, sub2, sub3, sub4, sub5, country, os_version, device_model, app_version, batch_id";

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRow<'a> {
    pub ts_ms: u64,
    pub received_ms: u64,
    pub tenant_id: &'a str,
    pub install_id: &'a str,
    pub platform: &'a str,
    pub match_type: MatchType,
    /// The matched click; `None` for metadata and organic installs.
    pub click: Option<&'a ClickFacts>,
    pub ctit_seconds: u64,
    /// Self-reported source/medium/campaign, used when no click matched.
    pub reported: [&'a str; 3],
    pub os_version: &'a str,
    pub device_model: &'a str,
    pub app_version: &'a str,
}

pub fn encode(r: &InstallRow<'_>, out: &mut Vec<u8>) {
    let none = ClickFacts::default();
    let c = r.click.unwrap_or(&none);
    out.extend_from_slice(&((r.ts_ms / time::MS_PER_DAY) as u16).to_le_bytes());
    out.extend_from_slice(&r.ts_ms.to_le_bytes());
    out.extend_from_slice(&r.received_ms.to_le_bytes());
    put_str(out, r.tenant_id);
    put_str(out, r.install_id);
    put_str(out, r.platform);
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
}
