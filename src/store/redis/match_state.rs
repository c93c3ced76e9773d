//! Match state: the atomic deferred-match flip (`redis/flip.lua`), installs' remembered
//! attributions, and users bound to installs (`redis/bind_user.lua`).

use redis::AsyncCommands;

use super::{Redis, RedisError};
use crate::attribution::fraud;
use crate::attribution::install::InstallAttribution;
use crate::attribution::MatchType;
use crate::click::ClickId;
use crate::pipeline::fingerprints;

/// How binding a user to an install went (`redis/bind_user.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Bound; `replaced` is the install it was bound to before (a secret key's rebinding).
    Bound {
        replaced: Option<String>,
    },
    /// Refused: bound to another install, and a publishable key may not rebind.
    Taken,
    UnknownInstall,
}

/// How a flip resolved (see `redis/flip.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flip {
    /// A retry: the answer the install got the first time (`None` when it matched nothing).
    Remembered(Option<Claim>),
    /// This install won the click.
    Claimed(Claim),
    /// No claimable click.
    Nothing,
}

/// A claimed click: how it was found (click_id, referrer or fingerprint), its id, and for
/// fingerprint matches the facts stored with the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub how: MatchType,
    pub click: ClickId,
    pub member: Option<String>,
}

impl Claim {
    fn parse(how: &str, payload: &str) -> Option<Claim> {
        let how = match how {
            "click_id" => MatchType::ClickId,
            "referrer" => MatchType::Referrer,
            "fingerprint" => MatchType::Fingerprint,
            _ => return None,
        };
        let mut id = [0u8; 16];
        hex::decode_to_slice(payload.get(..32)?, &mut id).ok()?;
        let member = payload.contains('|').then(|| payload.to_string());
        Some(Claim {
            how,
            click: ClickId(id),
            member,
        })
    }
}

/// What a flip is asked.
pub struct FlipRequest<'a> {
    pub tenant: &'a str,
    pub install_id: &'a str,
    /// Explicit candidates in preference order: (click_id | referrer, click id).
    pub explicit: &'a [(MatchType, ClickId)],
    /// (platform, ip hash) of the installing device.
    pub fingerprint: (&'a str, u64),
    /// The install's time (as reported; clicks after it never match).
    pub install_ms: u64,
    /// The current time, for pruning expired fingerprints.
    pub now_ms: u64,
    /// 0 when fingerprinting is off.
    pub window_ms: u64,
    pub lookback_ms: u64,
}

/// How long a retried install gets the same answer.
const ANSWER_TTL_MS: u64 = 30 * 86_400_000;

/// How long an install's attribution is remembered for its events and conversions (and for
/// binding users to it): about 200 bytes per install.
pub const INSTALL_MEMORY_MS: u64 = 400 * 86_400_000;

impl Redis {
    /// The atomic flip (`redis/flip.lua`).
    pub async fn flip(&self, r: &FlipRequest<'_>) -> Result<Flip, RedisError> {
        let tag = self.tenant_tag(r.tenant);
        let mut invocation = self.flip.prepare_invoke();
        invocation
            .key(format!("{tag}:install:{}", r.install_id))
            .key(self.fingerprint_key(r.tenant, r.fingerprint.0, r.fingerprint.1))
            .arg(r.install_ms)
            .arg(r.window_ms)
            .arg(r.install_id)
            .arg(format!("{tag}:claim:"))
            .arg(r.lookback_ms.max(1))
            .arg(ANSWER_TTL_MS)
            .arg(r.now_ms);
        for (how, click) in r.explicit {
            invocation.arg(format!("{}:{}", how.as_str(), hex::encode(click.0)));
        }
        let mut c = self.conn.clone();
        let reply: Vec<String> = invocation.invoke_async(&mut c).await?;
        Ok(match reply.as_slice() {
            [tag, how, payload] if tag == "remembered" => {
                Flip::Remembered(Claim::parse(how, payload))
            }
            [tag, how, payload] if tag == "claimed" => {
                Claim::parse(how, payload).map_or(Flip::Nothing, Flip::Claimed)
            }
            _ => Flip::Nothing,
        })
    }

