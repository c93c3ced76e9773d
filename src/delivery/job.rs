//! A delivery as it waits in the queue: who it is for, where it goes, how it is signed;
//! and the webhook subscriptions that make them.

use serde::{Deserialize, Serialize};

/// Who a delivery is for (where its outcome is logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    Postback { partner_id: String },
    Webhook { webhook_id: String },
    Report { report_id: String },
}

/// How a delivery is signed, at each attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum Signing {
    /// `X-Sluice-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    Webhook { secret: String },
    /// `<header>: <hex HMAC-SHA1(secret, body)>` (attribution reports).
    Sha1 { header: String, secret: String },
}

/// One delivery: the same `id` on every attempt (receivers dedupe on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub owner: Owner,
    pub url: String,
    /// A JSON body to POST; none: a GET (postbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<Signing>,
    #[serde(default)]
    pub attempt: u32,
    pub created_ms: u64,
}

impl Job {
    pub fn new(tenant: &str, owner: Owner, url: String, body: Option<String>) -> Job {
        Job {
            id: format!("evt_{}", hex::encode(rand::random::<[u8; 12]>())),
            tenant: tenant.to_string(),
            owner,
            url,
            body,
            signing: None,
            attempt: 0,
            created_ms: crate::time::now_ms(),
        }
    }

    /// The destination's host (the concurrency cap's key).
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// A webhook subscription: where to POST which kinds of facts, signed with `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: String,
}

/// The delay before retry number `attempt` (1, 2, …): `base` doubled each time, at most an
/// hour, times a random factor in [0.5, 1.5) so retries of many jobs spread out.
pub fn backoff_ms(base_ms: u64, attempt: u32) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(3_600_000);
    let jitter: f64 = 0.5 + rand::random::<f64>();
    (capped as f64 * jitter) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for (attempt, nominal) in [
            (1u32, 1_000u64),
            (2, 2_000),
            (5, 16_000),
            (13, 3_600_000),
            (40, 3_600_000),
        ] {
            for _ in 0..50 {
                let d = backoff_ms(1_000, attempt);
                assert!(
                    d >= nominal / 2 && d < nominal * 3 / 2,
                    "attempt {attempt}: {d}"
                );
            }
        }
    }

    #[test]
    fn jobs_round_trip() {
        let mut job = Job::new(
            "t_1",
            Owner::Webhook {
                webhook_id: "wh_1".into(),
            },
            "https://hooks.example.com/x".into(),
            Some("{}".into()),
        );
        job.signing = Some(Signing::Webhook {
            secret: "whsec_1".into(),
        });
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
        assert_eq!(job.host(), "hooks.example.com");
        assert!(job.id.starts_with("evt_") && job.id.len() == 28);
    }
}
