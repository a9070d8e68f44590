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
