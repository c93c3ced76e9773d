//! A link's routing: its rules (ordered, first match wins) and split tests, as stored (the JSON
//! shapes of SPEC "Routing") and compiled (what the redirect evaluates per click). Compiling is
//! validating: every refused value is named by its path (`rules[2].when.ip_cidr[0]`), and a
//! link that compiled once never fails at a click.
//!
//! The redirect supplies the visitor through `Visitor`, whose facts cost something to learn
//! (the place needs a geo lookup, the OS a user-agent parse): a rule asks only for what its
//! conditions test, in order, so a link whose rules never test a country never looks one up.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{valid_code, Template};
use crate::error::FieldError;

pub const MAX_RULES: usize = 32;
pub const MAX_VARIANTS: usize = 16;
/// Accepted values in one condition.
pub const MAX_VALUES: usize = 1_000;
/// A variant's weight; shares are weight / sum of weights.
pub const MAX_WEIGHT: u32 = 1_000_000;

pub const PLATFORMS: &[&str] = &["ios", "android", "other"];
pub const DEVICES: &[&str] = &["mobile", "tablet", "desktop"];
pub const OS_FAMILIES: &[&str] = &[
    "ios", "android", "windows", "macos", "linux", "chromeos", "other",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One rule as stored: when its conditions hold, the click goes to `destination` or is split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub when: When,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<Variant>>,
}

/// A rule's conditions: each a list of accepted values (ORed); the conditions present are
/// ANDed. No condition at all matches every click.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_cidr: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_utc: Option<Hours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekdays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, Vec<String>>>,
}

/// `"8-20"`, or several such ranges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Hours {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub id: String,
    pub destination: String,
    pub weight: u32,
}

/// What the redirect learns about a visitor, each fact on first use.
pub trait Visitor {
    /// ISO 3166-1 alpha-2, upper case; empty when unknown.
    fn country(&self) -> &str;
    /// The subdivision's ISO 3166-2 code without its country (`CA` for `US-CA`).
    fn region(&self) -> &str;
    /// `ios`, `android` or `other`.
    fn platform(&self) -> &str;
    /// One of `OS_FAMILIES`.
    fn os(&self) -> &str;
    /// The browser's name as the user-agent parser gives it (`Chrome`, `Safari`, …).
    fn browser(&self) -> &str;
    /// One of `DEVICES`, or empty (bots, TVs, unknown agents).
    fn device(&self) -> &str;
    /// The first language of `Accept-Language`, lower case (`de-de`); empty when none.
    fn language(&self) -> &str;
    fn ip(&self) -> IpAddr;
    fn now_ms(&self) -> u64;
    fn query(&self) -> Option<&str>;
    /// A keyed hash of the visitor's IP and user agent: what keeps it on its variant.
    fn identity(&self) -> u64;
}

/// A visitor given by its facts, nothing looked up: what a routing preview asks about.
#[derive(Debug, Clone)]
pub struct Sample {
    pub country: String,
    /// Without its country (`CA`).
    pub region: String,
    pub platform: String,
    pub os: String,
    pub browser: String,
    pub device: String,
    pub language: String,
    pub ip: IpAddr,
    pub now_ms: u64,
    pub query: Option<String>,
    pub identity: u64,
}

impl Visitor for Sample {
    fn country(&self) -> &str {
        &self.country
    }
    fn region(&self) -> &str {
        &self.region
    }
    fn platform(&self) -> &str {
        &self.platform
    }
    fn os(&self) -> &str {
        &self.os
    }
    fn browser(&self) -> &str {
        &self.browser
    }
    fn device(&self) -> &str {
        &self.device
    }
    fn language(&self) -> &str {
        &self.language
    }
    fn ip(&self) -> IpAddr {
        self.ip
    }
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
    fn identity(&self) -> u64 {
        self.identity
    }
}

/// A link's rules and split, compiled.
#[derive(Debug)]
pub struct Routing {
    rules: Box<[Compiled]>,
    /// Where clicks no rule takes go, when the link is split.
    split: Option<Split>,
}

#[derive(Debug)]
struct Compiled {
    when: Conditions,
    then: Target,
}

#[derive(Debug)]
enum Target {
    Go(Template),
    Split(Split),
}

#[derive(Debug)]
struct Split {
    variants: Box<[(Box<str>, Template)]>,
    /// Cumulative weights: variant `i` takes buckets `[ends[i-1], ends[i])`.
    ends: Box<[u32]>,
    /// Derived from the variants and weights, so changing them re-buckets every visitor.
    salt: u64,
}

