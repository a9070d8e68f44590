//! Traffic shaping end to end: splits to a canary by header, cookie, consumer group and
//! weight (sticky per client when asked), and mirroring that copies requests (bodies
//! included up to a bound) while the real request's latency stays that of its own
//! upstream when the mirror is slow or down.

use gatehouse_test_support::upstream::full;
use gatehouse_test_support::{TestGateway, Upstream};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::sync::mpsc;

fn cfg(route_extra: &str, stable: std::net::SocketAddr, canary: std::net::SocketAddr) -> String {
    format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "api"
upstream = "stable"
auth = {{ methods = ["api_key"], anonymous = true }}
{route_extra}

[[upstreams]]
name = "stable"
endpoints = ["{stable}"]

[[upstreams]]
name = "canary"
endpoints = ["{canary}"]

[[consumers]]
name = "tester"
groups = ["beta"]
api_keys = ["k-beta"]

[[consumers]]
name = "plain"
api_keys = ["k-plain"]
"#
    )
}

#[tokio::test]
async fn splits_send_what_they_select_to_the_canary() {
    let stable = Upstream::fixed("stable").await;
    let canary = Upstream::fixed("canary").await;
    let rules = r#"split = [
  { upstream = "canary", header = "x-canary", value = "yes" },
  { upstream = "canary", cookie = "track", value = "canary" },
  { upstream = "canary", consumer_group = "beta" },
]"#;
    let gw = TestGateway::start(&cfg(rules, stable.addr, canary.addr)).await;
    let c = reqwest::Client::new();
    let body =
        |r: reqwest::RequestBuilder| async move { r.send().await.unwrap().text().await.unwrap() };
    let url = gw.url("web", "/x");
    assert_eq!(body(c.get(&url)).await, "stable");
    assert_eq!(body(c.get(&url).header("x-canary", "yes")).await, "canary");
    assert_eq!(body(c.get(&url).header("x-canary", "no")).await, "stable");
    assert_eq!(
        body(c.get(&url).header("cookie", "a=1; track=canary")).await,
        "canary"
    );
    assert_eq!(
        body(c.get(&url).header("cookie", "track=stable")).await,
        "stable"
    );
    assert_eq!(
        body(c.get(&url).header("x-api-key", "k-beta")).await,
        "canary"
    );
    assert_eq!(
        body(c.get(&url).header("x-api-key", "k-plain")).await,
        "stable"
    );
}

#[tokio::test]
async fn a_weighted_split_sends_its_share_and_sticky_clients_stay_put() {
    let stable = Upstream::fixed("stable").await;
    let canary = Upstream::fixed("canary").await;
    let gw = TestGateway::start(&cfg(
        r#"split = [{ upstream = "canary", weight = 20 }]"#,
        stable.addr,
        canary.addr,
    ))
    .await;
    let c = reqwest::Client::new();
    for _ in 0..500 {
        c.get(gw.url("web", "/")).send().await.unwrap();
    }
    // Binomial(500, 0.2): 100 +- 9 is one standard deviation; 45 is five.
    let n = canary.count();
    assert!((55..=145).contains(&n), "{n} of 500 went to the canary");

    let stable = Upstream::fixed("stable").await;
    let canary = Upstream::fixed("canary").await;
    let gw = TestGateway::start(&cfg(
        r#"split = [{ upstream = "canary", weight = 50, sticky = true }]"#,
        stable.addr,
        canary.addr,
    ))
    .await;
    // One client (one consumer) always lands on the same side.
    for key in ["k-beta", "k-plain"] {
        let mut sides = std::collections::HashSet::new();
        for _ in 0..20 {
            let r = c
                .get(gw.url("web", "/"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            sides.insert(r.text().await.unwrap());
        }
        assert_eq!(sides.len(), 1, "{key} moved between sides: {sides:?}");
    }
}

type Seen = mpsc::UnboundedReceiver<(String, Vec<u8>)>;

/// An upstream that reports each request (path and body) as it arrives, and answers
/// after `delay`.
async fn recording(delay: Duration) -> (Upstream, Seen) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Upstream::start(Default::default(), move |req| {
        let tx = tx.clone();
        async move {
            let path = req.uri().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let _ = tx.send((path, body.to_vec()));
            tokio::time::sleep(delay).await;
            http::Response::new(full("mirror"))
        }
    })
    .await;
    (up, rx)
}

/// The next request the mirror saw (bounded: a missing one fails the test).
async fn next(seen: &mut Seen) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("the mirror saw no request")
        .unwrap()
}

