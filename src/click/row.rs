//! RowBinary encoding of a click row, column for column as `clickhouse/0001_clicks.sql`
//! declares them. Encoding straight into the batch buffer keeps the flusher allocation-free
//! and gives a batch as one byte blob that can be retried (or spilled) verbatim.

use super::enrich::Enricher;
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

pub fn encode(buf: &mut Vec<u8>, click: &Click, batch_id: u64, enricher: &mut Enricher) -> Flags {
    let link = &click.link.link;
    let agent = enricher.agent(&click.user_agent);
    let is_preview = click.head || agent.is_unfurler;
    let is_bot = !is_preview && agent.is_bot;

    put_u16(buf, (click.ts_ms / 86_400_000) as u16);
    put_u64(buf, click.ts_ms);
    buf.extend_from_slice(&click.id.0);
    put_str(buf, &link.tenant_id);
    put_str(buf, &link.id);
    put_str(buf, &link.campaign);
    put_str(buf, &link.source);
    put_str(buf, &link.medium);
    put_str(buf, &click.partner_click_id);
    for sub in &click.subs {
        put_str(buf, sub);
    }
    put_u64(buf, enricher.ip_hash(click.ip));
    let place = enricher.place(click.ip);
    put_str(buf, place.country);
    put_str(buf, place.region);
    put_str(buf, place.city);
    put_str(buf, &agent.browser);
    put_str(buf, &agent.os);
    put_str(buf, &agent.os_version);
    put_str(buf, agent.device);
    put_str(buf, click.platform.as_str());
    put_str(buf, &click.referrer);
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