#[derive(Debug, Default)]
struct Conditions {
    countries: Box<[Box<str>]>,
    /// `CC-RR`, upper case.
    regions: Box<[Box<str>]>,
    platforms: Box<[Box<str>]>,
    os: Box<[Box<str>]>,
    devices: Box<[Box<str>]>,
    /// Lower case.
    browsers: Box<[Box<str>]>,
    /// Lower case.
    languages: Box<[Box<str>]>,
    cidrs: Box<[IpNet]>,
    /// Bit `h` set: the hour `h` UTC is accepted; 0 = any hour.
    hours: u32,
    /// Bit `d` set (0 = Monday): accepted; 0 = any day.
    weekdays: u8,
    query: Box<[QueryCondition]>,
}

/// A query parameter's name and its accepted values.
type QueryCondition = (Box<str>, Box<[Box<str>]>);

/// Which split variant a click got: the rule it came through (`LINK_SPLIT` for the link's
/// own split) and the variant's index. Resolved to the variant's id from the same compiled
/// link the click holds, so the click carries two bytes, not a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantAt {
    pub rule: u8,
    pub variant: u8,
}

pub const LINK_SPLIT: u8 = u8::MAX;

/// Where routing sends a click: a template, and the variant when a split chose it.
pub struct Route<'a> {
    pub template: &'a Template,
    pub variant: Option<VariantAt>,
    /// The rule that matched (`None`: no rule, the link's own split or destinations).
    pub rule: Option<usize>,
}

impl Routing {
    /// `None` when the link has neither rules nor a split: nothing to evaluate per click.
    pub fn compile(
        rules: &[Rule],
        split: Option<&[Variant]>,
        link_id: &str,
    ) -> Result<Option<Routing>, FieldError> {
        if rules.len() > MAX_RULES {
            return Err(FieldError::new(
                "rules",
                format!("must have at most {MAX_RULES} rules"),
            ));
        }
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(rule, &format!("rules[{i}]"), link_id))
            .collect::<Result<Box<[_]>, _>>()?;
        let split = split
            .map(|variants| Split::compile(variants, "split", link_id))
            .transpose()?;
        Ok((!rules.is_empty() || split.is_some()).then_some(Routing { rules, split }))
    }

    /// The first matching rule's target, else the link's split; `None`: the link's own
    /// destinations.
    pub fn route(&self, visitor: &impl Visitor) -> Option<Route<'_>> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.when.hold(visitor) {
                let (template, variant) = match &rule.then {
                    Target::Go(t) => (t, None),
                    Target::Split(split) => split.choose(visitor, i as u8),
                };
                return Some(Route {
                    template,
                    variant,
                    rule: Some(i),
                });
            }
        }
        let (template, variant) = self.split.as_ref()?.choose(visitor, LINK_SPLIT);
        Some(Route {
            template,
            variant,
            rule: None,
        })
    }

    pub fn variant_id(&self, at: VariantAt) -> &str {
        let split = match at.rule {
            LINK_SPLIT => self.split.as_ref(),
            i => match self.rules.get(usize::from(i)).map(|r| &r.then) {
                Some(Target::Split(split)) => Some(split),
                _ => None,
            },
        };
        split
            .and_then(|s| s.variants.get(usize::from(at.variant)))
            .map_or("", |(id, _)| id)
    }

    /// The template of the variant `id` (the link's split first, then the rules'), as a
    /// deferred deep link sends the install where its click went.
    pub fn variant(&self, id: &str) -> Option<&Template> {
        let splits = self
            .split
            .iter()
            .chain(self.rules.iter().filter_map(|r| match &r.then {
                Target::Split(split) => Some(split),
                Target::Go(_) => None,
            }));
        splits
            .flat_map(|s| s.variants.iter())
            .find(|(v, _)| !id.is_empty() && **v == *id)
            .map(|(_, t)| t)
    }

    /// Whether any template routing can pick needs the click's country.
    pub fn uses_country(&self) -> bool {
        let split_uses = |s: &Split| s.variants.iter().any(|(_, t)| t.uses_country());
        self.split.as_ref().is_some_and(split_uses)
            || self.rules.iter().any(|r| match &r.then {
                Target::Go(t) => t.uses_country(),
                Target::Split(s) => split_uses(s),
            })
    }
}

