//! Auth that asks other services, end to end against real servers on ephemeral ports:
//! OAuth 2.0 token introspection (RFC 7662: client credentials, active/inactive, `exp`,
//! scopes and client, the answer cache, down -> 503 or fail-open) and external
//! authorization (what the auth service is told, its 2xx headers copied on, its refusal
//! passed back as sent, down -> 503 or fail-open).

use crate::*;
use base64::Engine as _;
use gatehouse_test_support::tokens::now;
use gatehouse_test_support::upstream::{full, UpstreamOptions};
use gatehouse_test_support::{TestGateway, Upstream};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An introspection endpoint that wants `gw:s3cret` and knows three tokens.
async fn introspection_server() -> (Upstream, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let up = Upstream::start(UpstreamOptions::default(), move |req| {
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("gw:s3cret"));
            let authorized = req.headers().get("authorization").is_some_and(|v| v == want.as_str());
            let form = req.headers().get("content-type").is_some_and(|v| v == "application/x-www-form-urlencoded");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if !authorized || !form {
                let mut r = http::Response::new(full("{\"error\":\"invalid_client\"}"));
                *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                return r;
            }
            let token: String = form_urlencoded::parse(&body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let answer = match token.as_str() {
                "opaque/good+token=" => serde_json::json!({"active": true, "scope": "orders:read", "client_id": "acme-app", "exp": now() + 600}),
                "no-scope" => serde_json::json!({"active": true, "client_id": "acme-app"}),
                "expired" => serde_json::json!({"active": true, "exp": now() - 10}),
                _ => serde_json::json!({"active": false}),
            };
            http::Response::new(full(answer.to_string()))
        }
    })
    .await;
    (up, calls)
}

fn introspection_config(backend: SocketAddr, server: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[consumers]]
name = "acme"
jwt_subjects = ["acme-app"]

[[jwt_providers]]
name = "local"
keys = [{{ kid = "k", alg = "HS256", secret = "a-long-enough-hmac-secret-for-hs256!" }}]

[[introspection]]
name = "as"
upstream = "as"
path = "/oauth2/introspect"
client_id = "gw"
client_secret = "s3cret"

[[introspection]]
name = "dead"
upstream = "dead"
client_id = "gw"
client_secret = "env:GATEHOUSE_TEST_INTROSPECTION_SECRET"
fail_open = true

[[routes]]
name = "orders"
match = {{ prefix = "/orders" }}
upstream = "backend"
auth = {{ methods = ["jwt", "introspection"], introspection = "as", jwt = "local", scopes = ["orders:read"], consumer_header = "X-Consumer" }}

[[routes]]
name = "lenient"
match = {{ prefix = "/lenient" }}
upstream = "backend"
auth = {{ methods = ["introspection"], introspection = "dead" }}

[[routes]]
name = "any"
upstream = "backend"
auth = {{ methods = ["introspection"], introspection = "as" }}

[[upstreams]]
name = "backend"
endpoints = ["{backend}"]

[[upstreams]]
name = "as"
endpoints = ["{server}"]

[[upstreams]]
name = "dead"
endpoints = ["{dead}"]
"#
    )
}

