"""Writes the test anonymous-IP database (MaxMind GeoIP2 Anonymous IP layout) the fraud tests
use for the `anonymous_ip` rule.

Usage: python3 tests/support/make_anonymous_db.py OUT.mmdb
The networks are documentation/test ranges.
"""
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet

NETWORKS = {
    "203.0.113.0/24": {"is_anonymous": True, "is_hosting_provider": True},
    "198.51.100.64/26": {"is_anonymous": True, "is_tor_exit_node": True},
    "2001:db8:a::/48": {"is_anonymous": True, "is_anonymous_vpn": True},
    "192.0.2.128/25": {"is_anonymous": False},
}


def main(out):
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Anonymous-IP",
                        languages=["en"], description="Sluice test Anonymous IP database")
    for net, record in NETWORKS.items():
        writer.insert_network(IPSet([net]), record)
    writer.to_db_file(out)


if __name__ == "__main__":
    main(sys.argv[1])