fn compile_rule(rule: &Rule, at: &str, link_id: &str) -> Result<Compiled, FieldError> {
    let then = match (&rule.destination, &rule.split) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                at,
                "must have a destination or a split, not both",
            ))
        }
        (None, None) => {
            return Err(FieldError::new(
                &format!("{at}.destination"),
                "a rule needs a destination or a split",
            ))
        }
        (Some(url), None) => Target::Go(
            Template::parse(url)
                .map_err(|e| FieldError::new(&format!("{at}.destination"), e.to_string()))?,
        ),
        (None, Some(variants)) => {
            Target::Split(Split::compile(variants, &format!("{at}.split"), link_id)?)
        }
    };
    Ok(Compiled {
        when: Conditions::compile(&rule.when, &format!("{at}.when"))?,
        then,
    })
}

impl Split {
    fn compile(variants: &[Variant], at: &str, link_id: &str) -> Result<Split, FieldError> {
        if !(2..=MAX_VARIANTS).contains(&variants.len()) {
            return Err(FieldError::new(
                at,
                format!("must have 2-{MAX_VARIANTS} variants"),
            ));
        }
        let mut compiled = Vec::with_capacity(variants.len());
        let mut ends = Vec::with_capacity(variants.len());
        let mut total = 0u32;
        let mut salt = xxhash_rust::xxh3::Xxh3::new();
        salt.update(link_id.as_bytes());
        for (i, v) in variants.iter().enumerate() {
            let field = |name: &str| format!("{at}[{i}].{name}");
            if !valid_code(&v.id) {
                return Err(FieldError::new(
                    &field("id"),
                    "must be 1-64 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if variants[..i].iter().any(|o| o.id == v.id) {
                return Err(FieldError::new(
                    &field("id"),
                    format!("{:?} appears more than once", v.id),
                ));
            }
            if v.weight > MAX_WEIGHT {
                return Err(FieldError::new(
                    &field("weight"),
                    format!("must be 0-{MAX_WEIGHT}"),
                ));
            }
            let template = Template::parse(&v.destination)
                .map_err(|e| FieldError::new(&field("destination"), e.to_string()))?;
            total += v.weight;
            ends.push(total);
            salt.update(&[0]);
            salt.update(v.id.as_bytes());
            salt.update(&v.weight.to_le_bytes());
            compiled.push((v.id.as_str().into(), template));
        }
        if total == 0 {
            return Err(FieldError::new(at, "weights must not all be 0"));
        }
        Ok(Split {
            variants: compiled.into(),
            ends: ends.into(),
            salt: salt.digest(),
        })
    }

    fn choose(&self, visitor: &impl Visitor, rule: u8) -> (&Template, Option<VariantAt>) {
        let total = *self.ends.last().expect("at least 2 variants");
        let mixed =
            xxhash_rust::xxh3::xxh3_64_with_seed(&visitor.identity().to_le_bytes(), self.salt);
        // Multiply-shift maps the hash onto [0, total) without modulo bias worth measuring.
        let bucket = ((u128::from(mixed) * u128::from(total)) >> 64) as u32;
        let i = self.ends.partition_point(|&end| end <= bucket);
        (
            &self.variants[i].1,
            Some(VariantAt {
                rule,
                variant: i as u8,
            }),
        )
    }
}

impl Conditions {
    fn compile(when: &When, at: &str) -> Result<Conditions, FieldError> {
        let field = |name: &str| format!("{at}.{name}");
        Ok(Conditions {
            countries: values(&when.country, &field("country"), |v| {
                (v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic()))
                    .then(|| v.to_ascii_uppercase().into())
                    .ok_or("must be an ISO 3166-1 alpha-2 country code, e.g. DE")
            })?,
            regions: values(&when.region, &field("region"), |v| {
                let ok = v.len() <= 6
                    && v.get(2..3) == Some("-")
                    && v[..2].bytes().all(|b| b.is_ascii_alphabetic())
                    && v.len() > 3
                    && v[3..].bytes().all(|b| b.is_ascii_alphanumeric());
                ok.then(|| v.to_ascii_uppercase().into())
                    .ok_or("must be an ISO 3166-2 code, e.g. US-CA")
            })?,
            platforms: values(&when.platform, &field("platform"), |v| one_of(v, PLATFORMS))?,
            os: values(&when.os, &field("os"), |v| one_of(v, OS_FAMILIES))?,
            devices: values(&when.device, &field("device"), |v| one_of(v, DEVICES))?,
            browsers: values(&when.browser, &field("browser"), |v| {
                (!v.is_empty() && v.len() <= 64 && !v.chars().any(char::is_control))
                    .then(|| v.to_lowercase().into())
                    .ok_or("must be a browser name of 1-64 characters, e.g. Chrome")
            })?,
            languages: values(&when.language, &field("language"), |v| {
                let mut parts = v.split('-');
                let primary = parts.next().unwrap_or("");
                let ok = (2..=3).contains(&primary.len())
                    && primary.bytes().all(|b| b.is_ascii_alphabetic())
                    && parts.all(|p| {
                        (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
                    });
                ok.then(|| v.to_ascii_lowercase().into())
                    .ok_or("must be a language tag, e.g. de or en-US")
            })?,
            cidrs: values(&when.ip_cidr, &field("ip_cidr"), |v| {
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| "must be an IP network, e.g. 203.0.113.0/24 or 2001:db8::/32")
            })?,
            hours: match &when.hours_utc {
                None => 0,
                Some(Hours::One(range)) => hours(range, &field("hours_utc"))?,
                Some(Hours::Many(ranges)) => {
                    if ranges.is_empty() {
                        return Err(FieldError::new(&field("hours_utc"), "must not be empty"));
                    }
                    let mut mask = 0;
                    for (i, range) in ranges.iter().enumerate() {
                        mask |= hours(range, &format!("{}[{i}]", field("hours_utc")))?;
                    }
                    mask
                }
            },
            weekdays: values(&when.weekdays, &field("weekdays"), |v| {
                WEEKDAYS
                    .iter()
                    .position(|d| *d == v)
                    .map(|i| i as u8)
                    .ok_or("must be one of mon, tue, wed, thu, fri, sat, sun")
            })?
            .iter()
            .fold(0, |mask, d| mask | 1 << d),
            query: match &when.query {
                None => Box::default(),
                Some(map) if map.is_empty() => {
                    return Err(FieldError::new(&field("query"), "must not be empty"))
                }
                Some(map) => map
                    .iter()
                    .map(|(name, accepted)| {
                        let at = format!("{}.{name}", field("query"));
                        if name.is_empty() || name.len() > 64 {
                            return Err(FieldError::new(&at, "parameter names are 1-64 bytes"));
                        }
                        let accepted = values(&Some(accepted.clone()), &at, |v| {
                            (v.len() <= 512)
                                .then(|| Box::from(v))
                                .ok_or("is longer than 512 bytes")
                        })?;
                        Ok((name.as_str().into(), accepted))
                    })
                    .collect::<Result<_, _>>()?,
            },
        })
    }

    /// Cheap conditions first, then those needing a lookup (geo, user agent).
    fn hold(&self, v: &impl Visitor) -> bool {
        (self.hours == 0 || self.hours & 1 << hour_of(v.now_ms()) != 0)
            && (self.weekdays == 0 || self.weekdays & 1 << weekday_of(v.now_ms()) != 0)
            && any_eq(&self.platforms, v.platform())
            && (self.cidrs.is_empty() || {
                let ip = v.ip().to_canonical();
                self.cidrs.iter().any(|net| net.contains(&ip))
            })
            && self
                .query
                .iter()
                .all(|(name, accepted)| query_holds(v.query(), name, accepted))
            && (self.languages.is_empty() || language_holds(&self.languages, v.language()))
            && any_eq(&self.countries, v.country())
            && (self.regions.is_empty() || {
                let (country, region) = (v.country(), v.region());
                self.regions.iter().any(|r| {
                    r.len() == country.len() + 1 + region.len()
                        && r.starts_with(country)
                        && r[country.len() + 1..].eq_ignore_ascii_case(region)
                })
            })
            && any_eq(&self.os, v.os())
            && any_eq(&self.devices, v.device())
            && (self.browsers.is_empty()
                || self
                    .browsers
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(v.browser())))
    }
}

