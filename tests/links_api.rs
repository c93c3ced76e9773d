//! The links API: validation errors, tenant isolation, keys, and propagation to other nodes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::*;

/// A call with the key in `X-Api-Key` (the other way the API takes one), or none.
async fn call(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http().request(method, url);
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    answer(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_name_the_field() {
    let env = TestEnv::new();
    let server = env.start().await;
    let t = env.tenant().await;
    let url = format!("{}/v1/links", base(&server));
    let taken = unique("taken");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": taken, "destination": "https://x.example/"}),
    )
    .await;

    // (body, status, error code, field)
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"destination": "ftp://x.example/"}),
            400,
            "invalid_field",
            Some("destination"),
        ),
        (
            json!({"destination": "not a url"}),
            400,
            "invalid_field",
            Some("destination"),
        ),
        (
            json!({"destination": "https://x.example/{bogus}"}),
            400,
            "invalid_field",
            Some("destination"),
        ),
        (
            json!({"destination": "https://x.example/", "ios_destination": "x"}),
            400,
            "invalid_field",
            Some("ios_destination"),
        ),
        (
            json!({"destination": "https://x.example/", "id": "has space"}),
            400,
            "invalid_field",
            Some("id"),
        ),
        (
            json!({"destination": "https://x.example/", "id": "v1"}),
            400,
            "invalid_field",
            Some("id"),
        ),
        (
            json!({"destination": "https://x.example/", "id": "metrics"}),
            400,
            "invalid_field",
            Some("id"),
        ),
        (
            json!({"destination": "https://x.example/", "id": "x".repeat(65)}),
            400,
            "invalid_field",
            Some("id"),
        ),
        (
            json!({"destination": "https://x.example/", "campaign": "c".repeat(300)}),
            400,
            "invalid_field",
            Some("campaign"),
        ),
        (
            json!({"destination": "https://x.example/", "colour": "red"}),
            400,
            "invalid_field",
            Some("colour"),
        ),
        (
            json!({"campaign": "no destination"}),
            400,
            "invalid_field",
            Some("destination"),
        ),
        (
            json!({"destination": 5}),
            400,
            "invalid_field",
            Some("destination"),
        ),
        (
            json!({"destination": "https://x.example/", "paused": "yes"}),
            400,
            "invalid_field",
            Some("paused"),
        ),
        (
            json!({"destination": "https://x.example/", "id": taken}),
            409,
            "id_taken",
            Some("id"),
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, resp) = call(
            reqwest::Method::POST,
            &url,
            Some(&t.secret_key),
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body} -> {resp}");
        assert_eq!(resp["error"]["code"], code, "{body} -> {resp}");
        assert!(resp["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            assert_eq!(resp["error"]["details"]["field"], field, "{body} -> {resp}");
        }
    }
    // Malformed JSON and oversized bodies.
    let resp = http()
        .post(&url)
        .header("x-api-key", &t.secret_key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http()
        .post(&url)
        .header("x-api-key", &t.secret_key)
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // A generated code, and nothing half-stored by the failures above.
    let created = create_link(
        &server,
        &t.secret_key,
        json!({"destination": "https://x.example/gen"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.len() == 8 && sluice::link::valid_code(id), "{id}");
    let (status, list) = call(reqwest::Method::GET, &url, Some(&t.secret_key), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&id) && ids.contains(&taken.as_str()));
    assert!(list["links"][0].get("tenant_id").is_none());

    // PATCH validation and clearing an optional field with null.
    let one = format!("{url}/{taken}");
    let (status, resp) = call(
        reqwest::Method::PATCH,
        &one,
        Some(&t.secret_key),
        Some(json!({"destination": "nope"})),
    )
    .await;
    assert_eq!(
        (status, resp["error"]["details"]["field"].as_str()),
        (400, Some("destination"))
    );
    let (status, resp) = call(
        reqwest::Method::PATCH,
        &one,
        Some(&t.secret_key),
        Some(json!({"ios_destination": "https://a.example/"})),
    )
    .await;
    assert_eq!(
        (status, resp["ios_destination"].as_str()),
        (200, Some("https://a.example/"))
    );
    let (status, resp) = call(
        reqwest::Method::PATCH,
        &one,
        Some(&t.secret_key),
        Some(json!({"ios_destination": null})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(resp.get("ios_destination").is_none(), "{resp}");
    let (status, _) = call(
        reqwest::Method::PUT,
        &one,
        Some(&t.secret_key),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 405);

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let env = TestEnv::new();
    let server = env.start().await;
    let a = env.tenant().await;
    let b = env.tenant().await;
    let code = unique("mine");
    create_link(
        &server,
        &a.secret_key,
        json!({"id": code, "destination": "https://a.example/"}),
    )
    .await;
    let one = format!("{}/v1/links/{code}", base(&server));
    let all = format!("{}/v1/links", base(&server));

    for method in [
        reqwest::Method::GET,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        let body = (method == reqwest::Method::PATCH).then(|| json!({"campaign": "stolen"}));
        let (status, resp) = call(method.clone(), &one, Some(&b.secret_key), body).await;
        assert_eq!(status, 404, "{method} by another tenant: {resp}");
    }
    let (status, list) = call(reqwest::Method::GET, &all, Some(&b.secret_key), None).await;
    assert_eq!((status, list["links"].as_array().unwrap().len()), (200, 0));
    // B cannot take A's code either.
    let (status, _) = call(
        reqwest::Method::POST,
        &all,
        Some(&b.secret_key),
        Some(json!({"id": code, "destination": "https://b.example/"})),
    )
    .await;
    assert_eq!(status, 409);

    // No key, a wrong key, a publishable key.
    let (status, resp) = call(reqwest::Method::GET, &all, None, None).await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    let (status, resp) = call(
        reqwest::Method::GET,
        &all,
        Some("sk_0000000000000000"),
        None,
    )
    .await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, resp) = call(reqwest::Method::GET, &all, Some(&a.publishable_key), None).await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (403, Some("secret_key_required"))
    );

    // A's link is untouched and still redirects.
    let (status, link) = call(reqwest::Method::GET, &one, Some(&a.secret_key), None).await;
    assert_eq!((status, link["campaign"].as_str()), (200, Some("")));
    let resp = http()
        .get(format!("{}/{code}", base(&server)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);

    server.shutdown().await;
}

/// A link created or changed on one node redirects on another within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_other_nodes_within_a_second() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.link_refresh_ms = 250; // the production default
    let node_a = sluice::server::Server::start(config.clone()).await.unwrap();
    let node_b = sluice::server::Server::start(another_node(config, "b"))
        .await
        .unwrap();
    let t = env.tenant().await;
    let code = unique("spread");
    let on_b = format!("{}/{code}", base(&node_b));

    let wait_until = |want: &'static str| {
        let on_b = on_b.clone();
        async move {
            let started = Instant::now();
            loop {
                let resp = http().get(&on_b).send().await.unwrap();
                let loc = resp
                    .headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_string());
                let seen = match resp.status().as_u16() {
                    302 => loc.unwrap_or_default(),
                    s => s.to_string(),
                };
                if seen == want {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "node B still answers {seen}, want {want}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(http().get(&on_b).send().await.unwrap().status(), 404);
    create_link(
        &node_a,
        &t.secret_key,
        json!({"id": code, "destination": "https://one.example/"}),
    )
    .await;
    let created = wait_until("https://one.example/").await;
    let (status, _) = call(
        reqwest::Method::PATCH,
        &format!("{}/v1/links/{code}", base(&node_a)),
        Some(&t.secret_key),
        Some(json!({"destination": "https://two.example/"})),
    )
    .await;
    assert_eq!(status, 200);
    let changed = wait_until("https://two.example/").await;
    assert!(
        created < Duration::from_secs(1) && changed < Duration::from_secs(1),
        "{created:?} {changed:?}"
    );

    node_a.shutdown().await;
    node_b.shutdown().await;
}

/// What a QR code image says, read back with a QR decoder (SVG rasterized first).
fn decode_qr(image: image::DynamicImage) -> String {
    let gray = image.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(gray);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("a readable QR code").1
}

fn rasterize_svg(svg: &[u8]) -> image::DynamicImage {
    let tree = resvg::usvg::Tree::from_data(svg, &resvg::usvg::Options::default()).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let rgba = image::RgbaImage::from_raw(size.width(), size.height(), pixmap.take()).unwrap();
    image::DynamicImage::ImageRgba8(rgba)
}

/// A link's QR code, as SVG and PNG, decodes back to the link's public URL; bad parameters are
/// named; another tenant's link is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_links_qr_code_reads_back_as_its_url() {
    let env = TestEnv::new();
    let mut config = env.config();
    config.public_url = "https://go.example.com".into();
    let server = sluice::server::Server::start(config).await.unwrap();
    let (b, t, other) = (base(&server), env.tenant().await, env.tenant().await);
    let code = unique("qr");
    create_link(
        &server,
        &t.secret_key,
        json!({"id": code, "destination": "https://x.example/"}),
    )
    .await;
    let want = format!("https://go.example.com/{code}");
    let get = |query: &str, key: &str| {
        http()
            .get(format!("{b}/v1/links/{code}/qr{query}"))
            .bearer_auth(key)
            .send()
    };

    let svg = get("", &t.secret_key).await.unwrap();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let image = rasterize_svg(&svg.bytes().await.unwrap());
    assert!(image.width() >= 256, "{}", image.width());
    assert_eq!(decode_qr(image), want);

    let png = get("?format=png&size=512", &t.secret_key).await.unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let image = image::load_from_memory(&png.bytes().await.unwrap()).unwrap();
    assert!(image.width() >= 512 && image.width() == image.height());
    assert_eq!(decode_qr(image), want);

    for (query, field) in [
        ("?format=gif", "format"),
        ("?size=10", "size"),
        ("?size=x", "size"),
    ] {
        let resp = get(query, &t.secret_key).await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["details"]["field"], field, "{query}: {v}");
    }
    assert_eq!(get("", &other.secret_key).await.unwrap().status(), 404);
    let missing = http()
        .get(format!("{b}/v1/links/nope-{code}/qr"))
        .bearer_auth(&t.secret_key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}
