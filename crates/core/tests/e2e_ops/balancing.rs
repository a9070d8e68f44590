//! Balancers end to end: least_conn steers new requests away from an endpoint that is
//! still busy with one; random and p2c spread requests over both endpoints.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};

fn two_endpoints(a: SocketAddr, b: SocketAddr, balancer: &str) -> String {
    two_endpoints_with(a, b, balancer, "")
}

fn two_endpoints_with(a: SocketAddr, b: SocketAddr, balancer: &str, extra: &str) -> String {
    config_endpoints(&[a, b], "", &format!("balancer = \"{balancer}\"\n{extra}"))
}

#[tokio::test]
async fn least_conn_avoids_the_busy_endpoint() {
    // Endpoint "slow" holds every request until released; "fast" answers at once.
    let (slow, gate) = held("slow").await;
    let fast = Upstream::fixed("fast").await;
    let gw = TestGateway::start(&two_endpoints(slow.addr, fast.addr, "least_conn")).await;
    let c = fresh_client();
    // Send requests until one is held by the slow endpoint.
    let url = gw.url("web", "/");
    let held = loop {
        let mut req = tokio::spawn(c.get(&url).send());
        tokio::select! {
            _ = gate.arrived() => break req,
            r = &mut req => assert_eq!(r.unwrap().unwrap().text().await.unwrap(), "fast"),
        }
    };
    // While it is in flight, every new request goes to the idle endpoint.
    for _ in 0..10 {
        assert_eq!(text(c.get(&url)).await, "fast");
    }
    gate.release();
    assert_eq!(held.await.unwrap().unwrap().text().await.unwrap(), "slow");
}

#[tokio::test]
async fn random_and_p2c_use_both_endpoints() {
    for balancer in ["random", "p2c"] {
        let a = Upstream::fixed("a").await;
        let b = Upstream::fixed("b").await;
        let gw = TestGateway::start(&two_endpoints(a.addr, b.addr, balancer)).await;
        let c = fresh_client();
        for _ in 0..200 {
            text(c.get(gw.url("web", "/"))).await;
        }
        // p2c prefers the endpoint with the lower latency average, which timing noise
        // can tilt; both must still be used.
        let least = if balancer == "p2c" { 20 } else { 40 };
        assert!(
            a.count() > least && b.count() > least,
            "{balancer}: {} / {}",
            a.count(),
            b.count()
        );
    }
}

#[tokio::test]
async fn consistent_hash_keeps_a_key_on_one_endpoint() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let toml = two_endpoints_with(
        a.addr,
        b.addr,
        "consistent_hash",
        "hash_on = \"header:x-user\"",
    );
    let gw = TestGateway::start(&toml).await;
    let c = fresh_client();
    let url = gw.url("web", "/");
    let mut seen = std::collections::HashSet::new();
    for user in 0..40 {
        let first = text(c.get(&url).header("x-user", format!("u{user}"))).await;
        for _ in 0..3 {
            let again = text(c.get(&url).header("x-user", format!("u{user}"))).await;
            assert_eq!(again, first, "user u{user} moved");
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "40 users all landed on one endpoint");
}

/// Weights 1, 2 and 3 with the weight-3 endpoint drained: its share goes to the other
/// two by their weights (100 and 200 of 300), not all to its neighbour in the schedule.
#[tokio::test]
async fn a_drained_endpoints_share_is_spread_by_weight() {
    let a = Upstream::fixed("a").await;
    let b = Upstream::fixed("b").await;
    let c = Upstream::fixed("c").await;
    let toml = config_endpoints(&[a.addr], "", "").replace(
        &format!("endpoints = [\"{}\"]", a.addr),
        &format!(
            "endpoints = [\"{}\", {{ address = \"{}\", weight = 2 }}, {{ address = \"{}\", weight = 3 }}]",
            a.addr, b.addr, c.addr
        ),
    );
    assert!(toml.contains("weight = 3"));
    let gw = TestGateway::start(&toml).await;
    let drain = format!("/upstreams/backend/endpoints/{}/drain", c.addr);
    let r = reqwest::Client::new()
        .post(gw.admin_url(&drain))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let client = reqwest::Client::new();
    for _ in 0..300 {
        text(client.get(gw.url("web", "/"))).await;
    }
    assert_eq!(c.count(), 0);
    assert!(
        a.count().abs_diff(100) <= 3 && b.count().abs_diff(200) <= 3,
        "a {} b {}",
        a.count(),
        b.count()
    );
}