/// An empty list accepts anything (the condition is absent).
fn any_eq(accepted: &[Box<str>], value: &str) -> bool {
    accepted.is_empty() || accepted.iter().any(|a| **a == *value)
}

/// `de` accepts `de`, `de-de` and `de-at`; `en-us` only `en-us`.
fn language_holds(accepted: &[Box<str>], language: &str) -> bool {
    accepted.iter().any(|a| {
        language
            .strip_prefix(&**a)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    })
}

fn query_holds(query: Option<&str>, name: &str, accepted: &[Box<str>]) -> bool {
    let Some(query) = query else { return false };
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        decode(key) == name && {
            let value = decode(value);
            accepted.iter().any(|a| **a == *value)
        }
    })
}

fn decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.into();
    }
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
        .into()
}

pub fn hour_of(ms: u64) -> u32 {
    ((ms / 3_600_000) % 24) as u32
}

/// 0 = Monday (1970-01-01 was a Thursday).
pub fn weekday_of(ms: u64) -> u32 {
    ((ms / 86_400_000 + 3) % 7) as u32
}

/// A list condition's values, each checked and normalized; a present list is never empty.
fn values<T>(
    list: &Option<Vec<String>>,
    at: &str,
    check: impl Fn(&str) -> Result<T, &'static str>,
) -> Result<Box<[T]>, FieldError>
where
{
    let Some(list) = list else {
        return Ok(Box::default());
    };
    if list.is_empty() {
        return Err(FieldError::new(
            at,
            "must not be empty (leave the condition out to accept any value)",
        ));
    }
    if list.len() > MAX_VALUES {
        return Err(FieldError::new(
            at,
            format!("must have at most {MAX_VALUES} values"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| check(v).map_err(|m| FieldError::new(&format!("{at}[{i}]"), m)))
        .collect()
}

fn one_of(v: &str, allowed: &[&str]) -> Result<Box<str>, &'static str> {
    allowed
        .iter()
        .find(|a| **a == v)
        .map(|a| Box::from(*a))
        .ok_or(match allowed {
            a if a == PLATFORMS => "must be one of ios, android, other",
            a if a == DEVICES => "must be one of mobile, tablet, desktop",
            _ => "must be one of ios, android, windows, macos, linux, chromeos, other",
        })
}

/// `"8-20"`: from 08:00 up to 20:00 UTC (20 excluded); `"22-6"` wraps past midnight; `"8"`
/// is the one hour from 08:00.
fn hours(range: &str, at: &str) -> Result<u32, FieldError> {
    let bad = || {
        FieldError::new(
            at,
            "must be an hour range of UTC hours 0-24, e.g. \"8-20\" (20 excluded) or \"22-6\"",
        )
    };
    let hour = |s: &str| {
        let digits = (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| s.parse::<u32>().ok())
            .flatten()
            .filter(|h| *h <= 24)
    };
    let (from, to) = match range.split_once('-') {
        Some((from, to)) => (hour(from).ok_or_else(bad)?, hour(to).ok_or_else(bad)?),
        None => {
            let h = hour(range).filter(|h| *h < 24).ok_or_else(bad)?;
            (h, h + 1)
        }
    };
    let (from, to) = (from % 24, to % 24);
    if from == to && range.contains('-') && range != "0-24" {
        return Err(bad());
    }
    let mut mask = 0u32;
    let mut h = from;
    loop {
        mask |= 1 << h;
        h = (h + 1) % 24;
        if h == to {
            break;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Thursday 2026-12-03 14:30 UTC.
    const THU_1430: u64 = 1_796_308_200_000;

    fn us_iphone() -> Sample {
        Sample {
            country: "US".into(),
            region: "CA".into(),
            platform: "ios".into(),
            os: "ios".into(),
            browser: "Safari".into(),
            device: "mobile".into(),
            language: "en-us".into(),
            ip: "203.0.113.7".parse().unwrap(),
            now_ms: THU_1430,
            query: Some("utm_source=fb&tier=gold".into()),
            identity: 42,
        }
    }

    fn when(json: serde_json::Value) -> Conditions {
        let when: When = serde_json::from_value(json).unwrap();
        Conditions::compile(&when, "when").unwrap()
    }

    #[test]
    fn the_clock_helpers_agree_with_the_calendar() {
        assert_eq!(hour_of(THU_1430), 14);
        assert_eq!(weekday_of(THU_1430), 3);
        assert_eq!(weekday_of(0), 3, "1970-01-01 was a Thursday");
    }

    #[test]
    fn matching_table() {
        use serde_json::json;
        let other = Sample {
            country: "DE".into(),
            region: "BY".into(),
            platform: "android".into(),
            os: "android".into(),
            browser: "Chrome".into(),
            device: "tablet".into(),
            language: "de-at".into(),
            ip: "2001:db8::1".parse().unwrap(),
            now_ms: THU_1430 + 2 * 86_400_000 + 8 * 3_600_000, // Saturday 22:30
            query: None,
            identity: 7,
        };
        // (conditions, matches the US iPhone, matches the German Android tablet)
        let cases = [
            (json!({}), true, true),
            (json!({"country": ["US"]}), true, false),
            (json!({"country": ["us", "de"]}), true, true),
            (json!({"region": ["US-CA"]}), true, false),
            (json!({"region": ["US-NY", "de-by"]}), false, true),
            (json!({"region": ["DE-CA"]}), false, false),
            (json!({"platform": ["ios"]}), true, false),
            (json!({"platform": ["android", "other"]}), false, true),
            (json!({"os": ["ios"]}), true, false),
            (json!({"device": ["mobile", "desktop"]}), true, false),
            (json!({"device": ["tablet"]}), false, true),
            (json!({"browser": ["chrome"]}), false, true),
            (json!({"language": ["en"]}), true, false),
            (json!({"language": ["de-AT"]}), false, true),
            (json!({"language": ["de-de"]}), false, false),
            (json!({"ip_cidr": ["203.0.113.0/24"]}), true, false),
            (json!({"ip_cidr": ["203.0.113.7"]}), true, false),
            (
                json!({"ip_cidr": ["2001:db8::/32", "10.0.0.0/8"]}),
                false,
                true,
            ),
            (json!({"hours_utc": "8-20"}), true, false),
            (json!({"hours_utc": "14"}), true, false),
            (json!({"hours_utc": "15-14"}), false, true),
            (json!({"hours_utc": ["0-6", "22-24"]}), false, true),
            (json!({"hours_utc": "0-24"}), true, true),
            (json!({"weekdays": ["thu"]}), true, false),
            (json!({"weekdays": ["sat", "sun"]}), false, true),
            (json!({"query": {"tier": ["gold", "silver"]}}), true, false),
            (json!({"query": {"tier": ["bronze"]}}), false, false),
            (
                json!({"query": {"utm_source": ["fb"], "tier": ["gold"]}}),
                true,
                false,
            ),
            // ANDed across conditions.
            (
                json!({"country": ["US"], "platform": ["android"]}),
                false,
                false,
            ),
            (
                json!({"country": ["US", "DE"], "device": ["tablet"], "weekdays": ["sat"]}),
                false,
                true,
            ),
        ];
        for (conditions, want_us, want_de) in cases {
            let c = when(conditions.clone());
            assert_eq!(c.hold(&us_iphone()), want_us, "US iPhone, {conditions}");
            assert_eq!(c.hold(&other), want_de, "DE tablet, {conditions}");
        }
    }

    #[test]
    fn query_values_are_decoded() {
        let c = when(serde_json::json!({"query": {"sub id": ["a b", "ü"]}}));
        for (query, want) in [
            ("sub+id=a+b", true),
            ("sub%20id=%C3%BC&x=1", true),
            ("sub%20id=ab", false),
            ("sub id", false),
        ] {
            let v = Sample {
                query: Some(query.into()),
                ..us_iphone()
            };
            assert_eq!(c.hold(&v), want, "{query}");
        }
    }

    fn routing(json: serde_json::Value) -> Result<Option<Routing>, FieldError> {
        let rules: Vec<Rule> = serde_json::from_value(json["rules"].clone()).unwrap_or_default();
        let split: Option<Vec<Variant>> = serde_json::from_value(json["split"].clone()).unwrap();
        Routing::compile(&rules, split.as_deref(), "lnk")
    }

    fn expanded(route: &Route<'_>) -> String {
        let values = crate::link::template::Values {
            click_id: "",
            partner_click_id: "",
            link_id: "",
            campaign: "",
            source: "",
            medium: "",
            subs: [""; 5],
            country: "",
            variant: "",
        };
        let mut out = Vec::new();
        route.template.expand(&values, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn first_matching_rule_wins_and_no_match_falls_through() {
        let r = routing(serde_json::json!({"rules": [
            {"when": {"country": ["DE"]}, "destination": "https://de.example/"},
            {"when": {"platform": ["ios"]}, "destination": "https://ios.example/"},
            {"when": {"country": ["US"]}, "destination": "https://us.example/"},
        ]}))
        .unwrap()
        .unwrap();
        let route = r.route(&us_iphone()).unwrap();
        assert_eq!(expanded(&route), "https://ios.example/");
        assert_eq!(route.rule, Some(1));
        let fr = Sample {
            country: "FR".into(),
            platform: "other".into(),
            ..us_iphone()
        };
        assert!(
            r.route(&fr).is_none(),
            "no rule: the link's own destinations"
        );
        assert!(routing(serde_json::json!({"rules": []})).unwrap().is_none());
    }

    #[test]
    fn a_split_keeps_each_visitor_and_follows_the_weights() {
        let split = |weights: [u32; 3]| {
            routing(serde_json::json!({"split": [
                {"id": "a", "destination": "https://a.example/", "weight": weights[0]},
                {"id": "b", "destination": "https://b.example/", "weight": weights[1]},
                {"id": "c", "destination": "https://c.example/", "weight": weights[2]},
            ]}))
            .unwrap()
            .unwrap()
        };
        let r = split([50, 30, 20]);
        let n = 1_000_000u64;
        let mut counts = [0u64; 3];
        let mut first = Vec::new();
        for identity in 0..n {
            let v = Sample {
                identity: xxhash_rust::xxh3::xxh3_64(&identity.to_le_bytes()),
                ..us_iphone()
            };
            let at = r.route(&v).unwrap().variant.unwrap();
            assert_eq!(at.rule, LINK_SPLIT);
            counts[usize::from(at.variant)] += 1;
            if identity < 1_000 {
                first.push(at);
            }
        }
        for (i, want) in [0.5, 0.3, 0.2].into_iter().enumerate() {
            let share = counts[i] as f64 / n as f64;
            assert!((share - want).abs() < 0.01, "variant {i}: {share}");
        }
        // Returning visitors keep their variant; a weight change re-buckets them.
        let mut moved = 0;
        let changed = split([50, 30, 21]);
        for (identity, at) in first.iter().enumerate() {
            let v = Sample {
                identity: xxhash_rust::xxh3::xxh3_64(&(identity as u64).to_le_bytes()),
                ..us_iphone()
            };
            assert_eq!(r.route(&v).unwrap().variant.unwrap(), *at);
            moved += usize::from(changed.route(&v).unwrap().variant.unwrap() != *at);
        }
        assert!(moved > 300, "only {moved} of 1000 re-bucketed");
        assert_eq!(
            r.variant_id(VariantAt {
                rule: LINK_SPLIT,
                variant: 2
            }),
            "c"
        );
        // A zero weight takes nothing.
        let r = split([1, 0, 1]);
        for identity in 0..10_000u64 {
            let v = Sample {
                identity: xxhash_rust::xxh3::xxh3_64(&identity.to_le_bytes()),
                ..us_iphone()
            };
            assert_ne!(r.route(&v).unwrap().variant.unwrap().variant, 1);
        }
    }

    #[test]
    fn bad_bodies_are_named_by_field() {
        use serde_json::json;
        let dest = "https://x.example/";
        let two = json!([{"id": "a", "destination": dest, "weight": 1}, {"id": "b", "destination": dest, "weight": 1}]);
        let seventeen: Vec<_> = (0..17)
            .map(|i| json!({"id": format!("v{i}"), "destination": dest, "weight": 1}))
            .collect();
        let cases = [
            (
                json!({"rules": [{"when": {"country": []}, "destination": dest}]}),
                "rules[0].when.country",
            ),
            (
                json!({"rules": [{"when": {}, "destination": dest}, {"when": {"country": ["USA"]}, "destination": dest}]}),
                "rules[1].when.country[0]",
            ),
            (
                json!({"rules": [{"when": {"region": ["CA"]}, "destination": dest}]}),
                "rules[0].when.region[0]",
            ),
            (
                json!({"rules": [{"when": {"platform": ["windows"]}, "destination": dest}]}),
                "rules[0].when.platform[0]",
            ),
            (
                json!({"rules": [{"when": {"os": ["ios", "beos"]}, "destination": dest}]}),
                "rules[0].when.os[1]",
            ),
            (
                json!({"rules": [{"when": {"device": ["phone"]}, "destination": dest}]}),
                "rules[0].when.device[0]",
            ),
            (
                json!({"rules": [{"when": {"language": ["english"]}, "destination": dest}]}),
                "rules[0].when.language[0]",
            ),
            (
                json!({"rules": [{"when": {"ip_cidr": ["10.0.0.0/33"]}, "destination": dest}]}),
                "rules[0].when.ip_cidr[0]",
            ),
            (
                json!({"rules": [{"when": {"ip_cidr": ["not-an-ip"]}, "destination": dest}]}),
                "rules[0].when.ip_cidr[0]",
            ),
            (
                json!({"rules": [{"when": {"hours_utc": "8-25"}, "destination": dest}]}),
                "rules[0].when.hours_utc",
            ),
            (
                json!({"rules": [{"when": {"hours_utc": "8-8"}, "destination": dest}]}),
                "rules[0].when.hours_utc",
            ),
            (
                json!({"rules": [{"when": {"hours_utc": ["8-9", "x"]}, "destination": dest}]}),
                "rules[0].when.hours_utc[1]",
            ),
            (
                json!({"rules": [{"when": {"weekdays": ["monday"]}, "destination": dest}]}),
                "rules[0].when.weekdays[0]",
            ),
            (
                json!({"rules": [{"when": {"weekdays": ["Mon"]}, "destination": dest}]}),
                "rules[0].when.weekdays[0]",
            ),
            (
                json!({"rules": [{"when": {"platform": ["IOS"]}, "destination": dest}]}),
                "rules[0].when.platform[0]",
            ),
            (
                json!({"rules": [{"when": {"hours_utc": "+8-20"}, "destination": dest}]}),
                "rules[0].when.hours_utc",
            ),
            (
                json!({"rules": [{"when": {"hours_utc": " 8-20"}, "destination": dest}]}),
                "rules[0].when.hours_utc",
            ),
            (
                json!({"rules": [{"when": {"query": {}}, "destination": dest}]}),
                "rules[0].when.query",
            ),
            (
                json!({"rules": [{"when": {"query": {"tier": []}}, "destination": dest}]}),
                "rules[0].when.query.tier",
            ),
            (json!({"rules": [{"when": {}}]}), "rules[0].destination"),
            (
                json!({"rules": [{"when": {}, "destination": dest, "split": two}]}),
                "rules[0]",
            ),
            (
                json!({"rules": [{"when": {}, "destination": "ftp://x"}]}),
                "rules[0].destination",
            ),
            (
                json!({"rules": [{"when": {}, "destination": "https://x.example/{nope}"}]}),
                "rules[0].destination",
            ),
            (
                json!({"split": [{"id": "a", "destination": dest, "weight": 0}, {"id": "b", "destination": dest, "weight": 0}]}),
                "split",
            ),
            (
                json!({"split": [{"id": "a", "destination": dest, "weight": 1}]}),
                "split",
            ),
            (json!({"split": seventeen}), "split"),
            (
                json!({"split": [{"id": "a", "destination": dest, "weight": 1}, {"id": "a", "destination": dest, "weight": 1}]}),
                "split[1].id",
            ),
            (
                json!({"split": [{"id": "a b", "destination": dest, "weight": 1}, {"id": "b", "destination": dest, "weight": 1}]}),
                "split[0].id",
            ),
            (
                json!({"split": [{"id": "a", "destination": dest, "weight": 1}, {"id": "b", "destination": "nope", "weight": 1}]}),
                "split[1].destination",
            ),
            (
                json!({"split": [{"id": "a", "destination": dest, "weight": 1}, {"id": "b", "destination": dest, "weight": 1_000_001}]}),
                "split[1].weight",
            ),
            (
                json!({"rules": [{"when": {}, "split": [{"id": "a", "destination": dest, "weight": 1}]}]}),
                "rules[0].split",
            ),
        ];
        for (body, field) in cases {
            let err = routing(body.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(err.field, field, "{body}: {}", err.message);
        }
        let rules: Vec<_> = (0..33)
            .map(|_| json!({"when": {}, "destination": dest}))
            .collect();
        assert_eq!(
            routing(json!({"rules": rules})).err().unwrap().field,
            "rules"
        );
    }

    proptest::proptest! {
        /// Any rules body: compiling never panics, and whatever compiles routes any visitor
        /// without panicking, to a variant of its own when a split chose it.
        #[test]
        fn fuzz_rules_compile_and_route(
            values in proptest::collection::vec("[ -~]{0,12}", 1..4),
            condition in 0usize..11,
            weights in proptest::collection::vec(0u32..5, 2..5),
            identity in proptest::prelude::any::<u64>(),
            now_ms in 0u64..4_000_000_000_000,
        ) {
            let names = ["country", "region", "platform", "os", "device", "browser", "language", "ip_cidr", "hours_utc", "weekdays", "query"];
            let name = names[condition];
            let when = if name == "query" {
                serde_json::json!({"query": {"q": values}})
            } else if name == "hours_utc" {
                serde_json::json!({"hours_utc": values[0]})
            } else {
                serde_json::json!({ name: values })
            };
            let split: Vec<_> = weights.iter().enumerate()
                .map(|(i, w)| serde_json::json!({"id": format!("v{i}"), "destination": "https://x.example/{variant}", "weight": w}))
                .collect();
            let body = serde_json::json!({"rules": [{"when": when, "split": split}]});
            if let Ok(Some(r)) = routing(body) {
                let v = Sample { identity, now_ms, ..us_iphone() };
                if let Some(route) = r.route(&v) {
                    if let Some(at) = route.variant {
                        proptest::prop_assert!(r.variant_id(at).starts_with('v'));
                    }
                }
            }
        }
    }
}
