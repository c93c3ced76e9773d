//! Geolocation from a MaxMind-format City database (`.mmdb`). Only the fields a click stores
//! are decoded, borrowed from the database buffer (no allocation per lookup).

use std::net::IpAddr;
use std::path::Path;

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
        let record: Option<Record<'_>> = self
            .reader
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode().ok())
            .flatten();
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
}
