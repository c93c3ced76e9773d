//! User-agent classification: woothee for browser / OS / category, plus the link-preview
//! unfurlers and bot tokens woothee does not know. Parses are cached by the caller.

/// Tokens of link-preview fetchers (chat apps and social networks unfurling a pasted link).
const UNFURLERS: &[&str] = &[
    "facebookexternalhit",
    "facebookcatalog",
    "slackbot-linkexpanding",
    "slack-imgproxy",
    "twitterbot",
    "whatsapp",
    "telegrambot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "iframely",
    "embedly",
    "pinterestbot",
    "redditbot",
    "applebot",
    "snapchat",
    "viber",
    "mastodon",
    "google-pagerenderer",
    "vkshare",
];

/// Tokens that mark automated clients woothee may miss.
const BOTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "scrapy",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "httpclient",
    "axios",
    "node-fetch",
    "lighthouse",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub browser: Box<str>,
    pub os: Box<str>,
    pub os_version: Box<str>,
    /// woothee's category: pc, smartphone, mobilephone, appliance, crawler, misc, UNKNOWN.
    pub device: &'static str,
    pub is_bot: bool,
    pub is_unfurler: bool,
}

pub fn classify(ua: &str) -> Agent {
    let lower = ua.to_ascii_lowercase();
    let is_unfurler = UNFURLERS.iter().any(|t| lower.contains(t));
    let parsed = woothee::parser::Parser::new().parse(ua);
    let (browser, os, os_version, device) = match &parsed {
        Some(r) => (
            r.name,
            r.os,
            r.os_version.as_ref(),
            static_category(r.category),
        ),
        None => ("UNKNOWN", "UNKNOWN", "UNKNOWN", "UNKNOWN"),
    };
    let is_bot = !is_unfurler
        && (ua.trim().is_empty() || device == "crawler" || BOTS.iter().any(|t| lower.contains(t)));
    Agent {
        browser: browser.into(),
        os: os.into(),
        os_version: os_version.into(),
        device,
        is_bot,
        is_unfurler,
    }
}

/// The OS family routing rules name (`link::routing::OS_FAMILIES`) for woothee's OS name.
pub fn os_family(os: &str) -> &'static str {
    match os {
        "Android" => "android",
        "Mac OSX" | "Mac OS Classic" => "macos",
        "ChromeOS" => "chromeos",
        "Linux" => "linux",
        os if os.starts_with("iP") || os == "iOS" => "ios",
        os if os.starts_with("Windows") => "windows",
        _ => "other",
    }
}

/// `mobile`, `tablet` or `desktop` (routing's device classes), or empty for anything else
/// (crawlers, appliances, unknown agents). woothee calls tablets smartphones: an iPad, or an
/// Android agent without `Mobile`, is a tablet.
pub fn device_class(ua: &str, category: &str) -> &'static str {
    match category {
        "smartphone" | "mobilephone" => {
            let android_tablet = ua.contains("Android") && !ua.contains("Mobile");
            if ua.contains("iPad") || ua.contains("Tablet") || android_tablet {
                "tablet"
            } else {
                "mobile"
            }
        }
        "pc" => "desktop",
        _ => "",
    }
}

fn static_category(c: &str) -> &'static str {
    match c {
        "pc" => "pc",
        "smartphone" => "smartphone",
        "mobilephone" => "mobilephone",
        "appliance" => "appliance",
        "crawler" => "crawler",
        "misc" => "misc",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        // (ua, browser, os, device, bot, unfurler)
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                "Safari", "iPhone", "smartphone", false, false,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                "Chrome", "Android", "smartphone", false, false,
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Chrome", "Windows 10", "pc", false, false,
            ),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "UNKNOWN", "crawler", true, false),
            ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "misc crawler", "UNKNOWN", "crawler", false, true),
            ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "facebook", "UNKNOWN", "crawler", false, true),
            ("WhatsApp/2.23.20.0 A", "UNKNOWN", "UNKNOWN", "UNKNOWN", false, true),
            ("python-requests/2.31.0", "UNKNOWN", "UNKNOWN", "UNKNOWN", true, false),
            ("", "UNKNOWN", "UNKNOWN", "UNKNOWN", true, false),
        ];
        for (ua, browser, os, device, bot, unfurler) in cases {
            let a = classify(ua);
            assert_eq!(&*a.browser, browser, "browser of {ua}");
            assert_eq!(&*a.os, os, "os of {ua}");
            assert_eq!(a.device, device, "device of {ua}");
            assert_eq!(a.is_bot, bot, "bot flag of {ua}");
            assert_eq!(a.is_unfurler, unfurler, "unfurler flag of {ua}");
        }
    }

    #[test]
    fn families_and_device_classes() {
        // (ua, os family, device class)
        let cases = [
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "ios", "mobile"),
            ("Mozilla/5.0 (iPad; CPU OS 16_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.1 Mobile/15E148 Safari/604.1", "ios", "tablet"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "android", "mobile"),
            ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "android", "tablet"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "windows", "desktop"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", "macos", "desktop"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "linux", "desktop"),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "other", ""),
        ];
        for (ua, family, device) in cases {
            let a = classify(ua);
            assert_eq!(os_family(&a.os), family, "os family of {ua}");
            assert_eq!(device_class(ua, a.device), device, "device class of {ua}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fuzz_classify_never_panics(ua in ".{0,600}") {
            let a = classify(&ua);
            proptest::prop_assert!(!(a.is_bot && a.is_unfurler));
        }
    }
}
