//! The anonymous-address database behind the `anonymous_ip` fraud rule
//! (`SLUICE_ANONYMOUS_IP_PATH`): a MaxMind `.mmdb` in the GeoIP2 Anonymous IP layout (an
//! address is anonymous when its record says VPN, hosting provider, public or residential
//! proxy, or Tor exit node), or a text file of CIDR ranges, one per line (`#` comments), as
//! published lists of data-centre and VPN ranges come.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

pub enum AnonymousIps {
    Mmdb(maxminddb::Reader<Vec<u8>>),
    /// Merged, sorted, disjoint ranges over the IPv6 space (IPv4 as IPv4-mapped addresses).
    Ranges(Vec<(u128, u128)>),
}

/// The GeoIP2 Anonymous IP record's flags (absent means false).
#[derive(Deserialize, Default)]
struct Record {
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default)]
    is_anonymous_vpn: bool,
    #[serde(default)]
    is_hosting_provider: bool,
    #[serde(default)]
    is_public_proxy: bool,
    #[serde(default)]
    is_residential_proxy: bool,
    #[serde(default)]
    is_tor_exit_node: bool,
}

impl AnonymousIps {
    /// A `.mmdb` file by its name, anything else as a CIDR list.
    pub fn open(path: &Path) -> Result<AnonymousIps, String> {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("mmdb"))
        {
            return maxminddb::Reader::open_readfile(path)
                .map(AnonymousIps::Mmdb)
                .map_err(|e| e.to_string());
        }
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        AnonymousIps::ranges(&text)
    }

    /// A CIDR list; the line of the first bad range is named.
    pub fn ranges(text: &str) -> Result<AnonymousIps, String> {
        let mut nets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let net = line
                .parse::<IpNet>()
                .or_else(|_| line.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("line {}: {line:?} is not a CIDR range", i + 1))?;
            nets.push(net);
        }
        let mut ranges: Vec<(u128, u128)> = IpNet::aggregate(&nets)
            .into_iter()
            .map(|net| (v6(net.network()), v6(net.broadcast())))
            .collect();
        ranges.sort_unstable();
        Ok(AnonymousIps::Ranges(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            AnonymousIps::Mmdb(reader) => reader
                .lookup(ip)
                .ok()
                .and_then(|found| found.decode::<Record>().ok().flatten())
                .is_some_and(|r| {
                    r.is_anonymous
                        || r.is_anonymous_vpn
                        || r.is_hosting_provider
                        || r.is_public_proxy
                        || r.is_residential_proxy
                        || r.is_tor_exit_node
                }),
            AnonymousIps::Ranges(ranges) => {
                let ip = v6(ip);
                let after = ranges.partition_point(|(start, _)| *start <= ip);
                after > 0 && ip <= ranges[after - 1].1
            }
        }
    }
}

/// The address as a point of the IPv6 space; IPv4 (and IPv4-mapped IPv6) as IPv4-mapped.
fn v6(ip: IpAddr) -> u128 {
    let mapped: Ipv6Addr = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    u128::from(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_lists() {
        let db = AnonymousIps::ranges(
            "# data centres\n203.0.113.0/25\n198.51.100.7 # one host\n\n2001:db8:dead::/48\n203.0.113.128/25\n",
        )
        .unwrap();
        let cases = [
            ("203.0.113.0", true),
            ("203.0.113.127", true),
            ("203.0.113.255", true), // the two halves merged
            ("203.0.114.0", false),
            ("203.0.112.255", false),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
            ("::ffff:198.51.100.7", true),
            ("2001:db8:dead:1::1", true),
            ("2001:db8:beef::1", false),
            ("10.0.0.1", false),
        ];
        for (ip, want) in cases {
            assert_eq!(db.contains(ip.parse().unwrap()), want, "{ip}");
        }
        let empty = AnonymousIps::ranges("# nothing\n").unwrap();
        assert!(!empty.contains("203.0.113.1".parse().unwrap()));
        let err = AnonymousIps::ranges("10.0.0.0/8\n10.0.0/8\n")
            .err()
            .unwrap();
        assert!(err.starts_with("line 2"), "{err}");
    }

    #[test]
    fn mmdb_in_the_anonymous_ip_layout() {
        // Written by tests/support/make_anonymous_db.py (deploy/test.sh makes it).
        let path = std::env::var("SLUICE_TEST_ANONYMOUS_IP").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/var/test/anonymous.mmdb").into()
        });
        let db = AnonymousIps::open(Path::new(&path)).expect("run deploy/test.sh first");
        let cases = [
            ("203.0.113.9", true),   // hosting provider
            ("198.51.100.77", true), // Tor exit node
            ("192.0.2.200", false),  // in the database, every flag false
            ("81.2.69.142", false),  // not in it
            ("2001:db8:a::1", true), // VPN
        ];
        for (ip, want) in cases {
            assert_eq!(db.contains(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
