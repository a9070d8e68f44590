//! Forwarding headers end to end: a trusted proxy's X-Forwarded-For and Forwarded are
//! appended to, an untrusted client's are replaced.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream};

fn with_trusted(upstream: SocketAddr, trusted: &str) -> String {
    format!(
        "[global]\ntrusted_proxies = [{trusted}]\n{}",
        config(upstream, "forwarded = true", "")
    )
}

async fn send_forwarded(gw: &TestGateway) {
    let r = reqwest::Client::new()
        .get(gw.url("web", "/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn trusted_peer_headers_are_appended_to() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&with_trusted(up.addr, "\"127.0.0.0/8\"")).await;
    send_forwarded(&gw).await;
    let h = up.last().headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    let fwd = h["forwarded"].to_str().unwrap();
    assert!(
        fwd.starts_with("for=203.0.113.7;proto=https, for=127.0.0.1;proto=http;host="),
        "{fwd}"
    );
}

#[tokio::test]
async fn untrusted_peer_headers_are_replaced() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&with_trusted(up.addr, "\"10.0.0.0/8\"")).await;
    send_forwarded(&gw).await;
    let h = up.last().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h["forwarded"]
        .to_str()
        .unwrap()
        .starts_with("for=127.0.0.1;proto=http;host="));
}
