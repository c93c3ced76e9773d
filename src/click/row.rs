//! RowBinary encoding of a click row, column for column as `clickhouse/0001_clicks.sql`
//! declares them. Encoding straight into the batch buffer keeps the flusher allocation-free
//! and gives a batch as one byte blob that can be retried (or spilled) verbatim.

use super::agent::Agent;
use super::enrich::Enricher;
use super::geo::Place;
use super::Click;

/// The column list sent with every insert; its order is the encoding order below.
pub const COLUMNS: &str = "date, ts_ms, click_id, tenant_id, link_id, campaign, source, medium, \
    partner_click_id, sub1, sub2, sub3, sub4, sub5, ip_hash, country, region, city, browser, os, \
    os_version, device, platform, referrer, is_bot, is_preview, batch_id";

/// What the row said about the click, for counting without re-reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub is_bot: bool,
    pub is_preview: bool,
}

/// A click as a row holds it, before the user agent is classified: what the redirect saw
/// with the IP already reduced to its hash and place. The write-ahead log stores exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured<'a> {
    pub id: [u8; 16],
    pub ts_ms: u64,
    pub tenant_id: &'a str,
    pub link_id: &'a str,
    pub campaign: &'a str,
    pub source: &'a str,
    pub medium: &'a str,
    pub partner_click_id: &'a str,
    pub subs: [&'a str; 5],
    pub ip_hash: u64,
    pub place: Place<'a>,
    pub user_agent: &'a str,
    pub platform: &'a str,
    pub referrer: &'a str,
    pub head: bool,
}

impl<'a> Captured<'a> {
    pub fn of(click: &'a Click, ip_hash: u64, place: Place<'a>) -> Captured<'a> {
        let link = &click.link.link;
        Captured {
            id: click.id.0,
            ts_ms: click.ts_ms,
            tenant_id: &link.tenant_id,
            link_id: &link.id,
            campaign: &link.campaign,
            source: &link.source,
            medium: &link.medium,
            partner_click_id: &click.partner_click_id,
            subs: [
                &click.subs[0],
                &click.subs[1],
                &click.subs[2],
                &click.subs[3],
                &click.subs[4],
            ],
            ip_hash,
            place,
            user_agent: &click.user_agent,
            platform: click.platform.as_str(),
            referrer: &click.referrer,
            head: click.head,
        }
    }
}

pub fn encode(buf: &mut Vec<u8>, click: &Click, batch_id: u64, enricher: &mut Enricher) -> Flags {
    let agent = enricher.agent(&click.user_agent);
    let captured = Captured::of(click, enricher.ip_hash(click.ip), enricher.place(click.ip));
    encode_captured(buf, &captured, &agent, batch_id)
}

pub fn encode_captured(buf: &mut Vec<u8>, c: &Captured<'_>, agent: &Agent, batch_id: u64) -> Flags {
    let is_preview = c.head || agent.is_unfurler;
    let is_bot = !is_preview && agent.is_bot;
    put_u16(buf, (c.ts_ms / crate::time::MS_PER_DAY) as u16);
    put_u64(buf, c.ts_ms);
    buf.extend_from_slice(&c.id);
    for s in [
        c.tenant_id,
        c.link_id,
        c.campaign,
        c.source,
        c.medium,
        c.partner_click_id,
    ] {
        put_str(buf, s);
    }
    for sub in c.subs {
        put_str(buf, sub);
    }
    put_u64(buf, c.ip_hash);
    for s in [
        c.place.country,
        c.place.region,
        c.place.city,
        &agent.browser,
        &agent.os,
        &agent.os_version,
    ] {
        put_str(buf, s);
    }
    put_str(buf, agent.device);
    put_str(buf, c.platform);
    put_str(buf, c.referrer);
    buf.push(is_bot as u8);
    buf.push(is_preview as u8);
    put_u64(buf, batch_id);
    Flags { is_bot, is_preview }
}

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// RowBinary String: LEB128 length, then the bytes.
pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            buf.push(byte);
            break;
        }
        buf.push(byte | 0x80);
    }
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ];
        for (len, prefix) in cases {
            let s = "x".repeat(*len);
            let mut buf = Vec::new();
            put_str(&mut buf, &s);
            assert_eq!(&buf[..prefix.len()], *prefix, "len {len}");
            assert_eq!(buf.len(), prefix.len() + len);
        }
    }
}
