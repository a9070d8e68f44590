//! Forwarding headers end to end: a trusted proxy's X-Forwarded-For and Forwarded are
//! appended to, an untrusted client's are replaced; `Via` and request ids can be turned off.

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

const VIA_AND_IDS_OFF: &str = "[global]\nvia = false\nrequest_id = false\n";

/// With `via` and `request_id` off, neither header is added either way; ones the client
/// sent pass to the upstream unchanged, as ordinary headers, and are not echoed.
#[tokio::test]
async fn via_and_request_ids_can_be_turned_off() {
    let up = Upstream::fixed("ok").await;
    let gw = TestGateway::start(&format!("{VIA_AND_IDS_OFF}{}", config(up.addr, "", ""))).await;
    let r = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-request-id"));
    let h = up.last().headers;
    assert!(
        !h.contains_key("via") && !h.contains_key("x-request-id"),
        "{h:?}"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");

    let r = reqwest::Client::new()
        .get(gw.url("web", "/"))
        .header("x-request-id", "trace-7")
        .header("via", "1.0 edge")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-request-id"));
    let h = up.last().headers;
    assert_eq!(h["x-request-id"], "trace-7");
    assert_eq!(h["via"], "1.0 edge");
}

/// An error reply still carries a request id with ids off: the client's, or a new one.
#[tokio::test]
async fn error_replies_carry_an_id_with_request_ids_off() {
    let cfg = format!("{VIA_AND_IDS_OFF}{}", config(dead_addr().await, "", ""));
    let gw = TestGateway::start(&cfg).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    let body = expect_error(resp, 502, "upstream_connect_failed").await;
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/"))
        .header("x-request-id", "trace-8")
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 502, "upstream_connect_failed").await;
    assert_eq!(body["request_id"], "trace-8");
}
