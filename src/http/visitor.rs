//! One redirect's visitor as routing rules see it (`link::routing::Visitor`). Each fact is
//! learned on first use: a link whose rules test only the platform never pays for a geo
//! lookup or a user-agent parse, and a fact two rules test is learned once.

use std::cell::{OnceCell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;

use ahash::AHashMap;

use crate::app::App;
use crate::click::agent;
use crate::click::geo::{PlaceCache, SharedPlace};
use crate::click::Platform;
use crate::link::routing::Visitor;

pub struct Seen<'a> {
    app: &'a App,
    ip: IpAddr,
    platform: Platform,
    user_agent: &'a [u8],
    accept_language: Option<&'a [u8]>,
    query: Option<&'a str>,
    now_ms: u64,
    place: OnceCell<Option<SharedPlace>>,
    traits: OnceCell<Rc<Traits>>,
    language: OnceCell<Box<str>>,
}

/// What rules read from a user agent.
struct Traits {
    os: &'static str,
    browser: Box<str>,
    device: &'static str,
}

/// Parsed agents on this serving thread: woothee takes microseconds, and traffic repeats a
/// few thousand agents. Cleared when full, like the encoder's cache.
const TRAITS_MAX: usize = 4_096;

thread_local! {
    static TRAITS: RefCell<AHashMap<Box<[u8]>, Rc<Traits>>> = RefCell::default();
    /// Places decoded on this serving thread (decoding a record is most of a lookup).
    static PLACES: RefCell<PlaceCache> = RefCell::default();
}

/// The longest language tag kept from `Accept-Language`.
const LANGUAGE_MAX: usize = 35;

impl<'a> Seen<'a> {
    pub fn new(
        app: &'a App,
        ip: IpAddr,
        platform: Platform,
        user_agent: &'a [u8],
        accept_language: Option<&'a [u8]>,
        query: Option<&'a str>,
        now_ms: u64,
    ) -> Seen<'a> {
        Seen {
            app,
            ip,
            platform,
            user_agent,
            accept_language,
            query,
            now_ms,
            place: OnceCell::new(),
            traits: OnceCell::new(),
            language: OnceCell::new(),
        }
    }

    /// The country and region (empty when unknown).
    fn place(&self, part: usize) -> &str {
        let place = self.place.get_or_init(|| {
            let geo = self.app.geo.as_ref()?;
            PLACES.with_borrow_mut(|cache| geo.lookup_shared(self.ip, cache))
        });
        place.as_ref().map_or("", |p| &p[part])
    }

    fn traits(&self) -> &Traits {
        self.traits.get_or_init(|| {
            TRAITS.with_borrow_mut(|cache| {
                if let Some(known) = cache.get(self.user_agent) {
                    return known.clone();
                }
                if cache.len() >= TRAITS_MAX {
                    cache.clear();
                }
                let ua = String::from_utf8_lossy(self.user_agent);
                let parsed = agent::classify(&ua);
                let traits = Rc::new(Traits {
                    os: agent::os_family(&parsed.os),
                    browser: parsed.browser,
                    device: agent::device_class(&ua, parsed.device),
                });
                cache.insert(self.user_agent.into(), traits.clone());
                traits
            })
        })
    }
}

impl Visitor for Seen<'_> {
    fn country(&self) -> &str {
        self.place(0)
    }

    fn region(&self) -> &str {
        self.place(1)
    }

    fn platform(&self) -> &str {
        self.platform.as_str()
    }

    fn os(&self) -> &str {
        self.traits().os
    }

    fn browser(&self) -> &str {
        &self.traits().browser
    }

    fn device(&self) -> &str {
        self.traits().device
    }

    fn language(&self) -> &str {
        self.language.get_or_init(|| {
            let header = self.accept_language.unwrap_or_default();
            let first = header
                .split(|&b| b == b',' || b == b';')
                .next()
                .unwrap_or_default();
            let tag = String::from_utf8_lossy(first.trim_ascii()).to_ascii_lowercase();
            if tag.len() > LANGUAGE_MAX || tag == "*" {
                Box::default()
            } else {
                tag.into()
            }
        })
    }

    fn ip(&self) -> IpAddr {
        self.ip
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn query(&self) -> Option<&str> {
        self.query
    }

    fn identity(&self) -> u64 {
        identity(self.app, self.ip, self.user_agent)
    }
}

/// A visitor's split bucket seed: its keyed IP hash and user agent.
pub fn identity(app: &App, ip: IpAddr, user_agent: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(user_agent, app.ip_hasher.hash(ip))
}
