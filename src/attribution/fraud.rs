//! Fraud rules, evaluated for every install matched to a click: what the install and its click
//! say (`Evidence`), the rules that fire on it (`findings`, with the value that made each one
//! fire), and what the tenant's mode makes of them (`Verdict`). Pure logic; the install use
//! case gathers the evidence and applies the verdict.

use serde::{Deserialize, Serialize};

use super::AttributionConfig;

/// What a tenant does with its installs' findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FraudMode {
    /// Rules are not evaluated.
    Off,
    /// Findings are stored; nothing else changes (tune thresholds here before enforcing).
    #[default]
    Shadow,
    /// Attributed as usual; findings stored and reported.
    Flag,
    /// Not attributed; stored as rejected with its findings.
    Reject,
}

impl FraudMode {
    pub const ALL: [FraudMode; 4] = [
        FraudMode::Off,
        FraudMode::Shadow,
        FraudMode::Flag,
        FraudMode::Reject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FraudMode::Off => "off",
            FraudMode::Shadow => "shadow",
            FraudMode::Flag => "flag",
            FraudMode::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<FraudMode> {
        FraudMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A rule's reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    ClickInjection,
    ClickFlooding,
    TooManyClicks,
    AnonymousIp,
    Bot,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::ClickInjection,
        Reason::ClickFlooding,
        Reason::TooManyClicks,
        Reason::AnonymousIp,
        Reason::Bot,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::ClickInjection => "click_injection",
            Reason::ClickFlooding => "click_flooding",
            Reason::TooManyClicks => "too_many_clicks",
            Reason::AnonymousIp => "anonymous_ip",
            Reason::Bot => "bot",
        }
    }

    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// A rule that fired, and the value that made it fire (CTIT seconds, a click count, which
/// address was anonymous…), as stored and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: Reason,
    pub value: String,
}

/// Clock skew allowed between the device's Play referrer timestamps and the server's click
/// time before they count as contradicting it.
pub const REFERRER_SKEW_SECONDS: u64 = 10;

/// How far back `too_many_clicks` counts a visitor's clicks on the link.
pub const VISITOR_HOUR_MS: u64 = 3_600_000;

/// What is known about a matched install and its click.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub ctit_seconds: u64,
    pub click_ts_ms: u64,
    /// From the Play install referrer API, when the app reported them.
    pub referrer_click_s: Option<u64>,
    pub install_begin_s: Option<u64>,
    /// The click's visitor's other clicks on the link in the hour before it; `None` when not
    /// known (fingerprinting off for the tenant).
    pub visitor_clicks_hour: Option<u64>,
    pub anonymous_click: bool,
    pub anonymous_install: bool,
    pub bot_click: bool,
}

/// The rules that fire on `e` under `config`'s thresholds, in reason order.
pub fn findings(config: &AttributionConfig, e: &Evidence) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut fire = |reason, value: String| out.push(Finding { reason, value });
    let click_s = e.click_ts_ms / 1000;
    if e.ctit_seconds < u64::from(config.min_ctit_seconds) {
        fire(Reason::ClickInjection, e.ctit_seconds.to_string());
    } else if let Some(begin) = e
        .install_begin_s
        .filter(|&begin| click_s > begin + REFERRER_SKEW_SECONDS)
    {
        fire(
            Reason::ClickInjection,
            format!("click_after_install_begin:{}", click_s - begin),
        );
    } else if let Some(store) = e
        .referrer_click_s
        .filter(|&store| click_s > store + REFERRER_SKEW_SECONDS)
    {
        fire(
            Reason::ClickInjection,
            format!("click_after_referrer_click:{}", click_s - store),
        );
    }
    if e.ctit_seconds > u64::from(config.max_ctit_hours) * 3600 {
        fire(Reason::ClickFlooding, e.ctit_seconds.to_string());
    }
    if let Some(n) = e
        .visitor_clicks_hour
        .filter(|&n| n > u64::from(config.max_clicks_per_visitor_hour))
    {
        fire(Reason::TooManyClicks, n.to_string());
    }
    let anonymous = match (e.anonymous_click, e.anonymous_install) {
        (true, true) => Some("click,install"),
        (true, false) => Some("click"),
        (false, true) => Some("install"),
        (false, false) => None,
    };
    if let Some(which) = anonymous {
        fire(Reason::AnonymousIp, which.into());
    }
    if e.bot_click {
        fire(Reason::Bot, "click".into());
    }
    out
}

