"""Writes the test GeoIP City database (MaxMind format) the integration tests geolocate with.

Usage: python3 tests/support/make_geo_db.py OUT.mmdb
The networks are documentation/test ranges; each maps to a known country, region and city.
"""
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet

PLACES = {
    "81.2.69.0/24": ("GB", "ENG", "London"),
    "89.160.20.0/24": ("SE", "E", "Linköping"),
    "216.160.83.0/24": ("US", "WA", "Milton"),
    "2001:db8:1::/48": ("DE", "BE", "Berlin"),
}


def main(out):
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                        languages=["en"], description="Sluice test City database")
    for net, (country, region, city) in PLACES.items():
        writer.insert_network(IPSet([net]), {
            "country": {"iso_code": country, "names": {"en": country}},
            "subdivisions": [{"iso_code": region, "names": {"en": region}}],
            "city": {"names": {"en": city}},
        })
    writer.to_db_file(out)


if __name__ == "__main__":
    main(sys.argv[1])
