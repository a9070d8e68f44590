//! Route filters end to end: header rules on the request the upstream sees and on the
//! response the client gets, for proxied and locally answered routes.

use super::config;
use gatehouse_test_support::{TestGateway, Upstream};

#[tokio::test]
async fn header_rules_edit_the_upstream_request_and_the_client_response() {
    let up = Upstream::fixed("ok").await;
    let extra = r#"request_headers = { set = { "x-env" = "prod", "x-forwarded-proto" = "https" }, add = { "x-tag" = "gw" }, remove = ["x-debug"] }
response_headers = { set = { "x-frame-options" = "DENY" }, remove = ["x-upstream-secret"] }"#;
    let gw = TestGateway::start(&config(up.addr, extra, "")).await;
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/a"))
        .header("x-debug", "1")
        .header("x-env", "dev")
        .header("x-tag", "client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let seen = up.last();
    assert_eq!(seen.headers["x-env"], "prod");
    // Request rules run after the forwarding headers, so they can override them.
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(!seen.headers.contains_key("x-debug"));
    let tags: Vec<_> = seen
        .headers
        .get_all("x-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, vec!["client", "gw"]);
}

#[tokio::test]
async fn response_rules_apply_to_local_responses() {
    let gw = TestGateway::start(
        r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "hello"
respond = { status = 200, body = "hi" }
response_headers = { set = { "cache-control" = "no-store" } }
"#,
    )
    .await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.text().await.unwrap(), "hi");
}