#[tokio::test]
async fn introspection_honours_active_exp_scope_and_caches() {
    // The only test that reads this variable; set before the gateway starts.
    std::env::set_var("GATEHOUSE_TEST_INTROSPECTION_SECRET", "unused");
    let backend = Upstream::fixed("ok").await;
    let (server, calls) = introspection_server().await;
    let gw = TestGateway::start(&introspection_config(
        backend.addr,
        server.addr,
        dead_addr().await,
    ))
    .await;
    let c = reqwest::Client::new();
    let status = |path: &str, token: &str| {
        let req = c.get(gw.url("web", path)).bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    // An opaque token (no JWT) falls through to introspection; client credentials and
    // form encoding are right, or the server would refuse.
    let r = status("/orders", "opaque/good+token=").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        backend.last().headers["x-consumer"],
        "acme",
        "the consumer named by client_id"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(status("/orders", "opaque/good+token=").await.status(), 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "an active answer is cached"
    );

    let r = status("/orders", "no-scope").await;
    assert_eq!(
        r.status(),
        403,
        "the scope comes from the introspection answer"
    );
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    for t in ["revoked", "expired"] {
        let r = status("/any", t).await;
        assert_eq!(r.status(), 401, "{t}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
    }
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(status("/any", "revoked").await.status(), 401);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "an inactive answer is cached briefly"
    );

    // A JWT the gateway can verify itself never reaches the endpoint.
    let key = gatehouse_test_support::tokens::SigningKey::hmac(
        "k",
        jsonwebtoken::Algorithm::HS256,
        b"a-long-enough-hmac-secret-for-hs256!",
    );
    let jwt = key
        .sign(&serde_json::json!({"sub": "acme-app", "exp": now() + 60, "scope": "orders:read"}));
    assert_eq!(status("/orders", &jwt).await.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), before);

    // The endpoint down: 503, or through with fail_open.
    server.kill();
    let r = status("/any", "never-seen").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "auth_unavailable");
    assert_eq!(
        status("/lenient", "whatever").await.status(),
        200,
        "fail_open"
    );
    assert_eq!(
        status("/orders", "opaque/good+token=").await.status(),
        200,
        "still cached while down"
    );
}

/// An auth service: `x-token: let-me-in` passes (with `x-user-id`), `/login-first`
/// redirects, anything else is refused with a body and a header of its own. It records
/// what it was told.
async fn auth_service() -> Upstream {
    Upstream::start(UpstreamOptions::default(), |req| async move {
        let h = req.headers();
        let uri = h
            .get("x-forwarded-uri")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        if h.get("x-token").is_some_and(|v| v == "let-me-in") {
            let mut r = http::Response::new(full(""));
            r.headers_mut()
                .insert("x-user-id", http::HeaderValue::from_static("42"));
            r.headers_mut()
                .insert("x-internal", http::HeaderValue::from_static("not copied"));
            return r;
        }
        let mut r = if uri.ends_with("/login-first") {
            let mut r = http::Response::new(full(""));
            *r.status_mut() = http::StatusCode::FOUND;
            r.headers_mut()
                .insert("location", http::HeaderValue::from_static("/login"));
            r
        } else {
            let mut r = http::Response::new(full("nope"));
            *r.status_mut() = http::StatusCode::FORBIDDEN;
            r.headers_mut()
                .insert("x-reason", http::HeaderValue::from_static("no token"));
            r
        };
        r.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-store"));
        r
    })
    .await
}

