//! Upstream failures and the replies they map to: refused (502), broken or garbage
//! responses (502, or an aborted body once headers went out), an endpoint at its
//! connection limit (503 with Retry-After), and a failed endpoint skipped for another.

use crate::*;
use gatehouse_test_support::{TestGateway, Upstream, UpstreamOptions};
use std::time::Duration;

#[tokio::test]
async fn refused_upstream_is_502_with_request_id() {
    let gw = TestGateway::start(&config(dead_addr().await, "", "")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    expect_error(resp, 502, "upstream_connect_failed").await;
    // A request id the client sent is the one reported.
    let resp = reqwest::Client::new()
        .get(gw.url("web", "/"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 502, "upstream_connect_failed").await;
    assert_eq!(body["request_id"], "trace-me-42");
}

#[tokio::test]
async fn upstream_closing_mid_head_is_502() {
    let addr = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Le").await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    expect_error(resp, 502, "upstream_protocol_error").await;
}

#[tokio::test]
async fn upstream_sending_garbage_is_502() {
    let addr = raw_upstream(b"SSH-2.0-OpenSSH_9.6\r\n\r\nnot http at all").await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    expect_error(resp, 502, "upstream_protocol_error").await;
}

/// Headers already went out, so the status stays 200, but the client must see the body
/// fail rather than a clean short body.
#[tokio::test]
async fn upstream_closing_mid_body_aborts_the_client_body() {
    let addr = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part").await;
    let gw = TestGateway::start(&config(addr, "", "")).await;
    let resp = reqwest::get(gw.url("web", "/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.is_err(),
        "a truncated body read as complete"
    );
}

/// With max_connections_per_endpoint = 1 and that connection busy, another request is
/// refused at once with 503 and Retry-After instead of queueing.
#[tokio::test(start_paused = true)]
async fn endpoint_at_its_connection_limit_is_503_with_retry_after() {
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let up = Upstream::start(UpstreamOptions::default(), move |_req| {
        let tx = started_tx.clone();
        async move {
            let _ = tx.send(());
            tokio::time::sleep(Duration::from_secs(10)).await;
            ok("slow")
        }
    })
    .await;
    let gw = TestGateway::start(&config(
        up.addr,
        "",
        "[upstreams.pool]\nmax_connections_per_endpoint = 1",
    ))
    .await;
    let url = gw.url("web", "/");
    let first = tokio::spawn(fresh_client().get(&url).send());
    started.recv().await.unwrap();
    let resp = fresh_client().get(&url).send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    expect_error(resp, 503, "no_endpoint").await;
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.text().await.unwrap(), "slow");
    assert_eq!(up.count(), 1);
}

/// Of two endpoints, the refused one is skipped and the other answers every request.
#[tokio::test]
async fn failed_endpoint_is_skipped_for_the_other() {
    let good = Upstream::fixed("good").await;
    let toml = config(good.addr, "", "").replace(
        &format!("endpoints = [\"{}\"]", good.addr),
        &format!("endpoints = [\"{}\", \"{}\"]", dead_addr().await, good.addr),
    );
    let gw = TestGateway::start(&toml).await;
    let c = reqwest::Client::new();
    for _ in 0..6 {
        let resp = c.get(gw.url("web", "/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "good");
    }
    assert_eq!(good.count(), 6);
    let ups: serde_json::Value = reqwest::get(gw.admin_url("/upstreams"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let eps = &ups["upstreams"][0]["endpoints"];
    assert!(eps[0]["failures"].as_u64().unwrap() >= 1, "{ups}");
    assert_eq!(eps[1]["failures"], 0, "{ups}");
}
