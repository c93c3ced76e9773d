//! Delivery targets and the SSRF guard: a URL must be http(s), and every address it resolves
//! to must be public unless private targets are allowed (`SLUICE_ALLOW_PRIVATE_TARGETS`).
//! The HTTP client resolves names through `GuardedResolver`, so the addresses checked are
//! the addresses connected to (no window for DNS rebinding).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is loopback, private, link-local, shared (CGNAT), unique-local, unspecified,
/// multicast, broadcast or documentation space: nothing a webhook should reach.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            // IPv6 forms that carry an IPv4 address reach that address: judged by it.
            if let Some(v4) = embedded_v4(v6) {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: an obfuscated IPv4 behind it
                || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
        }
    }
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::`.
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Some(std::net::Ipv4Addr::new(a, b, c, d))
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => v4(hi, lo),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => v4(hi, lo),
        [0x2002, hi, lo, ..] => v4(hi, lo),
        _ => None,
    }
}

/// Checks a delivery URL's shape (and, for IP literals, its address): `Err` says why not.
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.len() > 2048 {
        return Err("is longer than 2048 bytes".into());
    }
    match parsed.host() {
        None => return Err("has no host".into()),
        Some(url::Host::Ipv4(ip)) if !allow_private && is_private(IpAddr::V4(ip)) => {
            return Err("points at a private, loopback or link-local address".into())
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && is_private(IpAddr::V6(ip)) => {
            return Err("points at a private, loopback or link-local address".into())
        }
        _ => {}
    }
    Ok(parsed)
}

/// A DNS resolver that drops private addresses (all of them: a name resolving only to
/// private addresses fails to connect).
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host)
                .await?
                .filter(|a| allow || !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cases = [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("::1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("::10.0.0.1", true),
            ("::127.0.0.1", true),
            ("64:ff9b::10.0.0.1", true),
            ("64:ff9b::a9fe:a9fe", true), // 169.254.169.254
            ("64:ff9b::8.8.8.8", false),
            ("64:ff9b:1::1", true),
            ("2002:0a00:0001::1", true),   // 6to4 of 10.0.0.1
            ("2002:c0a8:0101::", true),    // 6to4 of 192.168.1.1
            ("2002:0808:0808::1", false),  // 6to4 of 8.8.8.8
            ("2001:0:4136:e378::1", true), // Teredo
            ("fec0::1", true),
            ("100::1", true),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            ("2606:4700::1111", false),
        ];
        for (ip, private) in cases {
            assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("https://hooks.example.com/x?a=1", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/x", false).is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_url("http://[::1]/x", false).is_err());
        assert!(check_url("ftp://example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
    }
}
