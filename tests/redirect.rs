//! The redirect against a real server, ClickHouse and Redis: macros, platforms, 404/410,
//! previews, bots, geo and user-agent enrichment.

use std::time::Duration;

use serde_json::json;
use sluice_testkit::*;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
const DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .expect("location header")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_end_to_end() {
    let env = TestEnv::new();
    let server = env.start().await;
    let tenant = env.tenant().await;
    let code = unique("promo");
    create_link(
        &server,
        &tenant.secret_key,
        json!({
            "id": code,
            "destination": "https://shop.example/p?cid={click_id}&pcid={partner_click_id}&s1={sub1}&s2={sub2}&c={campaign}&cc={country}",
            "ios_destination": "https://apps.apple.com/app/id42?ct={click_id}",
            "android_destination": "https://play.google.com/store/apps/details?id=x&referrer=click_id%3D{click_id}",
            "campaign": "Spring Sale",
            "source": "fb",
            "medium": "cpc"
        }),
    )
    .await;
    let c = http();
    let url = format!("{}/{code}", base(&server));

    // Macros with characters that need encoding; country from the trusted X-Forwarded-For.
    let resp = c
        .get(format!("{url}?click_id=a%20b%26c&sub1=x%2Fy&sub2=%C3%BC+z"))
        .header("user-agent", DESKTOP)
        .header("x-forwarded-for", "81.2.69.160")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let loc = location(&resp);
    let (prefix, rest) = loc.split_once("cid=").unwrap();
    assert_eq!(prefix, "https://shop.example/p?");
    let click_id = &rest[..36];
    assert_eq!(
        &rest[36..],
        "&pcid=a%20b%26c&s1=x%2Fy&s2=%C3%BC%20z&c=Spring%20Sale&cc=GB",
        "macros expanded and URL-encoded"
    );

    // Platform destinations.
    let ios = c
        .get(&url)
        .header("user-agent", IPHONE)
        .send()
        .await
        .unwrap();
    assert!(
        location(&ios).starts_with("https://apps.apple.com/app/id42?ct="),
        "{}",
        location(&ios)
    );
    let android = c
        .get(&url)
        .header("user-agent", ANDROID)
        .send()
        .await
        .unwrap();
    assert!(location(&android)
        .starts_with("https://play.google.com/store/apps/details?id=x&referrer=click_id%3D"));

    // HEAD is a preview, a crawler is a bot, an unfurler is a preview: all still redirected.
    let head = c
        .head(&url)
        .header("user-agent", DESKTOP)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);
    let bot = c
        .get(&url)
        .header("user-agent", GOOGLEBOT)
        .send()
        .await
        .unwrap();
    assert_eq!(bot.status(), 302);
    let slack = c
        .get(&url)
        .header("user-agent", SLACK)
        .send()
        .await
        .unwrap();
    assert_eq!(slack.status(), 302);

    // Unknown code: 404 and nothing recorded.
    let missing = c
        .get(format!("{}/{}", base(&server), unique("nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "link_not_found");

    let rows = env
        .wait_for("SELECT count() FROM clicks", 6, Duration::from_secs(20))
        .await;
    assert_eq!(rows, 6);
    let first = env
        .ch(&format!(
            "SELECT link_id, campaign, source, medium, partner_click_id, sub1, sub2, country, region, city, \
             browser, os, device, platform, is_bot, is_preview, tenant_id \
             FROM clicks WHERE lower(hex(click_id)) = '{}' FORMAT TSV",
            click_id.replace('-', "")
        ))
        .await;
    assert_eq!(
        first.trim_end(),
        format!("{code}\tSpring Sale\tfb\tcpc\ta b&c\tx/y\tü z\tGB\tENG\tLondon\tChrome\tWindows 10\tpc\tother\t0\t0\t{}", tenant.tenant_id)
    );
    let flags = env.ch("SELECT platform, is_bot, is_preview, count() FROM clicks GROUP BY platform, is_bot, is_preview ORDER BY platform, is_bot, is_preview FORMAT TSV").await;
    // other: 1 human desktop, 1 HEAD preview + 1 Slack preview, 1 Googlebot
    assert_eq!(
        flags,
        "android\t0\t0\t1\nios\t0\t0\t1\nother\t0\t0\t1\nother\t0\t1\t2\nother\t1\t0\t1\n"
    );

    // Pause with a fallback: 302 to the fallback, no click. Delete: 410, no click.
    let patch = c
        .patch(format!("{}/v1/links/{code}", base(&server)))
        .bearer_auth(&tenant.secret_key)
        .json(&json!({"paused": true, "fallback_url": "https://shop.example/paused?l={link_id}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200);
    let paused = c.get(&url).send().await.unwrap();
    assert_eq!(
        location(&paused),
        format!("https://shop.example/paused?l={code}")
    );
    let del = c
        .delete(format!("{}/v1/links/{code}", base(&server)))
        .bearer_auth(&tenant.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let gone = c.get(&url).send().await.unwrap();
    assert_eq!(gone.status(), 302, "deleted link keeps its fallback");
    let get = c
        .get(format!("{}/v1/links/{code}", base(&server)))
        .bearer_auth(&tenant.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404, "deleted link is gone from the API");

    let code2 = unique("plain");
    create_link(
        &server,
        &tenant.secret_key,
        json!({"id": code2, "destination": "https://x.example/"}),
    )
    .await;
    c.delete(format!("{}/v1/links/{code2}", base(&server)))
        .bearer_auth(&tenant.secret_key)
        .send()
        .await
        .unwrap();
    let gone = c
        .get(format!("{}/{code2}", base(&server)))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);

    let report = server.shutdown().await;
    assert_eq!(report.lost_rows, 0);
    assert_eq!(
        env.ch_u64("SELECT count() FROM clicks").await,
        6,
        "fallback and 410 record nothing"
    );
}

/// Sends `requests` down one raw connection at once (pipelined) and reads until the server
/// closes it.
async fn exchange(server: &sluice::server::Server, requests: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(requests.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after `Connection: close`")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

/// Status lines and `location`s of the responses in `answer`, in order.
fn statuses(answer: &str) -> Vec<String> {
    // A JSON body ends without a newline: the next status line follows on its line.
    answer
        .replace("HTTP/1.1 ", "\nHTTP/1.1 ")
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 ") || l.to_ascii_lowercase().starts_with("location: "))
        .map(|l| l.split_once("cid=").map_or(l, |(head, _)| head).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_redirects_and_other_requests() {
    let env = TestEnv::new();
    let server = env.start().await;
    let tenant = env.tenant().await;
    let code = unique("conn");
    create_link(
        &server,
        &tenant.secret_key,
        json!({"id": code, "destination": "https://shop.example/?cid={click_id}"}),
    )
    .await;
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");

    // Redirects answered off the socket, pipelined, then a request for hyper (the rest of
    // the connection is hyper's, redirects included), then the client's close.
    let answer = exchange(
        &server,
        &[
            get(&format!("/{code}?sub1=a"), ""),
            format!("HEAD /{code} HTTP/1.1\r\nHost: x\r\n\r\n"),
            get(&format!("/{}", unique("missing")), ""),
            get("/healthz", ""),
            get(&format!("/{code}"), "Connection: close\r\n"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        statuses(&answer),
        [
            "HTTP/1.1 302 Found",
            "location: https://shop.example/?",
            "HTTP/1.1 302 Found",
            "location: https://shop.example/?",
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 302 Found",
            "location: https://shop.example/?",
        ],
        "{answer}"
    );
    assert!(
        answer.contains(r#"{"error":{"code":"link_not_found""#),
        "{answer}"
    );
    assert_eq!(answer.matches("date: ").count(), 5, "{answer}");

    // Closed after the redirect the client asked to close with; HEAD has no body, the 404
    // says how long its body is.
    let answer = exchange(
        &server,
        &[
            format!("HEAD /{} HTTP/1.1\r\nHost: x\r\n\r\n", unique("missing")),
            get(&format!("/{code}"), "Connection: close\r\n"),
            get(&format!("/{code}"), ""),
        ]
        .concat(),
    )
    .await;
    assert_eq!(
        statuses(&answer),
        [
            "HTTP/1.1 404 Not Found",
            "HTTP/1.1 302 Found",
            "location: https://shop.example/?"
        ],
        "{answer}"
    );
    assert!(!answer.contains("link_not_found"), "{answer}");
    let not_found = r#"{"error":{"code":"link_not_found","message":"no link has this code"}}"#;
    assert!(
        answer.contains(&format!("content-length: {}\r\n", not_found.len())),
        "{answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");

    // A redirect carrying a body is read by hyper; a request head cut in two still parses.
    let answer = exchange(
        &server,
        &format!(
            "GET /{code} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /{code} HTTP/1.1\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(statuses(&answer).len(), 4, "{answer}");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(format!("GET /{code} HTTP/1.1\r\nUser-Ag").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        conn.write_all(b"ent: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 302 Found\r\n"), "{answer}");
    }

    // Every redirect to the live link was recorded once: 3 + 1 + 2 + 1.
    let rows = env
        .wait_for("SELECT count() FROM clicks", 7, Duration::from_secs(20))
        .await;
    assert_eq!(rows, 7);
    assert_eq!(server.shutdown().await.lost_rows, 0);
}

/// `expires_at`: before it the link redirects and counts; from it on the link answers as a
/// paused one (410, or its fallback), counting nothing; cleared, it redirects again. A time
/// that is not RFC 3339 is refused, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_expires_at_its_time() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let c = http();
    let b = base(&server);
    let status = |url: String| {
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    let at = sluice::time::rfc3339_from_ms;

    // Expires in 2 s: one click before, none after.
    let code = unique("expiring");
    let expires = sluice::time::now_ms() + 2_000;
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/", "expires_at": at(expires)}),
    )
    .await;
    assert_eq!(status(format!("{b}/{code}")).await, 302);
    tokio::time::sleep(Duration::from_millis(
        (expires + 50).saturating_sub(sluice::time::now_ms()),
    ))
    .await;
    assert_eq!(status(format!("{b}/{code}")).await, 410);
    let clicks = format!("SELECT count() FROM clicks WHERE link_id = '{code}'");
    assert_eq!(env.wait_for(&clicks, 1, Duration::from_secs(10)).await, 1);

    // Cleared: it redirects again.
    let (s, v) = api(
        reqwest::Method::PATCH,
        &format!("{b}/v1/links/{code}"),
        &t.secret_key,
        Some(json!({"expires_at": null})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("expires_at").is_none(), "{v}");
    eventually(
        "the cleared expiry applies",
        Duration::from_secs(5),
        || async { status(format!("{b}/{code}")).await == 302 },
    )
    .await;

    // Expired, with a fallback: 302 to the fallback.
    let code = unique("expired");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/", "fallback_url": "https://shop.example/over",
               "expires_at": at(sluice::time::now_ms() - 1_000)}),
    )
    .await;
    let resp = c.get(format!("{b}/{code}")).send().await.unwrap();
    assert_eq!(location(&resp), "https://shop.example/over");

    for bad in ["tomorrow", "2027-13-01T00:00:00Z", ""] {
        let (s, v) = api(
            reqwest::Method::POST,
            &format!("{b}/v1/links"),
            &t.secret_key,
            Some(json!({"destination": "https://x.example/", "expires_at": bad})),
        )
        .await;
        assert_eq!(
            (s, v["error"]["details"]["field"].as_str()),
            (400, Some("expires_at")),
            "{bad}: {v}"
        );
    }
    server.shutdown().await;
}
