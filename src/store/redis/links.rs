//! Links: the catalog (every code ever taken → its link), its version and change feed (what
//! nodes follow to keep their link tables current), and each tenant's index (its live
//! links, newest first, for paging). The catalog keys share the `{links}` hash tag, so the
//! put script stays in one Redis Cluster slot; a tenant's index lives in the tenant's slot.

use redis::streams::StreamRangeReply;
use redis::AsyncCommands;

use super::{Redis, RedisError};
use crate::link::Link;
use crate::time;

/// One change on the feed: the catalog version it made and the code it changed.
#[derive(Debug)]
pub struct FeedEntry {
    pub entry_id: String,
    pub version: u64,
    pub code: String,
}

/// A read of the feed: the catalog version at the time, and entries after the position.
pub struct FeedRead {
    pub version: u64,
    pub entries: Vec<FeedEntry>,
}

/// Where the feed stood: the catalog version and the last entry's id ("0-0" when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedHead {
    pub version: u64,
    pub entry_id: String,
}

/// Whether a put may take a new code or changes an existing one.
#[derive(Clone, Copy)]
pub enum Put {
    Create,
    Update,
}

impl Redis {
    /// How many live links the tenant has.
    pub async fn link_count(&self, tenant: &str) -> Result<usize, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.zcard(self.tenant_links_key(tenant)).await?)
    }

    /// Stores links and announces each change on the feed. Returns, per link, the version of
    /// its change, or `None` where `Put::Create` found the code taken (by anyone, ever:
    /// deleted codes stay claimed). The tenant index follows the catalog write (a second
    /// step: the catalog and the index are in different cluster slots).
    pub async fn put_links(
        &self,
        links: &[Link],
        put: Put,
        feed_length: usize,
    ) -> Result<Vec<Option<u64>>, RedisError> {
        if links.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.load_script(&self.link_put).ignore();
        let mode = match put {
            Put::Create => "create",
            Put::Update => "update",
        };
        let invocations: Vec<_> = links
            .iter()
            .map(|link| {
                let mut invocation = self.link_put.prepare_invoke();
                invocation
                    .key(self.catalog_key())
                    .key(self.catalog_version_key())
                    .key(self.link_feed_key())
                    .arg(&link.id)
                    .arg(serde_json::to_string(link).expect("serializable"))
                    .arg(mode)
                    .arg(feed_length);
                invocation
            })
            .collect();
        for invocation in &invocations {
            pipe.invoke_script(invocation);
        }
        let versions: Vec<u64> = pipe.query_async(&mut c).await?;
        let mut index = redis::pipe();
        for (link, &version) in links.iter().zip(&versions) {
            if version == 0 {
                continue;
            }
            let key = self.tenant_links_key(&link.tenant_id);
            if link.deleted_at.is_some() {
                index.zrem(key, index_member(link)).ignore();
            } else {
                index.zadd(key, index_member(link), 0).ignore();
            }
        }
        if index.cmd_iter().next().is_some() {
            index.query_async::<()>(&mut c).await?;
        }
        Ok(versions
            .into_iter()
            .map(|v| (v != 0).then_some(v))
            .collect())
    }

    pub async fn get_link(&self, code: &str) -> Result<Option<Link>, RedisError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.hget(self.catalog_key(), code).await?;
        raw.map(|r| self.decode_link(code, &r)).transpose()
    }

    /// The links with these codes, in order (`None` where a code is not in the catalog).
    pub async fn get_links(&self, codes: &[String]) -> Result<Vec<Option<Link>>, RedisError> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let raws: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.catalog_key())
            .arg(codes)
            .query_async(&mut c)
            .await?;
        codes
            .iter()
            .zip(raws)
            .map(|(code, raw)| raw.map(|r| self.decode_link(code, &r)).transpose())
            .collect()
    }

    /// One page of the tenant's live links, newest first, after `cursor` (a previous page's
    /// last position); the position of the page's last link when more may follow.
    pub async fn tenant_links_page(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Link>, Option<String>), RedisError> {
        let mut c = self.conn.clone();
        let from = cursor.map_or_else(|| "-".to_string(), |p| format!("({p}"));
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.tenant_links_key(tenant))
            .arg(from)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await?;
        let codes: Vec<String> = members
            .iter()
            .map(|m| {
                m.split_once(':')
                    .map_or(m.as_str(), |(_, code)| code)
                    .to_string()
            })
            .collect();
        let links = self
            .get_links(&codes)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let next = (members.len() == limit)
            .then(|| members.last().cloned())
            .flatten();
        Ok((links, next))
    }

    /// The feed's head, read atomically with the version.
    pub async fn link_feed_head(&self) -> Result<FeedHead, RedisError> {
        let mut c = self.conn.clone();
        let (version, last): (Option<u64>, StreamRangeReply) = redis::pipe()
            .atomic()
            .get(self.catalog_version_key())
            .xrevrange_count(self.link_feed_key(), "+", "-", 1)
            .query_async(&mut c)
            .await?;
        Ok(FeedHead {
            version: version.unwrap_or(0),
            entry_id: last
                .ids
                .first()
                .map_or_else(|| "0-0".into(), |e| e.id.clone()),
        })
    }

    /// Up to `count` feed entries after `after`, read atomically with the catalog version.
    pub async fn read_link_feed(&self, after: &str, count: usize) -> Result<FeedRead, RedisError> {
        let mut c = self.conn.clone();
        let (version, range): (Option<u64>, StreamRangeReply) = redis::pipe()
            .atomic()
            .get(self.catalog_version_key())
            .xrange_count(self.link_feed_key(), format!("({after}"), "+", count)
            .query_async(&mut c)
            .await?;
        let entries = range
            .ids
            .into_iter()
            .map(|e| FeedEntry {
                version: e.get("v").unwrap_or(0),
                code: e.get("id").unwrap_or_default(),
                entry_id: e.id,
            })
            .collect();
        Ok(FeedRead {
            version: version.unwrap_or(0),
            entries,
        })
    }

    /// One step of a full catalog scan: the next cursor (0 when done) and up to about
    /// `count` links. A scan sees every link present from its start to its end at least
    /// once; links written meanwhile are on the feed.
    pub async fn scan_links(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Link>), RedisError> {
        let mut c = self.conn.clone();
        let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(self.catalog_key())
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut c)
            .await?;
        let links = pairs
            .iter()
            .map(|(code, raw)| self.decode_link(code, raw))
            .collect::<Result<_, _>>()?;
        Ok((next, links))
    }

    /// Brings links stored by an older Sluice (catalog under `<p>:links`, tenant sets) into
    /// this layout: catalog keys renamed, tenant indexes built. Idempotent; a no-op once done.
    pub async fn migrate_links(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let legacy = format!("{}:links", self.prefix);
        if c.exists(&legacy).await? {
            // Copied, not renamed: on a Redis Cluster the old keys and the catalog's are in
            // different slots. HSETNX keeps a link a newer node has written meanwhile; a copy
            // cut short is repeated at the next start (the old hash goes last).
            let mut cursor = 0u64;
            loop {
                let (next, fields): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                    .arg(&legacy)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(10_000)
                    .query_async(&mut c)
                    .await?;
                let mut pipe = redis::pipe();
                for (code, raw) in &fields {
                    pipe.hset_nx(self.catalog_key(), code, raw).ignore();
                }
                if !fields.is_empty() {
                    pipe.query_async::<()>(&mut c).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            let version: Option<u64> = c.get(format!("{legacy}:version")).await?;
            if let Some(version) = version {
                // The catalog's version never goes back (followers would see a gap).
                redis::Script::new(
                    "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then \
                       redis.call('SET', KEYS[1], ARGV[1]) end",
                )
                .key(self.catalog_version_key())
                .arg(version)
                .invoke_async::<()>(&mut c)
                .await?;
            }
            let _: () = c.del(format!("{legacy}:version")).await?;
            let _: () = c.del(&legacy).await?;
        }
        let indexed = format!("{}:{{links}}:indexed", self.prefix);
        if c.exists(&indexed).await? {
            return Ok(());
        }
        let mut cursor = 0;
        loop {
            let (next, links) = self.scan_links(cursor, 10_000).await?;
            let mut pipe = redis::pipe();
            for link in &links {
                // The tenant's set of codes before the index existed.
                pipe.del(format!("{}:{{t:{}}}:links", self.prefix, link.tenant_id))
                    .ignore();
                if link.deleted_at.is_none() {
                    pipe.zadd(
                        self.tenant_links_key(&link.tenant_id),
                        index_member(link),
                        0,
                    )
                    .ignore();
                }
            }
            if !links.is_empty() {
                self.query_pipeline(&pipe).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        c.set::<_, _, ()>(&indexed, 1).await?;
        Ok(())
    }

    /// Adds each capped link's clicks counted on this node to the shared counts; answers
    /// each link's counts after it (all time, and on UTC day `day`).
    pub async fn add_capped_clicks(
        &self,
        day: u32,
        clicks: &[(&str, u64)],
    ) -> Result<Vec<(u64, u64)>, RedisError> {
        let (total, daily) = (self.capped_clicks_key(), self.capped_clicks_day_key(day));
        let mut pipe = redis::pipe();
        for (link, n) in clicks {
            pipe.hincr(&total, *link, *n).hincr(&daily, *link, *n);
        }
        // A day's counts outlive it by a day, for nodes whose clock is behind.
        pipe.expire(&daily, 2 * 86_400).ignore();
        let mut c = self.conn.clone();
        let counts: Vec<u64> = pipe.query_async(&mut c).await?;
        Ok(counts.chunks(2).map(|pair| (pair[0], pair[1])).collect())
    }

    fn decode_link(&self, code: &str, raw: &str) -> Result<Link, RedisError> {
        serde_json::from_str(raw).map_err(|source| RedisError::Corrupt {
            key: format!("{}[{code}]", self.catalog_key()),
            source,
        })
    }
}

/// A link's place in its tenant's index: all scores are 0, so members sort by their text —
/// the creation time counted down (newest first), then the code.
fn index_member(link: &Link) -> String {
    let created = time::parse_rfc3339(&link.created_at).unwrap_or(0);
    format!(
        "{:013}:{}",
        9_999_999_999_999u64.saturating_sub(created),
        link.id
    )
}

/// Whether `cursor` is a position `tenant_links_page` hands out.
pub fn valid_cursor(cursor: &str) -> bool {
    cursor.split_once(':').is_some_and(|(time, code)| {
        time.len() == 13
            && time.bytes().all(|b| b.is_ascii_digit())
            && crate::link::valid_code(code)
    })
}