#[tokio::test]
async fn mirrored_copies_carry_the_request_and_its_body() {
    let real = Upstream::fixed("real").await;
    let (mirror, mut seen) = recording(Duration::ZERO).await;
    let extra = r#"mirror = { upstream = "canary", max_body = "1KiB" }"#;
    let gw = TestGateway::start(&cfg(extra, real.addr, mirror.addr)).await;
    let c = reqwest::Client::new();
    let r = c
        .post(gw.url("web", "/orders?id=7"))
        .body("small body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "real");
    assert_eq!(
        next(&mut seen).await,
        ("/orders?id=7".to_string(), b"small body".to_vec())
    );
    // A body over max_body goes to the real upstream whole and is not mirrored.
    let big = vec![b'x'; 4096];
    let r = c
        .post(gw.url("web", "/big"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A request after it is mirrored, so the big one was skipped, not just late.
    c.get(gw.url("web", "/after")).send().await.unwrap();
    assert_eq!(next(&mut seen).await.0, "/after");
    assert_eq!(real.count(), 3);
}

#[tokio::test]
async fn a_slow_or_dead_mirror_never_slows_or_fails_the_real_request() {
    let real = Upstream::fixed("real").await;
    let (slow, mut seen) = recording(Duration::from_secs(30)).await;
    let gw = TestGateway::start(&cfg(
        r#"mirror = { upstream = "canary" }"#,
        real.addr,
        slow.addr,
    ))
    .await;
    let c = reqwest::Client::new();
    let t = std::time::Instant::now();
    for _ in 0..5 {
        let r = c.get(gw.url("web", "/")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "real");
    }
    // Five answers well inside one mirror answer's 30 s.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for _ in 0..5 {
        next(&mut seen).await;
    }

    // A mirror that refuses connections: every real request still succeeds.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::start(&cfg(r#"mirror = { upstream = "canary" }"#, real.addr, dead)).await;
    for _ in 0..5 {
        let r = c.get(gw.url("web", "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Two upstreams that say which they are and the path they got.
async fn named(name: &'static str) -> Upstream {
    Upstream::start(Default::default(), move |req| async move {
        http::Response::new(full(format!("{name} {}", req.uri())))
    })
    .await
}

fn versioned(by: &str, extra: &str, v1: std::net::SocketAddr, v2: std::net::SocketAddr) -> String {
    format!(
        r#"
[access_log]
enabled = false

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "api"
upstream = "one"
[routes.versioning]
by = "{by}"
{extra}
[[routes.versioning.versions]]
name = "v1"
deprecated = "2026-01-01T00:00:00Z"
sunset = "2027-06-30T00:00:00Z"
link = "https://example.com/migrate"
[[routes.versioning.versions]]
name = "v2"
upstream = "two"

[[upstreams]]
name = "one"
endpoints = ["{v1}"]

[[upstreams]]
name = "two"
endpoints = ["{v2}"]
"#
    )
}

#[tokio::test]
async fn versions_by_path_go_to_their_upstreams_with_deprecation_headers() {
    let (one, two) = (named("one").await, named("two").await);
    let gw = TestGateway::start(&versioned("path", "default = \"v2\"", one.addr, two.addr)).await;
    let c = reqwest::Client::new();
    let v1 = c.get(gw.url("web", "/v1/users?x=1")).send().await.unwrap();
    assert_eq!(v1.headers()["deprecation"], "@1767225600");
    assert_eq!(v1.headers()["sunset"], "Wed, 30 Jun 2027 00:00:00 GMT");
    assert_eq!(
        v1.headers()["link"],
        "<https://example.com/migrate>; rel=\"deprecation\""
    );
    assert_eq!(v1.text().await.unwrap(), "one /users?x=1");
    let v2 = c.get(gw.url("web", "/v2/users")).send().await.unwrap();
    assert!(!v2.headers().contains_key("deprecation"));
    assert_eq!(v2.text().await.unwrap(), "two /users");
    // No version segment: the default, path unchanged.
    let plain = c.get(gw.url("web", "/users")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "two /users");
}

#[tokio::test]
async fn versions_by_header_media_type_and_query() {
    let (one, two) = (named("one").await, named("two").await);
    let c = reqwest::Client::new();
    let gw = TestGateway::start(&versioned("header", "", one.addr, two.addr)).await;
    let r = c
        .get(gw.url("web", "/x"))
        .header("api-version", "v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "two /x");
    // No default: a request that names no version is refused, with the known ones.
    let r = c.get(gw.url("web", "/x")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_version");
    assert_eq!(body["versions"], serde_json::json!(["v1", "v2"]));
    let r = c
        .get(gw.url("web", "/x"))
        .header("api-version", "v9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown API version `v9`"));

    let gw = TestGateway::start(&versioned(
        "media_type",
        "unknown_status = 404",
        one.addr,
        two.addr,
    ))
    .await;
    let r = c
        .get(gw.url("web", "/x"))
        .header("accept", "text/html, application/vnd.acme+json; version=v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "two /x");
    let r = c
        .get(gw.url("web", "/x"))
        .header("accept", "application/json; version=v3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let gw = TestGateway::start(&versioned(
        "query",
        "name = \"api\"\ndefault = \"v1\"",
        one.addr,
        two.addr,
    ))
    .await;
    let r = c.get(gw.url("web", "/x?api=v2")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "two /x?api=v2");
    let r = c.get(gw.url("web", "/x")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "one /x");
    assert_eq!(one.count() + two.count(), 4);
}
