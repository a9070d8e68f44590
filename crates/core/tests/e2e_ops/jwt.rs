//! JWT routes end to end against a real key server on an ephemeral port: the key set
//! fetched through an ordinary upstream, a rotation accepted on the first token that
//! names the new key, the old key refused after it, a flood of unknown kids costing the
//! issuer no extra fetch, the last good set kept while the server fails, OIDC discovery,
//! claims to headers, consumers by subject, scopes, and the RFC 6750 challenges.

use crate::*;
use gatehouse_test_support::tokens::{jwks, now, SigningKey};
use gatehouse_test_support::upstream::{full, UpstreamOptions};
use gatehouse_test_support::{TestGateway, Upstream};
use jsonwebtoken::{Algorithm, Header};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const ISS: &str = "https://idp.test";

/// A key server: serves `doc` at `/keys` (or 500 when `failing`), counts fetches, and
/// serves an OpenID configuration that points at `/keys`.
struct KeyServer {
    up: Upstream,
    doc: Arc<Mutex<String>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

async fn key_server(doc: String) -> KeyServer {
    key_server_with(doc, UpstreamOptions::default()).await
}

async fn key_server_with(doc: String, opts: UpstreamOptions) -> KeyServer {
    let doc = Arc::new(Mutex::new(doc));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, f, n) = (doc.clone(), failing.clone(), fetches.clone());
    let up = Upstream::start(opts, move |req| {
        let (d, f, n) = (d.clone(), f.clone(), n.clone());
        async move {
            let path = req.uri().path().to_string();
            if path == "/.well-known/openid-configuration" {
                let body =
                    serde_json::json!({"issuer": ISS, "jwks_uri": "http://idp.test/keys?v=1"});
                return http::Response::new(full(body.to_string()));
            }
            n.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                let mut r = http::Response::new(full("down"));
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return r;
            }
            let mut r = http::Response::new(full(d.lock().unwrap().clone()));
            r.headers_mut().insert(
                "cache-control",
                http::HeaderValue::from_static("max-age=3600"),
            );
            r
        }
    })
    .await;
    KeyServer {
        up,
        doc,
        failing,
        fetches,
    }
}

fn config(backend: SocketAddr, idp: SocketAddr, provider_extra: &str) -> String {
    format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[consumers]]
name = "alice-co"
jwt_subjects = ["alice"]

[[jwt_providers]]
name = "idp"
issuer = "{ISS}"
audiences = ["api"]
jwks_upstream = "idp"
claims_to_headers = {{ sub = "X-User", tenant = "X-Tenant" }}
{provider_extra}

[[routes]]
name = "orders"
match = {{ prefix = "/orders" }}
upstream = "backend"
auth = {{ methods = ["jwt"], scopes = ["orders:read"], consumer_header = "X-Consumer" }}

[[routes]]
name = "api"
upstream = "backend"
auth = {{ methods = ["jwt"], consumer_header = "X-Consumer" }}

[[upstreams]]
name = "backend"
endpoints = ["{backend}"]

[[upstreams]]
name = "idp"
endpoints = ["{idp}"]
"#
    )
}

fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"iss": ISS, "aud": "api", "sub": sub, "exp": now() + 600, "tenant": 7})
}

