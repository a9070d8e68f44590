use gatehouse_test_support::{TestGateway, Upstream};

#[tokio::test]
async fn proxies_to_an_upstream_and_adds_forwarding_headers() {
    let up = Upstream::fixed("hello").await;
    let gw = TestGateway::start(&format!(
        r#"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
name = "all"
upstream = "backend"

[[upstreams]]
name = "backend"
endpoints = ["{}"]
"#,
        up.addr
    ))
    .await;
    let resp = reqwest::get(gw.url("web", "/x?y=1")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.text().await.unwrap(), "hello");
    let seen = up.last();
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/x?y=1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["via"], "1.1 gatehouse");
}