/// An install's judgement: the mode it was judged under, the verdict and what fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub mode: FraudMode,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

impl Judgement {
    /// Not judged: mode `off`, or no click to judge.
    pub fn none(mode: FraudMode) -> Judgement {
        Judgement {
            mode,
            verdict: Verdict::NotEvaluated,
            findings: Vec::new(),
        }
    }

    /// `evidence` judged under the tenant's config.
    pub fn of(config: &AttributionConfig, evidence: &Evidence) -> Judgement {
        if config.fraud_mode == FraudMode::Off {
            return Judgement::none(FraudMode::Off);
        }
        let findings = findings(config, evidence);
        Judgement {
            mode: config.fraud_mode,
            verdict: Verdict::of(config.fraud_mode, &findings),
            findings,
        }
    }

    pub fn rejected(&self) -> bool {
        self.verdict == Verdict::Rejected
    }
}

/// `{mode, verdict, reasons: [{code, value}]}`, as receipts and webhooks show a judgement.
pub fn fraud_json(j: &Judgement) -> serde_json::Value {
    let reasons: Vec<serde_json::Value> = j
        .findings
        .iter()
        .map(|f| serde_json::json!({"code": f.reason.code(), "value": f.value}))
        .collect();
    serde_json::json!({"mode": j.mode.as_str(), "verdict": j.verdict.as_str(), "reasons": reasons})
}

/// What the mode made of the findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Mode `off`: nothing evaluated.
    NotEvaluated,
    /// Evaluated, nothing fired.
    Clean,
    /// Fired in `shadow` mode: stored only.
    Suspicious,
    /// Fired in `flag` mode: attributed and reported.
    Flagged,
    /// Fired in `reject` mode: not attributed.
    Rejected,
}

impl Verdict {
    /// Every verdict, in declaration order (a metric's slots).
    pub const ALL: [Verdict; 5] = [
        Verdict::NotEvaluated,
        Verdict::Clean,
        Verdict::Suspicious,
        Verdict::Flagged,
        Verdict::Rejected,
    ];