async fn status(c: &reqwest::Client, gw: &TestGateway, path: &str, token: &str) -> u16 {
    c.get(gw.url("web", path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn rotation_is_accepted_at_once_and_unknown_kids_are_rate_limited() {
    let backend = Upstream::fixed("ok").await;
    let k1 = SigningKey::rsa("k1", Algorithm::RS256);
    let k2 = SigningKey::ec("k2", Algorithm::ES256);
    let idp = key_server(jwks(&[&k1])).await;
    let gw = TestGateway::start(&config(
        backend.addr,
        idp.up.addr,
        "jwks_path = \"/keys\"\njwks_min_refresh = \"0s\"",
    ))
    .await;
    let c = reqwest::Client::new();

    // The first token may arrive before the first fetch: it waits for it.
    assert_eq!(status(&c, &gw, "/a", &k1.sign(&claims("alice"))).await, 200);
    let seen = backend.last();
    assert_eq!(seen.headers["x-user"], "alice");
    assert_eq!(seen.headers["x-tenant"], "7");
    assert_eq!(
        seen.headers["x-consumer"], "alice-co",
        "the consumer named by the subject"
    );
    assert!(!seen.headers.contains_key("authorization"));
    // An unknown subject is authenticated but has no consumer.
    assert_eq!(status(&c, &gw, "/a", &k1.sign(&claims("bob"))).await, 200);
    assert!(!backend.last().headers.contains_key("x-consumer"));

    // Rotate: the set now holds only k2.
    *idp.doc.lock().unwrap() = jwks(&[&k2]);
    let rotated = Instant::now();
    assert_eq!(status(&c, &gw, "/a", &k2.sign(&claims("alice"))).await, 200);
    println!("rotation to first accepted token: {:?}", rotated.elapsed());
    assert_eq!(
        status(&c, &gw, "/a", &k1.sign(&claims("alice"))).await,
        401,
        "the retired key"
    );

    // The server fails: the last good set stays.
    idp.failing.store(true, Ordering::SeqCst);
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("unknown".into());
    assert_eq!(
        status(&c, &gw, "/a", &k2.sign_with(h, &claims("alice"))).await,
        401
    );
    assert_eq!(
        status(&c, &gw, "/a", &k2.sign(&claims("alice"))).await,
        200,
        "kept after a failed fetch"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_issuer_nothing_extra() {
    let backend = Upstream::fixed("ok").await;
    let k1 = SigningKey::ed("k1");
    let idp = key_server(jwks(&[&k1])).await;
    let gw = TestGateway::start(&config(
        backend.addr,
        idp.up.addr,
        "jwks_path = \"/keys\"\njwks_min_refresh = \"1h\"",
    ))
    .await;
    let c = reqwest::Client::new();
    assert_eq!(status(&c, &gw, "/a", &k1.sign(&claims("alice"))).await, 200);
    let before = idp.fetches.load(Ordering::SeqCst);
    for i in 0..20 {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(format!("random-{i}"));
        assert_eq!(
            status(&c, &gw, "/a", &k1.sign_with(h, &claims("alice"))).await,
            401
        );
    }
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        before,
        "no fetch within min_refresh"
    );
}

#[tokio::test]
async fn discovery_scopes_and_challenges() {
    let backend = Upstream::fixed("ok").await;
    let k = SigningKey::ec("k", Algorithm::ES384);
    let idp = key_server(jwks(&[&k])).await;
    let gw = TestGateway::start(&config(backend.addr, idp.up.addr, "discovery = true")).await;
    let c = reqwest::Client::new();
    assert_eq!(
        status(&c, &gw, "/a", &k.sign(&claims("alice"))).await,
        200,
        "keys found through discovery"
    );
    assert_eq!(backend.last().uri.path(), "/a");

    let mut scoped = claims("alice");
    scoped["scope"] = "profile orders:read".into();
    assert_eq!(status(&c, &gw, "/orders", &k.sign(&scoped)).await, 200);
    let r = c
        .get(gw.url("web", "/orders"))
        .bearer_auth(k.sign(&claims("alice")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"orders:read\""
    );
    let mut scp = claims("alice");
    scp["scp"] = serde_json::json!(["orders:read"]);
    assert_eq!(
        status(&c, &gw, "/orders", &k.sign(&scp)).await,
        200,
        "scp as a list"
    );

    // No credential: a challenge without an error code (RFC 6750 3.1).
    let r = c.get(gw.url("web", "/a")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"gatehouse\""
    );
    // A bad token: invalid_token with a description.
    let mut old = claims("alice");
    old["exp"] = (now() - 3600).into();
    let r = c
        .get(gw.url("web", "/a"))
        .bearer_auth(k.sign(&old))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let h = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(h.starts_with("Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"token has expired"), "{h}");
    // The scheme is case-insensitive; two Authorization headers are a bad request.
    let token = k.sign(&claims("alice"));
    let r = c
        .get(gw.url("web", "/a"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(gw.url("web", "/a"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_request\""));
    // Garbage is refused, never a 5xx.
    for junk in ["", "a.b", "a.b.c", "%%%.%%%.%%%", &"x".repeat(10_000)] {
        let r = c
            .get(gw.url("web", "/a"))
            .header("authorization", format!("Bearer {junk}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 401 || r.status() == 400,
            "{junk:.20}: {}",
            r.status()
        );
    }
}

#[tokio::test]
async fn no_keys_yet_answers_503_and_keys_survive_a_reload() {
    let backend = Upstream::fixed("ok").await;
    let k = SigningKey::rsa("k", Algorithm::PS256);
    let idp = key_server(jwks(&[&k])).await;
    idp.failing.store(true, Ordering::SeqCst);
    let text = config(
        backend.addr,
        idp.up.addr,
        "jwks_path = \"/keys\"\njwks_min_refresh = \"0s\"\njwks_timeout = \"2s\"",
    );
    let gw = TestGateway::start(&text).await;
    let c = reqwest::Client::new();
    let r = c
        .get(gw.url("web", "/a"))
        .bearer_auth(k.sign(&claims("alice")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "the issuer's keys were never fetched");
    assert!(r.headers().contains_key("retry-after"));
    idp.failing.store(false, Ordering::SeqCst);
    assert_eq!(status(&c, &gw, "/a", &k.sign(&claims("alice"))).await, 200);
    // A reload with the provider unchanged keeps its keys: no fetch, tokens still pass.
    let fetched = idp.fetches.load(Ordering::SeqCst);
    idp.failing.store(true, Ordering::SeqCst);
    gw.gw
        .reload_text(&text.replace("name = \"orders\"", "name = \"orders2\""))
        .await
        .unwrap();
    assert_eq!(status(&c, &gw, "/a", &k.sign(&claims("alice"))).await, 200);
    assert_eq!(idp.fetches.load(Ordering::SeqCst), fetched);
}

#[tokio::test]
async fn the_key_set_is_fetched_over_https_with_the_upstream_tls_settings() {
    let ca = gatehouse_test_support::certs::TestCa::new();
    let leaf = ca.leaf("idp", &["idp.test"]);
    let backend = Upstream::fixed("ok").await;
    let k = SigningKey::ec("k", Algorithm::ES256);
    let opts = UpstreamOptions {
        tls: Some((leaf.cert_pem.clone(), leaf.key_pem.clone())),
        ..UpstreamOptions::default()
    };
    let idp = key_server_with(jwks(&[&k]), opts).await;
    let tls = format!(
        "tls = {{ ca = \"{}\", sni = \"idp.test\" }}",
        ca.ca_path.display()
    );
    let text = config(backend.addr, idp.up.addr, "jwks_path = \"/keys\"").replace(
        &format!("name = \"idp\"\nendpoints = [\"{}\"]", idp.up.addr),
        &format!("name = \"idp\"\nendpoints = [\"{}\"]\n{tls}", idp.up.addr),
    );
    assert!(text.contains("sni = \"idp.test\""), "{text}");
    let gw = TestGateway::start(&text).await;
    let c = reqwest::Client::new();
    assert_eq!(status(&c, &gw, "/a", &k.sign(&claims("alice"))).await, 200);
    assert!(idp.fetches.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn claims_become_headers_by_the_provider_that_verified_the_token() {
    let backend = Upstream::fixed("ok").await;
    let staff = SigningKey::hmac("s1", Algorithm::HS256, b"staff-secret-0123456789abcdef012");
    let partners = SigningKey::hmac("p1", Algorithm::HS256, b"partner-secret-0123456789abcdef0");
    let text = format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[jwt_providers]]
name = "staff"
keys = [{{ kid = "s1", alg = "HS256", secret = "staff-secret-0123456789abcdef012" }}]
claims_to_headers = {{ sub = "X-Employee" }}

[[jwt_providers]]
name = "partners"
keys = [{{ kid = "p1", alg = "HS256", secret = "partner-secret-0123456789abcdef0" }}]
claims_to_headers = {{ sub = "X-Partner", org = "X-Org" }}

[[routes]]
name = "api"
upstream = "backend"
auth = {{ methods = ["jwt"], jwt = ["staff", "partners"] }}

[[upstreams]]
name = "backend"
endpoints = ["{}"]
"#,
        backend.addr
    );
    let gw = TestGateway::start(&text).await;
    let c = reqwest::Client::new();
    let claims = |sub: &str| serde_json::json!({"sub": sub, "org": "acme", "exp": now() + 600});
    assert_eq!(
        status(&c, &gw, "/a", &partners.sign(&claims("p-9"))).await,
        200
    );
    let seen = backend.last();
    assert_eq!(seen.headers["x-partner"], "p-9");
    assert_eq!(seen.headers["x-org"], "acme");
    assert!(!seen.headers.contains_key("x-employee"));
    assert_eq!(
        status(&c, &gw, "/a", &staff.sign(&claims("e-1"))).await,
        200
    );
    let seen = backend.last();
    assert_eq!(seen.headers["x-employee"], "e-1");
    assert!(!seen.headers.contains_key("x-org"));
}
