//! Install attribution: the rules as pure logic here (the resolution order, the windows, CTIT;
//! the Play install referrer in `referrer`), and the use case that applies them to a report
//! against the stores in `attribute`; a tenant's settings read and patched in `settings`.

pub mod attribute;
pub mod config;
pub mod fraud;
pub mod install;
pub mod referrer;
pub mod settings;

use serde::{Deserialize, Serialize};

pub use config::AttributionConfig;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[serde(rename = "click_id")]
    ClickId,
    Referrer,
    Fingerprint,
    Metadata,
    #[default]
    Organic,
}

impl MatchType {
    /// Every match type, in declaration order (a metric's slots).
    pub const ALL: [MatchType; 5] = [
        MatchType::ClickId,
        MatchType::Referrer,
        MatchType::Fingerprint,
        MatchType::Metadata,
        MatchType::Organic,
    ];

    /// Its place in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The match type a stored row names.
    pub fn parse(s: &str) -> Option<MatchType> {
        MatchType::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::ClickId => "click_id",
            MatchType::Referrer => "referrer",
            MatchType::Fingerprint => "fingerprint",
            MatchType::Metadata => "metadata",
            MatchType::Organic => "organic",
        }
    }
}

/// The platform an app reports its install from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallPlatform {
    Ios,
    Android,
    Web,
}

impl InstallPlatform {
    pub fn parse(s: &str) -> Option<InstallPlatform> {
        match s.to_ascii_lowercase().as_str() {
            "ios" => Some(InstallPlatform::Ios),
            "android" => Some(InstallPlatform::Android),
            "web" => Some(InstallPlatform::Web),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InstallPlatform::Ios => "ios",
            InstallPlatform::Android => "android",
            InstallPlatform::Web => "web",
        }
    }
}

/// A click that could explain the install, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<C> {
    pub how: MatchType,
    pub click_ts_ms: u64,
    pub click: C,
}

/// What the install reported about itself when no click explains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfReported<'a> {
    pub source: Option<&'a str>,
    pub medium: Option<&'a str>,
    pub campaign: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<C> {
    Click {
        how: MatchType,
        click: C,
        ctit_seconds: u64,
    },
    Metadata,
    Organic,
}

impl<C> Resolution<C> {
    pub fn match_type(&self) -> MatchType {
        match self {
            Resolution::Click { how, .. } => *how,
            Resolution::Metadata => MatchType::Metadata,
            Resolution::Organic => MatchType::Organic,
        }
    }
}

/// Why a candidate click cannot explain the install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The install happened before the click.
    BeforeClick,
    /// Older than the tenant's click lookback.
    OutsideLookback,
    /// A fingerprint older than the tenant's fingerprint window (or fingerprinting is off).
    OutsideWindow,
}

/// Whether `candidate` may explain an install at `install_ms` under `config`.
pub fn admissible<C>(
    candidate: &Candidate<C>,
    install_ms: u64,
    config: &AttributionConfig,
) -> Result<u64, Rejection> {
    if install_ms < candidate.click_ts_ms {
        return Err(Rejection::BeforeClick);
    }
    let age_ms = install_ms - candidate.click_ts_ms;
    if age_ms > config.lookback_ms() {
        return Err(Rejection::OutsideLookback);
    }
    if candidate.how == MatchType::Fingerprint
        && (!config.fingerprint_enabled || age_ms > config.window_ms())
    {
        return Err(Rejection::OutsideWindow);
    }
    Ok(age_ms / 1000)
}