    pub fn of(mode: FraudMode, findings: &[Finding]) -> Verdict {
        match (mode, findings.is_empty()) {
            (FraudMode::Off, _) => Verdict::NotEvaluated,
            (_, true) => Verdict::Clean,
            (FraudMode::Shadow, false) => Verdict::Suspicious,
            (FraudMode::Flag, false) => Verdict::Flagged,
            (FraudMode::Reject, false) => Verdict::Rejected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NotEvaluated => "not_evaluated",
            Verdict::Clean => "clean",
            Verdict::Suspicious => "suspicious",
            Verdict::Flagged => "flagged",
            Verdict::Rejected => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn evidence(ctit_seconds: u64) -> Evidence {
        Evidence {
            ctit_seconds,
            click_ts_ms: NOW_MS - ctit_seconds * 1000,
            ..Evidence::default()
        }
    }

    /// Each rule just under and just over its threshold (defaults: 10 s, 24 h, 20 clicks).
    #[test]
    fn rules_at_their_thresholds() {
        let config = AttributionConfig::default();
        let click_s = (NOW_MS - 600_000) / 1000; // the click of a 600 s CTIT
        let cases: Vec<(&str, Evidence, &[(&str, &str)])> = vec![
            ("clean", evidence(600), &[]),
            ("ctit at the minimum", evidence(10), &[]),
            ("ctit under", evidence(9), &[("click_injection", "9")]),
            ("ctit zero", evidence(0), &[("click_injection", "0")]),
            ("ctit at the maximum", evidence(24 * 3600), &[]),
            (
                "ctit over",
                evidence(24 * 3600 + 1),
                &[("click_flooding", "86401")],
            ),
            (
                "install began with the click, within the skew",
                Evidence {
                    install_begin_s: Some(click_s - REFERRER_SKEW_SECONDS),
                    ..evidence(600)
                },
                &[],
            ),
            (
                "click after the install began",
                Evidence {
                    install_begin_s: Some(click_s - REFERRER_SKEW_SECONDS - 1),
                    ..evidence(600)
                },
                &[("click_injection", "click_after_install_begin:11")],
            ),
            (
                "store click just before ours, within the skew",
                Evidence {
                    referrer_click_s: Some(click_s - REFERRER_SKEW_SECONDS),
                    install_begin_s: Some(click_s + 60),
                    ..evidence(600)
                },
                &[],
            ),
            (
                "store click before ours",
                Evidence {
                    referrer_click_s: Some(click_s - 3600),
                    install_begin_s: Some(click_s + 60),
                    ..evidence(600)
                },
                &[("click_injection", "click_after_referrer_click:3600")],
            ),
            (
                "visitor at the limit",
                Evidence {
                    visitor_clicks_hour: Some(20),
                    ..evidence(600)
                },
                &[],
            ),
            (
                "visitor over",
                Evidence {
                    visitor_clicks_hour: Some(21),
                    ..evidence(600)
                },
                &[("too_many_clicks", "21")],
            ),
            (
                "anonymous install",
                Evidence {
                    anonymous_install: true,
                    ..evidence(600)
                },
                &[("anonymous_ip", "install")],
            ),
            (
                "anonymous click and install",
                Evidence {
                    anonymous_click: true,
                    anonymous_install: true,
                    ..evidence(600)
                },
                &[("anonymous_ip", "click,install")],
            ),
            (
                "bot",
                Evidence {
                    bot_click: true,
                    ..evidence(600)
                },
                &[("bot", "click")],
            ),
            (
                "several, in reason order",
                Evidence {
                    bot_click: true,
                    anonymous_click: true,
                    visitor_clicks_hour: Some(64),
                    ..evidence(2)
                },
                &[
                    ("click_injection", "2"),
                    ("too_many_clicks", "64"),
                    ("anonymous_ip", "click"),
                    ("bot", "click"),
                ],
            ),
        ];
        for (name, e, want) in cases {
            let got: Vec<(&str, String)> = findings(&config, &e)
                .into_iter()
                .map(|f| (f.reason.code(), f.value))
                .collect();
            let want: Vec<(&str, String)> = want.iter().map(|(c, v)| (*c, v.to_string())).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn thresholds_come_from_the_config() {
        let strict = AttributionConfig {
            min_ctit_seconds: 0,
            max_ctit_hours: 1,
            max_clicks_per_visitor_hour: 1,
            ..AttributionConfig::default()
        };
        let e = Evidence {
            visitor_clicks_hour: Some(2),
            ..evidence(3601)
        };
        let codes: Vec<&str> = findings(&strict, &e)
            .iter()
            .map(|f| f.reason.code())
            .collect();
        assert_eq!(codes, ["click_flooding", "too_many_clicks"]);
        assert!(
            findings(&strict, &evidence(0)).is_empty(),
            "0 turns the CTIT floor off"
        );
    }

    #[test]
    fn verdicts_by_mode() {
        let fired = [Finding {
            reason: Reason::Bot,
            value: "click".into(),
        }];
        let cases = [
            (FraudMode::Off, &fired[..], Verdict::NotEvaluated),
            (FraudMode::Shadow, &[][..], Verdict::Clean),
            (FraudMode::Shadow, &fired[..], Verdict::Suspicious),
            (FraudMode::Flag, &fired[..], Verdict::Flagged),
            (FraudMode::Reject, &[][..], Verdict::Clean),
            (FraudMode::Reject, &fired[..], Verdict::Rejected),
        ];
        for (mode, findings, want) in cases {
            assert_eq!(Verdict::of(mode, findings), want, "{mode:?}");
        }
        for m in FraudMode::ALL {
            assert_eq!(FraudMode::parse(m.as_str()), Some(m));
        }
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.code()), Some(r));
        }
    }
}
