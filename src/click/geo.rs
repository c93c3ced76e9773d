//! Geolocation from a MaxMind-format City database (`.mmdb`). Only the fields a click stores
//! are decoded, borrowed from the database buffer (no allocation per lookup); the encoder
//! looks up through a cache of decoded records.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ahash::AHashMap;
use serde::Deserialize;

pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub country: &'a str,
    pub region: &'a str,
    pub city: &'a str,
}

#[derive(Deserialize, Default)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Iso<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<Vec<Iso<'a>>>,
    #[serde(borrow, default)]
    city: Option<Named<'a>>,
}

#[derive(Deserialize, Default)]
struct Iso<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

impl Geo {
    pub fn open(path: &Path) -> Result<Geo, maxminddb::MaxMindDbError> {
        Ok(Geo {
            reader: maxminddb::Reader::open_readfile(path)?,
        })
    }

    /// Empty fields when the address is not in the database (private ranges, gaps).
    pub fn lookup(&self, ip: IpAddr) -> Place<'_> {
        let record = self.reader.lookup(ip).ok().and_then(|r| r.decode().ok());
        place_of(record.flatten())
    }

    /// `lookup` through `cache`: many addresses share a record (a city's), and decoding
    /// one is most of a lookup's cost.
    pub fn lookup_cached<'c>(&self, ip: IpAddr, cache: &'c mut PlaceCache) -> Place<'c> {
        match self.cached(ip, cache) {
            Some(place) => {
                let [country, region, city] = &**place;
                Place {
                    country,
                    region,
                    city,
                }
            }
            None => Place::default(),
        }
    }

    /// `lookup_cached`, its answer shared with the cache (a reference count, no copy).
    pub fn lookup_shared(&self, ip: IpAddr, cache: &mut PlaceCache) -> Option<SharedPlace> {
        self.cached(ip, cache).cloned()
    }

    /// The place of `ip` in `cache`, decoded into it first if missing; `None` when the address
    /// is not in the database.
    fn cached<'c>(&self, ip: IpAddr, cache: &'c mut PlaceCache) -> Option<&'c SharedPlace> {
        let found = self.reader.lookup(ip).ok()?;
        let record = found.offset()?;
        let places = &mut cache.by_record;
        if places.len() >= PLACE_CACHE_MAX && !places.contains_key(&record) {
            places.clear();
        }
        Some(places.entry(record).or_insert_with(|| {
            let place = place_of(found.decode().ok().flatten());
            Arc::new([place.country, place.region, place.city].map(Box::from))
        }))
    }
}

/// Places by their record's offset in the database, owned.
#[derive(Default)]
pub struct PlaceCache {
    by_record: AHashMap<usize, SharedPlace>,
}

/// A place's country, region and city, owned and shared.
pub type SharedPlace = Arc<[Box<str>; 3]>;

/// Bounded like the user-agent cache; a City database has ~150k distinct records.
const PLACE_CACHE_MAX: usize = 65_536;

fn place_of(record: Option<Record<'_>>) -> Place<'_> {
    let Some(record) = record else {
        return Place::default();
    };
    Place {
        country: record.country.and_then(|c| c.iso_code).unwrap_or(""),
        region: record
            .subdivisions
            .and_then(|s| s.into_iter().next())
            .and_then(|s| s.iso_code)
            .unwrap_or(""),
        city: record
            .city
            .and_then(|c| c.names)
            .and_then(|n| n.en)
            .unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_lookups_answer_as_lookups_do() {
        // The database tests/support/make_geo_db.py writes (deploy/test.sh makes it).
        let path = std::env::var("SLUICE_TEST_GEOIP")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/var/test/geo.mmdb").into());
        let geo = Geo::open(Path::new(&path)).expect("the test GeoIP database: run deploy/test.sh");
        let mut cache = PlaceCache::default();
        let cases = [
            ("81.2.69.160", ("GB", "ENG", "London")),
            ("81.2.69.7", ("GB", "ENG", "London")),
            ("89.160.20.128", ("SE", "E", "Linköping")),
            ("2001:db8:1::5", ("DE", "BE", "Berlin")),
            ("127.0.0.1", ("", "", "")),
            ("81.2.69.160", ("GB", "ENG", "London")),
        ];
        for (ip, (country, region, city)) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            let want = Place {
                country,
                region,
                city,
            };
            assert_eq!(geo.lookup(ip), want, "{ip}");
            assert_eq!(geo.lookup_cached(ip, &mut cache), want, "{ip} cached");
        }
        // One entry per record met, not per address.
        assert_eq!(cache.by_record.len(), 3);
    }
}
