//! CORS end to end: a preflight matrix (origins exact, wildcard and by pattern; methods;
//! requested headers) answered without reaching the upstream, the grant on actual
//! responses, `Vary`, the global rules and a route turning them off, and CORS headers
//! on a reply another filter made (a 401).

use super::config;
use gatehouse_test_support::{TestGateway, Upstream};
use reqwest::header::HeaderMap;

const CORS: &str = r#"[routes.cors]
allow_origins = ["https://app.example.com", "https://*.example.org"]
allow_origin_regex = ['https://[a-z]+\.test']
allow_methods = ["GET", "POST", "DELETE"]
allow_headers = ["content-type", "x-trace"]
expose_headers = ["x-request-id", "x-total"]
allow_credentials = true
max_age = "10m"
"#;

async fn preflight(
    gw: &TestGateway,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> (u16, HeaderMap) {
    let mut req = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gw.url("web", "/items"))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.headers().clone())
}

#[tokio::test]
async fn preflights_are_answered_here_by_the_matrix() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&config(up.addr, CORS, "")).await;
    // (origin, method, requested headers) -> allowed
    let matrix = [
        (
            "https://app.example.com",
            "POST",
            Some("content-type"),
            true,
        ),
        (
            "https://app.example.com",
            "DELETE",
            Some("Content-Type, X-Trace"),
            true,
        ),
        ("https://app.example.com", "GET", None, true),
        ("https://eu.shop.example.org", "GET", None, true),
        ("https://ci.test", "POST", Some("x-trace"), true),
        ("https://app.example.com", "PUT", None, false),
        ("https://app.example.com", "POST", Some("x-secret"), false),
        ("https://evil.com", "GET", None, false),
        ("https://example.org", "GET", None, false),
        ("http://app.example.com", "GET", None, false),
        ("https://ci.test.evil.com", "GET", None, false),
        ("null", "GET", None, false),
    ];
    for (origin, method, headers, allowed) in matrix {
        let (status, h) = preflight(&gw, origin, method, headers).await;
        let case = format!("{origin} {method} {headers:?}");
        if allowed {
            assert_eq!(status, 204, "{case}");
            assert_eq!(h["access-control-allow-origin"], origin, "{case}");
            assert_eq!(h["access-control-allow-credentials"], "true", "{case}");
            assert_eq!(
                h["access-control-allow-methods"], "GET, POST, DELETE",
                "{case}"
            );
            assert_eq!(
                h["access-control-allow-headers"], "content-type, x-trace",
                "{case}"
            );
            assert_eq!(h["access-control-max-age"], "600", "{case}");
        } else {
            assert_eq!(status, 403, "{case}");
            assert!(!h.contains_key("access-control-allow-origin"), "{case}");
            assert!(!h.contains_key("access-control-allow-methods"), "{case}");
        }
        let vary = h["vary"].to_str().unwrap();
        assert!(vary.contains("Origin"), "{case}: {vary}");
    }
    assert_eq!(up.count(), 0, "no preflight reached the upstream");
}

#[tokio::test]
async fn actual_responses_carry_the_grant_for_allowed_origins_only() {
    // The upstream sends CORS headers of its own: the gateway's policy replaces them.
    let up = Upstream::start(Default::default(), |_req| async {
        http::Response::builder()
            .header("access-control-allow-origin", "*")
            .header("vary", "Accept-Encoding")
            .body(gatehouse_test_support::upstream::full("ok"))
            .unwrap()
    })
    .await;
    let gw = TestGateway::start(&config(up.addr, CORS, "")).await;
    let c = reqwest::Client::new();
    let get = |origin: &'static str| {
        c.get(gw.url("web", "/items"))
            .header("origin", origin)
            .send()
    };
    let ok = get("https://app.example.com").await.unwrap();
    assert_eq!(ok.status(), 200);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-expose-headers"], "x-request-id, x-total");
    let vary: Vec<_> = h
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);

    let refused = get("https://evil.com").await.unwrap();
    assert_eq!(
        refused.status(),
        200,
        "CORS never refuses an actual request: the browser does"
    );
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-origin"));
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-credentials"));
    // A request with no Origin is not a CORS request; it still varies by Origin.
    let plain = c.get(gw.url("web", "/items")).send().await.unwrap();
    assert!(!plain.headers().contains_key("access-control-allow-origin"));
    assert!(plain
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v == "Origin"));
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn any_origin_gets_a_star_and_no_vary() {
    let up = Upstream::fixed("ok").await;
    let extra = r#"cors = { allow_origins = ["*"], allow_headers = ["*"] }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let (status, h) = preflight(&gw, "https://any.where", "PATCH", Some("x-one, x-two")).await;
    assert_eq!(status, 204);
    assert_eq!(h["access-control-allow-origin"], "*");
    // `*` in allow_headers grants what was asked.
    assert_eq!(h["access-control-allow-headers"], "x-one, x-two");
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/"))
        .header("origin", "https://any.where")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(!resp.headers().contains_key("vary"));
}

#[tokio::test]
async fn a_preflight_matches_the_route_of_the_method_it_asks_about() {
    let up = Upstream::fixed("ok").await;
    let route = format!("match = {{ method = \"POST\" }}\n{CORS}");
    let gw = TestGateway::start(&config(up.addr, &route, "")).await;
    let (status, h) = preflight(&gw, "https://app.example.com", "POST", None).await;
    assert_eq!(status, 204);
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    // A plain OPTIONS matches no route limited to POST.
    let plain = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gw.url("web", "/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 404);
}

#[tokio::test]
async fn a_refusal_by_a_later_filter_still_carries_the_grant() {
    let up = Upstream::fixed("ok").await;
    let cfg = config(
        up.addr,
        &format!("auth = {{ methods = [\"api_key\"] }}\n{CORS}"),
        "",
    ) + "\n[[consumers]]\nname = \"acme\"\napi_keys = [\"k-1\"]\n";
    let gw = TestGateway::start(&cfg).await;
    let c = reqwest::Client::new();
    // The preflight carries no credential and is answered before auth runs.
    let (status, _) = preflight(&gw, "https://app.example.com", "GET", Some("x-trace")).await;
    assert_eq!(status, 204);
    let denied = c
        .get(gw.url("web", "/items"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let ok = c
        .get(gw.url("web", "/items"))
        .header("origin", "https://app.example.com")
        .header("x-api-key", "k-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn an_upstream_that_is_down_still_gets_its_502_read_by_the_browser() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&config(up.addr, CORS, "")).await;
    up.kill();
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/items"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(
        resp.headers()["access-control-expose-headers"],
        "x-request-id, x-total"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 502);
}

#[tokio::test]
async fn global_rules_apply_to_every_route_unless_one_turns_them_off() {
    let up = Upstream::fixed("ok").await;
    let cfg = format!(
        r#"
[cors]
allow_origins = ["https://app.example.com"]

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "private"
match = {{ prefix = "/private" }}
upstream = "backend"
cors = false

[[routes]]
name = "api"
upstream = "backend"

[[upstreams]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr
    );
    let gw = TestGateway::start(&cfg).await;
    let (status, h) = preflight(&gw, "https://app.example.com", "GET", None).await;
    assert_eq!(status, 204);
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    // On the route without CORS the preflight is the upstream's to answer.
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gw.url("web", "/private/x"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_refused_preflight_gets_the_configured_status() {
    let up = Upstream::fixed("ok").await;
    let extra =
        r#"cors = { allow_origins = ["https://app.example.com"], preflight_refusal = 204 }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let (status, h) = preflight(&gw, "https://evil.com", "GET", None).await;
    assert_eq!(status, 204);
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(up.count(), 0);
}