/// The resolution order: explicit click id → Play install referrer → fingerprint →
/// self-reported source/medium/campaign → organic. Candidates are tried in that order
/// (whatever order they are given in); the first admissible one wins.
pub fn resolve<C: Clone>(
    candidates: &[Candidate<C>],
    install_ms: u64,
    reported: &SelfReported<'_>,
    config: &AttributionConfig,
) -> Resolution<C> {
    for how in [
        MatchType::ClickId,
        MatchType::Referrer,
        MatchType::Fingerprint,
    ] {
        for candidate in candidates.iter().filter(|c| c.how == how) {
            if let Ok(ctit_seconds) = admissible(candidate, install_ms, config) {
                return Resolution::Click {
                    how,
                    click: candidate.click.clone(),
                    ctit_seconds,
                };
            }
        }
    }
    let given = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
    if given(reported.source) || given(reported.medium) || given(reported.campaign) {
        Resolution::Metadata
    } else {
        Resolution::Organic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_types_index_their_slots_and_parse_back() {
        for (i, m) in MatchType::ALL.into_iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(MatchType::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(MatchType::parse("Organic"), None);
    }

    const MIN: u64 = 60_000;
    const DAY: u64 = 86_400_000;

    fn c(how: MatchType, click_ts_ms: u64, id: &'static str) -> Candidate<&'static str> {
        Candidate {
            how,
            click_ts_ms,
            click: id,
        }
    }

    #[test]
    fn resolution_table() {
        use MatchType::*;
        let config = AttributionConfig::default(); // 7 d lookback, 120 min window, fingerprint on
        let none = SelfReported::default();
        let meta = SelfReported {
            source: Some("newsletter"),
            ..Default::default()
        };
        let blank = SelfReported {
            campaign: Some("  "),
            ..Default::default()
        };
        let t = 100 * DAY; // install time
                           // (candidates, reported, expected match, expected click, expected ctit)
        let cases: Vec<(
            Vec<Candidate<&str>>,
            &SelfReported,
            MatchType,
            Option<&str>,
            Option<u64>,
        )> = vec![
            (vec![], &none, Organic, None, None),
            (vec![], &meta, Metadata, None, None),
            (vec![], &blank, Organic, None, None),
            (
                vec![c(ClickId, t - 90_000, "a")],
                &meta,
                ClickId,
                Some("a"),
                Some(90),
            ),
            // Order of preference, whatever the input order.
            (
                vec![
                    c(Fingerprint, t - MIN, "f"),
                    c(Referrer, t - MIN, "r"),
                    c(ClickId, t - MIN, "k"),
                ],
                &none,
                ClickId,
                Some("k"),
                Some(60),
            ),
            (
                vec![c(Fingerprint, t - MIN, "f"), c(Referrer, t - 2 * MIN, "r")],
                &none,
                Referrer,
                Some("r"),
                Some(120),
            ),
            (
                vec![c(Fingerprint, t - 5 * MIN, "f")],
                &meta,
                Fingerprint,
                Some("f"),
                Some(300),
            ),
            // Window edges for fingerprints: exactly 120 min matches, one ms more does not.
            (
                vec![c(Fingerprint, t - 120 * MIN, "f")],
                &none,
                Fingerprint,
                Some("f"),
                Some(7200),
            ),
            (
                vec![c(Fingerprint, t - 120 * MIN - 1, "f")],
                &none,
                Organic,
                None,
                None,
            ),
            (
                vec![c(Fingerprint, t - 120 * MIN - 1, "f")],
                &meta,
                Metadata,
                None,
                None,
            ),
            // Lookback edges for click ids: exactly 7 d matches, one ms more does not.
            (
                vec![c(ClickId, t - 7 * DAY, "k")],
                &none,
                ClickId,
                Some("k"),
                Some(7 * 86_400),
            ),
            (
                vec![c(ClickId, t - 7 * DAY - 1, "k")],
                &none,
                Organic,
                None,
                None,
            ),
            // A stale click id falls through to a fresh fingerprint.
            (
                vec![c(ClickId, t - 8 * DAY, "k"), c(Fingerprint, t - MIN, "f")],
                &none,
                Fingerprint,
                Some("f"),
                Some(60),
            ),
            // An install dated before its click never matches it.
            (vec![c(ClickId, t + 1, "k")], &none, Organic, None, None),
            (vec![c(ClickId, t, "k")], &none, ClickId, Some("k"), Some(0)),
        ];
        for (i, (candidates, reported, want, click, ctit)) in cases.into_iter().enumerate() {
            let got = resolve(&candidates, t, reported, &config);
            assert_eq!(got.match_type(), want, "case {i}");
            match got {
                Resolution::Click {
                    click: got_click,
                    ctit_seconds,
                    ..
                } => {
                    assert_eq!(
                        (Some(got_click), Some(ctit_seconds)),
                        (click, ctit),
                        "case {i}"
                    )
                }
                _ => assert_eq!((None, None), (click, ctit), "case {i}"),
            }
        }
    }

    #[test]
    fn tenant_settings_apply() {
        let t = 100 * DAY;
        let short = AttributionConfig {
            click_lookback_days: 1,
            fingerprint_window_minutes: 5,
            ..AttributionConfig::default()
        };
        let off = AttributionConfig {
            fingerprint_enabled: false,
            ..AttributionConfig::default()
        };
        let none = SelfReported::default();
        let cases = [
            (
                &short,
                c(MatchType::Fingerprint, t - 5 * MIN, "f"),
                MatchType::Fingerprint,
            ),
            (
                &short,
                c(MatchType::Fingerprint, t - 6 * MIN, "f"),
                MatchType::Organic,
            ),
            (
                &short,
                c(MatchType::ClickId, t - DAY, "k"),
                MatchType::ClickId,
            ),
            (
                &short,
                c(MatchType::ClickId, t - 2 * DAY, "k"),
                MatchType::Organic,
            ),
            (
                &off,
                c(MatchType::Fingerprint, t - MIN, "f"),
                MatchType::Organic,
            ),
            (
                &off,
                c(MatchType::Referrer, t - MIN, "r"),
                MatchType::Referrer,
            ),
        ];
        for (config, candidate, want) in cases {
            assert_eq!(
                resolve(std::slice::from_ref(&candidate), t, &none, config).match_type(),
                want,
                "{candidate:?}"
            );
        }
    }
}
