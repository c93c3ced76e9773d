//! Which IP a click came from: the socket peer, or, when the peer is a trusted proxy, the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
//! left were written by the client and can be forged).

use std::net::IpAddr;

use ipnet::IpNet;

pub fn client_ip<'a, I>(peer: IpAddr, forwarded_for: I, trusted: &[IpNet]) -> IpAddr
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in forwarded_for.rev() {
        let Ok(text) = std::str::from_utf8(value) else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    client
}

/// An entry is an address, optionally `[v6]:port` or `v4:port` as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest
            .split(']')
            .next()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn resolution_table() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // (peer, X-Forwarded-For headers, trusted, expected)
        let cases: &[(&str, &[&str], &[IpNet], &str)] = &[
            ("203.0.113.9", &[], &trusted, "203.0.113.9"),
            ("203.0.113.9", &["1.2.3.4"], &trusted, "203.0.113.9"), // untrusted peer: header ignored
            ("10.1.1.1", &["1.2.3.4"], &trusted, "1.2.3.4"),
            ("10.1.1.1", &["6.6.6.6, 1.2.3.4"], &trusted, "1.2.3.4"), // forged left entry ignored
            ("10.1.1.1", &["1.2.3.4, 10.2.2.2"], &trusted, "1.2.3.4"), // skip trusted hops
            ("10.1.1.1", &["1.2.3.4", "10.2.2.2"], &trusted, "1.2.3.4"), // several headers
            ("10.1.1.1", &["10.3.3.3, 10.2.2.2"], &trusted, "10.3.3.3"), // all trusted: left-most
            ("10.1.1.1", &["garbage, 1.2.3.4"], &trusted, "1.2.3.4"),
            ("10.1.1.1", &["1.2.3.4, garbage"], &trusted, "10.1.1.1"), // stop at unparsable
            ("10.1.1.1", &["1.2.3.4:5678"], &trusted, "1.2.3.4"),
            ("10.1.1.1", &["[2001:db8::1]:443"], &trusted, "2001:db8::1"),
            ("::ffff:10.1.1.1", &["::ffff:1.2.3.4"], &trusted, "1.2.3.4"),
            ("10.1.1.1", &["1.2.3.4"], &[], "10.1.1.1"), // nothing trusted
        ];
        for (peer, headers, trusted, want) in cases {
            let values: Vec<HeaderValue> = headers
                .iter()
                .map(|h| HeaderValue::from_str(h).unwrap())
                .collect();
            let got = client_ip(
                peer.parse().unwrap(),
                values.iter().map(HeaderValue::as_bytes),
                trusted,
            );
            assert_eq!(
                got,
                want.parse::<IpAddr>().unwrap(),
                "peer {peer} xff {headers:?}"
            );
        }
    }

    proptest::proptest! {
        /// The answer is the peer or an address written in the header, never anything else.
        #[test]
        fn fuzz_forwarded_for(headers in proptest::collection::vec("[ -~]{0,80}", 0..4), octet in 0u8..=255) {
            let trusted = nets(&["10.0.0.0/8"]);
            let peer: IpAddr = format!("10.0.0.{octet}").parse().unwrap();
            let values: Vec<HeaderValue> = headers.iter().filter_map(|h| HeaderValue::from_str(h).ok()).collect();
            let got = client_ip(peer, values.iter().map(HeaderValue::as_bytes), &trusted);
            let written = headers.iter().flat_map(|h| h.split(',')).filter_map(parse_entry).any(|ip| ip == got);
            proptest::prop_assert!(got == peer || written);
        }
    }
}