#[tokio::test]
async fn external_auth_allows_refuses_and_fails_as_configured() {
    let backend = Upstream::fixed("ok").await;
    let authz = auth_service().await;
    let (silent, _task) = silent_upstream().await;
    let text = format!(
        r#"
[global]
trusted_proxies = ["127.0.0.1"]

[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "slow"
match = {{ prefix = "/slow" }}
upstream = "backend"
external_auth = {{ upstream = "silent", timeout = "300ms" }}

[[routes]]
name = "lenient"
match = {{ prefix = "/lenient" }}
upstream = "backend"
external_auth = {{ upstream = "silent", timeout = "300ms", fail_open = true }}

[[routes]]
name = "app"
upstream = "backend"
strip_prefix = "/app"
match = {{ prefix = "/app" }}
external_auth = {{ upstream = "authz", path = "/check?svc=app", headers = ["x-token", "cookie"], copy_headers = ["x-user-id"] }}

[[upstreams]]
name = "backend"
endpoints = ["{}"]

[[upstreams]]
name = "authz"
endpoints = ["{}"]

[[upstreams]]
name = "silent"
endpoints = ["{silent}"]
"#,
        backend.addr, authz.addr
    );
    let gw = TestGateway::start(&text).await;
    let c = reqwest::Client::new();

    let r = c
        .post(gw.url("web", "/app/items?id=7"))
        .header("x-token", "let-me-in")
        .header("x-user-id", "spoofed")
        .header("x-forwarded-for", "10.1.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let up = backend.last();
    assert_eq!(
        up.headers["x-user-id"], "42",
        "the answer's header replaces the client's"
    );
    assert!(
        !up.headers.contains_key("x-internal"),
        "only copy_headers are copied"
    );
    assert_eq!(
        up.uri.path(),
        "/items",
        "the upstream still gets the rewritten path"
    );
    let asked = authz.last();
    assert_eq!(asked.method, http::Method::GET);
    assert_eq!(
        asked.uri.path_and_query().unwrap().as_str(),
        "/check?svc=app"
    );
    assert_eq!(asked.headers["x-forwarded-method"], "POST");
    assert_eq!(
        asked.headers["x-forwarded-uri"], "/app/items?id=7",
        "the URI as the client sent it"
    );
    assert_eq!(
        asked.headers["x-forwarded-for"], "10.1.1.1",
        "the client after trusted forwarding"
    );
    assert!(asked.headers["x-forwarded-host"]
        .to_str()
        .unwrap()
        .starts_with("127.0.0.1"));
    assert_eq!(asked.headers["x-token"], "let-me-in");

    let r = c.get(gw.url("web", "/app/x")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-reason"], "no token");
    assert_eq!(
        r.text().await.unwrap(),
        "nope",
        "the refusal as the service sent it"
    );
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = manual
        .get(gw.url("web", "/app/login-first"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/login");
    let before = backend.count();

    let r = c.get(gw.url("web", "/slow")).send().await.unwrap();
    assert_eq!(r.status(), 503, "no answer in time");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "auth_unavailable");
    assert_eq!(
        backend.count(),
        before,
        "refused requests never reached the upstream"
    );
    assert_eq!(
        c.get(gw.url("web", "/lenient"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "fail_open"
    );
    authz.kill();
    assert_eq!(
        c.get(gw.url("web", "/app/x"))
            .header("x-token", "let-me-in")
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
}

/// What an auth service was sent: method, body, `X-Forwarded-Body-Truncated`.
type Asked = Arc<std::sync::Mutex<Vec<(String, String, Option<String>)>>>;

#[tokio::test]
async fn external_auth_may_judge_the_request_body() {
    let backend = echo().await;
    // Refuses a transfer over 1000; records each body and truncation flag it was sent.
    let seen: Asked = Default::default();
    let record = seen.clone();
    let authz = Upstream::start(UpstreamOptions::default(), move |req| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            let truncated = parts
                .headers
                .get("x-forwarded-body-truncated")
                .map(|v| v.to_str().unwrap().to_string());
            record
                .lock()
                .unwrap()
                .push((parts.method.to_string(), text.clone(), truncated));
            let amount: u64 = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["amount"].as_u64())
                .unwrap_or(0);
            let mut r = http::Response::new(full(if amount > 1000 { "too much" } else { "" }));
            if amount > 1000 {
                *r.status_mut() = http::StatusCode::FORBIDDEN;
            }
            r
        }
    })
    .await;
    let route = format!(
        "external_auth = {{ upstream = \"authz\", body_limit = \"64B\" }}\n\n[[upstreams]]\nname = \"authz\"\nendpoints = [\"{}\"]",
        authz.addr
    );
    let gw = TestGateway::start(&config(backend.addr, &route, "")).await;
    let c = reqwest::Client::new();
    let pay = |body: String| {
        c.post(gw.url("web", "/pay"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let ok = pay(r#"{"amount": 20}"#.into()).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.text().await.unwrap(),
        r#"{"amount": 20}"#,
        "the upstream gets the whole body"
    );
    let refused = pay(r#"{"amount": 5000}"#.into()).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.text().await.unwrap(), "too much");
    // Past the limit the service gets the first 64 bytes and is told so; the upstream
    // still gets all of it.
    let long = format!(r#"{{"amount": 20, "note": "{}"}}"#, "n".repeat(200));
    let resp = pay(long.clone()).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), long);
    // A request without a body is asked about as before.
    assert_eq!(
        c.get(gw.url("web", "/pay")).send().await.unwrap().status(),
        200
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0], ("POST".into(), r#"{"amount": 20}"#.into(), None));
    assert_eq!(seen[2].1, long[..64]);
    assert_eq!(seen[2].2.as_deref(), Some("true"));
    assert_eq!(seen[3], ("GET".into(), String::new(), None));
    assert_eq!(
        backend.count(),
        3,
        "the refused request never went upstream"
    );
}