    /// Binds `user_id` to an install the tenant reported; false when no such install is
    /// known.
    /// Binds `user_id` to `install_id` (`redis/bind_user.lua`): the first binding stands
    /// unless `may_rebind` (a secret key), and each rebinding is logged.
    pub async fn bind_user(
        &self,
        tenant: &str,
        install_id: &str,
        user_id: &str,
        may_rebind: bool,
    ) -> Result<Binding, RedisError> {
        let mut c = self.conn.clone();
        let (status, other): (String, String) = self
            .bind_user
            .key(self.attribution_key(tenant, install_id))
            .key(self.user_key(tenant, user_id))
            .key(self.rebinds_key(tenant))
            .arg(install_id)
            .arg(u8::from(may_rebind))
            .arg(user_id)
            .arg(crate::time::now_rfc3339())
            .invoke_async(&mut c)
            .await?;
        Ok(match status.as_str() {
            "bound" => Binding::Bound {
                replaced: (!other.is_empty()).then_some(other),
            },
            "taken" => Binding::Taken,
            _ => Binding::UnknownInstall,
        })
    }

    /// The install a user is bound to.
    pub async fn user_install(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Option<String>, RedisError> {
        let mut c = self.conn.clone();
        Ok(c.get(self.user_key(tenant, user_id)).await?)
    }

    /// What the fraud rules and the receipt ask of the fingerprints, in one round trip: how
    /// many clicks on `link` the `visitor` made in the hour before `click_ts_ms` (among the
    /// newest its fingerprint keeps; `None` without a visitor), and how many unclaimed clicks
    /// of the installing `device` fall in `window` (the clicks that competed with the match).
    pub async fn click_counts(
        &self,
        tenant: &str,
        visitor: Option<(&str, u64)>,
        link: &str,
        click_ts_ms: u64,
        device: (&str, u64),
        window: (u64, u64),
    ) -> Result<(Option<u64>, u64), RedisError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCOUNT")
            .arg(self.fingerprint_key(tenant, device.0, device.1))
            .arg(window.0)
            .arg(window.1);
        if let Some((key, ip_hash)) = visitor {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.fingerprint_key(tenant, key, ip_hash))
                .arg(click_ts_ms.saturating_sub(fraud::VISITOR_HOUR_MS))
                .arg(format!("({click_ts_ms}"));
        }
        let mut c = self.conn.clone();
        let (competing, members): (u64, Option<Vec<String>>) = if visitor.is_some() {
            let (n, m): (u64, Vec<String>) = pipe.query_async(&mut c).await?;
            (n, Some(m))
        } else {
            let (n,): (u64,) = pipe.query_async(&mut c).await?;
            (n, None)
        };
        let on_link = members.map(|members| {
            members
                .iter()
                .filter_map(|m| fingerprints::parse_member(m))
                .filter(|f| f.link_id == link)
                .count() as u64
        });
        Ok((on_link, competing))
    }

    /// What an install was attributed to, as `remember_attribution` left it.
    pub async fn remembered_attribution(
        &self,
        tenant: &str,
        install_id: &str,
    ) -> Result<Option<InstallAttribution>, RedisError> {
        let mut c = self.conn.clone();
        let json: Option<String> = c.get(self.attribution_key(tenant, install_id)).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Remembers what an install was attributed to (the first answer stands: a retried
    /// install report does not change it).
    pub async fn remember_attribution(
        &self,
        tenant: &str,
        install_id: &str,
        attribution: &InstallAttribution,
    ) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.attribution_key(tenant, install_id))
            .arg(serde_json::to_string(attribution).expect("serializable"))
            .arg("NX")
            .arg("PX")
            .arg(INSTALL_MEMORY_MS)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }
}
